//! Our errors as HTTP responses, for axum (and, through [`ErrorInfo`], any HTTP server).
//!
//! A request that went through a breaker, a retry, a failover set or a balancer can fail with
//! one of this project's errors, boxed into a [`BoxError`]. Every server then answers the
//! same question: which status, and when may the client come back? This module answers it
//! once, from the error itself (its `source()` chain included, so a wrapped error is found):
//!
//! | error | status | `Retry-After` | body |
//! | --- | --- | --- | --- |
//! | [`Open`](bulwark_circuit_breaker::Open) (circuit breaker) | 503 | its `retry_after`, in whole seconds rounded up; none while forced open | `error`, `retry_after_ms` when known |
//! | [`NoEndpointReady`](bulwark_balance::NoEndpointReady) (balancer) | 503 | its `retry_after` rounded up, else 1 s | `error`, `retry_after_ms` when known |
//! | [`NoTargetReady`](bulwark_failover::NoTargetReady) (failover) | 503 | its `retry_after` rounded up (the soonest probe when every target's circuit is open), else 1 s | `error`, `retry_after_ms` when known |
//! | [`AllFailed`](bulwark_failover::AllFailed) (failover) | 503 | 1 s | `error`: every target's failure |
//! | [`RateLimited`](bulwark_rate_limit::RateLimited) (rate limiter) | 503 | its `retry_after` (when the next token comes), rounded up | `error`, `retry_after_ms` |
//! | [`Full`](bulwark_bulkhead::Full) (bulkhead, adaptive limit) | 503 | none | `error` |
//! | [`DeadlineExceeded`](bulwark_core::DeadlineExceeded) (retry, failover), [`AttemptTimedOut`](bulwark_retry::AttemptTimedOut) (retry) | 504 | none | `error` |
//! | [`FanOutFailed`](bulwark_fanout::FanOutFailed) (fan-out) | 502 | none | `error`: every target's outcome |
//! | anything else | 502 | none | `error` |
//!
//! The body is JSON, `{"error": "<the error's message>", "retry_after_ms": N}`
//! (`application/json`), built without a JSON library. The message is the `Display` of the
//! error that decided the status (for an unknown error, of the top one; sources are not
//! appended).
//!
//! **Why 1 s when the error does not say.** A balancer with no ready endpoint and no
//! ejection ending, or a failover set with no ready target, has nothing that tells when a
//! target will be back (an open breaker in readiness mode does not say). The client is told
//! to come back after 1 s, the default `wait_for_ready` of both: about as long as this
//! request already waited for a target to become ready. An open breaker that is forced open
//! gets no `Retry-After` at all: only an operator can release it.
//!
//! **Why no `Retry-After` for a full bulkhead.** A permit frees up as soon as any call in
//! flight ends, usually within milliseconds, and nothing says which will end first. The header
//! counts whole seconds: any value would hold back clients far longer than the overload lasts,
//! and would send them back all at once. The 503 says "overloaded now"; the client's own
//! backoff decides when to come back.
//!
//! **Why 502 and not 500 for the rest.** These layers wrap the *outbound* side of a service:
//! an error that reaches the handler from them is a failure of an upstream (a refused
//! connection, a reset, a malformed answer), which is what 502 Bad Gateway says. A 500 would
//! blame the server's own code. Tower's own `timeout::error::Elapsed` is not recognized (that
//! would need tower's `timeout` feature): it is a 502 too, unless you map it first, or use
//! the retry layer's `attempt_timeout` and `deadline`, which are 504s.
//!
//! # In a `Router`
//!
//! Our layers return errors, and axum wants `Infallible` from a route: put
//! `HandleErrorLayer::new(handle_error)` outside them (`route_layer` or `layer`). A layer with
//! state (a breaker's window, a retry budget) is built when the `Router` applies its layers:
//! finish the router with `.with_state(..)` (or `into_make_service()`) after the last layer,
//! or an unfinalized `Router<()>` builds them again per request (through `oneshot`) or per
//! connection (through `axum::serve`), and a breaker there never sees enough calls to open.
//! Retrying an incoming request needs a body that can be sent again: axum's `Body` is not
//! `Clone`, so map the request with `bulwark_core::replay::replayable` first (feature
//! `http`). `tests/axum.rs` shows each of these.
//!
//! # Use
//!
//! * [`handle_error`] with axum's [`HandleErrorLayer`](::axum::error_handling::HandleErrorLayer)
//!   when a resilient stack is itself the route's service;
//! * [`BulwarkError`] as a handler's error type, so `?` on a call through the stack answers
//!   with the mapped response;
//! * [`error_response`] for a response from any error; [`classify_error`] for the decision
//!   alone ([`ErrorInfo`]: status, retry-after, message), to build your own body or to use
//!   with hyper directly.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use axum::{body::Body, error_handling::HandleErrorLayer, http::Request, Router};
//! use std::time::Duration;
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//! use tower_bulwark::circuit_breaker::Open;
//! use tower_bulwark::core::{BoxError, CircuitState};
//!
//! // A stack whose breaker is open (standing in for a real client stack).
//! let inventory = service_fn(|_: Request<Body>| async {
//!     Err::<axum::response::Response, BoxError>(Box::new(Open::new(
//!         CircuitState::Open,
//!         Some(Duration::from_millis(1500)),
//!     )))
//! });
//! let app = Router::new().route_service(
//!     "/stock",
//!     ServiceBuilder::new()
//!         .layer(HandleErrorLayer::new(tower_bulwark::axum::handle_error))
//!         .service(inventory),
//! );
//!
//! let res = app.oneshot(Request::get("/stock").body(Body::empty()).unwrap()).await.unwrap();
//! assert_eq!(res.status(), 503);
//! assert_eq!(res.headers()["retry-after"], "2");
//! assert_eq!(res.headers()["content-type"], "application/json");
//! # }
//! ```

