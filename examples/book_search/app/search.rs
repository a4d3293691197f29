//! The search service: its routes, and how the outbound stacks' answers and errors become
//! the contract's HTTP answers.

use super::client::{Body, SendsRef};
use super::config::Config;
use super::outbound::Outbound;
use super::serve::{bounded_body, BodyBounds, Limits};
use super::store::{Book, Fault, FAULT_BODY_LIMIT};
use axum::body::Bytes;
use axum::extract::rejection::PathRejection;
use axum::extract::{DefaultBodyLimit, MatchedPath, Path, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use humantime_serde::re::humantime::{format_duration, parse_duration};
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::{json, Value};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tower::{Service, ServiceExt};
use tower_bulwark::circuit_breaker::{CircuitBreakerConfig, OpenPeriod, Window};
use tower_bulwark::core::{BoxError, CircuitState};
use tower_bulwark::fanout::{Outcomes, TargetResult};
use tower_bulwark::{balance, failover};

/// The largest `POST /book` body.
pub const MAX_BODY: usize = 64 * 1024;

/// What every handler shares.
#[derive(Clone, Debug)]
pub struct AppState {
    /// The settings in force.
    pub config: Arc<Config>,
    /// The outbound stacks and the layers' handles, shared: axum clones the state for every
    /// request, and each handler clones only the stack it calls.
    pub outbound: Arc<Outbound>,
    /// Renders the metrics recorder.
    pub metrics: PrometheusHandle,
    /// Whether `PUT /stores/{name}/fault` answers: the service listens on loopback, or was
    /// started with `--allow-chaos`. Otherwise it answers 403.
    pub chaos: bool,
    /// The bounds on each connection; handlers read bodies within its `body_read_timeout`.
    pub limits: Limits,
}

/// The search service's routes.
///
/// Every body is read whole before its handler runs, within `limits.body_read_timeout` (408
/// after) and up to 64 KiB (1 KiB for a fault; 413 over): see [`bounded_body`].
pub fn router(state: AppState) -> Router {
    let within = state.limits.body_read_timeout;
    let body = |limit| middleware::from_fn_with_state(BodyBounds { limit, within }, bounded_body);
    Router::new()
        .route("/book/{title}", get(get_book))
        .route("/book", post(post_book))
        .route("/stores", get(list_stores))
        .route(
            "/stores/{name}/fault",
            put(set_fault)
                .route_layer(body(FAULT_BODY_LIMIT))
                .route_layer(DefaultBodyLimit::max(FAULT_BODY_LIMIT)),
        )
        .route(
            "/stores/{name}/breaker",
            put(set_breaker)
                .route_layer(body(FAULT_BODY_LIMIT))
                .route_layer(DefaultBodyLimit::max(FAULT_BODY_LIMIT)),
        )
        .route("/metrics", get(render_metrics))
        .route("/health", get(|| async { Json(json!({"status": "ok"})) }))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such route") })
        .method_not_allowed_fallback(|| async {
            error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
        })
        .layer(body(MAX_BODY))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(middleware::from_fn(count_requests))
        .with_state(state)
}

/// `book_search_requests_total{route,status}`: the one count no layer keeps (the answers of
/// the search service itself). `route` is the matched route's template (`/book/{title}`), or
/// `unmatched`: a request's path never becomes a label value, so no client can grow the
/// number of series.
async fn count_requests(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| String::from("unmatched"), |p| p.as_str().to_string());
    let resp = next.run(req).await;
    metrics::counter!(
        "book_search_requests_total",
        "route" => route,
        "status" => resp.status().as_u16().to_string()
    )
    .increment(1);
    resp
}

/// `{"error": message}` with `status`.
pub fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

/// 503 `{"error","retry_after_ms"}` with a `Retry-After` header (whole seconds, rounded up).
fn unavailable(message: impl Into<String>, retry_after: Duration) -> Response {
    let ms = retry_after.as_millis() as u64;
    let mut resp = (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({ "error": message.into(), "retry_after_ms": ms })),
    )
        .into_response();
    let secs = ms.div_ceil(1000).max(1);
    resp.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    resp
}

/// Percent-encodes a title for a store's path (everything but RFC 3986's unreserved bytes).
pub fn encode_path_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A path parameter that is not valid percent-encoded UTF-8: 400 `{"error"}`.
fn bad_path(rejection: PathRejection) -> Response {
    error(StatusCode::BAD_REQUEST, rejection.body_text())
}

