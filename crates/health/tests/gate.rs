//! The health gate under paused time with a scripted probe: alone, under a failover set and
//! under a balancer.

use bulwark_balance::{BalanceLayer, NoEndpointReady, Strategy};
use bulwark_core::SplitMix64;
use bulwark_failover::{FailoverLayer, Mode, NoTargetReady};
use bulwark_health::{ConfigError, HealthCheck, HealthGate, HealthGateLayer};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tower::util::BoxCloneService;
use tower::{Service, ServiceExt};

type Store = BoxCloneService<u32, &'static str, std::io::Error>;

fn store(name: &'static str) -> Store {
    BoxCloneService::new(tower::service_fn(move |_: u32| async move { Ok(name) }))
}

/// A probe answering from a flag, counting its calls.
fn probe(
    up: &Arc<AtomicBool>,
    calls: &Arc<AtomicUsize>,
) -> impl Service<(), Response = (), Error = std::io::Error, Future: Send> + Send + 'static {
    let (up, calls) = (up.clone(), calls.clone());
    tower::service_fn(move |()| {
        calls.fetch_add(1, Ordering::SeqCst);
        let healthy = up.load(Ordering::SeqCst);
        async move {
            if healthy {
                Ok(())
            } else {
                Err(std::io::Error::other("503"))
            }
        }
    })
}

/// Every second, no jitter; unhealthy after 2 failures, healthy after 2 successes.
fn layer(name: &str) -> HealthGateLayer {
    HealthGateLayer::builder()
        .name(name)
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
}

/// A gated store and its health flag (probes at 0 s, 1 s, 2 s, ...).
fn gated(name: &'static str) -> (HealthGate<Store>, Arc<AtomicBool>, Arc<AtomicUsize>) {
    let up = Arc::new(AtomicBool::new(true));
    let calls = Arc::new(AtomicUsize::new(0));
    let gate = layer(name).build(store(name), probe(&up, &calls)).unwrap();
    (gate, up, calls)
}

async fn at(start: Instant, secs_from_start: f64) {
    tokio::time::sleep_until(start + Duration::from_secs_f64(secs_from_start)).await;
}

#[tokio::test(start_paused = true)]
async fn alone_not_ready_while_unhealthy_and_woken_when_healthy_again() {
    let start = Instant::now();
    let (mut gate, up, _) = gated("store-1");
    let handle = gate.handle();
    assert_eq!(
        gate.ready().await.unwrap().call(1).await.unwrap(),
        "store-1"
    );

    at(start, 0.5).await; // the first probe ran, at build
    up.store(false, Ordering::SeqCst);
    at(start, 1.5).await; // one failed probe (at 1 s): not yet
    assert!(handle.is_healthy());
    assert_eq!(
        gate.ready().await.unwrap().call(1).await.unwrap(),
        "store-1"
    );
    at(start, 2.5).await; // two in a row (at 2 s): unhealthy
    assert!(!handle.is_healthy());

    // A caller waiting for readiness waits, and is woken when health comes back: two good
    // probes in a row, at 3 s and 4 s.
    let mut waiter = gate.clone();
    let waiting = tokio::spawn(async move {
        waiter.ready().await.unwrap();
        Instant::now()
    });
    at(start, 2.7).await;
    assert!(!waiting.is_finished());
    up.store(true, Ordering::SeqCst);
    at(start, 3.5).await;
    assert!(!waiting.is_finished(), "one good probe is not enough");
    assert_eq!(waiting.await.unwrap(), start + Duration::from_secs(4));
    assert!(handle.is_healthy());
    assert_eq!(
        gate.ready().await.unwrap().call(1).await.unwrap(),
        "store-1"
    );
}

#[tokio::test(start_paused = true)]
async fn the_checks_stop_with_the_last_clone() {
    let start = Instant::now();
    let (gate, _, calls) = gated("store-1");
    let clone = gate.clone();
    let handle = gate.handle();
    drop(gate);
    at(start, 2.5).await;
    assert_eq!(calls.load(Ordering::SeqCst), 3, "probes at 0, 1 and 2 s");
    drop(clone);
    at(start, 10.0).await;
    assert_eq!(
        calls.load(Ordering::SeqCst),
        3,
        "no probe once every gate is gone"
    );
    assert!(handle.is_healthy(), "a handle still reads the last health");
}

#[tokio::test(start_paused = true)]
async fn a_probe_slower_than_the_timeout_fails_and_the_interval_runs_from_its_end() {
    // Probes that would take 800 ms, cut at the 500 ms timeout: each fails. The next starts
    // 1 s after the previous one ended, so at 0, 1.5 and 3 s; unhealthy after the second.
    let start = Instant::now();
    let starts = Arc::new(std::sync::Mutex::new(Vec::new()));
    let slow = {
        let starts = starts.clone();
        tower::service_fn(move |()| {
            starts.lock().unwrap().push(start.elapsed());
            async {
                tokio::time::sleep(Duration::from_millis(800)).await;
                Ok::<_, std::io::Error>(())
            }
        })
    };
    let gate = layer("store-1").build(store("store-1"), slow).unwrap();
    let handle = gate.handle();
    at(start, 1.9).await;
    assert!(handle.is_healthy(), "one failed probe is not enough");
    at(start, 2.1).await;
    assert!(!handle.is_healthy(), "two timed-out probes in a row");
    at(start, 3.2).await;
    assert_eq!(
        *starts.lock().unwrap(),
        vec![
            Duration::ZERO,
            Duration::from_millis(1500),
            Duration::from_millis(3000)
        ]
    );
}

