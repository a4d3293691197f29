//! One TOML file for a whole stack: `examples/stack.toml` parses, builds every layer and names
//! every key each layer accepts; durations are in human form; an unknown key or a bad value in
//! any table is an error naming the table and the key.

use serde::de::{self, Deserialize, Deserializer, Visitor};
use std::fmt;
use std::time::Duration;
use tower::{service_fn, Service, ServiceBuilder, ServiceExt};
use tower_bulwark::balance::{BalanceConfig, Ejection, FailureRate, HealthCheck, Strategy};
use tower_bulwark::bulkhead::{
    AdaptiveConfig, Aimd, Algorithm, BulkheadConfig, Full, Gradient, Mode as BulkheadMode, Queue,
};
use tower_bulwark::circuit_breaker::{
    CircuitBreakerConfig, Mode as BreakerMode, OpenPeriod, SlowCalls, Window,
};
use tower_bulwark::config::{StackConfig, StackConfigError};
use tower_bulwark::core::{ExponentialBackoff, Jitter};
use tower_bulwark::failover::{FailoverConfig, Mode as FailoverMode};
use tower_bulwark::fanout::{FanOutConfig, Policy, Stragglers};
use tower_bulwark::hedge::HedgeConfig;
use tower_bulwark::rate_limit::{Mode as RateLimitMode, RateLimitConfig, RateLimited};
use tower_bulwark::retry::{BudgetConfig, RetryConfig};
use tower_bulwark::ServiceBuilderExt;

const EXAMPLE: &str = include_str!("../examples/stack.toml");

fn parse(text: &str) -> Result<StackConfig, StackConfigError> {
    let de = toml::Deserializer::parse(text).expect("TOML syntax");
    StackConfig::from_deserializer(de)
}

fn error(text: &str) -> StackConfigError {
    match parse(text) {
        Ok(c) => panic!("accepted:\n{text}\n{c:#?}"),
        Err(e) => e,
    }
}

/// `text`'s error names `key` (table first) and says something about it.
#[track_caller]
fn assert_names(text: &str, key: &str, says: &str) {
    let e = error(text);
    assert_eq!(e.key(), key, "{text}\n{e}");
    assert_eq!(
        e.section(),
        Some(key.split(['.', '[']).next().unwrap()),
        "{e}"
    );
    assert!(
        e.to_string().starts_with(&format!("{key}: ")),
        "the message leads with the key: {e}"
    );
    assert!(e.message().contains(says), "{text}\n{e}");
}

const fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

#[test]
fn the_example_reads_with_every_value_in_place() {
    let c = parse(EXAMPLE).unwrap_or_else(|e| panic!("examples/stack.toml: {e}"));

    let cb = c.circuit_breaker.as_ref().unwrap();
    assert_eq!(cb.name, "inventory");
    assert_eq!(cb.window, Window::Count { size: 50 });
    assert_eq!((cb.min_calls, cb.consecutive_failures), (10, Some(5)));
    assert_eq!(
        cb.slow_calls,
        Some(SlowCalls {
            threshold: secs(2),
            rate: 0.8
        })
    );
    assert_eq!(
        cb.open,
        OpenPeriod::Exponential {
            initial: secs(10),
            multiplier: 2.0,
            max: secs(300),
            jitter: 0.1
        }
    );
    assert_eq!(cb.max_wait_in_half_open, Some(secs(30)));
    assert_eq!(cb.mode, BreakerMode::FailFast);

    let r = c.retry.as_ref().unwrap();
    assert_eq!(r.max_attempts, 4);
    assert_eq!(
        (r.deadline, r.attempt_timeout),
        (Some(secs(10)), Some(secs(2)))
    );
    assert_eq!(
        r.backoff,
        ExponentialBackoff::new(Duration::from_millis(100), 2.0, secs(2), Jitter::Full).unwrap()
    );
    assert_eq!(r.budget, Some(BudgetConfig::default()));
    assert_eq!(r.max_concurrent_retries, Some(8));

    let f = c.failover.as_ref().unwrap();
    assert_eq!(f.target_names, ["primary", "backup"]);
    assert_eq!(f.mode, FailoverMode::Sticky);
    assert_eq!(f.attempt_timeout, Some(secs(5)));

    let b = c.balance.as_ref().unwrap();
    assert_eq!(b.strategy, Strategy::P2cPeakEwma);
    assert_eq!(b.default_rtt, Duration::from_millis(30));
    assert_eq!(
        b.ejection.failure_rate,
        Some(FailureRate {
            rate: 0.5,
            min_requests: 20,
            window: secs(30)
        })
    );
    assert_eq!(b.health, HealthCheck::default());
    assert_eq!(b.panic_threshold, Some(0.5));

    let l = c.rate_limit.as_ref().unwrap();
    assert_eq!(l.name, "inventory-calls");
    assert_eq!((l.rate, l.period, l.burst()), (200, secs(1), 50));
    assert_eq!(l.max_wait, Some(Duration::from_millis(20)));
    assert_eq!(l.mode, RateLimitMode::FailFast);

    let o = c.fanout.as_ref().unwrap();
    assert_eq!(o.policy, Policy::Quorum(2));
    assert_eq!(o.stragglers, Stragglers::Finish(secs(5)));
    assert_eq!(
        (o.branch_deadline, o.deadline),
        (Some(secs(2)), Some(secs(3)))
    );
}

