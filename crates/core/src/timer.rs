//! One timer per future or service, armed for a deadline and re-armed when it moves.
//!
//! A layer that waits (a retry's backoff, an attempt timeout, a failover's interval, a
//! balancer or breaker waiting for readiness) keeps one tokio [`Sleep`] and points it at
//! whatever it waits for next. [`poll_until`] does that for a timer kept inline in a pinned
//! future (an `Option<Sleep>` field marked `#[pin]`, as tower's `Timeout` keeps its own): no
//! allocation, ever. A service is moved between polls and cannot hold a `Sleep` inline, so
//! [`ServiceTimer`] boxes one the first time the service has to wait and reuses it after
//! that; a service that never waits allocates nothing.
//!
//! ```
//! use bulwark_core::timer::poll_until;
//! use std::future::poll_fn;
//! use std::pin::pin;
//! use std::time::Duration;
//! use tokio::time::{Instant, Sleep};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let mut timer = pin!(None::<Sleep>);
//! let at = Instant::now() + Duration::from_secs(1);
//! poll_fn(|cx| poll_until(timer.as_mut(), at, cx)).await;
//! assert!(Instant::now() >= at);
//! // The same timer, re-armed for a later deadline.
//! let later = at + Duration::from_secs(1);
//! poll_fn(|cx| poll_until(timer.as_mut(), later, cx)).await;
//! assert!(Instant::now() >= later);
//! # }
//! ```

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::time::{Instant, Sleep};

/// Arms `timer` for `at` (making it the first time, resetting it when its deadline differs)
/// and polls it: `Ready` once `at` has passed, `Pending` (with the task's waker registered)
/// until then.
#[inline]
pub fn poll_until(
    mut timer: Pin<&mut Option<Sleep>>,
    at: Instant,
    cx: &mut Context<'_>,
) -> Poll<()> {
    match timer.as_mut().as_pin_mut() {
        Some(sleep) => {
            if sleep.deadline() != at {
                sleep.reset(at);
            }
        }
        None => timer.set(Some(tokio::time::sleep_until(at))),
    }
    match timer.as_pin_mut() {
        Some(sleep) => sleep.poll(cx),
        None => Poll::Pending,
    }
}

/// The timer of a service (which is `Unpin` and moves between polls): boxed the first time
/// it is armed, then re-armed in place. A clone of a service starts with none.
#[derive(Default)]
pub struct ServiceTimer(Option<Pin<Box<Option<Sleep>>>>);

impl ServiceTimer {
    /// A timer not armed yet (no allocation).
    pub const fn new() -> Self {
        ServiceTimer(None)
    }

    /// [`poll_until`] on this service's timer, boxing it on first use.
    #[inline]
    pub fn poll_until(&mut self, at: Instant, cx: &mut Context<'_>) -> Poll<()> {
        let timer = self.0.get_or_insert_with(|| Box::pin(None));
        poll_until(timer.as_mut(), at, cx)
    }
}

impl fmt::Debug for ServiceTimer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let deadline = self
            .0
            .as_ref()
            .and_then(|t| t.as_ref().get_ref().as_ref().map(Sleep::deadline));
        f.debug_struct("ServiceTimer")
            .field("deadline", &deadline)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::poll_fn;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn a_service_timer_fires_and_re_arms() {
        let mut timer = ServiceTimer::new();
        let start = Instant::now();
        let at = start + Duration::from_millis(10);
        poll_fn(|cx| timer.poll_until(at, cx)).await;
        assert_eq!(Instant::now(), at);
        // Moved to an earlier deadline than a pending one: the earlier one wins.
        let later = at + Duration::from_secs(5);
        let sooner = at + Duration::from_millis(5);
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        assert!(timer.poll_until(later, &mut cx).is_pending());
        poll_fn(|cx| timer.poll_until(sooner, cx)).await;
        assert_eq!(Instant::now(), sooner);
        // A deadline already past is ready at once.
        assert!(timer.poll_until(start, &mut cx).is_ready());
    }
}
