//! Benchmarks under faults: three client stacks over the same simulated backends, in seven
//! fault scenarios and without faults; then one million requests through our stack for
//! memory and allocations.
//!
//! ```sh
//! cargo bench --bench faults              # both parts, Markdown tables on stdout
//! cargo bench --bench faults -- scenarios # the fault scenarios only
//! cargo bench --bench faults -- memory    # the memory part only
//! cargo bench --bench faults -- overload  # the overload scenario only
//! cargo bench --bench faults -- tail      # the tail scenario only (hedging)
//! ```
//!
//! Everything runs on a current-thread tokio runtime with a paused clock: time advances only
//! when every task waits, so a backend's latency, a 30 s stall, a timeout or a backoff cost
//! no wall-clock time and every run gives the same figures (the randomness is seeded). The
//! latencies reported are the simulated ones: what a caller would wait, not the CPU cost of
//! the layers (that is the per-layer benches' subject).
//!
//! The stacks, over three backends:
//!
//! * **ours**: `BackoffRetry` (3 attempts, each on another backend, the default budget, a 2 s
//!   deadline) over `Balance` (p2c by peak-EWMA latency, health checks every 1 s with a
//!   250 ms timeout, unhealthy after 2 failures, default ejection) over, per backend,
//!   `CircuitBreaker` (readiness mode, 50% of 20 calls, at least 5, open 5 s) over `Timeout`
//!   (250 ms per attempt);
//! * **tower**: tower's `Retry` with a `TpsBudget` (the same 20% + 10/s over 10 s; a failed
//!   call is retried at once when the budget allows) over a `Buffer` (so `Retry` can clone
//!   it) over tower's p2c `Balance` by `PeakEwma` over, per backend, `Timeout` (250 ms);
//! * **naive**: round robin, nothing else.

// `std::time::Instant` is banned workspace-wide (tokio's clock is the one clock).
use futures_util::future::join_all;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt};
use tower_bulwark::balance::{BalanceLayer, Endpoints, HealthCheck, Strategy};
use tower_bulwark::circuit_breaker::{CircuitBreakerLayer, Mode};
use tower_bulwark::core::attempts::{Attempts, RequestAttempts};
use tower_bulwark::core::backoff::{ExponentialBackoff, Jitter};
use tower_bulwark::core::{BoxError, DefaultClassifier, RandomSource, SplitMix64};
use tower_bulwark::retry::{BackoffRetryLayer, BudgetConfig, RetryFailures};

#[global_allocator]
static GLOBAL: &stats_alloc::StatsAlloc<std::alloc::System> = &stats_alloc::INSTRUMENTED_SYSTEM;

// ---------------------------------------------------------------------------------------------
// Simulated backends.
// ---------------------------------------------------------------------------------------------

/// A request: a number, and (for our stack) the set of backends it has been sent to, shared
/// by its clones, so a resend goes to another backend.
#[derive(Clone, Debug)]
struct Req {
    id: u64,
    attempts: Option<Attempts>,
}

impl Req {
    fn new(id: u64) -> Self {
        Req { id, attempts: None }
    }
}

/// Where our balancer finds a [`Req`]'s attempts.
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

/// What a backend does at a moment.
#[derive(Clone, Copy, Debug, PartialEq)]
enum State {
    /// Answers after its usual latency.
    Up,
    /// Refuses at once (connection refused).
    Down,
    /// Answers after 30 s.
    Stalled,
    /// Fails this share of calls (after its usual latency).
    Failing(f64),
}

/// A scenario: each backend's state as a function of the time since the start.
#[derive(Clone, Copy, Debug)]
enum Scenario {
    NoFault,
    OneDown,
    OneStalled,
    OneFailing30,
    OneFlapping300ms,
    TwoFailing,
    AllFailingThenRecovering,
    OneDownOneStalled,
}

impl Scenario {
    const ALL: [Scenario; 8] = [
        Scenario::NoFault,
        Scenario::OneDown,
        Scenario::OneStalled,
        Scenario::OneFailing30,
        Scenario::OneFlapping300ms,
        Scenario::TwoFailing,
        Scenario::AllFailingThenRecovering,
        Scenario::OneDownOneStalled,
    ];

    fn name(self) -> &'static str {
        match self {
            Scenario::NoFault => "no fault",
            Scenario::OneDown => "one down",
            Scenario::OneStalled => "one answering after 30 s",
            Scenario::OneFailing30 => "one failing 30%",
            Scenario::OneFlapping300ms => "one flapping down/up every 300 ms",
            Scenario::TwoFailing => "two of three failing",
            Scenario::AllFailingThenRecovering => "all failing for 10 s, then recovering",
            Scenario::OneDownOneStalled => "one down, one answering after 30 s, one healthy",
        }
    }

    fn state(self, backend: usize, since_start: Duration) -> State {
        match (self, backend) {
            (Scenario::OneDown, 0) => State::Down,
            (Scenario::OneStalled, 0) => State::Stalled,
            (Scenario::OneDownOneStalled, 0) => State::Down,
            (Scenario::OneDownOneStalled, 1) => State::Stalled,
            (Scenario::OneFailing30, 0) => State::Failing(0.3),
            (Scenario::OneFlapping300ms, 0) => {
                if (since_start.as_millis() / 300) % 2 == 0 {
                    State::Down
                } else {
                    State::Up
                }
            }
            (Scenario::TwoFailing, 0 | 1) => State::Failing(1.0),
            (Scenario::AllFailingThenRecovering, _) if since_start < Duration::from_secs(10) => {
                State::Failing(1.0)
            }
            _ => State::Up,
        }
    }

    /// The most request calls our breakers let through to backends in an outage: per
    /// outage, `min_calls` (5) to trip, one more that can be in flight (admitted) when the
    /// tripping failure lands, then one probe per open period (5 s) while it lasts. The
    /// health checks only lower this (an unhealthy backend gets no request at all).
    fn breaker_bound(self) -> Option<u64> {
        let per_outage = |secs: u64| 5 + 1 + secs.div_ceil(5);
        match self {
            Scenario::NoFault | Scenario::OneFailing30 => None,
            Scenario::OneDown | Scenario::OneStalled => Some(per_outage(30)),
            // 50 down periods of 300 ms: each may cost up to min_calls before a trip.
            Scenario::OneFlapping300ms => Some(50 * per_outage(1)),
            Scenario::TwoFailing | Scenario::OneDownOneStalled => Some(2 * per_outage(30)),
            Scenario::AllFailingThenRecovering => Some(3 * per_outage(10)),
        }
    }

    /// Whether at least one backend is healthy the whole time.
    fn has_healthy_backend(self) -> bool {
        !matches!(self, Scenario::AllFailingThenRecovering)
    }
}

