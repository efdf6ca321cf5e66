//! The bridge in a tower stack (feature `tower`): lanes, compute pools and workers as
//! `tower::Service`s over a sync function, and a blocking face over any
//! `tower::Service`.
//!
//! - [`LaneService`] ([`Offloader::service`], [`ComputePool::service`] and their
//!   `service_cancellable`): `poll_ready` reserves a place in the lane (see the lane's
//!   invariant 8), so the lane's bound is tower back-pressure: `load_shed`, `buffer` and
//!   `concurrency_limit` above it see readiness, not a rejection after the fact.
//! - [`WorkerService`] ([`Worker::service`], [`WorkerPool::service`]): always ready, the
//!   mailbox bounds by making calls wait (FIFO) inside their future.
//! - [`BlockingService`]: sync code calling any `tower::Service` through the facade
//!   entry, safe in every calling context.

use std::fmt;
use std::future::Future;
use std::panic::Location;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use ::tower::Service;
use tokio_util::sync::CancellationToken;

use crate::lane::{Lane, OffloadCall};
use crate::origin::Site;
use crate::worker::Call;
use crate::{
    BlockOnError, Blocking, ComputePool, OffloadError, Offloaded, Offloader, Portal, Worker,
    WorkerError, WorkerPool,
};

/// A lane ([`Offloader`]) or a [`ComputePool`] as a `tower::Service<Req>` over a sync
/// function: each call runs `f(req)` on the lane, as
/// [`Offloader::run`] would.
///
/// `poll_ready` reserves one place in the lane (a running slot or a queue place): it is
/// `Ready(Ok)` with a place held, `Pending` while the lane is full (the task is woken
/// when a place frees), and `Ready(Err)` with an
/// [`is_shutdown`](OffloadError::is_shutdown) error once the lane is shut down. The
/// `call` that follows uses the held place, so it is never rejected after the fact; a
/// service dropped (or a future dropped before it is polled) with a place held gives it
/// back. A `call` without `poll_ready` takes its chance like [`Offloader::run`]. Callers
/// waiting in `poll_ready` are not served in FIFO order among themselves.
///
/// The future is the lane's own [`OffloadCall`] (no boxing) and the error is
/// [`OffloadError`]: through tower's layers it becomes a `BoxError` that
/// `downcast_ref::<OffloadError>()` recovers. Clones share the lane and the function,
/// not a held place.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use async_bridge::Offloader;
/// use tower::{Service, ServiceBuilder, ServiceExt};
///
/// fn legacy_lookup(id: u32) -> String {
///     format!("user-{id}") // blocking code
/// }
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let lane = Offloader::builder("users").max_concurrency(4).max_queue(16).build()?;
/// let mut users = ServiceBuilder::new()
///     .load_shed()
///     .timeout(Duration::from_secs(5))
///     .service(lane.service(legacy_lookup));
/// assert_eq!(users.ready().await?.call(7).await?, "user-7");
/// # Ok::<(), tower::BoxError>(())
/// # }).unwrap();
/// ```
#[must_use = "a service does nothing unless called"]
pub struct LaneService<F> {
    /// The lane and the function, behind one reference count: a clone and each call's
    /// closure take one reference, not one each (in a burst of `svc.clone().oneshot(req)`
    /// every count is touched on every call).
    shared: Arc<Shared<F>>,
    site: Site,
    /// A place reserved by `poll_ready`, for the next `call`.
    reserved: bool,
}

/// What a [`LaneService`] and its clones share.
struct Shared<F> {
    lane: Arc<Lane>,
    f: F,
}

