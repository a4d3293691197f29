//! A balancer's settings changed through its handle while requests are in flight, and the
//! layer listing the balancers it built, under paused tokio time.

use bulwark_balance::{BalanceLayer, Ejection, FailureRate, NoEndpointReady, Strategy};
use bulwark_core::Event;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tower::util::BoxCloneService;
use tower::{Service, ServiceExt};

type Endpoint = BoxCloneService<u64, &'static str, std::io::Error>;

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// Answers `name` after the request's seconds, or fails at once while `down`.
fn endpoint(name: &'static str, down: &Arc<AtomicBool>) -> Endpoint {
    let down = down.clone();
    BoxCloneService::new(tower::service_fn(move |wait: u64| {
        let fail = down.load(Ordering::SeqCst);
        async move {
            if fail {
                return Err(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
            }
            tokio::time::sleep(secs(wait)).await;
            Ok(name)
        }
    }))
}

fn layer() -> BalanceLayer {
    BalanceLayer::builder()
        .name("stores")
        .strategy(Strategy::RoundRobin)
        .ejection(Ejection {
            consecutive_failures: 5,
            base: secs(30),
            max: secs(300),
            max_ejected: 1.0,
            ..Ejection::default()
        })
        .build()
        .unwrap()
}

async fn settle() {
    for _ in 0..5 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(start_paused = true)]
async fn ejection_settings_changed_with_20_requests_in_flight_apply_to_the_next_failures() {
    let layer = layer();
    let down = [
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
    ];
    let lb = layer
        .build(vec![endpoint("a", &down[0]), endpoint("b", &down[1])])
        .unwrap();
    let handle = layer
        .handles()
        .pop()
        .expect("the layer lists what it built");
    let parked: Vec<_> = (0..20)
        .map(|_| tokio::spawn(lb.clone().oneshot(5)))
        .collect();
    settle().await;
    assert_eq!(
        handle.endpoints().iter().map(|e| e.in_flight).sum::<u32>(),
        20
    );

    let now = handle
        .update(|c| {
            c.ejection.consecutive_failures = 2;
            c.ejection.base = secs(3);
        })
        .unwrap();
    assert_eq!(now.ejection.consecutive_failures, 2);
    tokio::time::advance(secs(5)).await;
    for request in parked {
        request
            .await
            .unwrap()
            .expect("no request dropped or failed");
    }

    // Two failures in a row now eject `b` (five would have before), for the new base.
    down[1].store(true, Ordering::SeqCst);
    let mut lb = lb;
    let mut failures = 0;
    while handle.endpoints()[1].ejected_for.is_none() {
        if lb.ready().await.unwrap().call(0).await.is_err() {
            failures += 1;
        }
        assert!(failures <= 2, "ejected after the second failure");
    }
    assert_eq!(failures, 2);
    assert_eq!(handle.endpoints()[1].ejected_for, Some(secs(3)));
}

#[tokio::test(start_paused = true)]
async fn a_longer_wait_and_panic_mode_set_live() {
    let layer = layer();
    let up = Arc::new(AtomicBool::new(false));
    let lb = layer
        .build(vec![endpoint("a", &up), endpoint("b", &up)])
        .unwrap();
    let handle = lb.handle();
    handle.set_healthy(0, false);
    handle.set_healthy(1, false);

    // Nothing healthy: a request waits `wait_for_ready` (now 5 s), then fails.
    handle.update(|c| c.wait_for_ready = secs(5)).unwrap();
    let waiting = tokio::spawn(lb.clone().oneshot(0));
    tokio::time::advance(secs(4)).await;
    settle().await;
    assert!(!waiting.is_finished(), "waits the new 5 s");
    tokio::time::advance(secs(1)).await;
    let err = waiting.await.unwrap().unwrap_err();
    assert!(err.is::<NoEndpointReady>(), "{err}");

    // Panic mode turned on while a request waits: it goes at once, to an unhealthy endpoint.
    let waiting = tokio::spawn(lb.clone().oneshot(0));
    settle().await;
    handle.update(|c| c.panic_threshold = Some(0.5)).unwrap();
    settle().await;
    assert!(waiting.is_finished(), "woken by the change");
    assert!(waiting.await.unwrap().is_ok());
}

#[tokio::test(start_paused = true)]
async fn invalid_or_fixed_settings_are_refused_naming_them_and_change_nothing() {
    let events = Arc::new(Mutex::new(0));
    let seen = events.clone();
    let layer = BalanceLayer::builder()
        .name("stores")
        .listener(move |e: &Event<'_>| {
            if let Event::SettingsChanged {
                layer: "balance", ..
            } = e
            {
                *seen.lock().unwrap() += 1;
            }
        })
        .build()
        .unwrap();
    let up = Arc::new(AtomicBool::new(false));
    let lb = layer.build(vec![endpoint("a", &up)]).unwrap();
    let handle = lb.handle();
    let before = handle.config();
    let rate = Some(FailureRate {
        rate: 0.5,
        min_requests: 10,
        window: secs(10),
    });
    type Change = Box<dyn Fn(&mut bulwark_balance::BalanceConfig)>;
    let cases: Vec<(&str, Change)> = vec![
        ("ejection.max", Box::new(|c| c.ejection.max = secs(1))),
        (
            "ejection.max_ejected",
            Box::new(|c| c.ejection.max_ejected = 1.5),
        ),
        (
            "panic_threshold",
            Box::new(|c| c.panic_threshold = Some(0.0)),
        ),
        (
            "wait_for_ready",
            Box::new(|c| c.wait_for_ready = secs(86_401)),
        ),
        (
            "ejection.base",
            Box::new(|c| {
                c.panic_threshold = Some(0.5); // valid, yet not applied alone
                c.ejection.base = Duration::ZERO;
            }),
        ),
        ("strategy", Box::new(|c| c.strategy = Strategy::RoundRobin)),
        ("name", Box::new(|c| c.name = "other".into())),
        (
            "ejection.failure_rate.window",
            Box::new(move |c| c.ejection.failure_rate = rate),
        ),
        ("default_rtt", Box::new(|c| c.default_rtt = secs(1))),
        ("ewma_decay", Box::new(|c| c.ewma_decay = secs(1))),
        ("health", Box::new(|c| c.health.interval = secs(7))),
        (
            "slow_start",
            Box::new(|c| c.slow_start = Some(bulwark_balance::SlowStart::default())),
        ),
        (
            "endpoint_names",
            Box::new(|c| c.endpoint_names = vec!["renamed".into()]),
        ),
    ];
    for (setting, change) in cases {
        let err = handle.update(|c| change(c)).unwrap_err();
        assert_eq!(err.setting(), setting, "{err}");
        assert_eq!(handle.config(), before, "{setting}: nothing changed");
    }
    assert_eq!(*events.lock().unwrap(), 0);
    handle.update(|c| c.wait_for_ready = secs(2)).unwrap();
    handle.update(|c| c.wait_for_ready = secs(2)).unwrap();
    assert_eq!(*events.lock().unwrap(), 1, "one change, one event");

    drop((lb, handle));
    assert!(layer.handles().is_empty(), "a dropped balancer is gone");
}
