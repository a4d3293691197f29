//! Tests of the book_search demo's mock book store, over real HTTP on loopback.
#![allow(dead_code)]

#[path = "../examples/book_search/app/serve.rs"]
mod serve;
#[path = "../examples/book_search/app/store.rs"]
mod store;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio::time::timeout;

use store::{catalogue, Book, Fault, Store};

type HttpClient = Client<HttpConnector, Full<Bytes>>;

const LOOPBACK: &str = "127.0.0.1:0";

fn loopback() -> SocketAddr {
    LOOPBACK.parse().expect("loopback address")
}

async fn spawn(name: &str) -> Store {
    Store::spawn(name, loopback(), 7)
        .await
        .expect("store spawns")
}

/// A client that opens a fresh connection per request, so no pooled connection outlives a
/// store going down.
fn client() -> HttpClient {
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build_http()
}

async fn try_call(
    client: &HttpClient,
    method: Method,
    url: String,
    body: impl Into<Bytes>,
) -> Result<(StatusCode, Value), hyper_util::client::legacy::Error> {
    let request = Request::builder()
        .method(method)
        .uri(url)
        .header("content-type", "application/json")
        .body(Full::new(body.into()))
        .expect("request builds");
    let response = client.request(request).await?;
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body reads")
        .to_bytes();
    let value = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).expect("body is JSON")
    };
    Ok((status, value))
}

async fn call(
    client: &HttpClient,
    method: Method,
    url: String,
    body: impl Into<Bytes>,
) -> (StatusCode, Value) {
    try_call(client, method, url, body)
        .await
        .expect("request succeeds")
}

async fn get(client: &HttpClient, store: &Store, path: &str) -> (StatusCode, Value) {
    call(client, Method::GET, format!("{}{path}", store.url()), "").await
}

async fn put_fault(client: &HttpClient, store: &Store, body: Value) -> (StatusCode, Value) {
    let url = format!("{}/fault", store.url());
    call(client, Method::PUT, url, body.to_string()).await
}

async fn post_book(
    client: &HttpClient,
    store: &Store,
    body: impl Into<Bytes>,
) -> (StatusCode, Value) {
    call(client, Method::POST, format!("{}/books", store.url()), body).await
}

fn error_message(body: &Value) -> &str {
    body["error"]
        .as_str()
        .expect("an {\"error\": message} body")
}

fn new_book() -> Value {
    json!({"title": "Solaris", "author": "Stanislaw Lem", "isbn": "978-0156027601", "price": 14.5})
}

/// A keep-alive HTTP/1 connection opened by hand, with its driver task.
async fn raw_connection(
    addr: SocketAddr,
) -> (
    hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
    tokio::task::JoinHandle<Result<(), hyper::Error>>,
) {
    let stream = TcpStream::connect(addr).await.expect("connects");
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    (sender, tokio::spawn(connection))
}

fn raw_get(path: &str) -> Request<Empty<Bytes>> {
    Request::get(path)
        .header("host", "store")
        .body(Empty::new())
        .expect("request builds")
}

async fn assert_refused(client: &HttpClient, store: &Store) {
    let err = try_call(client, Method::GET, format!("{}/books", store.url()), "")
        .await
        .expect_err("the store refuses connections");
    assert!(err.is_connect(), "expected a connect error, got {err:?}");
    let err = TcpStream::connect(store.addr())
        .await
        .expect_err("no listener");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
}

#[test]
fn catalogue_is_fixed_and_has_unique_titles() {
    let books = catalogue();
    assert!(books.len() >= 20);
    assert_eq!(books, catalogue());
    let titles: std::collections::HashSet<_> = books.iter().map(|b| b.title.as_str()).collect();
    assert_eq!(titles.len(), books.len());
    assert!(titles.contains("Dune") && titles.contains("The Hobbit"));
    assert!(books.iter().all(|b| b.validate().is_ok()));
}

