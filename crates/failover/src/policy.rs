//! What counts as a failure worth failing over on.

use bulwark_core::{Classify, DefaultClassifier, Outcome};
use std::fmt::Display;

/// Decides whether an attempt failed (so the request goes to the next target) and describes
/// the failure for the error that lists every target's.
pub trait FailoverPolicy<Req, Res, E> {
    /// Whether `result` is a failure to fail over on. Called on every attempt: keep it cheap.
    fn is_failure(&self, result: &Result<Res, E>) -> bool;

    /// A short description of a failure ("connection refused", "503 Service Unavailable").
    /// Called only on failures.
    fn describe(&self, result: &Result<Res, E>) -> String;

    /// Whether `request` can be sent to another target (a streaming body that could not be
    /// kept cannot). Asked before the first attempt and before each failover.
    fn can_resend(&self, request: &Req) -> bool {
        let _ = request;
        true
    }

    /// Called once, before the copy for resending is taken (the HTTP policy attaches
    /// [`Attempts`](bulwark_core::attempts::Attempts) so balancers below tell targets apart).
    fn prepare(&self, request: &mut Req) {
        let _ = request;
    }
}

/// Fails over on every outcome its classifier calls a failure (every error, by default).
#[derive(Debug, Clone, Copy, Default)]
pub struct FailOnFailure<C = DefaultClassifier> {
    classifier: C,
}

impl<C> FailOnFailure<C> {
    /// Fails over on what `classifier` calls a failure.
    pub fn new(classifier: C) -> Self {
        FailOnFailure { classifier }
    }
}

impl<Req, Res, E, C> FailoverPolicy<Req, Res, E> for FailOnFailure<C>
where
    C: Classify<Res, E>,
    E: Display,
{
    #[inline]
    fn is_failure(&self, result: &Result<Res, E>) -> bool {
        self.classifier.classify(result) == Outcome::Failure
    }

    fn describe(&self, result: &Result<Res, E>) -> String {
        match result {
            Err(e) => e.to_string(),
            Ok(_) => String::from("response classified as a failure"),
        }
    }
}

#[cfg(feature = "http")]
mod http_policy {
    use super::FailoverPolicy;
    use bulwark_core::replay::CanReplay;
    use bulwark_core::StatusSet;
    use std::fmt::Display;

    /// The HTTP policy: every error, and the failover status codes (501, 502, 503 and 504 by
    /// default, as the seed's Ballerina client plus 504), fail over; a request fails over only
    /// while its body can be sent again ([`CanReplay`]). Any method fails over, as in the seed:
    /// the targets are replicas and the failover statuses say the request was not served.
    ///
    /// ```
    /// use bulwark_failover::{FailoverPolicy, HttpFailoverPolicy};
    /// use http::{Request, Response};
    ///
    /// let p = HttpFailoverPolicy::new();
    /// let resp = |code| Ok::<_, std::io::Error>(Response::builder().status(code).body(()).unwrap());
    /// assert!(FailoverPolicy::<Request<String>, _, _>::is_failure(&p, &resp(503)));
    /// assert!(!FailoverPolicy::<Request<String>, _, _>::is_failure(&p, &resp(500)));
    /// assert_eq!(FailoverPolicy::<Request<String>, _, _>::describe(&p, &resp(503)), "503 Service Unavailable");
    /// ```
    #[derive(Debug, Clone, Copy)]
    pub struct HttpFailoverPolicy {
        codes: StatusSet,
    }

    impl Default for HttpFailoverPolicy {
        fn default() -> Self {
            Self::new()
        }
    }

    impl HttpFailoverPolicy {
        /// Fails over on errors and 501, 502, 503, 504.
        pub fn new() -> Self {
            HttpFailoverPolicy {
                codes: StatusSet::empty().with_range(501..=504),
            }
        }

        /// Replaces the failover status codes.
        pub fn failover_codes(mut self, codes: StatusSet) -> Self {
            self.codes = codes;
            self
        }

        /// The failover status codes.
        pub fn codes(&self) -> &StatusSet {
            &self.codes
        }
    }

    impl<B, RB, E> FailoverPolicy<http::Request<B>, http::Response<RB>, E> for HttpFailoverPolicy
    where
        B: CanReplay,
        E: Display,
    {
        #[inline]
        fn is_failure(&self, result: &Result<http::Response<RB>, E>) -> bool {
            match result {
                Ok(resp) => self.codes.contains(resp.status().as_u16()),
                Err(_) => true,
            }
        }

        fn describe(&self, result: &Result<http::Response<RB>, E>) -> String {
            match result {
                Ok(resp) => resp.status().to_string(),
                Err(e) => e.to_string(),
            }
        }

        fn can_resend(&self, request: &http::Request<B>) -> bool {
            request.can_replay()
        }

        fn prepare(&self, request: &mut http::Request<B>) {
            use bulwark_core::attempts::{HttpAttempts, RequestAttempts};
            HttpAttempts.ensure(request);
        }
    }
}

#[cfg(feature = "http")]
pub use http_policy::HttpFailoverPolicy;
