//! The bulkhead service.

use crate::adaptive::Controller;
use crate::config::Mode;
use crate::config::{check_queue, ConfigError};
use crate::error::Full;
use crate::future::{Permit, ResponseFuture};
use crate::handle::Handle;
use crate::limiter::{Enqueued, Limiter, WaitSlot, Waiting};
use bulwark_core::clock::nanos;
use bulwark_core::hint::{self, Hint};
use bulwark_core::local::LocalRef;
use bulwark_core::timer::ServiceTimer;
use bulwark_core::{BoxError, Classify, Event, Misuse, OverflowReason, SharedListener};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tower_service::Service;

/// What every clone of one bulkhead, its futures and its handles share, whatever the
/// classifier.
pub(crate) struct Core {
    pub(crate) name: Arc<str>,
    pub(crate) limiter: Limiter,
    pub(crate) mode: Mode,
    /// How long a queued caller waits, nanoseconds (changed through the handle).
    queue_timeout: AtomicU64,
    /// The adaptive limit's controller, if the limit is adaptive.
    pub(crate) adaptive: Option<Controller>,
    listener: Option<SharedListener>,
    #[cfg(feature = "metrics")]
    pub(crate) metrics: crate::metrics::Metrics,
}

impl Core {
    pub(crate) fn new(
        name: &str,
        limit: u32,
        queue: Option<crate::Queue>,
        mode: Mode,
        adaptive: Option<Controller>,
        listener: Option<SharedListener>,
    ) -> Self {
        let capacity = queue.map_or(0, |q| q.capacity);
        let core = Core {
            name: name.into(),
            limiter: Limiter::new(limit, capacity),
            mode,
            queue_timeout: AtomicU64::new(queue.map_or(0, |q| nanos(q.timeout))),
            adaptive,
            listener,
            #[cfg(feature = "metrics")]
            metrics: crate::metrics::Metrics::new(name),
        };
        #[cfg(feature = "metrics")]
        core.metrics.register(&core.limiter);
        core
    }

    /// The queue in force, if any.
    pub(crate) fn queue(&self) -> Option<crate::Queue> {
        let capacity = self.limiter.capacity();
        (capacity > 0).then(|| crate::Queue {
            capacity,
            timeout: Duration::from_nanos(self.queue_timeout.load(Ordering::Relaxed)),
        })
    }

    /// Puts `queue` in force, validated as the builder validates it (see
    /// [`Handle::set_queue`](crate::Handle::set_queue)).
    pub(crate) fn set_queue(&self, queue: Option<crate::Queue>) -> Result<(), ConfigError> {
        check_queue(queue.as_ref(), self.mode)?;
        if queue == self.queue() {
            return Ok(());
        }
        self.queue_timeout
            .store(queue.map_or(0, |q| nanos(q.timeout)), Ordering::Relaxed);
        self.limiter.set_capacity(queue.map_or(0, |q| q.capacity));
        self.settings_changed();
        Ok(())
    }

    /// Reports a change of settings made through the handle.
    pub(crate) fn settings_changed(&self) {
        tracing::info!(bulkhead = %self.name, "bulkhead settings changed");
        if let Some(listener) = &self.listener {
            listener.emit(&Event::SettingsChanged {
                name: &self.name,
                layer: "bulkhead",
            });
        }
    }

    /// Counts and reports a call turned away.
    #[cold]
    pub(crate) fn reject(&self, reason: OverflowReason) {
        let limit = self.limiter.limit();
        tracing::debug!(
            bulkhead = %self.name,
            limit,
            reason = reason.as_str(),
            "bulkhead turned a call away"
        );
        #[cfg(feature = "metrics")]
        self.metrics.rejected(&self.limiter, reason);
        if let Some(listener) = &self.listener {
            listener.emit(&Event::BulkheadRejected {
                name: &self.name,
                limit,
                reason,
            });
        }
    }

    /// Sets the limit the permits use, and reports the change.
    pub(crate) fn set_limit(&self, limit: u32) {
        let from = self.limiter.set_limit(limit);
        if from == limit {
            return;
        }
        tracing::debug!(
            bulkhead = %self.name,
            from,
            to = limit,
            "bulkhead limit changed"
        );
        #[cfg(feature = "metrics")]
        self.metrics.limit(&self.limiter);
        if let Some(listener) = &self.listener {
            listener.emit(&Event::LimitChanged {
                name: &self.name,
                from,
                to: limit,
            });
        }
    }

    /// A call admitted at `start` ended at `now` with `outcome`: one sample for the adaptive
    /// controller, which may move the limit.
    #[inline]
    pub(crate) fn sample(
        &self,
        controller: &Controller,
        start: u64,
        outcome: bulwark_core::Outcome,
    ) {
        let now = self.limiter.clock.now();
        if let Some(limit) = controller.record(start, now, outcome) {
            #[cfg(feature = "metrics")]
            if let Some(min) = controller.min_rtt() {
                self.metrics.min_rtt(&self.limiter, min);
            }
            if limit != self.limiter.limit() {
                self.set_limit(limit);
            }
        }
    }

