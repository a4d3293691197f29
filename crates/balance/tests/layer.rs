//! `BalanceLayer` as a `Layer<Vec<S>>`: what `build` would refuse becomes behaviour, never a
//! panic.

use bulwark_balance::{BalanceLayer, NoEndpointReady, Strategy, Unavailable};
use bulwark_core::SplitMix64;
use std::time::Duration;
use tower::util::BoxCloneService;
use tower::{Layer, Service, ServiceBuilder, ServiceExt};

type Endpoint = BoxCloneService<(), &'static str, std::io::Error>;

fn endpoint(name: &'static str) -> Endpoint {
    BoxCloneService::new(tower::service_fn(move |_: ()| async move { Ok(name) }))
}

#[tokio::test(start_paused = true)]
async fn a_layer_over_a_vec_balances_like_build() {
    let layer = BalanceLayer::builder()
        .strategy(Strategy::RoundRobin)
        .endpoint_names(["a", "b", "c"])
        .random(SplitMix64::new(7))
        .build()
        .unwrap();
    let mut svc = ServiceBuilder::new().layer(layer).service(vec![
        endpoint("a"),
        endpoint("b"),
        endpoint("c"),
    ]);
    let mut seen = Vec::new();
    for _ in 0..4 {
        seen.push(svc.ready().await.unwrap().call(()).await.unwrap());
    }
    assert_eq!(seen, ["a", "b", "c", "a"]);
    let names: Vec<String> = svc
        .handle()
        .endpoints()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(names, ["a", "b", "c"]);
}

#[tokio::test(start_paused = true)]
async fn an_empty_list_answers_no_endpoint_ready_after_the_wait() {
    let layer = BalanceLayer::builder()
        .wait_for_ready(Duration::from_millis(300))
        .random(SplitMix64::new(7))
        .build()
        .unwrap();
    let mut svc = layer.layer(Vec::<Endpoint>::new());
    let start = tokio::time::Instant::now();
    let err = svc.ready().await.unwrap().call(()).await.unwrap_err();
    assert_eq!(start.elapsed(), Duration::from_millis(300));
    let e = err.downcast_ref::<NoEndpointReady>().unwrap();
    assert_eq!(e.reason, Unavailable::NoEndpoints);
    assert_eq!(e.retry_after, None);
}

#[tokio::test(start_paused = true)]
async fn names_that_do_not_match_fall_back_to_indexes() {
    let layer = BalanceLayer::builder()
        .strategy(Strategy::RoundRobin)
        .endpoint_names(["only-one"])
        .random(SplitMix64::new(7))
        .build()
        .unwrap();
    assert_eq!(
        layer
            .build(vec![endpoint("a"), endpoint("b")])
            .unwrap_err()
            .setting(),
        "endpoint_names"
    );
    let mut svc = layer.layer(vec![endpoint("a"), endpoint("b")]);
    let names: Vec<String> = svc
        .handle()
        .endpoints()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(names, ["0", "1"]);
    assert_eq!(svc.ready().await.unwrap().call(()).await.unwrap(), "a");
    assert_eq!(svc.ready().await.unwrap().call(()).await.unwrap(), "b");
}
