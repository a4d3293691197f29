//! The HTTP policy: retry what is safe to send twice, when the failure says it may help.

use crate::policy::{Decision, RetryPolicy};
use bulwark_core::replay::CanReplay;
use bulwark_core::{BoxError, GiveUpReason, StatusSet};
use http::header::{HeaderName, RETRY_AFTER};
use http::{HeaderMap, HeaderValue, Method, Request, Response};
use std::error::Error;
use std::time::{Duration, SystemTime};

/// The `Idempotency-Key` header: a request carrying it may be retried whatever its method.
pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

/// The longest `Retry-After` (or gRPC pushback) the policies honour unless told otherwise.
pub(crate) const DEFAULT_MAX_RETRY_AFTER: Duration = Duration::from_secs(30);

/// Retries HTTP requests that are safe to send twice when the failure is one a retry can fix.
///
/// * Requests: idempotent methods (GET, HEAD, OPTIONS, PUT, DELETE, TRACE), any method whose
///   request carries an `Idempotency-Key` header, and methods you opt in with
///   [`HttpRetryPolicy::retry_method`]; and only while the body can be sent again
///   ([`CanReplay`]: wrap streaming bodies in [`ReplayBody`](bulwark_core::replay::ReplayBody)).
/// * Failures: connection refused, reset or aborted (found anywhere in the error's source
///   chain), and the statuses 429, 502, 503 and 504 (configurable). Other statuses, 500
///   included, are answers: a 500 usually means the request itself broke the server.
/// * `Retry-After` (seconds or an HTTP date) on a retryable response replaces the backoff's
///   delay, up to [`HttpRetryPolicy::max_retry_after`] (default 30 s); a longer one means no
///   retry.
///
/// ```
/// use bulwark_retry::{Decision, HttpRetryPolicy, RetryPolicy};
/// use http::{Method, Request, Response};
///
/// let policy = HttpRetryPolicy::new();
/// let get = Request::get("/book/dune").body(String::new()).unwrap();
/// let post = Request::post("/book").body(String::from("{}")).unwrap();
/// assert!(RetryPolicy::<_, Response<()>, std::io::Error>::may_resend(&policy, &get));
/// assert!(!RetryPolicy::<_, Response<()>, std::io::Error>::may_resend(&policy, &post));
///
/// let busy: Result<Response<()>, std::io::Error> = Ok(Response::builder()
///     .status(503)
///     .header("retry-after", "2")
///     .body(())
///     .unwrap());
/// let d = RetryPolicy::<Request<String>, _, _>::decide(&policy, &busy);
/// assert_eq!(d, Decision::RetryAfter(std::time::Duration::from_secs(2)));
/// ```
#[derive(Debug, Clone)]
pub struct HttpRetryPolicy {
    statuses: StatusSet,
    methods: Vec<Method>,
    max_retry_after: Duration,
}

impl Default for HttpRetryPolicy {
    fn default() -> Self {
        Self::new()
    }
}

impl HttpRetryPolicy {
    /// The defaults above.
    pub fn new() -> Self {
        HttpRetryPolicy {
            statuses: StatusSet::empty().with(429).with(502).with(503).with(504),
            methods: Vec::new(),
            max_retry_after: DEFAULT_MAX_RETRY_AFTER,
        }
    }

    /// Replaces the retryable statuses.
    pub fn retry_statuses(mut self, statuses: StatusSet) -> Self {
        self.statuses = statuses;
        self
    }

    /// Also retries requests with `method` (for a POST you know to be idempotent).
    pub fn retry_method(mut self, method: Method) -> Self {
        if !self.methods.contains(&method) {
            self.methods.push(method);
        }
        self
    }

    /// The longest `Retry-After` honoured; a longer one means no retry (default 30 s).
    pub fn max_retry_after(mut self, cap: Duration) -> Self {
        self.max_retry_after = cap;
        self
    }

    /// The retryable statuses.
    pub fn statuses(&self) -> &StatusSet {
        &self.statuses
    }

    fn method_allowed(&self, method: &Method, headers: &HeaderMap) -> bool {
        matches!(
            *method,
            Method::GET
                | Method::HEAD
                | Method::OPTIONS
                | Method::PUT
                | Method::DELETE
                | Method::TRACE
        ) || headers.contains_key(IDEMPOTENCY_KEY)
            || self.methods.contains(method)
    }

