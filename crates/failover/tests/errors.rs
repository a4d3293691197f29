//! `AllFailed` keeps each target's own error, typed: walking `source()` from it reaches what
//! the transport said.

use bulwark_failover::{AllFailed, FailoverLayer};
use std::error::Error;
use std::io;
use std::net::SocketAddr;
use tower::util::BoxCloneService;
use tower::{Layer, Service, ServiceExt};

type Target = BoxCloneService<(), String, io::Error>;

/// A loopback port nothing listens on: bound, then closed.
fn closed_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

/// A target that opens a real TCP connection to `addr`.
fn connecting(addr: SocketAddr) -> Target {
    BoxCloneService::new(tower::service_fn(move |()| async move {
        tokio::net::TcpStream::connect(addr).await?;
        Ok(String::from("connected"))
    }))
}

fn failing(kind: io::ErrorKind) -> Target {
    BoxCloneService::new(tower::service_fn(move |()| async move {
        Err::<String, _>(io::Error::from(kind))
    }))
}

/// The first `io::Error` found walking `source()` from `err` (itself included).
fn io_error_in_chain<'a>(err: &'a (dyn Error + 'static)) -> Option<&'a io::Error> {
    let mut current = Some(err);
    while let Some(e) = current {
        if let Some(io) = e.downcast_ref::<io::Error>() {
            return Some(io);
        }
        current = e.source();
    }
    None
}

#[tokio::test]
async fn a_refused_connection_reaches_the_caller_through_all_failed() {
    let addr = closed_port();
    let mut set = FailoverLayer::builder()
        .target_names(["primary", "secondary"])
        .build()
        .unwrap()
        .build(vec![connecting(addr), connecting(addr)])
        .unwrap();
    let err = set.ready().await.unwrap().call(()).await.unwrap_err();
    let all = err.downcast_ref::<AllFailed>().expect("AllFailed");
    assert_eq!(all.failures().len(), 2);
    assert!(all
        .to_string()
        .starts_with("all 2 failover targets failed: [0] primary: "));

    let io = io_error_in_chain(&*err).expect("the io::Error is in the chain");
    assert_eq!(io.kind(), io::ErrorKind::ConnectionRefused);
    for failure in all.failures() {
        let e = failure
            .error
            .as_deref()
            .expect("each target's error is kept");
        assert_eq!(
            e.downcast_ref::<io::Error>().unwrap().kind(),
            io::ErrorKind::ConnectionRefused
        );
    }
}

#[tokio::test(start_paused = true)]
async fn each_target_keeps_its_own_error_and_the_source_is_the_last() {
    let mut set = FailoverLayer::builder().build().unwrap().layer(vec![
        failing(io::ErrorKind::ConnectionRefused),
        failing(io::ErrorKind::ConnectionReset),
    ]);
    let err = set.ready().await.unwrap().call(()).await.unwrap_err();
    let all = err.downcast_ref::<AllFailed>().expect("AllFailed");
    let kinds: Vec<io::ErrorKind> = all
        .failures()
        .iter()
        .map(|f| {
            f.error
                .as_deref()
                .and_then(|e| e.downcast_ref::<io::Error>())
                .unwrap()
                .kind()
        })
        .collect();
    assert_eq!(
        kinds,
        [
            io::ErrorKind::ConnectionRefused,
            io::ErrorKind::ConnectionReset
        ]
    );
    let source = all.source().expect("the last error");
    assert_eq!(
        source.downcast_ref::<io::Error>().unwrap().kind(),
        io::ErrorKind::ConnectionReset
    );
}
