//! The public types have the auto traits users rely on.

use async_bridge::*;

fn send_sync<T: Send + Sync>() {}
fn unpin<T: Unpin>() {}
fn send<T: Send>(_: &T) {}

#[test]
fn public_types_are_send_sync_unpin() {
    send_sync::<Offloader>();
    send_sync::<ComputePool>();
    send_sync::<OffloadError>();
    send_sync::<ConfigError>();
    send_sync::<Stats>();
    send_sync::<ShutdownReport>();
    unpin::<Offloader>();
    unpin::<ComputePool>();
}

#[test]
fn worker_builders_are_send_sync_whatever_the_object() {
    // The builder carries the object's type but never holds an object: a builder for a
    // `!Send` object can still be made on one thread and spawned from another.
    send_sync::<WorkerBuilder<std::rc::Rc<()>>>();
    send_sync::<WorkerPoolBuilder<std::rc::Rc<()>>>();
    let builder = Worker::builder("rc").on_lease_abandoned(|_: &mut std::rc::Rc<()>| {});
    let worker =
        std::thread::spawn(move || builder.spawn(|| Ok::<_, std::io::Error>(std::rc::Rc::new(()))))
            .join()
            .unwrap()
            .unwrap();
    assert_eq!(worker.name(), "rc");
}

#[test]
fn the_futures_are_send() {
    let lane = Offloader::builder("x").build().unwrap();
    let pool = ComputePool::builder("y").threads(1).build().unwrap();
    send(&unblock(|| 1));
    send(&compute(|| 1));
    send(&lane.run(|| 1));
    send(&pool.run(|| 1));
    send(&lane.shutdown(std::time::Duration::ZERO));
}

#[test]
fn errors_convert_into_io_and_boxed_errors() {
    fn takes(_: Box<dyn std::error::Error + Send + Sync>) {}
    let err = Offloader::builder("z")
        .max_concurrency(0)
        .build()
        .unwrap_err();
    takes(Box::new(err));
}
