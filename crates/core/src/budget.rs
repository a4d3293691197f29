//! The retry budget: retries may be at most a share of recent requests, plus a floor.
//!
//! Retrying a failed call is polite to the caller and cruel to a backend that is failing
//! because it is overloaded: if every request is tried three times, a struggling backend gets
//! three times the load exactly when it can least take it. A budget bounds that: over the
//! last `window` (10 s by default), retries may be at most `ratio` of the requests made (20%)
//! plus `floor_per_sec` retries per second (10), so a caller with little traffic can still
//! retry. One budget can be shared (it is an `Arc`) by several layers: the retries of a retry
//! layer, a failover set and a fan-out then come out of one pot.
//!
//! # Cost
//!
//! [`RetryBudget::deposit`] (once per request) is one relaxed atomic add and reads no clock.
//! Only [`RetryBudget::try_withdraw`], which runs when a retry is being considered, reads
//! tokio's clock. The window is kept as snapshots of the cumulative counters, one per tenth of
//! the window, taken by the first withdrawal in each tenth; the requests "in the window" are
//! counted from the oldest snapshot still inside it. Requests made before that snapshot are
//! not counted, so after a quiet spell the budget errs on the strict side (the floor still
//! allows retries) until a window of snapshots has built up. For the same reason a withdrawal
//! that races with the taking of the window's first snapshot is refused: it cannot tell yet
//! what the window holds. A retry's share is spent when the retry is scheduled, whether or not
//! the caller then waits for it.
//!
//! ```
//! use bulwark_core::budget::RetryBudget;
//! use std::time::Duration;
//!
//! // 20% of requests, 1 retry per second, over 10 s.
//! let budget = RetryBudget::new(0.2, 1, Duration::from_secs(10)).unwrap();
//! for _ in 0..100 {
//!     budget.deposit();
//! }
//! // Nothing was snapshotted before these requests, so only the floor's 10 retries are
//! // available at first; the ratio counts requests made after the first withdrawal.
//! let granted = (0..50).filter(|_| budget.try_withdraw()).count();
//! assert_eq!(granted, 10);
//! ```

use crate::clock::Clock;
use crate::rolling::{SlotSnapshots, Start};
use crate::sync::{AtomicU64, Ordering};
use std::fmt;
use std::time::Duration;

/// How many snapshots the window is kept in.
const SLOTS: u64 = 10;

/// A retry budget. Share it with `Arc` (the layers take `Arc<RetryBudget>`).
#[derive(Debug)]
pub struct RetryBudget {
    ratio: f64,
    floor_per_sec: u32,
    window: Duration,
    slot_nanos: u64,
    clock: Clock,
    deposits: AtomicU64,
    withdrawals: AtomicU64,
    /// The counters as they were at the first withdrawal of each tenth of the window.
    snapshots: SlotSnapshots<2>,
}

/// A setting of a [`RetryBudget`] that is out of range.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum BudgetError {
    /// `ratio` is not in `[0, 1000]` (or not a number).
    Ratio(f64),
    /// `window` is shorter than 10 ms or longer than a day.
    Window(Duration),
}

impl BudgetError {
    /// The setting at fault: `ratio` or `window`.
    pub fn setting(&self) -> &'static str {
        match self {
            BudgetError::Ratio(_) => "ratio",
            BudgetError::Window(_) => "window",
        }
    }
}

impl fmt::Display for BudgetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BudgetError::Ratio(r) => {
                write!(f, "retry budget `ratio` must be in [0, 1000], got {r}")
            }
            BudgetError::Window(w) => write!(
                f,
                "retry budget `window` must be between 10ms and 24h, got {w:?}"
            ),
        }
    }
}

impl std::error::Error for BudgetError {}

/// What a budget holds at one moment.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct BudgetStats {
    /// Requests counted in the window.
    pub requests: u64,
    /// Retries withdrawn in the window.
    pub retries: u64,
    /// Retries the window allows in all (`floor + ratio * requests`).
    pub allowed: u64,
}

