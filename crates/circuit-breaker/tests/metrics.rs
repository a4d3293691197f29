//! The `metrics` feature: counters, the call-duration histogram, the one-hot state gauge and
//! help text, read back from a debugging recorder, installed before or after the layer is built.
#![cfg(feature = "metrics")]

mod common;

use bulwark_circuit_breaker::CircuitBreakerLayer;
use bulwark_test_support::recorded::Recorded;
use common::{ms, secs, send, Backend, Reply};
use metrics_util::debugging::DebuggingRecorder;
use tower::Layer;

const STATES: [&str; 6] = [
    "closed",
    "open",
    "half_open",
    "forced_open",
    "disabled",
    "metrics_only",
];

/// Asserts that the state gauge of breaker `name` is 1 for `state` and 0 for the others.
fn assert_state(seen: &Recorded, name: &str, state: &str) {
    for s in STATES {
        let want = if s == state { 1.0 } else { 0.0 };
        assert_eq!(
            seen.gauge(
                "bulwark_circuit_breaker_state",
                &[("name", name), ("state", s)]
            ),
            want,
            "state={s} while {state}"
        );
    }
}

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

    let seen = Recorded::take(&snapshotter);
    let b = ("name", "store-1");
    let calls = "bulwark_circuit_breaker_calls_total";
    assert_eq!(seen.counter(calls, &[b, ("outcome", "success")]), 1);
    assert_eq!(seen.counter(calls, &[b, ("outcome", "failure")]), 4);
    assert_eq!(
        seen.counter("bulwark_circuit_breaker_not_permitted_total", &[b]),
        1
    );
    assert_eq!(
        seen.counter(
            "bulwark_circuit_breaker_transitions_total",
            &[b, ("from", "closed"), ("to", "open")]
        ),
        1
    );
    assert_state(&seen, "store-1", "open");
    seen.assert_described("bulwark_circuit_breaker_");
}

#[tokio::test(start_paused = true)]
async fn call_durations_are_recorded_in_seconds_by_outcome() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _local = metrics::set_default_local_recorder(&recorder);

    let mut svc = CircuitBreakerLayer::builder()
        .name("timed")
        .build()
        .unwrap()
        .layer(Backend::default());
    send(&mut svc, Reply::SlowOk(ms(250))).await.unwrap();
    send(&mut svc, Reply::SlowFail(ms(40))).await.unwrap_err();
    send(&mut svc, Reply::Ok).await.unwrap();

    let seen = Recorded::take(&snapshotter);
    let h = "bulwark_circuit_breaker_call_duration_seconds";
    let n = ("name", "timed");
    let ok = seen.histogram(h, &[n, ("outcome", "success")]);
    let failed = seen.histogram(h, &[n, ("outcome", "failure")]);
    assert_eq!(ok.len(), 2, "{ok:?}");
    assert!((ok[0] - 0.25).abs() < 0.001, "{ok:?}");
    assert!(ok[1] < 0.001, "{ok:?}");
    assert_eq!(failed.len(), 1);
    assert!((failed[0] - 0.04).abs() < 0.001, "{failed:?}");
    // Every metric the breaker emitted has its help text; durations are in seconds.
    seen.assert_described("bulwark_circuit_breaker_");
    for name in [
        "bulwark_circuit_breaker_calls_total",
        "bulwark_circuit_breaker_call_duration_seconds",
        "bulwark_circuit_breaker_slow_calls_total",
        "bulwark_circuit_breaker_not_permitted_total",
        "bulwark_circuit_breaker_state",
    ] {
        assert!(seen.help(name).is_some(), "{name}: {:?}", seen.names());
    }
}

#[tokio::test(start_paused = true)]
async fn the_state_gauge_is_one_hot_through_every_transition() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _local = metrics::set_default_local_recorder(&recorder);

    let mut svc = CircuitBreakerLayer::builder()
        .name("hot")
        .count_window(4)
        .min_calls(2)
        .open_for(secs(5))
        .build()
        .unwrap()
        .layer(Backend::default());
    let handle = svc.handle();
    // Closed from the start, before any call.
    assert_state(&Recorded::take(&snapshotter), "hot", "closed");

    for _ in 0..2 {
        let _ = send(&mut svc, Reply::Fail).await;
    }
    assert_state(&Recorded::take(&snapshotter), "hot", "open");

    tokio::time::advance(secs(5)).await;
    assert_eq!(handle.state(), bulwark_core::CircuitState::HalfOpen);
    assert_state(&Recorded::take(&snapshotter), "hot", "half_open");

    send(&mut svc, Reply::Ok).await.unwrap();
    assert_state(&Recorded::take(&snapshotter), "hot", "closed");

    handle.force_open();
    assert_state(&Recorded::take(&snapshotter), "hot", "forced_open");
    handle.disable();
    assert_state(&Recorded::take(&snapshotter), "hot", "disabled");
    handle.metrics_only();
    assert_state(&Recorded::take(&snapshotter), "hot", "metrics_only");
    handle.reset();
    assert_state(&Recorded::take(&snapshotter), "hot", "closed");
}

#[tokio::test(start_paused = true)]
async fn a_breaker_built_before_the_recorder_records_into_it() {
    // Built, and used, with no recorder of this test's installed.
    let mut svc = CircuitBreakerLayer::builder()
        .name("early")
        .count_window(4)
        .min_calls(4)
        .build()
        .unwrap()
        .layer(Backend::default());
    send(&mut svc, Reply::Ok).await.unwrap();
    let _ = send(&mut svc, Reply::Fail).await;

    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _local = metrics::set_default_local_recorder(&recorder);
    send(&mut svc, Reply::SlowOk(ms(100))).await.unwrap();
    let _ = send(&mut svc, Reply::Fail).await;

    let seen = Recorded::take(&snapshotter);
    let n = ("name", "early");
    let calls = "bulwark_circuit_breaker_calls_total";
    // Only what happened after the installation, and the state now (open: 2 failures of 4).
    assert_eq!(seen.counter(calls, &[n, ("outcome", "success")]), 1);
    assert_eq!(seen.counter(calls, &[n, ("outcome", "failure")]), 1);
    let took = seen.histogram(
        "bulwark_circuit_breaker_call_duration_seconds",
        &[n, ("outcome", "success")],
    );
    assert_eq!(took.len(), 1);
    assert!((took[0] - 0.1).abs() < 0.001, "{took:?}");
    assert_state(&seen, "early", "open");
    seen.assert_described("bulwark_circuit_breaker_");
}
