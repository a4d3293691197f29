//! Endpoints from DNS (feature `dns`): a [`tower::discover::Discover`] stream that resolves a
//! name, keeps resolving it on its TTL, and tells the balancer what changed.
//!
//! Services behind a name move: pods are replaced, instances scale out and in. A balancer over
//! a fixed list of addresses keeps sending to the ones that left and never learns of the ones
//! that came. [`DnsDiscover`] resolves a name on a background task, on the answer's TTL, and
//! yields `Change::Insert` for each address that appeared and `Change::Remove` for each that
//! went, each address made into a service by a function you give (a tonic `Channel`, a hyper
//! client bound to the address, anything). Give it to the balancer as
//! [`Endpoints::discover`](crate::Endpoints::discover), and its [`DnsRefresh`] handle to
//! [`Builder::refresh`](crate::Builder::refresh).
//!
//! # Names
//!
//! * **`host:port`** (`books.example.com:50051`, `10.0.0.7:80`, `[::1]:8080`): the host's A and
//!   AAAA records, each address on the port given. Every endpoint has weight 1 and priority 0.
//! * **An SRV name** (`_grpc._tcp.books.example.com`, no port: a name whose first label starts
//!   with `_`): each SRV record's target resolved to its addresses, on the record's port,
//!   carrying the record's priority (lower is preferred) and weight (0 is read as 1) on the key.
//!   The balancer does the priority selection; this source only carries it. An address named by
//!   two records keeps the preferred priority, and the larger weight within it. A target of
//!   `.` ("no service here", RFC 2782) is skipped, and so is a target whose name does not
//!   exist or has no address records (while another target has some); a target that cannot be
//!   resolved for any other reason (a timeout, a server failure) fails the whole resolution.
//!
//! # Keys
//!
//! The key of an endpoint is a [`DnsEndpoint`]: its address, weight and priority. Its
//! equality, hash and `Display` use the address only, so when a record's weight or priority
//! changes the stream sends `Change::Insert` again under a key equal to the old one, which the
//! balancer treats as an update of that endpoint, keeping what it learned of it (latency,
//! ejection, health). An address that stays, unchanged, yields nothing.
//!
//! # When it resolves
//!
//! * At build, then again when the answer's TTL (the smallest of its records') runs out,
//!   bounded by [`min_refresh`](DnsDiscoverBuilder::min_refresh) (default 5 s) and
//!   [`max_refresh`](DnsDiscoverBuilder::max_refresh) (default 300 s). The floor protects the
//!   name server from a zone with TTL 0; the ceiling bounds how stale a long TTL can leave the
//!   set.
//! * Early, when the balancer asks through the [`DnsRefresh`] handle (it does when every
//!   endpoint is failing, ejected or unhealthy: the set may be stale), but never sooner than
//!   `min_refresh` after the previous query: requests in between are merged into one query.
//! * After a failure, with exponential backoff (default 1 s doubling to 60 s, equal jitter),
//!   each wait kept within `[min_refresh, max_refresh]`.
//!
//! The resolver keeps no cache, so every refresh asks the name server.
//!
//! # When DNS fails
//!
//! A failure **never empties the balancer**: a timeout, a refused connection, SERVFAIL,
//! NXDOMAIN or an answer with no address keeps the last good set as it is (no `Remove` is
//! sent) and is retried with backoff. Only a successful, non-empty answer removes endpoints.
//! NXDOMAIN and empty answers count as failures even after a good answer: during a rollout or
//! a DNS incident a name can briefly answer nothing, and sending requests to the last known
//! addresses (which the balancer ejects if they really are gone) beats failing every request.
//! The price: a name deleted for good keeps its last endpoints until the balancer is dropped.
//! The change from working to failing is logged once at WARN, the return once at INFO; each
//! failed attempt in between at DEBUG only. Before the first good answer the stream has
//! nothing to say: it is `Pending`, not an error.
//!
//! # The resolver
//!
//! [hickory-resolver](https://docs.rs/hickory-resolver), without TLS. By default it reads the
//! system's configuration (`/etc/resolv.conf`: name servers, search domains, `ndots`);
//! [`resolver_addr`](DnsDiscoverBuilder::resolver_addr) sends every query to one name server
//! instead (UDP, and TCP for a truncated answer). Each query waits at most
//! [`timeout`](DnsDiscoverBuilder::timeout) (2 s) and is tried
//! [`attempts`](DnsDiscoverBuilder::attempts) times (2). The hosts file is not read.
//!
//! The resolution runs on a tokio task spawned by [`DnsDiscoverBuilder::build`] (so it must be
//! called inside a runtime), so the set is refreshed on time whatever the traffic. The task
//! ends when the [`DnsDiscover`] is dropped (with the balancer that owns it); a [`DnsRefresh`]
//! left behind does nothing then.
//!
//! # Kubernetes
//!
//! A headless Service (`clusterIP: None`) publishes one A record per ready pod, and one SRV
//! record per pod and named port; a normal Service publishes one virtual IP, which is no use
//! to a client-side balancer. For a Service `books` in namespace `default` with a port named
//! `grpc`:
//!
//! * `_grpc._tcp.books.default.svc.cluster.local`: the SRV records, with the ports the
//!   Service declares (no port to repeat in the client);
//! * `books.default.svc.cluster.local:50051`: the A records, on the port you give.
//!
//! Cluster DNS (CoreDNS) answers with a TTL of 5 to 30 s, within the default bounds, so pods
//! that come and go are seen within that time; a pod that dies before its record goes is
//! ejected by the balancer meanwhile, and the balancer's early refresh asks again when all
//! endpoints fail. Leave `resolver_addr` unset: the pod's `resolv.conf` names the cluster DNS.
//! Set `publishNotReadyAddresses: false` (the default) so only ready pods are published.
//!
//! # Example
//!
//! ```no_run
//! # async fn run() -> Result<(), bulwark_core::BoxError> {
//! use bulwark_balance::dns::{DnsDiscover, DnsEndpoint};
//! use bulwark_balance::{BalanceLayer, Endpoints};
//! use std::time::Duration;
//! use tower::{service_fn, Service, ServiceExt};
//!
//! // One service per address: here a stand-in that answers with the address it is for
//! // (a tonic `Channel` to `endpoint.addr` in real life).
//! let make = |endpoint: &DnsEndpoint| {
//!     let addr = endpoint.addr;
//!     service_fn(move |_: ()| async move { Ok::<_, std::io::Error>(addr) })
//! };
//! let discover = DnsDiscover::builder("_grpc._tcp.books.default.svc.cluster.local")
//!     .min_refresh(Duration::from_secs(5))
//!     .build(make)?;
//! let mut books = BalanceLayer::builder()
//!     .name("books")
//!     // When every endpoint fails, the balancer asks DNS again (at most every 5 s).
//!     .refresh(discover.refresher())
//!     .build()?
//!     .build(Endpoints::discover(discover))?;
//! let answered_by = books.ready().await?.call(()).await?;
//! # drop(answered_by);
//! # Ok(())
//! # }
//! ```
//!
//! # Telemetry
//!
//! `tracing` events under the key `dns` (the [`name`](DnsDiscoverBuilder::name), by default
//! the name resolved), and with the `metrics` feature:
//!
//! | name | type | labels | meaning |
//! | --- | --- | --- | --- |
//! | `bulwark_balance_dns_resolutions_total` | counter | `name`, `outcome` (`success`, `nxdomain`, `no_records`, `timeout`, `error`) | resolutions, by how they ended |
//! | `bulwark_balance_dns_endpoints` | gauge | `name` | endpoints in the last good answer |
//! | `bulwark_balance_dns_failing` | gauge | `name` | 1 while resolution fails (the last good set is kept), else 0 |
//! | `bulwark_balance_dns_endpoints_added_total` | counter | `name` | addresses that appeared in an answer |
//! | `bulwark_balance_dns_endpoints_removed_total` | counter | `name` | addresses that left the answer |

