//! Who submitted a piece of work: its kind, the name of its lane (or worker, pool or
//! portal) and the call site. Errors, reports, the virtual-time ledger and tracing spans
//! all name work by its [`Origin`].

use std::fmt;
use std::panic::Location;
use std::sync::Arc;

/// A call site, as `#[track_caller]` gives it.
pub(crate) type Site = &'static Location<'static>;

/// Which kind of crossing a piece of work is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Kind {
    /// `unblock` on tokio's blocking pool.
    Unblock,
    /// An `Offloader` lane.
    Offload,
    /// `compute` or a `ComputePool`, on rayon.
    Compute,
    /// A blocking facade entry: `block_on`, a `Portal` or a `Blocking<T>` call.
    Facade,
    /// A call into a `Worker` or a `WorkerPool`, on the worker's own thread.
    Worker,
    /// A lease on a `Worker` (or one worker of a pool): it holds the object for its
    /// holder's calls.
    Lease,
    /// A blocking hop of an `Unblock<T>`: read-ahead, write-behind, seek, flush, `call`.
    Io,
    /// A call of a `#[bridge]` twin's method. Only the ledger names it: the work itself
    /// runs with the origin of its carrier (a worker, a lane, a facade), whose errors and
    /// reports name the carrier.
    Twin,
}

impl Kind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Kind::Unblock => "unblock",
            Kind::Offload => "offload",
            Kind::Compute => "compute",
            Kind::Facade => "facade",
            Kind::Worker => "worker",
            Kind::Lease => "lease",
            Kind::Io => "io",
            Kind::Twin => "twin",
        }
    }
}

/// Who submitted a piece of work: its kind, its lane (or worker, or pool) name and its
/// call site.
#[derive(Clone)]
pub(crate) struct Origin {
    pub(crate) kind: Kind,
    pub(crate) name: Option<Arc<str>>,
    pub(crate) site: Site,
}

impl Origin {
    pub(crate) fn new(kind: Kind, name: Option<Arc<str>>, site: Site) -> Self {
        Origin { kind, name, site }
    }
}

impl fmt::Debug for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            Some(name) => write!(
                f,
                "{} `{}` called at {}",
                self.kind.as_str(),
                name,
                self.site
            ),
            None => write!(f, "{} called at {}", self.kind.as_str(), self.site),
        }
    }
}
