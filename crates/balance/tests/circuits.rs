//! Endpoints that are circuit breakers in readiness mode: the balancer hears why they are not
//! ready (`bulwark_core::hint`), and fails at once when every circuit is open and none probes
//! before the request would stop waiting.

use bulwark_balance::{BalanceLayer, NoEndpointReady, Strategy, Unavailable};
use bulwark_circuit_breaker::{CircuitBreaker, CircuitBreakerLayer};
use bulwark_core::{CircuitState, DefaultClassifier};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tower::util::BoxCloneService;
use tower::{Layer, Service, ServiceExt};

type Endpoint = BoxCloneService<(), &'static str, std::io::Error>;
type Guarded = CircuitBreaker<Endpoint, DefaultClassifier>;

fn failing_while(name: &'static str, down: &Arc<AtomicBool>) -> Endpoint {
    let down = down.clone();
    BoxCloneService::new(tower::service_fn(move |_: ()| {
        let fail = down.load(Ordering::SeqCst);
        async move {
            if fail {
                Err(std::io::Error::from(std::io::ErrorKind::ConnectionRefused))
            } else {
                Ok(name)
            }
        }
    }))
}

/// Three endpoints behind breakers in readiness mode, opened for 10, 20 and 30 s by one
/// failure each.
async fn three_open(down: &Arc<AtomicBool>) -> Vec<Guarded> {
    let mut endpoints = Vec::new();
    for (name, secs) in [("a", 10), ("b", 20), ("c", 30)] {
        let breaker = CircuitBreakerLayer::builder()
            .name(name)
            .count_window(1)
            .min_calls(1)
            .open_for(Duration::from_secs(secs))
            .readiness_mode()
            .build()
            .unwrap();
        let mut guarded = breaker.layer(failing_while(name, down));
        let _ = guarded.ready().await.unwrap().call(()).await;
        assert_eq!(guarded.handle().state(), CircuitState::Open);
        endpoints.push(guarded);
    }
    endpoints
}

#[tokio::test(start_paused = true)]
async fn every_circuit_open_past_the_wait_fails_at_once_with_the_soonest_probe() {
    let down = Arc::new(AtomicBool::new(true));
    for strategy in [Strategy::RoundRobin, Strategy::P2cPeakEwma] {
        let mut lb = BalanceLayer::builder()
            .strategy(strategy)
            .wait_for_ready(Duration::from_secs(5))
            .build()
            .unwrap()
            .build(three_open(&down).await)
            .unwrap();
        let start = Instant::now();
        let err = lb.ready().await.unwrap().call(()).await.unwrap_err();
        assert_eq!(start.elapsed(), Duration::ZERO, "{strategy:?}: no waiting");
        let none = err
            .downcast_ref::<NoEndpointReady>()
            .expect("NoEndpointReady");
        assert_eq!(none.reason, Unavailable::CircuitsOpen);
        assert_eq!(none.retry_after, Some(Duration::from_secs(10)));
        assert_eq!(none.waited, Duration::ZERO);
        assert_eq!(
            none.to_string(),
            "no endpoint could take the request: every endpoint's circuit is open; \
             the first returns in 10000 ms"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_probe_within_the_wait_is_waited_for() {
    let down = Arc::new(AtomicBool::new(true));
    let mut lb = BalanceLayer::builder()
        .strategy(Strategy::RoundRobin)
        .wait_for_ready(Duration::from_secs(15))
        .build()
        .unwrap()
        .build(three_open(&down).await)
        .unwrap();
    down.store(false, Ordering::SeqCst);
    let start = Instant::now();
    assert_eq!(lb.ready().await.unwrap().call(()).await.unwrap(), "a");
    assert_eq!(start.elapsed(), Duration::from_secs(10), "a's first probe");
}
