//! Cancellation: requests dropped at random points (waiting for readiness while the half-open
//! probe slots are taken, admitted but not yet called, in the middle of a probe or of an
//! ordinary call) leak nothing. After each round of drops the probe slots are free (a new
//! probe is admitted), no call is counted twice or counted after being dropped, no more probes
//! than allowed ever run at once; after all of them the breaker behaves exactly as a fresh one.
//!
//! Paused tokio time, seeded randomness: a failure names its seed and round.

use bulwark_circuit_breaker::{
    CircuitBreaker, CircuitBreakerLayer, CircuitState, DefaultClassifier, Event, Handle, Mode, Open,
};
use bulwark_core::{BoxError, SplitMix64};
use bulwark_test_support::{ms, Counts, Endpoint, Guard, Odds, OnDrop, Rng};
use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt};

const ROUNDS: usize = 300;
const PROBES: usize = 2;
const OPEN_FOR: Duration = Duration::from_millis(50);
const WINDOW: u32 = 4;

/// What the backend does with a call: draw its fate, or as told.
#[derive(Debug, Clone, Copy)]
enum Req {
    Random,
    Fixed { fail: bool, delay_ms: u64 },
}

/// What the test sees of the breaker and the backend.
#[derive(Default)]
struct Watch {
    /// The breaker's state, from its transitions, and how many transitions there were.
    state: Mutex<Option<CircuitState>>,
    generation: AtomicUsize,
    /// Outcomes the breaker recorded.
    recorded: AtomicUsize,
    /// Backend calls alive (called, not yet dropped), and probe calls alive per generation.
    calls: Arc<Counts>,
    probes: Mutex<HashMap<usize, usize>>,
    most_probes: AtomicUsize,
}

impl Watch {
    fn listener(self: &Arc<Self>) -> impl Fn(&Event<'_>) + Send + Sync + 'static {
        let watch = self.clone();
        move |event: &Event<'_>| match event {
            Event::StateTransition { to, .. } => {
                *watch.state.lock().unwrap() = Some(*to);
                watch.generation.fetch_add(1, Ordering::SeqCst);
            }
            Event::OutcomeRecorded { .. } => {
                watch.recorded.fetch_add(1, Ordering::SeqCst);
            }
            _ => {}
        }
    }
}

/// The backend: a request decides its call's fate, or draws it (failing half the time, within
/// 30 ms); always ready.
type Backend = Endpoint<Req>;

const ODDS: Odds = Odds {
    not_ready: 0,
    fail: 50,
    delay_ms: 30,
    steady_delay_ms: 0,
};

fn fate(req: &Req) -> Option<(bool, Duration)> {
    match *req {
        Req::Random => None,
        Req::Fixed { fail, delay_ms } => Some((fail, ms(delay_ms))),
    }
}

/// Counts a call made while the breaker is half-open as a probe of that half-open period,
/// until the call is dropped.
fn count_probe(watch: &Arc<Watch>) -> Option<Guard> {
    if *watch.state.lock().unwrap() != Some(CircuitState::HalfOpen) {
        return None;
    }
    let generation = watch.generation.load(Ordering::SeqCst);
    let mut probes = watch.probes.lock().unwrap();
    let n = probes.entry(generation).or_default();
    *n += 1;
    assert!(*n <= PROBES, "{n} probes at once, {PROBES} allowed");
    watch.most_probes.fetch_max(*n, Ordering::SeqCst);
    let watch = watch.clone();
    Some(Box::new(OnDrop::new(move || {
        *watch.probes.lock().unwrap().get_mut(&generation).unwrap() -= 1;
    })))
}

type Breaker = CircuitBreaker<Backend, DefaultClassifier>;
type Request = Pin<Box<dyn Future<Output = Result<usize, BoxError>> + Send>>;

const WAITING: u8 = 0;
const CALLED: u8 = 1;

fn breaker(mode: Mode, seed: u64) -> (Breaker, Arc<Watch>) {
    let watch = Arc::new(Watch::default());
    let layer = CircuitBreakerLayer::builder()
        .count_window(WINDOW)
        .min_calls(2)
        .failure_rate(0.5)
        .open_for(OPEN_FOR)
        .half_open_probes(PROBES as u32)
        .mode(mode)
        .listener(watch.listener())
        .random(SplitMix64::new(seed))
        .build()
        .unwrap();
    let probes = watch.clone();
    let backend = Backend::new(0, seed ^ 0xBAC, ODDS, watch.calls.clone())
        .fate(fate)
        .on_call(move |_| count_probe(&probes));
    (layer.layer(backend), watch)
}

/// A request on its own clone of the breaker (as `tower::retry`, axum and most callers make
/// them), so dropping it drops whatever the clone holds too.
fn request(mut svc: Breaker, req: Req, stage: Arc<AtomicU8>) -> Request {
    Box::pin(async move {
        let ready = svc.ready().await?;
        stage.store(CALLED, Ordering::SeqCst);
        ready.call(req).await
    })
}

fn poll(request: &mut Request) -> Poll<Result<usize, BoxError>> {
    request
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
}

/// Whether a finished request reached the backend (its outcome is one to record).
fn reached_backend(result: &Result<usize, BoxError>) -> bool {
    match result {
        Ok(_) => true,
        Err(e) => e.is::<io::Error>(),
    }
}

