//! Deadline propagation: each attempt tells the backend the time it has left (gRPC's
//! `grpc-timeout`, or an HTTP header), and the deadline a request carries, or the one a server
//! received ([`InboundDeadlineLayer`]), ends the attempts. Paused time; the backend is an
//! in-process script that records what each attempt carried.
#![cfg(feature = "grpc")]

use bulwark_core::backoff::{ExponentialBackoff, Jitter};
use bulwark_core::{BoxError, DeadlineExceeded};
use bulwark_retry::{BackoffRetryLayer, GrpcRetryPolicy, HttpRetryPolicy, InboundDeadlineLayer};
use http::{HeaderName, Request, Response};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use tower::util::BoxCloneService;
use tower::{Layer, Service, ServiceExt};

const TIMEOUT_MS: HeaderName = HeaderName::from_static("x-request-timeout-ms");

/// What each attempt carried in the watched header, and when it came.
type Seen = Vec<(Duration, Option<String>)>;

/// Answers each attempt with the next `grpc-status` of its script (`None`: never answers);
/// records the header `watch` of each attempt, and when it came.
#[derive(Clone)]
struct Backend {
    script: Arc<Mutex<VecDeque<Option<&'static str>>>>,
    seen: Arc<Mutex<Seen>>,
    start: Instant,
    watch: HeaderName,
}

impl Backend {
    fn new(watch: &'static str, script: &[Option<&'static str>]) -> Self {
        Backend {
            script: Arc::new(Mutex::new(script.iter().copied().collect())),
            seen: Arc::default(),
            start: Instant::now(),
            watch: HeaderName::from_static(watch),
        }
    }

    fn seen(&self) -> Seen {
        self.seen.lock().unwrap().clone()
    }

    fn service(&self) -> BoxCloneService<Request<String>, Response<()>, BoxError> {
        let me = self.clone();
        BoxCloneService::new(tower::service_fn(move |req: Request<String>| {
            let me = me.clone();
            async move {
                let header = req
                    .headers()
                    .get(&me.watch)
                    .map(|v| v.to_str().unwrap().to_owned());
                me.seen.lock().unwrap().push((me.start.elapsed(), header));
                let reply = me.script.lock().unwrap().pop_front().flatten();
                match reply {
                    Some(code) => Ok(Response::builder()
                        .header("grpc-status", code)
                        .body(())
                        .unwrap()),
                    None => std::future::pending().await,
                }
            }
        }))
    }
}

fn steady_backoff() -> ExponentialBackoff {
    ExponentialBackoff::new(
        Duration::from_millis(100),
        2.0,
        Duration::from_secs(1),
        Jitter::None,
    )
    .unwrap()
}

fn grpc_call(timeout: Option<&str>) -> Request<String> {
    let mut req = Request::post("/books.Store/Get");
    if let Some(t) = timeout {
        req = req.header("grpc-timeout", t);
    }
    req.body(String::new()).unwrap()
}

#[tokio::test(start_paused = true)]
async fn each_attempt_carries_the_time_it_has_left_as_grpc_timeout() {
    let backend = Backend::new("grpc-timeout", &[Some("14"), Some("14"), Some("0")]);
    let mut client = BackoffRetryLayer::builder()
        .deadline(Duration::from_secs(1))
        .backoff(steady_backoff())
        .policy(GrpcRetryPolicy::new())
        .build()
        .unwrap()
        .layer(backend.service());
    let resp = client
        .ready()
        .await
        .unwrap()
        .call(grpc_call(None))
        .await
        .unwrap();
    assert_eq!(resp.headers()["grpc-status"], "0");
    let ms = Duration::from_millis;
    assert_eq!(
        backend.seen(),
        vec![
            (ms(0), Some("1000000u".into())),
            (ms(100), Some("900000u".into())),
            (ms(300), Some("700000u".into())),
        ],
        "1 s, then what is left after waits of 100 and 200 ms"
    );
}

