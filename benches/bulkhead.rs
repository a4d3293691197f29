//! Bulkhead overhead on the admitted path (a limit never reached: one call in flight at a
//! time), against a bare `service_fn` and the peers a user would pick instead: tower's
//! `ConcurrencyLimit`, tower-resilience 0.13's bulkhead and its adaptive limiter (AIMD); ours
//! fixed, and ours adaptive (gradient and AIMD). A second group has the inner service fail one
//! call in four, so the adaptive layers record mixed outcomes (and the failures move AIMD's
//! limit).
//!
//! Run with `cargo bench --bench bulkhead`. Before the criterion groups run, the allocations
//! per call of every stack are counted with `stats_alloc` and printed (see `support` for
//! timing without the counting allocator).
//!
//! One call is `poll_ready` + `call` + polling the response future to completion, driven by
//! hand (see `support`), outside any runtime: none of the stacks needs one on the admitted
//! path (tokio's semaphore, under tower's and tower-resilience's, does not; tokio's clock,
//! read by our adaptive limit, falls back to the system clock).

mod support;

use criterion::{criterion_group, Criterion};
use std::fmt::Debug;
use std::future::{ready, Future, Ready};
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll};
use std::time::Duration;
use support::{bare, bench_one, AllocReport};
use tower::{Layer, Service};

/// A limit never reached in these benches.
const LIMIT: u32 = 64;

// ---------------------------------------------------------------------------------------------
// The stacks. Every one wraps the same inner service: the bare `service_fn(echo)`
// (`support::bare`), or `flaky` in the mixed group.
// ---------------------------------------------------------------------------------------------

/// Ours, fixed: an atomic count of calls in flight.
fn bulwark<S>(inner: S) -> impl Service<u64, Response = u64, Error = impl Debug>
where
    S: Service<u64, Response = u64>,
    S::Error: Into<tower_bulwark::core::BoxError>,
{
    tower_bulwark::BulkheadLayer::new(LIMIT)
        .expect("bulwark bulkhead config")
        .layer(inner)
}

/// Ours, adaptive, with the gradient controller (the default) and windows of 100 ms.
fn bulwark_gradient<S>(inner: S) -> impl Service<u64, Response = u64, Error = impl Debug>
where
    S: Service<u64, Response = u64>,
    S::Error: Into<tower_bulwark::core::BoxError>,
{
    tower_bulwark::AdaptiveLimitLayer::builder()
        .limits(1, LIMIT, 4 * LIMIT)
        .build()
        .expect("bulwark adaptive config")
        .layer(inner)
}

/// Ours, adaptive, with AIMD (100 ms latency threshold, windows of 100 ms).
fn bulwark_aimd<S>(inner: S) -> impl Service<u64, Response = u64, Error = impl Debug>
where
    S: Service<u64, Response = u64>,
    S::Error: Into<tower_bulwark::core::BoxError>,
{
    tower_bulwark::AdaptiveLimitLayer::builder()
        .limits(1, LIMIT, 4 * LIMIT)
        .aimd(Duration::from_millis(100))
        .build()
        .expect("bulwark adaptive config")
        .layer(inner)
}

/// tower 0.5's `ConcurrencyLimit`: a tokio semaphore permit taken in `poll_ready`.
fn tower_limit<S>(inner: S) -> impl Service<u64, Response = u64, Error = impl Debug>
where
    S: Service<u64, Response = u64>,
    S::Error: Debug,
{
    tower::limit::ConcurrencyLimitLayer::new(LIMIT as usize).layer(inner)
}

/// tower-resilience 0.13's bulkhead in its default mode (the permit taken in `call`, in a
/// boxed future; no wait limit, so no timer).
fn resilience<S>(inner: S) -> impl Service<u64, Response = u64, Error = impl Debug>
where
    S: Service<u64, Response = u64> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Debug + Send + Sync + 'static,
{
    tower_resilience::bulkhead::BulkheadLayer::builder()
        .max_concurrent_calls(LIMIT as usize)
        .name("bench")
        .build()
        .expect("tower-resilience bulkhead config")
        .layer(inner)
}

/// tower-resilience 0.13's adaptive limiter, AIMD (100 ms latency threshold).
fn resilience_aimd<S>(inner: S) -> impl Service<u64, Response = u64, Error = impl Debug>
where
    S: Service<u64, Response = u64> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Debug + Send + Sync + 'static,
{
    let aimd = tower_resilience::adaptive::Aimd::builder()
        .initial_limit(LIMIT as usize)
        .min_limit(1)
        .max_limit(4 * LIMIT as usize)
        .latency_threshold(Duration::from_millis(100))
        .build()
        .expect("tower-resilience AIMD config");
    tower_resilience::adaptive::AdaptiveLimiterLayer::new(aimd).layer(inner)
}

// ---------------------------------------------------------------------------------------------
// The mixed-outcome inner service and its driver.
// ---------------------------------------------------------------------------------------------

/// The inner service's error in the mixed group (a unit value: failing allocates nothing).
#[derive(Debug, Clone, Copy)]
struct Flaky;

impl std::fmt::Display for Flaky {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("flaky")
    }
}

impl std::error::Error for Flaky {}

fn flaky_answer(x: u64) -> Ready<Result<u64, Flaky>> {
    ready(if x % 4 == 0 { Err(Flaky) } else { Ok(x) })
}

