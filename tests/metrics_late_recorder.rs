//! The process's global recorder installed AFTER the layers are built (as an application that
//! builds its clients at start-up and sets up its Prometheus exporter later does): the layers'
//! metrics, with their help text and durations, reach it. A test binary of its own, since a
//! process has one global recorder.

use std::io;
use std::time::Duration;
use tower::util::BoxCloneService;
use tower::{service_fn, Layer, Service, ServiceExt};
use tower_bulwark::balance::{BalanceLayer, Strategy};
use tower_bulwark::bulkhead::BulkheadLayer;
use tower_bulwark::circuit_breaker::CircuitBreakerLayer;
use tower_bulwark::retry::BackoffRetryLayer;

type Backend = BoxCloneService<u32, u32, io::Error>;

/// A backend answering after `ms` milliseconds.
fn backend(ms: u64) -> Backend {
    BoxCloneService::new(service_fn(move |x: u32| async move {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        Ok(x)
    }))
}

#[tokio::test(start_paused = true)]
async fn a_global_recorder_installed_after_the_layers_are_built_sees_their_metrics() {
    let mut breaker = CircuitBreakerLayer::builder()
        .name("late-breaker")
        .build()
        .unwrap()
        .layer(backend(250));
    let mut balancer = BalanceLayer::builder()
        .name("late-balancer")
        .endpoint_names(["a", "b"])
        .strategy(Strategy::RoundRobin)
        .build()
        .unwrap()
        .build(vec![backend(100), backend(200)])
        .unwrap();
    let mut retry = BackoffRetryLayer::builder()
        .name("late-retry")
        .build()
        .unwrap()
        .layer(backend(50));
    let bulkhead = BulkheadLayer::builder()
        .name("late-bulkhead")
        .max_concurrent(2)
        .build()
        .unwrap()
        .layer(backend(10));
    // Used once before the installation, too.
    breaker.ready().await.unwrap().call(0).await.unwrap();

    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new()
        .set_buckets(&[0.05, 0.1, 0.2, 0.3, 1.0])
        .unwrap()
        .build_recorder();
    let prometheus = recorder.handle();
    metrics::set_global_recorder(recorder).unwrap();

    breaker.ready().await.unwrap().call(1).await.unwrap();
    for i in 0..2 {
        balancer.ready().await.unwrap().call(i).await.unwrap();
    }
    retry.ready().await.unwrap().call(3).await.unwrap();
    bulkhead.oneshot(4).await.unwrap();

    let text = prometheus.render();
    let has = |line: &str| text.lines().any(|l| l == line);
    // One call after the installation: counted, and timed (0.25 s: in the 0.3 bucket, not 0.2).
    assert!(
        has(r#"bulwark_circuit_breaker_calls_total{name="late-breaker",outcome="success"} 1"#),
        "{text}"
    );
    assert!(
        has(
            r#"bulwark_circuit_breaker_call_duration_seconds_bucket{name="late-breaker",outcome="success",le="0.2"} 0"#
        ),
        "{text}"
    );
    assert!(
        has(
            r#"bulwark_circuit_breaker_call_duration_seconds_bucket{name="late-breaker",outcome="success",le="0.3"} 1"#
        ),
        "{text}"
    );
    assert!(
        has(r#"bulwark_circuit_breaker_state{name="late-breaker",state="closed"} 1"#),
        "{text}"
    );
    assert!(
        has(r#"bulwark_circuit_breaker_state{name="late-breaker",state="open"} 0"#),
        "{text}"
    );
    // The balancer's endpoints, each timed.
    for (endpoint, in_bucket) in [("a", "0.1"), ("b", "0.2")] {
        assert!(
            has(&format!(
                r#"bulwark_balance_request_duration_seconds_bucket{{name="late-balancer",target="{endpoint}",outcome="success",le="{in_bucket}"}} 1"#
            )),
            "{endpoint}: {text}"
        );
    }
    assert!(
        has(r#"bulwark_retry_request_duration_seconds_count{name="late-retry"} 1"#),
        "{text}"
    );
    assert!(
        has(r#"bulwark_bulkhead_in_flight{name="late-bulkhead"} 0"#),
        "{text}"
    );
    // Every family of ours has its help text.
    for family in text.lines().filter_map(|l| l.strip_prefix("# TYPE ")) {
        let name = family.split(' ').next().unwrap();
        if name.starts_with("bulwark_") {
            assert!(
                text.lines()
                    .any(|l| l.starts_with(&format!("# HELP {name} "))),
                "{name} has no help: {text}"
            );
        }
    }
}
