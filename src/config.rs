//! One configuration file for a whole client stack (feature `serde`).
//!
//! Every layer's settings are plain data that deserialize with serde: durations in human form
//! (`"250ms"`, `"30s"`, `"5m"`), every key optional (a missing key takes the layer's
//! default), an unknown key refused. [`StackConfig`] puts them side by side, one table per
//! layer, each the layer's own configuration type (so no setting is spelled twice):
//!
//! | table | type | built into |
//! | --- | --- | --- |
//! | `[circuit_breaker]` | [`CircuitBreakerConfig`] | [`CircuitBreakerLayer`] |
//! | `[retry]` | [`RetryConfig`] | [`BackoffRetryLayer`] |
//! | `[failover]` | [`FailoverConfig`] | [`FailoverLayer`] |
//! | `[balance]` | [`BalanceConfig`] | [`BalanceLayer`] |
//! | `[fanout]` | [`FanOutConfig`] | [`FanOutLayer`] |
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
//! that does not match the targets given in code is refused when the set is built.
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

use serde::de::value::StringDeserializer;
use serde::de::{
    self, Deserialize, DeserializeOwned, DeserializeSeed, Deserializer, EnumAccess,
    IntoDeserializer, MapAccess, SeqAccess, Unexpected, VariantAccess, Visitor,
};
use std::error::Error as StdError;
use std::fmt;

#[cfg(feature = "balance")]
use bulwark_balance::{BalanceConfig, BalanceLayer};
#[cfg(feature = "circuit-breaker")]
use bulwark_circuit_breaker::{CircuitBreakerConfig, CircuitBreakerLayer};
#[cfg(feature = "failover")]
use bulwark_failover::{FailoverConfig, FailoverLayer};
#[cfg(feature = "fanout")]
use bulwark_fanout::{FanOutConfig, FanOutLayer, Policy};
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
    pub circuit_breaker: Option<CircuitBreakerConfig>,
    /// `[retry]`.
    #[cfg(feature = "retry")]
    pub retry: Option<RetryConfig>,
    /// `[failover]`.
    #[cfg(feature = "failover")]
    pub failover: Option<FailoverConfig>,
    /// `[balance]`.
    #[cfg(feature = "balance")]
    pub balance: Option<BalanceConfig>,
    /// `[fanout]`.
    #[cfg(feature = "fanout")]
    pub fanout: Option<FanOutConfig>,
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
        let value = Value::deserialize(deserializer)
            .map_err(|e| StackConfigError::new(String::new(), e.to_string(), None))?;
        StackConfig::from_value(value)
    }

    fn from_value(value: Value) -> Result<StackConfig, StackConfigError> {
        let Value::Map(tables) = value else {
            return Err(StackConfigError::new(
                String::new(),
                format!(
                    "expected a table of layer tables, found {}",
                    value.unexpected()
                ),
                None,
            ));
        };
        let mut stack = StackConfig::default();
        for (section, value) in tables {
            match section.as_str() {
                #[cfg(feature = "circuit-breaker")]
                "circuit_breaker" => stack.circuit_breaker = Some(table(&section, value)?),
                #[cfg(feature = "retry")]
                "retry" => stack.retry = Some(table(&section, value)?),
                #[cfg(feature = "failover")]
                "failover" => stack.failover = Some(table(&section, value)?),
                #[cfg(feature = "balance")]
                "balance" => stack.balance = Some(table(&section, value)?),
                #[cfg(feature = "fanout")]
                "fanout" => stack.fanout = Some(table(&section, value)?),
                _ => {
                    let message = format!(
                        "unknown layer table `{section}`, expected one of `{}` (a layer whose \
                         feature is off has none)",
                        SECTIONS.join("`, `")
                    );
                    return Err(StackConfigError::new(section, message, None));
                }
            }
        }
        stack.validate()?;
        Ok(stack)
    }

    /// Checks every table present as its layer's builder does; the first setting out of
    /// range is the error. [`from_deserializer`](Self::from_deserializer) has already done
    /// this; call it again after changing a table in code.
    pub fn validate(&self) -> Result<(), StackConfigError> {
        #[cfg(feature = "circuit-breaker")]
        if let Some(c) = &self.circuit_breaker {
            c.validate()
                .map_err(|e| StackConfigError::setting("circuit_breaker", e.setting(), e))?;
        }
        #[cfg(feature = "retry")]
        if let Some(c) = &self.retry {
            c.validate()
                .map_err(|e| StackConfigError::setting("retry", &e.setting(), e))?;
        }
        #[cfg(feature = "failover")]
        if let Some(c) = &self.failover {
            c.validate()
                .map_err(|e| StackConfigError::setting("failover", e.setting(), e))?;
        }
        #[cfg(feature = "balance")]
        if let Some(c) = &self.balance {
            c.validate()
                .map_err(|e| StackConfigError::setting("balance", e.setting(), e))?;
        }
        #[cfg(feature = "fanout")]
        if let Some(c) = &self.fanout {
            check_fanout(c)?;
        }
        Ok(())
    }
}

