//! `DnsDiscover` against a real authoritative DNS server: hickory-server, started by each test
//! on 127.0.0.1 (a free UDP port, and TCP on the same port), serving an in-memory zone `test.`
//! whose records the test changes while it runs. A thin request handler in front of the zone
//! counts the queries and can answer SERVFAIL or nothing at all; the server can also be stopped
//! and started again on the same port. (The server is `support/dns_server.rs`, shared with the
//! workspace's `tests/fleet.rs`.)
//!
//! Backends are named by loopback addresses (127.0.0.11, 127.0.0.12, ...) on one port; no
//! backend runs: the tests check the `Change`s the stream yields.
//!
//! Real sockets run on real time (tokio's paused clock would fire the resolver's timeouts at
//! once), so TTLs and refresh intervals are short, every wait is bounded, and the assertions
//! are on counts and sets, never on elapsed time.
//!
//! Run: `cargo test -p bulwark-balance --features dns --test dns` (add `metrics` for the
//! metric checks).

#![cfg(feature = "dns")]

use bulwark_balance::dns::{DnsConfigError, DnsDiscover, DnsEndpoint};
use bulwark_balance::{EndpointKey, Refresh};
use bulwark_core::{ExponentialBackoff, Jitter, SplitMix64};
use futures_util::{FutureExt, StreamExt};
use hickory_server::proto::rr::rdata::{AAAA, SRV, TXT};
use hickory_server::proto::rr::{RData, RecordType};
use std::collections::{BTreeMap, BTreeSet};

use bulwark_test_support::Logs;
use std::future::Future;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tower::discover::Change;

#[path = "support/dns_server.rs"]
mod dns_server;
use dns_server::{name, DnsServer, Mode};

const PORT: u16 = 50051;
const WAIT: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

const FAILING: &str = "dns resolution failing; keeping the last endpoints";
const RECOVERED: &str = "dns resolution recovered";
const FAILED_AGAIN: &str = "dns resolution failed again";

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn addr(n: u8) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, n], PORT))
}

/// A source for `query` at `server`, quick to refresh (TTL 0 records refresh every 50 ms),
/// quick to fail (100 ms timeout, one attempt) and to retry (50 ms to 100 ms).
fn quick(query: &str, server: &DnsServer) -> bulwark_balance::dns::DnsDiscoverBuilder {
    DnsDiscover::builder(query)
        .resolver_addr(server.addr)
        .min_refresh(ms(50))
        .max_refresh(ms(2000))
        .timeout(ms(100))
        .attempts(1)
        .backoff(ExponentialBackoff::new(ms(50), 2.0, ms(100), Jitter::None).unwrap())
        .random(Arc::new(SplitMix64::new(1)))
}

type Discover = DnsDiscover<SocketAddr>;

/// The next change, within `WAIT`.
async fn next(discover: &mut Discover) -> Change<DnsEndpoint, SocketAddr> {
    tokio::time::timeout(WAIT, discover.next())
        .await
        .expect("a change within the wait")
        .expect("the stream does not end")
        .unwrap()
}

/// The next `n` changes, as (inserted, removed) sets of addresses; each inserted service is
/// the one `make` made for its key.
async fn changes(
    discover: &mut Discover,
    n: usize,
) -> (BTreeSet<SocketAddr>, BTreeSet<SocketAddr>) {
    let (mut inserted, mut removed) = (BTreeSet::new(), BTreeSet::new());
    for _ in 0..n {
        match next(discover).await {
            Change::Insert(key, service) => {
                assert_eq!(key.addr, service);
                inserted.insert(key.addr);
            }
            Change::Remove(key) => {
                removed.insert(key.addr);
            }
        }
    }
    (inserted, removed)
}

/// Waits (at most `WAIT`) until `ready` is true.
async fn until(what: &str, mut ready: impl FnMut() -> bool) {
    let wait = async {
        while !ready() {
            tokio::time::sleep(ms(10)).await;
        }
    };
    tokio::time::timeout(WAIT, wait)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"));
}

/// Waits until the server has seen `more` further queries of `owner` and `rtype` than now, so
/// at least `more - 1` resolutions completed meanwhile.
async fn resolutions(server: &DnsServer, owner: &str, rtype: RecordType, more: usize) {
    let target = server.queries(owner, rtype) + more;
    until("more queries", || server.queries(owner, rtype) >= target).await;
}

