//! The permits: an atomic count of calls in flight against a limit, a bounded FIFO queue of
//! callers waiting for one, and the callers (in readiness mode) to wake when one frees up.
//!
//! Admission is one compare-and-swap on the count, and the end of a call one decrement: no
//! lock, no allocation. The lock is taken only when a caller has to wait, when a call ends
//! while someone waits, and when the limit changes; it is never held across an `.await` (there
//! is none here: waiting is a `Pending` answer with the caller's waker kept).
//!
//! A waiting caller is a [`WaitSlot`], made once per service clone and reused. A permit that
//! frees up while callers are queued goes to the oldest of them (it is handed over: the count
//! does not fall and rise again, so nobody can take it in between), and a caller arriving
//! while others are queued joins the back of the queue rather than taking a permit first. A
//! queued caller whose service is dropped leaves the queue, and one that was handed a permit it
//! will not use gives it on, so no wake-up is lost.
//!
//! Why no wake-up is lost without the lock on the release path: a caller that starts waiting
//! raises `queued` (or `watching`) and then looks at the count again; a call that ends lowers
//! the count and then looks at `queued` and `watching`. Both are sequentially consistent, so at
//! least one of the two sees the other.

use bulwark_core::clock::Clock;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering::SeqCst};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Waker;

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// Where a service clone waits: not waiting, in the queue, handed a permit, out of time, or
/// (readiness mode) waiting to be woken when a permit frees up.
const IDLE: u8 = 0;
const QUEUED: u8 = 1;
const GRANTED: u8 = 2;
const TIMED_OUT: u8 = 3;
const WATCHING: u8 = 4;

/// One service clone's place in the queue or among the watchers.
#[derive(Debug, Default)]
pub(crate) struct WaitSlot {
    /// Changed only under the limiter's lock; read without it.
    state: AtomicU8,
    /// When a queued caller stops waiting (nanoseconds on the bulkhead's clock): one still
    /// queued past it is not handed a permit.
    deadline: AtomicU64,
    waker: Mutex<Option<Waker>>,
}

/// What a waiting caller's slot says now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Waiting {
    /// Not waiting.
    Idle,
    /// In the queue.
    Queued,
    /// Handed a permit: it is this caller's now.
    Granted,
    /// Its time in the queue ran out.
    TimedOut,
    /// Waiting to be woken (readiness mode).
    Watching,
}

impl WaitSlot {
    pub(crate) fn waiting(&self) -> Waiting {
        match self.state.load(SeqCst) {
            QUEUED => Waiting::Queued,
            GRANTED => Waiting::Granted,
            TIMED_OUT => Waiting::TimedOut,
            WATCHING => Waiting::Watching,
            _ => Waiting::Idle,
        }
    }

    /// When a queued caller stops waiting (nanoseconds on the bulkhead's clock).
    pub(crate) fn deadline(&self) -> u64 {
        self.deadline.load(SeqCst)
    }

    /// Keeps `waker` to be woken when the slot changes.
    pub(crate) fn set_waker(&self, waker: &Waker) {
        let mut kept = lock(&self.waker);
        if !kept.as_ref().is_some_and(|w| w.will_wake(waker)) {
            *kept = Some(waker.clone());
        }
    }

    fn wake(&self) {
        if let Some(waker) = lock(&self.waker).take() {
            waker.wake();
        }
    }
}

/// Who waits, under the lock.
#[derive(Debug, Default)]
struct Waiters {
    queue: VecDeque<Arc<WaitSlot>>,
    watchers: Vec<Arc<WaitSlot>>,
}

/// The outcome of asking to wait in the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Enqueued {
    /// A permit was free after all: it is the caller's.
    Admitted,
    /// In the queue.
    Queued,
    /// The queue is full.
    Full,
}