#[cfg(feature = "circuit-breaker")]
impl StackConfig {
    /// A [`CircuitBreakerLayer`] builder with `[circuit_breaker]`'s settings (the defaults
    /// without one), to add a classifier, a listener or a name per target.
    pub fn circuit_breaker_builder(&self) -> bulwark_circuit_breaker::Builder {
        bulwark_circuit_breaker::Builder::from_config(
            self.circuit_breaker.clone().unwrap_or_default(),
        )
    }

    /// The [`CircuitBreakerLayer`] of `[circuit_breaker]` (the defaults without one).
    pub fn circuit_breaker_layer(&self) -> Result<CircuitBreakerLayer, StackConfigError> {
        self.circuit_breaker_builder()
            .build()
            .map_err(|e| StackConfigError::setting("circuit_breaker", e.setting(), e))
    }
}

#[cfg(feature = "retry")]
impl StackConfig {
    /// A [`BackoffRetryLayer`] builder with `[retry]`'s settings (the defaults without one),
    /// to add a policy (`.http()`), a shared budget or a listener.
    pub fn retry_builder(&self) -> bulwark_retry::Builder {
        bulwark_retry::Builder::from_config(self.retry.clone().unwrap_or_default())
    }

    /// The [`BackoffRetryLayer`] of `[retry]` (the defaults without one), retrying every
    /// failure.
    pub fn retry_layer(&self) -> Result<BackoffRetryLayer, StackConfigError> {
        self.retry_builder()
            .build()
            .map_err(|e| StackConfigError::setting("retry", &e.setting(), e))
    }
}

#[cfg(feature = "failover")]
impl StackConfig {
    /// A [`FailoverLayer`] builder with `[failover]`'s settings (the defaults without one),
    /// to add a policy (`.http()`) or a listener.
    pub fn failover_builder(&self) -> bulwark_failover::Builder {
        bulwark_failover::Builder::from_config(self.failover.clone().unwrap_or_default())
    }

    /// The [`FailoverLayer`] of `[failover]` (the defaults without one).
    pub fn failover_layer(&self) -> Result<FailoverLayer, StackConfigError> {
        self.failover_builder()
            .build()
            .map_err(|e| StackConfigError::setting("failover", e.setting(), e))
    }
}

#[cfg(feature = "balance")]
impl StackConfig {
    /// A [`BalanceLayer`] builder with `[balance]`'s settings (the defaults without one), to
    /// add a classifier, `Attempts` (`.http()`) or a listener.
    pub fn balance_builder(&self) -> bulwark_balance::Builder {
        bulwark_balance::Builder::from_config(self.balance.clone().unwrap_or_default())
    }

    /// The [`BalanceLayer`] of `[balance]` (the defaults without one).
    pub fn balance_layer(&self) -> Result<BalanceLayer, StackConfigError> {
        self.balance_builder()
            .build()
            .map_err(|e| StackConfigError::setting("balance", e.setting(), e))
    }
}

#[cfg(feature = "fanout")]
impl StackConfig {
    /// A [`FanOutLayer`] builder with `[fanout]`'s settings (the defaults without one), to
    /// add a classifier, a merge or a listener.
    pub fn fanout_builder(&self) -> bulwark_fanout::Builder {
        bulwark_fanout::Builder::from_config(self.fanout.clone().unwrap_or_default())
    }

