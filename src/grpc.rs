//! Our errors as gRPC statuses, for tonic servers (feature `tonic`).
//!
//! tonic's own `Status::from_error` knows its types and hyper's, not ours: an open circuit or a
//! full bulkhead below a tonic handler would reach the client as `UNKNOWN`, and the client's
//! retry policy would not know to wait. [`status`] answers with what a gRPC client expects,
//! from the error and its `source()` chain (the first of these found decides):
//!
//! | error | code | `grpc-retry-pushback-ms` |
//! | --- | --- | --- |
//! | a [`tonic::Status`] (a backend's own answer) | its own: passed through untouched (code, message, details, metadata) | as it came |
//! | [`Open`](bulwark_circuit_breaker::Open) (circuit breaker) | `UNAVAILABLE` | its `retry_after`; none while forced open |
//! | [`NoEndpointReady`](bulwark_balance::NoEndpointReady) (balancer), [`NoTargetReady`](bulwark_failover::NoTargetReady) (failover) | `UNAVAILABLE` | its `retry_after`, else 1000 |
//! | [`RateLimited`](bulwark_rate_limit::RateLimited) (rate limiter) | `UNAVAILABLE` | its `retry_after` |
//! | [`Full`](bulwark_bulkhead::Full) (bulkhead) | `UNAVAILABLE` | none |
//! | [`DeadlineExceeded`](bulwark_core::DeadlineExceeded) (retry, failover), [`AttemptTimedOut`](bulwark_retry::AttemptTimedOut) (retry) | `DEADLINE_EXCEEDED` | none |
//! | a refused, reset or aborted connection (`std::io::Error`) | `UNAVAILABLE` | none |
//! | [`AllFailed`](bulwark_failover::AllFailed) (failover) whose targets' errors decide nothing above | `UNAVAILABLE` | 1000 |
//! | anything else ([`FanOutFailed`](bulwark_fanout::FanOutFailed) included) | `UNKNOWN` | none |
//!
//! The aggregates, `AllFailed` and `FanOutFailed`, are looked through: their `source()` is a
//! target's own error (the last failover target's, the first failing fan-out target's), so a
//! backend's `Status` or a refused connection under them decides. The message is the
//! `Display` of the error that decided (for `UNKNOWN`, and for a connection failure, of the
//! top error: it names every target). The pushback, in whole milliseconds rounded up, is what
//! gRPC's retry policy reads (gRFC A6); a client of this crate reads it with
//! `bulwark_core::pushback` (feature `grpc`). The mapping of which errors are an overload and
//! when to come back is the one [`axum`](crate::axum) uses for HTTP.
//!
//! ```
//! # #[cfg(feature = "circuit-breaker")]
//! # fn main() {
//! use std::time::Duration;
//! use tower_bulwark::circuit_breaker::Open;
//! use tower_bulwark::core::{BoxError, CircuitState};
//!
//! let err: BoxError = Box::new(Open::new(CircuitState::Open, Some(Duration::from_millis(1500))));
//! let status = tower_bulwark::grpc::status(&err);
//! assert_eq!(status.code(), tonic::Code::Unavailable);
//! assert_eq!(status.metadata().get("grpc-retry-pushback-ms").unwrap(), "1500");
//! assert_eq!(status.message(), "circuit open: calls suspended for 1500 ms");
//! # }
//! # #[cfg(not(feature = "circuit-breaker"))]
//! # fn main() {}
//! ```
//!
//! In a tonic handler, map the error of a call through the stack with
//! `.map_err(|e| tower_bulwark::grpc::status(&e))?` (`tests/grpc_status.rs` serves one).

use crate::meaning::{meaning, Meaning, DEFAULT_RETRY_AFTER, MAX_DEPTH};
use bulwark_core::pushback::is_connection_failure;
use bulwark_core::BoxError;
use std::error::Error;
use std::time::Duration;
use tonic::metadata::AsciiMetadataValue;
use tonic::Status;

/// The metadata key a server sets to tell a client when to retry (gRFC A6).
const PUSHBACK: &str = "grpc-retry-pushback-ms";

/// The gRPC status for `err` (see the module docs for the table).
pub fn status(err: &BoxError) -> Status {
    status_of(&**err)
}

/// [`status`], for an error that is not boxed.
pub fn status_of(err: &(dyn Error + 'static)) -> Status {
    let mut current = Some(err);
    let mut all_failed = None;
    for _ in 0..MAX_DEPTH {
        let Some(e) = current else { break };
        if let Some(status) = e.downcast_ref::<Status>() {
            return copy(status);
        }
        match meaning(e) {
            Some(Meaning::Unavailable {
                retry_after,
                otherwise,
            }) => return unavailable(e.to_string(), retry_after.or(otherwise)),
            Some(Meaning::TimedOut) => return Status::deadline_exceeded(e.to_string()),
            Some(Meaning::AllFailed) => {
                all_failed.get_or_insert(e);
            }
            Some(Meaning::FanOutFailed) => {}
            None => {
                if is_connection_failure(e) {
                    return unavailable(err.to_string(), None);
                }
            }
        }
        current = e.source();
    }
    match all_failed {
        Some(e) => unavailable(e.to_string(), Some(DEFAULT_RETRY_AFTER)),
        None => Status::unknown(err.to_string()),
    }
}

/// `UNAVAILABLE`, with the pushback when there is one.
fn unavailable(message: String, retry_after: Option<Duration>) -> Status {
    let mut status = Status::unavailable(message);
    if let Some(after) = retry_after {
        let ms = u64::try_from(after.as_nanos().div_ceil(1_000_000)).unwrap_or(u64::MAX);
        status
            .metadata_mut()
            .insert(PUSHBACK, AsciiMetadataValue::from(ms));
    }
    status
}

/// A backend's status, as it came (a `Status` cannot be cloned: its own source stays with it).
fn copy(status: &Status) -> Status {
    Status::with_details_and_metadata(
        status.code(),
        status.message(),
        status.details().to_vec().into(),
        status.metadata().clone(),
    )
}