/// The function of a [`LaneService`] from `service_cancellable`: it takes the request
/// and the call's cancellation token.
///
/// The token is cancelled when the call's future is dropped (a tower `timeout` above the
/// service, a client gone), when the lane's own timeout fires and when the lane shuts
/// down.
///
/// # Examples
///
/// ```
/// use async_bridge::{Cancellable, LaneService, Offloader};
/// use tokio_util::sync::CancellationToken;
///
/// fn scan(rows: u64, cancel: &CancellationToken) -> u64 {
///     (0..rows).take_while(|_| !cancel.is_cancelled()).count() as u64
/// }
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let lane = Offloader::builder("scans").build().unwrap();
/// let mut scans: LaneService<Cancellable<fn(u64, &CancellationToken) -> u64>> =
///     lane.service_cancellable(scan);
/// use tower::{Service, ServiceExt};
/// assert_eq!(scans.ready().await.unwrap().call(10).await.unwrap(), 10);
/// # });
/// ```
#[derive(Clone, Copy)]
pub struct Cancellable<F>(F);

impl<F> fmt::Debug for Cancellable<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Cancellable(..)")
    }
}

impl<F> LaneService<F> {
    fn new(lane: &Arc<Lane>, site: Site, f: F) -> Self {
        LaneService {
            shared: Arc::new(Shared {
                lane: Arc::clone(lane),
                f,
            }),
            site,
            reserved: false,
        }
    }

    fn poll_place(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), OffloadError>> {
        if self.reserved {
            return Poll::Ready(Ok(()));
        }
        let ready = self.shared.lane.poll_reserve(cx, self.site);
        if let Poll::Ready(Ok(())) = ready {
            self.reserved = true;
        }
        ready
    }

    /// The call's future, taking the place `poll_ready` reserved if there is one.
    fn offload<T, G>(&mut self, cancellable: bool, g: G) -> OffloadCall<T>
    where
        G: FnOnce(Option<&CancellationToken>) -> T + Send + 'static,
        T: Send + 'static,
    {
        let call = OffloadCall::new(&self.shared.lane, self.site, cancellable, g);
        if std::mem::take(&mut self.reserved) {
            call.with_reservation()
        } else {
            call
        }
    }
}

impl<F, Req, Resp> Service<Req> for LaneService<F>
where
    F: Fn(Req) -> Resp + Send + Sync + 'static,
    Req: Send + 'static,
    Resp: Send + 'static,
{
    type Response = Resp;
    type Error = OffloadError;
    type Future = OffloadCall<Resp>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), OffloadError>> {
        self.poll_place(cx)
    }

    fn call(&mut self, req: Req) -> OffloadCall<Resp> {
        let shared = Arc::clone(&self.shared);
        self.offload(false, move |_| (shared.f)(req))
    }
}

impl<F, Req, Resp> Service<Req> for LaneService<Cancellable<F>>
where
    F: Fn(Req, &CancellationToken) -> Resp + Send + Sync + 'static,
    Req: Send + 'static,
    Resp: Send + 'static,
{
    type Response = Resp;
    type Error = OffloadError;
    type Future = OffloadCall<Resp>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), OffloadError>> {
        self.poll_place(cx)
    }

    fn call(&mut self, req: Req) -> OffloadCall<Resp> {
        let shared = Arc::clone(&self.shared);
        self.offload(true, move |token| {
            (shared.f.0)(req, token.expect("a cancellable job always has a token"))
        })
    }
}

impl<F> Clone for LaneService<F> {
    fn clone(&self) -> Self {
        LaneService {
            shared: Arc::clone(&self.shared),
            site: self.site,
            reserved: false,
        }
    }
}

impl<F> Drop for LaneService<F> {
    fn drop(&mut self) {
        if self.reserved {
            self.shared.lane.unreserve();
        }
    }
}

impl<F> fmt::Debug for LaneService<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LaneService")
            .field("lane", &self.shared.lane.name)
            .field("reserved", &self.reserved)
            .finish()
    }
}

