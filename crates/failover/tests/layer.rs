//! `FailoverLayer` as a `Layer<Vec<S>>`: what `build` would refuse becomes behaviour, never a
//! panic.

use bulwark_failover::{AllFailed, FailoverLayer, NoTargetReady};
use std::time::Duration;
use tower::util::BoxCloneService;
use tower::{Layer, Service, ServiceExt};

type Target = BoxCloneService<u32, String, std::io::Error>;

fn refusing() -> Target {
    BoxCloneService::new(tower::service_fn(|_: u32| async {
        Err(std::io::Error::from(std::io::ErrorKind::ConnectionRefused))
    }))
}

fn answering(name: &'static str) -> Target {
    BoxCloneService::new(tower::service_fn(move |_: u32| async move {
        Ok(name.to_string())
    }))
}

#[tokio::test(start_paused = true)]
async fn names_that_do_not_match_fall_back_to_indexes() {
    // One name for three targets: `build` refuses it; the layer names them by index, and a
    // failure of the third target (no name of its own) does not index out of bounds.
    let layer = FailoverLayer::builder()
        .target_names(["primary"])
        .build()
        .unwrap();
    assert_eq!(
        layer
            .build(vec![refusing(), refusing(), refusing()])
            .unwrap_err()
            .setting(),
        "target_names"
    );
    let mut set = layer.layer(vec![refusing(), refusing(), refusing()]);
    assert_eq!(set.target_names(), ["0", "1", "2"]);
    let err = set.ready().await.unwrap().call(1).await.unwrap_err();
    let all = err.downcast_ref::<AllFailed>().unwrap();
    let names: Vec<&str> = all.failures().iter().map(|f| f.target.as_str()).collect();
    assert_eq!(names, ["0", "1", "2"]);

    // Matching names are kept.
    let named = FailoverLayer::builder()
        .target_names(["a", "b"])
        .build()
        .unwrap()
        .layer(vec![refusing(), answering("b")]);
    assert_eq!(named.target_names(), ["a", "b"]);
}

#[tokio::test(start_paused = true)]
async fn an_empty_list_answers_no_target_ready_after_the_wait() {
    let layer = FailoverLayer::builder()
        .wait_for_ready(Duration::from_millis(200))
        .build()
        .unwrap();
    let mut set = layer.layer(Vec::<Target>::new());
    let start = tokio::time::Instant::now();
    let err = set.ready().await.unwrap().call(1).await.unwrap_err();
    assert_eq!(start.elapsed(), Duration::from_millis(200));
    let e = err.downcast_ref::<NoTargetReady>().unwrap();
    assert_eq!(e.targets, 0);
}