/// Counts shared by one scenario's backends.
#[derive(Default, Debug)]
struct Counts {
    /// Every request call reaching a backend.
    calls: AtomicU64,
    /// Calls that reached a backend while it was down, stalled or failing every call.
    calls_in_outage: AtomicU64,
    /// Health probes (ours only) that reached a backend in an outage.
    probes_in_outage: AtomicU64,
}

/// A simulated backend: latency 2-8 ms (90%), 8-20 ms (9%), 20-60 ms (1%), seeded.
#[derive(Clone)]
struct Backend {
    index: usize,
    scenario: Scenario,
    start: Instant,
    random: Arc<SplitMix64>,
    counts: Arc<Counts>,
    /// No latency at all (the memory part).
    instant: bool,
}

fn latency(random: &SplitMix64) -> Duration {
    let bucket = random.next_f64();
    let within = random.next_f64();
    let ms = if bucket < 0.90 {
        2.0 + 6.0 * within
    } else if bucket < 0.99 {
        8.0 + 12.0 * within
    } else {
        20.0 + 40.0 * within
    };
    Duration::from_micros((ms * 1000.0) as u64)
}

/// The error of a failed call.
#[derive(Debug)]
struct Failed(&'static str);

impl std::fmt::Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for Failed {}

type BoxFuture<T> = Pin<Box<dyn Future<Output = Result<T, BoxError>> + Send>>;

impl Backend {
    fn state_now(&self) -> State {
        self.scenario.state(self.index, Instant::now() - self.start)
    }

    fn in_outage(state: State) -> bool {
        matches!(state, State::Down | State::Stalled) || state == State::Failing(1.0)
    }

    /// The answer to one call (or probe), as a future.
    fn answer(&self, id: u64) -> BoxFuture<u64> {
        if self.instant {
            return Box::pin(std::future::ready(Ok(id)));
        }
        let state = self.state_now();
        let wait = latency(&self.random);
        let fail_roll = self.random.next_f64();
        Box::pin(async move {
            match state {
                State::Down => Err(Box::new(std::io::Error::from(
                    std::io::ErrorKind::ConnectionRefused,
                )) as BoxError),
                State::Stalled => {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    Ok(id)
                }
                State::Failing(rate) if fail_roll < rate => {
                    tokio::time::sleep(wait).await;
                    Err(Box::new(Failed("500")) as BoxError)
                }
                State::Up | State::Failing(_) => {
                    tokio::time::sleep(wait).await;
                    Ok(id)
                }
            }
        })
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
        self.counts.calls.fetch_add(1, Ordering::Relaxed);
        if !self.instant && Self::in_outage(self.state_now()) {
            self.counts.calls_in_outage.fetch_add(1, Ordering::Relaxed);
        }
        self.answer(req.id)
    }
}

/// A health probe of a backend: it sees a down or stalled backend (the probe is refused or
/// times out); a backend that fails its requests still answers its health check, as a
/// service whose dependency is failing usually does.
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
        let state = self.0.state_now();
        if Backend::in_outage(state) {
            self.0
                .counts
                .probes_in_outage
                .fetch_add(1, Ordering::Relaxed);
        }
        let probe_state = match state {
            State::Failing(_) => State::Up,
            s => s,
        };
        let backend = Backend {
            scenario: self.0.scenario,
            ..self.0.clone()
        };
        let wait = latency(&backend.random);
        Box::pin(async move {
            match probe_state {
                State::Down => Err(Box::new(Failed("refused")) as BoxError),
                State::Stalled => {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    Ok(())
                }
                _ => {
                    tokio::time::sleep(wait).await;
                    Ok(())
                }
            }
        })
    }
}

