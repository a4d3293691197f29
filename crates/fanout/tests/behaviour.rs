//! Behaviour of the fan-out under paused time and seeded randomness.

use bulwark_core::backoff::{ExponentialBackoff, Jitter};
use bulwark_core::{Outcome, RandomSource, SplitMix64};
use bulwark_fanout::{ConfigError, FanOutFailed, FanOutLayer, FirstSuccess, Policy, TargetResult};
use bulwark_retry::{BackoffRetryLayer, RetryFailures};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tower::util::BoxCloneService;
use tower::{Service, ServiceExt};

/// A store: answers a status code (201 when the write is stored).
type Store = BoxCloneService<&'static str, u16, std::io::Error>;

fn created_only(r: &Result<u16, std::io::Error>) -> Outcome {
    match r {
        Ok(201) => Outcome::Success,
        _ => Outcome::Failure,
    }
}

/// The same, for targets behind a retry layer (whose errors are boxed).
fn created(r: &Result<u16, bulwark_core::BoxError>) -> Outcome {
    match r {
        Ok(201) => Outcome::Success,
        _ => Outcome::Failure,
    }
}

/// A store that answers 503 with probability `fail`, from a seeded source, counting calls.
fn flaky_store(fail: f64, seed: u64, calls: &Arc<AtomicUsize>) -> Store {
    let rng = Arc::new(SplitMix64::new(seed));
    let calls = calls.clone();
    BoxCloneService::new(tower::service_fn(move |_: &'static str| {
        calls.fetch_add(1, Ordering::SeqCst);
        let status = if rng.next_f64() < fail { 503 } else { 201 };
        async move {
            tokio::time::sleep(Duration::from_millis(5)).await;
            Ok(status)
        }
    }))
}

fn slow_store(status: u16, delay: Duration, dropped: &Arc<AtomicBool>) -> Store {
    let dropped = dropped.clone();
    BoxCloneService::new(tower::service_fn(move |_: &'static str| {
        struct SetOnDrop(Arc<AtomicBool>);
        impl Drop for SetOnDrop {
            fn drop(&mut self) {
                self.0.store(true, Ordering::SeqCst);
            }
        }
        let guard = SetOnDrop(dropped.clone());
        async move {
            let _guard = guard;
            tokio::time::sleep(delay).await;
            Ok(status)
        }
    }))
}

type Classifier = fn(&Result<u16, std::io::Error>) -> Outcome;

