//! gRPC classification: the call's `grpc-status`, not its HTTP status, says how it went.
//!
//! A gRPC server answers almost every call with HTTP 200, failures included: the outcome is
//! the `grpc-status` code, sent either in the response headers (a *Trailers-Only* response,
//! which is how servers answer an error that has no message to send: tonic, grpc-go and
//! grpc-java all do for a unary call whose handler fails) or in the trailers, after the
//! response messages. So an [`HttpClassifier`](crate::HttpClassifier) would call every
//! failed gRPC call a success. [`GrpcClassifier`] reads `grpc-status` instead.
//!
//! # What each layer can see
//!
//! A [`Classify`] is handed the `Result` when the response *head* arrives, before any
//! message of the body: that is when the circuit breaker records, the retry layer decides and
//! the balancer counts. At that moment:
//!
//! | the server answered | at the head | classified as |
//! | --- | --- | --- |
//! | an error with no message (Trailers-Only: `grpc-status` in the headers) | the code | by the code sets |
//! | a non-200 HTTP status without `grpc-status` (a proxy, a load balancer) | the code gRPC maps it to ([`GrpcCode::from_http_status`]) | by the code sets |
//! | 200 without `grpc-status`: messages, then the status in the trailers | nothing yet | [`Outcome::Success`] |
//! | a transport error (`Err`) | the error | [`Outcome::Failure`] |
//!
//! The third row is every successful call, and also a call that fails *after* sending
//! messages (a server-streaming call that breaks half-way; rarely a unary call). Breaker,
//! retry and balancer count such a call as a success: they do not wait for the body. For
//! retry this is inherent, not a limitation of this module: once messages have reached the
//! caller, the call cannot be sent again transparently. For breaker and balancer it means
//! failures that only appear in trailers are not counted.
//!
//! To see those statuses, wrap the response body in a [`GrpcBody`] (with
//! [`GrpcBody::wrap_response`]): it passes every frame through unchanged and calls a function
//! of yours once with the call's final [`Outcome`], from the trailers
//! ([`GrpcClassifier::classify_trailers`]), for your own metrics, logs or listener. It does
//! not feed the layers above: they have already classified the head.
//!
//! # Parsing
//!
//! `grpc-status` is parsed from the header's bytes without allocating
//! ([`GrpcCode::from_bytes`]). A malformed value, or a number outside 0..=16, is
//! [`GrpcCode::Unknown`] (as tonic's client reads it), which is **not** in the default failure set, so
//! a malformed status counts as an answer. Add `Unknown` to the failure set to count it.
//!
//! # Example
//!
//! ```
//! use bulwark_core::{Classify, GrpcClassifier, GrpcCode, GrpcCodeSet, Outcome};
//!
//! let trailers_only = |code: &str| -> Result<http::Response<()>, std::io::Error> {
//!     Ok(http::Response::builder().header("grpc-status", code).body(()).unwrap())
//! };
//! let c = GrpcClassifier::new();
//! assert_eq!(c.classify(&trailers_only("14")), Outcome::Failure); // UNAVAILABLE
//! assert_eq!(c.classify(&trailers_only("5")), Outcome::Success); // NOT_FOUND: an answer
//!
//! // A 200 whose status is still to come in the trailers is a success at the head...
//! let streaming: Result<_, std::io::Error> = Ok(http::Response::new(()));
//! assert_eq!(c.classify(&streaming), Outcome::Success);
//! // ...and the trailers, once they arrive, are classified the same way.
//! let mut trailers = http::HeaderMap::new();
//! trailers.insert("grpc-status", http::HeaderValue::from_static("4"));
//! assert_eq!(c.classify_trailers(&trailers), Outcome::Failure); // DEADLINE_EXCEEDED
//!
//! // Only UNAVAILABLE is a failure; PERMISSION_DENIED says nothing about the server.
//! let c = GrpcClassifier::new()
//!     .failures(GrpcCodeSet::empty().with(GrpcCode::Unavailable))
//!     .ignore(GrpcCodeSet::empty().with(GrpcCode::PermissionDenied));
//! assert_eq!(c.classify(&trailers_only("13")), Outcome::Success); // INTERNAL
//! assert_eq!(c.classify(&trailers_only("7")), Outcome::Ignored);
//! ```

