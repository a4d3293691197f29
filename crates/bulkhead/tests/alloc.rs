//! The admitted path allocates nothing, for a fixed bulkhead and for an adaptive limit (whose
//! windows close and move the limit along the way): a count, not a timing.

use bulwark_bulkhead::{AdaptiveLimitLayer, BulkheadLayer};
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};
use std::alloc::System;
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll};
use tower::{Layer, Service};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// The count is process-wide: the tests take turns, so one's set-up is not counted in the
/// other's measure.
static TURNS: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Drives `svc` through `n` admitted calls answered at once; the fewest allocations and
/// reallocations over five rounds of 10,000 (the counter is process-wide and the test
/// harness's own thread allocates now and then; an allocation per call would show in every
/// round).
fn fewest<S>(mut svc: S) -> Option<u64>
where
    S: Service<u64, Response = u64>,
    S::Error: std::fmt::Debug,
{
    let waker = futures_util::task::noop_waker();
    let mut cx = Context::from_waker(&waker);
    let mut drive = |n: u64| {
        for i in 0..n {
            assert!(matches!(svc.poll_ready(&mut cx), Poll::Ready(Ok(()))));
            let fut = pin!(svc.call(i));
            match fut.poll(&mut cx) {
                Poll::Ready(r) => assert_eq!(r.unwrap(), i),
                Poll::Pending => panic!("the backend answers at once"),
            }
        }
    };
    drive(100);
    (0..5)
        .map(|_| {
            let region = Region::new(GLOBAL);
            drive(10_000);
            let change = region.change();
            (change.allocations + change.reallocations) as u64
        })
        .min()
}

fn backend() -> impl Service<u64, Response = u64, Error = std::convert::Infallible> + Clone {
    tower::service_fn(|x: u64| std::future::ready(Ok(x)))
}

#[test]
fn a_fixed_bulkhead_admits_without_allocating() {
    let _turn = TURNS.lock().unwrap_or_else(|e| e.into_inner());
    let svc = BulkheadLayer::new(8).unwrap().layer(backend());
    assert_eq!(fewest(svc), Some(0));
}

#[test]
fn an_adaptive_limit_admits_and_samples_without_allocating() {
    let _turn = TURNS.lock().unwrap_or_else(|e| e.into_inner());
    // Real time, so windows close along the way (10 µs each): the controller runs too.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _entered = runtime.enter();
    for layer in [
        AdaptiveLimitLayer::builder().window(std::time::Duration::from_micros(10)),
        AdaptiveLimitLayer::builder()
            .window(std::time::Duration::from_micros(10))
            .aimd(std::time::Duration::from_millis(1)),
    ] {
        let svc = layer.build().unwrap().layer(backend());
        assert_eq!(fewest(svc), Some(0));
    }
}