async fn get_book(
    State(state): State<AppState>,
    title: Result<Path<String>, PathRejection>,
) -> Response {
    let title = match title {
        Ok(Path(title)) => title,
        Err(rejection) => return bad_path(rejection),
    };
    if title.is_empty() {
        return error(StatusCode::BAD_REQUEST, "the title is empty");
    }
    let request = match http::Request::get(format!("/books/{}", encode_path_segment(&title)))
        .body(Body::default())
    {
        Ok(mut r) => {
            r.extensions_mut().insert(SendsRef::new(false));
            r
        }
        Err(_) => return error(StatusCode::BAD_REQUEST, "the title cannot be sent"),
    };
    // The stack waits, bounds the whole request by its deadline, and says why it could not
    // answer; this handler only maps what it returns.
    let mut read = state.outbound.read.clone();
    match async move { read.ready().await?.call(request).await }.await {
        Ok(resp) => {
            let status = resp.status();
            if status == StatusCode::OK {
                json_bytes(status, resp.into_body())
            } else if status == StatusCode::NOT_FOUND {
                error(StatusCode::NOT_FOUND, format!("no book titled {title:?}"))
            } else if state
                .config
                .attempt
                .failover_codes
                .contains(&status.as_u16())
            {
                unavailable(
                    format!("every store tried failed; the last answered {status}"),
                    Duration::from_secs(1),
                )
            } else {
                // Another status (a 500, say) is passed back as it came.
                let mut out = Response::new(axum::body::Body::from(resp.body().clone()));
                *out.status_mut() = status;
                if let Some(ct) = resp.headers().get(header::CONTENT_TYPE) {
                    out.headers_mut().insert(header::CONTENT_TYPE, ct.clone());
                }
                out
            }
        }
        Err(e) => read_error(&e),
    }
}

/// The read path's errors, as the layers gave them: no store ready (every circuit open, none
/// healthy, none ready in time) is 503 with the time to retry the layer gave, the deadline is
/// 504, and anything else means every store tried failed (503).
fn read_error(e: &BoxError) -> Response {
    let info = tower_bulwark::axum::classify_error(&**e);
    let retry_after = info.retry_after.unwrap_or(Duration::from_secs(1));
    match info.status {
        StatusCode::GATEWAY_TIMEOUT => error(StatusCode::GATEWAY_TIMEOUT, info.message),
        StatusCode::SERVICE_UNAVAILABLE => match why_unavailable(e) {
            Some(why) => unavailable(format!("{why} ({})", info.message), retry_after),
            None => unavailable(info.message, retry_after),
        },
        _ => unavailable(
            format!("every store tried failed; the last error: {}", info.message),
            Duration::from_secs(1),
        ),
    }
}

/// The reason the balancer or the failover gave for having no store ready, in the demo's
/// words.
fn why_unavailable(e: &BoxError) -> Option<&'static str> {
    const NONE_HEALTHY: &str = "no store is healthy";
    const ALL_OPEN: &str = "every store's circuit is open: calls to the stores are suspended";
    const NONE_READY: &str = "no store is ready";
    const ALL_FULL: &str = "every store is at its limit of requests in flight";
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(&**e);
    while let Some(err) = current {
        if let Some(e) = err.downcast_ref::<balance::NoEndpointReady>() {
            return Some(match e.reason {
                balance::Unavailable::NoneHealthy => NONE_HEALTHY,
                balance::Unavailable::CircuitsOpen => ALL_OPEN,
                balance::Unavailable::AllFull => ALL_FULL,
                _ => NONE_READY,
            });
        }
        if let Some(e) = err.downcast_ref::<failover::NoTargetReady>() {
            return Some(match e.reason {
                failover::Unavailable::NoneHealthy => NONE_HEALTHY,
                failover::Unavailable::CircuitsOpen => ALL_OPEN,
                failover::Unavailable::AllFull => ALL_FULL,
                _ => NONE_READY,
            });
        }
        current = err.source();
    }
    None
}

