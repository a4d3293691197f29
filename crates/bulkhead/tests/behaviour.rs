//! The fixed bulkhead under paused time: limits hold under concurrent callers, the queue is
//! bounded, timed and fair, permits come back on every path, readiness mode under a balancer.

use bulwark_bulkhead::{Bulkhead, BulkheadLayer, DefaultClassifier, Event, Full, OverflowReason};
use bulwark_core::hint::{self, Hint};
use bulwark_test_support::{ms, Rng};
use std::future::poll_fn;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Calls inside the inner service now, and the most there ever were.
#[derive(Default, Debug)]
struct Inside {
    now: AtomicU32,
    most: AtomicU32,
    served: AtomicU32,
    /// The calls in the order they came in.
    order: Mutex<Vec<u64>>,
}

/// A backend that takes `latency(n)` ms to answer call `n`, counting the calls inside it.
fn backend(
    inside: Arc<Inside>,
    latency: impl Fn(u64) -> u64 + Clone + Send + 'static,
) -> impl Service<u64, Response = u64, Error = BoxError, Future = impl Send> + Clone + Send {
    tower::service_fn(move |n: u64| {
        let inside = inside.clone();
        let wait = ms(latency(n));
        async move {
            inside.order.lock().unwrap().push(n);
            let now = inside.now.fetch_add(1, Ordering::SeqCst) + 1;
            inside.most.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(wait).await;
            inside.now.fetch_sub(1, Ordering::SeqCst);
            inside.served.fetch_add(1, Ordering::SeqCst);
            Ok::<_, BoxError>(n)
        }
    })
}

fn reason(err: &BoxError) -> OverflowReason {
    err.downcast_ref::<Full>()
        .unwrap_or_else(|| panic!("not a Full: {err}"))
        .reason()
}

/// 50 callers, each making 20 calls of a seeded latency: never more than `limit` inside the
/// backend, and (with a queue deep enough and long enough) every call served.
async fn fifty_callers(limit: u32, queue: bool) -> (Arc<Inside>, u32, u32) {
    let inside = Arc::new(Inside::default());
    let rng = Arc::new(Rng::new(16));
    let mut builder = BulkheadLayer::builder().name("store").max_concurrent(limit);
    if queue {
        builder = builder.queue(50, Duration::from_secs(3600));
    }
    let latencies = rng.clone();
    let svc = builder
        .build()
        .unwrap()
        .layer(backend(inside.clone(), move |_| 1 + latencies.below(20)));
    let handle = svc.handle();
    let (ok, full) = (Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0)));
    let mut tasks = Vec::new();
    for caller in 0..50u64 {
        let (svc, ok, full) = (svc.clone(), ok.clone(), full.clone());
        let pause = rng.below(5);
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep(ms(pause)).await;
            for i in 0..20 {
                match svc.clone().oneshot(caller * 100 + i).await {
                    Ok(_) => ok.fetch_add(1, Ordering::SeqCst),
                    Err(e) => {
                        assert_eq!(reason(&e), OverflowReason::Full);
                        full.fetch_add(1, Ordering::SeqCst)
                    }
                };
                tokio::time::sleep(ms(1)).await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!((handle.in_flight(), handle.queued()), (0, 0));
    let (ok, full) = (ok.load(Ordering::SeqCst), full.load(Ordering::SeqCst));
    (inside, ok, full)
}

#[tokio::test(start_paused = true)]
async fn fifty_callers_never_put_more_than_the_limit_inside() {
    let (inside, ok, full) = fifty_callers(7, false).await;
    assert_eq!(
        inside.most.load(Ordering::SeqCst),
        7,
        "the limit, reached, never passed"
    );
    assert_eq!(ok + full, 1000);
    assert_eq!(inside.served.load(Ordering::SeqCst), ok);
    assert!(full > 0, "50 callers for 7 permits: some were turned away");
}

#[tokio::test(start_paused = true)]
async fn with_a_queue_deep_enough_every_call_is_served_within_the_limit() {
    let (inside, ok, full) = fifty_callers(7, true).await;
    assert_eq!(inside.most.load(Ordering::SeqCst), 7);
    assert_eq!((ok, full), (1000, 0));
}

/// A service polled by hand.
fn poll_ready<S: Service<u64>>(svc: &mut S) -> Poll<Result<(), S::Error>> {
    let waker = futures_util::task::noop_waker();
    svc.poll_ready(&mut Context::from_waker(&waker))
}

type Svc = Bulkhead<tower::util::BoxCloneSyncService<u64, u64, BoxError>, DefaultClassifier>;

fn bulkhead(builder: bulwark_bulkhead::Builder, latency: u64) -> (Svc, Arc<Inside>) {
    let inside = Arc::new(Inside::default());
    let inner = tower::util::BoxCloneSyncService::new(backend(inside.clone(), move |_| latency));
    (builder.build().unwrap().layer(inner), inside)
}

#[tokio::test(start_paused = true)]
async fn queued_callers_time_out_with_the_typed_error_and_a_full_queue_refuses_at_once() {
    let events = Arc::new(Mutex::new(Vec::new()));
    let seen = events.clone();
    let builder = BulkheadLayer::builder()
        .name("store")
        .max_concurrent(1)
        .queue(2, ms(50))
        .listener(move |e: &Event<'_>| {
            if let Event::BulkheadRejected {
                name,
                limit,
                reason,
            } = e
            {
                seen.lock()
                    .unwrap()
                    .push((name.to_string(), *limit, *reason));
            }
        });
    let (svc, _) = bulkhead(builder, 1000);
    let handle = svc.handle();
    let holder = tokio::spawn(svc.clone().oneshot(0));
    tokio::task::yield_now().await;
    assert_eq!(handle.in_flight(), 1);

    let start = Instant::now();
    let waiting: Vec<_> = (1..=2)
        .map(|n| tokio::spawn(svc.clone().oneshot(n)))
        .collect();
    tokio::task::yield_now().await;
    assert_eq!(handle.queued(), 2);
    // The queue is full: the next is refused at once.
    let err = svc.clone().oneshot(3).await.unwrap_err();
    assert_eq!(reason(&err), OverflowReason::QueueFull);
    assert_eq!(
        err.to_string(),
        "bulkhead `store` full: 1 calls in flight, and its queue too"
    );
    assert_eq!(start.elapsed(), Duration::ZERO);

    for w in waiting {
        let err = w.await.unwrap().unwrap_err();
        assert_eq!(reason(&err), OverflowReason::QueueTimeout);
    }
    assert_eq!(start.elapsed(), ms(50), "each waited its timeout, no more");
    assert_eq!(handle.queued(), 0);
    assert_eq!(holder.await.unwrap().unwrap(), 0);
    assert_eq!(handle.in_flight(), 0);
    let events = events.lock().unwrap();
    let reasons: Vec<_> = events.iter().map(|e| e.2).collect();
    assert_eq!(
        reasons,
        [
            OverflowReason::QueueFull,
            OverflowReason::QueueTimeout,
            OverflowReason::QueueTimeout
        ]
    );
    assert!(events.iter().all(|e| e.0 == "store" && e.1 == 1));
}

