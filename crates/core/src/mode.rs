//! [`Mode`]: what a layer that turns calls away (an open circuit breaker, a full bulkhead, a
//! rate limiter with no token left) does with them.

/// What a layer does while it turns calls away: fail them at once, or not be ready.
///
/// The circuit breaker, the bulkhead (and adaptive limit) and the rate limiter share it, each
/// with its own error and hint:
///
/// | layer | fail fast: `call` fails with | readiness: the layer above is told |
/// | --- | --- | --- |
/// | circuit breaker | `Open` (time to the next probe) | [`Hint::CircuitOpen`](crate::hint::Hint::CircuitOpen) |
/// | bulkhead | `Full` (its limit, why) | [`Hint::Full`](crate::hint::Hint::Full) |
/// | rate limiter | `RateLimited` (time to the next token) | [`Hint::RateLimited`](crate::hint::Hint::RateLimited) |
///
/// ```
/// use bulwark_core::Mode;
/// assert_eq!(Mode::default(), Mode::FailFast);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum Mode {
    /// `poll_ready` is ready at once (a bulkhead's queue or a rate limiter's `max_wait` may
    /// first hold it a bounded while) and `call` fails at once with the layer's error, which
    /// says why and, where it can, when to come back. For a caller that waits on the answer.
    #[default]
    FailFast,
    /// `poll_ready` stays `Pending` while the layer turns calls away, wakes the task itself
    /// when it may admit one (the open period ends, a permit frees up, a token is due), and
    /// tells the layer polling it why through a [`hint`](crate::hint). For the endpoints of a
    /// balancer or the targets of a failover set, which skip one that is not ready; alone, it
    /// waits as long as it takes (bound the wait with a timeout above it).
    Readiness,
}
