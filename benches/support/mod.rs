//! The harness shared by the benches (`mod support;` in each): the bare `service_fn(echo)`
//! every stack wraps, one call driven by hand, the allocation count printed before criterion
//! runs, the `ready_call_await` group settings and `main`.
//!
//! One call is `poll_ready` + `call` + polling the response future to completion, driven by
//! hand with a `Context` whose waker unparks the calling thread (no async runtime): a future
//! that returns `Pending` parks the thread until woken, as a minimal executor would.
//!
//! The counting allocator (`stats_alloc`) is declared here, once per bench binary, and stays
//! installed for the whole run, so a stack that allocates pays its counters (SeqCst
//! read-modify-writes on shared words) in the timings too. Built with
//! `--cfg bulwark_bench_uncounted`, no allocator is installed and the allocation report is
//! skipped.
//!
//! The balance and churn benches also use [`Client`], an endpoint that holds an `Arc` as real
//! clients do, and drive stacks that need a tokio runtime (tower's `Buffer`) on a
//! current-thread one ([`runtime`], [`bench_on`], [`AllocReport::stack_on`]).

// `bulwark_bench_uncounted` is the benches' own opt-out switch (see above), not a crate cfg.
#![allow(unexpected_cfgs)]

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, BenchmarkId, Criterion};
use std::convert::Infallible;
use std::fmt::Debug;
use std::future::{ready, Future, Ready};
use std::hint::black_box;
use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::task::{Context, Poll, Wake, Waker};
use std::thread;
use std::time::Duration;
use tower::Service;

/// The counting allocator, installed unless built with `--cfg bulwark_bench_uncounted`.
#[cfg(not(bulwark_bench_uncounted))]
#[global_allocator]
static GLOBAL: &stats_alloc::StatsAlloc<std::alloc::System> = &stats_alloc::INSTRUMENTED_SYSTEM;

/// Not installed: only there so the report compiles (`main` skips it in this build).
#[cfg(bulwark_bench_uncounted)]
static GLOBAL: &stats_alloc::StatsAlloc<std::alloc::System> = &stats_alloc::INSTRUMENTED_SYSTEM;

// ---------------------------------------------------------------------------------------------
// The bare service.
// ---------------------------------------------------------------------------------------------

fn echo(x: u64) -> EchoFuture {
    ready(Ok(x))
}

pub(crate) type EchoFuture = Ready<Result<u64, Infallible>>;

/// The bare service: `service_fn` over a function item (no indirect call).
pub(crate) fn bare(
) -> impl Service<u64, Response = u64, Error = Infallible, Future = EchoFuture> + Clone + Send + 'static
{
    tower::service_fn(echo)
}

// ---------------------------------------------------------------------------------------------
// An endpoint that holds an `Arc`, as real clients do.
// ---------------------------------------------------------------------------------------------

/// What a [`Client`]'s clones share: here only a count of the calls it answered.
#[derive(Debug, Default)]
pub(crate) struct ClientState {
    calls: AtomicU64,
}

/// An endpoint shaped like the clients users balance (a tonic `Channel`, a hyper `Client`):
/// a `Clone` handle on shared state (`Arc`), so cloning it costs a reference count, as a
/// zero-sized `service_fn` would hide. Always ready; `call` counts the call in the shared
/// state (one relaxed add) and answers the request at once.
#[derive(Clone, Debug, Default)]
#[allow(dead_code)] // the balance, churn and hedge benches only
pub(crate) struct Client {
    shared: Arc<ClientState>,
}

#[allow(dead_code)] // the balance, churn and hedge benches only
impl Client {
    /// The calls this endpoint (any of its clones) answered.
    pub(crate) fn calls(&self) -> u64 {
        self.shared.calls.load(Ordering::Relaxed)
    }
}

impl Service<u64> for Client {
    type Response = u64;
    type Error = Infallible;
    type Future = EchoFuture;

    #[inline]
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    #[inline]
    fn call(&mut self, x: u64) -> EchoFuture {
        self.shared.calls.fetch_add(1, Ordering::Relaxed);
        ready(Ok(x))
    }
}

