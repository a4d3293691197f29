//! The adaptive limit's controller: samples of latency and outcome gathered per window
//! without a lock, and the limit moved once per window.
//!
//! Each call that ends adds its latency (from `call` to its answer) and its classified outcome
//! to the window's atomic sums. The call that finds the window long enough (and holding at
//! least [`MIN_SAMPLES`] samples) takes the controller's lock with `try_lock` (if another
//! thread holds it, that one is closing the window already), takes the sums out and computes
//! the next limit, which the bulkhead then applies to its permits. A sample landing while the
//! sums are taken out may be counted in one window and summed in the next: the mean of a
//! window of many samples hardly moves.

use crate::config::{Aimd, Algorithm, Gradient};
use crate::limiter::lock;
use bulwark_core::clock::nanos;
use bulwark_core::Outcome;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::Duration;

/// A window moves the limit only once it holds at least this many samples (it is stretched
/// until it does), so a few calls at low traffic do not swing it.
pub const MIN_SAMPLES: u64 = 5;

/// How many windows the gradient controller's long-term latency averages over.
const LONG_WINDOWS: f64 = 20.0;

/// After this many windows in a row at the floor, the gradient controller measures the
/// minimum latency again (the one it has may be from a backend that was faster then).
const FLOOR_WINDOWS: u32 = 5;

/// What the gradient controller is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Moving the limit from the latency.
    Normal,
    /// The limit is held at the floor to measure the latency without load: this window still
    /// holds calls admitted before, so it is not used.
    Draining,
    /// The limit is held at the floor: this window's mean is the new minimum.
    Measuring,
}

#[derive(Debug)]
struct State {
    /// The floor and the ceiling (changed through the handle).
    min_limit: f64,
    max_limit: f64,
    /// The limit, with its fraction (the permits use it rounded).
    limit: f64,
    /// The long-term mean latency, nanoseconds (0 before the first window).
    long: f64,
    /// The lowest window mean seen, nanoseconds (0 before the first window).
    min: f64,
    phase: Phase,
    /// When to measure the minimum again (gradient).
    next_probe: u64,
    /// The limit to go back to after measuring.
    held: f64,
    /// Windows in a row that ended with the limit at the floor (gradient).
    at_floor: u32,
}

/// One adaptive limit's controller.
#[derive(Debug)]
pub(crate) struct Controller {
    algorithm: Algorithm,
    window: u64,
    /// A sample slower than this counts as slow (AIMD); `u64::MAX` otherwise.
    slow_after: u64,
    started: AtomicU64,
    count: AtomicU64,
    sum: AtomicU64,
    failures: AtomicU64,
    slow: AtomicU64,
    /// The most calls in flight at one admission in this window.
    peak: AtomicU32,
    /// The minimum latency found, nanoseconds (`u64::MAX`: none yet), for the handle.
    min_rtt: AtomicU64,
    state: Mutex<State>,
}

impl Controller {
    pub(crate) fn new(
        algorithm: Algorithm,
        initial: u32,
        min_limit: u32,
        max_limit: u32,
        window: Duration,
    ) -> Self {
        let slow_after = match algorithm {
            Algorithm::Aimd(Aimd {
                latency_threshold, ..
            }) => nanos(latency_threshold),
            Algorithm::Gradient(_) => u64::MAX,
        };
        // The gradient controller needs the latency without load before anything else: it
        // starts by measuring it, the limit held at the floor (there is no call from before
        // to drain).
        let phase = match algorithm {
            Algorithm::Gradient(_) => Phase::Measuring,
            Algorithm::Aimd(_) => Phase::Normal,
        };
        Controller {
            algorithm,
            window: nanos(window),
            slow_after,
            started: AtomicU64::new(0),
            count: AtomicU64::new(0),
            sum: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            slow: AtomicU64::new(0),
            peak: AtomicU32::new(0),
            min_rtt: AtomicU64::new(u64::MAX),
            state: Mutex::new(State {
                min_limit: min_limit.into(),
                max_limit: max_limit.into(),
                limit: initial.into(),
                long: 0.0,
                min: 0.0,
                phase,
                next_probe: 0,
                held: initial.into(),
                at_floor: 0,
            }),
        }
    }

    /// A call was admitted with `in_flight` calls in flight (itself included).
    #[inline]
    pub(crate) fn admitted(&self, in_flight: u32) {
        if self.peak.load(Relaxed) < in_flight {
            self.peak.fetch_max(in_flight, Relaxed);
        }
    }

    /// A call admitted at `start` ended at `now` with `outcome`. Returns the limit the permits
    /// should use when this sample closed a window (it may be the same as before).
    #[inline]
    pub(crate) fn record(&self, start: u64, now: u64, outcome: Outcome) -> Option<u32> {
        if outcome != Outcome::Ignored {
            let rtt = now.saturating_sub(start);
            self.sum.fetch_add(rtt, Relaxed);
            if outcome == Outcome::Failure {
                self.failures.fetch_add(1, Relaxed);
            }
            if rtt > self.slow_after {
                self.slow.fetch_add(1, Relaxed);
            }
            self.count.fetch_add(1, Relaxed);
        }
        if now.saturating_sub(self.started.load(Relaxed)) >= self.window
            && self.count.load(Relaxed) >= MIN_SAMPLES
        {
            return self.close(now);
        }
        None
    }

