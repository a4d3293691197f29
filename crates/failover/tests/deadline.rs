//! The failover set's deadline: the whole request, every target it tries included.

use bulwark_core::DeadlineExceeded;
use bulwark_failover::FailoverLayer;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tower::util::BoxCloneService;
use tower::{Service, ServiceExt};

type Target = BoxCloneService<(), &'static str, std::io::Error>;

/// A target that answers after `after`, counting its calls.
fn answering_after(name: &'static str, after: Duration, calls: &Arc<AtomicU32>) -> Target {
    let calls = calls.clone();
    BoxCloneService::new(tower::service_fn(move |()| {
        calls.fetch_add(1, Ordering::SeqCst);
        async move {
            tokio::time::sleep(after).await;
            Ok(name)
        }
    }))
}

#[tokio::test(start_paused = true)]
async fn the_deadline_cuts_the_attempt_under_way_and_tries_no_more_targets() {
    let calls = Arc::new(AtomicU32::new(0));
    let hour = Duration::from_secs(3600);
    let mut fo = FailoverLayer::builder()
        .attempt_timeout(Duration::from_millis(700))
        .deadline(Duration::from_secs(1))
        .build()
        .unwrap()
        .build(vec![
            answering_after("a", hour, &calls),
            answering_after("b", hour, &calls),
            answering_after("c", hour, &calls),
        ])
        .unwrap();
    let start = Instant::now();
    let err = fo.ready().await.unwrap().call(()).await.unwrap_err();
    // "a" timed out at 700 ms; "b" was cut at 1 s by the deadline; "c" was never called.
    assert_eq!(start.elapsed(), Duration::from_secs(1));
    let e = err
        .downcast_ref::<DeadlineExceeded>()
        .expect("the deadline");
    assert_eq!(e.deadline, Duration::from_secs(1));
    assert_eq!(e.attempts, 2);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn a_target_answering_within_the_deadline_answers() {
    let calls = Arc::new(AtomicU32::new(0));
    let mut fo = FailoverLayer::builder()
        .no_attempt_timeout()
        .deadline(Duration::from_secs(1))
        .build()
        .unwrap()
        .build(vec![answering_after(
            "a",
            Duration::from_millis(900),
            &calls,
        )])
        .unwrap();
    assert_eq!(fo.ready().await.unwrap().call(()).await.unwrap(), "a");
    // Without a per-attempt timeout, the deadline alone bounds the attempt.
    let mut slow = FailoverLayer::builder()
        .no_attempt_timeout()
        .deadline(Duration::from_secs(1))
        .build()
        .unwrap()
        .build(vec![answering_after("a", Duration::from_secs(5), &calls)])
        .unwrap();
    let start = Instant::now();
    let err = slow.ready().await.unwrap().call(()).await.unwrap_err();
    assert!(err.is::<DeadlineExceeded>(), "{err}");
    assert_eq!(start.elapsed(), Duration::from_secs(1));
}

#[test]
fn a_zero_deadline_is_refused_naming_it() {
    let err = FailoverLayer::builder()
        .deadline(Duration::ZERO)
        .build()
        .unwrap_err();
    assert_eq!(err.setting(), "deadline");
}

#[tokio::test(start_paused = true)]
async fn the_deadline_its_server_received_ends_the_request_unless_told_not_to() {
    let hour = Duration::from_secs(3600);
    for inherit in [true, false] {
        let calls = Arc::new(AtomicU32::new(0));
        let mut fo = FailoverLayer::builder()
            .attempt_timeout(Duration::from_secs(1))
            .inherit_deadline(inherit)
            .build()
            .unwrap()
            .build(vec![
                answering_after("a", hour, &calls),
                answering_after("b", hour, &calls),
            ])
            .unwrap();
        let start = Instant::now();
        // What a server's edge (bulwark_retry::InboundDeadlineLayer) does for the handler
        // that calls the set: the caller allows 300 ms.
        let at = Some(start + Duration::from_millis(300));
        let err = bulwark_core::deadline::scope(at, async {
            fo.ready().await.unwrap().call(()).await.unwrap_err()
        })
        .await;
        if inherit {
            assert_eq!(start.elapsed(), Duration::from_millis(300));
            let e = err
                .downcast_ref::<DeadlineExceeded>()
                .expect("the deadline");
            assert_eq!(e.deadline, Duration::from_millis(300));
            assert_eq!(
                calls.load(Ordering::SeqCst),
                1,
                "no target after the deadline"
            );
        } else {
            // Both targets tried for their whole attempt timeout.
            assert_eq!(start.elapsed(), Duration::from_secs(2), "{err}");
            assert_eq!(calls.load(Ordering::SeqCst), 2);
        }
    }
}

/// A target that fails with an error after `after`, counting its calls.
fn failing_after(after: Duration, calls: &Arc<AtomicU32>) -> Target {
    let calls = calls.clone();
    BoxCloneService::new(tower::service_fn(move |()| {
        calls.fetch_add(1, Ordering::SeqCst);
        async move {
            tokio::time::sleep(after).await;
            Err(std::io::Error::from(std::io::ErrorKind::ConnectionReset))
        }
    }))
}

#[tokio::test(start_paused = true)]
async fn no_target_is_tried_after_the_deadline() {
    // The wait between targets (5 s) reaches the deadline (1 s) first: the next target is
    // not called, and the request ends at 1 s with the deadline.
    let calls = Arc::new(AtomicU32::new(0));
    let mut fo = FailoverLayer::builder()
        .deadline(Duration::from_secs(1))
        .interval(Duration::from_secs(5))
        .build()
        .unwrap()
        .build(vec![
            failing_after(Duration::ZERO, &calls),
            answering_after("b", Duration::ZERO, &calls),
        ])
        .unwrap();
    let start = Instant::now();
    let err = fo.ready().await.unwrap().call(()).await.unwrap_err();
    assert!(err.is::<DeadlineExceeded>(), "{err}");
    assert_eq!(start.elapsed(), Duration::from_secs(1));
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    // An attempt that fails as the deadline passes (a backend told the same deadline gives up
    // then): the deadline, and no next target.
    let calls = Arc::new(AtomicU32::new(0));
    let mut fo = FailoverLayer::builder()
        .no_attempt_timeout()
        .deadline(Duration::from_secs(1))
        .build()
        .unwrap()
        .build(vec![
            failing_after(Duration::from_secs(1), &calls),
            answering_after("b", Duration::ZERO, &calls),
        ])
        .unwrap();
    let err = fo.ready().await.unwrap().call(()).await.unwrap_err();
    assert!(err.is::<DeadlineExceeded>(), "{err}");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}
