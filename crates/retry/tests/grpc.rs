//! The gRPC policy end to end through the layer: statuses, pushback, connection errors,
//! replayable bodies. Paused time; the backend is an in-process mock answering as a gRPC
//! server does (Trailers-Only responses: HTTP 200 with `grpc-status` in the headers).
#![cfg(feature = "grpc")]

use bulwark_core::backoff::{ExponentialBackoff, Jitter};
use bulwark_core::replay::replayable;
use bulwark_core::{BoxError, Event, GiveUpReason, GrpcCode, GrpcCodeSet};
use bulwark_retry::{BackoffRetryLayer, GrpcRetryPolicy};
use bytes::Bytes;
use http::{Request, Response};
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt};

#[derive(Clone, Copy, Debug)]
enum Reply {
    /// A Trailers-Only response with this `grpc-status`.
    Code(u8),
    /// ... and this `grpc-retry-pushback-ms`.
    CodePushback(u8, &'static str),
    /// The connection was refused.
    Refused,
}

/// Answers from a script, one reply per call; records when each call came and what it sent.
#[derive(Clone, Default)]
struct Server {
    replies: Arc<Mutex<VecDeque<Reply>>>,
    calls: Arc<Mutex<Vec<(Instant, Bytes)>>>,
}

impl Server {
    fn new(replies: &[Reply]) -> Self {
        let s = Server::default();
        s.replies.lock().unwrap().extend(replies.iter().copied());
        s
    }

    fn calls(&self) -> Vec<(Instant, Bytes)> {
        self.calls.lock().unwrap().clone()
    }
}

impl<B> Service<Request<B>> for Server
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    type Response = Response<()>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Response<()>, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let reply = self
            .replies
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or(Reply::Code(0));
        let calls = self.calls.clone();
        Box::pin(async move {
            let body = req.into_body().collect().await.map_err(Into::into)?;
            calls
                .lock()
                .unwrap()
                .push((Instant::now(), body.to_bytes()));
            let answer = |code: u8| Response::builder().header("grpc-status", code.to_string());
            match reply {
                Reply::Code(code) => Ok(answer(code).body(()).unwrap()),
                Reply::CodePushback(code, ms) => Ok(answer(code)
                    .header("grpc-retry-pushback-ms", ms)
                    .body(())
                    .unwrap()),
                Reply::Refused => {
                    Err(std::io::Error::from(std::io::ErrorKind::ConnectionRefused).into())
                }
            }
        })
    }
}

type GaveUp = Arc<Mutex<Vec<GiveUpReason>>>;

/// Three attempts, 100 ms then 200 ms of backoff (no jitter), recording why retries stop.
fn layer(policy: GrpcRetryPolicy) -> (BackoffRetryLayer<GrpcRetryPolicy>, GaveUp) {
    let gave_up = GaveUp::default();
    let seen = gave_up.clone();
    let layer = BackoffRetryLayer::builder()
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
        .listener(move |e: &Event<'_>| {
            if let Event::RetryGaveUp { reason, .. } = e {
                seen.lock().unwrap().push(*reason);
            }
        })
        .build()
        .unwrap();
    (layer, gave_up)
}

fn call() -> Request<String> {
    Request::post("/books.Store/Get")
        .body(String::from("dune"))
        .unwrap()
}

fn status<B>(resp: &Response<B>) -> GrpcCode {
    GrpcCode::from_headers(resp.headers()).unwrap()
}

async fn send<S, B>(svc: &mut S, req: Request<B>) -> Result<Response<()>, BoxError>
where
    S: Service<Request<B>, Response = Response<()>, Error = BoxError>,
{
    svc.ready().await?.call(req).await
}

#[tokio::test(start_paused = true)]
async fn failure_codes_and_refused_connections_are_retried_with_backoff() {
    let server = Server::new(&[Reply::Refused, Reply::Code(14), Reply::Code(0)]);
    let (retry, gave_up) = layer(GrpcRetryPolicy::new());
    let mut svc = retry.layer(server.clone());
    let start = Instant::now();
    let resp = send(&mut svc, call()).await.unwrap();
    assert_eq!(status(&resp), GrpcCode::Ok);
    let calls = server.calls();
    assert_eq!(calls.len(), 3);
    assert!(calls.iter().all(|(_, body)| body == "dune"));
    assert_eq!(calls[1].0 - start, Duration::from_millis(100));
    assert_eq!(calls[2].0 - start, Duration::from_millis(300));
    assert!(gave_up.lock().unwrap().is_empty());
}

#[tokio::test(start_paused = true)]
async fn answers_are_not_retried() {
    // NOT_FOUND, INVALID_ARGUMENT, PERMISSION_DENIED, UNKNOWN: the server answered.
    for code in [5, 3, 7, 2] {
        let server = Server::new(&[Reply::Code(code), Reply::Code(0)]);
        let (retry, _) = layer(GrpcRetryPolicy::new());
        let mut svc = retry.layer(server.clone());
        let resp = send(&mut svc, call()).await.unwrap();
        assert_eq!(status(&resp).as_u8(), code);
        assert_eq!(server.calls().len(), 1, "{code}");
    }
}

