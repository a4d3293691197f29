//! Behaviour of the retry layer under paused time and seeded randomness.

use bulwark_core::backoff::{ExponentialBackoff, Jitter};
use bulwark_core::{BoxError, Event, GiveUpReason, SplitMix64};
use bulwark_retry::{AttemptTimedOut, BackoffRetryLayer, BudgetConfig, DeadlineExceeded};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn fixed(delay: Duration) -> ExponentialBackoff {
    ExponentialBackoff::new(delay, 1.0, delay, Jitter::None).unwrap()
}

/// A backend that fails (connection reset) until attempt `succeed_on`, counting calls.
fn flaky(
    succeed_on: u32,
) -> (
    impl Service<
            u32,
            Response = u32,
            Error = std::io::Error,
            Future = impl std::future::Future<Output = Result<u32, std::io::Error>> + Send,
        > + Clone,
    Arc<AtomicU32>,
) {
    let calls = Arc::new(AtomicU32::new(0));
    let counter = calls.clone();
    let svc = tower::service_fn(move |req: u32| {
        let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
        async move {
            if n >= succeed_on {
                Ok(req * 10)
            } else {
                Err(std::io::Error::from(std::io::ErrorKind::ConnectionReset))
            }
        }
    });
    (svc, calls)
}

type Log = Arc<Mutex<Vec<String>>>;

fn recorder() -> (Log, impl Fn(&Event<'_>) + Send + Sync + 'static) {
    let log: Log = Arc::default();
    let l = log.clone();
    (log, move |e: &Event<'_>| {
        let line = match e {
            Event::RetryScheduled {
                attempt,
                delay,
                server_hint,
                timed_out,
                ..
            } => format!(
                "retry after {attempt} in {}ms{}{}",
                delay.as_millis(),
                if *server_hint { " (server)" } else { "" },
                if *timed_out { " (timeout)" } else { "" }
            ),
            Event::RetryGaveUp {
                attempts, reason, ..
            } => format!("gave up after {attempts}: {reason}"),
            _ => return,
        };
        l.lock().unwrap().push(line);
    })
}

#[tokio::test(start_paused = true)]
async fn a_flaky_backend_succeeds_on_attempt_k() {
    let (backend, calls) = flaky(3);
    let (log, listener) = recorder();
    let mut svc = BackoffRetryLayer::builder()
        .max_attempts(3)
        .backoff(ExponentialBackoff::new(ms(100), 2.0, ms(1000), Jitter::None).unwrap())
        .listener(listener)
        .build()
        .unwrap()
        .layer(backend);
    let start = Instant::now();
    assert_eq!(svc.ready().await.unwrap().call(7).await.unwrap(), 70);
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    // Waited 100 ms then 200 ms.
    assert_eq!(start.elapsed(), ms(300));
    assert_eq!(
        *log.lock().unwrap(),
        vec!["retry after 1 in 100ms", "retry after 2 in 200ms"]
    );
}

#[tokio::test(start_paused = true)]
async fn max_attempts_stops_and_returns_the_last_error() {
    let (backend, calls) = flaky(10);
    let (log, listener) = recorder();
    let mut svc = BackoffRetryLayer::builder()
        .max_attempts(4)
        .backoff(fixed(ms(10)))
        .listener(listener)
        .build()
        .unwrap()
        .layer(backend);
    let err = svc.ready().await.unwrap().call(1).await.unwrap_err();
    assert_eq!(
        err.downcast_ref::<std::io::Error>().unwrap().kind(),
        std::io::ErrorKind::ConnectionReset
    );
    assert_eq!(calls.load(Ordering::SeqCst), 4);
    assert_eq!(
        log.lock().unwrap().last().unwrap(),
        "gave up after 4: max_attempts"
    );
}