#[tokio::test(start_paused = true)]
async fn the_example_builds_every_layer_into_a_stack() {
    let c = parse(EXAMPLE).unwrap();
    let echo = || service_fn(|n: u32| std::future::ready(Ok::<_, std::io::Error>(n + 1)));

    let breaker = c.circuit_breaker_layer().unwrap();
    assert_eq!(breaker.config().name, "inventory");
    let retry = c.retry_layer().unwrap();
    assert!(retry.budget().is_some());
    let mut svc = ServiceBuilder::new()
        .backoff_retry(retry)
        .circuit_breaker(breaker)
        .service(echo());
    assert_eq!(svc.ready().await.unwrap().call(1).await.unwrap(), 2);

    let failover = c.failover_layer().unwrap();
    assert_eq!(failover.config().attempt_timeout, Some(secs(5)));
    let set = failover.build(vec![echo(), echo()]).unwrap();
    assert_eq!(set.target_names(), ["primary", "backup"]);
    assert_eq!(set.oneshot(2).await.unwrap(), 3);

    let balance = c.balance_layer().unwrap();
    let lb = balance.build(vec![echo(), echo(), echo()]).unwrap();
    assert_eq!(lb.oneshot(3).await.unwrap(), 4);

    let fanout = c.fanout_layer().unwrap();
    let write = ServiceBuilder::new()
        .fan_out(fanout)
        .service(vec![echo(), echo(), echo()]);
    let outcomes = write.oneshot(4).await.unwrap();
    assert!(outcomes.met, "a quorum of 2");
    assert!(outcomes.successes() >= 2);
    assert_eq!(outcomes.target_name(2), "replica-3");

    // The rate limit: 50 at once, then the 51st waits its 5 ms (within the 20 ms allowed).
    let limit = c.rate_limit_layer().unwrap();
    let mut limited = ServiceBuilder::new()
        .shared_rate_limit(limit.clone())
        .service(echo());
    for n in 0..50 {
        assert_eq!(limited.ready().await.unwrap().call(n).await.unwrap(), n + 1);
    }
    let start = tokio::time::Instant::now();
    limited.ready().await.unwrap().call(0).await.unwrap();
    assert_eq!(start.elapsed(), Duration::from_millis(5));
    // Four more waiters queue up to 20 ms; the next is refused.
    let mut waiters: Vec<_> = (0..4).map(|_| limited.clone()).collect();
    let mut cx = std::task::Context::from_waker(futures_util::task::noop_waker_ref());
    for w in &mut waiters {
        assert!(w.poll_ready(&mut cx).is_pending());
    }
    let err = limited.ready().await.unwrap().call(0).await.unwrap_err();
    assert_eq!(
        err.downcast_ref::<RateLimited>().unwrap().retry_after(),
        Duration::from_millis(25)
    );

    // The builders start from the file's settings, for what a file cannot say.
    let breaker = c
        .circuit_breaker_builder()
        .name("inventory-eu")
        .readiness_mode()
        .build()
        .unwrap();
    assert_eq!(breaker.config().min_calls, 10);
    assert_eq!(breaker.config().mode, BreakerMode::Readiness);
}

