//! Behaviour of the breaker, one item of the contract per test, under paused tokio time.

mod common;

use bulwark_circuit_breaker::{CircuitBreakerLayer, CircuitState, Misuse, Mode, Outcome};
use bulwark_core::{Event, SplitMix64, TripReason};
use common::{ms, open_of, secs, send, Backend, Reply};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_test::{assert_pending, assert_ready};
use tower::{Layer, Service, ServiceExt};

fn layer() -> bulwark_circuit_breaker::Builder {
    CircuitBreakerLayer::builder()
        .name("test")
        .failure_rate(0.5)
        .count_window(10)
        .min_calls(5)
        .open_for(secs(10))
}

#[tokio::test(start_paused = true)]
async fn trips_on_failure_rate_once_min_calls_are_in() {
    let backend = Backend::default();
    let mut svc = layer().build().unwrap().layer(backend.clone());
    let h = svc.handle();
    for _ in 0..4 {
        assert!(send(&mut svc, Reply::Fail).await.is_err());
    }
    // Four failures in four calls is 100%, but below min_calls.
    assert_eq!(h.state(), CircuitState::Closed);
    assert!(!h.metrics().min_calls_reached);
    assert!(send(&mut svc, Reply::Fail).await.is_err());
    assert_eq!(h.state(), CircuitState::Open);
    assert_eq!(backend.calls(), 5);
}

#[tokio::test(start_paused = true)]
async fn stays_closed_below_the_threshold() {
    let mut svc = layer().build().unwrap().layer(Backend::default());
    let h = svc.handle();
    // F S S F S S F S S F: never 50% once min_calls are in; 4 of 10 at the end.
    for i in 0..10 {
        let reply = if i % 3 == 0 { Reply::Fail } else { Reply::Ok };
        let _ = send(&mut svc, reply).await;
    }
    let m = h.metrics();
    assert_eq!(
        (m.state, m.calls, m.failures),
        (CircuitState::Closed, 10, 4)
    );
    assert!((m.failure_rate - 0.4).abs() < 1e-9);
}

#[tokio::test(start_paused = true)]
async fn the_count_window_slides_old_outcomes_out() {
    let mut svc = CircuitBreakerLayer::builder()
        .failure_rate(0.75)
        .count_window(4)
        .min_calls(4)
        .build()
        .unwrap()
        .layer(Backend::default());
    let h = svc.handle();
    for _ in 0..6 {
        send(&mut svc, Reply::Ok).await.unwrap();
    }
    for _ in 0..2 {
        let _ = send(&mut svc, Reply::Fail).await;
    }
    // Window [S, S, F, F]: 50%. A cumulative count would say 2 of 8.
    assert_eq!(h.metrics().failures, 2);
    assert_eq!(h.state(), CircuitState::Closed);
    let _ = send(&mut svc, Reply::Fail).await;
    // Window [S, F, F, F]: 75% trips, though only 3 of all 9 calls failed.
    assert_eq!(h.state(), CircuitState::Open);
}

#[tokio::test(start_paused = true)]
async fn open_fails_fast_without_reaching_the_service() {
    let backend = Backend::default();
    let mut svc = layer().build().unwrap().layer(backend.clone());
    let h = svc.handle();
    for _ in 0..5 {
        let _ = send(&mut svc, Reply::Fail).await;
    }
    assert_eq!(backend.calls(), 5);
    for _ in 0..3 {
        let err = send(&mut svc, Reply::Ok).await.unwrap_err();
        let open = open_of(&err).expect("an Open error");
        assert_eq!(open.state(), CircuitState::Open);
        assert_eq!(open.retry_after(), Some(secs(10)));
    }
    assert_eq!(backend.calls(), 5, "no refused call reached the backend");
    assert_eq!(h.metrics().not_permitted, 3);
}

