//! Behaviour of the failover set under paused time.

use bulwark_circuit_breaker::{CircuitBreakerLayer, CircuitState};
use bulwark_core::{Event, FailoverReason};
use bulwark_failover::{AllFailed, FailoverLayer, Mode, NoTargetReady};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Instant;
use tower::util::BoxCloneService;
use tower::{Service, ServiceExt};

type Target = BoxCloneService<u32, String, std::io::Error>;

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// A target that refuses connections.
fn refusing(calls: &Arc<AtomicUsize>) -> Target {
    let calls = calls.clone();
    BoxCloneService::new(tower::service_fn(move |_: u32| {
        calls.fetch_add(1, Ordering::SeqCst);
        async { Err(std::io::Error::from(std::io::ErrorKind::ConnectionRefused)) }
    }))
}

/// A target that answers after `delay`, named `name`.
fn answering(name: &'static str, delay: Duration, calls: &Arc<AtomicUsize>) -> Target {
    let calls = calls.clone();
    BoxCloneService::new(tower::service_fn(move |_: u32| {
        calls.fetch_add(1, Ordering::SeqCst);
        async move {
            tokio::time::sleep(delay).await;
            Ok(name.to_string())
        }
    }))
}

/// A target that refuses while `down` is set, and answers `name` otherwise.
fn switchable(name: &'static str, down: &Arc<AtomicBool>) -> Target {
    let down = down.clone();
    BoxCloneService::new(tower::service_fn(move |_: u32| {
        let refuse = down.load(Ordering::SeqCst);
        async move {
            if refuse {
                Err(std::io::Error::from(std::io::ErrorKind::ConnectionRefused))
            } else {
                Ok(name.to_string())
            }
        }
    }))
}

type Log = Arc<Mutex<Vec<(usize, usize, FailoverReason)>>>;

fn recorder() -> (Log, impl Fn(&Event<'_>) + Send + Sync + 'static) {
    let log: Log = Arc::default();
    let l = log.clone();
    (log, move |e: &Event<'_>| {
        if let Event::FailedOver {
            from, to, reason, ..
        } = e
        {
            l.lock().unwrap().push((*from, *to, *reason));
        }
    })
}

/// The failover seed's transcript: [a target that refuses connections, one that answers
/// after 30 s, one that answers at once], timeout 5 s.
#[tokio::test(start_paused = true)]
async fn the_seed_transcript() {
    let calls: Vec<Arc<AtomicUsize>> = (0..3).map(|_| Arc::default()).collect();
    let (log, listener) = recorder();
    let mut fo = FailoverLayer::builder()
        .attempt_timeout(secs(5))
        .listener(listener)
        .build()
        .unwrap()
        .build(vec![
            refusing(&calls[0]),
            answering("echo", secs(30), &calls[1]),
            answering("mock", Duration::ZERO, &calls[2]),
        ])
        .unwrap();

    // First request: refused at once, the 30 s target times out at 5 s, the third answers.
    let start = Instant::now();
    let answer = fo.ready().await.unwrap().call(1).await.unwrap();
    assert_eq!(answer, "mock");
    assert_eq!(start.elapsed(), secs(5));
    assert_eq!(
        *log.lock().unwrap(),
        vec![
            (0, 1, FailoverReason::Error),
            (1, 2, FailoverReason::Timeout)
        ]
    );

    // Second request: sticky, so the third target answers at once.
    let start = Instant::now();
    assert_eq!(fo.ready().await.unwrap().call(2).await.unwrap(), "mock");
    assert_eq!(start.elapsed(), Duration::ZERO);
    let counts: Vec<usize> = calls.iter().map(|c| c.load(Ordering::SeqCst)).collect();
    assert_eq!(counts, vec![1, 1, 2]);
    assert_eq!(fo.current(), 2);
}

#[tokio::test(start_paused = true)]
async fn priority_mode_returns_to_the_primary_once_it_answers() {
    let primary_down = Arc::new(AtomicBool::new(true));
    let never = Arc::new(AtomicBool::new(false));
    let mut fo = FailoverLayer::builder()
        .mode(Mode::Priority)
        .build()
        .unwrap()
        .build(vec![
            switchable("primary", &primary_down),
            switchable("backup", &never),
        ])
        .unwrap();
    assert_eq!(fo.ready().await.unwrap().call(1).await.unwrap(), "backup");
    primary_down.store(false, Ordering::SeqCst);
    assert_eq!(fo.ready().await.unwrap().call(2).await.unwrap(), "primary");

    // Sticky mode, same story: stays on the backup.
    let primary_down = Arc::new(AtomicBool::new(true));
    let mut fo = FailoverLayer::builder()
        .build()
        .unwrap()
        .build(vec![
            switchable("primary", &primary_down),
            switchable("backup", &never),
        ])
        .unwrap();
    assert_eq!(fo.ready().await.unwrap().call(1).await.unwrap(), "backup");
    primary_down.store(false, Ordering::SeqCst);
    assert_eq!(fo.ready().await.unwrap().call(2).await.unwrap(), "backup");
}

