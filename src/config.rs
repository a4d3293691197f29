//! One configuration file for a whole client stack (feature `serde`).
//!
//! Every layer's settings are plain data that deserialize with serde: durations in human form
//! (`"250ms"`, `"30s"`, `"5m"`), every key optional (a missing key takes the layer's
//! default) except inside an optional rule, which is given whole (`ejection.failure_rate`,
//! `circuit_breaker.slow_calls`, a bulkhead's `queue`: every key of it), an unknown key
//! refused. [`StackConfig`] puts them side by side, one table per
//! layer, each the layer's own configuration type (so no setting is spelled twice):
//!
//! | table | type | built into |
//! | --- | --- | --- |
//! | `[circuit_breaker]` | [`CircuitBreakerConfig`] | [`CircuitBreakerLayer`] |
//! | `[retry]` | [`RetryConfig`] | [`BackoffRetryLayer`] |
//! | `[failover]` | [`FailoverConfig`] | [`FailoverLayer`] |
//! | `[balance]` | [`BalanceConfig`] | [`BalanceLayer`] |
//! | `[fanout]` | [`FanOutConfig`] | [`FanOutLayer`] |
//! | `[rate_limit]` | [`RateLimitConfig`] | [`RateLimitLayer`] |
//! | `[hedge]` | [`HedgeConfig`] | [`HedgeLayer`] |
//! | `[bulkhead]` | [`BulkheadConfig`] | [`BulkheadLayer`] |
//! | `[adaptive_limit]` | [`AdaptiveConfig`] | [`AdaptiveLimitLayer`] |
//!
//! The cap on resends in flight shared by the retry and hedging layers (Envoy's
//! `max_retries`) is `[retry] max_concurrent_retries`: the retry layer built from the file
//! makes it ([`BackoffRetryLayer::concurrency_cap`]), and the hedging layer takes a clone
//! (`stack.hedge_builder().concurrency_cap(cap)`), so both count in one place.
//!
//! Reading a file checks it whole: a syntax error, an unknown key, a value of the wrong type
//! and a value out of range (validated by the layer itself, exactly as its builder does) are
//! all a [`StackConfigError`] naming the table and the key, `retry.max_attempts`. The code
//! decides which layers the stack has and in which order; the file decides their settings. A
//! missing table gives that layer's defaults, as an empty one would.
//!
//! [`StackConfig`] works with any self-describing serde format. It does not depend on a TOML
//! parser: hand it yours.
//!
//! ```
//! # #[cfg(all(feature = "circuit-breaker", feature = "retry"))]
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), tower_bulwark::core::BoxError> {
//! use tower::{service_fn, Service, ServiceBuilder, ServiceExt};
//! use tower_bulwark::config::StackConfig;
//! use tower_bulwark::ServiceBuilderExt;
//!
//! // In an application: std::fs::read_to_string("stack.toml")?
//! let text = include_str!("../examples/stack.toml");
//! let stack = StackConfig::from_deserializer(toml::Deserializer::parse(text)?)?;
//! // (or `let stack: StackConfig = toml::from_str(text)?;`, with toml's own error type)
//!
//! let mut svc = ServiceBuilder::new()
//!     .backoff_retry(stack.retry_layer()?)
//!     .circuit_breaker(stack.circuit_breaker_layer()?)
//!     .service(service_fn(|n: u32| async move { Ok::<_, std::io::Error>(n + 1) }));
//! assert_eq!(svc.ready().await?.call(41).await?, 42);
//!
//! // A layer that needs more than its settings (a classifier, a policy, a listener) starts
//! // from the file's settings through its builder:
//! let breaker = stack.circuit_breaker_builder().readiness_mode().build()?;
//! assert_eq!(breaker.config().name, "inventory");
//!
//! // Every mistake names its table and key.
//! let err = StackConfig::from_deserializer(toml::Deserializer::parse(
//!     "[retry]\nmax_attempts = 0\n",
//! )?)
//! .unwrap_err();
//! assert_eq!(err.key(), "retry.max_attempts");
//! assert_eq!(err.section(), Some("retry"));
//! # Ok(())
//! # }
//! # #[cfg(not(all(feature = "circuit-breaker", feature = "retry")))]
//! # fn main() {}
//! ```
//!
//! The set layers' tables (`[failover]`, `[balance]`, `[fanout]`) are checked for everything
//! that does not depend on the list of targets; a list of `target_names` (`endpoint_names`)
//! that does not match the targets given in code is refused when the set is built with the
//! layer's `build` (as a `Layer`, which cannot fail, the targets are named by index instead,
//! with a `tracing` warning).
//!
//! # The full example
//!
//! `examples/stack.toml`, every key of every layer with its default and its meaning (a test
//! reads it, builds every layer from it, and checks that it names every key each layer
//! accepts):
//!
//! ```toml
#![doc = include_str!("../examples/stack.toml")]
//! ```

use serde::de::{self, Deserialize, DeserializeSeed, Deserializer, MapAccess, Visitor};
use std::error::Error as StdError;
use std::fmt;
use std::marker::PhantomData;

#[cfg(feature = "balance")]
use bulwark_balance::{BalanceConfig, BalanceLayer};
#[cfg(feature = "bulkhead")]
use bulwark_bulkhead::{AdaptiveConfig, AdaptiveLimitLayer, BulkheadConfig, BulkheadLayer};
#[cfg(feature = "circuit-breaker")]
use bulwark_circuit_breaker::{CircuitBreakerConfig, CircuitBreakerLayer};
#[cfg(feature = "failover")]
use bulwark_failover::{FailoverConfig, FailoverLayer};
#[cfg(feature = "fanout")]
use bulwark_fanout::{FanOutConfig, FanOutLayer};
#[cfg(feature = "hedge")]
use bulwark_hedge::{HedgeConfig, HedgeLayer};
#[cfg(feature = "rate-limit")]
use bulwark_rate_limit::{RateLimitConfig, RateLimitLayer};
#[cfg(feature = "retry")]
use bulwark_retry::{BackoffRetryLayer, RetryConfig};

/// The tables a stack file may have (those whose layer's feature is on).
const SECTIONS: &[&str] = &[
    #[cfg(feature = "circuit-breaker")]
    "circuit_breaker",
    #[cfg(feature = "retry")]
    "retry",
    #[cfg(feature = "failover")]
    "failover",
    #[cfg(feature = "balance")]
    "balance",
    #[cfg(feature = "fanout")]
    "fanout",
    #[cfg(feature = "rate-limit")]
    "rate_limit",
    #[cfg(feature = "hedge")]
    "hedge",
    #[cfg(feature = "bulkhead")]
    "bulkhead",
    #[cfg(feature = "bulkhead")]
    "adaptive_limit",
];

/// The settings of a whole client stack: one optional table per layer, each the layer's own
/// configuration type. See the [module documentation](self) for the file and an example.
///
/// Read one with [`from_deserializer`](Self::from_deserializer) (a typed
/// [`StackConfigError`]) or through `Deserialize` (`toml::from_str::<StackConfig>`, the error
/// then being the format's, with the same message); either way every table present has been
/// validated. Get the layers with the `*_layer` methods, or the layers' builders, seeded with
/// the file's settings, with the `*_builder` methods.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct StackConfig {
    /// `[circuit_breaker]`.
    #[cfg(feature = "circuit-breaker")]
    #[cfg_attr(docsrs, doc(cfg(feature = "circuit-breaker")))]
    pub circuit_breaker: Option<CircuitBreakerConfig>,
    /// `[retry]`.
    #[cfg(feature = "retry")]
    #[cfg_attr(docsrs, doc(cfg(feature = "retry")))]
    pub retry: Option<RetryConfig>,
    /// `[failover]`.
    #[cfg(feature = "failover")]
    #[cfg_attr(docsrs, doc(cfg(feature = "failover")))]
    pub failover: Option<FailoverConfig>,
    /// `[balance]`.
    #[cfg(feature = "balance")]
    #[cfg_attr(docsrs, doc(cfg(feature = "balance")))]
    pub balance: Option<BalanceConfig>,
    /// `[fanout]`.
    #[cfg(feature = "fanout")]
    #[cfg_attr(docsrs, doc(cfg(feature = "fanout")))]
    pub fanout: Option<FanOutConfig>,
    /// `[rate_limit]`.
    #[cfg(feature = "rate-limit")]
    #[cfg_attr(docsrs, doc(cfg(feature = "rate-limit")))]
    pub rate_limit: Option<RateLimitConfig>,
    /// `[hedge]`.
    #[cfg(feature = "hedge")]
    #[cfg_attr(docsrs, doc(cfg(feature = "hedge")))]
    pub hedge: Option<HedgeConfig>,
    /// `[bulkhead]`.
    #[cfg(feature = "bulkhead")]
    #[cfg_attr(docsrs, doc(cfg(feature = "bulkhead")))]
    pub bulkhead: Option<BulkheadConfig>,
    /// `[adaptive_limit]`.
    #[cfg(feature = "bulkhead")]
    #[cfg_attr(docsrs, doc(cfg(feature = "bulkhead")))]
    pub adaptive_limit: Option<AdaptiveConfig>,
}

