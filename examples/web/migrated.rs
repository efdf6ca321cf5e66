//! The migrated service: axum serves every route. Routes in [`NATIVE`] are native async
//! code; every other route still runs the legacy handler, through the bridge: a lane
//! as a `tower::Service` under `load_shed` and `timeout` layers.
//!
//! Moving a route from the legacy handlers to native code is one line: add its path to
//! [`NATIVE`] (its native handler is in [`native`]).

use std::sync::Arc;
use std::time::Duration;

use async_bridge::{OffloadError, Offloader};
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, MethodRouter};
use axum::Router;
use tokio_util::sync::CancellationToken;
use tower::util::BoxCloneSyncService;
use tower::{BoxError, ServiceBuilder, ServiceExt};

use crate::legacy::{self, Legacy};

/// The routes already moved to native async handlers. Add `"/digest/{n}"` here and
/// the CPU-heavy route runs natively (on `compute`) instead of through the legacy
/// handler.
pub const NATIVE: &[&str] = &["/health"];

/// Every route the service has (the legacy server's routes).
pub const ROUTES: &[&str] = &[
    "/health",
    "/orders",
    "/orders/{id}",
    "/digest/{n}",
    "/slow",
    "/panic",
];

/// The legacy handlers as one service: a lane, bounded, under tower's layers.
type LegacyService = BoxCloneSyncService<legacy::Request, legacy::Response, BoxError>;

#[derive(Clone)]
pub struct App {
    legacy: LegacyService,
}

/// The limits of the bridge in front of the legacy handlers.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_concurrency: usize,
    pub max_queue: usize,
    pub timeout: Duration,
}

/// Builds the router over `state` and the lane it makes, with the routes in [`NATIVE`]
/// native. Returns the lane too, for its stats.
pub fn router(state: Arc<Legacy>, limits: Limits) -> (Router, Offloader) {
    router_with(state, limits, NATIVE)
}

/// As [`router`], with the routes in `native` native.
pub fn router_with(state: Arc<Legacy>, limits: Limits, native: &[&str]) -> (Router, Offloader) {
    let lane = Offloader::builder("legacy-handlers")
        .max_concurrency(limits.max_concurrency)
        .max_queue(limits.max_queue)
        .build()
        .unwrap();
    let handlers =
        lane.service_cancellable(move |req: legacy::Request, cancel: &CancellationToken| {
            legacy::handle(&state, req, &|| cancel.is_cancelled())
        });
    let legacy = BoxCloneSyncService::new(
        ServiceBuilder::new()
            .load_shed()
            .timeout(limits.timeout)
            .service(handlers),
    );
    let mut router = Router::new();
    for &path in ROUTES {
        router = router.route(path, route(path, native));
    }
    let router = router.fallback(through_bridge).with_state(App { legacy });
    (router, lane)
}

fn route(path: &str, native: &[&str]) -> MethodRouter<App> {
    if native.contains(&path) {
        native::route(path)
    } else {
        any(through_bridge)
    }
}

/// A legacy route: the request goes to the legacy handler through the bridge.
async fn through_bridge(State(app): State<App>, req: axum::extract::Request) -> Response {
    let (parts, body) = req.into_parts();
    let Ok(body) = axum::body::to_bytes(body, 1 << 20).await else {
        return text(400, "bad body".into());
    };
    let req = legacy::Request {
        method: parts.method.as_str().to_owned(),
        path: parts.uri.path().to_owned(),
        body: String::from_utf8_lossy(&body).into_owned(),
    };
    match app.legacy.oneshot(req).await {
        Ok(resp) => text(resp.status, resp.body),
        Err(err) => from_error(&err),
    }
}

/// The bridge's errors as the legacy server's answers.
fn from_error(err: &BoxError) -> Response {
    let resp = if err.is::<tower::timeout::error::Elapsed>() {
        legacy::Response::timed_out()
    } else if err.is::<tower::load_shed::error::Overloaded>() {
        legacy::Response {
            status: 503,
            body: "overloaded".into(),
        }
    } else if err
        .downcast_ref::<OffloadError>()
        .is_some_and(OffloadError::is_panic)
    {
        legacy::Response::internal_error()
    } else {
        legacy::Response {
            status: 503,
            body: err.to_string(),
        }
    };
    text(resp.status, resp.body)
}

fn text(status: u16, body: String) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, [(header::CONTENT_TYPE, legacy::CONTENT_TYPE)], body).into_response()
}

/// The native async handlers of the routes in [`NATIVE`].
pub mod native {
    use super::*;

    /// A native route; its other methods still go to the legacy handlers (which answer
    /// them as they always did).
    pub fn route(path: &str) -> MethodRouter<App> {
        let native = match path {
            "/health" => get(health),
            "/digest/{n}" => get(digest),
            other => panic!("no native handler for {other}"),
        };
        native.fallback(through_bridge)
    }

    async fn health() -> Response {
        text(200, "ok".into())
    }

    async fn digest(Path(n): Path<String>) -> Response {
        match n.parse::<u64>() {
            Ok(n) if n <= 10_000 => {
                let digest = async_bridge::compute(move || legacy::digest(n)).await;
                text(200, format!("{digest:016x}"))
            }
            _ => text(400, "bad size".into()),
        }
    }
}

/// Serves `router` on a loopback port; returns the port.
pub async fn serve(router: Router) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    port
}
