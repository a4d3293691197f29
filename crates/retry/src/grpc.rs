//! The gRPC policy: retry the statuses that say "try again", as the server allows.

use crate::http::{decide_over, DEFAULT_MAX_RETRY_AFTER};
use crate::policy::{Decision, RetryPolicy};
use bulwark_core::attempts::{Attempts, HttpAttempts, RequestAttempts};
use bulwark_core::deadline::{grpc_timeout, parse_grpc_timeout, GRPC_TIMEOUT};
use bulwark_core::pushback::AsError;
use bulwark_core::replay::CanReplay;
use bulwark_core::{GrpcClassifier, GrpcCodeSet};
use http::{Request, Response};
use std::time::Duration;

/// Retries gRPC calls that failed in a way a retry can fix, as far as the server allows.
///
/// * Failures: the codes of its [`GrpcClassifier`] (UNAVAILABLE, DEADLINE_EXCEEDED,
///   RESOURCE_EXHAUSTED and INTERNAL by default; narrow them with
///   [`GrpcRetryPolicy::retry_codes`]), and a connection refused, reset, aborted, not
///   connected or broken (found anywhere in the error's source chain), as [`HttpRetryPolicy`](crate::HttpRetryPolicy)
///   does. Other errors, and every other code, are returned as they are.
/// * `grpc-retry-pushback-ms` on a retryable response: a non-negative value replaces the
///   backoff's delay, up to [`GrpcRetryPolicy::max_retry_after`] (default 30 s, like the
///   HTTP policy's cap on `Retry-After`; a longer one means no retry,
///   [`GiveUpReason::RetryAfterTooLong`](crate::GiveUpReason::RetryAfterTooLong)); a negative or malformed one means no retry
///   ([`GiveUpReason::Pushback`](crate::GiveUpReason::Pushback)).
/// * Requests: any method (gRPC has no idempotency marker: every call is a POST), but only
///   while the body can be sent again ([`CanReplay`]). Tonic's request body cannot be
///   cloned: wrap it with [`replayable`](bulwark_core::replay::replayable) above the retry
///   layer.
///
/// The policy sees the response *head*: a status (or pushback) sent in the headers of a
/// Trailers-Only response, which is how servers answer an error that comes without a message.
/// A status sent in trailers after messages is past retrying: see
/// [`bulwark_core::grpc`].
///
/// **Deadlines.** A `grpc-timeout` on the request (tonic's `Request::set_timeout` writes
/// one) bounds the layer's deadline, and every attempt goes out with a `grpc-timeout` of the
/// time it has left (the earlier of the deadline and the attempt timeout), so the server
/// stops working on an attempt the client no longer waits for. Turn it off with
/// [`GrpcRetryPolicy::propagate_deadline`].
///
/// The default codes include DEADLINE_EXCEEDED and INTERNAL, which a server may return after
/// it has acted on the request. For methods that are not safe to run twice, retry only
/// UNAVAILABLE (which gRPC's retry design calls safe: the request was not processed):
/// `GrpcRetryPolicy::new().retry_codes(GrpcCodeSet::empty().with(GrpcCode::Unavailable))`.
///
/// ```
/// use bulwark_retry::{Decision, GrpcRetryPolicy, RetryPolicy};
/// use http::{Request, Response};
/// use std::time::Duration;
///
/// let policy = GrpcRetryPolicy::new();
/// let answer = |status: &str, pushback: Option<&str>| -> Result<Response<()>, std::io::Error> {
///     let mut resp = Response::builder().header("grpc-status", status);
///     if let Some(ms) = pushback {
///         resp = resp.header("grpc-retry-pushback-ms", ms);
///     }
///     Ok(resp.body(()).unwrap())
/// };
/// let decide = |r| RetryPolicy::<Request<String>, _, _>::decide(&policy, &r);
/// assert_eq!(decide(answer("14", None)), Decision::Retry); // UNAVAILABLE
/// assert_eq!(decide(answer("14", Some("50"))), Decision::RetryAfter(Duration::from_millis(50)));
/// assert!(matches!(decide(answer("14", Some("-1"))), Decision::GiveUp(_)));
/// assert_eq!(decide(answer("5", None)), Decision::Accept); // NOT_FOUND is an answer
/// ```
#[derive(Debug, Clone, Copy)]
pub struct GrpcRetryPolicy {
    classifier: GrpcClassifier,
    max_retry_after: Duration,
    propagate_deadline: bool,
}