/// Fails every fourth call (by its request), at once.
fn flaky() -> impl Service<u64, Response = u64, Error = Flaky, Future = Ready<Result<u64, Flaky>>>
       + Clone
       + Send
       + 'static {
    tower::service_fn(flaky_answer)
}

/// `poll_ready` + `call` + poll to completion, an error answer being an answer.
#[inline(always)]
fn one_mixed_call<S>(svc: &mut S, cx: &mut Context<'_>, x: u64) -> bool
where
    S: Service<u64, Response = u64>,
    S::Error: Debug,
{
    loop {
        match svc.poll_ready(cx) {
            Poll::Ready(Ok(())) => break,
            Poll::Ready(Err(e)) => panic!("poll_ready failed: {e:?}"),
            Poll::Pending => std::thread::park(),
        }
    }
    let mut fut = pin!(svc.call(x));
    loop {
        match fut.as_mut().poll(cx) {
            Poll::Ready(r) => return r.is_ok(),
            Poll::Pending => std::thread::park(),
        }
    }
}

fn bench_mixed<S>(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    mut svc: S,
) where
    S: Service<u64, Response = u64>,
    S::Error: Debug,
{
    let waker = support::thread_waker();
    let mut cx = Context::from_waker(&waker);
    let mut i = 0u64;
    g.bench_function(name, |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            one_mixed_call(&mut svc, &mut cx, black_box(i))
        })
    });
}

/// Allocations per call of a mixed-outcome stack, printed like `AllocReport`'s.
fn mixed_alloc<S>(name: &str, mut svc: S)
where
    S: Service<u64, Response = u64>,
    S::Error: Debug,
{
    let waker = support::thread_waker();
    let mut cx = Context::from_waker(&waker);
    let mut run = |n: u64| {
        let mut ok = 0u64;
        for i in 0..n {
            ok += u64::from(one_mixed_call(&mut svc, &mut cx, i));
        }
        assert_eq!(ok, n - n / 4, "one call in four fails");
    };
    run(support::ALLOC_WARMUP);
    let (_, d) = support::allocations(|| run(support::ALLOC_CALLS));
    let per = |v: usize| v as f64 / support::ALLOC_CALLS as f64;
    println!(
        "allocations per call: {name:<24} {:.3}  (deallocations {:.3}, bytes allocated {:.1}) \
         over {} calls, one in four failing",
        per(d.allocations),
        per(d.deallocations),
        per(d.bytes_allocated),
        support::ALLOC_CALLS,
    );
}

// ---------------------------------------------------------------------------------------------
// Allocations per call, counted before criterion runs.
// ---------------------------------------------------------------------------------------------

fn alloc_report() {
    println!("-- allocations per ready+call+await, one thread, admitted --");
    let report = AllocReport {
        name_width: 24,
        check_echo: true,
    };
    report.stack("bare", bare());
    report.stack("bulwark", bulwark(bare()));
    report.stack("bulwark-adaptive-gradient", bulwark_gradient(bare()));
    report.stack("bulwark-adaptive-aimd", bulwark_aimd(bare()));
    report.stack("tower-concurrency-limit", tower_limit(bare()));
    report.stack("tower-resilience", resilience(bare()));
    report.stack("tower-resilience-aimd", resilience_aimd(bare()));
    println!("-- the same, the inner service failing one call in four --");
    mixed_alloc("bulwark-adaptive-gradient", bulwark_gradient(flaky()));
    mixed_alloc("bulwark-adaptive-aimd", bulwark_aimd(flaky()));
    mixed_alloc("tower-resilience-aimd", resilience_aimd(flaky()));
}

// ---------------------------------------------------------------------------------------------
// Criterion groups.
// ---------------------------------------------------------------------------------------------

/// One admitted call per iteration: `poll_ready` + `call` + await.
fn ready_call_await(c: &mut Criterion) {
    let mut g = support::ready_call_await_group(c, "bulkhead_ready_call_await");
    bench_one(&mut g, "bare", bare());
    bench_one(&mut g, "bulwark", bulwark(bare()));
    bench_one(
        &mut g,
        "bulwark-adaptive-gradient",
        bulwark_gradient(bare()),
    );
    bench_one(&mut g, "bulwark-adaptive-aimd", bulwark_aimd(bare()));
    bench_one(&mut g, "tower-concurrency-limit", tower_limit(bare()));
    bench_one(&mut g, "tower-resilience", resilience(bare()));
    bench_one(&mut g, "tower-resilience-aimd", resilience_aimd(bare()));
    g.finish();
}

/// The same with one call in four failing: the adaptive layers record mixed outcomes.
fn mixed_outcomes(c: &mut Criterion) {
    let mut g = support::ready_call_await_group(c, "bulkhead_mixed_outcomes");
    bench_mixed(&mut g, "bare", flaky());
    bench_mixed(
        &mut g,
        "bulwark-adaptive-gradient",
        bulwark_gradient(flaky()),
    );
    bench_mixed(&mut g, "bulwark-adaptive-aimd", bulwark_aimd(flaky()));
    bench_mixed(&mut g, "tower-resilience-aimd", resilience_aimd(flaky()));
    g.finish();
}

criterion_group!(benches, ready_call_await, mixed_outcomes);

fn main() {
    support::main(alloc_report, benches);
}
