//! The layers inside an axum `Router` (`Router::layer`, `Router::route_layer`), and our errors
//! as responses through `HandleErrorLayer::new(tower_bulwark::axum::handle_error)`.
//!
//! What is true of axum 0.8, and what these tests pin down:
//!
//! * A layer given to `Router::layer` or `route_layer` must produce a service whose error is
//!   `Infallible`. Ours fail with a `BoxError` (an `Open`, a `DeadlineExceeded`, ...), so
//!   `HandleErrorLayer::new(handle_error)` goes *outside* them: it turns those errors into
//!   503 + `Retry-After`, 504 or 502 with a JSON body.
//! * Each service a `CircuitBreakerLayer` wraps gets its own breaker, and axum applies a
//!   route layer to every route and every method of it (and `Router::layer` to the fallback
//!   too): so `GET /a` failing opens the breaker of `GET /a` only. For one breaker in front of
//!   the whole app, wrap the `Router` itself.
//! * axum applies a layer to a handler when the handler is turned into a route, and a
//!   `Router<()>` that was never given its state does that lazily: called as a service
//!   (`oneshot`, `call`, hyper-util's `TowerToHyperService`) it builds its routes, and so a
//!   fresh breaker (and retry budget), *per request*; handed to `axum::serve` as it is, *per
//!   connection* (serve calls `with_state(())` on a clone for each connection). A breaker in a
//!   route layer then never sees enough failures to open. Finalize the Router after its last
//!   layer: `.with_state(())` (or `into_make_service()` for `axum::serve`), as every Router
//!   below is; tests in the breaker section show both sides, two of them over real loopback
//!   connections.
//! * A retry sends the request more than once, so the request must be `Clone`; axum's `Body`
//!   is a stream and is not. `BackoffRetry` over a route does not compile with
//!   `Request<Body>`; put a `map_request(|r| replayable(r, cap))` in front of it (the body is
//!   kept, up to the cap, as the handler reads it, and replayed for the next attempt). A body
//!   over the cap is streamed once and the request is not retried. Retrying a handler is
//!   rarely what a server wants (its own handler failing is not an upstream's hiccup); the
//!   retry is meant for outbound clients (see `tests/hyper_client.rs`). It works here, and
//!   with a breaker and a deadline in the same stack it gives a handler a time limit that
//!   answers 504.
//!
//! Driven with `tower::ServiceExt::oneshot` on the Router (no server), paused tokio time and
//! seeded randomness; the two served tests use real time and loopback connections.

#![cfg(all(
    feature = "circuit-breaker",
    feature = "retry",
    feature = "http",
    feature = "axum"
))]

use axum::body::Body;
use axum::error_handling::HandleErrorLayer;
use axum::extract::Request;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use bytes::Bytes;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tower::{Layer, Service, ServiceBuilder, ServiceExt};
use tower_bulwark::axum::handle_error;
use tower_bulwark::circuit_breaker::{CircuitBreakerLayer, Handle};
use tower_bulwark::core::replay::{replayable, ReplayBody, DEFAULT_REPLAY_CAP};
use tower_bulwark::core::{CircuitState, HttpClassifier, SplitMix64};
use tower_bulwark::retry::{BackoffRetryLayer, ExponentialBackoff, HttpRetryPolicy, Jitter};
use tower_bulwark::ServiceBuilderExt;

/// A status, the `Retry-After` header and the body (JSON when it parses, else a string).
async fn parts(res: Response) -> (StatusCode, Option<String>, Value) {
    let status = res.status();
    let retry = res
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    let bytes = axum::body::to_bytes(res.into_body(), 1 << 20)
        .await
        .unwrap();
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    (status, retry, body)
}

async fn send(app: &Router, req: Request) -> (StatusCode, Option<String>, Value) {
    parts(app.clone().oneshot(req).await.unwrap()).await
}

fn get_req(path: &str) -> Request {
    Request::get(path).body(Body::empty()).unwrap()
}

/// A fail-fast breaker that judges responses by status (5xx fails): open after three failures
/// in a row, for ten seconds.
fn breaker() -> CircuitBreakerLayer<HttpClassifier> {
    CircuitBreakerLayer::builder()
        .name("handler")
        .classifier(HttpClassifier::new())
        .consecutive_failures(3)
        .open_for(Duration::from_secs(10))
        .random(SplitMix64::new(1))
        .build()
        .unwrap()
}

