//! The book_search demo's store counts, checked against what the stores themselves saw, under
//! load and with each fault mode: `bookstore_requests_total{store,outcome}` counts every
//! request sent to a store once (an attempt cut by the per-attempt timeout is a failure), and
//! `bookstore_rejected_total{store}` counts requests an open circuit turned away, at most once
//! per request and store.
//!
//! One test, its phases in turn: the metrics recorder is the process's, and every demo names
//! its stores `store-1` to `store-3`, so phases in parallel would count into each other.
#![allow(dead_code)]

#[path = "../examples/book_search/app/mod.rs"]
mod app;

use app::config::{Config, Strategy};
use app::store::Fault;
use bytes::Bytes;
use http::StatusCode;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::collections::BTreeMap;
use std::time::Duration;

/// Short timeouts and periods (as in `tests/book_search.rs`).
fn fast_config() -> Config {
    let mut c = Config::default();
    c.search.strategy = Strategy::Balance;
    c.search.deadline = Duration::from_secs(5);
    c.search.wait_for_healthy = Duration::from_millis(300);
    c.attempt.timeout = Duration::from_millis(300);
    c.circuit_breaker.open = Duration::from_secs(30);
    c.health.interval = Duration::from_millis(50);
    c.health.timeout = Duration::from_millis(200);
    c.ejection.base = Duration::from_millis(500);
    c.ejection.max = Duration::from_secs(2);
    c
}

type HttpClient = Client<HttpConnector, Empty<Bytes>>;

async fn get(client: &HttpClient, url: &str) -> (StatusCode, String) {
    let resp = client
        .get(url.parse().unwrap())
        .await
        .expect("the search service answers");
    let status = resp.status();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// `requests` GETs at once; their statuses.
async fn burst(client: &HttpClient, url: &str, requests: usize) -> Vec<StatusCode> {
    let mut tasks = Vec::with_capacity(requests);
    for _ in 0..requests {
        let client = client.clone();
        let url = url.to_string();
        tasks.push(tokio::spawn(async move { get(&client, &url).await.0 }));
    }
    let mut statuses = Vec::with_capacity(requests);
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    statuses
}

/// Every sample of `/metrics`: (name, labels) -> value.
async fn metrics(client: &HttpClient, base: &str) -> BTreeMap<(String, String), f64> {
    let (_, text) = get(client, &format!("{base}/metrics")).await;
    let mut out = BTreeMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => {
                let mut labels: Vec<&str> = rest.trim_end_matches('}').split(',').collect();
                labels.sort_unstable();
                (name.to_string(), labels.join(","))
            }
            None => (series.to_string(), String::new()),
        };
        if let Ok(v) = value.parse::<f64>() {
            out.insert((name, labels), v);
        }
    }
    out
}

/// The counts of one store, read from `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Counts {
    success: u64,
    failure: u64,
    rejected: u64,
}

async fn counts(client: &HttpClient, base: &str, store: &str) -> Counts {
    let m = metrics(client, base).await;
    let read = |name: &str, labels: String| m.get(&(name.to_string(), labels)).copied();
    let requests = |outcome: &str| {
        read(
            "bookstore_requests_total",
            format!("outcome=\"{outcome}\",store=\"{store}\""),
        )
        .unwrap_or(0.0) as u64
    };
    Counts {
        success: requests("success"),
        failure: requests("failure"),
        rejected: read("bookstore_rejected_total", format!("store=\"{store}\"")).unwrap_or(0.0)
            as u64,
    }
}