/// The seed's per-target stack: retry with backoff until the store answers 201.
fn until_created(max_attempts: u32) -> BackoffRetryLayer<RetryFailures<Classifier>> {
    BackoffRetryLayer::builder()
        .max_attempts(max_attempts)
        .no_budget()
        .backoff(
            ExponentialBackoff::new(
                Duration::from_millis(100),
                2.0,
                Duration::from_secs(64),
                Jitter::Full,
            )
            .unwrap(),
        )
        .random(SplitMix64::new(9))
        .classifier(created_only as Classifier)
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn the_seed_scenario_every_store_gets_the_write() {
    let calls: Vec<Arc<AtomicUsize>> = (0..3).map(|_| Arc::default()).collect();
    let stores = vec![
        flaky_store(0.0, 1, &calls[0]),
        flaky_store(0.3, 2, &calls[1]), // fails 30% of calls
        flaky_store(0.0, 3, &calls[2]),
    ];
    let mut register = FanOutLayer::builder()
        .name("register")
        .target_names(["store-1", "store-2", "store-3"])
        .classifier(created)
        .merge(FirstSuccess)
        .build()
        .unwrap()
        .build_with(stores, &until_created(100))
        .unwrap();
    for _ in 0..50 {
        let status = register.ready().await.unwrap().call("alice").await.unwrap();
        assert_eq!(status, 201);
    }
    let (a, b, c) = (
        calls[0].load(Ordering::SeqCst),
        calls[1].load(Ordering::SeqCst),
        calls[2].load(Ordering::SeqCst),
    );
    assert_eq!((a, c), (50, 50));
    // The flaky store needed retries: about 50 / 0.7 calls.
    assert!(b > 55 && b < 100, "{b}");
}

#[tokio::test(start_paused = true)]
async fn a_store_failing_for_good_fails_the_fanout_naming_it() {
    let calls: Vec<Arc<AtomicUsize>> = (0..3).map(|_| Arc::default()).collect();
    let stores = vec![
        flaky_store(0.0, 1, &calls[0]),
        flaky_store(1.0, 2, &calls[1]), // always 503
        flaky_store(0.0, 3, &calls[2]),
    ];
    let layer = FanOutLayer::builder()
        .name("register")
        .target_names(["store-1", "store-2", "store-3"])
        .classifier(created)
        .build()
        .unwrap();
    // Collect: every outcome, reported.
    let mut fanout = layer.build_with(stores.clone(), &until_created(5)).unwrap();
    let outcomes = fanout.ready().await.unwrap().call("bob").await.unwrap();
    assert!(!outcomes.met);
    assert_eq!(outcomes.successes(), 2);
    assert!(matches!(
        outcomes.targets[1].result,
        TargetResult::Failed(503)
    ));
    assert_eq!(outcomes.target_name(1), "store-2");
    assert_eq!(calls[1].load(Ordering::SeqCst), 5, "after all its attempts");
    // FirstSuccess: an error naming the store, with the others' outcomes.
    let mut fanout = FanOutLayer::builder()
        .name("register")
        .target_names(["store-1", "store-2", "store-3"])
        .classifier(created)
        .merge(FirstSuccess)
        .build()
        .unwrap()
        .build_with(stores, &until_created(5))
        .unwrap();
    let err = fanout.ready().await.unwrap().call("bob").await.unwrap_err();
    let failed = err.downcast_ref::<FanOutFailed>().unwrap();
    assert_eq!(
        err.to_string(),
        "fan-out register failed (all: 2 of 3 succeeded): [0] store-1: succeeded; [1] store-2: answered with a failure; [2] store-3: succeeded"
    );
    assert_eq!(failed.successes, 2);
}

#[tokio::test(start_paused = true)]
async fn a_quorum_answers_without_waiting_for_the_slow_target() {
    let dropped = Arc::new(AtomicBool::new(false));
    let never = Arc::new(AtomicBool::new(false));
    let mut fanout = FanOutLayer::builder()
        .policy(Policy::Quorum(2))
        .classifier(created_only)
        .build()
        .unwrap()
        .build(vec![
            slow_store(201, Duration::from_millis(10), &never),
            slow_store(201, Duration::from_secs(60), &dropped),
            slow_store(201, Duration::from_millis(20), &never),
        ])
        .unwrap();
    let start = Instant::now();
    let outcomes = fanout.ready().await.unwrap().call("carol").await.unwrap();
    assert_eq!(start.elapsed(), Duration::from_millis(20));
    assert!(outcomes.met);
    assert!(matches!(
        outcomes.targets[1].result,
        TargetResult::Cancelled
    ));
    assert!(
        dropped.load(Ordering::SeqCst),
        "the straggler was cancelled"
    );
}

#[tokio::test(start_paused = true)]
async fn the_first_success_cancels_the_others() {
    let (d0, d1, d2) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
    );
    let mut fanout = FanOutLayer::builder()
        .policy(Policy::First)
        .classifier(created_only)
        .merge(FirstSuccess)
        .build()
        .unwrap()
        .build(vec![
            slow_store(201, Duration::from_secs(5), &d0),
            slow_store(201, Duration::from_secs(1), &d1),
            slow_store(201, Duration::from_secs(9), &d2),
        ])
        .unwrap();
    let start = Instant::now();
    assert_eq!(
        fanout.ready().await.unwrap().call("dave").await.unwrap(),
        201
    );
    assert_eq!(start.elapsed(), Duration::from_secs(1));
    assert!(
        d0.load(Ordering::SeqCst) && d2.load(Ordering::SeqCst),
        "both dropped"
    );
}

