//! The path where the answer comes before the delay allocates nothing, whether it is ready at
//! the first poll or later (the hedge timer armed), and so does sending a hedge, for a `Clone`
//! request (a count, not a timing).

use bulwark_hedge::HedgeLayer;
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};
use std::alloc::System;
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tower::{Layer, Service};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// The count is process-wide: the tests take turns, so one's set-up is not counted in the
/// other's measure.
static TURNS: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The fewest allocations over five runs of `drive(n)`: the counter is process-wide and the
/// test harness's own thread allocates now and then; an allocation per call would show in
/// every run.
fn fewest(mut drive: impl FnMut(u64)) -> Option<u64> {
    drive(100);
    (0..5)
        .map(|_| {
            let region = Region::new(GLOBAL);
            drive(2_000);
            let change = region.change();
            (change.allocations + change.reallocations) as u64
        })
        .min()
}

#[test]
fn an_answer_ready_at_once_allocates_nothing() {
    let _turn = TURNS.lock().unwrap_or_else(|e| e.into_inner());
    let backend =
        tower::service_fn(|x: u64| std::future::ready(Ok::<_, std::convert::Infallible>(x)));
    for layer in [
        HedgeLayer::builder()
            .delay(Duration::from_millis(10))
            .build()
            .unwrap(),
        // A percentile: the latency of each answer is recorded.
        HedgeLayer::builder().build().unwrap(),
    ] {
        let mut svc = layer.layer(backend);
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        let drive = |n: u64| {
            for i in 0..n {
                assert!(matches!(svc.poll_ready(&mut cx), Poll::Ready(Ok(()))));
                let fut = pin!(svc.call(i));
                match fut.poll(&mut cx) {
                    Poll::Ready(r) => assert_eq!(r.unwrap(), i),
                    Poll::Pending => panic!("the backend answers at once"),
                }
            }
        };
        assert_eq!(fewest(drive), Some(0));
    }
}

#[test]
fn an_answer_before_the_delay_and_a_hedge_allocate_nothing() {
    let _turn = TURNS.lock().unwrap_or_else(|e| e.into_inner());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    // Each answer takes 5 ms; with a 1 ms delay every request is hedged (the budget allows
    // all of them), with a 10 ms one none is.
    static CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let backend = tower::service_fn(|x: u64| async move {
        CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(5)).await;
        Ok::<_, std::convert::Infallible>(x)
    });
    for delay in [10, 1] {
        let layer = HedgeLayer::builder()
            .delay(Duration::from_millis(delay))
            .max_extra_load(1.0)
            .min_hedges_per_sec(1_000_000)
            .build()
            .unwrap();
        let mut svc = layer.layer(backend);
        CALLS.store(0, std::sync::atomic::Ordering::Relaxed);
        let drive = |n: u64| {
            rt.block_on(async {
                for i in 0..n {
                    std::future::poll_fn(|cx| svc.poll_ready(cx)).await.unwrap();
                    assert_eq!(svc.call(i).await.unwrap(), i);
                }
            })
        };
        assert_eq!(fewest(drive), Some(0), "delay {delay} ms");
        // 100 + 5 x 2,000 requests: each hedged once with the short delay, never with the long.
        let calls = CALLS.load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(calls, if delay == 1 { 20_200 } else { 10_100 });
    }
}
