//! `cargo run --example dns_fleet`: a gRPC client that follows a fleet through DNS.
//!
//! The client: `DnsDiscover` resolves a name (SRV records, or A/AAAA records with a port) on
//! their TTL and feeds the balancer one tonic `Channel` per address; the balancer health-checks
//! each endpoint with the gRPC health checking protocol, ejects endpoints that keep failing,
//! and asks DNS again early when no endpoint can take a call; a retry layer above resends a
//! failed call to another endpoint. Every second it prints the endpoints it has and sends a
//! call (`grpc.health.v1.Health/Check`, which a server with the standard health service
//! answers; replace it with your own client).
//!
//! ```text
//! # Against a cluster (from a pod: the cluster DNS is in its resolv.conf, --dns is optional):
//! cargo run --example dns_fleet -- --name _grpc._tcp.books.default.svc.cluster.local
//! cargo run --example dns_fleet -- --dns 10.96.0.10:53 --name books.default.svc.cluster.local:50051
//!
//! # Without arguments: on loopback, its own DNS server (hickory-server) and three tonic
//! # servers on 127.0.0.11-13, one port; then the fleet scales out to five and back in.
//! cargo run --example dns_fleet
//! ```
//!
//! Options: `--name NAME` (`host:port` or an SRV name), `--dns ADDR:PORT` (a name server to
//! ask instead of the system's), `--every MS` (between calls, default 1000), `--calls N` (stop
//! after N calls; default: run until Ctrl-C).

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;
use tower::util::BoxCloneService;
use tower_bulwark::balance::dns::{DnsDiscover, DnsEndpoint};
use tower_bulwark::balance::{BalanceLayer, Ejection, Endpoints, Handle, HealthCheck};
use tower_bulwark::core::attempts::HttpAttempts;
use tower_bulwark::core::{BoxError, GrpcClassifier};
use tower_bulwark::retry::{BackoffRetryLayer, RetryFailures};

#[path = "support/grpc.rs"]
mod support;
use support::GrpcHealthProbe;

// The loopback demo's DNS server (the one the tests use).
#[path = "../crates/balance/tests/support/dns_server.rs"]
mod dns_server;

/// The client stack, as one cloneable service for tonic's generated client.
type Stack =
    BoxCloneService<http::Request<tonic::body::Body>, http::Response<tonic::body::Body>, BoxError>;

fn channel(addr: SocketAddr) -> Channel {
    Endpoint::from_shared(format!("http://{addr}"))
        .expect("an http:// URI")
        .connect_timeout(Duration::from_secs(1))
        .timeout(Duration::from_secs(2))
        .connect_lazy()
}

/// Retry, over a balancer, over what `name` resolves to.
fn client(
    name: &str,
    dns: Option<SocketAddr>,
    min_refresh: Duration,
) -> Result<(HealthClient<Stack>, Handle), BoxError> {
    let mut discover = DnsDiscover::builder(name).min_refresh(min_refresh);
    if let Some(dns) = dns {
        discover = discover.resolver_addr(dns);
    }
    // One channel per address the name resolves to.
    let discover = discover.build(|endpoint: &DnsEndpoint| channel(endpoint.addr))?;
    let balance = BalanceLayer::builder()
        .name("books")
        .classifier(GrpcClassifier::new())
        // A resend goes to an endpoint the call has not been to.
        .http()
        .health_check(HealthCheck {
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            ..HealthCheck::default()
        })
        .ejection(Ejection {
            consecutive_failures: 3,
            ..Ejection::default()
        })
        // When no endpoint can take a call, ask DNS again (at most once per min_refresh).
        .refresh(discover.refresher())
        .build()?
        .build(Endpoints::discover_with_health(
            discover,
            // Each endpoint's probe: Health/Check("") over a channel of its own.
            |endpoint: &DnsEndpoint| GrpcHealthProbe {
                client: HealthClient::new(channel(endpoint.addr)),
            },
        ))?;
    let handle = balance.handle();
    let retry = BackoffRetryLayer::builder()
        .max_attempts(3)
        .backoff(support::quick_backoff())
        // Every failure (UNAVAILABLE and the like, or no connection) is resent, with the
        // call's attempts attached so the balancer picks another endpoint.
        .policy(RetryFailures::new(GrpcClassifier::new()).attempts(HttpAttempts))
        .build()?;
    Ok((
        HealthClient::new(support::with_retry(retry, balance)),
        handle,
    ))
}

fn show(balancer: &Handle) -> String {
    let mut endpoints: Vec<String> = balancer
        .endpoints()
        .into_iter()
        .map(|e| {
            let state = match (e.healthy, e.ejected_for) {
                (_, Some(_)) => " (ejected)",
                (false, None) => " (unhealthy)",
                (true, None) => "",
            };
            format!("{}{state}", e.name)
        })
        .collect();
    endpoints.sort();
    format!("[{}]", endpoints.join(", "))
}

