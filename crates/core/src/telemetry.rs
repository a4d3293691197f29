//! Metric handles that follow the recorder, whenever it is installed.
//!
//! The `metrics` facade hands out a handle (a `Counter`, a `Gauge`, a `Histogram`) from the
//! recorder current when the handle is registered; a handle registered before any recorder is
//! installed records nowhere, forever. A layer built at start-up, before the application
//! installs its Prometheus exporter, would report nothing. [`Handles`] keeps a layer's handles
//! together with the identity of the recorder they were registered with (the address of the
//! `&dyn Recorder` that [`metrics::with_recorder`] gives), and registers them again, with their
//! help text, the first time they are used under another recorder: installed before or after
//! the layer is built, a recorder sees its metrics. While no recorder is installed (the
//! facade's no-op recorder is current: a thread outside a `with_local_recorder` scope, say),
//! the handles of the latest real recorder they met are used, so a layer built under a local
//! recorder keeps reporting to it.
//!
//! Once a layer's handles are registered with the current recorder, using them costs a
//! thread-local read and an atomic load (to find the current recorder) and a pointer compare
//! or two (one per recorder met, usually one or two): no allocation and no lock. Each recorder a layer meets costs one registration (a few
//! allocations, off the request path's steady state); handles for the first
//! `MAX_RECORDERS` recorders are kept, later ones are registered for each use.
//!
//! [`Stopwatch`] reads tokio's clock only when a recorder is installed, so a layer that
//! records durations costs no clock read in an application without one.
//!
//! A recorder is known by its address: a recorder dropped and another installed at the same
//! address (two `with_local_recorder` calls on one stack frame, in turn) is taken for the same,
//! and a recorder of size zero is taken for the facade's no-op recorder (it has no state to
//! record into; the facade's own no-op recorder is one): `recording` says false under it.

#[cfg(feature = "metrics")]
use std::fmt;
#[cfg(feature = "metrics")]
use std::sync::OnceLock;
use tokio::time::Instant;

#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
/// How many recorders' handles a [`Handles`] keeps (in practice one or two: none installed
/// yet, then the application's); handles for further recorders are registered at each use.
pub const MAX_RECORDERS: usize = 8;

#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
/// The identity of the recorder current on this thread (its address), and whether it can
/// record (it is not of size zero, as the facade's no-op recorder is).
#[inline]
fn current() -> (usize, bool) {
    metrics::with_recorder(|r| {
        (
            (r as *const dyn metrics::Recorder).cast::<()>() as usize,
            std::mem::size_of_val(r) != 0,
        )
    })
}

#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
/// Whether a recorder that can record is current on this thread (one of non-zero size: not
/// the facade's no-op recorder). Layers read the clock for a duration only when it is.
#[inline]
pub fn recording() -> bool {
    current().1
}

/// The recorder current on this thread, looked up once: a layer takes it when a call starts,
/// asks it whether to time the call, and hands it to
/// [`Handles::with_seen`] when the call ends, one recorder lookup per call instead of two.
/// Without feature `metrics` it is empty and never [`recording`](Seen::recording).
///
/// ```
/// use bulwark_core::telemetry::Seen;
///
/// let seen = Seen::now();
/// assert!(!seen.recording()); // no recorder installed
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    #[cfg(feature = "metrics")]
    id: usize,
    #[cfg(feature = "metrics")]
    real: bool,
}

impl Seen {
    /// The recorder current on this thread now.
    #[inline]
    pub fn now() -> Self {
        #[cfg(feature = "metrics")]
        {
            let (id, real) = current();
            Seen { id, real }
        }
        #[cfg(not(feature = "metrics"))]
        Seen {}
    }

    /// Whether that recorder can record: it is not the facade's no-op recorder (always false
    /// without feature `metrics`).
    #[inline]
    pub fn recording(&self) -> bool {
        #[cfg(feature = "metrics")]
        return self.real;
        #[cfg(not(feature = "metrics"))]
        false
    }
}

