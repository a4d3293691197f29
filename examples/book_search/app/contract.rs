//! The demo's contract with its stores, declared once: every layer of a path takes what it
//! needs from the same classifier (the breakers, the balancer's ejection and the store
//! clients' counts ask whether a store failed; the retry and the failover ask whether a request
//! may go to another store, and when).

use super::client::Answer;
use super::config::Config;
use http::StatusCode;
use tower_bulwark::core::{BoxError, Classify, Decision, GiveUpReason, HttpClassifier, Outcome};
use tower_bulwark::{balance, failover};

/// The read path's contract: every error and every 5xx counts as a store's failure (for its
/// breaker and for ejection); an error and the statuses of `attempt.failover_codes` (502, 503,
/// 504 by default) go to another store; a 404, and every other status such as a 500, is the
/// answer, passed back as it came. When no store could take the request (none ready within
/// `wait_for_healthy`, or every circuit open), sending it again would only wait as long again:
/// that is the answer too.
#[derive(Clone, Copy, Debug)]
pub struct Read {
    http: HttpClassifier,
}

/// The read contract for `config`.
pub fn read(config: &Config) -> Read {
    Read {
        http: HttpClassifier::new()
            .resend_statuses(config.attempt.failover_codes.iter().copied().collect()),
    }
}

impl Classify<Answer, BoxError> for Read {
    fn classify(&self, result: &Result<Answer, BoxError>) -> Outcome {
        self.http.classify(result)
    }

    fn resend(&self, result: &Result<Answer, BoxError>) -> Decision {
        match result {
            Err(e) if e.is::<balance::NoEndpointReady>() || e.is::<failover::NoTargetReady>() => {
                Decision::GiveUp(GiveUpReason::NotRetryable)
            }
            _ => self.http.resend(result),
        }
    }
}

/// The read path's hedging contract: a hedge is sent for slowness only. Any answer ends the
/// request's hedging and goes up to the retry, which sends a failed read to a store it has not
/// been to (each store once): were the hedging layer to hedge at once on a failure too (gRPC
/// A6's non-fatal codes, for a stack with no retry above), a store could get the same read
/// twice. Failure is still counted as [`Read`] counts it.
#[derive(Clone, Copy, Debug)]
pub struct Hedge(pub Read);

impl Classify<Answer, BoxError> for Hedge {
    fn classify(&self, result: &Result<Answer, BoxError>) -> Outcome {
        self.0.classify(result)
    }

    fn resend(&self, _: &Result<Answer, BoxError>) -> Decision {
        Decision::Accept
    }
}

/// The write path's contract, per store: only a 201 is a success. An error, a 5xx, a 408 or a
/// 429 is sent to the store again; a 409 (the title is stored with other fields), a 507 (the
/// store is full) or another 4xx will not change, so it is not. The store's `POST /books` is
/// idempotent, so sending it again is safe.
#[derive(Clone, Copy, Debug, Default)]
pub struct Write;

impl Classify<Answer, BoxError> for Write {
    fn classify(&self, result: &Result<Answer, BoxError>) -> Outcome {
        match result {
            Ok(resp) if resp.status() == StatusCode::CREATED => Outcome::Success,
            _ => Outcome::Failure,
        }
    }

    fn resend(&self, result: &Result<Answer, BoxError>) -> Decision {
        let status = match result {
            Ok(resp) => resp.status(),
            Err(_) => return Decision::Retry,
        };
        if status == StatusCode::CREATED {
            Decision::Accept
        } else if status.is_server_error() && status != StatusCode::INSUFFICIENT_STORAGE
            || status == StatusCode::REQUEST_TIMEOUT
            || status == StatusCode::TOO_MANY_REQUESTS
        {
            Decision::Retry
        } else if status.is_client_error() || status == StatusCode::INSUFFICIENT_STORAGE {
            Decision::GiveUp(GiveUpReason::NotRetryable)
        } else {
            Decision::Accept
        }
    }
}
