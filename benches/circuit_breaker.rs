//! Circuit breaker overhead in the closed state, against a bare `service_fn` and two peers
//! (tower-resilience 0.13, failsafe 1.3), plus two threads sharing one breaker.
//!
//! Run with `cargo bench --bench circuit_breaker`. Before the criterion groups run, the
//! allocations per call of every stack are counted with `stats_alloc` and printed.
//!
//! The counting allocator stays installed for the whole run, so a stack that allocates pays
//! its counters (SeqCst read-modify-writes on shared words) in the timings too. To time without
//! it, build with `--cfg bulwark_bench_uncounted` (the allocation report is then skipped), in a
//! separate target directory so the shared one is not rebuilt:
//! `CARGO_TARGET_DIR=target/uncounted RUSTFLAGS="--cfg bulwark_bench_uncounted" cargo bench --bench circuit_breaker`.
//!
//! One call is `poll_ready` + `call` + polling the response future to completion, driven by
//! hand with a `Context` whose waker unparks the calling thread (no async runtime): every
//! stack's future completes on its first poll unless a lock is contended, in which case the
//! thread parks until woken, as a minimal executor would.

// The `std::time::Instant` ban in clippy.toml is for library code (tokio's paused clock must
// govern tests); `iter_custom` needs real wall time from std.
#![allow(clippy::disallowed_types)]

mod support;

use criterion::measurement::WallTime;
use criterion::{criterion_group, BenchmarkGroup, BenchmarkId, Criterion, Throughput};
use std::fmt::Debug;
use std::sync::Barrier;
use std::task::{Context, Poll};
use std::thread;
use std::time::{Duration, Instant};
use support::{bare, bench_one, calls, thread_waker, AllocReport};
use tower::Service;

// ---------------------------------------------------------------------------------------------
// The stacks. Every one wraps the same bare `service_fn(echo)` (`support::bare`).
// ---------------------------------------------------------------------------------------------

/// Ours, defaults (count window 100, failure rate 0.5).
fn bulwark() -> impl Service<u64, Response = u64, Error = impl Debug> + Clone + Send + 'static {
    let layer = tower_bulwark::circuit_breaker::CircuitBreakerLayer::builder()
        .name("bench")
        .build()
        .expect("bulwark breaker config");
    let svc = tower::Layer::layer(&layer, bare());
    assert_eq!(
        svc.handle().state(),
        tower_bulwark::circuit_breaker::CircuitState::Closed
    );
    svc
}

/// tower-resilience 0.13, defaults (count-based window 100, failure rate 0.5).
fn resilience() -> impl Service<u64, Response = u64, Error = impl Debug> + Clone + Send + 'static {
    let layer = tower_resilience::circuitbreaker::CircuitBreakerLayer::builder()
        .name("bench")
        .build()
        .expect("tower-resilience breaker config");
    let svc = tower::Layer::layer(&layer, bare());
    assert_eq!(
        svc.state_sync(),
        tower_resilience::circuitbreaker::CircuitState::Closed
    );
    svc
}

/// failsafe 1.3 has no tower layer: its futures API wraps a future,
/// `breaker.call(future)`. This adapter is the thinnest `Service` around it: `poll_ready`
/// is the inner service's, `call` is `breaker.call(inner.call(req))`.
struct Failsafe<S, P, I> {
    inner: S,
    breaker: failsafe::StateMachine<P, I>,
}

// `StateMachine` is an `Arc` handle: clones share one breaker (no `P: Clone` needed).
impl<S: Clone, P, I> Clone for Failsafe<S, P, I> {
    fn clone(&self) -> Self {
        Failsafe {
            inner: self.inner.clone(),
            breaker: self.breaker.clone(),
        }
    }
}

impl<S, P, I> Service<u64> for Failsafe<S, P, I>
where
    S: Service<u64>,
    P: failsafe::FailurePolicy + Send + Sync,
    I: failsafe::Instrument + Send + Sync,
{
    type Response = S::Response;
    type Error = failsafe::Error<S::Error>;
    type Future = failsafe::futures::ResponseFuture<S::Future, P, I, failsafe::Any>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(failsafe::Error::Inner)
    }

    #[inline]
    fn call(&mut self, req: u64) -> Self::Future {
        failsafe::futures::CircuitBreaker::call(&self.breaker, self.inner.call(req))
    }
}

