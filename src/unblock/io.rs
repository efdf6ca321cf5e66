//! `Unblock<T>`: std IO and iterators with an async face (in progress).