use crate::classify::{Classify, Outcome};
use http::header::HeaderName;
use http::{HeaderMap, HeaderValue, StatusCode};
use http_body::{Body, Frame, SizeHint};
use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

/// The `grpc-status` header (or trailer).
pub const GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");

/// A gRPC status code (0..=16), as defined by the gRPC protocol.
///
/// ```
/// use bulwark_core::GrpcCode;
///
/// assert_eq!(GrpcCode::from_bytes(b"14"), GrpcCode::Unavailable);
/// assert_eq!(GrpcCode::from_bytes(b"oops"), GrpcCode::Unknown);
/// assert_eq!(GrpcCode::Unavailable.as_u8(), 14);
/// assert_eq!(GrpcCode::Unavailable.to_string(), "UNAVAILABLE");
/// assert_eq!(GrpcCode::from_name("deadline_exceeded"), Some(GrpcCode::DeadlineExceeded));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum GrpcCode {
    /// 0: not an error.
    Ok = 0,
    /// 1: cancelled, typically by the caller.
    Cancelled = 1,
    /// 2: unknown error (also what a malformed or out-of-range status is read as).
    Unknown = 2,
    /// 3: the client sent an invalid argument.
    InvalidArgument = 3,
    /// 4: the deadline expired before the operation could complete.
    DeadlineExceeded = 4,
    /// 5: a requested entity was not found.
    NotFound = 5,
    /// 6: the entity the client tried to create already exists.
    AlreadyExists = 6,
    /// 7: the caller may not execute this operation.
    PermissionDenied = 7,
    /// 8: a resource (a quota, the file system) is exhausted.
    ResourceExhausted = 8,
    /// 9: the system is not in a state the operation requires.
    FailedPrecondition = 9,
    /// 10: the operation was aborted (a concurrency conflict).
    Aborted = 10,
    /// 11: the operation was attempted past the valid range.
    OutOfRange = 11,
    /// 12: the operation is not implemented or supported.
    Unimplemented = 12,
    /// 13: an internal error.
    Internal = 13,
    /// 14: the service is currently unavailable (most likely transient).
    Unavailable = 14,
    /// 15: unrecoverable data loss or corruption.
    DataLoss = 15,
    /// 16: the request lacks valid authentication credentials.
    Unauthenticated = 16,
}

impl GrpcCode {
    /// Every code, in numeric order.
    pub const ALL: [GrpcCode; 17] = [
        GrpcCode::Ok,
        GrpcCode::Cancelled,
        GrpcCode::Unknown,
        GrpcCode::InvalidArgument,
        GrpcCode::DeadlineExceeded,
        GrpcCode::NotFound,
        GrpcCode::AlreadyExists,
        GrpcCode::PermissionDenied,
        GrpcCode::ResourceExhausted,
        GrpcCode::FailedPrecondition,
        GrpcCode::Aborted,
        GrpcCode::OutOfRange,
        GrpcCode::Unimplemented,
        GrpcCode::Internal,
        GrpcCode::Unavailable,
        GrpcCode::DataLoss,
        GrpcCode::Unauthenticated,
    ];

    /// The code numbered `code`, or `None` outside 0..=16.
    pub const fn from_u32(code: u32) -> Option<GrpcCode> {
        if code <= 16 {
            Some(Self::ALL[code as usize])
        } else {
            None
        }
    }

    /// The code's number.
    pub const fn as_u8(self) -> u8 {
        self as u8
    }

