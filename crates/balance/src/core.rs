//! The balancer's shared state: settings, the member list, and one record per endpoint.

use crate::config::{BalanceConfig, ConfigError, SlowStart, Strategy};
use crate::key::Refresh;
use crate::sync::{lock, AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Mutex, Ordering};
use bulwark_core::clock::{nanos, Clock};
use bulwark_core::config::fixed;
use bulwark_core::rolling::SlotSnapshots;
use bulwark_core::{Event, SharedListener};
use std::sync::Arc;
use std::task::Waker;
use std::time::Duration;
use tokio::time::Instant;

/// What the balancer knows of one endpoint. Held by the balancer while the endpoint is a
/// member, by each response future in flight on it (so a request on an endpoint removed
/// meanwhile still finishes and records its outcome), and by the member list (for the handle
/// and the health checks).
#[derive(Debug)]
pub(crate) struct EndpointState {
    /// A stable identifier (its position for a static list), used in events.
    pub(crate) id: usize,
    pub(crate) name: String,
    /// Its position in the member list (kept by the writer of the list, under its lock).
    pub(crate) index: AtomicUsize,
    /// Its weight (at least 1) and priority (lower is preferred), from its key.
    pub(crate) weight: AtomicU32,
    pub(crate) priority: AtomicU32,
    /// Clock time (ns) it joined.
    joined_at: u64,
    /// Clock time (ns) its slow start began; 0 when it is not ramping up.
    warm_from: AtomicU64,
    /// Clock time (ns) it last came back from an ejection (the ejection count decays from
    /// then on); 0 if never ejected.
    returned_at: AtomicU64,
    pub(crate) in_flight: AtomicU32,
    /// The sum of the start times of its timed requests in flight, in units of 1024 ns (so
    /// a year of clock time times a hundred thousand requests fits): with `in_flight`, how
    /// long they have been waiting on average.
    pub(crate) started_sum: AtomicU64,
    pub(crate) successes: AtomicU64,
    pub(crate) failures: AtomicU64,
    consecutive: AtomicU32,
    /// Clock time (ns) until which the endpoint is ejected; 0 when it is not.
    ejected_until: AtomicU64,
    ejections: AtomicU32,
    healthy: AtomicBool,
    /// Whether the endpoint itself (a health gate) said it is unhealthy, the last time the
    /// balancer asked it for readiness; cleared when it is ready again.
    gated: AtomicBool,
    removed: AtomicBool,
    /// Peak-EWMA latency in ns (f64 bits), and when it was last updated (ns; 0 = never).
    ewma: AtomicU64,
    ewma_at: AtomicU64,
    /// Successes and failures per tenth of the failure-rate window, when it is on.
    rate_window: Option<SlotSnapshots<2>>,
    #[cfg(feature = "metrics")]
    pub(crate) metrics: crate::metrics::EndpointMetrics,
}

impl EndpointState {
    /// Its position in the member list.
    #[inline]
    pub(crate) fn index(&self) -> usize {
        self.index.load(Ordering::Acquire)
    }

    /// Whether it left the balancer.
    pub(crate) fn is_removed(&self) -> bool {
        self.removed.load(Ordering::Acquire)
    }

    pub(crate) fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Acquire)
    }

    /// Whether the endpoint itself (a health gate) said it is unhealthy when last asked.
    #[inline]
    pub(crate) fn is_gated(&self) -> bool {
        self.gated.load(Ordering::Relaxed)
    }

    /// Whether it is healthy in every way the balancer knows: its health checks (or an
    /// operator) and its own gate.
    pub(crate) fn reads_healthy(&self) -> bool {
        self.is_healthy() && !self.is_gated()
    }

    /// When its ejection ends (ns), if it is out.
    pub(crate) fn ejected_until(&self) -> Option<u64> {
        match self.ejected_until.load(Ordering::Acquire) {
            0 => None,
            u => Some(u),
        }
    }
}

#[cfg(all(test, bulwark_loom))]
impl EndpointState {
    /// How many times it was ejected (for the loom model).
    pub(crate) fn ejections(&self) -> u32 {
        self.ejections.load(Ordering::Acquire)
    }
}

/// `panic_threshold` off (not the bits of a share in `(0, 1]`).
const NO_PANIC: u64 = u64::MAX;

/// Tells balancers apart in a request's `Attempts`.
static NEXT_SCOPE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

