//! Iterating: futures' `Stream` for `Unblock<T: Iterator>`.

use std::any::Any;
use std::panic::{self, AssertUnwindSafe};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use futures::Stream;

use super::{defer, HopKind, Payload, Unblock};
use crate::job;

/// Each item is one `next` on a blocking thread; nothing is fetched ahead, so the
/// iterator handed back by `into_inner` resumes exactly after the last item yielded. A
/// panic in `next` resumes in the task polling the stream.
///
/// One exception: a `next()` future dropped after its first poll (in a `select!` or a
/// timeout) has already sent `next` to the blocking thread, and the item it fetches is
/// kept by the `Unblock`. The next `next()` returns it, so the stream itself loses
/// nothing; but the iterator seen through [`get_mut`](Unblock::get_mut) is already past
/// it, and [`into_inner`](Unblock::into_inner) drops it.
impl<T> Stream for Unblock<T>
where
    T: Iterator + Send + 'static,
    T::Item: Send + 'static,
{
    type Item = T::Item;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T::Item>> {
        let this = self.get_mut();
        loop {
            if let Some(item) = this.slots().item.take() {
                return Poll::Ready(match item {
                    Ok(item) => item.map(|item| {
                        *item
                            .downcast::<T::Item>()
                            .expect("an item of this iterator")
                    }),
                    Err(payload) => job::resume(payload),
                });
            }
            let waiting = this.hop.as_ref().map(|hop| hop.kind);
            if let Err(err) = ready!(this.poll_idle(cx)) {
                panic!("async_bridge::Unblock stream: {err}");
            }
            if waiting == Some(HopKind::Next) && this.slots().item.is_none() {
                panic!(
                    "async_bridge::Unblock stream created at {}: the runtime shut down before \
                     the iterator ran",
                    this.site
                );
            }
            if waiting.is_some() {
                continue;
            }
            let submitted = this.submit(HopKind::Next, false, |iter, shared, ready| {
                defer(shared, ready);
                if shared.lock().dropped {
                    // Queued when the `Unblock` was dropped: nobody is left for the item.
                    return Payload::Item(Ok(None));
                }
                Payload::Item(panic::catch_unwind(AssertUnwindSafe(|| {
                    iter.next()
                        .map(|item| Box::new(item) as Box<dyn Any + Send>)
                })))
            });
            if let Err(err) = submitted {
                panic!("{err}");
            }
        }
    }
}
