//! Behaviour of the balancer under paused time and seeded randomness.

use bulwark_balance::{BalanceLayer, Ejection, NoEndpointReady, Strategy, Unavailable};
use bulwark_circuit_breaker::CircuitBreakerLayer;
use bulwark_core::{Event, SplitMix64};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Instant;
use tower::util::BoxCloneService;
use tower::{Service, ServiceExt};

type Endpoint = BoxCloneService<(), &'static str, std::io::Error>;

fn answering(name: &'static str, delay: Duration) -> Endpoint {
    BoxCloneService::new(tower::service_fn(move |_: ()| async move {
        tokio::time::sleep(delay).await;
        Ok(name)
    }))
}

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

async fn send<S>(svc: &mut S) -> Result<&'static str, bulwark_core::BoxError>
where
    S: Service<(), Response = &'static str, Error = bulwark_core::BoxError>,
{
    svc.ready().await?.call(()).await
}

#[tokio::test(start_paused = true)]
async fn round_robin_is_exact() {
    let names = ["a", "b", "c"];
    let mut lb = BalanceLayer::builder()
        .strategy(Strategy::RoundRobin)
        .build()
        .unwrap()
        .build(
            names
                .iter()
                .map(|n| answering(n, Duration::ZERO))
                .collect::<Vec<_>>(),
        )
        .unwrap();
    let mut seen = Vec::new();
    for _ in 0..9 {
        seen.push(send(&mut lb).await.unwrap());
    }
    assert_eq!(seen, ["a", "b", "c", "a", "b", "c", "a", "b", "c"]);
}

#[tokio::test(start_paused = true)]
async fn peak_ewma_sends_most_traffic_to_the_fast_endpoint() {
    // New endpoints are counted at `default_rtt` until they answer: at 1 ms, each is tried.
    let mut lb = BalanceLayer::builder()
        .random(SplitMix64::new(11))
        .default_rtt(Duration::from_millis(1))
        .build()
        .unwrap()
        .build(vec![
            answering("fast", Duration::from_millis(2)),
            answering("slow", Duration::from_millis(20)),
        ])
        .unwrap();
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for _ in 0..1_000 {
        *counts.entry(send(&mut lb).await.unwrap()).or_default() += 1;
    }
    let fast = counts["fast"];
    assert!(fast >= 800, "{counts:?}");
    // And p2c by pending requests, with calls one at a time, splits them about evenly.
    let mut lb = BalanceLayer::builder()
        .strategy(Strategy::P2cPending)
        .random(SplitMix64::new(11))
        .build()
        .unwrap()
        .build(vec![
            answering("fast", Duration::from_millis(2)),
            answering("slow", Duration::from_millis(20)),
        ])
        .unwrap();
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for _ in 0..1_000 {
        *counts.entry(send(&mut lb).await.unwrap()).or_default() += 1;
    }
    assert!((300..=700).contains(&counts["fast"]), "{counts:?}");
}

#[tokio::test(start_paused = true)]
async fn failing_endpoints_are_ejected_within_the_cap_and_come_back_by_themselves() {
    let down: Vec<Arc<AtomicBool>> = (0..4).map(|i| Arc::new(AtomicBool::new(i < 3))).collect();
    let names = ["e0", "e1", "e2", "e3"];
    let events = Arc::new(Mutex::new(Vec::new()));
    let seen = events.clone();
    let mut lb = BalanceLayer::builder()
        .strategy(Strategy::RoundRobin)
        .ejection(Ejection {
            consecutive_failures: 2,
            base: Duration::from_secs(30),
            forget_after: Duration::from_secs(30),
            max: Duration::from_secs(300),
            max_ejected: 0.5,
            failure_rate: None,
        })
        .listener(move |e: &Event<'_>| match e {
            Event::EndpointEjected {
                endpoint, duration, ..
            } => seen
                .lock()
                .unwrap()
                .push(format!("ejected {endpoint} for {}s", duration.as_secs())),
            Event::EndpointReturned { endpoint, .. } => {
                seen.lock().unwrap().push(format!("returned {endpoint}"))
            }
            _ => {}
        })
        .build()
        .unwrap()
        .build(
            names
                .iter()
                .zip(&down)
                .map(|(n, d)| failing_while(n, d))
                .collect::<Vec<_>>(),
        )
        .unwrap();
    let handle = lb.handle();
    for _ in 0..40 {
        let _ = send(&mut lb).await;
    }
    let ejected: Vec<bool> = handle
        .endpoints()
        .iter()
        .map(|e| e.ejected_for.is_some())
        .collect();
    // Three endpoints fail, but at most half of four may be out: e0 and e1 are, e2 is not.
    assert_eq!(ejected, vec![true, true, false, false]);
    assert_eq!(
        *events.lock().unwrap(),
        vec!["ejected 0 for 30s", "ejected 1 for 30s"]
    );
    // e0 recovers; with no request at all, both ejections end after 30 s.
    down[0].store(false, Ordering::SeqCst);
    tokio::time::advance(Duration::from_secs(30)).await;
    assert!(handle.endpoints().iter().all(|e| e.ejected_for.is_none()));
    assert!(events.lock().unwrap().iter().any(|e| e == "returned 0"));
    // e1 is still failing: its second ejection lasts twice as long.
    for _ in 0..20 {
        let _ = send(&mut lb).await;
    }
    let e1 = &handle.endpoints()[1];
    assert_eq!(e1.ejected_for, Some(Duration::from_secs(60)));
}

