//! The search service's outbound stacks: every layer of tower-bulwark, built from the
//! configuration. Each path's idea of failure is declared once, in [`contract`], and given to
//! every layer of the path.
//!
//! Read path (`GET /book/{title}`), strategy `balance`:
//!
//! ```text
//! RateLimit        (only with a [rate_limit] table: over the rate, 503 + Retry-After at once)
//!  └ BackoffRetry  (a failed attempt goes to another store at once; at most one try per
//!    │              store; the deadline)
//!    └ Hedge       (a request slower than the p95 of the answers seen is sent to another
//!      │            store too; the first answer wins, the other is cancelled; hedges at most
//!      │            10% of requests; a failed answer goes up to the retry, not to a hedge)
//!      └ Balance   (p2c by peak-EWMA latency; active health checks; passive ejection; resends
//!        │          and hedges go to a store the request has not been to; fails at once when
//!        │          every store's circuit is open)
//!        └ per store: Bulkhead (readiness mode: a store at its limit is skipped)
//!                     └ CircuitBreaker (readiness mode) └ StoreClient (attempt timeout)
//! ```
//!
//! Strategy `failover`: `Failover` (ordered, sticky to the last store that answered; the
//! deadline) over, per store, a `HealthGate` (the store's health checks: an unhealthy store
//! is not ready, so the failover skips it) └ the same per-store stack. No hedging: the
//! failover sends a request to one store at a time by design.
//!
//! Strategy `bare` (the end-to-end benchmark's baseline): [`RoundRobin`] over the three
//! `StoreClient`s, no layer at all.
//!
//! Write path (`POST /book`): `FanOut` (all stores must answer 201) over, per store,
//! `BackoffRetry` (exponential backoff with full jitter, deadline) └ `StoreClient` (attempt
//! timeout). No circuit breaker: every store must get the write.
//!
//! The attempt timeout is the store client's own, under the breaker, so that a store that
//! does not answer in time counts as a failure for its breaker and for ejection, while an
//! attempt a layer above drops (the hedge that lost) is counted as cancelled, not failed.

use super::client::{Answer, Body, Clients, StoreClient, StoreStats, STORES};
use super::config::{Config, Strategy};
use super::contract;
use super::store::Store;
use http::Request;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use tower::util::BoxCloneSyncService;
use tower::{Layer, Service, ServiceBuilder};
use tower_bulwark::balance::{self, BalanceLayer, Endpoints};
use tower_bulwark::bulkhead::BulkheadLayer;
use tower_bulwark::circuit_breaker::{self, CircuitBreakerLayer, Mode};
use tower_bulwark::core::attempts::HttpResend;
use tower_bulwark::core::backoff::{ExponentialBackoff, Jitter};
use tower_bulwark::core::BoxError;
use tower_bulwark::failover::{self, FailOnFailure, FailoverLayer};
use tower_bulwark::fanout::{FanOutLayer, Outcomes, Policy};
use tower_bulwark::health::{self, HealthCheck, HealthGateLayer, HttpProbe};
use tower_bulwark::retry::{BackoffRetryLayer, RetryFailures};

/// The read path, whatever the strategy.
pub type ReadService = BoxCloneSyncService<Request<Body>, Answer, BoxError>;
/// The write path: every store's outcome.
pub type WriteService = BoxCloneSyncService<Request<Body>, Outcomes<Answer>, BoxError>;

/// What `/stores` and `/metrics` read, per store: the store clients' counts and the handles
/// of the layers the strategy built (none in `bare`).
#[derive(Clone, Debug)]
pub struct StoreView {
    /// The store (its name, address and in-process fault control).
    pub store: Store,
    /// What the search service sent it, counted by its clients.
    pub stats: Arc<StoreStats>,
    /// Its circuit breaker on the read path.
    pub breaker: Option<circuit_breaker::Handle>,
    /// Who checks its health.
    pub health: Health,
}

/// Who checks a store's health, for `/stores`.
#[derive(Clone, Debug)]
pub enum Health {
    /// The balancer's own checks; the store is endpoint `index` there (which also has its
    /// ejection and latency).
    Balancer {
        /// The balancer.
        handle: balance::Handle,
        /// The store's index.
        index: usize,
    },
    /// The store's health gate.
    Gate(health::Handle),
    /// Nobody (strategy `bare`): read as healthy.
    Unchecked,
}

impl Health {
    /// Whether the checks pass (always, when nobody checks).
    pub fn healthy(&self) -> bool {
        match self {
            Health::Balancer { handle, index } => {
                handle.endpoints().get(*index).is_none_or(|e| e.healthy)
            }
            Health::Gate(gate) => gate.is_healthy(),
            Health::Unchecked => true,
        }
    }

