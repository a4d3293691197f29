//! How the balancer chooses when part of the fleet cannot take requests, when endpoints are
//! new, weighted or prioritized, and what a resend leaves reserved. Paused time, seeded picks.
#![cfg(feature = "http")]

use bulwark_balance::{BalanceLayer, Ejection, Endpoints, SlowStart, Strategy, Weighted};
use bulwark_core::{Event, SplitMix64};
use bulwark_retry::{BackoffRetryLayer, HttpRetryPolicy};
use http::{Request, Response};
use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::{mpsc, Semaphore};
use tower::discover::Change;
use tower::util::BoxCloneService;
use tower::{Layer, Service, ServiceExt};

type Endpoint = BoxCloneService<(), &'static str, std::io::Error>;

fn answering(name: &'static str, delay: Duration) -> Endpoint {
    BoxCloneService::new(tower::service_fn(move |_: ()| async move {
        tokio::time::sleep(delay).await;
        Ok(name)
    }))
}

/// An endpoint that is never ready (a full pool, an open breaker in readiness mode).
#[derive(Clone)]
struct NeverReady;

impl Service<()> for NeverReady {
    type Response = &'static str;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<&'static str, std::io::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Pending
    }

    fn call(&mut self, _: ()) -> Self::Future {
        Box::pin(async { Ok("never") })
    }
}

async fn send<S>(svc: &mut S) -> &'static str
where
    S: Service<(), Response = &'static str, Error = bulwark_core::BoxError>,
{
    svc.ready().await.unwrap().call(()).await.unwrap()
}

/// The demo's case: one store out, one answering in about a second, one healthy. Once the
/// balancer knows both latencies, no request goes to the slow store first, whichever pair
/// it draws (the out store is never one of the pair).
#[tokio::test(start_paused = true)]
async fn p2c_never_takes_a_slow_endpoint_because_its_rival_was_out() {
    for seed in 0..20 {
        for out_is_unhealthy in [true, false] {
            let out: Endpoint = if out_is_unhealthy {
                answering("out", Duration::ZERO)
            } else {
                BoxCloneService::new(NeverReady)
            };
            let mut lb = BalanceLayer::builder()
                .random(SplitMix64::new(seed))
                .default_rtt(Duration::from_micros(1))
                .wait_for_ready(Duration::from_secs(1))
                .build()
                .unwrap()
                .build(vec![
                    out,
                    answering("slow", Duration::from_millis(990)),
                    answering("fast", Duration::from_micros(250)),
                ])
                .unwrap();
            if out_is_unhealthy {
                lb.handle().set_healthy(0, false);
            }
            // Until both are measured (a new endpoint counts at 1 us here, so each is tried).
            let mut seen = Vec::new();
            while !(seen.contains(&"slow") && seen.contains(&"fast")) {
                assert!(seen.len() < 50, "{seen:?}");
                seen.push(send(&mut lb).await);
            }
            let mut after = HashMap::new();
            for _ in 0..10 {
                *after.entry(send(&mut lb).await).or_insert(0) += 1;
            }
            assert_eq!(
                after.get("fast"),
                Some(&10),
                "seed {seed}, out unhealthy {out_is_unhealthy}: {after:?}"
            );
        }
    }
}

/// With one endpoint that can take requests, it takes them all.
#[tokio::test(start_paused = true)]
async fn with_one_eligible_endpoint_it_takes_every_request() {
    let mut lb = BalanceLayer::builder()
        .random(SplitMix64::new(3))
        .build()
        .unwrap()
        .build(vec![
            BoxCloneService::new(NeverReady),
            answering("only", Duration::from_millis(1)),
            answering("sick", Duration::from_millis(1)),
        ])
        .unwrap();
    lb.handle().set_healthy(2, false);
    for _ in 0..20 {
        assert_eq!(send(&mut lb).await, "only");
    }
}

type HttpEndpoint = BoxCloneService<Request<String>, Response<String>, std::io::Error>;

