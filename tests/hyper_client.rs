//! The layers stacked over hyper-util's legacy `Client`, against real servers on loopback.
//!
//! The client stack is the one `examples/hyper_client.rs` shows:
//!
//! ```text
//! BackoffRetry (HttpRetryPolicy)          retries 429/502/503/504 and refused connections
//!  └ CircuitBreaker (HttpClassifier)       5xx and errors are failures; fails fast when open
//!     └ hyper_util::client::legacy::Client
//! ```
//!
//! The retry sits outside the breaker: the breaker records every attempt, and once it opens
//! the retry stops at once (an `Open` is not retryable) and hands back the breaker's error
//! unchanged, so `err.is::<Open>()` holds on what the caller gets. (The order matters for
//! another reason too: the HTTP policy finds a refused connection by walking the error's
//! sources, and takes `BoxError`, `io::Error` or `Infallible` errors; the breaker boxes
//! hyper-util's error, whose sources lead to the `io::Error`. A retry directly over the
//! `Client` needs a `map_err(BoxError::from)` in between.)
//!
//! Each server is an axum app on 127.0.0.1:0 that counts its requests and fails the first
//! ones as scripted. Backoffs are a few milliseconds; the one wait that is real is a
//! `Retry-After: 1`, and only "not before" is asserted of it. The whole file runs in about a
//! second.

#![cfg(all(
    feature = "circuit-breaker",
    feature = "retry",
    feature = "failover",
    feature = "http"
))]

use axum::extract::Request as AxumRequest;
use axum::response::{IntoResponse, Response as AxumResponse};
use axum::Router;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Body as HttpBody, Frame, Incoming};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_bulwark::circuit_breaker::{CircuitBreaker, CircuitBreakerLayer, Handle, Open};
use tower_bulwark::core::replay::{replayable, ReplayBody};
use tower_bulwark::core::{BoxError, CircuitState, HttpClassifier, SplitMix64};
use tower_bulwark::failover::FailoverLayer;
use tower_bulwark::retry::{
    is_connection_failure, BackoffRetry, BackoffRetryLayer, ExponentialBackoff, HttpRetryPolicy,
    Jitter,
};
use tower_bulwark::ServiceBuilderExt;

// ---------------------------------------------------------------------------------------------
// The servers
// ---------------------------------------------------------------------------------------------

