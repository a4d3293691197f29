//! Bad input never panics: random bytes and values into every configuration parser and
//! validator, every layer's builder (and one call through whatever it builds), the
//! `Retry-After` and gRPC pushback parsers, the demo's body parsers, and random HTTP requests
//! to the running demo over real loopback TCP. Each gets a typed error, a 4xx, or (for a
//! request head over hyper's limits, a malformed one, or a body over the limit) a closed
//! connection; never a panic, never a 5xx the contract does not name.
//!
//! Every case count is bounded so the file runs in seconds. A panic anywhere in the process,
//! a spawned task's included, is counted by a panic hook and fails the test that checks it.
#![allow(dead_code)]

#[path = "../examples/book_search/app/mod.rs"]
mod app;

use app::config::{parse_args, Command, Config};
use app::serve::Limits;
use app::store::{Fault, Store};
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestCaseError, TestRunner};
use serde_json::{json, Value};
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Once, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tower::{service_fn, Layer, Service, ServiceBuilder, ServiceExt};
use tower_bulwark::balance::{BalanceConfig, Ejection, FailureRate, HealthCheck};
use tower_bulwark::circuit_breaker::{CircuitBreakerConfig, Mode, OpenPeriod, SlowCalls, Window};
use tower_bulwark::config::StackConfig;
use tower_bulwark::core::{ExponentialBackoff, Jitter, SplitMix64};
use tower_bulwark::failover::Mode as FailoverMode;
use tower_bulwark::fanout::{FanOutLayer, FirstSuccess, Policy};
use tower_bulwark::retry::{parse_pushback, parse_retry_after, BudgetConfig, Pushback};
use tower_bulwark::ServiceBuilderExt;

// -------------------------------------------------------------------------------------------
// Panics anywhere in the process
// -------------------------------------------------------------------------------------------

static PANICS: AtomicUsize = AtomicUsize::new(0);

/// Installs (once) a panic hook that counts every panic outside this file (the test's own
/// assertions fail their test directly), on any thread, then reports it as the default hook
/// does. A panic in a spawned task (a health check, a connection) does not reach the test
/// otherwise.
///
/// Returns the panics counted so far, for [`no_panics`].
fn count_panics() -> usize {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let ours = info
                .location()
                .is_some_and(|l| l.file().ends_with("bad_input.rs"));
            if !ours {
                PANICS.fetch_add(1, Ordering::SeqCst);
            }
            previous(info);
        }));
    });
    PANICS.load(Ordering::SeqCst)
}

/// No panic was counted since `before` (from [`count_panics`]).
fn no_panics(before: usize) -> Result<(), TestCaseError> {
    prop_assert_eq!(PANICS.load(Ordering::SeqCst), before, "a panic was counted");
    Ok(())
}

fn paused_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("a runtime")
}

/// Far enough that a paused clock reaches it only when nothing else is left to wake.
const FOREVER: Duration = Duration::from_secs(1000 * 365 * 24 * 3600);

// -------------------------------------------------------------------------------------------
// Random values: durations, rates, counts, including zero, huge, NaN and infinities
// -------------------------------------------------------------------------------------------

fn any_duration() -> impl Strategy<Value = Duration> {
    prop_oneof![
        Just(Duration::ZERO),
        Just(Duration::from_nanos(1)),
        Just(Duration::from_millis(1)),
        Just(Duration::from_secs(1)),
        Just(Duration::from_secs(24 * 3600)),
        Just(Duration::from_secs(24 * 3600 + 1)),
        Just(Duration::from_secs(100 * 365 * 24 * 3600)),
        Just(Duration::from_secs(u64::MAX / 2)),
        Just(Duration::MAX),
        (0u64..100_000).prop_map(Duration::from_millis),
        (any::<u64>(), 0u32..1_000_000_000).prop_map(|(s, n)| Duration::new(s, n)),
    ]
}

fn any_rate() -> impl Strategy<Value = f64> {
    prop_oneof![
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        Just(0.0),
        Just(-0.0),
        Just(1.0),
        Just(1.0 + f64::EPSILON),
        Just(f64::MIN_POSITIVE),
        Just(f64::MAX),
        Just(-1.0),
        0.0..=1.0,
        1.0..1000.0,
        any::<f64>(),
    ]
}

fn any_count() -> impl Strategy<Value = u32> {
    prop_oneof![
        Just(0u32),
        Just(1),
        Just(2),
        Just(65_535),
        Just(65_536),
        Just(1_000_000),
        Just(1_000_001),
        Just(u32::MAX),
        0u32..100,
        any::<u32>(),
    ]
}

fn any_jitter() -> impl Strategy<Value = Jitter> {
    prop_oneof![
        Just(Jitter::None),
        Just(Jitter::Full),
        Just(Jitter::Equal),
        Just(Jitter::Decorrelated),
        any_duration().prop_map(Jitter::Additive),
    ]
}

// -------------------------------------------------------------------------------------------
// TOML-ish text: known tables and keys (and some unknown), random values of every type
// -------------------------------------------------------------------------------------------

/// A TOML float (TOML spells the non-finite ones `nan`, `inf`, `-inf`).
fn toml_float(f: f64) -> String {
    if f.is_nan() {
        String::from("nan")
    } else if f.is_infinite() {
        String::from(if f > 0.0 { "inf" } else { "-inf" })
    } else {
        format!("{f:?}")
    }
}

fn toml_string(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Duration text, valid or not, some far past any limit (and past `u64` seconds).
fn duration_text() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "0s",
            "0ms",
            "1ns",
            "1ms",
            "250ms",
            "30s",
            "24h",
            "25h",
            "100years",
            "300000000000years",
            "584942417355years",
            "18446744073709551615s",
            "18446744073709551616s",
            "1y 2d 3h",
            "-1s",
            "1.5s",
            "",
            " ",
            "5",
            "soon",
        ])
        .prop_map(String::from),
        (
            any::<u64>(),
            prop::sample::select(vec!["ns", "us", "ms", "s", "m", "h", "d", "w", "M", "y"])
        )
            .prop_map(|(n, unit)| format!("{n}{unit}")),
    ]
}

/// Words that some key accepts (so that random documents are sometimes valid).
const WORDS: &[&str] = &[
    "count",
    "time",
    "fail_fast",
    "readiness",
    "sticky",
    "priority",
    "round_robin",
    "p2c_pending",
    "p2c_peak_ewma",
    "first_available",
    "balance",
    "failover",
    "bare",
    "full",
    "equal",
    "decorrelated",
    "none",
    "all",
    "first",
    "cancel",
    "/health",
    "health",
    "",
];

fn scalar() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => duration_text().prop_map(|s| toml_string(&s)),
        2 => any_count().prop_map(|n| n.to_string()),
        1 => any::<i64>().prop_map(|n| n.to_string()),
        2 => any_rate().prop_map(toml_float),
        2 => prop::sample::select(WORDS).prop_map(toml_string),
        1 => "[ -~]{0,16}".prop_map(|s| toml_string(&s)),
        1 => any::<bool>().prop_map(|b| b.to_string()),
        1 => prop::collection::vec(prop_oneof![any::<u16>().prop_map(u32::from), any_count()], 0..5)
            .prop_map(|v| format!("{v:?}")),
    ]
}

/// Every key of the demo's file and of a stack file, inline-table keys included, and a few
/// that no table has.
const KEYS: &[&str] = &[
    // the demo's file
    "strategy",
    "deadline",
    "wait_for_healthy",
    "timeout",
    "failover_codes",
    "failure_rate",
    "window",
    "min_calls",
    "open",
    "half_open_probes",
    "path",
    "interval",
    "unhealthy_after",
    "healthy_after",
    "consecutive_failures",
    "base",
    "max",
    "max_ejected",
    "factor",
    "max_backoff",
    "max_attempts",
    // a stack file
    "name",
    "kind",
    "size",
    "length",
    "buckets",
    "slow_calls",
    "threshold",
    "rate",
    "initial",
    "multiplier",
    "jitter",
    "max_wait_in_half_open",
    "mode",
    "attempt_timeout",
    "backoff",
    "budget",
    "ratio",
    "floor_per_sec",
    "target_names",
    "endpoint_names",
    "ejection",
    "health",
    "min_requests",
    "ewma_decay",
    "default_rtt",
    "panic_threshold",
    "policy",
    "quorum",
    "branch_deadline",
    "stragglers",
    "finish",
    "additive",
    // none
    "nope",
    "Window",
];

fn key() -> impl Strategy<Value = &'static str> {
    prop::sample::select(KEYS)
}