    /// A permit was taken for a call: the gauges, and the adaptive controller's peak.
    #[inline]
    pub(crate) fn admitted(&self) {
        #[cfg(feature = "metrics")]
        self.metrics.admitted(&self.limiter);
        if let Some(controller) = &self.adaptive {
            controller.admitted(self.limiter.in_flight());
        }
    }

    /// A permit was given back.
    #[inline]
    pub(crate) fn release(&self) {
        self.limiter.release();
        #[cfg(feature = "metrics")]
        self.metrics.released(&self.limiter);
    }
}

/// What every clone of one bulkhead shares: the core and the classifier (used by an adaptive
/// limit only).
pub(crate) struct Shared<C> {
    pub(crate) core: Core,
    pub(crate) classifier: C,
}

/// A service with at most N calls in flight. Built by [`BulkheadLayer`](crate::BulkheadLayer)
/// (a fixed N) or [`AdaptiveLimitLayer`](crate::AdaptiveLimitLayer) (N found from measured
/// latency); see the crate docs.
///
/// Clones share one bulkhead. `poll_ready` takes a permit (or waits for one in the queue, or
/// in readiness mode is `Pending` until one frees up) before it asks the inner service; the
/// response future holds the permit and gives it back when the call ends or the future is
/// dropped. A permit taken by `poll_ready` for a `call` that never comes is given back when
/// the service is dropped.
pub struct Bulkhead<S, C> {
    inner: S,
    local: LocalRef<Shared<C>>,
    ticket: Ticket,
    /// Where this clone waits (made the first time it waits).
    slot: Option<Arc<WaitSlot>>,
    timer: ServiceTimer,
    /// Whether this clone's current readiness wait was counted (once per wait).
    turned_away: bool,
    /// When this clone's caller entered the queue (clock ns), if a recorder wants its wait.
    #[cfg(feature = "metrics")]
    queued_at: Option<u64>,
}

/// What `poll_ready` reserved for the next `call`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ticket {
    None,
    Admitted,
    Refused(OverflowReason),
}

impl<S, C> Bulkhead<S, C> {
    pub(crate) fn from_shared(inner: S, shared: Arc<Shared<C>>) -> Self {
        Bulkhead {
            inner,
            local: LocalRef::new(shared),
            ticket: Ticket::None,
            slot: None,
            timer: ServiceTimer::new(),
            turned_away: false,
            #[cfg(feature = "metrics")]
            queued_at: None,
        }
    }

    #[inline]
    fn core(&self) -> &Core {
        &self.local.get().core
    }

