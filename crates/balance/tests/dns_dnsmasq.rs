//! `DnsDiscover` against Debian's dnsmasq, a name server that is not ours: the test starts it
//! as a child process on 127.0.0.1 (a free port), serving the hosts files of a temporary
//! directory (`--hostsdir`, re-read when a file changes) with a TTL of 1 s (the harness in
//! `support/dnsmasq.rs`, shared with the workspace's `tests/fleet.rs`), and changes the
//! answer by rewriting them: the initial set, a rolling change (one address replaced by
//! another), and an outage (dnsmasq killed: the set is kept, nothing removed; started again:
//! resolution resumes).
//!
//! dnsmasq comes from Debian's `dnsmasq-base` package, which `.ci/run` installs when it is
//! missing. Without it the test FAILS when the `CI` environment variable is set (CI never
//! skips it silently); elsewhere it prints why and passes without checking anything.
//!
//! Run: `cargo test -p bulwark-balance --features dns --test dns_dnsmasq`.

#![cfg(feature = "dns")]

use bulwark_balance::dns::{DnsDiscover, DnsEndpoint};
use bulwark_core::{ExponentialBackoff, Jitter, SplitMix64};
use futures_util::{FutureExt, StreamExt};
use std::collections::BTreeSet;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tower::discover::Change;

#[path = "support/dnsmasq.rs"]
mod dnsmasq;
use bulwark_test_support::Logs;
use dnsmasq::Dnsmasq;

const PORT: u16 = 50051;
const BOOKS: &str = "books.test";
const WAIT: Duration = Duration::from_secs(10);
const FAILING: &str = "dns resolution failing; keeping the last endpoints";
const RECOVERED: &str = "dns resolution recovered";

fn addr(n: u8) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, n], PORT))
}

type Discover = DnsDiscover<SocketAddr>;

/// The next `n` changes, as (inserted, removed) sets of addresses.
async fn changes(d: &mut Discover, n: usize) -> (BTreeSet<SocketAddr>, BTreeSet<SocketAddr>) {
    let (mut inserted, mut removed) = (BTreeSet::new(), BTreeSet::new());
    for _ in 0..n {
        let change = tokio::time::timeout(WAIT, d.next())
            .await
            .expect("a change within the wait")
            .expect("the stream does not end")
            .unwrap();
        match change {
            Change::Insert(k, _) => inserted.insert(k.addr),
            Change::Remove(k) => removed.insert(k.addr),
        };
    }
    (inserted, removed)
}

async fn until(what: &str, mut ready: impl FnMut() -> bool) {
    let wait = async {
        while !ready() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(WAIT, wait)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"));
}

fn quiet(d: &mut Discover) {
    if let Some(Some(Ok(change))) = d.next().now_or_never() {
        let change = match change {
            Change::Insert(k, _) => format!("Insert({k})"),
            Change::Remove(k) => format!("Remove({k})"),
        };
        panic!("expected no change, got {change}");
    }
}

#[tokio::test]
async fn dnsmasq_initial_set_rolling_change_and_outage() {
    let Some(binary) = dnsmasq::binary_or_skip("this test") else {
        return;
    };
    let logs = Logs::new("bulwark_balance");
    let _guard = tracing::subscriber::set_default(logs.clone());

    let mut dnsmasq = Dnsmasq::new(binary);
    dnsmasq.set_a(BOOKS, &[11, 12]);
    dnsmasq.start();

    let mut discover = DnsDiscover::builder(format!("{BOOKS}:{PORT}"))
        .resolver_addr(dnsmasq.addr())
        .min_refresh(Duration::from_millis(100))
        .max_refresh(Duration::from_secs(2))
        .timeout(Duration::from_millis(200))
        .attempts(1)
        .backoff(
            ExponentialBackoff::new(
                Duration::from_millis(100),
                2.0,
                Duration::from_millis(200),
                Jitter::None,
            )
            .unwrap(),
        )
        .random(Arc::new(SplitMix64::new(1)))
        .build(|e: &DnsEndpoint| e.addr)
        .unwrap();

    // The initial set (dnsmasq may take a moment to listen: the source retries meanwhile).
    let (inserted, removed) = changes(&mut discover, 2).await;
    assert_eq!(inserted, BTreeSet::from([addr(11), addr(12)]));
    assert!(removed.is_empty());

    // A rolling change: 11 replaced by 13, seen on the next refresh (TTL 1 s).
    dnsmasq.set_a(BOOKS, &[12, 13]);
    let (inserted, removed) = changes(&mut discover, 2).await;
    assert_eq!(inserted, BTreeSet::from([addr(13)]));
    assert_eq!(removed, BTreeSet::from([addr(11)]));

    // An outage: nothing removed while dnsmasq is gone.
    let failing = logs.count_starting(FAILING);
    dnsmasq.kill();
    until("the failure to be noticed", || {
        logs.count_starting(FAILING) > failing
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    quiet(&mut discover);
    assert_eq!(logs.count_starting(FAILING), failing + 1, "logged once");

    // Back, with one more address: resolution resumes.
    let recovered = logs.count_starting(RECOVERED);
    dnsmasq.set_a(BOOKS, &[12, 13, 14]);
    dnsmasq.start();
    let (inserted, removed) = changes(&mut discover, 1).await;
    assert_eq!(inserted, BTreeSet::from([addr(14)]));
    assert!(removed.is_empty());
    assert_eq!(logs.count_starting(RECOVERED), recovered + 1);
}
