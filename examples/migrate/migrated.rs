//! The same service after the migration: an async API over the unchanged legacy code.
//!
//! - the SQLite connection lives on its own thread behind a `Worker` (MIGRATION.md
//!   step 3): every statement runs there, in order, and the connection never moves;
//! - the blocking pricing client runs on an `Offloader` lane with limits and a timeout
//!   (step 2);
//! - the receipt digest and the report's CPU part run on rayon through `compute`
//!   (step 4);
//! - old sync callers keep calling it through `Blocking<AsyncInventory>` (step 5);
//! - it implements `AsyncOrders`, the async twin of the legacy `Orders` trait (steps 8
//!   and 9), in place of the bridged legacy service, its callers unchanged.

use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use async_bridge::{compute, CallError, Offloader, Worker};
use rusqlite::Connection;

use crate::legacy::{self, AsyncOrders, Placed};

pub struct AsyncInventory {
    db: Worker<Connection>,
    pricing: Offloader,
    pricing_addr: SocketAddr,
}

impl AsyncInventory {
    pub fn open(db_path: &Path, pricing_addr: SocketAddr) -> io::Result<Self> {
        let path = db_path.to_owned();
        let db = Worker::builder("inventory-db")
            .mailbox(1_024)
            .spawn(move || legacy::open_db(&path))?;
        let pricing = Offloader::builder("pricing")
            .max_concurrency(64)
            .max_queue(10_000)
            .timeout(Duration::from_secs(10))
            .build()?;
        Ok(AsyncInventory {
            db,
            pricing,
            pricing_addr,
        })
    }

    /// The legacy `place_order`, each step where it belongs, in the legacy order: check
    /// the stock (an order out of stock is refused before the pricing call, as it was),
    /// price it, digest the receipt, record it.
    pub async fn place_order(&self, sku: u32, qty: u32) -> io::Result<Placed> {
        self.db
            .call(move |conn| check_stock(conn, sku, qty))
            .await??; // `?` for the worker (shut down, panic), `?` for the check's `io::Error`
        let addr = self.pricing_addr;
        let price = self
            .pricing
            .run(move || legacy::fetch_price(addr, sku))
            .await??;
        let digest = compute(move || legacy::receipt_digest(sku, qty, price)).await;
        // Other orders ran while this one was priced (the legacy service held its only
        // connection for the whole request, so it checked once): the trip that records
        // checks again, so two orders for the last units cannot both be recorded.
        self.db
            .call(move |conn| {
                check_stock(conn, sku, qty)?;
                legacy::record_order(conn, sku, qty, price, digest).map_err(io::Error::other)
            })
            .await??;
        Ok(Placed { sku, price, digest })
    }

    /// The daily report: rows read on the database's thread, digested on rayon.
    pub async fn daily_report(&self) -> io::Result<(u64, u64)> {
        let rows = self
            .db
            .call(|conn| legacy::order_rows(conn))
            .await?
            .map_err(io::Error::other)?;
        Ok(compute(move || legacy::report_of(&rows)).await)
    }
}

/// The legacy stock check, with the legacy error.
fn check_stock(conn: &Connection, sku: u32, qty: u32) -> io::Result<()> {
    let stock = legacy::stock(conn, sku).map_err(io::Error::other)?;
    if stock.unwrap_or(0) < i64::from(qty) {
        let msg = format!("sku {sku} out of stock");
        return Err(io::Error::new(io::ErrorKind::NotFound, msg));
    }
    Ok(())
}

/// The end of the migration: the hand-migrated service implements the bridged trait's
/// async twin natively, so callers holding a `dyn AsyncOrders` (first served by the
/// legacy service behind a `Worker`) do not change.
#[async_trait::async_trait]
impl AsyncOrders for AsyncInventory {
    async fn place_order(&self, sku: u32, qty: u32) -> Result<io::Result<Placed>, CallError> {
        Ok(AsyncInventory::place_order(self, sku, qty).await)
    }

    async fn daily_report(&self) -> Result<io::Result<(u64, u64)>, CallError> {
        Ok(AsyncInventory::daily_report(self).await)
    }
}
