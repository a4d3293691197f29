//! Cancellation: requests dropped at random points (waiting for a target to be ready, on the
//! first target, in the middle of a failover: waiting the interval, or on a later target)
//! leak nothing. After each round no target call is left alive, no task is left behind, the
//! sticky target is one of the targets and the next request goes to it and nowhere else (no
//! state, and no lock, is left held); after all of them the set behaves exactly as a fresh one.
//!
//! Paused tokio time, seeded randomness: a failure names its seed and round.

use bulwark_core::{BoxError, Event};
use bulwark_failover::{FailOnFailure, Failover, FailoverLayer, Mode};
use bulwark_test_support::{ms, Behaviour, Counts, Endpoint, Odds, Rng};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use tokio::time::Instant;
use tower::{Service, ServiceExt};

const ROUNDS: usize = 300;
const TARGETS: usize = 3;

/// Each target: not ready a quarter of the time, failing half its calls, which take up to
/// 60 ms; when healthy or broken, 1 ms.
const ODDS: Odds = Odds {
    not_ready: 25,
    fail: 50,
    delay_ms: 60,
    steady_delay_ms: 0,
};

#[derive(Default)]
struct Watch {
    failed_over: AtomicUsize,
    calls: Arc<Counts>,
}

type Target = Endpoint<u32>;

type Set = Failover<Target, FailOnFailure>;
type SetFuture = <Set as Service<u32>>::Future;

/// The failover set and its targets.
struct Fixture {
    mode: Mode,
    svc: Set,
    targets: Vec<Target>,
    watch: Arc<Watch>,
}

impl Fixture {
    fn new(mode: Mode, seed: u64) -> Self {
        let watch = Arc::new(Watch::default());
        let targets: Vec<Target> = (0..TARGETS)
            .map(|id| Target::new(id, seed + id as u64, ODDS, watch.calls.clone()))
            .collect();
        let w = watch.clone();
        let svc = FailoverLayer::builder()
            .mode(mode)
            .attempt_timeout(ms(40))
            .interval(ms(10))
            .wait_for_ready(ms(30))
            .listener(move |e: &Event<'_>| {
                if let Event::FailedOver { .. } = e {
                    w.failed_over.fetch_add(1, Ordering::SeqCst);
                }
            })
            .build()
            .unwrap()
            .build(targets.clone())
            .unwrap();
        Fixture {
            mode,
            svc,
            targets,
            watch,
        }
    }

    fn behave(&self, behaviours: [Behaviour; TARGETS]) {
        for (t, b) in self.targets.iter().zip(behaviours) {
            t.behave(b);
        }
    }

    fn reseed(&self, seed: u64) {
        for t in &self.targets {
            t.reseed(seed + t.id() as u64);
        }
    }

    fn failovers(&self) -> usize {
        self.watch.failed_over.load(Ordering::SeqCst)
    }

    /// With every target healthy, a request goes to the sticky target and nowhere else.
    async fn check_sticky(&self, context: &str) {
        let current = self.svc.current();
        assert!(current < TARGETS, "{context}: sticky target {current}");
        self.behave([Behaviour::Healthy; TARGETS]);
        let before = self.failovers();
        let answer = tokio::time::timeout(ms(1_000), self.svc.clone().oneshot(0))
            .await
            .unwrap_or_else(|_| panic!("{context}: no answer"));
        let expected = match self.mode {
            Mode::Sticky => current,
            _ => 0,
        };
        assert_eq!(answer.unwrap(), expected, "{context}");
        assert_eq!(self.failovers(), before, "{context}: failed over");
        self.behave([Behaviour::Random; TARGETS]);
    }
}

/// One request on its own clone of the set: waiting for a ready target, then called.
enum Flight {
    Readying(Set),
    Called {
        _svc: Set,
        future: Pin<Box<SetFuture>>,
    },
    Finished,
}