impl Default for RetryBudget {
    /// 20% of requests plus 10 retries per second, over 10 s (tower's and Finagle's defaults:
    /// enough to ride out a blip, far from enough to double a failing backend's load).
    fn default() -> Self {
        Self::new(0.2, 10, Duration::from_secs(10)).expect("the defaults are valid")
    }
}

impl RetryBudget {
    /// A budget allowing `ratio` retries per request plus `floor_per_sec` retries per second,
    /// over the last `window`.
    pub fn new(ratio: f64, floor_per_sec: u32, window: Duration) -> Result<Self, BudgetError> {
        if !(0.0..=1000.0).contains(&ratio) {
            return Err(BudgetError::Ratio(ratio));
        }
        if window < Duration::from_millis(10) || window > Duration::from_secs(24 * 3600) {
            return Err(BudgetError::Window(window));
        }
        let slot_nanos = (window.as_nanos() / u128::from(SLOTS)) as u64;
        Ok(RetryBudget {
            ratio,
            floor_per_sec,
            window,
            slot_nanos,
            clock: Clock::new(),
            deposits: AtomicU64::new(0),
            withdrawals: AtomicU64::new(0),
            snapshots: SlotSnapshots::new(SLOTS as usize),
        })
    }

    /// The share of requests that may be retried.
    pub fn ratio(&self) -> f64 {
        self.ratio
    }

    /// Retries allowed per second whatever the traffic.
    pub fn floor_per_sec(&self) -> u32 {
        self.floor_per_sec
    }

    /// How far back requests and retries count.
    pub fn window(&self) -> Duration {
        self.window
    }