/// Nothing is ready on the stream now.
fn quiet(discover: &mut Discover) {
    if let Some(change) = discover.next().now_or_never() {
        let change = change.map(|c| match c.unwrap() {
            Change::Insert(k, _) => format!("Insert({k})"),
            Change::Remove(k) => format!("Remove({k})"),
        });
        panic!("expected no change, got {change:?}");
    }
}

/// Runs `test` with a `Logs` subscriber as the default on this (single) thread, where the
/// current-thread runtime also runs the resolution task.
async fn with_logs<F: Future>(logs: &Logs, test: F) -> F::Output {
    let _guard = tracing::subscriber::set_default(logs.clone());
    test.await
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_records_are_inserted_added_and_removed_and_an_unchanged_set_yields_nothing() {
    let server = DnsServer::start().await;
    server.set_a("books.test.", 0, &[11, 12]).await;
    let mut discover = quick(&format!("books.test:{PORT}"), &server)
        .build(|e: &DnsEndpoint| e.addr)
        .unwrap();

    // Before any answer: pending, not an error.
    quiet(&mut discover);

    let (inserted, removed) = changes(&mut discover, 2).await;
    assert_eq!(inserted, BTreeSet::from([addr(11), addr(12)]));
    assert!(removed.is_empty());

    // Resolved again and again (TTL 0: every 50 ms), the same set: nothing.
    resolutions(&server, "books.test.", RecordType::A, 3).await;
    quiet(&mut discover);

    // One more address: one insert.
    server.set_a("books.test.", 0, &[11, 12, 13]).await;
    let (inserted, removed) = changes(&mut discover, 1).await;
    assert_eq!(inserted, BTreeSet::from([addr(13)]));
    assert!(removed.is_empty());

    // One fewer: one removal; a rolling replacement: the insert comes first.
    server.set_a("books.test.", 0, &[12, 13]).await;
    assert!(matches!(next(&mut discover).await, Change::Remove(k) if k.addr == addr(11)));
    server.set_a("books.test.", 0, &[12, 14]).await;
    assert!(matches!(next(&mut discover).await, Change::Insert(k, _) if k.addr == addr(14)));
    assert!(matches!(next(&mut discover).await, Change::Remove(k) if k.addr == addr(13)));
    resolutions(&server, "books.test.", RecordType::A, 2).await;
    quiet(&mut discover);
}

#[tokio::test]
async fn aaaa_records_give_ipv6_endpoints() {
    let server = DnsServer::start().await;
    server.set_a("dual.test.", 0, &[11]).await;
    server
        .set(
            "dual.test.",
            RecordType::AAAA,
            0,
            vec![RData::AAAA(AAAA(Ipv6Addr::LOCALHOST))],
        )
        .await;
    server
        .set(
            "six.test.",
            RecordType::AAAA,
            0,
            vec![RData::AAAA(AAAA(Ipv6Addr::LOCALHOST))],
        )
        .await;

    let mut dual = quick(&format!("dual.test:{PORT}"), &server)
        .build(|e: &DnsEndpoint| e.addr)
        .unwrap();
    let (inserted, _) = changes(&mut dual, 2).await;
    let v6 = SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), PORT);
    assert_eq!(inserted, BTreeSet::from([addr(11), v6]));

    let mut six = quick(&format!("six.test:{PORT}"), &server)
        .build(|e: &DnsEndpoint| e.addr)
        .unwrap();
    let (inserted, _) = changes(&mut six, 1).await;
    assert_eq!(inserted, BTreeSet::from([v6]));
    assert_eq!(six.name(), format!("six.test:{PORT}"));
}

