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

/// Installed after the bulkhead was built (a local recorder, on this test's thread): a queued
/// caller's wait is recorded, the gauges show their values, and every metric has help text.
#[tokio::test(start_paused = true)]
async fn queue_waits_reach_a_recorder_installed_after_the_bulkhead() {
    use bulwark_test_support::recorded::Recorded;

    let slow = tower::service_fn(|()| async {
        tokio::time::sleep(Duration::from_millis(250)).await;
        Ok::<_, BoxError>(())
    });
    let svc = BulkheadLayer::builder()
        .name("late")
        .max_concurrent(1)
        .queue(2, Duration::from_secs(1))
        .build()
        .unwrap()
        .layer(slow);

    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _local = metrics::set_default_local_recorder(&recorder);
    let holder = tokio::spawn(svc.clone().oneshot(()));
    tokio::task::yield_now().await;
    let waiter = tokio::spawn(svc.clone().oneshot(()));
    tokio::task::yield_now().await;
    holder.await.unwrap().unwrap();
    waiter.await.unwrap().unwrap();

    let seen = metrics_seen(&snapshotter);
    let n = ("name", "late");
    // The waiter waited for the holder's 250 ms; the holder did not queue.
    let waits = seen.histogram("bulwark_bulkhead_queue_wait_seconds", &[n]);
    assert_eq!(waits.len(), 1, "{waits:?}");
    assert!((waits[0] - 0.25).abs() < 0.001, "{waits:?}");
    assert_eq!(seen.gauge("bulwark_bulkhead_in_flight", &[n]), 0.0);
    assert_eq!(seen.gauge("bulwark_bulkhead_queued", &[n]), 0.0);
    assert_eq!(seen.gauge("bulwark_bulkhead_limit", &[n]), 1.0);
    seen.assert_described("bulwark_bulkhead_");
    for name in [
        "bulwark_bulkhead_rejected_total",
        "bulwark_bulkhead_queue_wait_seconds",
        "bulwark_bulkhead_in_flight",
        "bulwark_bulkhead_queued",
        "bulwark_bulkhead_limit",
        "bulwark_bulkhead_min_rtt_seconds",
    ] {
        assert!(seen.help(name).is_some(), "{name}: {:?}", seen.names());
    }

    fn metrics_seen(s: &metrics_util::debugging::Snapshotter) -> Recorded {
        Recorded::take(s)
    }
}
