//! `FanOutLayer` as a `Layer<Vec<S>>`: a list `build` would refuse gives a fan-out whose every
//! call fails with the configuration error, never a vacuous success and never a panic.

use bulwark_fanout::{Collect, ConfigError, FanOutFailed, FanOutLayer, FirstSuccess, Policy};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tower::util::BoxCloneService;
use tower::{Layer, Service, ServiceBuilder, ServiceExt};

type Target = BoxCloneService<u32, u16, std::io::Error>;

fn target(status: u16, calls: &Arc<AtomicUsize>) -> Target {
    let calls = calls.clone();
    BoxCloneService::new(tower::service_fn(move |_: u32| {
        calls.fetch_add(1, Ordering::SeqCst);
        async move {
            if status == 0 {
                Err(std::io::Error::from(std::io::ErrorKind::ConnectionRefused))
            } else {
                Ok(status)
            }
        }
    }))
}

#[tokio::test(start_paused = true)]
async fn a_layer_over_a_vec_fans_out_like_build() {
    let calls = Arc::new(AtomicUsize::new(0));
    let layer = FanOutLayer::builder()
        .target_names(["s1", "s2", "s3"])
        .merge(FirstSuccess)
        .build()
        .unwrap();
    let mut svc = ServiceBuilder::new().layer(layer).service(vec![
        target(201, &calls),
        target(201, &calls),
        target(201, &calls),
    ]);
    assert_eq!(svc.ready().await.unwrap().call(1).await.unwrap(), 201);
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[tokio::test(start_paused = true)]
async fn an_empty_list_fails_every_call_with_no_targets() {
    // `All` over no targets must not be met by nobody.
    for policy in [Policy::All, Policy::First, Policy::Quorum(1)] {
        let layer = FanOutLayer::builder().policy(policy).build().unwrap();
        let mut svc = layer.layer(Vec::<Target>::new());
        for _ in 0..2 {
            let err = svc.ready().await.unwrap().call(1).await.unwrap_err();
            assert_eq!(
                err.downcast_ref::<ConfigError>(),
                Some(&ConfigError::NoTargets),
                "{policy:?}"
            );
        }
    }
}

#[tokio::test(start_paused = true)]
async fn an_impossible_quorum_fails_without_calling_any_target() {
    let calls = Arc::new(AtomicUsize::new(0));
    // A quorum of 0 is refused by the builder, whatever the targets.
    assert_eq!(
        FanOutLayer::builder()
            .policy(Policy::Quorum(0))
            .build()
            .unwrap_err(),
        ConfigError::Quorum {
            quorum: 0,
            targets: 0
        }
    );
    let layer = FanOutLayer::builder()
        .policy(Policy::Quorum(3))
        .merge(Collect)
        .build()
        .unwrap();
    let mut svc = layer.layer(vec![target(201, &calls), target(201, &calls)]);
    let err = svc.ready().await.unwrap().call(1).await.unwrap_err();
    assert_eq!(
        err.downcast_ref::<ConfigError>(),
        Some(&ConfigError::Quorum {
            quorum: 3,
            targets: 2
        })
    );
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

#[tokio::test(start_paused = true)]
async fn a_zero_deadline_is_refused_by_the_builder() {
    let err = FanOutLayer::builder()
        .deadline(Duration::ZERO)
        .merge(FirstSuccess)
        .build()
        .unwrap_err();
    assert_eq!(
        err,
        ConfigError::Zero {
            setting: "deadline"
        }
    );
}

#[tokio::test(start_paused = true)]
async fn names_that_do_not_match_fall_back_to_indexes() {
    let calls = Arc::new(AtomicUsize::new(0));
    let layer = FanOutLayer::builder()
        .name("register")
        .target_names(["only-one"])
        .merge(FirstSuccess)
        .build()
        .unwrap();
    let mut svc = layer.layer(vec![target(201, &calls), target(0, &calls)]);
    let err = svc.ready().await.unwrap().call(1).await.unwrap_err();
    let failed = err.downcast_ref::<FanOutFailed>().unwrap();
    let names: Vec<&str> = failed.targets.iter().map(|t| t.1.as_str()).collect();
    assert_eq!(names, ["0", "1"]);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}
