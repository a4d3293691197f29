//! The search service's outbound stacks: every layer of tower-bulwark, built from the
//! configuration.
//!
//! Read path (`GET /book/{title}`), strategy `balance`:
//!
//! ```text
//! BackoffRetry  (a failed attempt goes to another store; at most one try per store; deadline)
//!  └ Balance    (p2c by peak-EWMA latency; active health checks; passive ejection; resends
//!    │           go to a store the request has not been to)
//!    └ per store: CircuitBreaker (readiness mode) └ Timeout (per attempt) └ StoreClient
//! ```
//!
//! Strategy `failover`: `Failover` (ordered, sticky to the last store that answered) over the
//! same per-store stacks, each behind its own one-endpoint `Balance` that runs the store's
//! health checks (an unhealthy store is not ready, so failover skips it); passive ejection is
//! off there, the breaker does that job.
//!
//! Strategy `bare` (the end-to-end benchmark's baseline): [`RoundRobin`] over the three
//! `StoreClient`s, no layer at all.
//!
//! Write path (`POST /book`): `FanOut` (all stores must answer 201) over, per store,
//! `BackoffRetry` (exponential backoff with full jitter, per-attempt timeout, deadline) └
//! `StoreClient`. No circuit breaker: every store must get the write.
//!
//! The timeout sits under the breaker so that a store that does not answer in time counts as
//! a failure for its breaker and for ejection.

use super::client::{Answer, Body, Clients, StoreClient, STORES};
use super::config::{Config, Strategy};
use super::contract;
use super::store::Store;
use http::Request;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tower::timeout::TimeoutLayer;
use tower::util::BoxCloneSyncService;
use tower::{Layer, Service};
use tower_bulwark::balance::{self, BalanceLayer, Ejection, Endpoints, HealthCheck, HttpProbe};
use tower_bulwark::circuit_breaker::{self, CircuitBreakerLayer, Mode};
use tower_bulwark::core::attempts::HttpResend;
use tower_bulwark::core::backoff::{ExponentialBackoff, Jitter};
use tower_bulwark::core::BoxError;
use tower_bulwark::failover::{self, FailoverLayer, HttpFailoverPolicy};
use tower_bulwark::fanout::{FanOutLayer, Outcomes, Policy};
use tower_bulwark::retry::{BackoffRetryLayer, RetryFailures};

/// The read path, whatever the strategy.
pub type ReadService = BoxCloneSyncService<Request<Body>, Answer, BoxError>;
/// The write path: every store's outcome.
pub type WriteService = BoxCloneSyncService<Request<Body>, Outcomes<Answer>, BoxError>;