#[tokio::test(start_paused = true)]
async fn one_attempt_means_no_retry_and_no_copy() {
    let (backend, calls) = flaky(2);
    let mut svc = BackoffRetryLayer::builder()
        .max_attempts(1)
        .build()
        .unwrap()
        .layer(backend);
    assert!(svc.ready().await.unwrap().call(1).await.is_err());
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn the_budget_stops_a_retry_storm() {
    let (backend, calls) = flaky(u32::MAX); // every call fails
    let (log, listener) = recorder();
    let layer = BackoffRetryLayer::builder()
        .max_attempts(3)
        .backoff(fixed(ms(1)))
        .budget(BudgetConfig {
            ratio: 0.2,
            floor_per_sec: 10,
            window: Duration::from_secs(10),
        })
        .listener(listener)
        .build()
        .unwrap();
    let budget = layer.budget().unwrap().clone();
    // 100 requests a second for 30 s, each from its own clone (as a server's handlers do),
    // so every deposit reaches the budget.
    let svc = layer.layer(backend);
    let requests = 3_000u32;
    let mut calls_at_20s = 0;
    for i in 0..requests {
        if i == 2_000 {
            calls_at_20s = calls.load(Ordering::SeqCst);
        }
        let mut one = svc.clone();
        let _ = one.ready().await.unwrap().call(i).await;
        drop(one);
        tokio::time::advance(ms(10)).await;
    }
    let extra = calls.load(Ordering::SeqCst) - requests;
    // The last 10 s, in steady state: at most 20% of its 1,000 requests plus the floor
    // (10/s x 10 s), with one 1 s snapshot slot of slack (100 requests: 20 retries).
    let last_window = calls.load(Ordering::SeqCst) - calls_at_20s - 1_000;
    assert!(
        last_window <= 200 + 100 + 20,
        "{last_window} retries in the last 10 s"
    );
    // Over the whole run a sliding window can grant its floor once more at the edges:
    // at most 20% of all requests plus the floor over 30 s + 10 s.
    assert!(
        extra <= requests / 5 + 400,
        "{extra} retries for {requests} requests"
    );
    // Without a budget there would have been 2 retries per request.
    assert!(extra < requests / 2, "{extra}");
    let log = log.lock().unwrap();
    assert!(
        log.iter().any(|l| l.ends_with(": budget")),
        "the event names the budget"
    );
    assert!(budget.stats().retries > 0);
}

#[tokio::test(start_paused = true)]
async fn a_shared_budget_bounds_two_layers_together() {
    let budget =
        Arc::new(bulwark_core::budget::RetryBudget::new(0.0, 1, Duration::from_secs(10)).unwrap());
    let (a, a_calls) = flaky(u32::MAX);
    let (b, b_calls) = flaky(u32::MAX);
    let build = |backend| {
        BackoffRetryLayer::builder()
            .max_attempts(10)
            .backoff(fixed(ms(1)))
            .shared_budget(budget.clone())
            .build()
            .unwrap()
            .layer(backend)
    };
    let mut a = build(a);
    let mut b = build(b);
    for i in 0..10 {
        let _ = a.ready().await.unwrap().call(i).await;
        let _ = b.ready().await.unwrap().call(i).await;
    }
    // The floor is 1/s over 10 s: 10 retries between the two layers, not 10 each.
    let retries = a_calls.load(Ordering::SeqCst) + b_calls.load(Ordering::SeqCst) - 20;
    assert_eq!(retries, 10);
}

#[tokio::test(start_paused = true)]
async fn the_deadline_cuts_the_sleep() {
    let (backend, calls) = flaky(u32::MAX);
    let (log, listener) = recorder();
    let mut svc = BackoffRetryLayer::builder()
        .max_attempts(5)
        .backoff(fixed(Duration::from_secs(2)))
        .deadline(Duration::from_secs(3))
        .listener(listener)
        .build()
        .unwrap()
        .layer(backend);
    let start = Instant::now();
    assert!(svc.ready().await.unwrap().call(1).await.is_err());
    // Attempt 1 at 0 s, attempt 2 at 2 s; a third would start at 4 s, past the deadline:
    // stop at 2 s with the last outcome instead of sleeping.
    assert_eq!(start.elapsed(), Duration::from_secs(2));
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(
        log.lock().unwrap().last().unwrap(),
        "gave up after 2: deadline"
    );
}

#[tokio::test(start_paused = true)]
async fn the_deadline_cuts_a_slow_attempt() {
    let backend = tower::service_fn(|_: u32| async {
        tokio::time::sleep(Duration::from_secs(60)).await;
        Ok::<_, std::io::Error>(1)
    });
    let mut svc = BackoffRetryLayer::builder()
        .deadline(Duration::from_secs(5))
        .build()
        .unwrap()
        .layer(backend);
    let start = Instant::now();
    let err = svc.ready().await.unwrap().call(1).await.unwrap_err();
    assert_eq!(start.elapsed(), Duration::from_secs(5));
    let e = err.downcast_ref::<DeadlineExceeded>().unwrap();
    assert_eq!((e.deadline, e.attempts), (Duration::from_secs(5), 1));
}

#[tokio::test(start_paused = true)]
async fn a_timed_out_attempt_is_retried() {
    let calls = Arc::new(AtomicU32::new(0));
    let counter = calls.clone();
    let backend = tower::service_fn(move |_: u32| {
        let n = counter.fetch_add(1, Ordering::SeqCst);
        async move {
            if n == 0 {
                tokio::time::sleep(Duration::from_secs(30)).await; // the stalled first attempt
            }
            Ok::<_, std::io::Error>(n)
        }
    });
    let (log, listener) = recorder();
    let mut svc = BackoffRetryLayer::builder()
        .attempt_timeout(Duration::from_secs(1))
        .backoff(fixed(ms(100)))
        .listener(listener)
        .build()
        .unwrap()
        .layer(backend);
    let start = Instant::now();
    assert_eq!(svc.ready().await.unwrap().call(1).await.unwrap(), 1);
    assert_eq!(start.elapsed(), ms(1100));
    assert_eq!(
        *log.lock().unwrap(),
        vec!["retry after 1 in 100ms (timeout)"]
    );
}

#[tokio::test(start_paused = true)]
async fn timeouts_on_every_attempt_end_with_attempt_timed_out() {
    let backend = tower::service_fn(|_: u32| async {
        tokio::time::sleep(Duration::from_secs(30)).await;
        Ok::<_, std::io::Error>(0)
    });
    let mut svc = BackoffRetryLayer::builder()
        .max_attempts(2)
        .attempt_timeout(Duration::from_secs(1))
        .backoff(fixed(ms(100)))
        .build()
        .unwrap()
        .layer(backend);
    let err = svc.ready().await.unwrap().call(1).await.unwrap_err();
    let e = err.downcast_ref::<AttemptTimedOut>().unwrap();
    assert_eq!((e.after, e.attempts), (Duration::from_secs(1), 2));
}

#[tokio::test(start_paused = true)]
async fn jitter_is_seeded() {
    async fn delays(seed: u64) -> Vec<String> {
        let (backend, _) = flaky(u32::MAX);
        let (log, listener) = recorder();
        let mut svc = BackoffRetryLayer::builder()
            .max_attempts(5)
            .no_budget()
            .backoff(ExponentialBackoff::new(ms(100), 2.0, ms(10_000), Jitter::Full).unwrap())
            .random(SplitMix64::new(seed))
            .listener(listener)
            .build()
            .unwrap()
            .layer(backend);
        let _ = svc.ready().await.unwrap().call(1).await;
        let v = log.lock().unwrap().clone();
        v
    }
    let a = delays(1).await;
    assert_eq!(a, delays(1).await);
    assert_ne!(a, delays(2).await);
}

#[tokio::test(start_paused = true)]
async fn a_dropped_future_mid_backoff_stops_retrying() {
    let (backend, calls) = flaky(u32::MAX);
    let mut svc = BackoffRetryLayer::builder()
        .max_attempts(5)
        .backoff(fixed(Duration::from_secs(1)))
        .build()
        .unwrap()
        .layer(backend);
    let fut = svc.ready().await.unwrap().call(1);
    let mut task = tokio_test::task::spawn(fut);
    assert!(task.poll().is_pending()); // attempt 1 failed, now waiting
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    drop(task);
    tokio::time::advance(Duration::from_secs(10)).await;
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn errors_are_boxed_and_typed() {
    let (backend, _) = flaky(u32::MAX);
    let mut svc = BackoffRetryLayer::builder()
        .max_attempts(1)
        .build()
        .unwrap()
        .layer(backend);
    let err: BoxError = svc.ready().await.unwrap().call(1).await.unwrap_err();
    assert!(err.is::<std::io::Error>());
    let _ = GiveUpReason::Budget; // re-exported for matching on events
}

/// A service that answers its first call with a timeout-provoking stall, then stays not
/// ready: the deadline must end the wait for readiness with `DeadlineExceeded`.
#[derive(Clone)]
struct StallThenNeverReady {
    calls: Arc<AtomicU32>,
}

impl Service<u32> for StallThenNeverReady {
    type Response = u32;
    type Error = std::io::Error;
    type Future =
        std::pin::Pin<Box<dyn std::future::Future<Output = Result<u32, std::io::Error>> + Send>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), std::io::Error>> {
        if self.calls.load(Ordering::SeqCst) == 0 {
            std::task::Poll::Ready(Ok(()))
        } else {
            std::task::Poll::Pending // never ready again (and never wakes: only the deadline can)
        }
    }

    fn call(&mut self, _: u32) -> Self::Future {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Box::pin(async {
            tokio::time::sleep(Duration::from_secs(60)).await;
            Ok(0)
        })
    }
}

#[tokio::test(start_paused = true)]
async fn the_deadline_ends_a_wait_for_readiness() {
    let backend = StallThenNeverReady {
        calls: Arc::default(),
    };
    let mut svc = BackoffRetryLayer::builder()
        .attempt_timeout(Duration::from_secs(1))
        .deadline(Duration::from_secs(3))
        .backoff(fixed(ms(100)))
        .build()
        .unwrap()
        .layer(backend);
    let start = Instant::now();
    let err = svc.ready().await.unwrap().call(1).await.unwrap_err();
    assert_eq!(start.elapsed(), Duration::from_secs(3));
    assert!(err.is::<DeadlineExceeded>(), "{err}");
}