#[tokio::test]
async fn the_ttl_sets_the_refresh_within_min_and_max() {
    let server = DnsServer::start().await;
    // TTL 1 s with min_refresh 100 ms: about one query a second, not ten.
    server.set_a("one.test.", 1, &[11]).await;
    // TTL 60 s with max_refresh 300 ms: a query every 300 ms.
    server.set_a("long.test.", 60, &[12]).await;
    let mut one = quick(&format!("one.test:{PORT}"), &server)
        .min_refresh(ms(100))
        .max_refresh(ms(10_000))
        .build(|e: &DnsEndpoint| e.addr)
        .unwrap();
    let mut long = quick(&format!("long.test:{PORT}"), &server)
        .min_refresh(ms(100))
        .max_refresh(ms(300))
        .build(|e: &DnsEndpoint| e.addr)
        .unwrap();
    changes(&mut one, 1).await;
    changes(&mut long, 1).await;

    // The max bound: long.test is asked again although its TTL is a minute.
    resolutions(&server, "long.test.", RecordType::A, 2).await;

    // The TTL, above min: in 1.5 s at most 3 queries of one.test (every 100 ms would be 15).
    let before = server.queries("one.test.", RecordType::A);
    tokio::time::sleep(ms(1500)).await;
    let during = server.queries("one.test.", RecordType::A) - before;
    assert!(during <= 3, "{during} queries in 1.5 s with a TTL of 1 s");
    // ... and it is asked again.
    resolutions(&server, "one.test.", RecordType::A, 1).await;
    quiet(&mut one);
    quiet(&mut long);
}

#[tokio::test]
async fn failures_keep_the_set_and_resolution_recovers() {
    let logs = Logs::new("bulwark_balance");
    with_logs(&logs, async {
        let mut server = DnsServer::start().await;
        server.set_a("books.test.", 0, &[11, 12]).await;
        #[cfg(feature = "metrics")]
        let recorder = metrics_util::debugging::DebuggingRecorder::new();
        #[cfg(feature = "metrics")]
        let snapshotter = recorder.snapshotter();
        let build = || {
            quick(&format!("books.test:{PORT}"), &server)
                .name("books")
                .build(|e: &DnsEndpoint| e.addr)
                .unwrap()
        };
        #[cfg(feature = "metrics")]
        let mut discover = metrics::with_local_recorder(&recorder, build);
        #[cfg(not(feature = "metrics"))]
        let mut discover = build();
        let (inserted, _) = changes(&mut discover, 2).await;
        assert_eq!(inserted, BTreeSet::from([addr(11), addr(12)]));
        let a = RecordType::A;

        // SERVFAIL: the set is kept, the change of state logged once.
        server.set_mode(Mode::ServFail);
        resolutions(&server, "books.test.", a, 4).await;
        quiet(&mut discover);
        assert_eq!(logs.count(tracing::Level::WARN, FAILING), 1);
        assert!(logs.count(tracing::Level::DEBUG, FAILED_AGAIN) >= 2);

        // Back, with one address replaced: the change comes through, recovery logged once.
        server.set_mode(Mode::Answer);
        server.set_a("books.test.", 0, &[12, 13]).await;
        let (inserted, removed) = changes(&mut discover, 2).await;
        assert_eq!(
            (inserted, removed),
            (BTreeSet::from([addr(13)]), BTreeSet::from([addr(11)]))
        );
        assert_eq!(logs.count(tracing::Level::INFO, RECOVERED), 1);

        // NXDOMAIN after a good answer: a failure, the set kept.
        server.remove_name("books.test.").await;
        resolutions(&server, "books.test.", a, 3).await;
        quiet(&mut discover);
        assert_eq!(logs.count(tracing::Level::WARN, FAILING), 2);

        // An empty answer (the name exists, with no address): the same.
        server
            .set(
                "books.test.",
                RecordType::TXT,
                0,
                vec![RData::TXT(TXT::new(vec!["no address".into()]))],
            )
            .await;
        resolutions(&server, "books.test.", a, 3).await;
        quiet(&mut discover);
        assert_eq!(
            logs.count(tracing::Level::WARN, FAILING),
            2,
            "still failing"
        );

        // The server gone (its sockets closed): queries time out, the set is kept.
        server.stop().await;
        let failed = logs.count(tracing::Level::DEBUG, FAILED_AGAIN);
        until("failed resolutions", || {
            logs.count(tracing::Level::DEBUG, FAILED_AGAIN) >= failed + 2
        })
        .await;
        quiet(&mut discover);

        // Back on the same port, with the old set: nothing to change, recovery logged.
        server.restart().await;
        server.set_a("books.test.", 0, &[12, 13]).await;
        until("recovery", || {
            logs.count(tracing::Level::INFO, RECOVERED) == 2
        })
        .await;
        quiet(&mut discover);
        server.set_a("books.test.", 0, &[13]).await;
        assert!(matches!(next(&mut discover).await, Change::Remove(k) if k.addr == addr(12)));
        assert_eq!(logs.count(tracing::Level::WARN, FAILING), 2);

        #[cfg(feature = "metrics")]
        {
            use metrics_util::debugging::DebugValue;
            let mut counters: BTreeMap<String, u64> = BTreeMap::new();
            let mut gauges: BTreeMap<String, f64> = BTreeMap::new();
            for (key, _, _, value) in snapshotter.snapshot().into_vec() {
                let key = key.key();
                let mut id = key.name().to_string();
                for label in key.labels() {
                    assert!(label.key() != "name" || label.value() == "books");
                    if label.key() == "outcome" {
                        id = format!("{id}/{}", label.value());
                    }
                }
                match value {
                    DebugValue::Counter(n) => {
                        counters.insert(id, n);
                    }
                    DebugValue::Gauge(g) => {
                        gauges.insert(id, g.into_inner());
                    }
                    DebugValue::Histogram(_) => {}
                }
            }
            let c = |id: &str| counters[id];
            assert!(c("bulwark_balance_dns_resolutions_total/success") >= 3);
            assert!(
                c("bulwark_balance_dns_resolutions_total/error") >= 2,
                "{counters:?}"
            );
            assert!(
                c("bulwark_balance_dns_resolutions_total/nxdomain") >= 1,
                "{counters:?}"
            );
            assert!(
                c("bulwark_balance_dns_resolutions_total/no_records") >= 1,
                "{counters:?}"
            );
            assert!(
                c("bulwark_balance_dns_resolutions_total/timeout") >= 1,
                "{counters:?}"
            );
            assert_eq!(c("bulwark_balance_dns_endpoints_added_total"), 3);
            assert_eq!(c("bulwark_balance_dns_endpoints_removed_total"), 2);
            assert_eq!(gauges["bulwark_balance_dns_endpoints"], 1.0);
            assert_eq!(gauges["bulwark_balance_dns_failing"], 0.0);
        }
    })
    .await;
}

