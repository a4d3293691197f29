//! The HTTP merge, and readiness per branch.
#![cfg(feature = "http")]

use bulwark_core::Outcome;
use bulwark_fanout::{FanOutFailed, FanOutLayer, HttpMerge, Policy, SUMMARY_HEADER};
use http::{Request, Response};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use tower::util::BoxCloneService;
use tower::{Service, ServiceExt};

type Store = BoxCloneService<Request<String>, Response<String>, std::io::Error>;

fn store(status: u16) -> Store {
    BoxCloneService::new(tower::service_fn(move |_: Request<String>| async move {
        Ok(Response::builder()
            .status(status)
            .body(String::new())
            .unwrap())
    }))
}

fn created(r: &Result<Response<String>, std::io::Error>) -> Outcome {
    match r {
        Ok(resp) if resp.status() == 201 => Outcome::Success,
        _ => Outcome::Failure,
    }
}

fn post() -> Request<String> {
    Request::post("/books").body(String::from("{}")).unwrap()
}

#[tokio::test(start_paused = true)]
async fn the_http_merge_returns_the_first_success_with_a_summary() {
    let mut fanout = FanOutLayer::builder()
        .classifier(created)
        .merge(HttpMerge)
        .build()
        .unwrap()
        .build(vec![store(201), store(201), store(201)])
        .unwrap();
    let resp = fanout.ready().await.unwrap().call(post()).await.unwrap();
    assert_eq!(resp.status(), 201);
    assert_eq!(resp.headers()[SUMMARY_HEADER], "3/3 succeeded (all)");
}

#[tokio::test(start_paused = true)]
async fn the_http_merge_lists_each_store_when_the_policy_fails() {
    let mut fanout = FanOutLayer::builder()
        .name("register")
        .target_names(["store-1", "store-2", "store-3"])
        .classifier(created)
        .merge(HttpMerge)
        .build()
        .unwrap()
        .build(vec![store(201), store(503), store(201)])
        .unwrap();
    let err = fanout
        .ready()
        .await
        .unwrap()
        .call(post())
        .await
        .unwrap_err();
    assert!(err.is::<FanOutFailed>());
    // These stores answer at once, so the fan-out knows "all" has failed as soon as store-2
    // answers 503, and answers without starting store-3 (early exit).
    assert_eq!(
        err.to_string(),
        "fan-out register failed (all: 1 of 3 succeeded): [0] store-1: 201 Created; [1] store-2: 503 Service Unavailable; [2] store-3: cancelled"
    );
}

/// A target that is not ready until released, and that checks it was polled ready.
#[derive(Clone)]
struct Gate {
    open: Arc<AtomicBool>,
    reserved: bool,
}

impl Service<Request<String>> for Gate {
    type Response = Response<String>;
    type Error = std::io::Error;
    type Future = std::future::Ready<Result<Response<String>, std::io::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), std::io::Error>> {
        if self.open.load(Ordering::SeqCst) {
            self.reserved = true;
            Poll::Ready(Ok(()))
        } else {
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }

    fn call(&mut self, _: Request<String>) -> Self::Future {
        assert!(
            std::mem::take(&mut self.reserved),
            "called without being polled ready"
        );
        std::future::ready(Ok(Response::builder()
            .status(201)
            .body(String::new())
            .unwrap()))
    }
}

#[tokio::test]
async fn a_target_that_is_not_ready_does_not_hold_up_the_others() {
    let closed = Arc::new(AtomicBool::new(false));
    let open = Arc::new(AtomicBool::new(true));
    let gate = |flag: &Arc<AtomicBool>| Gate {
        open: flag.clone(),
        reserved: false,
    };
    let mut fanout = FanOutLayer::builder()
        .policy(Policy::Quorum(2))
        .classifier(created)
        .build()
        .unwrap()
        .build(vec![gate(&open), gate(&closed), gate(&open)])
        .unwrap();
    let outcomes = fanout.ready().await.unwrap().call(post()).await.unwrap();
    assert!(outcomes.met);
    assert_eq!(outcomes.successes(), 2);
}
