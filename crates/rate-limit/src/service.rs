//! The rate-limited service.

use crate::config::Mode;
use crate::config::LEASE_SLACK;
use crate::future::ResponseFuture;
use crate::handle::Handle;
use crate::limiter::{Limiter, Reservation, Taken};
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
    ticket: Ticket,
    /// The timer a caller waits on (for its reserved token, or in readiness mode for the next
    /// token): made the first time this clone waits.
    sleep: ServiceTimer,
    /// Whether this clone's current readiness wait was counted as refused (once per wait).
    turned_away: bool,
    /// Tokens this clone took from the bucket and has not spent (with `lease` above 1).
    lease: Lease,
    /// Whether this clone has called before: only such a clone leases (one made for a single
    /// call, as axum's router and a retry make them, takes one token).
    called: bool,
}

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

    /// The tokens after the first of `taken`.
    fn after(taken: &Taken) -> Self {
        Lease {
            next: taken.first.tat.saturating_add(taken.interval),
            end: taken.end,
            interval: taken.interval,
        }
    }

    fn is_empty(&self) -> bool {
        self.next > self.end
    }

    /// The next leased token, if its slot is at most [`LEASE_SLACK`] old at `now`.
    #[inline]
    fn take(&mut self, now: u64) -> Option<Reservation> {
        if self.is_empty() || self.next.saturating_add(LEASE_SLACK_NS) <= now {
            return None;
        }
        let tat = self.next;
        self.next = tat.saturating_add(self.interval);
        Some(Reservation {
            prev: tat - self.interval,
            tat,
            at: 0,
        })
    }
}

const LEASE_SLACK_NS: u64 = LEASE_SLACK.as_nanos() as u64;

/// What `poll_ready` took for the next `call`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ticket {
    None,
    /// A token: at once, or (`at` above zero) once its time comes.
    Reserved(Reservation),
    /// No token within the wait allowed; one comes at `retry_at` (fail-fast mode).
    Refused {
        retry_at: u64,
    },
}

impl<S> RateLimit<S> {
    pub(crate) fn new(inner: S, limiter: Arc<Limiter>) -> Self {
        RateLimit {
            inner,
            limiter,
            ticket: Ticket::None,
            sleep: ServiceTimer::new(),
            turned_away: false,
            lease: Lease::NONE,
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
    /// it (one range of slots).
    fn release(&mut self) {
        let lease = std::mem::replace(&mut self.lease, Lease::NONE);
        match std::mem::replace(&mut self.ticket, Ticket::None) {
            Ticket::Reserved(r) => {
                let end = if lease.is_empty() { r.tat } else { lease.end };
                self.limiter.release(r.prev, end);
            }
            _ if !lease.is_empty() => {
                self.limiter.release(lease.next - lease.interval, lease.end);
            }
            _ => {}
        }
    }

    /// Takes a token from the bucket (the lease being spent or stale: what is left of it is
    /// given back first, if it can be).
    #[inline]
    fn acquire(&mut self, now: u64, max_wait: u64) -> Result<Reservation, u64> {
        if !self.lease.is_empty() {
            self.release();
        }
        let want = if self.called { self.limiter.lease } else { 1 };
        let taken = self.limiter.acquire(now, max_wait, want)?;
        if taken.end != taken.first.tat {
            self.lease = Lease::after(&taken);
        }
        Ok(taken.first)
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
            self.ticket = Ticket::Refused { retry_at };
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
                Ok(r) => {
                    self.ticket = Ticket::Reserved(r);
                    self.turned_away = false;
                    return None;
                }
                Err(at) => retry_at = at,
            }
        }
        // The timer keeps firing and the token keeps going to others: yield, try again.
        cx.waker().wake_by_ref();
        Some(Poll::Pending)
    }

    /// Waits for a reserved token's time. Ready once it has come.
    #[cold]
    fn wait(&mut self, cx: &mut Context<'_>, at: u64) -> Poll<()> {
        let ready = self.sleep.poll_until(self.limiter.instant_at(at), cx);
        if ready.is_ready() {
            if let Ticket::Reserved(r) = &mut self.ticket {
                r.at = 0;
            }
            self.limiter.waited();
        }
        ready
    }

    /// Answers a call that `poll_ready` found refused.
    #[cold]
    fn refuse<F>(&self, retry_at: u64) -> ResponseFuture<F> {
        let retry_after = Duration::from_nanos(retry_at.saturating_sub(self.limiter.now()));
        ResponseFuture::failed(Box::new(self.limiter.refuse(retry_after)))
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
        match self.ticket {
            Ticket::None => {
                let now = self.limiter.now();
                let taken = match self.lease.take(now) {
                    Some(r) => Ok(r),
                    None => self.acquire(now, self.limiter.max_wait),
                };
                match taken {
                    Ok(r) => {
                        self.ticket = Ticket::Reserved(r);
                        self.turned_away = false;
                    }
                    Err(retry_at) => {
                        if let Some(answer) = self.refused(cx, retry_at) {
                            return answer;
                        }
                    }
                }
            }
            Ticket::Refused { .. } => return Poll::Ready(Ok(())),
            Ticket::Reserved(_) => {}
        }
        if let Ticket::Reserved(Reservation { at, .. }) = self.ticket {
            if at != 0 && self.wait(cx, at).is_pending() {
                return Poll::Pending;
            }
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
        match std::mem::replace(&mut self.ticket, Ticket::None) {
            Ticket::Reserved(Reservation { at: 0, .. }) => {
                self.called = true;
                ResponseFuture::called(self.inner.call(req))
            }
            Ticket::Refused { retry_at } => self.refuse(retry_at),
            ticket => {
                // Not polled ready (or still waiting for its token): put back what it holds.
                self.ticket = ticket;
                ResponseFuture::failed(Box::new(Misuse::called_before_ready("rate limit")))
            }
        }
    }
}
