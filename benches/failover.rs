//! Failover overhead when the primary answers, against a bare `service_fn` and tower 0.5's
//! `Timeout` alone, with and without a per-attempt timeout.
//!
//! Run with `cargo bench --bench failover`. Before the criterion group runs, the allocations
//! per call of every stack are counted with `stats_alloc` and printed.
//!
//! The counting allocator stays installed for the whole run, as in every bench (it is declared
//! in `benches/support/mod.rs`). To time without it, build with `--cfg bulwark_bench_uncounted`
//! (the allocation report is then skipped), in a separate target directory so the shared one is
//! not rebuilt:
//! `CARGO_TARGET_DIR=target/uncounted RUSTFLAGS="--cfg bulwark_bench_uncounted" cargo bench --bench failover`.
//!
//! One call is `poll_ready` + `call` + polling the response future to completion, driven by
//! hand with a `Context` whose waker unparks the calling thread. Every call succeeds on the
//! primary (target 0), so no stack ever fails over and every future completes on its first
//! poll. The stacks with a timer (ours with a per-attempt timeout, tower's `Timeout`) create a
//! `tokio::time::Sleep` in `call`, which needs a tokio runtime context with the time driver:
//! for those rows a current-thread runtime with `enable_time()` is entered (`rt.enter()`) for
//! the whole measurement, but nothing is ever run on it; the calls are still polled by hand.

mod support;

use bulwark_failover::{FailOnFailure, Failover, FailoverLayer};
use criterion::measurement::WallTime;
use criterion::{criterion_group, BenchmarkGroup, Criterion};
use std::convert::Infallible;
use std::fmt::Debug;
use std::time::Duration;
use support::{bare, AllocReport, EchoFuture};
use tokio::runtime::Runtime;
use tower::Service;

// ---------------------------------------------------------------------------------------------
// The stacks. Every one wraps the same bare `service_fn(echo)` (`support::bare`).
// ---------------------------------------------------------------------------------------------

/// The per-attempt timeout of the timed stacks (ours' default), never reached.
const TIMEOUT: Duration = Duration::from_secs(30);

/// Ours over three clones of the bare service; the primary (index 0) answers every call.
fn bulwark(
    layer: FailoverLayer,
) -> Failover<
    impl Service<u64, Response = u64, Error = Infallible, Future = EchoFuture> + Clone + Send + 'static,
    FailOnFailure,
> {
    let a = bare();
    let svc = layer
        .build(vec![a.clone(), a.clone(), a])
        .expect("bulwark failover targets");
    assert_eq!(svc.targets().len(), 3);
    assert_eq!(svc.current(), 0, "requests start at the primary");
    svc
}

/// Ours, no per-attempt timeout (otherwise defaults: sticky, no interval).
fn bulwark_no_timeout() -> Failover<
    impl Service<u64, Response = u64, Error = Infallible, Future = EchoFuture> + Clone + Send + 'static,
    FailOnFailure,
> {
    let layer = FailoverLayer::builder()
        .no_attempt_timeout()
        .build()
        .expect("bulwark failover config");
    assert_eq!(layer.config().attempt_timeout, None);
    bulwark(layer)
}

/// Ours with a 30 s per-attempt timeout (otherwise defaults). Needs a runtime context.
fn bulwark_timeout() -> Failover<
    impl Service<u64, Response = u64, Error = Infallible, Future = EchoFuture> + Clone + Send + 'static,
    FailOnFailure,
> {
    let layer = FailoverLayer::builder()
        .attempt_timeout(TIMEOUT)
        .build()
        .expect("bulwark failover config");
    assert_eq!(layer.config().attempt_timeout, Some(TIMEOUT));
    bulwark(layer)
}

/// tower's `Timeout` alone, for reference. Needs a runtime context.
fn tower_timeout() -> impl Service<u64, Response = u64, Error = impl Debug> + Clone + Send + 'static
{
    tower::timeout::Timeout::new(bare(), TIMEOUT)
}

/// A current-thread runtime with the time driver, only ever entered (never run).
fn timer_runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("tokio runtime")
}

// ---------------------------------------------------------------------------------------------
// Allocations per call, counted before criterion runs.
// ---------------------------------------------------------------------------------------------

/// Counts the allocations of `svc`'s calls, each checked to answer its own request; inside
/// `rt`'s context if given.
fn report_allocs<S>(name: &str, rt: Option<&Runtime>, svc: S)
where
    S: Service<u64, Response = u64>,
    S::Error: Debug,
{
    let _guard = rt.map(Runtime::enter);
    let report = AllocReport {
        name_width: 22,
        check_echo: true,
    };
    report.stack(name, svc);
}

fn alloc_report() {
    println!("-- allocations per ready+call+await, one thread, the primary answers every call --");
    let rt = timer_runtime();
    report_allocs("bare", None, bare());
    // A clone shares the set's sticky position: after the calls it must still be the
    // primary (a failover to another target that answered would move it).
    let svc = bulwark_no_timeout();
    let watch = svc.clone();
    report_allocs("bulwark-no-timeout", None, svc);
    assert_eq!(watch.current(), 0, "the primary answered every call");
    let svc = bulwark_timeout();
    let watch = svc.clone();
    report_allocs("bulwark-timeout-30s", Some(&rt), svc);
    assert_eq!(watch.current(), 0, "the primary answered every call");
    report_allocs("tower-timeout-30s", Some(&rt), tower_timeout());
}

// ---------------------------------------------------------------------------------------------
// Criterion group.
// ---------------------------------------------------------------------------------------------

/// Times one call per iteration; inside `rt`'s context (entered once, around the whole
/// measurement) if given.
fn bench_one<S>(g: &mut BenchmarkGroup<'_, WallTime>, name: &str, rt: Option<&Runtime>, svc: S)
where
    S: Service<u64, Response = u64>,
    S::Error: Debug,
{
    let _guard = rt.map(Runtime::enter);
    support::bench_one(g, name, svc);
}

/// One call per iteration: `poll_ready` + `call` + await, the primary answers every call.
fn ready_call_await(c: &mut Criterion) {
    let rt = timer_runtime();
    let mut g = support::ready_call_await_group(c, "failover_ready_call_await");
    bench_one(&mut g, "bare", None, bare());
    bench_one(&mut g, "bulwark-no-timeout", None, bulwark_no_timeout());
    bench_one(&mut g, "bulwark-timeout-30s", Some(&rt), bulwark_timeout());
    bench_one(&mut g, "tower-timeout-30s", Some(&rt), tower_timeout());
    g.finish();
}

criterion_group!(benches, ready_call_await);

fn main() {
    support::main(alloc_report, benches);
}