    /// Closes the window: the next limit from its samples.
    #[cold]
    #[inline(never)]
    fn close(&self, now: u64) -> Option<u32> {
        let Ok(mut state) = self.state.try_lock() else {
            return None;
        };
        if now.saturating_sub(self.started.load(Relaxed)) < self.window
            || self.count.load(Relaxed) < MIN_SAMPLES
        {
            return None;
        }
        self.started.store(now, Relaxed);
        let count = self.count.swap(0, Relaxed);
        let sum = self.sum.swap(0, Relaxed);
        let failures = self.failures.swap(0, Relaxed);
        let slow = self.slow.swap(0, Relaxed);
        let peak = self.peak.swap(0, Relaxed);
        let mean = sum as f64 / count.max(1) as f64;
        let utilized = f64::from(peak) * 2.0 >= state.limit;
        match self.algorithm {
            Algorithm::Gradient(g) => self.gradient(&mut state, &g, mean, utilized, now),
            Algorithm::Aimd(a) => {
                if failures > 0 || slow > 0 {
                    state.limit *= a.decrease;
                } else if utilized {
                    state.limit += f64::from(a.increase);
                }
            }
        }
        state.limit = state.limit.clamp(state.min_limit, state.max_limit);
        Some(Self::permits(&state))
    }

    /// The limit the permits use: the controller's, rounded, or the floor while measuring.
    fn permits(state: &State) -> u32 {
        match state.phase {
            Phase::Normal => state.limit.round() as u32,
            Phase::Draining | Phase::Measuring => state.min_limit as u32,
        }
    }

    fn gradient(&self, state: &mut State, g: &Gradient, mean: f64, utilized: bool, now: u64) {
        match state.phase {
            Phase::Draining => {
                state.phase = Phase::Measuring;
                return;
            }
            Phase::Measuring => {
                state.min = mean;
                state.long = mean;
                self.min_rtt.store(mean as u64, Relaxed);
                state.phase = Phase::Normal;
                state.limit = state.held;
                state.next_probe = self.next_probe(g, now);
                return;
            }
            Phase::Normal => {}
        }
        if state.min == 0.0 {
            state.next_probe = self.next_probe(g, now);
        }
        if state.min == 0.0 || mean < state.min {
            state.min = mean;
            self.min_rtt.store(mean as u64, Relaxed);
        }
        // The long-term mean follows a latency that falls at once, one that rises slowly.
        state.long = if state.long == 0.0 || mean < state.long {
            mean
        } else {
            state.long + (mean - state.long) / LONG_WINDOWS
        };
        let baseline = state.long.min(g.tolerance * state.min);
        let gradient = (baseline / mean.max(1.0)).clamp(0.5, 2.0);
        let limit = state.limit;
        let target = limit * gradient + limit.sqrt();
        if target < limit || utilized {
            state.limit = limit + g.smoothing * (target - limit);
        }
        state.at_floor = if state.limit.round() <= state.min_limit {
            state.at_floor + 1
        } else {
            0
        };
        if g.min_rtt_interval.is_some()
            && (now >= state.next_probe || state.at_floor >= FLOOR_WINDOWS)
        {
            state.at_floor = 0;
            state.held = state.limit;
            state.phase = Phase::Draining;
        }
    }

    fn next_probe(&self, g: &Gradient, now: u64) -> u64 {
        g.min_rtt_interval
            .map_or(u64::MAX, |d| now.saturating_add(nanos(d)))
    }

    /// The limit the permits use now.
    pub(crate) fn limit(&self) -> u32 {
        Self::permits(&lock(&self.state))
    }

    /// Moves the limit by hand (from a handle); the controller goes on from there.
    pub(crate) fn set(&self, limit: u32) {
        let mut state = lock(&self.state);
        state.limit = f64::from(limit);
        state.held = state.limit;
        state.phase = Phase::Normal;
        state.at_floor = 0;
    }

    /// The minimum latency measured, if any yet.
    pub(crate) fn min_rtt(&self) -> Option<Duration> {
        match self.min_rtt.load(Relaxed) {
            u64::MAX => None,
            n => Some(Duration::from_nanos(n)),
        }
    }

    /// The floor and the ceiling.
    pub(crate) fn bounds(&self) -> (u32, u32) {
        let state = lock(&self.state);
        (state.min_limit as u32, state.max_limit as u32)
    }