    /// What the balancer knows of the store beyond its health: how much longer it is
    /// ejected, and its latency estimate.
    pub fn balancer_view(&self) -> Option<balance::EndpointSnapshot> {
        match self {
            Health::Balancer { handle, index } => handle.endpoints().get(*index).cloned(),
            _ => None,
        }
    }
}

/// The outbound side of the search service.
#[derive(Clone, Debug)]
pub struct Outbound {
    /// `GET /book/{title}`.
    pub read: ReadService,
    /// `POST /book`.
    pub write: WriteService,
    /// Per store, in order.
    pub stores: Vec<StoreView>,
}

/// Strategy `bare`: each request to the next store in turn, with no layer at all (an error
/// or a 503 is the answer; nothing is retried, timed out or counted by a layer).
#[derive(Clone, Debug)]
pub struct RoundRobin {
    next: Arc<AtomicUsize>,
    clients: Arc<[StoreClient]>,
}

impl RoundRobin {
    /// Round robin over `clients`, starting with the first.
    pub fn new(clients: Vec<StoreClient>) -> Self {
        RoundRobin {
            next: Arc::new(AtomicUsize::new(0)),
            clients: clients.into(),
        }
    }
}

impl Service<Request<Body>> for RoundRobin {
    type Response = Answer;
    type Error = BoxError;
    type Future = <StoreClient as Service<Request<Body>>>::Future;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        // A `StoreClient` is always ready (hyper's pool takes any number of requests).
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.clients.len();
        // A clone (a few reference counts): `call` takes `&mut`, the clients are shared.
        self.clients[i].clone().call(req)
    }
}

fn health_check(config: &Config) -> HealthCheck {
    HealthCheck {
        interval: config.health.interval,
        timeout: config.health.timeout,
        unhealthy_after: config.health.unhealthy_after,
        healthy_after: config.health.healthy_after,
        ..HealthCheck::default()
    }
}

fn probe(
    clients: &Clients,
    store: &Store,
    config: &Config,
) -> Result<
    HttpProbe<
        hyper_util::client::legacy::Client<
            hyper_util::client::legacy::connect::HttpConnector,
            http_body_util::Empty<bytes::Bytes>,
        >,
    >,
    BoxError,
> {
    let uri: http::Uri = format!("{}{}", store.url(), config.health.path).parse()?;
    Ok(HttpProbe::new(clients.probes.clone(), uri))
}