#[tokio::test(start_paused = true)]
async fn when_every_target_fails_the_error_lists_each_in_order() {
    let c = Arc::new(AtomicUsize::new(0));
    let mut fo = FailoverLayer::builder()
        .attempt_timeout(secs(5))
        .build()
        .unwrap()
        .build(vec![
            refusing(&c),
            answering("slow", secs(30), &c),
            refusing(&c),
        ])
        .unwrap();
    let err = fo.ready().await.unwrap().call(1).await.unwrap_err();
    let all = err.downcast_ref::<AllFailed>().expect("AllFailed");
    assert_eq!(all.failures().len(), 3);
    assert_eq!(
        err.to_string(),
        "all 3 failover targets failed: [0] connection refused; [1] timed out after 5s; [2] connection refused"
    );
}

#[tokio::test(start_paused = true)]
async fn an_interval_separates_attempts() {
    let c = Arc::new(AtomicUsize::new(0));
    let mut fo = FailoverLayer::builder()
        .interval(Duration::from_millis(500))
        .build()
        .unwrap()
        .build(vec![
            refusing(&c),
            refusing(&c),
            answering("third", Duration::ZERO, &c),
        ])
        .unwrap();
    let start = Instant::now();
    assert_eq!(fo.ready().await.unwrap().call(1).await.unwrap(), "third");
    assert_eq!(start.elapsed(), Duration::from_secs(1));
}

#[tokio::test(start_paused = true)]
async fn open_breakers_in_readiness_mode_are_skipped_without_waiting() {
    let c = Arc::new(AtomicUsize::new(0));
    let breaker = CircuitBreakerLayer::builder()
        .count_window(2)
        .min_calls(1)
        .open_for(secs(30))
        .readiness_mode()
        .build()
        .unwrap();
    let targets = vec![refusing(&c), answering("second", Duration::ZERO, &c)];
    let mut fo = FailoverLayer::builder()
        .mode(Mode::Priority)
        .build()
        .unwrap()
        .build_with(targets, &breaker)
        .unwrap();
    // The first request opens target 0's breaker, then fails over.
    assert_eq!(fo.ready().await.unwrap().call(1).await.unwrap(), "second");
    assert_eq!(fo.targets()[0].handle().state(), CircuitState::Open);
    // Priority mode would start at 0, but its breaker is not ready: skipped at once.
    let before = c.load(Ordering::SeqCst);
    let start = Instant::now();
    assert_eq!(fo.ready().await.unwrap().call(2).await.unwrap(), "second");
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!(
        c.load(Ordering::SeqCst),
        before + 1,
        "only the chosen target was called"
    );
}

/// A target whose readiness can be switched, and which counts the reservations it hands out
/// in `poll_ready` that have not been given back (by `call` ending or the service dropping).
#[derive(Clone)]
struct Gated {
    ready: Arc<Gate>,
    reserved: Arc<AtomicUsize>,
    holding: bool,
    delay: Duration,
}

/// Readiness that can be switched on, waking whoever waited on it.
#[derive(Default)]
struct Gate {
    open: AtomicBool,
    waiters: Mutex<Vec<std::task::Waker>>,
}

impl Gate {
    fn open(&self) {
        self.open.store(true, Ordering::SeqCst);
        for w in self.waiters.lock().unwrap().drain(..) {
            w.wake();
        }
    }
}

impl Gated {
    fn new(ready: bool, delay: Duration) -> (Self, Arc<Gate>, Arc<AtomicUsize>) {
        let gate = Gate::default();
        gate.open.store(ready, Ordering::SeqCst);
        let g = Gated {
            ready: Arc::new(gate),
            reserved: Arc::default(),
            holding: false,
            delay,
        };
        (g.clone(), g.ready.clone(), g.reserved.clone())
    }
}