    /// Moves the floor and the ceiling (checked by the caller); a limit outside them is
    /// brought inside. Returns the limit the permits use now.
    pub(crate) fn set_bounds(&self, min_limit: u32, max_limit: u32) -> u32 {
        let mut state = lock(&self.state);
        state.min_limit = min_limit.into();
        state.max_limit = max_limit.into();
        state.limit = state.limit.clamp(state.min_limit, state.max_limit);
        state.held = state.held.clamp(state.min_limit, state.max_limit);
        Self::permits(&state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    /// Feeds `n` samples of `rtt` ms ending at `at` ms with `peak` in flight: the limit after,
    /// if a window closed.
    fn feed(c: &Controller, at: u64, n: u64, rtt: u64, peak: u32, outcome: Outcome) -> Option<u32> {
        let mut closed = None;
        for _ in 0..n {
            c.admitted(peak);
            closed = closed.or(c.record(at * MS - rtt * MS, at * MS, outcome));
        }
        closed
    }

    #[test]
    fn aimd_adds_when_used_and_cuts_on_a_failure() {
        let c = Controller::new(
            Algorithm::aimd(Duration::from_millis(50)),
            10,
            2,
            12,
            Duration::from_millis(100),
        );
        assert_eq!(feed(&c, 100, 5, 10, 9, Outcome::Success), Some(11));
        assert_eq!(feed(&c, 200, 5, 10, 9, Outcome::Success), Some(12));
        assert_eq!(feed(&c, 300, 5, 10, 12, Outcome::Success), Some(12)); // the ceiling
                                                                          // Not in use (peak under half the limit): no rise.
        c.set(8);
        assert_eq!(feed(&c, 400, 5, 10, 3, Outcome::Success), Some(8));
        assert_eq!(feed(&c, 500, 5, 10, 8, Outcome::Failure), Some(7)); // 8 * 0.9 = 7.2
        assert_eq!(feed(&c, 600, 5, 80, 8, Outcome::Success), Some(6)); // slow: 7.2 * 0.9
        for i in 0..20 {
            feed(&c, 700 + i * 100, 5, 80, 8, Outcome::Success);
        }
        assert_eq!(c.limit(), 2); // the floor
    }

    #[test]
    fn gradient_measures_first_then_falls_with_latency_and_measures_again_at_the_floor() {
        let c = Controller::new(
            Algorithm::Gradient(Gradient::new(1.25, 1.0, Some(Duration::from_secs(60)))),
            16,
            4,
            64,
            Duration::from_millis(100),
        );
        // The first window is measured at the floor; then the initial limit.
        assert_eq!(c.limit(), 4);
        assert_eq!(feed(&c, 100, 5, 10, 4, Outcome::Success), Some(16));
        assert_eq!(c.min_rtt(), Some(Duration::from_millis(10)));
        // Latency at the minimum, the limit in use: it grows by its headroom (sqrt 16).
        assert_eq!(feed(&c, 200, 5, 10, 16, Outcome::Success), Some(20));
        // Four times the minimum: the gradient is clamped at 0.5, the limit halves plus
        // its headroom (20 * 0.5 + sqrt 20 = 14.47).
        assert_eq!(feed(&c, 300, 5, 40, 20, Outcome::Success), Some(14));
        // Kept that slow, it falls to the floor; five windows there, and it measures again.
        let mut at = 300;
        let mut limits = Vec::new();
        while limits.len() < 20 {
            at += 100;
            limits.extend(feed(&c, at, 5, 40, 20, Outcome::Success));
        }
        assert!(
            limits.iter().all(|&l| l >= 4),
            "never below the floor: {limits:?}"
        );
        let floor_at = limits
            .iter()
            .position(|&l| l == 4)
            .expect("reaches the floor");
        assert!(
            limits[floor_at..floor_at + 7].iter().all(|&l| l == 4),
            "{limits:?}"
        );
        // Five windows at the floor, one draining, one measured: the new minimum is 40 ms,
        // and the limit moves from there.
        assert_eq!(c.min_rtt(), Some(Duration::from_millis(40)), "{limits:?}");
        assert!(limits[floor_at + 7..].iter().any(|&l| l > 4), "{limits:?}");
    }

    #[test]
    fn a_window_needs_its_length_and_enough_samples() {
        let c = Controller::new(
            Algorithm::aimd(Duration::from_millis(50)),
            10,
            1,
            100,
            Duration::from_millis(100),
        );
        assert_eq!(feed(&c, 100, 4, 10, 10, Outcome::Success), None);
        assert_eq!(feed(&c, 150, 1, 10, 10, Outcome::Success), Some(11));
        assert_eq!(feed(&c, 200, 10, 10, 10, Outcome::Success), None); // 50 ms later
                                                                       // The window closes on the next sample after its length, even an ignored one...
        assert_eq!(feed(&c, 300, 1, 10, 10, Outcome::Ignored), Some(12));
        // ...but ignored outcomes are not samples.
        assert_eq!(feed(&c, 400, 10, 10, 10, Outcome::Ignored), None);
        assert_eq!(c.limit(), 12);
    }
}