#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
/// A set of metric handles, registered with each recorder they are used under. See the
/// [module docs](self).
///
/// ```
/// use bulwark_core::telemetry::Handles;
/// use metrics_util::debugging::DebuggingRecorder;
///
/// struct Mine {
///     calls: metrics::Counter,
/// }
///
/// // Built before any recorder is installed.
/// let handles: Handles<Mine> = Handles::new();
/// let register = || {
///     metrics::describe_counter!("calls_total", "calls made");
///     Mine { calls: metrics::counter!("calls_total") }
/// };
/// handles.with(register, |m| m.calls.increment(1)); // no recorder: counted nowhere
///
/// let recorder = DebuggingRecorder::new();
/// let snapshotter = recorder.snapshotter();
/// metrics::with_local_recorder(&recorder, || {
///     handles.with(register, |m| m.calls.increment(1)); // registered again, with its help
/// });
/// let (_, _, help, _) = snapshotter.snapshot().into_vec().pop().unwrap();
/// assert_eq!(help.as_deref(), Some("calls made"));
/// ```
pub struct Handles<T> {
    first: OnceLock<Box<Entry<T>>>,
}

#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
struct Entry<T> {
    recorder: usize,
    /// Whether `recorder` can record (not the no-op recorder).
    real: bool,
    handles: T,
    next: OnceLock<Box<Entry<T>>>,
}

#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
impl<T> Handles<T> {
    /// None registered yet: the first use registers them.
    pub const fn new() -> Self {
        Handles {
            first: OnceLock::new(),
        }
    }

    /// Runs `f` with the handles registered with the current recorder, calling `register` to
    /// register them (and describe them, and set gauges to the values they stand for) first
    /// if this recorder has not seen them yet. While no recorder is installed (the facade's
    /// no-op recorder is current), the handles of the latest real recorder they were
    /// registered with are used, if any: a layer built under a local recorder keeps reporting
    /// to it.
    #[inline]
    pub fn with<R>(&self, register: impl FnOnce() -> T, f: impl FnOnce(&T) -> R) -> R {
        self.with_seen(Seen::now(), register, f)
    }

    /// [`with`](Self::with) for the recorder `seen` found current earlier (when a call
    /// started, say): a layer that looked the recorder up once for a call uses the same
    /// lookup when the call ends, and a call's metrics go to the recorder current when it
    /// started. Handles this recorder has not seen yet are registered with the recorder
    /// current now.
    ///
    /// ```
    /// use bulwark_core::telemetry::{Handles, Seen};
    ///
    /// let handles: Handles<metrics::Counter> = Handles::new();
    /// let seen = Seen::now(); // when the call starts
    /// // ... when it ends:
    /// handles.with_seen(seen, || metrics::counter!("calls_total"), |c| c.increment(1));
    /// ```
    #[inline]
    pub fn with_seen<R>(
        &self,
        seen: Seen,
        register: impl FnOnce() -> T,
        f: impl FnOnce(&T) -> R,
    ) -> R {
        let Seen { id, real } = seen;
        let mut slot = &self.first;
        // Under the no-op recorder: the latest real recorder's handles, else the no-op's.
        let mut fallback: Option<&T> = None;
        for _ in 0..MAX_RECORDERS {
            match slot.get() {
                Some(entry) if real && entry.recorder == id => return f(&entry.handles),
                Some(entry) => {
                    if !real && (entry.real || (entry.recorder == id && fallback.is_none())) {
                        fallback = Some(&entry.handles);
                    }
                    slot = &entry.next;
                }
                None => {
                    return match fallback {
                        Some(handles) => f(handles),
                        None => register_current(&self.first, register, f),
                    }
                }
            }
        }
        // Too many recorders met: these handles live for this use only.
        match fallback {
            Some(handles) => f(handles),
            None => f(&register()),
        }
    }
}

/// Registers handles with the recorder current now (which may not be the one a
/// [`Seen`] found earlier), appended after the last entry, unless another thread (or an
/// earlier entry) has them already.
#[cfg(feature = "metrics")]
#[cold]
#[inline(never)]
fn register_current<T, R>(
    first: &OnceLock<Box<Entry<T>>>,
    register: impl FnOnce() -> T,
    f: impl FnOnce(&T) -> R,
) -> R {
    let Seen { id, real } = Seen::now();
    let mut slot = first;
    for _ in 0..MAX_RECORDERS {
        match slot.get() {
            Some(entry) if entry.recorder == id => return f(&entry.handles),
            Some(entry) => slot = &entry.next,
            None => return register_at(slot, id, real, register, f),
        }
    }
    f(&register())
}