fn json_bytes(status: StatusCode, body: Bytes) -> Response {
    let mut resp = Response::new(axum::body::Body::from(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// Reads and checks a `POST /book` body: a JSON object with non-empty `title`, `author`,
/// `isbn` strings and a finite, non-negative `price`.
pub fn parse_new_book(body: &[u8]) -> Result<Book, String> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| format!("the body is not valid JSON: {e}"))?;
    let Value::Object(map) = value else {
        return Err(String::from("the body must be a JSON object"));
    };
    let text = |key: &str| -> Result<String, String> {
        match map.get(key) {
            None | Some(Value::Null) => Err(format!("the field {key:?} is missing")),
            Some(Value::String(s)) if s.trim().is_empty() => {
                Err(format!("the field {key:?} is empty"))
            }
            Some(Value::String(s)) => Ok(s.clone()),
            Some(_) => Err(format!("the field {key:?} must be a string")),
        }
    };
    let title = text("title")?;
    let author = text("author")?;
    let isbn = text("isbn")?;
    let price = match map.get("price") {
        None | Some(Value::Null) => return Err(String::from("the field \"price\" is missing")),
        Some(v) => v
            .as_f64()
            .filter(|p| p.is_finite() && *p >= 0.0)
            .ok_or_else(|| String::from("the field \"price\" must be a number >= 0"))?,
    };
    Ok(Book {
        title,
        author,
        isbn,
        price,
    })
}

async fn post_book(State(state): State<AppState>, body: axum::body::Body) -> Response {
    // Already read whole by `bounded_body`; the limit here is a second guard.
    let bytes = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(_) => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the body is over {} KiB", MAX_BODY / 1024),
            )
        }
    };
    let book = match parse_new_book(&bytes) {
        Ok(b) => b,
        Err(message) => return error(StatusCode::BAD_REQUEST, message),
    };
    let payload = match serde_json::to_vec(&book) {
        Ok(p) => p,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let sends = SendsRef::new(true);
    let request = http::Request::post("/books")
        .header(header::CONTENT_TYPE, "application/json")
        .extension(sends.clone())
        .body(Body::from(payload));
    let request = match request {
        Ok(r) => r,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let mut write = state.outbound.write.clone();
    let outcomes = match async move { write.ready().await?.call(request).await }.await {
        Ok(o) => o,
        Err(e) => return tower_bulwark::axum::error_response(&*e),
    };
    write_answer(&book.title, &outcomes, &sends)
}

fn write_answer(
    title: &str,
    outcomes: &Outcomes<super::client::Answer>,
    sends: &SendsRef,
) -> Response {
    if outcomes.met {
        let stored: Vec<&str> = outcomes
            .targets
            .iter()
            .filter(|t| t.result.is_success())
            .map(|t| outcomes.target_name(t.index))
            .collect();
        return (
            StatusCode::CREATED,
            Json(json!({ "title": title, "stored_in": stored })),
        )
            .into_response();
    }
    let stores: Vec<Value> = outcomes
        .targets
        .iter()
        .map(|t| {
            let outcome = match &t.result {
                TargetResult::Succeeded(_) => "stored",
                TargetResult::Failed(_) => "failed",
                TargetResult::Error(_) => "error",
                TargetResult::TimedOut => "timed_out",
                TargetResult::Cancelled => "cancelled",
                TargetResult::Background => "still_trying",
                _ => "unknown",
            };
            let last_status = sends.last_status(t.index);
            let mut entry = json!({
                "store": outcomes.target_name(t.index),
                "outcome": outcome,
                "attempts": sends.to_store(t.index),
                "last_status": last_status,
            });
            if let TargetResult::Error(e) = &t.result {
                entry["detail"] = Value::String(e.to_string());
            }
            entry
        })
        .collect();
    (
        StatusCode::BAD_GATEWAY,
        Json(json!({
            "error": format!(
                "{title:?} was stored by {} of {} stores",
                outcomes.successes(),
                outcomes.targets.len()
            ),
            "stores": stores,
        })),
    )
        .into_response()
}

fn circuit_name(state: CircuitState) -> &'static str {
    match state {
        CircuitState::Closed => "closed",
        CircuitState::HalfOpen => "half_open",
        _ => "open",
    }
}

