//! The gRPC policy: retry the statuses that say "try again", as the server allows.

use crate::http::{is_connection_failure, AsError, DEFAULT_MAX_RETRY_AFTER};
use crate::policy::{Decision, RetryPolicy};
use bulwark_core::replay::CanReplay;
use bulwark_core::{GiveUpReason, GrpcClassifier, GrpcCodeSet, Outcome};
use http::header::HeaderName;
use http::{HeaderValue, Request, Response};
use std::time::Duration;

/// The `grpc-retry-pushback-ms` header: the server's say on whether, and when, to retry.
pub const GRPC_RETRY_PUSHBACK_MS: HeaderName = HeaderName::from_static("grpc-retry-pushback-ms");

/// What a `grpc-retry-pushback-ms` value asks of the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushback {
    /// Retry after this long (instead of the backoff's delay).
    After(Duration),
    /// Do not retry: the value was negative, or not an integer.
    Stop,
}

/// Parses a `grpc-retry-pushback-ms` value as gRPC's retry design (A6) reads it: a
/// non-negative decimal integer is a delay in milliseconds; a negative value (any value with
/// a sign), or anything that is not an integer, means "do not retry". Surrounding spaces are allowed; a value too
/// large for a `u64` saturates (and then exceeds any cap). Never allocates, never panics.
///
/// ```
/// use bulwark_retry::{parse_pushback, Pushback};
/// use http::HeaderValue;
/// use std::time::Duration;
///
/// assert_eq!(parse_pushback(&HeaderValue::from_static("250")), Pushback::After(Duration::from_millis(250)));
/// assert_eq!(parse_pushback(&HeaderValue::from_static("-1")), Pushback::Stop);
/// assert_eq!(parse_pushback(&HeaderValue::from_static("soon")), Pushback::Stop);
/// ```
pub fn parse_pushback(value: &HeaderValue) -> Pushback {
    let text = value.as_bytes().trim_ascii();
    if text.is_empty() || !text.iter().all(u8::is_ascii_digit) {
        // Empty, negative ("-5"), signed ("+5"), fractional or not a number at all.
        return Pushback::Stop;
    }
    let mut ms: u64 = 0;
    for d in text {
        ms = ms.saturating_mul(10).saturating_add(u64::from(d - b'0'));
    }
    Pushback::After(Duration::from_millis(ms))
}

/// Retries gRPC calls that failed in a way a retry can fix, as far as the server allows.
///
/// * Failures: the codes of its [`GrpcClassifier`] (UNAVAILABLE, DEADLINE_EXCEEDED,
///   RESOURCE_EXHAUSTED and INTERNAL by default; narrow them with
///   [`GrpcRetryPolicy::retry_codes`]), and connection refused, reset or aborted (found
///   anywhere in the error's source chain), as [`HttpRetryPolicy`](crate::HttpRetryPolicy)
///   does. Other errors, and every other code, are returned as they are.
/// * `grpc-retry-pushback-ms` on a retryable response: a non-negative value replaces the
///   backoff's delay, up to [`GrpcRetryPolicy::max_retry_after`] (default 30 s, like the
///   HTTP policy's cap on `Retry-After`; a longer one means no retry,
///   [`GiveUpReason::RetryAfterTooLong`]); a negative or malformed one means no retry
///   ([`GiveUpReason::Pushback`]).
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
        }
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

    fn decide_response<B>(&self, resp: &Response<B>) -> Decision {
        if self.classifier.classify_response(resp) != Outcome::Failure {
            return Decision::Accept;
        }
        match resp
            .headers()
            .get(GRPC_RETRY_PUSHBACK_MS)
            .map(parse_pushback)
        {
            None => Decision::Retry,
            Some(Pushback::Stop) => Decision::GiveUp(GiveUpReason::Pushback),
            Some(Pushback::After(wait)) if wait > self.max_retry_after => {
                Decision::GiveUp(GiveUpReason::RetryAfterTooLong)
            }
            Some(Pushback::After(wait)) => Decision::RetryAfter(wait),
        }
    }
}

impl<B, RB, E> RetryPolicy<Request<B>, Response<RB>, E> for GrpcRetryPolicy
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
        request.can_replay()
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn pushback_parsing_never_panics(raw in proptest::collection::vec(any::<u8>(), 0..32)) {
            // Not every byte string is a valid header value; those that are must parse.
            if let Ok(value) = HeaderValue::from_bytes(&raw) {
                let parsed = parse_pushback(&value);
                let digits = raw.trim_ascii();
                if !digits.is_empty() && digits.iter().all(u8::is_ascii_digit) {
                    prop_assert!(matches!(parsed, Pushback::After(_)));
                } else {
                    prop_assert_eq!(parsed, Pushback::Stop);
                }
            }
        }

        #[test]
        fn non_negative_integers_are_delays(ms in any::<u64>()) {
            let value = HeaderValue::from_str(&ms.to_string()).unwrap();
            prop_assert_eq!(parse_pushback(&value), Pushback::After(Duration::from_millis(ms)));
        }

        #[test]
        fn negative_integers_stop(ms in i64::MIN..0) {
            let value = HeaderValue::from_str(&ms.to_string()).unwrap();
            prop_assert_eq!(parse_pushback(&value), Pushback::Stop);
        }
    }

    #[test]
    fn odd_values() {
        let p = |s: &'static str| parse_pushback(&HeaderValue::from_static(s));
        assert_eq!(p(""), Pushback::Stop);
        assert_eq!(p("+5"), Pushback::Stop);
        assert_eq!(p("1.5"), Pushback::Stop);
        assert_eq!(p("-0"), Pushback::Stop);
        assert_eq!(p(" 7 "), Pushback::After(Duration::from_millis(7)));
        assert_eq!(p("0"), Pushback::After(Duration::ZERO));
        assert_eq!(
            p("99999999999999999999999"),
            Pushback::After(Duration::from_millis(u64::MAX))
        );
    }
}
