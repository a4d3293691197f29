//! The success path allocates nothing for a `Clone` request (a count, not a timing).

use bulwark_retry::BackoffRetryLayer;
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};
use std::alloc::System;
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll};
use tower::{Layer, Service};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

#[test]
fn the_success_path_allocates_nothing() {
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
