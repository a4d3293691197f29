//! Soak: 100,000 requests (by default) through the full stack, over three simulated backends
//! whose behaviour changes at random (seeded) for the whole run: error bursts, slow periods
//! (longer than the per-attempt timeout), outages (refused at once) and health flips (the
//! health probe says unhealthy while requests work, or healthy while they fail).
//!
//! The stack is the one `benches/faults.rs` measures: `BackoffRetry` (3 attempts, each on
//! another backend, a budget, a deadline) over `Balance` (p2c peak-EWMA, health checks,
//! ejection, `wait_for_ready`) over, per backend, `CircuitBreaker` (readiness mode) over
//! `Timeout`. Counting wrappers sit between the retry and the balancer (every attempt) and
//! between the balancer and each breaker (every call the balancer makes to an endpoint); the
//! backends count what reaches them; one listener receives every layer's events.
//!
//! Requests arrive at a fixed rate (1,000/s, 10 every 10 ms), each on its own task. At the
//! end it checks: no task panicked; every request was ready within `wait_for_ready` and
//! answered within the retry deadline (plus 5 ms of timer slack); the runtime's live tasks are
//! back to the baseline once the stack is dropped (the health-check task stops); resident
//! memory (`VmRSS`) and the live heap (a counting global allocator) did not grow between two
//! quiet moments, after 10% of the requests and at the end; and the counts of every layer
//! (handles, events, wrappers, backends) add up, as listed in `check_identities`.
//!
//! The second test is a regression test for what this soak found in the balancer (it kept the
//! waker, and so the task, of every request that ever waited for an endpoint).
//!
//! The clock is tokio's, paused: latencies, outages and timeouts cost no wall-clock time, and
//! the run is the same every time for a given seed. For a longer soak:
//!
//! ```sh
//! BULWARK_SOAK_REQUESTS=2000000 cargo test --release --all-features --test soak -- --nocapture
//! BULWARK_SOAK_SEED=7 cargo test --all-features --test soak -- --nocapture   # another fault pattern
//! ```

#![cfg(all(feature = "circuit-breaker", feature = "retry", feature = "balance"))]

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt};
use tower_bulwark::balance::{
    BalanceLayer, EndpointSnapshot, Endpoints, Handle as BalanceHandle, HealthCheck,
    NoEndpointReady, Strategy,
};
use tower_bulwark::circuit_breaker::{
    CircuitBreakerLayer, Handle as BreakerHandle, MetricsSnapshot, Mode,
};
use tower_bulwark::core::attempts::{Attempts, RequestAttempts};
use tower_bulwark::core::backoff::{ExponentialBackoff, Jitter};
use tower_bulwark::core::budget::BudgetStats;
use tower_bulwark::core::{
    BoxError, CircuitState, DefaultClassifier, Event, GiveUpReason, Listener, Outcome,
    RandomSource, SharedListener, SplitMix64,
};
use tower_bulwark::retry::{BackoffRetryLayer, BudgetConfig, DeadlineExceeded, RetryFailures};

// Counts live heap bytes (allocated minus freed), a finer leak detector than resident memory.
#[global_allocator]
static GLOBAL: &stats_alloc::StatsAlloc<std::alloc::System> = &stats_alloc::INSTRUMENTED_SYSTEM;

// ---------------------------------------------------------------------------------------------
// Settings.
// ---------------------------------------------------------------------------------------------

const BACKENDS: usize = 3;
/// Offered load: `BATCH` requests every `1000 / (RATE_PER_SEC / BATCH)` ms.
const RATE_PER_SEC: u64 = 1_000;
const BATCH: u64 = 10;
/// Per attempt (tower's `Timeout` over each backend); a slow backend answers after 100-800 ms.
const ATTEMPT_TIMEOUT: Duration = Duration::from_millis(250);
/// The retry layer's deadline for all attempts of a request, from its call.
const DEADLINE: Duration = Duration::from_secs(1);
/// The balancer's wait for an endpoint that can take a request.
const WAIT_FOR_READY: Duration = Duration::from_millis(300);
const MAX_ATTEMPTS: u32 = 3;
/// Timer slack on the outer checks: tokio's timers fire on millisecond ticks.
const SLACK: Duration = Duration::from_millis(5);
/// The breakers' count window, and how long they stay open.
const COUNT_WINDOW: usize = 20;
const OPEN_FOR: Duration = Duration::from_secs(1);
/// The retry budget.
const BUDGET: BudgetConfig = BudgetConfig {
    ratio: 0.2,
    floor_per_sec: 10,
    window: Duration::from_secs(10),
};
/// At most this share of the endpoints ejected at once: one of three.
const MAX_EJECTED: f64 = 0.5;

// ---------------------------------------------------------------------------------------------
// Requests and the retry policy.
// ---------------------------------------------------------------------------------------------

/// A request: a number, the backends it has been sent to (shared by its clones, so a resend
/// goes to another backend), and how many attempts were made (counted below the retry layer).
#[derive(Clone, Debug)]
struct Req {
    id: u64,
    attempts: Option<Attempts>,
    tries: Arc<AtomicU32>,
}

#[derive(Clone, Copy, Debug)]
struct ReqAttempts;

impl RequestAttempts<Req> for ReqAttempts {
    fn attempts<'r>(&self, request: &'r Req) -> Option<&'r Attempts> {
        request.attempts.as_ref()
    }

    fn ensure(&self, request: &mut Req) {
        request.attempts.get_or_insert_with(Attempts::new);
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = Result<T, BoxError>> + Send>>;

/// A backend's "500".
#[derive(Debug)]
struct Failed;

impl std::fmt::Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("500")
    }
}

impl std::error::Error for Failed {}

// ---------------------------------------------------------------------------------------------
// Fault schedules: what each backend does, and what its health probe says, over time.
// ---------------------------------------------------------------------------------------------

/// What a backend does with requests during a phase.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Phase {
    /// Answers after 2-60 ms.
    Up,
    /// Fails this share of requests (after its usual latency).
    Errors(f64),
    /// Answers after 100-800 ms: mostly past the per-attempt timeout.
    Slow,
    /// Refuses at once (connection refused).
    Outage,
}

/// What a backend's health probe says during a period.
#[derive(Clone, Copy, Debug, PartialEq)]
enum ProbeSays {
    /// The truth: refused in an outage, slow when slow, fine otherwise (a backend failing its
    /// requests usually still answers its health check).
    Truth,
    /// Unhealthy, while requests may work (a flip).
    Unhealthy,
    /// Healthy at once, while requests may fail (a flip).
    Healthy,
}

/// A value per period: `values[k]` from `starts[k]` until `starts[k + 1]`.
struct Schedule<T> {
    starts: Vec<Duration>,
    values: Vec<T>,
}

impl<T: Copy> Schedule<T> {
    /// Periods of `min..max` each until `horizon`, then `last` for ever.
    fn generate(
        random: &SplitMix64,
        horizon: Duration,
        (min, max): (Duration, Duration),
        last: T,
        pick: impl Fn(&SplitMix64) -> T,
    ) -> Self {
        let (mut starts, mut values) = (Vec::new(), Vec::new());
        let mut t = Duration::ZERO;
        while t < horizon {
            starts.push(t);
            values.push(pick(random));
            t += min + (max - min).mul_f64(random.next_f64());
        }
        starts.push(t);
        values.push(last);
        Schedule { starts, values }
    }

