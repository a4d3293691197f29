//! Membership through `tower::discover`: endpoints inserted and removed while requests flow.

use bulwark_balance::{BalanceLayer, Endpoints, Strategy};
use std::convert::Infallible;
use std::time::Duration;
use tokio::sync::mpsc;
use tower::discover::Change;
use tower::util::BoxCloneService;
use tower::{Service, ServiceExt};

type Endpoint = BoxCloneService<(), &'static str, std::io::Error>;

fn endpoint(name: &'static str, delay: Duration) -> Endpoint {
    BoxCloneService::new(tower::service_fn(move |_: ()| async move {
        tokio::time::sleep(delay).await;
        Ok(name)
    }))
}

#[tokio::test(start_paused = true)]
async fn endpoints_come_and_go_without_losing_requests_in_flight() {
    let (tx, mut rx) = mpsc::unbounded_channel::<Change<&'static str, Endpoint>>();
    let changes = futures_util::stream::poll_fn(move |cx| {
        rx.poll_recv(cx).map(|c| c.map(Ok::<_, Infallible>))
    });
    let mut lb = BalanceLayer::builder()
        .strategy(Strategy::RoundRobin)
        .build()
        .unwrap()
        .build(Endpoints::discover(Box::pin(changes)))
        .unwrap();
    let handle = lb.handle();

    tx.send(Change::Insert("a", endpoint("a", Duration::ZERO)))
        .unwrap();
    tx.send(Change::Insert(
        "slow",
        endpoint("slow", Duration::from_secs(5)),
    ))
    .unwrap();
    // The first request goes to a, the second to slow: keep it in flight.
    assert_eq!(lb.ready().await.unwrap().call(()).await.unwrap(), "a");
    let in_flight = tokio::spawn(lb.ready().await.unwrap().call(()));
    tokio::task::yield_now().await;
    assert_eq!(handle.endpoints()[1].in_flight, 1);

    // slow is removed while its request is in flight; b arrives.
    tx.send(Change::Remove("slow")).unwrap();
    tx.send(Change::Insert("b", endpoint("b", Duration::ZERO)))
        .unwrap();
    let mut seen = Vec::new();
    for _ in 0..6 {
        seen.push(lb.ready().await.unwrap().call(()).await.unwrap());
    }
    assert!(!seen.contains(&"slow"), "{seen:?}");
    assert!(seen.contains(&"a") && seen.contains(&"b"), "{seen:?}");
    let names: Vec<String> = handle.endpoints().into_iter().map(|e| e.name).collect();
    assert_eq!(names, ["a", "b"]);

    // The request on the removed endpoint still finishes.
    assert_eq!(in_flight.await.unwrap().unwrap(), "slow");

    // Inserting under an existing key replaces the endpoint.
    tx.send(Change::Insert("a", endpoint("a2", Duration::ZERO)))
        .unwrap();
    let mut seen = Vec::new();
    for _ in 0..4 {
        seen.push(lb.ready().await.unwrap().call(()).await.unwrap());
    }
    assert!(seen.contains(&"a2") && !seen.contains(&"a"), "{seen:?}");
    assert_eq!(handle.endpoints().len(), 2);
}

#[tokio::test(start_paused = true)]
async fn with_no_endpoint_yet_a_request_waits_for_the_first_to_arrive() {
    let (tx, mut rx) = mpsc::unbounded_channel::<Change<&'static str, Endpoint>>();
    let changes = futures_util::stream::poll_fn(move |cx| {
        rx.poll_recv(cx).map(|c| c.map(Ok::<_, Infallible>))
    });
    let mut lb = BalanceLayer::builder()
        .wait_for_ready(Duration::from_secs(5))
        .build()
        .unwrap()
        .build(Endpoints::discover(Box::pin(changes)))
        .unwrap();
    let waiting = tokio::spawn(async move {
        let start = tokio::time::Instant::now();
        let answer = lb.ready().await.unwrap().call(()).await.unwrap();
        (answer, start.elapsed())
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    tx.send(Change::Insert("late", endpoint("late", Duration::ZERO)))
        .unwrap();
    let (answer, waited) = waiting.await.unwrap();
    assert_eq!(answer, "late");
    assert_eq!(waited, Duration::from_secs(1));
}

#[tokio::test(start_paused = true)]
async fn discovered_endpoints_are_health_checked_and_their_probes_leave_with_them() {
    use bulwark_balance::HealthCheck;
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    // Each key's health flag, and how often its probe ran.
    type Flags = HashMap<&'static str, (Arc<AtomicBool>, Arc<AtomicUsize>)>;
    let flags: Arc<Mutex<Flags>> = Arc::default();
    for key in ["a", "b"] {
        flags
            .lock()
            .unwrap()
            .insert(key, (Arc::new(AtomicBool::new(true)), Arc::default()));
    }
    let for_probes = flags.clone();
    let probe_for = move |key: &&'static str| {
        let (healthy, probed) = for_probes.lock().unwrap()[key].clone();
        BoxCloneService::new(tower::service_fn(move |_: ()| {
            probed.fetch_add(1, Ordering::SeqCst);
            let ok = healthy.load(Ordering::SeqCst);
            async move {
                if ok {
                    Ok(())
                } else {
                    Err(std::io::Error::other("503"))
                }
            }
        })) as BoxCloneService<(), (), std::io::Error>
    };
    let (tx, mut rx) = mpsc::unbounded_channel::<Change<&'static str, Endpoint>>();
    let changes = futures_util::stream::poll_fn(move |cx| {
        rx.poll_recv(cx).map(|c| c.map(Ok::<_, Infallible>))
    });
    let mut lb = BalanceLayer::builder()
        .strategy(Strategy::RoundRobin)
        .health_check(HealthCheck::default())
        .build()
        .unwrap()
        .build(Endpoints::discover_with_health(
            Box::pin(changes),
            probe_for,
        ))
        .unwrap();
    let handle = lb.handle();
    tx.send(Change::Insert("a", endpoint("a", Duration::ZERO)))
        .unwrap();
    tx.send(Change::Insert("b", endpoint("b", Duration::ZERO)))
        .unwrap();
    lb.ready().await.unwrap().call(()).await.unwrap(); // applies the insertions

    flags.lock().unwrap()["b"].0.store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert!(!handle.endpoints()[1].healthy, "{:?}", handle.endpoints());
    for _ in 0..4 {
        assert_eq!(lb.ready().await.unwrap().call(()).await.unwrap(), "a");
    }

    // b leaves: its probe is dropped.
    tx.send(Change::Remove("b")).unwrap();
    lb.ready().await.unwrap().call(()).await.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let probed_b = flags.lock().unwrap()["b"].1.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(
        flags.lock().unwrap()["b"].1.load(Ordering::SeqCst),
        probed_b
    );
    assert!(flags.lock().unwrap()["a"].1.load(Ordering::SeqCst) > probed_b);
}
