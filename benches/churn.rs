//! What a membership change costs: our `Balance` over `Endpoints::discover`, against tower 0.5's
//! p2c `Balance`, both fed the same `tower::discover::Change`s through a channel.
//!
//! Run with `cargo bench --bench churn`. Before the criterion group runs, the allocations of
//! each kind of change are counted with `stats_alloc` and printed, and ours is checked to have
//! applied a change (the removed address gone, the new one in, the count unchanged).
//!
//! Each balancer reads a stream made from a tokio unbounded channel (`poll_fn` over
//! `UnboundedReceiver::poll_recv`) of `Result<Change<u64, S>, Infallible>`, keyed by an
//! "address" (a `u64`). It is built, sent `n` inserts and polled ready (and called once) before
//! measuring. The endpoints are `support::Client`s (an `Arc` inside); tower's are each under
//! `PeakEwma` (30 ms default RTT, 10 s decay), which its p2c needs; ours is p2c by peak EWMA
//! (its default), without health checks.
//!
//! One iteration (timed with criterion's `iter_custom`, tokio's unpaused clock):
//!
//! 1. outside the timing: the changes are made (`k` addresses picked in turn, each a
//!    `Remove` of its old address and an `Insert` of a new one with a new service);
//! 2. timed: they are sent on the channel, then the balancer is polled ready (which applies
//!    every change waiting: ours' `poll_ready` polls its feed, tower's its `Discover`) and
//!    called (the request completes at once; a reservation must be used before the next
//!    `poll_ready` can look at the feed again).
//!
//! Rows (`churn/<stack>/<what>`): `none-of-<n>` (nothing sent: the `poll_ready` + `call` every
//! iteration has, to subtract), `1-of-<n>` (one address changed in a fleet of `n`: a remove and
//! an insert), `1000-of-<n>` (a rolling restart of 1,000 endpoints: 1,000 removes and 1,000
//! inserts, sent in one go and applied at the next `poll_ready`).

// This bench uses only part of the shared harness (no `bare`, no `ready_call_await` group).
#[allow(dead_code)]
mod support;

use bulwark_balance::{BalanceLayer, Endpoints, Handle};
use criterion::{criterion_group, Criterion};
use std::convert::Infallible;
use std::fmt::Debug;
use std::task::Context;
use std::time::Duration;
use support::{allocations, one_call, thread_waker, Client};
use tokio::sync::mpsc::{unbounded_channel, UnboundedSender};
use tower::balance::p2c;
use tower::discover::Change;
use tower::load::{CompleteOnResponse, PeakEwma};
use tower::Service;

/// tower's peak-EWMA settings, the same as ours' defaults.
const DEFAULT_RTT: Duration = Duration::from_millis(30);
const DECAY_NS: f64 = 10e9;

type Item<S> = Result<Change<u64, S>, Infallible>;

/// A `Discover` stream fed by a channel: the sender, and the stream.
fn channel<S: Send + 'static>() -> (
    UnboundedSender<Item<S>>,
    impl futures_util::Stream<Item = Item<S>> + Unpin + Send + 'static,
) {
    let (tx, mut rx) = unbounded_channel::<Item<S>>();
    (
        tx,
        futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx)),
    )
}

/// How many endpoints a balancer has now.
trait Fleet {
    fn members(&self) -> usize;
}

impl<S, C, A> Fleet for bulwark_balance::Balance<S, C, A> {
    fn members(&self) -> usize {
        self.len()
    }
}

impl<D, Req> Fleet for p2c::Balance<D, Req>
where
    D: tower::discover::Discover,
    D::Key: std::hash::Hash,
    D::Service: Service<Req>,
    <D::Service as Service<Req>>::Error: Into<tower::BoxError>,
{
    fn members(&self) -> usize {
        self.len()
    }
}

/// One balancer fed by a channel, with the addresses it has now.
struct Rig<B, S> {
    lb: B,
    tx: UnboundedSender<Item<S>>,
    /// The current addresses; changes replace them in turn from `cursor`.
    keys: Vec<u64>,
    cursor: usize,
    next_key: u64,
    make: fn() -> S,
    request: u64,
    /// Built once, so the timed part does not allocate one.
    waker: std::task::Waker,
}

impl<B, S> Rig<B, S>
where
    B: Service<u64, Response = u64> + Fleet,
    B::Error: Debug,
    S: Send + 'static,
{
    /// Sends `n` inserts, polls the balancer ready and calls it once, checks it took them.
    fn new(n: usize, lb: B, tx: UnboundedSender<Item<S>>, make: fn() -> S) -> Self {
        let mut rig = Rig {
            lb,
            tx,
            keys: (0..n as u64).collect(),
            cursor: 0,
            next_key: n as u64,
            make,
            request: 0,
            waker: thread_waker(),
        };
        for &k in &rig.keys {
            rig.tx
                .send(Ok(Change::Insert(k, (rig.make)())))
                .expect("the balancer holds the receiver");
        }
        rig.call();
        assert_eq!(rig.lb.members(), n, "the balancer took in every endpoint");
        rig
    }

    /// `k` addresses changed: for each, a remove of its old address and an insert of a new
    /// one (a new service).
    fn changes(&mut self, k: usize) -> Vec<Item<S>> {
        let mut out = Vec::with_capacity(2 * k);
        for _ in 0..k {
            let at = self.cursor;
            self.cursor = (self.cursor + 1) % self.keys.len();
            let old = std::mem::replace(&mut self.keys[at], self.next_key);
            out.push(Ok(Change::Remove(old)));
            out.push(Ok(Change::Insert(self.next_key, (self.make)())));
            self.next_key += 1;
        }
        out
    }

    /// `poll_ready` (applies whatever was sent) and a call.
    #[inline]
    fn call(&mut self) {
        let mut cx = Context::from_waker(&self.waker);
        self.request = self.request.wrapping_add(1);
        let r = self.request;
        assert_eq!(one_call(&mut self.lb, &mut cx, r), r);
    }

    /// Sends `changes` and has the balancer apply them (and answer one request).
    #[inline]
    fn apply(&mut self, changes: Vec<Item<S>>) {
        for c in changes {
            self.tx.send(c).expect("the balancer holds the receiver");
        }
        self.call();
    }

    /// One iteration: `k` changes made, then (timed) sent and applied.
    fn timed(&mut self, k: usize) -> Duration {
        let changes = self.changes(k);
        let start = tokio::time::Instant::now();
        self.apply(changes);
        let took = start.elapsed();
        debug_assert_eq!(self.lb.members(), self.keys.len());
        took
    }

    /// `iters` iterations of `k` changes, the timed parts summed.
    fn run(&mut self, k: usize, iters: u64) -> Duration {
        let mut total = Duration::ZERO;
        for _ in 0..iters {
            total += if k == 0 {
                let start = tokio::time::Instant::now();
                self.call();
                start.elapsed()
            } else {
                self.timed(k)
            };
        }
        total
    }
}

