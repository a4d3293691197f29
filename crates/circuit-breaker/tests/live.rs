//! Handles from the layer, one breaker shared across `layer()` calls, and settings changed
//! through the handle while calls are in flight, under paused tokio time.

mod common;

use bulwark_circuit_breaker::{
    CircuitBreakerLayer, CircuitState, Mode, OpenPeriod, SlowCalls, Window,
};
use bulwark_core::Event;
use common::{open_of, secs, send, Backend, Reply};
use std::sync::{Arc, Mutex};
use tower::{Layer, Service, ServiceExt};

fn builder() -> bulwark_circuit_breaker::Builder {
    CircuitBreakerLayer::builder()
        .name("live")
        .failure_rate(0.9)
        .count_window(20)
        .min_calls(10)
        .open_for(secs(30))
}

/// Sends `n` calls that park in the backend for `parked`, spawned; their results come back
/// through the handles.
fn park<C>(
    svc: &bulwark_circuit_breaker::CircuitBreaker<Backend, C>,
    n: usize,
    parked: std::time::Duration,
) -> Vec<Call>
where
    C: bulwark_core::Classify<&'static str, std::io::Error> + Send + Sync + 'static,
    bulwark_circuit_breaker::CircuitBreaker<Backend, C>: Clone + Send + 'static,
{
    (0..n)
        .map(|_| {
            let mut svc = svc.clone();
            tokio::spawn(async move { send(&mut svc, Reply::SlowOk(parked)).await })
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_lower_failure_rate_set_while_20_calls_are_parked_trips_at_the_new_threshold() {
    let backend = Backend::default();
    let svc = builder().build().unwrap().layer(backend.clone());
    let handle = svc.handle();
    let parked = park(&svc, 20, secs(5));
    tokio::task::yield_now().await;
    assert_eq!(backend.calls(), 20, "every call is in the backend");

    let now = handle
        .update(|c| {
            c.failure_rate = 0.3;
            c.min_calls = 5;
        })
        .unwrap();
    assert_eq!((now.failure_rate, now.min_calls), (0.3, 5));
    assert_eq!(handle.config(), now);

    tokio::time::advance(secs(5)).await;
    for call in parked {
        assert_eq!(
            call.await.unwrap().unwrap(),
            "ok",
            "no call dropped or failed"
        );
    }
    assert_eq!(handle.metrics().calls, 20);

    // The window holds 20 successes; each failure pushes one out. At 0.9 it would take 18
    // failures to trip; at 0.3, 6 do (6 of 20), and 5 do not.
    let mut svc = svc;
    for _ in 0..5 {
        assert!(open_of(&send(&mut svc, Reply::Fail).await.unwrap_err()).is_none());
    }
    assert_eq!(handle.state(), CircuitState::Closed);
    assert!(send(&mut svc, Reply::Fail).await.is_err());
    assert_eq!(handle.state(), CircuitState::Open);
    let err = send(&mut svc, Reply::Ok).await.unwrap_err();
    assert!(open_of(&err).is_some());
}

#[tokio::test(start_paused = true)]
async fn a_shorter_open_period_applies_from_the_next_trip() {
    let mut svc = builder()
        .consecutive_failures(1)
        .build()
        .unwrap()
        .layer(Backend::default());
    let handle = svc.handle();
    let _ = send(&mut svc, Reply::Fail).await;
    assert_eq!(handle.retry_after(), Some(secs(30)));

    handle
        .update(|c| c.open = OpenPeriod::Fixed(secs(2)))
        .unwrap();
    // The open period under way keeps its end.
    assert_eq!(handle.retry_after(), Some(secs(30)));
    tokio::time::advance(secs(30)).await;
    assert_eq!(handle.state(), CircuitState::HalfOpen);

    // The probe fails: the next trip opens for the new period, and reopens sooner.
    let _ = send(&mut svc, Reply::Fail).await;
    assert_eq!(handle.state(), CircuitState::Open);
    assert_eq!(handle.retry_after(), Some(secs(2)));
    tokio::time::advance(secs(2)).await;
    assert_eq!(handle.state(), CircuitState::HalfOpen);
    assert_eq!(send(&mut svc, Reply::Ok).await.unwrap(), "ok");
    assert_eq!(handle.state(), CircuitState::Closed);
}

type Call = tokio::task::JoinHandle<Result<&'static str, bulwark_core::BoxError>>;

/// A breaker tripped by one failure, now half-open with its one probe parked for `parked`.
async fn probe_out(
    mode: Mode,
    parked: std::time::Duration,
) -> (
    Backend,
    bulwark_circuit_breaker::CircuitBreaker<Backend, bulwark_core::DefaultClassifier>,
    Call,
) {
    let backend = Backend::default();
    let mut svc = builder()
        .consecutive_failures(1)
        .mode(mode)
        .build()
        .unwrap()
        .layer(backend.clone());
    let _ = send(&mut svc, Reply::Fail).await;
    tokio::time::advance(secs(30)).await;
    let probe = park(&svc, 1, parked).pop().unwrap();
    tokio::task::yield_now().await;
    (backend, svc, probe)
}

#[tokio::test(start_paused = true)]
async fn more_half_open_probes_admit_another_at_once_and_the_probe_out_still_counts() {
    let (backend, mut svc, probe) = probe_out(Mode::FailFast, secs(1)).await;
    let handle = svc.handle();
    let err = send(&mut svc, Reply::Ok).await.unwrap_err();
    assert!(open_of(&err).is_some(), "one probe at a time");

    handle.update(|c| c.half_open_probes = 2).unwrap();
    let second = park(&svc, 1, secs(1)).pop().unwrap();
    tokio::task::yield_now().await;
    assert_eq!(backend.calls(), 3, "the second probe went out");
    tokio::time::advance(secs(1)).await;
    assert_eq!(probe.await.unwrap().unwrap(), "ok");
    assert_eq!(second.await.unwrap().unwrap(), "ok");
    assert_eq!(
        handle.state(),
        CircuitState::Closed,
        "both probes succeeded"
    );
}

#[tokio::test(start_paused = true)]
async fn fewer_half_open_probes_than_have_succeeded_close_the_breaker_at_the_next_call() {
    // Two probes needed; one has succeeded and none is out when the operator lowers it to
    // one. No outcome is left to come: the next call closes the breaker and goes through.
    let mut svc = builder()
        .consecutive_failures(1)
        .half_open_probes(2)
        .build()
        .unwrap()
        .layer(Backend::default());
    let handle = svc.handle();
    let _ = send(&mut svc, Reply::Fail).await;
    tokio::time::advance(secs(30)).await;
    assert_eq!(send(&mut svc, Reply::Ok).await.unwrap(), "ok");
    assert_eq!(handle.state(), CircuitState::HalfOpen, "one of two probes");

    handle.update(|c| c.half_open_probes = 1).unwrap();
    assert_eq!(send(&mut svc, Reply::Ok).await.unwrap(), "ok");
    assert_eq!(handle.state(), CircuitState::Closed);
}

#[tokio::test(start_paused = true)]
async fn slow_calls_turned_on_while_a_call_is_out_do_not_judge_that_call() {
    let svc = builder().build().unwrap().layer(Backend::default());
    let handle = svc.handle();
    let out = park(&svc, 1, secs(10)).pop().unwrap();
    tokio::task::yield_now().await;
    handle
        .update(|c| {
            c.slow_calls = Some(SlowCalls {
                threshold: secs(1),
                rate: 0.5,
            })
        })
        .unwrap();
    tokio::time::advance(secs(10)).await;
    out.await.unwrap().unwrap();
    assert_eq!(
        handle.metrics().slow_calls,
        0,
        "not timed: it started untracked"
    );

    let late = park(&svc, 1, secs(2)).pop().unwrap();
    tokio::task::yield_now().await;
    tokio::time::advance(secs(2)).await;
    late.await.unwrap().unwrap();
    assert_eq!(handle.metrics().slow_calls, 1);
}

/// A change to the settings, for a table of them.
type Change = Box<dyn Fn(&mut bulwark_circuit_breaker::CircuitBreakerConfig)>;

#[tokio::test(start_paused = true)]
async fn invalid_settings_are_refused_naming_the_setting_and_change_nothing() {
    let layer = builder().shared().build().unwrap();
    let handle = layer.handle().unwrap();
    let before = handle.config();

    let cases: Vec<(&str, Change)> = vec![
        ("failure_rate", Box::new(|c| c.failure_rate = 0.0)),
        ("failure_rate", Box::new(|c| c.failure_rate = f64::NAN)),
        // A valid change with an invalid one: neither is applied.
        (
            "min_calls",
            Box::new(|c| {
                c.failure_rate = 0.1;
                c.min_calls = 0;
            }),
        ),
        ("min_calls", Box::new(|c| c.min_calls = 21)),
        (
            "consecutive_failures",
            Box::new(|c| c.consecutive_failures = Some(0)),
        ),
        ("open", Box::new(|c| c.open = OpenPeriod::Fixed(secs(0)))),
        ("half_open_probes", Box::new(|c| c.half_open_probes = 0)),
        (
            "max_wait_in_half_open",
            Box::new(|c| c.max_wait_in_half_open = Some(secs(0))),
        ),
        (
            "window",
            Box::new(|c| c.window = Window::Count { size: 50 }),
        ),
        ("mode", Box::new(|c| c.mode = Mode::Readiness)),
        ("name", Box::new(|c| c.name = "other".into())),
    ];
    for (setting, change) in cases {
        let err = handle.update(|c| change(c)).unwrap_err();
        assert_eq!(err.setting(), setting, "{err}");
        assert_eq!(handle.config(), before, "{setting}: nothing changed");
    }
    let err = handle
        .update(|c| c.window = Window::Count { size: 50 })
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "`window` is fixed when the layer is built: build a new layer to change it"
    );

    // Still judged by the settings it had: 9 failures in 10 calls trip at 0.9.
    let mut svc = layer.layer(Backend::default());
    for _ in 0..9 {
        let _ = send(&mut svc, Reply::Fail).await;
    }
    assert_eq!(handle.state(), CircuitState::Closed);
    let _ = send(&mut svc, Reply::Fail).await;
    assert_eq!(handle.state(), CircuitState::Open);
}

#[tokio::test(start_paused = true)]
async fn a_shared_layer_gives_its_handle_before_any_service_and_one_breaker_to_all() {
    let events = Arc::new(Mutex::new(Vec::new()));
    let seen = events.clone();
    let layer = builder()
        .min_calls(2)
        .count_window(4)
        .listener(move |e: &Event<'_>| {
            if let Event::SettingsChanged { name, layer } = e {
                seen.lock().unwrap().push(format!("{layer}:{name}"));
            }
        })
        .shared()
        .build()
        .unwrap();
    assert!(layer.is_shared());
    let handle = layer.handle().expect("made with the layer");
    assert_eq!(handle.state(), CircuitState::Closed);
    handle.update(|c| c.failure_rate = 0.5).unwrap();
    handle.update(|c| c.failure_rate = 0.5).unwrap(); // the same again: no event
    assert_eq!(*events.lock().unwrap(), ["circuit_breaker:live"]);

    let backend = Backend::default();
    let mut a = layer.layer(backend.clone());
    let mut b = layer.clone().layer(backend.clone());
    for _ in 0..2 {
        let _ = send(&mut a, Reply::Fail).await;
    }
    assert_eq!(handle.state(), CircuitState::Open);
    let err = send(&mut b, Reply::Ok).await.unwrap_err();
    assert!(
        open_of(&err).is_some(),
        "failures through one opened it for the other"
    );
    assert_eq!(backend.calls(), 2);
    assert_eq!(b.handle().metrics().not_permitted, 1);
    assert_eq!(layer.handles().len(), 1);

    // A layer per service keeps today's behaviour: two breakers, each judged alone.
    let each = builder().min_calls(2).count_window(4).build().unwrap();
    assert!(each.handle().is_none());
    let mut a = each.layer(Backend::default());
    let b = each.layer(Backend::default());
    for _ in 0..2 {
        let _ = send(&mut a, Reply::Fail).await;
    }
    let handles = each.handles();
    assert_eq!(handles.len(), 2);
    assert_eq!(handles[0].state(), CircuitState::Open);
    assert_eq!(handles[1].state(), CircuitState::Closed);
    assert_eq!(b.handle().state(), CircuitState::Closed);
    drop((a, handles));
    assert_eq!(
        each.handles().len(),
        1,
        "a dropped service's breaker is gone"
    );
}

#[tokio::test(start_paused = true)]
async fn a_readiness_caller_waiting_on_the_probe_slot_is_let_in_when_probes_rise() {
    let (backend, svc, probe) = probe_out(Mode::Readiness, secs(5)).await;
    let handle = svc.handle();

    let mut waiting = svc.clone();
    let second = tokio::spawn(async move { waiting.ready().await.unwrap().call(Reply::Ok).await });
    tokio::task::yield_now().await;
    assert_eq!(backend.calls(), 2, "the second waits for a probe slot");
    handle.update(|c| c.half_open_probes = 2).unwrap();
    tokio::task::yield_now().await;
    tokio::task::yield_now().await;
    assert_eq!(
        backend.calls(),
        3,
        "woken and admitted without a state change"
    );
    assert_eq!(second.await.unwrap().unwrap(), "ok");
    tokio::time::advance(secs(5)).await;
    probe.await.unwrap().unwrap();
    assert_eq!(handle.state(), CircuitState::Closed);
}

#[tokio::test(start_paused = true)]
async fn a_readiness_caller_waiting_on_a_forced_open_breaker_is_let_in_by_reset() {
    let backend = Backend::default();
    let svc = builder()
        .mode(Mode::Readiness)
        .build()
        .unwrap()
        .layer(backend.clone());
    let handle = svc.handle();
    handle.force_open();
    let mut waiting = svc.clone();
    let call = tokio::spawn(async move { waiting.ready().await.unwrap().call(Reply::Ok).await });
    tokio::time::sleep(secs(3600)).await;
    assert!(
        !call.is_finished(),
        "forced open: only an operator releases it"
    );
    assert_eq!(backend.calls(), 0);
    handle.reset();
    assert_eq!(call.await.unwrap().unwrap(), "ok");
    assert_eq!(backend.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_run_of_failures_set_live_trips_at_the_new_count() {
    let mut svc = builder().build().unwrap().layer(Backend::default());
    let handle = svc.handle();
    // min_calls 10 of a 90% rate: three failures alone do not trip it.
    for _ in 0..3 {
        let _ = send(&mut svc, Reply::Fail).await;
    }
    assert_eq!(handle.state(), CircuitState::Closed);
    handle.update(|c| c.consecutive_failures = Some(2)).unwrap();
    let _ = send(&mut svc, Reply::Ok).await;
    let _ = send(&mut svc, Reply::Fail).await;
    assert_eq!(handle.state(), CircuitState::Closed, "one in a row");
    let _ = send(&mut svc, Reply::Fail).await;
    assert_eq!(handle.state(), CircuitState::Open, "two in a row");
}