#[tokio::test]
async fn serves_the_catalogue() {
    let store = spawn("store-1").await;
    assert_eq!(store.name(), "store-1");
    assert_eq!(
        store.url(),
        format!("http://127.0.0.1:{}", store.addr().port())
    );
    assert_eq!(store.books(), catalogue());
    let client = client();
    let (status, body) = get(&client, &store, "/books").await;
    assert_eq!(status, StatusCode::OK);
    let items = body.as_array().expect("an array");
    assert_eq!(items.len(), catalogue().len());
    assert!(items.iter().all(|b| b["store"] == "store-1"));
    let served: Vec<Book> = serde_json::from_value(body.clone()).expect("books");
    assert_eq!(served, catalogue());
    store.shutdown().await;
}

#[tokio::test]
async fn gets_a_book_by_exact_title() {
    let store = spawn("store-2").await;
    let client = client();
    let (status, body) = get(&client, &store, "/books/Dune").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["title"], "Dune");
    assert_eq!(body["author"], "Frank Herbert");
    assert_eq!(body["store"], "store-2");
    let (status, body) = get(&client, &store, "/books/The%20Hobbit").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["title"], "The Hobbit");

    for missing in ["/books/dune", "/books/Nope", "/books/Dune%20"] {
        let (status, body) = get(&client, &store, missing).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{missing}");
        assert!(error_message(&body).contains("store-2"));
    }
    store.shutdown().await;
}

#[tokio::test]
async fn post_is_idempotent_and_detects_conflicts() {
    let store = spawn("store-1").await;
    let client = client();
    for _ in 0..2 {
        let (status, body) = post_book(&client, &store, new_book().to_string()).await;
        assert_eq!(status, StatusCode::CREATED);
        assert_eq!(body["title"], "Solaris");
        assert_eq!(body["price"], 14.5);
        assert_eq!(body["store"], "store-1");
    }
    let books = store.books();
    assert_eq!(books.len(), catalogue().len() + 1);
    assert_eq!(books.last().map(|b| b.title.as_str()), Some("Solaris"));
    let (status, body) = get(&client, &store, "/books/Solaris").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["isbn"], "978-0156027601");

    let mut other = new_book();
    other["price"] = json!(15.0);
    let (status, body) = post_book(&client, &store, other.to_string()).await;
    assert_eq!(status, StatusCode::CONFLICT);
    error_message(&body);
    // A catalogue title with other fields conflicts too.
    let dune = json!({"title": "Dune", "author": "Someone Else", "isbn": "1", "price": 1.0});
    let (status, _) = post_book(&client, &store, dune.to_string()).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(store.books().len(), catalogue().len() + 1);
    store.shutdown().await;
}

