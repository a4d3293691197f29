//! The two seed documents' circuit-breaker scenarios, replayed in process with paused time.

mod common;

use bulwark_circuit_breaker::{CircuitBreakerLayer, CircuitState, Open};
use bulwark_core::{Event, HttpClassifier, RandomSource, SplitMix64};
use common::{ms, secs, send, Backend, Reply};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tower::{Layer, Service, ServiceExt};

/// The circuit-breaker seed: order -> payment, where the payment hop fails 60% of the time
/// (502), under opossum's settings: 50% errors over a rolling 10 s window, reset after 10 s,
/// 300 ms call timeout. The breaker opens, refuses calls without sending them, probes after
/// 10 s and closes once the payment service is healthy again.
#[tokio::test(start_paused = true)]
async fn opossum_order_payment_chain() {
    let rng = Arc::new(SplitMix64::new(2024));
    let inject = Arc::new(AtomicBool::new(true));
    let sent = Arc::new(AtomicUsize::new(0));
    let payment = {
        let (rng, inject, sent) = (rng.clone(), inject.clone(), sent.clone());
        tower::service_fn(move |_order: u32| {
            sent.fetch_add(1, Ordering::SeqCst);
            let fail = inject.load(Ordering::SeqCst) && rng.next_f64() < 0.6;
            async move {
                // The chain's hop answers within opossum's 300 ms timeout.
                let work = tokio::time::sleep(ms(20));
                tokio::time::timeout(ms(300), work).await?;
                let status = if fail { 502 } else { 200 };
                Ok::<_, std::io::Error>(http::Response::builder().status(status).body(()).unwrap())
            }
        })
    };
    let transitions = Arc::new(Mutex::new(Vec::new()));
    let seen = transitions.clone();
    let mut breaker = CircuitBreakerLayer::builder()
        .name("payment")
        .failure_rate(0.5)
        .time_window(secs(10), 10)
        .min_calls(5)
        .open_for(secs(10))
        .classifier(HttpClassifier::new())
        .listener(move |e: &Event<'_>| {
            if let Event::StateTransition { from, to, .. } = e {
                seen.lock().unwrap().push((*from, *to));
            }
        })
        .build()
        .unwrap()
        .layer(payment);
    let h = breaker.handle();

    // Orders every 100 ms until the breaker opens.
    let mut orders = 0;
    while h.state() == CircuitState::Closed {
        orders += 1;
        assert!(orders < 100, "a 60% failure rate must open a 50% breaker");
        let _ = breaker.ready().await.unwrap().call(orders).await;
        tokio::time::sleep(ms(100)).await;
    }
    let m = h.metrics();
    assert_eq!(m.state, CircuitState::Open);
    assert!(m.failure_rate >= 0.5 && m.calls >= 5, "{m:?}");

    // Open: orders are refused at once; none reaches the payment service.
    let before = sent.load(Ordering::SeqCst);
    for order in 0..20 {
        let err = breaker
            .ready()
            .await
            .unwrap()
            .call(order)
            .await
            .unwrap_err();
        assert!(err.is::<Open>());
        tokio::time::sleep(ms(100)).await;
    }
    assert_eq!(sent.load(Ordering::SeqCst), before);

    // The payment service is fixed; after the 10 s reset the probe goes through and closes.
    inject.store(false, Ordering::SeqCst);
    tokio::time::sleep(secs(10)).await;
    assert_eq!(h.state(), CircuitState::HalfOpen);
    let resp = breaker.ready().await.unwrap().call(1000).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(h.state(), CircuitState::Closed);
    assert_eq!(sent.load(Ordering::SeqCst), before + 1);
    assert_eq!(
        *transitions.lock().unwrap(),
        vec![
            (CircuitState::Closed, CircuitState::Open),
            (CircuitState::Open, CircuitState::HalfOpen),
            (CircuitState::HalfOpen, CircuitState::Closed),
        ]
    );
}

/// The Ballerina guide: the order service calls an inventory service through a breaker with
/// failure threshold 0.2 and reset 20 s. With the inventory down, the first call reports the
/// refused connection; the next is refused by the breaker, which says how long calls stay
/// suspended, and that figure shrinks as time passes ("suspended for 14451 milliseconds").
#[tokio::test(start_paused = true)]
async fn ballerina_inventory_suspension_countdown() {
    let inventory = Backend::default();
    let mut svc = CircuitBreakerLayer::builder()
        .name("inventory")
        .failure_rate(0.2)
        .count_window(10)
        .min_calls(1)
        .open_for(secs(20))
        .build()
        .unwrap()
        .layer(inventory.clone());
    let h = svc.handle();

    // 2. The inventory answers: the order is placed.
    send(&mut svc, Reply::Ok).await.unwrap();
    // 3-4. The inventory is shut down: the first call fails with the connection error.
    let err = send(&mut svc, Reply::Fail).await.unwrap_err();
    assert_eq!(
        err.downcast_ref::<std::io::Error>().map(|e| e.kind()),
        Some(std::io::ErrorKind::ConnectionRefused)
    );
    // 1 failure in 2 calls is 50% >= 20%: open.
    assert_eq!(h.state(), CircuitState::Open);

    // 5. Soon after: refused by the breaker, with the suspension left.
    let err = send(&mut svc, Reply::Ok).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "circuit open: calls suspended for 20000 ms"
    );
    tokio::time::advance(ms(5549)).await;
    let err = send(&mut svc, Reply::Ok).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "circuit open: calls suspended for 14451 ms"
    );
    let open = err.downcast_ref::<Open>().unwrap();
    assert_eq!(open.retry_after(), Some(ms(14451)));
    assert_eq!(
        inventory.calls(),
        2,
        "refused calls never reach the inventory"
    );

    // The inventory is back; once the suspension ends the next order goes through.
    tokio::time::advance(ms(14451)).await;
    send(&mut svc, Reply::Ok).await.unwrap();
    assert_eq!(h.state(), CircuitState::Closed);
    assert_eq!(inventory.calls(), 3);
}
