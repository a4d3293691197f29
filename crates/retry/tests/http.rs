//! The HTTP policy end to end through the layer: methods, statuses, Retry-After, replayed
//! bodies. Paused time; the backend is an in-process service that reads each body fully.
#![cfg(feature = "http")]

use bulwark_core::backoff::{ExponentialBackoff, Jitter};
use bulwark_core::replay::{replayable, ReplayBody};
use bulwark_core::{BoxError, Event};
use bulwark_retry::{BackoffRetryLayer, HttpRetryPolicy};
use bytes::Bytes;
use http::{Method, Request, Response};
use http_body_util::{BodyExt, StreamBody};
use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt};

#[derive(Clone, Copy, Debug)]
enum Reply {
    Status(u16),
    StatusRetryAfter(u16, &'static str),
    Refused,
    /// A reset connection under a client error of the caller's (found in the source chain).
    WrappedReset,
    /// An error that says nothing of the connection.
    Other,
}

/// A client's own error over the connection's.
#[derive(Debug)]
struct Wrapped(std::io::Error);

impl std::fmt::Display for Wrapped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("client error")
    }
}

impl std::error::Error for Wrapped {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

/// Answers from a script, one reply per call, and records what each call received.
#[derive(Clone, Default)]
struct Script {
    replies: Arc<Mutex<VecDeque<Reply>>>,
    seen: Arc<Mutex<Vec<(Method, Bytes)>>>,
    retry_after_date: Arc<Mutex<Option<String>>>,
}

impl Script {
    fn new(replies: &[Reply]) -> Self {
        let s = Script::default();
        s.replies.lock().unwrap().extend(replies.iter().copied());
        s
    }
    fn seen(&self) -> Vec<(Method, Bytes)> {
        self.seen.lock().unwrap().clone()
    }
}

impl<B> Service<Request<B>> for Script
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    type Response = Response<String>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Response<String>, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let reply = self
            .replies
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or(Reply::Status(200));
        let seen = self.seen.clone();
        let date = self.retry_after_date.lock().unwrap().clone();
        Box::pin(async move {
            let (parts, body) = req.into_parts();
            let bytes = body.collect().await.map_err(Into::into)?.to_bytes();
            seen.lock().unwrap().push((parts.method, bytes));
            let resp = |code: u16| Response::builder().status(code);
            match reply {
                Reply::Status(code) => Ok(resp(code).body(String::new()).unwrap()),
                Reply::StatusRetryAfter(code, "date") => Ok(resp(code)
                    .header("retry-after", date.unwrap())
                    .body(String::new())
                    .unwrap()),
                Reply::StatusRetryAfter(code, value) => Ok(resp(code)
                    .header("retry-after", value)
                    .body(String::new())
                    .unwrap()),
                Reply::Refused => {
                    Err(std::io::Error::from(std::io::ErrorKind::ConnectionRefused).into())
                }
                Reply::WrappedReset => Err(Box::new(Wrapped(std::io::Error::from(
                    std::io::ErrorKind::ConnectionReset,
                ))) as BoxError),
                Reply::Other => Err(std::io::Error::other("the reply could not be parsed").into()),
            }
        })
    }
}

fn layer(policy: HttpRetryPolicy) -> BackoffRetryLayer<HttpRetryPolicy> {
    BackoffRetryLayer::builder()
        .max_attempts(3)
        .backoff(
            ExponentialBackoff::new(
                Duration::from_millis(100),
                2.0,
                Duration::from_secs(1),
                Jitter::None,
            )
            .unwrap(),
        )
        .policy(policy)
        .build()
        .unwrap()
}

fn get() -> Request<String> {
    Request::get("/book/dune").body(String::new()).unwrap()
}

async fn send<S>(svc: &mut S, req: Request<String>) -> Result<Response<String>, BoxError>
where
    S: Service<Request<String>, Response = Response<String>, Error = BoxError>,
{
    svc.ready().await?.call(req).await
}

