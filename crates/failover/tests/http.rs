//! The HTTP policy through the failover set: failover codes, last response as it came,
//! replayable and non-replayable bodies.
#![cfg(feature = "http")]

use bulwark_core::replay::{replayable, ReplayBody};
use bulwark_core::{BoxError, StatusSet};
use bulwark_failover::{FailoverLayer, HttpFailoverPolicy};
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tower::{Service, ServiceExt};

/// A target answering `status` and recording the bodies it read.
#[derive(Clone)]
struct Store {
    status: u16,
    seen: Arc<Mutex<Vec<Bytes>>>,
}

fn store(status: u16) -> Store {
    Store {
        status,
        seen: Arc::default(),
    }
}

impl<B> Service<Request<B>> for Store
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
        let (status, seen) = (self.status, self.seen.clone());
        Box::pin(async move {
            let body = req
                .into_body()
                .collect()
                .await
                .map_err(Into::into)?
                .to_bytes();
            seen.lock().unwrap().push(body);
            Ok(Response::builder()
                .status(status)
                .body(String::new())
                .unwrap())
        })
    }
}

async fn send<S>(fo: &mut S, req: Request<Full<Bytes>>) -> Response<String>
where
    S: Service<Request<Full<Bytes>>, Response = Response<String>, Error = BoxError>,
{
    fo.ready().await.unwrap().call(req).await.unwrap()
}

fn body(len: usize) -> Full<Bytes> {
    Full::new(Bytes::from(vec![7u8; len]))
}

#[tokio::test(start_paused = true)]
async fn failover_codes_move_on_and_other_statuses_are_answers() {
    let stores = vec![store(503), store(502), store(200)];
    let mut fo = FailoverLayer::builder()
        .http()
        .build()
        .unwrap()
        .build(stores.clone())
        .unwrap();
    let req = Request::get("/book/dune").body(body(0)).unwrap();
    assert_eq!(send(&mut fo, req).await.status(), 200);

    // A 500 is an answer, not a failover status.
    let stores = vec![store(500), store(200)];
    let mut fo = FailoverLayer::builder()
        .http()
        .build()
        .unwrap()
        .build(stores.clone())
        .unwrap();
    let req = Request::get("/book/dune").body(body(0)).unwrap();
    assert_eq!(send(&mut fo, req).await.status(), 500);
    assert_eq!(stores[1].seen.lock().unwrap().len(), 0);
}

#[tokio::test(start_paused = true)]
async fn when_all_answer_with_failover_codes_the_last_response_comes_back() {
    let stores = vec![store(503), store(504)];
    let mut fo = FailoverLayer::builder()
        .http()
        .build()
        .unwrap()
        .build(stores)
        .unwrap();
    let req = Request::get("/").body(body(0)).unwrap();
    // The caller still sees a status, not an error.
    assert_eq!(send(&mut fo, req).await.status(), 504);
}

#[tokio::test(start_paused = true)]
async fn failover_codes_are_configurable() {
    let stores = vec![store(500), store(200)];
    let mut fo = FailoverLayer::builder()
        .policy(HttpFailoverPolicy::new().failover_codes(StatusSet::server_errors()))
        .build()
        .unwrap()
        .build(stores)
        .unwrap();
    let req = Request::get("/").body(body(0)).unwrap();
    assert_eq!(send(&mut fo, req).await.status(), 200);
}

