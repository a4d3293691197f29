//! The `metrics` feature: the health gauge, with its help text, reaches a recorder installed
//! after the gate was built, from the next check on.
#![cfg(feature = "metrics")]

use bulwark_core::SplitMix64;
use bulwark_health::{HealthCheck, HealthGateLayer};
use bulwark_test_support::recorded::Recorded;
use metrics_util::debugging::DebuggingRecorder;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tower::{Service, ServiceExt};

#[tokio::test(start_paused = true)]
async fn the_health_gauge_reaches_a_recorder_installed_after_the_gate() {
    let up = Arc::new(AtomicBool::new(true));
    let flag = up.clone();
    let probe = tower::service_fn(move |()| {
        let healthy = flag.load(Ordering::SeqCst);
        async move {
            if healthy {
                Ok(())
            } else {
                Err(std::io::Error::other("503"))
            }
        }
    });
    let store = tower::service_fn(|x: u32| async move { Ok::<_, std::io::Error>(x) });
    let mut gate = HealthGateLayer::builder()
        .name("late")
        .check(HealthCheck {
            interval: Duration::from_secs(1),
            timeout: Duration::from_millis(500),
            unhealthy_after: 2,
            healthy_after: 2,
            jitter: 0.0,
        })
        .random(SplitMix64::new(1))
        .build()
        .unwrap()
        .build(store, probe)
        .unwrap();
    gate.ready().await.unwrap().call(1).await.unwrap();

    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _local = metrics::set_default_local_recorder(&recorder);
    // The next check publishes the gauge.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let seen = Recorded::take(&snapshotter);
    assert_eq!(
        seen.gauge("bulwark_health_healthy", &[("name", "late")]),
        1.0
    );
    seen.assert_described("bulwark_health_");

    // Two failed checks: unhealthy.
    up.store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let seen = Recorded::take(&snapshotter);
    assert_eq!(
        seen.gauge("bulwark_health_healthy", &[("name", "late")]),
        0.0
    );
}