#[tokio::test(start_paused = true)]
async fn retryable_statuses_and_refused_connections_are_retried() {
    let script = Script::new(&[Reply::Refused, Reply::Status(503), Reply::Status(200)]);
    let mut svc = layer(HttpRetryPolicy::new()).layer(script.clone());
    assert_eq!(send(&mut svc, get()).await.unwrap().status(), 200);
    assert_eq!(script.seen().len(), 3);
}

#[tokio::test(start_paused = true)]
async fn a_500_and_a_404_are_answers() {
    for code in [500, 404] {
        let script = Script::new(&[Reply::Status(code)]);
        let mut svc = layer(HttpRetryPolicy::new()).layer(script.clone());
        assert_eq!(send(&mut svc, get()).await.unwrap().status(), code);
        assert_eq!(script.seen().len(), 1, "{code}");
    }
}

#[tokio::test(start_paused = true)]
async fn when_retries_stop_a_response_stays_a_response() {
    let script = Script::new(&[Reply::Status(503); 3]);
    let mut svc = layer(HttpRetryPolicy::new()).layer(script.clone());
    // Three 503s: the caller sees the last 503, not an error.
    assert_eq!(send(&mut svc, get()).await.unwrap().status(), 503);
    assert_eq!(script.seen().len(), 3);
}

#[tokio::test(start_paused = true)]
async fn retry_after_in_seconds_replaces_the_backoff() {
    let script = Script::new(&[Reply::StatusRetryAfter(503, "4"), Reply::Status(200)]);
    let mut svc = layer(HttpRetryPolicy::new()).layer(script.clone());
    let start = Instant::now();
    assert_eq!(send(&mut svc, get()).await.unwrap().status(), 200);
    assert_eq!(start.elapsed(), Duration::from_secs(4));
}

#[tokio::test(start_paused = true)]
async fn retry_after_as_an_http_date_is_honoured() {
    let script = Script::new(&[Reply::StatusRetryAfter(429, "date"), Reply::Status(200)]);
    *script.retry_after_date.lock().unwrap() = Some(httpdate::fmt_http_date(
        SystemTime::now() + Duration::from_secs(3),
    ));
    let mut svc = layer(HttpRetryPolicy::new()).layer(script.clone());
    let start = Instant::now();
    assert_eq!(send(&mut svc, get()).await.unwrap().status(), 200);
    // The date has whole seconds: the wait is between 2 and 3 s.
    let waited = start.elapsed();
    assert!(
        waited > Duration::from_secs(2) && waited <= Duration::from_secs(3),
        "{waited:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn retry_after_over_the_cap_means_no_retry() {
    let events = Arc::new(Mutex::new(Vec::new()));
    let seen = events.clone();
    let script = Script::new(&[Reply::StatusRetryAfter(503, "120"), Reply::Status(200)]);
    let mut svc = BackoffRetryLayer::builder()
        .policy(HttpRetryPolicy::new().max_retry_after(Duration::from_secs(30)))
        .listener(move |e: &Event<'_>| {
            if let Event::RetryGaveUp { reason, .. } = e {
                seen.lock().unwrap().push(*reason);
            }
        })
        .build()
        .unwrap()
        .layer(script.clone());
    let start = Instant::now();
    assert_eq!(send(&mut svc, get()).await.unwrap().status(), 503);
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!(script.seen().len(), 1);
    assert_eq!(
        *events.lock().unwrap(),
        vec![bulwark_core::GiveUpReason::RetryAfterTooLong]
    );
}