    /// The code's canonical name: `OK`, `UNAVAILABLE`, `DEADLINE_EXCEEDED`, ...
    pub const fn as_str(self) -> &'static str {
        match self {
            GrpcCode::Ok => "OK",
            GrpcCode::Cancelled => "CANCELLED",
            GrpcCode::Unknown => "UNKNOWN",
            GrpcCode::InvalidArgument => "INVALID_ARGUMENT",
            GrpcCode::DeadlineExceeded => "DEADLINE_EXCEEDED",
            GrpcCode::NotFound => "NOT_FOUND",
            GrpcCode::AlreadyExists => "ALREADY_EXISTS",
            GrpcCode::PermissionDenied => "PERMISSION_DENIED",
            GrpcCode::ResourceExhausted => "RESOURCE_EXHAUSTED",
            GrpcCode::FailedPrecondition => "FAILED_PRECONDITION",
            GrpcCode::Aborted => "ABORTED",
            GrpcCode::OutOfRange => "OUT_OF_RANGE",
            GrpcCode::Unimplemented => "UNIMPLEMENTED",
            GrpcCode::Internal => "INTERNAL",
            GrpcCode::Unavailable => "UNAVAILABLE",
            GrpcCode::DataLoss => "DATA_LOSS",
            GrpcCode::Unauthenticated => "UNAUTHENTICATED",
        }
    }

    /// The code with this canonical name, in any case (`UNAVAILABLE`, `unavailable`).
    pub fn from_name(name: &str) -> Option<GrpcCode> {
        Self::ALL
            .into_iter()
            .find(|code| code.as_str().eq_ignore_ascii_case(name))
    }

    /// Reads a `grpc-status` value: the decimal number of a code, `0` to `16`, written as the
    /// protocol writes it. Anything else (spaces, leading zeros, signs, a larger number, not a
    /// number) is [`GrpcCode::Unknown`], as tonic's client reads it. Never allocates, never
    /// panics.
    pub fn from_bytes(value: &[u8]) -> GrpcCode {
        let n = match *value {
            [d @ b'0'..=b'9'] => d - b'0',
            [b'1', d @ b'0'..=b'6'] => 10 + (d - b'0'),
            _ => return GrpcCode::Unknown,
        };
        Self::ALL[n as usize]
    }

    /// Reads a `grpc-status` header value (see [`GrpcCode::from_bytes`]).
    pub fn from_header(value: &HeaderValue) -> GrpcCode {
        Self::from_bytes(value.as_bytes())
    }

    /// The `grpc-status` in `headers` (response headers or trailers), if there is one.
    pub fn from_headers(headers: &HeaderMap) -> Option<GrpcCode> {
        headers.get(GRPC_STATUS).map(Self::from_header)
    }

    /// The code a gRPC client reports for an HTTP response that carries no `grpc-status`,
    /// as the gRPC protocol maps it: 400 INTERNAL, 401 UNAUTHENTICATED, 403
    /// PERMISSION_DENIED, 404 UNIMPLEMENTED, 429/502/503/504 UNAVAILABLE, any other UNKNOWN.
    /// `None` for 200, whose status is still to come, in the trailers.
    ///
    /// ```
    /// use bulwark_core::GrpcCode;
    /// use http::StatusCode;
    /// assert_eq!(GrpcCode::from_http_status(StatusCode::SERVICE_UNAVAILABLE), Some(GrpcCode::Unavailable));
    /// assert_eq!(GrpcCode::from_http_status(StatusCode::INTERNAL_SERVER_ERROR), Some(GrpcCode::Unknown));
    /// assert_eq!(GrpcCode::from_http_status(StatusCode::OK), None);
    /// ```
    pub fn from_http_status(status: StatusCode) -> Option<GrpcCode> {
        Some(match status.as_u16() {
            200 => return None,
            400 => GrpcCode::Internal,
            401 => GrpcCode::Unauthenticated,
            403 => GrpcCode::PermissionDenied,
            404 => GrpcCode::Unimplemented,
            429 | 502 | 503 | 504 => GrpcCode::Unavailable,
            _ => GrpcCode::Unknown,
        })
    }

    /// What a response head says the call's status is: its `grpc-status` header (a
    /// Trailers-Only response) if it has one, else the code its HTTP status maps to
    /// ([`GrpcCode::from_http_status`]); `None` for a 200 without `grpc-status`, whose status
    /// comes in the trailers.
    pub fn from_response<B>(response: &http::Response<B>) -> Option<GrpcCode> {
        match Self::from_headers(response.headers()) {
            Some(code) => Some(code),
            None => Self::from_http_status(response.status()),
        }
    }
}

impl fmt::Display for GrpcCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(feature = "serde")]
#[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
impl<'de> serde::Deserialize<'de> for GrpcCode {
    /// A code by canonical name (`"UNAVAILABLE"`, any case) or by number (`14`).
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct CodeVisitor;

        impl serde::de::Visitor<'_> for CodeVisitor {
            type Value = GrpcCode;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a gRPC status code: a name such as \"UNAVAILABLE\", or 0..=16")
            }

            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<GrpcCode, E> {
                u32::try_from(v)
                    .ok()
                    .and_then(GrpcCode::from_u32)
                    .ok_or_else(|| E::custom(format!("{v} is not a gRPC status code (0..=16)")))
            }

            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<GrpcCode, E> {
                match u64::try_from(v) {
                    Ok(v) => self.visit_u64(v),
                    Err(_) => Err(E::custom(format!("{v} is not a gRPC status code (0..=16)"))),
                }
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<GrpcCode, E> {
                GrpcCode::from_name(v)
                    .ok_or_else(|| E::custom(format!("{v:?} is not a gRPC status code name")))
            }
        }

        d.deserialize_any(CodeVisitor)
    }
}

