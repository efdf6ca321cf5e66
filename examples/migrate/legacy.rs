//! The legacy inventory service, as a team might actually have it: all blocking.
//!
//! - stock and orders in SQLite (rusqlite, one connection owned by the service);
//! - prices from a pricing service over TCP, with a retry loop that sleeps between
//!   attempts;
//! - a receipt digest per order and a daily report (CPU: hashing real data);
//! - sync callers: one thread per client, each calling `place_order` in turn.
//!
//! The migration does not edit this code: `migrated.rs` wraps these same functions. The
//! `Orders` trait at the end only names the service's interface, for `#[bridge]`.
//! The only change made for testability is the one MIGRATION.md step 7 argues for:
//! `thread::sleep` became `clock::sleep` (identical outside tests).

use std::io::{self, BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use async_bridge::clock;
use rusqlite::{params, Connection, OptionalExtension};

/// How many items the catalogue has.
pub const ITEMS: u32 = 200;

/// Opens (creating if needed) the inventory database and fills the catalogue.
pub fn open_db(path: &std::path::Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.execute_batch(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = NORMAL;
         CREATE TABLE IF NOT EXISTS items (sku INTEGER PRIMARY KEY, name TEXT NOT NULL, stock INTEGER NOT NULL);
         CREATE TABLE IF NOT EXISTS orders (id INTEGER PRIMARY KEY, sku INTEGER NOT NULL, qty INTEGER NOT NULL,
                                            price INTEGER NOT NULL, digest INTEGER NOT NULL);",
    )?;
    let tx = conn.unchecked_transaction()?;
    for sku in 0..ITEMS {
        tx.execute(
            "INSERT OR IGNORE INTO items (sku, name, stock) VALUES (?1, ?2, 1000000)",
            params![sku, format!("item-{sku}")],
        )?;
    }
    tx.commit()?;
    Ok(conn)
}

/// Reads an item's stock. `None` for an unknown SKU.
pub fn stock(conn: &Connection, sku: u32) -> rusqlite::Result<Option<i64>> {
    conn.query_row("SELECT stock FROM items WHERE sku = ?1", [sku], |r| {
        r.get(0)
    })
    .optional()
}

/// Records an order and takes its quantity from stock, in one transaction.
pub fn record_order(
    conn: &Connection,
    sku: u32,
    qty: u32,
    price: u64,
    digest: u64,
) -> rusqlite::Result<i64> {
    let tx = conn.unchecked_transaction()?;
    tx.execute(
        "UPDATE items SET stock = stock - ?1 WHERE sku = ?2",
        params![qty, sku],
    )?;
    tx.execute(
        "INSERT INTO orders (sku, qty, price, digest) VALUES (?1, ?2, ?3, ?4)",
        // SQLite integers are signed: store the digest's bits.
        params![sku, qty, price as i64, digest as i64],
    )?;
    let id = tx.last_insert_rowid();
    tx.commit()?;
    Ok(id)
}

/// Asks the pricing service for a SKU's unit price, retrying with a doubling backoff.
pub fn fetch_price(addr: SocketAddr, sku: u32) -> io::Result<u64> {
    let mut backoff = Duration::from_millis(2);
    let mut attempt = 0;
    loop {
        match try_fetch_price(addr, sku) {
            Ok(price) => return Ok(price),
            Err(err) if attempt < 4 => {
                attempt += 1;
                eprintln!("pricing: attempt {attempt} for sku {sku} failed ({err}); retrying in {backoff:?}");
                clock::sleep(backoff);
                backoff *= 2;
            }
            Err(err) => return Err(err),
        }
    }
}

fn try_fetch_price(addr: SocketAddr, sku: u32) -> io::Result<u64> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    writeln!(stream, "PRICE {sku}")?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line)?;
    line.trim().parse().map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("bad price {line:?}: {e}"),
        )
    })
}

/// The receipt's digest: FNV-1a over the receipt's 64 KiB body (CPU work).
pub fn receipt_digest(sku: u32, qty: u32, price: u64) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    let seed = u64::from(sku) << 32 | u64::from(qty) ^ price;
    for i in 0..64 * 1024u64 {
        let byte = (seed.wrapping_add(i)).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 56;
        hash = (hash ^ byte).wrapping_mul(0x100_0000_01b3);
    }
    hash
}

/// One recorded order, as the report reads it.
pub type OrderRow = (u32, u32, u64, u64);

/// Every order, oldest first (DB work).
pub fn order_rows(conn: &Connection) -> rusqlite::Result<Vec<OrderRow>> {
    let mut stmt = conn.prepare("SELECT sku, qty, price, digest FROM orders ORDER BY id")?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get(0)?,
            r.get(1)?,
            r.get::<_, i64>(2)? as u64,
            r.get::<_, i64>(3)? as u64,
        ))
    })?;
    rows.collect()
}

/// The daily report over the orders: revenue, and a digest that re-checks every receipt
/// (CPU work).
pub fn report_of(rows: &[OrderRow]) -> (u64, u64) {
    rows.iter()
        .fold((0, 0), |(revenue, digest), &(sku, qty, price, d)| {
            (
                revenue + u64::from(qty) * price,
                digest.rotate_left(7) ^ d ^ receipt_digest(sku, qty, price),
            )
        })
}

/// The daily report, as the legacy service computes it: read, then digest.
pub fn daily_report(conn: &Connection) -> rusqlite::Result<(u64, u64)> {
    Ok(report_of(&order_rows(conn)?))
}

/// The legacy service: one connection, used by one caller at a time.
pub struct Inventory {
    pub conn: Connection,
    pub pricing: SocketAddr,
}

/// An order the service accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placed {
    pub sku: u32,
    pub price: u64,
    pub digest: u64,
}

impl Inventory {
    /// One request: check stock, price it, digest the receipt, record it.
    pub fn place_order(&mut self, sku: u32, qty: u32) -> io::Result<Placed> {
        let stock = stock(&self.conn, sku).map_err(io::Error::other)?;
        if stock.unwrap_or(0) < i64::from(qty) {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("sku {sku} out of stock"),
            ));
        }
        let price = fetch_price(self.pricing, sku)?;
        let digest = receipt_digest(sku, qty, price);
        record_order(&self.conn, sku, qty, price, digest).map_err(io::Error::other)?;
        Ok(Placed { sku, price, digest })
    }
}

/// The service's interface as a trait: the one addition `#[bridge]` needs (MIGRATION.md
/// step 8). Each method calls the code above, which stays as it was. `#[bridge]`
/// generates `AsyncOrders`, its async twin, implemented for a `Worker<Inventory>`.
#[async_bridge::bridge(async = AsyncOrders)]
pub trait Orders {
    /// One request: [`Inventory::place_order`].
    fn place_order(&mut self, sku: u32, qty: u32) -> io::Result<Placed>;
    /// The daily report: [`daily_report`] over the service's connection.
    fn daily_report(&self) -> io::Result<(u64, u64)>;
}

impl Orders for Inventory {
    fn place_order(&mut self, sku: u32, qty: u32) -> io::Result<Placed> {
        Inventory::place_order(self, sku, qty)
    }

    fn daily_report(&self) -> io::Result<(u64, u64)> {
        daily_report(&self.conn).map_err(io::Error::other)
    }
}