#[tokio::test]
async fn post_rejects_bad_bodies() {
    let store = spawn("store-1").await;
    let client = client();
    let bad = [
        json!({"title": "X", "author": "Y", "price": 1.0}).to_string(),
        json!({"title": "X", "author": "", "isbn": "1", "price": 1.0}).to_string(),
        json!({"title": "  ", "author": "Y", "isbn": "1", "price": 1.0}).to_string(),
        json!({"title": "X", "author": "Y", "isbn": "1", "price": "free"}).to_string(),
        json!({"title": "X", "author": "Y", "isbn": "1", "price": -1.0}).to_string(),
        "{\"title\": ".to_owned(),
        "not json".to_owned(),
        String::new(),
    ];
    for body in bad {
        let (status, response) = post_book(&client, &store, body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        error_message(&response);
    }

    let mut large = new_book();
    large["title"] = json!("Large");
    large["author"] = json!("a".repeat(60 * 1024));
    let (status, _) = post_book(&client, &store, large.to_string()).await;
    assert_eq!(status, StatusCode::CREATED, "60 KiB is under the limit");

    let mut huge = new_book();
    huge["author"] = json!("a".repeat(64 * 1024));
    let (status, response) = post_book(&client, &store, huge.to_string()).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    error_message(&response);
    assert_eq!(store.books().len(), catalogue().len() + 1);
    assert!(store.books().iter().all(|b| b.title != "Solaris"));
    store.shutdown().await;
}

#[test]
fn json_body_helper_maps_errors_to_400() {
    let ok: Result<Book, _> = store::json_body(Ok(Bytes::from(new_book().to_string())));
    assert_eq!(ok.map(|b| b.title), Ok("Solaris".to_owned()));
    let err = store::json_body::<Book>(Ok(Bytes::from_static(b"{"))).expect_err("malformed");
    assert_eq!(err.status, StatusCode::BAD_REQUEST);
    let response = axum::response::IntoResponse::into_response(err);
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn unknown_routes_answer_json_errors() {
    let store = spawn("store-1").await;
    let client = client();
    let (status, body) = get(&client, &store, "/nowhere").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    error_message(&body);
    let url = format!("{}/books/Dune", store.url());
    let (status, body) = call(&client, Method::DELETE, url, "").await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    error_message(&body);
    store.shutdown().await;
}

#[tokio::test]
async fn health_and_flip() {
    let store = spawn("store-3").await;
    let client = client();
    assert!(store.healthy());
    let (status, body) = get(&client, &store, "/health").await;
    assert_eq!((status, body), (StatusCode::OK, json!({"healthy": true})));

    let url = format!("{}/health/flip", store.url());
    let (status, body) = call(&client, Method::POST, url.clone(), "").await;
    assert_eq!((status, body), (StatusCode::OK, json!({"healthy": false})));
    assert!(!store.healthy());
    let (status, body) = get(&client, &store, "/health").await;
    assert_eq!(
        (status, body),
        (StatusCode::SERVICE_UNAVAILABLE, json!({"healthy": false}))
    );
    // An unhealthy store still serves books.
    let (status, _) = get(&client, &store, "/books/Dune").await;
    assert_eq!(status, StatusCode::OK);

    assert!(store.flip_health());
    store.set_healthy(false);
    let (_, body) = call(&client, Method::POST, url, "").await;
    assert_eq!(body, json!({"healthy": true}));
    assert!(store.healthy());
    store.shutdown().await;
}

#[test]
fn fault_json_round_trips_and_validates() {
    let cases = [
        (json!({"mode": "ok"}), Fault::Ok),
        (json!({"mode": "error"}), Fault::Error { status: 503 }),
        (
            json!({"mode": "error", "status": 500}),
            Fault::Error { status: 500 },
        ),
        (
            json!({"mode": "flaky", "error_rate": 0.3}),
            Fault::Flaky {
                error_rate: 0.3,
                status: 503,
            },
        ),
        (
            json!({"mode": "slow", "delay_ms": 30000}),
            Fault::Slow { delay_ms: 30000 },
        ),
        (json!({"mode": "down"}), Fault::Down),
    ];
    for (body, fault) in cases {
        assert_eq!(Fault::parse(body.to_string().as_bytes()), Ok(fault.clone()));
        let round = serde_json::to_vec(&fault).expect("serializes");
        assert_eq!(Fault::parse(&round), Ok(fault));
    }
    assert_eq!(
        serde_json::to_value(Fault::Flaky {
            error_rate: 0.3,
            status: 503
        })
        .expect("serializes"),
        json!({"mode": "flaky", "error_rate": 0.3, "status": 503})
    );

    let invalid = [
        json!({"mode": "sideways"}),
        json!({"mode": "OK"}),
        json!({"status": 503}),
        json!({"mode": "flaky", "error_rate": 1.5}),
        json!({"mode": "flaky", "error_rate": -0.1}),
        json!({"mode": "flaky"}),
        json!({"mode": "error", "status": 99}),
        json!({"mode": "error", "status": 600}),
        json!({"mode": "error", "status": 70000}),
        json!({"mode": "flaky", "error_rate": 0.5, "status": 600}),
        json!({"mode": "slow"}),
        json!({"mode": "slow", "delay_ms": -1}),
        json!("ok"),
    ];
    for body in invalid {
        assert!(Fault::parse(body.to_string().as_bytes()).is_err(), "{body}");
    }
    assert!(Fault::parse(b"{").is_err());
    assert!(Fault::parse(b"").is_err());
}

#[tokio::test]
async fn put_fault_validates_over_http() {
    let store = spawn("store-1").await;
    let client = client();
    let invalid = [
        json!({"mode": "sideways"}),
        json!({"mode": "flaky", "error_rate": 1.5}),
        json!({"mode": "error", "status": 99}),
    ];
    for body in invalid {
        let (status, response) = put_fault(&client, &store, body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        error_message(&response);
    }
    let url = format!("{}/fault", store.url());
    let (status, response) = call(&client, Method::PUT, url, "{oops").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    error_message(&response);
    assert_eq!(store.fault(), Fault::Ok);
    store.shutdown().await;
}

#[tokio::test]
async fn error_mode_fails_book_routes_only() {
    let store = spawn("store-1").await;
    let client = client();
    let (status, body) = put_fault(&client, &store, json!({"mode": "error", "status": 500})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({"mode": "error", "status": 500}));
    assert_eq!(store.fault(), Fault::Error { status: 500 });

    for path in ["/books", "/books/Dune", "/books/Nope"] {
        let (status, body) = get(&client, &store, path).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{path}");
        error_message(&body);
    }
    let (status, _) = post_book(&client, &store, new_book().to_string()).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(store.books(), catalogue());

    // Health and fault routes are untouched.
    let (status, _) = get(&client, &store, "/health").await;
    assert_eq!(status, StatusCode::OK);
    let url = format!("{}/health/flip", store.url());
    let (status, _) = call(&client, Method::POST, url, "").await;
    assert_eq!(status, StatusCode::OK);

    let (status, body) = put_fault(&client, &store, json!({"mode": "error"})).await;
    assert_eq!(
        (status, body["status"].clone()),
        (StatusCode::OK, json!(503))
    );
    let (status, _) = get(&client, &store, "/books").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);

    let (status, _) = put_fault(&client, &store, json!({"mode": "ok"})).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = get(&client, &store, "/books").await;
    assert_eq!(status, StatusCode::OK);
    store.shutdown().await;
}

#[tokio::test]
async fn flaky_mode_at_the_extremes_and_between() {
    let store = spawn("store-1").await;
    let client = client();
    store
        .set_fault(Fault::Flaky {
            error_rate: 1.0,
            status: 502,
        })
        .await
        .expect("fault set");
    for _ in 0..20 {
        let (status, body) = get(&client, &store, "/books/Dune").await;
        assert_eq!(status, StatusCode::BAD_GATEWAY);
        error_message(&body);
    }
    let (status, _) = post_book(&client, &store, new_book().to_string()).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert_eq!(
        store.books(),
        catalogue(),
        "a failed request stores nothing"
    );
    let (status, _) = get(&client, &store, "/health").await;
    assert_eq!(status, StatusCode::OK);

    store
        .set_fault(Fault::Flaky {
            error_rate: 0.0,
            status: 502,
        })
        .await
        .expect("fault set");
    for _ in 0..20 {
        let (status, _) = get(&client, &store, "/books/Dune").await;
        assert_eq!(status, StatusCode::OK);
    }

    let (status, _) = put_fault(&client, &store, json!({"mode": "flaky", "error_rate": 0.5})).await;
    assert_eq!(status, StatusCode::OK);
    let mut failures = 0;
    for _ in 0..60 {
        let (status, _) = get(&client, &store, "/books/Dune").await;
        if status == StatusCode::SERVICE_UNAVAILABLE {
            failures += 1;
        } else {
            assert_eq!(status, StatusCode::OK);
        }
    }
    assert!((10..=50).contains(&failures), "{failures} failures of 60");
    store.shutdown().await;
}

#[tokio::test]
async fn slow_mode_delays_book_routes_only() {
    let store = spawn("store-1").await;
    let client = client();
    store
        .set_fault(Fault::Slow { delay_ms: 50 })
        .await
        .expect("fault set");
    let (status, _) = get(&client, &store, "/books/Dune").await;
    assert_eq!(status, StatusCode::OK);

    let (status, _) = put_fault(
        &client,
        &store,
        json!({"mode": "slow", "delay_ms": 600_000}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let url = format!("{}/books/Dune", store.url());
    let pending = timeout(
        Duration::from_millis(200),
        try_call(&client, Method::GET, url, ""),
    )
    .await;
    assert!(pending.is_err(), "a slow store must not answer yet");
    // Health and fault routes answer at once.
    let (status, _) = timeout(Duration::from_secs(5), get(&client, &store, "/health"))
        .await
        .expect("health answers");
    assert_eq!(status, StatusCode::OK);
    let (status, _) = timeout(
        Duration::from_secs(5),
        put_fault(&client, &store, json!({"mode": "ok"})),
    )
    .await
    .expect("fault answers");
    assert_eq!(status, StatusCode::OK);
    store.shutdown().await;
}

#[tokio::test]
async fn down_refuses_and_drops_connections_then_comes_back() {
    let store = spawn("store-1").await;
    let client = client();
    let addr = store.addr();

    // A keep-alive connection, used once and left open.
    let (mut idle, idle_driver) = raw_connection(addr).await;
    let response = idle
        .send_request(raw_get("/books/Dune"))
        .await
        .expect("answers");
    assert_eq!(response.status(), StatusCode::OK);
    response.into_body().collect().await.expect("body");
    // A connection with a request in flight.
    store
        .set_fault(Fault::Slow { delay_ms: 600_000 })
        .await
        .expect("fault set");
    let (mut busy, _busy_driver) = raw_connection(addr).await;
    let in_flight = tokio::spawn(async move { busy.send_request(raw_get("/books")).await });
    tokio::time::sleep(Duration::from_millis(50)).await;

    store.set_fault(Fault::Down).await.expect("goes down");
    assert_eq!(store.fault(), Fault::Down);
    assert_refused(&client, &store).await;
    let closed = timeout(Duration::from_secs(2), idle_driver)
        .await
        .expect("the open connection is dropped");
    drop(closed);
    assert!(idle.send_request(raw_get("/books")).await.is_err());
    let aborted = timeout(Duration::from_secs(2), in_flight)
        .await
        .expect("the request in flight ends")
        .expect("task");
    assert!(aborted.is_err(), "the request in flight fails");
    // Down again is a no-op.
    store.set_fault(Fault::Down).await.expect("still down");
    assert_refused(&client, &store).await;

    store.set_fault(Fault::Ok).await.expect("comes back");
    assert_eq!(store.addr(), addr);
    let (status, body) = get(&client, &store, "/books/Dune").await;
    assert_eq!(
        (status, body["store"].clone()),
        (StatusCode::OK, json!("store-1"))
    );

    // Down and up a second time.
    store.set_fault(Fault::Down).await.expect("goes down");
    assert_refused(&client, &store).await;
    store.set_fault(Fault::Ok).await.expect("comes back");
    let (status, _) = get(&client, &store, "/health").await;
    assert_eq!(status, StatusCode::OK);
    store.shutdown().await;
}

#[tokio::test]
async fn a_failing_mode_set_while_down_brings_the_store_back() {
    let store = spawn("store-1").await;
    let client = client();
    store.set_fault(Fault::Down).await.expect("goes down");
    assert_refused(&client, &store).await;
    store
        .set_fault(Fault::Error { status: 504 })
        .await
        .expect("comes back");
    let (status, _) = get(&client, &store, "/books").await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
    let (status, _) = get(&client, &store, "/health").await;
    assert_eq!(status, StatusCode::OK);
    store.shutdown().await;
}

#[tokio::test]
async fn down_over_http_answers_then_goes_down() {
    let store = spawn("store-1").await;
    let client = client();
    let (status, body) = put_fault(&client, &store, json!({"mode": "down"})).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"mode": "down"})));
    assert_eq!(store.fault(), Fault::Down);
    let refused = timeout(Duration::from_secs(2), async {
        while TcpStream::connect(store.addr()).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(refused.is_ok(), "the store goes down");
    assert_refused(&client, &store).await;
    store.set_fault(Fault::Ok).await.expect("comes back");
    let (status, _) = get(&client, &store, "/books").await;
    assert_eq!(status, StatusCode::OK);
    store.shutdown().await;
}

#[tokio::test]
async fn shutdown_is_final_and_idempotent() {
    let store = spawn("store-1").await;
    let client = client();
    let (mut open, driver) = raw_connection(store.addr()).await;
    let response = open
        .send_request(raw_get("/health"))
        .await
        .expect("answers");
    assert_eq!(response.status(), StatusCode::OK);
    let clone = store.clone();
    store.shutdown().await;
    clone.shutdown().await;
    assert_refused(&client, &store).await;
    timeout(Duration::from_secs(2), driver)
        .await
        .expect("the open connection is dropped")
        .expect("task")
        .ok();
    assert!(store.set_fault(Fault::Ok).await.is_err());
}

#[tokio::test]
async fn dropping_every_handle_stops_the_store() {
    let store = spawn("store-1").await;
    let addr = store.addr();
    let clone = store.clone();
    drop(store);
    assert!(
        TcpStream::connect(addr).await.is_ok(),
        "a clone keeps it up"
    );
    drop(clone);
    let stopped = timeout(Duration::from_secs(2), async {
        while TcpStream::connect(addr).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(stopped.is_ok(), "the accept loop ends");
}

#[tokio::test]
async fn three_stores_run_side_by_side() {
    let mut stores = Vec::new();
    for (i, name) in ["store-1", "store-2", "store-3"].into_iter().enumerate() {
        stores.push(
            Store::spawn(name, loopback(), i as u64)
                .await
                .expect("spawns"),
        );
    }
    let client = client();
    stores[1].set_fault(Fault::Down).await.expect("down");
    for (i, store) in stores.iter().enumerate() {
        if i == 1 {
            assert_refused(&client, store).await;
        } else {
            let (status, body) = get(&client, store, "/books/Dune").await;
            assert_eq!(
                (status, body["store"].clone()),
                (StatusCode::OK, json!(store.name()))
            );
        }
    }
    for store in &stores {
        store.shutdown().await;
    }
}

#[tokio::test]
async fn a_full_store_answers_507_and_keeps_what_it_holds() {
    let store = spawn("store-1").await;
    let client = client();
    // 60 KiB of text per book: the 16 MiB cap is reached after some 280 books.
    let author = "a".repeat(60 * 1024);
    let mut stored = 0;
    let status = loop {
        let book =
            json!({"title": format!("Vol. {stored}"), "author": author, "isbn": "1", "price": 1.0});
        let (status, body) = post_book(&client, &store, book.to_string()).await;
        if status != StatusCode::CREATED {
            error_message(&body);
            break status;
        }
        stored += 1;
        assert!(
            stored <= store::MAX_HELD_BYTES / (60 * 1024),
            "no cap after {stored} books"
        );
    };
    assert_eq!(status, StatusCode::INSUFFICIENT_STORAGE);
    assert_eq!(store.books().len(), catalogue().len() + stored);
    // What it holds is still served, and a book it holds is still an idempotent 201.
    let (status, _) = get(&client, &store, "/books/Dune").await;
    assert_eq!(status, StatusCode::OK);
    let again = json!({"title": "Vol. 0", "author": author, "isbn": "1", "price": 1.0});
    let (status, _) = post_book(&client, &store, again.to_string()).await;
    assert_eq!(status, StatusCode::CREATED);
    store.shutdown().await;
}
