//! Per-target counters through a debugging recorder.
#![cfg(feature = "metrics")]

use bulwark_failover::FailoverLayer;
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use metrics_util::MetricKind;
use tower::util::BoxCloneService;
use tower::{Service, ServiceExt};

#[tokio::test(start_paused = true)]
async fn attempts_are_counted_per_target_and_outcome() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder.install().unwrap();

    type T = BoxCloneService<(), (), std::io::Error>;
    let down: T = BoxCloneService::new(tower::service_fn(|_: ()| async {
        Err(std::io::Error::from(std::io::ErrorKind::ConnectionRefused))
    }));
    let up: T = BoxCloneService::new(tower::service_fn(|_: ()| async { Ok(()) }));
    let mut fo = FailoverLayer::builder()
        .name("stores")
        .target_names(["store-1", "store-2"])
        .build()
        .unwrap()
        .build(vec![down, up])
        .unwrap();
    for _ in 0..3 {
        fo.ready().await.unwrap().call(()).await.unwrap();
    }
    let snapshot = snapshotter.snapshot().into_vec();
    let count = |target: &str, outcome: &str| {
        snapshot
            .iter()
            .find(|(key, _, _, _)| {
                let k = key.key();
                key.kind() == MetricKind::Counter
                    && k.name() == "bulwark_failover_attempts_total"
                    && k.labels()
                        .any(|l| l.key() == "target" && l.value() == target)
                    && k.labels()
                        .any(|l| l.key() == "outcome" && l.value() == outcome)
            })
            .map(|(_, _, _, v)| match v {
                DebugValue::Counter(n) => *n,
                other => panic!("{other:?}"),
            })
    };
    // Sticky: only the first request tried store-1.
    assert_eq!(count("store-1", "error"), Some(1));
    assert_eq!(count("store-2", "success"), Some(3));
}

/// Installed after the set was built (a local recorder, on this test's thread): each attempt's
/// duration is recorded per target and outcome, with help text.
#[tokio::test(start_paused = true)]
async fn attempt_durations_reach_a_recorder_installed_after_the_set() {
    use bulwark_test_support::recorded::Recorded;
    use std::time::Duration;

    type T = BoxCloneService<(), (), std::io::Error>;
    let down: T = BoxCloneService::new(tower::service_fn(|_: ()| async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        Err(std::io::Error::from(std::io::ErrorKind::ConnectionRefused))
    }));
    let up: T = BoxCloneService::new(tower::service_fn(|_: ()| async {
        tokio::time::sleep(Duration::from_millis(250)).await;
        Ok(())
    }));
    let mut fo = FailoverLayer::builder()
        .name("late")
        .target_names(["primary", "backup"])
        .build()
        .unwrap()
        .build(vec![down, up])
        .unwrap();

    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _local = metrics::set_default_local_recorder(&recorder);
    fo.ready().await.unwrap().call(()).await.unwrap();

    let seen = Recorded::take(&snapshotter);
    let h = "bulwark_failover_attempt_duration_seconds";
    let n = ("name", "late");
    let failed = seen.histogram(h, &[n, ("target", "primary"), ("outcome", "error")]);
    let answered = seen.histogram(h, &[n, ("target", "backup"), ("outcome", "success")]);
    assert_eq!(failed.len(), 1);
    assert!((failed[0] - 0.1).abs() < 0.001, "{failed:?}");
    assert_eq!(answered.len(), 1);
    assert!((answered[0] - 0.25).abs() < 0.001, "{answered:?}");
    assert_eq!(
        seen.counter(
            "bulwark_failover_attempts_total",
            &[n, ("target", "backup"), ("outcome", "success")]
        ),
        1
    );
    seen.assert_described("bulwark_failover_");
    assert!(seen.help(h).is_some());
    assert!(seen.help("bulwark_failover_attempts_total").is_some());
}
