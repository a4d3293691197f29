//! Loom models of the lock-free parts of this crate: the sliding-window snapshots
//! ([`SlotSnapshots`]) and the retry budget built on them. Every interleaving of a few threads,
//! within a preemption bound. Run with
//! `RUSTFLAGS="--cfg bulwark_loom" cargo test -p bulwark-core --lib --release -- loom`.
//!
//! The clock is not modelled: each thread is given the slot (`epoch`) its clock would have read.

use crate::budget::RetryBudget;
use crate::rolling::{SlotSnapshots, Start};
use crate::sync::{AtomicU64, Ordering};
use loom::sync::Arc;
use loom::thread;
use std::time::Duration;

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(3);
    builder.check(f);
}

/// A budget of `floor` retries per window (no ratio), window one second per retry.
fn floor_budget(floor: u32) -> RetryBudget {
    RetryBudget::new(0.0, 1, Duration::from_secs(u64::from(floor))).unwrap()
}

#[test]
fn loom_snapshot_events_racing_the_first_snapshot_are_not_lost() {
    model(|| {
        // Two threads each record one event in slot 5 (the first slot with a snapshot), as
        // the breaker's time window and the balancer's failure-rate window do: take the
        // slot's snapshot, then count. Whoever takes it, both events are inside the window.
        let ring = Arc::new(SlotSnapshots::<1>::new(2));
        let count = Arc::new(AtomicU64::new(0));
        let (r, c) = (ring.clone(), count.clone());
        let t = thread::spawn(move || {
            r.take(5, || [c.load(Ordering::SeqCst)]);
            c.fetch_add(1, Ordering::SeqCst);
        });
        ring.take(5, || [count.load(Ordering::SeqCst)]);
        count.fetch_add(1, Ordering::SeqCst);
        t.join().unwrap();
        let [start] = ring.oldest(5).expect("slot 5 has its snapshot");
        assert_eq!(count.load(Ordering::SeqCst) - start, 2);
    });
}

#[test]
fn loom_snapshot_read_during_a_rewrite_is_never_torn() {
    model(|| {
        // A ring of two slots: slot 0's place is reused by slot 2 while a reader whose
        // window still holds slot 0 reads it. The reader sees slot 0's values whole, or
        // nothing (a slot being written is skipped), never half of each.
        let ring = Arc::new(SlotSnapshots::<2>::new(2));
        ring.take(0, || [1, 1]);
        let r = ring.clone();
        let t = thread::spawn(move || r.take(2, || [2, 2]));
        let seen = ring.oldest(1);
        let start = ring.window_start(1);
        t.join().unwrap();
        assert!(matches!(seen, None | Some([1, 1])), "{seen:?}");
        assert!(
            matches!(start, Start::Pending | Start::Snapshot([1, 1])),
            "{start:?}"
        );
        assert_eq!(ring.oldest(2), Some([2, 2]));
        assert_eq!(ring.oldest(3), Some([2, 2]));
    });
}

#[test]
fn loom_budget_concurrent_withdrawals_never_overdraw() {
    model(|| {
        // One retry allowed; three threads ask at once, at the budget's very first withdrawal
        // (the one that takes the first snapshot). At most one gets it.
        let budget = Arc::new(floor_budget(1));
        let spawn = |b: Arc<RetryBudget>| thread::spawn(move || b.try_withdraw_in(0));
        let (a, b) = (spawn(budget.clone()), spawn(budget.clone()));
        let mine = budget.try_withdraw_in(0);
        let granted = [mine, a.join().unwrap(), b.join().unwrap()]
            .iter()
            .filter(|g| **g)
            .count();
        assert!(granted <= 1, "{granted} retries granted of 1");
        // And none was lost: the window counts what was granted, and what is left is
        // still there.
        let stats = budget.stats_in(0);
        assert_eq!(stats.retries, granted as u64);
        assert_eq!(budget.try_withdraw_in(0), granted == 0);
        assert!(!budget.try_withdraw_in(0));
    });
}

#[test]
fn loom_budget_withdrawal_loops_share_the_allowance() {
    model(|| {
        // Three retries allowed, one spent (which took the window's snapshot); two threads
        // ask twice each: the two left are granted, and no more.
        let budget = Arc::new(floor_budget(3));
        assert!(budget.try_withdraw_in(0));
        let b = budget.clone();
        let twice =
            |b: &RetryBudget| usize::from(b.try_withdraw_in(0)) + usize::from(b.try_withdraw_in(0));
        let t = thread::spawn(move || twice(&b));
        let mine = twice(&budget);
        let theirs = t.join().unwrap();
        assert_eq!(mine + theirs, 2, "{mine} + {theirs} of the 2 left");
        assert_eq!(budget.stats_in(0).retries, 3);
        assert!(!budget.try_withdraw_in(0));
    });
}

#[test]
fn loom_budget_concurrent_deposits_are_not_lost() {
    model(|| {
        // One retry per request, no floor. The window starts empty (its snapshot is taken
        // before the requests); two threads deposit three requests while a third withdraws.
        let budget = Arc::new(RetryBudget::new(1.0, 0, Duration::from_secs(1)).unwrap());
        assert!(
            !budget.try_withdraw_in(0),
            "no requests, no floor: no retry"
        );
        let (b1, b2) = (budget.clone(), budget.clone());
        let t1 = thread::spawn(move || b1.deposit());
        let t2 = thread::spawn(move || b2.deposit_many(2));
        let mine = budget.try_withdraw_in(0);
        t1.join().unwrap();
        t2.join().unwrap();
        let stats = budget.stats_in(0);
        assert_eq!(stats.requests, 3);
        assert_eq!(stats.retries, u64::from(mine));
        assert_eq!(stats.allowed, 3);
        // What is left of the three is all there.
        let rest = (0..4).filter(|_| budget.try_withdraw_in(0)).count();
        assert_eq!(usize::from(mine) + rest, 3);
    });
}

#[test]
fn loom_budget_withdrawal_racing_a_slot_rollover() {
    model(|| {
        // One retry per one-second window (ten slots of 100 ms), spent in slot 0. Then two
        // threads whose clocks straddle the end of that window ask: one in slot 9 (its
        // window still holds slot 0's retry: refused), one in slot 10 (a new window: slot 0's
        // place in the ring is reused for it). However the rewrite of slot 0 interleaves
        // with the read of it, no window grants more than its one retry, and the counters
        // are not torn.
        let budget = Arc::new(floor_budget(1));
        assert!(budget.try_withdraw_in(0));
        let b = budget.clone();
        let late = thread::spawn(move || b.try_withdraw_in(10));
        let early = budget.try_withdraw_in(9);
        let late = late.join().unwrap();
        assert!(!(early && late), "two retries in the window of slot 10");
        let stats = budget.stats_in(10);
        assert_eq!(stats.requests, 0);
        assert_eq!(stats.retries, u64::from(early) + u64::from(late));
        assert!(stats.retries <= stats.allowed);
        // Slot 0's window is gone for good: slot 10's is what a later withdrawal sees.
        assert_eq!(budget.try_withdraw_in(10), !(early || late));
    });
}