#[tokio::test(start_paused = true)]
async fn retry_codes_can_be_narrowed() {
    let only_unavailable = GrpcCodeSet::empty().with(GrpcCode::Unavailable);
    let server = Server::new(&[Reply::Code(13), Reply::Code(0)]);
    let (retry, _) = layer(GrpcRetryPolicy::new().retry_codes(only_unavailable));
    let mut svc = retry.layer(server.clone());
    assert_eq!(
        status(&send(&mut svc, call()).await.unwrap()),
        GrpcCode::Internal
    );
    assert_eq!(server.calls().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_pushback_delays_the_retry_by_that_much() {
    let server = Server::new(&[Reply::CodePushback(14, "50"), Reply::Code(0)]);
    let (retry, _) = layer(GrpcRetryPolicy::new());
    let mut svc = retry.layer(server.clone());
    let start = Instant::now();
    let resp = send(&mut svc, call()).await.unwrap();
    assert_eq!(status(&resp), GrpcCode::Ok);
    let calls = server.calls();
    assert_eq!(calls.len(), 2);
    // 50 ms, not the backoff's 100 ms.
    assert_eq!(calls[1].0 - start, Duration::from_millis(50));
    assert_eq!(start.elapsed(), Duration::from_millis(50));
}

#[tokio::test(start_paused = true)]
async fn a_negative_pushback_stops_the_retries() {
    for pushback in ["-1", "later"] {
        let server = Server::new(&[Reply::CodePushback(14, pushback), Reply::Code(0)]);
        let (retry, gave_up) = layer(GrpcRetryPolicy::new());
        let mut svc = retry.layer(server.clone());
        let start = Instant::now();
        // The last outcome comes back as it was: the UNAVAILABLE response.
        let resp = send(&mut svc, call()).await.unwrap();
        assert_eq!(status(&resp), GrpcCode::Unavailable);
        assert_eq!(server.calls().len(), 1, "{pushback}");
        assert_eq!(start.elapsed(), Duration::ZERO);
        assert_eq!(*gave_up.lock().unwrap(), vec![GiveUpReason::Pushback]);
    }
}

#[tokio::test(start_paused = true)]
async fn a_pushback_over_the_cap_means_no_retry() {
    let server = Server::new(&[Reply::CodePushback(14, "60000"), Reply::Code(0)]);
    let (retry, gave_up) = layer(GrpcRetryPolicy::new().max_retry_after(Duration::from_secs(30)));
    let mut svc = retry.layer(server.clone());
    let resp = send(&mut svc, call()).await.unwrap();
    assert_eq!(status(&resp), GrpcCode::Unavailable);
    assert_eq!(server.calls().len(), 1);
    assert_eq!(
        *gave_up.lock().unwrap(),
        vec![GiveUpReason::RetryAfterTooLong]
    );
}

#[tokio::test(start_paused = true)]
async fn a_pushback_on_an_answer_is_ignored() {
    let server = Server::new(&[Reply::CodePushback(5, "10"), Reply::Code(0)]);
    let (retry, gave_up) = layer(GrpcRetryPolicy::new());
    let mut svc = retry.layer(server.clone());
    let resp = send(&mut svc, call()).await.unwrap();
    assert_eq!(status(&resp), GrpcCode::NotFound);
    assert_eq!(server.calls().len(), 1);
    assert!(gave_up.lock().unwrap().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_streaming_body_is_replayed_and_one_over_the_cap_is_sent_once() {
    let streamed = || {
        let chunks = ["du", "ne"].map(|s| Ok::<_, std::io::Error>(Frame::data(Bytes::from(s))));
        Request::post("/books.Store/Get")
            .body(StreamBody::new(futures_util::stream::iter(chunks)))
            .unwrap()
    };

    let server = Server::new(&[Reply::Code(14), Reply::Code(0)]);
    let (retry, _) = layer(GrpcRetryPolicy::new());
    let mut svc = retry.layer(server.clone());
    let resp = send(&mut svc, replayable(streamed(), 1024)).await.unwrap();
    assert_eq!(status(&resp), GrpcCode::Ok);
    let calls = server.calls();
    assert_eq!(calls.len(), 2);
    assert!(calls.iter().all(|(_, body)| body == "dune"));

    // A cap of 2 bytes: the first attempt reads all 4, so the body cannot be sent again.
    let server = Server::new(&[Reply::Code(14), Reply::Code(0)]);
    let (retry, gave_up) = layer(GrpcRetryPolicy::new());
    let mut svc = retry.layer(server.clone());
    let resp = send(&mut svc, replayable(streamed(), 2)).await.unwrap();
    assert_eq!(status(&resp), GrpcCode::Unavailable);
    assert_eq!(server.calls().len(), 1);
    assert_eq!(*gave_up.lock().unwrap(), vec![GiveUpReason::NotResendable]);
}
