//! Balancer overhead over 3, 100, 1,000 and 10,000 ready endpoints, against a bare service and
//! tower 0.5's power-of-two-choices `Balance` (by `PendingRequests` and by `PeakEwma`), with
//! each of our strategies; and the same through a retry layer that clones the balancer for
//! every request: our `BackoffRetry` over our `Balance`, against tower's `Retry` over
//! `Buffer` over its p2c, at 3, 1,000 and 10,000 endpoints.
//!
//! Run with `cargo bench --bench balance`. Before the criterion group runs, the allocations per
//! call of every stack are counted with `stats_alloc` and printed, with, for ours, how the
//! calls were spread over the endpoints and how long building the balancer took.
//!
//! The counting allocator stays installed for the whole run, as in every bench (it is declared
//! in `benches/support/mod.rs`). To time without it, build with `--cfg bulwark_bench_uncounted`
//! (the allocation report is then skipped), in a separate target directory so the shared one is
//! not rebuilt:
//! `CARGO_TARGET_DIR=target/uncounted RUSTFLAGS="--cfg bulwark_bench_uncounted" cargo bench --bench balance`.
//!
//! Every endpoint is a [`Client`]: a `Clone` handle on an `Arc`'d state, as the clients users
//! balance are (a zero-sized `service_fn` would make cloning an endpoint free, which hides
//! what a balancer that clones endpoints pays). It is always ready and every call succeeds, so
//! no endpoint is ever ejected and every future completes on its first poll.
//!
//! The balancer rows (`<stack>/<n>`): one call is `poll_ready` + `call` + polling the response
//! future to completion, driven by hand with a `Context` whose waker unparks the calling
//! thread (no async runtime). Both balancers read tokio's clock (`tokio::time::Instant`), which
//! needs no runtime; nothing is spawned (ours is built without health checks).
//!
//! The retry rows (`retry/<stack>/<n>`): tower's `Buffer` spawns a worker task, so these rows,
//! ours included, run on a current-thread tokio runtime: `ready().await` + `call` + `.await`,
//! many calls per `block_on` (criterion's `iter_custom`). Ours: `BackoffRetryLayer` with its
//! defaults (3 attempts, the default budget, `RetryFailures` over the default classifier), so
//! every request may be resent, and `BackoffRetry::call` moves the ready balancer into the
//! response future and leaves a clone of it in its place: one balancer clone per request.
//! tower's: `Retry` (a policy allowing 3 attempts, which copies the request up front) over
//! `Buffer` (bound 1024, so `Retry` can clone it) over `p2c::Balance` by `PeakEwma`; tower's
//! `Retry` clones itself (the `Buffer` handle and the policy) into every response future.

mod support;

use bulwark_balance::{BalanceLayer, Handle, Strategy};
use criterion::{criterion_group, Criterion};
use std::fmt::Debug;
use std::future::{ready, Ready};
use std::task::Context;
use std::time::Duration;
use support::{
    bare, bench_on, bench_one, clients, runtime, thread_waker, AllocReport, Client, ALLOC_CALLS,
    ALLOC_WARMUP,
};
use tower::balance::p2c;
use tower::discover::ServiceList;
use tower::load::{CompleteOnResponse, PeakEwma, PendingRequests};
use tower::{Layer, Service};

/// The endpoint counts every balancer is measured at.
const SIZES: [usize; 4] = [3, 100, 1_000, 10_000];

/// The endpoint counts the retry rows are measured at.
const RETRY_SIZES: [usize; 3] = [3, 1_000, 10_000];

/// tower's peak-EWMA settings, the same as ours' defaults: 30 ms assumed before the first
/// answer, a 10 s decay.
const DEFAULT_RTT: Duration = Duration::from_millis(30);
const DECAY_NS: f64 = 10e9;

// ---------------------------------------------------------------------------------------------
// The stacks. Every endpoint is a `support::Client` (an `Arc` inside).
// ---------------------------------------------------------------------------------------------

/// One `poll_ready` (which must be ready at once), so a balancer has taken in its endpoints.
fn prime<S>(svc: &mut S)
where
    S: Service<u64, Response = u64>,
    S::Error: Debug,
{
    let waker = thread_waker();
    let mut cx = Context::from_waker(&waker);
    match svc.poll_ready(&mut cx) {
        std::task::Poll::Ready(Ok(())) => {}
        other => panic!("the balancer is not ready at once: {other:?}"),
    }
}

/// tower's p2c `Balance` over `n` endpoints, each under `PendingRequests`, from a
/// `ServiceList` (keys are the positions, `usize`).
fn tower_pending(n: usize) -> impl Service<u64, Response = u64, Error = impl Debug> {
    let endpoints: Vec<_> = clients(n)
        .into_iter()
        .map(|c| PendingRequests::new(c, CompleteOnResponse::default()))
        .collect();
    let mut lb = p2c::Balance::new(ServiceList::new::<u64>(endpoints));
    prime(&mut lb);
    assert_eq!(lb.len(), n, "tower's balancer took in every endpoint");
    lb
}

