//! The adaptive limit against a scripted backend whose latency grows with the calls in flight
//! beyond its capacity, under paused time: the limit falls when latency grows with load, never
//! below the floor, and rises again when the backend recovers.

use bulwark_bulkhead::{AdaptiveLimitLayer, Algorithm, Event, Full, Handle};
use bulwark_test_support::ms;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use tower::{Layer, ServiceExt};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A backend that answers in 10 ms while at most `capacity` calls are inside it, and in
/// `10 ms * inside / capacity` beyond (a queue in front of `capacity` workers).
#[derive(Default)]
struct Backend {
    capacity: AtomicU32,
    inside: AtomicU32,
    most: AtomicU32,
}

impl Backend {
    fn service(
        self: &Arc<Self>,
    ) -> impl tower::Service<(), Response = (), Error = BoxError, Future = impl Send> + Clone + Send
    {
        let backend = self.clone();
        tower::service_fn(move |()| {
            let backend = backend.clone();
            async move {
                let inside = backend.inside.fetch_add(1, Ordering::SeqCst) + 1;
                backend.most.fetch_max(inside, Ordering::SeqCst);
                let capacity = backend.capacity.load(Ordering::SeqCst);
                let latency = 10 * u64::from(inside.max(capacity)) / u64::from(capacity);
                tokio::time::sleep(ms(latency)).await;
                backend.inside.fetch_sub(1, Ordering::SeqCst);
                Ok::<_, BoxError>(())
            }
        })
    }
}

/// What a run saw: the limits the controller moved to, and the calls served and shed.
#[derive(Default)]
struct Seen {
    limits: Mutex<Vec<(Duration, u32)>>,
    served: AtomicU32,
    shed: AtomicU32,
}

/// 50 callers in a closed loop (a shed caller backs off 5 ms) until `stop`.
fn callers<S>(svc: S, seen: Arc<Seen>, stop: Arc<AtomicBool>) -> Vec<tokio::task::JoinHandle<()>>
where
    S: tower::Service<(), Response = (), Error = BoxError> + Clone + Send + 'static,
    S::Future: Send,
{
    (0..50)
        .map(|_| {
            let (svc, seen, stop) = (svc.clone(), seen.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::SeqCst) {
                    match svc.clone().oneshot(()).await {
                        Ok(()) => {
                            seen.served.fetch_add(1, Ordering::SeqCst);
                        }
                        Err(e) => {
                            assert!(e.is::<Full>(), "{e}");
                            seen.shed.fetch_add(1, Ordering::SeqCst);
                            tokio::time::sleep(ms(5)).await;
                        }
                    }
                }
            })
        })
        .collect()
}

/// The lowest and highest limit moved to between `from` and `to` (from the start).
fn range(seen: &Seen, from: Duration, to: Duration) -> (u32, u32) {
    let limits = seen.limits.lock().unwrap();
    let within = limits
        .iter()
        .filter(|(at, _)| (from..to).contains(at))
        .map(|(_, l)| *l);
    (within.clone().min().unwrap_or(0), within.max().unwrap_or(0))
}

/// Runs 50 callers through `layer` against a backend of capacity 10 for 10 s, of capacity 1
/// for 10 s (overloaded), then of capacity 100 (recovered) for 10 s; returns what it saw and
/// the limit at the end of each phase.
async fn three_phases(builder: bulwark_bulkhead::AdaptiveBuilder) -> (Arc<Seen>, [u32; 3], Handle) {
    let seen = Arc::new(Seen::default());
    let start = Instant::now();
    let log = seen.clone();
    let layer = builder
        .name("store")
        .listener(move |e: &Event<'_>| {
            if let Event::LimitChanged { to, .. } = e {
                log.limits.lock().unwrap().push((start.elapsed(), *to));
            }
        })
        .build()
        .unwrap();
    let backend = Arc::new(Backend::default());
    backend.capacity.store(10, Ordering::SeqCst);
    let svc = layer.layer(backend.service());
    let handle = svc.handle();
    let stop = Arc::new(AtomicBool::new(false));
    let tasks = callers(svc, seen.clone(), stop.clone());
    let mut at_end = [0; 3];
    for (phase, capacity) in [1, 100].into_iter().enumerate() {
        tokio::time::sleep_until(start + Duration::from_secs(10 * (phase as u64 + 1))).await;
        at_end[phase] = handle.max_concurrent();
        backend.capacity.store(capacity, Ordering::SeqCst);
    }
    tokio::time::sleep_until(start + Duration::from_secs(30)).await;
    at_end[2] = handle.max_concurrent();
    stop.store(true, Ordering::SeqCst);
    for t in tasks {
        t.await.unwrap();
    }
    let most_ever = seen
        .limits
        .lock()
        .unwrap()
        .iter()
        .map(|l| l.1)
        .max()
        .unwrap();
    assert!(backend.most.load(Ordering::SeqCst) <= most_ever);
    assert_eq!(handle.in_flight(), 0);
    (seen, at_end, handle)
}

