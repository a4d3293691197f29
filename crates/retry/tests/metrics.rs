//! The `metrics` feature: retries and give-ups, read back from a debugging recorder.
#![cfg(feature = "metrics")]

use bulwark_core::backoff::{ExponentialBackoff, Jitter};
use bulwark_retry::BackoffRetryLayer;
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use metrics_util::MetricKind;
use std::time::Duration;
use tower::{Layer, Service, ServiceExt};

#[tokio::test(start_paused = true)]
async fn retries_and_give_ups_are_counted() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder.install().unwrap();

    let backend = tower::service_fn(|_: u32| async {
        Err::<u32, _>(std::io::Error::from(std::io::ErrorKind::ConnectionReset))
    });
    let mut svc = BackoffRetryLayer::builder()
        .name("store-1")
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
        .layer(backend);
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