fn backends(scenario: Scenario, seed: u64, counts: &Arc<Counts>, instant: bool) -> Vec<Backend> {
    let start = Instant::now();
    (0..3)
        .map(|index| Backend {
            index,
            scenario,
            start,
            random: Arc::new(SplitMix64::new(seed.wrapping_add(index as u64 * 7919))),
            counts: counts.clone(),
            instant,
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The three stacks.
// ---------------------------------------------------------------------------------------------

const ATTEMPT_TIMEOUT: Duration = Duration::from_millis(250);

type Stack = tower::util::BoxCloneService<Req, u64, BoxError>;

/// Our balancer (health checks, ejection) over per-backend breakers in readiness mode over
/// per-attempt timeouts.
fn our_balance(
    backends: Vec<Backend>,
) -> impl Service<Req, Response = u64, Error = BoxError, Future: Send> + Clone + Send + 'static {
    let probes: Vec<Probe> = backends.iter().cloned().map(Probe).collect();
    let breaker = CircuitBreakerLayer::builder()
        .failure_rate(0.5)
        .count_window(20)
        .min_calls(5)
        .open_for(Duration::from_secs(5))
        .mode(Mode::Readiness)
        .build()
        .expect("valid breaker");
    let endpoints: Vec<_> = backends
        .into_iter()
        .map(|b| breaker.layer(tower::timeout::TimeoutLayer::new(ATTEMPT_TIMEOUT).layer(b)))
        .collect();
    BalanceLayer::builder()
        .strategy(Strategy::P2cPeakEwma)
        .health_check(HealthCheck {
            interval: Duration::from_secs(1),
            timeout: ATTEMPT_TIMEOUT,
            ..HealthCheck::default()
        })
        .attempts(ReqAttempts)
        .random(SplitMix64::new(42))
        .build()
        .expect("valid balancer")
        .build(Endpoints::list(endpoints).health(probes))
        .expect("three endpoints, three probes")
}

/// Ours: retry on another backend (3 attempts, 1 ms apart, the default budget, a 2 s
/// deadline) over [`our_balance`].
fn ours(backends: Vec<Backend>) -> Stack {
    let retry = BackoffRetryLayer::builder()
        .max_attempts(3)
        .backoff(
            ExponentialBackoff::new(
                Duration::from_millis(1),
                1.0,
                Duration::from_millis(1),
                Jitter::None,
            )
            .expect("valid backoff"),
        )
        .budget(BudgetConfig::default())
        .deadline(Duration::from_secs(2))
        .random(SplitMix64::new(43))
        .policy(RetryFailures::new(DefaultClassifier).attempts(ReqAttempts))
        .build()
        .expect("valid retry");
    Stack::new(retry.layer(our_balance(backends)))
}

/// tower's policy: retry a failure at once when the budget allows (tower's budget docs).
#[derive(Clone)]
struct TowerPolicy {
    budget: Arc<tower::retry::budget::TpsBudget>,
    attempts_left: usize,
}

impl tower::retry::Policy<Req, u64, BoxError> for TowerPolicy {
    type Future = std::future::Ready<()>;

    fn retry(
        &mut self,
        _req: &mut Req,
        result: &mut Result<u64, BoxError>,
    ) -> Option<Self::Future> {
        use tower::retry::budget::Budget;
        match result {
            Ok(_) => {
                self.budget.deposit();
                None
            }
            Err(_) if self.attempts_left > 1 && self.budget.withdraw() => {
                self.attempts_left -= 1;
                Some(std::future::ready(()))
            }
            Err(_) => None,
        }
    }

    fn clone_request(&mut self, req: &Req) -> Option<Req> {
        Some(req.clone())
    }
}

/// tower's own: Retry (TpsBudget) over Buffer over p2c peak-EWMA over per-attempt timeouts.
fn tower_stack(backends: Vec<Backend>) -> Stack {
    use tower::load::{CompleteOnResponse, PeakEwma};
    let endpoints: Vec<_> = backends
        .into_iter()
        .map(|b| {
            PeakEwma::new(
                tower::timeout::Timeout::new(b, ATTEMPT_TIMEOUT),
                Duration::from_millis(30),
                Duration::from_secs(10).as_nanos() as f64,
                CompleteOnResponse::default(),
            )
        })
        .collect();
    let balance =
        tower::balance::p2c::Balance::new(tower::discover::ServiceList::new::<Req>(endpoints));
    let buffered = tower::buffer::Buffer::new(balance, 1024);
    let budget = Arc::new(tower::retry::budget::TpsBudget::new(
        Duration::from_secs(10),
        10,
        0.2,
    ));
    Stack::new(tower::retry::Retry::new(
        TowerPolicy {
            budget,
            attempts_left: 3,
        },
        buffered,
    ))
}

/// Round robin over the backends, nothing else.
#[derive(Clone)]
struct RoundRobin {
    backends: Vec<Backend>,
    next: Arc<AtomicUsize>,
}

impl Service<Req> for RoundRobin {
    type Response = u64;
    type Error = BoxError;
    type Future = BoxFuture<u64>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.backends.len();
        self.backends[i].call(req)
    }
}

fn naive(backends: Vec<Backend>) -> Stack {
    Stack::new(RoundRobin {
        backends,
        next: Arc::default(),
    })
}

// ---------------------------------------------------------------------------------------------
// Driving a scenario.
// ---------------------------------------------------------------------------------------------

/// Offered load and request count of every scenario.
const RATE_PER_SEC: u64 = 200;
const REQUESTS: u64 = 6_000; // 30 s of simulated time at 200 requests/s

#[derive(Debug, Clone)]
struct Report {
    successes: u64,
    requests: u64,
    p50: Duration,
    p99: Duration,
    p999: Duration,
    /// Requests that took at least one whole attempt timeout (250 ms): no backend answers
    /// that slowly, so such a request waited for an attempt cut by the timeout (or for the
    /// balancer's `wait_for_ready`).
    slow: u64,
    calls: u64,
    calls_in_outage: u64,
    probes_in_outage: u64,
}

impl Report {
    fn success_rate(&self) -> f64 {
        self.successes as f64 / self.requests as f64 * 100.0
    }

    fn retries(&self) -> u64 {
        // Every call beyond one per request is a retry (or, for tower, a resend).
        self.calls.saturating_sub(self.requests)
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Sends `REQUESTS` requests at `RATE_PER_SEC`, each on its own task, and waits for all.
async fn drive(stack: Stack, counts: Arc<Counts>) -> Report {
    let interval = Duration::from_nanos(1_000_000_000 / RATE_PER_SEC);
    let start = Instant::now();
    let results = Arc::new(Mutex::new(Vec::with_capacity(REQUESTS as usize)));
    let mut tasks = Vec::with_capacity(REQUESTS as usize);
    for i in 0..REQUESTS {
        tokio::time::sleep_until(start + interval * i as u32).await;
        let svc = stack.clone();
        let results = results.clone();
        tasks.push(tokio::spawn(async move {
            let sent = Instant::now();
            let ok = svc.oneshot(Req::new(i)).await.is_ok();
            let took = sent.elapsed();
            if let Ok(mut r) = results.lock() {
                r.push((took, ok));
            }
        }));
    }
    join_all(tasks).await;
    let results = results.lock().map(|r| r.clone()).unwrap_or_default();
    let mut latencies: Vec<Duration> = results.iter().map(|(d, _)| *d).collect();
    latencies.sort_unstable();
    Report {
        successes: results.iter().filter(|(_, ok)| *ok).count() as u64,
        requests: results.len() as u64,
        p50: percentile(&latencies, 50.0),
        p99: percentile(&latencies, 99.0),
        p999: percentile(&latencies, 99.9),
        slow: latencies.iter().filter(|&&d| d >= ATTEMPT_TIMEOUT).count() as u64,
        calls: counts.calls.load(Ordering::Relaxed),
        calls_in_outage: counts.calls_in_outage.load(Ordering::Relaxed),
        probes_in_outage: counts.probes_in_outage.load(Ordering::Relaxed),
    }
}

fn run_scenario(scenario: Scenario, stack_name: &str) -> Report {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let counts = Arc::new(Counts::default());
        let b = backends(scenario, 7, &counts, false);
        let stack = match stack_name {
            "ours" => ours(b),
            "tower" => tower_stack(b),
            _ => naive(b),
        };
        drive(stack, counts).await
    })
}

fn ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms >= 1000.0 {
        format!("{:.2} s", ms / 1000.0)
    } else {
        format!("{ms:.1} ms")
    }
}

