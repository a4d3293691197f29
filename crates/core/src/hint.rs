//! Why a service turned readiness away, told to the layer that asked.
//!
//! A balancer or a failover set asks each of its endpoints (targets) whether it is ready. A
//! `Pending` answer alone does not say why: a circuit breaker in readiness mode whose circuit is
//! open and probes again in 30 s, a health gate whose checks fail and a connection pool that is
//! full all answer the same. The layer above then waits out its whole `wait_for_ready` before
//! failing with "none ready", even when it could have known at once that nothing would be ready
//! in time.
//!
//! With this module the service below says why, and the layer above listens, with no trait
//! bound on the service below and no allocation: a layer that asks for readiness wraps the
//! inner `poll_ready` in [`collect`]; a service that turns readiness away calls [`report`] with
//! a [`Hint`] before it answers `Pending` (the circuit breaker reports
//! [`Hint::CircuitOpen`] with the time until its first probe; the health gate reports
//! [`Hint::Unhealthy`]; a full bulkhead in readiness mode, [`Hint::Full`]). Outside a
//! [`collect`], [`report`] does nothing. The hint travels in a thread-local slot, as
//! [`Attempts::scope`](crate::attempts::Attempts::scope) does, since a `poll_ready` runs on the
//! thread of the layer that polls it.
//!
//! [`Refusals`] sums the hints of every endpoint a pick asked and says whether waiting can help:
//! when every one is refused by an open circuit that probes only after the request would have
//! stopped waiting, the request can fail at once.
//!
//! ```
//! use bulwark_core::hint::{self, Hint, Refusals};
//! use std::time::Duration;
//!
//! // What a circuit breaker below does when its open circuit turns a poll away.
//! let poll_breaker = || {
//!     hint::report(Hint::CircuitOpen { probe_in: Some(Duration::from_secs(30)) });
//!     false // not ready
//! };
//! let (ready, why) = hint::collect(poll_breaker);
//! assert!(!ready);
//! assert_eq!(why, Some(Hint::CircuitOpen { probe_in: Some(Duration::from_secs(30)) }));
//!
//! let mut refusals = Refusals::new();
//! refusals.note(why);
//! // Nothing probes within the 5 s the request may still wait: fail now.
//! assert!(refusals.hopeless(Duration::from_secs(5)));
//! assert_eq!(refusals.soonest_probe(), Some(Duration::from_secs(30)));
//!
//! // Outside a `collect`, a report goes nowhere.
//! hint::report(Hint::Unhealthy);
//! assert_eq!(hint::collect(|| ()).1, None);
//! ```

use std::cell::Cell;
use std::time::Duration;

/// Why a service answered `Pending` to a readiness poll.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Hint {
    /// Its circuit breaker's circuit is open: calls are refused until the first probe is
    /// admitted, in `probe_in` (`None` while forced open: no probe is foreseen).
    CircuitOpen {
        /// Time until the breaker admits its first probe, from the poll.
        probe_in: Option<Duration>,
    },
    /// Its health checks say it is unhealthy (it is ready again when they pass).
    Unhealthy,
    /// Its rate limiter (in readiness mode) has no token left; the next one is due in
    /// `retry_in` (another caller may take it first).
    RateLimited {
        /// Time until the limiter's next token, from the poll.
        retry_in: Duration,
    },
    /// Its bulkhead (or adaptive concurrency limit) has every permit taken: it is ready again
    /// as soon as one of its calls in flight ends, so waiting can help.
    Full,
}

/// The slot a [`collect`] opens: `Off` outside one.
#[derive(Clone, Copy)]
enum Slot {
    Off,
    Empty,
    Got(Hint),
}

thread_local! {
    static SLOT: Cell<Slot> = const { Cell::new(Slot::Off) };
}

/// Puts back the slot a [`collect`] replaced, even if the poll panics.
struct Restore(Slot);

impl Drop for Restore {
    fn drop(&mut self) {
        SLOT.with(|s| s.set(self.0));
    }
}

/// Says why this service turns a readiness poll away, to the layer polling it if it listens
/// (see [`collect`]); call it just before answering `Pending`. The latest report of a poll is
/// the one collected.
#[inline]
pub fn report(hint: Hint) {
    SLOT.with(|s| {
        if !matches!(s.get(), Slot::Off) {
            s.set(Slot::Got(hint));
        }
    });
}

/// Runs `poll` (a readiness poll of one service below) and returns its result with the hint
/// that service reported, if any. Hints reported further down, inside a `collect` of a layer
/// in between, stay with that layer.
#[inline]
pub fn collect<R>(poll: impl FnOnce() -> R) -> (R, Option<Hint>) {
    let restore = Restore(SLOT.with(|s| s.replace(Slot::Empty)));
    let result = poll();
    let hint = match SLOT.with(|s| s.get()) {
        Slot::Got(hint) => Some(hint),
        Slot::Off | Slot::Empty => None,
    };
    drop(restore);
    (result, hint)
}

/// The hints of the endpoints (targets) one pick found not ready, summed: whether every one
/// was refused by an open circuit (and when the soonest probes), every one is unhealthy, or
/// every one is at its concurrency limit.
///
/// Note each endpoint that was not ready with [`Refusals::note`]; start over with
/// [`Refusals::new`] for each pick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusals {
    any: bool,
    all_open: bool,
    all_unhealthy: bool,
    all_full: bool,
    soonest: Option<Duration>,
}