use bulwark_core::{Backoff, ExponentialBackoff, Jitter, RandomSource, SplitMix64};
use futures_util::task::AtomicWaker;
use hickory_resolver::config::{
    LookupIpStrategy, NameServerConfigGroup, ResolveHosts, ResolverConfig, ServerOrderingStrategy,
};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::ProtoErrorKind;
use hickory_resolver::{ResolveError, TokioResolver};
use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tower::discover::Change;

use crate::{EndpointKey, Refresh};

/// The longest any duration setting may be: a day. A refresh interval or a timeout longer than
/// that is a unit mistake.
const MAX_SETTING: Duration = Duration::from_secs(24 * 60 * 60);

/// The most query attempts a resolution may make.
const MAX_ATTEMPTS: usize = 10;

/// What the balancer knows an endpoint found in DNS by: its address, with the weight and
/// priority of the SRV record that named it.
///
/// Equality, hashing and `Display` use [`addr`](Self::addr) only: the same address with a new
/// weight is the same endpoint, updated.
#[derive(Debug, Clone, Copy)]
pub struct DnsEndpoint {
    /// The address: an address from the answer, and the port (the SRV record's, or the one in
    /// `host:port`).
    pub addr: SocketAddr,
    /// The SRV record's weight (0 read as 1); 1 for A and AAAA records.
    pub weight: u32,
    /// The SRV record's priority, lower preferred; 0 for A and AAAA records.
    pub priority: u32,
}

impl PartialEq for DnsEndpoint {
    fn eq(&self, other: &Self) -> bool {
        self.addr == other.addr
    }
}

impl Eq for DnsEndpoint {}

impl Hash for DnsEndpoint {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.addr.hash(state);
    }
}

impl fmt::Display for DnsEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.addr.fmt(f)
    }
}

impl EndpointKey for DnsEndpoint {
    fn weight(&self) -> u32 {
        self.weight
    }

    fn priority(&self) -> u32 {
        self.priority
    }
}

// ---------------------------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------------------------

/// A [`DnsDiscover`] setting out of range, found by [`DnsDiscoverBuilder::build`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DnsConfigError {
    /// The name to resolve is empty.
    EmptyName,
    /// The name to resolve is neither `host:port` nor an SRV name.
    InvalidName {
        /// The name given.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A duration setting is zero.
    Zero {
        /// The setting: `"min_refresh"`, `"max_refresh"` or `"timeout"`.
        setting: &'static str,
    },
    /// A duration setting is longer than a day.
    TooLong {
        /// The setting: `"min_refresh"`, `"max_refresh"` or `"timeout"`.
        setting: &'static str,
        /// The duration given.
        value: Duration,
    },
    /// `min_refresh` is above `max_refresh`.
    MinAboveMax {
        /// The `min_refresh` given.
        min: Duration,
        /// The `max_refresh` given.
        max: Duration,
    },
    /// `attempts` is 0 or above 10.
    Attempts {
        /// The number given.
        attempts: usize,
    },
    /// No `resolver_addr` was set and the system's resolver configuration could not be read.
    SystemConfig {
        /// Why it could not.
        reason: String,
    },
    /// `build` was called outside a tokio runtime: resolution runs on a task of its own.
    NoRuntime,
}

impl DnsConfigError {
    /// The setting at fault: `"name"`, `"min_refresh"`, `"max_refresh"`, `"timeout"`,
    /// `"attempts"`, `"resolver_addr"` or `"runtime"`.
    pub fn setting(&self) -> &'static str {
        match self {
            DnsConfigError::EmptyName | DnsConfigError::InvalidName { .. } => "name",
            DnsConfigError::Zero { setting } | DnsConfigError::TooLong { setting, .. } => setting,
            DnsConfigError::MinAboveMax { .. } => "min_refresh",
            DnsConfigError::Attempts { .. } => "attempts",
            DnsConfigError::SystemConfig { .. } => "resolver_addr",
            DnsConfigError::NoRuntime => "runtime",
        }
    }
}

impl fmt::Display for DnsConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DnsConfigError::EmptyName => f.write_str("dns `name` is empty"),
            DnsConfigError::InvalidName { name, reason } => {
                write!(f, "dns `name` {name:?} is invalid: {reason}")
            }
            DnsConfigError::Zero { setting } => {
                write!(f, "dns `{setting}` must be greater than zero")
            }
            DnsConfigError::TooLong { setting, value } => {
                write!(f, "dns `{setting}` ({value:?}) is longer than a day")
            }
            DnsConfigError::MinAboveMax { min, max } => write!(
                f,
                "dns `min_refresh` ({min:?}) is above `max_refresh` ({max:?})"
            ),
            DnsConfigError::Attempts { attempts } => write!(
                f,
                "dns `attempts` ({attempts}) must be between 1 and {MAX_ATTEMPTS}"
            ),
            DnsConfigError::SystemConfig { reason } => write!(
                f,
                "dns: the system's resolver configuration could not be read ({reason}); \
                 set `resolver_addr`"
            ),
            DnsConfigError::NoRuntime => f.write_str(
                "dns discovery resolves on a tokio task: build it inside a tokio runtime",
            ),
        }
    }
}

