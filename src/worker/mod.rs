//! Thread-affine legacy objects behind an async API: `Worker<T>`, `WorkerPool<T>` (in progress).
