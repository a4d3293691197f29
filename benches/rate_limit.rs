//! Rate limiter overhead on the admitted path (a rate high enough never to refuse), against a
//! bare `service_fn` and two peers (tower's `RateLimit`, tower-resilience 0.13's rate limiter),
//! plus one limiter shared by two threads against one thread.
//!
//! Run with `cargo bench --bench rate_limit`. Before the criterion groups run, the allocations
//! per call of every stack are counted with `stats_alloc` and printed (see `support` for
//! timing without the counting allocator).
//!
//! One call is `poll_ready` + `call` + polling the response future to completion, driven by
//! hand (see `support`). tower's `RateLimit` arms a tokio timer when it is built, so it is
//! built inside a runtime's context; none of the stacks touches the runtime on the admitted
//! path. tower's `RateLimit` is not `Clone` (tower#794) and counts per instance, so it has no
//! row in the shared group.

mod support;

use criterion::{criterion_group, Criterion};
use std::fmt::Debug;
use std::time::Duration;
use support::{bare, bench_one, bench_shared, AllocReport};
use tower::{Layer, Service};

/// A billion a second, a billion at once: never refuses within a bench.
const RATE: u32 = 1_000_000_000;

// ---------------------------------------------------------------------------------------------
// The stacks. Every one wraps the same bare `service_fn(echo)` (`support::bare`).
// ---------------------------------------------------------------------------------------------

/// Ours: one GCRA bucket (one atomic) shared by every clone.
fn bulwark() -> impl Service<u64, Response = u64, Error = impl Debug> + Clone + Send + 'static {
    let layer = tower_bulwark::RateLimitLayer::builder()
        .name("bench")
        .per_second(RATE)
        .burst(RATE)
        .build()
        .expect("bulwark rate limit config");
    layer.layer(bare())
}

/// Ours with leases of up to 16 tokens: a clone that has called before takes its tokens from
/// the bucket 16 at a time.
fn bulwark_lease() -> impl Service<u64, Response = u64, Error = impl Debug> + Clone + Send + 'static
{
    let layer = tower_bulwark::RateLimitLayer::builder()
        .name("bench")
        .per_second(RATE)
        .burst(RATE)
        .lease(16)
        .build()
        .expect("bulwark rate limit config");
    layer.layer(bare())
}

/// tower 0.5's `RateLimit`: a fixed window per instance, built in `rt`'s context (it makes
/// its `Sleep` up front).
fn tower_rate_limit(
    rt: &tokio::runtime::Runtime,
) -> impl Service<u64, Response = u64, Error = impl Debug> + Send + 'static {
    let _context = rt.enter();
    tower::limit::RateLimitLayer::new(u64::from(RATE), Duration::from_secs(1)).layer(bare())
}

/// tower-resilience 0.13's rate limiter in its token-bucket mode (`RateLimiterLayer::burst`),
/// refusing in `call` (its default): a mutex around the bucket, shared by clones.
fn resilience() -> impl Service<u64, Response = u64, Error = impl Debug> + Clone + Send + 'static {
    let layer =
        tower_resilience::ratelimiter::RateLimiterLayer::burst(RATE as usize, RATE as usize)
            .name("bench")
            .build()
            .expect("tower-resilience rate limiter config");
    layer.layer(bare())
}

// ---------------------------------------------------------------------------------------------
// Allocations per call, counted before criterion runs.
// ---------------------------------------------------------------------------------------------

fn alloc_report() {
    println!("-- allocations per ready+call+await, one thread, admitted --");
    let rt = support::runtime();
    let report = AllocReport {
        name_width: 16,
        check_echo: true,
    };
    report.stack("bare", bare());
    report.stack("bulwark", bulwark());
    report.stack("bulwark lease 16", bulwark_lease());
    report.stack("tower", tower_rate_limit(&rt));
    report.stack("tower-resilience", resilience());
}

// ---------------------------------------------------------------------------------------------
// Criterion groups.
// ---------------------------------------------------------------------------------------------

/// One admitted call per iteration: `poll_ready` + `call` + await.
fn ready_call_await(c: &mut Criterion) {
    let rt = support::runtime();
    let mut g = support::ready_call_await_group(c, "rate_limit_ready_call_await");
    bench_one(&mut g, "bare", bare());
    bench_one(&mut g, "bulwark", bulwark());
    bench_one(&mut g, "bulwark-lease-16", bulwark_lease());
    bench_one(&mut g, "tower", tower_rate_limit(&rt));
    bench_one(&mut g, "tower-resilience", resilience());
    // Reference: the read of tokio's clock that admitting a call needs (ours reads it once in
    // `poll_ready`, tower's once in `call`), as our limiter reads it.
    let clock = tower_bulwark::core::clock::Clock::new();
    g.bench_function("reference: clock read", |b| b.iter(|| clock.now()));
    g.finish();
}

/// Aggregate throughput: one iteration is one call, made by whichever thread; with two
/// threads, each holds a clone of the same service, so both take tokens from one bucket.
fn shared_limiter(c: &mut Criterion) {
    let mut g = support::shared_threads_group(c, "shared_rate_limit_threads");
    bench_shared(&mut g, "bare", bare());
    bench_shared(&mut g, "bulwark", bulwark());
    bench_shared(&mut g, "bulwark-lease-16", bulwark_lease());
    bench_shared(&mut g, "tower-resilience", resilience());
    // Control: two threads, each with a limiter of its own.
    support::bench_unshared_control(&mut g, "bulwark-unshared-control", bulwark);
    g.finish();
}

criterion_group!(benches, ready_call_await, shared_limiter);

fn main() {
    support::main(alloc_report, benches);
}
