//! What counts as a failure worth failing over on.

use bulwark_core::{Classify, DefaultClassifier};
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
    /// [`Attempts`](bulwark_core::attempts::Attempts) so balancers below tell targets apart,
    /// and notes when a request carrying a `grpc-timeout` went:
    /// [`note_sent`](bulwark_core::deadline::note_sent)).
    fn prepare(&self, request: &mut Req) {
        let _ = request;
    }

    /// Called on each copy about to go to the next target (the HTTP policy counts the time
    /// since the request first went off its `grpc-timeout`:
    /// [`restamp`](bulwark_core::deadline::restamp)).
    fn resending(&self, copy: &mut Req) {
        let _ = copy;
    }
}

/// Fails over on what its classifier says may be sent again ([`Classify::resend`]: by default
/// every outcome it calls a failure, every error included; `HttpClassifier::resend_statuses`
/// narrows it). Give it the classifier the rest of the stack uses.
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
        self.classifier.resend(result).resends()
    }

    fn describe(&self, result: &Result<Res, E>) -> String {
        match result {
            Err(e) => e.to_string(),
            Ok(_) => String::from("response classified as a failure"),
        }
    }
}

#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
mod http_policy {
    use super::FailoverPolicy;
    use bulwark_core::attempts::{HttpResend, RequestAttempts};
    use bulwark_core::replay::CanReplay;
    use bulwark_core::{Classify, HttpClassifier, StatusSet};
    use std::fmt::Display;

    /// The HTTP policy: every error, and the failover status codes (501, 502, 503 and 504 by
    /// default), fail over; a request fails over only while its body can be sent again
    /// ([`CanReplay`]). Any method fails over: the targets are replicas, and the failover
    /// statuses say the request was not served. The status codes are its classifier's
    /// [`HttpClassifier::resend_statuses`]: give it the stack's classifier with
    /// [`HttpFailoverPolicy::classifier`].
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
        classifier: HttpClassifier,
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
                classifier: HttpClassifier::new()
                    .resend_statuses(StatusSet::empty().with_range(501..=504)),
            }
        }

        /// Fails over on what `classifier` says may be sent again (every error, and its
        /// [`HttpClassifier::resend_statuses`]).
        pub fn classifier(mut self, classifier: HttpClassifier) -> Self {
            self.classifier = classifier;
            self
        }

        /// Replaces the failover status codes.
        pub fn failover_codes(mut self, codes: StatusSet) -> Self {
            self.classifier = self.classifier.resend_statuses(codes);
            self
        }

        /// The failover status codes.
        pub fn codes(&self) -> &StatusSet {
            self.classifier.resent_statuses()
        }
    }

    impl<B, RB, E> FailoverPolicy<http::Request<B>, http::Response<RB>, E> for HttpFailoverPolicy
    where
        B: CanReplay,
        E: Display,
    {
        #[inline]
        fn is_failure(&self, result: &Result<http::Response<RB>, E>) -> bool {
            self.classifier.resend(result).resends()
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
            HttpResend::any_method().ensure(request);
            bulwark_core::deadline::note_sent(request);
        }

        fn resending(&self, copy: &mut http::Request<B>) {
            bulwark_core::deadline::restamp(copy);
        }
    }
}

#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub use http_policy::HttpFailoverPolicy;