use crate::meaning::{meaning, Meaning, MAX_DEPTH};
use ::axum::body::Body;
use ::axum::response::{IntoResponse, Response};
use bulwark_core::BoxError;
use http::header::{CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderValue, StatusCode};
use std::error::Error;
use std::fmt;
use std::time::Duration;

/// What an error means for an HTTP answer: the status, when the client may come back, and
/// the message. Made by [`classify_error`]; turned into a response by its
/// [`IntoResponse`] impl, or into a JSON body by [`ErrorInfo::to_json`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ErrorInfo {
    /// 503, 504 or 502 (see the module docs).
    pub status: StatusCode,
    /// When the client may try again, as the error says it (`retry_after_ms` in the body).
    pub retry_after: Option<Duration>,
    /// The `Retry-After` header, in whole seconds: `retry_after` rounded up, or 1 s for an
    /// unavailable service that does not say for how long; `None` for no header.
    pub retry_after_secs: Option<u64>,
    /// The message (`error` in the body): the `Display` of the error.
    pub message: String,
}

impl ErrorInfo {
    /// An answer with `status` and `message`, and no `Retry-After` (set the fields to add
    /// one): to map your own errors the same way.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ErrorInfo {
            status,
            retry_after: None,
            retry_after_secs: None,
            message: message.into(),
        }
    }

    /// A 503 whose `Retry-After` is `retry_after` rounded up to whole seconds, or
    /// `otherwise_secs` when it is not known.
    fn unavailable(
        err: &dyn fmt::Display,
        retry_after: Option<Duration>,
        otherwise_secs: Option<u64>,
    ) -> Self {
        ErrorInfo {
            status: StatusCode::SERVICE_UNAVAILABLE,
            retry_after,
            retry_after_secs: retry_after.map(ceil_secs).or(otherwise_secs),
            message: err.to_string(),
        }
    }

    /// The `Retry-After` header's value, if there should be one.
    pub fn retry_after_header(&self) -> Option<HeaderValue> {
        self.retry_after_secs.map(HeaderValue::from)
    }

    /// The JSON body: `{"error":"<message>","retry_after_ms":N}`, `retry_after_ms` (rounded
    /// up to whole milliseconds) only when `retry_after` is known.
    ///
    /// ```
    /// use http::StatusCode;
    /// use std::time::Duration;
    /// use tower_bulwark::axum::ErrorInfo;
    ///
    /// let mut info = ErrorInfo::new(StatusCode::SERVICE_UNAVAILABLE, "store \"b\" is down\n");
    /// assert_eq!(info.to_json(), r#"{"error":"store \"b\" is down\n"}"#);
    /// info.retry_after = Some(Duration::from_micros(1500));
    /// assert_eq!(info.to_json(), r#"{"error":"store \"b\" is down\n","retry_after_ms":2}"#);
    /// ```
    pub fn to_json(&self) -> String {
        let mut out = String::with_capacity(self.message.len() + 40);
        out.push_str("{\"error\":");
        push_json_string(&mut out, &self.message);
        if let Some(d) = self.retry_after {
            out.push_str(",\"retry_after_ms\":");
            out.push_str(&bulwark_core::deadline::millis_rounded_up(d).to_string());
        }
        out.push('}');
        out
    }
}

