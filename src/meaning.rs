//! What one of this project's errors means to a server answering its own caller, decided once
//! for every mapping: axum's [`ErrorInfo`](crate::axum::ErrorInfo) and gRPC's `Status`
//! (`crate::grpc`) both read it, so the two never disagree on which error is an overload and
//! when the caller may come back.

use std::error::Error;
use std::time::Duration;

/// How far down a `source()` chain to look (a guard against a chain that loops).
pub(crate) const MAX_DEPTH: usize = 32;

/// When the caller may come back if the error says the service is unavailable but not for how
/// long: the default `wait_for_ready` of the balancer and the failover set, about as long as
/// the request already waited for a target.
#[cfg_attr(not(any(feature = "balance", feature = "failover")), allow(dead_code))]
pub(crate) const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);

/// What an error of ours means.
pub(crate) enum Meaning {
    /// Overloaded or refusing calls now (open circuit, no endpoint or target ready, bulkhead
    /// full, rate limited): come back after `retry_after` as the error says it, or after
    /// `otherwise` when the error does not say; neither for no promise (a forced-open
    /// breaker, a full bulkhead).
    #[cfg_attr(
        not(any(
            feature = "circuit-breaker",
            feature = "balance",
            feature = "failover",
            feature = "rate-limit",
            feature = "bulkhead"
        )),
        allow(dead_code)
    )]
    Unavailable {
        retry_after: Option<Duration>,
        otherwise: Option<Duration>,
    },
    /// A deadline or an attempt timeout passed.
    TimedOut,
    /// Every failover target failed (the targets' errors are its sources).
    #[cfg_attr(not(feature = "failover"), allow(dead_code))]
    AllFailed,
    /// A fan-out's policy was not met (the targets' errors are its sources).
    #[cfg_attr(not(feature = "fanout"), allow(dead_code))]
    FanOutFailed,
}

/// The meaning of `e` itself (not of its sources), if it is one of this project's errors.
pub(crate) fn meaning(e: &(dyn Error + 'static)) -> Option<Meaning> {
    #[cfg(feature = "circuit-breaker")]
    if let Some(open) = e.downcast_ref::<bulwark_circuit_breaker::Open>() {
        // `None` is forced open: no promise to make.
        return Some(Meaning::Unavailable {
            retry_after: open.retry_after(),
            otherwise: None,
        });
    }
    #[cfg(feature = "rate-limit")]
    if let Some(limited) = e.downcast_ref::<bulwark_rate_limit::RateLimited>() {
        return Some(Meaning::Unavailable {
            retry_after: Some(limited.retry_after()),
            otherwise: None,
        });
    }
    #[cfg(feature = "bulkhead")]
    if e.is::<bulwark_bulkhead::Full>() {
        return Some(Meaning::Unavailable {
            retry_after: None,
            otherwise: None,
        });
    }
    #[cfg(feature = "balance")]
    if let Some(none) = e.downcast_ref::<bulwark_balance::NoEndpointReady>() {
        return Some(Meaning::Unavailable {
            retry_after: none.retry_after,
            otherwise: Some(DEFAULT_RETRY_AFTER),
        });
    }
    #[cfg(feature = "failover")]
    if let Some(none) = e.downcast_ref::<bulwark_failover::NoTargetReady>() {
        return Some(Meaning::Unavailable {
            retry_after: none.retry_after,
            otherwise: Some(DEFAULT_RETRY_AFTER),
        });
    }
    #[cfg(feature = "failover")]
    if e.is::<bulwark_failover::AllFailed>() {
        return Some(Meaning::AllFailed);
    }
    if e.is::<bulwark_core::DeadlineExceeded>() {
        return Some(Meaning::TimedOut);
    }
    #[cfg(feature = "retry")]
    if e.is::<bulwark_retry::AttemptTimedOut>() {
        return Some(Meaning::TimedOut);
    }
    #[cfg(feature = "fanout")]
    if e.is::<bulwark_fanout::FanOutFailed>() {
        return Some(Meaning::FanOutFailed);
    }
    None
}