/// Polls until `check` holds, for at most `bound` (state read from the running demo).
async fn eventually<F, Fut>(bound: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let give_up = tokio::time::Instant::now() + bound;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < give_up,
            "not within {bound:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_counts_match_what_the_stores_saw_under_each_fault() {
    let demo = app::start(fast_config(), "127.0.0.1:0".parse().unwrap())
        .await
        .expect("the demo starts");
    let base = demo.url();
    let url = format!("{base}/book/Dune");
    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    let name = |i: usize| demo.stores[i].name().to_string();

    // Each store's client count must come to what the store itself received: every request
    // sent, once, whatever became of it.
    let settled = |i: usize, before: Counts, seen_before: u64| {
        let client = client.clone();
        let base = base.clone();
        let store = demo.stores[i].clone();
        let name = name(i);
        async move {
            let mut last = (Counts::default(), 0);
            let result = tokio::time::timeout(Duration::from_secs(3), async {
                loop {
                    let now = counts(&client, &base, &name).await;
                    let sent = now.success + now.failure - before.success - before.failure;
                    let seen = store.book_requests() - seen_before;
                    last = (now, seen);
                    if sent == seen {
                        return now;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
            .await;
            result.unwrap_or_else(|_| {
                panic!(
                    "{name}: counted {:?} from {before:?}, the store saw {}",
                    last.0, last.1
                )
            })
        }
    };

    // Slow: store-2 answers after 30 s, so every attempt sent to it is cut by the 300 ms
    // per-attempt timeout and resent elsewhere. Each is a failure.
    let before = counts(&client, &base, &name(1)).await;
    let seen = demo.stores[1].book_requests();
    demo.stores[1]
        .set_fault(Fault::Slow { delay_ms: 30_000 })
        .await
        .unwrap();
    let statuses = burst(&client, &url, 30).await;
    assert!(
        statuses.iter().all(|s| *s == StatusCode::OK),
        "{statuses:?}"
    );
    let after = settled(1, before, seen).await;
    assert!(after.failure > before.failure, "no attempt cut: {after:?}");
    assert_eq!(
        after.success, before.success,
        "a cut attempt counted as a success"
    );
    demo.stores[1].set_fault(Fault::Ok).await.unwrap();

    // Error: store-1 answers 503 to every book request until its circuit opens (30 s open
    // period: it stays open for the rest of the test). Each answer is a failure.
    let before = counts(&client, &base, &name(0)).await;
    let seen = demo.stores[0].book_requests();
    demo.stores[0]
        .set_fault(Fault::Error { status: 503 })
        .await
        .unwrap();
    eventually(
        Duration::from_secs(5),
        "store-1's circuit opens",
        || async {
            burst(&client, &url, 10).await;
            let stores = get(&client, &format!("{base}/stores")).await.1;
            let stores: serde_json::Value = serde_json::from_str(&stores).unwrap();
            stores[0]["circuit"] == "open"
        },
    )
    .await;
    let after = settled(0, before, seen).await;
    assert!(after.failure > before.failure, "{after:?}");
    assert_eq!(after.success, before.success);

    // Open: under load, store-1's open circuit turns requests away without reaching it,
    // each at most once per request, however often the balancer asks it.
    let before = counts(&client, &base, &name(0)).await;
    let seen = demo.stores[0].book_requests();
    let requests = 60;
    let statuses = burst(&client, &url, requests).await;
    assert!(
        statuses.iter().all(|s| *s == StatusCode::OK),
        "{statuses:?}"
    );
    let after = counts(&client, &base, &name(0)).await;
    assert_eq!(
        demo.stores[0].book_requests(),
        seen,
        "a request reached an open store"
    );
    assert_eq!(
        after.success + after.failure,
        before.success + before.failure
    );
    let rejected = after.rejected - before.rejected;
    assert!(
        rejected <= requests as u64,
        "{rejected} refusals counted for {requests} requests"
    );

    // Down: store-3 refuses connections; each refused attempt is a failure the store never saw.
    let before3 = counts(&client, &base, &name(2)).await;
    let seen3 = demo.stores[2].book_requests();
    demo.stores[2].set_fault(Fault::Down).await.unwrap();
    let statuses = burst(&client, &url, 30).await;
    assert!(
        statuses
            .iter()
            .all(|s| *s == StatusCode::OK || *s == StatusCode::SERVICE_UNAVAILABLE),
        "{statuses:?}"
    );
    let after3 = counts(&client, &base, &name(2)).await;
    assert_eq!(demo.stores[2].book_requests(), seen3);
    assert_eq!(after3.success, before3.success);
    demo.stores[2].set_fault(Fault::Ok).await.unwrap();

    // Flaky: store-2 fails half its book requests; successes and failures together are what
    // it saw.
    let before = counts(&client, &base, &name(1)).await;
    let seen = demo.stores[1].book_requests();
    demo.stores[1]
        .set_fault(Fault::Flaky {
            error_rate: 0.5,
            status: 503,
        })
        .await
        .unwrap();
    burst(&client, &url, 40).await;
    settled(1, before, seen).await;

    // Every circuit open: each request is turned away by each store at most once.
    for store in &demo.stores {
        store.set_fault(Fault::Error { status: 503 }).await.unwrap();
    }
    eventually(Duration::from_secs(5), "every circuit opens", || async {
        burst(&client, &url, 10).await;
        let stores = get(&client, &format!("{base}/stores")).await.1;
        let stores: serde_json::Value = serde_json::from_str(&stores).unwrap();
        (0..3).all(|i| stores[i]["circuit"] == "open")
    })
    .await;
    let before: Vec<Counts> = {
        let mut v = Vec::new();
        for i in 0..3 {
            v.push(counts(&client, &base, &name(i)).await);
        }
        v
    };
    let requests = 40;
    let statuses = burst(&client, &url, requests).await;
    assert!(
        statuses
            .iter()
            .all(|s| *s == StatusCode::SERVICE_UNAVAILABLE),
        "{statuses:?}"
    );
    // A store the balancer has ejected is not asked at all; the others' circuits turn each
    // request away once.
    let mut turned_away = 0;
    for (i, before) in before.iter().enumerate() {
        let after = counts(&client, &base, &name(i)).await;
        let rejected = after.rejected - before.rejected;
        assert!(
            rejected <= requests as u64,
            "{}: {rejected} refusals counted for {requests} requests",
            name(i)
        );
        turned_away += rejected;
        assert_eq!(
            after.success + after.failure,
            before.success + before.failure
        );
    }
    assert!(
        turned_away >= requests as u64,
        "{turned_away} refusals counted for {requests} requests"
    );

    // The layers' durations are Prometheus histograms (buckets), with their help text, as
    // Grafana's histogram_quantile reads them.
    let (_, text) = get(&client, &format!("{base}/metrics")).await;
    for family in [
        "bulwark_circuit_breaker_call_duration_seconds",
        "bulwark_balance_request_duration_seconds",
        "bulwark_retry_request_duration_seconds",
    ] {
        assert!(
            text.contains(&format!("# TYPE {family} histogram")),
            "{family} is a histogram"
        );
        assert!(
            text.contains(&format!("# HELP {family} ")),
            "{family} has help text"
        );
        assert!(
            text.lines()
                .any(|l| l.starts_with(&format!("{family}_bucket{{")) && l.contains("le=\"0.001\"")),
            "{family} has the demo's buckets"
        );
    }
    demo.shutdown().await;
}