#[cfg(feature = "metrics")]
#[cold]
fn register_at<T, R>(
    mut slot: &OnceLock<Box<Entry<T>>>,
    id: usize,
    real: bool,
    register: impl FnOnce() -> T,
    f: impl FnOnce(&T) -> R,
) -> R {
    let mut made = Box::new(Entry {
        recorder: id,
        real,
        handles: register(),
        next: OnceLock::new(),
    });
    // Another thread may append first (for this recorder or another): look on.
    loop {
        match slot.set(made) {
            Ok(()) => break,
            Err(back) => made = back,
        }
        let entry = slot.get().expect("set by another thread");
        if entry.recorder == id {
            break;
        }
        slot = &entry.next;
    }
    f(&slot.get().expect("just set").handles)
}

#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
impl<T> Handles<T> {
    /// How many recorders these handles were registered with so far.
    pub fn registrations(&self) -> usize {
        let mut n = 0;
        let mut slot = &self.first;
        while let Some(entry) = slot.get() {
            n += 1;
            slot = &entry.next;
        }
        n
    }
}

#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
impl<T> Default for Handles<T> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
impl<T> fmt::Debug for Handles<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handles")
            .field("registrations", &self.registrations())
            .finish()
    }
}

/// When something started, on tokio's clock, read only if a recorder is installed
/// (`recording`, with feature `metrics`; never without it): a duration histogram costs no
/// clock read without one.
#[derive(Debug, Clone, Copy, Default)]
pub struct Stopwatch(Option<Instant>);

impl Stopwatch {
    /// Started now if a recorder is installed; else a stopwatch that never reads the clock.
    #[inline]
    pub fn start() -> Self {
        Stopwatch(Seen::now().recording().then(Instant::now))
    }

    /// A stopwatch that was never started: [`seconds`](Self::seconds) is `None`.
    pub const fn off() -> Self {
        Stopwatch(None)
    }

    /// Started at `at`, whether or not a recorder is installed.
    #[inline]
    pub fn started_at(at: Instant) -> Self {
        Stopwatch(Some(at))
    }

    /// Seconds since the start, if it was started.
    #[inline]
    pub fn seconds(&self) -> Option<f64> {
        self.0.map(|start| start.elapsed().as_secs_f64())
    }
}

#[cfg(all(test, feature = "metrics"))]
mod tests {
    use super::{Handles, Seen};
    use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};

    fn counted(snapshotter: &Snapshotter) -> u64 {
        snapshotter
            .snapshot()
            .into_vec()
            .into_iter()
            .map(|(_, _, _, value)| match value {
                DebugValue::Counter(n) => n,
                _ => 0,
            })
            .sum()
    }

    fn register() -> metrics::Counter {
        metrics::counter!("calls_total")
    }

    #[test]
    fn a_call_seen_under_a_recorder_records_to_it_when_it_ends_elsewhere() {
        let handles: Handles<metrics::Counter> = Handles::new();
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        let seen = metrics::with_local_recorder(&recorder, || {
            let seen = Seen::now();
            assert!(seen.recording());
            // Registered while the recorder is current, as a layer does when it is built.
            handles.with(register, |_| ());
            seen
        });
        // The call ends on a thread with no recorder: it goes to the one it started under.
        handles.with_seen(seen, register, |c| c.increment(1));
        assert_eq!(counted(&snapshotter), 1);
        assert_eq!(handles.registrations(), 1);
    }

    #[test]
    fn a_recorder_not_registered_yet_is_registered_with_the_current_one() {
        let handles: Handles<metrics::Counter> = Handles::new();
        let first = DebuggingRecorder::new();
        let first_snapshotter = first.snapshotter();
        let seen = metrics::with_local_recorder(&first, Seen::now);
        let second = DebuggingRecorder::new();
        let second_snapshotter = second.snapshotter();
        // Seen under `first`, which never registered the handles, ended under `second`: the
        // handles registered now are `second`'s, so they are kept for `second`.
        metrics::with_local_recorder(&second, || {
            handles.with_seen(seen, register, |c| c.increment(1));
            handles.with(register, |c| c.increment(1));
        });
        assert_eq!(counted(&first_snapshotter), 0);
        assert_eq!(counted(&second_snapshotter), 2);
        assert_eq!(handles.registrations(), 1);
    }

    #[test]
    fn without_a_recorder_nothing_is_seen_recording() {
        assert!(!Seen::now().recording());
    }
}