fn inline_table(value: impl Strategy<Value = String>) -> impl Strategy<Value = String> {
    prop::collection::vec((key(), value), 0..5).prop_map(|pairs| {
        let body: Vec<String> = pairs.iter().map(|(k, v)| format!("{k} = {v}")).collect();
        format!("{{ {} }}", body.join(", "))
    })
}

fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => scalar(),
        2 => inline_table(scalar()),
        1 => inline_table(prop_oneof![3 => scalar(), 1 => inline_table(scalar())]),
    ]
}

fn document(tables: Vec<&'static str>) -> impl Strategy<Value = String> {
    let table = (
        prop::sample::select(tables),
        prop::collection::vec((key(), value()), 0..6),
    );
    (
        prop::collection::vec((key(), value()), 0..2),
        prop::collection::vec(table, 0..5),
    )
        .prop_map(|(top, tables)| {
            let mut text = String::new();
            for (k, v) in top {
                text.push_str(&format!("{k} = {v}\n"));
            }
            for (name, lines) in tables {
                text.push_str(&format!("[{name}]\n"));
                for (k, v) in lines {
                    text.push_str(&format!("{k} = {v}\n"));
                }
            }
            text
        })
}

fn demo_document() -> impl Strategy<Value = String> {
    document(vec![
        "search",
        "attempt",
        "circuit_breaker",
        "health",
        "ejection",
        "ejection.failure_rate",
        "fanout",
        "retry",
        "nope",
    ])
}

fn stack_document() -> impl Strategy<Value = String> {
    document(vec![
        "circuit_breaker",
        "retry",
        "retry.budget",
        "retry.backoff",
        "failover",
        "balance",
        "balance.ejection",
        "balance.ejection.failure_rate",
        "balance.health",
        "fanout",
        "search",
    ])
}

/// Random JSON: nested arrays and objects of random keys (known ones among them).
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("JSON numbers are finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        duration_text().prop_map(Value::String),
        prop::sample::select(WORDS).prop_map(|w| Value::String(w.to_string())),
        "[ -~]{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((key(), inner), 0..5).prop_map(|pairs| {
                Value::Object(pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
            }),
        ]
    })
}

/// A stack as JSON: an object of layer tables, each an object of random known keys.
fn stack_json() -> impl Strategy<Value = Value> {
    let tables = prop::sample::select(vec![
        "circuit_breaker",
        "retry",
        "failover",
        "balance",
        "fanout",
        "other",
    ]);
    prop::collection::vec((tables, json_value()), 0..5).prop_map(|pairs| {
        Value::Object(pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
    })
}

// -------------------------------------------------------------------------------------------
// Configuration files
// -------------------------------------------------------------------------------------------

/// Three stores and the clients, to build the demo's outbound stacks from accepted
/// configurations (the balancer's health checks need a runtime: this one, entered).
fn demo_parts() -> &'static (tokio::runtime::Runtime, Vec<Store>, app::client::Clients) {
    static PARTS: OnceLock<(tokio::runtime::Runtime, Vec<Store>, app::client::Clients)> =
        OnceLock::new();
    PARTS.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a runtime");
        let stores = rt.block_on(async {
            let mut stores = Vec::new();
            for i in 1..=3u64 {
                let addr: SocketAddr = ([127, 0, 0, 1], 0).into();
                let store = Store::spawn(&format!("store-{i}"), addr, i).await;
                stores.push(store.expect("a store starts"));
            }
            stores
        });
        let clients = {
            let _entered = rt.enter();
            app::client::Clients::new()
        };
        (rt, stores, clients)
    })
}

fn check_demo_config(text: &str) -> Result<(), TestCaseError> {
    match Config::from_toml(text) {
        Ok(config) => {
            prop_assert!(config.validate().is_ok());
            let (rt, stores, clients) = demo_parts();
            let _entered = rt.enter();
            let built = app::outbound::build(&config, stores, clients);
            prop_assert!(built.is_ok(), "accepted but not built: {:?}", built.err());
        }
        Err(e) => {
            prop_assert!(!e.key.is_empty(), "{e}");
            prop_assert!(!e.message.is_empty(), "{e}");
            prop_assert!(e.to_string().contains(&e.key));
        }
    }
    Ok(())
}

/// Builds every layer of an accepted stack and sends one request through each (paused
/// clock); a refused one is a typed error naming its table.
fn check_stack(stack: Result<StackConfig, tower_bulwark::config::StackConfigError>) {
    let stack = match stack {
        Ok(s) => s,
        Err(e) => {
            assert!(!e.message().is_empty(), "{e}");
            if let Some(section) = e.section() {
                assert!(e.key().starts_with(section), "{e}");
            }
            return;
        }
    };
    let rt = paused_runtime();
    rt.block_on(async {
        if let Ok(layer) = stack.circuit_breaker_layer() {
            exercise_breaker(layer.layer(flaky(u32::MAX))).await;
        }
        if let Ok(layer) = stack.retry_layer() {
            exercise(layer.layer(flaky(2))).await;
        }
        if let Ok(layer) = stack.failover_layer() {
            let targets = vec![flaky(u32::MAX), flaky(0)];
            exercise(ServiceBuilder::new().failover(layer).service(targets)).await;
        }
        if let Ok(layer) = stack.balance_layer() {
            let endpoints = vec![flaky(0), flaky(0)];
            if let Ok(balance) = layer.build(
                tower_bulwark::balance::Endpoints::list(endpoints).health(vec![probe(), probe()]),
            ) {
                exercise(balance).await;
                tokio::time::sleep(Duration::from_secs(3 * 24 * 3600)).await;
            }
        }
        if stack.fanout_layer().is_ok() {
            let layer = stack.fanout_builder().merge(FirstSuccess).build().unwrap();
            if let Ok(fanout) = layer.build(vec![flaky(0), flaky(1)]) {
                exercise(fanout).await;
            }
        }
    });
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn the_demo_config_takes_any_bytes(raw in prop::collection::vec(any::<u8>(), 0..512)) {
        let before = count_panics();
        check_demo_config(&String::from_utf8_lossy(&raw))?;
        no_panics(before)?;
    }

    #[test]
    fn the_demo_config_takes_any_toml_ish_text(text in demo_document()) {
        let before = count_panics();
        check_demo_config(&text)?;
        no_panics(before)?;
    }

    #[test]
    fn a_stack_config_takes_any_toml_ish_text(text in stack_document()) {
        let before = count_panics();
        match toml::Deserializer::parse(&text) {
            Ok(de) => check_stack(StackConfig::from_deserializer(de)),
            Err(_) => {
                // Not TOML: the Deserialize impl must refuse it too (with toml's error).
                prop_assert!(toml::from_str::<StackConfig>(&text).is_err());
            }
        }
        no_panics(before)?;
    }

    #[test]
    fn a_stack_config_takes_any_json(value in stack_json(), raw in prop::collection::vec(any::<u8>(), 0..256)) {
        let before = count_panics();
        let text = value.to_string();
        check_stack(StackConfig::from_deserializer(
            &mut serde_json::Deserializer::from_str(&text),
        ));
        // Through `Deserialize` too: the same verdict.
        prop_assert_eq!(
            serde_json::from_str::<StackConfig>(&text).is_ok(),
            StackConfig::from_deserializer(&mut serde_json::Deserializer::from_str(&text)).is_ok()
        );
        check_stack(StackConfig::from_deserializer(
            &mut serde_json::Deserializer::from_slice(&raw),
        ));
        no_panics(before)?;
    }
}

// -------------------------------------------------------------------------------------------
// Each layer's builder with random numeric settings, then one call through what it built
// -------------------------------------------------------------------------------------------

type Flaky = tower::util::BoxCloneService<u32, u32, io::Error>;

/// Fails its first `failures` calls (refused connections), then answers.
fn flaky(failures: u32) -> Flaky {
    let calls = Arc::new(AtomicU32::new(0));
    tower::util::BoxCloneService::new(service_fn(move |x: u32| {
        let n = calls.fetch_add(1, Ordering::SeqCst);
        async move {
            if n < failures {
                Err(io::Error::from(io::ErrorKind::ConnectionRefused))
            } else {
                Ok(x)
            }
        }
    }))
}

type Probe = tower::util::BoxCloneService<(), (), io::Error>;

fn probe() -> Probe {
    tower::util::BoxCloneService::new(service_fn(|()| async { Ok::<_, io::Error>(()) }))
}

