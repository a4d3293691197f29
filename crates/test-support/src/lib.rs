//! What the tower-bulwark crates' tests share, so each harness does not carry its own copy:
//! a seeded random source with the draws a test harness needs, and a short way to write
//! milliseconds. Not published; a dev-dependency only.

use bulwark_core::{RandomSource, SplitMix64};
use std::time::Duration;

/// `n` milliseconds.
///
/// ```
/// assert_eq!(bulwark_test_support::ms(250), std::time::Duration::from_millis(250));
/// ```
pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A seeded random source with the few draws a test harness needs. The same seed gives the
/// same draws on every run and machine, so a failing case can be replayed.
///
/// ```
/// use bulwark_test_support::Rng;
/// let (a, b) = (Rng::new(7), Rng::new(7));
/// assert_eq!(a.below(100), b.below(100));
/// assert!(Rng::new(1).below(3) < 3);
/// assert!(!Rng::new(1).chance(0));
/// ```
#[derive(Debug)]
pub struct Rng(SplitMix64);

impl Rng {
    /// A source seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Rng(SplitMix64::new(seed))
    }

    /// A draw in `0..n` (`n` > 0; slightly biased towards small values, which a test does
    /// not mind).
    pub fn below(&self, n: u64) -> u64 {
        self.0.next_u64() % n
    }

    /// True with a chance of `percent` in 100.
    pub fn chance(&self, percent: u64) -> bool {
        self.below(100) < percent
    }
}