impl StackConfig {
    /// Reads and validates a stack from any self-describing serde format: for TOML,
    /// `StackConfig::from_deserializer(toml::Deserializer::parse(&text)?)`.
    ///
    /// # Errors
    ///
    /// The first problem found, naming its table and key: an unknown table or key, a value of
    /// the wrong type, or a value the layer refuses.
    pub fn from_deserializer<'de, D>(deserializer: D) -> Result<StackConfig, StackConfigError>
    where
        D: Deserializer<'de>,
    {
        let mut failure = None;
        let read = deserializer.deserialize_map(Tables {
            failure: &mut failure,
        });
        let stack = match (read, failure) {
            (_, Some(e)) => return Err(e),
            (Err(e), None) => {
                return Err(StackConfigError::new(String::new(), e.to_string(), None))
            }
            (Ok(stack), None) => stack,
        };
        stack.validate()?;
        Ok(stack)
    }

    /// Checks every table present as its layer's builder does; the first setting out of
    /// range is the error. [`from_deserializer`](Self::from_deserializer) has already done
    /// this; call it again after changing a table in code.
    pub fn validate(&self) -> Result<(), StackConfigError> {
        let checks = [
            #[cfg(feature = "circuit-breaker")]
            (
                "circuit_breaker",
                self.circuit_breaker.as_ref().map(|c| c.validate()),
            ),
            #[cfg(feature = "retry")]
            ("retry", self.retry.as_ref().map(|c| c.validate())),
            #[cfg(feature = "failover")]
            ("failover", self.failover.as_ref().map(|c| c.validate())),
            #[cfg(feature = "balance")]
            ("balance", self.balance.as_ref().map(|c| c.validate())),
            #[cfg(feature = "fanout")]
            ("fanout", self.fanout.as_ref().map(|c| c.validate())),
            #[cfg(feature = "rate-limit")]
            ("rate_limit", self.rate_limit.as_ref().map(|c| c.validate())),
            #[cfg(feature = "hedge")]
            ("hedge", self.hedge.as_ref().map(|c| c.validate())),
            #[cfg(feature = "bulkhead")]
            ("bulkhead", self.bulkhead.as_ref().map(|c| c.validate())),
            #[cfg(feature = "bulkhead")]
            (
                "adaptive_limit",
                self.adaptive_limit.as_ref().map(|c| c.validate()),
            ),
        ];
        for (section, check) in checks {
            if let Some(Err(e)) = check {
                return Err(StackConfigError::setting(section, e.setting(), e));
            }
        }
        Ok(())
    }
}

