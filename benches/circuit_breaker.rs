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
// `bulwark_bench_uncounted` is this file's own opt-out switch (see above), not a crate cfg.
#![allow(unexpected_cfgs)]

use criterion::measurement::WallTime;
use criterion::{criterion_group, BenchmarkGroup, BenchmarkId, Criterion, Throughput};
use std::convert::Infallible;
use std::fmt::Debug;
use std::future::{ready, Future, Ready};
use std::hint::black_box;
use std::pin::pin;
use std::sync::{Arc, Barrier};
use std::task::{Context, Poll, Wake, Waker};
use std::thread;
use std::time::{Duration, Instant};
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

/// A waker that unparks the current thread. Built once per thread, outside measurement.
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
        "allocations per call: {name:<16} {:.3}  (deallocations {:.3}, reallocations {:.3}, \
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
    println!("-- allocations per ready+call+await, one thread, closed breaker --");
    report_allocs("bare", bare());
    report_allocs("bulwark", bulwark());
    report_allocs("tower-resilience", resilience());
    report_allocs("failsafe", failsafe());
}

// ---------------------------------------------------------------------------------------------
// Criterion groups.
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
    let mut g = c.benchmark_group("ready_call_await");
    g.warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(4))
        .sample_size(100);
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
    alloc_report();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