impl IntoResponse for ErrorInfo {
    /// The status, `Content-Type: application/json`, `Retry-After` when there is one, and
    /// the [`to_json`](ErrorInfo::to_json) body.
    fn into_response(self) -> Response {
        let mut res = Response::new(Body::from(self.to_json()));
        *res.status_mut() = self.status;
        let headers = res.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(v) = self.retry_after_header() {
            headers.insert(RETRY_AFTER, v);
        }
        res
    }
}

/// What `err` means for an HTTP answer (see the module docs for the table). The error and
/// then its `source()` chain are searched; the first of this project's errors found decides.
///
/// For a [`BoxError`] `e`, pass `&*e`.
///
/// ```
/// # #[cfg(feature = "circuit-breaker")]
/// # fn main() {
/// use http::StatusCode;
/// use std::time::Duration;
/// use tower_bulwark::axum::classify_error;
/// use tower_bulwark::circuit_breaker::Open;
/// use tower_bulwark::core::{BoxError, CircuitState};
///
/// let err: BoxError = Box::new(Open::new(CircuitState::Open, Some(Duration::from_millis(2001))));
/// let info = classify_error(&*err);
/// assert_eq!(info.status, StatusCode::SERVICE_UNAVAILABLE);
/// assert_eq!(info.retry_after, Some(Duration::from_millis(2001)));
/// assert_eq!(info.retry_after_secs, Some(3));
/// assert_eq!(info.message, "circuit open: calls suspended for 2001 ms");
/// # }
/// # #[cfg(not(feature = "circuit-breaker"))]
/// # fn main() {}
/// ```
pub fn classify_error(err: &(dyn Error + 'static)) -> ErrorInfo {
    let mut current = Some(err);
    for _ in 0..MAX_DEPTH {
        let Some(e) = current else { break };
        if let Some(info) = known(e) {
            return info;
        }
        current = e.source();
    }
    ErrorInfo::new(StatusCode::BAD_GATEWAY, err.to_string())
}

/// The answer for `e` itself, if it is one of this project's errors.
fn known(e: &(dyn Error + 'static)) -> Option<ErrorInfo> {
    Some(match meaning(e)? {
        // Come back when the error says, or after `otherwise` (none for a forced-open
        // breaker or a full bulkhead: see the module docs).
        Meaning::Unavailable {
            retry_after,
            otherwise,
        } => ErrorInfo::unavailable(e, retry_after, otherwise.map(ceil_secs)),
        // Nothing tells when a target will be back: as for no target ready.
        Meaning::AllFailed => ErrorInfo::unavailable(
            e,
            None,
            Some(ceil_secs(crate::meaning::DEFAULT_RETRY_AFTER)),
        ),
        Meaning::TimedOut => ErrorInfo::new(StatusCode::GATEWAY_TIMEOUT, e.to_string()),
        Meaning::FanOutFailed => ErrorInfo::new(StatusCode::BAD_GATEWAY, e.to_string()),
    })
}

/// The response for `err`: [`classify_error`], as a response. For a [`BoxError`] `e`, pass
/// `&*e`.
pub fn error_response(err: &(dyn Error + 'static)) -> Response {
    classify_error(err).into_response()
}

/// For axum's [`HandleErrorLayer`](::axum::error_handling::HandleErrorLayer): turns the
/// error of the service below into the mapped response.
///
/// ```
/// use axum::error_handling::HandleErrorLayer;
/// let layer = HandleErrorLayer::<_, ()>::new(tower_bulwark::axum::handle_error);
/// ```
pub async fn handle_error(err: BoxError) -> Response {
    error_response(&*err)
}

/// A handler's error type: `?` on a call through a resilient stack (a [`BoxError`]) answers
/// with the mapped response.
///
/// ```
/// # #[cfg(feature = "retry")]
/// # fn main() {
/// use axum::response::IntoResponse;
/// use std::time::Duration;
/// use tower_bulwark::axum::BulwarkError;
/// use tower_bulwark::core::BoxError;
///
/// async fn stock(result: Result<String, BoxError>) -> Result<String, BulwarkError> {
///     let answer = result?;
///     Ok(answer)
/// }
///
/// let err: BoxError = Box::new(tower_bulwark::retry::DeadlineExceeded {
///     deadline: Duration::from_secs(2),
///     attempts: 3,
/// });
/// let res = BulwarkError::from(err).into_response();
/// assert_eq!(res.status(), 504);
/// # let _ = stock;
/// # }
/// # #[cfg(not(feature = "retry"))]
/// # fn main() {}
/// ```
#[derive(Debug)]
pub struct BulwarkError(pub BoxError);

impl From<BoxError> for BulwarkError {
    fn from(err: BoxError) -> Self {
        BulwarkError(err)
    }
}

impl fmt::Display for BulwarkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl IntoResponse for BulwarkError {
    fn into_response(self) -> Response {
        error_response(&*self.0)
    }
}

/// Whole seconds, rounded up: 1 ms is 1 s (coming back early helps no one), zero stays 0.
fn ceil_secs(d: Duration) -> u64 {
    d.as_secs().saturating_add(u64::from(d.subsec_nanos() > 0))
}

/// Appends `s` as a JSON string: quotes, backslash and control characters escaped (`\b`,
/// `\f`, `\n`, `\r`, `\t`, the rest as `\u00XX`), everything else as it is (JSON is UTF-8):
/// the same bytes `serde_json` writes.
fn push_json_string(out: &mut String, s: &str) {
    out.push('"');
    let mut start = 0;
    for (i, c) in s.char_indices() {
        let escape = match c {
            '"' => "\\\"",
            '\\' => "\\\\",
            '\n' => "\\n",
            '\r' => "\\r",
            '\t' => "\\t",
            '\u{08}' => "\\b",
            '\u{0c}' => "\\f",
            c if c < '\u{20}' => "",
            _ => continue,
        };
        out.push_str(&s[start..i]);
        if escape.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            let b = c as u8;
            out.push_str("\\u00");
            out.push(HEX[usize::from(b >> 4)] as char);
            out.push(HEX[usize::from(b & 0xf)] as char);
        } else {
            out.push_str(escape);
        }
        start = i + c.len_utf8();
    }
    out.push_str(&s[start..]);
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(s: &str) -> String {
        let mut out = String::new();
        push_json_string(&mut out, s);
        out
    }

    #[test]
    fn escapes_quotes_backslashes_and_control_characters() {
        assert_eq!(json(""), r#""""#);
        assert_eq!(json("plain"), r#""plain""#);
        assert_eq!(json(r#"say "hi""#), r#""say \"hi\"""#);
        assert_eq!(json(r"C:\dir"), r#""C:\\dir""#);
        assert_eq!(json("a\nb\r\tc"), r#""a\nb\r\tc""#);
        assert_eq!(json("\u{08}\u{0c}"), r#""\b\f""#);
        assert_eq!(json("\u{0}\u{1}\u{1f}"), r#""\u0000\u0001\u001f""#);
        // Not control characters: kept as they are.
        assert_eq!(
            json("\u{7f} é ✓ 🦀 </script>"),
            "\"\u{7f} é ✓ 🦀 </script>\""
        );
    }

    #[test]
    fn rounds_retry_after_up_to_whole_seconds() {
        assert_eq!(ceil_secs(Duration::ZERO), 0);
        assert_eq!(ceil_secs(Duration::from_nanos(1)), 1);
        assert_eq!(ceil_secs(Duration::from_millis(999)), 1);
        assert_eq!(ceil_secs(Duration::from_secs(1)), 1);
        assert_eq!(ceil_secs(Duration::from_millis(1001)), 2);
        assert_eq!(ceil_secs(Duration::MAX), u64::MAX);
    }

    #[test]
    fn an_unknown_error_is_a_bad_gateway_without_retry_after() {
        let err = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let info = classify_error(&err);
        assert_eq!(info.status, StatusCode::BAD_GATEWAY);
        assert_eq!(info.retry_after_secs, None);
        assert_eq!(info.to_json(), r#"{"error":"refused"}"#);
    }
}