#[tokio::test(start_paused = true)]
async fn the_whole_deadline_bounds_everything() {
    let flag = Arc::new(AtomicBool::new(false));
    let mut fanout = FanOutLayer::builder()
        .classifier(created_only)
        .deadline(Duration::from_secs(5))
        .build()
        .unwrap()
        .build(vec![
            slow_store(201, Duration::from_millis(1), &flag),
            slow_store(201, Duration::from_secs(60), &flag),
        ])
        .unwrap();
    let start = Instant::now();
    let outcomes = fanout.ready().await.unwrap().call("erin").await.unwrap();
    assert_eq!(start.elapsed(), Duration::from_secs(5));
    assert!(!outcomes.met);
    assert!(matches!(outcomes.targets[1].result, TargetResult::TimedOut));
    assert!(matches!(
        outcomes.targets[0].result,
        TargetResult::Succeeded(201)
    ));
}

#[tokio::test(start_paused = true)]
async fn the_deadline_its_server_received_cuts_the_fanout_short() {
    // The fan-out allows 5 s, but the server serving this request received a 300 ms deadline:
    // the target still running then times out (and is dropped) at 300 ms.
    let build = |inherit: bool, flag: &Arc<AtomicBool>| {
        FanOutLayer::builder()
            .classifier(created_only)
            .deadline(Duration::from_secs(5))
            .inherit_deadline(inherit)
            .build()
            .unwrap()
            .build(vec![
                slow_store(201, Duration::from_millis(1), flag),
                slow_store(201, Duration::from_secs(1), flag),
            ])
            .unwrap()
    };
    let dropped = Arc::new(AtomicBool::new(false));
    let mut fanout = build(true, &dropped);
    let start = Instant::now();
    let ready = fanout.ready().await.unwrap();
    let at = Some(start + Duration::from_millis(300));
    let outcomes = bulwark_core::deadline::call_in_scope(at, || ready.call("gina"))
        .await
        .unwrap();
    assert_eq!(start.elapsed(), Duration::from_millis(300));
    assert!(!outcomes.met);
    assert!(matches!(outcomes.targets[1].result, TargetResult::TimedOut));
    assert!(
        dropped.load(Ordering::SeqCst),
        "the late target's call was dropped"
    );

    // Without a fan-out deadline of its own, the one in scope still bounds it.
    let mut fanout = FanOutLayer::builder()
        .classifier(created_only)
        .build()
        .unwrap()
        .build(vec![slow_store(201, Duration::from_secs(60), &dropped)])
        .unwrap();
    let start = Instant::now();
    let ready = fanout.ready().await.unwrap();
    let at = Some(start + Duration::from_millis(300));
    let outcomes = bulwark_core::deadline::call_in_scope(at, || ready.call("hal"))
        .await
        .unwrap();
    assert_eq!(start.elapsed(), Duration::from_millis(300));
    assert!(matches!(outcomes.targets[0].result, TargetResult::TimedOut));

    // Not inherited: every target answers, at 1 s.
    let mut fanout = build(false, &dropped);
    let start = Instant::now();
    let ready = fanout.ready().await.unwrap();
    let at = Some(start + Duration::from_millis(300));
    let outcomes = bulwark_core::deadline::call_in_scope(at, || ready.call("ida"))
        .await
        .unwrap();
    assert_eq!(start.elapsed(), Duration::from_secs(1));
    assert!(outcomes.met);
}

#[tokio::test(start_paused = true)]
async fn a_branch_deadline_cuts_only_what_is_late() {
    let flag = Arc::new(AtomicBool::new(false));
    let mut fanout = FanOutLayer::builder()
        .policy(Policy::Quorum(1))
        .classifier(created_only)
        .branch_deadline(Duration::from_secs(2))
        .build()
        .unwrap()
        .build(vec![slow_store(201, Duration::from_secs(60), &flag)])
        .unwrap();
    let outcomes = fanout.ready().await.unwrap().call("frank").await.unwrap();
    assert!(matches!(outcomes.targets[0].result, TargetResult::TimedOut));

    // Among three, only the late one is cut, at 2 s; the others' answers stand.
    let mut fanout = FanOutLayer::builder()
        .classifier(created_only)
        .branch_deadline(Duration::from_secs(2))
        .build()
        .unwrap()
        .build(vec![
            slow_store(201, Duration::from_millis(10), &flag),
            slow_store(201, Duration::from_secs(60), &flag),
            slow_store(201, Duration::from_millis(500), &flag),
        ])
        .unwrap();
    let start = Instant::now();
    let outcomes = fanout.ready().await.unwrap().call("gus").await.unwrap();
    assert_eq!(start.elapsed(), Duration::from_secs(2));
    assert!(!outcomes.met, "policy all: one timed out");
    assert!(matches!(
        outcomes.targets[0].result,
        TargetResult::Succeeded(201)
    ));
    assert!(matches!(outcomes.targets[1].result, TargetResult::TimedOut));
    assert!(matches!(
        outcomes.targets[2].result,
        TargetResult::Succeeded(201)
    ));
}