/// A handler that answers 500 while `failing` is set, 200 "ok" otherwise, and counts its runs.
fn flaky(
    runs: &Arc<AtomicUsize>,
    failing: &Arc<AtomicBool>,
) -> impl Fn() -> std::future::Ready<Response> + Clone + Send + Sync + 'static {
    let (runs, failing) = (runs.clone(), failing.clone());
    move || {
        runs.fetch_add(1, Ordering::SeqCst);
        let res = if failing.load(Ordering::SeqCst) {
            (StatusCode::INTERNAL_SERVER_ERROR, "boom").into_response()
        } else {
            "ok".into_response()
        };
        std::future::ready(res)
    }
}

/// The body a 503 from an open breaker carries.
fn open_body(ms: u64) -> Value {
    json!({"error": format!("circuit open: calls suspended for {ms} ms"), "retry_after_ms": ms})
}

// ---------------------------------------------------------------------------------------------
// The circuit breaker in a Router
// ---------------------------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn route_layer_breaker_opens_answers_503_without_running_the_handler_then_recovers() {
    let runs = Arc::new(AtomicUsize::new(0));
    let failing = Arc::new(AtomicBool::new(true));
    let app: Router = Router::new()
        .route("/stock", get(flaky(&runs, &failing)))
        .route_layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(handle_error))
                .circuit_breaker(breaker()),
        )
        .with_state(());

    // Three 500s pass through as they are (a response, not an error)...
    for _ in 0..3 {
        let (status, retry, body) = send(&app, get_req("/stock")).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(retry, None);
        assert_eq!(body, "boom");
    }
    assert_eq!(runs.load(Ordering::SeqCst), 3);

    // ...and open the breaker: 503, Retry-After and the JSON body, and the handler is not run.
    for _ in 0..5 {
        let (status, retry, body) = send(&app, get_req("/stock")).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(retry.as_deref(), Some("10"));
        assert_eq!(body, open_body(10_000));
    }
    assert_eq!(runs.load(Ordering::SeqCst), 3);

    // Time passes: Retry-After counts down.
    tokio::time::advance(Duration::from_millis(6_500)).await;
    let (status, retry, body) = send(&app, get_req("/stock")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(retry.as_deref(), Some("4"));
    assert_eq!(body, open_body(3_500));

    // The handler is fixed; after the open period a probe goes through and closes the breaker.
    failing.store(false, Ordering::SeqCst);
    tokio::time::advance(Duration::from_millis(3_500)).await;
    for _ in 0..3 {
        let (status, retry, body) = send(&app, get_req("/stock")).await;
        assert_eq!((status, retry, body), (StatusCode::OK, None, json!("ok")));
    }
    assert_eq!(runs.load(Ordering::SeqCst), 6);

    // A 404 for a path no route matches never reaches a route layer.
    let (status, _, _) = send(&app, get_req("/nope")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test(start_paused = true)]
async fn router_layer_gives_each_route_and_method_its_own_breaker() {
    let runs_a = Arc::new(AtomicUsize::new(0));
    let runs_b = Arc::new(AtomicUsize::new(0));
    let failing = Arc::new(AtomicBool::new(true));
    let healthy = Arc::new(AtomicBool::new(false));
    let app: Router = Router::new()
        .route(
            "/a",
            get(flaky(&runs_a, &failing)).post(flaky(&runs_b, &healthy)),
        )
        .route("/b", get(flaky(&runs_b, &healthy)))
        .layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(handle_error))
                .circuit_breaker(breaker()),
        )
        .with_state(());

    for _ in 0..3 {
        assert_eq!(
            send(&app, get_req("/a")).await.0,
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }
    assert_eq!(
        send(&app, get_req("/a")).await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(runs_a.load(Ordering::SeqCst), 3);

    // GET /a's breaker is open; POST /a and GET /b have breakers of their own, closed.
    let post_a = Request::post("/a").body(Body::empty()).unwrap();
    assert_eq!(send(&app, post_a).await.0, StatusCode::OK);
    assert_eq!(send(&app, get_req("/b")).await.0, StatusCode::OK);
    assert_eq!(runs_b.load(Ordering::SeqCst), 2);
    // So does the fallback, which `Router::layer` wraps too: a 404 is an answer.
    for _ in 0..5 {
        assert_eq!(send(&app, get_req("/nope")).await.0, StatusCode::NOT_FOUND);
    }
}

#[tokio::test(start_paused = true)]
async fn without_with_state_a_router_called_as_a_service_rebuilds_its_layers_per_request() {
    // What `.with_state(())` is for: the same app, not finalized, driven as a service.
    let runs = Arc::new(AtomicUsize::new(0));
    let failing = Arc::new(AtomicBool::new(true));
    let unfinished: Router = Router::new()
        .route("/stock", get(flaky(&runs, &failing)))
        .route_layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(handle_error))
                .circuit_breaker(breaker()),
        );
    // A fresh breaker for every request: it never sees three failures, never opens.
    for _ in 0..6 {
        let (status, _, _) = send(&unfinished, get_req("/stock")).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    }
    assert_eq!(runs.load(Ordering::SeqCst), 6);

    // Finalized: one breaker per route, shared by every request (and every clone).
    let finished: Router = unfinished.with_state(());
    for _ in 0..3 {
        let (status, _, _) = send(&finished, get_req("/stock")).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    }
    let (status, retry, _) = send(&finished, get_req("/stock")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(retry.as_deref(), Some("10"));
    assert_eq!(runs.load(Ordering::SeqCst), 9);
}