/// An endpoint behind a concurrency limit of one whose permits the test can see.
fn limited(status: u16, delay: Duration, permits: &Arc<Semaphore>) -> HttpEndpoint {
    let inner = tower::service_fn(move |_: Request<String>| async move {
        tokio::time::sleep(delay).await;
        Ok::<_, std::io::Error>(
            Response::builder()
                .status(status)
                .body(String::new())
                .unwrap(),
        )
    });
    BoxCloneService::new(tower::limit::ConcurrencyLimit::with_semaphore(
        inner,
        permits.clone(),
    ))
}

/// A resend reserves, in `poll_ready`, an endpoint the request has not been to, and `call`
/// uses that one: while the resend is in flight on the other endpoint, the failing one's
/// only permit is free (before, a resend that switched endpoint in `call` kept the first
/// endpoint's permit for the whole request).
#[tokio::test(start_paused = true)]
async fn a_resend_leaves_nothing_reserved_on_the_endpoint_it_avoided() {
    for seed in 0..20 {
        let (a, b) = (Arc::new(Semaphore::new(1)), Arc::new(Semaphore::new(1)));
        let lb = BalanceLayer::builder()
            .random(SplitMix64::new(seed))
            .http()
            .build()
            .unwrap()
            .build(vec![
                limited(503, Duration::ZERO, &a),
                limited(200, Duration::from_secs(1), &b),
            ])
            .unwrap();
        let retry = BackoffRetryLayer::builder()
            .max_attempts(2)
            .no_budget()
            .policy(HttpRetryPolicy::new())
            .build()
            .unwrap();
        let svc = retry.layer(lb);
        let req = Request::get("/book/dune").body(String::new()).unwrap();
        let call = tokio::spawn(svc.oneshot(req));
        // Whichever it tried first, the request is now on b (a fails at once).
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(b.available_permits(), 0, "seed {seed}: b has the request");
        assert_eq!(a.available_permits(), 1, "seed {seed}: a holds nothing");
        assert_eq!(call.await.unwrap().unwrap().status(), 200);
        assert_eq!((a.available_permits(), b.available_permits()), (1, 1));
    }
}

/// A stream of changes the test feeds.
#[allow(clippy::type_complexity)]
fn channel<K: Send + 'static>() -> (
    mpsc::UnboundedSender<Change<K, Endpoint>>,
    Pin<Box<dyn futures_util::Stream<Item = Result<Change<K, Endpoint>, Infallible>> + Send>>,
) {
    let (tx, mut rx) = mpsc::unbounded_channel::<Change<K, Endpoint>>();
    let stream = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx).map(|c| c.map(Ok)));
    (tx, Box::pin(stream))
}

/// A new endpoint counts at `default_rtt` until it answers: it does not take every request
/// first (before, an endpoint with no samples scored 0 and was always picked).
#[tokio::test(start_paused = true)]
async fn a_new_endpoint_does_not_take_the_load_before_it_has_answered() {
    let (tx, changes) = channel::<&'static str>();
    let mut lb = BalanceLayer::builder()
        .random(SplitMix64::new(7))
        .build()
        .unwrap()
        .build(Endpoints::discover(changes))
        .unwrap();
    tx.send(Change::Insert(
        "a",
        answering("a", Duration::from_millis(5)),
    ))
    .unwrap();
    tx.send(Change::Insert(
        "b",
        answering("b", Duration::from_millis(5)),
    ))
    .unwrap();
    for _ in 0..20 {
        send(&mut lb).await; // both measured at 5 ms
    }
    tx.send(Change::Insert(
        "new",
        answering("new", Duration::from_millis(5)),
    ))
    .unwrap();
    let mut seen = HashMap::new();
    for _ in 0..10 {
        *seen.entry(send(&mut lb).await).or_insert(0) += 1;
    }
    assert_eq!(seen.get("new"), None, "{seen:?}");
    assert_eq!(lb.handle().endpoints().len(), 3);
}

