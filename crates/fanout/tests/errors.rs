//! `FanOutFailed` keeps each target's own error, typed, with its name; its `source()` is the
//! first failing target's error.

use bulwark_fanout::{FanOutFailed, FanOutLayer, FirstSuccess, Policy};
use std::error::Error;
use std::io;
use tower::util::BoxCloneService;
use tower::{Service, ServiceExt};

type Store = BoxCloneService<(), u16, io::Error>;

fn answering() -> Store {
    BoxCloneService::new(tower::service_fn(|()| async { Ok(201) }))
}

fn failing(kind: io::ErrorKind) -> Store {
    BoxCloneService::new(tower::service_fn(move |()| async move {
        Err::<u16, _>(io::Error::from(kind))
    }))
}

#[tokio::test(start_paused = true)]
async fn the_targets_errors_are_kept_typed_and_the_source_is_the_first() {
    let mut fanout = FanOutLayer::builder()
        .name("register")
        .policy(Policy::Quorum(2))
        .target_names(["store-1", "store-2", "store-3"])
        .merge(FirstSuccess)
        .build()
        .unwrap()
        .build(vec![
            answering(),
            failing(io::ErrorKind::ConnectionRefused),
            failing(io::ErrorKind::ConnectionReset),
        ])
        .unwrap();
    let err = fanout.ready().await.unwrap().call(()).await.unwrap_err();
    let failed = err.downcast_ref::<FanOutFailed>().expect("FanOutFailed");
    assert_eq!(
        failed.to_string(),
        "fan-out register failed (quorum of 2: 1 of 3 succeeded): [0] store-1: succeeded; \
         [1] store-2: error: connection refused; [2] store-3: error: connection reset"
    );
    let kept: Vec<(usize, &str, io::ErrorKind)> = failed
        .errors
        .iter()
        .map(|(i, name, e)| {
            (
                *i,
                name.as_str(),
                e.downcast_ref::<io::Error>().unwrap().kind(),
            )
        })
        .collect();
    assert_eq!(
        kept,
        [
            (1, "store-2", io::ErrorKind::ConnectionRefused),
            (2, "store-3", io::ErrorKind::ConnectionReset)
        ]
    );
    let source = failed.source().expect("the first failing target's error");
    assert_eq!(
        source.downcast_ref::<io::Error>().unwrap().kind(),
        io::ErrorKind::ConnectionRefused
    );
}