#[test]
fn a_missing_table_is_the_layer_defaults_and_an_empty_file_is_valid() {
    let c = parse("").unwrap();
    assert_eq!(c, StackConfig::default());
    assert_eq!(
        c.circuit_breaker_layer().unwrap().config(),
        &CircuitBreakerConfig::default()
    );
    assert_eq!(
        c.failover_layer().unwrap().config(),
        &FailoverConfig::default()
    );
    let c = parse("[retry]\n").unwrap();
    assert_eq!(c.retry, Some(RetryConfig::default()));
    assert_eq!(c.balance, None);
}

#[test]
fn durations_are_in_human_form() {
    let c = parse(
        "[retry]\ndeadline = \"1m 30s\"\nattempt_timeout = \"250ms\"\n\
         [balance.ejection]\nbase = \"2m\"\nmax = \"1h\"\n\
         [circuit_breaker]\nwindow = { kind = \"time\", length = \"90s\", buckets = 9 }\nopen = \"45s\"\n",
    )
    .unwrap();
    let r = c.retry.unwrap();
    assert_eq!(r.deadline, Some(secs(90)));
    assert_eq!(r.attempt_timeout, Some(Duration::from_millis(250)));
    let e = c.balance.unwrap().ejection;
    assert_eq!((e.base, e.max), (secs(120), secs(3600)));
    let cb = c.circuit_breaker.unwrap();
    assert_eq!(
        cb.window,
        Window::Time {
            length: secs(90),
            buckets: 9
        }
    );
    assert_eq!(cb.open, OpenPeriod::Fixed(secs(45)));

    // A number is not a duration: the unit must be said.
    assert_names("[retry]\ndeadline = 10\n", "retry.deadline", "invalid type");
    assert_names(
        "[retry]\ndeadline = \"10 parsecs\"\n",
        "retry.deadline",
        "parsecs",
    );
    assert_names(
        "[fanout]\nstragglers = { finish = \"soon\" }\n",
        "fanout.stragglers.finish",
        "soon",
    );
}

#[test]
fn an_unknown_key_in_any_table_names_the_table_and_the_key() {
    for (text, key) in [
        ("[circuit_breaker]\nfailure_rat = 0.5\n", "circuit_breaker.failure_rat"),
        (
            "[circuit_breaker]\nslow_calls = { threshold = \"1s\", rate = 0.5, ratee = 1 }\n",
            "circuit_breaker.slow_calls.ratee",
        ),
        ("[retry]\nmax_attemps = 3\n", "retry.max_attemps"),
        ("[retry]\nbackoff = { bse = \"1s\" }\n", "retry.backoff.bse"),
        ("[retry.budget]\nfloor = 3\n", "retry.budget.floor"),
        ("[failover]\ntargets = [\"a\"]\n", "failover.targets"),
        ("[balance]\nstrategie = \"round_robin\"\n", "balance.strategie"),
        ("[balance.ejection]\nconsecutive = 3\n", "balance.ejection.consecutive"),
        (
            "[balance.ejection]\nfailure_rate = { rate = 0.5, min_requests = 5, window = \"10s\", min = 1 }\n",
            "balance.ejection.failure_rate.min",
        ),
        ("[balance.health]\npath = \"/health\"\n", "balance.health.path"),
        ("[fanout]\nquorum = 2\n", "fanout.quorum"),
        ("[rate_limit]\nburts = 10\n", "rate_limit.burts"),
    ] {
        assert_names(text, key, "unknown field");
    }
    // Tables whose form is chosen by their content name the table.
    assert_names(
        "[circuit_breaker]\nwindow = { kind = \"count\", size = 10, buckets = 2 }\n",
        "circuit_breaker.window",
        "unknown field `buckets`",
    );
    assert_names(
        "[circuit_breaker]\nopen = { initial = \"1s\", multiplier = 2.0, max = \"1m\", jiter = 0.1 }\n",
        "circuit_breaker.open",
        "a duration (\"30s\") or a table",
    );
    // And a table no layer has.
    let e = error("[retries]\nmax_attempts = 3\n");
    assert_eq!((e.key(), e.section()), ("retries", Some("retries")));
    assert!(e.message().contains("unknown layer table `retries`"), "{e}");
    assert!(e.message().contains("`retry`"), "{e}");
}

