//! The error every builder of the crate returns for a bad configuration.

use std::error::Error;
use std::fmt;
use std::io;

/// A builder was given a configuration that cannot work.
///
/// Returned by `build()` of an [`Offloader`](crate::Offloader), a
/// [`ComputePool`](crate::ComputePool) and a [`Portal`](crate::Portal), and by the
/// watchdog's `start()`, instead of a panic from deep inside tokio or rayon. A worker's
/// `spawn()` returns a [`WorkerError`](crate::WorkerError) instead (its maker can fail
/// too), with [`is_config`](crate::WorkerError::is_config) and this error as its
/// source. The message names what was being built and which setting is wrong.
///
/// # Examples
///
/// ```
/// use async_bridge::Offloader;
///
/// let err = Offloader::builder("legacy-db").max_concurrency(0).build().unwrap_err();
/// assert_eq!(
///     err.to_string(),
///     "invalid configuration for `legacy-db`: max_concurrency must be at least 1"
/// );
/// ```
#[derive(Debug)]
pub struct ConfigError {
    name: String,
    problem: String,
    source: Option<io::Error>,
}

impl ConfigError {
    pub(crate) fn new(name: &str, problem: impl Into<String>) -> Self {
        ConfigError {
            name: name.to_owned(),
            problem: problem.into(),
            source: None,
        }
    }

    pub(crate) fn with_source(name: &str, problem: impl Into<String>, source: io::Error) -> Self {
        ConfigError {
            source: Some(source),
            ..ConfigError::new(name, problem)
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid configuration for `{}`: {}",
            self.name, self.problem
        )
    }
}

impl Error for ConfigError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.source.as_ref().map(|e| e as &(dyn Error + 'static))
    }
}

impl From<ConfigError> for io::Error {
    fn from(err: ConfigError) -> Self {
        io::Error::new(io::ErrorKind::InvalidInput, err)
    }
}

/// A panic payload kept inside an error.
///
/// In a mutex only so that the error holding it is `Sync` (a payload is `Send` only), as
/// `anyhow` and `io::Error` need.
pub(crate) struct PanicPayload(std::sync::Mutex<crate::job::Panic>);

impl PanicPayload {
    pub(crate) fn new(payload: crate::job::Panic) -> Self {
        PanicPayload(std::sync::Mutex::new(payload))
    }

    pub(crate) fn into_inner(self) -> crate::job::Panic {
        self.0
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Writes "`what` panicked", with the panic's message when it has one.
    pub(crate) fn describe(&self, f: &mut fmt::Formatter<'_>, what: &str) -> fmt::Result {
        let payload = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match crate::job::panic_message(&payload) {
            Some(msg) => write!(f, "{what} panicked: {msg}"),
            None => write!(f, "{what} panicked"),
        }
    }
}