/// One call, whatever it answers; waits at most (paused) forever.
async fn exercise<S>(mut svc: S)
where
    S: Service<u32>,
{
    let _ = tokio::time::timeout(FOREVER, async move {
        if let Ok(ready) = svc.ready().await {
            let _ = ready.call(7).await;
        }
    })
    .await;
}

/// Enough failing calls to trip a breaker that can trip, then one after its open period.
async fn exercise_breaker<S>(mut svc: S)
where
    S: Service<u32>,
{
    let _ = tokio::time::timeout(FOREVER, async move {
        for _ in 0..40 {
            if let Ok(ready) = svc.ready().await {
                let _ = ready.call(7).await;
            }
        }
        tokio::time::sleep(Duration::from_secs(101 * 365 * 24 * 3600)).await;
        if let Ok(ready) = svc.ready().await {
            let _ = ready.call(7).await;
        }
    })
    .await;
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn a_circuit_breaker_from_any_numbers(
        failure_rate in any_rate(),
        window in prop_oneof![
            any_count().prop_map(|size| Window::Count { size }),
            (any_duration(), any_count()).prop_map(|(length, buckets)| Window::Time { length, buckets }),
        ],
        min_calls in any_count(),
        consecutive in prop::option::of(any_count()),
        slow in prop::option::of((any_duration(), any_rate())),
        open in prop_oneof![
            any_duration().prop_map(OpenPeriod::Fixed),
            (any_duration(), any_rate(), any_duration(), any_rate()).prop_map(
                |(initial, multiplier, max, jitter)| OpenPeriod::Exponential { initial, multiplier, max, jitter }
            ),
        ],
        probes in any_count(),
        max_wait in prop::option::of(any_duration()),
        readiness in any::<bool>(),
    ) {
        let before = count_panics();
        let mut c = CircuitBreakerConfig::default();
        c.failure_rate = failure_rate;
        c.window = window;
        c.min_calls = min_calls;
        c.consecutive_failures = consecutive;
        c.slow_calls = slow.map(|(threshold, rate)| SlowCalls { threshold, rate });
        c.open = open;
        c.half_open_probes = probes;
        c.max_wait_in_half_open = max_wait;
        c.mode = if readiness { Mode::Readiness } else { Mode::FailFast };
        let verdict = c.validate();
        let built = tower_bulwark::circuit_breaker::Builder::from_config(c)
            .random(SplitMix64::new(1))
            .build();
        prop_assert_eq!(verdict.is_ok(), built.is_ok());
        match built {
            Ok(layer) => paused_runtime().block_on(exercise_breaker(layer.layer(flaky(u32::MAX)))),
            Err(e) => prop_assert!(!e.setting().is_empty() && !e.to_string().is_empty()),
        }
        no_panics(before)?;
    }

    #[test]
    fn a_retry_from_any_numbers(
        max_attempts in any_count(),
        backoff in (any_duration(), any_rate(), any_duration(), any_jitter()),
        budget in prop::option::of((any_rate(), any_count(), any_duration())),
        deadline in prop::option::of(any_duration()),
        attempt_timeout in prop::option::of(any_duration()),
        failures in 0u32..4,
    ) {
        let before = count_panics();
        let (base, factor, max, jitter) = backoff;
        let backoff = match ExponentialBackoff::new(base, factor, max, jitter) {
            Ok(b) => b,
            Err(e) => {
                prop_assert!(!e.setting().is_empty() && !e.to_string().is_empty());
                return Ok(());
            }
        };
        let mut builder = tower_bulwark::retry::BackoffRetryLayer::builder()
            .max_attempts(max_attempts)
            .backoff(backoff)
            .random(SplitMix64::new(2));
        builder = match budget {
            Some((ratio, floor_per_sec, window)) => {
                builder.budget(BudgetConfig { ratio, floor_per_sec, window })
            }
            None => builder.no_budget(),
        };
        if let Some(d) = deadline {
            builder = builder.deadline(d);
        }
        if let Some(t) = attempt_timeout {
            builder = builder.attempt_timeout(t);
        }
        match builder.build() {
            Ok(layer) => paused_runtime().block_on(exercise(layer.layer(flaky(failures)))),
            Err(e) => prop_assert!(!e.setting().is_empty() && !e.to_string().is_empty()),
        }
        no_panics(before)?;
    }

    #[test]
    fn a_failover_from_any_numbers(
        attempt_timeout in prop::option::of(any_duration()),
        interval in any_duration(),
        wait_for_ready in any_duration(),
        priority in any::<bool>(),
        targets in 0usize..4,
    ) {
        let before = count_panics();
        let mut builder = tower_bulwark::FailoverLayer::builder()
            .interval(interval)
            .wait_for_ready(wait_for_ready)
            .mode(if priority { FailoverMode::Priority } else { FailoverMode::Sticky });
        builder = match attempt_timeout {
            Some(t) => builder.attempt_timeout(t),
            None => builder.no_attempt_timeout(),
        };
        match builder.build() {
            Ok(layer) => {
                let list: Vec<Flaky> = (0..targets).map(|i| flaky(if i == 0 { 1 } else { 0 })).collect();
                match layer.build(list) {
                    Ok(failover) => paused_runtime().block_on(exercise(failover)),
                    Err(e) => prop_assert!(!e.setting().is_empty()),
                }
            }
            Err(e) => prop_assert!(!e.setting().is_empty() && !e.to_string().is_empty()),
        }
        no_panics(before)?;
    }

    #[test]
    fn a_balancer_from_any_numbers(
        ejection in (any_count(), any_duration(), any_duration(), any_rate()),
        failure_rate in prop::option::of((any_rate(), any_count(), any_duration())),
        times in (any_duration(), any_duration(), any_duration()),
        health in (any_duration(), any_duration(), any_count(), any_count(), any_rate()),
        panic_threshold in prop::option::of(any_rate()),
        strategy in 0usize..4,
        extra in (any_duration(), prop::option::of((any_duration(), any_rate(), any_rate()))),
    ) {
        let before = count_panics();
        let mut c = BalanceConfig::default();
        let (consecutive_failures, base, max, max_ejected) = ejection;
        let (forget_after, slow_start) = extra;
        c.slow_start = slow_start.map(|(window, aggression, min_weight)| {
            tower_bulwark::balance::SlowStart { window, aggression, min_weight }
        });
        c.ejection = Ejection {
            consecutive_failures,
            base,
            forget_after,
            max,
            max_ejected,
            failure_rate: failure_rate
                .map(|(rate, min_requests, window)| FailureRate { rate, min_requests, window }),
        };
        (c.wait_for_ready, c.ewma_decay, c.default_rtt) = times;
        let (interval, timeout, unhealthy_after, healthy_after, jitter) = health;
        c.health = HealthCheck { interval, timeout, unhealthy_after, healthy_after, jitter };
        c.panic_threshold = panic_threshold;
        c.strategy = [
            tower_bulwark::balance::Strategy::RoundRobin,
            tower_bulwark::balance::Strategy::P2cPending,
            tower_bulwark::balance::Strategy::P2cPeakEwma,
            tower_bulwark::balance::Strategy::FirstAvailable,
        ][strategy];
        let verdict = c.validate();
        let built = tower_bulwark::balance::Builder::from_config(c)
            .random(SplitMix64::new(3))
            .build();
        prop_assert_eq!(verdict.is_ok(), built.is_ok());
        match built {
            Ok(layer) => paused_runtime().block_on(async {
                let endpoints = vec![flaky(3), flaky(0)];
                if let Ok(balance) = layer.build(tower_bulwark::balance::Endpoints::list(endpoints).health(vec![probe(), probe()])) {
                    for _ in 0..3 {
                        exercise(balance.clone()).await;
                    }
                    // A few rounds of health checks.
                    tokio::time::sleep(Duration::from_secs(3 * 24 * 3600)).await;
                }
            }),
            Err(e) => prop_assert!(!e.setting().is_empty() && !e.to_string().is_empty()),
        }
        no_panics(before)?;
    }

    #[test]
    fn a_fan_out_from_any_numbers(
        branch_deadline in prop::option::of(any_duration()),
        deadline in prop::option::of(any_duration()),
        finish in prop::option::of(any_duration()),
        policy in prop_oneof![Just(Policy::All), Just(Policy::First), (0usize..5).prop_map(Policy::Quorum)],
        targets in 0usize..4,
    ) {
        let before = count_panics();
        let mut builder = FanOutLayer::builder().policy(policy);
        if let Some(d) = branch_deadline {
            builder = builder.branch_deadline(d);
        }
        if let Some(d) = deadline {
            builder = builder.deadline(d);
        }
        if let Some(d) = finish {
            builder = builder.finish_stragglers(d);
        }
        match builder.merge(FirstSuccess).build() {
            Ok(layer) => {
                let list: Vec<Flaky> = (0..targets).map(|i| flaky(i as u32 % 2)).collect();
                match layer.build(list.clone()) {
                    Ok(fanout) => paused_runtime().block_on(exercise(fanout)),
                    Err(e) => {
                        prop_assert!(!e.setting().is_empty() && !e.to_string().is_empty());
                        // The layer made anyway answers every call with that error, at once.
                        paused_runtime().block_on(exercise(layer.layer(list)));
                    }
                }
            }
            Err(e) => prop_assert!(!e.setting().is_empty() && !e.to_string().is_empty()),
        }
        no_panics(before)?;
    }
}