/// What `/stores` and `/metrics` read: the layers' own handles, per store.
#[derive(Clone, Debug)]
pub struct StoreView {
    /// The store (its name, address and in-process fault control).
    pub store: Store,
    /// Its circuit breaker on the read path.
    pub breaker: circuit_breaker::Handle,
    /// The balancer that health-checks it, and its index there.
    pub balance: balance::Handle,
    /// The store's index in `balance`.
    pub endpoint: usize,
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

fn health(config: &Config) -> HealthCheck {
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

    // Per store: breaker (readiness) over a per-attempt timeout over the client.
    let mut leaves = Vec::with_capacity(STORES);
    let mut breakers = Vec::with_capacity(STORES);
    for (i, store) in stores.iter().enumerate() {
        let cb = &config.circuit_breaker;
        let breaker = CircuitBreakerLayer::builder()
            .name(store.name())
            .failure_rate(cb.failure_rate)
            .count_window(cb.window)
            .min_calls(cb.min_calls)
            .open_for(cb.open)
            .half_open_probes(cb.half_open_probes)
            .mode(Mode::Readiness)
            .classifier(read)
            .build()?;
        let client =
            StoreClient::new(store.name(), i, store.addr(), clients.books.clone()).counted_by(read);
        let leaf = breaker.layer(TimeoutLayer::new(config.attempt.timeout).layer(client));
        breakers.push(leaf.handle());
        leaves.push(leaf);
    }

    let retry = BackoffRetryLayer::builder()
        .name("search")
        .max_attempts(STORES as u32)
        // Another store, at once.
        .backoff(ExponentialBackoff::none())
        // At most one try per store: the retries are bounded by the stores, not a budget.
        .no_budget()
        .deadline(config.search.deadline)
        // GET and HEAD go to another store; the balancer avoids the stores already tried.
        .policy(RetryFailures::new(read).attempts(HttpResend::idempotent()))
        .build()?;

    let (read, views): (ReadService, Vec<StoreView>) = match config.search.strategy {
        Strategy::Balance => {
            let probes = stores
                .iter()
                .map(|s| probe(clients, s, config))
                .collect::<Result<Vec<_>, _>>()?;
            let balance = BalanceLayer::builder()
                .name("stores")
                .endpoint_names(names.clone())
                .strategy(balance::Strategy::P2cPeakEwma)
                .wait_for_ready(config.search.wait_for_healthy)
                .health_check(health(config))
                .ejection(config.ejection)
                .classifier(read)
                .http()
                .build()?
                .build(Endpoints::list(leaves).health(probes))?;
            let handle = balance.handle();
            let views = stores
                .iter()
                .zip(breakers)
                .enumerate()
                .map(|(i, (store, breaker))| StoreView {
                    store: store.clone(),
                    breaker,
                    balance: handle.clone(),
                    endpoint: i,
                })
                .collect();
            (BoxCloneSyncService::new(retry.layer(balance)), views)
        }
        Strategy::Failover => {
            let mut targets = Vec::with_capacity(STORES);
            let mut views = Vec::with_capacity(STORES);
            for ((store, leaf), breaker) in stores.iter().zip(leaves).zip(breakers) {
                // One endpoint: the balancer is here for the store's health checks and
                // ejection. It waits "forever" (a day) for its endpoint, so an unhealthy
                // store stays not ready and the failover skips it; the failover's own wait
                // is what the request sees.
                let one = BalanceLayer::builder()
                    .name(store.name())
                    .endpoint_names([store.name()])
                    .strategy(balance::Strategy::FirstAvailable)
                    .wait_for_ready(Duration::from_secs(24 * 3600))
                    .health_check(health(config))
                    // No ejection: the store's breaker already takes it out while it fails,
                    // and a one-store balancer may eject its only store (for 30 s, longer
                    // than the breaker's open period).
                    .ejection(Ejection {
                        consecutive_failures: 0,
                        ..Ejection::default()
                    })
                    .classifier(read)
                    .build()?
                    .build(
                        Endpoints::list(vec![leaf]).health(vec![probe(clients, store, config)?]),
                    )?;
                views.push(StoreView {
                    store: store.clone(),
                    breaker,
                    balance: one.handle(),
                    endpoint: 0,
                });
                targets.push(one);
            }
            let failover = FailoverLayer::builder()
                .name("stores")
                .target_names(names.clone())
                .mode(failover::Mode::Sticky)
                // The per-attempt timeout is under each store's breaker already.
                .no_attempt_timeout()
                .wait_for_ready(config.search.wait_for_healthy)
                .policy(HttpFailoverPolicy::new().classifier(read))
                .build()?
                .build(targets)?;
            // The failover tries each store once; the retry layer above adds only the
            // deadline (one attempt).
            let once = BackoffRetryLayer::builder()
                .name("search")
                .max_attempts(1)
                .no_budget()
                .deadline(config.search.deadline)
                .policy(RetryFailures::new(read).attempts(HttpResend::idempotent()))
                .build()?;
            (BoxCloneSyncService::new(once.layer(failover)), views)
        }
        Strategy::Bare => {
            let store_clients = stores
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    StoreClient::new(s.name(), i, s.addr(), clients.books.clone()).counted_by(read)
                })
                .collect();
            // `/stores` reads a balancer's and a breaker's handle per store. Rather than make
            // every `StoreView` field optional, bare mode keeps the per-store breakers built
            // above and a balancer over them with no health checks; neither is on the read
            // path (the balancer is dropped once its handle is taken, never called), so
            // `/stores` shows every store healthy, its circuit closed and no calls counted.
            let handle = BalanceLayer::builder()
                .name("stores")
                .endpoint_names(names.clone())
                .build()?
                .build(leaves)?
                .handle();
            let views = stores
                .iter()
                .zip(breakers)
                .enumerate()
                .map(|(i, (store, breaker))| StoreView {
                    store: store.clone(),
                    breaker,
                    balance: handle.clone(),
                    endpoint: i,
                })
                .collect();
            (
                BoxCloneSyncService::new(RoundRobin::new(store_clients)),
                views,
            )
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
            .attempt_timeout(config.attempt.timeout)
            .policy(RetryFailures::new(contract::Write))
            .build()?;
        let client = StoreClient::new(store.name(), i, store.addr(), clients.books.clone())
            .counted_by(contract::Write);
        branches.push(BoxCloneSyncService::new(retry.layer(client)));
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

    Ok(Outbound {
        read,
        write,
        stores: views,
    })
}
