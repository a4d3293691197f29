//! The bucket every clone shares: a generic cell rate algorithm (GCRA) over one atomic.
//!
//! A token bucket of `burst` tokens refilled one token every `interval` is kept as a single
//! number, the *theoretical arrival time* (`tat`): the time at which the bucket would be full
//! again if nothing more were taken. Taking a token at `now` moves it to
//! `max(tat, now) + interval`, allowed while that is at most `tolerance` (= burst x interval)
//! ahead of `now`. One compare-and-swap per admitted call; no lock, no allocation, no
//! background task refilling anything.
//!
//! A token may also be *reserved* ahead of time, up to a wait: the caller is admitted when its
//! token conforms (`tat - tolerance`), and queues behind every earlier reservation. A
//! reservation that is not used is given back if no later one was made since (the bucket goes
//! back to exactly where it was); otherwise it is lost, so the limiter admits one call fewer,
//! never one more.

use crate::config::{Bucket, Mode, RateLimitConfig};
use crate::error::RateLimited;
use bulwark_core::clock::{nanos, Clock};
use bulwark_core::{ConfigError, Event, SharedListener};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// The theoretical arrival time, alone on its cache lines: every admission writes it, and
/// nothing read on every call should share its line.
#[repr(align(128))]
struct Tat(AtomicU64);

/// Tokens taken from the bucket at once: the time slot of the first (`tat`, the bucket's
/// `tat` after it), when its call may go (`at`; zero when at once), and the slots of the rest,
/// one `interval` apart, up to `end` (equal to `tat` for a single token).
///
/// Giving back tokens up to slot `x` from slot `tat` puts the bucket's `tat` back from `x` to
/// `tat - interval`: exactly where it was before, or, if the bucket was full then, to a time
/// at which it was full too (a full bucket's `tat` is any time up to now).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Taken {
    pub(crate) tat: u64,
    pub(crate) at: u64,
    pub(crate) end: u64,
    pub(crate) interval: u64,
}

/// The settings a [`Handle`](crate::Handle) may change, kept to recompute the bucket.
#[derive(Debug, Clone, Copy)]
struct Settings {
    rate: u32,
    period: Duration,
    burst: u32,
}

/// What every clone of a rate-limited service, and every handle, shares.
pub(crate) struct Limiter {
    tat: Tat,
    /// Nanoseconds between two tokens.
    interval: AtomicU64,
    /// The burst, as time: `burst * interval`.
    tolerance: AtomicU64,
    /// How long a fail-fast caller may wait for its token, in nanoseconds.
    pub(crate) max_wait: u64,
    /// The most tokens a clone takes at once (1: no leases).
    pub(crate) lease: u32,
    pub(crate) mode: Mode,
    clock: Clock,
    name: Box<str>,
    listener: Option<SharedListener>,
    refused: AtomicU64,
    settings: Mutex<Settings>,
    #[cfg(feature = "metrics")]
    pub(crate) metrics: crate::metrics::Metrics,
}

