//! Reading and changing a limiter from outside the request path.

use crate::limiter::Limiter;
use bulwark_core::ConfigError;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// A cloneable handle to one limiter: read how many tokens it holds and how many calls it
/// refused, or change its rate and burst while it runs.
///
/// Get one from [`RateLimitLayer::handle`](crate::RateLimitLayer::handle) or
/// [`RateLimit::handle`](crate::RateLimit::handle). A change takes effect at the next call
/// (two atomic stores; the request path reads them, it takes no lock). Tokens already taken
/// stay taken: what the bucket owes carries over.
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// use bulwark_rate_limit::RateLimitLayer;
/// use std::time::Duration;
///
/// let layer = RateLimitLayer::builder().name("search").rate(10, Duration::from_secs(1)).build().unwrap();
/// let handle = layer.handle();
/// assert_eq!(handle.available(), 10);
///
/// handle.set_burst(20).unwrap();
/// handle.set_rate(50, Duration::from_secs(1)).unwrap();
/// assert_eq!(handle.settings(), (50, Duration::from_secs(1), 20));
/// assert_eq!(handle.set_burst(0).unwrap_err().setting(), "burst");
/// # }
/// ```
#[derive(Clone)]
pub struct Handle {
    limiter: Arc<Limiter>,
}

impl Handle {
    pub(crate) fn new(limiter: Arc<Limiter>) -> Self {
        Handle { limiter }
    }

    /// The limiter's name.
    pub fn name(&self) -> &str {
        self.limiter.name()
    }

    /// Tokens in the bucket now: calls that would be admitted at once.
    pub fn available(&self) -> u32 {
        self.limiter.available()
    }

    /// Calls refused since the limiter was built (in readiness mode, readiness waits turned
    /// away, each once).
    pub fn refused(&self) -> u64 {
        self.limiter.refused()
    }

    /// The rate (tokens per period), the period and the burst in force.
    pub fn settings(&self) -> (u32, Duration, u32) {
        self.limiter.settings()
    }

    /// Adds `rate` tokens per `period` from now on; validated as when built (`rate`,
    /// `period`, and `burst` against the new interval).
    pub fn set_rate(&self, rate: u32, period: Duration) -> Result<(), ConfigError> {
        self.limiter.update(Some((rate, period)), None)
    }

    /// Holds at most `burst` tokens from now on; validated as when built.
    pub fn set_burst(&self, burst: u32) -> Result<(), ConfigError> {
        self.limiter.update(None, Some(burst))
    }
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handle")
            .field("limiter", &self.limiter)
            .finish()
    }
}