    /// Counts one request (not a retry). No clock, no lock: one relaxed atomic add.
    #[inline]
    pub fn deposit(&self) {
        self.deposits.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts `n` requests at once (a layer may batch its deposits).
    #[inline]
    pub fn deposit_many(&self, n: u64) {
        self.deposits.fetch_add(n, Ordering::Relaxed);
    }

    /// Takes one retry from the budget if it allows one; `false` means do not retry.
    pub fn try_withdraw(&self) -> bool {
        self.try_withdraw_in(self.epoch())
    }

    /// [`RetryBudget::try_withdraw`] in the tenth of the window numbered `epoch` (the clock
    /// read by the caller: the loom model passes it).
    #[inline]
    pub(crate) fn try_withdraw_in(&self, epoch: u64) -> bool {
        self.snapshot(epoch);
        let floor = self.floor();
        loop {
            // While another thread is writing the window's first snapshot, what the window
            // holds is not known yet: refuse (the strict side) rather than count from now.
            let Some((d0, w0)) = self.window_start(epoch) else {
                return false;
            };
            let w = self.withdrawals.load(Ordering::Acquire);
            let deposits = self.deposits.load(Ordering::Acquire).wrapping_sub(d0);
            let allowed = floor.saturating_add((self.ratio * deposits as f64) as u64);
            if w.wrapping_sub(w0) >= allowed {
                return false;
            }
            if self
                .withdrawals
                .compare_exchange_weak(w, w + 1, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                return true;
            }
        }
    }

    /// The budget's state now.
    pub fn stats(&self) -> BudgetStats {
        self.stats_in(self.epoch())
    }

    /// [`RetryBudget::stats`] in the tenth of the window numbered `epoch`.
    pub(crate) fn stats_in(&self, epoch: u64) -> BudgetStats {
        let (d0, w0) = self.window_start(epoch).unwrap_or_else(|| self.counters());
        let requests = self.deposits.load(Ordering::Acquire).wrapping_sub(d0);
        BudgetStats {
            requests,
            retries: self.withdrawals.load(Ordering::Acquire).wrapping_sub(w0),
            allowed: self
                .floor()
                .saturating_add((self.ratio * requests as f64) as u64),
        }
    }

    fn floor(&self) -> u64 {
        (f64::from(self.floor_per_sec) * self.window.as_secs_f64()) as u64
    }

    fn epoch(&self) -> u64 {
        self.clock.now() / self.slot_nanos
    }

    /// Stores a snapshot for `epoch` if none exists yet (the first withdrawal in it wins).
    fn snapshot(&self, epoch: u64) {
        self.snapshots.take(epoch, || {
            [
                self.deposits.load(Ordering::SeqCst),
                self.withdrawals.load(Ordering::SeqCst),
            ]
        });
    }

    /// The counters at the start of the window: the oldest snapshot inside it, or, with none
    /// yet, the counters now (nothing counts yet); `None` while another thread is writing the
    /// snapshot the window starts with.
    fn window_start(&self, epoch: u64) -> Option<(u64, u64)> {
        match self.snapshots.window_start(epoch) {
            Start::Snapshot([d, w]) => Some((d, w)),
            Start::Empty => Some(self.counters()),
            Start::Pending => None,
        }
    }

    fn counters(&self) -> (u64, u64) {
        (
            self.deposits.load(Ordering::SeqCst),
            self.withdrawals.load(Ordering::SeqCst),
        )
    }
}

/// A cap on the resends (retries and hedges) in flight at once, shared by every layer that
/// holds a clone: Envoy's cluster `max_retries` threshold.
///
/// A [`RetryBudget`] bounds resends as a share of requests over a window; it does not stop a
/// burst of them all landing at once on a backend that has just slowed down. A cap does: a
/// resend takes a [`ResendPermit`] before it is sent ([`ResendCap::try_acquire`]) and gives it
/// back when its attempt ends, or when its future is dropped (the caller cancelled). While
/// `max` resends are in flight, the next one is not sent: a retry layer returns the answer it
/// has ([`GiveUpReason::ConcurrencyCap`](crate::GiveUpReason::ConcurrencyCap)), a hedging
/// layer waits for the attempts it sent. Give the same cap (clones of it) to the retry and
/// hedging layers of a stack.
///
/// Lock-free: taking a permit is one compare-and-swap on a shared counter, giving it back one
/// atomic subtraction; a permit holds a reference count on the cap, so it allocates nothing.
///
/// ```
/// use bulwark_core::budget::ResendCap;
///
/// let cap = ResendCap::new(2);
/// let shared = cap.clone(); // for another layer
/// let a = cap.try_acquire().unwrap();
/// let b = shared.try_acquire().unwrap();
/// assert!(cap.try_acquire().is_none(), "two in flight: full");
/// drop(a); // the resend ended (or was cancelled)
/// assert_eq!(shared.in_flight(), 1);
/// assert!(shared.try_acquire().is_some());
/// # drop(b);
/// ```
#[derive(Clone)]
pub struct ResendCap(std::sync::Arc<CapState>);

struct CapState {
    max: usize,
    in_flight: std::sync::atomic::AtomicUsize,
}

/// One resend's place under a [`ResendCap`]: given back when dropped.
#[must_use = "the resend's place is given back as soon as the permit is dropped"]
pub struct ResendPermit(std::sync::Arc<CapState>);

impl ResendCap {
    /// A cap of `max` resends in flight at once (0: no resend is ever sent).
    pub fn new(max: usize) -> Self {
        ResendCap(std::sync::Arc::new(CapState {
            max,
            in_flight: std::sync::atomic::AtomicUsize::new(0),
        }))
    }

    /// The most resends in flight at once.
    pub fn max(&self) -> usize {
        self.0.max
    }

    /// Resends in flight now (holding a permit).
    pub fn in_flight(&self) -> usize {
        self.0.in_flight.load(std::sync::atomic::Ordering::Acquire)
    }

    /// A permit for one resend, or `None` when `max` are in flight.
    #[inline]
    pub fn try_acquire(&self) -> Option<ResendPermit> {
        use std::sync::atomic::Ordering;
        let state = &*self.0;
        let mut now = state.in_flight.load(Ordering::Relaxed);
        loop {
            if now >= state.max {
                return None;
            }
            match state.in_flight.compare_exchange_weak(
                now,
                now + 1,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Some(ResendPermit(self.0.clone())),
                Err(seen) => now = seen,
            }
        }
    }
}

impl Drop for ResendPermit {
    fn drop(&mut self) {
        self.0
            .in_flight
            .fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

impl fmt::Debug for ResendCap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResendCap")
            .field("max", &self.max())
            .field("in_flight", &self.in_flight())
            .finish()
    }
}

impl fmt::Debug for ResendPermit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ResendPermit")
    }
}

