//! The pricing service the inventory depends on, embedded so the demo needs no set-up:
//! a thread-per-connection TCP server on loopback that answers `PRICE <sku>` after a
//! fixed latency, like a remote service would. It fails the first request of every
//! 50th SKU once, so the legacy retry loop runs too.

use std::collections::HashSet;
use std::io::{self, BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// The service's latency per request.
pub const LATENCY: Duration = Duration::from_millis(5);

/// The price the service answers for `sku`.
pub fn price_of(sku: u32) -> u64 {
    100 + u64::from(sku) * 7 % 900
}

/// Starts the service; it runs until the process exits.
pub fn start() -> io::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let failed_once = Arc::new(Mutex::new(HashSet::new()));
    thread::Builder::new()
        .name("pricing-accept".into())
        .spawn(move || {
            for stream in listener.incoming().flatten() {
                let failed_once = Arc::clone(&failed_once);
                thread::spawn(move || {
                    let mut line = String::new();
                    if BufReader::new(&stream).read_line(&mut line).is_err() {
                        return;
                    }
                    let sku: u32 = line
                        .trim()
                        .trim_start_matches("PRICE ")
                        .parse()
                        .unwrap_or(0);
                    thread::sleep(LATENCY); // the remote service's latency
                    if sku % 50 == 7 && failed_once.lock().unwrap().insert(sku) {
                        let _ = writeln!(&stream, "ERROR overloaded");
                    } else {
                        let _ = writeln!(&stream, "{}", price_of(sku));
                    }
                });
            }
        })?;
    Ok(addr)
}