async fn call(client: &mut HealthClient<Stack>) -> String {
    let request = HealthCheckRequest {
        service: String::new(),
    };
    match client.check(request).await {
        Ok(answer) => format!("ok: {}", answer.into_inner().status().as_str_name()),
        Err(status) => format!("failed: {:?} {}", status.code(), status.message()),
    }
}

struct Args {
    name: Option<String>,
    dns: Option<SocketAddr>,
    every: Duration,
    calls: Option<u64>,
}

fn parse_args() -> Result<Args, BoxError> {
    let mut args = Args {
        name: None,
        dns: None,
        every: Duration::from_secs(1),
        calls: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--name" => args.name = Some(value()?),
            "--dns" => args.dns = Some(value()?.parse()?),
            "--every" => args.every = Duration::from_millis(value()?.parse()?),
            "--calls" => args.calls = Some(value()?.parse()?),
            "-h" | "--help" => {
                println!(
                    "usage: dns_fleet [--name NAME] [--dns ADDR:PORT] [--every MS] [--calls N]\n\
                     NAME: host:port (A/AAAA records) or an SRV name (_grpc._tcp.books...);\n\
                     without --name: a demo on loopback with its own DNS server and servers"
                );
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?} (try --help)").into()),
        }
    }
    if args.dns.is_some() && args.name.is_none() {
        return Err("--dns needs --name".into());
    }
    Ok(args)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), BoxError> {
    let args = parse_args()?;
    match args.name {
        Some(name) => follow(&name, args.dns, args.every, args.calls).await,
        None => demo().await,
    }
}

/// Follows a real name: prints the endpoints and a call's outcome every `every`.
async fn follow(
    name: &str,
    dns: Option<SocketAddr>,
    every: Duration,
    calls: Option<u64>,
) -> Result<(), BoxError> {
    let (mut client, balancer) = client(name, dns, Duration::from_secs(5))?;
    println!("following {name} (Ctrl-C to stop)");
    let mut tick = tokio::time::interval(every);
    let mut n = 0;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
        let outcome = call(&mut client).await;
        println!("endpoints {}  call {n}: {outcome}", show(&balancer));
        n += 1;
        if calls.is_some_and(|c| n >= c) {
            return Ok(());
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The loopback demo
// ---------------------------------------------------------------------------------------------

/// A demo server on `listener`: answers `Check` with SERVING.
fn start_server(listener: tokio::net::TcpListener) -> tokio::task::JoinHandle<()> {
    support::serve_on(listener, support::health(support::Broken::serving()))
}

/// Four calls, half a second apart, each printed with the endpoints the balancer has.
async fn round(label: &str, client: &mut HealthClient<Stack>, balancer: &Handle) {
    println!("-- {label}");
    for i in 0..4 {
        let outcome = call(client).await;
        println!("endpoints {}  call {i}: {outcome}", show(balancer));
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Three servers on 127.0.0.11-13 (one port), named `books.test` by a DNS server on
/// loopback; then two more join, and one leaves.
async fn demo() -> Result<(), BoxError> {
    let dns = dns_server::DnsServer::start().await;
    let first = tokio::net::TcpListener::bind((Ipv4Addr::new(127, 0, 0, 11), 0)).await?;
    let port = first.local_addr()?.port();
    let mut servers = vec![(11u8, start_server(first))];
    for host in 12..=13 {
        let listener =
            tokio::net::TcpListener::bind((Ipv4Addr::new(127, 0, 0, host), port)).await?;
        servers.push((host, start_server(listener)));
    }
    let publish = |hosts: Vec<u8>| {
        let ips: Vec<Ipv4Addr> = hosts.iter().map(|h| Ipv4Addr::new(127, 0, 0, *h)).collect();
        let dns = &dns;
        async move { dns.set_ips("books.test.", 1, &ips).await }
    };
    publish(vec![11, 12, 13]).await;
    let name = format!("books.test:{port}");
    println!(
        "DNS server on {}; {name} -> 127.0.0.11-13 (TTL 1 s)",
        dns.addr
    );

    // A short min_refresh so the demo moves quickly; 5 s suits a cluster.
    let (mut client, balancer) = client(&name, Some(dns.addr), Duration::from_millis(500))?;
    round("three servers", &mut client, &balancer).await;

    for host in 14..=15 {
        let listener =
            tokio::net::TcpListener::bind((Ipv4Addr::new(127, 0, 0, host), port)).await?;
        servers.push((host, start_server(listener)));
    }
    publish(vec![11, 12, 13, 14, 15]).await;
    round(
        "scaled out: 127.0.0.14 and .15 added to DNS",
        &mut client,
        &balancer,
    )
    .await;

    publish(vec![12, 13, 14, 15]).await;
    round(
        "scaled in: 127.0.0.11 removed from DNS",
        &mut client,
        &balancer,
    )
    .await;
    // The balancer no longer sends to .11 (its calls in flight have finished): stop it.
    if let Some((_, task)) = servers.iter().find(|(h, _)| *h == 11) {
        task.abort();
    }
    round("127.0.0.11 stopped", &mut client, &balancer).await;
    Ok(())
}