#[tokio::test(start_paused = true)]
async fn a_connection_failure_is_found_under_a_wrapper_and_other_errors_are_answers() {
    // A reset under the client's own error is retried.
    let script = Script::new(&[Reply::WrappedReset, Reply::Status(200)]);
    let mut svc = layer(HttpRetryPolicy::new()).layer(script.clone());
    assert_eq!(send(&mut svc, get()).await.unwrap().status(), 200);
    assert_eq!(script.seen().len(), 2);

    // An error that says nothing of the connection is returned as it came, not retried.
    let events = Arc::new(Mutex::new(Vec::new()));
    let seen = events.clone();
    let script = Script::new(&[Reply::Other, Reply::Status(200)]);
    let mut svc = BackoffRetryLayer::builder()
        .policy(HttpRetryPolicy::new())
        .listener(move |e: &Event<'_>| {
            if let Event::RetryGaveUp { reason, .. } = e {
                seen.lock().unwrap().push(*reason);
            }
        })
        .build()
        .unwrap()
        .layer(script.clone());
    let err = send(&mut svc, get()).await.unwrap_err();
    assert_eq!(err.to_string(), "the reply could not be parsed");
    assert_eq!(script.seen().len(), 1);
    assert_eq!(
        *events.lock().unwrap(),
        vec![bulwark_core::GiveUpReason::NotRetryable]
    );
}