/// tower's p2c `Balance` over `n` endpoints, each under `PeakEwma` (30 ms default RTT, 10 s
/// decay), from a `ServiceList`.
fn tower_peak_ewma_balance(n: usize) -> p2c::Balance<ServiceList<Vec<PeakEwma<Client>>>, u64> {
    let endpoints: Vec<_> = clients(n)
        .into_iter()
        .map(|c| PeakEwma::new(c, DEFAULT_RTT, DECAY_NS, CompleteOnResponse::default()))
        .collect();
    p2c::Balance::new(ServiceList::new::<u64>(endpoints))
}

fn tower_peak_ewma(n: usize) -> impl Service<u64, Response = u64, Error = impl Debug> {
    let mut lb = tower_peak_ewma_balance(n);
    prime(&mut lb);
    assert_eq!(lb.len(), n, "tower's balancer took in every endpoint");
    lb
}

/// Ours over `n` endpoints with `strategy` (otherwise defaults: ejection after 5 failures in a
/// row, `wait_for_ready` 1 s, 30 ms default RTT, 10 s decay; no health checks), and a handle
/// to its endpoints' state.
fn bulwark(
    strategy: Strategy,
    n: usize,
) -> (
    impl Service<u64, Response = u64, Error = tower::BoxError> + Clone + Send + 'static,
    Handle,
) {
    let layer = BalanceLayer::builder()
        .strategy(strategy)
        .build()
        .expect("bulwark balance config");
    assert_eq!(layer.config().strategy, strategy);
    let lb = layer.build(clients(n)).expect("bulwark balancer");
    assert_eq!(lb.len(), n);
    let handle = lb.handle();
    (lb, handle)
}

/// Our strategies, with the names their rows go by.
const STRATEGIES: [(&str, Strategy); 4] = [
    ("bulwark-round-robin", Strategy::RoundRobin),
    ("bulwark-p2c-pending", Strategy::P2cPending),
    ("bulwark-p2c-peak-ewma", Strategy::P2cPeakEwma),
    ("bulwark-first-available", Strategy::FirstAvailable),
];

/// Our strategies measured through the retry layer.
const RETRY_STRATEGIES: [(&str, Strategy); 2] = [
    ("retry/bulwark-p2c-peak-ewma", Strategy::P2cPeakEwma),
    ("retry/bulwark-round-robin", Strategy::RoundRobin),
];

/// Ours through the retry: `BackoffRetryLayer` with its defaults (3 attempts, so every request
/// is copied for a resend and the balancer cloned) over [`bulwark`].
fn bulwark_retry(
    strategy: Strategy,
    n: usize,
) -> (
    impl Service<u64, Response = u64, Error = impl Debug>,
    Handle,
) {
    let retry = bulwark_retry::BackoffRetryLayer::builder()
        .build()
        .expect("bulwark retry config");
    let (lb, handle) = bulwark(strategy, n);
    (retry.layer(lb), handle)
}

/// tower's retry policy: up to 3 attempts, a failure retried at once; the request is copied
/// before the first attempt (as any policy that may retry must).
#[derive(Clone, Copy, Debug)]
struct TowerAttempts(u32);

impl<E> tower::retry::Policy<u64, u64, E> for TowerAttempts {
    type Future = Ready<()>;

    fn retry(&mut self, _req: &mut u64, result: &mut Result<u64, E>) -> Option<Self::Future> {
        match result {
            Err(_) if self.0 > 1 => {
                self.0 -= 1;
                Some(ready(()))
            }
            _ => None,
        }
    }

    fn clone_request(&mut self, req: &u64) -> Option<u64> {
        Some(*req)
    }
}

/// tower's: `Retry` over `Buffer` (bound 1024) over its p2c by `PeakEwma`, over `n`
/// endpoints. Must be built inside a runtime (the `Buffer` spawns its worker).
fn tower_retry(n: usize) -> impl Service<u64, Response = u64, Error = impl Debug> {
    let buffered = tower::buffer::Buffer::new(tower_peak_ewma_balance(n), 1024);
    tower::retry::Retry::new(TowerAttempts(3), buffered)
}

// ---------------------------------------------------------------------------------------------
// Allocations per call, counted before criterion runs.
// ---------------------------------------------------------------------------------------------

