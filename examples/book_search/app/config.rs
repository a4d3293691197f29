//! The demo's settings: the TOML file of the contract, its defaults, and its validation.
//!
//! Every key is optional. An unknown key, a wrong type or an invalid value is an error that
//! names the key (``circuit_breaker.failure_rate: `failure_rate` must be in (0, 1], got
//! 1.5``); `main` prints it and exits with code 2. Each layer's settings are
//! checked by the layer's own builder (no second copy of its rules here), its error renamed
//! to the file's key; the demo adds only its own rules (durations up to a day, the health
//! path, failover codes).

use serde::Deserialize;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// How `GET /book/{title}` picks a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    /// Power of two choices by peak-EWMA latency; a failed attempt retried on another store.
    Balance,
    /// Ordered store-1, store-2, store-3, sticky to the last store that answered.
    Failover,
    /// No layer at all: the three store clients in round robin (no retry, breaker, timeout,
    /// balancer or health check), the write path unchanged. The baseline of the end-to-end
    /// benchmark (`cargo run --release --example load`); not for use against failing stores.
    Bare,
}

/// `[search]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Search {
    /// `balance`, `failover` or `bare`.
    pub strategy: Strategy,
    /// The whole request's deadline.
    #[serde(with = "humantime_serde")]
    pub deadline: Duration,
    /// How long a request waits for a store to be ready (healthy, circuit closed).
    #[serde(with = "humantime_serde")]
    pub wait_for_healthy: Duration,
}

impl Default for Search {
    fn default() -> Self {
        Search {
            strategy: Strategy::Balance,
            deadline: Duration::from_secs(30),
            wait_for_healthy: Duration::from_secs(1),
        }
    }
}

/// `[attempt]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Attempt {
    /// Time for one attempt on one store.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Statuses that count as a failed attempt, tried again on another store.
    pub failover_codes: Vec<u16>,
}

impl Default for Attempt {
    fn default() -> Self {
        Attempt {
            timeout: Duration::from_secs(5),
            failover_codes: vec![501, 502, 503, 504],
        }
    }
}

/// `[circuit_breaker]`, one breaker per store.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Breaker {
    /// Failure rate that opens the circuit.
    pub failure_rate: f64,
    /// Calls in the sliding window.
    pub window: u32,
    /// Calls needed in the window before the rate can open the circuit.
    pub min_calls: u32,
    /// How long the circuit stays open before a probe.
    #[serde(with = "humantime_serde")]
    pub open: Duration,
    /// Probes admitted while half-open.
    pub half_open_probes: u32,
}

impl Default for Breaker {
    fn default() -> Self {
        Breaker {
            failure_rate: 0.5,
            window: 20,
            min_calls: 5,
            open: Duration::from_secs(10),
            half_open_probes: 1,
        }
    }
}

/// `[health]`, the active health checks.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Health {
    /// The path probed on each store.
    pub path: String,
    /// Time between two probes of a store.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// A probe slower than this fails.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Failed probes in a row that mark a store unhealthy.
    pub unhealthy_after: u32,
    /// Good probes in a row that mark it healthy again.
    pub healthy_after: u32,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            path: String::from("/health"),
            interval: Duration::from_secs(2),
            timeout: Duration::from_secs(2),
            unhealthy_after: 2,
            healthy_after: 1,
        }
    }
}

/// `[fanout]`, the write path's per-store retry.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FanOut {
    /// First backoff.
    #[serde(with = "humantime_serde")]
    pub base: Duration,
    /// Growth of the backoff per retry.
    pub factor: f64,
    /// Largest backoff.
    #[serde(with = "humantime_serde")]
    pub max_backoff: Duration,
    /// Attempts per store, the first included.
    pub max_attempts: u32,
    /// Time for the whole POST.
    #[serde(with = "humantime_serde")]
    pub deadline: Duration,
}

impl Default for FanOut {
    fn default() -> Self {
        FanOut {
            base: Duration::from_millis(100),
            factor: 2.0,
            max_backoff: Duration::from_secs(64),
            max_attempts: 100,
            deadline: Duration::from_secs(30),
        }
    }
}

/// `[bulkhead]`: at most this many book requests in flight to each store on the read path.
/// A store at its limit is not ready, so the balancer (or the failover) sends the request to
/// another store; when every store is at its limit, the request waits up to
/// `[search] wait_for_healthy` for a place and is then answered 503.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Bulkhead {
    /// Whether the read path has per-store bulkheads.
    pub enabled: bool,
    /// Book requests in flight to one store at most (1..=1,000,000).
    pub max_concurrent: u32,
}

impl Default for Bulkhead {
    fn default() -> Self {
        // 64: twice what the load example sends to the whole service at once (32), so a
        // healthy store never meets it, and a store that stalls holds at most 64 requests
        // (and sockets) of the search service until its attempt timeout cuts them.
        Bulkhead {
            enabled: true,
            max_concurrent: 64,
        }
    }
}

