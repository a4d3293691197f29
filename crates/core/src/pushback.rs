//! What a server says about when to come back: `Retry-After` (HTTP) and
//! `grpc-retry-pushback-ms` (gRPC), read into one [`Pushback`], and turned into one
//! [`Decision`] by [`Pushback::decision`].
//!
//! The classifiers read the header that belongs to their protocol
//! ([`HttpClassifier`](crate::HttpClassifier) `Retry-After`,
//! [`GrpcClassifier`](crate::GrpcClassifier) `grpc-retry-pushback-ms`); every layer that
//! resends (retry, failover) then sees the same `Decision`, and caps a server's wait in one
//! place, [`Decision::capped`](crate::classify::Decision::capped).
//!
//! ```
//! use bulwark_core::classify::Decision;
//! use bulwark_core::pushback::{parse_pushback, parse_retry_after, Pushback};
//! use http::HeaderValue;
//! use std::time::{Duration, SystemTime};
//!
//! let http = parse_retry_after(&HeaderValue::from_static("2"), SystemTime::now());
//! let grpc = parse_pushback(&HeaderValue::from_static("2000"));
//! assert_eq!(http, Some(Pushback::After(Duration::from_secs(2))));
//! assert_eq!(http, Some(grpc));
//! assert_eq!(grpc.decision(), Decision::RetryAfter(Duration::from_secs(2)));
//! assert_eq!(parse_pushback(&HeaderValue::from_static("-1")).decision().resends(), false);
//! ```

use crate::classify::Decision;
use crate::event::GiveUpReason;
use crate::BoxError;
use http::header::HeaderName;
use http::HeaderValue;
use std::error::Error;
use std::time::{Duration, SystemTime};

/// The `grpc-retry-pushback-ms` header: the server's say on whether, and when, to retry.
pub const GRPC_RETRY_PUSHBACK_MS: HeaderName = HeaderName::from_static("grpc-retry-pushback-ms");

/// What a server asked of a client that would send the request again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushback {
    /// Send again after this long (instead of the backoff's delay).
    After(Duration),
    /// Do not send again (gRPC: a negative or malformed pushback).
    Stop,
}

impl Pushback {
    /// The decision this pushback asks for: [`Decision::RetryAfter`] or
    /// [`Decision::GiveUp`]`(`[`GiveUpReason::Pushback`]`)`.
    pub const fn decision(self) -> Decision {
        match self {
            Pushback::After(wait) => Decision::RetryAfter(wait),
            Pushback::Stop => Decision::GiveUp(GiveUpReason::Pushback),
        }
    }
}

/// Parses a `Retry-After` value: delay-seconds, or an HTTP date (taken relative to `now`; a
/// date in the past means "now"). `None` for anything else: a malformed header is ignored.
///
/// ```
/// use bulwark_core::pushback::{parse_retry_after, Pushback};
/// use http::HeaderValue;
/// use std::time::{Duration, SystemTime, UNIX_EPOCH};
///
/// let now = UNIX_EPOCH + Duration::from_secs(1_445_412_480); // Wed, 21 Oct 2015 07:28:00 GMT
/// let after = |s| parse_retry_after(&HeaderValue::from_static(s), now);
/// assert_eq!(after("120"), Some(Pushback::After(Duration::from_secs(120))));
/// assert_eq!(after("Wed, 21 Oct 2015 07:28:30 GMT"), Some(Pushback::After(Duration::from_secs(30))));
/// assert_eq!(after("soon"), None);
/// ```
pub fn parse_retry_after(value: &HeaderValue, now: SystemTime) -> Option<Pushback> {
    let text = value.to_str().ok()?.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        // Delay-seconds; absurdly long values saturate (and then exceed any cap).
        let secs = text.parse::<u64>().unwrap_or(u64::MAX);
        return Some(Pushback::After(Duration::from_secs(secs)));
    }
    let at = httpdate::parse_http_date(text).ok()?;
    Some(Pushback::After(
        at.duration_since(now).unwrap_or(Duration::ZERO),
    ))
}

/// Parses a `grpc-retry-pushback-ms` value as gRPC's retry design (A6) reads it: a
/// non-negative decimal integer is a delay in milliseconds; a negative value (any value with
/// a sign), or anything that is not an integer, means "do not retry". Surrounding spaces are
/// allowed; a value too large for a `u64` saturates (and then exceeds any cap). Never
/// allocates, never panics.
///
/// ```
/// use bulwark_core::pushback::{parse_pushback, Pushback};
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

/// Errors whose source chain can be searched (for a refused connection, say).
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

/// Whether an error (or any error in its source chain) is a refused, reset, aborted, not
/// connected or broken connection (`BrokenPipe`): a failure of the connection itself. A
/// refused one happened before the server saw the request; the others may come after it
/// did, which is why the retry policies resend only what is safe to send again.
///
/// ```
/// use bulwark_core::pushback::is_connection_failure;
/// let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
/// assert!(is_connection_failure(&refused));
/// assert!(!is_connection_failure(&std::io::Error::other("bad reply")));
/// ```
pub fn is_connection_failure(error: &(dyn Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(e) = current {
        if is_connection_error(e) {
            return true;
        }
        current = e.source();
    }
    false
}

/// [`is_connection_failure`] for `error` alone, not its sources: for a caller that walks the
/// chain itself and must stop at the first error that decides (a backend's own status above
/// a refused connection, say).
///
/// ```
/// use bulwark_core::pushback::is_connection_error;
/// let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
/// assert!(is_connection_error(&reset));
/// ```
pub fn is_connection_error(error: &(dyn Error + 'static)) -> bool {
    use std::io::ErrorKind::*;
    error.downcast_ref::<std::io::Error>().is_some_and(|io| {
        matches!(
            io.kind(),
            ConnectionRefused | ConnectionReset | ConnectionAborted | NotConnected | BrokenPipe
        )
    })
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
