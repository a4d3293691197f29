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

use criterion::{criterion_group, Criterion};
use std::fmt::Debug;
use std::task::{Context, Poll};
use support::{bare, bench_one, bench_shared, AllocReport};
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

/// Aggregate throughput: one iteration is one call, made by whichever thread; with two
/// threads, each holds a clone of the same service, so both go through one shared breaker.
fn shared_breaker(c: &mut Criterion) {
    let mut g = support::shared_threads_group(c, "shared_breaker_threads");
    bench_shared(&mut g, "bare", bare());
    bench_shared(&mut g, "bulwark", bulwark());
    bench_shared(&mut g, "tower-resilience", resilience());
    bench_shared(&mut g, "failsafe", failsafe());
    // Control: two threads, each with its own bulwark breaker.
    support::bench_unshared_control(&mut g, "bulwark-unshared-control", bulwark);
    g.finish();
}

criterion_group!(benches, ready_call_await, shared_breaker);

fn main() {
    support::main(alloc_report, benches);
}