    fn at(&self, t: Duration) -> T {
        let k = self.starts.partition_point(|s| *s <= t);
        self.values[k.saturating_sub(1)]
    }

    fn count(&self, f: impl Fn(&T) -> bool) -> usize {
        self.values.iter().filter(|v| f(v)).count()
    }
}

fn phase(random: &SplitMix64) -> Phase {
    let roll = random.next_f64();
    if roll < 0.45 {
        Phase::Up
    } else if roll < 0.65 {
        Phase::Errors(0.2 + 0.8 * random.next_f64())
    } else if roll < 0.8 {
        Phase::Slow
    } else {
        Phase::Outage
    }
}

fn probe_says(random: &SplitMix64) -> ProbeSays {
    let roll = random.next_f64();
    if roll < 0.6 {
        ProbeSays::Truth
    } else if roll < 0.8 {
        ProbeSays::Unhealthy
    } else {
        ProbeSays::Healthy
    }
}

/// 2-8 ms (90%), 8-20 ms (9%), 20-60 ms (1%), as in `benches/faults.rs`.
fn latency(random: &SplitMix64) -> Duration {
    let (bucket, within) = (random.next_f64(), random.next_f64());
    let ms = if bucket < 0.90 {
        2.0 + 6.0 * within
    } else if bucket < 0.99 {
        8.0 + 12.0 * within
    } else {
        20.0 + 40.0 * within
    };
    Duration::from_micros((ms * 1000.0) as u64)
}

fn slow_latency(random: &SplitMix64) -> Duration {
    Duration::from_millis(100 + (700.0 * random.next_f64()) as u64)
}

// ---------------------------------------------------------------------------------------------
// Simulated backends.
// ---------------------------------------------------------------------------------------------

/// What reached a backend.
#[derive(Default, Debug)]
struct BackendTally {
    /// Request calls.
    calls: AtomicU64,
    /// Calls answered `Ok`.
    ok: AtomicU64,
    /// Calls answered with an error (a 500, or refused).
    err: AtomicU64,
    /// Calls whose future was dropped before it answered (a timeout or a deadline above).
    dropped: AtomicU64,
    /// Health probes.
    probes: AtomicU64,
}

struct BackendShared {
    start: Instant,
    phases: Schedule<Phase>,
    probe: Schedule<ProbeSays>,
    random: SplitMix64,
    tally: BackendTally,
}

#[derive(Clone)]
struct Backend(Arc<BackendShared>);

impl Backend {
    fn new(index: usize, seed: u64, horizon: Duration) -> Self {
        let random = SplitMix64::new(seed.wrapping_mul(31).wrapping_add(index as u64 * 7919));
        let phases = Schedule::generate(
            &random,
            horizon,
            (Duration::from_millis(200), Duration::from_secs(6)),
            Phase::Up,
            phase,
        );
        let probe = Schedule::generate(
            &random,
            horizon,
            (Duration::from_millis(500), Duration::from_secs(8)),
            ProbeSays::Truth,
            probe_says,
        );
        Backend(Arc::new(BackendShared {
            start: Instant::now(),
            phases,
            probe,
            random,
            tally: BackendTally::default(),
        }))
    }
}

/// Counts a backend call's end: an answer, or (if dropped first) a drop.
struct BackendCall {
    shared: Arc<BackendShared>,
    answered: bool,
}

