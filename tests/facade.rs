//! The facade's own pieces: `ServiceBuilderExt` composing real stacks, and the axum error
//! mapping. Paused tokio time and seeded randomness throughout.

#![cfg(all(
    feature = "circuit-breaker",
    feature = "retry",
    feature = "failover",
    feature = "balance",
    feature = "fanout",
    feature = "axum"
))]

use axum::body::Body;
use axum::error_handling::HandleErrorLayer;
use axum::http::{Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};
use std::error::Error;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tower::util::BoxCloneService;
use tower::{service_fn, Service, ServiceBuilder, ServiceExt};
use tower_bulwark::axum::{classify_error, error_response, handle_error, BulwarkError, ErrorInfo};
use tower_bulwark::balance::{BalanceLayer, NoEndpointReady, Strategy, Unavailable};
use tower_bulwark::circuit_breaker::{CircuitBreakerLayer, Open};
use tower_bulwark::core::{BoxError, CircuitState, SplitMix64};
use tower_bulwark::failover::{
    AllFailed, FailoverLayer, NoTargetReady, TargetFailure, Unavailable as FailoverUnavailable,
};
use tower_bulwark::fanout::{ConfigError, FanOutFailed, FanOutLayer, FirstSuccess, Policy};
use tower_bulwark::retry::{AttemptTimedOut, BackoffRetryLayer, DeadlineExceeded};
use tower_bulwark::ServiceBuilderExt;

fn refused() -> std::io::Error {
    std::io::Error::from(std::io::ErrorKind::ConnectionRefused)
}

/// A counted service that always refuses.
fn refusing(calls: &Arc<AtomicUsize>) -> BoxCloneService<u32, &'static str, std::io::Error> {
    let calls = calls.clone();
    BoxCloneService::new(service_fn(move |_: u32| {
        calls.fetch_add(1, Ordering::SeqCst);
        async { Err(refused()) }
    }))
}

/// A counted service that answers `name`.
fn answering(
    name: &'static str,
    calls: &Arc<AtomicUsize>,
) -> BoxCloneService<u32, &'static str, std::io::Error> {
    let calls = calls.clone();
    BoxCloneService::new(service_fn(move |_: u32| {
        calls.fetch_add(1, Ordering::SeqCst);
        async move { Ok(name) }
    }))
}

// ---------------------------------------------------------------------------------------------
// ServiceBuilderExt
// ---------------------------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn breaker_over_retry_opens_and_the_outer_error_is_open() {
    let calls = Arc::new(AtomicUsize::new(0));
    let mut svc = ServiceBuilder::new()
        .circuit_breaker(
            CircuitBreakerLayer::builder()
                .name("inventory")
                .consecutive_failures(2)
                .open_for(Duration::from_secs(30))
                .random(SplitMix64::new(1))
                .build()
                .unwrap(),
        )
        .backoff_retry(
            BackoffRetryLayer::builder()
                .max_attempts(2)
                .no_budget()
                .random(SplitMix64::new(2))
                .build()
                .unwrap(),
        )
        .service(refusing(&calls));

    // Two requests, each tried twice below the breaker: the breaker sees two failures.
    for _ in 0..2 {
        let err = svc.ready().await.unwrap().call(1).await.unwrap_err();
        assert!(err.downcast_ref::<std::io::Error>().is_some(), "{err}");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 4);

    // Open: refused at once, without reaching the retry or the service.
    let err = svc.ready().await.unwrap().call(1).await.unwrap_err();
    let open = err.downcast_ref::<Open>().expect("the outer error is Open");
    assert_eq!(open.retry_after(), Some(Duration::from_secs(30)));
    assert_eq!(calls.load(Ordering::SeqCst), 4);

    // And the axum mapping makes it a 503 with Retry-After: 30.
    let res = error_response(&*err);
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(res.headers()["retry-after"], "30");
}

