//! The `metrics` feature: hedges sent, won and refused, read back from a debugging recorder.
#![cfg(feature = "metrics")]

use bulwark_core::budget::ResendCap;
use bulwark_hedge::HedgeLayer;
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use metrics_util::MetricKind;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tower::{Layer, Service, ServiceExt};

#[tokio::test(start_paused = true)]
async fn hedges_wins_and_refusals_are_counted() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder.install().unwrap();

    // Each request's first attempt takes 100 ms, its hedge 10 ms.
    let calls = Arc::new(AtomicU32::new(0));
    let backend = tower::service_fn(move |x: u32| {
        let n = calls.fetch_add(1, Ordering::SeqCst);
        async move {
            let wait = if n % 2 == 0 { 100 } else { 10 };
            tokio::time::sleep(Duration::from_millis(wait)).await;
            Ok::<_, std::io::Error>(x)
        }
    });
    let cap = ResendCap::new(1);
    let mut svc = HedgeLayer::builder()
        .name("store-1")
        .delay(Duration::from_millis(20))
        .concurrency_cap(cap.clone())
        .build()
        .unwrap()
        .layer(backend);
    for i in 0..3 {
        svc.ready().await.unwrap().call(i).await.unwrap();
    }
    // The cap is full (held here): the next hedge is refused.
    let held = cap.try_acquire().unwrap();
    svc.ready().await.unwrap().call(9).await.unwrap();
    drop(held);
    // The deadline the server received (5 ms) comes before the hedge would (20 ms), and before
    // the answer (10 ms): refused for it.
    let at = tokio::time::Instant::now() + Duration::from_millis(5);
    let ready = svc.ready().await.unwrap();
    bulwark_core::deadline::call_in_scope(Some(at), || ready.call(10))
        .await
        .unwrap();

    let snapshot = snapshotter.snapshot().into_vec();
    let counter = |name: &str, labels: &[(&str, &str)]| {
        snapshot
            .iter()
            .find(|(key, _, _, _)| {
                let k = key.key();
                key.kind() == MetricKind::Counter
                    && k.name() == name
                    && labels
                        .iter()
                        .all(|(n, v)| k.labels().any(|l| l.key() == *n && l.value() == *v))
            })
            .map(|(_, _, _, v)| match v {
                DebugValue::Counter(n) => *n,
                other => panic!("{other:?}"),
            })
    };
    let r = ("name", "store-1");
    assert_eq!(counter("bulwark_hedge_hedges_total", &[r]), Some(3));
    assert_eq!(counter("bulwark_hedge_wins_total", &[r]), Some(3));
    assert_eq!(
        counter(
            "bulwark_hedge_refused_total",
            &[r, ("reason", "concurrency_cap")]
        ),
        Some(1)
    );
    assert_eq!(
        counter("bulwark_hedge_refused_total", &[r, ("reason", "budget")]),
        Some(0)
    );
    assert_eq!(
        counter("bulwark_hedge_refused_total", &[r, ("reason", "deadline")]),
        Some(1)
    );
}

/// Installed after the layer was built (a local recorder, on this test's thread): each
/// request's duration, whichever attempt answered, with help text for every metric.
#[tokio::test(start_paused = true)]
async fn request_durations_reach_a_recorder_installed_after_the_layer() {
    use bulwark_test_support::recorded::Recorded;

    // Each request's first attempt takes 100 ms, its hedge (sent at 20 ms) 10 ms.
    let calls = Arc::new(AtomicU32::new(0));
    let backend = tower::service_fn(move |x: u32| {
        let n = calls.fetch_add(1, Ordering::SeqCst);
        async move {
            let wait = if n % 2 == 0 { 100 } else { 10 };
            tokio::time::sleep(Duration::from_millis(wait)).await;
            Ok::<_, std::io::Error>(x)
        }
    });
    let mut svc = HedgeLayer::builder()
        .name("late")
        .delay(Duration::from_millis(20))
        .build()
        .unwrap()
        .layer(backend);
    svc.ready().await.unwrap().call(0).await.unwrap();

    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _local = metrics::set_default_local_recorder(&recorder);
    svc.ready().await.unwrap().call(1).await.unwrap();

    let seen = Recorded::take(&snapshotter);
    let n = ("name", "late");
    let took = seen.histogram("bulwark_hedge_request_duration_seconds", &[n]);
    assert_eq!(took.len(), 1, "{took:?}");
    assert!((took[0] - 0.03).abs() < 0.001, "{took:?}");
    assert_eq!(seen.counter("bulwark_hedge_wins_total", &[n]), 1);
    seen.assert_described("bulwark_hedge_");
    for name in [
        "bulwark_hedge_hedges_total",
        "bulwark_hedge_wins_total",
        "bulwark_hedge_refused_total",
        "bulwark_hedge_request_duration_seconds",
    ] {
        assert!(seen.help(name).is_some(), "{name}: {:?}", seen.names());
    }
}