/// Requests until the breaker is closed, each of which must be let through (a probe slot
/// held by a dropped request would refuse it, or keep it waiting for ever).
async fn close(svc: &Breaker, handle: &Handle, context: &str) {
    tokio::time::advance(OPEN_FOR + ms(1)).await;
    for _ in 0..=PROBES {
        if handle.state() == CircuitState::Closed {
            return;
        }
        let ok = Req::Fixed {
            fail: false,
            delay_ms: 1,
        };
        let answer = tokio::time::timeout(ms(1_000), svc.clone().oneshot(ok)).await;
        match answer {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => panic!(
                "{context}: a probe was refused: {e} ({:?})",
                handle.metrics()
            ),
            Err(_) => panic!("{context}: no probe admitted ({:?})", handle.metrics()),
        }
    }
    assert_eq!(handle.state(), CircuitState::Closed, "{context}");
}

/// The same requests, one after another, as seen from outside.
async fn script(svc: &Breaker, handle: &Handle, seed: u64) -> Vec<String> {
    let rng = Rng::new(seed);
    let mut log = Vec::new();
    for i in 0..40 {
        let req = Req::Fixed {
            fail: rng.chance(40),
            delay_ms: rng.below(20),
        };
        let start = Instant::now();
        let answer = match svc.clone().oneshot(req).await {
            Ok(_) => String::from("ok"),
            Err(e) => match e.downcast_ref::<Open>() {
                Some(open) => format!("open, retry after {:?}", open.retry_after()),
                None => e.to_string(),
            },
        };
        let m = handle.metrics();
        log.push(format!(
            "{i}: {answer} after {:?}: {:?}, {} calls, {} failures, {} in a row, retry after {:?}",
            start.elapsed(),
            m.state,
            m.calls,
            m.failures,
            m.consecutive_failures,
            m.retry_after
        ));
        tokio::time::advance(ms(rng.below(30))).await;
    }
    log
}

async fn harness(mode: Mode, seed: u64) {
    let tasks = tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks();
    let rng = Rng::new(seed);
    let (svc, watch) = breaker(mode, seed);
    let handle = svc.handle();
    let (mut dropped_waiting, mut dropped_probes, mut dropped_calls) = (0, 0, 0);
    let mut reached = 0;
    for round in 0..ROUNDS {
        let context = format!("{mode:?}, seed {seed}, round {round}");
        let mut requests: Vec<Option<(Request, Arc<AtomicU8>, u64)>> = Vec::new();
        for step in 0..16 {
            // Requests arrive throughout (so some find the breaker half-open), each to be
            // dropped some steps later unless it has finished by then.
            if step < 12 && rng.chance(60) {
                let stage = Arc::new(AtomicU8::new(WAITING));
                let drop_at = step + rng.below(8);
                let req = request(svc.clone(), Req::Random, stage.clone());
                requests.push(Some((req, stage, drop_at)));
            }
            for slot in requests.iter_mut() {
                let Some((req, stage, drop_at)) = slot else {
                    continue;
                };
                if *drop_at == step {
                    let half_open = handle.state() == CircuitState::HalfOpen;
                    match stage.load(Ordering::SeqCst) {
                        WAITING if half_open => dropped_waiting += 1,
                        CALLED if half_open => dropped_probes += 1,
                        CALLED => dropped_calls += 1,
                        _ => {}
                    }
                    *slot = None;
                } else if let Poll::Ready(result) = poll(req) {
                    reached += usize::from(reached_backend(&result));
                    *slot = None;
                }
            }
            if rng.chance(20) {
                // Admitted (a probe slot, maybe) by `poll_ready`, then dropped uncalled.
                let mut clone = svc.clone();
                let _ = clone.poll_ready(&mut Context::from_waker(Waker::noop()));
            }
            tokio::time::advance(ms(rng.below(20))).await;
        }
        drop(requests);
        assert_eq!(watch.calls.live(), 0, "{context}: calls left");
        assert_eq!(
            watch.recorded.load(Ordering::SeqCst),
            reached,
            "{context}: outcomes recorded vs calls that answered"
        );
        close(&svc, &handle, &context).await;
        reached = watch.recorded.load(Ordering::SeqCst);
    }
    assert_eq!(
        tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks(),
        tasks
    );
    // The harness reached the places it means to test.
    assert!(
        dropped_probes > 10 && dropped_calls > 10,
        "{dropped_probes} probes, {dropped_calls} calls dropped"
    );
    if mode == Mode::Readiness {
        assert!(dropped_waiting > 10, "{dropped_waiting} dropped waiting");
    }
    assert_eq!(watch.most_probes.load(Ordering::SeqCst), PROBES);

    // Afterwards: exactly as a fresh breaker, once both have seen a window of successes.
    let (fresh, _) = breaker(mode, seed);
    let fresh_handle = fresh.handle();
    for svc in [&svc, &fresh] {
        for _ in 0..WINDOW {
            svc.clone()
                .oneshot(Req::Fixed {
                    fail: false,
                    delay_ms: 1,
                })
                .await
                .unwrap();
        }
    }
    let used = script(&svc, &handle, seed).await;
    let new = script(&fresh, &fresh_handle, seed).await;
    assert_eq!(used, new);
}

#[tokio::test(start_paused = true)]
async fn dropped_requests_leak_nothing_fail_fast() {
    for seed in [1, 2, 3] {
        harness(Mode::FailFast, seed).await;
    }
}

#[tokio::test(start_paused = true)]
async fn dropped_requests_leak_nothing_readiness() {
    for seed in [1, 2, 3] {
        harness(Mode::Readiness, seed).await;
    }
}
