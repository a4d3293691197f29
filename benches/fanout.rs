//! Fan-out overhead over 3 ready targets, against one bare `service_fn`, with each policy.
//!
//! Run with `cargo bench --bench fanout`. Before the criterion group runs, what each policy
//! does with 3 ready targets is checked and printed (one call answered with every outcome),
//! then the allocations per call of every stack are counted with `stats_alloc` and printed.
//!
//! The counting allocator stays installed for the whole run, as in every bench (it is declared
//! in `benches/support/mod.rs`). To time without it, build with `--cfg bulwark_bench_uncounted`
//! (the allocation report is then skipped), in a separate target directory so the shared one is
//! not rebuilt:
//! `CARGO_TARGET_DIR=target/uncounted RUSTFLAGS="--cfg bulwark_bench_uncounted" cargo bench --bench fanout`.
//!
//! One call is `poll_ready` + `call` + polling the response future to completion, driven by
//! hand with a `Context` whose waker unparks the calling thread (no async runtime). Every
//! target is the bare service, always ready, and every call succeeds, so every fan-out meets
//! its policy and its future completes on its first poll. No deadline is set, so no timer is
//! built and no runtime is needed.

mod support;

use bulwark_core::DefaultClassifier;
use bulwark_fanout::{Collect, FanOut, FanOutLayer, FirstSuccess, Outcomes, Policy, TargetResult};
use criterion::{criterion_group, Criterion};
use std::fmt::Debug;
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll};
use support::{bare, bench_one, thread_waker, AllocReport, EchoFuture};
use tower::{Service, ServiceExt};

/// The number of targets every fan-out is built over.
const TARGETS: usize = 3;

/// Our policies, with the names their rows go by.
const POLICIES: [(&str, Policy); 3] = [
    ("bulwark-all", Policy::All),
    ("bulwark-quorum-2", Policy::Quorum(2)),
    ("bulwark-first", Policy::First),
];

// ---------------------------------------------------------------------------------------------
// The stacks. Every target is the same bare `service_fn(echo)` (`support::bare`).
// ---------------------------------------------------------------------------------------------

/// Ours over 3 clones of the bare service with `policy` and merge `merge` (otherwise
/// defaults: no deadlines, no listener, the default classifier: every `Ok` is a success).
fn bulwark<M: Clone>(
    policy: Policy,
    merge: M,
) -> FanOut<
    impl Service<u64, Response = u64, Error = std::convert::Infallible, Future = EchoFuture> + Clone,
    DefaultClassifier,
    M,
> {
    let a = bare();
    let svc = FanOutLayer::builder()
        .policy(policy)
        .merge(merge)
        .build()
        .unwrap()
        .build(vec![a.clone(), a.clone(), a])
        .expect("bulwark fan-out targets");
    assert_eq!(svc.targets().len(), TARGETS);
    svc
}

/// The answer of a `Collect` fan-out reduced to a `u64` (the first success), so the harness
/// can drive it; the outcomes (and their `Vec`) are dropped here, as a caller's would be.
fn first_success(outcomes: Outcomes<u64>) -> u64 {
    outcomes
        .targets
        .into_iter()
        .find_map(|t| match t.result {
            TargetResult::Succeeded(x) => Some(x),
            _ => None,
        })
        .expect("a target succeeded")
}

/// Ours with `Policy::All` and `Collect` (every outcome), mapped to the first success.
fn bulwark_collect() -> impl Service<u64, Response = u64, Error = impl Debug> {
    bulwark(Policy::All, Collect).map_response(first_success as fn(Outcomes<u64>) -> u64)
}

// ---------------------------------------------------------------------------------------------
// What each policy does with 3 ready targets, checked before anything is counted.
// ---------------------------------------------------------------------------------------------

/// One call on a `Collect` fan-out with `policy`, which must complete on its first poll; checks
/// and prints every target's outcome.
fn check_policy(name: &str, policy: Policy) {
    let waker = thread_waker();
    let mut cx = Context::from_waker(&waker);
    let mut svc = bulwark(policy, Collect);
    assert!(matches!(svc.poll_ready(&mut cx), Poll::Ready(Ok(()))));
    let fut = pin!(svc.call(7));
    let Poll::Ready(Ok(outcomes)) = fut.poll(&mut cx) else {
        panic!("{name}: the fan-out did not answer on its first poll");
    };
    assert!(outcomes.met, "{name}: the policy was met");
    assert_eq!(outcomes.targets.len(), TARGETS);
    let results: Vec<String> = outcomes
        .targets
        .iter()
        .map(|t| match &t.result {
            TargetResult::Succeeded(x) => {
                assert_eq!(*x, 7, "{name}: target {} echoed the request", t.index);
                "succeeded".to_string()
            }
            TargetResult::Cancelled => "cancelled".to_string(),
            other => panic!("{name}: target {}: {other:?}", t.index),
        })
        .collect();
    println!(
        "   ({name:<16} one call: {} of {TARGETS} succeeded: [{}])",
        outcomes.successes(),
        results.join(", ")
    );
}

// ---------------------------------------------------------------------------------------------
// Allocations per call, counted before criterion runs.
// ---------------------------------------------------------------------------------------------

fn alloc_report() {
    println!("-- what each policy does with {TARGETS} ready targets (Collect, one call) --");
    for (name, policy) in POLICIES {
        check_policy(name, policy);
    }
    println!("-- allocations per ready+call+await, one thread, {TARGETS} ready targets --");
    let report = AllocReport {
        name_width: 20,
        check_echo: true,
    };
    report.stack("bare", bare());
    for (name, policy) in POLICIES {
        report.stack(name, bulwark(policy, FirstSuccess));
    }
    report.stack("bulwark-all-collect", bulwark_collect());
}

// ---------------------------------------------------------------------------------------------
// Criterion group.
// ---------------------------------------------------------------------------------------------

/// One call per iteration: `poll_ready` + `call` + await, every target ready, every call
/// succeeds.
fn ready_call_await(c: &mut Criterion) {
    let mut g = support::ready_call_await_group(c, "fanout_ready_call_await");
    bench_one(&mut g, "bare", bare());
    for (name, policy) in POLICIES {
        bench_one(&mut g, name, bulwark(policy, FirstSuccess));
    }
    bench_one(&mut g, "bulwark-all-collect", bulwark_collect());
    g.finish();
}

criterion_group!(benches, ready_call_await);

fn main() {
    support::main(alloc_report, benches);
}