impl Default for GrpcRetryPolicy {
    fn default() -> Self {
        Self::new()
    }
}

impl GrpcRetryPolicy {
    /// The defaults above.
    pub const fn new() -> Self {
        GrpcRetryPolicy {
            classifier: GrpcClassifier::new(),
            max_retry_after: DEFAULT_MAX_RETRY_AFTER,
            propagate_deadline: true,
        }
    }

    /// Whether a request's `grpc-timeout` bounds the deadline and each attempt carries its
    /// time left as `grpc-timeout` (default true).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// use bulwark_retry::{BackoffRetryLayer, GrpcRetryPolicy};
    /// use std::time::Duration;
    /// use tower::{service_fn, Layer, Service, ServiceExt};
    ///
    /// // A server that reports the time it was given.
    /// let server = service_fn(|req: http::Request<String>| async move {
    ///     let timeout = req.headers()["grpc-timeout"].clone();
    ///     Ok::<_, std::io::Error>(http::Response::builder()
    ///         .header("grpc-status", "0")
    ///         .header("seen-timeout", timeout)
    ///         .body(())
    ///         .unwrap())
    /// });
    /// let mut client = BackoffRetryLayer::builder()
    ///     .deadline(Duration::from_millis(300))
    ///     .policy(GrpcRetryPolicy::new())
    ///     .build()
    ///     .unwrap()
    ///     .layer(server);
    /// let request = http::Request::post("/books.Store/Get").body(String::new()).unwrap();
    /// let resp = client.ready().await.unwrap().call(request).await.unwrap();
    /// assert_eq!(resp.headers()["seen-timeout"], "300000u");
    /// # }
    /// ```
    pub const fn propagate_deadline(mut self, propagate: bool) -> Self {
        self.propagate_deadline = propagate;
        self
    }

    /// Retries what `classifier` calls a failure (share the one your breaker and balancer
    /// use, so the layers agree).
    pub const fn classifier(mut self, classifier: GrpcClassifier) -> Self {
        self.classifier = classifier;
        self
    }

    /// Replaces the retryable codes (the classifier's failure set).
    pub const fn retry_codes(mut self, codes: GrpcCodeSet) -> Self {
        self.classifier = self.classifier.failures(codes);
        self
    }

    /// The longest pushback honoured; a longer one means no retry (default 30 s).
    pub const fn max_retry_after(mut self, cap: Duration) -> Self {
        self.max_retry_after = cap;
        self
    }

    /// The retryable codes.
    pub const fn codes(&self) -> &GrpcCodeSet {
        self.classifier.failure_codes()
    }
}

impl<B, RB, E> RetryPolicy<Request<B>, Response<RB>, E> for GrpcRetryPolicy
where
    B: CanReplay,
    E: AsError,
{
    #[inline]
    fn decide(&self, result: &Result<Response<RB>, E>) -> Decision {
        decide_over(&self.classifier, result, self.max_retry_after)
    }

    fn may_resend(&self, request: &Request<B>) -> bool {
        request.can_replay()
    }

    fn prepare(&self, request: &mut Request<B>) {
        HttpAttempts.ensure(request);
    }

    fn attempts<'r>(&self, request: &'r Request<B>) -> Option<&'r Attempts> {
        HttpAttempts.attempts(request)
    }

    fn time_limit(&self, request: &Request<B>) -> Option<Duration> {
        if !self.propagate_deadline {
            return None;
        }
        request
            .headers()
            .get(GRPC_TIMEOUT)
            .and_then(parse_grpc_timeout)
    }

    fn set_time_left(&self, request: &mut Request<B>, left: Duration) {
        if self.propagate_deadline {
            request
                .headers_mut()
                .insert(GRPC_TIMEOUT, grpc_timeout(left));
        }
    }
}
