//! Retry overhead on the success path (no retry needed), against a bare `service_fn` and
//! tower 0.5's own `Retry`, with and without a `TpsBudget`.
//!
//! Run with `cargo bench --bench retry`. Before the criterion group runs, the allocations per
//! call of every stack are counted with `stats_alloc` and printed.
//!
//! The counting allocator stays installed for the whole run, as in every bench (it is declared
//! in `benches/support/mod.rs`). To time without it, build with `--cfg bulwark_bench_uncounted`
//! (the allocation report is then skipped), in a separate target directory so the shared one is
//! not rebuilt:
//! `CARGO_TARGET_DIR=target/uncounted RUSTFLAGS="--cfg bulwark_bench_uncounted" cargo bench --bench retry`.
//!
//! One call is `poll_ready` + `call` + polling the response future to completion, driven by
//! hand with a `Context` whose waker unparks the calling thread (no async runtime). Every
//! call succeeds, so no stack ever retries; every stack's future completes on its first poll.

mod support;

use criterion::{criterion_group, Criterion};
use std::fmt::Debug;
use std::future::{ready, Ready};
use std::sync::Arc;
use std::time::Duration;
use support::{bare, bench_one, AllocReport, ALLOC_CALLS, ALLOC_WARMUP};
use tower::retry::budget::{Budget, TpsBudget};
use tower::Service;

// ---------------------------------------------------------------------------------------------
// The stacks. Every one wraps the same bare `service_fn(echo)` (`support::bare`).
// ---------------------------------------------------------------------------------------------

/// A tower policy that never retries. It still copies the request up front, as any policy
/// that might retry must (tower asks `clone_request` before the first attempt).
#[derive(Clone, Copy, Debug)]
struct NeverRetry;

impl<E> tower::retry::Policy<u64, u64, E> for NeverRetry {
    type Future = Ready<()>;

    fn retry(&mut self, _req: &mut u64, _result: &mut Result<u64, E>) -> Option<Self::Future> {
        None
    }

    fn clone_request(&mut self, req: &u64) -> Option<u64> {
        Some(*req)
    }
}

/// tower's `Retry` with [`NeverRetry`].
fn tower_never() -> impl Service<u64, Response = u64, Error = impl Debug> + Clone + Send + 'static {
    tower::retry::Retry::new(NeverRetry, bare())
}

/// A tower policy with a `TpsBudget`, used as tower's budget docs show: every success is a
/// deposit, every failure a withdrawal, and a failure is retried (at once) only if the
/// withdrawal succeeds. In this bench every call succeeds, so only `deposit` runs.
#[derive(Clone, Debug)]
struct BudgetRetry {
    budget: Arc<TpsBudget>,
}

impl<E> tower::retry::Policy<u64, u64, E> for BudgetRetry {
    type Future = Ready<()>;

    fn retry(&mut self, _req: &mut u64, result: &mut Result<u64, E>) -> Option<Self::Future> {
        match result {
            Ok(_) => {
                self.budget.deposit();
                None
            }
            Err(_) => {
                if self.budget.withdraw() {
                    Some(ready(()))
                } else {
                    None
                }
            }
        }
    }

    fn clone_request(&mut self, req: &u64) -> Option<u64> {
        Some(*req)
    }
}

/// The same budget settings as ours: 20% of requests plus 10 per second, over 10 s.
fn tps_budget() -> Arc<TpsBudget> {
    Arc::new(TpsBudget::new(Duration::from_secs(10), 10, 0.2))
}

/// tower's `Retry` with [`BudgetRetry`] over `budget`.
fn tower_budget(
    budget: Arc<TpsBudget>,
) -> impl Service<u64, Response = u64, Error = impl Debug> + Clone + Send + 'static {
    tower::retry::Retry::new(BudgetRetry { budget }, bare())
}

/// Ours, defaults: 3 attempts, budget on (20% of requests + 10/s over 10 s).
fn bulwark_layer() -> tower_bulwark::retry::BackoffRetryLayer {
    let layer = tower_bulwark::retry::BackoffRetryLayer::builder()
        .build()
        .expect("bulwark retry config");
    assert!(layer.budget().is_some(), "the default budget is on");
    layer
}

/// Ours with `.no_budget()` (otherwise defaults), to show what the budget costs.
fn bulwark_no_budget_layer() -> tower_bulwark::retry::BackoffRetryLayer {
    let layer = tower_bulwark::retry::BackoffRetryLayer::builder()
        .no_budget()
        .build()
        .expect("bulwark retry config");
    assert!(layer.budget().is_none());
    layer
}

fn bulwark(
    layer: &tower_bulwark::retry::BackoffRetryLayer,
) -> impl Service<u64, Response = u64, Error = impl Debug> + Clone + Send + 'static {
    tower::Layer::layer(layer, bare())
}

// ---------------------------------------------------------------------------------------------
// Allocations per call, counted before criterion runs.
// ---------------------------------------------------------------------------------------------

fn alloc_report() {
    println!("-- allocations per ready+call+await, one thread, every call succeeds --");
    let report = AllocReport {
        name_width: 20,
        check_echo: false,
    };
    report.stack("bare", bare());
    report.stack("tower-retry-never", tower_never());
    let budget = tps_budget();
    report.stack("tower-retry-tps", tower_budget(budget.clone()));
    println!("   (tower TpsBudget after those calls: {budget:?})");
    let layer = bulwark_layer();
    let budget = layer.budget().expect("budget on");
    // The budget counts requests from its first snapshot, which the first withdrawal takes:
    // take one now (one retry granted by the floor) so the check below sees every deposit.
    assert!(budget.try_withdraw());
    report.stack("bulwark", bulwark(&layer));
    // The service was dropped, flushing its batched deposits: every call must have been counted.
    let stats = budget.stats();
    println!("   (bulwark budget after those calls: {stats:?})");
    assert_eq!(stats.requests, ALLOC_WARMUP + ALLOC_CALLS);
    report.stack("bulwark-no-budget", bulwark(&bulwark_no_budget_layer()));
}

// ---------------------------------------------------------------------------------------------
// Criterion group.
// ---------------------------------------------------------------------------------------------

/// One call per iteration: `poll_ready` + `call` + await, every call succeeds.
fn ready_call_await(c: &mut Criterion) {
    let mut g = support::ready_call_await_group(c, "retry_ready_call_await");
    bench_one(&mut g, "bare", bare());
    bench_one(&mut g, "tower-retry-never", tower_never());
    bench_one(&mut g, "tower-retry-tps", tower_budget(tps_budget()));
    bench_one(&mut g, "bulwark", bulwark(&bulwark_layer()));
    bench_one(
        &mut g,
        "bulwark-no-budget",
        bulwark(&bulwark_no_budget_layer()),
    );
    g.finish();
}

criterion_group!(benches, ready_call_await);

fn main() {
    support::main(alloc_report, benches);
}