#[test]
fn a_duration_that_would_overflow_the_clock_is_refused_by_name() {
    let day = Duration::from_secs(24 * 3600);
    for over in [day + Duration::from_nanos(1), Duration::MAX] {
        let retry = tower_bulwark::retry::BackoffRetryLayer::builder;
        let e = retry().deadline(over).build().unwrap_err();
        assert_eq!(e.setting(), "deadline", "{e}");
        let e = retry().attempt_timeout(over).build().unwrap_err();
        assert_eq!(e.setting(), "attempt_timeout", "{e}");
        let e = FanOutLayer::builder().deadline(over).build().unwrap_err();
        assert_eq!(e.setting(), "deadline", "{e}");
        let mut c = BalanceConfig::default();
        c.health.interval = over;
        let e = tower_bulwark::balance::Builder::from_config(c)
            .build()
            .unwrap_err();
        assert_eq!(e.setting(), "health.interval", "{e}");
    }
    // A day is allowed.
    let retry = tower_bulwark::retry::BackoffRetryLayer::builder();
    assert!(retry.deadline(day).attempt_timeout(day).build().is_ok());
}

// -------------------------------------------------------------------------------------------
// Retry-After and gRPC pushback
// -------------------------------------------------------------------------------------------

const DAYS: [&str; 8] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun", "Xyz"];
const MONTHS: [&str; 13] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec", "Foo",
];

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn any_now() -> impl Strategy<Value = SystemTime> {
    prop_oneof![
        Just(UNIX_EPOCH),
        Just(SystemTime::now()),
        (0u64..253_402_300_800).prop_map(|s| UNIX_EPOCH + Duration::from_secs(s)),
        (0u64..1_000_000_000_000).prop_map(|s| UNIX_EPOCH
            .checked_sub(Duration::from_secs(s))
            .unwrap_or(UNIX_EPOCH)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn retry_after_takes_any_header_bytes(
        raw in prop::collection::vec(any::<u8>(), 0..64),
        now in any_now(),
    ) {
        let before = count_panics();
        if let Ok(value) = http::HeaderValue::from_bytes(&raw) {
            let parsed = parse_retry_after(&value, now);
            let text = value.to_str().map(str::trim).unwrap_or("-");
            if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
                let secs = text.parse::<u64>().unwrap_or(u64::MAX);
                prop_assert_eq!(parsed, Some(Pushback::After(Duration::from_secs(secs))));
            }
        }
        no_panics(before)?;
    }

    #[test]
    fn retry_after_takes_any_date_shaped_text(
        fields in (0usize..8, 0u32..100, 0usize..13, 0u32..100_000, 0u32..100, 0u32..100, 0u32..100),
        zone in prop::sample::select(vec!["GMT", "UTC", "", "+0000"]),
        now in any_now(),
        form in 0usize..3,
    ) {
        let before = count_panics();
        let (wd, day, mon, year, h, m, s) = fields;
        let text = match form {
            // IMF-fixdate
            0 => format!("{}, {day:02} {} {year:04} {h:02}:{m:02}:{s:02} {zone}", DAYS[wd], MONTHS[mon]),
            // RFC 850
            1 => format!("{}day, {day:02}-{}-{:02} {h:02}:{m:02}:{s:02} {zone}", DAYS[wd], MONTHS[mon], year % 100),
            // asctime
            _ => format!("{} {} {day:2} {h:02}:{m:02}:{s:02} {year}", DAYS[wd], MONTHS[mon]),
        };
        let value = http::HeaderValue::from_str(&text).expect("visible ASCII");
        let parsed = parse_retry_after(&value, now);
        if form == 0 && zone == "GMT" && parsed.is_some() && now == UNIX_EPOCH {
            // A date it reads, it reads right.
            let days = days_from_civil(i64::from(year), mon as i64 + 1, i64::from(day));
            let at = days * 86_400 + i64::from(h * 3600 + m * 60 + s);
            prop_assert_eq!(parsed, Some(Pushback::After(Duration::from_secs(at.max(0) as u64))));
        }
        no_panics(before)?;
    }

    // Short random bytes are the crate's own unit property (crates/retry/src/grpc.rs); here,
    // long values and digit runs far past u64.
    #[test]
    fn pushback_takes_long_values(
        pad in "[ \t]{0,3}",
        sign in prop::sample::select(vec!["", "-", "+"]),
        digits in "[0-9]{0,4000}",
        tail in prop_oneof![Just(String::new()), "[ -~]{0,8}"],
    ) {
        let before = count_panics();
        let text = format!("{pad}{sign}{digits}{tail}{pad}");
        let value = http::HeaderValue::from_str(&text).expect("visible ASCII");
        let parsed = parse_pushback(&value);
        let trimmed = text.trim_matches([' ', '\t']);
        if !trimmed.is_empty() && trimmed.bytes().all(|b| b.is_ascii_digit()) {
            let ms = trimmed.parse::<u64>().unwrap_or(u64::MAX);
            prop_assert_eq!(parsed, Pushback::After(Duration::from_millis(ms)));
        } else {
            prop_assert_eq!(parsed, Pushback::Stop);
        }
        no_panics(before)?;
    }
}

// -------------------------------------------------------------------------------------------
// The demo's own parsers: POST /book bodies, fault bodies, the command line
// -------------------------------------------------------------------------------------------

fn book_json() -> impl Strategy<Value = Value> {
    let field = prop_oneof![
        "[ -~]{0,12}".prop_map(Value::String),
        Just(Value::String(String::from("   "))),
        Just(Value::Null),
        any::<i64>().prop_map(|n| json!(n)),
        json_value(),
    ];
    let price = prop_oneof![
        any::<f64>()
            .prop_filter("JSON numbers are finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        Just(json!("9.99")),
        Just(Value::Null),
    ];
    (
        prop::option::of(field.clone()),
        prop::option::of(field.clone()),
        prop::option::of(field),
        prop::option::of(price),
    )
        .prop_map(|(title, author, isbn, price)| {
            let mut map = serde_json::Map::new();
            for (k, v) in [
                ("title", title),
                ("author", author),
                ("isbn", isbn),
                ("price", price),
            ] {
                if let Some(v) = v {
                    map.insert(k.to_string(), v);
                }
            }
            Value::Object(map)
        })
}

fn fault_json() -> impl Strategy<Value = Value> {
    let number = prop_oneof![
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("JSON numbers are finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        (0.0..=1.0f64).prop_map(|f| json!(f)),
        (100u16..600).prop_map(|n| json!(n)),
        Just(json!("503")),
    ];
    (
        prop::sample::select(vec![
            "ok", "error", "flaky", "slow", "down", "OK", "sideways", "",
        ]),
        prop::option::of(number.clone()),
        prop::option::of(number.clone()),
        prop::option::of(number),
        prop::option::of("[a-z_]{1,10}"),
    )
        .prop_map(|(mode, status, rate, delay, extra)| {
            let mut v = json!({ "mode": mode });
            if let Some(s) = status {
                v["status"] = s;
            }
            if let Some(r) = rate {
                v["error_rate"] = r;
            }
            if let Some(d) = delay {
                v["delay_ms"] = d;
            }
            if let Some(k) = extra {
                v[k] = json!(1);
            }
            v
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn a_new_book_takes_any_body(
        raw in prop::collection::vec(any::<u8>(), 0..256),
        shaped in book_json(),
    ) {
        let before = count_panics();
        for body in [raw, shaped.to_string().into_bytes()] {
            match app::search::parse_new_book(&body) {
                Ok(book) => {
                    prop_assert!(book.validate().is_ok(), "{book:?}");
                }
                Err(message) => prop_assert!(!message.is_empty()),
            }
        }
        no_panics(before)?;
    }

    #[test]
    fn a_fault_takes_any_body(
        raw in prop::collection::vec(any::<u8>(), 0..256),
        shaped in fault_json(),
    ) {
        let before = count_panics();
        for body in [raw, shaped.to_string().into_bytes()] {
            match Fault::parse(&body) {
                Ok(fault) => {
                    prop_assert!(fault.validate().is_ok());
                    // What it answers parses again (serde_json's float parsing may move the
                    // last bit of a rate, so the values are not compared).
                    let again = Fault::parse(&serde_json::to_vec(&fault).unwrap());
                    prop_assert!(again.is_ok(), "{:?} from {:?}", again, fault);
                }
                Err(message) => prop_assert!(!message.is_empty()),
            }
        }
        no_panics(before)?;
    }

    #[test]
    fn the_command_line_takes_any_arguments(
        args in prop::collection::vec(
            prop_oneof![
                prop::sample::select(vec![
                    "--listen", "--config", "--allow-chaos", "--allow-chaos=1", "--help", "-h",
                    "--listen=", "--config=", "127.0.0.1:0", "[::1]:9090", "0.0.0.0:80", "--",
                ]).prop_map(String::from),
                "[ -~]{0,20}",
            ],
            0..6,
        ),
    ) {
        let before = count_panics();
        match parse_args(args.clone()) {
            Ok(Command::Help) => prop_assert!(args.iter().any(|a| a == "--help" || a == "-h")),
            Ok(Command::Run { allow_chaos, .. }) => {
                // (An `--allow-chaos` right after `--config` is the file's name.)
                prop_assert!(!allow_chaos || args.iter().any(|a| a == "--allow-chaos"));
            }
            Err(message) => prop_assert!(!message.is_empty()),
        }
        no_panics(before)?;
    }
}

#[test]
fn allow_chaos_is_a_flag() {
    let run = |args: &[&str]| parse_args(args.iter().map(|s| s.to_string()));
    assert!(matches!(
        run(&["--allow-chaos"]),
        Ok(Command::Run {
            allow_chaos: true,
            ..
        })
    ));
    assert!(matches!(
        run(&["--listen", "0.0.0.0:9090"]),
        Ok(Command::Run {
            allow_chaos: false,
            ..
        })
    ));
    assert!(run(&["--allow-chaos=yes"]).is_err());
    assert!(app::config::USAGE.contains("--allow-chaos"));
}

// -------------------------------------------------------------------------------------------
// Random HTTP requests to the running demo, over raw loopback TCP
// -------------------------------------------------------------------------------------------

/// How the body's length is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Length {
    /// `Content-Length` right.
    Exact,
    /// No `Content-Length`: the bytes after the head are not a body (they are left unread).
    Missing,
    /// `Content-Length` shorter than the bytes sent (the rest is left unread).
    Short,
    /// `Content-Length` longer than the bytes sent: the body never ends.
    Long,
    /// `Transfer-Encoding: chunked`, well framed.
    Chunked,
    /// `Transfer-Encoding: chunked`, badly framed.
    BadChunks,
}

#[derive(Clone)]
struct RawRequest {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    length: Length,
    /// A target with bytes no request line may carry (hyper answers 400).
    bad_target: bool,
    /// When set, the whole request is these bytes instead.
    garbage: Option<Vec<u8>>,
}

/// What the request is, as the server's limits see it.
#[derive(Debug)]
struct Shape {
    head_len: usize,
    header_count: usize,
    /// The body length the head declares (the bytes sent, for chunked).
    declared: usize,
    /// Bytes sent that are not part of the request (left unread by the server).
    leftover: bool,
}

impl RawRequest {
    fn encode(&self) -> (Vec<u8>, Shape) {
        if let Some(g) = &self.garbage {
            let shape = Shape {
                head_len: g.len(),
                header_count: 0,
                declared: 0,
                leftover: true,
            };
            return (g.clone(), shape);
        }
        let mut headers = self.headers.clone();
        headers.push(("host".into(), "demo".into()));
        headers.push(("connection".into(), "close".into()));
        let n = self.body.len();
        let (framing, body, declared, leftover) = match self.length {
            Length::Exact => (
                Some(("content-length", n.to_string())),
                self.body.clone(),
                n,
                false,
            ),
            Length::Missing => (None, self.body.clone(), 0, n > 0),
            Length::Short => (
                Some(("content-length", (n / 2).to_string())),
                self.body.clone(),
                n / 2,
                n > 0,
            ),
            Length::Long => (
                Some(("content-length", (n + 10).to_string())),
                self.body.clone(),
                n + 10,
                false,
            ),
            Length::Chunked | Length::BadChunks => {
                let mut framed = Vec::new();
                for chunk in self.body.chunks(4096) {
                    framed.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
                    framed.extend_from_slice(chunk);
                    framed.extend_from_slice(b"\r\n");
                }
                if self.length == Length::BadChunks {
                    framed.extend_from_slice(b"zz\r\nnot a chunk\r\n");
                }
                framed.extend_from_slice(b"0\r\n\r\n");
                (
                    Some(("transfer-encoding", String::from("chunked"))),
                    framed,
                    n,
                    self.length == Length::BadChunks,
                )
            }
        };
        if let Some((name, value)) = framing {
            headers.push((name.into(), value));
        }
        let mut head = format!("{} {} HTTP/1.1\r\n", self.method, self.target).into_bytes();
        for (name, value) in &headers {
            head.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
        }
        head.extend_from_slice(b"\r\n");
        let shape = Shape {
            head_len: head.len(),
            header_count: headers.len(),
            declared,
            leftover,
        };
        head.extend_from_slice(&body);
        (head, shape)
    }

    fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }
}

/// Percent-encodes everything but RFC 3986's unreserved bytes.
fn percent_encode(bytes: &[u8]) -> String {
    let mut out = String::new();
    for &b in bytes {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(vec!["Dune", "Hyperion", "store-1", "store-2", "store-9", "x", ""])
            .prop_map(String::from),
        4 => prop::collection::vec(any::<u8>(), 0..48).prop_map(|b| percent_encode(&b)),
        2 => "[A-Za-z0-9._~-]{0,24}",
        // Percent signs that decode to nothing, or to bytes that are not UTF-8.
        1 => "(%[0-9A-Za-z]{0,2}){1,4}",
        1 => Just(String::from("%FF%FE")),
    ]
}

fn target() -> impl Strategy<Value = (String, bool)> {
    let valid = prop_oneof![
        3 => segment().prop_map(|s| format!("/book/{s}")),
        2 => segment().prop_map(|s| format!("/stores/{s}/fault")),
        1 => segment().prop_map(|s| format!("/stores/{s}/breaker")),
        1 => prop::sample::select(vec!["/book", "/stores", "/metrics", "/health", "/", "/book/", "//", "/stores/store-1"])
            .prop_map(String::from),
        2 => prop::collection::vec(segment(), 1..4).prop_map(|s| format!("/{}", s.join("/"))),
        1 => (segment(), "[A-Za-z0-9=&%]{0,32}").prop_map(|(s, q)| format!("/book/{s}?{q}")),
        1 => Just(String::from("*")),
        // Long, up to past every limit.
        1 => prop_oneof![0usize..2_000, 15_000usize..17_000, 60_000usize..70_000]
            .prop_map(|n| format!("/book/{}", "a".repeat(n))),
    ]
    .prop_map(|t| (t, false));
    let invalid = prop_oneof![
        Just(String::from("/book/a b")),
        Just(String::from("book")),
        Just(String::from("/caf\u{e9}")),
        Just(String::from("/\u{7f}")),
        Just(String::from("http://[::1")),
        Just(String::new()),
    ]
    .prop_map(|t| (t, true));
    prop_oneof![12 => valid, 1 => invalid]
}

fn method() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => prop::sample::select(vec![
            "GET", "GET", "GET", "POST", "POST", "PUT", "PUT", "DELETE", "HEAD", "OPTIONS",
            "PATCH", "TRACE", "CONNECT", "PROPFIND", "get",
        ])
        .prop_map(String::from),
        1 => "[A-Z]{1,12}",
        1 => "[!#$%&'*+.^_`|~0-9A-Za-z-]{1,24}",
    ]
}

fn headers() -> impl Strategy<Value = Vec<(String, String)>> {
    let header = ("x-[a-z0-9-]{0,15}", "[!-~]([ -~]{0,38}[!-~])?");
    prop_oneof![
        6 => prop::collection::vec(header, 0..6),
        1 => prop::collection::vec(header, 94..104),
        // One huge value: under, around and over the head limit.
        1 => prop_oneof![100usize..2_000, 15_000usize..17_500, 30_000usize..40_000]
            .prop_map(|n| vec![(String::from("x-big"), "v".repeat(n))]),
    ]
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => Just(Vec::new()),
        3 => prop::collection::vec(any::<u8>(), 0..2048),
        3 => book_json().prop_map(|v| v.to_string().into_bytes()),
        // Valid books, some with a catalogue title and other fields (a conflict).
        4 => (
            prop::sample::select(vec!["Dune", "Hyperion", "A New One", "Another One"]),
            "[a-zA-Z ]{1,12}",
        )
            .prop_map(|(title, author)| json!({
                "title": title, "author": author, "isbn": "1", "price": 1.5
            }).to_string().into_bytes()),
        2 => fault_json().prop_map(|v| v.to_string().into_bytes()),
        1 => prop_oneof![1000usize..1100, 65_000usize..66_000, 66_000usize..80_000]
            .prop_map(|n| vec![b'x'; n]),
    ]
}

