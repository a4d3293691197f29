//! Configuration: plain data, validated once when the layer is built.

use bulwark_core::config;
use std::time::Duration;

pub use bulwark_core::ConfigError;

/// The largest limit on calls in flight (a fixed `max_concurrent`, an adaptive `max_limit`).
pub const MAX_LIMIT: u32 = 1_000_000;
/// The largest queue.
pub const MAX_QUEUE: u32 = 100_000;

/// The settings of a fixed bulkhead, with the defaults below. Build one with
/// [`BulkheadLayer::builder`](crate::BulkheadLayer::builder), or deserialize it (feature
/// `serde`) and pass it to [`Builder::from_config`](crate::Builder::from_config).
///
/// | setting | default | why |
/// | --- | --- | --- |
/// | `max_concurrent` | 100 | a bound you would only hit when the backend is in trouble; set it from the backend's real capacity (its worker pool, its connection limit) |
/// | `queue` | none | a caller that cannot be served now is told so at once (fail fast), rather than waiting behind others |
/// | `mode` | fail fast | a caller waiting on a response wants an error now |
///
/// ```
/// use bulwark_bulkhead::{BulkheadConfig, Mode};
///
/// let config = BulkheadConfig::default();
/// assert_eq!(config.max_concurrent, 100);
/// assert_eq!(config.queue, None);
/// assert_eq!(config.mode, Mode::FailFast);
/// config.validate().unwrap();
/// ```
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
#[non_exhaustive]
pub struct BulkheadConfig {
    /// The name reported in events, logs, metric labels and errors.
    pub name: String,
    /// At most this many calls in flight (1..=1,000,000).
    pub max_concurrent: u32,
    /// Where callers wait for a permit, if anywhere (fail-fast mode only).
    pub queue: Option<Queue>,
    /// What `poll_ready` and `call` do when every permit is taken.
    pub mode: Mode,
}

impl Default for BulkheadConfig {
    fn default() -> Self {
        BulkheadConfig {
            name: String::from("bulkhead"),
            max_concurrent: 100,
            queue: None,
            mode: Mode::FailFast,
        }
    }
}

/// A bounded FIFO queue of callers waiting for a permit: a freed permit goes to the one that
/// has waited longest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(deny_unknown_fields))]
pub struct Queue {
    /// At most this many callers wait (1..=100,000); one more is refused at once.
    pub capacity: u32,
    /// A caller waits at most this long (at most a day), then is refused.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub timeout: Duration,
}

/// What the bulkhead does when every permit is taken: in fail-fast mode `poll_ready` is ready
/// at once (or once the queue wait ends) and `call` fails at once with [`Full`](crate::Full);
/// in readiness mode `poll_ready` stays `Pending` until a permit frees up and says why to the
/// layer asking ([`Hint::Full`](bulwark_core::hint::Hint::Full)), with no queue (the layer
/// above does the waiting). A caller turned away is only woken when a permit frees up, never
/// handed one, so a balancer that skipped this endpoint holds none of its permits; a permit
/// that `poll_ready` did take stays with that service clone until its call or its drop (as
/// with tower's `ConcurrencyLimit`).
pub use bulwark_core::Mode;

/// The settings of an adaptive concurrency limit, with the defaults below. Build one with
/// [`AdaptiveLimitLayer::builder`](crate::AdaptiveLimitLayer::builder), or deserialize it
/// (feature `serde`) and pass it to
/// [`AdaptiveBuilder::from_config`](crate::AdaptiveBuilder::from_config).
///
/// | setting | default | why |
/// | --- | --- | --- |
/// | `initial_limit` | 20 | a start that serves a modest load; the controller finds the real value within seconds (the gradient controller's first window is held at `min_limit`, to learn the latency without load, as Envoy's) |
/// | `min_limit` | 1 | never shed everything: a backend is always sent something, so its recovery is seen |
/// | `max_limit` | 1000 | a ceiling no healthy backend of a client should need |
/// | `window` | 100 ms | short enough to react within a second, long enough to hold a few samples at modest traffic |
/// | `algorithm` | gradient | it needs no latency threshold from you |
/// | `queue` | none | over the limit, shed at once |
/// | `mode` | fail fast | as for a fixed bulkhead |
///
/// ```
/// use bulwark_bulkhead::{AdaptiveConfig, Algorithm};
///
/// let config = AdaptiveConfig::default();
/// assert_eq!((config.min_limit, config.initial_limit, config.max_limit), (1, 20, 1000));
/// assert!(matches!(config.algorithm, Algorithm::Gradient(_)));
/// config.validate().unwrap();
/// ```
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
#[non_exhaustive]
pub struct AdaptiveConfig {
    /// The name reported in events, logs, metric labels and errors.
    pub name: String,
    /// The starting limit (between `min_limit` and `max_limit`): from the first call with
    /// AIMD; with the gradient controller, once its first window, held at `min_limit` to
    /// measure the latency without load, has closed.
    pub initial_limit: u32,
    /// The limit never falls below this (at least 1).
    pub min_limit: u32,
    /// The limit never rises above this (at most 1,000,000).
    pub max_limit: u32,
    /// Samples are gathered over a window of this length (and at least
    /// [`MIN_SAMPLES`](crate::MIN_SAMPLES) of them) before the limit moves.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub window: Duration,
    /// How the limit moves.
    pub algorithm: Algorithm,
    /// Where callers over the limit wait briefly, if anywhere (fail-fast mode only).
    pub queue: Option<Queue>,
    /// What `poll_ready` and `call` do when every permit is taken.
    pub mode: Mode,
}