/// The permits of one bulkhead.
#[derive(Debug)]
pub(crate) struct Limiter {
    in_flight: AtomicU32,
    limit: AtomicU32,
    /// Callers in the queue (read without the lock when a call ends).
    queued: AtomicU32,
    /// Readiness-mode callers waiting to be woken (likewise).
    watching: AtomicU32,
    /// How many callers may wait (0: no queue); changed through the handle.
    capacity: AtomicU32,
    waiters: Mutex<Waiters>,
    pub(crate) clock: Clock,
}

impl Limiter {
    pub(crate) fn new(limit: u32, capacity: u32) -> Self {
        Limiter {
            in_flight: AtomicU32::new(0),
            limit: AtomicU32::new(limit),
            queued: AtomicU32::new(0),
            watching: AtomicU32::new(0),
            capacity: AtomicU32::new(capacity),
            waiters: Mutex::new(Waiters::default()),
            clock: Clock::new(),
        }
    }

    #[inline]
    pub(crate) fn in_flight(&self) -> u32 {
        self.in_flight.load(SeqCst)
    }

    #[inline]
    pub(crate) fn limit(&self) -> u32 {
        self.limit.load(SeqCst)
    }

    pub(crate) fn queued(&self) -> u32 {
        self.queued.load(SeqCst)
    }

    pub(crate) fn has_queue(&self) -> bool {
        self.capacity() > 0
    }

    /// How many callers may wait.
    pub(crate) fn capacity(&self) -> u32 {
        self.capacity.load(SeqCst)
    }

    /// Lets `capacity` callers wait from now on (0: none); the callers waiting keep their
    /// places, and new ones join only once fewer than `capacity` wait.
    pub(crate) fn set_capacity(&self, capacity: u32) {
        self.capacity.store(capacity, SeqCst);
    }

    /// Takes a permit if one is free, whoever waits.
    #[inline]
    fn take(&self) -> bool {
        let limit = self.limit.load(SeqCst);
        let mut n = self.in_flight.load(SeqCst);
        loop {
            if n >= limit {
                return false;
            }
            match self
                .in_flight
                .compare_exchange_weak(n, n + 1, SeqCst, SeqCst)
            {
                Ok(_) => return true,
                Err(now) => n = now,
            }
        }
    }

    /// The admission fast path: a permit if one is free and nobody is queued ahead.
    #[inline]
    pub(crate) fn try_acquire(&self) -> bool {
        self.queued.load(SeqCst) == 0 && self.take()
    }

    /// Gives a permit back (a call ended, or a reserved permit was not used).
    #[inline]
    pub(crate) fn release(&self) {
        self.in_flight.fetch_sub(1, SeqCst);
        if self.queued.load(SeqCst) != 0 || self.watching.load(SeqCst) != 0 {
            self.hand_on();
        }
    }

    /// A permit freed up (or the limit rose) while callers wait: hand permits to the oldest
    /// queued callers while there are any, then wake the watchers if one is left.
    #[cold]
    #[inline(never)]
    pub(crate) fn hand_on(&self) {
        let mut waiters = lock(&self.waiters);
        self.grant(&mut waiters);
    }

    /// [`hand_on`](Self::hand_on) under the lock. A queued caller whose time is up is not
    /// handed a permit (its task may not run again: a caller that gave up waiting on the
    /// service's readiness but kept the service); it is marked out of time instead.
    fn grant(&self, waiters: &mut Waiters) {
        let mut now = None;
        while let Some(front) = waiters.queue.front() {
            let deadline = front.deadline.load(SeqCst);
            if deadline != u64::MAX && deadline <= *now.get_or_insert_with(|| self.clock.now()) {
                let slot = waiters.queue.pop_front().expect("front exists");
                self.queued.fetch_sub(1, SeqCst);
                slot.state.store(TIMED_OUT, SeqCst);
                slot.wake();
                continue;
            }
            if !self.take() {
                return;
            }
            let slot = waiters.queue.pop_front().expect("front exists");
            self.queued.fetch_sub(1, SeqCst);
            slot.state.store(GRANTED, SeqCst);
            slot.wake();
        }
        if !waiters.watchers.is_empty() && self.in_flight() < self.limit() {
            self.watching.store(0, SeqCst);
            for slot in waiters.watchers.drain(..) {
                slot.state.store(IDLE, SeqCst);
                slot.wake();
            }
        }
    }