#[test]
fn a_bad_value_in_any_table_names_the_table_and_the_key() {
    for (text, key, says) in [
        // Out of range: refused by the layer itself, as its builder would.
        (
            "[circuit_breaker]\nfailure_rate = 1.5\n",
            "circuit_breaker.failure_rate",
            "1.5",
        ),
        (
            "[circuit_breaker]\nwindow = { kind = \"count\", size = 0 }\n",
            "circuit_breaker.window.size",
            "greater than zero",
        ),
        (
            "[circuit_breaker]\nmin_calls = 200\n",
            "circuit_breaker.min_calls",
            "larger than the count window",
        ),
        ("[retry]\nmax_attempts = 0\n", "retry.max_attempts", "got 0"),
        ("[retry.budget]\nratio = -1.0\n", "retry.budget.ratio", "-1"),
        (
            "[failover]\nattempt_timeout = \"0s\"\n",
            "failover.attempt_timeout",
            "greater than zero",
        ),
        (
            "[failover]\nwait_for_ready = \"2d\"\n",
            "failover.wait_for_ready",
            "longer than a day",
        ),
        (
            "[balance.ejection]\nmax_ejected = 2.0\n",
            "balance.ejection.max_ejected",
            "2",
        ),
        (
            "[rate_limit]\nrate = 0\n",
            "rate_limit.rate",
            "greater than zero",
        ),
        (
            "[rate_limit]\nperiod = \"0s\"\n",
            "rate_limit.period",
            "greater than zero",
        ),
        (
            "[rate_limit]\nburst = 0\n",
            "rate_limit.burst",
            "greater than zero",
        ),
        (
            "[rate_limit]\nmode = \"readiness\"\nmax_wait = \"10ms\"\n",
            "rate_limit.max_wait",
            "readiness mode",
        ),
        (
            "[balance.health]\ninterval = \"0s\"\n",
            "balance.health.interval",
            "greater than zero",
        ),
        (
            "[balance]\npanic_threshold = 0.0\n",
            "balance.panic_threshold",
            "(0, 1]",
        ),
        (
            "[fanout]\npolicy = { quorum = 0 }\n",
            "fanout.policy",
            "at least 1",
        ),
        (
            "[fanout]\ntarget_names = [\"a\", \"b\"]\npolicy = { quorum = 3 }\n",
            "fanout.policy",
            "quorum of 3",
        ),
        (
            "[fanout]\ndeadline = \"0s\"\n",
            "fanout.deadline",
            "greater than zero",
        ),
        // The wrong type, or a name no variant has.
        (
            "[circuit_breaker]\nmin_calls = \"ten\"\n",
            "circuit_breaker.min_calls",
            "invalid type",
        ),
        (
            "[circuit_breaker]\nmode = \"panic\"\n",
            "circuit_breaker.mode",
            "unknown variant",
        ),
        (
            "[retry]\nmax_attempts = -1\n",
            "retry.max_attempts",
            "invalid value",
        ),
        (
            "[retry]\nbackoff = { jitter = \"some\" }\n",
            "retry.backoff.jitter",
            "unknown variant",
        ),
        (
            "[retry]\nbackoff = { base = \"2s\", max = \"1s\" }\n",
            "retry.backoff",
            "`max`",
        ),
        (
            "[retry.budget]\nfloor_per_sec = 1.5\n",
            "retry.budget.floor_per_sec",
            "invalid type",
        ),
        (
            "[failover]\nmode = \"random\"\n",
            "failover.mode",
            "unknown variant `random`",
        ),
        (
            "[failover]\ntarget_names = [\"a\", 3]\n",
            "failover.target_names[1]",
            "invalid type",
        ),
        (
            "[balance]\nstrategy = \"fastest\"\n",
            "balance.strategy",
            "unknown variant",
        ),
        (
            "[balance.health]\njitter = \"lots\"\n",
            "balance.health.jitter",
            "invalid type",
        ),
        (
            "[fanout]\npolicy = \"most\"\n",
            "fanout.policy",
            "unknown variant",
        ),
        (
            "[fanout]\nbranch_deadline = true\n",
            "fanout.branch_deadline",
            "invalid type",
        ),
    ] {
        assert_names(text, key, says);
    }
    // A table that is not a table.
    assert_names("retry = 3\n", "retry", "invalid type");
}

