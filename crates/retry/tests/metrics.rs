//! The `metrics` feature: retries and give-ups, read back from a debugging recorder.
#![cfg(feature = "metrics")]

use bulwark_core::backoff::{ExponentialBackoff, Jitter};
use bulwark_retry::BackoffRetryLayer;
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use metrics_util::MetricKind;
use std::time::Duration;
use tower::{Layer, Service, ServiceExt};

/// Three attempts at most, 10 ms apart.
fn layer(name: &str) -> BackoffRetryLayer {
    BackoffRetryLayer::builder()
        .name(name)
        .max_attempts(3)
        .backoff(
            ExponentialBackoff::new(
                Duration::from_millis(10),
                1.0,
                Duration::from_millis(10),
                Jitter::None,
            )
            .unwrap(),
        )
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn retries_and_give_ups_are_counted() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder.install().unwrap();

    let backend = tower::service_fn(|_: u32| async {
        Err::<u32, _>(std::io::Error::from(std::io::ErrorKind::ConnectionReset))
    });
    let mut svc = layer("store-1").layer(backend);
    for i in 0..2 {
        let _ = svc.ready().await.unwrap().call(i).await;
    }
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
    assert_eq!(counter("bulwark_retry_retries_total", &[r]), Some(4));
    assert_eq!(
        counter(
            "bulwark_retry_gave_up_total",
            &[r, ("reason", "max_attempts")]
        ),
        Some(2)
    );
}

/// Installed after the layer was built (a local recorder, on this test's thread): the
/// request's whole duration and its attempts are recorded, with help text for every metric.
#[tokio::test(start_paused = true)]
async fn request_durations_and_attempts_reach_a_recorder_installed_after_the_layer() {
    use bulwark_test_support::recorded::Recorded;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    let calls = Arc::new(AtomicU32::new(0));
    let seen_calls = calls.clone();
    // Odd calls fail after 100 ms, even ones answer after 250 ms.
    let backend = tower::service_fn(move |_: u32| {
        let n = seen_calls.fetch_add(1, Ordering::SeqCst);
        async move {
            if n % 2 == 0 {
                tokio::time::sleep(Duration::from_millis(100)).await;
                Err(std::io::Error::from(std::io::ErrorKind::ConnectionReset))
            } else {
                tokio::time::sleep(Duration::from_millis(250)).await;
                Ok(n)
            }
        }
    });
    let mut svc = layer("late").layer(backend);
    // A request before any recorder of this test's.
    svc.ready().await.unwrap().call(0).await.unwrap();

    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _local = metrics::set_default_local_recorder(&recorder);
    svc.ready().await.unwrap().call(1).await.unwrap();

    let seen = Recorded::take(&snapshotter);
    let r = ("name", "late");
    assert_eq!(seen.counter("bulwark_retry_retries_total", &[r]), 1);
    let took = seen.histogram("bulwark_retry_request_duration_seconds", &[r]);
    // 100 ms failing, 10 ms backoff, 250 ms answering.
    assert_eq!(took.len(), 1, "{took:?}");
    assert!((took[0] - 0.36).abs() < 0.001, "{took:?}");
    assert_eq!(seen.histogram("bulwark_retry_attempts", &[r]), vec![2.0]);
    seen.assert_described("bulwark_retry_");
    for name in [
        "bulwark_retry_retries_total",
        "bulwark_retry_gave_up_total",
        "bulwark_retry_request_duration_seconds",
        "bulwark_retry_attempts",
    ] {
        assert!(seen.help(name).is_some(), "{name}: {:?}", seen.names());
    }
}