#[tokio::test(start_paused = true)]
async fn an_attempt_timeout_shorter_than_the_deadline_is_what_the_backend_is_told() {
    let backend = Backend::new("grpc-timeout", &[None, Some("0")]);
    let mut client = BackoffRetryLayer::builder()
        .deadline(Duration::from_secs(1))
        .attempt_timeout(Duration::from_millis(250))
        .backoff(steady_backoff())
        .policy(GrpcRetryPolicy::new())
        .build()
        .unwrap()
        .layer(backend.service());
    client
        .ready()
        .await
        .unwrap()
        .call(grpc_call(None))
        .await
        .unwrap();
    let ms = Duration::from_millis;
    assert_eq!(
        backend.seen(),
        vec![
            (ms(0), Some("250000u".into())),
            // Timed out at 250 ms, waited 100: 650 ms of the deadline left, 250 for the attempt.
            (ms(350), Some("250000u".into())),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_request_carrying_grpc_timeout_ends_its_attempts_by_then() {
    let backend = Backend::new("grpc-timeout", &[None]);
    let mut client = BackoffRetryLayer::builder()
        .deadline(Duration::from_secs(10))
        .policy(GrpcRetryPolicy::new())
        .build()
        .unwrap()
        .layer(backend.service());
    let start = Instant::now();
    let err = client
        .ready()
        .await
        .unwrap()
        .call(grpc_call(Some("300m")))
        .await
        .unwrap_err();
    assert_eq!(start.elapsed(), Duration::from_millis(300));
    let err = err
        .downcast_ref::<DeadlineExceeded>()
        .expect("the deadline");
    assert_eq!(
        err.deadline,
        Duration::from_millis(300),
        "the time allowed, not the layer's 10 s"
    );
    assert_eq!(
        backend.seen(),
        vec![(Duration::ZERO, Some("300000u".into()))]
    );
}

#[tokio::test(start_paused = true)]
async fn without_propagation_grpc_timeout_is_neither_read_nor_written() {
    let backend = Backend::new("grpc-timeout", &[None]);
    let mut client = BackoffRetryLayer::builder()
        .deadline(Duration::from_secs(1))
        .policy(GrpcRetryPolicy::new().propagate_deadline(false))
        .build()
        .unwrap()
        .layer(backend.service());
    let start = Instant::now();
    let err = client
        .ready()
        .await
        .unwrap()
        .call(grpc_call(Some("300m")))
        .await
        .unwrap_err();
    assert!(err.is::<DeadlineExceeded>());
    assert_eq!(
        start.elapsed(),
        Duration::from_secs(1),
        "the layer's own deadline"
    );
    assert_eq!(
        backend.seen(),
        vec![(Duration::ZERO, Some("300m".into()))],
        "the caller's header, untouched"
    );
}

/// A server whose handler calls `backend` through `client_retry` for each request it serves.
fn server(
    edge: InboundDeadlineLayer,
    client: BackoffRetryLayer<GrpcRetryPolicy>,
    backend: &Backend,
) -> BoxCloneService<Request<String>, Response<()>, BoxError> {
    let client = client.layer(backend.service());
    BoxCloneService::new(edge.layer(tower::service_fn(move |_: Request<String>| {
        // A new request to the backend: the deadline crosses through the scope only.
        client.clone().oneshot(grpc_call(None))
    })))
}

#[tokio::test(start_paused = true)]
async fn a_server_passes_its_callers_deadline_on_to_its_backends() {
    let backend = Backend::new("grpc-timeout", &[Some("14"), None]);
    let client = BackoffRetryLayer::builder()
        .backoff(steady_backoff())
        .policy(GrpcRetryPolicy::new())
        .build()
        .unwrap();
    let mut server = server(InboundDeadlineLayer::grpc(), client, &backend);
    let start = Instant::now();
    let err = server
        .ready()
        .await
        .unwrap()
        .call(grpc_call(Some("250m")))
        .await
        .unwrap_err();
    assert!(err.is::<DeadlineExceeded>(), "{err}");
    assert_eq!(
        start.elapsed(),
        Duration::from_millis(250),
        "the caller's deadline"
    );
    assert_eq!(
        backend.seen(),
        vec![
            (Duration::ZERO, Some("250000u".into())),
            (Duration::from_millis(100), Some("150000u".into())),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_layer_that_does_not_inherit_ignores_the_callers_deadline() {
    let backend = Backend::new("grpc-timeout", &[None]);
    let client = BackoffRetryLayer::builder()
        .deadline(Duration::from_secs(1))
        .inherit_deadline(false)
        .policy(GrpcRetryPolicy::new())
        .build()
        .unwrap();
    let mut server = server(InboundDeadlineLayer::grpc(), client, &backend);
    let start = Instant::now();
    let err = server
        .ready()
        .await
        .unwrap()
        .call(grpc_call(Some("250m")))
        .await
        .unwrap_err();
    assert!(err.is::<DeadlineExceeded>(), "{err}");
    assert_eq!(start.elapsed(), Duration::from_secs(1));
    assert_eq!(
        backend.seen(),
        vec![(Duration::ZERO, Some("1000000u".into()))]
    );
}

#[tokio::test(start_paused = true)]
async fn a_malformed_incoming_timeout_is_no_deadline() {
    let backend = Backend::new("grpc-timeout", &[]);
    let client = BackoffRetryLayer::builder()
        .policy(GrpcRetryPolicy::new())
        .build()
        .unwrap();
    let mut server = server(InboundDeadlineLayer::grpc(), client, &backend);
    for bad in ["soon", "123456789m", "-5m"] {
        backend.script.lock().unwrap().push_back(Some("0"));
        let answer = server
            .ready()
            .await
            .unwrap()
            .call(grpc_call(Some(bad)))
            .await;
        assert!(answer.is_ok(), "{bad:?}: served as if it had no deadline");
    }
    assert_eq!(backend.seen().len(), 3);
    assert!(
        backend.seen().iter().all(|(_, t)| t.is_none()),
        "{:?}",
        backend.seen()
    );
}

#[tokio::test(start_paused = true)]
async fn over_http_the_deadline_header_is_read_and_written_in_milliseconds() {
    let backend = Backend::new("x-request-timeout-ms", &[Some("0")]);
    let client = BackoffRetryLayer::builder()
        .deadline(Duration::from_secs(5))
        .policy(HttpRetryPolicy::new().deadline_header(TIMEOUT_MS))
        .build()
        .unwrap()
        .layer(backend.service());
    let edge = InboundDeadlineLayer::header(TIMEOUT_MS);
    let mut server = edge.layer(tower::service_fn(move |_: Request<String>| {
        client
            .clone()
            .oneshot(Request::get("/book/dune").body(String::new()).unwrap())
    }));
    let request = Request::get("/search")
        .header(TIMEOUT_MS, "1500")
        .body(String::new())
        .unwrap();
    server.ready().await.unwrap().call(request).await.unwrap();
    assert_eq!(backend.seen(), vec![(Duration::ZERO, Some("1500".into()))]);
}

#[tokio::test(start_paused = true)]
async fn an_attempt_that_fails_as_the_deadline_passes_ends_with_the_deadline() {
    // The backend, told of the same deadline, gives up at the same moment: its error (a reset
    // stream) says less than the deadline does. An answer at that moment is still an answer.
    for (fails, expect_deadline) in [(true, true), (false, false)] {
        let backend = tower::service_fn(move |_: Request<String>| async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            if fails {
                Err::<Response<()>, BoxError>("stream reset by the server".into())
            } else {
                Ok(Response::builder()
                    .header("grpc-status", "0")
                    .body(())
                    .unwrap())
            }
        });
        let mut client = BackoffRetryLayer::builder()
            .deadline(Duration::from_millis(300))
            .policy(GrpcRetryPolicy::new())
            .build()
            .unwrap()
            .layer(backend);
        let result = client.ready().await.unwrap().call(grpc_call(None)).await;
        match result {
            Err(e) => assert!(
                expect_deadline && e.is::<DeadlineExceeded>(),
                "fails={fails}: {e}"
            ),
            Ok(_) => assert!(!expect_deadline, "fails={fails}: answered"),
        }
    }
}