fn scenarios() {
    println!("## Fault scenarios\n");
    println!(
        "{RATE_PER_SEC} requests/s offered, {REQUESTS} requests per run (30 s of simulated time), \
         3 backends, seeded; latencies in simulated time.\n"
    );
    println!("| scenario | stack | success | p50 | p99 | p99.9 | p99 / no-fault p99 | requests >= 250 ms | calls in outage | retries sent |");
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    let mut baseline: HashMap<&str, Duration> = HashMap::new();
    let mut verdicts = Vec::new();
    for scenario in Scenario::ALL {
        for stack in ["ours", "tower", "naive"] {
            let r = run_scenario(scenario, stack);
            if matches!(scenario, Scenario::NoFault) {
                baseline.insert(stack, r.p99);
            }
            let base = baseline.get(stack).copied().unwrap_or(r.p99);
            let ratio = r.p99.as_secs_f64() / base.as_secs_f64();
            let outage = if stack == "ours" {
                match scenario.breaker_bound() {
                    Some(bound) => format!(
                        "{} (+{} probes; bound {bound})",
                        r.calls_in_outage, r.probes_in_outage
                    ),
                    None => format!("{} (+{} probes)", r.calls_in_outage, r.probes_in_outage),
                }
            } else {
                r.calls_in_outage.to_string()
            };
            println!(
                "| {} | {stack} | {:.2}% | {} | {} | {} | {ratio:.2}x | {} | {outage} | {} |",
                scenario.name(),
                r.success_rate(),
                ms(r.p50),
                ms(r.p99),
                ms(r.p999),
                r.slow,
                r.retries()
            );
            if stack == "ours" {
                let bound = match scenario.breaker_bound() {
                    Some(b) => format!(
                        "; calls in outage {} (bound {b}: {})",
                        r.calls_in_outage,
                        if r.calls_in_outage <= b {
                            "met"
                        } else {
                            "missed"
                        }
                    ),
                    None => String::new(),
                };
                // The issue's third target for this scenario: after the first request, none
                // waits a whole attempt timeout.
                let slow = if matches!(scenario, Scenario::OneDownOneStalled) {
                    let after_first = r.slow.saturating_sub(1);
                    format!(
                        "; requests waiting a whole attempt timeout after the first: {after_first} \
                         ({} in all; target 0: {})",
                        r.slow,
                        if after_first == 0 { "met" } else { "missed" }
                    )
                } else {
                    String::new()
                };
                if scenario.has_healthy_backend() {
                    verdicts.push(format!(
                        "- {}: success {:.2}% (target 100%: {}), p99 {ratio:.2}x no-fault (target <= 2x: {}){bound}{slow}",
                        scenario.name(),
                        r.success_rate(),
                        if r.successes == r.requests { "met" } else { "missed" },
                        if ratio <= 2.0 { "met" } else { "missed" },
                    ));
                } else {
                    verdicts.push(format!(
                        "- {}: no healthy backend, no success or latency target{bound}",
                        scenario.name()
                    ));
                }
            }
        }
    }
    println!("\nOurs against the targets:\n");
    for v in verdicts {
        println!("{v}");
    }
}

// ---------------------------------------------------------------------------------------------
// Memory: one million requests through our stack.
// ---------------------------------------------------------------------------------------------

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// Allocations per request through `stack` over `n` sequential requests (after a warm-up).
async fn allocations_per_request(mut stack: Stack, n: u64) -> f64 {
    for i in 0..1_000 {
        let _ = stack.ready().await.expect("ready").call(Req::new(i)).await;
    }
    let before = GLOBAL.stats();
    for i in 0..n {
        let _ = stack.ready().await.expect("ready").call(Req::new(i)).await;
    }
    let after = GLOBAL.stats();
    (after.allocations - before.allocations) as f64 / n as f64
}