/// After ours made `ALLOC_WARMUP + ALLOC_CALLS` calls: checks that every one ended, succeeded
/// and was counted, and (`strict`: one long-lived balancer) that round robin went round and
/// first-available stayed on the first endpoint; prints how the calls were spread.
fn check_spread(strategy: Strategy, handle: &Handle, strict: bool) {
    let endpoints = handle.endpoints();
    let n = endpoints.len() as u64;
    let total = ALLOC_WARMUP + ALLOC_CALLS;
    let successes: Vec<u64> = endpoints.iter().map(|e| e.successes).collect();
    assert_eq!(successes.iter().sum::<u64>(), total, "every call counted");
    assert!(
        endpoints
            .iter()
            .all(|e| e.failures == 0 && e.in_flight == 0),
        "no failures, nothing left in flight"
    );
    assert!(endpoints
        .iter()
        .all(|e| e.healthy && e.ejected_for.is_none()));
    let (min, max) = (
        successes.iter().min().copied().unwrap_or(0),
        successes.iter().max().copied().unwrap_or(0),
    );
    let used = successes.iter().filter(|&&s| s > 0).count();
    if strict {
        match strategy {
            Strategy::RoundRobin => assert!(min == total / n && max <= total / n + 1),
            Strategy::FirstAvailable => assert_eq!(successes[0], total),
            // With at least 20 calls per endpoint, p2c by requests in flight reaches every
            // one. By peak EWMA it need not: an endpoint not yet called counts at the 30 ms
            // default RTT, against a few ns measured for the others, and loses every draw.
            Strategy::P2cPending if total >= 20 * n => {
                assert_eq!(used as u64, n, "p2c reached every endpoint")
            }
            _ => {}
        }
    }
    println!("   (calls per endpoint: {used} of {n} endpoints used, {min} to {max} each)");
}

/// Builds a stack with `make`, printing how long it took.
fn timed<T>(what: &str, make: impl FnOnce() -> T) -> T {
    let start = tokio::time::Instant::now();
    let made = make();
    let took = start.elapsed();
    if took > Duration::from_millis(5) {
        println!(
            "   (building {what} took {:.1} ms)",
            took.as_secs_f64() * 1e3
        );
    }
    made
}

fn alloc_report() {
    println!("-- allocations per ready+call+await, one thread, all endpoints ready --");
    let report = AllocReport {
        name_width: 34,
        check_echo: true,
    };
    report.stack("bare", bare());
    report.stack("client", Client::default());
    for n in SIZES {
        let lb = timed(&format!("tower-p2c-pending/{n}"), || tower_pending(n));
        report.stack(&format!("tower-p2c-pending/{n}"), lb);
        let lb = timed(&format!("tower-p2c-peak-ewma/{n}"), || tower_peak_ewma(n));
        report.stack(&format!("tower-p2c-peak-ewma/{n}"), lb);
        for (name, strategy) in STRATEGIES {
            let (svc, handle) = timed(&format!("{name}/{n}"), || bulwark(strategy, n));
            report.stack(&format!("{name}/{n}"), svc);
            check_spread(strategy, &handle, true);
        }
    }
    for n in RETRY_SIZES {
        for (name, strategy) in RETRY_STRATEGIES {
            let rt = runtime();
            let (svc, handle) = bulwark_retry(strategy, n);
            report.stack_on(&rt, &format!("{name}/{n}"), svc);
            check_spread(strategy, &handle, false);
        }
        let rt = runtime();
        let svc = {
            let _guard = rt.enter();
            tower_retry(n)
        };
        report.stack_on(&rt, &format!("retry/tower-p2c-peak-ewma/{n}"), svc);
    }
}

// ---------------------------------------------------------------------------------------------
// Criterion group.
// ---------------------------------------------------------------------------------------------

/// One call per iteration, every endpoint ready, every call succeeds. Rows are
/// `<stack>/<endpoints>` (by hand, no runtime) and `retry/<stack>/<endpoints>` (on a
/// current-thread runtime).
fn ready_call_await(c: &mut Criterion) {
    let mut g = support::ready_call_await_group(c, "balance_ready_call_await");
    // 35 rows: a little less than the harness's 2 s + 4 s each keeps the run near 3 min.
    g.warm_up_time(Duration::from_millis(1500))
        .measurement_time(Duration::from_secs(3));
    bench_one(&mut g, "bare", bare());
    bench_one(&mut g, "client", Client::default());
    for n in SIZES {
        bench_one(&mut g, &format!("tower-p2c-pending/{n}"), tower_pending(n));
        bench_one(
            &mut g,
            &format!("tower-p2c-peak-ewma/{n}"),
            tower_peak_ewma(n),
        );
        for (name, strategy) in STRATEGIES {
            let (svc, _handle) = bulwark(strategy, n);
            bench_one(&mut g, &format!("{name}/{n}"), svc);
        }
    }
    for n in RETRY_SIZES {
        for (name, strategy) in RETRY_STRATEGIES {
            let rt = runtime();
            let (svc, _handle) = bulwark_retry(strategy, n);
            bench_on(&mut g, &format!("{name}/{n}"), &rt, svc);
        }
        let rt = runtime();
        let svc = {
            let _guard = rt.enter();
            tower_retry(n)
        };
        bench_on(&mut g, &format!("retry/tower-p2c-peak-ewma/{n}"), &rt, svc);
    }
    g.finish();
}

criterion_group!(benches, ready_call_await);

fn main() {
    support::main(alloc_report, benches);
}
