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
#[derive(Clone, Default)]
pub struct Attempts(Arc<Mutex<Vec<(usize, usize)>>>);

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
        if !tried.contains(&(scope, endpoint)) {
            tried.push((scope, endpoint));
        }
    }

    /// Whether balancer `scope` already sent the request to endpoint `endpoint`.
    pub fn tried(&self, scope: usize, endpoint: usize) -> bool {
        match self.0.lock() {
            Ok(t) => t.contains(&(scope, endpoint)),
            Err(poisoned) => poisoned.into_inner().contains(&(scope, endpoint)),
        }
    }
}

impl fmt::Debug for Attempts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.lock() {
            Ok(t) => f.debug_tuple("Attempts").field(&*t).finish(),
            Err(_) => f.write_str("Attempts(..)"),
        }
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
#[derive(Debug, Clone, Copy, Default)]
pub struct HttpAttempts;

#[cfg(feature = "http")]
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
}
