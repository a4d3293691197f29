//! Time as a number: nanoseconds on tokio's clock since a start.
//!
//! State shared by many threads (a breaker's open-until, a balancer's ejections) keeps its
//! times in atomics, so it keeps them as `u64` nanoseconds from a [`Clock`]'s start rather
//! than as `Instant`s. The clock is tokio's, so tests under paused time drive it. [`nanos`]
//! turns a configured `Duration` into the same unit, saturating rather than wrapping.
//!
//! ```
//! use bulwark_core::clock::{nanos, Clock};
//! use std::time::Duration;
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let clock = Clock::new();
//! tokio::time::advance(Duration::from_millis(5)).await;
//! let now = clock.now();
//! assert_eq!(now, 5_000_000);
//! assert_eq!(clock.instant_at(now), tokio::time::Instant::now());
//! assert_eq!(nanos(Duration::MAX), u64::MAX);
//! # }
//! ```

use std::time::Duration;
use tokio::time::Instant;

/// A monotonic clock counting nanoseconds (on tokio's clock) from when it was made.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    start: Instant,
}

impl Clock {
    /// A clock starting now.
    pub fn new() -> Self {
        Clock {
            start: Instant::now(),
        }
    }

    /// Nanoseconds since the start, saturating at `u64::MAX` (after about 584 years).
    #[inline]
    pub fn now(&self) -> u64 {
        nanos(self.start.elapsed())
    }

    /// The instant `at` nanoseconds after the start.
    #[inline]
    pub fn instant_at(&self, at: u64) -> Instant {
        self.start + Duration::from_nanos(at)
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

/// A duration in nanoseconds, saturating at `u64::MAX` (about 584 years).
#[inline]
pub fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}