/// Slow start: an endpoint that joins gets a share that ramps up over the window, with
/// round robin as with the others.
#[tokio::test(start_paused = true)]
async fn slow_start_ramps_a_new_endpoints_share_up() {
    let (tx, changes) = channel::<&'static str>();
    let mut lb = BalanceLayer::builder()
        .strategy(Strategy::RoundRobin)
        .random(SplitMix64::new(1))
        .slow_start(SlowStart {
            window: Duration::from_secs(10),
            aggression: 1.0,
            min_weight: 0.1,
        })
        .build()
        .unwrap()
        .build(Endpoints::discover(changes))
        .unwrap();
    for name in ["a", "b", "c"] {
        tx.send(Change::Insert(
            name,
            answering(name, Duration::from_millis(10)),
        ))
        .unwrap();
    }
    send(&mut lb).await; // the first three are the balancer's start: no ramp for them
    tx.send(Change::Insert(
        "new",
        answering("new", Duration::from_millis(10)),
    ))
    .unwrap();
    // The first second (100 requests of 10 ms): the new one's weight is at most 0.1 of full.
    let mut first = 0;
    for _ in 0..100 {
        first += usize::from(send(&mut lb).await == "new");
    }
    tokio::time::sleep(Duration::from_secs(10)).await;
    // After the window: a full quarter.
    let mut last = 0;
    for _ in 0..400 {
        last += usize::from(send(&mut lb).await == "new");
    }
    assert!(first <= 8, "ramping: {first} of 100");
    assert!((80..=120).contains(&last), "ramped up: {last} of 400");
}

/// Slow start also ramps an endpoint back up after it failed its health checks, here with
/// p2c by load (every strategy applies it).
#[tokio::test(start_paused = true)]
async fn slow_start_ramps_an_endpoint_back_from_failing_its_checks() {
    let mut lb = BalanceLayer::builder()
        .strategy(Strategy::P2cPending)
        .random(SplitMix64::new(1))
        .slow_start(SlowStart {
            window: Duration::from_secs(10),
            aggression: 1.0,
            min_weight: 0.1,
        })
        .build()
        .unwrap()
        .build(vec![
            answering("a", Duration::from_millis(10)),
            answering("b", Duration::from_millis(10)),
        ])
        .unwrap();
    let handle = lb.handle();
    handle.set_healthy(1, false);
    handle.set_healthy(1, true);
    // The first second: b is weighted at about a tenth of a (12 of 100 with this seed; 53
    // without slow start).
    let mut first = 0;
    for _ in 0..100 {
        first += usize::from(send(&mut lb).await == "b");
    }
    tokio::time::sleep(Duration::from_secs(10)).await;
    let mut last = 0;
    for _ in 0..400 {
        last += usize::from(send(&mut lb).await == "b");
    }
    assert!(first <= 15, "ramping: {first} of 100");
    assert!((120..=280).contains(&last), "ramped up: {last} of 400");
}

/// Weights from the keys: with round robin, a weight-3 endpoint gets three times the
/// requests of a weight-1 endpoint.
#[tokio::test(start_paused = true)]
async fn weights_from_the_keys_share_the_requests() {
    let (tx, changes) = channel::<Weighted<&'static str>>();
    let mut lb = BalanceLayer::builder()
        .strategy(Strategy::RoundRobin)
        .random(SplitMix64::new(9))
        .build()
        .unwrap()
        .build(Endpoints::discover(changes))
        .unwrap();
    for (name, weight) in [("light", 1), ("heavy", 3)] {
        let key = Weighted {
            key: name,
            weight,
            priority: 0,
        };
        tx.send(Change::Insert(key, answering(name, Duration::ZERO)))
            .unwrap();
    }
    let mut light = 0;
    for _ in 0..400 {
        light += usize::from(send(&mut lb).await == "light");
    }
    assert!((70..=130).contains(&light), "light got {light} of 400");
}