#[tokio::test]
async fn a_first_resolution_that_fails_is_pending_then_retried() {
    let server = DnsServer::start().await;
    // Nothing at the name yet: NXDOMAIN.
    let mut discover = quick(&format!("late.test:{PORT}"), &server)
        .build(|e: &DnsEndpoint| e.addr)
        .unwrap();
    resolutions(&server, "late.test.", RecordType::A, 2).await;
    quiet(&mut discover);
    server.set_a("late.test.", 0, &[11]).await;
    let (inserted, _) = changes(&mut discover, 1).await;
    assert_eq!(inserted, BTreeSet::from([addr(11)]));
}

#[tokio::test]
async fn an_early_refresh_is_rate_limited_to_one_per_min_refresh() {
    let server = DnsServer::start().await;
    server.set_a("books.test.", 60, &[11]).await;
    let mut discover = quick(&format!("books.test:{PORT}"), &server)
        .min_refresh(ms(400))
        .max_refresh(ms(60_000))
        .build(|e: &DnsEndpoint| e.addr)
        .unwrap();
    let refresh = discover.refresher();
    changes(&mut discover, 1).await;
    let a = |s: &DnsServer| s.queries("books.test.", RecordType::A);
    assert_eq!(a(&server), 1);

    // Two asks within min_refresh of the first query: one query, when min_refresh is up.
    server.set_a("books.test.", 60, &[11, 12]).await;
    refresh.refresh();
    refresh.clone().refresh();
    let (inserted, _) = changes(&mut discover, 1).await;
    assert_eq!(inserted, BTreeSet::from([addr(12)]));
    tokio::time::sleep(ms(600)).await;
    assert_eq!(a(&server), 2, "the two asks made one query");

    // Long after the last query: at once.
    refresh.refresh();
    until("the early query", || a(&server) == 3).await;
    quiet(&mut discover);
}