fn length() -> impl Strategy<Value = Length> {
    prop_oneof![
        40 => Just(Length::Exact),
        2 => Just(Length::Missing),
        2 => Just(Length::Short),
        1 => Just(Length::Long),
        4 => Just(Length::Chunked),
        1 => Just(Length::BadChunks),
    ]
}

/// The search service's routes, `{}` standing for a path segment.
const SEARCH_ROUTES: &[(&str, &str)] = &[
    ("GET", "/book/{}"),
    ("HEAD", "/book/{}"),
    ("POST", "/book"),
    ("PUT", "/stores/{}/fault"),
    ("PUT", "/stores/{}/breaker"),
    ("GET", "/stores"),
    ("GET", "/metrics"),
    ("GET", "/health"),
];

/// A store's routes.
const STORE_ROUTES: &[(&str, &str)] = &[
    ("GET", "/books/{}"),
    ("GET", "/books"),
    ("POST", "/books"),
    ("PUT", "/fault"),
    ("GET", "/fault"),
    ("POST", "/health/flip"),
    ("GET", "/health"),
];

/// A random request: a third aimed at `routes` (their method, a random segment, a random
/// body), the rest any method on any target, and a few that are not HTTP at all.
fn raw_request(
    routes: &'static [(&'static str, &'static str)],
) -> impl Strategy<Value = RawRequest> {
    let aimed = (
        prop::sample::select(routes),
        segment(),
        headers(),
        body(),
        length(),
    )
        .prop_map(
            |((method, template), segment, headers, body, length)| RawRequest {
                method: method.to_string(),
                target: template.replace("{}", &segment),
                headers,
                body,
                length,
                bad_target: false,
                garbage: None,
            },
        );
    let anything = (method(), target(), headers(), body(), length()).prop_map(
        |(method, (target, bad_target), headers, body, length)| RawRequest {
            method,
            target,
            headers,
            body,
            length,
            bad_target,
            garbage: None,
        },
    );
    let garbage = prop::collection::vec(any::<u8>(), 1..512).prop_map(|mut g| {
        g.extend_from_slice(b"\r\n\r\n");
        RawRequest {
            method: String::new(),
            target: String::new(),
            headers: Vec::new(),
            body: Vec::new(),
            length: Length::Exact,
            bad_target: true,
            garbage: Some(g),
        }
    });
    prop_oneof![10 => aimed, 20 => anything, 1 => garbage]
}

