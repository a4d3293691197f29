//! The `metrics` feature: counters and the state gauge, read back from a debugging recorder.
#![cfg(feature = "metrics")]

mod common;

use bulwark_circuit_breaker::CircuitBreakerLayer;
use common::{secs, send, Backend, Reply};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use metrics_util::MetricKind;
use tower::Layer;

#[tokio::test(start_paused = true)]
async fn counters_and_the_state_gauge_follow_the_breaker() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder.install().unwrap();

    let mut svc = CircuitBreakerLayer::builder()
        .name("store-1")
        .count_window(10)
        .min_calls(5)
        .open_for(secs(10))
        .build()
        .unwrap()
        .layer(Backend::default());
    send(&mut svc, Reply::Ok).await.unwrap();
    for _ in 0..4 {
        let _ = send(&mut svc, Reply::Fail).await;
    }
    // 4 failures of 5 calls: open. The next call is refused.
    let _ = send(&mut svc, Reply::Ok).await;

    // One snapshot: the debugging recorder hands out values as it snapshots them.
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
    let counter =
        |name: &str, labels: &[(&str, &str)]| match value(MetricKind::Counter, name, labels) {
            Some(DebugValue::Counter(n)) => *n,
            other => panic!("{name} {labels:?}: {other:?}"),
        };
    let b = ("name", "store-1");
    assert_eq!(
        counter(
            "bulwark_circuit_breaker_calls_total",
            &[b, ("outcome", "success")]
        ),
        1
    );
    assert_eq!(
        counter(
            "bulwark_circuit_breaker_calls_total",
            &[b, ("outcome", "failure")]
        ),
        4
    );
    assert_eq!(
        counter("bulwark_circuit_breaker_not_permitted_total", &[b]),
        1
    );
    assert_eq!(
        counter(
            "bulwark_circuit_breaker_transitions_total",
            &[b, ("from", "closed"), ("to", "open")]
        ),
        1
    );
    match value(MetricKind::Gauge, "bulwark_circuit_breaker_state", &[b]) {
        Some(DebugValue::Gauge(g)) => assert_eq!(g.into_inner(), 2.0),
        other => panic!("state gauge: {other:?}"),
    }
}
