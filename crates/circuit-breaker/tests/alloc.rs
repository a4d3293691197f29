//! The closed-state success path allocates nothing: counted with a counting global allocator
//! over thousands of ready + call + await cycles (a count, not a timing: deterministic).

use bulwark_circuit_breaker::CircuitBreakerLayer;
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};
use std::alloc::System;
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll};
use tower::{Layer, Service};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

fn drive<S: Service<u64, Response = u64>>(svc: &mut S, calls: u64)
where
    S::Error: std::fmt::Debug,
{
    let waker = futures_util::task::noop_waker();
    let mut cx = Context::from_waker(&waker);
    for i in 0..calls {
        assert!(matches!(svc.poll_ready(&mut cx), Poll::Ready(Ok(()))));
        let fut = pin!(svc.call(i));
        match fut.poll(&mut cx) {
            Poll::Ready(r) => assert_eq!(r.unwrap(), i),
            Poll::Pending => panic!("the backend answers at once"),
        }
    }
}

#[test]
fn the_closed_success_path_allocates_nothing() {
    let backend =
        tower::service_fn(|x: u64| std::future::ready(Ok::<_, std::convert::Infallible>(x)));
    let layer = CircuitBreakerLayer::builder()
        .count_window(100)
        .build()
        .unwrap();
    let mut svc = layer.layer(backend);
    // Fill the window first (the first 100 outcomes are written, the rest skipped).
    drive(&mut svc, 1_000);

    let region = Region::new(GLOBAL);
    drive(&mut svc, 10_000);
    let change = region.change();
    assert_eq!(change.allocations, 0, "{change:?}");
    assert_eq!(change.reallocations, 0, "{change:?}");

    // A clone (sharing the breaker) costs nothing per call either.
    let mut clone = svc.clone();
    let region = Region::new(GLOBAL);
    drive(&mut clone, 10_000);
    assert_eq!(region.change().allocations, 0);
}

#[test]
fn a_failure_free_but_not_yet_full_window_allocates_nothing_either() {
    let backend =
        tower::service_fn(|x: u64| std::future::ready(Ok::<_, std::convert::Infallible>(x)));
    let mut svc = CircuitBreakerLayer::builder()
        .count_window(1_000_000)
        .min_calls(1)
        .build()
        .unwrap()
        .layer(backend);
    // Every outcome here is written into the window (it never fills): still no allocation.
    let region = Region::new(GLOBAL);
    drive(&mut svc, 10_000);
    assert_eq!(region.change().allocations, 0);
}
