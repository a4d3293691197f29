//! The resend cap shared by two retry layers (Envoy's `max_retries`), under paused time.

use bulwark_core::backoff::{ExponentialBackoff, Jitter};
use bulwark_core::budget::ResendCap;
use bulwark_core::{Event, GiveUpReason};
use bulwark_retry::BackoffRetryLayer;
use bulwark_test_support::{ms, OnDrop};
use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tower::{Layer, Service, ServiceExt};

/// Retries in flight at the backend now, and the most seen at once.
#[derive(Default)]
struct Resends {
    now: AtomicUsize,
    most: AtomicUsize,
}

/// A backend whose first attempt of each request fails at once, and whose resends take
/// 100 ms (counted in `resends` while they run, and until they are dropped).
fn backend(
    resends: Arc<Resends>,
) -> impl Service<
    u32,
    Response = u32,
    Error = std::io::Error,
    Future = impl std::future::Future<Output = Result<u32, std::io::Error>> + Send,
> + Clone {
    let seen = Arc::new(Mutex::new(HashSet::new()));
    tower::service_fn(move |id: u32| {
        let first = seen.lock().unwrap().insert(id);
        let resends = resends.clone();
        async move {
            if first {
                return Err(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
            }
            let now = resends.now.fetch_add(1, Ordering::SeqCst) + 1;
            resends.most.fetch_max(now, Ordering::SeqCst);
            let _running = OnDrop::new(|| {
                resends.now.fetch_sub(1, Ordering::SeqCst);
            });
            tokio::time::sleep(ms(100)).await;
            Ok(id)
        }
    })
}

fn layer(cap: &ResendCap, capped: Arc<AtomicUsize>) -> BackoffRetryLayer {
    BackoffRetryLayer::builder()
        .backoff(ExponentialBackoff::new(ms(10), 1.0, ms(10), Jitter::None).unwrap())
        .no_budget()
        .concurrency_cap(cap.clone())
        .listener(move |e: &Event<'_>| {
            if let Event::RetryGaveUp {
                reason: GiveUpReason::ConcurrencyCap,
                ..
            } = e
            {
                capped.fetch_add(1, Ordering::SeqCst);
            }
        })
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn two_layers_sharing_a_cap_of_two_never_have_more_than_two_resends_in_flight() {
    let cap = ResendCap::new(2);
    let resends = Arc::new(Resends::default());
    let capped = Arc::new(AtomicUsize::new(0));
    let a = layer(&cap, capped.clone()).layer(backend(resends.clone()));
    let b = layer(&cap, capped.clone()).layer(backend(resends.clone()));
    // 20 requests at once, 10 through each layer: every first attempt fails at once.
    let mut calls = Vec::new();
    for id in 0..20u32 {
        let svc = if id % 2 == 0 { a.clone() } else { b.clone() };
        calls.push(tokio::spawn(async move { svc.oneshot(id).await }));
    }
    let mut answered = 0;
    let mut failed = 0;
    for call in calls {
        match call.await.unwrap() {
            Ok(_) => answered += 1,
            Err(_) => failed += 1,
        }
    }
    assert_eq!(resends.most.load(Ordering::SeqCst), 2, "the cap held");
    assert_eq!(answered, 2, "two retries got a place and answered");
    assert_eq!(failed, 18, "the others returned their first answer");
    assert_eq!(capped.load(Ordering::SeqCst), 18);
    assert_eq!(cap.in_flight(), 0, "every permit came back");

    // Once the retries are done, the places are free again.
    let answered = a.clone().oneshot(100).await;
    assert_eq!(answered.unwrap(), 100);
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_retry_gives_its_place_back() {
    let cap = ResendCap::new(1);
    let resends = Arc::new(Resends::default());
    let svc = layer(&cap, Arc::default()).layer(backend(resends.clone()));
    // The first attempt fails, the retry is sent and runs for 100 ms: cut it off at 50.
    let cut = tokio::time::timeout(ms(50), svc.clone().oneshot(1)).await;
    assert!(cut.is_err(), "cancelled while the retry was in flight");
    assert_eq!(
        cap.in_flight(),
        0,
        "the dropped future gave its permit back"
    );
    assert_eq!(resends.now.load(Ordering::SeqCst), 0);
    // Cancelled during its backoff wait: the same.
    let cut = tokio::time::timeout(ms(5), svc.clone().oneshot(2)).await;
    assert!(cut.is_err());
    assert_eq!(cap.in_flight(), 0);
    // And the place is used again.
    assert_eq!(svc.oneshot(3).await.unwrap(), 3);
}