/// At most 300 bytes of `bytes`, as text.
fn excerpt(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(300)]).into_owned();
    if bytes.len() > 300 {
        format!("{text:?}... ({} bytes)", bytes.len())
    } else {
        format!("{text:?}")
    }
}

impl std::fmt::Debug for RawRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(g) = &self.garbage {
            return write!(f, "garbage {}", excerpt(g));
        }
        let target = excerpt(self.target.as_bytes());
        let headers = self.headers.len();
        let longest = self.headers.iter().map(|(_, v)| v.len()).max().unwrap_or(0);
        write!(
            f,
            "{} {target} ({headers} headers, the longest value {longest} bytes), {:?} body {}",
            self.method,
            self.length,
            excerpt(&self.body)
        )
    }
}

/// What came back on the connection.
enum Outcome {
    /// A status line (and whatever followed it).
    Answered {
        status: u16,
        head: String,
        body: Vec<u8>,
    },
    /// The server closed (or reset) the connection without a status line.
    Closed,
}

impl std::fmt::Debug for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Answered { status, body, .. } => write!(f, "{status} {}", excerpt(body)),
            Outcome::Closed => f.write_str("closed without an answer"),
        }
    }
}

/// Sends `bytes` on a fresh connection while reading whatever comes back, until the server
/// closes it (every request says `Connection: close`). The write half stays open until then:
/// hyper closes a connection whose client half-closed it.
async fn exchange(addr: SocketAddr, bytes: Vec<u8>) -> Outcome {
    let stream = TcpStream::connect(addr).await.expect("the server accepts");
    let (mut reader, mut writer) = stream.into_split();
    let write = tokio::spawn(async move {
        let _ = writer.write_all(&bytes).await;
        writer
    });
    let mut got = Vec::new();
    let read = async {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(20), read)
        .await
        .expect("the server answers or closes the connection within 20 s");
    write.abort();
    let _ = write.await;
    parse_answer(&got)
}

fn parse_answer(got: &[u8]) -> Outcome {
    let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Outcome::Closed;
    };
    let head = String::from_utf8_lossy(&got[..end]).into_owned();
    let status = head
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok());
    match status {
        Some(status) => Outcome::Answered {
            status,
            head,
            body: got[end + 4..].to_vec(),
        },
        None => Outcome::Closed,
    }
}

/// The routes `book_search_requests_total` may name.
const ROUTES: &[&str] = &[
    "/book/{title}",
    "/book",
    "/stores",
    "/stores/{name}/fault",
    "/stores/{name}/breaker",
    "/metrics",
    "/health",
    "unmatched",
];

/// Checks one answer against what the limits and the contract allow:
///
/// * a head over the limits (more than `max_header_bytes`, or more than `max_headers`
///   headers) is answered 431 (or 414, or 400), never served;
/// * a body declared over the limit (64 KiB) is answered 413 (or 408 when it never comes);
/// * a well-formed request within the limits is answered, with a status under 500 but for the
///   one 5xx the contract names for bad input: 502 to a `POST /book` the stores refused
///   (the title is held with other fields: each store's last answer a 409);
/// * a 4xx with a body carries `{"error": message}`;
/// * the server may close the connection without an answer only when it stopped reading a
///   request it refused part-way (a head over the limits or malformed, a body over the limit,
///   bytes left unread): a reset can then destroy an answer already sent.
fn judge(
    request: &RawRequest,
    shape: &Shape,
    outcome: &Outcome,
    limits: &Limits,
) -> Result<(), String> {
    let over_head =
        shape.head_len > limits.max_header_bytes || shape.header_count > limits.max_headers;
    let malformed =
        request.bad_target || request.garbage.is_some() || request.length == Length::BadChunks;
    let over_body = shape.declared > app::search::MAX_BODY;
    match outcome {
        Outcome::Closed => {
            if over_head || malformed || over_body || shape.leftover {
                Ok(())
            } else {
                Err(String::from("closed without an answer"))
            }
        }
        Outcome::Answered { status, head, body } => {
            let status = *status;
            if over_head && ![400, 414, 431].contains(&status) {
                return Err(format!("a head over the limits answered {status}"));
            }
            if !over_head && !malformed && over_body && ![408, 413].contains(&status) {
                return Err(format!("a body over the limit answered {status}"));
            }
            if status >= 500 {
                // Refused by the stores: every store that failed answered 409 (the others
                // stored it, or were still trying when the answer was known).
                let refused_write = status == 502
                    && request.method == "POST"
                    && request.path() == "/book"
                    && serde_json::from_slice::<Value>(body)
                        .ok()
                        .and_then(|v| v["stores"].as_array().cloned())
                        .is_some_and(|stores| {
                            let failed: Vec<&Value> = stores
                                .iter()
                                .filter(|s| {
                                    !["stored", "still_trying", "cancelled"]
                                        .contains(&s["outcome"].as_str().unwrap_or(""))
                                })
                                .collect();
                            !failed.is_empty() && failed.iter().all(|s| s["last_status"] == 409)
                        });
                if !refused_write {
                    return Err(format!(
                        "answered {status}: {}",
                        String::from_utf8_lossy(body)
                    ));
                }
            }
            let json = head
                .to_ascii_lowercase()
                .contains("content-type: application/json");
            if (400..500).contains(&status) && !body.is_empty() && json {
                let v: Value = serde_json::from_slice(body)
                    .map_err(|e| format!("a {status} whose body is not JSON: {e}"))?;
                if !v["error"].is_string() {
                    return Err(format!("a {status} without an error message: {v}"));
                }
            }
            Ok(())
        }
    }
}