#[tokio::test(start_paused = true)]
async fn a_replayed_body_goes_to_the_next_target_whole_and_one_over_the_cap_is_sent_once() {
    for (len, expect_tried) in [(10 * 1024, 2usize), (100 * 1024, 1)] {
        let stores = vec![store(503), store(200)];
        let mut fo = FailoverLayer::builder()
            .http()
            .build()
            .unwrap()
            .build(stores.clone())
            .unwrap();
        let req = replayable(Request::put("/book").body(body(len)).unwrap(), 64 * 1024);
        let resp = ServiceExt::<Request<ReplayBody<Full<Bytes>>>>::ready(&mut fo)
            .await
            .unwrap()
            .call(req)
            .await
            .unwrap();
        let tried = stores
            .iter()
            .filter(|s| !s.seen.lock().unwrap().is_empty())
            .count();
        assert_eq!(tried, expect_tried, "body of {len} bytes");
        for s in &stores[..tried] {
            assert_eq!(
                s.seen.lock().unwrap()[0].len(),
                len,
                "every target got the whole body"
            );
        }
        let expected_status = if expect_tried == 2 { 200 } else { 503 };
        assert_eq!(resp.status(), expected_status);
    }
}

#[tokio::test(start_paused = true)]
async fn the_next_target_is_told_the_time_left_when_the_request_reaches_it() {
    use bulwark_core::deadline::{parse_grpc_timeout, GRPC_TIMEOUT};
    use std::time::Duration;

    // A gRPC call carrying `grpc-timeout: 1S` (as a retry above stamps it); the first target
    // answers 503 after 200 ms, so the second is told 800 ms.
    let seen = Arc::new(Mutex::new(Vec::new()));
    let target = |status: u16, wait: u64| {
        let seen = seen.clone();
        tower::service_fn(move |req: Request<Full<Bytes>>| {
            seen.lock()
                .unwrap()
                .push(req.headers().get(GRPC_TIMEOUT).and_then(parse_grpc_timeout));
            async move {
                tokio::time::sleep(Duration::from_millis(wait)).await;
                Ok::<_, BoxError>(
                    Response::builder()
                        .status(status)
                        .body(String::new())
                        .unwrap(),
                )
            }
        })
    };
    // A fresh set per request (the set is sticky to the target that answered).
    let failover = || {
        FailoverLayer::builder()
            .http()
            .build()
            .unwrap()
            .build(vec![target(503, 200), target(200, 10)])
            .unwrap()
    };
    let mut fo = failover();
    let req = Request::post("/books.Search/Find")
        .header(GRPC_TIMEOUT, "1S")
        .body(body(0))
        .unwrap();
    assert_eq!(send(&mut fo, req).await.status(), 200);
    assert_eq!(
        *seen.lock().unwrap(),
        vec![
            Some(Duration::from_secs(1)),
            Some(Duration::from_millis(800))
        ]
    );

    // Without the header, none is added.
    seen.lock().unwrap().clear();
    let mut fo = failover();
    let req = Request::post("/books.Search/Find").body(body(0)).unwrap();
    assert_eq!(send(&mut fo, req).await.status(), 200);
    assert_eq!(*seen.lock().unwrap(), vec![None, None]);
}

#[tokio::test(start_paused = true)]
async fn a_failure_response_then_an_error_ends_with_every_failure_listed() {
    // The last outcome is an error: the caller gets AllFailed (which names the 503 too), not
    // the earlier response.
    let refusing = tower::service_fn(|_: Request<Full<Bytes>>| async {
        Err::<Response<String>, BoxError>(Box::new(std::io::Error::from(
            std::io::ErrorKind::ConnectionRefused,
        )))
    });
    let targets: Vec<
        tower::util::BoxCloneService<Request<Full<Bytes>>, Response<String>, BoxError>,
    > = vec![
        tower::util::BoxCloneService::new(store(503)),
        tower::util::BoxCloneService::new(refusing),
    ];
    let mut fo = FailoverLayer::builder()
        .http()
        .build()
        .unwrap()
        .build(targets)
        .unwrap();
    let req = Request::get("/").body(body(0)).unwrap();
    let err = fo.ready().await.unwrap().call(req).await.unwrap_err();
    let all = err
        .downcast_ref::<bulwark_failover::AllFailed>()
        .expect("every target failed");
    let reasons: Vec<&str> = all.failures().iter().map(|f| f.reason.as_str()).collect();
    assert_eq!(reasons[0], "503 Service Unavailable");
    assert_eq!(all.failures().len(), 2);
}
