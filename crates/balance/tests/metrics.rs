//! Per-endpoint metrics, read back from a debugging recorder.
#![cfg(feature = "metrics")]

use bulwark_balance::{BalanceLayer, Ejection, Strategy};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use metrics_util::MetricKind;
use tower::util::BoxCloneService;
use tower::{Service, ServiceExt};

#[tokio::test(start_paused = true)]
async fn requests_ejections_and_health_are_reported_per_endpoint() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder.install().unwrap();

    type E = BoxCloneService<(), (), std::io::Error>;
    let ok: E = BoxCloneService::new(tower::service_fn(|_: ()| async { Ok(()) }));
    let bad: E = BoxCloneService::new(tower::service_fn(|_: ()| async {
        Err(std::io::Error::from(std::io::ErrorKind::ConnectionRefused))
    }));
    let mut lb = BalanceLayer::builder()
        .name("stores")
        .endpoint_names(["store-1", "store-2"])
        .strategy(Strategy::RoundRobin)
        .ejection(Ejection {
            consecutive_failures: 2,
            ..Ejection::default()
        })
        .build()
        .unwrap()
        .build(vec![ok, bad])
        .unwrap();
    for _ in 0..6 {
        let _ = lb.ready().await.unwrap().call(()).await;
    }
    lb.handle().set_healthy(0, false);
    let snapshot = snapshotter.snapshot().into_vec();
    let value = |kind: MetricKind, name: &str, endpoint: &str, outcome: Option<&str>| {
        snapshot
            .iter()
            .find(|(key, _, _, _)| {
                let k = key.key();
                key.kind() == kind
                    && k.name() == name
                    && k.labels()
                        .any(|l| l.key() == "target" && l.value() == endpoint)
                    && outcome
                        .is_none_or(|o| k.labels().any(|l| l.key() == "outcome" && l.value() == o))
            })
            .map(|(_, _, _, v)| match v {
                DebugValue::Counter(n) => *n as f64,
                DebugValue::Gauge(g) => g.into_inner(),
                other => panic!("{other:?}"),
            })
    };
    // Round robin: 1, 2, 1, 2 (2 ejected after its second failure), then 1, 1.
    assert_eq!(
        value(
            MetricKind::Counter,
            "bulwark_balance_requests_total",
            "store-1",
            Some("success")
        ),
        Some(4.0)
    );
    assert_eq!(
        value(
            MetricKind::Counter,
            "bulwark_balance_requests_total",
            "store-2",
            Some("failure")
        ),
        Some(2.0)
    );
    assert_eq!(
        value(
            MetricKind::Counter,
            "bulwark_balance_ejections_total",
            "store-2",
            None
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            MetricKind::Gauge,
            "bulwark_balance_endpoint_ejected",
            "store-2",
            None
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            MetricKind::Gauge,
            "bulwark_balance_endpoint_healthy",
            "store-1",
            None
        ),
        Some(0.0)
    );
}

