//! The legacy service: sync handlers over blocking state (SQLite through rusqlite, a
//! CPU-heavy route), served by a real synchronous HTTP server (`tiny_http`) with a fixed
//! pool of threads, one request per thread at a time.

use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use async_bridge::clock;
use tokio::sync::Notify;

/// A request as the legacy handlers see it.
#[derive(Clone, Debug)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub body: String,
}

/// A response as the legacy handlers make it (always `text/plain`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub body: String,
}

pub const CONTENT_TYPE: &str = "text/plain; charset=utf-8";

impl Response {
    fn new(status: u16, body: impl Into<String>) -> Self {
        Response {
            status,
            body: body.into(),
        }
    }

    /// What both servers answer for a handler that panicked.
    pub fn internal_error() -> Self {
        Response::new(500, "internal error")
    }

    /// What both servers answer for a handler that ran out of time.
    pub fn timed_out() -> Self {
        Response::new(503, "timed out")
    }
}

/// What the `/slow` handler reports, for tests and the example.
#[derive(Default)]
pub struct SlowProbe {
    /// Notified (one permit) when a `/slow` call starts.
    pub started: Notify,
    /// Notified when a `/slow` call saw it was cancelled.
    pub cancelled: Notify,
    pub cancelled_count: AtomicU32,
    /// Lets running `/slow` calls finish normally.
    pub release: AtomicBool,
}

/// The legacy state: a SQLite connection behind a mutex, as legacy code has it.
pub struct Legacy {
    db: Mutex<rusqlite::Connection>,
    pub slow: SlowProbe,
}

impl Legacy {
    /// A fresh state, seeded with two orders.
    pub fn open() -> Arc<Legacy> {
        let db = rusqlite::Connection::open_in_memory().unwrap();
        db.execute_batch(
            "CREATE TABLE orders (id INTEGER PRIMARY KEY, total INTEGER NOT NULL);
             INSERT INTO orders (total) VALUES (42), (7);",
        )
        .unwrap();
        Arc::new(Legacy {
            db: Mutex::new(db),
            slow: SlowProbe::default(),
        })
    }
}

/// A CPU-heavy digest of `n` thousand numbers.
pub fn digest(n: u64) -> u64 {
    (0..n * 1_000).fold(0u64, |h, x| h.rotate_left(5) ^ x.wrapping_mul(0x9e37_79b9))
}

/// Every legacy route. `cancelled` tells a long handler to give up.
pub fn handle(state: &Legacy, req: Request, cancelled: &dyn Fn() -> bool) -> Response {
    let segments: Vec<&str> = req.path.trim_matches('/').split('/').collect();
    match (req.method.as_str(), segments.as_slice()) {
        ("GET", ["health"]) => Response::new(200, "ok"),
        ("GET", ["orders", id]) => {
            let Ok(id) = id.parse::<i64>() else {
                return Response::new(400, "bad order id");
            };
            let db = state.db.lock().unwrap();
            match db.query_row("SELECT total FROM orders WHERE id = ?1", [id], |r| {
                r.get::<_, i64>(0)
            }) {
                Ok(total) => Response::new(200, format!("order {id}: {total}")),
                Err(rusqlite::Error::QueryReturnedNoRows) => {
                    Response::new(404, format!("no order {id}"))
                }
                Err(err) => Response::new(500, err.to_string()),
            }
        }
        ("POST", ["orders"]) => {
            let Ok(total) = req.body.trim().parse::<i64>() else {
                return Response::new(400, "bad total");
            };
            let db = state.db.lock().unwrap();
            db.execute("INSERT INTO orders (total) VALUES (?1)", [total])
                .unwrap();
            Response::new(201, format!("order {}", db.last_insert_rowid()))
        }
        ("GET", ["digest", n]) => match n.parse::<u64>() {
            Ok(n) if n <= 10_000 => Response::new(200, format!("{:016x}", digest(n))),
            _ => Response::new(400, "bad size"),
        },
        ("GET", ["slow"]) => {
            state.slow.started.notify_one();
            loop {
                if state.slow.release.load(Ordering::SeqCst) {
                    return Response::new(200, "released");
                }
                if cancelled() {
                    state.slow.cancelled_count.fetch_add(1, Ordering::SeqCst);
                    state.slow.cancelled.notify_one();
                    return Response::timed_out();
                }
                clock::sleep(Duration::from_millis(2)); // one step of a long legacy job
            }
        }
        ("GET", ["panic"]) => panic!("a legacy handler panicked"),
        _ => Response::new(404, "not found"),
    }
}

/// Starts the legacy server on a loopback port with `threads` threads; handlers that run
/// longer than `timeout` are told to give up. Returns the port.
pub fn serve(state: Arc<Legacy>, threads: usize, timeout: Duration) -> u16 {
    let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
    let port = server.server_addr().to_ip().unwrap().port();
    for i in 0..threads {
        let (server, state) = (Arc::clone(&server), Arc::clone(&state));
        thread::Builder::new()
            .name(format!("legacy-http-{i}"))
            .spawn(move || {
                for mut rq in server.incoming_requests() {
                    let mut body = String::new();
                    let _ = rq.as_reader().read_to_string(&mut body);
                    let req = Request {
                        method: rq.method().as_str().to_owned(),
                        path: rq.url().split('?').next().unwrap_or("/").to_owned(),
                        body,
                    };
                    let start = clock::now();
                    let cancelled = || clock::now() - start >= timeout;
                    let resp =
                        panic::catch_unwind(AssertUnwindSafe(|| handle(&state, req, &cancelled)))
                            .unwrap_or_else(|_| Response::internal_error());
                    let header =
                        tiny_http::Header::from_bytes("Content-Type", CONTENT_TYPE).unwrap();
                    let _ = rq.respond(
                        tiny_http::Response::from_string(resp.body)
                            .with_status_code(resp.status)
                            .with_header(header),
                    );
                }
            })
            .unwrap();
    }
    port
}