fn memory() {
    println!("## Memory: one million requests through our stack\n");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let counts = Arc::new(Counts::default());
        let mut stack = ours(backends(Scenario::NoFault, 7, &counts, true));
        let total: u64 = 1_000_000;
        let batch = 64;
        let mut rss_100k = 0;
        let mut sent = 0u64;
        while sent < total {
            let calls: Vec<_> = (0..batch)
                .map(|i| {
                    let svc = stack.clone();
                    async move { svc.oneshot(Req::new(sent + i)).await }
                })
                .collect();
            for r in join_all(calls).await {
                r.expect("no fault: every request succeeds");
            }
            sent += batch;
            if rss_100k == 0 && sent >= 100_000 {
                rss_100k = rss_kib();
            }
        }
        let rss_end = rss_kib();
        let _ = stack.ready().await;
        let change = (rss_end as f64 - rss_100k as f64) / rss_100k as f64 * 100.0;
        println!("Requests in batches of {batch} concurrent, backends answering at once.\n");
        println!("| after | resident memory |");
        println!("| --- | --- |");
        println!("| 100,000 requests | {rss_100k} KiB |");
        println!("| 1,000,000 requests | {rss_end} KiB |");
        println!(
            "\nChange: {change:+.2}% (target: less than 5%: {})\n",
            if change.abs() < 5.0 { "met" } else { "missed" }
        );

        println!("Allocations per request, sequential, each layer added in turn (the simulated");
        println!("backend's boxed future is in every row):\n");
        println!("| stack | allocations / request | the layer's own |");
        println!("| --- | --- | --- |");
        let n = 100_000;
        let b = || backends(Scenario::NoFault, 7, &counts, true);
        let backend_only = Stack::new(b().remove(0));
        let timeout = Stack::new(tower::timeout::Timeout::new(b().remove(0), ATTEMPT_TIMEOUT));
        let breaker = CircuitBreakerLayer::builder()
            .mode(Mode::Readiness)
            .build()
            .expect("valid breaker");
        let with_breaker =
            Stack::new(breaker.layer(tower::timeout::Timeout::new(b().remove(0), ATTEMPT_TIMEOUT)));
        let rows: Vec<(&str, f64)> = vec![
            ("backend", allocations_per_request(backend_only, n).await),
            ("+ Timeout", allocations_per_request(timeout, n).await),
            (
                "+ CircuitBreaker",
                allocations_per_request(with_breaker, n).await,
            ),
            (
                "+ Balance (3 endpoints, health checks)",
                allocations_per_request(Stack::new(our_balance(b())), n).await,
            ),
            (
                "+ BackoffRetry (ours, whole)",
                allocations_per_request(ours(b()), n).await,
            ),
        ];
        let mut previous = 0.0;
        for (name, a) in rows {
            println!("| {name} | {a:.3} | {:+.3} |", a - previous);
            previous = a;
        }
        println!();
    });
}

// ---------------------------------------------------------------------------------------------
// Overload: twice the backend's capacity for 30 s, then half of it.
// ---------------------------------------------------------------------------------------------

/// Calls the overloaded backend serves at full speed at once. Beyond it, each call arriving
/// with `n` calls in flight takes `n / OVERLOAD_WORKERS` times its usual latency, as a server
/// whose workers are shared by more requests than it has: its throughput stays at its
/// capacity, and latency grows with the backlog.
const OVERLOAD_WORKERS: usize = 8;
/// How long a caller waits for an answer before it gives up (its request then counts as timed
/// out). The backend finishes the work anyway: nothing tells it the caller left.
const OVERLOAD_DEADLINE: Duration = Duration::from_secs(1);
/// The phases: warm-up at half the capacity (the no-load figures), the burst at twice the
/// capacity, then half the capacity again.
const OVERLOAD_WARM_UP: Duration = Duration::from_secs(10);
const OVERLOAD_BURST: Duration = Duration::from_secs(30);
const OVERLOAD_AFTER: Duration = Duration::from_secs(60);

/// The mean of [`latency`]'s distribution: 90% of 5 ms, 9% of 14 ms, 1% of 40 ms.
const MEAN_LATENCY_MS: f64 = 0.90 * 5.0 + 0.09 * 14.0 + 0.01 * 40.0;

/// The backend's capacity in requests per second: its workers over the mean latency.
fn overload_capacity() -> f64 {
    OVERLOAD_WORKERS as f64 / (MEAN_LATENCY_MS / 1000.0)
}

/// The backend of the overload scenario: [`latency`] while at most [`OVERLOAD_WORKERS`] calls
/// are in flight, slower in proportion beyond.
#[derive(Clone)]
struct Overloaded {
    in_flight: Arc<AtomicUsize>,
    random: Arc<SplitMix64>,
}

impl Service<u64> for Overloaded {
    type Response = u64;
    type Error = BoxError;
    type Future = BoxFuture<u64>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, id: u64) -> Self::Future {
        let n = self.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        let slowdown = (n as f64 / OVERLOAD_WORKERS as f64).max(1.0);
        let took = latency(&self.random).mul_f64(slowdown);
        // The work goes on whether or not the caller still waits for it.
        let in_flight = self.in_flight.clone();
        tokio::spawn(async move {
            tokio::time::sleep(took).await;
            in_flight.fetch_sub(1, Ordering::Relaxed);
        });
        Box::pin(async move {
            tokio::time::sleep(took).await;
            Ok(id)
        })
    }
}

type OverloadStack = tower::util::BoxCloneService<u64, u64, BoxError>;

/// The stacks of the overload scenario, each over a fresh [`Overloaded`] backend: nothing;
/// tower's `ConcurrencyLimit` at the backend's worker count (callers over it wait for a
/// permit); our `Bulkhead` at the same count, failing fast (no queue); our adaptive limit with
/// its defaults (the gradient controller, from 20, between 1 and 1,000).
const OVERLOAD_STACKS: [&str; 4] = [
    "no limit",
    "tower ConcurrencyLimit(8)",
    "ours: Bulkhead(8)",
    "ours: AdaptiveLimit (gradient)",
];

fn overload_stack(name: &str, backend: Overloaded) -> OverloadStack {
    use tower_bulwark::bulkhead::{AdaptiveLimitLayer, BulkheadLayer};
    match name {
        "no limit" => OverloadStack::new(backend),
        "tower ConcurrencyLimit(8)" => OverloadStack::new(
            tower::limit::ConcurrencyLimitLayer::new(OVERLOAD_WORKERS).layer(backend),
        ),
        "ours: Bulkhead(8)" => OverloadStack::new(
            BulkheadLayer::builder()
                .name("overload")
                .max_concurrent(OVERLOAD_WORKERS as u32)
                .build()
                .expect("valid bulkhead")
                .layer(backend),
        ),
        "ours: AdaptiveLimit (gradient)" => OverloadStack::new(
            AdaptiveLimitLayer::builder()
                .name("overload")
                .build()
                .expect("valid adaptive limit")
                .layer(backend),
        ),
        other => unreachable!("no overload stack {other}"),
    }
}

