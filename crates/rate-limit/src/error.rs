//! The limiter's own error.

use std::fmt;
use std::time::Duration;

/// A call refused by a rate limiter without reaching the inner service: no token was left,
/// and none would come within the wait allowed (`max_wait`, none by default).
///
/// Returned (boxed) by `call` in [`Mode::FailFast`](crate::Mode::FailFast). Test for it with
/// `err.is::<RateLimited>()`, and read when a token will be there with
/// [`RateLimited::retry_after`] (for a `Retry-After` header, say: the axum mapping of
/// `tower-bulwark` answers 503 with it).
///
/// ```
/// use bulwark_rate_limit::RateLimited;
/// use std::time::Duration;
///
/// let err = RateLimited::new(Duration::from_millis(700));
/// assert_eq!(err.retry_after(), Duration::from_millis(700));
/// assert_eq!(err.to_string(), "rate limited: next token in 700 ms");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimited {
    retry_after: Duration,
}

impl RateLimited {
    /// A refusal whose next token comes in `retry_after`.
    pub fn new(retry_after: Duration) -> Self {
        RateLimited { retry_after }
    }

    /// How long until the limiter has a token again (when the call was refused). A caller
    /// that comes back then is admitted unless another took that token first.
    pub fn retry_after(&self) -> Duration {
        self.retry_after
    }
}

impl fmt::Display for RateLimited {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Rounded up: a client told "0 ms" would come back too soon.
        let ms = bulwark_core::deadline::millis_rounded_up(self.retry_after);
        write!(f, "rate limited: next token in {ms} ms")
    }
}

impl std::error::Error for RateLimited {}