#[tokio::test(start_paused = true)]
async fn half_open_probe_success_closes_with_a_fresh_window() {
    let backend = Backend::default();
    let mut svc = layer().build().unwrap().layer(backend.clone());
    let h = svc.handle();
    for _ in 0..5 {
        let _ = send(&mut svc, Reply::Fail).await;
    }
    tokio::time::advance(secs(10)).await;
    // The open period is over: the state reads half-open before any call.
    assert_eq!(h.state(), CircuitState::HalfOpen);
    send(&mut svc, Reply::Ok).await.unwrap();
    let m = h.metrics();
    assert_eq!((m.state, m.calls, m.failures), (CircuitState::Closed, 0, 0));
    assert_eq!(backend.calls(), 6);
}

#[tokio::test(start_paused = true)]
async fn half_open_probe_failure_opens_again() {
    let mut svc = layer().build().unwrap().layer(Backend::default());
    let h = svc.handle();
    for _ in 0..5 {
        let _ = send(&mut svc, Reply::Fail).await;
    }
    tokio::time::advance(secs(10)).await;
    let err = send(&mut svc, Reply::Fail).await.unwrap_err();
    assert!(open_of(&err).is_none(), "the probe itself went through");
    assert_eq!(h.state(), CircuitState::Open);
    assert_eq!(h.retry_after(), Some(secs(10)));
}

#[tokio::test(start_paused = true)]
async fn half_open_admits_exactly_n_probes() {
    let backend = Backend::default();
    let mut svc = layer()
        .half_open_probes(2)
        .build()
        .unwrap()
        .layer(backend.clone());
    let h = svc.handle();
    for _ in 0..5 {
        let _ = send(&mut svc, Reply::Fail).await;
    }
    tokio::time::advance(secs(10)).await;
    let p1 = tokio::spawn(svc.ready().await.unwrap().call(Reply::SlowOk(secs(1))));
    let p2 = tokio::spawn(svc.ready().await.unwrap().call(Reply::SlowOk(secs(1))));
    tokio::task::yield_now().await;
    let err = send(&mut svc, Reply::Ok).await.unwrap_err();
    let open = open_of(&err).expect("a third probe is refused");
    assert_eq!(open.state(), CircuitState::HalfOpen);
    assert_eq!(backend.calls(), 7);
    // One success is not enough: both probes must succeed.
    p1.await.unwrap().unwrap();
    p2.await.unwrap().unwrap();
    assert_eq!(h.state(), CircuitState::Closed);
}

#[tokio::test(start_paused = true)]
async fn a_dropped_probe_gives_its_slot_back() {
    let backend = Backend::default();
    let mut svc = layer().build().unwrap().layer(backend.clone());
    let h = svc.handle();
    for _ in 0..5 {
        let _ = send(&mut svc, Reply::Fail).await;
    }
    tokio::time::advance(secs(10)).await;
    let probe = svc.ready().await.unwrap().call(Reply::SlowOk(secs(60)));
    // The only slot is taken.
    assert!(open_of(&send(&mut svc, Reply::Ok).await.unwrap_err()).is_some());
    drop(probe);
    // Freed: the next call is the probe, and it closes the breaker.
    send(&mut svc, Reply::Ok).await.unwrap();
    assert_eq!(h.state(), CircuitState::Closed);
}

#[tokio::test(start_paused = true)]
async fn a_dropped_service_gives_its_reserved_slot_back() {
    let mut svc = layer().build().unwrap().layer(Backend::default());
    let h = svc.handle();
    for _ in 0..5 {
        let _ = send(&mut svc, Reply::Fail).await;
    }
    tokio::time::advance(secs(10)).await;
    let mut other = svc.clone();
    // `other` reserves the probe slot in poll_ready, then is dropped without calling.
    other.ready().await.unwrap();
    assert!(open_of(&send(&mut svc, Reply::Ok).await.unwrap_err()).is_some());
    drop(other);
    send(&mut svc, Reply::Ok).await.unwrap();
    assert_eq!(h.state(), CircuitState::Closed);
}