impl std::error::Error for DnsConfigError {}

/// What to resolve, parsed from the name given to [`DnsDiscover::builder`].
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    /// A and AAAA records of `host`, each address on `port`.
    Host { host: String, port: u16 },
    /// SRV records of `name`.
    Srv { name: String },
}

fn invalid(name: &str, reason: &'static str) -> DnsConfigError {
    DnsConfigError::InvalidName {
        name: name.to_owned(),
        reason,
    }
}

/// Checks a domain name's syntax: labels of 1 to 63 letters, digits, `-` or `_`, 253
/// characters at most, one trailing dot allowed.
fn check_domain(full: &str, domain: &str) -> Result<(), DnsConfigError> {
    let bare = domain.strip_suffix('.').unwrap_or(domain);
    if bare.is_empty() {
        return Err(invalid(full, "the host is empty"));
    }
    if bare.len() > 253 {
        return Err(invalid(full, "a domain name has at most 253 characters"));
    }
    for label in bare.split('.') {
        if label.is_empty() {
            return Err(invalid(full, "a label is empty (two dots in a row)"));
        }
        if label.len() > 63 {
            return Err(invalid(full, "a label has more than 63 characters"));
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(invalid(
                full,
                "a label may hold only letters, digits, `-` and `_`",
            ));
        }
    }
    Ok(())
}

impl Target {
    fn parse(name: &str) -> Result<Target, DnsConfigError> {
        if name.trim().is_empty() {
            return Err(DnsConfigError::EmptyName);
        }
        if name.starts_with('_') {
            if name.contains(':') {
                return Err(invalid(
                    name,
                    "an SRV name takes no port: the records carry theirs",
                ));
            }
            check_domain(name, name)?;
            let labels: Vec<&str> = name.trim_end_matches('.').split('.').collect();
            let proto_ok = labels
                .get(1)
                .is_some_and(|l| l.len() > 1 && l.starts_with('_'));
            if labels.len() < 3 || labels[0].len() < 2 || !proto_ok {
                return Err(invalid(
                    name,
                    "an SRV name is `_service._proto.domain` (`_grpc._tcp.books.example.com`)",
                ));
            }
            return Ok(Target::Srv {
                name: name.to_owned(),
            });
        }
        let (host, port) = if let Some(rest) = name.strip_prefix('[') {
            let (ip, port) = rest
                .split_once("]:")
                .ok_or_else(|| invalid(name, "expected `[ipv6]:port`"))?;
            if ip.parse::<std::net::Ipv6Addr>().is_err() {
                return Err(invalid(
                    name,
                    "the address in brackets is not an IPv6 address",
                ));
            }
            (ip, port)
        } else {
            let (host, port) = name.rsplit_once(':').ok_or_else(|| {
                invalid(
                    name,
                    "expected `host:port`, or an SRV name starting with `_`",
                )
            })?;
            if host.contains(':') {
                return Err(invalid(
                    name,
                    "an IPv6 address takes brackets: `[::1]:8080`",
                ));
            }
            if host.parse::<IpAddr>().is_err() {
                check_domain(name, host)?;
            }
            (host, port)
        };
        let port = match port.parse::<u16>() {
            Ok(0) => return Err(invalid(name, "the port is 0")),
            Ok(port) => port,
            Err(_) => return Err(invalid(name, "the port is not a number from 1 to 65535")),
        };
        Ok(Target::Host {
            host: host.to_owned(),
            port,
        })
    }
}

fn check_duration(setting: &'static str, value: Duration) -> Result<(), DnsConfigError> {
    if value.is_zero() {
        Err(DnsConfigError::Zero { setting })
    } else if value > MAX_SETTING {
        Err(DnsConfigError::TooLong { setting, value })
    } else {
        Ok(())
    }
}

/// The default backoff after a failed resolution: 1 s doubling to 60 s, equal jitter (each
/// wait between half and all of the doubled value, so retries never come at once).
fn default_backoff() -> ExponentialBackoff {
    ExponentialBackoff::new(
        Duration::from_secs(1),
        2.0,
        Duration::from_secs(60),
        Jitter::Equal,
    )
    .unwrap_or_default()
}

/// Builds a [`DnsDiscover`]: see [`DnsDiscover::builder`] and the [module docs](self).
pub struct DnsDiscoverBuilder {
    query: String,
    name: Option<String>,
    resolver_addr: Option<SocketAddr>,
    min_refresh: Duration,
    max_refresh: Duration,
    timeout: Duration,
    attempts: usize,
    backoff: ExponentialBackoff,
    random: Arc<dyn RandomSource>,
}

impl fmt::Debug for DnsDiscoverBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DnsDiscoverBuilder")
            .field("query", &self.query)
            .field("name", &self.name)
            .field("resolver_addr", &self.resolver_addr)
            .field("min_refresh", &self.min_refresh)
            .field("max_refresh", &self.max_refresh)
            .field("timeout", &self.timeout)
            .field("attempts", &self.attempts)
            .field("backoff", &self.backoff)
            .finish_non_exhaustive()
    }
}

impl DnsDiscoverBuilder {
    /// The name of this source in logs (the `dns` field) and metrics (the `name` label).
    /// Default: the name resolved.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Send every query to this name server (over UDP, and TCP when an answer is truncated)
    /// instead of those in the system's configuration.
    pub fn resolver_addr(mut self, addr: SocketAddr) -> Self {
        self.resolver_addr = Some(addr);
        self
    }

    /// The least time between two queries, whatever asks for one (a short TTL, an early
    /// refresh, a retry). Default 5 s, Envoy's DNS refresh rate: a query per 5 s per name is
    /// nothing to a name server, and a Kubernetes pod change (TTL 5 to 30 s) is seen in time.
    pub fn min_refresh(mut self, min: Duration) -> Self {
        self.min_refresh = min;
        self
    }

    /// The longest a set is used before the name is resolved again, however long its TTL.
    /// Default 300 s: an answer with a TTL of an hour does not leave the set an hour stale.
    pub fn max_refresh(mut self, max: Duration) -> Self {
        self.max_refresh = max;
        self
    }

    /// How long one query waits for an answer. Default 2 s: an answer from a working name
    /// server takes milliseconds, and a resolution that waits long only delays its retry.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How many times a query is tried before the resolution fails, 1 to 10. Default 2, as in
    /// `resolv.conf`.
    pub fn attempts(mut self, attempts: usize) -> Self {
        self.attempts = attempts;
        self
    }