/// Installed after the balancer was built (a local recorder, on this test's thread): each
/// request's duration is recorded per endpoint and outcome, the endpoint gauges show their
/// values, and every metric has help text.
#[tokio::test(start_paused = true)]
async fn request_durations_reach_a_recorder_installed_after_the_balancer() {
    use bulwark_test_support::recorded::Recorded;
    use std::time::Duration;

    type E = BoxCloneService<(), (), std::io::Error>;
    let slow: E = BoxCloneService::new(tower::service_fn(|_: ()| async {
        tokio::time::sleep(Duration::from_millis(250)).await;
        Ok(())
    }));
    let failing: E = BoxCloneService::new(tower::service_fn(|_: ()| async {
        tokio::time::sleep(Duration::from_millis(40)).await;
        Err(std::io::Error::from(std::io::ErrorKind::ConnectionRefused))
    }));
    let mut lb = BalanceLayer::builder()
        .name("late")
        .endpoint_names(["slow", "failing"])
        .strategy(Strategy::RoundRobin)
        .build()
        .unwrap()
        .build(vec![slow, failing])
        .unwrap();
    let _ = lb.ready().await.unwrap().call(()).await;

    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _local = metrics::set_default_local_recorder(&recorder);
    for _ in 0..3 {
        let _ = lb.ready().await.unwrap().call(()).await;
    }

    let seen = Recorded::take(&snapshotter);
    let h = "bulwark_balance_request_duration_seconds";
    let n = ("name", "late");
    let ok = seen.histogram(h, &[n, ("target", "slow"), ("outcome", "success")]);
    let failed = seen.histogram(h, &[n, ("target", "failing"), ("outcome", "failure")]);
    // Round robin: slow (before the recorder), failing, slow, failing.
    assert_eq!(ok.len(), 1, "{ok:?}");
    assert!((ok[0] - 0.25).abs() < 0.001, "{ok:?}");
    assert_eq!(failed.len(), 2, "{failed:?}");
    assert!(
        failed.iter().all(|s| (s - 0.04).abs() < 0.001),
        "{failed:?}"
    );
    assert_eq!(
        seen.counter(
            "bulwark_balance_requests_total",
            &[n, ("target", "failing"), ("outcome", "failure")]
        ),
        2
    );
    assert_eq!(
        seen.gauge("bulwark_balance_endpoint_healthy", &[n, ("target", "slow")]),
        1.0
    );
    seen.assert_described("bulwark_balance_");
    for name in [
        "bulwark_balance_requests_total",
        "bulwark_balance_request_duration_seconds",
        "bulwark_balance_ejections_total",
        "bulwark_balance_endpoint_healthy",
        "bulwark_balance_endpoint_ejected",
    ] {
        assert!(seen.help(name).is_some(), "{name}: {:?}", seen.names());
    }
}

/// An endpoint that leaves the set while ejected does not stay ejected on the dashboard.
#[tokio::test(start_paused = true)]
async fn an_endpoint_removed_while_ejected_reads_zero() {
    use bulwark_test_support::recorded::Recorded;
    use std::convert::Infallible;
    use tower::discover::Change;

    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _local = metrics::set_default_local_recorder(&recorder);
    type E = BoxCloneService<(), (), std::io::Error>;
    let ok: E = BoxCloneService::new(tower::service_fn(|_: ()| async { Ok(()) }));
    let bad: E = BoxCloneService::new(tower::service_fn(|_: ()| async {
        Err(std::io::Error::from(std::io::ErrorKind::ConnectionRefused))
    }));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Change<&'static str, E>>();
    let changes = futures_util::stream::poll_fn(move |cx| {
        rx.poll_recv(cx).map(|c| c.map(Ok::<_, Infallible>))
    });
    let mut lb = BalanceLayer::builder()
        .name("leaving")
        .strategy(Strategy::RoundRobin)
        .ejection(Ejection {
            consecutive_failures: 2,
            ..Ejection::default()
        })
        .build()
        .unwrap()
        .build(bulwark_balance::Endpoints::discover(Box::pin(changes)))
        .unwrap();
    tx.send(Change::Insert("ok", ok)).unwrap();
    tx.send(Change::Insert("bad", bad)).unwrap();
    for _ in 0..6 {
        let _ = lb.ready().await.unwrap().call(()).await;
    }
    let labels = [("name", "leaving"), ("target", "bad")];
    let seen = Recorded::take(&snapshotter);
    assert_eq!(seen.gauge("bulwark_balance_endpoint_ejected", &labels), 1.0);

    tx.send(Change::Remove("bad")).unwrap();
    let _ = lb.ready().await.unwrap().call(()).await;
    assert_eq!(lb.handle().endpoints().len(), 1, "removed");
    let seen = Recorded::take(&snapshotter);
    assert_eq!(seen.gauge("bulwark_balance_endpoint_ejected", &labels), 0.0);
    assert_eq!(seen.gauge("bulwark_balance_endpoint_healthy", &labels), 0.0);
}