/// How a Router is handed to `axum::serve`.
#[derive(Debug, Clone, Copy)]
enum Serve {
    /// `axum::serve(listener, app)`.
    Router,
    /// `axum::serve(listener, app.with_state(()))`.
    Finalized,
    /// `axum::serve(listener, app.into_make_service())`.
    MakeService,
}

/// Serves the breaker-guarded flaky route on loopback and sends five GETs, each on a new
/// connection; the statuses and the handler's runs.
async fn serve_and_get_five_times(how: Serve) -> (Vec<u16>, usize) {
    use http_body_util::{BodyExt, Empty};
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;

    let runs = Arc::new(AtomicUsize::new(0));
    let failing = Arc::new(AtomicBool::new(true));
    let app: Router = Router::new()
        .route("/stock", get(flaky(&runs, &failing)))
        .route_layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(handle_error))
                .circuit_breaker(breaker()),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        match how {
            Serve::Router => axum::serve(listener, app).await,
            Serve::Finalized => axum::serve(listener, app.with_state::<()>(())).await,
            Serve::MakeService => axum::serve(listener, app.into_make_service()).await,
        }
    });

    // No idle connections kept: every request opens a connection of its own.
    let client = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build_http::<Empty<Bytes>>();
    let uri: http::Uri = format!("http://{addr}/stock").parse().unwrap();
    let mut statuses = Vec::new();
    for _ in 0..5 {
        let res = client.get(uri.clone()).await.unwrap();
        statuses.push(res.status().as_u16());
        if res.status() == StatusCode::SERVICE_UNAVAILABLE {
            // Real time passes between the trip and this answer: at most the open period.
            let secs: u64 = res.headers()["retry-after"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            assert!((1..=10).contains(&secs), "{secs}");
            let body = res.into_body().collect().await.unwrap().to_bytes();
            let body: Value = serde_json::from_slice(&body).unwrap();
            let ms = body["retry_after_ms"].as_u64().unwrap();
            assert!((1..=10_000).contains(&ms), "{ms}");
        }
    }
    server.abort();
    (statuses, runs.load(Ordering::SeqCst))
}

#[tokio::test]
async fn a_served_router_shares_its_route_breaker_once_finalized() {
    // Over real loopback connections. Real time: the breaker opens on a count, not a clock,
    // and the test waits for nothing but loopback answers.
    for how in [Serve::Finalized, Serve::MakeService] {
        let (statuses, runs) = serve_and_get_five_times(how).await;
        assert_eq!(statuses, [500, 500, 500, 503, 503], "{how:?}");
        assert_eq!(runs, 3, "{how:?}");
    }
}

#[tokio::test]
async fn a_router_served_as_it_is_gets_fresh_route_layers_per_connection() {
    // `axum::serve(listener, router)` calls `with_state(())` on a clone of the router for
    // every connection: handlers become routes, and route layers are applied, per connection.
    // A breaker in a route layer then only sees one connection's requests: here, one each,
    // and it never opens. Finalize the router first (`with_state(())` or
    // `into_make_service()`), as above.
    let (statuses, runs) = serve_and_get_five_times(Serve::Router).await;
    assert_eq!(statuses, [500; 5]);
    assert_eq!(runs, 5);
}

