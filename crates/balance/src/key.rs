//! What the balancer reads from a discovered endpoint's key, and how it asks a discovery
//! source to look again.

use std::fmt;
use std::hash::Hash;
use std::net::SocketAddr;
use std::sync::Arc;

/// The key of an endpoint fed to the balancer through `tower::discover`: it identifies the
/// endpoint (an insertion under a key already present updates that endpoint, keeping what the
/// balancer learned of it; a removal takes it out), names it in logs, events and the handle,
/// and may carry a weight and a priority.
///
/// Implemented for the usual key types (integers, strings, socket addresses) with weight 1
/// and priority 0; wrap a key in [`Weighted`] to give it others, or implement it for your own
/// key type.
///
/// ```
/// use bulwark_balance::{EndpointKey, Weighted};
///
/// let key = Weighted { key: "10.0.0.7:8080", weight: 3, priority: 1 };
/// assert_eq!((key.weight(), key.priority()), (3, 1));
/// assert_eq!(key.to_string(), "10.0.0.7:8080");
/// assert_eq!("store-1".weight(), 1);
/// ```
pub trait EndpointKey: Hash + Eq + fmt::Display {
    /// The endpoint's share of requests relative to the others (a weight-2 endpoint gets
    /// twice the requests of a weight-1 endpoint, all else equal). 0 is read as 1. Every
    /// strategy but [`Strategy::FirstAvailable`](crate::Strategy::FirstAvailable), which keeps
    /// its order, applies it.
    fn weight(&self) -> u32 {
        1
    }

    /// The endpoint's priority: lower is preferred. The balancer sends requests only to the
    /// most preferred priority that has an endpoint that is healthy and not ejected, as SRV
    /// records and Envoy's priority levels do.
    fn priority(&self) -> u32 {
        0
    }
}

macro_rules! plain_keys {
    ($($t:ty),*) => { $(impl EndpointKey for $t {})* };
}

plain_keys!(
    usize,
    u16,
    u32,
    u64,
    i32,
    i64,
    String,
    &'static str,
    Arc<str>,
    SocketAddr
);

/// A key with a weight and a priority.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Weighted<K> {
    /// The key that identifies the endpoint.
    pub key: K,
    /// Its weight (see [`EndpointKey::weight`]).
    pub weight: u32,
    /// Its priority (see [`EndpointKey::priority`]).
    pub priority: u32,
}

impl<K: fmt::Display> fmt::Display for Weighted<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.key.fmt(f)
    }
}

impl<K: Hash + Eq + fmt::Display> EndpointKey for Weighted<K> {
    fn weight(&self) -> u32 {
        self.weight
    }

    fn priority(&self) -> u32 {
        self.priority
    }
}

/// A discovery source the balancer can ask to look again, early, when its requests show the
/// set it has is stale: every endpoint failing, ejected or unhealthy (as gRPC clients
/// re-resolve a name when their connections fail). The source decides how often it really
/// does (a DNS source rate-limits it).
///
/// Given to the balancer with [`Builder::refresh`](crate::Builder::refresh).
pub trait Refresh: Send + Sync + 'static {
    /// The balancer found no endpoint able to take a request: look again when you may.
    fn refresh(&self);
}

impl<F: Fn() + Send + Sync + 'static> Refresh for F {
    fn refresh(&self) {
        self()
    }
}