impl Offloader {
    /// This lane as a `tower::Service<Req>` that runs `f(req)` for each call; its
    /// `poll_ready` reserves a place in the lane (see [`LaneService`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use async_bridge::Offloader;
    /// use tower::{Service, ServiceExt};
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let lane = Offloader::builder("parser").max_concurrency(1).max_queue(0).build().unwrap();
    /// let mut parse = lane.service(|text: String| text.trim().parse::<u32>());
    /// let ready = parse.ready().await.unwrap(); // the lane's one place is held...
    /// assert!(lane.run(|| ()).await.unwrap_err().is_rejected()); // ...from other callers
    /// assert_eq!(ready.call(" 42 ".into()).await.unwrap(), Ok(42));
    /// # });
    /// ```
    #[track_caller]
    pub fn service<F, Req, Resp>(&self, f: F) -> LaneService<F>
    where
        F: Fn(Req) -> Resp + Send + Sync + 'static,
    {
        LaneService::new(self.lane(), Location::caller(), f)
    }

    /// As [`service`](Self::service), handing `f` the call's token: cancelled when the
    /// call's future is dropped (a tower `timeout` layer above it), when the lane's own
    /// timeout fires, and when the lane shuts down.
    ///
    /// # Examples
    ///
    /// ```
    /// use async_bridge::Offloader;
    /// use tokio_util::sync::CancellationToken;
    /// use tower::{Service, ServiceExt};
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let lane = Offloader::builder("reports").build().unwrap();
    /// let mut live = lane.service_cancellable(|_: (), cancel: &CancellationToken| !cancel.is_cancelled());
    /// assert!(live.ready().await.unwrap().call(()).await.unwrap());
    /// # });
    /// ```
    #[track_caller]
    pub fn service_cancellable<F, Req, Resp>(&self, f: F) -> LaneService<Cancellable<F>>
    where
        F: Fn(Req, &CancellationToken) -> Resp + Send + Sync + 'static,
    {
        LaneService::new(self.lane(), Location::caller(), Cancellable(f))
    }
}

impl ComputePool {
    /// This pool as a `tower::Service<Req>` that runs `f(req)` on the pool for each
    /// call; its `poll_ready` reserves a place (one of `threads` running, or one of
    /// `max_queue` waiting; see [`LaneService`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use async_bridge::ComputePool;
    /// use tower::{Service, ServiceExt};
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let pool = ComputePool::builder("hash").threads(1).build().unwrap();
    /// let mut factorial = pool.service(|n: u64| (1..=n).product::<u64>());
    /// assert_eq!(factorial.ready().await.unwrap().call(5).await.unwrap(), 120);
    /// # });
    /// ```
    #[track_caller]
    pub fn service<F, Req, Resp>(&self, f: F) -> LaneService<F>
    where
        F: Fn(Req) -> Resp + Send + Sync + 'static,
    {
        LaneService::new(self.lane(), Location::caller(), f)
    }

    /// As [`service`](Self::service), handing `f` the call's token (as
    /// [`Offloader::service_cancellable`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use async_bridge::ComputePool;
    /// use tokio_util::sync::CancellationToken;
    /// use tower::{Service, ServiceExt};
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let pool = ComputePool::builder("search").threads(1).build().unwrap();
    /// let mut count = pool.service_cancellable(|n: u64, cancel: &CancellationToken| {
    ///     (0..n).take_while(|_| !cancel.is_cancelled()).count()
    /// });
    /// assert_eq!(count.ready().await.unwrap().call(5).await.unwrap(), 5);
    /// # });
    /// ```
    #[track_caller]
    pub fn service_cancellable<F, Req, Resp>(&self, f: F) -> LaneService<Cancellable<F>>
    where
        F: Fn(Req, &CancellationToken) -> Resp + Send + Sync + 'static,
    {
        LaneService::new(self.lane(), Location::caller(), Cancellable(f))
    }
}