/// A set of gRPC status codes, stored as one bitmask: `contains` is a shift and a mask, and
/// the set never allocates.
///
/// ```
/// use bulwark_core::{GrpcCode, GrpcCodeSet};
///
/// let set = GrpcCodeSet::default_failures().without(GrpcCode::Internal);
/// assert!(set.contains(GrpcCode::Unavailable));
/// assert!(!set.contains(GrpcCode::Internal) && !set.contains(GrpcCode::NotFound));
/// let names: Vec<_> = set.iter().map(|c| c.as_str()).collect();
/// assert_eq!(names, ["DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED", "UNAVAILABLE"]);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct GrpcCodeSet {
    bits: u32,
}

impl GrpcCodeSet {
    /// The empty set.
    pub const fn empty() -> Self {
        GrpcCodeSet { bits: 0 }
    }

    /// The codes that say the server (not the request) is in trouble: UNAVAILABLE,
    /// DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED and INTERNAL. The [`GrpcClassifier`]'s default
    /// failures.
    pub const fn default_failures() -> Self {
        Self::empty()
            .with(GrpcCode::Unavailable)
            .with(GrpcCode::DeadlineExceeded)
            .with(GrpcCode::ResourceExhausted)
            .with(GrpcCode::Internal)
    }

    /// This set with `code` added.
    pub const fn with(self, code: GrpcCode) -> Self {
        GrpcCodeSet {
            bits: self.bits | 1 << code as u32,
        }
    }

    /// This set without `code`.
    pub const fn without(self, code: GrpcCode) -> Self {
        GrpcCodeSet {
            bits: self.bits & !(1 << code as u32),
        }
    }

    /// Whether `code` is in the set.
    #[inline]
    pub const fn contains(&self, code: GrpcCode) -> bool {
        self.bits & (1 << code as u32) != 0
    }

    /// Whether the set is empty.
    pub const fn is_empty(&self) -> bool {
        self.bits == 0
    }

    /// The codes in the set, in numeric order.
    pub fn iter(&self) -> impl Iterator<Item = GrpcCode> + '_ {
        GrpcCode::ALL.into_iter().filter(move |c| self.contains(*c))
    }
}

impl Default for GrpcCodeSet {
    /// The default set is [`GrpcCodeSet::default_failures`].
    fn default() -> Self {
        Self::default_failures()
    }
}

impl fmt::Debug for GrpcCodeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

impl FromIterator<GrpcCode> for GrpcCodeSet {
    fn from_iter<I: IntoIterator<Item = GrpcCode>>(iter: I) -> Self {
        iter.into_iter().fold(Self::empty(), Self::with)
    }
}

#[cfg(feature = "serde")]
#[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
impl<'de> serde::Deserialize<'de> for GrpcCodeSet {
    /// A list of codes, each by name or number: `["UNAVAILABLE", 4]`.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let codes = <Vec<GrpcCode> as serde::Deserialize>::deserialize(d)?;
        Ok(codes.into_iter().collect())
    }
}

/// Classifies gRPC responses by their `grpc-status`: an `Err` is a failure; a code in the
/// failure set (UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED and INTERNAL by default) is
/// a failure; a code in the ignored set (empty by default) is ignored; any other code (OK,
/// NOT_FOUND, INVALID_ARGUMENT, ...: answers) is a success.
///
/// At the response head the code is the `grpc-status` header, else the code the HTTP status
/// maps to, else (a 200 whose status comes in the trailers) there is none yet and the call is
/// a success: see the [module docs](self) for what that means for each layer, and
/// [`GrpcClassifier::classify_trailers`] and [`GrpcBody`] for the trailers.
///
/// Classifying reads one header and allocates nothing.
///
/// ```
/// use bulwark_core::{Classify, GrpcClassifier, Outcome};
///
/// let c = GrpcClassifier::new();
/// let proxy_503: Result<_, std::io::Error> =
///     Ok(http::Response::builder().status(503).body(()).unwrap());
/// assert_eq!(c.classify(&proxy_503), Outcome::Failure); // maps to UNAVAILABLE
/// let reset: Result<http::Response<()>, _> = Err(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
/// assert_eq!(c.classify(&reset), Outcome::Failure);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GrpcClassifier {
    failures: GrpcCodeSet,
    ignored: GrpcCodeSet,
}