#[tokio::test(start_paused = true)]
async fn one_breaker_for_the_whole_app_wraps_the_router() {
    // Wrapping the Router (rather than layering inside it) puts one breaker in front of every
    // route: failures anywhere open it for all.
    let runs = Arc::new(AtomicUsize::new(0));
    let failing = Arc::new(AtomicBool::new(true));
    let healthy = Arc::new(AtomicBool::new(false));
    let router = Router::new()
        .route("/a", get(flaky(&runs, &failing)))
        .route("/b", get(flaky(&runs, &healthy)));
    let guarded = breaker().layer(router);
    let handle: Handle = guarded.handle();
    let stack = ServiceBuilder::new()
        .layer(HandleErrorLayer::new(handle_error))
        .service(guarded);
    let app = Router::new().fallback_service(stack);

    for _ in 0..3 {
        assert_eq!(
            send(&app, get_req("/a")).await.0,
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }
    assert_eq!(handle.state(), CircuitState::Open);
    let (status, retry, _) = send(&app, get_req("/b")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(retry.as_deref(), Some("10"));
    assert_eq!(runs.load(Ordering::SeqCst), 3);
}

// ---------------------------------------------------------------------------------------------
// The retry in a Router: the request must be replayable
// ---------------------------------------------------------------------------------------------

/// axum's request, its body made replayable (up to `cap` bytes).
type Replayable = http::Request<ReplayBody<Body>>;

fn with_replay(cap: usize) -> impl Fn(Request) -> Replayable + Clone + Send + Sync + 'static {
    move |req| replayable(req, cap)
}

fn http_retry(attempts: u32) -> BackoffRetryLayer<HttpRetryPolicy> {
    BackoffRetryLayer::builder()
        .name("handler")
        .http()
        .max_attempts(attempts)
        .backoff(
            ExponentialBackoff::new(
                Duration::from_millis(100),
                2.0,
                Duration::from_secs(1),
                Jitter::None,
            )
            .unwrap(),
        )
        .no_budget()
        .random(SplitMix64::new(2))
        .build()
        .unwrap()
}

/// A POST handler that answers 503 to its first `fail` runs and then 200 with the body it got,
/// recording every body.
#[derive(Clone, Default)]
struct Echo {
    fail: usize,
    seen: Arc<std::sync::Mutex<Vec<Bytes>>>,
}

impl Echo {
    fn failing(fail: usize) -> Self {
        Echo {
            fail,
            ..Echo::default()
        }
    }

    fn router(&self) -> Router {
        let echo = self.clone();
        Router::new().route(
            "/books",
            post(move |_: HeaderMap, body: Bytes| {
                let echo = echo.clone();
                async move {
                    let mut seen = echo.seen.lock().unwrap();
                    seen.push(body.clone());
                    if seen.len() <= echo.fail {
                        StatusCode::SERVICE_UNAVAILABLE.into_response()
                    } else {
                        (StatusCode::CREATED, body).into_response()
                    }
                }
            }),
        )
    }

    fn seen(&self) -> Vec<Bytes> {
        self.seen.lock().unwrap().clone()
    }
}

fn post_books(body: impl Into<Body>, key: Option<&str>) -> Request {
    let mut req = Request::post("/books");
    if let Some(key) = key {
        req = req.header("idempotency-key", key);
    }
    req.body(body.into()).unwrap()
}

#[tokio::test(start_paused = true)]
async fn route_layer_retry_replays_the_request_body_to_a_flaky_handler() {
    let echo = Echo::failing(2);
    let app: Router = echo
        .router()
        .route_layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(handle_error))
                .map_request(with_replay(DEFAULT_REPLAY_CAP))
                .backoff_retry(http_retry(3)),
        )
        .with_state(());

    // A streaming body (two chunks), with an Idempotency-Key so a POST may be resent.
    let chunks = futures_util::stream::iter([
        Ok::<_, std::io::Error>(Bytes::from_static(b"{\"title\":")),
        Ok(Bytes::from_static(b"\"Dune\"}")),
    ]);
    let req = post_books(Body::from_stream(chunks), Some("k-1"));
    let (status, _, body) = send(&app, req).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(body, json!({"title": "Dune"}));
    // The handler ran three times and got the whole body each time.
    assert_eq!(
        echo.seen(),
        vec![Bytes::from_static(b"{\"title\":\"Dune\"}"); 3]
    );
}