/// A loopback server that answers 503 to its first `fail_first` requests (with `Retry-After`
/// when asked), then 200 with "ok <n>"; it records each request's method and body length.
struct Backend {
    addr: SocketAddr,
    hits: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<(Method, usize)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Backend {
    async fn start(fail_first: usize, retry_after: Option<&'static str>) -> Backend {
        let hits = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let app = Router::new().fallback({
            let (hits, seen) = (hits.clone(), seen.clone());
            move |req: AxumRequest| {
                let (hits, seen) = (hits.clone(), seen.clone());
                async move {
                    let method = req.method().clone();
                    // Read the whole body before answering, as a real server would.
                    let body = axum::body::to_bytes(req.into_body(), 1 << 20).await;
                    let len = body.map_or(0, |b| b.len());
                    seen.lock().unwrap().push((method, len));
                    let n = hits.fetch_add(1, Ordering::SeqCst) + 1;
                    answer(n, fail_first, retry_after)
                }
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Backend {
            addr,
            hits,
            seen,
            task,
        }
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    fn seen(&self) -> Vec<(Method, usize)> {
        self.seen.lock().unwrap().clone()
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn answer(n: usize, fail_first: usize, retry_after: Option<&'static str>) -> AxumResponse {
    if n <= fail_first {
        let mut res = StatusCode::SERVICE_UNAVAILABLE.into_response();
        if let Some(secs) = retry_after {
            res.headers_mut()
                .insert("retry-after", http::HeaderValue::from_static(secs));
        }
        res
    } else {
        (StatusCode::OK, format!("ok {n}")).into_response()
    }
}

/// An address nothing listens on: bound, then closed.
async fn dead_addr() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

// ---------------------------------------------------------------------------------------------
// The client stacks
// ---------------------------------------------------------------------------------------------

type Body = Full<Bytes>;

fn client<B>() -> Client<HttpConnector, B>
where
    B: HttpBody + Send + 'static + Unpin,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    Client::builder(TokioExecutor::new()).build_http()
}

/// Retries fast (10 ms, doubling, no jitter), up to `attempts`, no budget: the tests count.
fn retry(attempts: u32) -> tower_bulwark::retry::Builder<HttpRetryPolicy> {
    BackoffRetryLayer::builder()
        .name("backend")
        .http()
        .max_attempts(attempts)
        .backoff(
            ExponentialBackoff::new(
                Duration::from_millis(10),
                2.0,
                Duration::from_millis(100),
                Jitter::None,
            )
            .unwrap(),
        )
        .no_budget()
        .random(SplitMix64::new(7))
}

/// Opens after `failures` failures in a row (5xx or an error), for 30 s.
fn breaker(failures: u32) -> CircuitBreakerLayer<HttpClassifier> {
    CircuitBreakerLayer::builder()
        .name("backend")
        .classifier(HttpClassifier::new())
        .consecutive_failures(failures)
        .open_for(Duration::from_secs(30))
        .random(SplitMix64::new(8))
        .build()
        .unwrap()
}

/// The stack of this file: retry outside the breaker, over hyper-util's client.
type Stack<B> =
    BackoffRetry<CircuitBreaker<Client<HttpConnector, B>, HttpClassifier>, HttpRetryPolicy>;

fn stack<B>(attempts: u32, failures: u32) -> Stack<B>
where
    B: HttpBody + Send + 'static + Unpin,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    ServiceBuilder::new()
        .backoff_retry(retry(attempts).build().unwrap())
        .circuit_breaker(breaker(failures))
        .service(client())
}

async fn call<S, B>(svc: &mut S, req: Request<B>) -> Result<(StatusCode, String), BoxError>
where
    S: Service<Request<B>, Response = Response<Incoming>, Error = BoxError>,
{
    let res = svc.ready().await?.call(req).await?;
    let status = res.status();
    let body = res.into_body().collect().await?.to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

fn get(url: &str) -> Request<Body> {
    Request::get(url).body(Body::default()).unwrap()
}

// ---------------------------------------------------------------------------------------------
// Retry
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn retry_gets_a_200_after_two_503s() {
    let backend = Backend::start(2, None).await;
    let mut svc = stack::<Body>(3, 10);
    let (status, body) = call(&mut svc, get(&backend.url("/book"))).await.unwrap();
    assert_eq!((status, body.as_str()), (StatusCode::OK, "ok 3"));
    assert_eq!(backend.hits(), 3);

    // With fewer attempts than failures, the last 503 comes back as a response.
    let backend = Backend::start(5, None).await;
    let (status, _) = call(&mut svc, get(&backend.url("/book"))).await.unwrap();
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(backend.hits(), 3);
}

#[tokio::test]
async fn a_post_is_retried_only_with_an_idempotency_key() {
    let post = |url: String, key: Option<&str>| {
        let mut req = Request::post(url);
        if let Some(key) = key {
            req = req.header("idempotency-key", key);
        }
        req.body(Body::from("{\"title\":\"Dune\"}")).unwrap()
    };
    let mut svc = stack::<Body>(3, 10);

    // No key: sent once, the 503 comes back.
    let backend = Backend::start(1, None).await;
    let (status, _) = call(&mut svc, post(backend.url("/books"), None))
        .await
        .unwrap();
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(backend.seen(), vec![(Method::POST, 16)]);

    // With a key the POST is sent again, body and all.
    let backend = Backend::start(1, None).await;
    let (status, body) = call(&mut svc, post(backend.url("/books"), Some("order-42")))
        .await
        .unwrap();
    assert_eq!((status, body.as_str()), (StatusCode::OK, "ok 2"));
    assert_eq!(backend.seen(), vec![(Method::POST, 16), (Method::POST, 16)]);
}

#[tokio::test]
async fn retry_after_is_honoured_and_capped() {
    // `Retry-After: 1` replaces the 10 ms backoff: the retry comes no sooner than a second.
    let backend = Backend::start(1, Some("1")).await;
    let mut svc = stack::<Body>(3, 10);
    let started = Instant::now();
    let (status, _) = call(&mut svc, get(&backend.url("/book"))).await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(backend.hits(), 2);
    assert!(started.elapsed() >= Duration::from_secs(1), "not before");

    // Over the cap (500 ms here) the server asks for too long: no retry, the 503 comes back.
    let backend = Backend::start(1, Some("1")).await;
    let mut svc = ServiceBuilder::new()
        .backoff_retry(
            retry(3)
                .policy(HttpRetryPolicy::new().max_retry_after(Duration::from_millis(500)))
                .build()
                .unwrap(),
        )
        .circuit_breaker(breaker(10))
        .service(client::<Body>());
    let res = svc
        .ready()
        .await
        .unwrap()
        .call(get(&backend.url("/book")))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(res.headers()["retry-after"], "1");
    assert_eq!(backend.hits(), 1);
}

#[tokio::test]
async fn refused_connections_are_retried_and_the_error_says_so() {
    let url = format!("http://{}/book", dead_addr().await);
    let mut svc = stack::<Body>(3, 10);
    let handle = svc.get_ref().handle();
    let err = call(&mut svc, get(&url)).await.unwrap_err();
    // hyper-util's error, boxed by the breaker, unchanged by the retry; its sources lead to
    // the refused connection.
    assert!(err.is::<hyper_util::client::legacy::Error>(), "{err:?}");
    assert!(is_connection_failure(&*err), "{err:?}");
    // Three attempts, each recorded by the breaker.
    assert_eq!(handle.metrics().failures, 3);
}

// ---------------------------------------------------------------------------------------------
// Circuit breaker
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn the_breaker_opens_after_failures_then_fails_fast_with_open() {
    let backend = Backend::start(usize::MAX, None).await;
    // Two attempts per request; the breaker opens after three failures in a row.
    let mut svc = stack::<Body>(2, 3);
    let handle = svc.get_ref().handle();

    // The first request: two 503s, the last one handed back.
    let (status, _) = call(&mut svc, get(&backend.url("/book"))).await.unwrap();
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(backend.hits(), 2);

    // The second: a third 503 opens the breaker; the retry's next attempt is refused by it,
    // and the retry gives that error back as it is: the caller's error *is* an `Open`.
    let err = call(&mut svc, get(&backend.url("/book")))
        .await
        .unwrap_err();
    let open = err
        .downcast_ref::<Open>()
        .expect("the breaker's error, unwrapped");
    assert_eq!(open.state(), CircuitState::Open);
    let wait = open.retry_after().unwrap();
    assert!(
        wait <= Duration::from_secs(30) && wait > Duration::from_secs(20),
        "{wait:?}"
    );
    assert_eq!(backend.hits(), 3);
    assert_eq!(handle.state(), CircuitState::Open);

    // From now on every request fails fast, without reaching the server.
    for _ in 0..5 {
        let err = call(&mut svc, get(&backend.url("/book")))
            .await
            .unwrap_err();
        assert!(err.is::<Open>(), "{err}");
    }
    assert_eq!(backend.hits(), 3);
    assert_eq!(handle.metrics().not_permitted, 6);
}

// ---------------------------------------------------------------------------------------------
// Failover
// ---------------------------------------------------------------------------------------------

/// A target: the stack, sending to `addr` whatever the request's authority (one client type,
/// two servers); and its breaker's handle.
fn target(
    addr: SocketAddr,
) -> (
    impl Service<Request<Body>, Response = Response<Incoming>, Error = BoxError, Future: Send>
        + Clone
        + Send
        + Sync
        + 'static,
    Handle,
) {
    let stack = stack::<Body>(2, 3);
    let handle = stack.get_ref().handle();
    let svc = ServiceBuilder::new()
        .map_request(move |mut req: Request<Body>| {
            let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
            *req.uri_mut() = format!("http://{addr}{path}").parse().unwrap();
            req
        })
        .service(stack);
    (svc, handle)
}

#[tokio::test]
async fn failover_goes_to_the_live_server_when_the_first_refuses_connections() {
    let live = Backend::start(0, None).await;
    let (down, down_breaker) = target(dead_addr().await);
    let (up, up_breaker) = target(live.addr);
    let mut failover = FailoverLayer::builder()
        .name("stores")
        .target_names(["down", "live"])
        .http()
        .build()
        .unwrap()
        .build(vec![down, up])
        .unwrap();

    let (status, body) = call(&mut failover, get("/book")).await.unwrap();
    assert_eq!((status, body.as_str()), (StatusCode::OK, "ok 1"));
    // The first target was tried (its retry made two attempts, both refused) before the
    // request went to the second.
    assert_eq!(down_breaker.metrics().failures, 2);
    assert_eq!(up_breaker.metrics().calls, 1);
    // Sticky: the next requests start at the live server and go nowhere else.
    assert_eq!(failover.current(), 1);
    for n in 2..=4 {
        let (status, body) = call(&mut failover, get("/book")).await.unwrap();
        assert_eq!((status, body), (StatusCode::OK, format!("ok {n}")));
    }
    assert_eq!(live.hits(), 4);
    assert_eq!(down_breaker.metrics().calls, 2);
}

// ---------------------------------------------------------------------------------------------
// Streaming request bodies
// ---------------------------------------------------------------------------------------------

/// A streaming body: `chunks` chunks of `size` bytes, no length known up front.
type Streaming =
    StreamBody<futures_util::stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, Infallible>>>>;

fn streaming(chunks: usize, size: usize) -> Streaming {
    let frames: Vec<_> = (0..chunks)
        .map(|i| Ok(Frame::data(Bytes::from(vec![b'a' + (i % 26) as u8; size]))))
        .collect();
    StreamBody::new(futures_util::stream::iter(frames))
}

#[tokio::test]
async fn a_streaming_body_is_replayed_under_the_cap_and_sent_once_over_it() {
    let mut svc = stack::<ReplayBody<Streaming>>(3, 10);
    let put = |url: String, chunks: usize| {
        let req = Request::put(url).body(streaming(chunks, 1024)).unwrap();
        replayable(req, 8 * 1024)
    };

    // 4 KiB under an 8 KiB cap: the 503 is retried, the server gets the whole body twice.
    let backend = Backend::start(1, None).await;
    let (status, _) = call(&mut svc, put(backend.url("/upload"), 4))
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        backend.seen(),
        vec![(Method::PUT, 4096), (Method::PUT, 4096)]
    );

    // 32 KiB over the cap: streamed once, whole; the 503 comes back, not retried.
    let backend = Backend::start(1, None).await;
    let (status, _) = call(&mut svc, put(backend.url("/upload"), 32))
        .await
        .unwrap();
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(backend.seen(), vec![(Method::PUT, 32 * 1024)]);
}