impl GrpcClassifier {
    /// Errors and UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED and INTERNAL are
    /// failures; nothing is ignored.
    pub const fn new() -> Self {
        GrpcClassifier {
            failures: GrpcCodeSet::default_failures(),
            ignored: GrpcCodeSet::empty(),
        }
    }

    /// Replaces the set of codes counted as failures.
    pub const fn failures(mut self, codes: GrpcCodeSet) -> Self {
        self.failures = codes;
        self
    }

    /// Replaces the set of codes that are neither success nor failure. A code in both sets is
    /// ignored.
    pub const fn ignore(mut self, codes: GrpcCodeSet) -> Self {
        self.ignored = codes;
        self
    }

    /// The failure codes.
    pub const fn failure_codes(&self) -> &GrpcCodeSet {
        &self.failures
    }

    /// The ignored codes.
    pub const fn ignored_codes(&self) -> &GrpcCodeSet {
        &self.ignored
    }

    /// Classifies a code alone.
    #[inline]
    pub const fn classify_code(&self, code: GrpcCode) -> Outcome {
        if self.ignored.contains(code) {
            Outcome::Ignored
        } else if self.failures.contains(code) {
            Outcome::Failure
        } else {
            Outcome::Success
        }
    }

    /// Classifies a response head (see [`GrpcCode::from_response`]): a 200 without
    /// `grpc-status` is a success, its status being still to come in the trailers.
    #[inline]
    pub fn classify_response<B>(&self, response: &http::Response<B>) -> Outcome {
        match GrpcCode::from_response(response) {
            Some(code) => self.classify_code(code),
            None => Outcome::Success,
        }
    }

    /// Classifies a call by its trailers: their `grpc-status`, or [`GrpcCode::Unknown`] when
    /// they have none (a protocol violation, read as tonic reads it).
    pub fn classify_trailers(&self, trailers: &HeaderMap) -> Outcome {
        self.classify_code(GrpcCode::from_headers(trailers).unwrap_or(GrpcCode::Unknown))
    }
}

impl Default for GrpcClassifier {
    fn default() -> Self {
        Self::new()
    }
}

impl<B, E> Classify<http::Response<B>, E> for GrpcClassifier {
    #[inline]
    fn classify(&self, result: &Result<http::Response<B>, E>) -> Outcome {
        match result {
            Ok(response) => self.classify_response(response),
            Err(_) => Outcome::Failure,
        }
    }

    /// A failure is sent again; a `grpc-retry-pushback-ms` on it says when, or that it must
    /// not be ([`Pushback`](crate::pushback::Pushback)).
    #[inline]
    fn resend(&self, result: &Result<http::Response<B>, E>) -> crate::Decision {
        use crate::pushback::{parse_pushback, GRPC_RETRY_PUSHBACK_MS};
        match result {
            Ok(response) if self.classify_response(response) != Outcome::Failure => {
                crate::Decision::Accept
            }
            Ok(response) => match response.headers().get(GRPC_RETRY_PUSHBACK_MS) {
                Some(value) => parse_pushback(value).decision(),
                None => crate::Decision::Retry,
            },
            Err(_) => crate::Decision::Retry,
        }
    }
}