pub(crate) struct Core<C> {
    pub(crate) name: Box<str>,
    /// This balancer's identifier in a request's `Attempts`.
    pub(crate) scope: usize,
    pub(crate) strategy: Strategy,
    /// The settings in force (changed through the handle). The request path reads the
    /// settings it needs from the atomics below; an ejection (rare) reads its durations and
    /// cap from here.
    settings: Mutex<BalanceConfig>,
    /// `ejection.consecutive_failures` (0: off).
    eject_after: AtomicU32,
    /// `ejection.failure_rate`: the rate (f64 bits) and the least requests; its window is fixed.
    eject_rate: AtomicU64,
    eject_min_requests: AtomicU32,
    /// `ejection.failure_rate.window`, if the rule is on (fixed when built).
    rate_window: Option<Duration>,
    /// `wait_for_ready`, nanoseconds.
    wait_for_ready: AtomicU64,
    slow_start: Option<SlowStart>,
    /// The end (ns) of the latest slow start: before it, weights are not all equal.
    warm_until: AtomicU64,
    /// Whether the members' weights differ (or some member's is not 1).
    weights_vary: AtomicBool,
    /// The largest weight of a member.
    max_weight: AtomicU32,
    /// Members per priority level, and per weight (kept with the member list).
    levels: Mutex<std::collections::BTreeMap<u32, usize>>,
    weights: Mutex<std::collections::BTreeMap<u32, usize>>,
    /// The most preferred priority that has a member that is healthy and not ejected
    /// (`u32::MAX` when none has); members of a less preferred one are not picked.
    active_priority: AtomicU32,
    /// Whether members have more than one priority.
    prioritized: AtomicBool,
    /// The discovery source to ask to look again when nothing can take a request.
    refresh: Option<Arc<dyn Refresh>>,
    decay_nanos: f64,
    default_rtt: f64,
    members: Mutex<Vec<Arc<EndpointState>>>,
    count: AtomicUsize,
    next_id: AtomicUsize,
    /// Clones made so far: each clone starts its random sequence and its round-robin
    /// position from its own number, so balancers cloned once per request (by a retry
    /// layer, `oneshot`, axum) do not all make the same first pick.
    clones: AtomicU64,
    /// Round robin's cursor.
    turn: AtomicUsize,
    ejected: AtomicUsize,
    /// Members marked healthy (for panic mode).
    healthy: AtomicUsize,
    /// `panic_threshold` (f64 bits; [`NO_PANIC`]: off).
    panic_threshold: AtomicU64,
    /// The earliest time (ns) an ejection ends, or `u64::MAX`: sweeping is skipped before it.
    next_due: AtomicU64,
    pub(crate) classifier: C,
    listener: Option<SharedListener>,
    clock: Clock,
    /// Balancers waiting for an endpoint, woken when one is marked healthy or added.
    /// Each with the clock time of its latest registration (see `register`).
    waiters: Mutex<Vec<(Waker, u64)>>,
    /// The health-check task, stopped when the last reference to the balancer goes.
    pub(crate) health_task: Mutex<Option<tokio::task::AbortHandle>>,
}

impl<C> Core<C> {
    /// The next turn of round robin (shared by the clones).
    #[inline]
    pub(crate) fn next_turn(&self) -> usize {
        self.turn.fetch_add(1, Ordering::Relaxed)
    }

    /// A number for a new clone of the balancer (see `clones`).
    #[inline]
    pub(crate) fn next_clone(&self) -> u64 {
        self.clones.fetch_add(1, Ordering::Relaxed)
    }
}

impl<C> Drop for Core<C> {
    fn drop(&mut self) {
        if let Some(task) = lock(&self.health_task).take() {
            task.abort();
        }
    }
}

