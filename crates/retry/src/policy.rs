//! What is worth retrying.

use bulwark_core::attempts::{NoAttempts, RequestAttempts};
use bulwark_core::{Classify, DefaultClassifier};

/// What to do after an attempt: core's [`Decision`](bulwark_core::Decision), the answer of
/// every classifier's [`Classify::resend`].
pub use bulwark_core::Decision;

/// Decides, per attempt, whether to retry. The layer adds the limits every policy shares:
/// attempts, budget, deadline.
///
/// Implement it for your own protocol, or use [`RetryFailures`] (every failure the shared
/// [`Classify`] sees is retried) or `HttpRetryPolicy` (feature `http`).
pub trait RetryPolicy<Req, Res, E> {
    /// The decision after an attempt ended with `result`. Called on every attempt, the
    /// successful ones included: keep it cheap.
    fn decide(&self, result: &Result<Res, E>) -> Decision;

    /// Whether `request` may be sent (again): idempotent, and with a body that can be
    /// replayed. Asked before the first attempt (a request that may not be resent is not
    /// copied) and again before each retry.
    fn may_resend(&self, request: &Req) -> bool {
        let _ = request;
        true
    }

    /// Called once, before the copy for resending is taken: a policy may attach what the
    /// attempts should share (the HTTP policy attaches
    /// [`Attempts`](bulwark_core::attempts::Attempts), so a balancer below sends a retry to a
    /// different endpoint). A policy that attaches them also says where they are, in
    /// [`RetryPolicy::attempts`].
    fn prepare(&self, request: &mut Req) {
        let _ = request;
    }

    /// The request's shared attempts, if it carries them: the layer polls the service's
    /// readiness for a resend inside [`Attempts::scope`](bulwark_core::attempts::Attempts::scope),
    /// so a balancer below reserves an endpoint the request has not been to.
    fn attempts<'r>(&self, request: &'r Req) -> Option<&'r bulwark_core::attempts::Attempts> {
        let _ = request;
        None
    }

    /// The time limit `request` itself carries, counted from now (gRPC's `grpc-timeout`, or
    /// the HTTP policy's deadline header when one is set): the layer ends its attempts by
    /// then, whatever its own deadline. Asked once per call; `None` by default.
    fn time_limit(&self, request: &Req) -> Option<std::time::Duration> {
        let _ = request;
        None
    }

    /// Tells the backend how long this attempt has: called before each attempt of a request
    /// that has a deadline or an attempt timeout, with the time left until the earlier of the
    /// two. The gRPC policy writes it as `grpc-timeout`, the HTTP policy into its deadline
    /// header when one is set; by default nothing is written.
    fn set_time_left(&self, request: &mut Req, left: std::time::Duration) {
        let _ = (request, left);
    }
}

/// Retries what its classifier says may be sent again ([`Classify::resend`]: by default every
/// [`Outcome::Failure`](bulwark_core::Outcome::Failure); `HttpClassifier::resend_statuses`
/// narrows it, and a server's `Retry-After` or gRPC pushback says when); accepts the rest.
/// Which requests may be sent again, and where they keep their attempts, is its
/// [`RequestAttempts`] (every request, none, by default).
///
/// With [`RetryFailures::attempts`], it also attaches the shared
/// [`Attempts`](bulwark_core::attempts::Attempts) to a request that may be resent, so a
/// balancer below sends each resend to an endpoint the request has not been to (for your own
/// request type: say where it keeps them with a [`RequestAttempts`]).
///
/// ```
/// use bulwark_retry::{Decision, RetryFailures, RetryPolicy};
/// let policy: RetryFailures = RetryFailures::default();
/// let failed: Result<(), &str> = Err("reset");
/// assert_eq!(RetryPolicy::<(), (), &str>::decide(&policy, &failed), Decision::Retry);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct RetryFailures<C = DefaultClassifier, A = NoAttempts> {
    classifier: C,
    attempts: A,
}

impl<C> RetryFailures<C> {
    /// Retries what `classifier` calls a failure.
    pub fn new(classifier: C) -> Self {
        RetryFailures {
            classifier,
            attempts: NoAttempts,
        }
    }
}

impl<C, A> RetryFailures<C, A> {
    /// Attaches the request's attempts where `attempts` says the request type keeps them,
    /// before it is copied for resending (so a balancer below avoids the endpoints it has
    /// been to).
    ///
    /// ```
    /// use bulwark_core::attempts::{Attempts, RequestAttempts};
    /// use bulwark_retry::{RetryFailures, RetryPolicy};
    ///
    /// #[derive(Clone, Default)]
    /// struct Req { attempts: Option<Attempts> }
    /// struct InReq;
    /// impl RequestAttempts<Req> for InReq {
    ///     fn attempts<'r>(&self, r: &'r Req) -> Option<&'r Attempts> { r.attempts.as_ref() }
    ///     fn ensure(&self, r: &mut Req) { r.attempts.get_or_insert_with(Attempts::new); }
    /// }
    ///
    /// let policy = RetryFailures::new(bulwark_core::DefaultClassifier).attempts(InReq);
    /// let mut req = Req::default();
    /// RetryPolicy::<Req, (), std::io::Error>::prepare(&policy, &mut req);
    /// assert!(req.attempts.is_some());
    /// ```
    pub fn attempts<A2>(self, attempts: A2) -> RetryFailures<C, A2> {
        RetryFailures {
            classifier: self.classifier,
            attempts,
        }
    }
}

impl<Req, Res, E, C, A> RetryPolicy<Req, Res, E> for RetryFailures<C, A>
where
    C: Classify<Res, E>,
    A: RequestAttempts<Req>,
{
    #[inline]
    fn decide(&self, result: &Result<Res, E>) -> Decision {
        self.classifier.resend(result)
    }

    fn may_resend(&self, request: &Req) -> bool {
        self.attempts.may_resend(request)
    }

    fn prepare(&self, request: &mut Req) {
        self.attempts.ensure(request);
    }

    fn attempts<'r>(&self, request: &'r Req) -> Option<&'r bulwark_core::attempts::Attempts> {
        RequestAttempts::attempts(&self.attempts, request)
    }
}