#[tokio::test(start_paused = true)]
async fn a_freed_permit_goes_to_the_oldest_waiter_and_a_cancelled_one_leaves_the_queue() {
    let (svc, inside) = bulkhead(
        BulkheadLayer::builder()
            .max_concurrent(1)
            .queue(10, Duration::from_secs(60)),
        100,
    );
    let handle = svc.handle();
    let holder = tokio::spawn(svc.clone().oneshot(0));
    tokio::task::yield_now().await;
    let mut waiters = Vec::new();
    for n in 1..=4u64 {
        waiters.push(tokio::spawn(svc.clone().oneshot(n)));
        tokio::task::yield_now().await;
    }
    assert_eq!(handle.queued(), 4);
    // The second waiter gives up (its task, and its service, are dropped).
    waiters[1].abort();
    tokio::task::yield_now().await;
    assert_eq!(handle.queued(), 3, "a cancelled waiter leaves the queue");
    holder.await.unwrap().unwrap();
    for (i, w) in waiters.into_iter().enumerate() {
        if i != 1 {
            w.await.unwrap().unwrap();
        }
    }
    assert_eq!(
        *inside.order.lock().unwrap(),
        [0, 1, 3, 4],
        "first come, first served"
    );
    assert_eq!(inside.most.load(Ordering::SeqCst), 1);
    assert_eq!((handle.in_flight(), handle.queued()), (0, 0));
}

