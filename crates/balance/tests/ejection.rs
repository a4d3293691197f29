//! Ejection on a failure share over a window, panic mode, and the serde form of the config.

use bulwark_balance::{BalanceLayer, Ejection, FailureRate, Strategy};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tower::util::BoxCloneService;
use tower::{Service, ServiceExt};

type Endpoint = BoxCloneService<(), &'static str, std::io::Error>;

/// Fails every `every`-th call (1 = always), counting calls.
fn flaky(name: &'static str, every: usize, calls: &Arc<AtomicUsize>) -> Endpoint {
    let calls = calls.clone();
    BoxCloneService::new(tower::service_fn(move |_: ()| {
        let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
        async move {
            if n % every == 0 {
                Err(std::io::Error::from(std::io::ErrorKind::ConnectionReset))
            } else {
                Ok(name)
            }
        }
    }))
}

#[tokio::test(start_paused = true)]
async fn a_failure_share_over_the_window_ejects_without_a_run_of_failures() {
    let (a, b) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut lb = BalanceLayer::builder()
        .strategy(Strategy::RoundRobin)
        .ejection(Ejection {
            consecutive_failures: 0, // off: only the rate can eject
            failure_rate: Some(FailureRate {
                rate: 0.5,
                min_requests: 10,
                window: Duration::from_secs(10),
            }),
            ..Ejection::default()
        })
        .build()
        .unwrap()
        .build(vec![flaky("a", 2, &a), flaky("b", 1_000, &b)])
        .unwrap();
    let handle = lb.handle();
    // a fails every other call: never two in a row, but half of its requests.
    for _ in 0..40 {
        let _ = lb.ready().await.unwrap().call(()).await;
    }
    let e = handle.endpoints();
    assert!(e[0].ejected_for.is_some(), "{e:?}");
    assert!(e[1].ejected_for.is_none(), "{e:?}");
}

#[tokio::test(start_paused = true)]
async fn panic_mode_balances_over_all_when_too_few_are_healthy() {
    let calls: Vec<Arc<AtomicUsize>> = (0..4).map(|_| Arc::default()).collect();
    let build = |panic: bool| {
        let mut b = BalanceLayer::builder().strategy(Strategy::RoundRobin);
        if panic {
            b = b.panic_threshold(0.5);
        }
        b.build()
            .unwrap()
            .build(
                calls
                    .iter()
                    .map(|c| flaky("e", 1_000_000, c))
                    .collect::<Vec<_>>(),
            )
            .unwrap()
    };
    // Without panic mode: 3 of 4 unhealthy, everything goes to the one left.
    let mut lb = build(false);
    for i in 1..4 {
        lb.handle().set_healthy(i, false);
    }
    for _ in 0..8 {
        lb.ready().await.unwrap().call(()).await.unwrap();
    }
    let before: Vec<usize> = calls.iter().map(|c| c.load(Ordering::SeqCst)).collect();
    assert_eq!(before, vec![8, 0, 0, 0]);
    // With panic mode at 50%: 1 of 4 available is below it, so all four share the load.
    let mut lb = build(true);
    for i in 1..4 {
        lb.handle().set_healthy(i, false);
    }
    for _ in 0..8 {
        lb.ready().await.unwrap().call(()).await.unwrap();
    }
    let after: Vec<usize> = calls.iter().map(|c| c.load(Ordering::SeqCst)).collect();
    assert_eq!(after, vec![10, 2, 2, 2]);
}

