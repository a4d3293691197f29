//! The rate-limited service.

use crate::config::Mode;
use crate::config::LEASE_SLACK;
use crate::future::ResponseFuture;
use crate::handle::Handle;
use crate::limiter::Limiter;
use bulwark_core::hint::{self, Hint};
use bulwark_core::timer::ServiceTimer;
use bulwark_core::{BoxError, Misuse};
use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tower_service::Service;

/// A service behind a rate limiter. Built by [`RateLimitLayer`](crate::RateLimitLayer); see
/// the crate docs.
///
/// `Clone`, and every clone (and every service the same layer wrapped) takes its tokens from
/// one bucket, whatever thread it runs on. `poll_ready` takes the token (or reserves one a
/// wait away, and waits for it); a token taken and not used by a `call` (the service dropped
/// between the two) is given back if no later caller reserved one since.
pub struct RateLimit<S> {
    inner: S,
    limiter: Arc<Limiter>,
    /// What `poll_ready` took for the next `call`: [`NONE`], [`REFUSED`], or the time slot of
    /// the token taken (a bucket `tat`, never 0 or `u64::MAX`). One word, so the hot path
    /// writes and reads back no wide value.
    ticket: u64,
    /// For a token: when its call may go (zero: at once). For a refusal: when the next token
    /// is due.
    at: u64,
    /// Tokens this clone took from the bucket and has not spent (with `lease` above 1), and
    /// the interval of the latest taken.
    lease: Lease,
    /// The timer a caller waits on (for its reserved token, or in readiness mode for the next
    /// token): made the first time this clone waits.
    sleep: ServiceTimer,
    /// Whether this clone's current readiness wait was counted as refused (once per wait).
    turned_away: bool,
    /// Whether this clone has called before: only such a clone leases (one made for a single
    /// call, as axum's router and a retry make them, takes one token).
    called: bool,
}

/// No ticket.
const NONE: u64 = 0;
/// Refused, in fail-fast mode: `call` answers with the refusal.
const REFUSED: u64 = u64::MAX;

const LEASE_SLACK_NS: u64 = LEASE_SLACK.as_nanos() as u64;

/// Leased tokens: the time slots `next`, `next + interval`, ... up to `end` (none when `next`
/// is past `end`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Lease {
    next: u64,
    end: u64,
    interval: u64,
}

impl Lease {
    const NONE: Lease = Lease {
        next: u64::MAX,
        end: 0,
        interval: 1,
    };

    #[inline]
    fn is_empty(&self) -> bool {
        self.next > self.end
    }

    /// The next leased token's slot, if it is at most [`LEASE_SLACK`] old at `now`.
    #[inline]
    fn take(&mut self, now: u64) -> Option<u64> {
        if self.is_empty() || self.next.saturating_add(LEASE_SLACK_NS) <= now {
            return None;
        }
        let tat = self.next;
        self.next = tat.saturating_add(self.interval);
        Some(tat)
    }
}

impl<S> RateLimit<S> {
    pub(crate) fn new(inner: S, limiter: Arc<Limiter>) -> Self {
        RateLimit {
            inner,
            limiter,
            ticket: NONE,
            at: 0,
            lease: Lease::NONE,
            sleep: ServiceTimer::new(),
            turned_away: false,
            called: false,
        }
    }

