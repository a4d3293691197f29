//! Cancellation: fan-outs dropped at random points, with some branches finished, some running
//! and some waiting for their target to be ready, leak nothing. Every branch of a dropped
//! fan-out is dropped with it; once a fan-out has answered, its other branches are dropped at
//! once (`Stragglers::Cancel`) or finish on a background task within their bound
//! (`Stragglers::Finish`), after which the task is gone. After all of them the fan-out answers
//! exactly as a fresh one.
//!
//! Paused tokio time, seeded randomness: a failure names its seed and round.

use bulwark_core::BoxError;
use bulwark_fanout::{FanOut, FanOutLayer, Policy};
use bulwark_test_support::{ms, Endpoint, Odds, OnDrop, Rng};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tokio::time::Instant;
use tower::{Service, ServiceExt};

const ROUNDS: usize = 300;
const TARGETS: usize = 3;

/// Calls alive per request id, across every target.
type Live = Arc<Mutex<HashMap<u32, usize>>>;

fn live_of(live: &Live, id: u32) -> usize {
    live.lock().unwrap().get(&id).copied().unwrap_or(0)
}

/// A target whose readiness, latency and answers are drawn from its own seeded source: not
/// ready a fifth of the time, failing 30% of its calls, which take up to 200 ms.
type Target = Endpoint<u32>;

const ODDS: Odds = Odds {
    not_ready: 20,
    fail: 30,
    delay_ms: 200,
    steady_delay_ms: 0,
};

/// Target `id`, counting its calls alive per request in `live`.
fn target(id: usize, seed: u64, live: &Live) -> Target {
    let live = live.clone();
    Target::new(id, seed, ODDS, Arc::default()).on_call(move |&request: &u32| {
        *live.lock().unwrap().entry(request).or_default() += 1;
        let live = live.clone();
        Some(Box::new(OnDrop::new(move || {
            *live.lock().unwrap().get_mut(&request).unwrap() -= 1;
        })))
    })
}

type Fan = FanOut<Target>;
type FanFuture = <Fan as Service<u32>>::Future;
/// A fan-out in flight: its request id, its future, and the step at which to drop it.
type Flight = (u32, Pin<Box<FanFuture>>, u64);

struct Fixture {
    svc: Fan,
    targets: Vec<Target>,
    live: Live,
}

impl Fixture {
    fn new(policy: Policy, finish: Option<Duration>, seed: u64) -> Self {
        let live = Live::default();
        let targets: Vec<Target> = (0..TARGETS)
            .map(|id| target(id, seed + id as u64, &live))
            .collect();
        let mut builder = FanOutLayer::builder()
            .policy(policy)
            .branch_deadline(ms(150));
        if let Some(within) = finish {
            builder = builder.finish_stragglers(within);
        }
        let svc = builder.build().unwrap().build(targets.clone()).unwrap();
        Fixture { svc, targets, live }
    }

    fn reseed(&self, seed: u64) {
        for t in &self.targets {
            t.reseed(seed + t.id() as u64);
        }
    }

    fn live(&self) -> usize {
        self.live.lock().unwrap().values().sum()
    }
}

fn poll(future: &mut Pin<Box<FanFuture>>) -> Poll<Result<String, BoxError>> {
    future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
        .map_ok(|outcomes| format!("{outcomes:?}"))
}

fn alive_tasks() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

/// Lets the runtime run (and reap) what is ready, without moving the clock.
async fn settle() {
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}

/// The same fan-outs, one after another, as seen from outside.
async fn script(f: &Fixture) -> Vec<String> {
    let rng = Rng::new(99);
    let mut log = Vec::new();
    for i in 0..30 {
        let start = Instant::now();
        let answer = f.svc.clone().oneshot(10_000 + i).await;
        log.push(format!(
            "{i}: {:?} after {:?}",
            answer.map_err(|e| e.to_string()),
            start.elapsed()
        ));
        tokio::time::advance(ms(rng.below(50))).await;
    }
    log
}

async fn harness(policy: Policy, finish: Option<Duration>, seed: u64) {
    let tasks = alive_tasks();
    let rng = Rng::new(seed);
    let f = Fixture::new(policy, finish, seed);
    let mut next_id = 0u32;
    let (mut dropped_partial, mut answered_with_stragglers) = (0, 0);
    for round in 0..ROUNDS {
        let context = format!("{policy:?}, {finish:?}, seed {seed}, round {round}");
        let mut flights: Vec<Option<Flight>> = Vec::new();
        for step in 0..30 {
            if step < 15 && rng.chance(40) {
                let mut svc = f.svc.clone();
                let future = Box::pin(svc.call(next_id));
                flights.push(Some((next_id, future, step + rng.below(20))));
                next_id += 1;
            }
            for slot in flights.iter_mut() {
                let Some((id, future, drop_at)) = slot else {
                    continue;
                };
                let id = *id;
                if *drop_at == step {
                    // Dropped before its answer: every branch goes with it, now.
                    dropped_partial += usize::from(live_of(&f.live, id) > 0);
                    *slot = None;
                    assert_eq!(live_of(&f.live, id), 0, "{context}: request {id} dropped");
                } else if poll(future).is_ready() {
                    *slot = None;
                    let left = live_of(&f.live, id);
                    answered_with_stragglers += usize::from(left > 0);
                    if finish.is_none() {
                        assert_eq!(left, 0, "{context}: request {id} answered");
                    }
                }
            }
            tokio::time::advance(ms(rng.below(15))).await;
        }
        drop(flights);
        // Stragglers have their bound, then they are gone with their task.
        tokio::time::advance(finish.unwrap_or_default() + ms(1)).await;
        settle().await;
        assert_eq!(f.live(), 0, "{context}: calls left");
        assert_eq!(alive_tasks(), tasks, "{context}: tasks left");
    }
    assert!(
        dropped_partial > 10,
        "{dropped_partial} dropped mid-fan-out"
    );
    if finish.is_some() {
        assert!(answered_with_stragglers > 10, "{answered_with_stragglers}");
    }

    // Afterwards: exactly as a fresh fan-out.
    let fresh = Fixture::new(policy, finish, seed);
    f.reseed(7);
    fresh.reseed(7);
    let used = script(&f).await;
    let new = script(&fresh).await;
    assert_eq!(used, new);
    tokio::time::advance(finish.unwrap_or_default() + ms(1)).await;
    settle().await;
    assert_eq!((f.live(), fresh.live()), (0, 0));
    assert_eq!(alive_tasks(), tasks, "tasks left");
}

#[tokio::test(start_paused = true)]
async fn dropped_fan_outs_leak_nothing_all() {
    for seed in [1, 2] {
        harness(Policy::All, None, seed).await;
        harness(Policy::All, Some(ms(50)), seed).await;
    }
}

#[tokio::test(start_paused = true)]
async fn dropped_fan_outs_leak_nothing_quorum() {
    for seed in [1, 2] {
        harness(Policy::Quorum(2), None, seed).await;
        harness(Policy::Quorum(2), Some(ms(50)), seed).await;
    }
}

#[tokio::test(start_paused = true)]
async fn dropped_fan_outs_leak_nothing_first() {
    for seed in [1, 2] {
        harness(Policy::First, None, seed).await;
        harness(Policy::First, Some(ms(50)), seed).await;
    }
}
