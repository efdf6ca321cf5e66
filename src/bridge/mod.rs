//! Trait bridges: `#[bridge]` gives a trait its twin on the other side of the bridge, one
//! error type for every carrier ([`CallError`]), and the lane carrier
//! ([`Offloaded<T>`]).
//!
//! The attribute itself lives in the `async-bridge-macros` crate; it is re-exported, and
//! documented, as [`crate::bridge`] (its documentation is `bridge.md` beside this file). The generated code refers only to
//! `::async_bridge::...` paths (the async-trait attribute and the helpers below are
//! re-exported under `__private`), so a crate using `#[bridge]` needs no other
//! dependency.

mod error;
mod offloaded;
#[doc(hidden)]
pub mod private;

pub use error::CallError;
pub use offloaded::Offloaded;