pin_project_lite::pin_project! {
    /// A response body that reports the call's final [`Outcome`] once it is known: from the
    /// trailers' `grpc-status` when the body ends with trailers, or at once for a response
    /// whose head already carried the status.
    ///
    /// Every frame passes through unchanged. `on_end` is called at most once:
    ///
    /// * at once, by [`GrpcBody::wrap_response`], when the head decides (a Trailers-Only
    ///   response, or a non-200 HTTP status);
    /// * else with [`GrpcClassifier::classify_trailers`] of the trailers frame;
    /// * with [`Outcome::Failure`] when the body yields an error;
    /// * with the classification of [`GrpcCode::Unknown`] when the body ends without trailers
    ///   (a protocol violation);
    /// * never, when the body is dropped before its end (the caller stopped reading: nothing
    ///   is known about the call).
    ///
    /// This is for your own accounting (metrics, logs, a listener). The breaker, retry and
    /// balancer classify at the response head, before the body is read, and do not see what
    /// this reports: see the [module docs](self).
    ///
    /// ```
    /// use bulwark_core::grpc::GrpcBody;
    /// use bulwark_core::{GrpcClassifier, Outcome};
    /// use bytes::Bytes;
    /// use http_body::Frame;
    /// use http_body_util::{BodyExt, StreamBody};
    /// use std::sync::{Arc, Mutex};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// // A server-streaming call that sends a message, then fails with UNAVAILABLE.
    /// let mut trailers = http::HeaderMap::new();
    /// trailers.insert("grpc-status", http::HeaderValue::from_static("14"));
    /// let frames = vec![
    ///     Ok::<_, std::io::Error>(Frame::data(Bytes::from_static(b"\0\0\0\0\0"))),
    ///     Ok(Frame::trailers(trailers)),
    /// ];
    /// let response = http::Response::new(StreamBody::new(futures_util::stream::iter(frames)));
    ///
    /// let seen = Arc::new(Mutex::new(None));
    /// let report = seen.clone();
    /// let response = GrpcBody::wrap_response(response, GrpcClassifier::new(), move |outcome| {
    ///     *report.lock().unwrap() = Some(outcome);
    /// });
    /// assert_eq!(*seen.lock().unwrap(), None); // the head said nothing yet
    /// let _ = response.into_body().collect().await.unwrap();
    /// assert_eq!(*seen.lock().unwrap(), Some(Outcome::Failure));
    /// # }
    /// ```
    pub struct GrpcBody<B, F> {
        #[pin]
        inner: B,
        classifier: GrpcClassifier,
        on_end: Option<F>,
    }
}

impl<B, F> GrpcBody<B, F>
where
    F: FnOnce(Outcome),
{
    /// Wraps a body whose status is to come in its trailers.
    pub fn new(inner: B, classifier: GrpcClassifier, on_end: F) -> Self {
        GrpcBody {
            inner,
            classifier,
            on_end: Some(on_end),
        }
    }

    /// Wraps a response's body. When the head already decides (a `grpc-status` header, or a
    /// non-200 HTTP status), `on_end` is called at once with that outcome and the body only
    /// passes frames through; otherwise it is called when the body ends.
    pub fn wrap_response(
        response: http::Response<B>,
        classifier: GrpcClassifier,
        on_end: F,
    ) -> http::Response<Self> {
        let (parts, inner) = response.into_parts();
        let mut on_end = Some(on_end);
        if let Some(code) = GrpcCode::from_headers(&parts.headers)
            .or_else(|| GrpcCode::from_http_status(parts.status))
        {
            if let Some(f) = on_end.take() {
                f(classifier.classify_code(code));
            }
        }
        http::Response::from_parts(
            parts,
            GrpcBody {
                inner,
                classifier,
                on_end,
            },
        )
    }

    /// The wrapped body.
    pub fn into_inner(self) -> B {
        self.inner
    }
}

impl<B, F> fmt::Debug for GrpcBody<B, F>
where
    B: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GrpcBody")
            .field("inner", &self.inner)
            .field("classifier", &self.classifier)
            .field("reported", &self.on_end.is_none())
            .finish()
    }
}