impl<T: Send + Sync + 'static> Offloaded<T> {
    /// This carrier as a `tower::Service<Req>` that runs `f(&value, req)` on its lane for
    /// each call, the value borrowed shared (as [`Offloaded::run`]); its `poll_ready`
    /// reserves a place in the lane (see [`LaneService`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use async_bridge::{Offloaded, Offloader};
    /// use tower::{Service, ServiceExt};
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let lane = Offloader::builder("rates").build().unwrap();
    /// let rates = Offloaded::new(vec![1.5, 2.0], lane);
    /// let mut convert = rates.service(|r: &Vec<f64>, (currency, amount): (usize, f64)| r[currency] * amount);
    /// assert_eq!(convert.ready().await.unwrap().call((1, 21.0)).await.unwrap(), 42.0);
    /// # });
    /// ```
    #[track_caller]
    pub fn service<F, Req, Resp>(
        &self,
        f: F,
    ) -> LaneService<impl Fn(Req) -> Resp + Send + Sync + 'static>
    where
        F: Fn(&T, Req) -> Resp + Send + Sync + 'static,
    {
        let value = Arc::clone(self.value());
        LaneService::new(self.lane().lane(), Location::caller(), move |req| {
            f(&value.read(), req)
        })
    }
}

/// A [`Worker<T>`] or a [`WorkerPool<T>`] as a `tower::Service<Req>` over a method of
/// its object: each call runs `f(&mut object, req)` on the worker's thread.
///
/// `poll_ready` is always ready: the mailbox bounds by waiting, so a call beyond its
/// places waits (FIFO, holding no thread) inside its future rather than being refused.
/// A `load_shed` layer above it therefore never sheds; bound it with a
/// `concurrency_limit` (below the mailbox size) and a `timeout` instead. The future is
/// [`WorkerCall`] and the error [`WorkerError`].
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use async_bridge::Worker;
/// use tower::{Service, ServiceBuilder, ServiceExt};
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let counter = Worker::builder("counter").spawn(|| Ok::<_, std::io::Error>(0u64))?;
/// let mut add = ServiceBuilder::new()
///     .concurrency_limit(64)
///     .timeout(Duration::from_secs(5))
///     .service(counter.service(|total: &mut u64, n: u64| {
///         *total += n;
///         *total
///     }));
/// assert_eq!(add.ready().await?.call(40).await?, 40);
/// assert_eq!(add.ready().await?.call(2).await?, 42);
/// # Ok::<(), tower::BoxError>(())
/// # }).unwrap();
/// ```
#[must_use = "a service does nothing unless called"]
pub struct WorkerService<T: 'static, F> {
    target: Target<T>,
    f: Arc<F>,
    site: Site,
}

enum Target<T: 'static> {
    One(Worker<T>),
    Pool(WorkerPool<T>),
}

impl<T: 'static, F, Req, Resp> Service<Req> for WorkerService<T, F>
where
    F: Fn(&mut T, Req) -> Resp + Send + Sync + 'static,
    Req: Send + 'static,
    Resp: Send + 'static,
{
    type Response = Resp;
    type Error = WorkerError;
    type Future = WorkerCall<T, Resp>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), WorkerError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Req) -> WorkerCall<T, Resp> {
        let f = Arc::clone(&self.f);
        let run = move |object: &mut T| f(object, req);
        WorkerCall(match &self.target {
            Target::One(worker) => worker.call_at(self.site, run),
            Target::Pool(pool) => pool.call_at(self.site, run),
        })
    }
}

impl<T: 'static, F> Clone for WorkerService<T, F> {
    fn clone(&self) -> Self {
        WorkerService {
            target: match &self.target {
                Target::One(worker) => Target::One(worker.clone()),
                Target::Pool(pool) => Target::Pool(pool.clone()),
            },
            f: Arc::clone(&self.f),
            site: self.site,
        }
    }
}

impl<T: 'static, F> fmt::Debug for WorkerService<T, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (kind, name) = match &self.target {
            Target::One(worker) => ("worker", worker.name()),
            Target::Pool(pool) => ("pool", pool.name()),
        };
        f.debug_struct("WorkerService").field(kind, &name).finish()
    }
}