    /// The wait before retrying after failed resolutions in a row, kept within
    /// `[min_refresh, max_refresh]`. Default: 1 s doubling to 60 s, equal jitter.
    pub fn backoff(mut self, backoff: ExponentialBackoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Where the backoff's jitter comes from (seed it in tests). Default: seeded per process.
    pub fn random(mut self, random: Arc<dyn RandomSource>) -> Self {
        self.random = random;
        self
    }

    fn validate(&self) -> Result<Target, DnsConfigError> {
        let target = Target::parse(&self.query)?;
        check_duration("min_refresh", self.min_refresh)?;
        check_duration("max_refresh", self.max_refresh)?;
        check_duration("timeout", self.timeout)?;
        if self.min_refresh > self.max_refresh {
            return Err(DnsConfigError::MinAboveMax {
                min: self.min_refresh,
                max: self.max_refresh,
            });
        }
        if self.attempts == 0 || self.attempts > MAX_ATTEMPTS {
            return Err(DnsConfigError::Attempts {
                attempts: self.attempts,
            });
        }
        Ok(target)
    }

    fn resolver(&self) -> Result<TokioResolver, DnsConfigError> {
        let mut builder = match self.resolver_addr {
            Some(addr) => {
                let servers =
                    NameServerConfigGroup::from_ips_clear(&[addr.ip()], addr.port(), true);
                TokioResolver::builder_with_config(
                    ResolverConfig::from_parts(None, Vec::new(), servers),
                    TokioConnectionProvider::default(),
                )
            }
            None => TokioResolver::builder_tokio().map_err(|e| DnsConfigError::SystemConfig {
                reason: e.to_string(),
            })?,
        };
        let opts = builder.options_mut();
        opts.timeout = self.timeout;
        opts.attempts = self.attempts;
        // No cache: each refresh must ask the server (the TTL is honoured here instead).
        opts.cache_size = 0;
        opts.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
        opts.use_hosts_file = ResolveHosts::Never;
        // One query at a time, to the servers in the order configured (UDP first).
        opts.num_concurrent_reqs = 1;
        opts.server_ordering_strategy = ServerOrderingStrategy::UserProvidedOrder;
        opts.preserve_intermediates = true;
        Ok(builder.build())
    }

    /// Validates the settings and starts resolving on a task of the current tokio runtime;
    /// `make` turns each endpoint found into a service (it is called once per `Insert`).
    ///
    /// # Errors
    ///
    /// A [`DnsConfigError`] naming the first setting out of range (an empty or malformed name,
    /// a zero or over-a-day duration, `min_refresh` above `max_refresh`, `attempts` outside
    /// 1 to 10), the system's resolver configuration unreadable with no `resolver_addr`, or
    /// no tokio runtime.
    pub fn build<S, F>(self, make: F) -> Result<DnsDiscover<S>, DnsConfigError>
    where
        F: FnMut(&DnsEndpoint) -> S + Send + 'static,
    {
        let target = self.validate()?;
        let runtime =
            tokio::runtime::Handle::try_current().map_err(|_| DnsConfigError::NoRuntime)?;
        let resolver = self.resolver()?;
        let name: Arc<str> = self.name.as_deref().unwrap_or(&self.query).into();
        let shared = Arc::new(Shared::default());
        let worker = Worker {
            name: name.clone(),
            resolver,
            target,
            shared: shared.clone(),
            timing: Timing {
                min: self.min_refresh,
                max: self.max_refresh,
                backoff: self.backoff,
            },
            random: self.random,
            last_start: None,
            failures: 0,
            previous_wait: Duration::ZERO,
            published: Vec::new(),
            #[cfg(feature = "metrics")]
            metrics: DnsMetrics::new(&name),
        };
        let task = runtime.spawn(worker.run());
        Ok(DnsDiscover {
            shared,
            seen: 0,
            emitted: HashMap::new(),
            pending: VecDeque::new(),
            make: Box::new(make),
            task,
            name,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Scheduling: plain functions of durations, tested without sockets.
// ---------------------------------------------------------------------------------------------

/// The refresh bounds and the failure backoff.
#[derive(Debug, Clone)]
struct Timing {
    min: Duration,
    max: Duration,
    backoff: ExponentialBackoff,
}

impl Timing {
    /// The wait after a good answer: its TTL within `[min, max]` (no TTL: `max`).
    fn after_success(&self, ttl: Option<Duration>) -> Duration {
        ttl.unwrap_or(self.max).clamp(self.min, self.max)
    }

    /// The wait after failure number `failures` in a row (1 = the first), given the previous
    /// wait: the backoff's, within `[min, max]`.
    fn after_failure(
        &self,
        failures: u32,
        previous: Duration,
        random: &dyn RandomSource,
    ) -> Duration {
        self.backoff
            .delay(failures, previous, random)
            .clamp(self.min, self.max)
    }

    /// When an early refresh asked for `now` may run: at once, unless the previous query
    /// started less than `min` ago.
    fn early(&self, now: Instant, last_start: Option<Instant>) -> Instant {
        match last_start {
            Some(start) => now.max(start + self.min),
            None => now,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Resolution
// ---------------------------------------------------------------------------------------------

/// A good answer: the endpoints, sorted by address and deduplicated, and the smallest TTL of
/// the records that gave them.
#[derive(Debug)]
struct Answer {
    endpoints: Vec<DnsEndpoint>,
    ttl: Option<Duration>,
}

/// Why a resolution failed.
#[derive(Debug)]
enum Failure {
    /// The name does not exist.
    NxDomain,
    /// The name exists but has no records of the types asked (or SRV targets with none).
    NoRecords,
    /// No answer in time.
    Timeout,
    /// Anything else: SERVFAIL, REFUSED, a connection refused, a malformed answer.
    Error(String),
}

impl Failure {
    fn outcome(&self) -> &'static str {
        match self {
            Failure::NxDomain => "nxdomain",
            Failure::NoRecords => "no_records",
            Failure::Timeout => "timeout",
            Failure::Error(_) => "error",
        }
    }

    fn from_resolve(error: &ResolveError) -> Failure {
        match error.proto().map(|p| p.kind()) {
            Some(ProtoErrorKind::NoRecordsFound { response_code, .. }) => match *response_code {
                ResponseCode::NXDomain => Failure::NxDomain,
                ResponseCode::NoError => Failure::NoRecords,
                code => Failure::Error(format!("the name server answered {code}")),
            },
            Some(ProtoErrorKind::Timeout) => Failure::Timeout,
            _ => Failure::Error(error.to_string()),
        }
    }

    /// True if the failure says the name has no address, as opposed to not knowing.
    fn is_negative(&self) -> bool {
        matches!(self, Failure::NxDomain | Failure::NoRecords)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::NxDomain => f.write_str("the name does not exist (NXDOMAIN)"),
            Failure::NoRecords => f.write_str("the answer has no address"),
            Failure::Timeout => f.write_str("no answer in time"),
            Failure::Error(e) => f.write_str(e),
        }
    }
}

fn min_ttl(ttl: Option<Duration>, secs: u32) -> Option<Duration> {
    let d = Duration::from_secs(u64::from(secs));
    Some(ttl.map_or(d, |t| t.min(d)))
}

/// The addresses of `host` and the smallest TTL of their records.
async fn lookup_host(
    resolver: &TokioResolver,
    host: &str,
) -> Result<(Vec<IpAddr>, Option<Duration>), Failure> {
    let lookup = resolver
        .lookup_ip(host)
        .await
        .map_err(|e| Failure::from_resolve(&e))?;
    let ttl = lookup
        .as_lookup()
        .record_iter()
        .fold(None, |ttl, r| min_ttl(ttl, r.ttl()));
    let ips: Vec<IpAddr> = lookup.iter().collect();
    if ips.is_empty() {
        return Err(Failure::NoRecords);
    }
    Ok((ips, ttl))
}

/// Keeps one endpoint per address: the preferred (lowest) priority, and within it the larger
/// weight; sorted by address.
fn dedup(endpoints: impl IntoIterator<Item = DnsEndpoint>) -> Vec<DnsEndpoint> {
    let mut by_addr: HashMap<SocketAddr, DnsEndpoint> = HashMap::new();
    for e in endpoints {
        by_addr
            .entry(e.addr)
            .and_modify(|kept| {
                if (e.priority, std::cmp::Reverse(e.weight))
                    < (kept.priority, std::cmp::Reverse(kept.weight))
                {
                    *kept = e;
                }
            })
            .or_insert(e);
    }
    let mut out: Vec<DnsEndpoint> = by_addr.into_values().collect();
    out.sort_by_key(|e| e.addr);
    out
}

async fn resolve(resolver: &TokioResolver, target: &Target) -> Result<Answer, Failure> {
    match target {
        Target::Host { host, port } => {
            let (ips, ttl) = lookup_host(resolver, host).await?;
            let endpoints = dedup(ips.into_iter().map(|ip| DnsEndpoint {
                addr: SocketAddr::new(ip, *port),
                weight: 1,
                priority: 0,
            }));
            Ok(Answer { endpoints, ttl })
        }
        Target::Srv { name } => {
            let srv = resolver
                .srv_lookup(name.as_str())
                .await
                .map_err(|e| Failure::from_resolve(&e))?;
            let mut ttl = srv
                .as_lookup()
                .record_iter()
                .fold(None, |ttl, r| min_ttl(ttl, r.ttl()));
            let records: Vec<(String, u16, u32, u32)> = srv
                .iter()
                .filter(|r| !r.target().is_root())
                .map(|r| {
                    (
                        r.target().to_ascii(),
                        r.port(),
                        u32::from(r.weight()).max(1),
                        u32::from(r.priority()),
                    )
                })
                .collect();
            let mut targets: Vec<&str> = records.iter().map(|r| r.0.as_str()).collect();
            targets.sort_unstable();
            targets.dedup();
            let lookups =
                futures_util::future::join_all(targets.iter().map(|t| lookup_host(resolver, t)))
                    .await;
            let mut addresses: HashMap<&str, Vec<IpAddr>> = HashMap::new();
            for (target, result) in targets.iter().zip(lookups) {
                match result {
                    Ok((ips, t)) => {
                        ttl = match (ttl, t) {
                            (Some(a), Some(b)) => Some(a.min(b)),
                            (a, b) => a.or(b),
                        };
                        addresses.insert(target, ips);
                    }
                    // The target has no address: skip it (if another has some).
                    Err(f) if f.is_negative() => {}
                    Err(f) => return Err(f),
                }
            }
            let endpoints = dedup(records.iter().flat_map(|(target, port, weight, priority)| {
                addresses
                    .get(target.as_str())
                    .into_iter()
                    .flatten()
                    .map(|ip| DnsEndpoint {
                        addr: SocketAddr::new(*ip, *port),
                        weight: *weight,
                        priority: *priority,
                    })
            }));
            if endpoints.is_empty() {
                return Err(Failure::NoRecords);
            }
            Ok(Answer { endpoints, ttl })
        }
    }
}

/// How two sets differ, by address: added, removed, and kept with a new weight or priority.
fn count_changes(old: &[DnsEndpoint], new: &[DnsEndpoint]) -> (usize, usize, usize) {
    let old_by: HashMap<SocketAddr, &DnsEndpoint> = old.iter().map(|e| (e.addr, e)).collect();
    let mut added = 0;
    let mut updated = 0;
    for e in new {
        match old_by.get(&e.addr) {
            None => added += 1,
            Some(o) if (o.weight, o.priority) != (e.weight, e.priority) => updated += 1,
            Some(_) => {}
        }
    }
    let removed = old.len() + added - new.len();
    (added, removed, updated)
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

// ---------------------------------------------------------------------------------------------
// The task, and what it shares with the stream and the refresh handles
// ---------------------------------------------------------------------------------------------

#[derive(Default)]
struct Shared {
    /// The last good set, and its version (0: none yet). The lock is held only to copy or
    /// swap the `Arc`, never across an `.await`.
    latest: Mutex<(u64, Arc<[DnsEndpoint]>)>,
    /// The stream's waker, woken when a new set is published.
    waker: AtomicWaker,
    /// An early refresh was asked for since the last query started.
    refresh_requested: AtomicBool,
    /// Wakes the task when an early refresh is asked for.
    refresh: Notify,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared").finish_non_exhaustive()
    }
}

impl Shared {
    fn publish(&self, endpoints: &[DnsEndpoint]) {
        {
            let mut latest = self.latest.lock().unwrap_or_else(|e| e.into_inner());
            latest.0 += 1;
            latest.1 = endpoints.into();
        }
        self.waker.wake();
    }

    /// The latest set if it is newer than version `seen`.
    fn newer_than(&self, seen: u64) -> Option<(u64, Arc<[DnsEndpoint]>)> {
        let latest = self.latest.lock().unwrap_or_else(|e| e.into_inner());
        (latest.0 != seen).then(|| (latest.0, latest.1.clone()))
    }
}

/// The outcomes a resolution is counted under.
#[cfg(feature = "metrics")]
const OUTCOMES: [&str; 5] = ["success", "nxdomain", "no_records", "timeout", "error"];

/// The source's metric handles, registered (with their help text) with the recorder current
/// at each resolution: installed before or after the source is built, it sees them.
#[cfg(feature = "metrics")]
struct DnsMetrics {
    name: Box<str>,
    /// What the gauges show, for a recorder met later.
    endpoints: std::sync::atomic::AtomicUsize,
    failing: std::sync::atomic::AtomicBool,
    handles: bulwark_core::telemetry::Handles<DnsHandles>,
}

#[cfg(feature = "metrics")]
struct DnsHandles {
    resolutions: [metrics::Counter; 5],
    endpoints: metrics::Gauge,
    failing: metrics::Gauge,
    added: metrics::Counter,
    removed: metrics::Counter,
}

#[cfg(feature = "metrics")]
impl DnsMetrics {
    fn new(name: &str) -> Self {
        let m = DnsMetrics {
            name: name.into(),
            endpoints: Default::default(),
            failing: Default::default(),
            handles: bulwark_core::telemetry::Handles::new(),
        };
        m.with(|_| ());
        m
    }

    fn with(&self, f: impl FnOnce(&DnsHandles)) {
        use std::sync::atomic::Ordering::Relaxed;
        self.handles.with(
            || {
                metrics::describe_counter!(
                    "bulwark_balance_dns_resolutions_total",
                    "Resolutions of the DNS name, by how they ended"
                );
                metrics::describe_gauge!(
                    "bulwark_balance_dns_endpoints",
                    "Endpoints in the last good DNS answer"
                );
                metrics::describe_gauge!(
                    "bulwark_balance_dns_failing",
                    "1 while DNS resolution fails and the last good set is kept, else 0"
                );
                metrics::describe_counter!(
                    "bulwark_balance_dns_endpoints_added_total",
                    "Addresses that appeared in a good DNS answer"
                );
                metrics::describe_counter!(
                    "bulwark_balance_dns_endpoints_removed_total",
                    "Addresses that left a good DNS answer"
                );
                let n = &self.name;
                let h = DnsHandles {
                    resolutions: OUTCOMES.map(|outcome| {
                        metrics::counter!(
                            "bulwark_balance_dns_resolutions_total",
                            "name" => n.to_string(),
                            "outcome" => outcome
                        )
                    }),
                    endpoints: metrics::gauge!("bulwark_balance_dns_endpoints", "name" => n.to_string()),
                    failing: metrics::gauge!("bulwark_balance_dns_failing", "name" => n.to_string()),
                    added: metrics::counter!("bulwark_balance_dns_endpoints_added_total", "name" => n.to_string()),
                    removed: metrics::counter!("bulwark_balance_dns_endpoints_removed_total", "name" => n.to_string()),
                };
                h.endpoints.set(self.endpoints.load(Relaxed) as f64);
                h.failing.set(if self.failing.load(Relaxed) { 1.0 } else { 0.0 });
                h
            },
            f,
        )
    }

    /// A resolution ended: `endpoints` is the size of a good answer (`None`: it failed).
    fn resolution(&self, outcome: &'static str, endpoints: Option<usize>) {
        use std::sync::atomic::Ordering::Relaxed;
        self.failing.store(endpoints.is_none(), Relaxed);
        if let Some(n) = endpoints {
            self.endpoints.store(n, Relaxed);
        }
        self.with(|h| {
            if let Some(i) = OUTCOMES.iter().position(|o| *o == outcome) {
                h.resolutions[i].increment(1);
            }
            h.failing.set(if endpoints.is_none() { 1.0 } else { 0.0 });
            if let Some(n) = endpoints {
                h.endpoints.set(n as f64);
            }
        });
    }

    fn changed(&self, added: usize, removed: usize) {
        self.with(|h| {
            h.added.increment(added as u64);
            h.removed.increment(removed as u64);
        });
    }
}

struct Worker {
    name: Arc<str>,
    resolver: TokioResolver,
    target: Target,
    shared: Arc<Shared>,
    timing: Timing,
    random: Arc<dyn RandomSource>,
    /// When the last query started (the early-refresh rate limit counts from it).
    last_start: Option<Instant>,
    /// Failed resolutions in a row.
    failures: u32,
    /// The previous backoff wait (for decorrelated jitter).
    previous_wait: Duration,
    /// The last good set (empty before the first).
    published: Vec<DnsEndpoint>,
    #[cfg(feature = "metrics")]
    metrics: DnsMetrics,
}

impl Worker {
    async fn run(mut self) {
        let mut next = Instant::now();
        loop {
            // Wait for the next query, or an early refresh (rate-limited by `min_refresh`).
            loop {
                let now = Instant::now();
                if self.shared.refresh_requested.load(Ordering::Acquire) {
                    next = next.min(self.timing.early(now, self.last_start));
                }
                if now >= next {
                    break;
                }
                tokio::select! {
                    () = tokio::time::sleep_until(next) => break,
                    () = self.shared.refresh.notified() => {}
                }
            }
            // This query answers every refresh asked for so far.
            self.shared
                .refresh_requested
                .store(false, Ordering::Release);
            self.last_start = Some(Instant::now());
            let result = resolve(&self.resolver, &self.target).await;
            let wait = self.handle(result);
            next = Instant::now() + wait;
        }
    }

    /// Publishes a good answer or keeps the last one; returns the wait until the next query.
    fn handle(&mut self, result: Result<Answer, Failure>) -> Duration {
        match result {
            Ok(answer) => {
                #[cfg(feature = "metrics")]
                {
                    self.metrics
                        .resolution("success", Some(answer.endpoints.len()));
                }
                if self.failures > 0 {
                    tracing::info!(
                        dns = %self.name,
                        failures = self.failures,
                        endpoints = answer.endpoints.len(),
                        "dns resolution recovered"
                    );
                }
                self.failures = 0;
                self.previous_wait = Duration::ZERO;
                let wait = self.timing.after_success(answer.ttl);
                tracing::debug!(
                    dns = %self.name,
                    endpoints = answer.endpoints.len(),
                    ttl_ms = answer.ttl.map(ms),
                    next_ms = ms(wait),
                    "dns resolved"
                );
                if answer.endpoints != self.published
                    || answer
                        .endpoints
                        .iter()
                        .zip(&self.published)
                        .any(|(a, b)| (a.weight, a.priority) != (b.weight, b.priority))
                {
                    let (added, removed, updated) =
                        count_changes(&self.published, &answer.endpoints);
                    #[cfg(feature = "metrics")]
                    {
                        self.metrics.changed(added, removed);
                    }
                    tracing::info!(
                        dns = %self.name,
                        added,
                        removed,
                        updated,
                        endpoints = answer.endpoints.len(),
                        "dns endpoints changed"
                    );
                    self.shared.publish(&answer.endpoints);
                    self.published = answer.endpoints;
                }
                wait
            }
            Err(failure) => {
                #[cfg(feature = "metrics")]
                {
                    self.metrics.resolution(failure.outcome(), None);
                }
                self.failures = self.failures.saturating_add(1);
                let wait =
                    self.timing
                        .after_failure(self.failures, self.previous_wait, &*self.random);
                self.previous_wait = wait;
                if self.failures == 1 {
                    tracing::warn!(
                        dns = %self.name,
                        outcome = failure.outcome(),
                        error = %failure,
                        endpoints = self.published.len(),
                        retry_ms = ms(wait),
                        "dns resolution failing; keeping the last endpoints"
                    );
                } else {
                    tracing::debug!(
                        dns = %self.name,
                        outcome = failure.outcome(),
                        error = %failure,
                        failures = self.failures,
                        retry_ms = ms(wait),
                        "dns resolution failed again"
                    );
                }
                wait
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The stream and the refresh handle
// ---------------------------------------------------------------------------------------------

enum Pending {
    Insert(DnsEndpoint),
    Remove(DnsEndpoint),
}

/// A `tower::discover::Discover` stream of the endpoints a DNS name resolves to: yields
/// `Change::Insert(endpoint, make(&endpoint))` for each address that appears or changes weight
/// or priority, and `Change::Remove(endpoint)` for each that leaves a good answer. Never ends
/// and never yields an error (`Infallible`): a failed resolution keeps the last set.
///
/// Built with [`DnsDiscover::builder`]; see the [module docs](self). Dropping it stops the
/// resolution task.
pub struct DnsDiscover<S> {
    shared: Arc<Shared>,
    /// The version of the set last diffed.
    seen: u64,
    /// What the stream has inserted and not removed, by address.
    emitted: HashMap<SocketAddr, DnsEndpoint>,
    /// Changes of the last diff not yet yielded.
    pending: VecDeque<Pending>,
    make: Box<dyn FnMut(&DnsEndpoint) -> S + Send>,
    task: JoinHandle<()>,
    name: Arc<str>,
}

impl DnsDiscover<()> {
    /// A builder for a source resolving `name`: `host:port` for A and AAAA records, or an SRV
    /// name (`_grpc._tcp.books.example.com`). The name is checked by
    /// [`build`](DnsDiscoverBuilder::build).
    pub fn builder(name: impl Into<String>) -> DnsDiscoverBuilder {
        DnsDiscoverBuilder {
            query: name.into(),
            name: None,
            resolver_addr: None,
            min_refresh: Duration::from_secs(5),
            max_refresh: Duration::from_secs(300),
            timeout: Duration::from_secs(2),
            attempts: 2,
            backoff: default_backoff(),
            random: Arc::new(SplitMix64::from_entropy()),
        }
    }
}

impl<S> DnsDiscover<S> {
    /// A handle that asks for an early resolution (at most one per `min_refresh`); give it to
    /// the balancer with [`Builder::refresh`](crate::Builder::refresh).
    pub fn refresher(&self) -> DnsRefresh {
        DnsRefresh {
            shared: self.shared.clone(),
        }
    }

    /// This source's name in logs and metrics.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl<S> fmt::Debug for DnsDiscover<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DnsDiscover")
            .field("name", &self.name)
            .field("endpoints", &self.emitted.len())
            .finish_non_exhaustive()
    }
}

impl<S> Drop for DnsDiscover<S> {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl<S> DnsDiscover<S> {
    /// Queues the changes from what was emitted to `latest`: insertions first, so a rolling
    /// replacement never leaves the balancer with fewer endpoints than it needs.
    fn diff(&mut self, latest: &[DnsEndpoint]) {
        for e in latest {
            match self.emitted.get(&e.addr) {
                Some(old) if (old.weight, old.priority) == (e.weight, e.priority) => {}
                _ => self.pending.push_back(Pending::Insert(*e)),
            }
        }
        let mut gone: Vec<DnsEndpoint> = self
            .emitted
            .values()
            .filter(|old| latest.binary_search_by_key(&old.addr, |e| e.addr).is_err())
            .copied()
            .collect();
        gone.sort_by_key(|e| e.addr);
        self.pending.extend(gone.into_iter().map(Pending::Remove));
    }
}

impl<S> futures_util::Stream for DnsDiscover<S> {
    type Item = Result<Change<DnsEndpoint, S>, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if let Some(next) = this.pending.pop_front() {
                let change = match next {
                    Pending::Insert(e) => {
                        this.emitted.insert(e.addr, e);
                        Change::Insert(e, (this.make)(&e))
                    }
                    Pending::Remove(e) => {
                        this.emitted.remove(&e.addr);
                        Change::Remove(e)
                    }
                };
                return Poll::Ready(Some(Ok(change)));
            }
            this.shared.waker.register(cx.waker());
            match this.shared.newer_than(this.seen) {
                Some((version, latest)) => {
                    this.seen = version;
                    this.diff(&latest);
                }
                None => return Poll::Pending,
            }
        }
    }
}

/// Asks a [`DnsDiscover`] to resolve again early, as the balancer does when every endpoint
/// fails (it implements [`Refresh`]). Requests closer together than `min_refresh` after the
/// previous query are merged into one query at the end of that time. Cheap to clone; does
/// nothing once the `DnsDiscover` is dropped.
#[derive(Debug, Clone)]
pub struct DnsRefresh {
    shared: Arc<Shared>,
}

impl Refresh for DnsRefresh {
    fn refresh(&self) {
        self.shared.refresh_requested.store(true, Ordering::Release);
        self.shared.refresh.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timing() -> Timing {
        Timing {
            min: Duration::from_secs(5),
            max: Duration::from_secs(300),
            backoff: default_backoff(),
        }
    }

    #[test]
    fn ttl_is_clamped_to_the_bounds() {
        let t = timing();
        assert_eq!(
            t.after_success(Some(Duration::from_secs(30))),
            Duration::from_secs(30)
        );
        assert_eq!(
            t.after_success(Some(Duration::ZERO)),
            Duration::from_secs(5)
        );
        assert_eq!(
            t.after_success(Some(Duration::from_secs(1))),
            Duration::from_secs(5)
        );
        assert_eq!(
            t.after_success(Some(Duration::from_secs(3600))),
            Duration::from_secs(300)
        );
        assert_eq!(t.after_success(None), Duration::from_secs(300));
    }

    #[test]
    fn failures_back_off_from_min_refresh_up_to_the_cap() {
        let t = timing();
        let random = SplitMix64::new(7);
        let mut previous = Duration::ZERO;
        let mut waits = Vec::new();
        for n in 1..=12 {
            let w = t.after_failure(n, previous, &random);
            previous = w;
            waits.push(w);
        }
        // Never below min_refresh, never above the backoff's cap.
        assert!(waits.iter().all(|w| *w >= Duration::from_secs(5)));
        assert!(waits.iter().all(|w| *w <= Duration::from_secs(60)));
        // Equal jitter: the 10th wait is at least half the cap.
        assert!(waits[9] >= Duration::from_secs(30), "{waits:?}");
        // A min_refresh above the backoff keeps the floor.
        let slow = Timing {
            min: Duration::from_secs(90),
            ..timing()
        };
        assert_eq!(
            slow.after_failure(12, previous, &random),
            Duration::from_secs(90)
        );
        // A max_refresh below the backoff's cap bounds the wait.
        let quick = Timing {
            max: Duration::from_secs(10),
            ..timing()
        };
        assert_eq!(
            quick.after_failure(12, previous, &random),
            Duration::from_secs(10)
        );
    }

    #[test]
    fn early_refresh_waits_for_min_refresh_since_the_last_query() {
        let t = timing();
        let start = Instant::now();
        assert_eq!(t.early(start, None), start);
        let now = start + Duration::from_secs(1);
        assert_eq!(t.early(now, Some(start)), start + Duration::from_secs(5));
        let later = start + Duration::from_secs(9);
        assert_eq!(t.early(later, Some(start)), later);
    }

    #[test]
    fn names_parse_or_name_what_is_wrong() {
        assert_eq!(
            Target::parse("books.default.svc.cluster.local:50051"),
            Ok(Target::Host {
                host: "books.default.svc.cluster.local".into(),
                port: 50051
            })
        );
        assert_eq!(
            Target::parse("[::1]:8080"),
            Ok(Target::Host {
                host: "::1".into(),
                port: 8080
            })
        );
        assert_eq!(
            Target::parse("10.0.0.7:80"),
            Ok(Target::Host {
                host: "10.0.0.7".into(),
                port: 80
            })
        );
        assert_eq!(
            Target::parse("_grpc._tcp.books.example.com."),
            Ok(Target::Srv {
                name: "_grpc._tcp.books.example.com.".into()
            })
        );
        assert_eq!(Target::parse(""), Err(DnsConfigError::EmptyName));
        assert_eq!(Target::parse("  "), Err(DnsConfigError::EmptyName));
        for bad in [
            "books.example.com",
            "books.example.com:0",
            "books.example.com:65536",
            "books.example.com:http",
            ":80",
            "::1:80",
            "[::1]80",
            "[nope]:80",
            "bo oks:80",
            "a..b:80",
            "_grpc._tcp.books:50051",
            "_grpc.books",
            "_grpc.tcp.books.example.com",
            "_._tcp.books",
        ] {
            let err = Target::parse(bad).unwrap_err();
            assert_eq!(err.setting(), "name", "{bad}");
            assert!(err.to_string().contains("name"), "{err}");
        }
        let long = format!("{}.example.com:80", "a".repeat(64));
        assert!(Target::parse(&long).is_err());
    }

    #[test]
    fn dedup_keeps_the_preferred_priority_then_the_larger_weight() {
        let addr: SocketAddr = "127.0.0.11:80".parse().unwrap();
        let other: SocketAddr = "127.0.0.12:80".parse().unwrap();
        let e = |addr, weight, priority| DnsEndpoint {
            addr,
            weight,
            priority,
        };
        let out = dedup([
            e(addr, 50, 20),
            e(other, 1, 0),
            e(addr, 5, 10),
            e(addr, 7, 10),
        ]);
        assert_eq!(out.len(), 2);
        assert_eq!((out[0].addr, out[0].weight, out[0].priority), (addr, 7, 10));
        assert_eq!(out[1].addr, other);
    }

    #[test]
    fn changes_are_counted_by_address() {
        let e = |last: u8, weight| DnsEndpoint {
            addr: SocketAddr::from(([127, 0, 0, last], 80)),
            weight,
            priority: 0,
        };
        let old = [e(11, 1), e(12, 1), e(13, 1)];
        let new = [e(12, 2), e(13, 1), e(14, 1), e(15, 1)];
        assert_eq!(count_changes(&old, &new), (2, 1, 1));
        assert_eq!(count_changes(&[], &old), (3, 0, 0));
    }

    #[test]
    fn keys_are_the_address() {
        let a = DnsEndpoint {
            addr: "127.0.0.11:80".parse().unwrap(),
            weight: 1,
            priority: 0,
        };
        let b = DnsEndpoint {
            weight: 9,
            priority: 3,
            ..a
        };
        assert_eq!(a, b);
        let hash = |e: &DnsEndpoint| {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            e.hash(&mut h);
            h.finish()
        };
        assert_eq!(hash(&a), hash(&b));
        assert_eq!(b.to_string(), "127.0.0.11:80");
        assert_eq!((EndpointKey::weight(&b), EndpointKey::priority(&b)), (9, 3));
    }

    #[test]
    fn config_errors_name_their_setting() {
        let secs = Duration::from_secs;
        let cases: [(DnsDiscoverBuilder, &str); 6] = [
            (
                DnsDiscover::builder("x:80").min_refresh(Duration::ZERO),
                "min_refresh",
            ),
            (
                DnsDiscover::builder("x:80").max_refresh(secs(90_000)),
                "max_refresh",
            ),
            (
                DnsDiscover::builder("x:80").timeout(Duration::ZERO),
                "timeout",
            ),
            (
                DnsDiscover::builder("x:80")
                    .min_refresh(secs(60))
                    .max_refresh(secs(30)),
                "min_refresh",
            ),
            (DnsDiscover::builder("x:80").attempts(0), "attempts"),
            (DnsDiscover::builder("x"), "name"),
        ];
        for (builder, setting) in cases {
            let err = builder.validate().unwrap_err();
            assert_eq!(err.setting(), setting, "{err}");
            assert!(err.to_string().contains(setting), "{err}");
        }
        // Outside a runtime.
        let err = DnsDiscover::builder("x:80")
            .resolver_addr("127.0.0.1:53".parse().unwrap())
            .build(|_| ())
            .unwrap_err();
        assert_eq!(err, DnsConfigError::NoRuntime);
        assert_eq!(err.setting(), "runtime");
    }
}
