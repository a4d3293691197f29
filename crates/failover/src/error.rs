//! The failover set's own errors.

use bulwark_core::BoxError;
use std::error::Error;
use std::fmt;
use std::time::Duration;

/// One target's failure, as listed by [`AllFailed`].
#[derive(Debug)]
pub struct TargetFailure {
    /// The target's index in the ordered list.
    pub index: usize,
    /// The target's name.
    pub target: String,
    /// What went wrong ("connection refused", "timed out after 5s", "503 Service Unavailable",
    /// "not ready").
    pub reason: String,
    /// The error the target's call returned, as it came (downcast it: a refused connection is
    /// the transport's own error, a `std::io::Error` of kind `ConnectionRefused` say); `None`
    /// when the target answered with a failure response, timed out or was not ready.
    pub error: Option<BoxError>,
}

/// Every target was tried and failed, and the last one failed with an error (had it answered
/// with a response, that response would have been returned as it came).
///
/// Each target's own error is kept ([`TargetFailure::error`]), and [`Error::source`] is the
/// last one tried that failed with an error, so walking `source()` reaches what the transport
/// said (a refused connection, say):
///
/// ```
/// use bulwark_failover::{AllFailed, TargetFailure};
/// use std::error::Error;
/// use std::io;
/// let refused = io::Error::from(io::ErrorKind::ConnectionRefused);
/// let err = AllFailed::new(vec![
///     TargetFailure { index: 0, target: "0".into(), reason: refused.to_string(), error: Some(refused.into()) },
///     TargetFailure { index: 1, target: "1".into(), reason: "timed out after 5s".into(), error: None },
///     TargetFailure { index: 2, target: "2".into(), reason: "503 Service Unavailable".into(), error: None },
/// ]);
/// assert_eq!(
///     err.to_string(),
///     "all 3 failover targets failed: [0] connection refused; [1] timed out after 5s; [2] 503 Service Unavailable"
/// );
/// let source = err.source().unwrap().downcast_ref::<io::Error>().unwrap();
/// assert_eq!(source.kind(), io::ErrorKind::ConnectionRefused);
/// ```
#[derive(Debug)]
pub struct AllFailed {
    failures: Vec<TargetFailure>,
}

impl AllFailed {
    /// The error for these failures, in the order the targets were tried.
    pub fn new(failures: Vec<TargetFailure>) -> Self {
        AllFailed { failures }
    }

    /// Each target's failure, in the order they were tried.
    pub fn failures(&self) -> &[TargetFailure] {
        &self.failures
    }
}

impl fmt::Display for AllFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "all {} failover targets failed: ", self.failures.len())?;
        for (i, failure) in self.failures.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            if failure.target == failure.index.to_string() {
                write!(f, "[{}] {}", failure.index, failure.reason)?;
            } else {
                write!(
                    f,
                    "[{}] {}: {}",
                    failure.index, failure.target, failure.reason
                )?;
            }
        }
        Ok(())
    }
}

impl Error for AllFailed {
    /// The error of the last target tried that failed with one.
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.failures
            .iter()
            .rev()
            .find_map(|f| f.error.as_deref())
            .map(|e| e as &(dyn Error + 'static))
    }
}

/// Why no target could take a request, as the targets said (see [`bulwark_core::hint`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Unavailable {
    /// Targets were not ready (full pools, half-open breakers with their probes under way,
    /// targets that failed for good, or that did not say why).
    NoneReady,
    /// Every target is a health gate that says it is unhealthy.
    NoneHealthy,
    /// Every target is refused by its open circuit (a circuit breaker in readiness mode).
    /// When none probes before the request would stop waiting, the request fails at once.
    CircuitsOpen,
    /// Every target is at its concurrency limit (a bulkhead in readiness mode), and none
    /// freed a place in time.
    AllFull,
}

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Unavailable::NoneReady => "no target is ready",
            Unavailable::NoneHealthy => "no target is healthy",
            Unavailable::CircuitsOpen => "every target's circuit is open",
            Unavailable::AllFull => "every target is at its concurrency limit",
        })
    }
}

/// No target became ready within `wait_for_ready` (or every one is refused by an open circuit
/// that probes only after it): every one was not ready (an open breaker in readiness mode, an
/// unhealthy health gate, an ejected endpoint, a full connection pool) or had failed for good.
///
/// ```
/// use bulwark_failover::{NoTargetReady, Unavailable};
/// use std::time::Duration;
/// let e = NoTargetReady {
///     targets: 2,
///     reason: Unavailable::CircuitsOpen,
///     retry_after: Some(Duration::from_secs(12)),
///     waited: Duration::ZERO,
/// };
/// assert_eq!(
///     e.to_string(),
///     "none of the 2 failover targets was ready: every target's circuit is open; \
///      the first probe is in 12000 ms"
/// );
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoTargetReady {
    /// How many targets there are.
    pub targets: usize,
    /// Why.
    pub reason: Unavailable,
    /// When a target is known to take requests again: the soonest first probe of an open
    /// circuit (for [`Unavailable::CircuitsOpen`]); `None` when none is foreseen.
    pub retry_after: Option<Duration>,
    /// How long the request waited (less than `wait_for_ready` when it failed at once).
    pub waited: Duration,
}

impl fmt::Display for NoTargetReady {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = format!("none of the {} failover targets was ready", self.targets);
        bulwark_core::hint::write_unready(
            f,
            &what,
            self.waited,
            &self.reason,
            self.retry_after,
            "the first probe is",
        )
    }
}

impl std::error::Error for NoTargetReady {}
