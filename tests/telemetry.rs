//! `TELEMETRY.md` lists everything the layers emit, and nothing they do not: every layer runs
//! here with a Prometheus recorder, a `Listener` and a collecting `tracing` subscriber, and what
//! they received is checked against its tables (metric names, types, labels and help text; `Event`
//! variants; `tracing` events and spans with their levels and fields). The crates' sources are
//! read too, so a `tracing` event or span added without its row fails here. The metric names
//! are checked against Prometheus conventions.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::{self, Write as _};
use std::future::{ready, Ready};
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tower::{service_fn, Layer, Service, ServiceExt};
use tower_bulwark::balance::{BalanceLayer, Ejection, Strategy};
use tower_bulwark::bulkhead::{AdaptiveLimitLayer, BulkheadLayer};
use tower_bulwark::circuit_breaker::CircuitBreakerLayer;
use tower_bulwark::core::{Event, Listener};
use tower_bulwark::failover::FailoverLayer;
use tower_bulwark::fanout::FanOutLayer;
use tower_bulwark::retry::BackoffRetryLayer;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Metadata, Subscriber};

const TELEMETRY: &str = include_str!("../TELEMETRY.md");

// ---------------------------------------------------------------------------------------------
// The document's tables.
// ---------------------------------------------------------------------------------------------

/// The rows of the first table after `heading`, as cells.
fn table(heading: &str) -> Vec<Vec<String>> {
    let start = TELEMETRY
        .find(&format!("\n{heading}\n"))
        .unwrap_or_else(|| panic!("TELEMETRY.md has no `{heading}`"));
    TELEMETRY[start..]
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2) // the header and the separator
        .map(|l| {
            l.trim_matches('|')
                .split(" | ")
                .map(|c| c.trim().to_string())
                .collect()
        })
        .collect()
}

/// The `backticked` words of a cell, leaving out those in parentheses (the values of a
/// label).
fn ticked(cell: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut depth = 0;
    let mut word: Option<String> = None;
    for c in cell.chars() {
        match (c, &mut word) {
            ('(', None) => depth += 1,
            (')', None) => depth -= 1,
            ('`', None) => word = Some(String::new()),
            ('`', Some(w)) => {
                if depth == 0 {
                    out.insert(std::mem::take(w));
                }
                word = None;
            }
            (c, Some(w)) => w.push(c),
            _ => {}
        }
    }
    out
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

// ---------------------------------------------------------------------------------------------
// What the layers emit: a listener and a collecting subscriber.
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Default)]
struct Events(Arc<Mutex<BTreeSet<String>>>);

impl Listener for Events {
    fn on_event(&self, event: &Event<'_>) {
        let debug = format!("{event:?}");
        let variant = debug
            .split([' ', '{', '('])
            .next()
            .unwrap_or("")
            .to_string();
        self.0.lock().unwrap().insert(variant);
    }
}

/// A `tracing` event or span as the subscriber saw it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Seen {
    level: String,
    /// An event's message, or a span's name.
    what: String,
    fields: BTreeMap<String, String>,
    /// The module it came from.
    target: String,
}

#[derive(Default)]
struct Collected {
    spans: Vec<Seen>,
    events: Vec<Seen>,
    /// Spans entered, innermost last (one thread).
    stack: Vec<u64>,
    /// Each event with the spans it happened in.
    contexts: Vec<(Seen, Vec<Seen>)>,
}

#[derive(Clone, Default)]
struct Collect(Arc<Mutex<Collected>>);

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let mut v = String::new();
        let _ = write!(v, "{value:?}");
        self.0.insert(field.name().to_string(), v);
    }
}

fn seen(meta: &Metadata<'_>, what: String, fields: BTreeMap<String, String>) -> Seen {
    Seen {
        level: meta.level().to_string(),
        what,
        fields,
        target: meta.target().to_string(),
    }
}