#[tokio::test(start_paused = true)]
async fn an_ejected_endpoint_that_fails_its_checks_is_counted_out_once() {
    // Ten endpoints, panic below 70% available. Two fail every call and are ejected; then
    // their health checks fail too. Eight of ten are available: no panic, and the two dead
    // ones are never sent a request.
    let calls: Vec<Arc<AtomicUsize>> = (0..10).map(|_| Arc::default()).collect();
    let endpoints: Vec<Endpoint> = calls
        .iter()
        .enumerate()
        .map(|(i, c)| flaky("e", if i < 2 { 1 } else { 1_000_000 }, c))
        .collect();
    let mut lb = BalanceLayer::builder()
        .strategy(Strategy::RoundRobin)
        .panic_threshold(0.7)
        .build()
        .unwrap()
        .build(endpoints)
        .unwrap();
    let handle = lb.handle();
    for _ in 0..50 {
        let _ = lb.ready().await.unwrap().call(()).await;
    }
    let e = handle.endpoints();
    assert!(
        e[0].ejected_for.is_some() && e[1].ejected_for.is_some(),
        "{e:?}"
    );
    handle.set_healthy(0, false);
    handle.set_healthy(1, false);
    let before: Vec<usize> = calls.iter().map(|c| c.load(Ordering::SeqCst)).collect();
    for _ in 0..40 {
        lb.ready().await.unwrap().call(()).await.unwrap();
    }
    let after: Vec<usize> = calls.iter().map(|c| c.load(Ordering::SeqCst)).collect();
    assert_eq!(
        &after[..2],
        &before[..2],
        "no request to the dead endpoints"
    );
    assert_eq!(
        after.iter().sum::<usize>() - before.iter().sum::<usize>(),
        40
    );
}

#[test]
fn bad_shares_are_typed_errors() {
    let err = BalanceLayer::builder()
        .panic_threshold(0.0)
        .build()
        .unwrap_err();
    assert_eq!(err.setting(), "panic_threshold");
    let err = BalanceLayer::builder()
        .ejection(Ejection {
            failure_rate: Some(FailureRate {
                rate: 2.0,
                min_requests: 10,
                window: Duration::from_secs(10),
            }),
            ..Ejection::default()
        })
        .build()
        .unwrap_err();
    assert_eq!(err.setting(), "ejection.failure_rate.rate");
    // Ejecting on the failure share alone: its timings are checked too.
    let err = BalanceLayer::builder()
        .ejection(Ejection {
            consecutive_failures: 0,
            base: Duration::ZERO,
            failure_rate: Some(FailureRate {
                rate: 0.5,
                min_requests: 10,
                window: Duration::from_secs(10),
            }),
            ..Ejection::default()
        })
        .build()
        .unwrap_err();
    assert_eq!(err.setting(), "ejection.base");
}

#[cfg(feature = "serde")]
#[test]
fn the_config_deserializes_with_human_durations() {
    use bulwark_balance::BalanceConfig;
    let c: BalanceConfig = toml::from_str(
        r#"
        name = "stores"
        strategy = "p2c_peak_ewma"
        wait_for_ready = "1s"
        panic_threshold = 0.3
        ejection = { consecutive_failures = 5, base = "30s", max = "5m", max_ejected = 0.5, failure_rate = { rate = 0.5, min_requests = 20, window = "10s" } }
        health = { interval = "2s", timeout = "2s", unhealthy_after = 2, healthy_after = 1, jitter = 0.1 }
        "#,
    )
    .unwrap();
    c.validate().unwrap();
    assert_eq!(c.strategy, Strategy::P2cPeakEwma);
    assert_eq!(c.ejection.max, Duration::from_secs(300));
    assert_eq!(c.health.interval, Duration::from_secs(2));
    let err = toml::from_str::<BalanceConfig>("stratgy = \"round_robin\"").unwrap_err();
    assert!(err.to_string().contains("stratgy"), "{err}");
    assert_eq!(
        toml::from_str::<BalanceConfig>("").unwrap(),
        BalanceConfig::default()
    );
}