/// One store in `GET /stores`: the contract's fields first, then what else the layers know.
#[derive(Debug, serde::Serialize)]
struct StoreEntry<'a> {
    name: &'a str,
    url: String,
    healthy: bool,
    circuit: &'static str,
    in_flight: u32,
    successes: u64,
    failures: u64,
    /// Requests a layer above dropped before the store answered (a hedge answered first, the
    /// deadline ran out): not counted as failures.
    cancelled: u64,
    /// How much longer the balancer keeps it ejected, if it does (strategy `balance`).
    ejected_for_ms: Option<u64>,
    /// Its peak-EWMA latency, as the balancer sees it (strategy `balance`).
    latency_ms: Option<f64>,
    /// Calls its open circuit turned away.
    rejected: u64,
    /// Its chaos setting.
    fault: Fault,
    /// Its circuit breaker's settings in force (`[circuit_breaker]`'s keys), as changed by
    /// `PUT /stores/{name}/breaker`; absent in strategy `bare`.
    #[serde(skip_serializing_if = "Option::is_none")]
    breaker: Option<Value>,
}

async fn list_stores(State(state): State<AppState>) -> Response {
    let stores: Vec<StoreEntry<'_>> = state
        .outbound
        .stores
        .iter()
        .map(|view| {
            let balancer = view.health.balancer_view();
            let breaker = view.breaker.as_ref().map(|b| b.metrics());
            StoreEntry {
                name: view.store.name(),
                url: view.store.url(),
                healthy: view.health.healthy(),
                circuit: circuit_name(breaker.as_ref().map_or(CircuitState::Closed, |b| b.state)),
                in_flight: view.stats.in_flight.load(Ordering::Relaxed),
                successes: view.stats.successes.load(Ordering::Relaxed),
                failures: view.stats.failures.load(Ordering::Relaxed),
                cancelled: view.stats.cancelled.load(Ordering::Relaxed),
                ejected_for_ms: balancer
                    .as_ref()
                    .and_then(|e| e.ejected_for)
                    .map(|d| d.as_millis() as u64),
                latency_ms: balancer.map(|e| e.latency.as_secs_f64() * 1000.0),
                rejected: breaker.map_or(0, |b| b.not_permitted),
                fault: view.store.fault(),
                breaker: view.breaker.as_ref().map(|b| breaker_settings(&b.config())),
            }
        })
        .collect();
    Json(stores).into_response()
}

/// The store a `PUT /stores/{name}/...` control names: 403 when the controls are off (the
/// service listens beyond loopback without `--allow-chaos`), 400 for a bad path, 404 for no
/// such store.
fn store_to_control<'a>(
    state: &'a AppState,
    name: Result<Path<String>, PathRejection>,
    controls: &str,
) -> Result<&'a super::outbound::StoreView, (StatusCode, String)> {
    if !state.chaos {
        return Err((
            StatusCode::FORBIDDEN,
            format!(
                "{controls} controls are off: the service listens beyond loopback (allow them \
                 with --allow-chaos)"
            ),
        ));
    }
    let name = match name {
        Ok(Path(name)) => name,
        Err(rejection) => return Err((StatusCode::BAD_REQUEST, rejection.body_text())),
    };
    state
        .outbound
        .stores
        .iter()
        .find(|v| v.store.name() == name)
        .ok_or_else(|| (StatusCode::NOT_FOUND, format!("no store named {name:?}")))
}

async fn set_fault(
    State(state): State<AppState>,
    name: Result<Path<String>, PathRejection>,
    body: Bytes,
) -> Response {
    let view = match store_to_control(&state, name, "chaos") {
        Ok(view) => view,
        Err((status, message)) => return error(status, message),
    };
    let fault = match Fault::parse(&body) {
        Ok(f) => f,
        Err(message) => return error(StatusCode::BAD_REQUEST, message),
    };
    match view.store.set_fault(fault.clone()).await {
        Ok(()) => (StatusCode::OK, Json(fault)).into_response(),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the fault could not be set: {e}"),
        ),
    }
}

/// The `[circuit_breaker]` keys that `PUT /stores/{name}/breaker` takes (`window` only at the
/// value in force: the breaker refuses a new one, naming it).
const BREAKER_KEYS: &str = "`failure_rate`, `min_calls`, `open`, `half_open_probes`";

/// A breaker's settings in force, under the keys of the `[circuit_breaker]` table.
fn breaker_settings(config: &CircuitBreakerConfig) -> Value {
    let window = match config.window {
        Window::Count { size } => json!(size),
        Window::Time { length, buckets } => {
            json!({ "length": format_duration(length).to_string(), "buckets": buckets })
        }
    };
    let open = match config.open {
        OpenPeriod::Fixed(period) => json!(format_duration(period).to_string()),
        other => json!(format!("{other:?}")),
    };
    json!({
        "failure_rate": config.failure_rate,
        "window": window,
        "min_calls": config.min_calls,
        "open": open,
        "half_open_probes": config.half_open_probes,
    })
}

