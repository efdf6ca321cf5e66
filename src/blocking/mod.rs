//! Async code behind a blocking API: `block_on`, `Portal`, `Blocking<T>` (in progress).
