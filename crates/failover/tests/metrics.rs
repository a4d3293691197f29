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
