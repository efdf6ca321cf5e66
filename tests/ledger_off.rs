//! The ledger is off by default: crossings cost nothing and nothing is counted (its own
//! test binary, so no other test can have turned it on).

#[test]
fn by_default_nothing_is_counted() {
    assert!(!async_bridge::ledger::is_enabled());
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async_bridge::unblock(|| ()));
    async_bridge::block_on(async {}).unwrap();
    assert_eq!(async_bridge::ledger().total(), 0);
    // Turned on, the next crossings count; turned off again, they stop.
    async_bridge::ledger::enable();
    rt.block_on(async_bridge::unblock(|| ()));
    assert_eq!(async_bridge::ledger().total(), 1);
    async_bridge::ledger::disable();
    rt.block_on(async_bridge::unblock(|| ()));
    assert_eq!(async_bridge::ledger().total(), 1);
    async_bridge::ledger::reset();
    assert_eq!(async_bridge::ledger().total(), 0);
}