#[tokio::test(start_paused = true)]
async fn route_layer_retry_leaves_a_post_without_idempotency_key_and_a_body_over_the_cap_alone() {
    // A POST without Idempotency-Key: sent once, its 503 comes back as it is.
    let echo = Echo::failing(1);
    let layer = || {
        ServiceBuilder::new()
            .layer(HandleErrorLayer::new(handle_error))
            .map_request(with_replay(1024))
            .backoff_retry(http_retry(3))
    };
    let app: Router = echo.router().route_layer(layer()).with_state(());
    let (status, _, _) = send(&app, post_books("{}", None)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(echo.seen().len(), 1);

    // A body over the replay cap (1 KiB here): streamed once, whole, and not retried.
    let echo = Echo::failing(1);
    let app: Router = echo.router().route_layer(layer()).with_state(());
    let big = Bytes::from(vec![b'x'; 4096]);
    let (status, _, _) = send(&app, post_books(big.clone(), Some("k-2"))).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(echo.seen(), vec![big]);

    // The same body under a larger cap is retried.
    let echo = Echo::failing(1);
    let app: Router = echo
        .router()
        .route_layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(handle_error))
                .map_request(with_replay(8192))
                .backoff_retry(http_retry(3)),
        )
        .with_state(());
    let big = Bytes::from(vec![b'x'; 4096]);
    let (status, _, _) = send(&app, post_books(big.clone(), Some("k-3"))).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(echo.seen(), vec![big.clone(), big]);
}

// ---------------------------------------------------------------------------------------------
// Errors to responses: an open breaker is a 503 with Retry-After, a deadline a 504
// ---------------------------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn retry_over_breaker_in_a_router_answers_503_with_the_breakers_retry_after() {
    // Retry outside the breaker: the handler's 503s are retried until the breaker opens; the
    // retry does not retry an `Open`, which comes out as the error, mapped to 503 with the
    // breaker's Retry-After.
    let runs = Arc::new(AtomicUsize::new(0));
    let app: Router = Router::new()
        .route(
            "/stock",
            get({
                let runs = runs.clone();
                move || {
                    runs.fetch_add(1, Ordering::SeqCst);
                    std::future::ready(StatusCode::SERVICE_UNAVAILABLE)
                }
            }),
        )
        .route_layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(handle_error))
                .map_request(with_replay(DEFAULT_REPLAY_CAP))
                .backoff_retry(http_retry(5))
                .circuit_breaker(breaker()),
        )
        .with_state(());

    let (status, retry, body) = send(&app, get_req("/stock")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        runs.load(Ordering::SeqCst),
        3,
        "the breaker opened after three"
    );
    // The breaker opened after the third attempt (300 ms in: backoff 100 ms, 200 ms); the
    // fourth came 400 ms later and was refused: 9.6 s to go, rounded up in Retry-After.
    assert_eq!(retry.as_deref(), Some("10"));
    assert_eq!(body, open_body(9_600));
}

#[tokio::test(start_paused = true)]
async fn a_deadline_in_a_router_answers_504() {
    let runs = Arc::new(AtomicUsize::new(0));
    let slow = {
        let runs = runs.clone();
        move || {
            runs.fetch_add(1, Ordering::SeqCst);
            async {
                tokio::time::sleep(Duration::from_secs(60)).await;
                "late"
            }
        }
    };
    let deadline = BackoffRetryLayer::builder()
        .http()
        .max_attempts(3)
        .attempt_timeout(Duration::from_secs(1))
        .deadline(Duration::from_millis(2_500))
        .random(SplitMix64::new(3))
        .build()
        .unwrap();
    let app: Router = Router::new()
        .route("/slow", get(slow))
        .layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(handle_error))
                .map_request(with_replay(DEFAULT_REPLAY_CAP))
                .backoff_retry(deadline),
        )
        .with_state(());

    let started = tokio::time::Instant::now();
    let (status, retry, body) = send(&app, get_req("/slow")).await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(retry, None);
    // Each attempt was cut off after 1 s and retried; the deadline ended the third.
    assert_eq!(
        body,
        json!({"error": "deadline of 2.5s exceeded during attempt 3"})
    );
    assert_eq!(runs.load(Ordering::SeqCst), 3);
    assert_eq!(
        started.elapsed(),
        Duration::from_millis(2_500),
        "paused time"
    );
}