impl Subscriber for Collect {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, span: &Attributes<'_>) -> Id {
        let mut fields = BTreeMap::new();
        span.record(&mut Fields(&mut fields));
        let mut c = self.0.lock().unwrap();
        let meta = span.metadata();
        c.spans.push(seen(meta, meta.name().to_string(), fields));
        Id::from_u64(c.spans.len() as u64)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let mut fields = BTreeMap::new();
        event.record(&mut Fields(&mut fields));
        let message = fields.remove("message").unwrap_or_default();
        let e = seen(event.metadata(), message, fields);
        let mut c = self.0.lock().unwrap();
        let context = c
            .stack
            .iter()
            .map(|id| c.spans[*id as usize - 1].clone())
            .collect();
        c.events.push(e.clone());
        c.contexts.push((e, context));
    }
    fn enter(&self, span: &Id) {
        self.0.lock().unwrap().stack.push(span.into_u64());
    }
    fn exit(&self, span: &Id) {
        let mut c = self.0.lock().unwrap();
        if let Some(i) = c.stack.iter().rposition(|s| *s == span.into_u64()) {
            c.stack.remove(i);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Every layer, run through what it reports.
// ---------------------------------------------------------------------------------------------

type Reply = Ready<Result<u32, io::Error>>;

/// A backend named `name` that answers `ok`, and logs each call (so the test can see which
/// spans a call ran in).
fn backend(
    name: &'static str,
    ok: bool,
) -> impl Service<u32, Response = u32, Error = io::Error, Future = Reply> + Clone {
    service_fn(move |n: u32| -> Reply {
        tracing::info!(backend = name, "backend called");
        ready(if ok {
            Ok(n)
        } else {
            Err(io::Error::from(io::ErrorKind::ConnectionRefused))
        })
    })
}

async fn exercise(events: Events) {
    let secs = Duration::from_secs;

    // Circuit breaker: trips, refuses, probes, closes.
    let calls = Arc::new(AtomicU64::new(0));
    let n = calls.clone();
    let flaky = service_fn(move |x: u32| {
        let fail = n.fetch_add(1, Ordering::Relaxed) < 2;
        ready(if fail {
            Err(io::Error::from(io::ErrorKind::ConnectionReset))
        } else {
            Ok(x)
        })
    });
    let mut breaker = CircuitBreakerLayer::builder()
        .name("db")
        .count_window(2)
        .min_calls(2)
        .slow_calls(secs(1), 1.0)
        .open_for(secs(10))
        .listener(events.clone())
        .build()
        .unwrap()
        .layer(flaky);
    for _ in 0..3 {
        let _ = breaker.ready().await.unwrap().call(1).await;
    }
    tokio::time::advance(secs(11)).await;
    breaker.ready().await.unwrap().call(1).await.unwrap();
    // Its settings changed through its handle.
    breaker.handle().update(|c| c.failure_rate = 0.9).unwrap();

    // Retry: retries, then gives up.
    let retry = BackoffRetryLayer::builder()
        .name("api")
        .max_attempts(2)
        .listener(events.clone())
        .build()
        .unwrap();
    let _ = retry.layer(backend("api-1", false)).oneshot(1).await;

    // Failover: the primary fails, the backup answers (in the second attempt's span).
    let failover = FailoverLayer::builder()
        .name("sites")
        .target_names(["primary", "backup"])
        .listener(events.clone())
        .build()
        .unwrap()
        .build(vec![backend("primary", false), backend("backup", true)])
        .unwrap();
    failover.oneshot(1).await.unwrap();

    // Balance: an endpoint ejected, returned, marked unhealthy and healthy again.
    let mut lb = BalanceLayer::builder()
        .name("replicas")
        .endpoint_names(["r1", "r2"])
        .strategy(Strategy::RoundRobin)
        .ejection(Ejection {
            consecutive_failures: 1,
            base: secs(1),
            ..Ejection::default()
        })
        .listener(events.clone())
        .build()
        .unwrap()
        .build(vec![backend("r1", false), backend("r2", true)])
        .unwrap();
    for _ in 0..3 {
        let _ = lb.ready().await.unwrap().call(1).await;
    }
    tokio::time::advance(secs(2)).await;
    for _ in 0..2 {
        let _ = lb.ready().await.unwrap().call(1).await;
    }
    let handle = lb.handle();
    handle.set_healthy(1, false);
    handle.set_healthy(1, true);
    handle.update(|c| c.wait_for_ready = secs(2)).unwrap();

    // Balance fed by discovery: an endpoint added, then removed.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let changes = futures_util::stream::poll_fn(move |cx| {
        rx.poll_recv(cx)
            .map(|c| c.map(Ok::<_, std::convert::Infallible>))
    });
    let mut discovered = BalanceLayer::builder()
        .name("discovered")
        .listener(events.clone())
        .build()
        .unwrap()
        .build(tower_bulwark::balance::Endpoints::discover(Box::pin(
            changes,
        )))
        .unwrap();
    tx.send(tower::discover::Change::Insert("d1", backend("d1", true)))
        .unwrap();
    let _ = discovered.ready().await.unwrap().call(1).await;
    tx.send(tower::discover::Change::Remove("d1")).unwrap();
    tx.send(tower::discover::Change::Insert("d2", backend("d2", true)))
        .unwrap();
    let _ = discovered.ready().await.unwrap().call(1).await;

    // Health gate: its checks find the service unhealthy, then healthy again.
    let up = Arc::new(AtomicBool::new(true));
    let flag = up.clone();
    let probe = service_fn(move |()| {
        ready(if flag.load(Ordering::SeqCst) {
            Ok(())
        } else {
            Err(io::Error::other("503"))
        })
    });
    let gate = tower_bulwark::HealthGateLayer::builder()
        .name("store")
        .check(tower_bulwark::health::HealthCheck {
            unhealthy_after: 1,
            ..Default::default()
        })
        .build()
        .unwrap()
        .build(backend("store", true), probe)
        .unwrap();
    tokio::time::advance(secs(1)).await;
    up.store(false, Ordering::SeqCst);
    tokio::time::advance(secs(3)).await;
    up.store(true, Ordering::SeqCst);
    tokio::time::advance(secs(3)).await;
    assert!(gate.handle().is_healthy());

    // Fan-out: one target succeeds, one fails.
    let fanout = FanOutLayer::builder()
        .name("writes")
        .target_names(["a", "b"])
        .listener(events.clone())
        .build()
        .unwrap()
        .build(vec![backend("a", true), backend("b", false)])
        .unwrap();
    let outcomes = fanout.oneshot(1).await.unwrap();
    assert_eq!(outcomes.successes(), 1);

    // Rate limit: one caller waits for its token, the next is refused; the rate is changed.
    let limit = tower_bulwark::RateLimitLayer::builder()
        .name("quota")
        .per_second(10)
        .burst(1)
        .max_wait(Duration::from_millis(100))
        .listener(events.clone())
        .build()
        .unwrap();
    let mut limited = limit.layer(backend("quota", true));
    for _ in 0..3 {
        let _ = limited.ready().await.unwrap().call(1).await;
    }
    let mut waiting = limited.clone();
    let mut cx = std::task::Context::from_waker(futures_util::task::noop_waker_ref());
    assert!(waiting.poll_ready(&mut cx).is_pending());
    let refused = limited.ready().await.unwrap().call(1).await.unwrap_err();
    assert!(refused.is::<tower_bulwark::rate_limit::RateLimited>());
    limit.handle().set_rate(20, secs(1)).unwrap();

    // Hedge: a slow first attempt is hedged and the hedge wins; with the resend cap full, the
    // next hedge is refused.
    let calls = Arc::new(AtomicU64::new(0));
    let n = calls.clone();
    let slow_first = service_fn(move |x: u32| {
        let slow = n.fetch_add(1, Ordering::Relaxed) % 2 == 0;
        async move {
            let wait = if slow { 100 } else { 10 };
            tokio::time::sleep(Duration::from_millis(wait)).await;
            Ok::<_, io::Error>(x)
        }
    });
    let cap = tower_bulwark::core::budget::ResendCap::new(1);
    let mut hedged = tower_bulwark::HedgeLayer::builder()
        .name("search")
        .delay(Duration::from_millis(20))
        .concurrency_cap(cap.clone())
        .listener(events.clone())
        .build()
        .unwrap()
        .layer(slow_first);
    hedged.ready().await.unwrap().call(1).await.unwrap();
    let held = cap.try_acquire().unwrap();
    hedged.ready().await.unwrap().call(2).await.unwrap();
    drop(held);

    // Bulkhead: one call holds the only permit; the next waits out its queue timeout, the one
    // after finds the queue full; without a queue a call is refused at once, and in readiness
    // mode a poll is turned away. The limit is set by hand; an adaptive one moves its own.
    let slow = service_fn(|n: u32| async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        Ok::<_, io::Error>(n)
    });
    let bulkhead = |name: &'static str, queue: bool, readiness: bool| {
        let mut b = BulkheadLayer::builder()
            .name(name)
            .max_concurrent(1)
            .listener(events.clone());
        if queue {
            b = b.queue(1, Duration::from_millis(10));
        }
        if readiness {
            b = b.readiness_mode();
        }
        b.build().unwrap().layer(slow)
    };
    let queued = bulkhead("store", true, false);
    let holder = tokio::spawn(queued.clone().oneshot(1));
    tokio::task::yield_now().await;
    let waiter = tokio::spawn(queued.clone().oneshot(2));
    tokio::task::yield_now().await;
    assert!(
        queued.clone().oneshot(3).await.is_err(),
        "the queue is full"
    );
    assert!(waiter.await.unwrap().is_err(), "its wait ran out");
    holder.await.unwrap().unwrap();
    queued.handle().set_max_concurrent(2).unwrap();
    queued
        .handle()
        .set_queue(Some(tower_bulwark::bulkhead::Queue {
            capacity: 2,
            timeout: Duration::from_millis(10),
        }))
        .unwrap();
    let unqueued = bulkhead("search", false, false);
    let holder = tokio::spawn(unqueued.clone().oneshot(1));
    tokio::task::yield_now().await;
    assert!(unqueued.clone().oneshot(2).await.is_err(), "full");
    holder.await.unwrap().unwrap();
    let mut ready = bulkhead("replica", false, true);
    let holder = tokio::spawn(ready.clone().oneshot(1));
    tokio::task::yield_now().await;
    let waker = futures_util::task::noop_waker();
    let pending = ready.poll_ready(&mut std::task::Context::from_waker(&waker));
    assert!(pending.is_pending(), "not ready while full");
    holder.await.unwrap().unwrap();
    let adaptive = AdaptiveLimitLayer::builder()
        .name("ranking")
        .limits(1, 4, 8)
        .listener(events.clone())
        .build()
        .unwrap()
        .layer(slow);
    for _ in 0..6 {
        adaptive.clone().oneshot(1).await.unwrap();
    }
    assert_eq!(
        adaptive.handle().max_concurrent(),
        4,
        "measured, then the initial limit"
    );
}