impl Drop for Gated {
    fn drop(&mut self) {
        if self.holding {
            self.reserved.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

struct Release(Arc<AtomicUsize>);

impl Drop for Release {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Service<u32> for Gated {
    type Response = String;
    type Error = std::io::Error;
    type Future =
        std::pin::Pin<Box<dyn std::future::Future<Output = Result<String, std::io::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if self.holding {
            return Poll::Ready(Ok(()));
        }
        if self.ready.open.load(Ordering::SeqCst) {
            self.holding = true;
            self.reserved.fetch_add(1, Ordering::SeqCst);
            Poll::Ready(Ok(()))
        } else {
            self.ready.waiters.lock().unwrap().push(cx.waker().clone());
            Poll::Pending
        }
    }

    fn call(&mut self, _: u32) -> Self::Future {
        assert!(self.holding, "called without a reservation");
        self.holding = false;
        let release = Release(self.reserved.clone());
        let delay = self.delay;
        Box::pin(async move {
            let _release = release;
            tokio::time::sleep(delay).await;
            Err(std::io::Error::from(std::io::ErrorKind::ConnectionReset))
        })
    }
}

#[tokio::test(start_paused = true)]
async fn with_no_target_ready_it_waits_then_fails_clearly() {
    let (a, _, _) = Gated::new(false, Duration::ZERO);
    let (b, b_ready, _) = Gated::new(false, Duration::ZERO);
    let mut fo = FailoverLayer::builder()
        .wait_for_ready(secs(1))
        .build()
        .unwrap()
        .build(vec![a, b])
        .unwrap();
    let start = Instant::now();
    let err = fo.ready().await.unwrap().call(1).await.unwrap_err();
    assert_eq!(start.elapsed(), secs(1));
    let e = err.downcast_ref::<NoTargetReady>().unwrap();
    assert_eq!((e.targets, e.waited), (2, secs(1)));
    assert_eq!(
        err.to_string(),
        "none of the 2 failover targets was ready within 1s: no target is ready"
    );

    // A target that becomes ready during the wait is used at once.
    let waiting = tokio::spawn(async move {
        let start = Instant::now();
        let _ = fo.ready().await.unwrap().call(2).await;
        start.elapsed()
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    b_ready.open();
    let waited = waiting.await.unwrap();
    assert!(
        waited >= Duration::from_millis(300) && waited < secs(1),
        "{waited:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn dropping_the_future_mid_failover_leaves_nothing_behind() {
    let (a, _, a_reserved) = Gated::new(true, secs(1));
    let (b, _, b_reserved) = Gated::new(true, secs(10));
    let (c, _, c_reserved) = Gated::new(true, secs(10));
    let layer = FailoverLayer::builder().build().unwrap();
    let mut fo = layer.build(vec![a, b, c]).unwrap();
    let tasks_before = tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks();
    let fut = fo.ready().await.unwrap().call(1);
    let mut task = tokio_test::task::spawn(fut);
    assert!(task.poll().is_pending()); // on target 0
    tokio::time::advance(secs(1)).await; // target 0 fails: on to target 1
    assert!(task.poll().is_pending());
    assert_eq!(
        b_reserved.load(Ordering::SeqCst),
        1,
        "target 1 is working on it"
    );
    drop(task);
    for r in [&a_reserved, &b_reserved, &c_reserved] {
        assert_eq!(r.load(Ordering::SeqCst), 0, "no reservation is left");
    }
    assert_eq!(
        tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks(),
        tasks_before,
        "no task is left"
    );
    // And the set still works: the next request is reserved and sent as usual.
    assert!(fo.ready().await.is_ok());
}

/// Never ready (a full pool, say), counting the calls it should never get.
#[derive(Clone)]
struct NeverReady(Arc<AtomicUsize>);

impl Service<u32> for NeverReady {
    type Response = String;
    type Error = std::io::Error;
    type Future = std::future::Ready<Result<String, std::io::Error>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), std::io::Error>> {
        Poll::Pending
    }

    fn call(&mut self, _: u32) -> Self::Future {
        self.0.fetch_add(1, Ordering::SeqCst);
        std::future::ready(Ok(String::from("never")))
    }
}

#[tokio::test(start_paused = true)]
async fn a_target_not_ready_during_a_failover_is_skipped_and_listed() {
    let (a, b, c): (Arc<AtomicUsize>, Arc<AtomicUsize>, Arc<AtomicUsize>) =
        (Arc::default(), Arc::default(), Arc::default());
    let mut fo = FailoverLayer::builder()
        .mode(Mode::Priority)
        .build()
        .unwrap()
        .build(vec![
            refusing(&a),
            BoxCloneService::new(NeverReady(b.clone())),
            refusing(&c),
        ])
        .unwrap();
    let err = fo.ready().await.unwrap().call(1).await.unwrap_err();
    let all = err
        .downcast_ref::<AllFailed>()
        .expect("every target failed");
    let reasons: Vec<&str> = all.failures().iter().map(|f| f.reason.as_str()).collect();
    assert_eq!(reasons.len(), 3, "{reasons:?}");
    assert_eq!(reasons[1], "not ready");
    assert_eq!(
        (
            a.load(Ordering::SeqCst),
            b.load(Ordering::SeqCst),
            c.load(Ordering::SeqCst)
        ),
        (1, 0, 1)
    );
}

#[tokio::test(start_paused = true)]
async fn clones_share_the_sticky_position() {
    // The first target refuses; one clone fails over to the second. Another clone (a
    // request's own copy, as a retry above makes) then starts at the second.
    let (a, b): (Arc<AtomicUsize>, Arc<AtomicUsize>) = (Arc::default(), Arc::default());
    let fo = FailoverLayer::builder()
        .mode(Mode::Sticky)
        .build()
        .unwrap()
        .build(vec![refusing(&a), answering("b", Duration::ZERO, &b)])
        .unwrap();
    let mut first = fo.clone();
    assert_eq!(first.ready().await.unwrap().call(1).await.unwrap(), "b");
    let mut second = fo.clone();
    assert_eq!(second.ready().await.unwrap().call(2).await.unwrap(), "b");
    assert_eq!(
        (a.load(Ordering::SeqCst), b.load(Ordering::SeqCst)),
        (1, 2),
        "the second clone did not try the first target"
    );
}
