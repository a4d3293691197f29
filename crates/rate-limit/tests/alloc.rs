//! The admitted path allocates nothing, and a caller that waits for its token allocates only
//! its timer, once (a count, not a timing).

use bulwark_rate_limit::RateLimitLayer;
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};
use std::alloc::System;
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tower::{Layer, Service, ServiceExt};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// The count is process-wide: the tests take turns.
static TURNS: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The fewest allocations over five runs of `run`: the test harness's own thread allocates now
/// and then; an allocation per call would show in every run.
fn fewest(mut run: impl FnMut()) -> Option<usize> {
    (0..5)
        .map(|_| {
            let region = Region::new(GLOBAL);
            run();
            let change = region.change();
            change.allocations + change.reallocations
        })
        .min()
}

#[test]
fn the_admitted_path_allocates_nothing() {
    let _turn = TURNS.lock().unwrap_or_else(|e| e.into_inner());
    let backend =
        tower::service_fn(|x: u64| std::future::ready(Ok::<_, std::convert::Infallible>(x)));
    // A rate high enough never to refuse.
    let layer = RateLimitLayer::builder()
        .per_second(1_000_000_000)
        .burst(u32::MAX)
        .build()
        .unwrap();
    let mut svc = layer.layer(backend);
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
    assert_eq!(fewest(|| drive(10_000)), Some(0));
}

#[test]
fn waiting_for_a_token_allocates_nothing_after_the_first_wait() {
    let _turn = TURNS.lock().unwrap_or_else(|e| e.into_inner());
    let backend =
        tower::service_fn(|x: u64| std::future::ready(Ok::<_, std::convert::Infallible>(x)));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    // Every call after the first waits 1 ms for its token.
    let mut svc = runtime.block_on(async {
        RateLimitLayer::builder()
            .per_second(1_000)
            .burst(1)
            .max_wait(Duration::from_millis(5))
            .build()
            .unwrap()
            .layer(backend)
    });
    let mut drive = |n: u64| {
        runtime.block_on(async {
            for i in 0..n {
                assert_eq!(svc.ready().await.unwrap().call(i).await.unwrap(), i);
            }
        })
    };
    // The warm-up boxes this clone's timer and lets tokio's timer wheel allocate its levels.
    drive(100);
    assert_eq!(fewest(|| drive(1_000)), Some(0));
}
