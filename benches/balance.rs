//! Balancer overhead over 3 and over 100 ready endpoints, against a bare `service_fn` and
//! tower 0.5's power-of-two-choices `Balance` (by `PendingRequests` and by `PeakEwma`), with
//! each of our strategies.
//!
//! Run with `cargo bench --bench balance`. Before the criterion group runs, the allocations per
//! call of every stack are counted with `stats_alloc` and printed, and for ours, how the calls
//! were spread over the endpoints.
//!
//! The counting allocator stays installed for the whole run, as in every bench (it is declared
//! in `benches/support/mod.rs`). To time without it, build with `--cfg bulwark_bench_uncounted`
//! (the allocation report is then skipped), in a separate target directory so the shared one is
//! not rebuilt:
//! `CARGO_TARGET_DIR=target/uncounted RUSTFLAGS="--cfg bulwark_bench_uncounted" cargo bench --bench balance`.
//!
//! One call is `poll_ready` + `call` + polling the response future to completion, driven by
//! hand with a `Context` whose waker unparks the calling thread (no async runtime). Every
//! endpoint is the bare service, always ready, and every call succeeds, so no endpoint is ever
//! ejected and every future completes on its first poll. Both balancers read tokio's clock
//! (`tokio::time::Instant`), which needs no runtime; nothing is spawned (ours is built without
//! health checks).

mod support;

use bulwark_balance::{BalanceLayer, Handle, Strategy};
use criterion::{criterion_group, Criterion};
use std::fmt::Debug;
use std::task::Context;
use std::time::Duration;
use support::{bare, bench_one, thread_waker, AllocReport, ALLOC_CALLS, ALLOC_WARMUP};
use tower::balance::p2c;
use tower::discover::ServiceList;
use tower::load::{CompleteOnResponse, PeakEwma, PendingRequests};
use tower::Service;

/// The endpoint counts every balancer is measured at.
const SIZES: [usize; 2] = [3, 100];

/// tower's peak-EWMA settings, the same as ours' defaults: 30 ms assumed before the first
/// answer, a 10 s decay.
const DEFAULT_RTT: Duration = Duration::from_millis(30);
const DECAY_NS: f64 = 10e9;

// ---------------------------------------------------------------------------------------------
// The stacks. Every endpoint is the same bare `service_fn(echo)` (`support::bare`).
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
    let endpoints: Vec<_> = (0..n)
        .map(|_| PendingRequests::new(bare(), CompleteOnResponse::default()))
        .collect();
    let mut lb = p2c::Balance::new(ServiceList::new::<u64>(endpoints));
    prime(&mut lb);
    assert_eq!(lb.len(), n, "tower's balancer took in every endpoint");
    lb
}

/// tower's p2c `Balance` over `n` endpoints, each under `PeakEwma` (30 ms default RTT, 10 s
/// decay), from a `ServiceList`.
fn tower_peak_ewma(n: usize) -> impl Service<u64, Response = u64, Error = impl Debug> {
    let endpoints: Vec<_> = (0..n)
        .map(|_| PeakEwma::new(bare(), DEFAULT_RTT, DECAY_NS, CompleteOnResponse::default()))
        .collect();
    let mut lb = p2c::Balance::new(ServiceList::new::<u64>(endpoints));
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
    impl Service<u64, Response = u64, Error = impl Debug>,
    Handle,
) {
    let layer = BalanceLayer::builder()
        .strategy(strategy)
        .build()
        .expect("bulwark balance config");
    assert_eq!(layer.config().strategy, strategy);
    let lb = layer
        .build((0..n).map(|_| bare()).collect::<Vec<_>>())
        .expect("bulwark balancer");
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

// ---------------------------------------------------------------------------------------------
// Allocations per call, counted before criterion runs.
// ---------------------------------------------------------------------------------------------

/// After ours made `ALLOC_WARMUP + ALLOC_CALLS` calls: checks that every one ended, succeeded
/// and was counted, that round robin went round and first-available stayed on the first
/// endpoint; prints how the calls were spread.
fn check_spread(strategy: Strategy, handle: &Handle) {
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
    match strategy {
        Strategy::RoundRobin => assert!(min == total / n && max <= total / n + 1),
        Strategy::FirstAvailable => assert_eq!(successes[0], total),
        _ => assert_eq!(used as u64, n, "p2c reached every endpoint"),
    }
    println!("   (calls per endpoint: {used} of {n} endpoints used, {min} to {max} each)");
}

fn alloc_report() {
    println!("-- allocations per ready+call+await, one thread, all endpoints ready --");
    let report = AllocReport {
        name_width: 27,
        check_echo: true,
    };
    report.stack("bare", bare());
    for n in SIZES {
        report.stack(&format!("tower-p2c-pending/{n}"), tower_pending(n));
        report.stack(&format!("tower-p2c-peak-ewma/{n}"), tower_peak_ewma(n));
        for (name, strategy) in STRATEGIES {
            let (svc, handle) = bulwark(strategy, n);
            report.stack(&format!("{name}/{n}"), svc);
            check_spread(strategy, &handle);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Criterion group.
// ---------------------------------------------------------------------------------------------

/// One call per iteration: `poll_ready` + `call` + await, every endpoint ready, every call
/// succeeds. Rows are `<stack>/<endpoints>`.
fn ready_call_await(c: &mut Criterion) {
    let mut g = support::ready_call_await_group(c, "balance_ready_call_await");
    // 13 rows: a little less than the harness's 2 s + 4 s each keeps the run near 1.5 min.
    g.warm_up_time(Duration::from_millis(1500))
        .measurement_time(Duration::from_secs(3));
    bench_one(&mut g, "bare", bare());
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
    g.finish();
}

criterion_group!(benches, ready_call_await);

fn main() {
    support::main(alloc_report, benches);
}