#[tokio::test(start_paused = true)]
async fn the_stack_can_also_be_a_route_service() {
    // The same stack as a route's own service (axum's `route_service`), over a handler made a
    // service with `Router` itself.
    let runs = Arc::new(AtomicUsize::new(0));
    let failing = Arc::new(AtomicBool::new(true));
    let inner = Router::new().route("/stock", get(flaky(&runs, &failing)));
    let mut stack = ServiceBuilder::new()
        .layer(HandleErrorLayer::new(handle_error))
        .circuit_breaker(breaker())
        .service(inner);
    for _ in 0..3 {
        let res = ServiceExt::<Request>::ready(&mut stack)
            .await
            .unwrap()
            .call(get_req("/stock"))
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }
    let app = Router::new().route_service("/stock", stack);
    let (status, retry, _) = send(&app, get_req("/stock")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(retry.as_deref(), Some("10"));
    assert_eq!(runs.load(Ordering::SeqCst), 3);
}

// ---------------------------------------------------------------------------------------------
// The rate limiter in a Router: one bucket however axum applies the layer
// ---------------------------------------------------------------------------------------------

#[cfg(feature = "rate-limit")]
#[tokio::test(start_paused = true)]
async fn a_rate_limited_router_answers_503_with_retry_after_when_no_token_is_left() {
    // The layer is the limit: every route and every service axum makes from the layer (even
    // a Router left without `with_state`, which rebuilds its layers per request) takes its
    // tokens from one bucket.
    let runs = Arc::new(AtomicUsize::new(0));
    let healthy = Arc::new(AtomicBool::new(false));
    let limit = tower_bulwark::RateLimitLayer::builder()
        .name("api")
        .rate(4, Duration::from_secs(1))
        .burst(2)
        .build()
        .unwrap();
    let app: Router = Router::new()
        .route("/a", get(flaky(&runs, &healthy)))
        .route("/b", get(flaky(&runs, &healthy)))
        .layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(handle_error))
                .shared_rate_limit(limit.clone()),
        );
    assert_eq!(send(&app, get_req("/a")).await.0, StatusCode::OK);
    assert_eq!(send(&app, get_req("/b")).await.0, StatusCode::OK);
    let (status, retry, body) = send(&app, get_req("/a")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    // The next token is 250 ms away: Retry-After rounds it up to 1 s, the body says 250 ms.
    assert_eq!(retry.as_deref(), Some("1"));
    assert_eq!(
        body,
        json!({"error": "rate limited: next token in 250 ms", "retry_after_ms": 250})
    );
    assert_eq!(
        runs.load(Ordering::SeqCst),
        2,
        "the refused request ran nothing"
    );
    tokio::time::advance(Duration::from_millis(250)).await;
    assert_eq!(send(&app, get_req("/b")).await.0, StatusCode::OK);
    assert_eq!(limit.handle().refused(), 1);
}

#[cfg(feature = "bulkhead")]
#[tokio::test(start_paused = true)]
async fn a_full_bulkhead_in_a_router_answers_503_without_retry_after() {
    // One permit; the handler takes a second. Finalized with `with_state`, so the route's
    // bulkhead is built once and every request shares it.
    let slow = || async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        "ok"
    };
    let app = Router::new()
        .route("/search", get(slow))
        .layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(handle_error))
                .bulkhead(
                    tower_bulwark::BulkheadLayer::builder()
                        .name("api")
                        .max_concurrent(1)
                        .build()
                        .unwrap(),
                ),
        )
        .with_state(());
    let first = tokio::spawn(app.clone().oneshot(get_req("/search")));
    tokio::task::yield_now().await;
    let (status, retry, body) = send(&app, get_req("/search")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        retry, None,
        "a permit frees when any call ends: no time to promise"
    );
    assert_eq!(
        body,
        json!({"error": "bulkhead `api` full: 1 calls in flight"})
    );
    let (status, _, _) = parts(first.await.unwrap().unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(send(&app, get_req("/search")).await.0, StatusCode::OK);
}
