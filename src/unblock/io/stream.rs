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
/// nothing; [`take_fetched`](Unblock::take_fetched) hands it out. Until then
/// [`call`](Unblock::call) refuses to run (with an error: its closure would see the
/// iterator past the item), the iterator seen through [`get_mut`](Unblock::get_mut) is
/// past it, and [`into_inner`](Unblock::into_inner) drops it.
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

impl<T> Unblock<T>
where
    T: Iterator + Send + 'static,
    T::Item: Send + 'static,
{
    /// Takes the item that a `next()` dropped after its first poll fetched, if there is
    /// one (waiting for it when it is still being fetched). Afterwards the iterator seen
    /// by [`call`](Self::call), [`get_mut`](Self::get_mut) and
    /// [`into_inner`](Self::into_inner) resumes right after the items handed out.
    ///
    /// # Examples
    ///
    /// ```
    /// use futures::{FutureExt, StreamExt};
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let mut numbers = async_bridge::Unblock::new(1..=3);
    /// assert_eq!(numbers.next().await, Some(1));
    /// // Given up on after its first poll: the `next` it started goes on.
    /// let polled = numbers.next().now_or_never().flatten(); // `None`, almost always
    /// let fetched = numbers.take_fetched().await; // then `Some(2)`
    /// let rest: Vec<_> = numbers.into_inner().await.collect();
    /// let seen: Vec<_> = polled.into_iter().chain(fetched).chain(rest).collect();
    /// assert_eq!(seen, [2, 3]);
    /// # });
    /// ```
    ///
    /// # Panics
    ///
    /// Resumes a panic of that `next` with its payload. Panics as
    /// [`get_mut`](Self::get_mut) does.
    pub async fn take_fetched(&mut self) -> Option<T::Item> {
        if let Err(err) = std::future::poll_fn(|cx| self.poll_idle(cx)).await {
            panic!("async_bridge::Unblock::take_fetched: {err}");
        }
        match self.slots().item.take() {
            Some(Ok(Some(item))) => Some(
                *item
                    .downcast::<T::Item>()
                    .expect("an item of this iterator"),
            ),
            Some(Err(payload)) => job::resume(payload),
            // The end: left for the stream to report.
            end @ Some(Ok(None)) => {
                self.slots().item = end;
                None
            }
            None => None,
        }
    }
}
