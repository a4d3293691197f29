//! Which endpoints a request has already been sent to, shared by the request's clones.
//!
//! A retry or failover layer stacked over a balancer resends clones of one request. Without
//! help, the balancer may pick the very endpoint that just failed that request. [`Attempts`]
//! is a small shared set, carried by the request (for HTTP, in its extensions) and shared by
//! all its clones: the balancer records each endpoint it sends the request to, and prefers,
//! for a resend, an endpoint the request has not been to while one is available.
//!
//! The retry and failover layers' HTTP policies attach it when they keep a copy of a request
//! to resend; [`RequestAttempts`] tells a balancer where to find it in a request type.
//!
//! ```
//! use bulwark_core::attempts::Attempts;
//!
//! let attempts = Attempts::new();
//! let clone = attempts.clone(); // what a resent request carries
//! attempts.record(1, 7); // balancer 1 sent it to endpoint 7
//! assert!(clone.tried(1, 7));
//! assert!(!clone.tried(1, 8));
//! ```

use std::fmt;
use std::sync::{Arc, Mutex};

/// The endpoints a request has been sent to, as (balancer, endpoint) identifiers.
///
/// One allocation per request that may be resent (the shared cell); the first few
/// endpoints are kept inline, so recording them allocates nothing more.
#[derive(Clone, Default)]
pub struct Attempts(Arc<Mutex<Tried>>);

/// How many (balancer, endpoint) pairs are kept without a further allocation: a request is
/// rarely sent to more than a few endpoints.
const INLINE: usize = 4;

#[derive(Default)]
struct Tried {
    inline: [(usize, usize); INLINE],
    len: usize,
    more: Vec<(usize, usize)>,
}

impl Tried {
    fn contains(&self, pair: (usize, usize)) -> bool {
        self.inline[..self.len.min(INLINE)].contains(&pair) || self.more.contains(&pair)
    }

    fn insert(&mut self, pair: (usize, usize)) {
        if self.contains(pair) {
            return;
        }
        if self.len < INLINE {
            self.inline[self.len] = pair;
            self.len += 1;
        } else {
            self.more.push(pair);
        }
    }

    fn pairs(&self) -> impl Iterator<Item = &(usize, usize)> {
        self.inline[..self.len.min(INLINE)].iter().chain(&self.more)
    }
}

impl Attempts {
    /// An empty set, to attach to a request that may be sent more than once.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records that balancer `scope` sent the request to endpoint `endpoint`.
    pub fn record(&self, scope: usize, endpoint: usize) {
        let mut tried = match self.0.lock() {
            Ok(t) => t,
            Err(poisoned) => poisoned.into_inner(),
        };
        tried.insert((scope, endpoint));
    }

    /// Whether balancer `scope` already sent the request to endpoint `endpoint`.
    pub fn tried(&self, scope: usize, endpoint: usize) -> bool {
        match self.0.lock() {
            Ok(t) => t.contains((scope, endpoint)),
            Err(poisoned) => poisoned.into_inner().contains((scope, endpoint)),
        }
    }
}

thread_local! {
    /// The attempts of the request whose readiness a layer above is polling for (see
    /// [`Attempts::scope`]).
    static CURRENT: std::cell::RefCell<Option<Attempts>> = const { std::cell::RefCell::new(None) };
}

/// Puts back the attempts a scope replaced, even if the scope's work panics.
struct Restore(Option<Attempts>);

impl Drop for Restore {
    fn drop(&mut self) {
        let previous = self.0.take();
        CURRENT.with(|c| *c.borrow_mut() = previous);
    }
}

impl Attempts {
    /// Runs `ready` (a readiness poll of the service below) with these attempts as those of
    /// the request about to be sent, so a balancer below chooses, when it reserves an
    /// endpoint, one the request has not been to. A retry layer wraps its resends' readiness
    /// polls in it (the request is known before its `call`); the balancer then `call`s the
    /// endpoint it reserved, and nothing reserved is left held.
    ///
    /// ```
    /// use bulwark_core::attempts::Attempts;
    ///
    /// let attempts = Attempts::new();
    /// attempts.record(1, 7);
    /// let seen = attempts.scope(|| Attempts::current().map(|a| a.tried(1, 7)));
    /// assert_eq!(seen, Some(true));
    /// assert!(Attempts::current().is_none());
    /// ```
    pub fn scope<R>(&self, ready: impl FnOnce() -> R) -> R {
        let previous = CURRENT.with(|c| c.borrow_mut().replace(self.clone()));
        let _restore = Restore(previous);
        ready()
    }

    /// The attempts of the request whose readiness is being polled, if the layer polling
    /// said so with [`Attempts::scope`].
    #[inline]
    pub fn current() -> Option<Attempts> {
        CURRENT.with(|c| c.borrow().clone())
    }
}

impl fmt::Debug for Attempts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.lock() {
            Ok(t) => f
                .debug_tuple("Attempts")
                .field(&t.pairs().collect::<Vec<_>>())
                .finish(),
            Err(_) => f.write_str("Attempts(..)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Attempts;

    #[test]
    fn pairs_past_the_inline_ones_are_kept_too() {
        let a = Attempts::new();
        for e in 0..10 {
            a.record(1, e);
            a.record(1, e); // twice: kept once
        }
        for e in 0..10 {
            assert!(a.tried(1, e), "{e}");
            assert!(!a.tried(2, e));
        }
        assert!(!a.tried(1, 10));
        assert_eq!(
            format!("{a:?}"),
            "Attempts([(1, 0), (1, 1), (1, 2), (1, 3), (1, 4), (1, 5), (1, 6), (1, 7), (1, 8), (1, 9)])"
        );
    }
}

/// Where a request type keeps its [`Attempts`], if anywhere.
pub trait RequestAttempts<Req> {
    /// The request's attempts, if it carries them.
    fn attempts<'r>(&self, request: &'r Req) -> Option<&'r Attempts>;