#[test]
fn bad_settings_are_typed_errors() {
    let targets = || -> Vec<Store> {
        (0..3)
            .map(|_| BoxCloneService::new(tower::service_fn(|_: &'static str| async { Ok(201) })))
            .collect()
    };
    let err = FanOutLayer::builder()
        .policy(Policy::Quorum(4))
        .build()
        .unwrap()
        .build(targets())
        .unwrap_err();
    assert_eq!(
        err,
        ConfigError::Quorum {
            quorum: 4,
            targets: 3
        }
    );
    assert_eq!(err.setting(), "policy");
    let err = FanOutLayer::builder()
        .build()
        .unwrap()
        .build(Vec::<Store>::new())
        .unwrap_err();
    assert_eq!(err, ConfigError::NoTargets);
    let err = FanOutLayer::builder()
        .deadline(Duration::ZERO)
        .build()
        .unwrap_err();
    assert_eq!(err.setting(), "deadline");
}

/// A store that counts the writes it completed.
fn counting_store(delay: Duration, completed: &Arc<AtomicUsize>) -> Store {
    let completed = completed.clone();
    BoxCloneService::new(tower::service_fn(move |_: &'static str| {
        let completed = completed.clone();
        async move {
            tokio::time::sleep(delay).await;
            completed.fetch_add(1, Ordering::SeqCst);
            Ok(201)
        }
    }))
}

#[tokio::test(start_paused = true)]
async fn stragglers_can_finish_in_the_background_within_a_bound() {
    let completed = Arc::new(AtomicUsize::new(0));
    let build = |within: Duration| {
        FanOutLayer::builder()
            .policy(Policy::Quorum(2))
            .classifier(created_only)
            .finish_stragglers(within)
            .build()
            .unwrap()
            .build(vec![
                counting_store(Duration::from_millis(10), &completed),
                counting_store(Duration::from_millis(10), &completed),
                counting_store(Duration::from_secs(30), &completed),
            ])
            .unwrap()
    };
    // Within 60 s: the answer comes at 10 ms, and the third write still lands later.
    let mut fanout = build(Duration::from_secs(60));
    let outcomes = fanout.ready().await.unwrap().call("gina").await.unwrap();
    assert!(outcomes.met);
    assert!(matches!(
        outcomes.targets[2].result,
        TargetResult::Background
    ));
    assert_eq!(completed.load(Ordering::SeqCst), 2);
    tokio::time::sleep(Duration::from_secs(31)).await;
    assert_eq!(
        completed.load(Ordering::SeqCst),
        3,
        "the straggler finished"
    );

    // The deadline the server received (1 s) does not cut the straggler: the answer was
    // given at 10 ms, and the write still lands at 30 s.
    completed.store(0, Ordering::SeqCst);
    let mut fanout = build(Duration::from_secs(60));
    let ready = fanout.ready().await.unwrap();
    let at = Some(Instant::now() + Duration::from_secs(1));
    let outcomes = bulwark_core::deadline::call_in_scope(at, || ready.call("ida"))
        .await
        .unwrap();
    assert!(outcomes.met);
    tokio::time::sleep(Duration::from_secs(31)).await;
    assert_eq!(
        completed.load(Ordering::SeqCst),
        3,
        "not cut by the deadline"
    );

    // Within 5 s: the straggler is dropped at the bound and never completes.
    completed.store(0, Ordering::SeqCst);
    let mut fanout = build(Duration::from_secs(5));
    fanout.ready().await.unwrap().call("hal").await.unwrap();
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(completed.load(Ordering::SeqCst), 2);
}