    /// A handle to the limiter (shared by every clone).
    pub fn handle(&self) -> Handle {
        Handle::new(self.limiter.clone())
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Gives back what `poll_ready` took and `call` did not use, with the tokens leased after
    /// it (one run of slots).
    fn release(&mut self) {
        let lease = std::mem::replace(&mut self.lease, Lease::NONE);
        let ticket = std::mem::replace(&mut self.ticket, NONE);
        let end = if lease.is_empty() { ticket } else { lease.end };
        let first = if ticket != NONE && ticket != REFUSED {
            ticket
        } else if !lease.is_empty() {
            lease.next
        } else {
            return;
        };
        self.limiter.release(first - lease.interval, end);
    }

    /// Takes a token from the bucket (what is left of a stale lease given back first, if it
    /// can be).
    fn acquire(&mut self, now: u64, max_wait: u64) -> Result<(), u64> {
        if !self.lease.is_empty() {
            self.release();
        }
        let want = if self.called { self.limiter.lease } else { 1 };
        let taken = self.limiter.acquire(now, max_wait, want)?;
        self.ticket = taken.tat;
        self.at = taken.at;
        self.lease = Lease {
            next: taken.tat + taken.interval,
            end: taken.end,
            interval: taken.interval,
        };
        self.turned_away = false;
        Ok(())
    }

    /// No token for now. Fail-fast: ready at once, `call` answers with the refusal.
    /// Readiness: pending, with a wake-up for when the next token is due, the refusal counted
    /// once per wait and the layer above told why. `None` if a second look found a token.
    #[cold]
    fn refused<E>(
        &mut self,
        cx: &mut Context<'_>,
        mut retry_at: u64,
    ) -> Option<Poll<Result<(), E>>> {
        let limiter = self.limiter.clone();
        if limiter.mode == Mode::FailFast {
            self.ticket = REFUSED;
            self.at = retry_at;
            return Some(Poll::Ready(Ok(())));
        }
        // Readiness: nothing reserved while waiting; look again when the next token is due.
        for _ in 0..3 {
            if self
                .sleep
                .poll_until(limiter.instant_at(retry_at), cx)
                .is_pending()
            {
                let retry_in = Duration::from_nanos(retry_at.saturating_sub(limiter.now()));
                if !self.turned_away {
                    self.turned_away = true;
                    limiter.refuse(retry_in);
                }
                hint::report(Hint::RateLimited { retry_in });
                return Some(Poll::Pending);
            }
            match self.acquire(limiter.now(), 0) {
                Ok(()) => return None,
                Err(at) => retry_at = at,
            }
        }
        // The timer keeps firing and the token keeps going to others: yield, try again.
        cx.waker().wake_by_ref();
        Some(Poll::Pending)
    }

    /// Waits for the reserved token's time (`self.at`). Ready once it has come.
    #[cold]
    fn wait(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let ready = self.sleep.poll_until(self.limiter.instant_at(self.at), cx);
        if ready.is_ready() {
            self.at = 0;
            self.limiter.waited();
        }
        ready
    }

    /// Answers a call that `poll_ready` found refused.
    #[cold]
    fn refuse<F>(&mut self) -> ResponseFuture<F> {
        self.ticket = NONE;
        let retry_at = std::mem::take(&mut self.at);
        let retry_after = Duration::from_nanos(retry_at.saturating_sub(self.limiter.now()));
        ResponseFuture::failed(Box::new(self.limiter.refuse(retry_after)))
    }

    /// Answers a call without a token (not polled ready, or still waiting for its token,
    /// which it keeps).
    #[cold]
    fn misuse<F>(&self) -> ResponseFuture<F> {
        ResponseFuture::failed(Box::new(Misuse::called_before_ready("rate limit")))
    }
}

impl<S: Clone> Clone for RateLimit<S> {
    fn clone(&self) -> Self {
        RateLimit::new(self.inner.clone(), self.limiter.clone())
    }
}

impl<S> Drop for RateLimit<S> {
    fn drop(&mut self) {
        self.release();
    }
}

impl<S: fmt::Debug> fmt::Debug for RateLimit<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimit")
            .field("inner", &self.inner)
            .field("limiter", &self.limiter)
            .field("ticket", &self.ticket)
            .field("lease", &self.lease)
            .finish()
    }
}

impl<S, Req> Service<Req> for RateLimit<S>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if self.ticket == NONE {
            let now = self.limiter.now();
            if let Some(tat) = self.lease.take(now) {
                self.ticket = tat;
            } else if let Err(retry_at) = self.acquire(now, self.limiter.max_wait) {
                if let Some(answer) = self.refused(cx, retry_at) {
                    return answer;
                }
            }
        } else if self.ticket == REFUSED {
            return Poll::Ready(Ok(()));
        }
        if self.at != 0 && self.wait(cx).is_pending() {
            return Poll::Pending;
        }
        match self.inner.poll_ready(cx) {
            Poll::Ready(Err(e)) => {
                self.release();
                Poll::Ready(Err(e.into()))
            }
            other => other.map_err(Into::into),
        }
    }

    #[inline]
    fn call(&mut self, req: Req) -> Self::Future {
        if self.ticket == NONE || self.at != 0 {
            return if self.ticket == REFUSED {
                self.refuse()
            } else {
                self.misuse()
            };
        }
        self.ticket = NONE;
        self.called = true;
        ResponseFuture::called(self.inner.call(req))
    }
}