/// First-available keeps its order whatever the weights: a light primary still takes every
/// request while it can.
#[tokio::test(start_paused = true)]
async fn first_available_ignores_weights() {
    let (tx, changes) = channel::<Weighted<&'static str>>();
    let mut lb = BalanceLayer::builder()
        .strategy(Strategy::FirstAvailable)
        .random(SplitMix64::new(9))
        .build()
        .unwrap()
        .build(Endpoints::discover(changes))
        .unwrap();
    for (name, weight) in [("primary", 1), ("backup", 3)] {
        let key = Weighted {
            key: name,
            weight,
            priority: 0,
        };
        tx.send(Change::Insert(key, answering(name, Duration::ZERO)))
            .unwrap();
    }
    for _ in 0..100 {
        assert_eq!(send(&mut lb).await, "primary");
    }
}

/// Priorities: requests go to the most preferred priority with an endpoint that can take
/// them; the next one only while none of the first can.
#[tokio::test(start_paused = true)]
async fn a_lower_priority_is_used_only_while_the_higher_has_no_healthy_endpoint() {
    let (tx, changes) = channel::<Weighted<&'static str>>();
    let mut lb = BalanceLayer::builder()
        .random(SplitMix64::new(4))
        .build()
        .unwrap()
        .build(Endpoints::discover(changes))
        .unwrap();
    for (name, priority) in [("p0-a", 0), ("p0-b", 0), ("p1", 1)] {
        let key = Weighted {
            key: name,
            weight: 1,
            priority,
        };
        tx.send(Change::Insert(key, answering(name, Duration::ZERO)))
            .unwrap();
    }
    for _ in 0..20 {
        assert_ne!(send(&mut lb).await, "p1");
    }
    let handle = lb.handle();
    handle.set_healthy(0, false);
    for _ in 0..10 {
        assert_eq!(send(&mut lb).await, "p0-b");
    }
    handle.set_healthy(1, false);
    for _ in 0..10 {
        assert_eq!(send(&mut lb).await, "p1");
    }
    handle.set_healthy(0, true);
    for _ in 0..10 {
        assert_eq!(send(&mut lb).await, "p0-a");
    }
}

/// Ejections are forgotten while an endpoint stays in: after a long healthy spell, its next
/// ejection is as short as a first one (before, the count only grew).
#[tokio::test(start_paused = true)]
async fn ejection_history_decays_while_the_endpoint_stays_in() {
    let failing = Arc::new(AtomicBool::new(true));
    let flaky = {
        let failing = failing.clone();
        BoxCloneService::new(tower::service_fn(move |_: ()| {
            let fail = failing.load(Ordering::SeqCst);
            async move {
                if fail {
                    Err(std::io::Error::from(std::io::ErrorKind::ConnectionRefused))
                } else {
                    Ok("flaky")
                }
            }
        }))
    };
    let ejections = Arc::new(Mutex::new(Vec::new()));
    let seen = ejections.clone();
    let mut lb = BalanceLayer::builder()
        .strategy(Strategy::RoundRobin)
        .ejection(Ejection {
            consecutive_failures: 1,
            base: Duration::from_secs(30),
            forget_after: Duration::from_secs(30),
            max: Duration::from_secs(300),
            max_ejected: 0.5,
            failure_rate: None,
        })
        .listener(move |e: &Event<'_>| {
            if let Event::EndpointEjected { duration, .. } = e {
                seen.lock().unwrap().push(duration.as_secs());
            }
        })
        .build()
        .unwrap()
        .build(vec![flaky, answering("steady", Duration::ZERO)])
        .unwrap();
    // Three ejections in a row: 30 s, 60 s, 90 s.
    for _ in 0..3 {
        let ejected_before = ejections.lock().unwrap().len();
        for _ in 0..10 {
            if ejections.lock().unwrap().len() > ejected_before {
                break;
            }
            let _ = lb.ready().await.unwrap().call(()).await;
        }
        let last = *ejections.lock().unwrap().last().unwrap();
        tokio::time::sleep(Duration::from_secs(last)).await;
    }
    let first = ejections.lock().unwrap().clone();
    assert_eq!(first, [30, 60, 90]);
    // Ten minutes in without failing: all three forgotten.
    failing.store(false, Ordering::SeqCst);
    for _ in 0..20 {
        lb.ready().await.unwrap().call(()).await.unwrap();
        tokio::time::sleep(Duration::from_secs(30)).await;
    }
    failing.store(true, Ordering::SeqCst);
    for _ in 0..10 {
        if ejections.lock().unwrap().len() > 3 {
            break;
        }
        let _ = lb.ready().await.unwrap().call(()).await;
    }
    assert_eq!(
        ejections.lock().unwrap()[3],
        30,
        "{:?}",
        ejections.lock().unwrap()
    );
}