#[tokio::test(start_paused = true)]
async fn readiness_mode_is_pending_while_open_and_wakes_itself() {
    let backend = Backend::default();
    let mut svc = layer()
        .mode(Mode::Readiness)
        .build()
        .unwrap()
        .layer(backend.clone());
    for _ in 0..5 {
        let _ = send(&mut svc, Reply::Fail).await;
    }
    let mut ready = tokio_test::task::spawn(async {
        let svc = svc.ready().await.unwrap();
        svc.call(Reply::Ok).await
    });
    assert_pending!(ready.poll());
    tokio::time::advance(secs(9)).await;
    assert!(!ready.is_woken());
    assert_pending!(ready.poll());
    // No request arrives; the breaker's own timer wakes the task when the period ends.
    tokio::time::advance(secs(1)).await;
    assert!(ready.is_woken(), "woken by the open period's end");
    assert_eq!(assert_ready!(ready.poll()).unwrap(), "ok");
    drop(ready);
    assert_eq!(svc.handle().state(), CircuitState::Closed);
    assert_eq!(backend.calls(), 6);
    // One wait, polled twice while open: one request turned away, counted once.
    assert_eq!(svc.handle().metrics().not_permitted, 1);

    // Open again: a new wait of the same clone is a new refusal, counted once however often
    // it is polled.
    for _ in 0..5 {
        let _ = send(&mut svc, Reply::Fail).await;
    }
    assert_eq!(svc.handle().state(), CircuitState::Open);
    let mut ready =
        tokio_test::task::spawn(async { std::future::poll_fn(|cx| svc.poll_ready(cx)).await });
    for _ in 0..4 {
        assert_pending!(ready.poll());
    }
    drop(ready);
    assert_eq!(svc.handle().metrics().not_permitted, 2);
}

#[tokio::test(start_paused = true)]
async fn readiness_mode_waits_for_a_probe_slot_and_is_woken_when_it_frees() {
    let mut svc = layer()
        .mode(Mode::Readiness)
        .build()
        .unwrap()
        .layer(Backend::default());
    for _ in 0..5 {
        let _ = send(&mut svc, Reply::Fail).await;
    }
    tokio::time::advance(secs(10)).await;
    let probe = svc.ready().await.unwrap().call(Reply::SlowOk(secs(5)));
    let mut other = svc.clone();
    let mut waiting = tokio_test::task::spawn(async move {
        other.ready().await.unwrap();
    });
    assert_pending!(waiting.poll());
    drop(probe);
    assert!(waiting.is_woken(), "a freed slot wakes waiters");
    assert_ready!(waiting.poll());
}

#[tokio::test(start_paused = true)]
async fn an_outcome_from_an_earlier_state_cannot_change_the_current_one() {
    let events = Arc::new(Mutex::new(Vec::new()));
    let seen = events.clone();
    let mut svc = layer()
        .listener(move |e: &Event<'_>| {
            if let Event::OutcomeRecorded {
                counted, outcome, ..
            } = e
            {
                seen.lock().unwrap().push((*outcome, *counted));
            }
        })
        .build()
        .unwrap()
        .layer(Backend::default());
    let h = svc.handle();
    // A call admitted while closed, failing only after 100 s.
    let late = tokio::spawn(svc.ready().await.unwrap().call(Reply::SlowFail(secs(100))));
    tokio::task::yield_now().await;
    for _ in 0..5 {
        let _ = send(&mut svc, Reply::Fail).await;
    }
    assert_eq!(h.state(), CircuitState::Open);
    tokio::time::advance(secs(10)).await;
    send(&mut svc, Reply::Ok).await.unwrap(); // the probe closes it, with a fresh window
    for _ in 0..4 {
        send(&mut svc, Reply::Ok).await.unwrap();
    }
    assert_eq!(h.metrics().calls, 4);
    assert!(late.await.unwrap().is_err());
    let m = h.metrics();
    assert_eq!((m.state, m.calls, m.failures), (CircuitState::Closed, 4, 0));
    let events = events.lock().unwrap();
    assert_eq!(events.iter().filter(|(_, counted)| !counted).count(), 1);
    assert_eq!(events.last(), Some(&(Outcome::Failure, false)));
}

