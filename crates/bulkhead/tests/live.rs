//! Handles from the layer, one bulkhead shared across `layer()` calls, and the limit, the queue
//! and an adaptive limit's bounds changed through the handle while calls are in flight, under
//! paused tokio time.

use bulwark_bulkhead::{AdaptiveLimitLayer, BulkheadLayer, Event, Full, OverflowReason, Queue};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinHandle;
use tower::{Layer, Service, ServiceExt};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// A backend that answers `n` after `n` seconds.
fn slow() -> impl Service<u64, Response = u64, Error = BoxError, Future = impl Send> + Clone + Send
{
    tower::service_fn(|n: u64| async move {
        tokio::time::sleep(secs(n)).await;
        Ok::<_, BoxError>(n)
    })
}

/// Sends `n`, spawned (its readiness and call in the task).
fn spawn<S>(svc: &S, n: u64) -> JoinHandle<Result<u64, BoxError>>
where
    S: Service<u64, Response = u64, Error = BoxError> + Clone + Send + 'static,
    S::Future: Send,
{
    let svc = svc.clone();
    tokio::spawn(async move { svc.oneshot(n).await })
}

fn reason(err: &BoxError) -> OverflowReason {
    err.downcast_ref::<Full>()
        .unwrap_or_else(|| panic!("not a Full: {err}"))
        .reason()
}

