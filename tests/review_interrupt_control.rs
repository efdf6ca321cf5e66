//! Control for review_interrupt.rs: without the panicking interrupter, re-firing works.

mod support;

#[test]
fn refire_stops_a_call_whose_first_interrupt_was_missed() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    assert!(
        support::missed_first_interrupt_is_refired(&rt),
        "B's call was never re-fired, with no other interrupter in the process"
    );
}