impl BackendCall {
    fn answer(mut self, ok: bool) {
        self.answered = true;
        let counter = if ok {
            &self.shared.tally.ok
        } else {
            &self.shared.tally.err
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

impl Drop for BackendCall {
    fn drop(&mut self) {
        if !self.answered {
            self.shared.tally.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Service<Req> for Backend {
    type Response = u64;
    type Error = BoxError;
    type Future = BoxFuture<u64>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let s = &self.0;
        s.tally.calls.fetch_add(1, Ordering::Relaxed);
        let phase = s.phases.at(s.start.elapsed());
        let wait = match phase {
            Phase::Slow => slow_latency(&s.random),
            _ => latency(&s.random),
        };
        let fails = match phase {
            Phase::Errors(rate) => s.random.next_f64() < rate,
            Phase::Outage => true,
            Phase::Up | Phase::Slow => false,
        };
        let call = BackendCall {
            shared: self.0.clone(),
            answered: false,
        };
        let id = req.id;
        Box::pin(async move {
            if phase == Phase::Outage {
                call.answer(false);
                return Err(
                    Box::new(std::io::Error::from(std::io::ErrorKind::ConnectionRefused))
                        as BoxError,
                );
            }
            tokio::time::sleep(wait).await;
            call.answer(!fails);
            if fails {
                Err(Box::new(Failed) as BoxError)
            } else {
                Ok(id)
            }
        })
    }
}

/// A backend's health probe.
#[derive(Clone)]
struct Probe(Backend);

impl Service<()> for Probe {
    type Response = ();
    type Error = BoxError;
    type Future = BoxFuture<()>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: ()) -> Self::Future {
        let s = &self.0 .0;
        s.tally.probes.fetch_add(1, Ordering::Relaxed);
        let t = s.start.elapsed();
        let answer: Result<Option<Duration>, ()> = match (s.probe.at(t), s.phases.at(t)) {
            (ProbeSays::Unhealthy, _) | (ProbeSays::Truth, Phase::Outage) => Err(()),
            (ProbeSays::Healthy, _) => Ok(None),
            (ProbeSays::Truth, Phase::Slow) => Ok(Some(slow_latency(&s.random))),
            (ProbeSays::Truth, Phase::Up | Phase::Errors(_)) => Ok(Some(latency(&s.random))),
        };
        Box::pin(async move {
            match answer {
                Err(()) => Err(Box::new(Failed) as BoxError),
                Ok(None) => Ok(()),
                Ok(Some(wait)) => {
                    tokio::time::sleep(wait).await;
                    Ok(())
                }
            }
        })
    }
}

// ---------------------------------------------------------------------------------------------
// A counting wrapper: calls, and how each ended.
// ---------------------------------------------------------------------------------------------

#[derive(Default, Debug)]
struct Tally {
    calls: AtomicU64,
    ok: AtomicU64,
    /// Every error, the two kinds below included.
    err: AtomicU64,
    /// Errors that are tower's `Elapsed` (the per-attempt timeout).
    timeouts: AtomicU64,
    /// Errors that are the balancer's `NoEndpointReady` (a rejection: no endpoint reached).
    unavailable: AtomicU64,
    /// Futures dropped before they ended.
    dropped: AtomicU64,
}

fn get(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

/// Counts what goes through it; `tries` also counts the attempts in each request.
#[derive(Clone)]
struct Counted<S> {
    inner: S,
    tally: Arc<Tally>,
    tries: bool,
}

struct CountedCall {
    tally: Arc<Tally>,
    ended: bool,
}

impl Drop for CountedCall {
    fn drop(&mut self) {
        if !self.ended {
            self.tally.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl<S> Service<Req> for Counted<S>
where
    S: Service<Req, Response = u64, Error = BoxError>,
    S::Future: Send + 'static,
{
    type Response = u64;
    type Error = BoxError;
    type Future = BoxFuture<u64>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        self.tally.calls.fetch_add(1, Ordering::Relaxed);
        if self.tries {
            req.tries.fetch_add(1, Ordering::Relaxed);
        }
        let future = self.inner.call(req);
        let mut call = CountedCall {
            tally: self.tally.clone(),
            ended: false,
        };
        Box::pin(async move {
            let result = future.await;
            call.ended = true;
            let t = &call.tally;
            match &result {
                Ok(_) => t.ok.fetch_add(1, Ordering::Relaxed),
                Err(e) => {
                    if e.is::<tower::timeout::error::Elapsed>() {
                        t.timeouts.fetch_add(1, Ordering::Relaxed);
                    }
                    if e.is::<NoEndpointReady>() {
                        t.unavailable.fetch_add(1, Ordering::Relaxed);
                    }
                    t.err.fetch_add(1, Ordering::Relaxed)
                }
            };
            result
        })
    }
}

// ---------------------------------------------------------------------------------------------
// The listener: every layer's events, and a model of what the handles should say.
// ---------------------------------------------------------------------------------------------

/// One breaker as its events describe it.
#[derive(Debug)]
struct BreakerModel {
    state: CircuitState,
    /// The counted outcomes of the current closed period, newest last (true = failed), at
    /// most `COUNT_WINDOW`: what the breaker's count window should hold.
    window: VecDeque<bool>,
    consecutive_failures: u32,
    successes: u64,
    failures: u64,
    ignored: u64,
    rejected: u64,
    tripped: u64,
    opened: u64,
    transitions: u64,
    /// Transitions whose `from` was not the state the previous one entered.
    out_of_order: u64,
}

impl Default for BreakerModel {
    fn default() -> Self {
        BreakerModel {
            state: CircuitState::Closed,
            window: VecDeque::with_capacity(COUNT_WINDOW + 1),
            consecutive_failures: 0,
            successes: 0,
            failures: 0,
            ignored: 0,
            rejected: 0,
            tripped: 0,
            opened: 0,
            transitions: 0,
            out_of_order: 0,
        }
    }
}

#[derive(Debug)]
struct BalanceModel {
    healthy: [bool; BACKENDS],
    health_changes: [u64; BACKENDS],
    ejected: [bool; BACKENDS],
    ejections: [u64; BACKENDS],
    returns: [u64; BACKENDS],
    out_now: usize,
    max_out: usize,
    /// Health changes to the health it had, ejections of an ejected endpoint, returns of one
    /// that was not out.
    inconsistent: u64,
}

impl Default for BalanceModel {
    fn default() -> Self {
        BalanceModel {
            healthy: [true; BACKENDS],
            health_changes: [0; BACKENDS],
            ejected: [false; BACKENDS],
            ejections: [0; BACKENDS],
            returns: [0; BACKENDS],
            out_now: 0,
            max_out: 0,
            inconsistent: 0,
        }
    }
}

const REASONS: [GiveUpReason; 7] = [
    GiveUpReason::MaxAttempts,
    GiveUpReason::Budget,
    GiveUpReason::Deadline,
    GiveUpReason::NotResendable,
    GiveUpReason::RetryAfterTooLong,
    GiveUpReason::NotRetryable,
    GiveUpReason::Pushback,
];

#[derive(Debug, Default)]
struct RetryModel {
    scheduled: u64,
    gave_up: [u64; REASONS.len()],
    /// The attempts each give-up reported, summed.
    gave_up_attempts: u64,
}

impl RetryModel {
    fn gave_up(&self, reason: GiveUpReason) -> u64 {
        REASONS
            .iter()
            .position(|r| *r == reason)
            .map_or(0, |k| self.gave_up[k])
    }

    fn gave_up_total(&self) -> u64 {
        self.gave_up.iter().sum()
    }
}

#[derive(Debug, Default)]
struct Model {
    breakers: [BreakerModel; BACKENDS],
    balance: BalanceModel,
    retry: RetryModel,
    /// Events no layer of this stack should send, or with a name not ours.
    unexpected: u64,
}

#[derive(Debug, Default)]
struct Observer(Mutex<Model>);

impl Observer {
    fn lock(&self) -> MutexGuard<'_, Model> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn breaker_index(name: &str) -> Option<usize> {
    name.strip_prefix("breaker-")?
        .parse()
        .ok()
        .filter(|i| *i < BACKENDS)
}

impl Listener for Observer {
    fn on_event(&self, event: &Event<'_>) {
        let mut m = self.lock();
        let m = &mut *m;
        match *event {
            Event::StateTransition { name, from, to } => {
                let Some(b) = breaker_index(name).map(|i| &mut m.breakers[i]) else {
                    m.unexpected += 1;
                    return;
                };
                b.transitions += 1;
                if from != b.state {
                    b.out_of_order += 1;
                }
                if to == CircuitState::Closed {
                    b.window.clear();
                    b.consecutive_failures = 0;
                }
                if to == CircuitState::Open {
                    b.opened += 1;
                }
                b.state = to;
            }
            Event::Tripped { name, .. } => match breaker_index(name) {
                Some(i) => m.breakers[i].tripped += 1,
                None => m.unexpected += 1,
            },
            Event::CallRejected { name, .. } => match breaker_index(name) {
                Some(i) => m.breakers[i].rejected += 1,
                None => m.unexpected += 1,
            },
            Event::OutcomeRecorded {
                name,
                outcome,
                counted,
                ..
            } => {
                let Some(b) = breaker_index(name).map(|i| &mut m.breakers[i]) else {
                    m.unexpected += 1;
                    return;
                };
                let failed = match outcome {
                    Outcome::Success => {
                        b.successes += 1;
                        false
                    }
                    Outcome::Failure => {
                        b.failures += 1;
                        true
                    }
                    _ => {
                        b.ignored += 1;
                        return;
                    }
                };
                // A probe's outcome is "counted" towards the half-open state, not the window.
                if counted && b.state == CircuitState::Closed {
                    b.window.push_back(failed);
                    if b.window.len() > COUNT_WINDOW {
                        b.window.pop_front();
                    }
                    b.consecutive_failures = if failed {
                        b.consecutive_failures + 1
                    } else {
                        0
                    };
                }
            }
            Event::EndpointHealthChanged {
                name: "soak",
                endpoint,
                healthy,
            } if endpoint < BACKENDS => {
                let bal = &mut m.balance;
                if bal.healthy[endpoint] == healthy {
                    bal.inconsistent += 1;
                }
                bal.healthy[endpoint] = healthy;
                bal.health_changes[endpoint] += 1;
            }
            Event::EndpointEjected {
                name: "soak",
                endpoint,
                ..
            } if endpoint < BACKENDS => {
                let bal = &mut m.balance;
                if bal.ejected[endpoint] {
                    bal.inconsistent += 1;
                }
                bal.ejected[endpoint] = true;
                bal.ejections[endpoint] += 1;
                bal.out_now += 1;
                bal.max_out = bal.max_out.max(bal.out_now);
            }
            Event::EndpointReturned {
                name: "soak",
                endpoint,
            } if endpoint < BACKENDS => {
                let bal = &mut m.balance;
                if !bal.ejected[endpoint] {
                    bal.inconsistent += 1;
                }
                bal.ejected[endpoint] = false;
                bal.returns[endpoint] += 1;
                bal.out_now = bal.out_now.saturating_sub(1);
            }
            // The balancer's members at build (a static list: none leaves).
            Event::EndpointAdded {
                name: "soak",
                endpoint,
                ..
            } if endpoint < BACKENDS => {}
            Event::RetryScheduled { name: "soak", .. } => m.retry.scheduled += 1,
            Event::RetryGaveUp {
                name: "soak",
                attempts,
                reason,
            } => match REASONS.iter().position(|r| *r == reason) {
                Some(k) => {
                    m.retry.gave_up[k] += 1;
                    m.retry.gave_up_attempts += u64::from(attempts);
                }
                None => m.unexpected += 1,
            },
            _ => m.unexpected += 1,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The stack.
// ---------------------------------------------------------------------------------------------

struct Built<S> {
    stack: S,
    breakers: Vec<BreakerHandle>,
    balance: BalanceHandle,
    budget: Arc<tower_bulwark::retry::RetryBudget>,
    budget_created: Instant,
}

fn build(
    backends: &[Backend],
    endpoint_tallies: &[Arc<Tally>],
    attempt_tally: &Arc<Tally>,
    observer: &Arc<Observer>,
    seed: u64,
) -> Built<impl Service<Req, Response = u64, Error = BoxError, Future: Send> + Clone + Send + 'static>
{
    let listener = SharedListener::from(observer.clone());
    let mut breakers = Vec::new();
    let endpoints: Vec<_> = backends
        .iter()
        .zip(endpoint_tallies)
        .enumerate()
        .map(|(i, (backend, tally))| {
            let breaker = CircuitBreakerLayer::builder()
                .name(format!("breaker-{i}"))
                .failure_rate(0.5)
                .count_window(COUNT_WINDOW as u32)
                .min_calls(5)
                .open_for(OPEN_FOR)
                .mode(Mode::Readiness)
                .shared_listener(listener.clone())
                .build()
                .expect("valid breaker")
                .layer(tower::timeout::TimeoutLayer::new(ATTEMPT_TIMEOUT).layer(backend.clone()));
            breakers.push(breaker.handle());
            Counted {
                inner: breaker,
                tally: tally.clone(),
                tries: false,
            }
        })
        .collect();
    let probes: Vec<Probe> = backends.iter().cloned().map(Probe).collect();
    let balance = BalanceLayer::builder()
        .name("soak")
        .strategy(Strategy::P2cPeakEwma)
        .health_check(HealthCheck {
            interval: Duration::from_millis(500),
            timeout: ATTEMPT_TIMEOUT,
            unhealthy_after: 2,
            healthy_after: 1,
            jitter: 0.1,
        })
        .ejection(tower_bulwark::balance::Ejection {
            consecutive_failures: 5,
            base: Duration::from_secs(1),
            forget_after: Duration::from_secs(1),
            max: Duration::from_secs(8),
            max_ejected: MAX_EJECTED,
            failure_rate: None,
        })
        .wait_for_ready(WAIT_FOR_READY)
        .attempts(ReqAttempts)
        .listener({
            let observer = observer.clone();
            move |event: &Event<'_>| observer.on_event(event)
        })
        .random(SplitMix64::new(seed ^ 0xba1a))
        .build()
        .expect("valid balancer")
        .build(Endpoints::list(endpoints).health(probes))
        .expect("one probe per endpoint");
    let balance_handle = balance.handle();
    let retry = BackoffRetryLayer::builder()
        .name("soak")
        .max_attempts(MAX_ATTEMPTS)
        .backoff(
            ExponentialBackoff::new(
                Duration::from_millis(10),
                2.0,
                Duration::from_millis(100),
                Jitter::Full,
            )
            .expect("valid backoff"),
        )
        .budget(BUDGET)
        .deadline(DEADLINE)
        .random(SplitMix64::new(seed ^ 0x4e7)) // jitter
        .shared_listener(listener)
        .policy(RetryFailures::new(DefaultClassifier).attempts(ReqAttempts))
        .build()
        .expect("valid retry");
    let budget_created = Instant::now();
    let budget = retry.budget().expect("a budget").clone();
    let stack = retry.layer(Counted {
        inner: balance,
        tally: attempt_tally.clone(),
        tries: true,
    });
    Built {
        stack,
        breakers,
        balance: balance_handle,
        budget,
        budget_created,
    }
}

// ---------------------------------------------------------------------------------------------
// The caller.
// ---------------------------------------------------------------------------------------------

/// How one request ended, as its caller saw it.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Answer {
    Ok,
    /// The last attempt's backend answered 500.
    Failed,
    /// The last attempt's backend refused the connection.
    Refused,
    /// The last attempt timed out (tower's `Elapsed`).
    AttemptTimeout,
    /// No endpoint could take the last attempt within `wait_for_ready`.
    Unavailable,
    /// The retry deadline cut an attempt short.
    Deadline,
    /// Any other error: a misuse error of some layer. Must not happen.
    Other,
    /// Not ready within `wait_for_ready` (+ slack): must not happen.
    ReadyTooLate,
    /// `poll_ready` failed: must not happen (the balancer fails in `call`).
    ReadyFailed,
    /// Not answered within the deadline (+ slack): must not happen.
    TooLate,
}

const ANSWERS: [Answer; 10] = [
    Answer::Ok,
    Answer::Failed,
    Answer::Refused,
    Answer::AttemptTimeout,
    Answer::Unavailable,
    Answer::Deadline,
    Answer::Other,
    Answer::ReadyTooLate,
    Answer::ReadyFailed,
    Answer::TooLate,
];

fn answer_of(result: &Result<u64, BoxError>) -> Answer {
    let Err(e) = result else {
        return Answer::Ok;
    };
    if e.is::<Failed>() {
        Answer::Failed
    } else if e
        .downcast_ref::<std::io::Error>()
        .is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionRefused)
    {
        Answer::Refused
    } else if e.is::<tower::timeout::error::Elapsed>() {
        Answer::AttemptTimeout
    } else if e.is::<NoEndpointReady>() {
        Answer::Unavailable
    } else if e.is::<DeadlineExceeded>() {
        Answer::Deadline
    } else {
        Answer::Other
    }
}

#[derive(Clone, Copy, Debug)]
struct Done {
    answer: Answer,
    /// Attempts the request made.
    tries: u32,
    ready_wait: Duration,
    call_latency: Duration,
}

/// One request, timed: ready within `WAIT_FOR_READY`, answered within `DEADLINE`.
async fn request<S>(mut svc: S, id: u64) -> Done
where
    S: Service<Req, Response = u64, Error = BoxError>,
{
    let begin = Instant::now();
    let ready = tokio::time::timeout(WAIT_FOR_READY + SLACK, svc.ready()).await;
    let ready_wait = begin.elapsed();
    let mut done = Done {
        answer: Answer::Ok,
        tries: 0,
        ready_wait,
        call_latency: Duration::ZERO,
    };
    match ready {
        Err(_) => {
            done.answer = Answer::ReadyTooLate;
            return done;
        }
        Ok(Err(_)) => {
            done.answer = Answer::ReadyFailed;
            return done;
        }
        Ok(Ok(_)) => {}
    }
    let tries = Arc::new(AtomicU32::new(0));
    let called = Instant::now();
    let future = svc.call(Req {
        id,
        attempts: None,
        tries: tries.clone(),
    });
    drop(svc); // adds this request to the retry budget
    let result = tokio::time::timeout(DEADLINE + SLACK, future).await;
    done.call_latency = called.elapsed();
    done.tries = tries.load(Ordering::Relaxed);
    done.answer = match result {
        Err(_) => Answer::TooLate,
        Ok(r) => answer_of(&r),
    };
    done
}

#[derive(Debug, Default)]
struct Caller {
    sent: u64,
    joined: u64,
    panicked: u64,
    answers: [u64; ANSWERS.len()],
    tries: u64,
    tries_of_failed: u64,
    failed_after_max_tries: u64,
    max_tries: u32,
    max_ready_wait: Duration,
    max_call_latency: Duration,
    max_latency: Duration,
    max_in_flight: usize,
    /// The most in flight during the first tenth.
    max_in_flight_tenth: usize,
}

impl Caller {
    fn count(&self, a: Answer) -> u64 {
        ANSWERS
            .iter()
            .position(|x| *x == a)
            .map_or(0, |k| self.answers[k])
    }

    fn add(&mut self, joined: Result<Done, tokio::task::JoinError>) {
        self.joined += 1;
        let Ok(d) = joined else {
            self.panicked += 1;
            return;
        };
        if let Some(k) = ANSWERS.iter().position(|x| *x == d.answer) {
            self.answers[k] += 1;
        }
        self.tries += u64::from(d.tries);
        if d.answer != Answer::Ok {
            self.tries_of_failed += u64::from(d.tries);
            if d.tries == MAX_ATTEMPTS {
                self.failed_after_max_tries += 1;
            }
        }
        self.max_tries = self.max_tries.max(d.tries);
        self.max_ready_wait = self.max_ready_wait.max(d.ready_wait);
        self.max_call_latency = self.max_call_latency.max(d.call_latency);
        self.max_latency = self.max_latency.max(d.ready_wait + d.call_latency);
    }
}

// ---------------------------------------------------------------------------------------------
// Memory.
// ---------------------------------------------------------------------------------------------

/// A line of /proc/self/status in KiB (`VmRSS`, `RssAnon`); `None` off Linux.
fn status_kib(key: &str) -> Option<u64> {
    std::fs::read_to_string("/proc/self/status")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn live_heap() -> i64 {
    let s = GLOBAL.stats();
    s.bytes_allocated as i64 - s.bytes_deallocated as i64
}

#[derive(Debug, Clone, Copy)]
struct Memory {
    /// Resident memory (`VmRSS`).
    rss_kib: Option<u64>,
    /// Its anonymous part (`RssAnon`): the heap and stacks, not the pages of the binary.
    anon_kib: Option<u64>,
    /// Live heap bytes now.
    heap: i64,
    /// The most live heap bytes seen so far (sampled every tick of the run).
    heap_peak: i64,
}

fn memory(heap_peak: i64) -> Memory {
    let heap = live_heap();
    Memory {
        rss_kib: status_kib("VmRSS"),
        anon_kib: status_kib("RssAnon"),
        heap,
        heap_peak: heap_peak.max(heap),
    }
}

// ---------------------------------------------------------------------------------------------
// The run.
// ---------------------------------------------------------------------------------------------

/// Lets what the layers keep for a bounded time go, before memory is measured.
///
/// A waker keeps its task's memory, finished or not, and two layers keep wakers of tasks that
/// have moved on: a breaker in readiness mode keeps the waker of each task it turned away until
/// its next state change, which, from open, comes with the first look after the open period;
/// the balancer keeps the waker of each request that waited for an endpoint until it wakes
/// them (an endpoint marked healthy or added) or, once `wait_for_ready` has passed, until its
/// next wait. So: wait out the open period and look at each breaker (a handle's `state` moves
/// an open breaker whose time is up to half-open, which wakes its waiters and lets them go),
/// then flip the health of an endpoint that is not ejected and back (nothing else moves; it
/// wakes and lets go of the balancer's waiters; the listener sees two health changes).
async fn settle(breakers: &[BreakerHandle], balance: &BalanceHandle) {
    tokio::time::sleep(OPEN_FOR.max(WAIT_FOR_READY) + Duration::from_millis(10)).await;
    for breaker in breakers {
        let _ = breaker.state();
    }
    if let Some((i, e)) = balance
        .endpoints()
        .into_iter()
        .enumerate()
        .find(|(_, e)| e.ejected_for.is_none())
    {
        balance.set_healthy(i, !e.healthy);
        balance.set_healthy(i, e.healthy);
    }
    tokio::task::yield_now().await;
}

struct Report {
    requests: u64,
    seed: u64,
    simulated: Duration,
    task_bytes: usize,
    caller: Caller,
    tasks_before: usize,
    tasks_with_stack: usize,
    tasks_drained: usize,
    tasks_after: usize,
    mem_tenth: Memory,
    mem_end: Memory,
    backends: Vec<(u64, u64, u64, u64, u64)>,
    endpoints: Vec<EndpointSnapshot>,
    breakers: Vec<MetricsSnapshot>,
    budget: BudgetStats,
    budget_age: Duration,
    endpoint_tallies: Vec<[u64; 6]>,
    attempts: [u64; 6],
    model: Model,
    phases: [usize; 4],
    flips: usize,
    probes: u64,
}

fn tally(t: &Tally) -> [u64; 6] {
    [
        get(&t.calls),
        get(&t.ok),
        get(&t.err),
        get(&t.timeouts),
        get(&t.unavailable),
        get(&t.dropped),
    ]
}

async fn run(requests: u64, seed: u64) -> Report {
    let metrics = tokio::runtime::Handle::current().metrics();
    let tasks_before = metrics.num_alive_tasks();
    let horizon = Duration::from_millis(requests * 1000 / RATE_PER_SEC) + Duration::from_secs(5);
    let backends: Vec<Backend> = (0..BACKENDS)
        .map(|i| Backend::new(i, seed, horizon))
        .collect();
    let endpoint_tallies: Vec<Arc<Tally>> = (0..BACKENDS).map(|_| Arc::default()).collect();
    let attempt_tally = Arc::new(Tally::default());
    let observer = Arc::new(Observer::default());
    let built = build(
        &backends,
        &endpoint_tallies,
        &attempt_tally,
        &observer,
        seed,
    );
    let tasks_with_stack = metrics.num_alive_tasks();

    // The size of one request's task (its future), for the live-heap bound.
    let task_bytes = std::mem::size_of_val(&request(built.stack.clone(), 0));
    let began = Instant::now();
    let mut start = began;
    let tick = Duration::from_nanos(1_000_000_000 * BATCH / RATE_PER_SEC);
    let tenth = requests / 10;
    let mut caller = Caller::default();
    let mut set = JoinSet::new();
    let mut mem_tenth = None;
    let mut heap_peak = live_heap();
    let mut ticks = 0u32;
    while caller.sent < requests {
        tokio::time::sleep_until(start + tick * ticks).await;
        ticks += 1;
        for _ in 0..BATCH.min(requests - caller.sent) {
            set.spawn(request(built.stack.clone(), caller.sent));
            caller.sent += 1;
        }
        caller.max_in_flight = caller.max_in_flight.max(set.len());
        heap_peak = heap_peak.max(live_heap());
        while let Some(joined) = set.try_join_next() {
            caller.add(joined);
        }
        if mem_tenth.is_none() && caller.sent >= tenth {
            // A quiet moment to measure: every request so far answered.
            while let Some(joined) = set.join_next().await {
                caller.add(joined);
            }
            settle(&built.breakers, &built.balance).await;
            mem_tenth = Some(memory(heap_peak));
            caller.max_in_flight_tenth = caller.max_in_flight;
            // Carry on at the same rate from here (no burst to catch up with the pause).
            start = Instant::now();
            ticks = 0;
        }
    }
    while let Some(joined) = set.join_next().await {
        caller.add(joined);
    }
    let simulated = began.elapsed();
    settle(&built.breakers, &built.balance).await;
    let mem_end = memory(heap_peak);
    let tasks_drained = metrics.num_alive_tasks();

    // Read the handles before the model: reading a breaker may move it from open to half-open,
    // which it reports to the listener.
    let breakers: Vec<MetricsSnapshot> = built.breakers.iter().map(|h| h.metrics()).collect();
    let endpoints = built.balance.endpoints();
    let budget = built.budget.stats();
    let budget_age = built.budget_created.elapsed();
    let model = std::mem::take(&mut *observer.lock());

    // Dropping the stack (and every handle, which keeps the balancer alive) stops the
    // health-check task.
    drop(built);
    drop(set);
    tokio::time::sleep(Duration::from_millis(10)).await;
    let tasks_after = metrics.num_alive_tasks();

    let mut phases = [0; 4];
    let mut flips = 0;
    let mut probes = 0;
    for b in &backends {
        for (k, p) in [Phase::Up, Phase::Errors(0.0), Phase::Slow, Phase::Outage]
            .iter()
            .enumerate()
        {
            phases[k] +=
                b.0.phases
                    .count(|x| std::mem::discriminant(x) == std::mem::discriminant(p));
        }
        flips += b.0.probe.count(|p| *p != ProbeSays::Truth);
        probes += get(&b.0.tally.probes);
    }
    Report {
        requests,
        seed,
        simulated,
        task_bytes,
        caller,
        tasks_before,
        tasks_with_stack,
        tasks_drained,
        tasks_after,
        mem_tenth: mem_tenth.unwrap_or(mem_end),
        mem_end,
        backends: backends
            .iter()
            .map(|b| {
                let t = &b.0.tally;
                (
                    get(&t.calls),
                    get(&t.ok),
                    get(&t.err),
                    get(&t.dropped),
                    get(&t.probes),
                )
            })
            .collect(),
        endpoints,
        breakers,
        budget,
        budget_age,
        endpoint_tallies: endpoint_tallies.iter().map(|t| tally(t)).collect(),
        attempts: tally(&attempt_tally),
        model,
        phases,
        flips,
        probes,
    }
}

// ---------------------------------------------------------------------------------------------
// The checks.
// ---------------------------------------------------------------------------------------------

/// Growth of resident memory allowed between 10% of the run and its end, beyond what the
/// heap's high-water mark grew: 5% of it, or 4 MiB if that is more.
///
/// Resident memory follows the heap's high-water mark, not what is live (the allocator keeps
/// freed memory for reuse), and a burst of requests in flight later in the run than any before
/// the first tenth raises that mark without any leak: up to `RATE_PER_SEC * (WAIT_FOR_READY +
/// DEADLINE)` = 1,300 requests at about 5 KiB each in a debug build, several MiB in a process of
/// 6-9 MiB. So the bound allows the measured growth of the high-water mark (times 1.5 for the
/// allocator's own overhead) plus a floor for the rest (pages of code and data first touched
/// late, the allocator's caches). A leak shows in the live-heap check (`HEAP_SLACK`), which is
/// far finer; this one catches memory that does not go through the heap.
const RSS_SLACK_KIB: u64 = 4 * 1024;

/// Growth of the live heap allowed between the two quiet moments (every request answered,
/// the layers settled, the stack alive): capacity that queues and waiter lists keep after the
/// largest burst, a pointer or two per request in flight at the peak. A leak of 3 bytes per
/// request exceeds it over 90,000 requests.
const HEAP_SLACK: i64 = 256 * 1024;

macro_rules! check {
    ($failures:ident, $cond:expr, $($msg:tt)+) => {
        if !$cond {
            $failures.push(format!($($msg)+));
        }
    };
}

fn check_identities(r: &Report) -> Vec<String> {
    let mut f = Vec::new();
    let c = &r.caller;
    let m = &r.model;

    // (a) No panic; every request answered, in time.
    check!(f, c.panicked == 0, "{} request tasks panicked", c.panicked);
    check!(
        f,
        c.joined == r.requests,
        "{} of {} requests joined",
        c.joined,
        r.requests
    );
    for bad in [
        Answer::ReadyTooLate,
        Answer::ReadyFailed,
        Answer::TooLate,
        Answer::Other,
    ] {
        check!(
            f,
            c.count(bad) == 0,
            "{} requests ended {bad:?}",
            c.count(bad)
        );
    }
    // (b) Within the deadline: ready within wait_for_ready, answered within the deadline.
    check!(
        f,
        c.max_ready_wait <= WAIT_FOR_READY + SLACK,
        "a request waited {:?} to be ready",
        c.max_ready_wait
    );
    check!(
        f,
        c.max_call_latency <= DEADLINE + SLACK,
        "a request took {:?} from its call",
        c.max_call_latency
    );

    // (c) Live tasks: the health-check task while the stack lives, nothing after.
    check!(
        f,
        r.tasks_with_stack == r.tasks_before + 1,
        "alive tasks: {} before building the stack, {} after (expected +1: health checks)",
        r.tasks_before,
        r.tasks_with_stack
    );
    check!(
        f,
        r.tasks_drained == r.tasks_before + 1,
        "alive tasks once every request answered: {} (baseline {} + health checks)",
        r.tasks_drained,
        r.tasks_before
    );
    check!(
        f,
        r.tasks_after == r.tasks_before,
        "alive tasks after dropping the stack: {} (baseline {})",
        r.tasks_after,
        r.tasks_before
    );

    // (d) Memory flat.
    if let (Some(a), Some(b)) = (r.mem_tenth.rss_kib, r.mem_end.rss_kib) {
        let peak_growth_kib = (r.mem_end.heap_peak - r.mem_tenth.heap_peak).max(0) as u64 / 1024;
        let allowed = (a / 20).max(RSS_SLACK_KIB) + peak_growth_kib * 3 / 2;
        check!(
            f,
            b <= a + allowed,
            "resident memory grew from {a} KiB to {b} KiB (allowed +{allowed} KiB)"
        );
    }
    let grown = r.mem_end.heap - r.mem_tenth.heap;
    check!(
        f,
        grown <= HEAP_SLACK,
        "live heap grew by {grown} bytes between 10% and the end (allowed {HEAP_SLACK})"
    );

    // (e) The counts add up. Per endpoint i, from the backend up:
    let mut sum = [0u64; 6];
    for i in 0..BACKENDS {
        let (b_calls, b_ok, b_err, b_dropped, _) = r.backends[i];
        let [calls, ok, err, timeouts, unavailable, dropped] = r.endpoint_tallies[i];
        for (s, v) in sum.iter_mut().zip(r.endpoint_tallies[i]) {
            *s += v;
        }
        let e = &r.endpoints[i];
        let bh = &r.breakers[i];
        let bm = &m.breakers[i];
        // A breaker in readiness mode never refuses in `call` (the balancer only calls an
        // endpoint it polled ready), and `Timeout` passes every call on.
        check!(
            f,
            calls == b_calls,
            "endpoint {i}: balancer sent {calls} calls, backend got {b_calls}"
        );
        check!(
            f,
            ok == b_ok,
            "endpoint {i}: {ok} ok above the breaker, {b_ok} at the backend"
        );
        // A backend call is dropped by its timeout (an `Elapsed` error above) or because the
        // call above was dropped (the retry deadline).
        check!(
            f,
            b_dropped == timeouts + dropped,
            "endpoint {i}: backend dropped {b_dropped}, timeouts {timeouts} + cancelled {dropped}"
        );
        check!(
            f,
            err == b_err + timeouts && unavailable == 0,
            "endpoint {i}: {err} errors above the breaker, backend {b_err} + timeouts {timeouts} (unavailable {unavailable})"
        );
        check!(
            f,
            calls == ok + err + dropped,
            "endpoint {i}: {calls} calls, {ok} ok + {err} err + {dropped} dropped"
        );
        // The balancer's counts: every call that ended, by outcome; none in flight.
        check!(
            f,
            e.successes == ok && e.failures == err && e.in_flight == 0,
            "endpoint {i}: balancer counted {} successes / {} failures / {} in flight, the endpoint saw {ok} / {err} / 0",
            e.successes,
            e.failures,
            e.in_flight
        );
        // The breaker reported every outcome the balancer recorded, with the same verdict.
        check!(
            f,
            bm.successes == e.successes && bm.failures == e.failures && bm.ignored == 0,
            "breaker {i}: reported {} successes / {} failures / {} ignored, balancer {} / {}",
            bm.successes,
            bm.failures,
            bm.ignored,
            e.successes,
            e.failures
        );
        // `not_permitted` counts every refusal since the breaker was built, one event each.
        check!(
            f,
            bh.not_permitted == bm.rejected,
            "breaker {i}: not_permitted {} but {} CallRejected events",
            bh.not_permitted,
            bm.rejected
        );
        // The window is the counted outcomes since the last close, the last COUNT_WINDOW.
        let window_failures = bm.window.iter().filter(|x| **x).count() as u64;
        check!(
            f,
            bh.state == bm.state
                && bh.calls == bm.window.len() as u64
                && bh.failures == window_failures
                && bh.consecutive_failures == bm.consecutive_failures,
            "breaker {i}: handle says {:?}, {} calls, {} failures, {} in a row; events say {:?}, {}, {}, {}",
            bh.state,
            bh.calls,
            bh.failures,
            bh.consecutive_failures,
            bm.state,
            bm.window.len(),
            window_failures,
            bm.consecutive_failures
        );
        check!(
            f,
            bm.out_of_order == 0 && bm.tripped == bm.opened,
            "breaker {i}: {} transitions out of order, {} trips for {} openings",
            bm.out_of_order,
            bm.tripped,
            bm.opened
        );
        // Health and ejection as the events tell them.
        let bal = &m.balance;
        check!(
            f,
            e.healthy == bal.healthy[i],
            "endpoint {i}: handle says healthy={}, events say {}",
            e.healthy,
            bal.healthy[i]
        );
        check!(
            f,
            e.ejected_for.is_some() == bal.ejected[i]
                && bal.ejections[i] - bal.returns[i] == u64::from(bal.ejected[i]),
            "endpoint {i}: handle says ejected for {:?}; {} ejections, {} returns",
            e.ejected_for,
            bal.ejections[i],
            bal.returns[i]
        );
    }
    let bal = &m.balance;
    let cap = ((MAX_EJECTED * BACKENDS as f64).floor() as usize).max(1);
    check!(
        f,
        bal.inconsistent == 0 && bal.max_out <= cap,
        "balancer: {} inconsistent health/ejection events, {} ejected at once (cap {cap})",
        bal.inconsistent,
        bal.max_out
    );
    check!(f, m.unexpected == 0, "{} unexpected events", m.unexpected);

    // Attempts (between the retry and the balancer): successes + failures + rejections +
    // cancelled = calls.
    let [a_calls, a_ok, a_err, a_timeouts, a_unavailable, a_dropped] = r.attempts;
    let [e_calls, e_ok, e_err, e_timeouts, _, e_dropped] = sum;
    let (successes, failures): (u64, u64) = r
        .endpoints
        .iter()
        .fold((0, 0), |(s, f), e| (s + e.successes, f + e.failures));
    check!(
        f,
        a_calls == successes + failures + a_unavailable + a_dropped && a_calls == e_calls + a_unavailable,
        "attempts: {a_calls} calls; balancer {successes} successes + {failures} failures, {a_unavailable} rejected, {a_dropped} cancelled; endpoints got {e_calls}"
    );
    check!(
        f,
        a_ok == e_ok && a_err == e_err + a_unavailable && a_timeouts == e_timeouts && a_dropped == e_dropped,
        "attempts: {a_ok} ok / {a_err} err / {a_timeouts} timeouts / {a_dropped} dropped; endpoints {e_ok} / {e_err} (+{a_unavailable} rejected) / {e_timeouts} / {e_dropped}"
    );

    // The caller: each request answered once; an answer is ok exactly when an attempt was.
    let ok = c.count(Answer::Ok);
    let failed = r.requests - ok;
    check!(f, ok == a_ok, "caller: {ok} ok answers, {a_ok} ok attempts");
    check!(
        f,
        c.tries == a_calls && c.max_tries <= MAX_ATTEMPTS,
        "caller: {} attempts counted per request (at most {}), {a_calls} through the stack",
        c.tries,
        c.max_tries
    );
    // Each failed request gave up once, reporting the attempts it had made.
    let rm = &m.retry;
    check!(
        f,
        rm.gave_up_total() == failed && rm.gave_up_attempts == c.tries_of_failed,
        "retry: {} give-ups reporting {} attempts; {failed} failed requests made {}",
        rm.gave_up_total(),
        rm.gave_up_attempts,
        c.tries_of_failed
    );
    check!(
        f,
        rm.gave_up(GiveUpReason::MaxAttempts) <= c.failed_after_max_tries
            && c.count(Answer::Deadline) <= rm.gave_up(GiveUpReason::Deadline)
            && c.count(Answer::Unavailable) <= a_unavailable,
        "retry: {} gave up after max attempts, {} failed requests made {MAX_ATTEMPTS}; {} deadline answers, {} deadline give-ups",
        rm.gave_up(GiveUpReason::MaxAttempts),
        c.failed_after_max_tries,
        c.count(Answer::Deadline),
        rm.gave_up(GiveUpReason::Deadline)
    );
    // Every retry scheduled was sent, unless the deadline came while it waited for an endpoint
    // (a deadline give-up).
    let sent_retries = c.tries - r.requests;
    check!(
        f,
        rm.scheduled >= sent_retries
            && rm.scheduled - sent_retries <= rm.gave_up(GiveUpReason::Deadline),
        "retry: {} retries scheduled, {sent_retries} sent, {} deadline give-ups",
        rm.scheduled,
        rm.gave_up(GiveUpReason::Deadline)
    );
    // The budget: each scheduled retry was withdrawn from it. Over each aligned block of one
    // window, withdrawals are at most the floor plus `ratio` of the deposits made during that
    // block and the window before it; summed over blocks, each deposit counts at most twice.
    let floor = u64::from(BUDGET.floor_per_sec) * BUDGET.window.as_secs();
    let blocks = (r.budget_age.as_nanos() / BUDGET.window.as_nanos()) as u64 + 1;
    let bound = blocks * floor + (2.0 * BUDGET.ratio * r.requests as f64) as u64;
    check!(
        f,
        rm.scheduled <= bound,
        "budget: {} retries over {} requests in {blocks} windows (bound {bound})",
        rm.scheduled,
        r.requests
    );
    check!(
        f,
        r.budget.requests <= r.requests && r.budget.retries <= rm.scheduled,
        "budget window: {:?} over {} requests, {} retries in all",
        r.budget,
        r.requests,
        rm.scheduled
    );
    f
}

fn summary(r: &Report) -> String {
    let c = &r.caller;
    let kinds: Vec<String> = ANSWERS
        .iter()
        .filter(|a| **a != Answer::Ok && c.count(**a) > 0)
        .map(|a| format!("{a:?} {}", c.count(*a)))
        .collect();
    let m = &r.model;
    let opened: u64 = m.breakers.iter().map(|b| b.opened).sum();
    let rejected: u64 = m.breakers.iter().map(|b| b.rejected).sum();
    let ejections: u64 = m.balance.ejections.iter().sum();
    let health: u64 = m.balance.health_changes.iter().sum();
    let reasons: Vec<String> = REASONS
        .iter()
        .zip(m.retry.gave_up)
        .filter(|(_, n)| *n > 0)
        .map(|(r, n)| format!("{} {n}", r.as_str()))
        .collect();
    let kib = |k: Option<u64>| k.map_or("n/a".into(), |k| format!("{k} KiB"));
    format!(
        "soak: {} requests (seed {:#x}) over {:.1} s simulated, {} in flight at most; \
         ok {} ({:.2}%), failed {} [{}]; latency max {:?} (ready {:?}, call {:?}); \
         attempts {} (retries scheduled {}, gave up: {}); \
         phases up/errors/slow/outage {:?}, probe flips {}, probes {}; \
         breakers opened {opened}, refusals {rejected}; ejections {ejections}, health changes {health}; \
         RSS {} at 10% -> {} at end (anonymous {} -> {}); live heap {} -> {} bytes \
         (peak {} -> {}; in flight at most {} -> {}; a task {} bytes); \
         alive tasks {} before, {} with the stack, {} after",
        r.requests,
        r.seed,
        r.simulated.as_secs_f64(),
        c.max_in_flight,
        c.count(Answer::Ok),
        c.count(Answer::Ok) as f64 * 100.0 / r.requests.max(1) as f64,
        r.requests - c.count(Answer::Ok),
        kinds.join(", "),
        c.max_latency,
        c.max_ready_wait,
        c.max_call_latency,
        r.attempts[0],
        m.retry.scheduled,
        reasons.join(", "),
        r.phases,
        r.flips,
        r.probes,
        kib(r.mem_tenth.rss_kib),
        kib(r.mem_end.rss_kib),
        kib(r.mem_tenth.anon_kib),
        kib(r.mem_end.anon_kib),
        r.mem_tenth.heap,
        r.mem_end.heap,
        r.mem_tenth.heap_peak,
        r.mem_end.heap_peak,
        c.max_in_flight_tenth,
        c.max_in_flight,
        r.task_bytes,
        r.tasks_before,
        r.tasks_with_stack,
        r.tasks_after,
    )
}

fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => {
            let v = v.trim();
            let parsed = match v.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16),
                None => v.replace('_', "").parse(),
            };
            parsed.unwrap_or_else(|_| panic!("{name}={v} is not a number"))
        }
        Err(_) => default,
    }
}

#[test]
fn soak_full_stack_under_random_faults() {
    let requests = env_u64("BULWARK_SOAK_REQUESTS", 100_000);
    let seed = env_u64("BULWARK_SOAK_SEED", 0x50a6);
    assert!(requests >= 10, "BULWARK_SOAK_REQUESTS must be at least 10");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a runtime");
    let report = runtime.block_on(run(requests, seed));
    drop(runtime);
    println!("{}", summary(&report));
    let failures = check_identities(&report);
    assert!(
        failures.is_empty(),
        "{} invariant(s) broken:\n  {}\n{}",
        failures.len(),
        failures.join("\n  "),
        summary(&report)
    );
}

/// Found by this soak: the balancer kept the waker of every request that ever waited for an
/// endpoint until one was marked healthy or added (with no health checks, for ever), and with
/// it that request's finished task. A waiter whose own timer has fired since it last waited
/// (`wait_for_ready` later at the most) is now let go at the next wait.
#[tokio::test(start_paused = true)]
async fn the_balancer_lets_go_of_waiters_whose_wait_is_over() {
    struct Wake;
    impl std::task::Wake for Wake {
        fn wake(self: Arc<Self>) {}
    }
    /// An endpoint that is never ready.
    #[derive(Clone)]
    struct Busy;
    impl Service<u64> for Busy {
        type Response = u64;
        type Error = BoxError;
        type Future = std::future::Ready<Result<u64, BoxError>>;
        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
            Poll::Pending
        }
        fn call(&mut self, x: u64) -> Self::Future {
            std::future::ready(Ok(x))
        }
    }
    let balance = BalanceLayer::builder()
        .wait_for_ready(Duration::from_millis(100))
        .build()
        .expect("valid balancer")
        .build(vec![Busy, Busy])
        .expect("two endpoints");
    let poll_once = |wake: &Arc<Wake>| {
        let mut waiting = balance.clone();
        let waker = std::task::Waker::from(wake.clone());
        let poll = Service::<u64>::poll_ready(&mut waiting, &mut Context::from_waker(&waker));
        assert!(poll.is_pending(), "no endpoint is ever ready");
        // The request gives up here: its balancer (and its timer) are dropped.
    };
    let first = Arc::new(Wake);
    poll_once(&first);
    assert_eq!(
        Arc::strong_count(&first),
        2,
        "held while its wait may go on"
    );
    tokio::time::advance(Duration::from_millis(101)).await;
    let second = Arc::new(Wake);
    poll_once(&second);
    assert_eq!(Arc::strong_count(&first), 1, "let go once its wait is over");
    assert_eq!(Arc::strong_count(&second), 2);
}