#[tokio::test(start_paused = true)]
async fn a_waiter_handed_a_permit_it_does_not_use_passes_it_on() {
    let (svc, _) = bulkhead(
        BulkheadLayer::builder()
            .max_concurrent(1)
            .queue(10, Duration::from_secs(60)),
        100,
    );
    let handle = svc.handle();
    let mut holder = svc.clone();
    assert!(poll_ready(&mut holder).is_ready());
    let (mut a, mut b) = (svc.clone(), svc.clone());
    assert!(poll_ready(&mut a).is_pending());
    assert!(poll_ready(&mut b).is_pending());
    assert_eq!(handle.queued(), 2);
    // The holder never calls: dropping it gives its permit to `a`, the oldest...
    drop(holder);
    assert_eq!((handle.in_flight(), handle.queued()), (1, 1));
    // ...which is dropped before it is polled again: the permit goes on to `b`.
    drop(a);
    assert_eq!((handle.in_flight(), handle.queued()), (1, 0));
    assert!(poll_ready(&mut b).is_ready());
    assert_eq!(b.call(7).await.unwrap(), 7);
    assert_eq!(handle.in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn permits_come_back_when_a_call_ends_is_dropped_or_never_made() {
    let (mut svc, _) = bulkhead(BulkheadLayer::builder().max_concurrent(2), 100);
    let handle = svc.handle();

    // Dropped mid-call (cancelled).
    svc.ready().await.unwrap();
    let call = svc.call(1);
    assert_eq!(handle.in_flight(), 1);
    drop(call);
    assert_eq!(handle.in_flight(), 0);

    // Reserved by poll_ready, never called: back when the service goes.
    let mut reserved = svc.clone();
    reserved.ready().await.unwrap();
    assert_eq!(handle.in_flight(), 1);
    drop(reserved);
    assert_eq!(handle.in_flight(), 0);

    // A task aborted while its call is in flight.
    let task = tokio::spawn(svc.clone().oneshot(2));
    tokio::time::sleep(ms(10)).await;
    assert_eq!(handle.in_flight(), 1);
    task.abort();
    let _ = task.await;
    assert_eq!(handle.in_flight(), 0);

    // Ended: back as soon as the answer is there.
    svc.ready().await.unwrap();
    assert_eq!(svc.call(3).await.unwrap(), 3);
    assert_eq!(handle.in_flight(), 0);

    // Both permits usable again.
    let (a, b) = (svc.clone().oneshot(4), svc.clone().oneshot(5));
    assert_eq!(tokio::join!(a, b).0.unwrap(), 4);
}

#[tokio::test(start_paused = true)]
async fn a_lowered_limit_cuts_nothing_off_and_a_raised_one_admits_the_queue_at_once() {
    let (svc, inside) = bulkhead(
        BulkheadLayer::builder()
            .max_concurrent(3)
            .queue(10, Duration::from_secs(60)),
        100,
    );
    let handle = svc.handle();
    let running: Vec<_> = (0..3)
        .map(|n| tokio::spawn(svc.clone().oneshot(n)))
        .collect();
    tokio::task::yield_now().await;
    assert_eq!(handle.in_flight(), 3);
    handle.set_max_concurrent(1).unwrap();
    assert_eq!(handle.max_concurrent(), 1);
    // The three in flight finish; a new caller waits until in flight falls below 1.
    let late = tokio::spawn(svc.clone().oneshot(9));
    tokio::task::yield_now().await;
    assert_eq!(handle.queued(), 1);
    for r in running {
        assert!(r.await.unwrap().is_ok(), "no call in flight is cut off");
    }
    assert_eq!(late.await.unwrap().unwrap(), 9);
    assert_eq!(inside.most.load(Ordering::SeqCst), 3);

    // Raised while callers wait: they are admitted at once.
    handle.set_max_concurrent(1).unwrap();
    let holder = tokio::spawn(svc.clone().oneshot(0));
    tokio::task::yield_now().await;
    let start = Instant::now();
    let waiting = tokio::spawn(svc.clone().oneshot(1));
    tokio::task::yield_now().await;
    assert_eq!(handle.queued(), 1);
    handle.set_max_concurrent(2).unwrap();
    assert_eq!(waiting.await.unwrap().unwrap(), 1);
    assert_eq!(
        start.elapsed(),
        ms(100),
        "admitted at once, not after the holder"
    );
    holder.await.unwrap().unwrap();
    assert_eq!(
        handle.set_max_concurrent(2_000_000).unwrap_err().setting(),
        "max_concurrent"
    );
}

#[tokio::test(start_paused = true)]
async fn in_readiness_mode_a_full_bulkhead_is_not_ready_says_why_and_wakes_when_a_permit_frees() {
    let (svc, _) = bulkhead(
        BulkheadLayer::builder().max_concurrent(1).readiness_mode(),
        100,
    );
    let handle = svc.handle();
    let holder = tokio::spawn(svc.clone().oneshot(0));
    tokio::task::yield_now().await;
    let mut waiting = svc.clone();
    let (poll, why) = hint::collect(|| poll_ready(&mut waiting));
    assert!(poll.is_pending());
    assert_eq!(why, Some(Hint::Full));
    let start = Instant::now();
    poll_fn(|cx| waiting.poll_ready(cx)).await.unwrap();
    assert_eq!(
        start.elapsed(),
        ms(100),
        "woken when the holder's call ended"
    );
    assert_eq!(waiting.call(1).await.unwrap(), 1);
    holder.await.unwrap().unwrap();
    assert_eq!(handle.in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn in_readiness_mode_a_balancer_sends_around_the_full_endpoint() {
    use bulwark_balance::{BalanceLayer, Strategy};
    // Endpoint "slow" answers in 1 s, "fast" in 10 ms; one permit each.
    let endpoint = |latency: u64| {
        let inside = Arc::new(Inside::default());
        let svc = BulkheadLayer::builder()
            .max_concurrent(1)
            .readiness_mode()
            .build()
            .unwrap()
            .layer(backend(inside.clone(), move |_| latency));
        (svc, inside)
    };
    let (slow, slow_inside) = endpoint(1000);
    let (fast, fast_inside) = endpoint(10);
    let lb = BalanceLayer::builder()
        .strategy(Strategy::RoundRobin)
        .wait_for_ready(Duration::from_secs(5))
        .build()
        .unwrap()
        .build(vec![slow, fast])
        .unwrap();
    let start = Instant::now();
    // One caller at a time, 20 calls: the first goes to "slow" and holds its permit for 1 s;
    // meanwhile every call is sent to "fast", none waits behind "slow".
    let first = tokio::spawn(lb.clone().oneshot(0));
    tokio::task::yield_now().await;
    for n in 1..=20 {
        lb.clone().oneshot(n).await.unwrap();
    }
    assert_eq!(
        start.elapsed(),
        ms(200),
        "20 calls of 10 ms, none behind the full one"
    );
    assert_eq!(slow_inside.served.load(Ordering::SeqCst), 0);
    assert_eq!(fast_inside.served.load(Ordering::SeqCst), 20);
    first.await.unwrap().unwrap();
    assert_eq!(slow_inside.most.load(Ordering::SeqCst), 1);
    assert_eq!(fast_inside.most.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn called_before_ready_is_a_misuse_not_a_panic() {
    let (mut svc, _) = bulkhead(BulkheadLayer::builder(), 1);
    let err = svc.call(1).await.unwrap_err();
    assert!(err.is::<bulwark_bulkhead::Misuse>());
}

/// Real threads this time (a multi-threaded runtime, no paused time): 50 tasks on two worker
/// threads, 100 calls each through one bulkhead of 5 permits with a queue deep enough for all
/// of them (see `real_threads`); the inner service yields to the scheduler a few times inside. Never more than 5
/// inside, and every call served. Bounded by its count of calls, and by two minutes of wall
/// time so that a lost wake-up fails rather than hangs; no speed is asserted.
#[test]
fn under_real_threads_the_limit_holds_and_the_queue_serves_everyone() {
    real_threads(
        BulkheadLayer::builder()
            .max_concurrent(5)
            .queue(50, Duration::from_secs(3600)),
    );
}

/// The same in readiness mode: every caller waits in `poll_ready` to be woken when a permit
/// frees up (no queue; the watchers are woken together and race for it).
#[test]
fn under_real_threads_readiness_mode_wakes_every_waiter_in_the_end() {
    real_threads(BulkheadLayer::builder().max_concurrent(5).readiness_mode());
}

fn real_threads(builder: bulwark_bulkhead::Builder) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap();
    let inside = Arc::new(Inside::default());
    let seen = inside.clone();
    let backend = tower::service_fn(move |n: u64| {
        let inside = seen.clone();
        async move {
            let now = inside.now.fetch_add(1, Ordering::SeqCst) + 1;
            inside.most.fetch_max(now, Ordering::SeqCst);
            for _ in 0..(n % 4) {
                tokio::task::yield_now().await;
            }
            inside.now.fetch_sub(1, Ordering::SeqCst);
            inside.served.fetch_add(1, Ordering::SeqCst);
            Ok::<_, std::convert::Infallible>(n)
        }
    });
    let svc = builder.build().unwrap().layer(backend);
    let handle = svc.handle();
    // A lost wake-up would hang a caller: the run is bounded, so it fails instead.
    let all = async {
        let tasks: Vec<_> = (0..50u64)
            .map(|t| {
                let svc = svc.clone();
                tokio::spawn(async move {
                    for i in 0..100 {
                        let n = t * 1000 + i;
                        assert_eq!(svc.clone().oneshot(n).await.unwrap(), n);
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
    };
    let run = runtime.block_on(async { tokio::time::timeout(Duration::from_secs(120), all).await });
    assert!(run.is_ok(), "every caller was served, none left waiting");
    assert!(inside.most.load(Ordering::SeqCst) <= 5);
    assert_eq!(inside.served.load(Ordering::SeqCst), 5000);
    assert_eq!((handle.in_flight(), handle.queued()), (0, 0));
}
