//! Classification: was a call a success, a failure, or neither?
//!
//! Every layer asks the same question of a finished call, and must get the same answer: a
//! circuit breaker that counts a 404 as a failure while the retry layer treats it as an answer
//! will open on a healthy backend. [`Classify`] looks at the whole `Result<Response, Error>`,
//! so a classifier can treat an `Ok` response with a 503 status as a failure, or an error that
//! means "the caller gave up" as neither.
//!
//! Pick:
//! * [`DefaultClassifier`] for plain services: every `Err` is a failure, every `Ok` a success.
//! * `HttpClassifier` (feature `http`) for `http::Response`s: errors and 5xx statuses are
//!   failures (configurable with a [`StatusSet`]), everything else, 404 included, is a success.
//! * `GrpcClassifier` (feature `grpc`, in [`grpc`](crate::grpc)) for gRPC over `http`:
//!   the `grpc-status` decides, not the HTTP status (gRPC failures come with HTTP 200).
//!   UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED and INTERNAL are failures
//!   (configurable with a `GrpcCodeSet`), every other code, NOT_FOUND included, is an answer.
//!   It classifies the response head; what that means for statuses sent in trailers is in
//!   the [`grpc`](crate::grpc) module's docs.
//! * A closure `Fn(&Result<Res, E>) -> Outcome`, or your own type, for anything else.
//!
//! A classifier answers two questions, and each layer asks the one it needs:
//! [`Classify::classify`] (was the service healthy? asked by the circuit breaker, the
//! balancer's ejection and fan-out) and [`Classify::resend`] (may sending the request again
//! help, and when? asked by retry and failover). Declare the classifier once and give the same
//! value to every layer of a stack: a 500 can count against a backend's health without being
//! sent again, while a 503 with `Retry-After: 2` is both.
//!
//! ```
//! # #[cfg(feature = "grpc")]
//! # {
//! use bulwark_core::{Classify, GrpcClassifier, HttpClassifier, Outcome};
//!
//! // A gRPC server answers "unavailable" with HTTP 200 and `grpc-status: 14`.
//! let unavailable: Result<http::Response<()>, std::io::Error> = Ok(http::Response::builder()
//!     .header("grpc-status", "14")
//!     .body(())
//!     .unwrap());
//! assert_eq!(HttpClassifier::new().classify(&unavailable), Outcome::Success); // fooled
//! assert_eq!(GrpcClassifier::new().classify(&unavailable), Outcome::Failure);
//! # }
//! ```

use crate::event::GiveUpReason;
use std::time::Duration;

/// What a finished call tells a resilience layer about the service that answered it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The service did its job (a 404 for a missing book is a success: the store answered).
    Success,
    /// The service failed: counted against it by breakers and ejection, retried by retries.
    Failure,
    /// Says nothing about the service's health (a caller's cancellation, a rejected bad
    /// request): not counted in any window, never retried.
    Ignored,
}

impl Outcome {
    /// The lowercase name used in metric labels and logs: `success`, `failure` or `ignored`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::Ignored => "ignored",
        }
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a layer that can send a request again (a retry, a failover) should do after an
/// attempt: the second half of a classifier's answer, [`Classify::resend`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Return this result: it is an answer (a success, or a failure that sending again would
    /// not fix, such as a 500 that the request itself caused).
    Accept,
    /// Send again (elsewhere, or after the backoff's delay).
    Retry,
    /// Send again after the server's delay (`Retry-After`, gRPC pushback) instead of the
    /// backoff's.
    RetryAfter(Duration),
    /// A failure, but do not send again: return it as it is.
    GiveUp(GiveUpReason),
}

impl Decision {
    /// Whether the request should be sent again ([`Decision::Retry`] or
    /// [`Decision::RetryAfter`]).
    #[inline]
    pub const fn resends(self) -> bool {
        matches!(self, Decision::Retry | Decision::RetryAfter(_))
    }

    /// The decision with a server's wait capped at `max`: a longer
    /// [`Decision::RetryAfter`] becomes [`Decision::GiveUp`]`(`[`GiveUpReason::RetryAfterTooLong`]`)`.
    ///
    /// ```
    /// use bulwark_core::{Decision, GiveUpReason};
    /// use std::time::Duration;
    /// let cap = Duration::from_secs(30);
    /// assert_eq!(Decision::RetryAfter(Duration::from_secs(2)).capped(cap), Decision::RetryAfter(Duration::from_secs(2)));
    /// assert_eq!(
    ///     Decision::RetryAfter(Duration::from_secs(60)).capped(cap),
    ///     Decision::GiveUp(GiveUpReason::RetryAfterTooLong)
    /// );
    /// ```
    #[inline]
    pub fn capped(self, max: Duration) -> Decision {
        match self {
            Decision::RetryAfter(wait) if wait > max => {
                Decision::GiveUp(GiveUpReason::RetryAfterTooLong)
            }
            other => other,
        }
    }
}