/// Peak EWMA counts how long requests have waited on an endpoint: one that has stopped
/// answering gets no second request while its first waits (before, its default latency
/// looked better than a loaded endpoint's real one, and requests kept joining the first).
#[tokio::test(start_paused = true)]
async fn an_endpoint_that_stopped_answering_gets_no_more_while_its_first_request_waits() {
    for seed in 0..10 {
        let stalled_calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let calls = stalled_calls.clone();
        let stalled: Endpoint = BoxCloneService::new(tower::service_fn(move |_: ()| {
            calls.fetch_add(1, Ordering::SeqCst);
            async {
                tokio::time::sleep(Duration::from_secs(30)).await;
                Ok("stalled")
            }
        }));
        let lb = BalanceLayer::builder()
            .random(SplitMix64::new(seed))
            .default_rtt(Duration::from_millis(30))
            .build()
            .unwrap()
            .build(vec![
                stalled,
                answering("healthy", Duration::from_millis(80)),
            ])
            .unwrap();
        // One request every 100 ms for 2 s, none waited for.
        let mut pending = Vec::new();
        for _ in 0..20 {
            pending.push(tokio::spawn(lb.clone().oneshot(())));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(
            stalled_calls.load(Ordering::SeqCst) <= 1,
            "seed {seed}: {} calls to the stalled endpoint",
            stalled_calls.load(Ordering::SeqCst)
        );
        for p in pending {
            p.abort();
        }
    }
}

/// Round robin under a retry layer that clones the whole stack per request (two balancer
/// clones per request): every endpoint gets its turn (before, clones started from the clone
/// count, and with an even number of endpoints half of them were never a start).
#[tokio::test(start_paused = true)]
async fn round_robin_goes_round_under_a_retry_cloned_per_request() {
    let counts: Vec<Arc<std::sync::atomic::AtomicUsize>> = (0..4)
        .map(|_| Arc::new(std::sync::atomic::AtomicUsize::new(0)))
        .collect();
    let endpoints: Vec<HttpEndpoint> = counts
        .iter()
        .map(|c| {
            let c = c.clone();
            BoxCloneService::new(tower::service_fn(move |_: Request<String>| {
                c.fetch_add(1, Ordering::SeqCst);
                async { Ok::<_, std::io::Error>(Response::new(String::new())) }
            }))
        })
        .collect();
    let lb = BalanceLayer::builder()
        .strategy(Strategy::RoundRobin)
        .http()
        .build()
        .unwrap()
        .build(endpoints)
        .unwrap();
    let svc = BackoffRetryLayer::builder()
        .max_attempts(2)
        .policy(HttpRetryPolicy::new())
        .build()
        .unwrap()
        .layer(lb);
    for _ in 0..40 {
        let req = Request::get("/").body(String::new()).unwrap();
        svc.clone().oneshot(req).await.unwrap();
    }
    let got: Vec<usize> = counts.iter().map(|c| c.load(Ordering::SeqCst)).collect();
    assert_eq!(got, [10, 10, 10, 10]);
}

/// The endpoints of a discovered set's first answer are the balancer's start: they do not
/// ramp up, even though they arrive one at a time.
#[tokio::test(start_paused = true)]
async fn the_first_discovered_endpoints_do_not_ramp_up() {
    let (tx, changes) = channel::<&'static str>();
    for name in ["a", "b", "c"] {
        tx.send(Change::Insert(
            name,
            answering(name, Duration::from_millis(10)),
        ))
        .unwrap();
    }
    let mut lb = BalanceLayer::builder()
        .strategy(Strategy::RoundRobin)
        .slow_start(SlowStart::default())
        .build()
        .unwrap()
        .build(Endpoints::discover(changes))
        .unwrap();
    let mut seen = HashMap::new();
    for _ in 0..30 {
        *seen.entry(send(&mut lb).await).or_insert(0) += 1;
    }
    assert_eq!((seen["a"], seen["b"], seen["c"]), (10, 10, 10));
}

/// When no endpoint can take a request, the balancer asks its discovery source to look again
/// (`Builder::refresh`): once when a request starts waiting, and when an ejection leaves
/// every endpoint out.
#[tokio::test(start_paused = true)]
async fn nothing_to_take_a_request_asks_the_discovery_source_to_look_again() {
    let asked = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = asked.clone();
    let failing = BoxCloneService::new(tower::service_fn(|_: ()| async {
        Err::<&'static str, _>(std::io::Error::from(std::io::ErrorKind::ConnectionRefused))
    }));
    let mut lb = BalanceLayer::builder()
        .ejection(Ejection {
            consecutive_failures: 1,
            max_ejected: 1.0,
            ..Ejection::default()
        })
        .refresh(move || {
            count.fetch_add(1, Ordering::SeqCst);
        })
        .build()
        .unwrap()
        .build(vec![failing])
        .unwrap();
    // Its only endpoint fails and is ejected: every endpoint out.
    assert!(lb.ready().await.unwrap().call(()).await.is_err());
    assert_eq!(asked.load(Ordering::SeqCst), 1);
    // The next request finds nothing to take it: it asks again, waits, and fails.
    let err = lb.ready().await.unwrap().call(()).await.unwrap_err();
    assert!(err.is::<bulwark_balance::NoEndpointReady>(), "{err}");
    assert_eq!(asked.load(Ordering::SeqCst), 2);
}

/// An endpoint answering every other call in 1 ms and the others in 1 s, and one answering in
/// 5 ms; every request is cut off by its caller after 50 ms. Peak EWMA counts the cut-off
/// calls' 50 ms (they took at least that long): the flaky endpoint then looks slower than the
/// steady one and is left alone for a while, instead of looking like a 1 ms endpoint (the
/// only answers it gives) and taking every request.
#[tokio::test(start_paused = true)]
async fn a_call_cut_off_by_its_caller_counts_as_slow_for_peak_ewma() {
    let flaky_calls = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let n = flaky_calls.clone();
    let flaky: Endpoint = BoxCloneService::new(tower::service_fn(move |_: ()| {
        let slow = n.fetch_add(1, Ordering::SeqCst) % 2 == 1;
        async move {
            tokio::time::sleep(Duration::from_millis(if slow { 1000 } else { 1 })).await;
            Ok("flaky")
        }
    }));
    // Both are tried at first (an endpoint not measured yet counts as 1 ms).
    let mut lb = BalanceLayer::builder()
        .strategy(Strategy::P2cPeakEwma)
        .default_rtt(Duration::from_millis(1))
        .random(SplitMix64::new(3))
        .build()
        .unwrap()
        .build(vec![flaky, answering("steady", Duration::from_millis(5))])
        .unwrap();
    let mut cut_off = 0;
    for _ in 0..100 {
        let svc = lb.ready().await.unwrap();
        let call = svc.call(());
        if tokio::time::timeout(Duration::from_millis(50), call)
            .await
            .is_err()
        {
            cut_off += 1;
        }
    }
    // Without counting them, about every other request to the flaky endpoint would be cut off
    // (it would take nearly all of them): dozens.
    assert!(cut_off <= 5, "{cut_off} requests cut off");
    assert!(flaky_calls.load(Ordering::SeqCst) < 20);
}