#[tokio::test(start_paused = true)]
async fn coming_back_healthy_also_ends_an_ejection() {
    let (a, b) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut lb = BalanceLayer::builder()
        .strategy(Strategy::RoundRobin)
        .build()
        .unwrap()
        .build(vec![flaky("a", 1, &a), flaky("b", 1_000, &b)])
        .unwrap();
    let handle = lb.handle();
    for _ in 0..10 {
        let _ = lb.ready().await.unwrap().call(()).await;
    }
    assert!(
        handle.endpoints()[0].ejected_for.is_some(),
        "5 failures in a row"
    );
    // Still healthy and marked healthy again: no transition, the ejection stands.
    handle.set_healthy(0, true);
    assert!(handle.endpoints()[0].ejected_for.is_some());
    // Its checks fail, then pass: it comes back at once, long before its 30 s are up.
    handle.set_healthy(0, false);
    handle.set_healthy(0, true);
    let e = handle.endpoints();
    assert!(e[0].ejected_for.is_none() && e[0].healthy, "{e:?}");
    let before = a.load(Ordering::SeqCst);
    for _ in 0..2 {
        let _ = lb.ready().await.unwrap().call(()).await;
    }
    assert_eq!(a.load(Ordering::SeqCst), before + 1, "picked again");
}

#[tokio::test(start_paused = true)]
async fn when_none_is_healthy_no_ejection_end_is_given_as_the_time_to_retry() {
    let (a, b) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut lb = BalanceLayer::builder()
        .strategy(Strategy::RoundRobin)
        .wait_for_ready(Duration::from_millis(100))
        .build()
        .unwrap()
        .build(vec![flaky("a", 1, &a), flaky("b", 1_000, &b)])
        .unwrap();
    let handle = lb.handle();
    for _ in 0..10 {
        let _ = lb.ready().await.unwrap().call(()).await;
    }
    assert!(handle.endpoints()[0].ejected_for.is_some());
    // Only b unhealthy: a's ejection end is when something can take a request.
    handle.set_healthy(1, false);
    let err = lb.ready().await.unwrap().call(()).await.unwrap_err();
    let refused = err
        .downcast_ref::<bulwark_balance::NoEndpointReady>()
        .unwrap();
    assert!(refused.retry_after.is_some(), "{refused:?}");
    // a unhealthy too: its ejection ending would not bring it back.
    assert!(handle.set_healthy(0, false));
    let err = lb.ready().await.unwrap().call(()).await.unwrap_err();
    let refused = err
        .downcast_ref::<bulwark_balance::NoEndpointReady>()
        .unwrap();
    assert_eq!(refused.reason, bulwark_balance::Unavailable::NoneHealthy);
    assert_eq!(refused.retry_after, None, "{refused:?}");
}

#[tokio::test(start_paused = true)]
async fn a_request_waiting_is_sent_when_an_ejection_ends() {
    // The only endpoint fails five times in a row: ejected for 30 s. A request waits (up to a
    // minute) and goes to it when the ejection ends, not at the end of its wait.
    let failing = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let calls = Arc::new(AtomicUsize::new(0));
    let endpoint: Endpoint = {
        let (failing, calls) = (failing.clone(), calls.clone());
        BoxCloneService::new(tower::service_fn(move |_: ()| {
            calls.fetch_add(1, Ordering::SeqCst);
            let fail = failing.load(Ordering::SeqCst);
            async move {
                if fail {
                    Err(std::io::Error::from(std::io::ErrorKind::ConnectionReset))
                } else {
                    Ok("back")
                }
            }
        }))
    };
    let mut lb = BalanceLayer::builder()
        .strategy(Strategy::RoundRobin)
        .wait_for_ready(Duration::from_secs(60))
        .build()
        .unwrap()
        .build(vec![endpoint])
        .unwrap();
    for _ in 0..5 {
        let _ = lb.ready().await.unwrap().call(()).await;
    }
    assert!(lb.handle().endpoints()[0].ejected_for.is_some());
    failing.store(false, Ordering::SeqCst);
    let start = tokio::time::Instant::now();
    assert_eq!(lb.ready().await.unwrap().call(()).await.unwrap(), "back");
    assert_eq!(start.elapsed(), Duration::from_secs(30));
    assert_eq!(calls.load(Ordering::SeqCst), 6);
}