    /// The [`FanOutLayer`] of `[fanout]` (the defaults without one), its settings checked as
    /// far as they can be without the targets.
    pub fn fanout_layer(&self) -> Result<FanOutLayer, StackConfigError> {
        let builder = self.fanout_builder();
        if let Some(c) = &self.fanout {
            check_fanout(c)?;
        }
        Ok(builder.build())
    }
}

/// What a fan-out's settings can be checked for without its targets: a quorum of at least
/// one (and within `target_names`, if given) and non-zero deadlines.
#[cfg(feature = "fanout")]
fn check_fanout(c: &FanOutConfig) -> Result<(), StackConfigError> {
    if c.policy == Policy::Quorum(0) {
        return Err(StackConfigError::new(
            String::from("fanout.policy"),
            String::from("fan-out `policy` quorum must be at least 1"),
            None,
        ));
    }
    // With no names the number of targets is unknown: as many as needed.
    let targets = match c.target_names.len() {
        0 => usize::MAX,
        n => n,
    };
    c.validate_for(targets)
        .map_err(|e| StackConfigError::setting("fanout", e.setting(), e))
}

/// Deserializes one layer's table, naming the key of any error.
fn table<T: DeserializeOwned>(section: &str, value: Value) -> Result<T, StackConfigError> {
    T::deserialize(ValueDeserializer(value)).map_err(|e| {
        let mut key = String::from(section);
        for segment in &e.path {
            match segment {
                Segment::Key(k) => {
                    key.push('.');
                    key.push_str(k);
                }
                Segment::Index(i) => key.push_str(&format!("[{i}]")),
            }
        }
        StackConfigError::new(key, e.message, None)
    })
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
        let value = Value::deserialize(deserializer)?;
        StackConfig::from_value(value).map_err(de::Error::custom)
    }
}

// -------------------------------------------------------------------------------------------
// The file, read once into a tree of values, then each table deserialized from it by a
// deserializer that remembers where it is, so every error names its key (the formats' own
// errors do not, or only by position).
// -------------------------------------------------------------------------------------------

/// A value of a self-describing format.
#[derive(Debug, Clone, PartialEq)]
enum Value {
    Unit,
    Bool(bool),
    I64(i64),
    U64(u64),
    F64(f64),
    Str(String),
    Seq(Vec<Value>),
    Map(Vec<(String, Value)>),
}