/// Decides the [`Outcome`] of a call from its whole result.
///
/// Implemented for [`DefaultClassifier`], `HttpClassifier` (feature `http`), `GrpcClassifier`
/// (feature `grpc`) and every closure
/// `Fn(&Result<Res, E>) -> Outcome`.
///
/// ```
/// use bulwark_core::{Classify, Outcome};
///
/// /// Timeouts are failures; a "bad request" error is the caller's fault, so it is ignored.
/// #[derive(Clone)]
/// struct MyClassifier;
///
/// impl Classify<String, std::io::Error> for MyClassifier {
///     fn classify(&self, result: &Result<String, std::io::Error>) -> Outcome {
///         match result {
///             Ok(_) => Outcome::Success,
///             Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => Outcome::Ignored,
///             Err(_) => Outcome::Failure,
///         }
///     }
/// }
///
/// let bad = Err(std::io::Error::from(std::io::ErrorKind::InvalidInput));
/// assert_eq!(MyClassifier.classify(&bad), Outcome::Ignored);
/// ```
pub trait Classify<Res, E> {
    /// Classifies one finished call: what it says of the health of the service that answered
    /// (asked by breakers, balancers' ejection and fan-out).
    fn classify(&self, result: &Result<Res, E>) -> Outcome;

    /// Whether sending the request again may help, and when (asked by retry and failover).
    /// By default: a [`Outcome::Failure`] is sent again, anything else is the answer.
    /// [`HttpClassifier`] narrows it to a set of statuses and honours
    /// `Retry-After`; [`GrpcClassifier`](crate::GrpcClassifier) honours gRPC pushback.
    #[inline]
    fn resend(&self, result: &Result<Res, E>) -> Decision {
        match self.classify(result) {
            Outcome::Failure => Decision::Retry,
            Outcome::Success | Outcome::Ignored => Decision::Accept,
        }
    }
}

impl<F, Res, E> Classify<Res, E> for F
where
    F: Fn(&Result<Res, E>) -> Outcome,
{
    fn classify(&self, result: &Result<Res, E>) -> Outcome {
        self(result)
    }
}

/// The classifier for plain services: `Err` is a failure, `Ok` is a success.
///
/// ```
/// use bulwark_core::{Classify, DefaultClassifier, Outcome};
/// assert_eq!(DefaultClassifier.classify(&Ok::<_, ()>(())), Outcome::Success);
/// assert_eq!(DefaultClassifier.classify(&Err::<(), _>(())), Outcome::Failure);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DefaultClassifier;

impl<Res, E> Classify<Res, E> for DefaultClassifier {
    fn classify(&self, result: &Result<Res, E>) -> Outcome {
        match result {
            Ok(_) => Outcome::Success,
            Err(_) => Outcome::Failure,
        }
    }
}

#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
mod http_impl {
    use super::{Classify, Decision, Outcome};
    use crate::pushback::parse_retry_after;
    use std::fmt;
    use std::ops::RangeInclusive;

    const WORDS: usize = 16; // 1024 bits: every valid status code 100..=999

    /// A set of HTTP status codes, stored as a fixed bitset: `contains` is one shift and one
    /// mask, and the set never allocates.
    ///
    /// ```
    /// use bulwark_core::StatusSet;
    ///
    /// let set = StatusSet::server_errors().with(429).without(501);
    /// assert!(set.contains(503) && set.contains(429));
    /// assert!(!set.contains(501) && !set.contains(404));
    /// let codes: StatusSet = [502, 503, 504].into_iter().collect();
    /// assert_eq!(codes.iter().collect::<Vec<_>>(), vec![502, 503, 504]);
    /// ```
    #[derive(Clone, Copy, PartialEq, Eq, Hash)]
    pub struct StatusSet {
        bits: [u64; WORDS],
    }

    impl StatusSet {
        /// The empty set.
        pub const fn empty() -> Self {
            StatusSet { bits: [0; WORDS] }
        }

        /// Every 5xx status: 500..=599.
        pub fn server_errors() -> Self {
            Self::empty().with_range(500..=599)
        }

        /// This set with `code` added. Codes outside 100..=999 are not HTTP statuses and are
        /// left out (use [`StatusSet::try_insert`] to be told).
        pub fn with(mut self, code: u16) -> Self {
            let _ = self.try_insert(code);
            self
        }

        /// This set without `code`.
        pub fn without(mut self, code: u16) -> Self {
            self.remove(code);
            self
        }

        /// This set with every code of `range` that is a valid status added.
        pub fn with_range(mut self, range: RangeInclusive<u16>) -> Self {
            for code in range {
                let _ = self.try_insert(code);
            }
            self
        }