impl fmt::Debug for Limiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Limiter")
            .field("name", &self.name)
            .field("settings", &*lock(&self.settings))
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Limiter {
    /// A full bucket for a validated `config`.
    pub(crate) fn new(
        config: &RateLimitConfig,
        bucket: Bucket,
        listener: Option<SharedListener>,
    ) -> Self {
        Limiter {
            tat: Tat(AtomicU64::new(0)),
            interval: AtomicU64::new(bucket.interval),
            tolerance: AtomicU64::new(bucket.tolerance),
            max_wait: config.max_wait.map_or(0, nanos),
            lease: config.lease,
            mode: config.mode,
            clock: Clock::new(),
            name: config.name.clone().into_boxed_str(),
            listener,
            refused: AtomicU64::new(0),
            settings: Mutex::new(Settings {
                rate: config.rate,
                period: config.period,
                burst: config.burst(),
            }),
            #[cfg(feature = "metrics")]
            metrics: crate::metrics::Metrics::new(&config.name),
        }
    }

    /// Nanoseconds on tokio's clock since the limiter was made.
    #[inline]
    pub(crate) fn now(&self) -> u64 {
        self.clock.now()
    }

    /// The instant `at` nanoseconds after the limiter was made.
    #[inline]
    pub(crate) fn instant_at(&self, at: u64) -> tokio::time::Instant {
        self.clock.instant_at(at)
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// Takes a token at `now`, or reserves one due within `max_wait`; with `want` above 1,
    /// up to `want` tokens at once, but never more than an eighth of those in the bucket (and
    /// only tokens there now). `Err` holds when a token will be there without waiting
    /// (nanoseconds on the limiter's clock).
    #[inline]
    pub(crate) fn acquire(&self, now: u64, max_wait: u64, want: u32) -> Result<Taken, u64> {
        let interval = self.interval.load(Ordering::Relaxed);
        let tolerance = self.tolerance.load(Ordering::Relaxed);
        let mut prev = self.tat.0.load(Ordering::Relaxed);
        loop {
            let base = prev.max(now);
            let first = base.saturating_add(interval);
            // When the first token conforms: the bucket holds at most `tolerance` ahead of now.
            let at = first.saturating_sub(tolerance);
            if at > now.saturating_add(max_wait) {
                return Err(at);
            }
            let n = if want > 1 {
                let in_bucket = now.saturating_add(tolerance).saturating_sub(base) / interval;
                (in_bucket / 8).clamp(1, u64::from(want))
            } else {
                1
            };
            let end = base.saturating_add(interval.saturating_mul(n));
            match self
                .tat
                .0
                .compare_exchange_weak(prev, end, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => {
                    return Ok(Taken {
                        tat: first,
                        at: if at > now { at } else { 0 },
                        end,
                        interval,
                    });
                }
                Err(actual) => prev = actual,
            }
        }
    }

    /// Gives back unused tokens, the bucket's `tat` going from `end` (the last token's slot)
    /// back to `prev` (the slot before the first), if no token was taken since (the bucket is
    /// then as if they had never been taken). Returns whether they were.
    pub(crate) fn release(&self, prev: u64, end: u64) -> bool {
        self.tat
            .0
            .compare_exchange(end, prev, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    }

    /// Counts and reports a refusal; returns it as the error a caller gets.
    #[cold]
    pub(crate) fn refuse(&self, retry_after: Duration) -> RateLimited {
        self.refused.fetch_add(1, Ordering::Relaxed);
        #[cfg(feature = "metrics")]
        self.metrics.refused();
        tracing::debug!(
            rate_limit = %self.name,
            retry_after_ms = retry_after.as_millis() as u64,
            "rate limit refused a call"
        );
        if let Some(listener) = &self.listener {
            listener.emit(&Event::RateLimited {
                name: &self.name,
                retry_after,
            });
        }
        RateLimited::new(retry_after)
    }

    /// Counts a caller that waited for its token.
    #[cold]
    pub(crate) fn waited(&self) {
        #[cfg(feature = "metrics")]
        self.metrics.waited();
    }

    pub(crate) fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Tokens in the bucket now.
    pub(crate) fn available(&self) -> u32 {
        let now = self.now();
        let interval = self.interval.load(Ordering::Relaxed);
        let tolerance = self.tolerance.load(Ordering::Relaxed);
        let tat = self.tat.0.load(Ordering::Relaxed).max(now);
        let room = now.saturating_add(tolerance).saturating_sub(tat);
        u32::try_from(room / interval).unwrap_or(u32::MAX)
    }

    /// Changes the rate and the burst (`None`: keep them). The tokens already taken stay
    /// taken: what the bucket owes is carried over as time.
    pub(crate) fn update(
        &self,
        rate: Option<(u32, Duration)>,
        burst: Option<u32>,
    ) -> Result<(), ConfigError> {
        let mut settings = lock(&self.settings);
        let mut next = *settings;
        if let Some((rate, period)) = rate {
            next.rate = rate;
            next.period = period;
        }
        if let Some(burst) = burst {
            next.burst = burst;
        }
        let bucket = Bucket::new(next.rate, next.period, next.burst)?;
        self.interval.store(bucket.interval, Ordering::Relaxed);
        self.tolerance.store(bucket.tolerance, Ordering::Relaxed);
        *settings = next;
        tracing::info!(
            rate_limit = %self.name,
            rate = next.rate,
            period_ms = next.period.as_millis() as u64,
            burst = next.burst,
            "rate limit changed"
        );
        Ok(())
    }

    pub(crate) fn settings(&self) -> (u32, Duration, u32) {
        let s = *lock(&self.settings);
        (s.rate, s.period, s.burst)
    }
}