#[tokio::test]
async fn settings_are_validated_and_a_runtime_is_needed() {
    let zero = HealthGateLayer::builder()
        .check(HealthCheck {
            healthy_after: 0,
            ..HealthCheck::default()
        })
        .build()
        .unwrap_err();
    assert_eq!(
        zero,
        ConfigError::Zero {
            setting: "health.healthy_after"
        }
    );
    assert_eq!(
        zero.to_string(),
        "`health.healthy_after` must be greater than zero"
    );
    let jitter = HealthGateLayer::builder()
        .check(HealthCheck {
            jitter: 1.5,
            ..HealthCheck::default()
        })
        .build()
        .unwrap_err();
    assert_eq!(jitter.setting(), "health.jitter");

    let layer = layer("x");
    let outside = std::thread::spawn(move || {
        let calls = Arc::new(AtomicUsize::new(0));
        let up = Arc::new(AtomicBool::new(true));
        layer.build(store("x"), probe(&up, &calls)).map(|_| ())
    })
    .join()
    .unwrap();
    assert_eq!(outside, Err(ConfigError::NoRuntime));
}

#[tokio::test(start_paused = true)]
async fn under_failover_an_unhealthy_target_is_skipped_and_all_unhealthy_is_said() {
    let start = Instant::now();
    let (a, a_up, _) = gated("a");
    let (b, b_up, _) = gated("b");
    let mut fo = FailoverLayer::builder()
        .mode(Mode::Priority)
        .wait_for_ready(Duration::from_millis(500))
        .build()
        .unwrap()
        .build(vec![a, b])
        .unwrap();
    assert_eq!(fo.ready().await.unwrap().call(1).await.unwrap(), "a");

    at(start, 0.5).await;
    a_up.store(false, Ordering::SeqCst);
    at(start, 2.5).await;
    let t = Instant::now();
    assert_eq!(fo.ready().await.unwrap().call(1).await.unwrap(), "b");
    assert_eq!(t.elapsed(), Duration::ZERO, "a skipped without waiting");

    b_up.store(false, Ordering::SeqCst);
    at(start, 4.5).await;
    let err = fo.ready().await.unwrap().call(1).await.unwrap_err();
    let none = err.downcast_ref::<NoTargetReady>().expect("NoTargetReady");
    assert_eq!(none.reason, bulwark_failover::Unavailable::NoneHealthy);
    assert_eq!(none.waited, Duration::from_millis(500));

    // b comes back (good probes at 6 s and 7 s): a request waiting then is served.
    at(start, 5.5).await;
    b_up.store(true, Ordering::SeqCst);
    at(start, 6.8).await;
    let mut long = FailoverLayer::builder()
        .mode(Mode::Priority)
        .wait_for_ready(Duration::from_secs(5))
        .build()
        .unwrap()
        .build(fo.targets().to_vec())
        .unwrap();
    assert_eq!(long.ready().await.unwrap().call(1).await.unwrap(), "b");
    assert_eq!(Instant::now(), start + Duration::from_secs(7));
}

#[tokio::test(start_paused = true)]
async fn under_a_balancer_a_gate_saying_unhealthy_is_unhealthy() {
    let start = Instant::now();
    let (a, a_up, _) = gated("a");
    let (b, b_up, _) = gated("b");
    let mut lb = BalanceLayer::builder()
        .strategy(Strategy::RoundRobin)
        .endpoint_names(["a", "b"])
        .wait_for_ready(Duration::from_secs(1))
        .build()
        .unwrap()
        .build(vec![a, b])
        .unwrap();
    let handle = lb.handle();

    at(start, 0.5).await;
    a_up.store(false, Ordering::SeqCst);
    at(start, 2.5).await;
    for _ in 0..4 {
        assert_eq!(lb.ready().await.unwrap().call(1).await.unwrap(), "b");
    }
    let endpoints = handle.endpoints();
    assert!(!endpoints[0].healthy, "a's gate said unhealthy");
    assert!(endpoints[1].healthy);

    b_up.store(false, Ordering::SeqCst);
    at(start, 4.5).await;
    let t = Instant::now();
    let err = lb.ready().await.unwrap().call(1).await.unwrap_err();
    assert_eq!(t.elapsed(), Duration::from_secs(1));
    let none = err
        .downcast_ref::<NoEndpointReady>()
        .expect("NoEndpointReady");
    assert_eq!(none.reason, bulwark_balance::Unavailable::NoneHealthy);
    assert!(handle.endpoints().iter().all(|e| !e.healthy));

    // a comes back (good probes at 6 s and 7 s): a request waiting then is served by it.
    at(start, 5.5).await;
    a_up.store(true, Ordering::SeqCst);
    at(start, 6.5).await;
    let mut lb = lb.clone();
    let t = Instant::now();
    assert_eq!(lb.ready().await.unwrap().call(1).await.unwrap(), "a");
    assert_eq!(t.elapsed(), Duration::from_millis(500));
    assert!(handle.endpoints()[0].healthy);
}