/// The whole file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// `[search]`.
    pub search: Search,
    /// `[attempt]`.
    pub attempt: Attempt,
    /// `[circuit_breaker]`.
    pub circuit_breaker: Breaker,
    /// `[health]`.
    pub health: Health,
    /// `[ejection]`: the balancer's passive ejection (strategy `balance`), its own
    /// configuration type (Envoy's outlier-detection defaults: 5 failures in a row, 30 s
    /// times the number of ejections up to 300 s, at most half the stores out; optionally
    /// `failure_rate = { rate, min_requests, window }`). Not in the contract's file.
    pub ejection: tower_bulwark::balance::Ejection,
    /// `[fanout]`.
    pub fanout: FanOut,
    /// `[bulkhead]`: per-store concurrency limits on the read path.
    pub bulkhead: Bulkhead,
    /// `[hedge]`: hedged reads (strategy `balance`), the hedging layer's own configuration
    /// type: after the p95 of the answers seen (once 100 are in), the request is sent to
    /// another store too and the first answer wins; hedges are at most 10% of requests.
    /// `max_attempts = 1` turns hedging off.
    pub hedge: tower_bulwark::hedge::HedgeConfig,
    /// `[rate_limit]`: a token bucket in front of the read path, the rate limiter's own
    /// configuration type. No table: no limit. Over the rate, a request is answered 503 with
    /// `Retry-After` at once (or after waiting up to `max_wait` for a token).
    pub rate_limit: Option<tower_bulwark::rate_limit::RateLimitConfig>,
}

/// A setting that cannot be used, naming its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The key (`circuit_breaker.failure_rate`), or the file for a syntax error.
    pub key: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid configuration: {}: {}", self.key, self.message)
    }
}

impl std::error::Error for ConfigError {}

fn bad(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        key: key.to_string(),
        message: message.into(),
    }
}

/// Durations above this are refused (the layers refuse them too).
const LONGEST: Duration = Duration::from_secs(24 * 3600);

impl Config {
    /// Parses and validates a TOML file's text.
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| {
            // toml names the key in its message ("unknown field `x`", "invalid type") and
            // shows the line; the key path comes from the span.
            let key = e
                .span()
                .and_then(|span| key_at(text, span.start))
                .unwrap_or_else(|| String::from("(file)"));
            ConfigError {
                key,
                message: e.message().trim().to_string(),
            }
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks every value; the first bad one is the error.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let durations = [
            ("search.deadline", self.search.deadline),
            ("attempt.timeout", self.attempt.timeout),
            ("circuit_breaker.open", self.circuit_breaker.open),
            ("health.interval", self.health.interval),
            ("health.timeout", self.health.timeout),
            ("fanout.base", self.fanout.base),
            ("fanout.max_backoff", self.fanout.max_backoff),
            ("fanout.deadline", self.fanout.deadline),
        ];
        for (key, d) in durations {
            if d.is_zero() {
                return Err(bad(key, "must be more than zero"));
            }
            if d > LONGEST {
                return Err(bad(key, format!("must be at most 24h, got {d:?}")));
            }
        }
        if self.search.wait_for_healthy > LONGEST {
            return Err(bad("search.wait_for_healthy", "must be at most 24h"));
        }
        if self.attempt.failover_codes.is_empty() {
            return Err(bad(
                "attempt.failover_codes",
                "must name at least one status",
            ));
        }
        for &code in &self.attempt.failover_codes {
            if !(100..=599).contains(&code) {
                return Err(bad(
                    "attempt.failover_codes",
                    format!("{code} is not an HTTP status (100..=599)"),
                ));
            }
            if code == 404 {
                return Err(bad(
                    "attempt.failover_codes",
                    "404 is an answer (the stores are replicas), not a failed attempt",
                ));
            }
        }
        let h = &self.health;
        if !h.path.starts_with('/') || h.path.parse::<http::uri::PathAndQuery>().is_err() {
            return Err(bad(
                "health.path",
                format!("must be a path starting with '/', got {:?}", h.path),
            ));
        }
        // The rest is checked by the layers themselves, their errors renamed to the file's keys.
        let cb = &self.circuit_breaker;
        if let Err(e) = tower_bulwark::circuit_breaker::CircuitBreakerLayer::builder()
            .failure_rate(cb.failure_rate)
            .count_window(cb.window)
            .min_calls(cb.min_calls)
            .open_for(cb.open)
            .half_open_probes(cb.half_open_probes)
            .build()
        {
            let key = match e.setting() {
                "window.size" => "window",
                other => other,
            };
            return Err(bad(&format!("circuit_breaker.{key}"), e.to_string()));
        }
        // The balancer names its settings as the file does (`health.interval`, `ejection.max`).
        if let Err(e) = tower_bulwark::balance::BalanceLayer::builder()
            .health_check(tower_bulwark::balance::HealthCheck {
                interval: h.interval,
                timeout: h.timeout,
                unhealthy_after: h.unhealthy_after,
                healthy_after: h.healthy_after,
                ..Default::default()
            })
            .ejection(self.ejection)
            .build()
        {
            return Err(bad(e.setting(), e.to_string()));
        }
        let f = &self.fanout;
        let backoff = tower_bulwark::core::ExponentialBackoff::new(
            f.base,
            f.factor,
            f.max_backoff,
            tower_bulwark::core::Jitter::Full,
        )
        .map_err(|e| {
            let key = match e.setting() {
                "max" => "max_backoff",
                other => other,
            };
            bad(&format!("fanout.{key}"), e.to_string())
        })?;
        if let Err(e) = tower_bulwark::retry::BackoffRetryLayer::builder()
            .backoff(backoff)
            .max_attempts(f.max_attempts)
            .deadline(f.deadline)
            .build()
        {
            return Err(bad(&format!("fanout.{}", e.setting()), e.to_string()));
        }
        if let Err(e) = tower_bulwark::bulkhead::BulkheadLayer::builder()
            .max_concurrent(self.bulkhead.max_concurrent)
            .build()
        {
            return Err(bad(&format!("bulkhead.{}", e.setting()), e.to_string()));
        }
        if let Err(e) = self.hedge.validate() {
            return Err(bad(&format!("hedge.{}", e.setting()), e.to_string()));
        }
        if let Some(limit) = &self.rate_limit {
            if let Err(e) = limit.validate() {
                return Err(bad(&format!("rate_limit.{}", e.setting()), e.to_string()));
            }
            if limit.mode != tower_bulwark::rate_limit::Mode::FailFast {
                return Err(bad(
                    "rate_limit.mode",
                    "must be \"fail_fast\": the read path's limiter answers at once (or after \
                     `max_wait`), it does not hold requests for as long as it takes",
                ));
            }
        }
        Ok(())
    }
}