impl Flight {
    fn poll(&mut self) -> Poll<Result<usize, BoxError>> {
        let mut cx = Context::from_waker(Waker::noop());
        if let Flight::Readying(svc) = self {
            match svc.poll_ready(&mut cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(())) => {
                    let future = Box::pin(svc.call(0));
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

    fn stage(&self) -> &'static str {
        match self {
            Flight::Readying(_) | Flight::Finished => "ready",
            Flight::Called { future, .. } => {
                if format!("{future:?}").contains("failed_over: 0") {
                    "first target"
                } else {
                    "failing over"
                }
            }
        }
    }
}

/// The same requests, one after another, as seen from outside.
async fn script(f: &Fixture) -> Vec<String> {
    let rng = Rng::new(99);
    let mut log = Vec::new();
    for i in 0..40 {
        let before = f.failovers();
        let start = Instant::now();
        let answer = match f.svc.clone().oneshot(i).await {
            Ok(n) => format!("target {n}"),
            Err(e) => e.to_string(),
        };
        log.push(format!(
            "{i}: {answer} after {:?}, {} failovers, sticky {}",
            start.elapsed(),
            f.failovers() - before,
            f.svc.current()
        ));
        tokio::time::advance(ms(rng.below(50))).await;
    }
    log
}

async fn harness(mode: Mode, seed: u64) {
    let tasks = tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks();
    let rng = Rng::new(seed);
    let f = Fixture::new(mode, seed);
    let mut dropped = std::collections::BTreeMap::<&str, usize>::new();
    // The target of the latest success: the sticky target (a request dropped on its way does
    // not move it).
    let mut last_ok = None;
    for round in 0..ROUNDS {
        let context = format!("{mode:?}, seed {seed}, round {round}");
        let mut flights: Vec<Option<(Flight, u64)>> = Vec::new();
        for step in 0..40 {
            if step < 20 && rng.chance(30) {
                flights.push(Some((
                    Flight::Readying(f.svc.clone()),
                    step + rng.below(30),
                )));
            }
            for slot in flights.iter_mut() {
                let Some((flight, drop_at)) = slot else {
                    continue;
                };
                if *drop_at == step {
                    *dropped.entry(flight.stage()).or_default() += 1;
                    *slot = None;
                } else if let Poll::Ready(answer) = flight.poll() {
                    if let Ok(target) = answer {
                        last_ok = Some(target);
                    }
                    *slot = None;
                }
            }
            tokio::time::advance(ms(rng.below(15))).await;
        }
        drop(flights);
        assert_eq!(f.watch.calls.live(), 0, "{context}: calls left");
        assert_eq!(
            tokio::runtime::Handle::current()
                .metrics()
                .num_alive_tasks(),
            tasks,
            "{context}: tasks left"
        );
        if mode == Mode::Sticky {
            assert_eq!(f.svc.current(), last_ok.unwrap_or(0), "{context}: sticky");
        }
        f.check_sticky(&context).await;
        last_ok = Some(f.svc.current());
    }
    for stage in ["ready", "first target", "failing over"] {
        let n = dropped.get(stage).copied().unwrap_or(0);
        assert!(n > 10, "dropped at {stage}: {n} ({dropped:?})");
    }

    // Afterwards: exactly as a fresh set, once both stick to the first target.
    let fresh = Fixture::new(mode, seed);
    for g in [&f, &fresh] {
        g.behave([Behaviour::Healthy, Behaviour::Broken, Behaviour::Broken]);
        assert_eq!(g.svc.clone().oneshot(0).await.unwrap(), 0);
        assert_eq!(g.svc.current(), 0);
        g.behave([Behaviour::Random; TARGETS]);
        g.reseed(7);
    }
    let used = script(&f).await;
    let new = script(&fresh).await;
    assert_eq!(used, new);
}

#[tokio::test(start_paused = true)]
async fn dropped_requests_leak_nothing_sticky() {
    for seed in [1, 2, 3] {
        harness(Mode::Sticky, seed).await;
    }
}

#[tokio::test(start_paused = true)]
async fn dropped_requests_leak_nothing_priority() {
    for seed in [1, 2, 3] {
        harness(Mode::Priority, seed).await;
    }
}
