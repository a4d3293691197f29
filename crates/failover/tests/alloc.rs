//! When the primary answers, a call allocates nothing (a count, not a timing).

use bulwark_failover::FailoverLayer;
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};
use std::alloc::System;
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll};
use tower::Service;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

fn echo(x: u64) -> std::future::Ready<Result<u64, std::convert::Infallible>> {
    std::future::ready(Ok(x))
}

#[test]
fn the_primary_path_allocates_nothing_with_or_without_a_timeout() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _guard = rt.enter();
    for timeout in [false, true] {
        let targets = vec![tower::service_fn(echo); 3];
        let mut builder = FailoverLayer::builder();
        if !timeout {
            builder = builder.no_attempt_timeout();
        }
        let mut fo = builder.build().unwrap().build(targets).unwrap();
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        let mut drive = |n: u64| {
            for i in 0..n {
                assert!(matches!(fo.poll_ready(&mut cx), Poll::Ready(Ok(()))));
                let fut = pin!(fo.call(i));
                match fut.poll(&mut cx) {
                    Poll::Ready(r) => assert_eq!(r.unwrap(), i),
                    Poll::Pending => panic!("the primary answers at once"),
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
                region.change().allocations
            })
            .min();
        assert_eq!(fewest, Some(0), "timeout {timeout}");
    }
}
