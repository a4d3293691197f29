//! The rate-limited service.

use crate::config::Mode;
use crate::future::ResponseFuture;
use crate::handle::Handle;
use crate::limiter::{Limiter, Reservation};
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
}

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

    /// Gives back what `poll_ready` took and `call` did not use.
    fn release(&mut self) {
        if let Ticket::Reserved(r) = std::mem::replace(&mut self.ticket, Ticket::None) {
            self.limiter.release(r);
        }
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
            match limiter.acquire(limiter.now(), 0) {
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
                let limiter = &*self.limiter;
                match limiter.acquire(limiter.now(), limiter.max_wait) {
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