/// Runs `f` on a thread with a 64 MiB stack: generating a whole random request walks a deep
/// tree of strategies, and unoptimized builds take more than a test thread's 2 MiB for it.
fn on_a_big_stack(f: fn()) {
    let thread = std::thread::Builder::new()
        .name(String::from("fuzz"))
        .stack_size(64 << 20)
        .spawn(f)
        .expect("a thread");
    if let Err(panic) = thread.join() {
        std::panic::resume_unwind(panic);
    }
}

/// The limits of the servers under test: the defaults, with short body and header timeouts.
fn test_limits() -> Limits {
    Limits {
        header_read_timeout: Duration::from_secs(2),
        body_read_timeout: Duration::from_millis(300),
        ..Limits::default()
    }
}

/// The fuzz must not switch a store's fault on (that changes every later answer, as the
/// contract says): a body that parses as a fault other than `ok` is made invalid.
fn defuse(mut request: RawRequest) -> RawRequest {
    if matches!(Fault::parse(&request.body), Ok(f) if f != Fault::Ok) {
        request.body.insert(0, b'#');
    }
    request
}

#[test]
fn random_requests_to_the_search_service_get_a_4xx_or_an_answer() {
    on_a_big_stack(fuzz_the_search_service);
}

fn fuzz_the_search_service() {
    let start = count_panics();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let limits = test_limits();
    let options = app::Options {
        allow_chaos: false,
        limits,
    };
    let demo = rt
        .block_on(app::start_with(
            Config::default(),
            "127.0.0.1:0".parse().unwrap(),
            options,
        ))
        .expect("the demo starts");
    let addr = demo.addr;
    let mut runner = TestRunner::new(ProptestConfig {
        cases: 200,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let result = runner.run(&raw_request(SEARCH_ROUTES), |request| {
        let before = PANICS.load(Ordering::SeqCst);
        let request = defuse(request);
        let (bytes, shape) = request.encode();
        let outcome = rt.block_on(exchange(addr, bytes));
        judge(&request, &shape, &outcome, &limits).map_err(|why| {
            TestCaseError::fail(format!("{why}\nshape {shape:?}\noutcome {outcome:?}"))
        })?;
        no_panics(before)
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    rt.block_on(async {
        // Still serving, every store untouched, and no label value from a client's path.
        let (status, _) = request(addr, "GET", "/health", b"").await;
        assert_eq!(status, 200);
        for store in &demo.stores {
            assert_eq!(store.fault(), Fault::Ok);
        }
        let (_, metrics) = request(addr, "GET", "/metrics", b"").await;
        assert_route_labels_are_templates(&metrics);
        demo.shutdown().await;
    });
    assert_eq!(PANICS.load(Ordering::SeqCst), start, "a panic was counted");
}

#[test]
fn random_requests_to_a_store_get_a_4xx_or_an_answer() {
    on_a_big_stack(fuzz_a_store);
}

fn fuzz_a_store() {
    let start = count_panics();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut limits = Limits::store();
    limits.body_read_timeout = Duration::from_millis(300);
    let store = rt
        .block_on(Store::spawn_with(
            "store-1",
            "127.0.0.1:0".parse().unwrap(),
            1,
            false,
            limits,
        ))
        .expect("the store starts");
    let addr = store.addr();
    // Aimed at the store's routes; the rest (the search service's among them) are 404 here.
    let strategy = raw_request(STORE_ROUTES);
    let mut runner = TestRunner::new(ProptestConfig {
        cases: 80,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let result = runner.run(&strategy, |request| {
        let before = PANICS.load(Ordering::SeqCst);
        let request = defuse(request);
        let (bytes, shape) = request.encode();
        let outcome = rt.block_on(exchange(addr, bytes));
        // The store's health answers 503 while flipped unhealthy: the contract's answer.
        let unhealthy = matches!(&outcome, Outcome::Answered { status: 503, .. })
            && request.path() == "/health";
        if !unhealthy {
            judge(&request, &shape, &outcome, &limits).map_err(|why| {
                TestCaseError::fail(format!("{why}\nshape {shape:?}\noutcome {outcome:?}"))
            })?;
        }
        no_panics(before)
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    rt.block_on(store.shutdown());
    assert_eq!(PANICS.load(Ordering::SeqCst), start, "a panic was counted");
}

fn assert_route_labels_are_templates(metrics: &str) {
    let mut seen = 0;
    for line in metrics.lines() {
        let Some(labels) = line.strip_prefix("book_search_requests_total{") else {
            continue;
        };
        seen += 1;
        let route = labels
            .split("route=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap_or_else(|| panic!("no route label: {line}"));
        assert!(ROUTES.contains(&route), "a route label from a path: {line}");
    }
    assert!(seen > 0, "no book_search_requests_total series:\n{metrics}");
}

// -------------------------------------------------------------------------------------------
// The demo is safe to run: chaos gate, header read timeout, oversized heads and bodies
// -------------------------------------------------------------------------------------------

/// One request with `Connection: close` over raw TCP: the status and the body.
async fn request(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> (u16, String) {
    let mut bytes = format!(
        "{method} {path} HTTP/1.1\r\nhost: demo\r\nconnection: close\r\ncontent-length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    bytes.extend_from_slice(body);
    match exchange(addr, bytes).await {
        Outcome::Answered { status, body, .. } => {
            (status, String::from_utf8_lossy(&body).into_owned())
        }
        Outcome::Closed => panic!("{method} {path}: closed without an answer"),
    }
}

fn loopback(addr: SocketAddr) -> SocketAddr {
    ([127, 0, 0, 1], addr.port()).into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chaos_controls_answer_403_beyond_loopback_unless_allowed() {
    assert!(app::chaos_allowed("127.0.0.1:1".parse().unwrap(), false));
    assert!(app::chaos_allowed("[::1]:1".parse().unwrap(), false));
    assert!(app::chaos_allowed(
        "[::ffff:127.0.0.1]:1".parse().unwrap(),
        false
    ));
    assert!(!app::chaos_allowed("0.0.0.0:1".parse().unwrap(), false));
    assert!(!app::chaos_allowed("[::]:1".parse().unwrap(), false));
    assert!(!app::chaos_allowed("192.0.2.1:1".parse().unwrap(), false));
    assert!(app::chaos_allowed("0.0.0.0:1".parse().unwrap(), true));

    let all: SocketAddr = "0.0.0.0:0".parse().unwrap();
    let demo = app::start_with(Config::default(), all, app::Options::default())
        .await
        .expect("the demo starts on every interface");
    let addr = loopback(demo.addr);
    let (status, body) = request(addr, "PUT", "/stores/store-1/fault", br#"{"mode":"down"}"#).await;
    assert_eq!(status, 403, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert!(
        v["error"].as_str().unwrap().contains("--allow-chaos"),
        "{v}"
    );
    assert_eq!(demo.stores[0].fault(), Fault::Ok, "the fault was not set");
    // The breaker's admin control likewise: nothing changed.
    let (status, body) = request(
        addr,
        "PUT",
        "/stores/store-1/breaker",
        br#"{"failure_rate":0.1}"#,
    )
    .await;
    assert_eq!(status, 403, "{body}");
    let breaker = demo.outbound.stores[0].breaker.as_ref().unwrap();
    assert_eq!(
        breaker.config().failure_rate,
        0.5,
        "the breaker was not changed"
    );
    // Refused before anything else: an unknown store or a bad body is 403 too.
    let (status, _) = request(addr, "PUT", "/stores/store-9/fault", b"nope").await;
    assert_eq!(status, 403);
    // The rest of the service answers as usual.
    let (status, _) = request(addr, "GET", "/book/Dune", b"").await;
    assert_eq!(status, 200);
    demo.shutdown().await;

    let allowed = app::Options {
        allow_chaos: true,
        ..app::Options::default()
    };
    let demo = app::start_with(Config::default(), all, allowed)
        .await
        .expect("the demo starts");
    let addr = loopback(demo.addr);
    let (status, body) =
        request(addr, "PUT", "/stores/store-1/fault", br#"{"mode":"error"}"#).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(demo.stores[0].fault(), Fault::Error { status: 503 });
    demo.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_beyond_loopback_refuses_its_chaos_controls_unless_allowed() {
    let all: SocketAddr = "0.0.0.0:0".parse().unwrap();
    let store = Store::spawn("store-1", all, 1)
        .await
        .expect("the store starts");
    let addr = loopback(store.addr());
    let (status, body) = request(addr, "PUT", "/fault", br#"{"mode":"down"}"#).await;
    assert_eq!(status, 403, "{body}");
    let (status, _) = request(addr, "POST", "/health/flip", b"").await;
    assert_eq!(status, 403);
    assert_eq!(store.fault(), Fault::Ok);
    assert!(store.healthy());
    // Reading them is not a control.
    let (status, _) = request(addr, "GET", "/fault", b"").await;
    assert_eq!(status, 200);
    let (status, _) = request(addr, "GET", "/books/Dune", b"").await;
    assert_eq!(status, 200);
    store.shutdown().await;

    let store = Store::spawn_with("store-2", all, 2, true, Limits::store())
        .await
        .expect("the store starts");
    let addr = loopback(store.addr());
    let (status, _) = request(addr, "POST", "/health/flip", b"").await;
    assert_eq!(status, 200);
    assert!(!store.healthy());
    store.shutdown().await;
}

/// A demo on loopback with a 250 ms header read timeout and a 250 ms body read timeout.
async fn short_timeouts() -> (app::Demo, Limits) {
    let limits = Limits {
        header_read_timeout: Duration::from_millis(250),
        body_read_timeout: Duration::from_millis(250),
        ..Limits::default()
    };
    let options = app::Options {
        allow_chaos: false,
        limits,
    };
    let demo = app::start_with(Config::default(), "127.0.0.1:0".parse().unwrap(), options)
        .await
        .expect("the demo starts");
    (demo, limits)
}

/// Reads until the server closes; returns what came and how long it took since `started`.
async fn until_closed(
    stream: &mut TcpStream,
    started: tokio::time::Instant,
) -> (Vec<u8>, Duration) {
    let mut got = Vec::new();
    let read = async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("the server closes the connection");
    (got, started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_request_head_is_cut_off_after_the_header_read_timeout() {
    let (demo, limits) = short_timeouts().await;
    // Half a head, then nothing.
    let started = tokio::time::Instant::now();
    let mut stream = TcpStream::connect(demo.addr).await.unwrap();
    stream
        .write_all(b"GET /health HTTP/1.1\r\nhost: demo\r\nx-slow: ")
        .await
        .unwrap();
    let (got, waited) = until_closed(&mut stream, started).await;
    assert!(
        got.is_empty(),
        "no answer: {}",
        String::from_utf8_lossy(&got)
    );
    assert!(
        waited >= limits.header_read_timeout,
        "closed after {waited:?}"
    );

    // Nothing at all: the same.
    let started = tokio::time::Instant::now();
    let mut stream = TcpStream::connect(demo.addr).await.unwrap();
    let (got, waited) = until_closed(&mut stream, started).await;
    assert!(got.is_empty());
    assert!(
        waited >= limits.header_read_timeout,
        "closed after {waited:?}"
    );

    // A keep-alive connection left idle after an answer: closed the same way.
    let started = tokio::time::Instant::now();
    let mut stream = TcpStream::connect(demo.addr).await.unwrap();
    stream
        .write_all(b"GET /health HTTP/1.1\r\nhost: demo\r\n\r\n")
        .await
        .unwrap();
    let (got, waited) = until_closed(&mut stream, started).await;
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(
        waited >= limits.header_read_timeout,
        "closed after {waited:?}"
    );
    demo.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_body_is_answered_408() {
    let (demo, limits) = short_timeouts().await;
    let started = tokio::time::Instant::now();
    let mut stream = TcpStream::connect(demo.addr).await.unwrap();
    stream
        .write_all(b"POST /book HTTP/1.1\r\nhost: demo\r\ncontent-length: 100\r\n\r\n{\"title\":")
        .await
        .unwrap();
    let (got, waited) = until_closed(&mut stream, started).await;
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("\"error\""), "{text}");
    assert!(
        waited >= limits.body_read_timeout,
        "answered after {waited:?}"
    );
    demo.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_heads_are_answered_431() {
    let (demo, limits) = short_timeouts().await;
    let big = "v".repeat(limits.max_header_bytes + 1);
    let mut raw =
        format!("GET /health HTTP/1.1\r\nhost: demo\r\nx-big: {big}\r\n\r\n").into_bytes();
    let Outcome::Answered { status, .. } = exchange(demo.addr, raw.clone()).await else {
        panic!("no answer to a head over the limit");
    };
    assert_eq!(status, 431);

    raw = b"GET /health HTTP/1.1\r\nhost: demo\r\n".to_vec();
    for i in 0..limits.max_headers {
        raw.extend_from_slice(format!("x-h{i}: 1\r\n").as_bytes());
    }
    raw.extend_from_slice(b"\r\n");
    let Outcome::Answered { status, .. } = exchange(demo.addr, raw).await else {
        panic!("no answer to too many headers");
    };
    assert_eq!(status, 431);

    // A long path is part of the head.
    let path = format!("/book/{}", "a".repeat(limits.max_header_bytes));
    let raw = format!("GET {path} HTTP/1.1\r\nhost: demo\r\n\r\n").into_bytes();
    let Outcome::Answered { status, .. } = exchange(demo.addr, raw).await else {
        panic!("no answer to a path over the limit");
    };
    assert!(status == 431 || status == 414, "{status}");

    // Just under the limit is served.
    let pad = limits.max_header_bytes - 200;
    let (status, _) = request(
        demo.addr,
        "GET",
        &format!("/health?{}", "p".repeat(pad)),
        b"",
    )
    .await;
    assert_eq!(status, 200);
    demo.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_bodies_are_answered_413_on_every_route() {
    let (demo, _) = short_timeouts().await;
    let addr = demo.addr;
    let over = vec![b'x'; app::search::MAX_BODY + 1];
    for (method, path) in [
        ("POST", "/book"),
        ("GET", "/book/Dune"),
        ("GET", "/health"),
        ("PUT", "/nope"),
    ] {
        let (status, body) = request(addr, method, path, &over).await;
        assert_eq!(status, 413, "{method} {path}: {body}");
        assert!(body.contains("\"error\""), "{body}");
    }
    // A fault is a few dozen bytes: more than 1 KiB is refused before it is parsed.
    let fault = format!(
        r#"{{"mode":"ok","pad":"{}"}}"#,
        " ".repeat(app::store::FAULT_BODY_LIMIT)
    );
    let (status, body) = request(addr, "PUT", "/stores/store-1/fault", fault.as_bytes()).await;
    assert_eq!(status, 413, "{body}");
    let store = loopback(demo.stores[0].addr());
    let (status, body) = request(store, "PUT", "/fault", fault.as_bytes()).await;
    assert_eq!(status, 413, "{body}");
    // Exactly at the limit is read (and then judged on its content).
    let at = vec![b' '; app::search::MAX_BODY];
    let (status, _) = request(addr, "POST", "/book", &at).await;
    assert_eq!(status, 400);
    demo.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unmatched_paths_do_not_become_metric_labels() {
    let demo = app::start(Config::default(), "127.0.0.1:0".parse().unwrap())
        .await
        .expect("the demo starts");
    for i in 0..40 {
        let (status, _) = request(demo.addr, "GET", &format!("/no/such/route/{i}"), b"").await;
        assert_eq!(status, 404);
        let (status, _) = request(demo.addr, "DELETE", &format!("/book/title-{i}"), b"").await;
        assert_eq!(status, 405);
    }
    let (_, metrics) = request(demo.addr, "GET", "/metrics", b"").await;
    assert_route_labels_are_templates(&metrics);
    assert!(metrics.contains("route=\"unmatched\""), "{metrics}");
    assert!(!metrics.contains("title-"), "a path in the metrics");
    demo.shutdown().await;
}

#[test]
fn a_full_store_is_not_retried() {
    use tower_bulwark::core::{Classify, Decision, Outcome};
    let answer = |status: u16| -> Result<app::client::Answer, tower_bulwark::core::BoxError> {
        Ok(http::Response::builder()
            .status(status)
            .body(bytes::Bytes::new())
            .unwrap())
    };
    let write = app::contract::Write;
    let decide = |status| write.resend(&answer(status));
    assert!(matches!(decide(507), Decision::GiveUp(_)));
    assert!(matches!(decide(409), Decision::GiveUp(_)));
    assert_eq!(decide(503), Decision::Retry);
    assert_eq!(decide(201), Decision::Accept);
    assert_eq!(write.classify(&answer(201)), Outcome::Success);
    assert_eq!(write.classify(&answer(409)), Outcome::Failure);
}
