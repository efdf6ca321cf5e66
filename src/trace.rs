//! Tracing for the crate's work (feature `tracing`): the one place that knows whether
//! the feature is on. Without it every function here is an empty shell, so the callers
//! carry no conditional compilation.

use std::time::Duration;

use crate::origin::{Origin, Site};

/// A span entered on the current thread, left when dropped.
#[cfg(feature = "tracing")]
pub(crate) type Entered = tracing::span::EnteredSpan;

/// A span entered on the current thread: none without the `tracing` feature.
#[cfg(not(feature = "tracing"))]
pub(crate) struct Entered;

/// The span current where work was submitted: the parent of the work's own span.
#[cfg(feature = "tracing")]
pub(crate) struct Parent(tracing::Span);

/// The span current where work was submitted: there is none without `tracing`.
#[cfg(not(feature = "tracing"))]
pub(crate) struct Parent(std::convert::Infallible);

impl Parent {
    /// The current span, unless there is none (or it is disabled).
    #[inline]
    pub(crate) fn current() -> Option<Parent> {
        #[cfg(feature = "tracing")]
        return Some(tracing::Span::current())
            .filter(|span| !span.is_none())
            .map(Parent);
        #[cfg(not(feature = "tracing"))]
        None
    }
}

/// Enters the span of a job that is about to run on this thread, as a child of the span
/// current where it was submitted (so the legacy code's own events land in the caller's
/// trace), or a root span when there was none.
#[inline]
pub(crate) fn job(origin: &Origin, parent: Option<&Parent>) -> Entered {
    #[cfg(feature = "tracing")]
    return tracing::debug_span!(
        parent: parent.map_or_else(tracing::Span::none, |p| p.0.clone()).id(),
        "async_bridge::job",
        kind = origin.kind.as_str(),
        name = origin.name.as_deref().unwrap_or(""),
        site = %origin.site,
    )
    .entered();
    #[cfg(not(feature = "tracing"))]
    {
        let _ = (origin, parent);
        Entered
    }
}

/// Enters the span of a facade entry on the calling thread.
#[inline]
pub(crate) fn facade(portal: &str, site: Site) -> Entered {
    #[cfg(feature = "tracing")]
    return tracing::debug_span!("async_bridge::facade", portal = portal, site = %site).entered();
    #[cfg(not(feature = "tracing"))]
    {
        let _ = (portal, site);
        Entered
    }
}

/// Warns of a watchdog finding: the executor was blocked for `took` at `site`.
#[inline]
pub(crate) fn blocked(kind: &dyn std::fmt::Debug, site: Site, took: Duration) {
    #[cfg(feature = "tracing")]
    tracing::warn!(
        site = %site,
        blocked_ms = took.as_millis() as u64,
        kind = ?kind,
        "async_bridge::watchdog: the executor was blocked"
    );
    #[cfg(not(feature = "tracing"))]
    let _ = (kind, site, took);
}