struct Run {
    prometheus: String,
    events: BTreeSet<String>,
    tracing: Arc<Mutex<Collected>>,
}

fn run_every_layer() -> Run {
    // Buckets, so histograms render as Prometheus histograms (not summaries).
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new()
        .set_buckets(&[0.001, 0.01, 0.1, 1.0, 10.0])
        .unwrap()
        .build_recorder();
    let prometheus = recorder.handle();
    let events = Events::default();
    let collect = Collect::default();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    metrics::with_local_recorder(&recorder, || {
        tracing::subscriber::with_default(collect.clone(), || {
            runtime.block_on(exercise(events.clone()))
        })
    });
    let events = events.0.lock().unwrap().clone();
    Run {
        prometheus: prometheus.render(),
        events,
        tracing: collect.0,
    }
}

// ---------------------------------------------------------------------------------------------
// The checks.
// ---------------------------------------------------------------------------------------------

#[test]
fn telemetry_md_lists_what_the_layers_emit() {
    let run = run_every_layer();
    metrics_are_listed_and_conventional(&run.prometheus);
    events_are_listed(&run.events);
    tracing_is_listed(&run.tracing.lock().unwrap());
}

/// Every metric family rendered is a row of the table, with its type and label keys, and
/// every row was rendered; the names follow Prometheus conventions and the labels one scheme.
fn metrics_are_listed_and_conventional(text: &str) {
    // name -> (type, label keys) from the exposition text; a histogram's `_bucket`, `_sum` and
    // `_count` series are its family's, its `le` label the exposition's own.
    let mut rendered: BTreeMap<String, (String, BTreeSet<String>)> = BTreeMap::new();
    let mut help: BTreeMap<String, String> = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            rendered.entry(name.to_string()).or_default().0 = kind.to_string();
        } else if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, text) = rest.split_once(' ').unwrap_or((rest, ""));
            help.insert(name.to_string(), text.to_string());
        } else if !line.starts_with('#') && !line.is_empty() {
            let mut name = line.split(['{', ' ']).next().unwrap();
            for part in ["_bucket", "_sum", "_count"] {
                if let Some(family) = name.strip_suffix(part) {
                    if rendered.get(family).is_some_and(|(k, _)| k == "histogram") {
                        name = family;
                    }
                }
            }
            let labels = line
                .split_once('{')
                .map(|(_, l)| l.split_once('}').unwrap().0)
                .unwrap_or("");
            let keys = labels
                .split(',')
                .filter(|l| !l.is_empty())
                .map(|l| l.split_once('=').unwrap().0.to_string())
                .filter(|k| k != "le");
            rendered.entry(name.to_string()).or_default().1.extend(keys);
        }
    }
    let bulwark: BTreeMap<_, _> = rendered
        .into_iter()
        .filter(|(n, _)| n.starts_with("bulwark_"))
        .collect();

    let rows = table("## Metrics");
    let mut listed = BTreeMap::new();
    for row in &rows {
        let name = ticked(&row[0]).into_iter().next().unwrap();
        listed.insert(name, (row[1].clone(), ticked(&row[2])));
    }
    assert_eq!(
        bulwark.keys().collect::<Vec<_>>(),
        listed.keys().collect::<Vec<_>>(),
        "the metrics emitted and the metrics TELEMETRY.md lists:\n{text}"
    );
    for (name, (kind, labels)) in &bulwark {
        let (listed_kind, listed_labels) = &listed[name];
        assert_eq!(kind, listed_kind, "{name}'s type");
        assert_eq!(labels, listed_labels, "{name}'s labels");

        // Prometheus conventions.
        assert!(
            name.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
            "{name}: snake_case"
        );
        let layer = [
            "circuit_breaker",
            "retry",
            "failover",
            "balance",
            "fanout",
            "health",
            "bulkhead",
            "rate_limit",
            "hedge",
        ]
        .iter()
        .find(|l| name.starts_with(&format!("bulwark_{l}_")));
        assert!(layer.is_some(), "{name}: bulwark_<layer>_...");
        assert_eq!(
            kind == "counter",
            name.ends_with("_total"),
            "{name}: a counter, and only a counter, ends in _total"
        );
        for unit in ["_ms", "_millis", "_milliseconds", "_us", "_ns"] {
            assert!(!name.contains(unit), "{name}: durations in seconds");
        }
        // Histograms are durations in seconds (`_seconds`), or counts of attempts.
        if kind == "histogram" {
            assert!(
                name.ends_with("_seconds") || name.ends_with("_attempts"),
                "{name}: a histogram of seconds or attempts"
            );
        }
        // Help text for every metric, so an exporter shows a `# HELP` line.
        assert!(
            help.get(name).is_some_and(|h| !h.trim().is_empty()),
            "{name} has no # HELP line"
        );
        // One label scheme: every series names its layer instance `name`; targets are `target`.
        assert!(labels.contains("name"), "{name} has no `name` label");
        let scheme = set(&["name", "target", "outcome", "reason", "from", "to", "state"]);
        assert!(
            labels.is_subset(&scheme),
            "{name}: labels {labels:?} outside {scheme:?}"
        );
    }
}

