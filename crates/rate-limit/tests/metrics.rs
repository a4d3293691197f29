//! The `metrics` feature: refusals counted, with help text, by a recorder installed after the
//! limiter was built.
#![cfg(feature = "metrics")]

use bulwark_rate_limit::RateLimitLayer;
use bulwark_test_support::recorded::Recorded;
use metrics_util::debugging::DebuggingRecorder;
use tower::{service_fn, Layer, Service, ServiceExt};

#[tokio::test(start_paused = true)]
async fn refusals_reach_a_recorder_installed_after_the_limiter() {
    let mut svc = RateLimitLayer::builder()
        .name("late")
        .per_second(1)
        .burst(2)
        .build()
        .unwrap()
        .layer(service_fn(|x: u32| {
            std::future::ready(Ok::<_, std::io::Error>(x))
        }));
    // One admitted, one refused before any recorder of this test's.
    svc.ready().await.unwrap().call(1).await.unwrap();
    svc.ready().await.unwrap().call(2).await.unwrap();
    assert!(svc.ready().await.unwrap().call(3).await.is_err());

    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _local = metrics::set_default_local_recorder(&recorder);
    assert!(svc.ready().await.unwrap().call(4).await.is_err());
    assert!(svc.ready().await.unwrap().call(5).await.is_err());

    let seen = Recorded::take(&snapshotter);
    assert_eq!(
        seen.counter("bulwark_rate_limit_refused_total", &[("name", "late")]),
        2
    );
    seen.assert_described("bulwark_rate_limit_");
    assert!(seen.help("bulwark_rate_limit_waited_total").is_some());
}

#[tokio::test(start_paused = true)]
async fn calls_that_waited_for_their_token_are_counted() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _local = metrics::set_default_local_recorder(&recorder);
    let mut svc = RateLimitLayer::builder()
        .name("waits")
        .per_second(10)
        .burst(1)
        .max_wait(std::time::Duration::from_millis(200))
        .build()
        .unwrap()
        .layer(service_fn(|x: u32| {
            std::future::ready(Ok::<_, std::io::Error>(x))
        }));
    // The first call takes the token at once; the next two wait 100 ms each for theirs.
    for i in 0..3 {
        svc.ready().await.unwrap().call(i).await.unwrap();
    }
    let seen = Recorded::take(&snapshotter);
    assert_eq!(
        seen.counter("bulwark_rate_limit_waited_total", &[("name", "waits")]),
        2
    );
    assert_eq!(
        seen.counter("bulwark_rate_limit_refused_total", &[("name", "waits")]),
        0
    );
}