    /// A handle to this bulkhead (shared by every clone): read the calls in flight and queued,
    /// and change the limit.
    pub fn handle(&self) -> Handle
    where
        C: Send + Sync + 'static,
    {
        Handle::new(self.local.shared().clone())
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Every permit is taken: wait in the queue, wait to be woken (readiness mode), or refuse.
    /// `None` if a permit was had after all.
    #[cold]
    #[inline(never)]
    fn overflow<E>(&mut self, cx: &mut Context<'_>) -> Option<Poll<Result<(), E>>> {
        // Shedding, the common case under overload: no wait to set up, nothing to clone.
        let core = self.core();
        if self.slot.is_none() && core.mode == Mode::FailFast && !core.limiter.has_queue() {
            return self.refuse(OverflowReason::Full);
        }
        let shared = self.local.shared().clone();
        let core = &shared.core;
        if let Some(slot) = self.slot.clone() {
            match core.limiter.claim(&slot) {
                Waiting::Granted => return self.admit(),
                Waiting::TimedOut => return self.refuse(OverflowReason::QueueTimeout),
                Waiting::Queued => return self.wait_in_queue(cx, &slot),
                Waiting::Idle | Waiting::Watching => {}
            }
        }
        if core.mode == Mode::FailFast && !core.limiter.has_queue() {
            return self.refuse(OverflowReason::Full);
        }
        let slot = self.slot.get_or_insert_with(Arc::default).clone();
        if core.mode == Mode::Readiness {
            if core.limiter.watch(&slot, cx.waker()) {
                return self.admit();
            }
            if !self.turned_away {
                self.turned_away = true;
                core.reject(OverflowReason::NotReady);
            }
            hint::report(Hint::Full);
            return Some(Poll::Pending);
        }
        let timeout = core.queue_timeout.load(Ordering::Relaxed);
        let deadline = core.limiter.clock.now().saturating_add(timeout);
        match core.limiter.enqueue(&slot, deadline, cx.waker()) {
            Enqueued::Admitted => self.admit(),
            Enqueued::Full => self.refuse(OverflowReason::QueueFull),
            Enqueued::Queued => {
                #[cfg(feature = "metrics")]
                {
                    core.metrics.queued(&core.limiter);
                    self.queued_at = bulwark_core::telemetry::recording()
                        .then(|| deadline.saturating_sub(timeout));
                }
                self.wait_in_queue(cx, &slot)
            }
        }
    }

    /// Queued: wait for a permit until the queue timeout.
    fn wait_in_queue<E>(
        &mut self,
        cx: &mut Context<'_>,
        slot: &Arc<WaitSlot>,
    ) -> Option<Poll<Result<(), E>>> {
        let shared = self.local.shared().clone();
        let limiter = &shared.core.limiter;
        slot.set_waker(cx.waker());
        let deadline = limiter.clock.instant_at(slot.deadline());
        if self.timer.poll_until(deadline, cx).is_pending() {
            // Handed a permit (or timed out) between the look above and the waker's update?
            return match slot.waiting() {
                Waiting::Queued => Some(Poll::Pending),
                _ => self.overflow(cx),
            };
        }
        let granted = limiter.time_out(slot);
        #[cfg(feature = "metrics")]
        shared.core.metrics.queued(limiter);
        if granted {
            self.admit()
        } else {
            self.refuse(OverflowReason::QueueTimeout)
        }
    }

    fn admit<E>(&mut self) -> Option<Poll<Result<(), E>>> {
        self.ticket = Ticket::Admitted;
        self.turned_away = false;
        #[cfg(feature = "metrics")]
        {
            self.queue_waited();
            let core = self.core();
            core.metrics.queued(&core.limiter);
        }
        None
    }

    /// A queued caller's wait ended (let in, or timed out): its length, for the histogram.
    #[cfg(feature = "metrics")]
    fn queue_waited(&mut self) {
        if let Some(at) = self.queued_at.take() {
            let core = self.core();
            let waited = core.limiter.clock.now().saturating_sub(at);
            core.metrics.queue_wait(
                &core.limiter,
                std::time::Duration::from_nanos(waited).as_secs_f64(),
            );
        }
    }

    fn refuse<E>(&mut self, reason: OverflowReason) -> Option<Poll<Result<(), E>>> {
        #[cfg(feature = "metrics")]
        self.queue_waited();
        self.core().reject(reason);
        self.ticket = Ticket::Refused(reason);
        Some(Poll::Ready(Ok(())))
    }
}

impl<S: Clone, C> Clone for Bulkhead<S, C> {
    fn clone(&self) -> Self {
        Bulkhead {
            inner: self.inner.clone(),
            local: self.local.clone(),
            ticket: Ticket::None,
            slot: None,
            timer: ServiceTimer::new(),
            turned_away: false,
            #[cfg(feature = "metrics")]
            queued_at: None,
        }
    }
}

impl<S, C> Drop for Bulkhead<S, C> {
    fn drop(&mut self) {
        if self.ticket == Ticket::Admitted {
            self.core().limiter.release();
        }
        if let Some(slot) = &self.slot {
            self.local.get().core.limiter.leave(slot);
        }
    }
}

impl<S: fmt::Debug, C> fmt::Debug for Bulkhead<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let core = self.core();
        f.debug_struct("Bulkhead")
            .field("inner", &self.inner)
            .field("name", &core.name)
            .field("limit", &core.limiter.limit())
            .field("in_flight", &core.limiter.in_flight())
            .field("mode", &core.mode)
            .finish()
    }
}

impl<S, C, Req> Service<Req> for Bulkhead<S, C>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    C: Classify<S::Response, S::Error> + Send + Sync + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, C>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if self.ticket == Ticket::None {
            if self.core().limiter.try_acquire() {
                self.ticket = Ticket::Admitted;
                self.turned_away = false;
            } else if let Some(answer) = self.overflow(cx) {
                return answer;
            }
        }
        if let Ticket::Refused(_) = self.ticket {
            return Poll::Ready(Ok(()));
        }
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[inline]
    fn call(&mut self, req: Req) -> Self::Future {
        match std::mem::replace(&mut self.ticket, Ticket::None) {
            Ticket::Admitted => {
                let shared = self.local.get();
                shared.core.admitted();
                let start = match shared.core.adaptive {
                    Some(_) => shared.core.limiter.clock.now(),
                    None => 0,
                };
                let permit = Permit::new(self.local.for_call(), start);
                ResponseFuture::called(self.inner.call(req), permit)
            }
            Ticket::Refused(reason) => {
                let core = self.core();
                let full = Full::new(core.name.clone(), core.limiter.limit(), reason);
                ResponseFuture::failed(Box::new(full))
            }
            Ticket::None => {
                ResponseFuture::failed(Box::new(Misuse::called_before_ready("bulkhead")))
            }
        }
    }
}