#[test]
fn a_validation_error_keeps_the_layers_own_error_as_its_source() {
    use std::error::Error as _;
    let e = error("[retry]\nmax_attempts = 0\n");
    let source = e.source().expect("the retry layer's error");
    assert_eq!(
        source.downcast_ref::<tower_bulwark::retry::ConfigError>(),
        Some(&tower_bulwark::retry::ConfigError::MaxAttempts {
            value: 0,
            max: tower_bulwark::retry::MAX_ATTEMPTS
        })
    );
}

#[test]
fn toml_from_str_and_other_formats_work_too() {
    // Through `Deserialize`: the format's own error, carrying the same message.
    let c: StackConfig = toml::from_str(EXAMPLE).unwrap();
    assert_eq!(c, parse(EXAMPLE).unwrap());
    let e = toml::from_str::<StackConfig>("[retry]\nmax_attempts = 0\n").unwrap_err();
    assert!(e.message().starts_with("retry.max_attempts: "), "{e}");

    // Any self-describing format: JSON.
    let json =
        r#"{ "retry": { "max_attempts": 5, "deadline": "3s" }, "fanout": { "policy": "first" } }"#;
    let c = StackConfig::from_deserializer(&mut serde_json::Deserializer::from_str(json)).unwrap();
    assert_eq!(c.retry.as_ref().unwrap().max_attempts, 5);
    assert_eq!(c.retry.as_ref().unwrap().deadline, Some(secs(3)));
    assert_eq!(c.fanout.unwrap().policy, Policy::First);
    let e = StackConfig::from_deserializer(&mut serde_json::Deserializer::from_str(
        r#"{ "balance": { "ejection": { "base": "0s" } } }"#,
    ))
    .unwrap_err();
    assert_eq!(e.key(), "balance.ejection.base");
}

// ---------------------------------------------------------------------------------------------
// The example names every key: the keys each type accepts, read from its `Deserialize`.
// ---------------------------------------------------------------------------------------------

/// The fields a derived `Deserialize` struct accepts, asked of it by a deserializer that
/// answers nothing else.
fn fields_of<T: for<'de> Deserialize<'de>>() -> &'static [&'static str] {
    match T::deserialize(FieldNames) {
        Err(Captured::Fields(fields)) => fields,
        Err(Captured::Other(e)) => panic!("{} is not a struct: {e}", std::any::type_name::<T>()),
        Ok(_) => unreachable!(),
    }
}

struct FieldNames;

#[derive(Debug)]
enum Captured {
    Fields(&'static [&'static str]),
    Other(String),
}

impl fmt::Display for Captured {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self:?}")
    }
}

impl std::error::Error for Captured {}

impl de::Error for Captured {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Captured::Other(msg.to_string())
    }
}