/// An endpoint that panics if called without a readiness reservation.
#[derive(Clone)]
struct Strict {
    ready: Arc<AtomicBool>,
    reserved: bool,
    calls: Arc<AtomicUsize>,
}

impl Service<()> for Strict {
    type Response = &'static str;
    type Error = std::io::Error;
    type Future = std::future::Ready<Result<&'static str, std::io::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), std::io::Error>> {
        if self.ready.load(Ordering::SeqCst) {
            self.reserved = true;
            Poll::Ready(Ok(()))
        } else {
            let _ = cx;
            Poll::Pending
        }
    }

    fn call(&mut self, _: ()) -> Self::Future {
        assert!(
            std::mem::take(&mut self.reserved),
            "called without being polled ready"
        );
        self.calls.fetch_add(1, Ordering::SeqCst);
        std::future::ready(Ok("strict"))
    }
}

#[tokio::test(start_paused = true)]
async fn the_balancer_never_calls_an_endpoint_that_was_not_polled_ready() {
    for strategy in [
        Strategy::RoundRobin,
        Strategy::P2cPending,
        Strategy::P2cPeakEwma,
        Strategy::FirstAvailable,
    ] {
        let endpoints: Vec<Strict> = (0..5)
            .map(|i| Strict {
                ready: Arc::new(AtomicBool::new(i % 2 == 0)),
                reserved: false,
                calls: Arc::default(),
            })
            .collect();
        let mut lb = BalanceLayer::builder()
            .strategy(strategy)
            .random(SplitMix64::new(3))
            .build()
            .unwrap()
            .build(endpoints.clone())
            .unwrap();
        for _ in 0..200 {
            lb.ready().await.unwrap().call(()).await.unwrap();
        }
        let calls: Vec<usize> = endpoints
            .iter()
            .map(|e| e.calls.load(Ordering::SeqCst))
            .collect();
        assert_eq!(
            calls[1] + calls[3],
            0,
            "{strategy:?}: not-ready endpoints were called"
        );
        assert_eq!(calls.iter().sum::<usize>(), 200);
    }
}

#[tokio::test(start_paused = true)]
async fn open_breakers_in_readiness_mode_are_skipped_and_kept() {
    let down = Arc::new(AtomicBool::new(true));
    let up = Arc::new(AtomicBool::new(false));
    let breaker = CircuitBreakerLayer::builder()
        .count_window(2)
        .min_calls(1)
        .open_for(Duration::from_secs(10))
        .readiness_mode()
        .build()
        .unwrap();
    let mut lb = BalanceLayer::builder()
        .strategy(Strategy::RoundRobin)
        .build()
        .unwrap()
        .build_with(
            vec![failing_while("a", &down), failing_while("b", &up)],
            &breaker,
        )
        .unwrap();
    let _ = send(&mut lb).await; // a fails: its breaker opens
    for _ in 0..10 {
        assert_eq!(send(&mut lb).await.unwrap(), "b");
    }
    down.store(false, Ordering::SeqCst);
    tokio::time::advance(Duration::from_secs(10)).await;
    // The breaker lets a probe through, a answers, and it is back in rotation.
    let mut seen = Vec::new();
    for _ in 0..4 {
        seen.push(send(&mut lb).await.unwrap());
    }
    assert!(seen.contains(&"a"), "{seen:?}");
}