/// How one request of the overload scenario ended.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Ending {
    /// Answered within the deadline, after this long.
    Success(Duration),
    /// Refused by a layer before the deadline (shed).
    Shed,
    /// No answer within the deadline.
    TimedOut,
}

/// One request: when it was sent (since the start) and how it ended.
type Sent = (Duration, Ending);

/// The offered load at `t` since the start, in requests per second.
fn overload_rate(t: Duration) -> f64 {
    let capacity = overload_capacity();
    if t >= OVERLOAD_WARM_UP && t < OVERLOAD_WARM_UP + OVERLOAD_BURST {
        2.0 * capacity
    } else {
        0.5 * capacity
    }
}

/// Sends the phases' requests through `stack`, evenly spaced, each on its own task with the
/// caller's deadline, and returns how each ended.
async fn drive_overload(stack: OverloadStack) -> Vec<Sent> {
    let start = Instant::now();
    let end = OVERLOAD_WARM_UP + OVERLOAD_BURST + OVERLOAD_AFTER;
    let results = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    let mut at = Duration::ZERO;
    let mut id = 0u64;
    while at < end {
        tokio::time::sleep_until(start + at).await;
        let svc = stack.clone();
        let results = results.clone();
        tasks.push(tokio::spawn(async move {
            let sent = Instant::now();
            let ending = match tokio::time::timeout(OVERLOAD_DEADLINE, svc.oneshot(id)).await {
                Ok(Ok(_)) => Ending::Success(sent.elapsed()),
                Ok(Err(_)) => Ending::Shed,
                Err(_) => Ending::TimedOut,
            };
            if let Ok(mut r) = results.lock() {
                r.push((at, ending));
            }
        }));
        id += 1;
        at += Duration::from_secs_f64(1.0 / overload_rate(at));
    }
    join_all(tasks).await;
    let mut results = results.lock().map(|r| r.clone()).unwrap_or_default();
    results.sort_by_key(|(at, _)| *at);
    results
}

/// What one phase (or one second) of a run gave.
#[derive(Debug, Clone, Copy)]
struct PhaseFigures {
    requests: usize,
    successes: usize,
    shed: usize,
    timed_out: usize,
    p50: Duration,
    p99: Duration,
}

fn phase_figures(sent: &[Sent], from: Duration, to: Duration) -> PhaseFigures {
    let phase: Vec<Ending> = sent
        .iter()
        .filter(|(at, _)| *at >= from && *at < to)
        .map(|(_, e)| *e)
        .collect();
    let mut ok: Vec<Duration> = phase
        .iter()
        .filter_map(|e| match e {
            Ending::Success(d) => Some(*d),
            _ => None,
        })
        .collect();
    ok.sort_unstable();
    PhaseFigures {
        requests: phase.len(),
        successes: ok.len(),
        shed: phase.iter().filter(|e| **e == Ending::Shed).count(),
        timed_out: phase.iter().filter(|e| **e == Ending::TimedOut).count(),
        p50: percentile(&ok, 50.0),
        p99: percentile(&ok, 99.0),
    }
}

/// Seconds a stack must stay good to count as recovered.
const RECOVERED_FOR: usize = 5;

/// After the burst, one-second windows (by send time) are good when at least 99% of their
/// requests succeed with a p99 of successes at most twice the no-load p99. Returns the time
/// from the burst's end to the first of [`RECOVERED_FOR`] good windows in a row (`None`: not
/// within the run), and the bad windows after it (`(second after the burst, success share)`).
fn recovery(sent: &[Sent], no_load_p99: Duration) -> (Option<Duration>, Vec<(usize, f64)>) {
    let burst_end = OVERLOAD_WARM_UP + OVERLOAD_BURST;
    let windows: Vec<(bool, f64)> = (0..OVERLOAD_AFTER.as_secs())
        .map(|s| {
            let from = burst_end + Duration::from_secs(s);
            let f = phase_figures(sent, from, from + Duration::from_secs(1));
            let good = f.successes * 100 >= f.requests * 99 && f.p99 <= no_load_p99 * 2;
            (good, f.successes as f64 / f.requests as f64 * 100.0)
        })
        .collect();
    let Some(first) = windows
        .windows(RECOVERED_FOR)
        .position(|w| w.iter().all(|(good, _)| *good))
    else {
        return (None, Vec::new());
    };
    let later = windows
        .iter()
        .enumerate()
        .skip(first)
        .filter(|(_, (good, _))| !good)
        .map(|(s, (_, share))| (s, *share))
        .collect();
    (Some(Duration::from_secs(first as u64)), later)
}

fn run_overload(name: &str) -> Vec<Sent> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let backend = Overloaded {
            in_flight: Arc::default(),
            random: Arc::new(SplitMix64::new(11)),
        };
        drive_overload(overload_stack(name, backend)).await
    })
}