impl<C> std::fmt::Debug for Core<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Balance")
            .field("name", &self.name)
            .field("strategy", &self.strategy)
            .field("endpoints", &self.count.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

#[cfg(all(test, bulwark_loom))]
impl<C> Core<C> {
    /// The members marked healthy and the members ejected, as counted (for the loom model).
    pub(crate) fn counts(&self) -> (usize, usize) {
        (
            self.healthy.load(Ordering::Acquire),
            self.ejected.load(Ordering::Acquire),
        )
    }
}

impl<C> Core<C> {
    #[cfg(all(test, bulwark_loom))]
    pub(crate) fn new(
        config: &BalanceConfig,
        classifier: C,
        listener: Option<SharedListener>,
    ) -> Self {
        Self::with_refresh(config, classifier, listener, None)
    }

    pub(crate) fn with_refresh(
        config: &BalanceConfig,
        classifier: C,
        listener: Option<SharedListener>,
        refresh: Option<Arc<dyn Refresh>>,
    ) -> Self {
        let core = Core {
            name: config.name.clone().into_boxed_str(),
            scope: NEXT_SCOPE.fetch_add(1, Ordering::Relaxed),
            strategy: config.strategy,
            settings: Mutex::new(config.clone()),
            eject_after: AtomicU32::new(0),
            eject_rate: AtomicU64::new(0),
            eject_min_requests: AtomicU32::new(0),
            rate_window: config.ejection.failure_rate.map(|r| r.window),
            wait_for_ready: AtomicU64::new(0),
            slow_start: config.slow_start,
            warm_until: AtomicU64::new(0),
            weights_vary: AtomicBool::new(false),
            max_weight: AtomicU32::new(1),
            levels: Mutex::new(std::collections::BTreeMap::new()),
            weights: Mutex::new(std::collections::BTreeMap::new()),
            active_priority: AtomicU32::new(0),
            prioritized: AtomicBool::new(false),
            refresh,
            decay_nanos: config.ewma_decay.as_nanos() as f64,
            default_rtt: config.default_rtt.as_nanos() as f64,
            members: Mutex::new(Vec::new()),
            count: AtomicUsize::new(0),
            next_id: AtomicUsize::new(0),
            clones: AtomicU64::new(0),
            turn: AtomicUsize::new(0),
            ejected: AtomicUsize::new(0),
            healthy: AtomicUsize::new(0),
            panic_threshold: AtomicU64::new(NO_PANIC),
            next_due: AtomicU64::new(u64::MAX),
            classifier,
            listener,
            clock: Clock::new(),
            waiters: Mutex::new(Vec::new()),
            health_task: Mutex::new(None),
        };
        core.publish(config);
        core
    }

    /// Stores the settings the request path reads (each takes effect on its own).
    fn publish(&self, config: &BalanceConfig) {
        let e = &config.ejection;
        self.eject_after
            .store(e.consecutive_failures, Ordering::Relaxed);
        if let Some(rule) = &e.failure_rate {
            self.eject_rate
                .store(rule.rate.to_bits(), Ordering::Relaxed);
            self.eject_min_requests
                .store(rule.min_requests, Ordering::Relaxed);
        }
        self.wait_for_ready
            .store(nanos(config.wait_for_ready), Ordering::Relaxed);
        let panic = config.panic_threshold.map_or(NO_PANIC, f64::to_bits);
        self.panic_threshold.store(panic, Ordering::Relaxed);
    }

    /// The settings in force.
    pub(crate) fn config(&self) -> BalanceConfig {
        lock(&self.settings).clone()
    }

    /// Puts `config` in force, validated as the builder validates it; nothing changes on an
    /// error (see [`Handle::set_config`](crate::Handle::set_config)).
    pub(crate) fn reconfigure(&self, config: BalanceConfig) -> Result<(), ConfigError> {
        config.validate()?;
        let changed = {
            let mut settings = lock(&self.settings);
            let was = &*settings;
            fixed("name", was.name == config.name)?;
            fixed(
                "endpoint_names",
                was.endpoint_names == config.endpoint_names,
            )?;
            fixed("strategy", was.strategy == config.strategy)?;
            fixed(
                "ejection.failure_rate.window",
                self.rate_window == config.ejection.failure_rate.map(|r| r.window),
            )?;
            fixed("ewma_decay", was.ewma_decay == config.ewma_decay)?;
            fixed("default_rtt", was.default_rtt == config.default_rtt)?;
            fixed("health", was.health == config.health)?;
            fixed("slow_start", was.slow_start == config.slow_start)?;
            let changed = *was != config;
            if changed {
                self.publish(&config);
                *settings = config;
            }
            changed
        };
        if changed {
            tracing::info!(balancer = %self.name, "balancer settings changed");
            self.emit(&Event::SettingsChanged {
                name: &self.name,
                layer: "balance",
            });
            // Panic mode or a longer wait may let a waiting request go now: look again.
            self.wake_waiters();
        }
        Ok(())
    }

    /// How long a request waits for an endpoint that can take it.
    #[inline]
    pub(crate) fn wait_for_ready(&self) -> Duration {
        Duration::from_nanos(self.wait_for_ready.load(Ordering::Relaxed))
    }

    /// Adds a member named `name` (weight 1, priority 0, no slow start).
    #[cfg(all(test, bulwark_loom))]
    pub(crate) fn add(&self, name: String) -> Arc<EndpointState> {
        self.add_member(name, 1, 0, false)
    }

    /// Adds a member; `warm` starts its slow start (when one is configured).
    pub(crate) fn add_member(
        &self,
        name: String,
        weight: u32,
        priority: u32,
        warm: bool,
    ) -> Arc<EndpointState> {
        let warm_from = match (&self.slow_start, warm) {
            (Some(s), true) => {
                let now = self.now();
                let until = now.saturating_add(nanos(s.window));
                self.warm_until.fetch_max(until, Ordering::AcqRel);
                now
            }
            _ => 0,
        };
        let mut members = lock(&self.members);
        let state = Arc::new(EndpointState {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            index: AtomicUsize::new(members.len()),
            weight: AtomicU32::new(weight.max(1)),
            priority: AtomicU32::new(priority),
            joined_at: self.now(),
            warm_from: AtomicU64::new(warm_from),
            returned_at: AtomicU64::new(0),
            in_flight: AtomicU32::new(0),
            started_sum: AtomicU64::new(0),
            successes: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            consecutive: AtomicU32::new(0),
            ejected_until: AtomicU64::new(0),
            ejections: AtomicU32::new(0),
            healthy: AtomicBool::new(true),
            gated: AtomicBool::new(false),
            removed: AtomicBool::new(false),
            ewma: AtomicU64::new(self.default_rtt.to_bits()),
            ewma_at: AtomicU64::new(0),
            rate_window: self.rate_window.map(|_| SlotSnapshots::new(10)),
            #[cfg(feature = "metrics")]
            metrics: crate::metrics::EndpointMetrics::new(&self.name, &name),
            name,
        });
        members.push(state.clone());
        self.count.fetch_add(1, Ordering::AcqRel);
        self.healthy.fetch_add(1, Ordering::AcqRel);
        *lock(&self.levels).entry(priority).or_insert(0) += 1;
        drop(members);
        self.count_weight(None, weight.max(1));
        self.emit(&Event::EndpointAdded {
            name: &self.name,
            endpoint: state.id,
            target: &state.name,
        });
        self.priorities_changed();
        self.wake_waiters();
        state
    }

    /// Sets a member's weight and priority (its key was inserted again with new ones).
    pub(crate) fn update(&self, state: &EndpointState, weight: u32, priority: u32) {
        let members = lock(&self.members);
        let old_weight = state.weight.swap(weight.max(1), Ordering::AcqRel);
        let old = state.priority.swap(priority, Ordering::AcqRel);
        if old != priority {
            let mut levels = lock(&self.levels);
            if let Some(n) = levels.get_mut(&old) {
                *n -= 1;
                if *n == 0 {
                    levels.remove(&old);
                }
            }
            *levels.entry(priority).or_insert(0) += 1;
        }
        drop(members);
        self.count_weight(Some(old_weight), weight.max(1));
        self.priorities_changed();
    }

    /// Counts a member's weight (`new`, in place of `old` for a member already counted; `0`
    /// for one leaving) and recomputes the largest weight and whether weights differ: a few
    /// operations on a map of the weights in use, whatever the number of members.
    fn count_weight(&self, old: Option<u32>, new: u32) {
        let mut weights = lock(&self.weights);
        if let Some(old) = old {
            if let Some(n) = weights.get_mut(&old) {
                *n -= 1;
                if *n == 0 {
                    weights.remove(&old);
                }
            }
        }
        if new != 0 {
            *weights.entry(new).or_insert(0) += 1;
        }
        let max = weights.keys().next_back().copied().unwrap_or(1);
        let vary = weights.len() > 1 || max != 1;
        self.max_weight.store(max, Ordering::Release);
        self.weights_vary.store(vary, Ordering::Release);
    }

    /// Whether weights (or a slow start) make some members worth less than others now.
    #[inline]
    pub(crate) fn weighted(&self, now: u64) -> bool {
        self.weights_vary.load(Ordering::Relaxed) || now < self.warm_until.load(Ordering::Relaxed)
    }

    /// A member's weight now: its own, times its slow-start ramp
    /// (`max(min_weight, (t / window) ^ (1 / aggression))`, Envoy's formula).
    pub(crate) fn effective_weight(&self, e: &EndpointState, now: u64) -> f64 {
        let w = f64::from(e.weight.load(Ordering::Relaxed));
        let from = e.warm_from.load(Ordering::Relaxed);
        let Some(s) = &self.slow_start else {
            return w;
        };
        if from == 0 {
            return w;
        }
        let t = now.saturating_sub(from) as f64;
        let window = s.window.as_nanos() as f64;
        if t >= window {
            e.warm_from.store(0, Ordering::Relaxed);
            return w;
        }
        w * (t / window).powf(1.0 / s.aggression).max(s.min_weight)
    }

    /// The largest weight of a member.
    #[inline]
    pub(crate) fn max_weight(&self) -> f64 {
        f64::from(self.max_weight.load(Ordering::Relaxed))
    }

    /// Recomputes the most preferred priority with a member that can take requests (only
    /// when members have more than one priority).
    pub(crate) fn priorities_changed(&self) {
        let mixed = lock(&self.levels).len() > 1;
        self.prioritized.store(mixed, Ordering::Release);
        if !mixed {
            self.active_priority.store(u32::MAX, Ordering::Release);
            return;
        }
        let now = self.now();
        let best = lock(&self.members)
            .iter()
            .filter(|e| {
                e.healthy.load(Ordering::Acquire) && {
                    let until = e.ejected_until.load(Ordering::Acquire);
                    until == 0 || now >= until
                }
            })
            .map(|e| e.priority.load(Ordering::Acquire))
            .min()
            .unwrap_or(u32::MAX);
        let old = self.active_priority.swap(best, Ordering::AcqRel);
        if old != best {
            tracing::info!(balancer = %self.name, priority = best, "active priority changed");
        }
    }

    /// Asks the discovery source, if any, to look again (every endpoint failing or out).
    pub(crate) fn stale(&self) {
        if let Some(r) = &self.refresh {
            r.refresh();
        }
    }

    /// Removes a member; requests in flight on it finish as usual.
    pub(crate) fn remove(&self, state: &Arc<EndpointState>) {
        if state.removed.swap(true, Ordering::AcqRel) {
            return;
        }
        {
            let mut members = lock(&self.members);
            let i = state.index.load(Ordering::Acquire);
            if i < members.len() && Arc::ptr_eq(&members[i], state) {
                members.swap_remove(i);
                if let Some(moved) = members.get(i) {
                    moved.index.store(i, Ordering::Release);
                }
            } else {
                members.retain(|m| !Arc::ptr_eq(m, state));
            }
            let p = state.priority.load(Ordering::Acquire);
            let mut levels = lock(&self.levels);
            if let Some(n) = levels.get_mut(&p) {
                *n -= 1;
                if *n == 0 {
                    levels.remove(&p);
                }
            }
            drop(levels);
        }
        self.count_weight(Some(state.weight.load(Ordering::Acquire)), 0);
        self.count.fetch_sub(1, Ordering::AcqRel);
        // Its health flag goes down with it (a swap, so a health check marking it at the same
        // moment cannot make the count move twice, or not at all; see `set_healthy`).
        if state.healthy.swap(false, Ordering::AcqRel) {
            self.healthy.fetch_sub(1, Ordering::AcqRel);
            #[cfg(feature = "metrics")]
            state.metrics.set_healthy(false);
        }
        if state.ejected_until.swap(0, Ordering::AcqRel) != 0 {
            self.ejected.fetch_sub(1, Ordering::AcqRel);
            #[cfg(feature = "metrics")]
            state.metrics.set_ejected(false);
        }
        self.priorities_changed();
        self.emit(&Event::EndpointRemoved {
            name: &self.name,
            endpoint: state.id,
            target: &state.name,
        });
    }

    /// The members, in the order they joined.
    pub(crate) fn members(&self) -> Vec<Arc<EndpointState>> {
        let mut m = lock(&self.members).clone();
        m.sort_unstable_by_key(|e| e.id);
        m
    }

    /// The member with this id, if it still is one.
    pub(crate) fn member_with_id(&self, id: usize) -> Option<Arc<EndpointState>> {
        lock(&self.members).iter().find(|e| e.id == id).cloned()
    }

    /// Registers a balancer waiting for an endpoint.
    ///
    /// A waiter registers again each time it is polled, and its own timer wakes it within
    /// `wait_for_ready` of that poll; so an entry older than `wait_for_ready` is of no more
    /// use, and is dropped here. Without this the list would keep one waker per request that
    /// ever waited (and, through the waker, that finished task's memory) until the next
    /// endpoint is marked healthy or added, which, with no health checks, is never.
    pub(crate) fn register(&self, waker: &Waker) {
        let now = self.now();
        let keep = nanos(self.wait_for_ready());
        let mut w = lock(&self.waiters);
        w.retain(|(_, at)| now.saturating_sub(*at) <= keep);
        match w.iter_mut().find(|(x, _)| x.will_wake(waker)) {
            Some((_, at)) => *at = now,
            None => w.push((waker.clone(), now)),
        }
    }

    pub(crate) fn wake_waiters(&self) {
        for (w, _) in lock(&self.waiters).drain(..) {
            w.wake();
        }
    }

    /// The balancer's clock: nanoseconds on tokio's clock since it was built, plus one (so it
    /// is never 0, and 0 can mean "not ejected").
    #[inline]
    pub(crate) fn now(&self) -> u64 {
        self.clock.now().saturating_add(1)
    }

    /// The clock time, when picking needs it (peak-EWMA decay, or an endpoint ejected);
    /// 0 otherwise, which reads every ejection as still running (the safe side, should one
    /// begin meanwhile).
    #[inline]
    pub(crate) fn now_if_needed(&self) -> u64 {
        if self.strategy == Strategy::P2cPeakEwma
            || self.ejected.load(Ordering::Acquire) != 0
            || self.warm_until.load(Ordering::Relaxed) != 0
        {
            self.now()
        } else {
            0
        }
    }

    /// The instant of clock time `at`.
    pub(crate) fn instant_at(&self, at: u64) -> Instant {
        self.clock.instant_at(at.saturating_sub(1))
    }

    fn emit(&self, event: &Event<'_>) {
        if let Some(l) = &self.listener {
            l.emit(event);
        }
    }

    /// Whether too few endpoints can take requests, so the balancer should use all of them.
    #[inline]
    pub(crate) fn panicking(&self) -> bool {
        match self.panic_threshold.load(Ordering::Relaxed) {
            NO_PANIC => false,
            threshold => self.panic_now(f64::from_bits(threshold)),
        }
    }

    #[cold]
    fn panic_now(&self, threshold: f64) -> bool {
        let n = self.count.load(Ordering::Acquire);
        if n == 0 {
            return false;
        }
        let available = self
            .healthy
            .load(Ordering::Acquire)
            .saturating_sub(self.ejected.load(Ordering::Acquire));
        let panic = (available as f64) < threshold * n as f64;
        if panic {
            tracing::debug!(balancer = %self.name, available, endpoints = n, "panic mode: balancing over every endpoint");
        }
        panic
    }

    /// Whether `e` may be picked at all (healthy and not ejected); an ejection whose time is
    /// up ends here.
    #[inline]
    pub(crate) fn eligible(&self, e: &EndpointState, now: u64) -> bool {
        if !e.healthy.load(Ordering::Relaxed)
            || (self.prioritized.load(Ordering::Relaxed)
                && e.priority.load(Ordering::Relaxed)
                    > self.active_priority.load(Ordering::Relaxed))
        {
            return false;
        }
        let until = e.ejected_until.load(Ordering::Acquire);
        until == 0 || (now >= until && self.return_endpoint(e, until))
    }

    /// Ends an ejection whose time is up (once, whoever sees it first).
    #[cold]
    fn return_endpoint(&self, e: &EndpointState, until: u64) -> bool {
        if e.ejected_until
            .compare_exchange(until, 0, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            self.ejected.fetch_sub(1, Ordering::AcqRel);
            e.consecutive.store(0, Ordering::Release);
            e.returned_at.store(self.now(), Ordering::Release);
            #[cfg(feature = "metrics")]
            e.metrics.set_ejected(false);
            tracing::info!(balancer = %self.name, target = %e.name, "endpoint returned");
            self.emit(&Event::EndpointReturned {
                name: &self.name,
                endpoint: e.id,
            });
            if self.prioritized.load(Ordering::Acquire) {
                self.priorities_changed();
            }
        }
        true
    }

    /// Returns every endpoint whose ejection is over, so no request is needed for one to come
    /// back and the count of ejected endpoints is right before a new ejection.
    #[inline]
    pub(crate) fn sweep(&self, now: u64) {
        if self.ejected.load(Ordering::Acquire) == 0 || now < self.next_due.load(Ordering::Acquire)
        {
            return;
        }
        self.sweep_due(now);
    }

    #[cold]
    fn sweep_due(&self, now: u64) {
        self.next_due.store(u64::MAX, Ordering::Release);
        for e in self.members() {
            let until = e.ejected_until.load(Ordering::Acquire);
            if until != 0 && now >= until {
                self.return_endpoint(&e, until);
            } else if until != 0 {
                self.next_due.fetch_min(until, Ordering::AcqRel);
            }
        }
    }

    /// The earliest time (ns) an ejected endpoint that its health checks pass comes back, if
    /// any is out (one that is unhealthy too is not back when its ejection ends).
    pub(crate) fn next_return(&self) -> Option<u64> {
        if self.ejected.load(Ordering::Acquire) == 0 {
            return None;
        }
        lock(&self.members)
            .iter()
            .filter(|e| e.is_healthy())
            .filter_map(|e| e.ejected_until())
            .min()
    }

    /// The load used to compare two endpoints (lower is better).
    #[inline]
    pub(crate) fn load(&self, e: &EndpointState, now: u64) -> f64 {
        let in_flight = e.in_flight.load(Ordering::Relaxed);
        let pending = f64::from(in_flight) + 1.0;
        match self.strategy {
            // An endpoint that has not answered yet counts as `default_rtt` (see `rtt`): a
            // new endpoint is not sent everything first.
            Strategy::P2cPeakEwma => {
                // Requests waiting on it longer than its estimate say more than the estimate:
                // a backend that has stopped answering is not sent more while its first
                // requests wait for their timeout.
                let mut rtt = self.rtt(e, now);
                if in_flight != 0 {
                    let mean_start =
                        (e.started_sum.load(Ordering::Relaxed) / u64::from(in_flight)) << 10;
                    rtt = rtt.max(now.saturating_sub(mean_start) as f64);
                }
                rtt * pending
            }
            _ => pending,
        }
    }

    /// The endpoint's peak-EWMA latency now. Before its first answer it is the configured
    /// default; after, the estimate decays towards zero while the endpoint gets no traffic, so
    /// an endpoint that was slow once is tried again after a while (and, if still slow, its
    /// next answer puts it back where it was: the estimate follows peaks at once).
    pub(crate) fn rtt(&self, e: &EndpointState, now: u64) -> f64 {
        let at = e.ewma_at.load(Ordering::Relaxed);
        if at == 0 {
            // Not measured yet: the default, decaying like a measure taken when it joined,
            // so a new endpoint is tried once the others' loads rise above it, or after a
            // while even if they do not (one answer then puts it where it belongs).
            return self.default_rtt
                * Self::decay(now.saturating_sub(e.joined_at) as f64 / self.decay_nanos);
        }
        let ewma = f64::from_bits(e.ewma.load(Ordering::Relaxed));
        ewma * Self::decay(now.saturating_sub(at) as f64 / self.decay_nanos)
    }

    /// `exp(-x)` for `x >= 0`: a short series for the small `x` of requests that follow each
    /// other closely (an interval much shorter than the decay time, relative error < 1e-9),
    /// the library function otherwise.
    #[inline]
    fn decay(x: f64) -> f64 {
        if x < 1e-3 {
            1.0 - x + 0.5 * x * x
        } else {
            (-x).exp()
        }
    }

    /// Records the latency of a call that ended at `now` after `rtt` ns.
    fn observe(&self, e: &EndpointState, rtt: f64, now: u64) {
        let at = e.ewma_at.load(Ordering::Relaxed);
        let next = if at == 0 {
            rtt // the first sample replaces the default
        } else {
            let ewma = f64::from_bits(e.ewma.load(Ordering::Relaxed));
            if rtt > ewma {
                rtt // a peak counts at once
            } else {
                let weight = Self::decay(now.saturating_sub(at) as f64 / self.decay_nanos);
                ewma * weight + rtt * (1.0 - weight)
            }
        };
        e.ewma.store(next.to_bits(), Ordering::Relaxed);
        e.ewma_at.store(now, Ordering::Relaxed);
    }

    /// Counts a call on `e`, started at `start`, that was dropped before it answered: it took
    /// at least until now, so when that is longer than the estimate it is a peak the estimate
    /// follows (a shorter one says nothing and is not counted). Without it, an endpoint whose
    /// slow answers are always cut short (by a hedge answering first elsewhere, or a caller's
    /// timeout) would look as fast as its fast answers.
    #[cold]
    pub(crate) fn cancelled(&self, e: &EndpointState, start: u64) {
        let now = self.now();
        let took = now.saturating_sub(start) as f64;
        if took > self.rtt(e, now) {
            self.observe(e, took, now);
        }
    }

    /// Records a finished call on `e`.
    #[inline]
    pub(crate) fn record(&self, e: &EndpointState, failed: bool, started: Option<u64>) {
        self.record_at(e, failed, started, || self.now());
    }

    /// [`Core::record`] with the clock read by `now` (only when needed; the loom model passes
    /// a constant).
    #[inline]
    pub(crate) fn record_at(
        &self,
        e: &EndpointState,
        failed: bool,
        started: Option<u64>,
        now: impl Fn() -> u64,
    ) {
        if let Some(start) = started {
            let now = now();
            self.observe(e, now.saturating_sub(start) as f64, now);
        }
        if !failed {
            e.successes.fetch_add(1, Ordering::Relaxed);
            if e.consecutive.load(Ordering::Relaxed) != 0 {
                e.consecutive.store(0, Ordering::Relaxed);
            }
            if let (Some(length), Some(window)) = (self.rate_window, &e.rate_window) {
                let slot = (length.as_nanos() / 10).max(1) as u64;
                window.take(now() / slot, || {
                    [
                        e.successes.load(Ordering::Acquire),
                        e.failures.load(Ordering::Acquire),
                    ]
                });
            }
            return;
        }
        e.failures.fetch_add(1, Ordering::Relaxed);
        let run = e.consecutive.fetch_add(1, Ordering::AcqRel) + 1;
        let k = self.eject_after.load(Ordering::Relaxed);
        if ((k != 0 && run >= k) || self.failure_rate_reached(e, &now))
            && !e.removed.load(Ordering::Acquire)
        {
            self.eject(e, now());
        }
    }

    /// Whether `e`'s share of failures over the failure-rate window calls for an ejection.
    fn failure_rate_reached(&self, e: &EndpointState, now: impl Fn() -> u64) -> bool {
        let (Some(length), Some(window)) = (self.rate_window, &e.rate_window) else {
            return false;
        };
        let slot = (length.as_nanos() / 10).max(1) as u64;
        let epoch = now() / slot;
        let read = || {
            [
                e.successes.load(Ordering::Acquire),
                e.failures.load(Ordering::Acquire),
            ]
        };
        window.take(epoch, read);
        let Some([s0, f0]) = window.oldest(epoch) else {
            return false;
        };
        let [s, f] = read();
        let (ok, failed) = (s.wrapping_sub(s0), f.wrapping_sub(f0));
        let total = ok + failed;
        let rate = f64::from_bits(self.eject_rate.load(Ordering::Relaxed));
        let min_requests = self.eject_min_requests.load(Ordering::Relaxed);
        total >= u64::from(min_requests) && failed as f64 >= rate * total as f64
    }

    #[cold]
    fn eject(&self, e: &EndpointState, now: u64) {
        let ejection = lock(&self.settings).ejection;
        self.sweep(now);
        // Already out: ejected, or failing its health checks (not counted out twice).
        if e.ejected_until.load(Ordering::Acquire) != 0 || !e.healthy.load(Ordering::Acquire) {
            return;
        }
        // At most max_ejected of the endpoints out at once; one always may be.
        let n = self.count.load(Ordering::Acquire);
        let cap = ((ejection.max_ejected * n as f64).floor() as usize).max(1);
        let mut out = self.ejected.load(Ordering::Acquire);
        loop {
            if out >= cap {
                tracing::debug!(balancer = %self.name, target = %e.name, "ejection skipped: cap reached");
                return;
            }
            match self
                .ejected
                .compare_exchange(out, out + 1, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => break,
                Err(seen) => out = seen,
            }
        }
        // This is its ejection number `times`; the count moves only once the ejection has
        // happened (below), so one that loses a race to eject it does not count.
        // Its earlier ejections count less the longer it has stayed in since the last one: one
        // fewer per `forget_after` (Envoy lowers its multiplier while the host stays in).
        let before = e.ejections.load(Ordering::Acquire);
        let back = e.returned_at.load(Ordering::Acquire);
        let forgiven = if back == 0 {
            0
        } else {
            let per = ejection.forget_after.as_nanos().max(1);
            u32::try_from(u128::from(now.saturating_sub(back)) / per).unwrap_or(u32::MAX)
        };
        let times = before.saturating_sub(forgiven).saturating_add(1);
        let duration = ejection.base.saturating_mul(times).min(ejection.max);
        let until = now.saturating_add(nanos(duration));
        // SeqCst here and on the health flag (see `set_healthy`): each side writes one and
        // reads the other, so one of them must see the other's write. (Not modelled in
        // `loom_tests`: loom checks SeqCst as AcqRel, under which this store-then-load pattern
        // is allowed to miss both writes; tokio-rs/loom#180.)
        if e.ejected_until
            .compare_exchange(0, until, Ordering::SeqCst, Ordering::Acquire)
            .is_err()
        {
            self.ejected.fetch_sub(1, Ordering::AcqRel); // someone else ejected it meanwhile
            return;
        }
        e.ejections.store(times, Ordering::Release);
        // Removed, or marked unhealthy, meanwhile? `remove` and a health change end the
        // ejection of the member they mark, but may have looked before this one began; then
        // it ends here (once: whoever takes `until` out gives its place in the count back).
        if e.removed.load(Ordering::Acquire) || !e.healthy.load(Ordering::SeqCst) {
            if e.ejected_until
                .compare_exchange(until, 0, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                self.ejected.fetch_sub(1, Ordering::AcqRel);
            }
            return;
        }
        self.next_due.fetch_min(until, Ordering::AcqRel);
        if self.prioritized.load(Ordering::Acquire) {
            self.priorities_changed();
        }
        if self.ejected.load(Ordering::Acquire) >= self.count.load(Ordering::Acquire) {
            // Every endpoint out: the discovery source may know of others.
            self.stale();
        }
        #[cfg(feature = "metrics")]
        e.metrics.ejected();
        tracing::warn!(
            balancer = %self.name,
            target = %e.name,
            ejected_ms = duration.as_millis() as u64,
            "endpoint ejected after consecutive failures"
        );
        self.emit(&Event::EndpointEjected {
            name: &self.name,
            endpoint: e.id,
            duration,
        });
    }

    /// Notes what endpoint `e`'s own gate said when asked for readiness (`unhealthy`: it
    /// reported failing health checks; `false`: it was ready). Checks and gate together make
    /// its health as the handle, the gauge and the log report it; its gate alone decides when
    /// it is ready again, so the balancer keeps asking it.
    #[cold]
    pub(crate) fn set_gated(&self, e: &EndpointState, unhealthy: bool) {
        if e.gated.swap(unhealthy, Ordering::AcqRel) == unhealthy || !e.is_healthy() {
            return; // no change, or its checks already say unhealthy
        }
        let healthy = !unhealthy;
        #[cfg(feature = "metrics")]
        e.metrics.set_healthy(healthy);
        tracing::info!(balancer = %self.name, target = %e.name, healthy, "endpoint health changed");
        self.emit(&Event::EndpointHealthChanged {
            name: &self.name,
            endpoint: e.id,
            healthy,
        });
    }

    /// Marks `e` healthy or not. A member removed meanwhile (a health check may still hold
    /// it) is left alone: its health no longer counts.
    pub(crate) fn set_healthy(&self, e: &EndpointState, healthy: bool) {
        if e.removed.load(Ordering::Acquire) {
            return;
        }
        if e.healthy.swap(healthy, Ordering::SeqCst) != healthy {
            if healthy {
                self.healthy.fetch_add(1, Ordering::AcqRel);
                // Removed since the check above: `remove` may have taken its flag down before
                // this raised it; take it down again (once: whoever swaps it out counts it).
                if e.removed.load(Ordering::Acquire) {
                    if e.healthy.swap(false, Ordering::AcqRel) {
                        self.healthy.fetch_sub(1, Ordering::AcqRel);
                    }
                    return;
                }
            } else {
                self.healthy.fetch_sub(1, Ordering::AcqRel);
            }
            #[cfg(feature = "metrics")]
            e.metrics.set_healthy(healthy);
            tracing::info!(balancer = %self.name, target = %e.name, healthy, "endpoint health changed");
            // A change of health ends an ejection. Back from unhealthy: whatever failures
            // ejected it are older than the checks that now pass (as Envoy's
            // `successful_active_health_check_uneject_host`, for this transition only).
            // Unhealthy: it is out already, and counting it as ejected too would count it out
            // twice (in the panic threshold, in the ejection cap).
            let until = e.ejected_until.load(Ordering::SeqCst);
            if until != 0 {
                self.return_endpoint(e, until);
            }
            if healthy {
                // Back from failing its checks: it ramps up again, as a new endpoint does.
                if let Some(s) = &self.slow_start {
                    let now = self.now();
                    e.warm_from.store(now, Ordering::Relaxed);
                    let end = now.saturating_add(nanos(s.window));
                    self.warm_until.fetch_max(end, Ordering::AcqRel);
                }
            }
            if self.prioritized.load(Ordering::Acquire) {
                self.priorities_changed();
            }
            if healthy {
                self.wake_waiters();
            }
            self.emit(&Event::EndpointHealthChanged {
                name: &self.name,
                endpoint: e.id,
                healthy,
            });
        }
    }
}
