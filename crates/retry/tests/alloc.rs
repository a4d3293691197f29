//! The success path, and a call that fails, waits its backoff and is retried, allocate
//! nothing for a `Clone` request (a count, not a timing).

use bulwark_retry::BackoffRetryLayer;
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

#[test]
fn the_success_path_allocates_nothing() {
    let _turn = TURNS.lock().unwrap_or_else(|e| e.into_inner());
    let backend =
        tower::service_fn(|x: u64| std::future::ready(Ok::<_, std::convert::Infallible>(x)));
    // Defaults: three attempts, budget on.
    let mut svc = BackoffRetryLayer::builder().build().unwrap().layer(backend);
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
    // The fewest over five runs: the counter is process-wide and the test harness's own
    // thread allocates now and then; an allocation per call would show in every run.
    let fewest = (0..5)
        .map(|_| {
            let region = Region::new(GLOBAL);
            drive(10_000);
            let change = region.change();
            change.allocations + change.reallocations
        })
        .min();
    assert_eq!(fewest, Some(0));
}

/// The backend's error: a unit value, so failing allocates nothing either.
#[derive(Debug)]
struct Flaky;

impl std::fmt::Display for Flaky {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("flaky")
    }
}

impl std::error::Error for Flaky {}

#[test]
fn a_call_that_waits_allocates_nothing() {
    let _turn = TURNS.lock().unwrap_or_else(|e| e.into_inner());
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Duration;
    use tower::ServiceExt;

    // Every other attempt fails: each call fails once, waits its backoff and succeeds on the
    // second attempt, under a deadline (so the attempt runs with a limit armed too).
    static ATTEMPTS: AtomicU64 = AtomicU64::new(0);
    let backend = tower::service_fn(|x: u64| {
        let n = ATTEMPTS.fetch_add(1, Ordering::Relaxed);
        std::future::ready(if n % 2 == 0 { Err(Flaky) } else { Ok(x) })
    });
    let backoff = bulwark_core::ExponentialBackoff::new(
        Duration::from_millis(10),
        2.0,
        Duration::from_secs(1),
        bulwark_core::Jitter::Full,
    )
    .unwrap();
    // No budget: 10,000 calls that each retry once would spend any budget's share.
    let mut svc = BackoffRetryLayer::builder()
        .backoff(backoff)
        .deadline(Duration::from_secs(5))
        .no_budget()
        .random(bulwark_core::SplitMix64::new(7))
        .build()
        .unwrap()
        .layer(backend);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    let mut drive = |n: u64| {
        runtime.block_on(async {
            for i in 0..n {
                let start = tokio::time::Instant::now();
                let answer = svc.ready().await.unwrap().call(i).await.unwrap();
                assert_eq!(answer, i);
                // It did wait (paused time advances only when every task sleeps).
                assert!(start.elapsed() > Duration::ZERO);
            }
        })
    };
    // A warm-up: tokio's timer wheel allocates its levels the first time a timer is
    // registered; that is the runtime's, once, not the call's.
    drive(100);
    let fewest = (0..5)
        .map(|_| {
            let region = Region::new(GLOBAL);
            drive(1_000);
            let change = region.change();
            change.allocations + change.reallocations
        })
        .min();
    assert_eq!(fewest, Some(0));
}