fn overload() {
    let capacity = overload_capacity();
    println!("## Overload\n");
    println!(
        "One backend with {OVERLOAD_WORKERS} workers (latency as in the fault scenarios while at \
         most {OVERLOAD_WORKERS} calls are in flight, n / {OVERLOAD_WORKERS} times slower with n \
         beyond): a capacity of {capacity:.0} requests/s. Offered: {:.0}/s for {} s (no load), \
         then {:.0}/s for {} s (the burst), then {:.0}/s for {} s. Each caller gives up after \
         {} s (timed out); the backend finishes abandoned work anyway. Evenly spaced \
         requests, seeded latencies, simulated time.\n",
        0.5 * capacity,
        OVERLOAD_WARM_UP.as_secs(),
        2.0 * capacity,
        OVERLOAD_BURST.as_secs(),
        0.5 * capacity,
        OVERLOAD_AFTER.as_secs(),
        OVERLOAD_DEADLINE.as_secs(),
    );
    println!(
        "Recovered: the time from the burst's end to the first of {RECOVERED_FOR} one-second \
         windows in a row (by send time) with at least 99% successes and a p99 of successes at \
         most twice the no-load p99. Shed and timed out: shares of the burst's requests.\n"
    );
    println!("| stack | goodput in the burst | p50 / p99 of successes, burst | p99 / no-load p99 | shed | timed out | recovered after the burst |");
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    let burst = (OVERLOAD_WARM_UP, OVERLOAD_WARM_UP + OVERLOAD_BURST);
    let mut verdict = String::new();
    for name in OVERLOAD_STACKS {
        let sent = run_overload(name);
        let no_load = phase_figures(&sent, Duration::ZERO, OVERLOAD_WARM_UP);
        let b = phase_figures(&sent, burst.0, burst.1);
        let goodput = b.successes as f64 / OVERLOAD_BURST.as_secs_f64();
        let share = |n: usize| n as f64 / b.requests as f64 * 100.0;
        let (back, _) = recovery(&sent, no_load.p99);
        let ratio = b.p99.as_secs_f64() / no_load.p99.as_secs_f64();
        if name.contains("Adaptive") {
            let met = |ok: bool| if ok { "met" } else { "missed" };
            verdict = format!(
                "Ours adaptive against the targets: goodput {:.0}% of capacity in the burst \
                 (target >= 90%: {}), p99 of successes {ratio:.2}x the no-load p99 (target <= 2x: \
                 {}), recovered {} after the burst (target <= 2 s: {}).",
                goodput / capacity * 100.0,
                met(goodput >= 0.9 * capacity),
                met(ratio <= 2.0),
                back.map_or(String::from("not"), |d| format!("{} s", d.as_secs())),
                met(back.is_some_and(|d| d <= Duration::from_secs(2))),
            );
        }
        let recovered = match recovery(&sent, no_load.p99) {
            (Some(d), later) if later.is_empty() => format!("{} s", d.as_secs()),
            (Some(d), later) => {
                let later: Vec<String> = later
                    .iter()
                    .map(|(s, share)| format!("second {s}: {share:.0}% successes"))
                    .collect();
                format!("{} s (then not good in {})", d.as_secs(), later.join(", "))
            }
            (None, _) => format!("not within {} s", OVERLOAD_AFTER.as_secs()),
        };
        println!(
            "| {name} | {goodput:.0}/s ({:.0}% of capacity) | {} / {} | {:.2}x ({}) | {:.1}% | {:.1}% | {recovered} |",
            goodput / capacity * 100.0,
            ms(b.p50),
            ms(b.p99),
            ratio,
            ms(no_load.p99),
            share(b.shed),
            share(b.timed_out),
        );
    }
    println!("\n{verdict}\n");
}

// ---------------------------------------------------------------------------------------------
// Tail: one backend answers 5% of its requests ten times slower; hedging against none.
// ---------------------------------------------------------------------------------------------

mod tail {
    use super::*;
    use tower_bulwark::hedge::HedgeLayer;

    /// The share of the slow backend's requests it answers ten times slower.
    const SLOW_SHARE: f64 = 0.05;
    const SLOWDOWN: u32 = 10;
    /// Requests sent before the measure (10 s at the offered rate: one latency window of
    /// tower's hedge and of ours, which hedge only once they have seen enough answers).
    const WARM_UP: u64 = 2_000;

    /// The backends' own latency.
    #[derive(Clone, Copy, Debug, PartialEq)]
    enum Base {
        /// 4 to 6 ms (uniform): the slow backend's answers are the whole tail.
        Steady,
        /// The other scenarios' ([`latency`]): 2-8 ms (90%), 8-20 ms (9%), 20-60 ms (1%), a
        /// tail of every backend's own, which hedging also cuts.
        Usual,
    }

    impl Base {
        fn latency(self, random: &SplitMix64) -> Duration {
            match self {
                Base::Steady => Duration::from_micros(4_000 + (random.next_f64() * 2_000.0) as u64),
                Base::Usual => latency(random),
            }
        }
    }

    /// One run's setting: the backends' latency and the balancer's strategy.
    #[derive(Clone, Copy, Debug)]
    struct Variant {
        base: Base,
        strategy: Strategy,
        title: &'static str,
    }

    const VARIANTS: [Variant; 3] = [
        Variant {
            base: Base::Steady,
            strategy: Strategy::RoundRobin,
            title: "backends answering in 4-6 ms, round robin (the scenario)",
        },
        Variant {
            base: Base::Steady,
            strategy: Strategy::P2cPeakEwma,
            title: "backends answering in 4-6 ms, p2c by peak-EWMA latency",
        },
        Variant {
            base: Base::Usual,
            strategy: Strategy::RoundRobin,
            title: "backends with the other scenarios' latency (2-8 ms 90%, 8-20 ms 9%, \
                    20-60 ms 1%), round robin",
        },
    ];

    /// A backend answering after its [`Base`] latency; the slow one answers [`SLOW_SHARE`] of
    /// its requests [`SLOWDOWN`] times later.
    #[derive(Clone)]
    struct TailBackend {
        base: Base,
        slow: bool,
        random: Arc<SplitMix64>,
        counts: Arc<Counts>,
    }