        /// Adds `code`; an error names a code outside 100..=999.
        pub fn try_insert(&mut self, code: u16) -> Result<(), InvalidStatus> {
            if !(100..=999).contains(&code) {
                return Err(InvalidStatus(code));
            }
            self.bits[usize::from(code / 64)] |= 1 << (code % 64);
            Ok(())
        }

        /// Removes `code` (a no-op when absent).
        pub fn remove(&mut self, code: u16) {
            if code < 1024 {
                self.bits[usize::from(code / 64)] &= !(1 << (code % 64));
            }
        }

        /// Whether `code` is in the set.
        #[inline]
        pub fn contains(&self, code: u16) -> bool {
            code < 1024 && self.bits[usize::from(code / 64)] & (1 << (code % 64)) != 0
        }

        /// Whether the set is empty.
        pub fn is_empty(&self) -> bool {
            self.bits.iter().all(|w| *w == 0)
        }

        /// The codes in the set, in ascending order.
        pub fn iter(&self) -> impl Iterator<Item = u16> + '_ {
            (100u16..=999).filter(move |c| self.contains(*c))
        }
    }

    impl Default for StatusSet {
        /// The default set is [`StatusSet::server_errors`].
        fn default() -> Self {
            Self::server_errors()
        }
    }

    impl fmt::Debug for StatusSet {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_set().entries(self.iter()).finish()
        }
    }

    impl FromIterator<u16> for StatusSet {
        /// Collects codes; invalid ones (outside 100..=999) are left out. Use
        /// [`StatusSet::try_from`] on a slice to reject them instead.
        fn from_iter<I: IntoIterator<Item = u16>>(iter: I) -> Self {
            let mut set = Self::empty();
            for code in iter {
                let _ = set.try_insert(code);
            }
            set
        }
    }

    impl TryFrom<&[u16]> for StatusSet {
        type Error = InvalidStatus;

        fn try_from(codes: &[u16]) -> Result<Self, Self::Error> {
            let mut set = Self::empty();
            for code in codes {
                set.try_insert(*code)?;
            }
            Ok(set)
        }
    }

    #[cfg(feature = "serde")]
    #[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
    impl<'de> serde::Deserialize<'de> for StatusSet {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            let codes = <Vec<u16> as serde::Deserialize>::deserialize(d)?;
            StatusSet::try_from(codes.as_slice()).map_err(serde::de::Error::custom)
        }
    }

    /// A number that is not an HTTP status code (outside 100..=999).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct InvalidStatus(pub u16);

    impl fmt::Display for InvalidStatus {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "{} is not an HTTP status code (100..=999)", self.0)
        }
    }

    impl std::error::Error for InvalidStatus {}

    /// Classifies `http::Response`s by status: an `Err` is a failure; a status in the failure
    /// set (5xx by default) is a failure; a status in the ignored set (empty by default) is
    /// ignored; everything else, 404 included, is a success.
    ///
    /// What may be sent again ([`Classify::resend`]): every `Err`, and the statuses of
    /// [`HttpClassifier::resend_statuses`] (by default, the failure statuses); a
    /// `Retry-After` on such a response says when ([`Decision::RetryAfter`]).
    ///
    /// ```
    /// use bulwark_core::{Classify, HttpClassifier, Outcome, StatusSet};
    ///
    /// let resp = |code: u16| -> Result<http::Response<()>, std::io::Error> {
    ///     Ok(http::Response::builder().status(code).body(()).unwrap())
    /// };
    /// let c = HttpClassifier::new();
    /// assert_eq!(c.classify(&resp(503)), Outcome::Failure);
    /// assert_eq!(c.classify(&resp(404)), Outcome::Success);
    ///
    /// // 429 means "slow down", not "broken": don't count it either way.
    /// let c = HttpClassifier::new().ignore(StatusSet::empty().with(429));
    /// assert_eq!(c.classify(&resp(429)), Outcome::Ignored);
    ///
    /// // One contract for a whole stack: 5xx count against a backend's health, but only
    /// // 502, 503 and 504 are sent again (a 500 is the request's own fault).
    /// use bulwark_core::Decision;
    /// let c = HttpClassifier::new().resend_statuses(StatusSet::empty().with_range(502..=504));
    /// assert_eq!(c.classify(&resp(500)), Outcome::Failure);
    /// assert_eq!(c.resend(&resp(500)), Decision::Accept);
    /// assert_eq!(c.resend(&resp(503)), Decision::Retry);
    /// ```
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct HttpClassifier {
        failures: StatusSet,
        ignored: StatusSet,
        resend: Option<StatusSet>,
    }

    impl HttpClassifier {
        /// Errors and 5xx are failures, nothing is ignored.
        pub fn new() -> Self {
            HttpClassifier {
                failures: StatusSet::server_errors(),
                ignored: StatusSet::empty(),
                resend: None,
            }
        }

        /// Replaces the set of statuses worth sending again (by default, the failure
        /// statuses). A status may be sent again without being a failure (a 429 says "slow
        /// down", not "broken") and be a failure without being sent again (a 500).
        pub fn resend_statuses(mut self, statuses: StatusSet) -> Self {
            self.resend = Some(statuses);
            self
        }

        /// The statuses worth sending again.
        pub fn resent_statuses(&self) -> &StatusSet {
            self.resend.as_ref().unwrap_or(&self.failures)
        }

        /// Whether a response with `status` and `headers` is worth sending again, and when.
        #[inline]
        pub fn resend_status(
            &self,
            status: http::StatusCode,
            headers: &http::HeaderMap,
        ) -> Decision {
            let again = match &self.resend {
                Some(set) => set.contains(status.as_u16()),
                None => self.classify_status(status) == Outcome::Failure,
            };
            if !again {
                return Decision::Accept;
            }
            match headers.get(http::header::RETRY_AFTER) {
                Some(value) => match parse_retry_after(value, std::time::SystemTime::now()) {
                    Some(pushback) => pushback.decision(),
                    None => Decision::Retry,
                },
                None => Decision::Retry,
            }
        }

        /// Replaces the set of statuses counted as failures.
        pub fn failures(mut self, statuses: StatusSet) -> Self {
            self.failures = statuses;
            self
        }

        /// Replaces the set of statuses that are neither success nor failure. A status in both
        /// sets is ignored.
        pub fn ignore(mut self, statuses: StatusSet) -> Self {
            self.ignored = statuses;
            self
        }

        /// The failure statuses.
        pub fn failure_statuses(&self) -> &StatusSet {
            &self.failures
        }

        /// The ignored statuses.
        pub fn ignored_statuses(&self) -> &StatusSet {
            &self.ignored
        }

        /// Classifies a status code alone.
        #[inline]
        pub fn classify_status(&self, status: http::StatusCode) -> Outcome {
            let code = status.as_u16();
            if self.ignored.contains(code) {
                Outcome::Ignored
            } else if self.failures.contains(code) {
                Outcome::Failure
            } else {
                Outcome::Success
            }
        }
    }

    impl Default for HttpClassifier {
        fn default() -> Self {
            Self::new()
        }
    }

    impl<B, E> Classify<http::Response<B>, E> for HttpClassifier {
        #[inline]
        fn classify(&self, result: &Result<http::Response<B>, E>) -> Outcome {
            match result {
                Ok(resp) => self.classify_status(resp.status()),
                Err(_) => Outcome::Failure,
            }
        }

        #[inline]
        fn resend(&self, result: &Result<http::Response<B>, E>) -> Decision {
            match result {
                Ok(resp) => self.resend_status(resp.status(), resp.headers()),
                Err(_) => Decision::Retry,
            }
        }
    }
}