impl<'de> Deserializer<'de> for FieldNames {
    type Error = Captured;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Captured> {
        Err(Captured::Other(String::from("not a struct")))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Captured> {
        Err(Captured::Fields(fields))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}

/// The example's text from `[header]` to the next table header.
fn table_text(header: &str) -> &'static str {
    let start = EXAMPLE
        .find(&format!("\n[{header}]\n"))
        .unwrap_or_else(|| panic!("examples/stack.toml has no [{header}]"));
    let rest = &EXAMPLE[start + header.len() + 3..];
    let end = rest.find("\n[").unwrap_or(rest.len());
    &rest[..end]
}

#[test]
fn the_example_names_every_key_of_every_layer() {
    // (table, keys it must set or show in a comment): the keys come from the types
    // themselves, so a setting added to a layer fails here until the example shows it.
    let window = &["kind", "size", "length", "buckets"][..];
    let open = &["initial", "multiplier", "max", "jitter"][..];
    let tables: [(&str, &[&str]); 12] = [
        ("circuit_breaker", fields_of::<CircuitBreakerConfig>()),
        ("circuit_breaker", fields_of::<SlowCalls>()),
        ("circuit_breaker", window),
        ("circuit_breaker", open),
        ("retry", fields_of::<RetryConfig>()),
        ("retry", fields_of::<ExponentialBackoff>()),
        ("retry.budget", fields_of::<BudgetConfig>()),
        ("failover", fields_of::<FailoverConfig>()),
        ("balance", fields_of::<BalanceConfig>()),
        ("balance.ejection", fields_of::<Ejection>()),
        ("balance.ejection", fields_of::<FailureRate>()),
        ("balance.health", fields_of::<HealthCheck>()),
    ];
    let fanout = ("fanout", fields_of::<FanOutConfig>());
    let rate_limit = ("rate_limit", fields_of::<RateLimitConfig>());
    let hedge = ("hedge", fields_of::<HedgeConfig>());
    let bulkhead = [
        ("bulkhead", fields_of::<BulkheadConfig>()),
        ("bulkhead", fields_of::<Queue>()),
        ("adaptive_limit", fields_of::<AdaptiveConfig>()),
        ("adaptive_limit", fields_of::<Queue>()),
        ("adaptive_limit", fields_of::<Gradient>()),
        ("adaptive_limit", fields_of::<Aimd>()),
    ];
    let mut missing = Vec::new();
    for (table, keys) in tables
        .into_iter()
        .chain([fanout, rate_limit, hedge])
        .chain(bulkhead)
    {
        let text = table_text(table);
        for key in keys {
            let set = text.contains(&format!("\n{key} = ")) || text.contains(&format!(" {key} = "));
            let sub_table = EXAMPLE.contains(&format!("\n[{table}.{key}]\n"));
            if !(set || sub_table) {
                missing.push(format!("{table}.{key}"));
            }
        }
    }
    assert!(missing.is_empty(), "examples/stack.toml lacks {missing:?}");
    // Each alternative form is shown too.
    for form in [
        "kind = \"time\"",
        "open = \"30s\"",
        "\"readiness\"",
        "{ additive = ",
        "\"decorrelated\"",
        "\"priority\"",
        "\"round_robin\"",
        "\"first_available\"",
        "\"p2c_pending\"",
        "\"first\"",
        "\"cancel\"",
        "\"fail_fast\"",
        "kind = \"gradient\"",
        "kind = \"aimd\"",
    ] {
        assert!(
            EXAMPLE.contains(form),
            "examples/stack.toml does not show {form}"
        );
    }
}

#[test]
fn the_balance_and_failure_rate_defaults_in_the_example_comments_are_the_real_ones() {
    // Spot checks of the comments against the types' defaults.
    let b = BalanceConfig::default();
    assert_eq!(b.wait_for_ready, secs(1));
    assert_eq!(b.default_rtt, Duration::from_millis(30));
    assert_eq!(b.ejection, Ejection::default());
    assert_eq!((b.ejection.base, b.ejection.max), (secs(30), secs(300)));
    let f = FailoverConfig::default();
    assert_eq!(f.attempt_timeout, Some(secs(30)));
    let r = RetryConfig::default();
    assert_eq!(r.max_attempts, 3);
    assert_eq!(r.backoff.max(), secs(64));
    let cb = CircuitBreakerConfig::default();
    assert_eq!(cb.open, OpenPeriod::Fixed(secs(30)));
    assert_eq!(cb.min_calls, 20);
    assert_eq!(FanOutConfig::default().policy, Policy::All);
}

#[tokio::test(start_paused = true)]
async fn the_hedge_table_reads_builds_and_shares_the_retry_cap() {
    let c = parse(EXAMPLE).unwrap();
    let h = c.hedge.as_ref().unwrap();
    assert_eq!(h.name, "inventory");
    assert_eq!((h.max_attempts, h.min_samples), (2, 100));
    assert_eq!(h.percentile, Some(0.95));
    assert_eq!(h.delay, Some(Duration::from_millis(50)));
    assert_eq!((h.window, h.max_pushback), (secs(10), secs(30)));
    assert_eq!((h.max_extra_load, h.min_hedges_per_sec), (0.1, 1));

    // The retry layer makes the cap; the hedging layer takes a clone of it.
    let retry = c.retry_layer().unwrap();
    let cap = retry.concurrency_cap().cloned().unwrap();
    assert_eq!(cap.max(), 8);
    let hedge = c
        .hedge_builder()
        .concurrency_cap(cap.clone())
        .build()
        .unwrap();
    assert_eq!(hedge.current_delay(), Some(Duration::from_millis(50)));
    let held = hedge.concurrency_cap().unwrap().try_acquire().unwrap();
    assert_eq!(cap.in_flight(), 1, "one cap, two layers");
    drop(held);
    let echo = service_fn(|n: u32| std::future::ready(Ok::<_, std::io::Error>(n + 1)));
    let mut svc = ServiceBuilder::new()
        .backoff_retry(retry)
        .hedge(hedge)
        .service(echo);
    assert_eq!(svc.ready().await.unwrap().call(1).await.unwrap(), 2);
    assert!(c.hedge_layer().is_ok());
}

#[test]
fn a_bad_or_unknown_key_in_the_hedge_table_names_it() {
    assert_names(
        "[hedge]\nmax_attempt = 2\n",
        "hedge.max_attempt",
        "unknown field",
    );
    assert_names("[hedge]\ndelay = \"soon\"\n", "hedge.delay", "");
    for (text, key) in [
        ("[hedge]\nmax_attempts = 6\n", "hedge.max_attempts"),
        ("[hedge]\npercentile = 1.5\n", "hedge.percentile"),
        ("[hedge]\ndelay = \"0s\"\n", "hedge.delay"),
        ("[hedge]\nmin_samples = 0\n", "hedge.min_samples"),
        ("[hedge]\nwindow = \"1ms\"\n", "hedge.window"),
        ("[hedge]\nmax_extra_load = 2.0\n", "hedge.max_extra_load"),
        ("[hedge]\nmax_pushback = \"0s\"\n", "hedge.max_pushback"),
        (
            "[retry]\nmax_concurrent_retries = 0\n",
            "retry.max_concurrent_retries",
        ),
    ] {
        assert_names(text, key, "");
    }
}

#[tokio::test(start_paused = true)]
async fn the_bulkhead_tables_read_and_build() {
    let c = parse(EXAMPLE).unwrap();
    let b = c.bulkhead.as_ref().unwrap();
    assert_eq!((b.name.as_str(), b.max_concurrent), ("inventory", 64));
    assert_eq!(
        b.queue,
        Some(Queue {
            capacity: 32,
            timeout: Duration::from_millis(50)
        })
    );
    assert_eq!(b.mode, BulkheadMode::FailFast);
    let a = c.adaptive_limit.as_ref().unwrap();
    assert_eq!((a.min_limit, a.initial_limit, a.max_limit), (4, 32, 512));
    assert_eq!(a.window, Duration::from_millis(100));
    assert_eq!(
        a.algorithm,
        Algorithm::Gradient(Gradient::new(1.25, 0.5, Some(secs(60))))
    );
    // The defaults in the comments are the real ones.
    assert_eq!(BulkheadConfig::default().max_concurrent, 100);
    assert_eq!(AdaptiveConfig::default(), {
        let mut d = AdaptiveConfig::default();
        (d.min_limit, d.initial_limit, d.max_limit) = (1, 20, 1000);
        d.window = Duration::from_millis(100);
        d.algorithm = Algorithm::Gradient(Gradient::new(1.25, 0.5, Some(secs(60))));
        d
    });
    assert_eq!(Aimd::default(), Aimd::new(secs(1), 1, 0.9));

    // Built into a stack: the third concurrent call waits in the queue, then is refused.
    let one = toml::from_str::<StackConfig>(
        "[bulkhead]\nmax_concurrent = 1\nqueue = { capacity = 1, timeout = \"10ms\" }\n",
    )
    .unwrap();
    let slow = service_fn(|n: u32| async move {
        tokio::time::sleep(secs(1)).await;
        Ok::<_, std::io::Error>(n)
    });
    let svc = ServiceBuilder::new()
        .bulkhead(one.bulkhead_layer().unwrap())
        .service(slow);
    let first = tokio::spawn(svc.clone().oneshot(1));
    tokio::task::yield_now().await;
    let err = svc.clone().oneshot(2).await.unwrap_err();
    assert!(err.is::<Full>(), "{err}");
    assert_eq!(first.await.unwrap().unwrap(), 1);
    let adaptive = ServiceBuilder::new()
        .adaptive_limit(c.adaptive_limit_layer().unwrap())
        .service(service_fn(
            |n: u32| async move { Ok::<_, std::io::Error>(n) },
        ));
    assert_eq!(adaptive.oneshot(3).await.unwrap(), 3);
}

#[test]
fn a_bad_or_unknown_key_in_the_bulkhead_tables_names_it() {
    assert_names(
        "[bulkhead]\nmax_concurent = 2\n",
        "bulkhead.max_concurent",
        "unknown field",
    );
    assert_names(
        "[adaptive_limit]\nalgorithm = { kind = \"vegas\" }\n",
        "adaptive_limit.algorithm.kind",
        "unknown variant",
    );
    assert_names(
        "[adaptive_limit]\nwindow = \"soon\"\n",
        "adaptive_limit.window",
        "",
    );
    for (text, key) in [
        (
            "[bulkhead]\nmax_concurrent = 0\n",
            "bulkhead.max_concurrent",
        ),
        (
            "[bulkhead]\nqueue = { capacity = 0, timeout = \"5ms\" }\n",
            "bulkhead.queue.capacity",
        ),
        (
            "[bulkhead]\nqueue = { capacity = 2, timeout = \"0s\" }\n",
            "bulkhead.queue.timeout",
        ),
        (
            "[bulkhead]\nmode = \"readiness\"\nqueue = { capacity = 2, timeout = \"5ms\" }\n",
            "bulkhead.queue",
        ),
        (
            "[adaptive_limit]\nmin_limit = 0\n",
            "adaptive_limit.min_limit",
        ),
        (
            "[adaptive_limit]\ninitial_limit = 5000\n",
            "adaptive_limit.initial_limit",
        ),
        (
            "[adaptive_limit]\nmin_limit = 10\nmax_limit = 5\ninitial_limit = 7\n",
            "adaptive_limit.max_limit",
        ),
        (
            "[adaptive_limit]\nalgorithm = { kind = \"gradient\", tolerance = 0.5 }\n",
            "adaptive_limit.algorithm.tolerance",
        ),
        (
            "[adaptive_limit]\nalgorithm = { kind = \"aimd\", decrease = 1.5 }\n",
            "adaptive_limit.algorithm.decrease",
        ),
    ] {
        assert_names(text, key, "");
    }
}