impl Default for AdaptiveConfig {
    fn default() -> Self {
        AdaptiveConfig {
            name: String::from("adaptive"),
            initial_limit: 20,
            min_limit: 1,
            max_limit: 1000,
            window: Duration::from_millis(100),
            algorithm: Algorithm::Gradient(Gradient::default()),
            queue: None,
            mode: Mode::FailFast,
        }
    }
}

/// How an adaptive limit moves.
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
#[cfg_attr(
    feature = "serde",
    serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)
)]
pub enum Algorithm {
    /// From the ratio of the latency without load to the latency now (see [`Gradient`]).
    Gradient(Gradient),
    /// Additive increase, multiplicative decrease (see [`Aimd`]).
    Aimd(Aimd),
}

/// The gradient controller: each window, the limit is multiplied by
/// `gradient = baseline / latency now`, clamped to `[0.5, 2]`, and gains a headroom of
/// `sqrt(limit)`, then the move is smoothed:
/// `limit += smoothing * (limit * gradient + sqrt(limit) - limit)`.
///
/// The latency now is the mean of the window's samples. The baseline is a long-term average
/// of those means (over about 20 windows) capped at `tolerance` times the minimum latency seen,
/// so a latency that creeps up with load is never taken for the new normal. The minimum is
/// measured first, with the limit held at `min_limit` for the first window (the limit then
/// starts from `initial_limit`), and again every `min_rtt_interval`, or as soon as the limit
/// has sat at the floor for 5 windows in a row: the limit is held at `min_limit` for two
/// windows and the second one's mean is the new minimum (so a backend that got slower for good
/// is not starved for ever). As with Envoy's filter, calls over the floor are shed while it
/// measures. The limit only grows while it is in use: a window whose peak of calls in
/// flight stayed under half the limit does not raise it.
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
#[non_exhaustive]
pub struct Gradient {
    /// A latency up to this multiple of the minimum is not congestion (at least 1; default
    /// 1.25, as Envoy's adaptive concurrency buffer of 25%).
    pub tolerance: f64,
    /// The share of each computed move that is taken (in `(0, 1]`; default 0.5).
    pub smoothing: f64,
    /// Measure the minimum latency again this often, and after 5 windows in a row at the
    /// floor; at most a day (default 60 s; `None`: never again, only ever lower it).
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub min_rtt_interval: Option<Duration>,
}

impl Default for Gradient {
    fn default() -> Self {
        Gradient {
            tolerance: 1.25,
            smoothing: 0.5,
            min_rtt_interval: Some(Duration::from_secs(60)),
        }
    }
}

/// The AIMD controller: a window with a failure (as the classifier says: an error, a timeout
/// below) or a call slower than `latency_threshold` multiplies the limit by `decrease`; a
/// window with neither, in which the limit was in use (its peak of calls in flight reached half
/// the limit), adds `increase`.
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
#[non_exhaustive]
pub struct Aimd {
    /// A call slower than this counts as a sign of overload (at most a day; default 1 s).
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub latency_threshold: Duration,
    /// Added to the limit after a good window (at least 1; default 1).
    pub increase: u32,
    /// The limit is multiplied by this after a bad window (in `(0, 1)`; default 0.9).
    pub decrease: f64,
}

impl Default for Aimd {
    fn default() -> Self {
        Aimd {
            latency_threshold: Duration::from_secs(1),
            increase: 1,
            decrease: 0.9,
        }
    }
}

impl Algorithm {
    /// The gradient controller with its defaults.
    pub fn gradient() -> Self {
        Algorithm::Gradient(Gradient::default())
    }

    /// The AIMD controller with `latency_threshold` and the other defaults.
    pub fn aimd(latency_threshold: Duration) -> Self {
        Algorithm::Aimd(Aimd {
            latency_threshold,
            ..Aimd::default()
        })
    }
}