/// failsafe 1.3, `Config::new().build()` defaults (success rate over a time window, or else
/// consecutive failures).
fn failsafe() -> impl Service<u64, Response = u64, Error = impl Debug> + Clone + Send + 'static {
    let breaker = failsafe::Config::new().build();
    assert!(failsafe::futures::CircuitBreaker::is_call_permitted(
        &breaker
    ));
    Failsafe {
        inner: bare(),
        breaker,
    }
}

// ---------------------------------------------------------------------------------------------
// Allocations per call, counted before criterion runs.
// ---------------------------------------------------------------------------------------------

fn alloc_report() {
    println!("-- allocations per ready+call+await, one thread, closed breaker --");
    let report = AllocReport {
        name_width: 16,
        check_echo: false,
    };
    report.stack("bare", bare());
    report.stack("bulwark", bulwark());
    report.stack("tower-resilience", resilience());
    report.stack("failsafe", failsafe());
}

// ---------------------------------------------------------------------------------------------
// Criterion groups.
// ---------------------------------------------------------------------------------------------

/// One call per iteration: `poll_ready` + `call` + await, every call succeeds.
fn ready_call_await(c: &mut Criterion) {
    let mut g = support::ready_call_await_group(c, "ready_call_await");
    bench_one(&mut g, "bare", bare());
    bench_one(&mut g, "bulwark", bulwark());
    bench_one(&mut g, "tower-resilience", resilience());
    bench_one(&mut g, "failsafe", failsafe());
    g.finish();
}

/// `iters` calls in total, split across `threads` threads, each with its own service from
/// `make` (a clone of one service, so all share one breaker, except in the control). Returns
/// the wall time from the common start to the last join.
fn run_threads<S>(make: &dyn Fn() -> S, threads: u64, iters: u64) -> Duration
where
    S: Service<u64, Response = u64> + Send,
    S::Error: Debug,
{
    let start_line = Barrier::new(threads as usize + 1);
    thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let mut svc = make();
                let start_line = &start_line;
                let n = iters / threads + u64::from(t < iters % threads);
                s.spawn(move || {
                    let waker = thread_waker();
                    let mut cx = Context::from_waker(&waker);
                    start_line.wait();
                    calls(&mut svc, &mut cx, n);
                })
            })
            .collect();
        start_line.wait();
        let start = Instant::now();
        for h in handles {
            h.join().expect("bench thread panicked");
        }
        start.elapsed()
    })
}

fn bench_shared<S>(g: &mut BenchmarkGroup<'_, WallTime>, name: &str, svc: S)
where
    S: Service<u64, Response = u64> + Clone + Send,
    S::Error: Debug,
{
    for threads in [1u64, 2] {
        g.bench_with_input(BenchmarkId::new(name, threads), &threads, |b, &threads| {
            b.iter_custom(|iters| run_threads(&|| svc.clone(), threads, iters))
        });
    }
}

/// Aggregate throughput: one iteration is one call, made by whichever thread; with two
/// threads, each holds a clone of the same service, so both go through one shared breaker.
fn shared_breaker(c: &mut Criterion) {
    let mut g = c.benchmark_group("shared_breaker_threads");
    g.throughput(Throughput::Elements(1))
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(5))
        .sample_size(50);
    bench_shared(&mut g, "bare", bare());
    bench_shared(&mut g, "bulwark", bulwark());
    bench_shared(&mut g, "tower-resilience", resilience());
    bench_shared(&mut g, "failsafe", failsafe());
    // Control: two threads, each with its own bulwark breaker (nothing shared), to tell the
    // cost of sharing one breaker from what two threads get on this machine at all.
    g.bench_with_input(
        BenchmarkId::new("bulwark-unshared-control", 2),
        &2u64,
        |b, &threads| b.iter_custom(|iters| run_threads(&bulwark, threads, iters)),
    );
    g.finish();
}

criterion_group!(benches, ready_call_await, shared_breaker);

fn main() {
    support::main(alloc_report, benches);
}