/// `n` distinct [`Client`]s.
#[allow(dead_code)] // the balance, churn and hedge benches only
pub(crate) fn clients(n: usize) -> Vec<Client> {
    (0..n).map(|_| Client::default()).collect()
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
pub(crate) fn thread_waker() -> Waker {
    Waker::from(Arc::new(ThreadWaker(thread::current())))
}

/// `poll_ready` + `call` + poll the future to completion.
#[inline(always)]
pub(crate) fn one_call<S>(svc: &mut S, cx: &mut Context<'_>, x: u64) -> u64
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
pub(crate) fn calls<S>(svc: &mut S, cx: &mut Context<'_>, n: u64)
where
    S: Service<u64, Response = u64>,
    S::Error: Debug,
{
    for i in 0..n {
        black_box(one_call(svc, cx, black_box(i)));
    }
}

/// `n` calls in a row on this thread, each checked to answer its own request.
#[inline(always)]
#[allow(dead_code)] // not the hedge bench (it drives every stack on a runtime)
fn checked_calls<S>(svc: &mut S, cx: &mut Context<'_>, n: u64)
where
    S: Service<u64, Response = u64>,
    S::Error: Debug,
{
    for i in 0..n {
        assert_eq!(black_box(one_call(svc, cx, black_box(i))), i);
    }
}

// ---------------------------------------------------------------------------------------------
// Threads sharing one service's state.
// ---------------------------------------------------------------------------------------------

/// `iters` calls in total, split across `threads` threads, each with its own service from
/// `make` (a clone of one service, so all share one limiter or breaker, except in a control). Returns
/// the wall time from the common start to the last join.
// The `std::time::Instant` ban in clippy.toml is for library code: this needs wall time.
#[allow(dead_code, clippy::disallowed_types)] // the circuit_breaker and rate_limit benches only
pub(crate) fn run_threads<S>(make: &dyn Fn() -> S, threads: u64, iters: u64) -> Duration
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
        let start = std::time::Instant::now();
        for h in handles {
            h.join().expect("bench thread panicked");
        }
        start.elapsed()
    })
}

/// Times `name` with 1 and 2 threads, each calling a clone of `svc`.
#[allow(dead_code)] // the circuit_breaker and rate_limit benches only
pub(crate) fn bench_shared<S>(g: &mut BenchmarkGroup<'_, WallTime>, name: &str, svc: S)
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

/// The group `name` of aggregate throughput (one iteration is one call, made by whichever
/// thread), with the settings every bench's shared-threads group uses.
#[allow(dead_code)] // the circuit_breaker and rate_limit benches only
pub(crate) fn shared_threads_group<'a>(
    c: &'a mut Criterion,
    name: &str,
) -> BenchmarkGroup<'a, WallTime> {
    let mut g = c.benchmark_group(name);
    g.throughput(criterion::Throughput::Elements(1))
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(5))
        .sample_size(50);
    g
}

/// The control of a shared-threads group: two threads, each with a service of its own from
/// `make` (nothing shared), to tell the cost of sharing from what two threads get on this
/// machine at all.
#[allow(dead_code)] // the circuit_breaker and rate_limit benches only
pub(crate) fn bench_unshared_control<S>(
    g: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    make: fn() -> S,
) where
    S: Service<u64, Response = u64> + Send,
    S::Error: Debug,
{
    g.bench_with_input(BenchmarkId::new(name, 2), &2u64, |b, &threads| {
        b.iter_custom(|iters| run_threads(&make, threads, iters))
    });
}

// ---------------------------------------------------------------------------------------------
// Driving calls on a current-thread tokio runtime (for stacks that spawn a task: `Buffer`).
// ---------------------------------------------------------------------------------------------

/// A current-thread runtime with the timer: a stack that spawns a task (tower's `Buffer`
/// worker) is built inside it (`enter`) and driven by `block_on`, so the worker runs on the
/// calling thread whenever the caller waits.
#[allow(dead_code)] // the balance, churn and hedge benches only
pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a current-thread runtime")
}

/// `ServiceExt::ready` + `call` + `.await`, on whatever runtime polls it.
#[allow(dead_code)] // the balance, churn and hedge benches only
#[inline(always)]
async fn one_call_async<S>(svc: &mut S, x: u64) -> u64
where
    S: Service<u64, Response = u64>,
    S::Error: Debug,
{
    use tower::ServiceExt;
    let ready = svc.ready().await.expect("poll_ready failed");
    ready.call(x).await.expect("call failed")
}

/// `n` calls in a row on `rt`, each checked to answer its own request if `check`.
#[allow(dead_code)] // the balance, churn and hedge benches only
fn calls_on<S>(rt: &tokio::runtime::Runtime, svc: &mut S, n: u64, check: bool)
where
    S: Service<u64, Response = u64>,
    S::Error: Debug,
{
    rt.block_on(async {
        for i in 0..n {
            let y = black_box(one_call_async(svc, black_box(i)).await);
            if check {
                assert_eq!(y, i);
            }
        }
    });
}

// ---------------------------------------------------------------------------------------------
// Allocations per call, counted before criterion runs.
// ---------------------------------------------------------------------------------------------

/// Calls made on each stack before counting starts.
pub(crate) const ALLOC_WARMUP: u64 = 1_000;
/// Calls counted on each stack.
pub(crate) const ALLOC_CALLS: u64 = 10_000;

/// Runs `f` and returns what it returned with the allocations it made (on any thread: the
/// counters are global), by the one counting allocator above.
#[allow(dead_code)] // the churn bench only
pub(crate) fn allocations<T>(f: impl FnOnce() -> T) -> (T, stats_alloc::Stats) {
    let region = stats_alloc::Region::new(GLOBAL);
    let out = f();
    (out, region.change())
}

