//! The book_search demo over real HTTP on loopback: each seed's transcript, bad input, and a
//! burst of requests while a store flaps. The demo's servers start in process on ephemeral
//! ports, with a fast configuration (short timeouts and periods), so the file runs in a few
//! seconds. Waits for a state change poll with short sleeps up to a bound; nothing asserts
//! the machine's speed.
#![allow(dead_code)]

#[path = "../examples/book_search/app/mod.rs"]
mod app;

use app::config::{Config, Strategy};
use app::store::Fault;
use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};
use std::future::Future;
use std::time::Duration;

/// Short timeouts and periods: the defaults' shapes, a hundredth of their lengths.
fn fast_config(strategy: Strategy) -> Config {
    let mut c = Config::default();
    c.search.strategy = strategy;
    c.search.deadline = Duration::from_secs(5);
    c.search.wait_for_healthy = Duration::from_millis(300);
    c.attempt.timeout = Duration::from_millis(300);
    c.circuit_breaker.open = Duration::from_millis(500);
    c.health.interval = Duration::from_millis(50);
    c.health.timeout = Duration::from_millis(200);
    c.ejection.base = Duration::from_millis(500);
    c.ejection.max = Duration::from_secs(2);
    c.fanout.base = Duration::from_millis(5);
    c.fanout.max_backoff = Duration::from_millis(50);
    c.fanout.deadline = Duration::from_secs(1);
    c
}

async fn start(config: Config) -> app::Demo {
    app::start(config, "127.0.0.1:0".parse().unwrap())
        .await
        .expect("the demo starts")
}

fn client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

struct Answer {
    status: StatusCode,
    headers: http::HeaderMap,
    json: Value,
    text: String,
}

async fn send(method: Method, url: &str, body: &str) -> Answer {
    let req = Request::builder()
        .method(method)
        .uri(url)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    let resp = client()
        .request(req)
        .await
        .expect("the search service answers");
    let (parts, body) = resp.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    Answer {
        status: parts.status,
        headers: parts.headers,
        json: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        text,
    }
}

async fn get(url: &str) -> Answer {
    send(Method::GET, url, "").await
}