    /// Attaches an empty set to `request` if it has none (before it is cloned for resending).
    fn ensure(&self, request: &mut Req) {
        let _ = request;
    }

    /// Whether `request` may be sent again at all (idempotent, with a body that can be
    /// replayed). Every request by default.
    fn may_resend(&self, request: &Req) -> bool {
        let _ = request;
        true
    }

    /// Called on a copy about to be sent `elapsed` after the request it was copied from went
    /// out (a hedge): updates what tells the server its time left. Nothing by default;
    /// [`HttpAttempts`] and [`HttpResend`] count `elapsed` off a `grpc-timeout`
    /// ([`age_grpc_timeout`](crate::deadline::age_grpc_timeout)).
    fn resent_after(&self, copy: &mut Req, elapsed: std::time::Duration) {
        let _ = (copy, elapsed);
    }
}

/// For request types that carry no attempts: nothing is recorded or avoided.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoAttempts;

impl<Req> RequestAttempts<Req> for NoAttempts {
    #[inline]
    fn attempts<'r>(&self, _: &'r Req) -> Option<&'r Attempts> {
        None
    }
}

/// For `http::Request`s: the attempts live in the request's extensions (which clones of the
/// request share, since `Attempts` is a shared handle).
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
#[derive(Debug, Clone, Copy, Default)]
pub struct HttpAttempts;

#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
impl<B> RequestAttempts<http::Request<B>> for HttpAttempts {
    #[inline]
    fn attempts<'r>(&self, request: &'r http::Request<B>) -> Option<&'r Attempts> {
        request.extensions().get::<Attempts>()
    }

    fn ensure(&self, request: &mut http::Request<B>) {
        if request.extensions().get::<Attempts>().is_none() {
            request.extensions_mut().insert(Attempts::new());
        }
    }

    fn resent_after(&self, copy: &mut http::Request<B>, elapsed: std::time::Duration) {
        crate::deadline::age_grpc_timeout(copy.headers_mut(), elapsed);
    }
}

/// Which `http::Request`s may be sent again, and where their attempts live (in the
/// extensions, as [`HttpAttempts`]): the request half of what retry and failover ask, shared
/// by their HTTP and gRPC policies.
///
/// * [`HttpResend::idempotent`]: the idempotent methods (GET, HEAD, OPTIONS, PUT, DELETE,
///   TRACE), any request carrying an `Idempotency-Key` header, and the methods added with
///   [`HttpResend::method`];
/// * [`HttpResend::any_method`]: every method (gRPC, where every call is a POST; replicas
///   that did not serve the request).
///
/// Either way only while the body can be sent again
/// ([`CanReplay`](crate::replay::CanReplay)).
///
/// ```
/// use bulwark_core::attempts::{HttpResend, RequestAttempts};
/// use http::{Method, Request};
///
/// let get = Request::get("/book/dune").body(String::new()).unwrap();
/// let post = Request::post("/book").body(String::from("{}")).unwrap();
/// assert!(HttpResend::idempotent().may_resend(&get));
/// assert!(!HttpResend::idempotent().may_resend(&post));
/// assert!(HttpResend::idempotent().method(Method::POST).may_resend(&post));
/// assert!(HttpResend::any_method().may_resend(&post));
/// ```
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
#[derive(Debug, Clone, Default)]
pub struct HttpResend {
    any_method: bool,
    methods: Vec<http::Method>,
}

/// The `Idempotency-Key` header: a request carrying it may be sent again whatever its method.
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub const IDEMPOTENCY_KEY: http::header::HeaderName =
    http::header::HeaderName::from_static("idempotency-key");

#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
impl HttpResend {
    /// Idempotent methods, and requests with an `Idempotency-Key`.
    pub fn idempotent() -> Self {
        HttpResend::default()
    }

    /// Every method.
    pub fn any_method() -> Self {
        HttpResend {
            any_method: true,
            methods: Vec::new(),
        }
    }

    /// Also resends requests with `method` (a POST you know to be idempotent).
    pub fn method(mut self, method: http::Method) -> Self {
        if !self.methods.contains(&method) {
            self.methods.push(method);
        }
        self
    }

    /// Whether a request with `method` and `headers` may be sent again (its body aside).
    pub fn method_allowed(&self, method: &http::Method, headers: &http::HeaderMap) -> bool {
        use http::Method;
        self.any_method
            || matches!(
                *method,
                Method::GET
                    | Method::HEAD
                    | Method::OPTIONS
                    | Method::PUT
                    | Method::DELETE
                    | Method::TRACE
            )
            || headers.contains_key(IDEMPOTENCY_KEY)
            || self.methods.contains(method)
    }
}

#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
impl<B: crate::replay::CanReplay> RequestAttempts<http::Request<B>> for HttpResend {
    #[inline]
    fn attempts<'r>(&self, request: &'r http::Request<B>) -> Option<&'r Attempts> {
        HttpAttempts.attempts(request)
    }

    fn ensure(&self, request: &mut http::Request<B>) {
        HttpAttempts.ensure(request);
    }

    fn may_resend(&self, request: &http::Request<B>) -> bool {
        self.method_allowed(request.method(), request.headers())
            && crate::replay::CanReplay::can_replay(request)
    }

    fn resent_after(&self, copy: &mut http::Request<B>, elapsed: std::time::Duration) {
        HttpAttempts.resent_after(copy, elapsed);
    }
}
