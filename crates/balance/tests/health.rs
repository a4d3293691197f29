//! Active health checks: the software-aware load-balancing seed's session, driven by the
//! balancer's own probes under paused time.

use bulwark_balance::{
    BalanceLayer, ConfigError, Endpoints, HealthCheck, NoEndpointReady, Strategy, Unavailable,
};
use bulwark_core::SplitMix64;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tower::util::BoxCloneService;
use tower::{Service, ServiceExt};

type Endpoint = BoxCloneService<(), &'static str, std::io::Error>;
type Probe = BoxCloneService<(), (), std::io::Error>;

fn endpoint(name: &'static str) -> Endpoint {
    BoxCloneService::new(tower::service_fn(move |_: ()| async move { Ok(name) }))
}

/// A probe answering from a health flag (the seed's `/health`, flipped by `/health/flip`).
fn probe(flag: &Arc<AtomicBool>) -> Probe {
    let flag = flag.clone();
    BoxCloneService::new(tower::service_fn(move |_: ()| {
        let healthy = flag.load(Ordering::SeqCst);
        async move {
            if healthy {
                Ok(())
            } else {
                Err(std::io::Error::other("503"))
            }
        }
    }))
}

async fn send<S>(svc: &mut S) -> Result<&'static str, bulwark_core::BoxError>
where
    S: Service<(), Response = &'static str, Error = bulwark_core::BoxError>,
{
    svc.ready().await?.call(()).await
}

fn layer() -> bulwark_balance::BalanceLayer {
    BalanceLayer::builder()
        .strategy(Strategy::RoundRobin)
        .wait_for_ready(Duration::from_secs(3))
        .health_check(HealthCheck::default()) // every 2 s, unhealthy after 2, healthy after 1
        .random(SplitMix64::new(5))
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn the_seed_session_with_the_balancers_own_health_checks() {
    let flags: Vec<Arc<AtomicBool>> = (0..3).map(|_| Arc::new(AtomicBool::new(true))).collect();
    let names = ["e0", "e1", "e2"];
    let mut lb = layer()
        .build(
            Endpoints::list(names.iter().map(|n| endpoint(n)).collect())
                .health(flags.iter().map(probe).collect()),
        )
        .unwrap();
    let handle = lb.handle();

    // Flip e1's health off: two failed rounds (about 4 s) later it is out of rotation.
    flags[1].store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(!handle.endpoints()[1].healthy);
    for _ in 0..6 {
        assert_ne!(send(&mut lb).await.unwrap(), "e1");
    }

    // All off: requests wait, then fail saying no endpoint is healthy.
    for f in &flags {
        f.store(false, Ordering::SeqCst);
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(handle.endpoints().iter().all(|e| !e.healthy));
    let start = Instant::now();
    let err = send(&mut lb).await.unwrap_err();
    assert_eq!(start.elapsed(), Duration::from_secs(3));
    assert_eq!(
        err.downcast_ref::<NoEndpointReady>().unwrap().reason,
        Unavailable::NoneHealthy
    );

    // One back: the next probe round finds it, and a waiting request goes through without
    // any restart.
    let waiting = tokio::spawn(async move {
        let answer = send(&mut lb).await;
        (answer.unwrap(), lb)
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    flags[2].store(true, Ordering::SeqCst);
    let (answer, _lb) = waiting.await.unwrap();
    assert_eq!(answer, "e2");
    assert!(handle.endpoints()[2].healthy);
}

#[tokio::test(start_paused = true)]
async fn a_probe_that_hangs_fails_by_its_timeout() {
    let hanging: Probe = BoxCloneService::new(tower::service_fn(|_: ()| async {
        tokio::time::sleep(Duration::from_secs(3600)).await;
        Ok(())
    }));
    let ok = Arc::new(AtomicBool::new(true));
    let lb = layer()
        .build(
            Endpoints::list(vec![endpoint("e0"), endpoint("e1")]).health(vec![hanging, probe(&ok)]),
        )
        .unwrap();
    let handle = lb.handle();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let e = handle.endpoints();
    assert!(!e[0].healthy && e[1].healthy, "{e:?}");
}

#[tokio::test(start_paused = true)]
async fn the_health_task_stops_when_the_balancer_is_dropped() {
    let metrics = tokio::runtime::Handle::current().metrics();
    let before = metrics.num_alive_tasks();
    let flag = Arc::new(AtomicBool::new(true));
    let lb = layer()
        .build(Endpoints::list(vec![endpoint("e0")]).health(vec![probe(&flag)]))
        .unwrap();
    tokio::task::yield_now().await;
    assert_eq!(metrics.num_alive_tasks(), before + 1);
    drop(lb);
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(metrics.num_alive_tasks(), before);
}

#[test]
fn health_checks_need_a_runtime_and_one_probe_per_endpoint() {
    let flag = Arc::new(AtomicBool::new(true));
    let err = layer()
        .build(Endpoints::list(vec![endpoint("e0")]).health(vec![probe(&flag)]))
        .unwrap_err();
    assert_eq!(err.setting(), "health");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let err = layer()
        .build(Endpoints::list(vec![endpoint("e0"), endpoint("e1")]).health(vec![probe(&flag)]))
        .unwrap_err();
    assert_eq!(err.setting(), "probes");
    let err = BalanceLayer::builder()
        .health_check(HealthCheck {
            unhealthy_after: 0,
            ..HealthCheck::default()
        })
        .build()
        .unwrap_err();
    assert_eq!(err.setting(), "health.unhealthy_after");
}

#[cfg(feature = "http")]
#[tokio::test(start_paused = true)]
async fn the_http_probe_treats_2xx_as_healthy() {
    use bulwark_balance::HttpProbe;
    let status = Arc::new(std::sync::atomic::AtomicU16::new(200));
    let s = status.clone();
    let client = tower::service_fn(
        move |req: http::Request<http_body_util::Empty<bytes::Bytes>>| {
            assert_eq!(req.uri().path(), "/health");
            let code = s.load(Ordering::SeqCst);
            async move {
                Ok::<_, std::io::Error>(http::Response::builder().status(code).body(()).unwrap())
            }
        },
    );
    let probe = HttpProbe::new(client, "http://127.0.0.1:1/health".parse().unwrap());
    let lb = layer()
        .build(Endpoints::list(vec![endpoint("e0")]).health(vec![probe]))
        .unwrap();
    let handle = lb.handle();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(handle.endpoints()[0].healthy);
    status.store(503, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(!handle.endpoints()[0].healthy);
}

/// Probes given as a list pair one for one with a static list (see the test above); a
/// discovered set takes its probes from `discover_with_health`, and a list given for it is a
/// typed error at build, not probes silently dropped.
#[tokio::test(start_paused = true)]
async fn a_list_of_probes_for_a_discovered_set_is_refused_at_build() {
    let flag = Arc::new(AtomicBool::new(true));
    let layer = BalanceLayer::builder().build().unwrap();
    let changes = futures_util::stream::pending::<
        Result<tower::discover::Change<usize, Endpoint>, std::convert::Infallible>,
    >();
    let err = layer
        .build(Endpoints::discover(changes).health(vec![probe(&flag)]))
        .unwrap_err();
    assert_eq!(err, ConfigError::ProbesForDiscovered { probes: 1 });
    assert_eq!(err.setting(), "probes");
    assert!(err.to_string().contains("discover_with_health"), "{err}");
}