/// Lets the spawned tasks run until they wait on time.
async fn settle() {
    for _ in 0..5 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_lower_limit_set_with_20_calls_parked_admits_nothing_new_until_below_it() {
    let layer = BulkheadLayer::builder()
        .name("store")
        .max_concurrent(30)
        .shared()
        .build()
        .unwrap();
    let handle = layer.handle().unwrap();
    let svc = layer.layer(slow());
    let parked: Vec<_> = (0..20).map(|_| spawn(&svc, 5)).collect();
    settle().await;
    assert_eq!(handle.in_flight(), 20);

    handle.set_max_concurrent(10).unwrap();
    let err = spawn(&svc, 1).await.unwrap().unwrap_err();
    assert_eq!(reason(&err), OverflowReason::Full, "20 in flight, limit 10");
    tokio::time::advance(secs(5)).await;
    for call in parked {
        assert_eq!(call.await.unwrap().unwrap(), 5, "no call dropped or failed");
    }
    assert_eq!(handle.in_flight(), 0);

    // Below it now: ten are admitted, the eleventh is not.
    let ten: Vec<_> = (0..10).map(|_| spawn(&svc, 1)).collect();
    settle().await;
    let err = spawn(&svc, 1).await.unwrap().unwrap_err();
    assert_eq!(reason(&err), OverflowReason::Full);
    tokio::time::advance(secs(1)).await;
    for call in ten {
        call.await.unwrap().unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn a_smaller_queue_keeps_the_callers_waiting_and_turns_new_ones_away() {
    let events = Arc::new(Mutex::new(Vec::new()));
    let seen = events.clone();
    let layer = BulkheadLayer::builder()
        .name("store")
        .max_concurrent(1)
        .queue(4, secs(60))
        .listener(move |e: &Event<'_>| {
            if let Event::SettingsChanged { name, layer } = e {
                seen.lock().unwrap().push(format!("{layer}:{name}"));
            }
        })
        .build()
        .unwrap();
    let svc = layer.layer(slow());
    let handle = layer.handles().pop().unwrap();
    let calls: Vec<_> = (0..4).map(|_| spawn(&svc, 1)).collect();
    settle().await;
    assert_eq!((handle.in_flight(), handle.queued()), (1, 3));

    let smaller = Queue {
        capacity: 1,
        timeout: secs(60),
    };
    handle.set_queue(Some(smaller)).unwrap();
    handle.set_queue(Some(smaller)).unwrap(); // the same again: no change
    assert_eq!(handle.queue(), Some(smaller));
    assert_eq!(*events.lock().unwrap(), ["bulkhead:store"]);
    let err = spawn(&svc, 1).await.unwrap().unwrap_err();
    assert_eq!(
        reason(&err),
        OverflowReason::QueueFull,
        "3 wait, room for 1"
    );

    // The three waiting are served in turn.
    for _ in 0..4 {
        tokio::time::advance(secs(1)).await;
        settle().await;
    }
    for call in calls {
        assert_eq!(call.await.unwrap().unwrap(), 1, "no caller dropped");
    }

    // No queue: a caller over the limit is turned away at once.
    handle.set_queue(None).unwrap();
    assert_eq!(handle.queue(), None);
    let first = spawn(&svc, 1);
    settle().await;
    let err = spawn(&svc, 1).await.unwrap().unwrap_err();
    assert_eq!(reason(&err), OverflowReason::Full);
    tokio::time::advance(secs(1)).await;
    first.await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_new_queue_timeout_applies_to_callers_that_join_after_it() {
    // One call at a time, a 10 s wait in the queue. A caller waits; the timeout is cut to
    // 2 s; a second caller joins. The 100 s call in flight keeps both waiting: the second runs
    // out at 2 s after it joined, the first keeps its 10 s.
    let layer = BulkheadLayer::builder()
        .name("store")
        .max_concurrent(1)
        .queue(4, secs(10))
        .shared()
        .build()
        .unwrap();
    let handle = layer.handle().unwrap();
    let svc = layer.layer(slow());
    let start = tokio::time::Instant::now();
    let running = spawn(&svc, 100);
    settle().await;
    let early = spawn(&svc, 1);
    settle().await;
    handle
        .set_queue(Some(Queue {
            capacity: 4,
            timeout: secs(2),
        }))
        .unwrap();
    let late = spawn(&svc, 1);
    settle().await;
    assert_eq!(handle.queued(), 2);

    let err = late.await.unwrap().unwrap_err();
    assert_eq!(reason(&err), OverflowReason::QueueTimeout);
    assert_eq!(start.elapsed(), secs(2), "the new timeout");
    assert_eq!(handle.queued(), 1, "the earlier caller still waits");
    let err = early.await.unwrap().unwrap_err();
    assert_eq!(reason(&err), OverflowReason::QueueTimeout);
    assert_eq!(start.elapsed(), secs(10), "the timeout it joined with");
    running.abort();
}

#[tokio::test(start_paused = true)]
async fn invalid_values_are_refused_naming_the_setting_and_change_nothing() {
    let fixed = BulkheadLayer::builder()
        .max_concurrent(4)
        .queue(2, secs(1))
        .shared()
        .build()
        .unwrap()
        .handle()
        .unwrap();
    let queue = fixed.queue();
    let bad = |capacity, timeout| Some(Queue { capacity, timeout });
    let cases = [
        (fixed.set_queue(bad(0, secs(1))), "queue.capacity"),
        (fixed.set_queue(bad(100_001, secs(1))), "queue.capacity"),
        (fixed.set_queue(bad(2, Duration::ZERO)), "queue.timeout"),
        (fixed.set_max_concurrent(0), "max_concurrent"),
        (fixed.set_limits(1, 10), "min_limit"),
    ];
    for (result, setting) in cases {
        assert_eq!(result.unwrap_err().setting(), setting);
    }
    assert_eq!((fixed.queue(), fixed.max_concurrent()), (queue, 4));

    let ready = BulkheadLayer::builder()
        .readiness_mode()
        .shared()
        .build()
        .unwrap()
        .handle()
        .unwrap();
    let err = ready.set_queue(bad(1, secs(1))).unwrap_err();
    assert_eq!(err.setting(), "queue");
    assert_eq!(ready.queue(), None);

    let adaptive = AdaptiveLimitLayer::builder()
        .limits(2, 10, 50)
        .aimd(secs(1))
        .shared()
        .build()
        .unwrap()
        .handle()
        .unwrap();
    assert_eq!(
        adaptive.set_limits(0, 5).unwrap_err().setting(),
        "min_limit"
    );
    assert_eq!(
        adaptive.set_limits(8, 4).unwrap_err().setting(),
        "max_limit"
    );
    assert_eq!(
        adaptive.set_limits(1, 2_000_000).unwrap_err().setting(),
        "max_limit"
    );
    assert_eq!(adaptive.limits(), Some((2, 50)));
    assert_eq!(adaptive.max_concurrent(), 10);
}

#[tokio::test(start_paused = true)]
async fn new_adaptive_bounds_bring_the_limit_inside_without_cutting_calls_off() {
    let layer = AdaptiveLimitLayer::builder()
        .name("search")
        .limits(1, 20, 100)
        .aimd(secs(10))
        .build()
        .unwrap();
    assert!(layer.handle().is_none() && layer.handles().is_empty());
    let svc = layer.layer(slow());
    let handle = svc.handle();
    assert_eq!(layer.handles().len(), 1);
    let parked: Vec<_> = (0..15).map(|_| spawn(&svc, 2)).collect();
    settle().await;

    handle.set_limits(2, 8).unwrap();
    assert_eq!(handle.limits(), Some((2, 8)));
    assert_eq!(handle.max_concurrent(), 8, "brought under the new ceiling");
    let err = spawn(&svc, 1).await.unwrap().unwrap_err();
    assert_eq!(reason(&err), OverflowReason::Full);
    tokio::time::advance(secs(2)).await;
    for call in parked {
        assert_eq!(call.await.unwrap().unwrap(), 2, "no call cut off");
    }
    // A limit set by hand must now be inside the new bounds.
    assert_eq!(
        handle.set_max_concurrent(9).unwrap_err().setting(),
        "max_concurrent"
    );
    handle.set_max_concurrent(3).unwrap();
    assert_eq!(handle.max_concurrent(), 3);
}

#[tokio::test(start_paused = true)]
async fn one_shared_limit_across_two_layer_calls_and_a_limit_per_service_otherwise() {
    let layer = BulkheadLayer::builder()
        .name("db")
        .max_concurrent(2)
        .shared()
        .build()
        .unwrap();
    let reads = layer.layer(slow());
    let writes = layer.clone().layer(slow());
    let a = spawn(&reads, 1);
    let b = spawn(&writes, 1);
    settle().await;
    let err = spawn(&reads, 1).await.unwrap().unwrap_err();
    assert_eq!(
        reason(&err),
        OverflowReason::Full,
        "two in flight across both"
    );
    assert_eq!(layer.handle().unwrap().in_flight(), 2);
    assert_eq!(layer.handles().len(), 1);
    tokio::time::advance(secs(1)).await;
    a.await.unwrap().unwrap();
    b.await.unwrap().unwrap();

    let each = BulkheadLayer::builder()
        .name("db")
        .max_concurrent(1)
        .build()
        .unwrap();
    let reads = each.layer(slow());
    let writes = each.layer(slow());
    let a = spawn(&reads, 1);
    let b = spawn(&writes, 1);
    settle().await;
    let handles = each.handles();
    assert_eq!(handles.len(), 2);
    assert!(
        handles.iter().all(|h| h.in_flight() == 1),
        "one permit each"
    );
    tokio::time::advance(secs(1)).await;
    a.await.unwrap().unwrap();
    b.await.unwrap().unwrap();
}