/// Ours: p2c by peak EWMA (the default) over `Endpoints::discover(stream)`, `n` endpoints;
/// and a handle to its endpoints' state.
fn ours(
    n: usize,
) -> (
    Rig<impl Service<u64, Response = u64, Error = impl Debug> + Fleet, Client>,
    Handle,
) {
    let (tx, stream) = channel::<Client>();
    let lb = BalanceLayer::builder()
        .build()
        .expect("bulwark balance config")
        .build(Endpoints::discover(stream))
        .expect("bulwark balancer");
    let handle = lb.handle();
    (Rig::new(n, lb, tx, Client::default), handle)
}

fn tower_endpoint() -> PeakEwma<Client> {
    PeakEwma::new(
        Client::default(),
        DEFAULT_RTT,
        DECAY_NS,
        CompleteOnResponse::default(),
    )
}

/// tower's p2c `Balance` over the same kind of stream, `n` endpoints under `PeakEwma`.
fn tower(
    n: usize,
) -> Rig<impl Service<u64, Response = u64, Error = impl Debug> + Fleet, PeakEwma<Client>> {
    let (tx, stream) = channel::<PeakEwma<Client>>();
    Rig::new(n, p2c::Balance::new(stream), tx, tower_endpoint)
}

/// The changes measured: (row name, fleet size, addresses changed per iteration).
const CASES: [(&str, usize, usize); 5] = [
    ("none-of-10000", 10_000, 0),
    ("1-of-1000", 1_000, 1),
    ("1-of-10000", 10_000, 1),
    ("1000-of-1000", 1_000, 1_000),
    ("1000-of-10000", 10_000, 1_000),
];

// ---------------------------------------------------------------------------------------------
// Checks and allocations, before criterion runs.
// ---------------------------------------------------------------------------------------------

/// Allocations of `rounds` iterations of `k` changes, printed per iteration.
fn count<B, S>(name: &str, rig: &mut Rig<B, S>, k: usize, rounds: u64)
where
    B: Service<u64, Response = u64> + Fleet,
    B::Error: Debug,
    S: Send + 'static,
{
    // The changes are made outside the count, as outside the timing.
    let batches: Vec<_> = (0..rounds).map(|_| rig.changes(k)).collect();
    let ((), d) = allocations(|| {
        for changes in batches {
            rig.apply(changes);
        }
    });
    let per = |v: usize| v as f64 / rounds as f64;
    println!(
        "allocations per iteration: {name:<26} {:>9.1}  (deallocations {:.1}, bytes allocated {:.0})",
        per(d.allocations),
        per(d.deallocations),
        per(d.bytes_allocated),
    );
}

fn report() {
    // Ours applied a change at the next poll_ready: the old address gone, the new one in.
    let (mut rig, handle) = ours(1_000);
    let old = rig.keys[0];
    let changes = rig.changes(1);
    let new = rig.keys[0];
    rig.apply(changes);
    let names: Vec<String> = handle.endpoints().into_iter().map(|e| e.name).collect();
    assert_eq!(names.len(), 1_000);
    assert!(
        !names.contains(&old.to_string()),
        "the removed address is gone"
    );
    assert!(names.contains(&new.to_string()), "the new address is in");
    println!("-- checked: ours applied a remove + insert at its next poll_ready --");

    println!("-- allocations per iteration (sending the changes, applying them, one call) --");
    for (what, n, k) in CASES {
        let rounds = if k >= 1_000 { 5 } else { 200 };
        let (mut rig, _handle) = ours(n);
        count(&format!("bulwark/{what}"), &mut rig, k, rounds);
        let mut rig = tower(n);
        count(&format!("tower/{what}"), &mut rig, k, rounds);
    }
}

// ---------------------------------------------------------------------------------------------
// Criterion group.
// ---------------------------------------------------------------------------------------------

fn churn(c: &mut Criterion) {
    let mut g = c.benchmark_group("churn");
    g.warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .sample_size(20);
    for (what, n, k) in CASES {
        let (mut rig, _handle) = ours(n);
        g.bench_function(format!("bulwark/{what}"), |b| {
            b.iter_custom(|iters| rig.run(k, iters))
        });
        drop(rig);
        let mut rig = tower(n);
        g.bench_function(format!("tower/{what}"), |b| {
            b.iter_custom(|iters| rig.run(k, iters))
        });
    }
    g.finish();
}

criterion_group!(benches, churn);

fn main() {
    support::main(report, benches);
}
