//! Behaviour of the hedging layer under paused time and seeded randomness.

use bulwark_core::budget::ResendCap;
use bulwark_core::{Classify, Decision, Event, GiveUpReason, Outcome};
use bulwark_hedge::HedgeLayer;
use bulwark_test_support::{ms, OnDrop, Rng};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt};

/// What a scripted call answers: a status (200 an answer, 503 non-fatal, 500 fatal, 429 with a
/// pushback, 0 "stop hedging") and the call's number.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Answer {
    status: u16,
    call: usize,
    pushback: Option<Duration>,
}

/// The stack's classifier for these answers, as a gRPC classifier would see statuses and
/// pushback.
#[derive(Clone, Copy)]
struct Statuses;

impl Classify<Answer, std::io::Error> for Statuses {
    fn classify(&self, r: &Result<Answer, std::io::Error>) -> Outcome {
        match r {
            Ok(a) if a.status == 200 => Outcome::Success,
            _ => Outcome::Failure,
        }
    }

    fn resend(&self, r: &Result<Answer, std::io::Error>) -> Decision {
        match r {
            Ok(a) => match (a.status, a.pushback) {
                (200, _) => Decision::Accept,
                (503, _) => Decision::Retry,
                (429, Some(wait)) => Decision::RetryAfter(wait),
                (0, _) => Decision::GiveUp(GiveUpReason::Pushback),
                _ => Decision::GiveUp(GiveUpReason::NotRetryable),
            },
            Err(_) => Decision::Retry,
        }
    }
}

/// Calls made, calls dropped before they answered (cancelled), and calls running now.
#[derive(Default, Debug)]
struct Stats {
    calls: AtomicUsize,
    cancelled: AtomicUsize,
    running: AtomicUsize,
}

/// A backend answering call `n` (counted from 0) after `script(n).0` with status
/// `script(n).1` (and a pushback for a 429).
fn backend(
    script: impl Fn(usize, u32) -> (u64, u16) + Send + Sync + 'static,
) -> (
    impl Service<
            u32,
            Response = Answer,
            Error = std::io::Error,
            Future = impl std::future::Future<Output = Result<Answer, std::io::Error>> + Send,
        > + Clone,
    Arc<Stats>,
) {
    let stats = Arc::new(Stats::default());
    let script = Arc::new(script);
    let s = stats.clone();
    let svc = tower::service_fn(move |request: u32| {
        let call = s.calls.fetch_add(1, Ordering::SeqCst);
        let (wait, status) = script(call, request);
        let stats = s.clone();
        async move {
            stats.running.fetch_add(1, Ordering::SeqCst);
            let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let _guard = OnDrop::new({
                let done = done.clone();
                let stats = stats.clone();
                move || {
                    stats.running.fetch_sub(1, Ordering::SeqCst);
                    if !done.load(Ordering::SeqCst) {
                        stats.cancelled.fetch_add(1, Ordering::SeqCst);
                    }
                }
            });
            tokio::time::sleep(ms(wait)).await;
            done.store(true, Ordering::SeqCst);
            Ok(Answer {
                status,
                call,
                pushback: (status == 429).then(|| ms(100)),
            })
        }
    });
    (svc, stats)
}

type Log = Arc<Mutex<Vec<String>>>;

fn recorder() -> (Log, impl Fn(&Event<'_>) + Send + Sync + 'static) {
    let log: Log = Arc::default();
    let l = log.clone();
    (log, move |e: &Event<'_>| {
        let line = match e {
            Event::HedgeSent {
                attempt,
                delay,
                after_failure,
                ..
            } => format!("sent {attempt} after {delay:?} failure={after_failure}"),
            Event::HedgeWon { attempt, .. } => format!("won {attempt}"),
            Event::HedgeRefused {
                attempt, reason, ..
            } => format!("refused {attempt} {reason}"),
            other => format!("{other:?}"),
        };
        l.lock().unwrap().push(line);
    })
}

fn count(log: &Log, prefix: &str) -> usize {
    log.lock()
        .unwrap()
        .iter()
        .filter(|l| l.starts_with(prefix))
        .count()
}