/// The software-aware load-balancing seed's session: flip health off on one endpoint, then on
/// all, then one back; the client skips the unhealthy ones, waits rather than dies when none
/// is up, and carries on as soon as one is back.
#[tokio::test(start_paused = true)]
async fn the_seed_session_of_health_flips() {
    let names = ["e0", "e1", "e2"];
    let mut lb = BalanceLayer::builder()
        .strategy(Strategy::RoundRobin)
        .wait_for_ready(Duration::from_secs(2))
        .build()
        .unwrap()
        .build(
            names
                .iter()
                .map(|n| answering(n, Duration::ZERO))
                .collect::<Vec<_>>(),
        )
        .unwrap();
    let health = lb.handle();

    health.set_healthy(1, false);
    for _ in 0..6 {
        assert_ne!(send(&mut lb).await.unwrap(), "e1");
    }

    for i in 0..3 {
        health.set_healthy(i, false);
    }
    let start = Instant::now();
    let err = send(&mut lb).await.unwrap_err();
    assert_eq!(
        start.elapsed(),
        Duration::from_secs(2),
        "it waited, then failed"
    );
    let e = err.downcast_ref::<NoEndpointReady>().unwrap();
    assert_eq!(e.reason, Unavailable::NoneHealthy);

    // A request waiting when one endpoint comes back goes through at once.
    let waiting = tokio::spawn(async move {
        let start = Instant::now();
        let answer = send(&mut lb).await.unwrap();
        (answer, start.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    health.set_healthy(2, true);
    let (answer, waited) = waiting.await.unwrap();
    assert_eq!(answer, "e2");
    assert_eq!(waited, Duration::from_millis(500));
}

#[tokio::test(start_paused = true)]
async fn with_everything_ejected_the_error_says_when_to_come_back() {
    let down = Arc::new(AtomicBool::new(true));
    let mut lb = BalanceLayer::builder()
        .ejection(Ejection {
            consecutive_failures: 1,
            max_ejected: 1.0,
            ..Ejection::default()
        })
        .wait_for_ready(Duration::from_millis(100))
        .build()
        .unwrap()
        .build(vec![failing_while("only", &down)])
        .unwrap();
    let _ = send(&mut lb).await;
    let err = send(&mut lb).await.unwrap_err();
    let e = err.downcast_ref::<NoEndpointReady>().unwrap();
    assert_eq!(e.reason, Unavailable::AllEjected);
    assert_eq!(e.retry_after, Some(Duration::from_millis(29_900)));
}

#[test]
fn bad_settings_are_typed_errors() {
    let err = BalanceLayer::builder()
        .ejection(Ejection {
            max_ejected: 1.5,
            ..Ejection::default()
        })
        .build()
        .unwrap_err();
    assert_eq!(err.setting(), "ejection.max_ejected");
    let err = BalanceLayer::builder()
        .ejection(Ejection {
            base: Duration::from_secs(60),
            max: Duration::from_secs(10),
            ..Ejection::default()
        })
        .build()
        .unwrap_err();
    assert_eq!(err.setting(), "ejection.max");
    let err = BalanceLayer::builder()
        .endpoint_names(["a"])
        .build()
        .unwrap()
        .build(vec![
            answering("a", Duration::ZERO),
            answering("b", Duration::ZERO),
        ])
        .unwrap_err();
    assert_eq!(err.setting(), "endpoint_names");
    // An empty list has nothing to balance over (a discovered set may start empty).
    let err = BalanceLayer::builder()
        .build()
        .unwrap()
        .build(Vec::<
            tower::util::BoxCloneService<(), &'static str, std::io::Error>,
        >::new())
        .unwrap_err();
    assert_eq!(err, bulwark_core::ConfigError::NoTargets);
}

#[tokio::test(start_paused = true)]
async fn the_handle_reports_each_endpoints_load() {
    let mut lb = BalanceLayer::builder()
        .strategy(Strategy::P2cPending)
        .random(SplitMix64::new(5))
        .build()
        .unwrap()
        .build(vec![
            // Both slow, so whichever endpoint the random pick chooses still holds the
            // request when the handle is read.
            answering("a", Duration::from_secs(1)),
            answering("b", Duration::from_secs(1)),
        ])
        .unwrap();
    let handle = lb.handle();
    let pending = tokio::spawn(lb.ready().await.unwrap().call(()));
    tokio::task::yield_now().await;
    let loads: Vec<f64> = handle.endpoints().iter().map(|e| e.load).collect();
    // One request in flight on one endpoint: its load is 2, the other's 1.
    let mut sorted = loads.clone();
    sorted.sort_by(f64::total_cmp);
    assert_eq!(sorted, vec![1.0, 2.0], "{loads:?}");
    pending.abort();
}

/// A balancer cloned once per request (what a retry layer above it, `oneshot` or axum do)
/// spreads the requests as one balancer would: each clone starts from its own random state
/// and round-robin position.
#[tokio::test(start_paused = true)]
async fn clones_used_once_each_spread_their_picks() {
    for strategy in [
        Strategy::RoundRobin,
        Strategy::P2cPending,
        Strategy::P2cPeakEwma,
    ] {
        let lb = BalanceLayer::builder()
            .strategy(strategy)
            .random(SplitMix64::new(5))
            .default_rtt(Duration::from_millis(1))
            .build()
            .unwrap()
            .build(vec![
                answering("a", Duration::from_millis(1)),
                answering("b", Duration::from_millis(1)),
                answering("c", Duration::from_millis(1)),
            ])
            .unwrap();
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for _ in 0..60 {
            let name = lb.clone().oneshot(()).await.unwrap();
            *seen.entry(name).or_default() += 1;
        }
        assert_eq!(
            seen.len(),
            3,
            "{strategy:?}: every endpoint picked: {seen:?}"
        );
        if strategy == Strategy::RoundRobin {
            assert!(seen.values().all(|&n| n == 20), "{seen:?}");
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_wait_its_caller_gave_up_is_not_counted_against_the_next() {
    // Nothing healthy; a caller gives up on readiness after 100 ms (a timeout above). Five
    // seconds later another request on the same balancer waits its whole second again.
    let mut lb = BalanceLayer::builder()
        .strategy(Strategy::RoundRobin)
        .wait_for_ready(Duration::from_secs(1))
        .build()
        .unwrap()
        .build(vec![answering("a", Duration::ZERO)])
        .unwrap();
    lb.handle().set_healthy(0, false);
    let given_up = tokio::time::timeout(Duration::from_millis(100), lb.ready()).await;
    assert!(given_up.is_err(), "still waiting at 100 ms");
    tokio::time::sleep(Duration::from_secs(5)).await;

    let start = Instant::now();
    let err = lb.ready().await.unwrap().call(()).await.unwrap_err();
    assert!(err.is::<NoEndpointReady>(), "{err}");
    assert_eq!(start.elapsed(), Duration::from_secs(1), "a whole wait");
}

#[tokio::test(start_paused = true)]
async fn a_wait_polled_late_by_a_busy_runtime_still_ends() {
    // Nothing healthy, a 1 s wait. Its caller is polled again only at 1.5 s (a busy runtime
    // ran its timer's wake late): the wait is over, it is not started again.
    let mut lb = BalanceLayer::builder()
        .strategy(Strategy::RoundRobin)
        .wait_for_ready(Duration::from_secs(1))
        .build()
        .unwrap()
        .build(vec![answering("a", Duration::ZERO)])
        .unwrap();
    lb.handle().set_healthy(0, false);
    let waker = futures_util::task::noop_waker();
    let mut cx = Context::from_waker(&waker);
    assert!(lb.poll_ready(&mut cx).is_pending());
    tokio::time::advance(Duration::from_millis(1500)).await;
    assert!(matches!(lb.poll_ready(&mut cx), Poll::Ready(Ok(()))));
    let err = lb.call(()).await.unwrap_err();
    assert!(err.is::<NoEndpointReady>(), "{err}");
}

#[tokio::test(start_paused = true)]
async fn p2c_by_load_sends_to_the_endpoint_with_fewer_in_flight() {
    // "slow" holds each request 10 s, "fast" answers at once. With two to choose from every
    // pick compares both: once slow has one in flight, fast (none) takes every request.
    // (Round robin would park every other request on slow.)
    let mut lb = BalanceLayer::builder()
        .strategy(Strategy::P2cPending)
        .random(SplitMix64::new(3))
        .build()
        .unwrap()
        .build(vec![
            answering("slow", Duration::from_secs(10)),
            answering("fast", Duration::ZERO),
        ])
        .unwrap();
    let handle = lb.handle();
    let mut parked = Vec::new();
    for _ in 0..10 {
        let call = lb.ready().await.unwrap().call(());
        parked.push(tokio::spawn(call));
        for _ in 0..3 {
            tokio::task::yield_now().await;
        }
    }
    assert!(
        handle.endpoints()[0].in_flight <= 1,
        "{:?}",
        handle.endpoints()
    );
    let mut answers = Vec::new();
    for call in parked {
        answers.push(call.await.unwrap().unwrap());
    }
    assert!(
        answers.iter().filter(|a| **a == "slow").count() <= 1,
        "{answers:?}"
    );
}
