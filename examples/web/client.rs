//! A real async HTTP client (hyper-util's) for both servers, and the closed-loop load.

use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;

pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// A client that opens a connection per request, for both servers alike: `tiny_http`
/// stalls under many concurrent keep-alive connections (with 16 clients on its 16
/// threads, a run never finished here).
pub fn client() -> HttpClient {
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build_http()
}

/// What a server answered: the parts the two servers must agree on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: String,
}

pub async fn send(client: &HttpClient, port: u16, method: &str, path: &str, body: &str) -> Reply {
    let req = hyper::Request::builder()
        .method(method)
        .uri(format!("http://127.0.0.1:{port}{path}"))
        .body(Full::new(Bytes::from(body.to_owned())))
        .unwrap();
    let resp = client.request(req).await.unwrap();
    let status = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get(hyper::header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_owned());
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    Reply {
        status,
        content_type,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// The request mix of the load: (method, path, body).
pub const MIX: &[(&str, &str, &str)] = &[
    ("GET", "/health", ""),
    ("GET", "/orders/1", ""),
    ("GET", "/digest/20", ""),
    ("POST", "/orders", "5"),
];

/// Figures of one closed-loop run.
#[derive(Debug)]
pub struct Figures {
    pub requests: usize,
    pub errors: usize,
    pub per_second: f64,
    pub p50: Duration,
    pub p99: Duration,
}

/// `clients` concurrent clients, each sending `per_client` requests of [`MIX`] one
/// after the other (closed loop).
pub async fn load(client: &HttpClient, port: u16, clients: usize, per_client: usize) -> Figures {
    let start = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let client = client.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(per_client);
                let mut errors = 0;
                for i in 0..per_client {
                    let (method, path, body) = MIX[(c + i) % MIX.len()];
                    let sent = Instant::now();
                    let reply = send(&client, port, method, path, body).await;
                    latencies.push(sent.elapsed());
                    errors += usize::from(reply.status >= 500);
                }
                (latencies, errors)
            })
        })
        .collect();
    let mut latencies = Vec::new();
    let mut errors = 0;
    for task in tasks {
        let (l, e) = task.await.unwrap();
        latencies.extend(l);
        errors += e;
    }
    let elapsed = start.elapsed();
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    Figures {
        requests: latencies.len(),
        errors,
        per_second: latencies.len() as f64 / elapsed.as_secs_f64(),
        p50: at(0.50),
        p99: at(0.99),
    }
}