#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub use http_impl::{HttpClassifier, InvalidStatus, StatusSet};

#[cfg(all(test, feature = "http"))]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn resp(code: u16) -> Result<http::Response<()>, ()> {
        Ok(http::Response::builder().status(code).body(()).unwrap())
    }

    #[test]
    fn http_defaults_5xx_fail_404_succeeds() {
        let c = HttpClassifier::new();
        for code in [500, 502, 503, 504, 599] {
            assert_eq!(c.classify(&resp(code)), Outcome::Failure, "{code}");
        }
        for code in [200, 201, 204, 301, 400, 404, 409, 429] {
            assert_eq!(c.classify(&resp(code)), Outcome::Success, "{code}");
        }
        assert_eq!(
            c.classify(&Err::<http::Response<()>, _>(())),
            Outcome::Failure
        );
    }

    #[test]
    fn http_configurable_sets() {
        let c = HttpClassifier::new()
            .failures(StatusSet::empty().with_range(502..=504).with(429))
            .ignore(StatusSet::empty().with(503));
        assert_eq!(c.classify(&resp(500)), Outcome::Success);
        assert_eq!(c.classify(&resp(429)), Outcome::Failure);
        assert_eq!(c.classify(&resp(503)), Outcome::Ignored);
    }

    #[test]
    fn invalid_codes_are_rejected() {
        assert_eq!(
            StatusSet::try_from(&[200, 1000][..]),
            Err(InvalidStatus(1000))
        );
        assert_eq!(StatusSet::try_from(&[99][..]), Err(InvalidStatus(99)));
        assert!(StatusSet::empty().with(5000).is_empty());
    }

    proptest! {
        #[test]
        fn status_set_matches_a_plain_set(codes in proptest::collection::vec(0u16..1200, 0..50), probe in 0u16..1200) {
            let set: StatusSet = codes.iter().copied().collect();
            let expect = codes.contains(&probe) && (100..=999).contains(&probe);
            prop_assert_eq!(set.contains(probe), expect);
        }
    }
}
