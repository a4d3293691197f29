//! How the demo's servers take connections: HTTP/1 over hyper with every per-connection
//! resource bounded, and a graceful stop.
//!
//! `axum::serve` sets no limit on the time a client may take to send its request head, and
//! reads request heads of up to ~400 KiB. Here each connection is served by a
//! [`hyper::server::conn::http1::Builder`] set from [`Limits`]:
//!
//! * the request head (request line and headers) must arrive within
//!   [`Limits::header_read_timeout`], or the connection is closed without an answer; the same
//!   timer closes a keep-alive connection left idle that long;
//! * a head over [`Limits::max_header_bytes`] (the request line included) or with more than
//!   [`Limits::max_headers`] headers is answered 431 by hyper, a malformed head 400, and the
//!   connection is closed;
//! * the read buffer is at most [`Limits::max_header_bytes`] (at least 8 KiB), so a client
//!   sending faster than the handler reads cannot make it grow;
//! * at most [`Limits::max_connections`] connections are served at once; the next waits in the
//!   listen backlog.
//!
//! Bodies are bounded by the routes (`DefaultBodyLimit` and explicit limits), and read within
//! [`Limits::body_read_timeout`] where a handler reads one.

// The module is compiled into the example and into its tests; each uses a different part.
#![allow(dead_code, unreachable_pub)]

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::io;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

/// The bounds on each connection a server takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Time to receive a whole request head (and the longest a keep-alive connection may sit
    /// idle). Default 10 s.
    pub header_read_timeout: Duration,
    /// Time a handler waits for a request body it reads. Default 10 s.
    pub body_read_timeout: Duration,
    /// The largest request head, request line included. Default 16 KiB.
    pub max_header_bytes: usize,
    /// The most headers in a request. Default 100.
    pub max_headers: usize,
    /// Connections served at once. Default 1024.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(10),
            max_header_bytes: 16 * 1024,
            max_headers: 100,
            max_connections: 1024,
        }
    }
}

impl Limits {
    /// The limits of a mock store. Its only client is the search service, whose pooled
    /// connections idle for up to 30 s: the stores keep them a minute, so the pool always
    /// closes first (no request is ever sent on a connection the store is closing). Its heads
    /// may be three times the search service's (a title is percent-encoded again on the way).
    pub fn store() -> Self {
        Limits {
            header_read_timeout: Duration::from_secs(60),
            max_header_bytes: 64 * 1024,
            ..Limits::default()
        }
    }

    /// An HTTP/1 connection builder with these limits.
    pub fn http1(&self) -> hyper::server::conn::http1::Builder {
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(self.header_read_timeout)
            .max_header_size(self.max_header_bytes)
            .max_headers(self.max_headers)
            // hyper refuses a buffer under 8 KiB.
            .max_buf_size(self.max_header_bytes.max(8 * 1024));
        builder
    }
}

/// Serves `router` on `listener` under `limits` until `stop` is sent (or dropped); then stops
/// accepting, lets the requests in flight finish (idle connections are closed at once), and
/// returns when every connection is closed.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    stop: tokio::sync::oneshot::Receiver<()>,
) -> io::Result<()> {
    let builder = Arc::new(limits.http1());
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let (closing, closed) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(stop);
    loop {
        let permit = tokio::select! {
            _ = &mut stop => break,
            permit = Arc::clone(&slots).acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break, // the semaphore is never closed
            },
        };
        let (stream, _peer) = tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Usually per connection (reset before accept) or out of descriptors:
                    // pause briefly rather than spin.
                    tracing::debug!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(router.clone());
        let builder = Arc::clone(&builder);
        let mut closed = closed.clone();
        connections.spawn(async move {
            let _permit = permit;
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(connection);
            let result = tokio::select! {
                result = connection.as_mut() => result,
                _ = async { let _ = closed.wait_for(|closing| *closing).await; } => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(e) = result {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
        // Reap the finished ones so the set does not grow with the connections served.
        while connections.try_join_next().is_some() {}
    }
    drop(listener);
    let _ = closing.send(true);
    while connections.join_next().await.is_some() {}
    Ok(())
}

/// The bounds [`bounded_body`] puts on a request body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyBounds {
    /// The largest body, in bytes.
    pub limit: usize,
    /// Time to receive it whole.
    pub within: Duration,
}

/// Middleware (`axum::middleware::from_fn_with_state(bounds, bounded_body)`): reads the
/// request body whole, at most `bounds.limit` bytes within `bounds.within`, before the handler
/// runs, so no handler waits on a slow body or holds a large one. Answers
/// `{"error": message}` with 413 for a body over the limit, 408 for one that did not arrive in
/// time, 400 for one that broke off (a bad chunk, a closed connection). Nested, the outer
/// reads and the inner checks the size again: the smaller limit wins.
pub async fn bounded_body(
    State(bounds): State<BodyBounds>,
    request: Request,
    next: Next,
) -> Response {
    let (parts, body) = request.into_parts();
    if axum::body::HttpBody::is_end_stream(&body) {
        return next.run(Request::from_parts(parts, body)).await;
    }
    let read = Limited::new(body, bounds.limit).collect();
    let bytes = match tokio::time::timeout(bounds.within, read).await {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(e)) if e.is::<LengthLimitError>() => {
            let limit = match bounds.limit {
                n if n % 1024 == 0 => format!("{} KiB", n / 1024),
                n => format!("{n} bytes"),
            };
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the body is over {limit}"),
            );
        }
        Ok(Err(e)) => return error(StatusCode::BAD_REQUEST, format!("the body broke off: {e}")),
        Err(_) => {
            return error(
                StatusCode::REQUEST_TIMEOUT,
                format!("the body did not arrive within {:?}", bounds.within),
            )
        }
    };
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

fn error(status: StatusCode, message: String) -> Response {
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}