/// Every `Event` variant the layers sent is a row, and every row was sent.
fn events_are_listed(seen: &BTreeSet<String>) {
    let listed: BTreeSet<String> = table("## Events")
        .iter()
        .map(|row| ticked(&row[0]).into_iter().next().unwrap())
        .collect();
    assert_eq!(
        seen, &listed,
        "the Event variants sent and those TELEMETRY.md lists"
    );
}

/// Every `tracing` event and span the layers emitted is a row with its level and fields; every
/// `tracing` event and span in the crates' sources is a row; the failover's second attempt
/// runs in its span.
fn tracing_is_listed(c: &Collected) {
    let events = table("### Events");
    let spans = table("### Spans");
    let ours = |s: &&Seen| s.target.starts_with("bulwark_");

    for e in c.events.iter().filter(ours) {
        let fields: BTreeSet<String> = e.fields.keys().cloned().collect();
        let row = events
            .iter()
            .find(|r| r[1] == e.what && ticked(&r[2]) == fields)
            .unwrap_or_else(|| panic!("TELEMETRY.md has no row for {e:?}"));
        assert_eq!(row[0], e.level, "{e:?}");
    }
    let emitted: BTreeSet<&str> = c
        .events
        .iter()
        .filter(ours)
        .map(|e| e.what.as_str())
        .collect();
    for message in [
        "circuit breaker opened",
        "circuit breaker state changed",
        "circuit breaker refused a call",
        "circuit breaker recorded an outcome",
        "circuit breaker settings changed",
        "retrying",
        "not retrying",
        "failing over",
        "now sticking to target",
        "endpoint ejected after consecutive failures",
        "endpoint returned",
        "endpoint health changed",
        "balancer settings changed",
        "fan-out target finished",
        "bulkhead turned a call away",
        "bulkhead limit changed",
        "bulkhead limit set by hand",
        "bulkhead settings changed",
        "rate limit refused a call",
        "rate limit changed",
        "hedging",
        "not hedging",
    ] {
        assert!(
            emitted.contains(message),
            "the run did not log {message:?}: {emitted:?}"
        );
    }

    for s in c.spans.iter().filter(ours) {
        let fields: BTreeSet<String> = s.fields.keys().cloned().collect();
        let row = spans
            .iter()
            .find(|r| ticked(&r[0]).contains(&s.what))
            .unwrap_or_else(|| panic!("TELEMETRY.md has no span row for {s:?}"));
        assert_eq!(row[1], s.level, "{s:?}");
        assert_eq!(ticked(&row[2]), fields, "{s:?}");
    }

    // The breaker's and the balancer's spans were opened, naming the layer and the state it
    // admitted the call in, or the endpoint it chose.
    let opened = |name: &str| c.spans.iter().filter(ours).any(|s| s.what == name);
    assert!(opened("breaker"), "no breaker span: {:?}", c.spans);
    assert!(opened("balancer"), "no balancer span: {:?}", c.spans);
    let breaker = c.spans.iter().find(|s| s.what == "breaker").unwrap();
    assert_eq!(breaker.fields["breaker"], "db");
    assert!(
        ["closed", "half_open"].contains(&breaker.fields["state"].trim_matches('"')),
        "{breaker:?}"
    );

    // The span carries the layer (its name), the target and the attempt, and the attempt's own
    // work (the backup's call) runs inside it.
    let (_, context) = c
        .contexts
        .iter()
        .find(|(e, _)| e.what == "backend called" && e.fields["backend"] == "\"backup\"")
        .expect("the backup was called");
    let span = context.last().expect("the backup's call ran in a span");
    assert_eq!(span.what, "failover");
    assert_eq!(span.fields["failover"], "sites");
    assert_eq!(span.fields["target"], "backup");
    assert_eq!(span.fields["attempt"], "2");
    // The first attempt, which needed no failover, ran in none.
    let (_, first) = c
        .contexts
        .iter()
        .find(|(e, _)| e.what == "backend called" && e.fields["backend"] == "\"primary\"")
        .unwrap();
    assert!(first.is_empty(), "{first:?}");

    // The retry's second attempt runs in its span; the first in none.
    let calls: Vec<_> = c
        .contexts
        .iter()
        .filter(|(e, _)| e.what == "backend called" && e.fields["backend"] == "\"api-1\"")
        .collect();
    assert_eq!(calls.len(), 2, "two attempts");
    assert!(calls[0].1.is_empty(), "{:?}", calls[0].1);
    let span = calls[1].1.last().expect("the retry ran in a span");
    assert_eq!(span.what, "retry");
    assert_eq!(span.fields["retry"], "api");
    assert_eq!(span.fields["attempt"], "2");

    // The sources: every event and span a crate can emit has its row.
    let crates = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("crates");
    let mut sources = Vec::new();
    for krate in std::fs::read_dir(&crates).unwrap() {
        let src = krate.unwrap().path().join("src");
        for file in std::fs::read_dir(&src).into_iter().flatten() {
            let path = file.unwrap().path();
            if path.extension().is_some_and(|e| e == "rs") {
                sources.push((path.clone(), std::fs::read_to_string(&path).unwrap()));
            }
        }
    }
    let mut found = 0;
    for (path, text) in &sources {
        for (level, mac) in [
            ("TRACE", "tracing::trace!("),
            ("DEBUG", "tracing::debug!("),
            ("INFO", "tracing::info!("),
            ("WARN", "tracing::warn!("),
            ("ERROR", "tracing::error!("),
        ] {
            for (at, _) in text.match_indices(mac) {
                let call = &text[at..];
                let call = &call[..call.find(");").expect("a macro call ends")];
                // The message is the call's last string literal.
                let end = call.rfind('"').unwrap();
                let start = call[..end].rfind('"').unwrap() + 1;
                let message = &call[start..end];
                found += 1;
                assert!(
                    events.iter().any(|r| r[0] == level && r[1] == message),
                    "{}: `{level} {message}` has no row in TELEMETRY.md",
                    path.display()
                );
            }
        }
        for (at, _) in text.match_indices("_span!(") {
            let call = &text[at..];
            let name = call.split('"').nth(1).unwrap();
            assert!(
                spans.iter().any(|r| ticked(&r[0]).contains(name)),
                "{}: span `{name}` has no row in TELEMETRY.md",
                path.display()
            );
        }
    }
    assert!(
        found >= 20,
        "only {found} tracing calls found in the sources"
    );
}
