//! The `metrics` feature: rejections by reason and the gauges, read back from a debugging
//! recorder.
#![cfg(feature = "metrics")]

use bulwark_bulkhead::{AdaptiveLimitLayer, BulkheadLayer};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use metrics_util::MetricKind;
use std::time::Duration;
use tower::{Layer, ServiceExt};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[tokio::test(start_paused = true)]
async fn rejections_by_reason_and_the_gauges_follow_the_bulkhead() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder.install().unwrap();

    let slow = tower::service_fn(|()| async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        Ok::<_, BoxError>(())
    });
    let svc = BulkheadLayer::builder()
        .name("store-1")
        .max_concurrent(1)
        .queue(1, Duration::from_millis(10))
        .build()
        .unwrap()
        .layer(slow);
    let holder = tokio::spawn(svc.clone().oneshot(()));
    tokio::task::yield_now().await;
    let waiter = tokio::spawn(svc.clone().oneshot(()));
    tokio::task::yield_now().await;
    let full = svc.clone().oneshot(()).await; // the queue is full
    assert!(full.is_err());
    assert!(waiter.await.unwrap().is_err()); // its wait runs out
    holder.await.unwrap().unwrap();

    // An adaptive limit reports its limit and its minimum latency.
    let adaptive = AdaptiveLimitLayer::builder()
        .name("store-2")
        .limits(2, 8, 16)
        .build()
        .unwrap()
        .layer(tower::service_fn(|()| async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            Ok::<_, BoxError>(())
        }));
    for _ in 0..20 {
        adaptive.clone().oneshot(()).await.unwrap();
    }

    let snapshot = snapshotter.snapshot().into_vec();
    let value = |kind: MetricKind, name: &str, labels: &[(&str, &str)]| {
        snapshot
            .iter()
            .find(|(key, _, _, _)| {
                let k = key.key();
                key.kind() == kind
                    && k.name() == name
                    && labels
                        .iter()
                        .all(|(n, v)| k.labels().any(|l| l.key() == *n && l.value() == *v))
            })
            .map(|(_, _, _, v)| v)
    };
    let counter = |reason: &str| match value(
        MetricKind::Counter,
        "bulwark_bulkhead_rejected_total",
        &[("name", "store-1"), ("reason", reason)],
    ) {
        Some(DebugValue::Counter(n)) => *n,
        other => panic!("{reason}: {other:?}"),
    };
    assert_eq!(counter("queue_full"), 1);
    assert_eq!(counter("queue_timeout"), 1);
    assert_eq!(counter("full"), 0);
    let gauge = |name: &str, of: &str| match value(MetricKind::Gauge, name, &[("name", of)]) {
        Some(DebugValue::Gauge(g)) => g.into_inner(),
        other => panic!("{name}: {other:?}"),
    };
    assert_eq!(gauge("bulwark_bulkhead_in_flight", "store-1"), 0.0);
    assert_eq!(gauge("bulwark_bulkhead_queued", "store-1"), 0.0);
    assert_eq!(gauge("bulwark_bulkhead_limit", "store-1"), 1.0);
    // Measured at the floor (2) for the first window, then back to the initial limit.
    assert_eq!(gauge("bulwark_bulkhead_limit", "store-2"), 8.0);
    assert_eq!(gauge("bulwark_bulkhead_min_rtt_seconds", "store-2"), 0.02);
}