/// Each layer's `*_builder` (its builder, seeded with its table) and `*_layer` (that builder
/// built, an error naming the table's key) methods.
macro_rules! table_methods {
    ($(
        #[cfg($($cfg:tt)*)]
        $table:ident in $krate:ident => $layer_type:ident
        $(#[$builder_doc:meta])* fn $builder:ident;
        $(#[$layer_doc:meta])* fn $layer:ident;
    )*) => {$(
        #[cfg($($cfg)*)]
        impl StackConfig {
            $(#[$builder_doc])*
            pub fn $builder(&self) -> $krate::Builder {
                $krate::Builder::from_config(self.$table.clone().unwrap_or_default())
            }

            $(#[$layer_doc])*
            pub fn $layer(&self) -> Result<$layer_type, StackConfigError> {
                self.$builder().build().map_err(|e| {
                    StackConfigError::setting(stringify!($table), e.setting(), e)
                })
            }
        }
    )*};
}

table_methods! {
    #[cfg(feature = "circuit-breaker")]
    circuit_breaker in bulwark_circuit_breaker => CircuitBreakerLayer
    /// A [`CircuitBreakerLayer`] builder with `[circuit_breaker]`'s settings (the defaults
    /// without one), to add a classifier, a listener or a name per target.
    fn circuit_breaker_builder;
    /// The [`CircuitBreakerLayer`] of `[circuit_breaker]` (the defaults without one).
    fn circuit_breaker_layer;

    #[cfg(feature = "retry")]
    retry in bulwark_retry => BackoffRetryLayer
    /// A [`BackoffRetryLayer`] builder with `[retry]`'s settings (the defaults without one),
    /// to add a policy (`.http()`), a shared budget or a listener.
    fn retry_builder;
    /// The [`BackoffRetryLayer`] of `[retry]` (the defaults without one), retrying every
    /// failure.
    fn retry_layer;

    #[cfg(feature = "failover")]
    failover in bulwark_failover => FailoverLayer
    /// A [`FailoverLayer`] builder with `[failover]`'s settings (the defaults without one),
    /// to add a policy (`.http()`) or a listener.
    fn failover_builder;
    /// The [`FailoverLayer`] of `[failover]` (the defaults without one).
    fn failover_layer;

    #[cfg(feature = "balance")]
    balance in bulwark_balance => BalanceLayer
    /// A [`BalanceLayer`] builder with `[balance]`'s settings (the defaults without one), to
    /// add a classifier, `Attempts` (`.http()`) or a listener.
    fn balance_builder;
    /// The [`BalanceLayer`] of `[balance]` (the defaults without one).
    fn balance_layer;

    #[cfg(feature = "fanout")]
    fanout in bulwark_fanout => FanOutLayer
    /// A [`FanOutLayer`] builder with `[fanout]`'s settings (the defaults without one), to
    /// add a classifier, a merge or a listener.
    fn fanout_builder;
    /// The [`FanOutLayer`] of `[fanout]` (the defaults without one), its settings checked as
    /// far as they can be without the targets.
    fn fanout_layer;

    #[cfg(feature = "rate-limit")]
    rate_limit in bulwark_rate_limit => RateLimitLayer
    /// A [`RateLimitLayer`] builder with `[rate_limit]`'s settings (the defaults without
    /// one), to add a listener.
    fn rate_limit_builder;
    /// The [`RateLimitLayer`] of `[rate_limit]` (the defaults without one): each call builds
    /// a new limiter, with a bucket of its own; clone the layer to share one.
    fn rate_limit_layer;

    #[cfg(feature = "hedge")]
    hedge in bulwark_hedge => HedgeLayer
    /// A [`HedgeLayer`] builder with `[hedge]`'s settings (the defaults without one), to add
    /// a classifier, what may be hedged (`.http()`), the stack's resend cap
    /// (`.concurrency_cap(..)`: the retry layer's, from `[retry] max_concurrent_retries`, is
    /// `BackoffRetryLayer::concurrency_cap`) or a listener.
    fn hedge_builder;
    /// The [`HedgeLayer`] of `[hedge]` (the defaults without one), hedging every request.
    fn hedge_layer;

    #[cfg(feature = "bulkhead")]
    bulkhead in bulwark_bulkhead => BulkheadLayer
    /// A [`BulkheadLayer`] builder with `[bulkhead]`'s settings (the defaults without one),
    /// to add a listener or a name per target.
    fn bulkhead_builder;
    /// The [`BulkheadLayer`] of `[bulkhead]` (the defaults without one): each service it
    /// wraps gets a bulkhead of its own.
    fn bulkhead_layer;
}

#[cfg(feature = "bulkhead")]
#[cfg_attr(docsrs, doc(cfg(feature = "bulkhead")))]
impl StackConfig {
    /// An [`AdaptiveLimitLayer`] builder with `[adaptive_limit]`'s settings (the defaults
    /// without one), to add a classifier, a listener or a name per target.
    pub fn adaptive_limit_builder(&self) -> bulwark_bulkhead::AdaptiveBuilder {
        bulwark_bulkhead::AdaptiveBuilder::from_config(
            self.adaptive_limit.clone().unwrap_or_default(),
        )
    }

    /// The [`AdaptiveLimitLayer`] of `[adaptive_limit]` (the defaults without one): each
    /// service it wraps gets a limit and a controller of its own.
    pub fn adaptive_limit_layer(&self) -> Result<AdaptiveLimitLayer, StackConfigError> {
        self.adaptive_limit_builder()
            .build()
            .map_err(|e| StackConfigError::setting("adaptive_limit", e.setting(), e))
    }
}

/// Why a stack's configuration was refused: the table and key at fault, and what is wrong.
///
/// ```
/// # #[cfg(feature = "circuit-breaker")]
/// # fn main() -> Result<(), toml::de::Error> {
/// use tower_bulwark::config::StackConfig;
///
/// let text = "[circuit_breaker]\nfailure_rat = 0.5\n";
/// let err = StackConfig::from_deserializer(toml::Deserializer::parse(text)?).unwrap_err();
/// assert_eq!(err.key(), "circuit_breaker.failure_rat");
/// assert!(err.to_string().starts_with("circuit_breaker.failure_rat: unknown field"));
/// # Ok(())
/// # }
/// # #[cfg(not(feature = "circuit-breaker"))]
/// # fn main() {}
/// ```
#[derive(Debug)]
pub struct StackConfigError {
    key: String,
    message: String,
    source: Option<Box<dyn StdError + Send + Sync>>,
}

impl StackConfigError {
    fn new(key: String, message: String, source: Option<Box<dyn StdError + Send + Sync>>) -> Self {
        StackConfigError {
            key,
            message,
            source,
        }
    }

    /// A layer refused `setting` of table `section`.
    fn setting<E>(section: &str, setting: &str, error: E) -> Self
    where
        E: StdError + Send + Sync + 'static,
    {
        StackConfigError::new(
            format!("{section}.{setting}"),
            error.to_string(),
            Some(Box::new(error)),
        )
    }

    /// The dotted key at fault, table first: `retry.max_attempts`, `balance.ejection.base`,
    /// `failover.target_names[1]`; just the table for a table that is wrong as a whole; empty
    /// when the text could not be read at all.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The table at fault (`retry`), if the problem is in one.
    pub fn section(&self) -> Option<&str> {
        let table = self.key.split(['.', '[']).next().unwrap_or("");
        (!table.is_empty()).then_some(table)
    }

    /// What is wrong, without the key.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for StackConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.key, self.message)
        }
    }
}

impl StdError for StackConfigError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn StdError + 'static))
    }
}