#[tokio::test(start_paused = true)]
async fn consecutive_failures_trip_before_the_rate_can() {
    let events = Arc::new(Mutex::new(Vec::new()));
    let seen = events.clone();
    let mut svc = layer()
        .count_window(100)
        .min_calls(100)
        .consecutive_failures(3)
        .listener(move |e: &Event<'_>| {
            if let Event::Tripped { reason, .. } = e {
                seen.lock().unwrap().push(*reason);
            }
        })
        .build()
        .unwrap()
        .layer(Backend::default());
    let h = svc.handle();
    let _ = send(&mut svc, Reply::Fail).await;
    let _ = send(&mut svc, Reply::Fail).await;
    send(&mut svc, Reply::Ok).await.unwrap(); // breaks the run
    let _ = send(&mut svc, Reply::Fail).await;
    let _ = send(&mut svc, Reply::Fail).await;
    assert_eq!(h.state(), CircuitState::Closed);
    assert_eq!(h.metrics().consecutive_failures, 2);
    let _ = send(&mut svc, Reply::Fail).await;
    assert_eq!(h.state(), CircuitState::Open);
    assert_eq!(
        *events.lock().unwrap(),
        vec![TripReason::ConsecutiveFailures]
    );
}

#[tokio::test(start_paused = true)]
async fn slow_call_rate_trips() {
    let mut svc = CircuitBreakerLayer::builder()
        .count_window(4)
        .min_calls(4)
        .slow_calls(secs(1), 0.5)
        .build()
        .unwrap()
        .layer(Backend::default());
    let h = svc.handle();
    send(&mut svc, Reply::Ok).await.unwrap();
    send(&mut svc, Reply::SlowOk(ms(1500))).await.unwrap();
    send(&mut svc, Reply::SlowOk(ms(900))).await.unwrap(); // under the threshold
    assert_eq!(h.metrics().slow_calls, 1);
    send(&mut svc, Reply::SlowOk(secs(2))).await.unwrap();
    let m = h.metrics();
    assert_eq!(
        (m.state, m.slow_calls, m.failures),
        (CircuitState::Open, 2, 0)
    );
}

#[tokio::test(start_paused = true)]
async fn the_time_window_forgets_old_buckets() {
    let mut svc = CircuitBreakerLayer::builder()
        .failure_rate(0.5)
        .time_window(secs(10), 10)
        .min_calls(3)
        .build()
        .unwrap()
        .layer(Backend::default());
    let h = svc.handle();
    let _ = send(&mut svc, Reply::Fail).await;
    let _ = send(&mut svc, Reply::Fail).await;
    tokio::time::advance(secs(11)).await;
    assert_eq!(h.metrics().calls, 0, "both failures aged out");
    send(&mut svc, Reply::Ok).await.unwrap();
    send(&mut svc, Reply::Ok).await.unwrap();
    let _ = send(&mut svc, Reply::Fail).await;
    // 1 of 3 in the window (3 of 5 ever): closed.
    let m = h.metrics();
    assert_eq!((m.state, m.calls, m.failures), (CircuitState::Closed, 3, 1));
    let _ = send(&mut svc, Reply::Fail).await;
    assert_eq!(h.state(), CircuitState::Open);
}