    fn decide_response<B>(&self, resp: &Response<B>) -> Decision {
        if !self.statuses.contains(resp.status().as_u16()) {
            return Decision::Accept;
        }
        match resp
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| parse_retry_after(v, SystemTime::now()))
        {
            Some(wait) if wait > self.max_retry_after => {
                Decision::GiveUp(GiveUpReason::RetryAfterTooLong)
            }
            Some(wait) => Decision::RetryAfter(wait),
            None => Decision::Retry,
        }
    }
}

/// Errors whose source chain the HTTP policy can search for connection failures.
///
/// Implemented for [`BoxError`] (what tower stacks, this project's layers included, return),
/// [`std::io::Error`] and [`std::convert::Infallible`]; implement it for your client's error
/// type, or map its errors into `BoxError`.
pub trait AsError {
    /// The error as a `dyn Error`, to walk its sources.
    fn as_error(&self) -> &(dyn Error + 'static);
}

impl AsError for BoxError {
    fn as_error(&self) -> &(dyn Error + 'static) {
        &**self
    }
}

impl AsError for std::io::Error {
    fn as_error(&self) -> &(dyn Error + 'static) {
        self
    }
}

impl AsError for std::convert::Infallible {
    fn as_error(&self) -> &(dyn Error + 'static) {
        match *self {}
    }
}

/// Whether an error (or any error in its source chain) is a refused, reset or aborted
/// connection: a failure that happened before the server could act on the request.
pub fn is_connection_failure(error: &(dyn Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind::*;
            if matches!(
                io.kind(),
                ConnectionRefused | ConnectionReset | ConnectionAborted | NotConnected | BrokenPipe
            ) {
                return true;
            }
        }
        current = e.source();
    }
    false
}

/// Parses a `Retry-After` value: delay-seconds, or an HTTP date (taken relative to `now`; a
/// date in the past means "now"). `None` for anything else: a malformed header is ignored.
///
/// ```
/// use bulwark_retry::parse_retry_after;
/// use http::HeaderValue;
/// use std::time::{Duration, SystemTime, UNIX_EPOCH};
///
/// let now = UNIX_EPOCH + Duration::from_secs(1_445_412_480); // Wed, 21 Oct 2015 07:28:00 GMT
/// assert_eq!(parse_retry_after(&HeaderValue::from_static("120"), now), Some(Duration::from_secs(120)));
/// let date = HeaderValue::from_static("Wed, 21 Oct 2015 07:28:30 GMT");
/// assert_eq!(parse_retry_after(&date, now), Some(Duration::from_secs(30)));
/// assert_eq!(parse_retry_after(&HeaderValue::from_static("soon"), now), None);
/// ```
pub fn parse_retry_after(value: &HeaderValue, now: SystemTime) -> Option<Duration> {
    let text = value.to_str().ok()?.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        // Delay-seconds; absurdly long values saturate (and then exceed any cap).
        return Some(Duration::from_secs(text.parse::<u64>().unwrap_or(u64::MAX)));
    }
    let at = httpdate::parse_http_date(text).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

impl<B, RB, E> RetryPolicy<Request<B>, Response<RB>, E> for HttpRetryPolicy
where
    B: CanReplay,
    E: AsError,
{
    #[inline]
    fn decide(&self, result: &Result<Response<RB>, E>) -> Decision {
        match result {
            Ok(resp) => self.decide_response(resp),
            Err(e) if is_connection_failure(e.as_error()) => Decision::Retry,
            Err(_) => Decision::GiveUp(GiveUpReason::NotRetryable),
        }
    }

    fn may_resend(&self, request: &Request<B>) -> bool {
        self.method_allowed(request.method(), request.headers()) && request.can_replay()
    }

    fn prepare(&self, request: &mut Request<B>) {
        use bulwark_core::attempts::{HttpAttempts, RequestAttempts};
        HttpAttempts.ensure(request);
    }

    fn attempts<'r>(
        &self,
        request: &'r Request<B>,
    ) -> Option<&'r bulwark_core::attempts::Attempts> {
        request.extensions().get()
    }
}