    /// Asks to wait in the queue until `deadline`: admitted at once if a permit is free and
    /// nobody is queued ahead, refused if the queue is full.
    pub(crate) fn enqueue(&self, slot: &Arc<WaitSlot>, deadline: u64, waker: &Waker) -> Enqueued {
        let mut waiters = lock(&self.waiters);
        if waiters.queue.is_empty() && self.take() {
            return Enqueued::Admitted;
        }
        if waiters.queue.len() >= self.capacity() as usize {
            return Enqueued::Full;
        }
        slot.set_waker(waker);
        slot.deadline.store(deadline, SeqCst);
        slot.state.store(QUEUED, SeqCst);
        waiters.queue.push_back(slot.clone());
        self.queued.fetch_add(1, SeqCst);
        // A call that ended just before the count above rose saw nobody queued: look again.
        self.grant(&mut waiters);
        match slot.state.load(SeqCst) {
            GRANTED => {
                slot.state.store(IDLE, SeqCst);
                Enqueued::Admitted
            }
            _ => Enqueued::Queued,
        }
    }

    /// Asks to be woken when a permit frees up (readiness mode). True if one was free after
    /// all: it is the caller's (the slot stays among the watchers until the next wake-up,
    /// which then wakes it for nothing).
    pub(crate) fn watch(&self, slot: &Arc<WaitSlot>, waker: &Waker) -> bool {
        slot.set_waker(waker);
        if slot.state.load(SeqCst) != WATCHING {
            let mut waiters = lock(&self.waiters);
            if slot.state.load(SeqCst) != WATCHING {
                slot.state.store(WATCHING, SeqCst);
                waiters.watchers.push(slot.clone());
                self.watching.fetch_add(1, SeqCst);
            }
        }
        // A call that ended before `watching` rose saw nobody to wake: look again.
        self.take()
    }

    /// A queued caller's time is up: out of the queue, unless a permit was handed
    /// to it meanwhile. True if it has the permit.
    pub(crate) fn time_out(&self, slot: &Arc<WaitSlot>) -> bool {
        let mut waiters = lock(&self.waiters);
        match slot.state.load(SeqCst) {
            GRANTED => {
                slot.state.store(IDLE, SeqCst);
                true
            }
            QUEUED => {
                remove(&mut waiters.queue, slot, &self.queued);
                slot.state.store(IDLE, SeqCst);
                false
            }
            _ => {
                slot.state.store(IDLE, SeqCst);
                false
            }
        }
    }

    /// What the caller's slot says; a permit handed to it, or a time-out, is taken (the slot
    /// is idle again).
    pub(crate) fn claim(&self, slot: &WaitSlot) -> Waiting {
        let seen = slot.waiting();
        if matches!(seen, Waiting::Granted | Waiting::TimedOut) {
            let _waiters = lock(&self.waiters);
            slot.state.store(IDLE, SeqCst);
        }
        seen
    }

    /// The caller stops waiting (its service was dropped): out of the queue or the watchers,
    /// and a permit handed to it goes on to the next.
    pub(crate) fn leave(&self, slot: &Arc<WaitSlot>) {
        // An idle slot is in no list, and nobody but its owner puts it in one.
        if slot.waiting() == Waiting::Idle {
            return;
        }
        let granted = {
            let mut waiters = lock(&self.waiters);
            let state = slot.state.swap(IDLE, SeqCst);
            match state {
                QUEUED => remove(&mut waiters.queue, slot, &self.queued),
                WATCHING => {
                    if let Some(at) = waiters.watchers.iter().position(|s| Arc::ptr_eq(s, slot)) {
                        waiters.watchers.swap_remove(at);
                        self.watching.fetch_sub(1, SeqCst);
                    }
                }
                _ => {}
            }
            state == GRANTED
        };
        if granted {
            self.release();
        }
    }