/// Prints one line per stack: its allocations (and deallocations, reallocations, bytes
/// allocated) per call, over [`ALLOC_CALLS`] calls after [`ALLOC_WARMUP`] uncounted ones.
#[derive(Clone, Copy, Debug)]
pub(crate) struct AllocReport {
    /// The width the stack names are padded to, so the numbers line up.
    pub(crate) name_width: usize,
    /// Whether every call is checked to answer its own request (`assert_eq!`).
    pub(crate) check_echo: bool,
}

impl AllocReport {
    /// Counts and prints the allocations per call of `svc`, on this thread.
    #[allow(dead_code)] // not the hedge bench
    pub(crate) fn stack<S>(self, name: &str, mut svc: S)
    where
        S: Service<u64, Response = u64>,
        S::Error: Debug,
    {
        let waker = thread_waker();
        let mut cx = Context::from_waker(&waker);
        self.calls(&mut svc, &mut cx, ALLOC_WARMUP);
        let region = stats_alloc::Region::new(GLOBAL);
        self.calls(&mut svc, &mut cx, ALLOC_CALLS);
        let d = region.change();
        self.print(name, d);
    }

    /// The same for a stack driven on `rt` (`ready().await`, `call`, `.await`, inside one
    /// `block_on` per pass: the runtime itself allocates nothing per call).
    #[allow(dead_code)] // the balance, churn and hedge benches only
    pub(crate) fn stack_on<S>(self, rt: &tokio::runtime::Runtime, name: &str, mut svc: S)
    where
        S: Service<u64, Response = u64>,
        S::Error: Debug,
    {
        calls_on(rt, &mut svc, ALLOC_WARMUP, self.check_echo);
        let region = stats_alloc::Region::new(GLOBAL);
        calls_on(rt, &mut svc, ALLOC_CALLS, self.check_echo);
        let d = region.change();
        self.print(name, d);
    }

    fn print(self, name: &str, d: stats_alloc::Stats) {
        let per = |v: usize| v as f64 / ALLOC_CALLS as f64;
        let width = self.name_width;
        println!(
            "allocations per call: {name:<width$} {:.3}  (deallocations {:.3}, reallocations {:.3}, \
             bytes allocated {:.1}) over {ALLOC_CALLS} calls",
            per(d.allocations),
            per(d.deallocations),
            per(d.reallocations),
            per(d.bytes_allocated),
        );
    }

    #[allow(dead_code)] // not the hedge bench
    #[inline(always)]
    fn calls<S>(self, svc: &mut S, cx: &mut Context<'_>, n: u64)
    where
        S: Service<u64, Response = u64>,
        S::Error: Debug,
    {
        if self.check_echo {
            checked_calls(svc, cx, n);
        } else {
            calls(svc, cx, n);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Criterion.
// ---------------------------------------------------------------------------------------------

/// The group `name` of one call per iteration, with the settings every bench's
/// `ready_call_await` group uses.
pub(crate) fn ready_call_await_group<'a>(
    c: &'a mut Criterion,
    name: &str,
) -> BenchmarkGroup<'a, WallTime> {
    let mut g = c.benchmark_group(name);
    g.warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(4))
        .sample_size(100);
    g
}

/// Times one call per iteration on `svc`: `poll_ready` + `call` + await.
#[allow(dead_code)] // not the hedge bench
pub(crate) fn bench_one<S>(g: &mut BenchmarkGroup<'_, WallTime>, name: &str, mut svc: S)
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

/// Times one call per iteration on `svc`, driven on `rt`: `ready().await` + `call` +
/// `.await`, `iters` calls in one `block_on` (criterion's `iter_custom`), timed on tokio's
/// clock (unpaused: the wall clock).
#[allow(dead_code)] // the balance, churn and hedge benches only
pub(crate) fn bench_on<S>(
    g: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    rt: &tokio::runtime::Runtime,
    mut svc: S,
) where
    S: Service<u64, Response = u64>,
    S::Error: Debug,
{
    let mut i = 0u64;
    g.bench_function(name, |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = tokio::time::Instant::now();
                for _ in 0..iters {
                    i = i.wrapping_add(1);
                    black_box(one_call_async(&mut svc, black_box(i)).await);
                }
                start.elapsed()
            })
        })
    });
}

/// A bench's `main`: the allocation report (unless built with `--cfg bulwark_bench_uncounted`),
/// then the criterion groups (`benches`, from `criterion_group!`), then criterion's summary.
pub(crate) fn main(alloc_report: fn(), benches: fn()) {
    if cfg!(bulwark_bench_uncounted) {
        println!("-- allocation counting disabled (--cfg bulwark_bench_uncounted) --");
    } else {
        alloc_report();
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
