//! Targets that are circuit breakers in readiness mode: the failover set hears why they are
//! not ready (`bulwark_core::hint`), and fails at once when every circuit is open and none
//! probes before the request would stop waiting.

use bulwark_circuit_breaker::{CircuitBreaker, CircuitBreakerLayer};
use bulwark_core::{CircuitState, DefaultClassifier};
use bulwark_failover::{FailoverLayer, NoTargetReady, Unavailable};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tower::util::BoxCloneService;
use tower::{Layer, Service, ServiceExt};

type Target = BoxCloneService<u32, &'static str, std::io::Error>;
type Guarded = CircuitBreaker<Target, DefaultClassifier>;

fn failing_while(name: &'static str, down: &Arc<AtomicBool>) -> Target {
    let down = down.clone();
    BoxCloneService::new(tower::service_fn(move |_: u32| {
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

/// Three targets behind breakers in readiness mode, opened for 10, 20 and 30 s by one
/// failure each.
async fn three_open(down: &Arc<AtomicBool>) -> Vec<Guarded> {
    let mut targets = Vec::new();
    for (name, secs) in [("a", 30), ("b", 10), ("c", 20)] {
        let breaker = CircuitBreakerLayer::builder()
            .name(name)
            .count_window(1)
            .min_calls(1)
            .open_for(Duration::from_secs(secs))
            .readiness_mode()
            .build()
            .unwrap();
        let mut guarded = breaker.layer(failing_while(name, down));
        let _ = guarded.ready().await.unwrap().call(0).await;
        assert_eq!(guarded.handle().state(), CircuitState::Open);
        targets.push(guarded);
    }
    targets
}

#[tokio::test(start_paused = true)]
async fn every_circuit_open_past_the_wait_fails_at_once_with_the_soonest_probe() {
    let down = Arc::new(AtomicBool::new(true));
    let mut fo = FailoverLayer::builder()
        .wait_for_ready(Duration::from_secs(5))
        .build()
        .unwrap()
        .build(three_open(&down).await)
        .unwrap();
    let start = Instant::now();
    let err = fo.ready().await.unwrap().call(1).await.unwrap_err();
    assert_eq!(start.elapsed(), Duration::ZERO, "no waiting");
    let none = err.downcast_ref::<NoTargetReady>().expect("NoTargetReady");
    assert_eq!(none.reason, Unavailable::CircuitsOpen);
    assert_eq!(none.retry_after, Some(Duration::from_secs(10)));
    assert_eq!((none.targets, none.waited), (3, Duration::ZERO));
}

#[tokio::test(start_paused = true)]
async fn a_probe_within_the_wait_is_waited_for() {
    let down = Arc::new(AtomicBool::new(true));
    let mut fo = FailoverLayer::builder()
        .wait_for_ready(Duration::from_secs(15))
        .build()
        .unwrap()
        .build(three_open(&down).await)
        .unwrap();
    down.store(false, Ordering::SeqCst);
    let start = Instant::now();
    assert_eq!(fo.ready().await.unwrap().call(1).await.unwrap(), "b");
    assert_eq!(start.elapsed(), Duration::from_secs(10), "b's first probe");
}
