//! A retry stacked over the balancer does not go back to the endpoint that just failed the
//! request while another is available.
#![cfg(feature = "http")]

use bulwark_balance::{BalanceLayer, Strategy};
use bulwark_retry::{BackoffRetryLayer, HttpRetryPolicy};
use http::{Request, Response};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tower::util::BoxCloneService;
use tower::{Layer, Service, ServiceExt};

type Endpoint = BoxCloneService<Request<String>, Response<String>, std::io::Error>;

fn endpoint(status: u16, calls: &Arc<AtomicUsize>) -> Endpoint {
    let calls = calls.clone();
    BoxCloneService::new(tower::service_fn(move |_: Request<String>| {
        calls.fetch_add(1, Ordering::SeqCst);
        async move {
            Ok(Response::builder()
                .status(status)
                .body(String::new())
                .unwrap())
        }
    }))
}

fn retry() -> BackoffRetryLayer<HttpRetryPolicy> {
    BackoffRetryLayer::builder()
        .max_attempts(3)
        .no_budget()
        .policy(HttpRetryPolicy::new())
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_retry_goes_to_an_endpoint_the_request_has_not_been_to() {
    let (a, b) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    // First-available would always pick the failing endpoint first.
    let lb = BalanceLayer::builder()
        .strategy(Strategy::FirstAvailable)
        .http()
        .build()
        .unwrap()
        .build(vec![endpoint(503, &a), endpoint(200, &b)])
        .unwrap();
    let mut svc = retry().layer(lb);
    for _ in 0..5 {
        let req = Request::get("/book/dune").body(String::new()).unwrap();
        let resp = svc.ready().await.unwrap().call(req).await.unwrap();
        assert_eq!(resp.status(), 200);
    }
    // Each request went once to the failing endpoint, and its retry to the other.
    assert_eq!((a.load(Ordering::SeqCst), b.load(Ordering::SeqCst)), (5, 5));
}

#[tokio::test(start_paused = true)]
async fn without_attempts_the_retry_goes_back_to_the_same_endpoint() {
    let (a, b) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let lb = BalanceLayer::builder()
        .strategy(Strategy::FirstAvailable)
        .build()
        .unwrap()
        .build(vec![endpoint(503, &a), endpoint(200, &b)])
        .unwrap();
    let mut svc = retry().layer(lb);
    let req = Request::get("/book/dune").body(String::new()).unwrap();
    let resp = svc.ready().await.unwrap().call(req).await.unwrap();
    // All three attempts hit the same failing endpoint: what the attempts prevent.
    assert_eq!(resp.status(), 503);
    assert_eq!((a.load(Ordering::SeqCst), b.load(Ordering::SeqCst)), (3, 0));
}

#[tokio::test(start_paused = true)]
async fn when_every_endpoint_had_it_the_retry_still_goes_somewhere() {
    let (a, b) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let lb = BalanceLayer::builder()
        .strategy(Strategy::FirstAvailable)
        .http()
        .build()
        .unwrap()
        .build(vec![endpoint(503, &a), endpoint(503, &b)])
        .unwrap();
    let mut svc = retry().layer(lb);
    let req = Request::get("/book/dune").body(String::new()).unwrap();
    let resp = svc.ready().await.unwrap().call(req).await.unwrap();
    assert_eq!(resp.status(), 503);
    // a, then b, then (both tried) the reserved one again: three attempts in all.
    assert_eq!(a.load(Ordering::SeqCst) + b.load(Ordering::SeqCst), 3);
    assert!(b.load(Ordering::SeqCst) >= 1);
}