/// Polls `check` every 20 ms until it holds, for at most `bound`.
async fn eventually<F, Fut>(bound: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let give_up = tokio::time::Instant::now() + bound;
    loop {
        if check().await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < give_up,
            "not within {bound:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The `/stores` entry of `name`.
async fn store_view(demo: &app::Demo, name: &str) -> Value {
    let stores = get(&format!("{}/stores", demo.url())).await.json;
    stores
        .as_array()
        .and_then(|a| a.iter().find(|s| s["name"] == name).cloned())
        .expect("the store is listed")
}

/// Calls that reached the stores on the read path, as the balancer counts them.
async fn calls_seen(demo: &app::Demo) -> u64 {
    let stores = get(&format!("{}/stores", demo.url())).await.json;
    stores
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["successes"].as_u64().unwrap() + s["failures"].as_u64().unwrap())
        .sum()
}

/// The failover seed: a dead store, a store answering after 30 s, a healthy one.
async fn dead_slow_healthy(strategy: Strategy) {
    let config = fast_config(strategy);
    let attempt = config.attempt.timeout;
    let demo = start(config).await;
    demo.stores[0].set_fault(Fault::Down).await.unwrap();
    demo.stores[1]
        .set_fault(Fault::Slow { delay_ms: 30_000 })
        .await
        .unwrap();
    let url = format!("{}/book/Dune", demo.url());
    // The first call may try the dead and the slow store first: it still answers from the
    // healthy one, within the per-attempt timeout plus a second (the contract's bound).
    let first = tokio::time::timeout(attempt + Duration::from_secs(1), get(&url))
        .await
        .expect("answered within the per-attempt timeout plus 1 s");
    assert_eq!(first.status, StatusCode::OK, "{}", first.text);
    assert_eq!(first.json["store"], "store-3");
    assert_eq!(first.json["title"], "Dune");
    // Later calls keep answering from the healthy store.
    for _ in 0..10 {
        let answer = get(&url).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
        assert_eq!(answer.json["store"], "store-3");
    }
    demo.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_seed_with_the_balancer() {
    dead_slow_healthy(Strategy::Balance).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_seed_with_ordered_sticky_failover() {
    dead_slow_healthy(Strategy::Failover).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sticky_failover_stays_on_the_store_that_answered() {
    let demo = start(fast_config(Strategy::Failover)).await;
    let url = format!("{}/book/Dune", demo.url());
    assert_eq!(
        get(&url).await.json["store"],
        "store-1",
        "ordered: store-1 first"
    );
    demo.stores[0]
        .set_fault(Fault::Error { status: 503 })
        .await
        .unwrap();
    assert_eq!(get(&url).await.json["store"], "store-2");
    // store-1 is fine again, but the failover sticks to the store that last answered.
    demo.stores[0].set_fault(Fault::Ok).await.unwrap();
    for _ in 0..3 {
        assert_eq!(get(&url).await.json["store"], "store-2");
    }
    demo.shutdown().await;
}

async fn every_store_failing_then_recovery(strategy: Strategy) {
    let demo = start(fast_config(strategy)).await;
    for store in &demo.stores {
        store.set_fault(Fault::Error { status: 503 }).await.unwrap();
    }
    let url = format!("{}/book/Dune", demo.url());
    // Every store answers 503: each request tries each store once and answers 503, until
    // the breakers open.
    let mut answers = 0;
    loop {
        let answer = get(&url).await;
        assert_eq!(
            answer.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{}",
            answer.text
        );
        assert!(answer.headers.contains_key("retry-after"));
        assert!(answer.json["retry_after_ms"].is_u64(), "{}", answer.text);
        answers += 1;
        let mut open = 0;
        for store in &demo.stores {
            if store_view(&demo, store.name()).await["circuit"] == "open" {
                open += 1;
            }
        }
        if open == 3 {
            break;
        }
        assert!(answers < 50, "the breakers did not open");
    }
    // Open: answered 503 at once, without reaching the stores.
    let before = calls_seen(&demo).await;
    for _ in 0..5 {
        let answer = get(&url).await;
        assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(
            answer.json["error"].as_str().unwrap().contains("circuit"),
            "{}",
            answer.text
        );
        let ms = answer.json["retry_after_ms"].as_u64().unwrap();
        assert!(ms <= 500, "at most the open period: {ms}");
    }
    assert_eq!(calls_seen(&demo).await, before, "no call reached a store");
    let metrics = get(&format!("{}/metrics", demo.url())).await.text;
    assert!(
        metrics.contains("bookstore_circuit_state{store=\"store-1\"} 2"),
        "{metrics}"
    );

    // Recovery: the stores are fine again; after the open period a probe closes each circuit.
    for store in &demo.stores {
        store.set_fault(Fault::Ok).await.unwrap();
    }
    eventually(
        Duration::from_secs(5),
        "a request succeeds again",
        || async { get(&url).await.status == StatusCode::OK },
    )
    .await;
    // The store that answers has its circuit closed again; the others are half-open, each
    // admitting a probe as soon as a request is sent its way. (Polled: on a loaded machine a
    // probe can still time out and re-open a circuit for another open period.)
    eventually(
        Duration::from_secs(5),
        "no circuit open, one closed",
        || async {
            let _ = get(&url).await;
            let mut circuits = Vec::new();
            for store in &demo.stores {
                circuits.push(store_view(&demo, store.name()).await["circuit"].clone());
            }
            circuits.iter().any(|c| c == "closed") && circuits.iter().all(|c| c != "open")
        },
    )
    .await;
    demo.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn breakers_open_answer_503_at_once_then_recover() {
    every_store_failing_then_recovery(Strategy::Balance).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn breakers_open_answer_503_at_once_then_recover_with_failover() {
    every_store_failing_then_recovery(Strategy::Failover).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_500_is_passed_back_and_a_404_is_an_answer() {
    let demo = start(fast_config(Strategy::Failover)).await;
    let missing = get(&format!("{}/book/No%20Such%20Book", demo.url())).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert!(missing.json["error"].is_string());
    demo.stores[0]
        .set_fault(Fault::Error { status: 500 })
        .await
        .unwrap();
    // Ordered failover starts at store-1, whose 500 is not a failover code: passed back.
    let answer = get(&format!("{}/book/Dune", demo.url())).await;
    assert_eq!(answer.status, StatusCode::INTERNAL_SERVER_ERROR);
    demo.shutdown().await;
}

async fn health_flip_session(strategy: Strategy) {
    let demo = start(fast_config(strategy)).await;
    let url = format!("{}/book/The%20Hobbit", demo.url());
    assert_eq!(get(&url).await.status, StatusCode::OK);
    // Every store says it is unhealthy: the checks see it, and nothing is sent.
    for store in &demo.stores {
        store.set_healthy(false);
    }
    eventually(
        Duration::from_secs(3),
        "every store marked unhealthy",
        || async {
            let stores = get(&format!("{}/stores", demo.url())).await.json;
            stores
                .as_array()
                .unwrap()
                .iter()
                .all(|s| s["healthy"] == false)
        },
    )
    .await;
    let answer = get(&url).await;
    assert_eq!(
        answer.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        answer.text
    );
    assert!(answer.headers.contains_key("retry-after"));
    assert!(answer.json["retry_after_ms"].is_u64());
    assert!(
        answer.json["error"]
            .as_str()
            .unwrap()
            .starts_with("no store is healthy"),
        "{}",
        answer.text
    );
    // One store comes back: requests succeed from it, with no restart.
    demo.stores[1].flip_health();
    eventually(Duration::from_secs(3), "store-2 answers again", || async {
        let a = get(&url).await;
        a.status == StatusCode::OK && a.json["store"] == "store-2"
    })
    .await;
    demo.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_flip_session_with_the_balancer() {
    health_flip_session(Strategy::Balance).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_flip_session_with_failover() {
    health_flip_session(Strategy::Failover).await;
}

fn book(title: &str) -> String {
    json!({"title": title, "author": "Ann Author", "isbn": "9780000000001", "price": 12.5})
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_out_with_a_flaky_store_stores_everywhere() {
    let demo = start(fast_config(Strategy::Balance)).await;
    demo.stores[1]
        .set_fault(Fault::Flaky {
            error_rate: 0.5,
            status: 503,
        })
        .await
        .unwrap();
    for i in 0..5 {
        let title = format!("Flaky Book {i}");
        let answer = send(Method::POST, &format!("{}/book", demo.url()), &book(&title)).await;
        assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.text);
        assert_eq!(answer.json["title"], title.as_str());
        assert_eq!(
            answer.json["stored_in"],
            json!(["store-1", "store-2", "store-3"])
        );
        for store in &demo.stores {
            assert!(store.books().iter().any(|b| b.title == title));
        }
    }
    // Read back through the search path.
    let answer = get(&format!("{}/book/Flaky%20Book%200", demo.url())).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    demo.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_out_with_a_failing_store_answers_502_listing_each_store() {
    let demo = start(fast_config(Strategy::Balance)).await;
    demo.stores[1]
        .set_fault(Fault::Error { status: 503 })
        .await
        .unwrap();
    let answer = send(Method::POST, &format!("{}/book", demo.url()), &book("Lost")).await;
    assert_eq!(answer.status, StatusCode::BAD_GATEWAY, "{}", answer.text);
    assert!(answer.json["error"].is_string());
    let stores = answer.json["stores"].as_array().unwrap();
    assert_eq!(stores.len(), 3);
    assert_eq!(stores[1]["store"], "store-2");
    assert_eq!(stores[1]["last_status"], 503);
    assert!(stores[1]["attempts"].as_u64().unwrap() > 1, "retried");
    assert_ne!(stores[1]["outcome"], "stored");
    for i in [0, 2] {
        assert_eq!(stores[i]["outcome"], "stored", "{}", answer.text);
        assert_eq!(stores[i]["attempts"], 1);
        assert_eq!(stores[i]["last_status"], 201);
    }
    // The healthy stores kept the write; the failing one has nothing.
    assert!(demo.stores[0].books().iter().any(|b| b.title == "Lost"));
    assert!(!demo.stores[1].books().iter().any(|b| b.title == "Lost"));
    demo.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_json_4xx() {
    let demo = start(fast_config(Strategy::Balance)).await;
    let post = format!("{}/book", demo.url());
    for (body, why) in [
        ("{not json", "malformed"),
        ("[1,2]", "not an object"),
        (r#"{"title":"T","author":"A","isbn":"1"}"#, "missing price"),
        (
            r#"{"title":"","author":"A","isbn":"1","price":1}"#,
            "empty title",
        ),
        (
            r#"{"title":"T","author":"A","isbn":"1","price":-1}"#,
            "negative price",
        ),
        (
            r#"{"title":"T","author":7,"isbn":"1","price":1}"#,
            "author not a string",
        ),
    ] {
        let answer = send(Method::POST, &post, body).await;
        assert_eq!(
            answer.status,
            StatusCode::BAD_REQUEST,
            "{why}: {}",
            answer.text
        );
        assert!(answer.json["error"].is_string(), "{why}: {}", answer.text);
    }
    let big = format!(r#"{{"title":"{}"}}"#, "x".repeat(70 * 1024));
    let answer = send(Method::POST, &post, &big).await;
    assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(answer.json["error"].is_string());

    let fault = |name: &str| format!("{}/stores/{name}/fault", demo.url());
    let answer = send(Method::PUT, &fault("store-9"), r#"{"mode":"ok"}"#).await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    for body in [
        r#"{"mode":"sideways"}"#,
        r#"{"mode":"flaky","error_rate":1.5}"#,
        "nope",
    ] {
        let answer = send(Method::PUT, &fault("store-1"), body).await;
        assert_eq!(
            answer.status,
            StatusCode::BAD_REQUEST,
            "{body}: {}",
            answer.text
        );
        assert!(answer.json["error"].is_string());
    }
    let answer = get(&format!("{}/no/such/route", demo.url())).await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    assert!(answer.json["error"].is_string());
    demo.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_breaker_route_changes_thresholds_under_concurrent_reads_and_they_trip_there() {
    // Ordered failover: every read asks store-1 first (it is the one that answers, so the
    // failover sticks to it), so store-1 gets exactly one call per read, whatever latencies
    // a balancer would have measured. A short wait when no store is ready keeps the reads
    // below quick once the other stores' breakers open.
    let mut config = fast_config(Strategy::Failover);
    config.search.wait_for_healthy = Duration::from_millis(20);
    let demo = start(config).await;
    let book = format!("{}/book/Dune", demo.url());
    let breaker = format!("{}/stores/store-1/breaker", demo.url());

    // Reads keep going while the settings change: every one answered.
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let book = book.clone();
            tokio::spawn(async move {
                let mut statuses = Vec::new();
                for _ in 0..25 {
                    statuses.push(get(&book).await.status);
                }
                statuses
            })
        })
        .collect();
    let answer = send(Method::PUT, &breaker, r#"{"failure_rate":0.9}"#).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    // A partial body changes only its keys; `window` may be given at the value in force.
    let answer = send(
        Method::PUT,
        &breaker,
        r#"{"min_calls":20,"open":"5s","window":20}"#,
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    let in_force = json!({
        "failure_rate": 0.9,
        "window": 20,
        "min_calls": 20,
        "open": "5s",
        "half_open_probes": 1,
    });
    assert_eq!(answer.json, in_force);
    for reader in readers {
        for status in reader.await.unwrap() {
            assert_eq!(
                status,
                StatusCode::OK,
                "no read failed while the settings changed"
            );
        }
    }
    assert_eq!(store_view(&demo, "store-1").await["breaker"], in_force);
    assert_eq!(
        store_view(&demo, "store-2").await["breaker"]["failure_rate"],
        0.5,
        "the other stores keep theirs"
    );

    // Every store fails now (so no success moves the failover off store-1): each read tries
    // store-1 once, and its breaker opens only once 18 of the window's 20 calls failed (at
    // the defaults, 0.5 over at least 5 calls, 10 would have): 18 reads here.
    for store in &demo.stores {
        store.set_fault(Fault::Error { status: 503 }).await.unwrap();
    }
    let mut reads = 0;
    while store_view(&demo, "store-1").await["circuit"] != "open" {
        let answer = get(&book).await;
        assert_eq!(
            answer.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{}",
            answer.text
        );
        reads += 1;
        assert!(reads <= 40, "store-1's breaker did not open");
    }
    let handle = demo.outbound.stores[0].breaker.clone().unwrap();
    let m = handle.metrics();
    assert_eq!(m.calls, 20, "{m:?}");
    assert!(m.failures >= 18 && m.failure_rate >= 0.9, "{m:?}");
    assert_eq!(
        handle.retry_after().map(|d| d <= Duration::from_secs(5)),
        Some(true)
    );
    demo.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_breaker_route_refuses_bad_input_naming_the_key_and_changes_nothing() {
    let demo = start(fast_config(Strategy::Balance)).await;
    let breaker = |name: &str| format!("{}/stores/{name}/breaker", demo.url());
    let before = store_view(&demo, "store-1").await["breaker"].clone();
    assert_eq!(before["failure_rate"], 0.5);

    let answer = send(Method::PUT, &breaker("store-9"), r#"{"failure_rate":0.3}"#).await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    assert!(answer.json["error"].is_string());
    for (body, key) in [
        (r#"{"failure_rate":1.5}"#, "failure_rate"),
        (r#"{"failure_rate":"high"}"#, "failure_rate"),
        (r#"{"min_calls":0}"#, "min_calls"),
        (r#"{"min_calls":21}"#, "min_calls"),
        (r#"{"min_calls":-1}"#, "min_calls"),
        (r#"{"open":"soon"}"#, "open"),
        (r#"{"open":"0s"}"#, "open"),
        (r#"{"half_open_probes":0}"#, "half_open_probes"),
        (r#"{"window":50}"#, "window"),
        (r#"{"failure_rate":0.2,"bogus":1}"#, "bogus"),
        ("[1]", "object"),
        ("nope", "JSON"),
    ] {
        let answer = send(Method::PUT, &breaker("store-1"), body).await;
        assert_eq!(
            answer.status,
            StatusCode::BAD_REQUEST,
            "{body}: {}",
            answer.text
        );
        let error = answer.json["error"].as_str().unwrap_or_default();
        assert!(error.contains(key), "{body}: {error}");
    }
    let big = format!(r#"{{"failure_rate":0.3,"pad":"{}"}}"#, "x".repeat(4096));
    let answer = send(Method::PUT, &breaker("store-1"), &big).await;
    assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(answer.json["error"].is_string());
    assert_eq!(
        store_view(&demo, "store-1").await["breaker"],
        before,
        "nothing changed"
    );
    demo.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fault_route_controls_a_store_even_when_it_is_down() {
    let demo = start(fast_config(Strategy::Balance)).await;
    let fault = format!("{}/stores/store-1/fault", demo.url());
    let answer = send(Method::PUT, &fault, r#"{"mode":"down"}"#).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    assert_eq!(answer.json["mode"], "down");
    let direct = client()
        .get(format!("{}/health", demo.stores[0].url()).parse().unwrap())
        .await;
    assert!(direct.is_err(), "a down store refuses connections");
    let answer = send(Method::PUT, &fault, r#"{"mode":"ok"}"#).await;
    assert_eq!(answer.status, StatusCode::OK);
    let direct = client()
        .get(format!("{}/health", demo.stores[0].url()).parse().unwrap())
        .await
        .expect("back up");
    assert_eq!(direct.status(), StatusCode::OK);
    demo.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stores_and_metrics_read_the_layers() {
    let demo = start(fast_config(Strategy::Balance)).await;
    for _ in 0..6 {
        assert_eq!(
            get(&format!("{}/book/Dune", demo.url())).await.status,
            StatusCode::OK
        );
    }
    let stores = get(&format!("{}/stores", demo.url())).await.json;
    let stores = stores.as_array().unwrap();
    assert_eq!(stores.len(), 3);
    let mut total = 0;
    for (i, s) in stores.iter().enumerate() {
        assert_eq!(s["name"], format!("store-{}", i + 1));
        assert_eq!(s["url"], demo.stores[i].url());
        assert_eq!(s["healthy"], true);
        assert_eq!(s["circuit"], "closed");
        assert_eq!(s["in_flight"], 0);
        assert_eq!(s["failures"], 0);
        total += s["successes"].as_u64().unwrap();
    }
    assert_eq!(total, 6, "each request reached exactly one store");

    let metrics = get(&format!("{}/metrics", demo.url())).await;
    assert_eq!(metrics.status, StatusCode::OK);
    assert!(metrics.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    for name in [
        "bookstore_requests_total{",
        "bookstore_rejected_total{store=\"store-1\"}",
        "bookstore_circuit_state{store=\"store-1\"}",
        "book_search_requests_total{route=\"/book/{title}\",status=\"200\"}",
        "bulwark_circuit_breaker_calls_total{",
        "bulwark_balance_",
    ] {
        assert!(
            metrics.text.contains(name),
            "{name} missing:\n{}",
            metrics.text
        );
    }
    assert_eq!(
        get(&format!("{}/health", demo.url())).await.status,
        StatusCode::OK
    );
    demo.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_while_a_store_flaps_gets_only_200s() {
    let demo = start(fast_config(Strategy::Balance)).await;
    let flapper = demo.stores[0].clone();
    let flapping = tokio::spawn(async move {
        loop {
            flapper.set_fault(Fault::Down).await.unwrap();
            tokio::time::sleep(Duration::from_millis(60)).await;
            flapper.set_fault(Fault::Ok).await.unwrap();
            tokio::time::sleep(Duration::from_millis(60)).await;
        }
    });
    let titles = ["Dune", "The%20Hobbit"];
    let mut failures = Vec::new();
    for wave in 0..8 {
        let calls: Vec<_> = (0..25)
            .map(|i| {
                let url = format!("{}/book/{}", demo.url(), titles[(wave + i) % 2]);
                tokio::spawn(async move { get(&url).await })
            })
            .collect();
        for call in calls {
            let answer = call.await.unwrap();
            if answer.status != StatusCode::OK {
                failures.push(format!("{} {}", answer.status, answer.text));
            }
        }
    }
    flapping.abort();
    assert!(failures.is_empty(), "non-200 answers: {failures:?}");
    demo.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_over_the_stores_limits_is_shed_with_503_and_retry_after() {
    // Two requests in flight per store at most; the stores take 400 ms per book request, so
    // a burst of 15 at once finds six places, and the others are answered 503 once
    // `wait_for_healthy` (300 ms) passes without a place freeing up. No hedging: the point is
    // the shedding.
    let mut config = fast_config(Strategy::Balance);
    config.bulkhead.max_concurrent = 2;
    config.hedge.max_attempts = 1;
    config.attempt.timeout = Duration::from_secs(2);
    let demo = start(config).await;
    for store in &demo.stores {
        store
            .set_fault(Fault::Slow { delay_ms: 400 })
            .await
            .unwrap();
    }
    let calls: Vec<_> = (0..15)
        .map(|_| {
            let url = format!("{}/book/Dune", demo.url());
            tokio::spawn(async move { get(&url).await })
        })
        .collect();
    let (mut served, mut shed) = (0, 0);
    for call in calls {
        let answer = call.await.unwrap();
        match answer.status {
            StatusCode::OK => served += 1,
            StatusCode::SERVICE_UNAVAILABLE => {
                shed += 1;
                let error = answer.json["error"].as_str().unwrap_or_default();
                assert!(
                    error.contains("every store is at its limit"),
                    "{}",
                    answer.text
                );
                assert!(answer.json["retry_after_ms"].is_u64(), "{}", answer.text);
                assert!(
                    answer.headers.contains_key("retry-after"),
                    "{}",
                    answer.text
                );
            }
            other => panic!("unexpected {other}: {}", answer.text),
        }
    }
    assert_eq!(served + shed, 15);
    assert!(
        (1..=6).contains(&served),
        "served {served}: at most 2 per store"
    );
    let received: u64 = demo.stores.iter().map(|s| s.book_requests()).sum();
    assert_eq!(
        received, served as u64,
        "a shed request never reached a store"
    );
    demo.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_sent_to_a_slow_store_is_hedged_and_answered_by_another() {
    // Hedge after a fixed 50 ms (rather than the p95 of 100 answers); store-1 answers after
    // 2 s. The first read the balancer sends to store-1 is sent to another store 50 ms later,
    // which answers; store-1's attempt is cancelled, not failed.
    let mut config = fast_config(Strategy::Balance);
    config.attempt.timeout = Duration::from_secs(5);
    config.hedge.delay = Some(Duration::from_millis(50));
    config.hedge.percentile = None;
    let demo = start(config).await;
    demo.stores[0]
        .set_fault(Fault::Slow { delay_ms: 2000 })
        .await
        .unwrap();
    let mut hedged = false;
    for _ in 0..30 {
        let before = demo.stores[0].book_requests();
        let answer = get(&format!("{}/book/Dune", demo.url())).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
        if demo.stores[0].book_requests() > before {
            assert_ne!(answer.json["store"], "store-1", "{}", answer.text);
            hedged = true;
            break;
        }
    }
    assert!(hedged, "no read went to store-1 in 30");
    let stores = get(&format!("{}/stores", demo.url())).await;
    let slow = &stores.json[0];
    assert_eq!(slow["name"], "store-1");
    assert_eq!(slow["cancelled"], 1, "{}", stores.text);
    assert_eq!(slow["failures"], 0, "{}", stores.text);
    demo.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_rate_limit_reads_are_answered_503_at_once() {
    // Five reads per minute, all at once: of a burst of 12, exactly five are served, and the
    // others are told to come back when the next token comes (12 s).
    let mut config = fast_config(Strategy::Balance);
    let mut limit = tower_bulwark::rate_limit::RateLimitConfig::default();
    limit.rate = 5;
    limit.period = Duration::from_secs(60);
    config.rate_limit = Some(limit);
    let demo = start(config).await;
    let calls: Vec<_> = (0..12)
        .map(|_| {
            let url = format!("{}/book/Dune", demo.url());
            tokio::spawn(async move { get(&url).await })
        })
        .collect();
    let mut served = 0;
    for call in calls {
        let answer = call.await.unwrap();
        if answer.status == StatusCode::OK {
            served += 1;
            continue;
        }
        assert_eq!(
            answer.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{}",
            answer.text
        );
        let after: u64 = answer.headers["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=12).contains(&after), "retry-after {after}");
        assert!(answer.json["retry_after_ms"].as_u64().unwrap() <= 12_000);
    }
    assert_eq!(served, 5);
    let received: u64 = demo.stores.iter().map(|s| s.book_requests()).sum();
    assert_eq!(received, 5, "a limited request never reached a store");
    demo.shutdown().await;
}

/// The example's binary, built by `cargo test` next to this test's.
fn example_binary() -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(|d| d.parent()).unwrap();
    let bin = dir
        .join("examples")
        .join(format!("book_search{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.exists(),
        "{} is missing: run `cargo test` without `--test` so the example is built",
        bin.display()
    );
    bin
}

#[test]
fn a_bad_configuration_stops_the_program_with_exit_code_2_naming_the_key() {
    let dir = std::env::temp_dir().join(format!("book_search_cfg_{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (text, key) in [
        (
            "[circuit_breaker]\nfailure_rate = 1.5\n",
            "circuit_breaker.failure_rate",
        ),
        ("[circuit_breaker]\nwindow = 0\n", "circuit_breaker.window"),
        (
            "[fanout]\nbase = \"2s\"\nmax_backoff = \"1s\"\n",
            "fanout.max_backoff",
        ),
        ("[health]\nintervall = \"1s\"\n", "intervall"),
        ("[attempt]\ntimeout = 5\n", "attempt.timeout"),
        ("[search]\nstrategy = \"random\"\n", "search.strategy"),
        ("[ejection]\nmax_ejected = 2.0\n", "ejection.max_ejected"),
        ("[ejection]\nbase = \"10s\"\nmax = \"1s\"\n", "ejection.max"),
        (
            "[attempt]\nfailover_codes = [404]\n",
            "attempt.failover_codes",
        ),
        (
            "[bulkhead]\nmax_concurrent = 0\n",
            "bulkhead.max_concurrent",
        ),
        ("[bulkhead]\nmax_concurent = 8\n", "max_concurent"),
        ("[hedge]\npercentile = 1.5\n", "hedge.percentile"),
        ("[hedge]\nmax_attempts = 9\n", "hedge.max_attempts"),
        ("[hedge]\ndelay = \"soon\"\n", "hedge.delay"),
        ("[rate_limit]\nrate = 0\n", "rate_limit.rate"),
        ("[rate_limit]\nmode = \"readiness\"\n", "rate_limit.mode"),
    ] {
        let path = dir.join("bad.toml");
        std::fs::write(&path, text).unwrap();
        let out = std::process::Command::new(example_binary())
            .args(["--listen", "127.0.0.1:0", "--config"])
            .arg(&path)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{text}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(key), "{text}: {stderr}");
    }
    let out = std::process::Command::new(example_binary())
        .arg("--nope")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = std::process::Command::new(example_binary())
        .arg("--help")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("--config"));
}

#[test]
fn every_key_of_the_contract_parses() {
    let text = r#"
[search]
strategy = "failover"
deadline = "30s"
wait_for_healthy = "1s"

[attempt]
timeout = "5s"
failover_codes = [501, 502, 503, 504]

[circuit_breaker]
failure_rate = 0.5
window = 20
min_calls = 5
open = "10s"
half_open_probes = 1

[health]
path = "/health"
interval = "2s"
timeout = "2s"
unhealthy_after = 2
healthy_after = 1

[fanout]
base = "100ms"
factor = 2.0
max_backoff = "64s"
max_attempts = 100
deadline = "30s"
"#;
    let c = Config::from_toml(text).unwrap();
    assert_eq!(c.search.strategy, Strategy::Failover);
    assert_eq!(c.fanout.base, Duration::from_millis(100));
    assert_eq!(c.attempt.failover_codes, vec![501, 502, 503, 504]);
    // An empty file is the defaults.
    let d = Config::from_toml("").unwrap();
    assert_eq!(d.search.strategy, Strategy::Balance);
    assert_eq!(d.circuit_breaker.window, 20);
    assert_eq!(d.health.interval, Duration::from_secs(2));
    assert_eq!(d.fanout.max_attempts, 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bare_demo_answers_in_round_robin_and_lists_its_stores() {
    let config = Config::from_toml("[search]\nstrategy = \"bare\"\n").unwrap();
    assert_eq!(config.search.strategy, Strategy::Bare);
    let demo = start(config).await;
    let mut answered_by = Vec::new();
    for _ in 0..3 {
        let answer = get(&format!("{}/book/Dune", demo.url())).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
        assert_eq!(answer.json["title"], "Dune");
        answered_by.push(answer.json["store"].as_str().unwrap().to_string());
    }
    // No balancer on the read path: the stores in turn.
    assert_eq!(answered_by, ["store-1", "store-2", "store-3"]);
    let stores = get(&format!("{}/stores", demo.url())).await.json;
    let stores = stores.as_array().unwrap();
    assert_eq!(stores.len(), 3);
    for (i, s) in stores.iter().enumerate() {
        assert_eq!(s["name"], format!("store-{}", i + 1));
        assert_eq!(s["url"], demo.stores[i].url());
        assert_eq!(s["healthy"], true);
        assert_eq!(s["circuit"], "closed");
        // No layer: `/stores` counts what each store client sent (one request each), and
        // reads every circuit closed and every store healthy (nothing checks them).
        assert_eq!(s["successes"], 1);
        assert_eq!(s["failures"], 0);
    }
    demo.shutdown().await;
}
