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

fn echo_breaker(
    window: u32,
) -> impl Service<u64, Response = u64, Error = bulwark_core::BoxError> + Clone {
    let backend =
        tower::service_fn(|x: u64| std::future::ready(Ok::<_, std::convert::Infallible>(x)));
    CircuitBreakerLayer::builder()
        .count_window(window)
        .min_calls(1)
        .build()
        .unwrap()
        .layer(backend)
}

/// Allocations made while `f` runs, the fewest over five runs. The counter is process-wide
/// and the test harness's own thread allocates now and then while a test runs; an allocation
/// on the measured path shows up in every run (10,000 calls: 10,000 allocations), noise in
/// few, so the minimum is exact for the path.
fn allocations(mut f: impl FnMut()) -> usize {
    (0..5)
        .map(|_| {
            let region = Region::new(GLOBAL);
            f();
            let change = region.change();
            change.allocations + change.reallocations
        })
        .min()
        .unwrap_or(usize::MAX)
}

#[test]
fn the_closed_success_path_allocates_nothing() {
    // The service the layer built owns its reference to the breaker: no call allocates.
    let mut svc = echo_breaker(100);
    drive(&mut svc, 1_000); // fills the window: later successes are skipped
    assert_eq!(allocations(|| drive(&mut svc, 10_000)), 0);

    // A long-lived clone takes a reference count of its own on its second call (once, so
    // clones on different threads never share one), then allocates nothing more.
    assert_eq!(
        allocations(|| {
            let mut clone = svc.clone();
            drive(&mut clone, 2);
        }),
        1,
        "the clone's own reference, once"
    );
    let mut clone = svc.clone();
    drive(&mut clone, 2);
    assert_eq!(allocations(|| drive(&mut clone, 10_000)), 0);

    // A clone made for one call (as tower's retry and axum's router do per request)
    // allocates nothing at all.
    assert_eq!(
        allocations(|| {
            for _ in 0..1_000 {
                let mut once = svc.clone();
                drive(&mut once, 1);
            }
        }),
        0
    );

    // While the window is still filling (every outcome is written), still nothing per call.
    let mut filling = echo_breaker(1_000_000);
    assert_eq!(allocations(|| drive(&mut filling, 10_000)), 0);
}

/// A recorder whose handles are plain atomics: whatever it allocates is ours, not its own.
#[cfg(feature = "metrics")]
mod counting {
    use metrics::{
        Counter, Gauge, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder, SharedString,
        Unit,
    };
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    /// Counts the values a histogram records.
    #[derive(Default)]
    pub(crate) struct Samples(pub(crate) AtomicU64);

    impl HistogramFn for Samples {
        fn record(&self, _: f64) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[derive(Default)]
    pub(crate) struct Atomics {
        pub(crate) samples: Arc<Samples>,
        pub(crate) calls: Arc<AtomicU64>,
    }

    impl Recorder for Atomics {
        fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
            let success = key.labels().any(|l| l.value() == "success");
            if key.name() == "bulwark_circuit_breaker_calls_total" && success {
                Counter::from_arc(self.calls.clone())
            } else {
                Counter::from_arc(Arc::new(AtomicU64::new(0)))
            }
        }
        fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
            Gauge::from_arc(Arc::new(AtomicU64::new(0)))
        }
        fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
            let success = key.labels().any(|l| l.value() == "success");
            if success {
                Histogram::from_arc(self.samples.clone())
            } else {
                Histogram::from_arc(Arc::new(Samples::default()))
            }
        }
    }
}

#[cfg(feature = "metrics")]
#[test]
fn with_a_recorder_installed_after_the_build_the_success_path_allocates_nothing() {
    use std::sync::atomic::Ordering;

    let mut svc = echo_breaker(100);
    drive(&mut svc, 1_000);
    let recorder = counting::Atomics::default();
    let _local = metrics::set_default_local_recorder(&recorder);
    // The first call under the recorder registers the handles (allocating); then nothing.
    drive(&mut svc, 1_000);
    assert_eq!(allocations(|| drive(&mut svc, 10_000)), 0);
    // Counted and timed, every call.
    assert_eq!(recorder.calls.load(Ordering::Relaxed), 1_000 + 5 * 10_000);
    assert_eq!(
        recorder.samples.0.load(Ordering::Relaxed),
        1_000 + 5 * 10_000
    );
}
