//! Retry overhead on the success path (no retry needed), against a bare `service_fn` and
//! tower 0.5's own `Retry`, with and without a `TpsBudget`.
//!
//! Run with `cargo bench --bench retry`. Before the criterion group runs, the allocations per
//! call of every stack are counted with `stats_alloc` and printed.
//!
//! The counting allocator stays installed for the whole run, as in `benches/circuit_breaker.rs`.
//! To time without it, build with `--cfg bulwark_bench_uncounted` (the allocation report is
//! then skipped), in a separate target directory so the shared one is not rebuilt:
//! `CARGO_TARGET_DIR=target/uncounted RUSTFLAGS="--cfg bulwark_bench_uncounted" cargo bench --bench retry`.
//!
//! One call is `poll_ready` + `call` + polling the response future to completion, driven by
//! hand with a `Context` whose waker unparks the calling thread (no async runtime). Every
//! call succeeds, so no stack ever retries; every stack's future completes on its first poll.

// `bulwark_bench_uncounted` is this file's own opt-out switch (see above), not a crate cfg.
#![allow(unexpected_cfgs)]

use criterion::measurement::WallTime;
use criterion::{criterion_group, BenchmarkGroup, Criterion};
use std::convert::Infallible;
use std::fmt::Debug;
use std::future::{ready, Future, Ready};
use std::hint::black_box;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread;
use std::time::Duration;
use tower::retry::budget::{Budget, TpsBudget};
use tower::Service;

#[cfg(not(bulwark_bench_uncounted))]
#[global_allocator]
static GLOBAL: &stats_alloc::StatsAlloc<std::alloc::System> = &stats_alloc::INSTRUMENTED_SYSTEM;

// ---------------------------------------------------------------------------------------------
// The stacks. Every one wraps the same bare `service_fn(echo)`.
// ---------------------------------------------------------------------------------------------

fn echo(x: u64) -> EchoFuture {
    ready(Ok(x))
}

type EchoFuture = Ready<Result<u64, Infallible>>;

/// The bare service: `service_fn` over a function item (no indirect call).
fn bare(
) -> impl Service<u64, Response = u64, Error = Infallible, Future = EchoFuture> + Clone + Send + 'static
{
    tower::service_fn(echo)
}

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
// Driving one call by hand.
// ---------------------------------------------------------------------------------------------

struct ThreadWaker(thread::Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

/// A waker that unparks the current thread. Built once, outside measurement.
fn thread_waker() -> Waker {
    Waker::from(Arc::new(ThreadWaker(thread::current())))
}

/// `poll_ready` + `call` + poll the future to completion.
#[inline(always)]
fn one_call<S>(svc: &mut S, cx: &mut Context<'_>, x: u64) -> u64
where
    S: Service<u64, Response = u64>,
    S::Error: Debug,
{
    loop {
        match svc.poll_ready(cx) {
            Poll::Ready(Ok(())) => break,
            Poll::Ready(Err(e)) => panic!("poll_ready failed: {e:?}"),
            Poll::Pending => thread::park(),
        }
    }
    let mut fut = pin!(svc.call(x));
    loop {
        match fut.as_mut().poll(cx) {
            Poll::Ready(Ok(y)) => return y,
            Poll::Ready(Err(e)) => panic!("call failed: {e:?}"),
            Poll::Pending => thread::park(),
        }
    }
}

/// `n` calls in a row on this thread.
#[cfg(not(bulwark_bench_uncounted))]
#[inline(always)]
fn calls<S>(svc: &mut S, cx: &mut Context<'_>, n: u64)
where
    S: Service<u64, Response = u64>,
    S::Error: Debug,
{
    for i in 0..n {
        black_box(one_call(svc, cx, black_box(i)));
    }
}

// ---------------------------------------------------------------------------------------------
// Allocations per call, counted before criterion runs.
// ---------------------------------------------------------------------------------------------

#[cfg(not(bulwark_bench_uncounted))]
const ALLOC_WARMUP: u64 = 1_000;
#[cfg(not(bulwark_bench_uncounted))]
const ALLOC_CALLS: u64 = 10_000;

#[cfg(not(bulwark_bench_uncounted))]
fn report_allocs<S>(name: &str, mut svc: S)
where
    S: Service<u64, Response = u64>,
    S::Error: Debug,
{
    let waker = thread_waker();
    let mut cx = Context::from_waker(&waker);
    calls(&mut svc, &mut cx, ALLOC_WARMUP);
    let region = stats_alloc::Region::new(GLOBAL);
    calls(&mut svc, &mut cx, ALLOC_CALLS);
    let d = region.change();
    let per = |v: usize| v as f64 / ALLOC_CALLS as f64;
    println!(
        "allocations per call: {name:<20} {:.3}  (deallocations {:.3}, reallocations {:.3}, \
         bytes allocated {:.1}) over {ALLOC_CALLS} calls",
        per(d.allocations),
        per(d.deallocations),
        per(d.reallocations),
        per(d.bytes_allocated),
    );
}

#[cfg(bulwark_bench_uncounted)]
fn alloc_report() {
    println!("-- allocation counting disabled (--cfg bulwark_bench_uncounted) --");
}

#[cfg(not(bulwark_bench_uncounted))]
fn alloc_report() {
    println!("-- allocations per ready+call+await, one thread, every call succeeds --");
    report_allocs("bare", bare());
    report_allocs("tower-retry-never", tower_never());
    let budget = tps_budget();
    report_allocs("tower-retry-tps", tower_budget(budget.clone()));
    println!("   (tower TpsBudget after those calls: {budget:?})");
    let layer = bulwark_layer();
    let budget = layer.budget().expect("budget on");
    // The budget counts requests from its first snapshot, which the first withdrawal takes:
    // take one now (one retry granted by the floor) so the check below sees every deposit.
    assert!(budget.try_withdraw());
    report_allocs("bulwark", bulwark(&layer));
    // The service was dropped, flushing its batched deposits: every call must have been counted.
    let stats = budget.stats();
    println!("   (bulwark budget after those calls: {stats:?})");
    assert_eq!(stats.requests, ALLOC_WARMUP + ALLOC_CALLS);
    report_allocs("bulwark-no-budget", bulwark(&bulwark_no_budget_layer()));
}

// ---------------------------------------------------------------------------------------------
// Criterion group.
// ---------------------------------------------------------------------------------------------

fn bench_one<S>(g: &mut BenchmarkGroup<'_, WallTime>, name: &str, mut svc: S)
where
    S: Service<u64, Response = u64>,
    S::Error: Debug,
{
    let waker = thread_waker();
    let mut cx = Context::from_waker(&waker);
    let mut i = 0u64;
    g.bench_function(name, |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            one_call(&mut svc, &mut cx, black_box(i))
        })
    });
}

/// One call per iteration: `poll_ready` + `call` + await, every call succeeds.
fn ready_call_await(c: &mut Criterion) {
    let mut g = c.benchmark_group("retry_ready_call_await");
    g.warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(4))
        .sample_size(100);
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
    alloc_report();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