/// The dotted key at byte `offset` of a TOML text: the last `[table]` header before it and
/// the key on its line.
fn key_at(text: &str, offset: usize) -> Option<String> {
    let before = text.get(..offset)?;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = text[line_start..].lines().next().unwrap_or("");
    let table = before[..line_start]
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('[') && l.ends_with(']'))
        .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim().to_string());
    let trimmed = line.trim();
    if trimmed.starts_with('[') {
        return Some(trimmed.trim_matches(|c| c == '[' || c == ']').to_string());
    }
    let key = trimmed.split('=').next()?.trim();
    if key.is_empty() {
        return table;
    }
    Some(match table {
        Some(t) => format!("{t}.{key}"),
        None => key.to_string(),
    })
}

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Run the demo.
    Run {
        /// Where the search service listens.
        listen: SocketAddr,
        /// The TOML file, if any.
        config: Option<PathBuf>,
        /// Answer the chaos controls even when `listen` is not a loopback address.
        allow_chaos: bool,
    },
    /// Print the usage.
    Help,
}

/// The usage text of `--help`.
pub const USAGE: &str = "\
book_search: a book-search service in front of three mock book stores, every tower-bulwark layer wired in

USAGE:
    cargo run --release --example book_search -- [OPTIONS]

OPTIONS:
    --listen ADDR    where the search service listens (default 127.0.0.1:9090; port 0 picks a free one)
    --config FILE    a TOML file overriding any setting (see the README's configuration table)
    --allow-chaos    answer the chaos controls (PUT /stores/{name}/fault) even when ADDR is not
                     loopback; without it they answer 403 there (anyone who can reach the port
                     could take the stores down)
    --help           print this
";

/// Parses the arguments after the program name.
pub fn parse_args<I: IntoIterator<Item = String>>(args: I) -> Result<Command, String> {
    let mut listen: SocketAddr = ([127, 0, 0, 1], 9090).into();
    let mut config = None;
    let mut allow_chaos = false;
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        match flag.as_str() {
            "--help" | "-h" => return Ok(Command::Help),
            "--allow-chaos" if inline.is_none() => allow_chaos = true,
            "--listen" => {
                let v = inline
                    .or_else(|| args.next())
                    .ok_or("--listen needs an address, e.g. 127.0.0.1:9090")?;
                listen = v.parse().map_err(|_| {
                    format!("--listen: {v:?} is not an address like 127.0.0.1:9090")
                })?;
            }
            "--config" => {
                let v = inline
                    .or_else(|| args.next())
                    .ok_or("--config needs a file")?;
                config = Some(PathBuf::from(v));
            }
            other => return Err(format!("unknown argument {other:?} (see --help)")),
        }
    }
    Ok(Command::Run {
        listen,
        config,
        allow_chaos,
    })
}
