//! The breaker's own error.

use bulwark_core::CircuitState;
use std::fmt;
use std::time::Duration;

/// A call refused by a circuit breaker without reaching the inner service.
///
/// Returned (boxed) by `call` in [`Mode::FailFast`](crate::Mode::FailFast). Test for it with
/// `err.is::<Open>()`, and read how long until the breaker admits a probe with
/// [`Open::retry_after`] (for a `Retry-After` header, say).
///
/// ```
/// use bulwark_circuit_breaker::Open;
/// use bulwark_core::CircuitState;
/// use std::time::Duration;
///
/// let err = Open::new(CircuitState::Open, Some(Duration::from_millis(14451)));
/// assert_eq!(err.to_string(), "circuit open: calls suspended for 14451 ms");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Open {
    state: CircuitState,
    retry_after: Option<Duration>,
}

impl Open {
    /// A rejection by a breaker in `state`, admitting a probe after `retry_after` if known.
    pub fn new(state: CircuitState, retry_after: Option<Duration>) -> Self {
        Open { state, retry_after }
    }

    /// How long until the breaker admits a probe: the rest of the open period. `Some(ZERO)`
    /// when half-open with every probe slot taken (a slot frees as soon as a probe ends);
    /// `None` when forced open (only an operator can release it).
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    /// The state that refused the call: open, half-open (probe slots full) or forced open.
    pub fn state(&self) -> CircuitState {
        self.state
    }
}

impl fmt::Display for Open {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.state, self.retry_after) {
            (CircuitState::HalfOpen, _) => {
                f.write_str("circuit half-open: every probe slot is taken, call refused")
            }
            (CircuitState::ForcedOpen, _) | (_, None) => {
                f.write_str("circuit forced open: calls suspended until released")
            }
            (_, Some(d)) => write!(f, "circuit open: calls suspended for {} ms", d.as_millis()),
        }
    }
}

impl std::error::Error for Open {}