/// The future of a [`WorkerService`] call: the worker call's own future, named.
///
/// Dropped before its call starts, the call never runs; dropped while it runs, the call
/// finishes and its result is dropped (as [`Worker::call`]).
///
/// # Examples
///
/// ```
/// use async_bridge::{Worker, WorkerCall, WorkerService};
/// use tower::Service;
///
/// struct Pending {
///     call: WorkerCall<Vec<u8>, usize>,
/// }
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let buffer = Worker::builder("buffer").spawn(|| Ok::<_, std::io::Error>(vec![1, 2, 3]))?;
/// let mut len: WorkerService<Vec<u8>, _> = buffer.service(|b: &mut Vec<u8>, ()| b.len());
/// let pending = Pending { call: len.call(()) };
/// assert_eq!(pending.call.await?, 3);
/// # Ok::<(), async_bridge::WorkerError>(())
/// # }).unwrap();
/// ```
#[must_use = "futures do nothing unless polled"]
pub struct WorkerCall<T: 'static, R>(Call<T, R>);

impl<T: 'static, R> Future for WorkerCall<T, R> {
    type Output = Result<R, WorkerError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0).poll(cx)
    }
}

impl<T: 'static, R> fmt::Debug for WorkerCall<T, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WorkerCall(..)")
    }
}

impl<T: 'static> Worker<T> {
    /// This worker as a `tower::Service<Req>` that runs `f(&mut object, req)` on its
    /// thread for each call (see [`WorkerService`]: always ready, the mailbox bounds by
    /// waiting).
    ///
    /// # Examples
    ///
    /// ```
    /// use async_bridge::Worker;
    /// use tower::{Service, ServiceExt};
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let db = Worker::builder("db").spawn(rusqlite::Connection::open_in_memory).unwrap();
    /// let mut query = db.service(|c: &mut rusqlite::Connection, sql: &'static str| {
    ///     c.query_row(sql, [], |row| row.get::<_, i64>(0))
    /// });
    /// assert_eq!(query.ready().await.unwrap().call("SELECT 6 * 7").await.unwrap().unwrap(), 42);
    /// # });
    /// ```
    #[track_caller]
    pub fn service<F, Req, Resp>(&self, f: F) -> WorkerService<T, F>
    where
        F: Fn(&mut T, Req) -> Resp + Send + Sync + 'static,
    {
        WorkerService {
            target: Target::One(self.clone()),
            f: Arc::new(f),
            site: Location::caller(),
        }
    }
}

impl<T: 'static> WorkerPool<T> {
    /// This pool as a `tower::Service<Req>`: each call runs `f(&mut object, req)` on the
    /// least-loaded worker, chosen when `call` is called (see [`WorkerService`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use async_bridge::WorkerPool;
    /// use tower::{Service, ServiceExt};
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let pool = WorkerPool::builder("shards").workers(2).spawn(|| Ok::<_, std::io::Error>(10u32)).unwrap();
    /// let mut scale = pool.service(|base: &mut u32, n: u32| *base * n);
    /// assert_eq!(scale.ready().await.unwrap().call(4).await.unwrap(), 40);
    /// # });
    /// ```
    #[track_caller]
    pub fn service<F, Req, Resp>(&self, f: F) -> WorkerService<T, F>
    where
        F: Fn(&mut T, Req) -> Resp + Send + Sync + 'static,
    {
        WorkerService {
            target: Target::Pool(self.clone()),
            f: Arc::new(f),
            site: Location::caller(),
        }
    }
}