impl Value {
    fn unexpected(&self) -> Unexpected<'_> {
        match self {
            Value::Unit => Unexpected::Unit,
            Value::Bool(b) => Unexpected::Bool(*b),
            Value::I64(i) => Unexpected::Signed(*i),
            Value::U64(u) => Unexpected::Unsigned(*u),
            Value::F64(f) => Unexpected::Float(*f),
            Value::Str(s) => Unexpected::Str(s),
            Value::Seq(_) => Unexpected::Seq,
            Value::Map(_) => Unexpected::Map,
        }
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a configuration value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::I64(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::U64(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::F64(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::Str(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::Str(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Unit)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Unit)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        Value::deserialize(d)
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        Value::deserialize(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Seq(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut entries = Vec::new();
        while let Some((key, value)) = map.next_entry::<String, Value>()? {
            entries.push((key, value));
        }
        Ok(Value::Map(entries))
    }
}

/// A deserialization error and where it happened, innermost key last.
#[derive(Debug)]
struct PathError {
    path: Vec<Segment>,
    message: String,
}

#[derive(Debug)]
enum Segment {
    Key(String),
    Index(usize),
}

impl PathError {
    fn at(mut self, segment: Segment) -> Self {
        self.path.insert(0, segment);
        self
    }
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl StdError for PathError {}

impl de::Error for PathError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        PathError {
            path: Vec::new(),
            message: msg.to_string(),
        }
    }
}

struct ValueDeserializer(Value);

fn key_deserializer(key: String) -> StringDeserializer<PathError> {
    key.into_deserializer()
}

impl<'de> Deserializer<'de> for ValueDeserializer {
    type Error = PathError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, PathError> {
        match self.0 {
            Value::Unit => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(b),
            Value::I64(i) => visitor.visit_i64(i),
            Value::U64(u) => visitor.visit_u64(u),
            Value::F64(f) => visitor.visit_f64(f),
            Value::Str(s) => visitor.visit_string(s),
            Value::Seq(items) => visitor.visit_seq(SeqDeserializer {
                items: items.into_iter().enumerate(),
            }),
            Value::Map(entries) => visitor.visit_map(MapDeserializer {
                entries: entries.into_iter(),
                pending: None,
            }),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, PathError> {
        match self.0 {
            Value::Unit => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, PathError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, PathError> {
        match self.0 {
            // A unit variant: `mode = "readiness"`.
            Value::Str(s) => visitor.visit_enum(key_deserializer(s)),
            // A variant with data: `policy = { quorum = 2 }`.
            Value::Map(mut entries) if entries.len() == 1 => {
                let (variant, value) = entries.remove(0);
                visitor.visit_enum(EnumDeserializer { variant, value })
            }
            other => Err(de::Error::invalid_type(other.unexpected(), &visitor)),
        }
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        unit unit_struct seq tuple tuple_struct map struct identifier ignored_any
    }
}

struct SeqDeserializer {
    items: std::iter::Enumerate<std::vec::IntoIter<Value>>,
}

impl<'de> SeqAccess<'de> for SeqDeserializer {
    type Error = PathError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, PathError> {
        match self.items.next() {
            Some((i, value)) => seed
                .deserialize(ValueDeserializer(value))
                .map(Some)
                .map_err(|e| e.at(Segment::Index(i))),
            None => Ok(None),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

struct MapDeserializer {
    entries: std::vec::IntoIter<(String, Value)>,
    pending: Option<(String, Value)>,
}

impl<'de> MapAccess<'de> for MapDeserializer {
    type Error = PathError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, PathError> {
        let Some((key, value)) = self.entries.next() else {
            return Ok(None);
        };
        // An unknown key fails here: the error names it.
        let k = seed
            .deserialize(key_deserializer(key.clone()))
            .map_err(|e| e.at(Segment::Key(key.clone())))?;
        self.pending = Some((key, value));
        Ok(Some(k))
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, PathError> {
        let Some((key, value)) = self.pending.take() else {
            return Err(de::Error::custom("a value was asked for before its key"));
        };
        seed.deserialize(ValueDeserializer(value))
            .map_err(|e| e.at(Segment::Key(key)))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len())
    }
}

struct EnumDeserializer {
    variant: String,
    value: Value,
}

impl<'de> EnumAccess<'de> for EnumDeserializer {
    type Error = PathError;
    type Variant = VariantDeserializer;

    fn variant_seed<V: DeserializeSeed<'de>>(
        self,
        seed: V,
    ) -> Result<(V::Value, VariantDeserializer), PathError> {
        let v = seed
            .deserialize(key_deserializer(self.variant.clone()))
            .map_err(|e| e.at(Segment::Key(self.variant.clone())))?;
        Ok((
            v,
            VariantDeserializer {
                variant: self.variant,
                value: self.value,
            },
        ))
    }
}

struct VariantDeserializer {
    variant: String,
    value: Value,
}

impl<'de> VariantAccess<'de> for VariantDeserializer {
    type Error = PathError;

    fn unit_variant(self) -> Result<(), PathError> {
        match self.value {
            Value::Unit => Ok(()),
            other => Err(de::Error::invalid_type(other.unexpected(), &"a plain name")),
        }
        .map_err(|e: PathError| e.at(Segment::Key(self.variant)))
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, PathError> {
        seed.deserialize(ValueDeserializer(self.value))
            .map_err(|e| e.at(Segment::Key(self.variant)))
    }

    fn tuple_variant<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, PathError> {
        ValueDeserializer(self.value)
            .deserialize_any(visitor)
            .map_err(|e| e.at(Segment::Key(self.variant)))
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, PathError> {
        ValueDeserializer(self.value)
            .deserialize_any(visitor)
            .map_err(|e| e.at(Segment::Key(self.variant)))
    }
}
