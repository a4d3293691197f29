//! The `metrics` feature: each target's part of a fan-out, counted and timed, read back from a
//! debugging recorder installed after the fan-out was built.
#![cfg(feature = "metrics")]

use bulwark_fanout::{Collect, FanOutLayer, Policy};
use bulwark_test_support::recorded::Recorded;
use metrics_util::debugging::DebuggingRecorder;
use std::time::Duration;
use tower::util::BoxCloneService;
use tower::{Layer, Service, ServiceExt};

type Target = BoxCloneService<u32, u16, std::io::Error>;

/// A target that answers `status` (0: fails) after `ms` milliseconds.
fn target(status: u16, ms: u64) -> Target {
    BoxCloneService::new(tower::service_fn(move |_: u32| async move {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        if status == 0 {
            Err(std::io::Error::from(std::io::ErrorKind::ConnectionRefused))
        } else {
            Ok(status)
        }
    }))
}

#[tokio::test(start_paused = true)]
async fn per_target_durations_reach_a_recorder_installed_after_the_fan_out() {
    let layer = FanOutLayer::builder()
        .name("late")
        .target_names(["fast", "slow", "down"])
        .policy(Policy::All)
        .merge(Collect)
        .build()
        .unwrap();
    // The failing target ends last, so every part ends (`All` gives up at a failure).
    let mut svc = layer.layer(vec![target(200, 50), target(200, 250), target(0, 300)]);
    let _ = svc.ready().await.unwrap().call(1).await;

    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _local = metrics::set_default_local_recorder(&recorder);
    let r = svc.ready().await.unwrap().call(2).await;
    assert!(r.is_ok(), "{r:?}");

    let seen = Recorded::take(&snapshotter);
    let h = "bulwark_fanout_target_duration_seconds";
    let n = ("name", "late");
    for (target, outcome, secs) in [
        ("fast", "success", 0.05),
        ("slow", "success", 0.25),
        ("down", "failure", 0.3),
    ] {
        let took = seen.histogram(h, &[n, ("target", target), ("outcome", outcome)]);
        assert_eq!(took.len(), 1, "{target}: {took:?}");
        assert!((took[0] - secs).abs() < 0.001, "{target}: {took:?}");
        assert_eq!(
            seen.counter(
                "bulwark_fanout_requests_total",
                &[n, ("target", target), ("outcome", outcome)]
            ),
            1,
            "only the request after the installation: {target}"
        );
    }
    seen.assert_described("bulwark_fanout_");
    assert!(seen.help(h).is_some());
    assert!(seen.help("bulwark_fanout_requests_total").is_some());
}