/// Reads a `PUT /stores/{name}/breaker` body into a change of the settings: a JSON object of
/// some of the [`BREAKER_KEYS`] (and `window`); an error names the key at fault.
fn parse_breaker_change(body: &[u8]) -> Result<impl FnOnce(&mut CircuitBreakerConfig), String> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| format!("the body is not valid JSON: {e}"))?;
    let Value::Object(map) = value else {
        return Err(String::from("the body must be a JSON object"));
    };
    let count = |key: &str, v: &Value| -> Result<u32, String> {
        v.as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| format!("`{key}` must be a whole number from 0 to {}", u32::MAX))
    };
    let mut failure_rate = None;
    let mut min_calls = None;
    let mut open = None;
    let mut probes = None;
    let mut window = None;
    for (key, v) in &map {
        match key.as_str() {
            "failure_rate" => {
                failure_rate = Some(v.as_f64().ok_or("`failure_rate` must be a number")?);
            }
            "min_calls" => min_calls = Some(count(key, v)?),
            "half_open_probes" => probes = Some(count(key, v)?),
            "window" => window = Some(count(key, v)?),
            "open" => {
                let text = v
                    .as_str()
                    .ok_or("`open` must be a duration such as \"10s\"")?;
                let period = parse_duration(text)
                    .map_err(|e| format!("`open` must be a duration such as \"10s\": {e}"))?;
                open = Some(period);
            }
            other => {
                return Err(format!(
                    "unknown key `{other}`: the keys that can change are {BREAKER_KEYS}"
                ))
            }
        }
    }
    Ok(move |c: &mut CircuitBreakerConfig| {
        if let Some(rate) = failure_rate {
            c.failure_rate = rate;
        }
        if let Some(calls) = min_calls {
            c.min_calls = calls;
        }
        if let Some(period) = open {
            c.open = OpenPeriod::Fixed(period);
        }
        if let Some(n) = probes {
            c.half_open_probes = n;
        }
        if let Some(size) = window {
            c.window = Window::Count { size };
        }
    })
}

/// `PUT /stores/{name}/breaker`: changes the store's circuit breaker's thresholds while it
/// runs, through its handle, validated as the `[circuit_breaker]` table is; 200 with the
/// settings now in force.
async fn set_breaker(
    State(state): State<AppState>,
    name: Result<Path<String>, PathRejection>,
    body: Bytes,
) -> Response {
    let view = match store_to_control(&state, name, "admin") {
        Ok(view) => view,
        Err((status, message)) => return error(status, message),
    };
    let Some(breaker) = &view.breaker else {
        return error(
            StatusCode::NOT_FOUND,
            format!(
                "{} has no circuit breaker (strategy `bare`)",
                view.store.name()
            ),
        );
    };
    let change = match parse_breaker_change(&body) {
        Ok(change) => change,
        Err(message) => return error(StatusCode::BAD_REQUEST, message),
    };
    match breaker.update(change) {
        Ok(now) => (StatusCode::OK, Json(breaker_settings(&now))).into_response(),
        Err(e) => error(StatusCode::BAD_REQUEST, e.to_string()),
    }
}

/// `GET /metrics`: the recorder's text, after the gauges that come from the layers' handles
/// (circuit state, refusals) are read.
async fn render_metrics(State(state): State<AppState>) -> Response {
    for view in &state.outbound.stores {
        let name = view.store.name().to_string();
        // Strategy `bare` has no breaker: its circuits read closed, nothing refused.
        let (state, refused) = view
            .breaker
            .as_ref()
            .map_or((CircuitState::Closed, 0), |b| {
                let m = b.metrics();
                (m.state, m.not_permitted)
            });
        let code = match state {
            CircuitState::Closed => 0.0,
            CircuitState::HalfOpen => 1.0,
            _ => 2.0,
        };
        metrics::gauge!("bookstore_circuit_state", "store" => name.clone()).set(code);
        metrics::counter!("bookstore_rejected_total", "store" => name).absolute(refused);
    }
    state.metrics.run_upkeep();
    let mut resp = Response::new(axum::body::Body::from(state.metrics.render()));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    resp
}