/// A blocking face over any `tower::Service`: old sync code calls a new async service.
///
/// [`call`](Self::call) waits for the service's readiness and its response through the
/// facade entry ([`Blocking::call_mut`], [`block_on`](crate::block_on)): it works from a
/// plain thread, a blocking pool thread, a rayon thread and a multi-thread runtime
/// worker; on the thread of a current_thread runtime it refuses with
/// [`is_would_deadlock`](BlockOnError::is_would_deadlock) and the service is not called.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use async_bridge::BlockingService;
/// use tower::{service_fn, ServiceBuilder};
///
/// async fn greet(name: String) -> Result<String, std::convert::Infallible> {
///     tokio::task::yield_now().await;
///     Ok(format!("hello {name}"))
/// }
///
/// // Sync legacy code, calling the new async service.
/// fn legacy_greeting(svc: &mut BlockingService<impl tower::Service<String, Response = String, Error = tower::BoxError>>) -> String {
///     svc.call("ada".into()).unwrap().unwrap()
/// }
///
/// let mut svc = BlockingService::new(
///     ServiceBuilder::new().timeout(Duration::from_secs(5)).service(service_fn(greet)),
/// );
/// assert_eq!(legacy_greeting(&mut svc), "hello ada");
/// ```
#[must_use = "a service does nothing unless called"]
pub struct BlockingService<S> {
    inner: Blocking<S>,
}

impl<S> BlockingService<S> {
    /// Wraps `svc`; its futures run through the global portal where no runtime can
    /// drive them (as [`Blocking::new`]).
    ///
    /// # Examples
    ///
    /// ```
    /// let svc = async_bridge::BlockingService::new(tower::service_fn(|n: u32| async move {
    ///     Ok::<_, std::convert::Infallible>(n + 1)
    /// }));
    /// # drop(svc);
    /// ```
    pub fn new(svc: S) -> Self {
        BlockingService {
            inner: Blocking::new(svc),
        }
    }

    /// Wraps `svc`; its futures run through `portal` (as [`Blocking::with_portal`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use async_bridge::{BlockingService, Portal};
    ///
    /// let portal = Portal::builder().worker_threads(1).build().unwrap();
    /// let mut svc = BlockingService::with_portal(
    ///     tower::service_fn(|n: u32| async move { Ok::<_, std::convert::Infallible>(n * 2) }),
    ///     &portal,
    /// );
    /// assert_eq!(svc.call(21).unwrap(), Ok(42));
    /// ```
    pub fn with_portal(svc: S, portal: &Portal) -> Self {
        BlockingService {
            inner: Blocking::with_portal(svc, portal),
        }
    }

    /// Waits until the service is ready, calls it with `req` and waits for its response.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut double = async_bridge::BlockingService::new(tower::service_fn(|n: u32| async move {
    ///     Ok::<_, std::convert::Infallible>(n * 2)
    /// }));
    /// assert_eq!(double.call(21).unwrap(), Ok(42));
    /// ```
    ///
    /// # Errors
    ///
    /// The outer error is the facade's ([`BlockOnError`], as
    /// [`block_on`](crate::block_on)): the service was not called. The inner result is
    /// the service's own, from `poll_ready` or from its future.
    ///
    /// # Panics
    ///
    /// A panic in the service resumes in the caller.
    #[track_caller]
    pub fn call<Req>(&mut self, req: Req) -> Result<Result<S::Response, S::Error>, BlockOnError>
    where
        S: Service<Req>,
    {
        self.inner.call_mut(async move |svc: &mut S| {
            std::future::poll_fn(|cx| svc.poll_ready(cx)).await?;
            svc.call(req).await
        })
    }

    /// The service.
    ///
    /// # Examples
    ///
    /// ```
    /// let svc = async_bridge::BlockingService::new(7u8);
    /// assert_eq!(*svc.get_ref(), 7);
    /// ```
    pub fn get_ref(&self) -> &S {
        self.inner.get_ref()
    }

    /// The service, mutably.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut svc = async_bridge::BlockingService::new(7u8);
    /// *svc.get_mut() += 1;
    /// assert_eq!(*svc.get_ref(), 8);
    /// ```
    pub fn get_mut(&mut self) -> &mut S {
        self.inner.get_mut()
    }

    /// Unwraps the service.
    ///
    /// # Examples
    ///
    /// ```
    /// let svc = async_bridge::BlockingService::new(7u8);
    /// assert_eq!(svc.into_inner(), 7);
    /// ```
    pub fn into_inner(self) -> S {
        self.inner.into_inner()
    }
}

impl<S> fmt::Debug for BlockingService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BlockingService(..)")
    }
}