    impl Service<Req> for TailBackend {
        type Response = u64;
        type Error = BoxError;
        type Future = BoxFuture<u64>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, req: Req) -> Self::Future {
            self.counts.calls.fetch_add(1, Ordering::Relaxed);
            let mut wait = self.base.latency(&self.random);
            if self.slow && self.random.next_f64() < SLOW_SHARE {
                wait *= SLOWDOWN;
            }
            Box::pin(async move {
                tokio::time::sleep(wait).await;
                Ok(req.id)
            })
        }
    }

    /// Our balancer (reading the requests' attempts) over the three backends, the first of
    /// them the slow one.
    fn balance(
        variant: Variant,
        counts: &Arc<Counts>,
    ) -> impl Service<Req, Response = u64, Error = BoxError, Future: Send> + Clone + Send + 'static
    {
        let backends: Vec<TailBackend> = (0..3)
            .map(|i| TailBackend {
                base: variant.base,
                slow: i == 0,
                random: Arc::new(SplitMix64::new(11 + i as u64 * 7919)),
                counts: counts.clone(),
            })
            .collect();
        BalanceLayer::builder()
            .strategy(variant.strategy)
            .attempts(ReqAttempts)
            .random(SplitMix64::new(42))
            .build()
            .expect("valid balancer")
            .build(backends)
            .expect("three endpoints")
    }

    /// tower's hedge policy: every request may be hedged.
    #[derive(Clone, Copy)]
    struct HedgeAll;

    impl tower::hedge::Policy<Req> for HedgeAll {
        fn clone_request(&self, req: &Req) -> Option<Req> {
            Some(req.clone())
        }

        fn can_retry(&self, _: &Req) -> bool {
            true
        }
    }

    /// Ours: the defaults (p95 once it has 100 answers, over 10 s; at most 10% extra load plus
    /// 1/s), the requests' attempts so the hedge goes to another backend.
    fn ours() -> HedgeLayer<DefaultClassifier, ReqAttempts> {
        HedgeLayer::builder()
            .attempts(ReqAttempts)
            .build()
            .expect("valid hedge")
    }

    /// The stacks: the balancer alone; tower's `Hedge` over it (the p95 of what it saw, once
    /// it has 100 latencies, over 10 s; in a `Buffer`, as it is not `Clone`); ours over it.
    fn stack(
        name: &str,
        variant: Variant,
        counts: &Arc<Counts>,
        ours: &HedgeLayer<DefaultClassifier, ReqAttempts>,
    ) -> Stack {
        let balance = balance(variant, counts);
        match name {
            "tower hedge" => Stack::new(tower::buffer::Buffer::new(
                tower::hedge::Hedge::new::<Req>(
                    balance,
                    HedgeAll,
                    100,
                    0.95,
                    Duration::from_secs(10),
                ),
                1024,
            )),
            "ours" => Stack::new(ours.layer(balance)),
            _ => Stack::new(balance),
        }
    }

    /// Runs stack `name`: [`WARM_UP`] requests, then the measured [`REQUESTS`] (through the
    /// file's `drive`, at its rate); for ours, also the delay it hedged at in the end.
    fn run_one(name: &str, variant: Variant) -> (Report, Option<Duration>) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .expect("a runtime");
        runtime.block_on(async {
            let counts = Arc::new(Counts::default());
            let ours = ours();
            let stack = stack(name, variant, &counts, &ours);
            let interval = Duration::from_nanos(1_000_000_000 / RATE_PER_SEC);
            let start = Instant::now();
            let mut warm = Vec::new();
            for i in 0..WARM_UP {
                tokio::time::sleep_until(start + interval * i as u32).await;
                warm.push(tokio::spawn(stack.clone().oneshot(Req::new(i))));
            }
            join_all(warm).await;
            counts.calls.store(0, Ordering::Relaxed);
            let report = drive(stack, counts).await;
            (
                report,
                (name == "ours").then(|| ours.current_delay()).flatten(),
            )
        })
    }

    pub(super) fn run() {
        println!("## Tail: one backend of three answers 5% of its requests ten times slower\n");
        println!(
            "{RATE_PER_SEC} requests/s offered; each stack first serves {WARM_UP} requests \
             (10 s, one latency window), then {REQUESTS} measured ones (30 s); 3 backends under \
             our balancer, seeded; latencies in simulated time (tokio's timer counts whole \
             milliseconds); extra load is the calls beyond one per request.\n"
        );
        for (k, variant) in VARIANTS.iter().enumerate() {
            table(*variant, k == 0);
        }
    }

    fn table(variant: Variant, targets: bool) {
        println!("### {}\n", variant.title);
        println!("| stack | success | p50 | p99 | p99.9 | p99 / no hedging | extra load |");
        println!("| --- | --- | --- | --- | --- | --- | --- |");
        let mut rows = Vec::new();
        let mut delay = None;
        for name in ["no hedging", "tower hedge", "ours"] {
            let (r, d) = run_one(name, variant);
            delay = delay.or(d);
            let extra = r.retries() as f64 / r.requests as f64 * 100.0;
            rows.push((name, r, extra));
        }
        let base_p99 = rows[0].1.p99.as_secs_f64();
        for (name, r, extra) in &rows {
            println!(
                "| {name} | {:.2}% | {} | {} | {} | {:.2}x | {extra:.2}% |",
                r.success_rate(),
                ms(r.p50),
                ms(r.p99),
                ms(r.p999),
                r.p99.as_secs_f64() / base_p99,
            );
        }
        if let Some(d) = delay {
            println!("\nOurs hedged at the p95 it tracked: {} at the end.", ms(d));
        }
        if !targets {
            println!();
            return;
        }
        let (_, tower, tower_extra) = &rows[1];
        let (_, ours, ours_extra) = &rows[2];
        let ratio = ours.p99.as_secs_f64() / base_p99;
        let verdict = |ok: bool| if ok { "met" } else { "missed" };
        println!("\nOurs against the targets:\n");
        println!(
            "- p99 {ratio:.2}x no hedging (target <= 0.3x: {})",
            verdict(ratio <= 0.3)
        );
        println!(
            "- extra load {ours_extra:.2}% (target <= 10%: {})",
            verdict(*ours_extra <= 10.0)
        );
        println!(
            "- against tower's hedge: p99 {} vs {} ({}), extra load {ours_extra:.2}% vs \
             {tower_extra:.2}% ({})\n",
            ms(ours.p99),
            ms(tower.p99),
            verdict(ours.p99 <= tower.p99),
            verdict(ours_extra <= tower_extra),
        );
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // `cargo bench` passes `--bench`; a filter word selects a part.
    let wants = |part: &str| {
        let filters: Vec<&String> = args.iter().filter(|a| !a.starts_with('-')).collect();
        filters.is_empty() || filters.iter().any(|f| f.as_str() == part)
    };
    if wants("scenarios") {
        scenarios();
    }
    if wants("memory") {
        memory();
    }
    if wants("overload") {
        overload();
    }
    if wants("tail") {
        tail::run();
    }
}