#[tokio::test]
async fn srv_records_carry_priority_and_weight_and_a_weight_change_is_an_update() {
    let server = DnsServer::start().await;
    let srv =
        |priority, weight, target: &str| RData::SRV(SRV::new(priority, weight, PORT, name(target)));
    server.set_a("a.test.", 0, &[11]).await;
    server.set_a("b.test.", 0, &[12]).await;
    server.set_a("c.test.", 0, &[13]).await;
    let records = |b_weight| {
        vec![
            srv(10, 5, "a.test."),
            srv(10, b_weight, "b.test."),
            srv(20, 0, "c.test."),
            // a.test. again, less preferred: the preferred record wins.
            srv(30, 9, "a.test."),
            // No address: skipped.
            srv(10, 1, "gone.test."),
        ]
    };
    server
        .set("_grpc._tcp.books.test.", RecordType::SRV, 0, records(1))
        .await;
    let mut discover = quick("_grpc._tcp.books.test.", &server)
        .build(|e: &DnsEndpoint| e.addr)
        .unwrap();
    let mut keys = BTreeMap::new();
    for _ in 0..3 {
        match next(&mut discover).await {
            Change::Insert(k, _) => {
                keys.insert(k.addr, (k.weight(), k.priority()));
            }
            Change::Remove(k) => panic!("removed {k}"),
        }
    }
    assert_eq!(
        keys,
        BTreeMap::from([
            (addr(11), (5, 10)),
            (addr(12), (1, 10)),
            (addr(13), (1, 20))
        ])
    );

    // b's weight goes to 7: an Insert under an equal key, nothing removed.
    server
        .set("_grpc._tcp.books.test.", RecordType::SRV, 0, records(7))
        .await;
    let old = DnsEndpoint {
        addr: addr(12),
        weight: 1,
        priority: 10,
    };
    match next(&mut discover).await {
        Change::Insert(k, service) => {
            assert_eq!(k, old, "the same endpoint");
            assert_eq!((k.weight, k.priority, service), (7, 10, addr(12)));
        }
        Change::Remove(k) => panic!("removed {k}"),
    }
    resolutions(&server, "_grpc._tcp.books.test.", RecordType::SRV, 2).await;
    quiet(&mut discover);
}

#[tokio::test]
async fn dropping_the_stream_stops_resolving() {
    let server = DnsServer::start().await;
    server.set_a("books.test.", 0, &[11]).await;
    let mut discover = quick(&format!("books.test:{PORT}"), &server)
        .build(|e: &DnsEndpoint| e.addr)
        .unwrap();
    let refresh = discover.refresher();
    changes(&mut discover, 1).await;
    resolutions(&server, "books.test.", RecordType::A, 2).await;
    drop(discover);
    // A query in flight at the drop may still arrive; then nothing more.
    tokio::time::sleep(ms(100)).await;
    let after = server.queries("books.test.", RecordType::A);
    refresh.refresh();
    tokio::time::sleep(ms(300)).await;
    assert_eq!(server.queries("books.test.", RecordType::A), after);
}

#[test]
fn invalid_settings_are_typed_errors_naming_the_setting() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let server: SocketAddr = "127.0.0.1:53".parse().unwrap();
    let build = |b: bulwark_balance::dns::DnsDiscoverBuilder| {
        b.resolver_addr(server)
            .build(|e: &DnsEndpoint| e.addr)
            .map(drop)
    };
    let cases: Vec<(bulwark_balance::dns::DnsDiscoverBuilder, &str)> = vec![
        (DnsDiscover::builder(""), "name"),
        (DnsDiscover::builder("books.test"), "name"),
        (DnsDiscover::builder("_grpc._tcp.books.test:80"), "name"),
        (
            DnsDiscover::builder("books.test:80").min_refresh(Duration::ZERO),
            "min_refresh",
        ),
        (
            DnsDiscover::builder("books.test:80").max_refresh(Duration::from_secs(86_401)),
            "max_refresh",
        ),
        (
            DnsDiscover::builder("books.test:80")
                .min_refresh(Duration::from_secs(10))
                .max_refresh(Duration::from_secs(5)),
            "min_refresh",
        ),
        (
            DnsDiscover::builder("books.test:80").timeout(Duration::ZERO),
            "timeout",
        ),
        (
            DnsDiscover::builder("books.test:80").attempts(11),
            "attempts",
        ),
    ];
    for (builder, setting) in cases {
        let err = runtime.block_on(async { build(builder) }).unwrap_err();
        assert_eq!(err.setting(), setting, "{err}");
        let _: &dyn std::error::Error = &err;
    }
    // No runtime: a typed error too.
    let err = build(DnsDiscover::builder("books.test:80")).unwrap_err();
    assert_eq!(err, DnsConfigError::NoRuntime);
    // A good one, in a runtime.
    runtime
        .block_on(async { build(DnsDiscover::builder("books.test:80")) })
        .unwrap();
}
