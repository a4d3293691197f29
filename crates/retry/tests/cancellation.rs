//! Cancellation: requests dropped at random points (waiting for the inner service to be
//! ready, in the middle of an attempt, in the backoff wait before a retry, waiting for
//! readiness before a retry) leak nothing. After each round no backend call is left alive and
//! no task is left behind, and the shared budget's books balance: every request deposited
//! once, every withdrawal a retry that was scheduled, never more than allowed. After all of
//! them (and once the budget's window has passed) the layer behaves exactly as a fresh one.
//!
//! A retry's share of the budget is spent when the retry is scheduled: one dropped in its
//! backoff wait stays spent until it leaves the window (the strict side), which the books
//! below count as a withdrawal.
//!
//! Paused tokio time, seeded randomness: a failure names its seed and round.

use bulwark_core::backoff::{ExponentialBackoff, Jitter};
use bulwark_core::{BoxError, Event, SplitMix64};
use bulwark_retry::{BackoffRetry, BackoffRetryLayer, RetryBudget, RetryFailures};
use bulwark_test_support::{ms, Counts, Endpoint, Odds, Rng};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt};

const ROUNDS: usize = 300;
const DAY: Duration = Duration::from_secs(24 * 3600);

/// What the test sees of the layer and the backend.
#[derive(Default)]
struct Watch {
    scheduled: AtomicUsize,
    calls: Arc<Counts>,
}

/// A backend whose readiness, latency and answers are drawn from a seeded source (which the
/// test can reseed): not ready a fifth of the time, failing 60% of its calls, which take up
/// to 60 ms.
type Backend = Endpoint<u32>;

const ODDS: Odds = Odds {
    not_ready: 20,
    fail: 60,
    delay_ms: 60,
    steady_delay_ms: 0,
};

type Retry = BackoffRetry<Backend, RetryFailures>;
type RetryFuture = <Retry as Service<u32>>::Future;

/// One request on its own clone of the layer: waiting for it to be ready, then called.
enum Flight {
    Readying(Retry),
    /// The clone stays with its future, as in `ServiceExt::oneshot`.
    Called {
        _svc: Retry,
        future: Pin<Box<RetryFuture>>,
    },
    Finished,
}

impl Flight {
    /// Polls once (with a waker that does nothing: the harness polls every step).
    fn poll(&mut self) -> Poll<Result<usize, BoxError>> {
        let mut cx = Context::from_waker(Waker::noop());
        if let Flight::Readying(svc) = self {
            match svc.poll_ready(&mut cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(())) => {
                    let future = Box::pin(svc.call(1));
                    if let Flight::Readying(svc) = std::mem::replace(self, Flight::Finished) {
                        *self = Flight::Called { _svc: svc, future };
                    }
                }
            }
        }
        match self {
            Flight::Called { future, .. } => future.as_mut().poll(&mut cx),
            _ => Poll::Pending,
        }
    }

    /// Where it is, for the tally of drop points.
    fn stage(&self) -> &'static str {
        match self {
            Flight::Readying(_) | Flight::Finished => "ready",
            Flight::Called { future, .. } => {
                let debug = format!("{future:?}");
                if debug.contains("waiting") {
                    "backoff"
                } else if debug.contains("readying") {
                    "readying a retry"
                } else if debug.contains("attempts: 1 ") {
                    "first attempt"
                } else {
                    "retry"
                }
            }
        }
    }
}

fn layer(budget: Arc<RetryBudget>, watch: &Arc<Watch>, seed: u64) -> BackoffRetryLayer {
    let w = watch.clone();
    BackoffRetryLayer::builder()
        .max_attempts(4)
        .backoff(ExponentialBackoff::new(ms(10), 2.0, ms(80), Jitter::None).unwrap())
        .attempt_timeout(ms(45))
        .deadline(ms(400))
        .shared_budget(budget)
        .listener(move |e: &Event<'_>| {
            if let Event::RetryScheduled { .. } = e {
                w.scheduled.fetch_add(1, Ordering::SeqCst);
            }
        })
        .random(SplitMix64::new(seed))
        .build()
        .unwrap()
}

/// Half a retry per request, no floor, over a day (so nothing leaves the window while the
/// harness runs, and the books can be checked to the unit).
fn new_budget() -> Arc<RetryBudget> {
    let budget = Arc::new(RetryBudget::new(0.5, 0, DAY).unwrap());
    // The window counts from its first snapshot, taken by the first withdrawal.
    assert!(!budget.try_withdraw());
    budget
}

