//! Hedging overhead on the path where the answer comes before the delay (no hedge is sent),
//! against a bare `service_fn`, tower 0.5's `hedge` and tower-resilience 0.13's hedge.
//!
//! Run with `cargo bench --bench hedge`. Before the criterion group runs, the allocations per
//! call of every stack are counted with `stats_alloc` and printed.
//!
//! tower's hedge and tower-resilience's create a tokio timer per call, so every stack (bare and
//! ours included) is driven the same way, on a current-thread tokio runtime with the timer
//! (`support::bench_on`): `ready().await` + `call` + `.await`, many calls per `block_on`. The
//! bare service answers at once, so every stack's future completes on its first poll and no
//! hedge is ever due.

mod support;

use criterion::{criterion_group, Criterion};
use std::fmt::Debug;
use std::time::Duration;
use support::{bare, bench_on, runtime, AllocReport};
use tower::{Layer, Service};

/// The delay every fixed-delay stack waits before a hedge: far longer than any answer here.
const DELAY: Duration = Duration::from_millis(50);

// ---------------------------------------------------------------------------------------------
// The stacks. Every one wraps the same bare `service_fn(echo)` (`support::bare`).
// ---------------------------------------------------------------------------------------------

/// tower's hedge policy: every request may be hedged (the copy is the request).
#[derive(Clone, Copy, Debug)]
struct HedgeAll;

impl tower::hedge::Policy<u64> for HedgeAll {
    fn clone_request(&self, req: &u64) -> Option<u64> {
        Some(*req)
    }

    fn can_retry(&self, _: &u64) -> bool {
        true
    }
}

/// tower's `Hedge`: a hedge after the p95 of the latencies it saw (a `Mutex`-guarded rotating
/// histogram), once it has 100 of them, over a 10 s period; the same settings as ours. (It is
/// not `Clone`.)
fn tower_hedge() -> impl Service<u64, Response = u64, Error = impl Debug> + Send + 'static {
    tower::hedge::Hedge::new::<u64>(bare(), HedgeAll, 100, 0.95, Duration::from_secs(10))
}

/// tower-resilience 0.13's hedge: a fixed delay, one hedge (2 attempts).
fn resilience_hedge(
) -> impl Service<u64, Response = u64, Error = impl Debug> + Clone + Send + 'static {
    tower_resilience::hedge::HedgeLayer::builder()
        .delay(DELAY)
        .max_hedged_attempts(2)
        .build()
        .layer(bare())
}

/// Ours with a fixed delay (2 attempts, the default budget).
fn bulwark_fixed() -> impl Service<u64, Response = u64, Error = impl Debug> + Clone + Send + 'static
{
    tower_bulwark::HedgeLayer::builder()
        .delay(DELAY)
        .build()
        .expect("valid hedge")
        .layer(bare())
}

/// Ours with the defaults: a hedge at the p95 of the latencies it saw, once it has 100 of
/// them, over 10 s (each answer's latency is recorded: two clock reads per call).
fn bulwark_percentile(
) -> impl Service<u64, Response = u64, Error = impl Debug> + Clone + Send + 'static {
    tower_bulwark::HedgeLayer::builder()
        .build()
        .expect("valid hedge")
        .layer(bare())
}

// ---------------------------------------------------------------------------------------------
// Allocations per call, counted before criterion runs.
// ---------------------------------------------------------------------------------------------

fn alloc_report() {
    println!("-- allocations per ready+call+await, one thread, on a current-thread runtime --");
    let rt = runtime();
    let report = AllocReport {
        name_width: 22,
        check_echo: true,
    };
    let _enter = rt.enter();
    report.stack_on(&rt, "bare", bare());
    report.stack_on(&rt, "tower-hedge", tower_hedge());
    report.stack_on(&rt, "tower-resilience-hedge", resilience_hedge());
    report.stack_on(&rt, "bulwark-fixed", bulwark_fixed());
    report.stack_on(&rt, "bulwark-percentile", bulwark_percentile());
}

// ---------------------------------------------------------------------------------------------
// Criterion group.
// ---------------------------------------------------------------------------------------------

/// One call per iteration: `ready().await` + `call` + `.await`, every answer at once.
fn ready_call_await(c: &mut Criterion) {
    let rt = runtime();
    let _enter = rt.enter();
    let mut g = support::ready_call_await_group(c, "hedge_ready_call_await");
    bench_on(&mut g, "bare", &rt, bare());
    bench_on(&mut g, "tower-hedge", &rt, tower_hedge());
    bench_on(&mut g, "tower-resilience-hedge", &rt, resilience_hedge());
    bench_on(&mut g, "bulwark-fixed", &rt, bulwark_fixed());
    bench_on(&mut g, "bulwark-percentile", &rt, bulwark_percentile());
    g.finish();
}

criterion_group!(benches, ready_call_await);

fn main() {
    support::main(alloc_report, benches);
}