impl Default for Refusals {
    fn default() -> Self {
        Self::new()
    }
}

impl Refusals {
    /// None noted yet.
    #[inline]
    pub const fn new() -> Self {
        Refusals {
            any: false,
            all_open: true,
            all_unhealthy: true,
            all_full: true,
            soonest: None,
        }
    }

    /// Notes an endpoint that was not ready, with the hint it reported (`None`: it said
    /// nothing, or failed).
    #[inline]
    pub fn note(&mut self, hint: Option<Hint>) {
        self.any = true;
        match hint {
            Some(Hint::CircuitOpen { probe_in }) => {
                self.all_unhealthy = false;
                self.all_full = false;
                if let Some(d) = probe_in {
                    self.soonest = Some(self.soonest.map_or(d, |s| s.min(d)));
                }
            }
            Some(Hint::Unhealthy) => {
                self.all_open = false;
                self.all_full = false;
            }
            // A full endpoint is ready again as soon as one of its calls ends.
            Some(Hint::Full) => {
                self.all_open = false;
                self.all_unhealthy = false;
            }
            // A rate-limited endpoint is ready again in moments: neither open nor unhealthy.
            Some(Hint::RateLimited { .. }) | None => {
                self.all_open = false;
                self.all_unhealthy = false;
                self.all_full = false;
            }
        }
    }

    /// Whether every endpoint noted was refused by an open circuit (and at least one was
    /// noted).
    #[inline]
    pub fn all_open(&self) -> bool {
        self.any && self.all_open
    }

    /// Whether every endpoint noted said it is unhealthy (and at least one was noted).
    #[inline]
    pub fn all_unhealthy(&self) -> bool {
        self.any && self.all_unhealthy
    }

    /// Whether every endpoint noted said it is at its concurrency limit (a bulkhead in
    /// readiness mode; at least one was noted).
    #[inline]
    pub fn all_full(&self) -> bool {
        self.any && self.all_full
    }

    /// The soonest first probe among the open circuits noted (`None` if none foresees one).
    #[inline]
    pub fn soonest_probe(&self) -> Option<Duration> {
        self.soonest
    }

    /// Whether waiting `remaining` more cannot help: every endpoint noted is refused by an open
    /// circuit whose first probe comes after it (or none foresees a probe).
    #[inline]
    pub fn hopeless(&self, remaining: Duration) -> bool {
        self.all_open() && self.soonest.is_none_or(|d| d > remaining)
    }
}

/// Writes why a layer had nothing ready for a request, the same way for every layer:
/// `"<what>[ within <waited>]: <reason>[; <next> in <N> ms]"`. A request that did not wait
/// (it failed at once, every circuit open) says no wait.
///
/// ```
/// use bulwark_core::hint::write_unready;
/// use std::fmt;
/// use std::time::Duration;
///
/// struct Example;
/// impl fmt::Display for Example {
///     fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
///         let (waited, after) = (Duration::ZERO, Some(Duration::from_secs(2)));
///         write_unready(f, "nothing was ready", waited, &"every circuit is open", after, "the first probe")
///     }
/// }
/// assert_eq!(
///     Example.to_string(),
///     "nothing was ready: every circuit is open; the first probe in 2000 ms"
/// );
/// ```
pub fn write_unready(
    f: &mut std::fmt::Formatter<'_>,
    what: &str,
    waited: Duration,
    reason: &dyn std::fmt::Display,
    retry_after: Option<Duration>,
    next: &str,
) -> std::fmt::Result {
    f.write_str(what)?;
    if waited >= Duration::from_millis(1) {
        write!(f, " within {waited:?}")?;
    }
    write!(f, ": {reason}")?;
    if let Some(d) = retry_after {
        write!(f, "; {next} in {} ms", d.as_millis())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_collects_keep_their_own_hints() {
        let (inner, outer) = collect(|| {
            let (_, inner) = collect(|| report(Hint::Unhealthy));
            inner
        });
        assert_eq!(inner, Some(Hint::Unhealthy));
        assert_eq!(outer, None);
    }

    #[test]
    fn refusals_mixed_are_neither() {
        let mut r = Refusals::new();
        assert!(!r.all_open() && !r.all_unhealthy() && !r.hopeless(Duration::ZERO));
        r.note(Some(Hint::CircuitOpen {
            probe_in: Some(Duration::from_secs(3)),
        }));
        r.note(Some(Hint::CircuitOpen {
            probe_in: Some(Duration::from_secs(1)),
        }));
        assert!(r.all_open() && !r.all_unhealthy());
        assert_eq!(r.soonest_probe(), Some(Duration::from_secs(1)));
        assert!(r.hopeless(Duration::from_millis(999)));
        assert!(!r.hopeless(Duration::from_secs(1)));
        r.note(None);
        assert!(!r.all_open() && !r.hopeless(Duration::ZERO));
        let mut u = Refusals::new();
        u.note(Some(Hint::Unhealthy));
        assert!(u.all_unhealthy() && !u.all_open());
    }

    #[test]
    fn forced_open_never_probes() {
        let mut r = Refusals::new();
        r.note(Some(Hint::CircuitOpen { probe_in: None }));
        assert!(r.hopeless(Duration::MAX));
        assert_eq!(r.soonest_probe(), None);
    }
}