impl<B, F> Body for GrpcBody<B, F>
where
    B: Body,
    F: FnOnce(Outcome),
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        let outcome = match &polled {
            Poll::Pending => return polled,
            Poll::Ready(Some(Ok(frame))) => match frame.trailers_ref() {
                Some(trailers) => this.classifier.classify_trailers(trailers),
                None => return polled,
            },
            Poll::Ready(Some(Err(_))) => Outcome::Failure,
            Poll::Ready(None) => this.classifier.classify_code(GrpcCode::Unknown),
        };
        if let Some(f) = this.on_end.take() {
            f(outcome);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn head(code: Option<&str>, status: u16) -> Result<http::Response<()>, ()> {
        let mut b = http::Response::builder().status(status);
        if let Some(code) = code {
            b = b.header("grpc-status", code);
        }
        Ok(b.body(()).unwrap())
    }

    #[test]
    fn default_failures_and_answers() {
        let c = GrpcClassifier::new();
        for code in ["4", "8", "13", "14"] {
            assert_eq!(
                c.classify(&head(Some(code), 200)),
                Outcome::Failure,
                "{code}"
            );
        }
        for code in [
            "0", "1", "2", "3", "5", "6", "7", "9", "10", "11", "12", "15", "16",
        ] {
            assert_eq!(
                c.classify(&head(Some(code), 200)),
                Outcome::Success,
                "{code}"
            );
        }
        assert_eq!(
            c.classify(&Err::<http::Response<()>, _>(())),
            Outcome::Failure
        );
    }

    #[test]
    fn without_grpc_status_the_http_status_is_mapped() {
        let c = GrpcClassifier::new();
        assert_eq!(c.classify(&head(None, 200)), Outcome::Success);
        for status in [400, 429, 502, 503, 504] {
            assert_eq!(
                c.classify(&head(None, status)),
                Outcome::Failure,
                "{status}"
            );
        }
        // 404 is UNIMPLEMENTED, 500 UNKNOWN, 401/403 auth: answers by default.
        for status in [401, 403, 404, 500] {
            assert_eq!(
                c.classify(&head(None, status)),
                Outcome::Success,
                "{status}"
            );
        }
        // grpc-status wins over the HTTP status.
        assert_eq!(c.classify(&head(Some("0"), 503)), Outcome::Success);
    }

    #[test]
    fn malformed_status_is_unknown() {
        for raw in [
            &b""[..],
            b"x",
            b"-1",
            b"+1",
            b"17",
            b"20",
            b"99999999999999999999",
            b"1 4",
            b" 14",
            b"014",
            b"\xff",
        ] {
            assert_eq!(GrpcCode::from_bytes(raw), GrpcCode::Unknown, "{raw:?}");
        }
        let c = GrpcClassifier::new();
        assert_eq!(c.classify(&head(Some("garbage"), 200)), Outcome::Success);
        let strict = c.failures(GrpcCodeSet::default_failures().with(GrpcCode::Unknown));
        assert_eq!(
            strict.classify(&head(Some("garbage"), 200)),
            Outcome::Failure
        );
    }

    #[test]
    fn trailers_are_classified_like_headers() {
        let c = GrpcClassifier::new().ignore(GrpcCodeSet::empty().with(GrpcCode::Cancelled));
        let mut t = HeaderMap::new();
        assert_eq!(c.classify_trailers(&t), Outcome::Success); // missing: UNKNOWN
        t.insert(GRPC_STATUS, HeaderValue::from_static("0"));
        assert_eq!(c.classify_trailers(&t), Outcome::Success);
        t.insert(GRPC_STATUS, HeaderValue::from_static("14"));
        assert_eq!(c.classify_trailers(&t), Outcome::Failure);
        t.insert(GRPC_STATUS, HeaderValue::from_static("1"));
        assert_eq!(c.classify_trailers(&t), Outcome::Ignored);
    }

    #[test]
    fn names_and_numbers_round_trip() {
        for (n, code) in GrpcCode::ALL.into_iter().enumerate() {
            assert_eq!(code.as_u8() as usize, n);
            assert_eq!(GrpcCode::from_u32(n as u32), Some(code));
            assert_eq!(GrpcCode::from_name(code.as_str()), Some(code));
            assert_eq!(GrpcCode::from_bytes(n.to_string().as_bytes()), code);
        }
        assert_eq!(GrpcCode::from_u32(17), None);
        assert_eq!(GrpcCode::from_name("nope"), None);
        assert_eq!(
            format!("{:?}", GrpcCodeSet::default_failures()),
            "{DeadlineExceeded, ResourceExhausted, Internal, Unavailable}"
        );
    }

    #[cfg(feature = "serde")]
    #[test]
    fn code_sets_deserialize_by_name_or_number() {
        #[derive(serde::Deserialize)]
        struct Config {
            failures: GrpcCodeSet,
        }
        let c: Config = toml::from_str(r#"failures = ["UNAVAILABLE", "internal", 4]"#).unwrap();
        assert_eq!(
            c.failures,
            GrpcCodeSet::empty()
                .with(GrpcCode::Unavailable)
                .with(GrpcCode::Internal)
                .with(GrpcCode::DeadlineExceeded)
        );
        let err = toml::from_str::<Config>(r#"failures = [17]"#)
            .err()
            .unwrap();
        assert!(
            err.to_string().contains("17 is not a gRPC status code"),
            "{err}"
        );
        let err = toml::from_str::<Config>(r#"failures = ["BROKEN"]"#)
            .err()
            .unwrap();
        assert!(
            err.to_string().contains("not a gRPC status code name"),
            "{err}"
        );
    }

    type Frames = Vec<Result<Frame<bytes::Bytes>, std::io::Error>>;

    /// Reads a wrapped response to its end; returns what `on_end` was called with, and when.
    async fn report(response: http::Response<Frames>) -> (Vec<Outcome>, Vec<Outcome>) {
        use http_body_util::BodyExt;
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = seen.clone();
        let response =
            response.map(|f| http_body_util::StreamBody::new(futures_util::stream::iter(f)));
        let response = GrpcBody::wrap_response(response, GrpcClassifier::new(), move |o| {
            sink.lock().unwrap().push(o)
        });
        let at_head = seen.lock().unwrap().clone();
        let mut body = response.into_body();
        while let Some(frame) = body.frame().await {
            if frame.is_err() {
                break;
            }
        }
        let at_end = seen.lock().unwrap().clone();
        (at_head, at_end)
    }

    fn data() -> Result<Frame<bytes::Bytes>, std::io::Error> {
        Ok(Frame::data(bytes::Bytes::from_static(b"\0\0\0\0\0")))
    }

    fn trailers(code: &'static str) -> Result<Frame<bytes::Bytes>, std::io::Error> {
        let mut t = HeaderMap::new();
        t.insert(GRPC_STATUS, HeaderValue::from_static(code));
        Ok(Frame::trailers(t))
    }

    #[tokio::test]
    async fn grpc_body_reports_once_from_the_trailers() {
        let ok = http::Response::new(vec![data(), trailers("0")]);
        assert_eq!(report(ok).await, (vec![], vec![Outcome::Success]));
        let failed = http::Response::new(vec![data(), data(), trailers("14")]);
        assert_eq!(report(failed).await, (vec![], vec![Outcome::Failure]));
    }

    #[tokio::test]
    async fn grpc_body_reports_a_decided_head_at_once() {
        let trailers_only = http::Response::builder()
            .header("grpc-status", "8")
            .body(vec![])
            .unwrap();
        let (head, end) = report(trailers_only).await;
        assert_eq!(
            (head, end),
            (vec![Outcome::Failure], vec![Outcome::Failure])
        );
        let proxy = http::Response::builder()
            .status(503)
            .body(vec![data()])
            .unwrap();
        assert_eq!(report(proxy).await.1, vec![Outcome::Failure]);
    }

    #[tokio::test]
    async fn grpc_body_errors_fail_and_a_missing_status_is_unknown() {
        let broken = http::Response::new(vec![
            data(),
            Err(std::io::Error::from(std::io::ErrorKind::ConnectionReset)),
        ]);
        assert_eq!(report(broken).await.1, vec![Outcome::Failure]);
        let no_trailers = http::Response::new(vec![data()]);
        assert_eq!(report(no_trailers).await.1, vec![Outcome::Success]); // UNKNOWN
    }

    #[test]
    fn grpc_body_dropped_early_reports_nothing() {
        let called = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = called.clone();
        let body = GrpcBody::new(
            http_body_util::Empty::<bytes::Bytes>::new(),
            GrpcClassifier::new(),
            move |_| flag.store(true, std::sync::atomic::Ordering::SeqCst),
        );
        drop(body);
        assert!(!called.load(std::sync::atomic::Ordering::SeqCst));
    }

    proptest! {
        #[test]
        fn parsing_never_panics_and_digits_round_trip(raw in proptest::collection::vec(any::<u8>(), 0..24), n in 0u32..40) {
            let _ = GrpcCode::from_bytes(&raw);
            let expect = GrpcCode::from_u32(n).unwrap_or(GrpcCode::Unknown);
            prop_assert_eq!(GrpcCode::from_bytes(n.to_string().as_bytes()), expect);
        }

        #[test]
        fn code_set_matches_a_plain_set(codes in proptest::collection::vec(0u32..17, 0..20), probe in 0u32..17) {
            let set: GrpcCodeSet = codes.iter().map(|n| GrpcCode::from_u32(*n).unwrap()).collect();
            prop_assert_eq!(set.contains(GrpcCode::from_u32(probe).unwrap()), codes.contains(&probe));
        }
    }
}