#[tokio::test(start_paused = true)]
async fn retry_retries_until_an_answer() {
    let calls = Arc::new(AtomicUsize::new(0));
    let backend = service_fn({
        let calls = calls.clone();
        move |n: u32| {
            let call = calls.fetch_add(1, Ordering::SeqCst);
            async move {
                if call < 2 {
                    Err(refused())
                } else {
                    Ok(n * 2)
                }
            }
        }
    });
    let mut svc = ServiceBuilder::new()
        .backoff_retry(
            BackoffRetryLayer::builder()
                .max_attempts(3)
                .random(SplitMix64::new(3))
                .build()
                .unwrap(),
        )
        .service(backend);
    assert_eq!(svc.ready().await.unwrap().call(21).await.unwrap(), 42);
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[tokio::test(start_paused = true)]
async fn retry_attempt_timeout_maps_to_504() {
    let backend = service_fn(|_: ()| async {
        tokio::time::sleep(Duration::from_secs(60)).await;
        Ok::<_, std::io::Error>(())
    });
    let mut svc = ServiceBuilder::new()
        .backoff_retry(
            BackoffRetryLayer::builder()
                .max_attempts(2)
                .attempt_timeout(Duration::from_secs(1))
                .random(SplitMix64::new(4))
                .build()
                .unwrap(),
        )
        .service(backend);
    let start = Instant::now();
    let err = svc.ready().await.unwrap().call(()).await.unwrap_err();
    assert!(start.elapsed() < Duration::from_secs(60));
    assert!(err.is::<AttemptTimedOut>(), "{err}");
    assert_eq!(classify_error(&*err).status, StatusCode::GATEWAY_TIMEOUT);
}

#[tokio::test(start_paused = true)]
async fn failover_goes_to_the_second_target() {
    let (first, second) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut svc = ServiceBuilder::new()
        .failover(
            FailoverLayer::builder()
                .target_names(["store-1", "store-2"])
                .build()
                .unwrap(),
        )
        .service(vec![refusing(&first), answering("store-2", &second)]);
    assert_eq!(svc.ready().await.unwrap().call(1).await.unwrap(), "store-2");
    assert_eq!(first.load(Ordering::SeqCst), 1);
    assert_eq!(second.load(Ordering::SeqCst), 1);
    assert_eq!(svc.target_names(), ["store-1", "store-2"]);
}

#[tokio::test(start_paused = true)]
async fn layers_above_a_set_wrap_the_whole_set() {
    // A retry above a failover set: the set fails as a whole (AllFailed), and is retried.
    let calls = Arc::new(AtomicUsize::new(0));
    let mut svc = ServiceBuilder::new()
        .backoff_retry(
            BackoffRetryLayer::builder()
                .max_attempts(2)
                .no_budget()
                .random(SplitMix64::new(5))
                .build()
                .unwrap(),
        )
        .failover(FailoverLayer::builder().build().unwrap())
        .service(vec![refusing(&calls), refusing(&calls)]);
    let err = svc.ready().await.unwrap().call(1).await.unwrap_err();
    assert!(err.is::<AllFailed>(), "{err}");
    assert_eq!(calls.load(Ordering::SeqCst), 4);
    let info = classify_error(&*err);
    assert_eq!(info.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(info.retry_after_secs, Some(1));
}

#[tokio::test(start_paused = true)]
async fn an_empty_failover_set_answers_no_target_ready() {
    let mut svc = ServiceBuilder::new()
        .failover(
            FailoverLayer::builder()
                .wait_for_ready(Duration::from_millis(100))
                .build()
                .unwrap(),
        )
        .service(Vec::<BoxCloneService<u32, &'static str, std::io::Error>>::new());
    let err = svc.ready().await.unwrap().call(1).await.unwrap_err();
    assert!(err.is::<NoTargetReady>(), "{err}");
}

#[tokio::test(start_paused = true)]
async fn balance_spreads_over_the_vec() {
    let (a, b) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut svc = ServiceBuilder::new()
        .balance(
            BalanceLayer::builder()
                .strategy(Strategy::RoundRobin)
                .random(SplitMix64::new(6))
                .build()
                .unwrap(),
        )
        .service(vec![answering("a", &a), answering("b", &b)]);
    let mut seen = Vec::new();
    for _ in 0..4 {
        seen.push(svc.ready().await.unwrap().call(1).await.unwrap());
    }
    assert_eq!(seen, ["a", "b", "a", "b"]);
}

#[tokio::test(start_paused = true)]
async fn an_empty_balancer_answers_no_endpoint_ready_and_maps_to_503() {
    let mut svc = ServiceBuilder::new()
        .balance(
            BalanceLayer::builder()
                .wait_for_ready(Duration::from_millis(100))
                .random(SplitMix64::new(7))
                .build()
                .unwrap(),
        )
        .service(Vec::<BoxCloneService<u32, &'static str, std::io::Error>>::new());
    let err = svc.ready().await.unwrap().call(1).await.unwrap_err();
    let none = err.downcast_ref::<NoEndpointReady>().unwrap();
    assert_eq!(none.reason, Unavailable::NoEndpoints);
    let res = error_response(&*err);
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(res.headers()["retry-after"], "1");
}

#[tokio::test(start_paused = true)]
async fn fan_out_reaches_every_target() {
    let calls = Arc::new(AtomicUsize::new(0));
    let mut svc = ServiceBuilder::new()
        .fan_out(
            FanOutLayer::builder()
                .policy(Policy::All)
                .merge(FirstSuccess)
                .build()
                .unwrap(),
        )
        .service(vec![
            answering("r1", &calls),
            answering("r2", &calls),
            answering("r3", &calls),
        ]);
    assert_eq!(svc.ready().await.unwrap().call(1).await.unwrap(), "r1");
    assert_eq!(calls.load(Ordering::SeqCst), 3);

    // A failed fan-out is a 502.
    let mut svc = ServiceBuilder::new()
        .fan_out(FanOutLayer::builder().merge(FirstSuccess).build().unwrap())
        .service(vec![answering("r1", &calls), refusing(&calls)]);
    let err = svc.ready().await.unwrap().call(1).await.unwrap_err();
    assert!(err.is::<FanOutFailed>(), "{err}");
    assert_eq!(classify_error(&*err).status, StatusCode::BAD_GATEWAY);
}

#[tokio::test(start_paused = true)]
async fn an_empty_fan_out_fails_rather_than_succeeding_by_default() {
    let mut svc = ServiceBuilder::new()
        .fan_out(FanOutLayer::builder().merge(FirstSuccess).build().unwrap())
        .service(Vec::<BoxCloneService<u32, &'static str, std::io::Error>>::new());
    let err = svc.ready().await.unwrap().call(1).await.unwrap_err();
    assert_eq!(
        err.downcast_ref::<ConfigError>(),
        Some(&ConfigError::NoTargets)
    );
}

// ---------------------------------------------------------------------------------------------
// axum mapping
// ---------------------------------------------------------------------------------------------

/// Status, `Retry-After` (if any), content type, and the body parsed as JSON.
async fn parts(res: Response) -> (StatusCode, Option<String>, Value) {
    let status = res.status();
    assert_eq!(res.headers()["content-type"], "application/json");
    let retry_after = res
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    let body = axum::body::to_bytes(res.into_body(), 1 << 20)
        .await
        .unwrap();
    let json: Value = serde_json::from_slice(&body).expect("the body is JSON");
    // Byte for byte what serde_json writes (its map keys are sorted, as ours happen to be).
    assert_eq!(std::str::from_utf8(&body).unwrap(), json.to_string());
    (status, retry_after, json)
}

async fn mapped(err: impl Error + Send + Sync + 'static) -> (StatusCode, Option<String>, Value) {
    let err: BoxError = Box::new(err);
    parts(error_response(&*err)).await
}

#[tokio::test]
async fn open_is_503_with_retry_after_rounded_up() {
    let (status, retry, body) = mapped(Open::new(
        CircuitState::Open,
        Some(Duration::from_millis(1500)),
    ))
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(retry.as_deref(), Some("2"));
    assert_eq!(
        body,
        json!({"error": "circuit open: calls suspended for 1500 ms", "retry_after_ms": 1500})
    );

    // Less than a second is still a second.
    let (_, retry, _) = mapped(Open::new(
        CircuitState::Open,
        Some(Duration::from_millis(1)),
    ))
    .await;
    assert_eq!(retry.as_deref(), Some("1"));
}

#[tokio::test]
async fn half_open_with_no_probe_slot_is_retry_after_zero() {
    let (status, retry, body) =
        mapped(Open::new(CircuitState::HalfOpen, Some(Duration::ZERO))).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(retry.as_deref(), Some("0"));
    assert_eq!(body["retry_after_ms"], 0);
}

#[tokio::test]
async fn forced_open_has_no_retry_after() {
    let (status, retry, body) = mapped(Open::new(CircuitState::ForcedOpen, None)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(retry, None);
    assert_eq!(
        body,
        json!({"error": "circuit forced open: calls suspended until released"})
    );
}

#[tokio::test]
async fn no_endpoint_ready_is_503_with_its_retry_after_or_one_second() {
    let (status, retry, body) = mapped(NoEndpointReady {
        reason: Unavailable::AllEjected,
        retry_after: Some(Duration::from_millis(12_000)),
        waited: Duration::from_secs(1),
    })
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(retry.as_deref(), Some("12"));
    assert_eq!(body["retry_after_ms"], 12_000);

    let (status, retry, body) = mapped(NoEndpointReady {
        reason: Unavailable::NoneReady,
        retry_after: None,
        waited: Duration::from_secs(1),
    })
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(retry.as_deref(), Some("1"));
    assert_eq!(
        body,
        json!({"error": "no endpoint could take the request within 1s: no endpoint is ready"})
    );
}

#[tokio::test]
async fn failover_errors_are_503_with_one_second() {
    let (status, retry, body) = mapped(NoTargetReady {
        targets: 2,
        reason: FailoverUnavailable::NoneReady,
        retry_after: None,
        waited: Duration::from_secs(1),
    })
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(retry.as_deref(), Some("1"));
    assert_eq!(
        body,
        json!({"error": "none of the 2 failover targets was ready within 1s: no target is ready"})
    );

    // Every target's circuit open: Retry-After is the soonest probe, rounded up.
    let (status, retry, body) = mapped(NoTargetReady {
        targets: 2,
        reason: FailoverUnavailable::CircuitsOpen,
        retry_after: Some(Duration::from_millis(2_500)),
        waited: Duration::ZERO,
    })
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(retry.as_deref(), Some("3"));
    assert_eq!(
        body,
        json!({
            "error": "none of the 2 failover targets was ready: every target's circuit is open; the first probe is in 2500 ms",
            "retry_after_ms": 2500
        })
    );

    let (status, retry, body) = mapped(AllFailed::new(vec![
        TargetFailure {
            index: 0,
            target: "store-1".into(),
            reason: "connection refused".into(),
            error: Some(refused().into()),
        },
        TargetFailure {
            index: 1,
            target: "store-2".into(),
            reason: "503 Service Unavailable".into(),
            error: None,
        },
    ]))
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(retry.as_deref(), Some("1"));
    assert_eq!(
        body,
        json!({"error": "all 2 failover targets failed: [0] store-1: connection refused; [1] store-2: 503 Service Unavailable"})
    );
}

#[tokio::test]
async fn retry_timeouts_are_504_without_retry_after() {
    let (status, retry, body) = mapped(DeadlineExceeded {
        deadline: Duration::from_secs(2),
        attempts: 3,
    })
    .await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(retry, None);
    assert_eq!(
        body,
        json!({"error": "deadline of 2s exceeded during attempt 3"})
    );

    let (status, retry, _) = mapped(AttemptTimedOut {
        after: Duration::from_secs(1),
        attempts: 2,
    })
    .await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(retry, None);
}

#[tokio::test]
async fn fan_out_failed_and_unknown_errors_are_502() {
    let (status, retry, body) = mapped(FanOutFailed {
        name: "register".into(),
        policy: Policy::All,
        successes: 1,
        targets: vec![
            (0, "s1".into(), "succeeded".into()),
            (1, "s2".into(), "error: connection refused".into()),
        ],
        errors: vec![(1, "s2".into(), refused().into())],
    })
    .await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert_eq!(retry, None);
    assert_eq!(
        body,
        json!({"error": "fan-out register failed (all: 1 of 2 succeeded): [0] s1: succeeded; [1] s2: error: connection refused"})
    );

    let (status, retry, body) = mapped(refused()).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert_eq!(retry, None);
    assert_eq!(body, json!({"error": "connection refused"}));
}

/// An error that wraps another (as a client or a handler might).
#[derive(Debug)]
struct Wrapped {
    context: &'static str,
    source: BoxError,
}

impl fmt::Display for Wrapped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.context)
    }
}

impl Error for Wrapped {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&*self.source)
    }
}

#[tokio::test]
async fn a_wrapped_error_is_found_through_its_sources() {
    let open = Open::new(CircuitState::Open, Some(Duration::from_secs(5)));
    let (status, retry, body) = mapped(Wrapped {
        context: "inventory call failed",
        source: Box::new(open.clone()),
    })
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(retry.as_deref(), Some("5"));
    // The message is the error that decided the status.
    assert_eq!(
        body,
        json!({"error": "circuit open: calls suspended for 5000 ms", "retry_after_ms": 5000})
    );

    // Two levels down.
    let (status, retry, _) = mapped(Wrapped {
        context: "handler",
        source: Box::new(Wrapped {
            context: "client",
            source: Box::new(DeadlineExceeded {
                deadline: Duration::from_secs(1),
                attempts: 1,
            }),
        }),
    })
    .await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(retry, None);

    // The top-most known error wins.
    let info = classify_error(&Wrapped {
        context: "retry gave up",
        source: Box::new(AttemptTimedOut {
            after: Duration::from_secs(1),
            attempts: 1,
        }),
    });
    assert_eq!(info.status, StatusCode::GATEWAY_TIMEOUT);

    // An unknown chain: the top error's message.
    let info = classify_error(&Wrapped {
        context: "upstream said no",
        source: Box::new(refused()),
    });
    assert_eq!(
        info,
        ErrorInfo::new(StatusCode::BAD_GATEWAY, "upstream said no")
    );
}

/// An error that is its own source.
#[derive(Debug)]
struct Looping;

impl fmt::Display for Looping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("loops")
    }
}

