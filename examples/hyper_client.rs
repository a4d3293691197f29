//! `cargo run --example hyper_client`: the layers over hyper-util's `Client`, against small
//! servers on loopback, printing what happens.
//!
//! The client stack, outermost first:
//!
//! ```text
//! BackoffRetry (HttpRetryPolicy)     idempotent requests; 429/502/503/504 and refused connections
//!  └ CircuitBreaker (HttpClassifier)  5xx and errors are failures; fails fast with `Open`
//!     └ hyper_util::client::legacy::Client
//! ```
//!
//! The retry is outside the breaker, so the breaker sees (and counts) every attempt, and once
//! it opens the retry stops at once: an `Open` is not retried, and reaches the caller as it is
//! (`err.is::<Open>()`).
//!
//! Three scenes:
//! 1. a server that answers 503 twice, then 200: the retry gets the 200;
//! 2. a server that always answers 503: the breaker opens, and requests fail fast;
//! 3. a failover over two such stacks, the first to a port where nothing listens: the request
//!    goes to the second, and later requests start there (sticky).
//!
//! The test of the same stacks is `tests/hyper_client.rs`.

use axum::extract::Request as AxumRequest;
use axum::response::{IntoResponse, Response as AxumResponse};
use axum::Router;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_bulwark::circuit_breaker::{CircuitBreakerLayer, Open};
use tower_bulwark::core::{BoxError, Event, HttpClassifier};
use tower_bulwark::failover::FailoverLayer;
use tower_bulwark::retry::{BackoffRetryLayer, ExponentialBackoff, Jitter};
use tower_bulwark::ServiceBuilderExt;

type Body = Full<Bytes>;

/// Prints the layers' events worth seeing, indented under the request that caused them.
fn print_event(event: &Event<'_>) {
    match event {
        Event::RetryScheduled {
            name,
            attempt,
            delay,
            server_hint,
            ..
        } => {
            let why = if *server_hint { " (Retry-After)" } else { "" };
            println!("    [{name}] attempt {attempt} failed; retrying in {delay:?}{why}");
        }
        Event::RetryGaveUp {
            name,
            attempts,
            reason,
        } => println!("    [{name}] gave up after {attempts} attempt(s): {reason:?}"),
        Event::Tripped {
            name,
            reason,
            open_for,
        } => println!("    [{name}] breaker tripped ({reason:?}), open for {open_for:?}"),
        Event::StateTransition { name, from, to } => {
            println!("    [{name}] breaker {from:?} -> {to:?}")
        }
        Event::CallRejected { name, state, .. } => {
            println!("    [{name}] call refused by the {state:?} breaker")
        }
        Event::FailedOver {
            name,
            from,
            to,
            reason,
        } => println!("    [{name}] target {from} failed ({reason:?}); trying target {to}"),
        _ => {}
    }
}

/// A server on 127.0.0.1:0 that answers 503 to its first `fail_first` requests, then 200.
/// Returns its address and its request count.
async fn server(
    name: &'static str,
    fail_first: usize,
) -> std::io::Result<(SocketAddr, Arc<AtomicUsize>)> {
    let hits = Arc::new(AtomicUsize::new(0));
    let app = Router::new().fallback({
        let hits = hits.clone();
        move |_: AxumRequest| {
            let n = hits.fetch_add(1, Ordering::SeqCst) + 1;
            async move {
                let res: AxumResponse = if n <= fail_first {
                    (StatusCode::SERVICE_UNAVAILABLE, format!("{name} is busy")).into_response()
                } else {
                    format!("hello from {name} (request {n})").into_response()
                };
                res
            }
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            eprintln!("{name}: {e}");
        }
    });
    Ok((addr, hits))
}

/// The stack: retry over breaker over `client`, both named `name`, events printed.
fn stack(
    name: &str,
    client: Client<HttpConnector, Body>,
) -> Result<
    impl Service<Request<Body>, Response = Response<Incoming>, Error = BoxError, Future: Send>
        + Clone
        + Send
        + Sync
        + 'static,
    BoxError,
