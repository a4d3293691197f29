//! The HTTP policy: retry what is safe to send twice, when the failure says it may help.

use crate::policy::{Decision, RetryPolicy};
use bulwark_core::attempts::{Attempts, HttpResend, RequestAttempts};
use bulwark_core::deadline::millis_rounded_up;
use bulwark_core::pushback::{is_connection_failure, AsError};
use bulwark_core::replay::CanReplay;
use bulwark_core::{Classify, GiveUpReason, HttpClassifier, StatusSet};
use http::{HeaderName, HeaderValue, Method, Request, Response};
use std::time::Duration;

/// The longest `Retry-After` (or gRPC pushback) the policies honour unless told otherwise.
pub(crate) const DEFAULT_MAX_RETRY_AFTER: Duration = Duration::from_secs(30);

/// Retries HTTP requests that are safe to send twice when the failure is one a retry can fix.
///
/// * Requests: idempotent methods (GET, HEAD, OPTIONS, PUT, DELETE, TRACE), any method whose
///   request carries an `Idempotency-Key` header, and methods you opt in with
///   [`HttpRetryPolicy::retry_method`]; and only while the body can be sent again
///   ([`CanReplay`]: wrap streaming bodies in [`ReplayBody`](bulwark_core::replay::ReplayBody)).
/// * Failures: a connection refused, reset, aborted, not connected or broken (a broken pipe),
///   found anywhere in the error's source chain, and the statuses 429, 502, 503 and 504 (configurable). Other statuses, 500
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
    classifier: HttpClassifier,
    requests: HttpResend,
    max_retry_after: Duration,
    deadline_header: Option<HeaderName>,
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
            classifier: HttpClassifier::new()
                .resend_statuses(StatusSet::empty().with(429).with(502).with(503).with(504)),
            requests: HttpResend::idempotent(),
            max_retry_after: DEFAULT_MAX_RETRY_AFTER,
            deadline_header: None,
        }
    }

    /// Propagates deadlines in `header`, as whole milliseconds (rounded up): a request that
    /// carries it has its attempts ended by then, and every attempt goes out with the time
    /// it has left (the earlier of the deadline and the attempt timeout). HTTP has no
    /// standard header for it; Envoy's `x-envoy-expected-rq-timeout-ms` is one such. Off by
    /// default.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// use bulwark_retry::{BackoffRetryLayer, HttpRetryPolicy};
    /// use http::HeaderName;
    /// use std::time::Duration;
    /// use tower::{service_fn, Layer, Service, ServiceExt};
    ///
    /// const TIMEOUT_MS: HeaderName = HeaderName::from_static("x-request-timeout-ms");
    /// let server = service_fn(|req: http::Request<String>| async move {
    ///     let left = req.headers()[TIMEOUT_MS].to_str().unwrap().to_owned();
    ///     Ok::<_, std::io::Error>(http::Response::new(left))
    /// });
    /// let mut client = BackoffRetryLayer::builder()
    ///     .attempt_timeout(Duration::from_secs(2))
    ///     .policy(HttpRetryPolicy::new().deadline_header(TIMEOUT_MS))
    ///     .build()
    ///     .unwrap()
    ///     .layer(server);
    /// // The caller allows 500 ms: that, not the 2 s attempt timeout, is what the server is told.
    /// let request = http::Request::get("/book/dune")
    ///     .header(TIMEOUT_MS, "500")
    ///     .body(String::new())
    ///     .unwrap();
    /// let resp = client.ready().await.unwrap().call(request).await.unwrap();
    /// assert_eq!(resp.body(), "500");
    /// # }
    /// ```
    pub fn deadline_header(mut self, header: HeaderName) -> Self {
        self.deadline_header = Some(header);
        self
    }

    /// Retries what `classifier` says may be sent again
    /// ([`HttpClassifier::resend_statuses`]): give it the classifier your breaker and
    /// balancer use, so a stack declares its idea of failure once.
    pub fn classifier(mut self, classifier: HttpClassifier) -> Self {
        self.classifier = classifier;
        self
    }

    /// Replaces the retryable statuses.
    pub fn retry_statuses(mut self, statuses: StatusSet) -> Self {
        self.classifier = self.classifier.resend_statuses(statuses);
        self
    }

    /// Also retries requests with `method` (for a POST you know to be idempotent).
    pub fn retry_method(mut self, method: Method) -> Self {
        self.requests = self.requests.method(method);
        self
    }

    /// The longest `Retry-After` honoured; a longer one means no retry (default 30 s).
    pub fn max_retry_after(mut self, cap: Duration) -> Self {
        self.max_retry_after = cap;
        self
    }

    /// The retryable statuses.
    pub fn statuses(&self) -> &StatusSet {
        self.classifier.resent_statuses()
    }
}

/// The decision of the HTTP and gRPC policies: the classifier's [`Classify::resend`], with a
/// server's wait capped at `max_retry_after`; of the errors, only those that happened before
/// the server could act on the request (a refused or reset connection) are retried.
#[inline]
pub(crate) fn decide_over<C, Res, E>(
    classifier: &C,
    result: &Result<Res, E>,
    max_retry_after: Duration,
) -> Decision
where
    C: Classify<Res, E>,
    E: AsError,
{
    match result {
        Err(e) if !is_connection_failure(e.as_error()) => {
            Decision::GiveUp(GiveUpReason::NotRetryable)
        }
        _ => classifier.resend(result).capped(max_retry_after),
    }
}

impl<B, RB, E> RetryPolicy<Request<B>, Response<RB>, E> for HttpRetryPolicy
where
    B: CanReplay,
    E: AsError,
{
    #[inline]
    fn decide(&self, result: &Result<Response<RB>, E>) -> Decision {
        decide_over(&self.classifier, result, self.max_retry_after)
    }

    fn may_resend(&self, request: &Request<B>) -> bool {
        self.requests.may_resend(request)
    }

    fn prepare(&self, request: &mut Request<B>) {
        self.requests.ensure(request);
    }

    fn attempts<'r>(&self, request: &'r Request<B>) -> Option<&'r Attempts> {
        RequestAttempts::attempts(&self.requests, request)
    }

    fn time_limit(&self, request: &Request<B>) -> Option<Duration> {
        let header = self.deadline_header.as_ref()?;
        request.headers().get(header).and_then(parse_millis)
    }

    fn set_time_left(&self, request: &mut Request<B>, left: Duration) {
        if let Some(header) = &self.deadline_header {
            request
                .headers_mut()
                .insert(header.clone(), HeaderValue::from(millis_rounded_up(left)));
        }
    }
}

/// A header value of whole milliseconds (digits only), as [`HttpRetryPolicy::deadline_header`]
/// reads it.
pub(crate) fn parse_millis(value: &HeaderValue) -> Option<Duration> {
    match bulwark_core::pushback::parse_pushback(value) {
        bulwark_core::pushback::Pushback::After(d) => Some(d),
        _ => None,
    }
}