    /// Sets the limit. A higher one hands the new permits to waiting callers at once; a lower
    /// one admits nobody until the calls in flight fall below it (none is cut off).
    pub(crate) fn set_limit(&self, limit: u32) -> u32 {
        let before = self.limit.swap(limit, SeqCst);
        if limit > before {
            self.hand_on();
        }
        before
    }
}

fn remove(queue: &mut VecDeque<Arc<WaitSlot>>, slot: &Arc<WaitSlot>, queued: &AtomicU32) {
    if let Some(at) = queue.iter().position(|s| Arc::ptr_eq(s, slot)) {
        queue.remove(at);
        queued.fetch_sub(1, SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::task::noop_waker;

    #[test]
    fn the_oldest_waiter_gets_the_freed_permit() {
        let limiter = Limiter::new(1, 2);
        let waker = noop_waker();
        assert!(limiter.try_acquire());
        let (a, b) = (Arc::new(WaitSlot::default()), Arc::new(WaitSlot::default()));
        assert_eq!(limiter.enqueue(&a, u64::MAX, &waker), Enqueued::Queued);
        assert_eq!(limiter.enqueue(&b, u64::MAX, &waker), Enqueued::Queued);
        let c = Arc::new(WaitSlot::default());
        assert_eq!(limiter.enqueue(&c, u64::MAX, &waker), Enqueued::Full);
        // Nobody jumps the queue.
        assert!(!limiter.try_acquire());
        limiter.release();
        assert_eq!(a.waiting(), Waiting::Granted);
        assert_eq!(b.waiting(), Waiting::Queued);
        assert_eq!(limiter.in_flight(), 1);
        // `a` leaves without using it: it goes on to `b`.
        limiter.leave(&a);
        assert_eq!(b.waiting(), Waiting::Granted);
        assert_eq!(limiter.claim(&b), Waiting::Granted);
        assert_eq!((limiter.in_flight(), limiter.queued()), (1, 0));
        limiter.release();
        assert_eq!(limiter.in_flight(), 0);
    }

    #[test]
    fn a_newcomer_does_not_take_a_permit_freed_for_a_queued_caller() {
        let limiter = Limiter::new(1, 2);
        let waker = noop_waker();
        assert!(limiter.try_acquire());
        let a = Arc::new(WaitSlot::default());
        assert_eq!(limiter.enqueue(&a, u64::MAX, &waker), Enqueued::Queued);
        // A call ends: between its decrement and the hand-over, a newcomer comes.
        limiter.in_flight.fetch_sub(1, SeqCst);
        assert!(!limiter.try_acquire());
        limiter.hand_on();
        assert_eq!(limiter.claim(&a), Waiting::Granted);
    }

    #[test]
    fn a_raised_limit_wakes_the_watchers_and_a_lowered_one_cuts_nobody_off() {
        let limiter = Limiter::new(2, 0);
        let waker = noop_waker();
        assert!(limiter.try_acquire() && limiter.try_acquire());
        let w = Arc::new(WaitSlot::default());
        assert!(!limiter.watch(&w, &waker));
        assert_eq!(w.waiting(), Waiting::Watching);
        assert_eq!(limiter.set_limit(1), 2);
        limiter.release(); // 1 in flight, limit 1: still full, still watching
        assert_eq!(w.waiting(), Waiting::Watching);
        limiter.set_limit(3);
        assert_eq!(w.waiting(), Waiting::Idle);
        assert!(limiter.try_acquire());
        assert_eq!(limiter.in_flight(), 2);
    }
}