#[cfg(all(test, not(bulwark_loom)))]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_storm_gets_at_most_the_ratio_plus_the_floor() {
        let budget = RetryBudget::new(0.2, 10, Duration::from_secs(10)).unwrap();
        let mut retries = 0u64;
        let mut requests = 0u64;
        // 100 requests per second for 30 s, every one failing and asking for a retry.
        for _ in 0..300 {
            for _ in 0..10 {
                budget.deposit();
                requests += 1;
                if budget.try_withdraw() {
                    retries += 1;
                }
            }
            tokio::time::advance(Duration::from_millis(100)).await;
        }
        // Per window: at most 100 (floor) + 20% of the window's requests; over 3 windows the
        // retries can be no more than 3 * 100 + 20% of all requests.
        assert!(retries <= 300 + requests / 5, "{retries} of {requests}");
        // And the budget is not stingy: it gives at least the ratio (the floor helps early on).
        assert!(retries >= requests / 5, "{retries} of {requests}");
    }

    #[tokio::test(start_paused = true)]
    async fn the_floor_refills_as_time_passes() {
        let budget = RetryBudget::new(0.0, 1, Duration::from_secs(10)).unwrap();
        assert_eq!((0..20).filter(|_| budget.try_withdraw()).count(), 10);
        assert!(!budget.try_withdraw());
        tokio::time::advance(Duration::from_secs(11)).await;
        assert_eq!((0..20).filter(|_| budget.try_withdraw()).count(), 10);
    }

    #[tokio::test(start_paused = true)]
    async fn requests_after_the_first_snapshot_raise_the_allowance() {
        let budget = RetryBudget::new(0.5, 0, Duration::from_secs(10)).unwrap();
        assert!(!budget.try_withdraw(), "no floor, no requests: no retry");
        for _ in 0..10 {
            budget.deposit();
        }
        let stats = budget.stats();
        assert_eq!((stats.requests, stats.allowed), (10, 5));
        assert_eq!((0..10).filter(|_| budget.try_withdraw()).count(), 5);
        // The requests age out of the window.
        tokio::time::advance(Duration::from_secs(11)).await;
        assert!(!budget.try_withdraw());
        assert_eq!(budget.stats().requests, 0);
    }

    #[test]
    fn bad_settings_are_typed_errors() {
        assert_eq!(
            RetryBudget::new(-0.1, 10, Duration::from_secs(10))
                .unwrap_err()
                .setting(),
            "ratio"
        );
        assert_eq!(
            RetryBudget::new(f64::NAN, 10, Duration::from_secs(10))
                .unwrap_err()
                .setting(),
            "ratio"
        );
        assert_eq!(
            RetryBudget::new(0.2, 10, Duration::ZERO)
                .unwrap_err()
                .setting(),
            "window"
        );
    }

    #[test]
    fn concurrent_withdrawals_never_overdraw() {
        let budget =
            std::sync::Arc::new(RetryBudget::new(0.0, 5, Duration::from_secs(10)).unwrap());
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let b = budget.clone();
                std::thread::spawn(move || (0..100).filter(|_| b.try_withdraw()).count())
            })
            .collect();
        let total: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(total, 50);
    }

    #[test]
    fn the_cap_holds_across_threads_and_permits_come_back() {
        let cap = ResendCap::new(3);
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let cap = cap.clone();
                std::thread::spawn(move || {
                    let mut most = 0;
                    for _ in 0..1000 {
                        if let Some(p) = cap.try_acquire() {
                            most = most.max(cap.in_flight());
                            drop(p);
                        }
                    }
                    most
                })
            })
            .collect();
        for t in threads {
            assert!(t.join().unwrap() <= 3);
        }
        assert_eq!(cap.in_flight(), 0);
        let none = ResendCap::new(0);
        assert!(none.try_acquire().is_none());
    }
}