/// Builds both paths over `stores`.
pub fn build(config: &Config, stores: &[Store], clients: &Clients) -> Result<Outbound, BoxError> {
    if stores.len() != STORES {
        return Err(format!("the demo runs {STORES} stores, got {}", stores.len()).into());
    }
    let names: Vec<String> = stores.iter().map(|s| s.name().to_string()).collect();
    // What counts as a failure, and what goes to another store: declared once.
    let read = contract::read(config);
    let stats: Vec<Arc<StoreStats>> = stores.iter().map(|_| Arc::default()).collect();
    let client = |i: usize, store: &Store| {
        StoreClient::new(
            store.name(),
            i,
            store.addr(),
            clients.books.clone(),
            stats[i].clone(),
        )
    };

    let (read, views): (ReadService, Vec<StoreView>) = if config.search.strategy == Strategy::Bare {
        let store_clients = stores
            .iter()
            .enumerate()
            .map(|(i, s)| client(i, s).counted_by(read))
            .collect();
        let views = stores
            .iter()
            .zip(&stats)
            .map(|(store, stats)| StoreView {
                store: store.clone(),
                stats: stats.clone(),
                breaker: None,
                health: Health::Unchecked,
            })
            .collect();
        (
            BoxCloneSyncService::new(RoundRobin::new(store_clients)),
            views,
        )
    } else {
        // Per store: bulkhead (readiness) over breaker (readiness) over the client and its
        // attempt timeout.
        let mut leaves = Vec::with_capacity(STORES);
        let mut breakers = Vec::with_capacity(STORES);
        for (i, store) in stores.iter().enumerate() {
            let cb = &config.circuit_breaker;
            // One breaker per store, built with its layer: the admin route's handle comes
            // from the layer, before any service exists.
            let breaker = CircuitBreakerLayer::builder()
                .name(store.name())
                .failure_rate(cb.failure_rate)
                .count_window(cb.window)
                .min_calls(cb.min_calls)
                .open_for(cb.open)
                .half_open_probes(cb.half_open_probes)
                .mode(Mode::Readiness)
                .classifier(read)
                .shared()
                .build()?;
            breakers.push(
                breaker
                    .handle()
                    .expect("a shared breaker layer hands out its breaker's handle"),
            );
            let bulkhead = config
                .bulkhead
                .enabled
                .then(|| {
                    BulkheadLayer::builder()
                        .name(store.name())
                        .max_concurrent(config.bulkhead.max_concurrent)
                        .readiness_mode()
                        .build()
                })
                .transpose()?;
            let breaker = breaker.layer(
                client(i, store)
                    .attempt_timeout(config.attempt.timeout)
                    .counted_by(read),
            );
            leaves.push(
                ServiceBuilder::new()
                    .option_layer(bulkhead)
                    .service(breaker),
            );
        }
        let view = |i: usize, health: Health| StoreView {
            store: stores[i].clone(),
            stats: stats[i].clone(),
            breaker: Some(breakers[i].clone()),
            health,
        };

        if config.search.strategy == Strategy::Balance {
            let probes = stores
                .iter()
                .map(|s| probe(clients, s, config))
                .collect::<Result<Vec<_>, _>>()?;
            let balance = BalanceLayer::builder()
                .name("stores")
                .endpoint_names(names.clone())
                .strategy(balance::Strategy::P2cPeakEwma)
                .wait_for_ready(config.search.wait_for_healthy)
                .health_check(health_check(config))
                .ejection(config.ejection)
                .classifier(read)
                .http()
                .build()?
                .build(Endpoints::list(leaves).health(probes))?;
            let handle = balance.handle();
            let views = (0..STORES)
                .map(|index| {
                    let handle = handle.clone();
                    view(index, Health::Balancer { handle, index })
                })
                .collect();
            let retry = BackoffRetryLayer::builder()
                .name("search")
                .max_attempts(STORES as u32)
                // Another store, at once.
                .backoff(ExponentialBackoff::none())
                // At most one try per store: the retries are bounded by the stores, not a
                // budget.
                .no_budget()
                .deadline(config.search.deadline)
                // GET and HEAD go to another store; the balancer avoids those already tried.
                .policy(RetryFailures::new(read).attempts(HttpResend::idempotent()))
                .build()?;
            // Hedges: only GETs (and HEADs); the balancer sends each to another store.
            let hedge = tower_bulwark::hedge::Builder::from_config(config.hedge.clone())
                .classifier(contract::Hedge(read))
                .http()
                .build()?;
            (
                BoxCloneSyncService::new(retry.layer(hedge.layer(balance))),
                views,
            )
        } else {
            // Failover: each store behind its health gate, so an unhealthy store is not ready
            // and the failover skips it.
            let mut targets = Vec::with_capacity(STORES);
            let mut views = Vec::with_capacity(STORES);
            for (i, (store, leaf)) in stores.iter().zip(leaves).enumerate() {
                let gate = HealthGateLayer::builder()
                    .name(store.name())
                    .check(health_check(config))
                    .build()?
                    .build(leaf, probe(clients, store, config)?)?;
                views.push(view(i, Health::Gate(gate.handle())));
                targets.push(gate);
            }
            let failover = FailoverLayer::builder()
                .name("stores")
                .target_names(names.clone())
                .mode(failover::Mode::Sticky)
                // The per-attempt timeout is under each store's breaker already; the
                // deadline bounds the whole request, every store it tries included.
                .no_attempt_timeout()
                .deadline(config.search.deadline)
                .wait_for_ready(config.search.wait_for_healthy)
                .policy(FailOnFailure::new(read))
                .build()?
                .build(targets)?;
            (BoxCloneSyncService::new(failover), views)
        }
    };

    // Write path: per store, retry until 201.
    let f = &config.fanout;
    let backoff = ExponentialBackoff::new(f.base, f.factor, f.max_backoff, Jitter::Full)?;
    let mut branches = Vec::with_capacity(STORES);
    for (i, store) in stores.iter().enumerate() {
        let retry = BackoffRetryLayer::builder()
            .name(store.name())
            .max_attempts(f.max_attempts)
            .backoff(backoff)
            .deadline(f.deadline)
            .policy(RetryFailures::new(contract::Write))
            .build()?;
        // The attempt timeout is the client's: a store that does not answer in time failed.
        let client = client(i, store)
            .attempt_timeout(config.attempt.timeout)
            .counted_by(contract::Write);
        branches.push(retry.layer(client));
    }
    let fanout = FanOutLayer::builder()
        .name("register")
        .target_names(names)
        .policy(Policy::All)
        .deadline(f.deadline)
        // A store that has failed for good does not stop the writes to the others.
        .finish_stragglers(f.deadline)
        .classifier(contract::Write)
        .build()?
        .build(branches)?;
    let write = BoxCloneSyncService::new(fanout);

    // Over the rate, a read is answered at once, before any store is asked.
    let read = match &config.rate_limit {
        Some(limit) => BoxCloneSyncService::new(
            tower_bulwark::rate_limit::Builder::from_config(limit.clone())
                .build()?
                .layer(read),
        ),
        None => read,
    };

    Ok(Outbound {
        read,
        write,
        stores: views,
    })
}
