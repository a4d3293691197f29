//! What the tower-bulwark crates' tests share, so each harness does not carry its own copy:
//! a seeded random source with the draws a test harness needs, a short way to write
//! milliseconds, what a debugging metrics recorder received, a `tracing` subscriber that collects what a layer logs, and a mock endpoint
//! for the cancellation suites. Not published; a dev-dependency only.

use bulwark_core::{RandomSource, SplitMix64};

mod endpoint;
pub mod recorded;
pub use endpoint::{Behaviour, Call, Counts, Endpoint, Guard, Odds, OnDrop};
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

/// A `tracing` subscriber that keeps the level and message of every event whose target starts
/// with a prefix (a crate or module path), for tests that check what a layer logs. Clones share
/// what was collected.
///
/// ```
/// use bulwark_test_support::Logs;
/// use tracing::{subscriber, warn};
///
/// let logs = Logs::new("my_crate");
/// subscriber::with_default(logs.clone(), || {
///     warn!(target: "my_crate::part", "something failed");
///     warn!(target: "other", "not collected");
/// });
/// assert_eq!(logs.count(tracing::Level::WARN, "something failed"), 1);
/// assert_eq!(logs.count_starting("something"), 1);
/// ```
#[derive(Clone, Debug)]
pub struct Logs {
    prefix: &'static str,
    seen: std::sync::Arc<std::sync::Mutex<Vec<(tracing::Level, String)>>>,
}

impl Logs {
    /// Collects the events whose target starts with `prefix`.
    pub fn new(prefix: &'static str) -> Self {
        Logs {
            prefix,
            seen: Default::default(),
        }
    }

    fn seen(&self) -> std::sync::MutexGuard<'_, Vec<(tracing::Level, String)>> {
        match self.seen.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// How many events at `level` had exactly this message.
    pub fn count(&self, level: tracing::Level, message: &str) -> usize {
        self.seen()
            .iter()
            .filter(|(l, m)| *l == level && m == message)
            .count()
    }

    /// How many events, at any level, had a message starting with `start`.
    pub fn count_starting(&self, start: &str) -> usize {
        self.seen()
            .iter()
            .filter(|(_, m)| m.starts_with(start))
            .count()
    }
}

/// Reads an event's message.
struct Message<'a>(&'a mut String);

impl tracing::field::Visit for Message<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            *self.0 = format!("{value:?}");
        }
    }
}

impl tracing::Subscriber for Logs {
    fn enabled(&self, meta: &tracing::Metadata<'_>) -> bool {
        meta.target().starts_with(self.prefix)
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let mut message = String::new();
        event.record(&mut Message(&mut message));
        self.seen().push((*event.metadata().level(), message));
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}