impl Error for Looping {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(self)
    }
}

#[test]
fn a_looping_source_chain_ends() {
    assert_eq!(classify_error(&Looping).status, StatusCode::BAD_GATEWAY);
}

/// An error with a message that needs escaping.
#[derive(Debug)]
struct Message(String);

impl fmt::Display for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Error for Message {}

#[tokio::test]
async fn messages_are_escaped_as_json() {
    for text in [
        r#"store "b" said: {"oops": true}"#,
        "line one\nline two\r\n\ttabbed",
        r"C:\path\to\thing",
        "nul \u{0} bell \u{7} esc \u{1b} unit \u{1f} del \u{7f}",
        "unicode: é ✓ 🦀 \u{2028}",
        "",
    ] {
        let (_, _, body) = mapped(Message(text.to_string())).await;
        assert_eq!(body, json!({ "error": text }), "{text:?}");
    }
    // And the exact bytes for the common cases.
    let info = ErrorInfo::new(StatusCode::BAD_GATEWAY, "say \"hi\"\n\\ \u{1}");
    assert_eq!(info.to_json(), r#"{"error":"say \"hi\"\n\\ \u0001"}"#);
}

#[tokio::test(start_paused = true)]
async fn handle_error_layer_maps_a_real_stack_in_a_router() {
    // The route's service is a breaker over a backend that is down; HandleErrorLayer with
    // `handle_error` turns its errors into responses.
    let calls = Arc::new(AtomicUsize::new(0));
    let backend = service_fn({
        let calls = calls.clone();
        move |_: Request<Body>| {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Err::<Response, _>(refused()) }
        }
    });
    let stack = ServiceBuilder::new()
        .layer(HandleErrorLayer::new(handle_error))
        .circuit_breaker(
            CircuitBreakerLayer::builder()
                .consecutive_failures(2)
                .open_for(Duration::from_secs(10))
                .random(SplitMix64::new(8))
                .build()
                .unwrap(),
        )
        .service(backend);
    let app = Router::new().route_service("/stock", stack);
    let get = || Request::get("/stock").body(Body::empty()).unwrap();

    for _ in 0..2 {
        let (status, retry, body) = parts(app.clone().oneshot(get()).await.unwrap()).await;
        assert_eq!(status, StatusCode::BAD_GATEWAY);
        assert_eq!(retry, None);
        assert_eq!(body, json!({"error": "connection refused"}));
    }
    let (status, retry, body) = parts(app.clone().oneshot(get()).await.unwrap()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(retry.as_deref(), Some("10"));
    assert_eq!(body["retry_after_ms"], 10_000);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn bulwark_error_lets_handlers_use_question_mark() {
    // A handler calling a client stack (here a retry over a backend that times out).
    let client = ServiceBuilder::new()
        .backoff_retry(
            BackoffRetryLayer::builder()
                .max_attempts(3)
                .deadline(Duration::from_secs(2))
                .random(SplitMix64::new(9))
                .build()
                .unwrap(),
        )
        .service(service_fn(|_: ()| async {
            tokio::time::sleep(Duration::from_secs(60)).await;
            Ok::<_, std::io::Error>("never")
        }));
    let app = Router::new().route(
        "/book",
        get(move || {
            let client = client.clone();
            async move {
                let title: &str = client.oneshot(()).await?;
                Ok::<_, BulwarkError>(title.to_string())
            }
        }),
    );
    let res = app
        .oneshot(Request::get("/book").body(Body::empty()).unwrap())
        .await
        .unwrap();
    let (status, retry, body) = parts(res).await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(retry, None);
    assert_eq!(
        body,
        json!({"error": "deadline of 2s exceeded during attempt 1"})
    );
}

#[tokio::test]
async fn error_info_into_response_and_bulwark_error_into_response_agree() {
    let err: BoxError = Box::new(NoTargetReady {
        targets: 1,
        reason: FailoverUnavailable::NoneReady,
        retry_after: None,
        waited: Duration::from_secs(1),
    });
    let info = classify_error(&*err);
    let a = parts(info.clone().into_response()).await;
    let b = parts(BulwarkError::from(err).into_response()).await;
    assert_eq!(a, b);
    assert_eq!(info.retry_after_header().unwrap(), "1");
}