#[tokio::test(start_paused = true)]
async fn the_open_period_grows_per_consecutive_trip_and_resets_on_close() {
    let mut svc = layer()
        .open_backoff(secs(1), 2.0, secs(4), 0.0)
        .build()
        .unwrap()
        .layer(Backend::default());
    let h = svc.handle();
    for _ in 0..5 {
        let _ = send(&mut svc, Reply::Fail).await;
    }
    let mut periods = vec![h.retry_after().unwrap()];
    for _ in 0..3 {
        tokio::time::advance(periods.last().copied().unwrap()).await;
        let _ = send(&mut svc, Reply::Fail).await; // the probe fails
        periods.push(h.retry_after().unwrap());
    }
    assert_eq!(periods, vec![secs(1), secs(2), secs(4), secs(4)]);
    tokio::time::advance(secs(4)).await;
    send(&mut svc, Reply::Ok).await.unwrap();
    assert_eq!(h.state(), CircuitState::Closed);
    for _ in 0..5 {
        let _ = send(&mut svc, Reply::Fail).await;
    }
    assert_eq!(h.retry_after(), Some(secs(1)), "reset on close");
}

#[tokio::test(start_paused = true)]
async fn open_period_jitter_is_seeded_and_bounded() {
    async fn periods(seed: u64) -> Vec<Duration> {
        let mut svc = layer()
            .open_backoff(secs(8), 2.0, secs(20), 0.5)
            .random(SplitMix64::new(seed))
            .build()
            .unwrap()
            .layer(Backend::default());
        let h = svc.handle();
        for _ in 0..5 {
            let _ = send(&mut svc, Reply::Fail).await;
        }
        let mut out = vec![h.retry_after().unwrap()];
        for _ in 0..5 {
            tokio::time::advance(*out.last().unwrap()).await;
            let _ = send(&mut svc, Reply::Fail).await;
            out.push(h.retry_after().unwrap());
        }
        out
    }
    let a = periods(7).await;
    assert_eq!(a, periods(7).await, "same seed, same periods");
    assert_ne!(a, periods(8).await);
    // Trip 1: 8 s +- 50%; later trips: 16 s or the 20 s cap, +- 50%, never above the cap.
    assert!(a[0] >= secs(4) && a[0] <= secs(12), "{a:?}");
    for p in &a[1..] {
        assert!(*p >= secs(8) && *p <= secs(20), "{a:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn half_open_max_wait_reopens() {
    let mut svc = layer()
        .max_wait_in_half_open(secs(5))
        .build()
        .unwrap()
        .layer(Backend::default());
    let h = svc.handle();
    for _ in 0..5 {
        let _ = send(&mut svc, Reply::Fail).await;
    }
    tokio::time::advance(secs(10)).await;
    let _stuck = svc.ready().await.unwrap().call(Reply::SlowOk(secs(60)));
    tokio::time::advance(secs(4)).await;
    assert_eq!(h.state(), CircuitState::HalfOpen);
    // A call refused while the probe is out is told to come back at once (a slot frees when
    // the probe ends), not when the probes' time runs out.
    let err = send(&mut svc, Reply::Ok).await.unwrap_err();
    let open = open_of(&err).unwrap();
    assert_eq!(
        (open.state(), open.retry_after()),
        (CircuitState::HalfOpen, Some(Duration::ZERO))
    );
    tokio::time::advance(secs(1)).await;
    assert_eq!(h.state(), CircuitState::Open);
}

#[tokio::test(start_paused = true)]
async fn handle_forces_disables_and_runs_metrics_only() {
    let backend = Backend::default();
    let mut svc = layer().build().unwrap().layer(backend.clone());
    let h = svc.handle();

    h.force_open();
    assert_eq!(h.state(), CircuitState::ForcedOpen);
    let err = send(&mut svc, Reply::Ok).await.unwrap_err();
    assert_eq!(open_of(&err).unwrap().retry_after(), None);
    tokio::time::advance(secs(3600)).await;
    assert_eq!(
        h.state(),
        CircuitState::ForcedOpen,
        "only an operator releases it"
    );
    assert_eq!(backend.calls(), 0);

    h.disable();
    for _ in 0..20 {
        assert!(send(&mut svc, Reply::Fail).await.is_err());
    }
    let m = h.metrics();
    assert_eq!(
        (m.state, m.calls),
        (CircuitState::Disabled, 0),
        "records nothing"
    );
    assert_eq!(backend.calls(), 20, "passes everything");

    h.metrics_only();
    for _ in 0..10 {
        let _ = send(&mut svc, Reply::Fail).await;
    }
    let m = h.metrics();
    assert_eq!(
        (m.state, m.calls, m.failures),
        (CircuitState::MetricsOnly, 10, 10)
    );

    h.reset();
    let m = h.metrics();
    assert_eq!((m.state, m.calls), (CircuitState::Closed, 0));
    send(&mut svc, Reply::Ok).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_closure_classifier_decides_outcomes() {
    // This backend's "ok" is a failure for us; its errors are ignored.
    let mut svc = layer()
        .classifier(|r: &Result<&'static str, std::io::Error>| match r {
            Ok(_) => Outcome::Failure,
            Err(_) => Outcome::Ignored,
        })
        .build()
        .unwrap()
        .layer(Backend::default());
    let h = svc.handle();
    for _ in 0..10 {
        let _ = send(&mut svc, Reply::Fail).await;
    }
    assert_eq!(
        h.metrics().calls,
        0,
        "ignored outcomes stay out of the window"
    );
    for _ in 0..5 {
        let _ = send(&mut svc, Reply::Ok).await;
    }
    assert_eq!(h.state(), CircuitState::Open);
}

#[cfg(feature = "http")]
#[tokio::test(start_paused = true)]
async fn http_statuses_5xx_trip_and_404_does_not() {
    // Feature `http` re-exports the classifier.
    use bulwark_circuit_breaker::HttpClassifier;
    let status = Arc::new(Mutex::new(404u16));
    let current = status.clone();
    let backend = tower::service_fn(move |_: ()| {
        let code = *current.lock().unwrap();
        async move { Ok::<_, std::io::Error>(http::Response::builder().status(code).body(()).unwrap()) }
    });
    let mut svc = layer()
        .classifier(HttpClassifier::new())
        .build()
        .unwrap()
        .layer(backend);
    let h = svc.handle();
    for _ in 0..10 {
        svc.ready().await.unwrap().call(()).await.unwrap();
    }
    assert_eq!(h.state(), CircuitState::Closed, "404 is an answer");
    *status.lock().unwrap() = 503;
    for _ in 0..10 {
        let _ = svc.ready().await.unwrap().call(()).await;
    }
    assert_eq!(h.state(), CircuitState::Open);
}

#[tokio::test(start_paused = true)]
async fn the_listener_sees_every_transition_rejection_and_outcome() {
    let events = Arc::new(Mutex::new(Vec::new()));
    let seen = events.clone();
    let mut svc = layer()
        .count_window(2)
        .min_calls(2)
        .listener(move |e: &Event<'_>| {
            assert_eq!(e.name(), "test");
            let line = match e {
                Event::StateTransition { from, to, .. } => format!("{from}->{to}"),
                Event::Tripped {
                    reason, open_for, ..
                } => {
                    format!("tripped {reason} {}s", open_for.as_secs())
                }
                Event::CallRejected { state, .. } => format!("rejected {state}"),
                Event::OutcomeRecorded { outcome, .. } => format!("{outcome}"),
                _ => "other".into(),
            };
            seen.lock().unwrap().push(line);
        })
        .build()
        .unwrap()
        .layer(Backend::default());
    let _ = send(&mut svc, Reply::Fail).await;
    let _ = send(&mut svc, Reply::Fail).await;
    let _ = send(&mut svc, Reply::Ok).await;
    tokio::time::advance(secs(10)).await;
    send(&mut svc, Reply::Ok).await.unwrap();
    assert_eq!(
        *events.lock().unwrap(),
        vec![
            "failure",
            "failure",
            "tripped failure_rate 10s",
            "closed->open",
            "rejected open",
            "open->half_open",
            "success",
            "half_open->closed",
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn clones_share_one_breaker_and_layers_make_new_ones() {
    let layer = layer().build().unwrap();
    let mut a = layer.layer(Backend::default());
    let mut b = a.clone();
    let mut other = layer.layer(Backend::default());
    for _ in 0..5 {
        let _ = send(&mut a, Reply::Fail).await;
    }
    assert!(open_of(&send(&mut b, Reply::Ok).await.unwrap_err()).is_some());
    send(&mut other, Reply::Ok).await.unwrap();
    assert_eq!(other.handle().state(), CircuitState::Closed);
}

#[tokio::test(start_paused = true)]
async fn call_without_poll_ready_is_an_error_not_a_panic() {
    let mut svc = layer().build().unwrap().layer(Backend::default());
    let err = svc.call(Reply::Ok).await.unwrap_err();
    assert!(err.is::<Misuse>());
}

#[tokio::test(start_paused = true)]
async fn an_ignored_probe_frees_its_slot_without_deciding() {
    // Requests say their own outcome, so the classifier can return Ignored for a probe.
    let backend = tower::service_fn(|o: Outcome| async move { Ok::<_, std::io::Error>(o) });
    let mut svc = layer()
        .classifier(|r: &Result<Outcome, std::io::Error>| *r.as_ref().unwrap())
        .build()
        .unwrap()
        .layer(backend);
    let h = svc.handle();
    for _ in 0..5 {
        svc.ready()
            .await
            .unwrap()
            .call(Outcome::Failure)
            .await
            .unwrap();
    }
    assert_eq!(h.state(), CircuitState::Open);
    tokio::time::advance(secs(10)).await;
    svc.ready()
        .await
        .unwrap()
        .call(Outcome::Ignored)
        .await
        .unwrap();
    assert_eq!(
        h.state(),
        CircuitState::HalfOpen,
        "an ignored probe decides nothing"
    );
    // Its slot is free again: the next probe goes through and closes the breaker.
    svc.ready()
        .await
        .unwrap()
        .call(Outcome::Success)
        .await
        .unwrap();
    assert_eq!(h.state(), CircuitState::Closed);
}

/// Counts nothing; only its reference count matters (who still holds a waker made from it).
struct Task;

impl std::task::Wake for Task {
    fn wake(self: Arc<Self>) {}
}

#[tokio::test(start_paused = true)]
async fn a_clone_turned_away_and_dropped_leaves_no_waker_behind() {
    let svc = layer()
        .mode(Mode::Readiness)
        .build()
        .unwrap()
        .layer(Backend::default());
    svc.handle().force_open();
    let task = Arc::new(Task);
    for _ in 0..100 {
        let mut clone = svc.clone();
        let waker = std::task::Waker::from(task.clone());
        let mut cx = std::task::Context::from_waker(&waker);
        assert!(tower::Service::poll_ready(&mut clone, &mut cx).is_pending());
    }
    // Every clone that waited is gone: so are the wakers it registered (and the task memory
    // a real waker keeps), however long the breaker stays open.
    assert_eq!(Arc::strong_count(&task), 1);
}

#[tokio::test(start_paused = true)]
async fn a_slow_half_open_probe_counts_as_a_failed_probe() {
    let mut svc = layer()
        .consecutive_failures(1)
        .slow_calls(secs(1), 0.5)
        .build()
        .unwrap()
        .layer(Backend::default());
    let h = svc.handle();
    let _ = send(&mut svc, Reply::Fail).await;
    assert_eq!(h.state(), CircuitState::Open);
    tokio::time::advance(secs(60)).await;
    assert_eq!(h.state(), CircuitState::HalfOpen);
    // The probe answers, but after 2 s, over the 1 s threshold: the breaker opens again.
    assert_eq!(send(&mut svc, Reply::SlowOk(secs(2))).await.unwrap(), "ok");
    assert_eq!(h.state(), CircuitState::Open);
}
