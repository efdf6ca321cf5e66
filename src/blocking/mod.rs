//! Async code behind a blocking API: the [`block_on`] function, the [`Portal`] that
//! facades run on, and [`Blocking<T>`], an async value with a blocking face.
//!
//! Every facade call goes through one entry ([`entry`]), which finds out where it is
//! called from ([`context`]) and polls the future on the calling thread ([`park`]).

mod block_on;
mod context;
mod entry;
mod error;
mod park;
mod portal;
mod wrapper;

pub use block_on::block_on;
pub(crate) use context::{drop_off_the_executor, drop_where_blocking_is_allowed};
pub use error::BlockOnError;
pub use portal::{Portal, PortalBuilder};
pub use wrapper::Blocking;