#[tokio::test(start_paused = true)]
async fn a_slow_first_attempt_is_hedged_after_the_delay_and_the_hedge_wins() {
    let (svc, stats) = backend(|n, _| if n == 0 { (1000, 200) } else { (10, 200) });
    let (log, listener) = recorder();
    let svc = HedgeLayer::builder()
        .delay(ms(50))
        .listener(listener)
        .build()
        .unwrap()
        .layer(svc);
    let start = Instant::now();
    let answer = svc.oneshot(1).await.unwrap();
    assert_eq!(answer.call, 1, "the hedge answered");
    assert_eq!(start.elapsed(), ms(60));
    assert_eq!(stats.calls.load(Ordering::SeqCst), 2);
    assert_eq!(
        stats.cancelled.load(Ordering::SeqCst),
        1,
        "the slow attempt was dropped"
    );
    assert_eq!(stats.running.load(Ordering::SeqCst), 0);
    assert_eq!(
        *log.lock().unwrap(),
        vec![
            "sent 2 after 50ms failure=false".to_string(),
            "won 2".to_string()
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_fast_answer_sends_no_hedge() {
    let (svc, stats) = backend(|_, _| (10, 200));
    let (log, listener) = recorder();
    let mut svc = HedgeLayer::builder()
        .delay(ms(50))
        .listener(listener)
        .build()
        .unwrap()
        .layer(svc);
    for i in 0..100 {
        let answer = svc.ready().await.unwrap().call(i).await.unwrap();
        assert_eq!(answer.call, i as usize);
    }
    assert_eq!(stats.calls.load(Ordering::SeqCst), 100);
    assert!(log.lock().unwrap().is_empty(), "{:?}", log.lock().unwrap());
}

#[tokio::test(start_paused = true)]
async fn the_percentile_delay_tracks_a_scripted_latency_distribution() {
    // 95% of answers take 10 to 20 ms, 5% take 300 ms (seeded).
    let rng = Arc::new(Mutex::new(Rng::new(7)));
    let slow_phase = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (svc, stats) = backend({
        let rng = rng.clone();
        let slow_phase = slow_phase.clone();
        move |_, _| {
            let rng = rng.lock().unwrap();
            if slow_phase.load(Ordering::SeqCst) {
                (40 + rng.below(11), 200)
            } else if rng.chance(5) {
                (300, 200)
            } else {
                (10 + rng.below(11), 200)
            }
        }
    });
    let (log, listener) = recorder();
    let layer = HedgeLayer::builder()
        .percentile(0.9)
        .min_samples(50)
        .max_extra_load(1.0)
        .listener(listener)
        .build()
        .unwrap();
    let mut svc = layer.layer(svc);
    assert_eq!(layer.current_delay(), None, "no answers yet: no percentile");
    for i in 0..49 {
        svc.ready().await.unwrap().call(i).await.unwrap();
    }
    assert_eq!(layer.current_delay(), None, "49 answers: still too few");
    assert_eq!(count(&log, "sent"), 0, "no hedge without a delay");
    for i in 0..450 {
        svc.ready().await.unwrap().call(i).await.unwrap();
    }
    // p90 of 10..=20 ms (with the hedges' answers among them): about 19 ms, in a bucket at
    // most 12.5% off.
    let p90 = layer.current_delay().unwrap();
    assert!(p90 >= ms(16) && p90 <= ms(23), "{p90:?}");
    // The slow answers were hedged at that delay.
    assert!(count(&log, "sent") >= 10, "{}", count(&log, "sent"));
    assert!(stats.cancelled.load(Ordering::SeqCst) >= 10);

    // The backend slows down to 40 to 50 ms: once the window has slid past the old answers,
    // the delay follows.
    slow_phase.store(true, Ordering::SeqCst);
    for i in 0..400 {
        svc.ready().await.unwrap().call(i).await.unwrap();
    }
    let p90 = layer.current_delay().unwrap();
    assert!(p90 >= ms(43) && p90 <= ms(56), "{p90:?}");
}

#[tokio::test(start_paused = true)]
async fn the_budget_bounds_extra_load_over_a_thousand_requests() {
    // Every first attempt is slow, every hedge fast: without a budget, every request would be
    // hedged.
    let seen = Mutex::new(std::collections::HashSet::new());
    let (svc, stats) = backend(move |_, request| {
        if seen.lock().unwrap().insert(request) {
            (100, 200)
        } else {
            (5, 200)
        }
    });
    let (log, listener) = recorder();
    let svc = HedgeLayer::builder()
        .delay(ms(10))
        .max_extra_load(0.05)
        .min_hedges_per_sec(0)
        .listener(listener)
        .build()
        .unwrap()
        .layer(svc);
    // Ten callers, 100 requests each.
    let callers: Vec<_> = (0..10)
        .map(|c| {
            let mut svc = svc.clone();
            tokio::spawn(async move {
                for i in 0..100 {
                    let _ = svc.ready().await.unwrap().call(c * 100 + i).await.unwrap();
                }
            })
        })
        .collect();
    for c in callers {
        c.await.unwrap();
    }
    let hedges = count(&log, "sent");
    let refused = count(&log, "refused");
    assert_eq!(hedges + refused, 1000, "every request had a hedge due");
    assert_eq!(stats.calls.load(Ordering::SeqCst), 1000 + hedges);
    // At most 5% of the requests in any window (and no floor): the first request of the
    // window counts from the budget's first snapshot, so a little less.
    assert!(hedges <= 50, "{hedges} hedges for 1000 requests");
    assert!(hedges >= 35, "the budget is not stingy: {hedges}");
    assert!(log
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.starts_with("refused"))
        .all(|l| l.ends_with("budget")));
}

#[tokio::test(start_paused = true)]
async fn non_fatal_answers_send_the_next_hedge_at_once() {
    // Two non-fatal answers, then a good one; the timer (1 s) never fires.
    let (svc, stats) = backend(|n, _| if n < 2 { (10, 503) } else { (10, 200) });
    let (log, listener) = recorder();
    let svc = HedgeLayer::builder()
        .max_attempts(3)
        .delay(ms(1000))
        .classifier(Statuses)
        .listener(listener)
        .build()
        .unwrap()
        .layer(svc);
    let start = Instant::now();
    let answer = svc.oneshot(1).await.unwrap();
    assert_eq!((answer.status, answer.call), (200, 2));
    assert_eq!(start.elapsed(), ms(30));
    assert_eq!(stats.calls.load(Ordering::SeqCst), 3);
    assert_eq!(
        *log.lock().unwrap(),
        vec![
            "sent 2 after 0ns failure=true".to_string(),
            "sent 3 after 0ns failure=true".to_string(),
            "won 3".to_string()
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn when_every_attempt_fails_non_fatally_the_last_answer_is_returned() {
    let (svc, stats) = backend(|n, _| if n == 0 { (100, 503) } else { (10, 503) });
    let svc = HedgeLayer::builder()
        .max_attempts(2)
        .delay(ms(50))
        .classifier(Statuses)
        .build()
        .unwrap()
        .layer(svc);
    let start = Instant::now();
    let answer = svc.oneshot(1).await.unwrap();
    // The hedge failed at 60 ms; the first attempt, the last to answer, at 100 ms.
    assert_eq!((answer.status, answer.call), (503, 0));
    assert_eq!(start.elapsed(), ms(100));
    assert_eq!(stats.calls.load(Ordering::SeqCst), 2);
    assert_eq!(stats.cancelled.load(Ordering::SeqCst), 0);
}

#[tokio::test(start_paused = true)]
async fn a_fatal_answer_is_returned_and_the_others_cancelled() {
    let (svc, stats) = backend(|n, _| if n < 2 { (1000, 200) } else { (5, 500) });
    let (log, listener) = recorder();
    let svc = HedgeLayer::builder()
        .max_attempts(3)
        .delay(ms(10))
        .classifier(Statuses)
        .listener(listener)
        .build()
        .unwrap()
        .layer(svc);
    let start = Instant::now();
    let answer = svc.oneshot(1).await.unwrap();
    assert_eq!((answer.status, answer.call), (500, 2));
    assert_eq!(start.elapsed(), ms(25));
    assert_eq!(stats.cancelled.load(Ordering::SeqCst), 2);
    assert_eq!(stats.running.load(Ordering::SeqCst), 0);
    assert_eq!(count(&log, "won 3"), 1);
}

#[tokio::test(start_paused = true)]
async fn pushback_delays_the_next_hedge() {
    // The first attempt answers 429 with a 100 ms pushback at 10 ms: the hedge goes at 110 ms,
    // not at once and not at the 1 s delay.
    let (svc, stats) = backend(|n, _| if n == 0 { (10, 429) } else { (10, 200) });
    let svc = HedgeLayer::builder()
        .delay(ms(1000))
        .classifier(Statuses)
        .build()
        .unwrap()
        .layer(svc);
    let start = Instant::now();
    let answer = svc.oneshot(1).await.unwrap();
    assert_eq!((answer.status, answer.call), (200, 1));
    assert_eq!(start.elapsed(), ms(120));
    assert_eq!(stats.calls.load(Ordering::SeqCst), 2);

    // A pushback longer than `max_pushback` stops the hedges: the 429 is the answer.
    let (svc, stats) = backend(|n, _| if n == 0 { (10, 429) } else { (10, 200) });
    let svc = HedgeLayer::builder()
        .delay(ms(1000))
        .max_pushback(ms(50))
        .classifier(Statuses)
        .build()
        .unwrap()
        .layer(svc);
    let answer = svc.oneshot(1).await.unwrap();
    assert_eq!(answer.status, 429);
    assert_eq!(stats.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn a_pushback_saying_stop_stops_further_hedges() {
    // The first attempt is slow but good; the hedge says "stop" at 60 ms: no third attempt,
    // and the first attempt's answer comes at 200 ms.
    let (svc, stats) = backend(|n, _| if n == 0 { (200, 200) } else { (10, 0) });
    let (log, listener) = recorder();
    let svc = HedgeLayer::builder()
        .max_attempts(3)
        .delay(ms(50))
        .classifier(Statuses)
        .listener(listener)
        .build()
        .unwrap()
        .layer(svc);
    let start = Instant::now();
    let answer = svc.oneshot(1).await.unwrap();
    assert_eq!((answer.status, answer.call), (200, 0));
    assert_eq!(start.elapsed(), ms(200));
    assert_eq!(stats.calls.load(Ordering::SeqCst), 2);
    assert_eq!(
        *log.lock().unwrap(),
        vec![
            "sent 2 after 50ms failure=false".to_string(),
            "refused 3 pushback".to_string()
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn hedges_hold_a_place_under_the_shared_cap_and_give_it_back() {
    let cap = ResendCap::new(1);
    let (svc, stats) = backend(|n, _| if n == 0 { (1000, 200) } else { (500, 200) });
    let (log, listener) = recorder();
    let layer = HedgeLayer::builder()
        .delay(ms(10))
        .concurrency_cap(cap.clone())
        .listener(listener)
        .build()
        .unwrap();
    let svc = layer.layer(svc);
    // One request's hedge is in flight (sent at 10 ms, running for 500).
    let mut first = tokio_test::task::spawn(svc.clone().oneshot(1));
    assert!(first.poll().is_pending());
    tokio::time::sleep(ms(20)).await;
    assert!(first.poll().is_pending());
    assert_eq!(cap.in_flight(), 1);
    // Another request finds the cap full: its hedge is not sent.
    let second = tokio::time::timeout(ms(100), svc.clone().oneshot(2)).await;
    assert!(
        second.is_err(),
        "the second request's first attempt is slow too"
    );
    assert_eq!(count(&log, "refused 2 concurrency_cap"), 1);
    // Cancelling the first request gives the place back and drops its attempts.
    drop(first);
    assert_eq!(cap.in_flight(), 0);
    assert_eq!(stats.running.load(Ordering::SeqCst), 0);
}

/// Errors are fatal for this classifier (as a read path that does not resend "no endpoint
/// ready" says), answers are answers.
#[derive(Clone, Copy)]
struct ErrorsAreFatal;

impl Classify<u32, std::io::Error> for ErrorsAreFatal {
    fn classify(&self, r: &Result<u32, std::io::Error>) -> Outcome {
        if r.is_ok() {
            Outcome::Success
        } else {
            Outcome::Failure
        }
    }

    fn resend(&self, r: &Result<u32, std::io::Error>) -> Decision {
        match r {
            Ok(_) => Decision::Accept,
            Err(_) => Decision::GiveUp(GiveUpReason::NotRetryable),
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_hedge_that_fails_with_an_error_does_not_cancel_the_attempt_in_flight() {
    // The first call answers after 100 ms; the hedge (sent at 10 ms) fails at once with an
    // error the classifier calls fatal, as a hedge that finds no endpoint to take it does.
    let calls = Arc::new(AtomicUsize::new(0));
    let first_dropped = Arc::new(AtomicUsize::new(0));
    let svc = tower::service_fn({
        let calls = calls.clone();
        let first_dropped = first_dropped.clone();
        move |_: ()| {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            let guard = (n == 0).then(|| {
                let d = first_dropped.clone();
                OnDrop::new(move || {
                    d.fetch_add(1, Ordering::SeqCst);
                })
            });
            async move {
                if n == 0 {
                    tokio::time::sleep(ms(100)).await;
                    std::mem::forget(guard);
                    Ok(7)
                } else {
                    Err(std::io::Error::other("no endpoint ready"))
                }
            }
        }
    });
    let layer = HedgeLayer::builder()
        .delay(ms(10))
        .classifier(ErrorsAreFatal)
        .build()
        .unwrap();
    let mut svc = layer.layer(svc);
    let start = Instant::now();
    let answer = svc.ready().await.unwrap().call(()).await;
    assert_eq!(
        answer.unwrap(),
        7,
        "the first attempt's answer, not the hedge's error"
    );
    assert_eq!(start.elapsed(), ms(100));
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "one hedge sent, and no other"
    );
    assert_eq!(
        first_dropped.load(Ordering::SeqCst),
        0,
        "the first attempt ran to its end"
    );
}

#[tokio::test(start_paused = true)]
async fn an_error_from_the_last_attempt_running_is_the_answer() {
    // Both attempts fail with fatal errors: the request ends with an error once both ended.
    let calls = Arc::new(AtomicUsize::new(0));
    let svc = tower::service_fn({
        let calls = calls.clone();
        move |_: ()| {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            async move {
                if n == 0 {
                    tokio::time::sleep(ms(100)).await;
                }
                Err::<u32, _>(std::io::Error::other(format!("attempt {n}")))
            }
        }
    });
    let layer = HedgeLayer::builder()
        .delay(ms(10))
        .classifier(ErrorsAreFatal)
        .build()
        .unwrap();
    let mut svc = layer.layer(svc);
    let start = Instant::now();
    let err = svc.ready().await.unwrap().call(()).await.unwrap_err();
    assert_eq!(err.to_string(), "attempt 0");
    assert_eq!(start.elapsed(), ms(100));
}

#[tokio::test(start_paused = true)]
async fn no_hedge_is_sent_once_the_deadline_in_scope_has_passed() {
    // The server received a 30 ms deadline; the hedge would go at 50 ms: it is not sent, and
    // the first attempt (this layer does not end it; a retry or failover above would) still
    // gives the answer.
    let (svc, stats) = backend(|_, _| (100, 200));
    let (log, listener) = recorder();
    let svc = HedgeLayer::builder()
        .delay(ms(50))
        .listener(listener)
        .build()
        .unwrap()
        .layer(svc);
    let at = Instant::now() + ms(30);
    let answer = bulwark_core::deadline::scope(Some(at), svc.clone().oneshot(1))
        .await
        .unwrap();
    assert_eq!(answer.call, 0);
    assert_eq!(stats.calls.load(Ordering::SeqCst), 1);
    assert_eq!(*log.lock().unwrap(), vec!["refused 2 deadline".to_string()]);

    // A hedge due before the deadline is sent as usual.
    let at = Instant::now() + ms(80);
    let answer = bulwark_core::deadline::scope(Some(at), svc.clone().oneshot(2))
        .await
        .unwrap();
    assert_eq!(answer.call, 1, "the first attempt of this request");
    assert_eq!(stats.calls.load(Ordering::SeqCst), 3);
    assert_eq!(count(&log, "sent 2"), 1);

    // Not inherited: the hedge goes at 50 ms whatever the deadline.
    let (svc, stats) = backend(|_, _| (100, 200));
    let svc = HedgeLayer::builder()
        .delay(ms(50))
        .inherit_deadline(false)
        .build()
        .unwrap()
        .layer(svc);
    let at = Instant::now() + ms(30);
    bulwark_core::deadline::scope(Some(at), svc.oneshot(1))
        .await
        .unwrap();
    assert_eq!(stats.calls.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn with_no_attempt_out_the_last_answer_comes_at_the_deadline_not_after_a_pushback() {
    // The first attempt answers 429 with a 100 ms pushback at 10 ms; the deadline in scope is
    // at 40 ms: no hedge is waited for past it, the 429 is the answer at 40 ms.
    let (svc, stats) = backend(|n, _| if n == 0 { (10, 429) } else { (10, 200) });
    let (log, listener) = recorder();
    let svc = HedgeLayer::builder()
        .delay(ms(1000))
        .classifier(Statuses)
        .listener(listener)
        .build()
        .unwrap()
        .layer(svc);
    let start = Instant::now();
    let answer = bulwark_core::deadline::scope(Some(start + ms(40)), svc.oneshot(1))
        .await
        .unwrap();
    assert_eq!(answer.status, 429);
    assert_eq!(start.elapsed(), ms(40));
    assert_eq!(stats.calls.load(Ordering::SeqCst), 1);
    assert_eq!(*log.lock().unwrap(), vec!["refused 2 deadline".to_string()]);
}

/// `inner`, ready only while `open` is set (a balancer with no endpoint ready, say). Nothing
/// wakes a caller when it opens: only a timer of the caller's can.
#[derive(Clone)]
struct Gate<S> {
    inner: S,
    open: Arc<std::sync::atomic::AtomicBool>,
}

impl<S: Service<u32>> Service<u32> for Gate<S> {
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), S::Error>> {
        if self.open.load(Ordering::SeqCst) {
            self.inner.poll_ready(cx)
        } else {
            std::task::Poll::Pending
        }
    }

    fn call(&mut self, request: u32) -> S::Future {
        // Closed after the first attempt: no hedge finds it ready.
        self.open.store(false, Ordering::SeqCst);
        self.inner.call(request)
    }
}

#[tokio::test(start_paused = true)]
async fn a_hedge_waiting_for_the_service_to_be_ready_does_not_outlast_the_deadline() {
    // The first attempt answers 429 (pushback 100 ms) at 10 ms; the hedge is due at 110 ms,
    // but the service never becomes ready for it. The deadline in scope is at 150 ms: the 429
    // is the answer then, and no hedge was sent.
    let (svc, stats) = backend(|_, _| (10, 429));
    let (log, listener) = recorder();
    let gate = Gate {
        inner: svc,
        open: Arc::new(std::sync::atomic::AtomicBool::new(true)),
    };
    let svc = HedgeLayer::builder()
        .delay(ms(1000))
        .classifier(Statuses)
        .listener(listener)
        .build()
        .unwrap()
        .layer(gate);
    let start = Instant::now();
    let answer = tokio::time::timeout(
        ms(5000),
        bulwark_core::deadline::scope(Some(start + ms(150)), svc.oneshot(1)),
    )
    .await
    .expect("answered by the deadline")
    .unwrap();
    assert_eq!(answer.status, 429);
    assert_eq!(start.elapsed(), ms(150));
    assert_eq!(stats.calls.load(Ordering::SeqCst), 1);
    assert_eq!(*log.lock().unwrap(), vec!["refused 2 deadline".to_string()]);
}

#[tokio::test(start_paused = true)]
async fn a_hedge_refused_by_the_cap_stops_the_later_hedges_of_that_request() {
    // Three attempts allowed, a hedge every 10 ms; the shared cap is full (held here) when the
    // first hedge is due, and free again before the second would be: no hedge goes at all,
    // and the slow first attempt is the answer.
    let cap = ResendCap::new(1);
    let (svc, stats) = backend(|_, _| (100, 200));
    let (log, listener) = recorder();
    let svc = HedgeLayer::builder()
        .max_attempts(3)
        .delay(ms(10))
        .concurrency_cap(cap.clone())
        .listener(listener)
        .build()
        .unwrap()
        .layer(svc);
    let held = cap.try_acquire().unwrap();
    let mut request = tokio_test::task::spawn(svc.oneshot(1));
    assert!(request.poll().is_pending());
    tokio::time::sleep(ms(15)).await;
    assert!(request.poll().is_pending());
    drop(held);
    let answer = request.await.unwrap();
    assert_eq!(answer.call, 0);
    assert_eq!(stats.calls.load(Ordering::SeqCst), 1);
    assert_eq!(
        *log.lock().unwrap(),
        vec!["refused 2 concurrency_cap".to_string()]
    );
}