> {
    let retry = BackoffRetryLayer::builder()
        .name(name)
        .http()
        .max_attempts(3)
        .backoff(ExponentialBackoff::new(
            Duration::from_millis(50),
            2.0,
            Duration::from_secs(1),
            Jitter::Full,
        )?)
        .listener(print_event)
        .build()?;
    let breaker = CircuitBreakerLayer::builder()
        .name(name)
        .classifier(HttpClassifier::new())
        .consecutive_failures(4)
        .open_for(Duration::from_secs(10))
        .listener(print_event)
        .build()?;
    Ok(ServiceBuilder::new()
        .backoff_retry(retry)
        .circuit_breaker(breaker)
        .service(client))
}

/// Sends `req` through `svc` and prints the answer or the error.
async fn send<S>(svc: &mut S, label: &str, req: Request<Body>)
where
    S: Service<Request<Body>, Response = Response<Incoming>, Error = BoxError>,
{
    println!("  {label}");
    let result = async {
        let res = svc.ready().await?.call(req).await?;
        let status = res.status();
        let body = res.into_body().collect().await?.to_bytes();
        Ok::<_, BoxError>((status, body))
    }
    .await;
    match result {
        Ok((status, body)) => println!("  -> {status}: {}", String::from_utf8_lossy(&body)),
        Err(err) => match err.downcast_ref::<Open>() {
            Some(open) => println!("  -> failed fast, the breaker is open: {open}"),
            None => println!("  -> error: {err}"),
        },
    }
}

fn get(url: String) -> Result<Request<Body>, http::Error> {
    Request::get(url).body(Body::default())
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let client: Client<HttpConnector, Body> = Client::builder(TokioExecutor::new()).build_http();

    println!("1. A server that answers 503 twice, then 200");
    let (flaky, flaky_hits) = server("flaky", 2).await?;
    let mut svc = stack("flaky", client.clone())?;
    send(&mut svc, "GET /book", get(format!("http://{flaky}/book"))?).await;
    println!(
        "  (the server saw {} requests)\n",
        flaky_hits.load(Ordering::SeqCst)
    );

    println!("2. A server that always answers 503: the breaker opens after 4 failures in a row");
    let (broken, broken_hits) = server("broken", usize::MAX).await?;
    let mut svc = stack("broken", client.clone())?;
    for i in 1..=3 {
        send(
            &mut svc,
            &format!("GET /book #{i}"),
            get(format!("http://{broken}/book"))?,
        )
        .await;
    }
    println!(
        "  (the server saw {} requests)\n",
        broken_hits.load(Ordering::SeqCst)
    );

    println!("3. Failover: target 0 refuses connections, target 1 answers");
    let down = {
        // A port nothing listens on: bound, then closed.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        listener.local_addr()?
    };
    let (up, up_hits) = server("up", 0).await?;
    let to = |addr: SocketAddr, name: &str| -> Result<_, BoxError> {
        Ok(ServiceBuilder::new()
            .map_request(move |mut req: Request<Body>| {
                // The same request goes to either server: point it at this target's address.
                let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
                if let Ok(uri) = format!("http://{addr}{path}").parse() {
                    *req.uri_mut() = uri;
                }
                req
            })
            .service(stack(name, client.clone())?))
    };
    let mut failover = FailoverLayer::builder()
        .name("failover")
        .target_names(["down", "up"])
        .http()
        .listener(print_event)
        .build()?
        .build(vec![to(down, "down")?, to(up, "up")?])?;
    for i in 1..=2 {
        send(
            &mut failover,
            &format!("GET /book #{i}"),
            get("/book".into())?,
        )
        .await;
        println!("  (requests now start at target {})", failover.current());
    }
    println!(
        "  (the live server saw {} requests)",
        up_hits.load(Ordering::SeqCst)
    );
    Ok(())
}