#[tokio::test(start_paused = true)]
async fn the_default_cap_on_retry_after_is_30_seconds() {
    // 30 s is waited; 31 s is over the default cap: the 503 is the answer at once.
    let script = Script::new(&[Reply::StatusRetryAfter(503, "30"), Reply::Status(200)]);
    let mut svc = BackoffRetryLayer::builder()
        .policy(HttpRetryPolicy::new())
        .build()
        .unwrap()
        .layer(script.clone());
    let start = Instant::now();
    assert_eq!(send(&mut svc, get()).await.unwrap().status(), 200);
    assert_eq!(start.elapsed(), Duration::from_secs(30));

    let script = Script::new(&[Reply::StatusRetryAfter(503, "31"), Reply::Status(200)]);
    let mut svc = BackoffRetryLayer::builder()
        .policy(HttpRetryPolicy::new())
        .build()
        .unwrap()
        .layer(script.clone());
    let start = Instant::now();
    assert_eq!(send(&mut svc, get()).await.unwrap().status(), 503);
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!(script.seen().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn post_is_not_retried_unless_it_carries_an_idempotency_key() {
    let script = Script::new(&[Reply::Status(503), Reply::Status(201)]);
    let mut svc = layer(HttpRetryPolicy::new()).layer(script.clone());
    let post = Request::post("/book").body(String::from("{}")).unwrap();
    assert_eq!(send(&mut svc, post).await.unwrap().status(), 503);
    assert_eq!(script.seen().len(), 1);

    let script = Script::new(&[Reply::Status(503), Reply::Status(201)]);
    let mut svc = layer(HttpRetryPolicy::new()).layer(script.clone());
    let keyed = Request::post("/book")
        .header("idempotency-key", "order-17")
        .body(String::from("{}"))
        .unwrap();
    assert_eq!(send(&mut svc, keyed).await.unwrap().status(), 201);
    assert_eq!(script.seen().len(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_method_can_be_opted_in() {
    let script = Script::new(&[Reply::Status(502), Reply::Status(201)]);
    let mut svc = layer(HttpRetryPolicy::new().retry_method(Method::POST)).layer(script.clone());
    let post = Request::post("/book").body(String::from("{}")).unwrap();
    assert_eq!(send(&mut svc, post).await.unwrap().status(), 201);
    assert_eq!(script.seen().len(), 2);
}

type Chunks = StreamBody<
    futures_util::stream::Iter<std::vec::IntoIter<Result<http_body::Frame<Bytes>, Infallible>>>,
>;

fn streaming(chunks: usize, chunk_len: usize) -> (Request<ReplayBody<Chunks>>, Bytes) {
    let data: Vec<u8> = (0..chunks * chunk_len).map(|i| (i % 251) as u8).collect();
    let frames: Vec<_> = data
        .chunks(chunk_len)
        .map(|c| Ok(http_body::Frame::data(Bytes::copy_from_slice(c))))
        .collect();
    let body = StreamBody::new(futures_util::stream::iter(frames));
    let req = Request::put("/book/dune").body(body).unwrap();
    (replayable(req, 64 * 1024), Bytes::from(data))
}

#[tokio::test(start_paused = true)]
async fn a_streaming_body_under_the_cap_is_retried_with_the_same_bytes() {
    let script = Script::new(&[Reply::Status(503), Reply::Status(200)]);
    let mut svc = layer(HttpRetryPolicy::new()).layer(script.clone());
    let (req, expected) = streaming(16, 1024); // 16 KiB in 16 chunks
    let resp = ServiceExt::<Request<ReplayBody<Chunks>>>::ready(&mut svc)
        .await
        .unwrap()
        .call(req)
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let seen = script.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].1, expected);
    assert_eq!(seen[1].1, expected, "the retry sent the same bytes");
}

#[tokio::test(start_paused = true)]
async fn a_streaming_body_over_the_cap_is_sent_once() {
    let script = Script::new(&[Reply::Status(503), Reply::Status(200)]);
    let mut svc = layer(HttpRetryPolicy::new()).layer(script.clone());
    let (req, expected) = streaming(80, 1024); // 80 KiB: over the 64 KiB cap
    let resp = ServiceExt::<Request<ReplayBody<Chunks>>>::ready(&mut svc)
        .await
        .unwrap()
        .call(req)
        .await
        .unwrap();
    // Sent once, whole, and its answer returned as it came: no error, no retry.
    assert_eq!(resp.status(), 503);
    let seen = script.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].1, expected);
}

#[tokio::test(start_paused = true)]
async fn an_axum_streaming_body_is_replayed_under_the_cap_and_sent_once_over_it() {
    for (chunks, retried) in [(8usize, true), (80, false)] {
        let data: Vec<u8> = (0..chunks * 1024).map(|i| (i % 241) as u8).collect();
        let pieces: Vec<Result<Bytes, Infallible>> = data
            .chunks(1024)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        let body = axum::body::Body::from_stream(futures_util::stream::iter(pieces));
        let req = replayable(Request::put("/book/dune").body(body).unwrap(), 64 * 1024);
        let script = Script::new(&[Reply::Status(503), Reply::Status(200)]);
        let mut svc = layer(HttpRetryPolicy::new()).layer(script.clone());
        let resp = ServiceExt::<Request<ReplayBody<axum::body::Body>>>::ready(&mut svc)
            .await
            .unwrap()
            .call(req)
            .await
            .unwrap();
        let seen = script.seen();
        if retried {
            assert_eq!(resp.status(), 200);
            assert_eq!(seen.len(), 2);
            assert!(
                seen.iter().all(|(_, b)| *b == data),
                "same bytes on both attempts"
            );
        } else {
            assert_eq!(resp.status(), 503, "sent once, answer returned as it came");
            assert_eq!(seen.len(), 1);
            assert_eq!(seen[0].1, data);
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_spent_budget_returns_the_response_as_it_came_and_says_why() {
    let events = Arc::new(Mutex::new(Vec::new()));
    let seen = events.clone();
    let script = Script::new(&[Reply::Status(503), Reply::Status(200)]);
    let mut svc = BackoffRetryLayer::builder()
        .policy(HttpRetryPolicy::new())
        // A budget with nothing in it: no retry is ever allowed.
        .budget(bulwark_retry::BudgetConfig {
            ratio: 0.0,
            floor_per_sec: 0,
            window: Duration::from_secs(10),
        })
        .listener(move |e: &Event<'_>| {
            if let Event::RetryGaveUp { reason, .. } = e {
                seen.lock().unwrap().push(*reason);
            }
        })
        .build()
        .unwrap()
        .layer(script.clone());
    let resp = send(&mut svc, get()).await.unwrap();
    assert_eq!(resp.status(), 503, "the response, not an error");
    assert_eq!(script.seen().len(), 1);
    assert_eq!(
        *events.lock().unwrap(),
        vec![bulwark_core::GiveUpReason::Budget]
    );
}
