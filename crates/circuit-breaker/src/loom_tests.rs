//! Loom model of the breaker core: every interleaving of a few threads, within a preemption
//! bound. Run with
//! `RUSTFLAGS="--cfg bulwark_loom" cargo test -p bulwark-circuit-breaker --lib --release -- loom`.

use crate::config::{CircuitBreakerConfig, OpenPeriod, Window};
use crate::state::{Admission, Core};
use bulwark_core::{CircuitState, Outcome, SplitMix64};
use loom::sync::Arc;
use loom::thread;
use std::time::Duration;

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(3);
    builder.check(f);
}

fn core(window: u32, min_calls: u32, rate: f64, probes: u32) -> Core {
    let mut config = CircuitBreakerConfig::default();
    config.window = Window::Count { size: window };
    config.min_calls = min_calls;
    config.failure_rate = rate;
    config.half_open_probes = probes;
    config.open = OpenPeriod::Fixed(Duration::from_nanos(10));
    config.validate().unwrap();
    Core::new(&config, None, std::sync::Arc::new(SplitMix64::new(1)))
}

const MS: u64 = 1_000_000;

#[test]
fn loom_concurrent_outcomes_lose_no_update() {
    model(|| {
        // Metrics-only: records everything, never trips, so only the window is exercised.
        let core = Arc::new(core(2, 2, 1.0, 1));
        core.force(CircuitState::MetricsOnly, 0);
        let gen = core.generation();
        let other = core.clone();
        let t = thread::spawn(move || {
            other.record(gen, false, Outcome::Failure, false, || 0);
            other.record(gen, false, Outcome::Success, false, || 0);
        });
        core.record(gen, false, Outcome::Failure, true, || 0);
        t.join().unwrap();
        let stats = core.window_stats(0);
        // Three outcomes into a window of two: two remain, and the packed totals agree with
        // the slots exactly.
        assert_eq!(stats.calls, 2);
        assert_eq!(stats, core.window_recount());
    });
}

#[test]
fn loom_half_open_admits_no_more_probes_than_allowed() {
    model(|| {
        let core = Arc::new(core(4, 1, 0.5, 1));
        core.force(CircuitState::Open, 0); // open until t = 10 ns
        let other = core.clone();
        let t = thread::spawn(move || other.acquire(|| MS));
        let mine = core.acquire(|| MS);
        let theirs = t.join().unwrap();
        let probes = [mine, theirs]
            .iter()
            .filter(|a| matches!(a, Admission::Admitted { probe: true, .. }))
            .count();
        assert_eq!(probes, 1, "{mine:?} {theirs:?}");
        assert_eq!(core.probe_counts(), (1, 0));
    });
}

#[test]
fn loom_dropped_probe_and_new_probe_race() {
    model(|| {
        let core = Arc::new(core(4, 1, 0.5, 1));
        core.force(CircuitState::Open, 0);
        let Admission::Admitted { gen, probe: true } = core.acquire(|| MS) else {
            panic!("the first call after the open period is a probe");
        };
        let other = core.clone();
        let t = thread::spawn(move || other.release_probe(gen));
        let second = core.acquire(|| MS);
        t.join().unwrap();
        let (in_flight, _) = core.probe_counts();
        // Either the second call got the freed slot, or it was refused and the slot is free.
        match second {
            Admission::Admitted { probe: true, .. } => assert_eq!(in_flight, 1),
            Admission::Rejected(_) => assert_eq!(in_flight, 0),
            other => panic!("{other:?}"),
        }
    });
}

#[test]
fn loom_an_outcome_from_before_a_reset_never_lands_after_it() {
    model(|| {
        let core = Arc::new(core(4, 4, 0.5, 1));
        let other = core.clone();
        let t = thread::spawn(move || {
            other.record(0, false, Outcome::Failure, false, || 0);
        });
        core.force(CircuitState::Closed, 0); // an operator's reset: generation 1
        t.join().unwrap();
        // Whichever came first, the window of generation 1 is empty.
        assert_eq!(core.generation(), 1);
        assert_eq!(core.window_stats(0).calls, 0);
        assert_eq!(core.window_recount().calls, 0);
        assert_eq!(core.consecutive(), 0);
    });
}

#[test]
fn loom_two_failures_trip_once() {
    model(|| {
        let core = Arc::new(core(2, 1, 0.5, 1));
        let other = core.clone();
        let t = thread::spawn(move || other.record(0, false, Outcome::Failure, false, || 0));
        core.record(0, false, Outcome::Failure, false, || 0);
        t.join().unwrap();
        // Both saw a rate of 100%; one transition happened, not two.
        assert_eq!(core.generation(), 1);
        assert_eq!(core.state(0), CircuitState::Open);
    });
}

#[test]
fn loom_time_window_outcomes_racing_a_new_bucket_are_not_lost() {
    model(|| {
        // A time window of two 1 ms buckets, metrics-only (records, never trips). Two
        // outcomes arrive at once in a bucket no call has opened yet: whichever thread takes
        // the bucket's snapshot, both outcomes are in the window.
        let mut config = CircuitBreakerConfig::default();
        config.window = Window::Time {
            length: Duration::from_millis(2),
            buckets: 2,
        };
        config.validate().unwrap();
        let core = Arc::new(Core::new(
            &config,
            None,
            std::sync::Arc::new(SplitMix64::new(1)),
        ));
        core.force(CircuitState::MetricsOnly, 0);
        let gen = core.generation();
        let other = core.clone();
        let t = thread::spawn(move || {
            other.record(gen, false, Outcome::Failure, false, || 5 * MS);
        });
        core.record(gen, false, Outcome::Success, false, || 5 * MS);
        t.join().unwrap();
        let stats = core.window_stats(5 * MS);
        assert_eq!((stats.calls, stats.failures), (2, 1));
    });
}