#[tokio::test(start_paused = true)]
async fn gradient_the_limit_follows_the_backend_down_to_the_floor_and_back_up() {
    let (seen, at_end, handle) = three_phases(
        AdaptiveLimitLayer::builder()
            .limits(4, 40, 200)
            .algorithm(Algorithm::gradient()),
    )
    .await;
    // Capacity 10 at 10 ms: 50 callers would make it 50 ms; the limit settles near the
    // tolerance (1.25x the latency without load: 12.5 calls) plus its headroom.
    assert!((12..=25).contains(&at_end[0]), "{at_end:?}");
    let (low, high) = range(&seen, Duration::from_secs(2), Duration::from_secs(10));
    assert!(low >= 10 && high <= 30, "steady: {low}..{high}");
    // Capacity 1: down to the floor, never below it. After 5 windows there, the latency
    // without load is measured again (40 ms at the floor's 4 calls), so a backend that stays
    // this slow is served at its own level rather than held at the floor.
    let (low, _) = range(&seen, Duration::ZERO, Duration::from_secs(30));
    assert_eq!(low, 4, "never below the floor");
    let (low, _) = range(&seen, Duration::from_secs(10), Duration::from_secs(14));
    assert_eq!(low, 4, "the floor, reached");
    assert!((4..=10).contains(&at_end[1]), "{at_end:?}");
    // Recovered: back up within 3 s, with 50 callers to serve.
    let (_, high) = range(&seen, Duration::from_secs(20), Duration::from_secs(23));
    assert!(high >= 40, "recovered to {high} within 3 s");
    assert!(at_end[2] >= 40, "{at_end:?}");
    assert!(seen.shed.load(Ordering::SeqCst) > 0);
    assert!(seen.served.load(Ordering::SeqCst) > 0);
    let min_rtt = handle.min_rtt().expect("measured");
    assert_eq!(min_rtt, ms(10), "measured without load");
}

#[tokio::test(start_paused = true)]
async fn aimd_the_limit_follows_the_backend_down_to_the_floor_and_back_up() {
    let (seen, at_end, handle) = three_phases(
        AdaptiveLimitLayer::builder()
            .limits(4, 40, 200)
            .aimd(ms(25)),
    )
    .await;
    // Capacity 10 at 10 ms: a call is slower than 25 ms with more than 25 inside.
    assert!((20..=27).contains(&at_end[0]), "{at_end:?}");
    let (low, _) = range(&seen, Duration::ZERO, Duration::from_secs(30));
    assert_eq!(low, 4, "never below the floor");
    assert_eq!(at_end[1], 4);
    let (_, high) = range(&seen, Duration::from_secs(20), Duration::from_secs(23));
    assert!(high >= 20, "recovered to {high} within 3 s");
    assert!(at_end[2] > 40, "{at_end:?}");
    assert_eq!(handle.min_rtt(), None, "AIMD measures no minimum");
}

#[tokio::test(start_paused = true)]
async fn a_limit_set_by_hand_must_stay_within_the_bounds() {
    let svc = AdaptiveLimitLayer::builder()
        .limits(2, 10, 20)
        .build()
        .unwrap()
        .layer(tower::service_fn(|()| async { Ok::<_, BoxError>(()) }));
    let handle = svc.handle();
    assert!(handle.is_adaptive());
    // The gradient controller measures first, at the floor.
    assert_eq!(handle.max_concurrent(), 2);
    handle.set_max_concurrent(15).unwrap();
    assert_eq!(handle.max_concurrent(), 15);
    let err = handle.set_max_concurrent(21).unwrap_err();
    assert_eq!(err.setting(), "max_concurrent");
    assert!(err.to_string().contains("min_limit"), "{err}");
}

#[tokio::test(start_paused = true)]
async fn callers_over_an_adaptive_limit_can_wait_briefly_in_the_queue() {
    let backend = Arc::new(Backend::default());
    backend.capacity.store(100, Ordering::SeqCst);
    let svc = AdaptiveLimitLayer::builder()
        .limits(2, 2, 4)
        .aimd(ms(500))
        .queue(2, ms(15))
        .build()
        .unwrap()
        .layer(backend.service());
    let handle = svc.handle();
    let start = Instant::now();
    let calls: Vec<_> = (0..5)
        .map(|_| tokio::spawn(svc.clone().oneshot(())))
        .collect();
    tokio::task::yield_now().await;
    assert_eq!((handle.in_flight(), handle.queued()), (2, 2));
    let mut outcomes = Vec::new();
    for c in calls {
        outcomes.push(
            c.await
                .unwrap()
                .map_err(|e| e.downcast::<Full>().unwrap().reason()),
        );
    }
    // Two in flight (10 ms each), two waited for them, the fifth found the queue full.
    assert_eq!(
        outcomes,
        [
            Ok(()),
            Ok(()),
            Ok(()),
            Ok(()),
            Err(bulwark_bulkhead::OverflowReason::QueueFull)
        ]
    );
    assert_eq!(start.elapsed(), ms(20));
    assert_eq!(backend.most.load(Ordering::SeqCst), 2);
}