/// Reads and validates a stack, as [`StackConfig::from_deserializer`] does; an error is the
/// format's, carrying the [`StackConfigError`]'s message (`retry.max_attempts: ...`).
impl<'de> Deserialize<'de> for StackConfig {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut failure = None;
        let read = deserializer.deserialize_map(Tables {
            failure: &mut failure,
        });
        let stack = read.map_err(|e| failure.map_or(e, de::Error::custom))?;
        stack.validate().map_err(de::Error::custom)?;
        Ok(stack)
    }
}

/// Reads the file's tables, each into its layer's configuration type through
/// `serde_path_to_error`, so that an error names its key (the formats' own errors do not, or
/// only by position). The first error, with its key, is left in `failure`.
struct Tables<'a> {
    failure: &'a mut Option<StackConfigError>,
}

impl<'de> Visitor<'de> for Tables<'_> {
    type Value = StackConfig;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a table of layer tables")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<StackConfig, A::Error> {
        let failure = self.failure;
        let mut stack = StackConfig::default();
        while let Some(section) = map.next_key::<String>()? {
            let table = Table {
                section: &section,
                failure: &mut *failure,
                of: PhantomData,
            };
            match section.as_str() {
                #[cfg(feature = "circuit-breaker")]
                "circuit_breaker" => stack.circuit_breaker = Some(map.next_value_seed(table.of())?),
                #[cfg(feature = "retry")]
                "retry" => stack.retry = Some(map.next_value_seed(table.of())?),
                #[cfg(feature = "failover")]
                "failover" => stack.failover = Some(map.next_value_seed(table.of())?),
                #[cfg(feature = "balance")]
                "balance" => stack.balance = Some(map.next_value_seed(table.of())?),
                #[cfg(feature = "fanout")]
                "fanout" => stack.fanout = Some(map.next_value_seed(table.of())?),
                #[cfg(feature = "rate-limit")]
                "rate_limit" => stack.rate_limit = Some(map.next_value_seed(table.of())?),
                #[cfg(feature = "hedge")]
                "hedge" => stack.hedge = Some(map.next_value_seed(table.of())?),
                #[cfg(feature = "bulkhead")]
                "bulkhead" => stack.bulkhead = Some(map.next_value_seed(table.of())?),
                #[cfg(feature = "bulkhead")]
                "adaptive_limit" => stack.adaptive_limit = Some(map.next_value_seed(table.of())?),
                _ => {
                    let message = format!(
                        "unknown layer table `{section}`, expected one of `{}` (a layer whose \
                         feature is off has none)",
                        SECTIONS.join("`, `")
                    );
                    let error = de::Error::custom(&message);
                    *failure = Some(StackConfigError::new(section, message, None));
                    return Err(error);
                }
            }
        }
        Ok(stack)
    }
}

/// One layer's table, deserialized as `T`; an error is left in `failure` with its key.
struct Table<'a, T = ()> {
    section: &'a str,
    failure: &'a mut Option<StackConfigError>,
    of: PhantomData<fn() -> T>,
}

impl<'a> Table<'a> {
    fn of<T>(self) -> Table<'a, T> {
        Table {
            section: self.section,
            failure: self.failure,
            of: PhantomData,
        }
    }
}

impl<'de, T: Deserialize<'de>> DeserializeSeed<'de> for Table<'_, T> {
    type Value = T;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<T, D::Error> {
        serde_path_to_error::deserialize(deserializer).map_err(|e| {
            let mut key = String::from(self.section);
            // `.` for the table itself; `[1]` starts an index, anything else a key.
            let path = e.path().to_string();
            if path != "." {
                if !path.starts_with('[') {
                    key.push('.');
                }
                key.push_str(&path);
            }
            let error = e.into_inner();
            *self.failure = Some(StackConfigError::new(key, error.to_string(), None));
            error
        })
    }
}