/// The backend (answering 7), and a clone of it to reseed it by.
fn backend(seed: u64, watch: &Arc<Watch>) -> (Backend, Backend) {
    let backend = Backend::new(7, seed, ODDS, watch.calls.clone());
    (backend.clone(), backend)
}

/// The same requests, one after another, as seen from outside.
async fn script(svc: &Retry, budget: &RetryBudget, watch: &Watch) -> Vec<String> {
    let rng = Rng::new(99);
    let mut log = Vec::new();
    for i in 0..40 {
        let calls = watch.calls.calls();
        let start = Instant::now();
        let answer = match svc.clone().oneshot(i).await {
            Ok(n) => format!("ok {n}"),
            Err(e) => e.to_string(),
        };
        let stats = budget.stats();
        log.push(format!(
            "{i}: {answer} after {:?} and {} calls; budget {} requests, {} retries, {} allowed",
            start.elapsed(),
            watch.calls.calls() - calls,
            stats.requests,
            stats.retries,
            stats.allowed,
        ));
        tokio::time::advance(ms(rng.below(50))).await;
    }
    log
}

async fn harness(seed: u64) {
    let tasks = tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks();
    let rng = Rng::new(seed);
    let watch = Arc::new(Watch::default());
    let budget = new_budget();
    let (inner, backend_rng) = backend(seed ^ 0xBAC, &watch);
    let svc = layer(budget.clone(), &watch, seed).layer(inner);
    let mut requests = 0u64;
    let mut dropped = std::collections::BTreeMap::<&str, usize>::new();
    for round in 0..ROUNDS {
        let context = format!("seed {seed}, round {round}");
        let mut flights: Vec<Option<(Flight, u64)>> = Vec::new();
        for step in 0..40 {
            if step < 20 && rng.chance(30) {
                flights.push(Some((Flight::Readying(svc.clone()), step + rng.below(30))));
            }
            for slot in flights.iter_mut() {
                let Some((flight, drop_at)) = slot else {
                    continue;
                };
                if *drop_at == step {
                    requests += u64::from(matches!(flight, Flight::Called { .. }));
                    *dropped.entry(flight.stage()).or_default() += 1;
                    *slot = None;
                } else if flight.poll().is_ready() {
                    requests += 1;
                    *slot = None;
                }
            }
            tokio::time::advance(ms(rng.below(15))).await;
        }
        requests += flights
            .iter()
            .flatten()
            .filter(|(f, _)| matches!(f, Flight::Called { .. }))
            .count() as u64;
        drop(flights);
        assert_eq!(watch.calls.live(), 0, "{context}: calls left");
        let stats = budget.stats();
        assert_eq!(stats.requests, requests, "{context}: deposits");
        assert_eq!(
            stats.retries,
            watch.scheduled.load(Ordering::SeqCst) as u64,
            "{context}: withdrawals vs retries scheduled"
        );
        assert!(stats.retries <= stats.allowed, "{context}: {stats:?}");
        assert_eq!(
            tokio::runtime::Handle::current()
                .metrics()
                .num_alive_tasks(),
            tasks,
            "{context}: tasks left"
        );
    }
    // The harness reached the places it means to test.
    for stage in [
        "ready",
        "first attempt",
        "backoff",
        "readying a retry",
        "retry",
    ] {
        let n = dropped.get(stage).copied().unwrap_or(0);
        assert!(n > 5, "dropped at {stage}: {n} ({dropped:?})");
    }

    // Afterwards (once the budget's window has moved past the harness): exactly as a fresh
    // layer over a fresh budget, given the same backend answers.
    tokio::time::advance(DAY + DAY / 10).await;
    assert!(!budget.try_withdraw());
    let fresh_watch = Arc::new(Watch::default());
    let fresh_budget = new_budget();
    let (fresh_inner, fresh_rng) = backend(7, &fresh_watch);
    let fresh = layer(fresh_budget.clone(), &fresh_watch, seed).layer(fresh_inner);
    backend_rng.reseed(7);
    fresh_rng.reseed(7);
    let used = script(&svc, &budget, &watch).await;
    let new = script(&fresh, &fresh_budget, &fresh_watch).await;
    assert_eq!(used, new);
}

#[tokio::test(start_paused = true)]
async fn dropped_requests_leak_nothing() {
    for seed in [1, 2, 3] {
        harness(seed).await;
    }
}