impl Gradient {
    /// The gradient controller with this tolerance, smoothing and re-measuring interval.
    pub fn new(tolerance: f64, smoothing: f64, min_rtt_interval: Option<Duration>) -> Self {
        Gradient {
            tolerance,
            smoothing,
            min_rtt_interval,
        }
    }
}

impl Aimd {
    /// The AIMD controller with this threshold, increase and decrease.
    pub fn new(latency_threshold: Duration, increase: u32, decrease: f64) -> Self {
        Aimd {
            latency_threshold,
            increase,
            decrease,
        }
    }
}

fn check_limit(setting: &'static str, value: u32) -> Result<(), ConfigError> {
    config::nonzero(setting, value.into())?;
    config::at_most(setting, value.into(), MAX_LIMIT.into())
}

pub(crate) fn check_queue(queue: Option<&Queue>, mode: Mode) -> Result<(), ConfigError> {
    if let Some(queue) = queue {
        if mode == Mode::Readiness {
            return Err(ConfigError::Invalid {
                setting: "queue",
                reason: "must not be set in readiness mode: the layer above does the waiting",
            });
        }
        config::nonzero("queue.capacity", queue.capacity.into())?;
        config::at_most("queue.capacity", queue.capacity.into(), MAX_QUEUE.into())?;
        config::positive_within_a_day("queue.timeout", queue.timeout)?;
    }
    Ok(())
}

/// Checks an adaptive limit's floor and ceiling (when built, and set at run time through a
/// [`Handle`](crate::Handle)).
pub(crate) fn check_bounds(min_limit: u32, max_limit: u32) -> Result<(), ConfigError> {
    check_limit("min_limit", min_limit)?;
    check_limit("max_limit", max_limit)?;
    if max_limit < min_limit {
        return Err(ConfigError::Invalid {
            setting: "max_limit",
            reason: "must not be below `min_limit`",
        });
    }
    Ok(())
}

/// Checks a limit set at run time (through a [`Handle`](crate::Handle)).
pub(crate) fn check_max_concurrent(value: u32) -> Result<(), ConfigError> {
    check_limit("max_concurrent", value)
}

impl BulkheadConfig {
    /// Checks every setting; the first one out of range is returned as a typed error naming
    /// it.
    ///
    /// ```
    /// use bulwark_bulkhead::{BulkheadConfig, Mode, Queue};
    /// use std::time::Duration;
    ///
    /// let mut config = BulkheadConfig::default();
    /// config.queue = Some(Queue { capacity: 0, timeout: Duration::from_millis(50) });
    /// assert_eq!(config.validate().unwrap_err().setting(), "queue.capacity");
    /// ```
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_limit("max_concurrent", self.max_concurrent)?;
        check_queue(self.queue.as_ref(), self.mode)
    }
}

impl AdaptiveConfig {
    /// Checks every setting; the first one out of range is returned as a typed error naming
    /// it (`min_limit`, `algorithm.tolerance`, ...).
    ///
    /// ```
    /// use bulwark_bulkhead::AdaptiveConfig;
    ///
    /// let mut config = AdaptiveConfig::default();
    /// config.initial_limit = 5000;
    /// let err = config.validate().unwrap_err();
    /// assert_eq!(err.setting(), "initial_limit");
    /// assert_eq!(err.to_string(), "`initial_limit` must be between `min_limit` and `max_limit`");
    /// ```
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_bounds(self.min_limit, self.max_limit)?;
        if !(self.min_limit..=self.max_limit).contains(&self.initial_limit) {
            return Err(ConfigError::Invalid {
                setting: "initial_limit",
                reason: "must be between `min_limit` and `max_limit`",
            });
        }
        config::positive_within_a_day("window", self.window)?;
        match &self.algorithm {
            Algorithm::Gradient(g) => {
                if !(g.tolerance.is_finite() && g.tolerance >= 1.0) {
                    return Err(ConfigError::Invalid {
                        setting: "algorithm.tolerance",
                        reason: "must be a finite number of at least 1",
                    });
                }
                config::share("algorithm.smoothing", g.smoothing)?;
                if let Some(interval) = g.min_rtt_interval {
                    config::positive_within_a_day("algorithm.min_rtt_interval", interval)?;
                }
            }
            Algorithm::Aimd(a) => {
                config::positive_within_a_day("algorithm.latency_threshold", a.latency_threshold)?;
                config::nonzero("algorithm.increase", a.increase.into())?;
                config::at_most("algorithm.increase", a.increase.into(), MAX_LIMIT.into())?;
                if !(a.decrease > 0.0 && a.decrease < 1.0) {
                    return Err(ConfigError::Invalid {
                        setting: "algorithm.decrease",
                        reason: "must be in (0, 1)",
                    });
                }
            }
        }
        check_queue(self.queue.as_ref(), self.mode)
    }
}
