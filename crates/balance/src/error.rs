//! The balancer's own errors.

use std::fmt;
use std::time::Duration;

/// Why no endpoint could take a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Unavailable {
    /// The balancer has no endpoints.
    NoEndpoints,
    /// Every endpoint is marked unhealthy by its health check.
    NoneHealthy,
    /// Every endpoint that is healthy is ejected for failing.
    AllEjected,
    /// Endpoints are healthy and not ejected, but none was ready (full pools, half-open
    /// breakers with their probes under way).
    NoneReady,
    /// Every endpoint that could take the request is refused by its open circuit (a circuit
    /// breaker in readiness mode, see [`bulwark_core::hint`]). `retry_after` is then the
    /// soonest first probe. When no probe comes before the request would stop waiting, the
    /// request fails at once.
    CircuitsOpen,
    /// Every endpoint that could take the request is at its concurrency limit (a bulkhead in
    /// readiness mode, see [`bulwark_core::hint`]), and none freed a place in time.
    AllFull,
}

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Unavailable::NoEndpoints => "there are no endpoints",
            Unavailable::NoneHealthy => "no endpoint is healthy",
            Unavailable::AllEjected => "every healthy endpoint is ejected",
            Unavailable::NoneReady => "no endpoint is ready",
            Unavailable::CircuitsOpen => "every endpoint's circuit is open",
            Unavailable::AllFull => "every endpoint is at its concurrency limit",
        })
    }
}

/// No endpoint could take the request within `wait_for_ready`.
///
/// ```
/// use bulwark_balance::{NoEndpointReady, Unavailable};
/// use std::time::Duration;
/// let e = NoEndpointReady {
///     reason: Unavailable::AllEjected,
///     retry_after: Some(Duration::from_millis(12_000)),
///     waited: Duration::from_secs(1),
/// };
/// assert_eq!(
///     e.to_string(),
///     "no endpoint could take the request within 1s: every healthy endpoint is ejected; the first returns in 12000 ms"
/// );
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoEndpointReady {
    /// Why.
    pub reason: Unavailable,
    /// When an endpoint is known to come back: the end of the earliest ejection of an
    /// endpoint whose health checks pass, or the soonest first probe of an open circuit
    /// (for [`Unavailable::CircuitsOpen`]). `None` when none is foreseen (nothing ejected or
    /// open; every ejected one also unhealthy, back when its checks pass, which no one can
    /// foretell; circuits forced open).
    pub retry_after: Option<Duration>,
    /// How long the request waited (less than `wait_for_ready` when it failed at once,
    /// every circuit being open with no probe before the wait would end).
    pub waited: Duration,
}

impl fmt::Display for NoEndpointReady {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        bulwark_core::hint::write_unready(
            f,
            "no endpoint could take the request",
            self.waited,
            &self.reason,
            self.retry_after,
            "the first returns",
        )
    }
}

impl std::error::Error for NoEndpointReady {}
