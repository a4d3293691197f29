//! Loom model of the balancer's lock-free per-endpoint counters (in flight, consecutive
//! failures, ejection, health) and the balancer-wide counts kept from them (members ejected,
//! members healthy): every interleaving of two threads, within a preemption bound. Run with
//! `RUSTFLAGS="--cfg bulwark_loom" cargo test -p bulwark-balance --lib --release -- loom`.
//!
//! The member list and the waiters are behind a mutex (not lock-free): the model takes them
//! as they are. The clock is not modelled: `now` is passed in.

use crate::config::BalanceConfig;
use crate::core::{Core, EndpointState};
use crate::future::InFlight;
use bulwark_core::local::LocalRef;
use bulwark_core::DefaultClassifier;
use loom::thread;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(3);
    builder.check(f);
}

type Shared = Arc<Core<DefaultClassifier>>;

/// A balancer core over `n` members, ejecting after `consecutive` failures for 100 ns times
/// the number of ejections, at most `max_ejected` of the members at once.
fn core(n: usize, consecutive: u32, max_ejected: f64) -> (Shared, Vec<Arc<EndpointState>>) {
    let mut config = BalanceConfig::default();
    config.ejection.consecutive_failures = consecutive;
    config.ejection.max_ejected = max_ejected;
    config.ejection.base = Duration::from_nanos(100);
    config.ejection.max = Duration::from_nanos(1_000);
    let core = Arc::new(Core::new(&config, DefaultClassifier, None));
    let members = (0..n).map(|i| core.add(i.to_string())).collect();
    (core, members)
}

/// A failed call on `e` at clock time `now`.
fn fail(core: &Shared, e: &EndpointState, now: u64) {
    core.record_at(e, true, None, || now);
}

#[test]
fn loom_in_flight_counts_return_to_zero() {
    model(|| {
        let (core, members) = core(1, 5, 0.5);
        let mut local = LocalRef::new(core.clone());
        let (a, b) = (local.for_call(), local.for_call());
        let e = members[0].clone();
        let t = thread::spawn(move || {
            let guard = InFlight::new(a, e.clone(), None);
            drop(guard);
            e.in_flight.load(Ordering::Relaxed)
        });
        let guard = InFlight::new(b, members[0].clone(), None);
        assert!(members[0].in_flight.load(Ordering::Relaxed) >= 1);
        fail(&core, &members[0], 1);
        drop(guard);
        assert!(t.join().unwrap() <= 1);
        assert_eq!(members[0].in_flight.load(Ordering::Relaxed), 0);
    });
}

#[test]
fn loom_two_failures_past_the_threshold_eject_once() {
    model(|| {
        // Ejected after two failures in a row; one is in. Two more race past the threshold:
        // the endpoint is ejected once, for its first ejection's time, and counted once.
        let (core, members) = core(2, 2, 1.0);
        fail(&core, &members[0], 1);
        let (c, e) = (core.clone(), members[0].clone());
        let t = thread::spawn(move || fail(&c, &e, 1));
        fail(&core, &members[0], 1);
        t.join().unwrap();
        assert_eq!(members[0].ejected_until(), Some(1 + 100));
        assert_eq!(members[0].ejections(), 1);
        assert_eq!(core.counts(), (2, 1));
    });
}

#[test]
fn loom_concurrent_ejections_respect_the_cap() {
    model(|| {
        // At most a third of three members out (one): two fail at once.
        let (core, members) = core(3, 1, 0.34);
        let (c, e) = (core.clone(), members[1].clone());
        let t = thread::spawn(move || fail(&c, &e, 1));
        fail(&core, &members[0], 1);
        t.join().unwrap();
        let out = members
            .iter()
            .filter(|e| e.ejected_until().is_some())
            .count();
        assert_eq!(out, 1);
        assert_eq!(core.counts(), (3, 1));
    });
}

#[test]
fn loom_a_health_change_racing_the_end_of_its_ejection() {
    model(|| {
        // Member 0 is ejected until t = 101. Its health check fails (which ends the ejection:
        // it is out already) while a request at t = 200 finds the ejection over: it returns
        // once, and the counts are right.
        let (core, members) = core(2, 1, 1.0);
        fail(&core, &members[0], 1);
        assert_eq!(core.counts(), (2, 1));
        let (c, e) = (core.clone(), members[0].clone());
        let t = thread::spawn(move || c.set_healthy(&e, false));
        // Eligible or not, depending on whether the health mark came first.
        let _ = core.eligible(&members[0], 200);
        t.join().unwrap();
        assert!(!core.eligible(&members[0], 200));
        assert_eq!(members[0].ejected_until(), None);
        assert_eq!(core.counts(), (1, 0));
        // Its check passes again: back in, counted once.
        core.set_healthy(&members[0], true);
        assert!(core.eligible(&members[0], 200));
        assert_eq!(core.counts(), (2, 0));
    });
}

#[test]
fn loom_health_marks_racing_each_other_keep_the_count() {
    model(|| {
        let (core, members) = core(2, 1, 1.0);
        let (c, e) = (core.clone(), members[0].clone());
        let t = thread::spawn(move || c.set_healthy(&e, false));
        core.set_healthy(&members[0], true);
        core.set_healthy(&members[1], false);
        t.join().unwrap();
        let healthy = members.iter().filter(|e| e.is_healthy()).count();
        assert_eq!(core.counts(), (healthy, 0));
    });
}

#[test]
fn loom_removal_racing_an_ejection() {
    model(|| {
        // Member 0 fails (one failure ejects) while it is removed: however they interleave,
        // the balancer counts no ejected member afterwards (a removed member is never swept
        // back, so a count left behind would stay forever).
        let (core, members) = core(2, 1, 1.0);
        let (c, e) = (core.clone(), members[0].clone());
        let t = thread::spawn(move || fail(&c, &e, 1));
        core.remove(&members[0]);
        t.join().unwrap();
        assert_eq!(core.counts(), (1, 0));
        assert_eq!(members[0].ejected_until(), None);
    });
}

#[test]
fn loom_removal_racing_a_health_mark() {
    model(|| {
        // A health check marks member 0 healthy again (it held it from before) while it is
        // removed; the healthy count ends with the one member left.
        let (core, members) = core(2, 1, 1.0);
        core.set_healthy(&members[0], false);
        let (c, e) = (core.clone(), members[0].clone());
        let t = thread::spawn(move || c.set_healthy(&e, true));
        core.remove(&members[0]);
        t.join().unwrap();
        assert_eq!(core.counts(), (1, 0));
    });
}

#[test]
fn loom_removal_racing_an_unhealthy_mark() {
    model(|| {
        let (core, members) = core(2, 1, 1.0);
        let (c, e) = (core.clone(), members[0].clone());
        let t = thread::spawn(move || c.set_healthy(&e, false));
        core.remove(&members[0]);
        t.join().unwrap();
        assert_eq!(core.counts(), (1, 0));
    });
}
