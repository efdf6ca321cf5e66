//! Blocking code behind an async API, on tokio's blocking pool: the [`unblock`] function
//! and the [`Offloader`] lane with limits.

mod error;
mod function;
mod io;
mod offloader;

pub use error::OffloadError;
pub use function::unblock;
pub use io::Unblock;
pub use offloader::{Offloader, OffloaderBuilder};
