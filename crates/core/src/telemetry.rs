//! Metric handles that follow the recorder, whenever it is installed.
//!
//! The `metrics` facade hands out a handle (a `Counter`, a `Gauge`, a `Histogram`) from the
//! recorder current when the handle is registered; a handle registered before any recorder is
//! installed records nowhere, forever. A layer built at start-up, before the application
//! installs its Prometheus exporter, would report nothing. [`Handles`] keeps a layer's handles
//! together with the identity of the recorder they were registered with (the address of the
//! `&dyn Recorder` that [`metrics::with_recorder`] gives), and registers them again, with their
//! help text, the first time they are used under another recorder: installed before or after
//! the layer is built, a recorder sees its metrics.
//!
//! Once a layer's handles are registered with the current recorder, using them costs a
//! thread-local read and an atomic load (to find the current recorder) and a pointer compare:
//! no allocation and no lock. Each recorder a layer meets costs one registration (a few
//! allocations, off the request path's steady state); handles for the first
//! [`MAX_RECORDERS`] recorders are kept, later ones are registered for each use.
//!
//! [`Stopwatch`] reads tokio's clock only when a recorder is installed, so a layer that
//! records durations costs no clock read in an application without one.
//!
//! A recorder is known by its address: a recorder dropped and another installed at the same
//! address (two `with_local_recorder` calls on one stack frame, in turn) is taken for the same,
//! and a recorder of size zero is taken for the facade's no-op recorder (it has no state to
//! record into; the facade's own no-op recorder is one): [`recording`] says false under it.
//!
//! ```
//! use bulwark_core::telemetry::Handles;
//! use metrics_util::debugging::DebuggingRecorder;
//!
//! struct Mine {
//!     calls: metrics::Counter,
//! }
//!
//! // Built before any recorder is installed.
//! let handles: Handles<Mine> = Handles::new();
//! let register = || {
//!     metrics::describe_counter!("calls_total", "calls made");
//!     Mine { calls: metrics::counter!("calls_total") }
//! };
//! handles.with(register, |m| m.calls.increment(1)); // no recorder: counted nowhere
//!
//! let recorder = DebuggingRecorder::new();
//! let snapshotter = recorder.snapshotter();
//! metrics::with_local_recorder(&recorder, || {
//!     handles.with(register, |m| m.calls.increment(1)); // registered again, with its help
//! });
//! let (_, _, help, _) = snapshotter.snapshot().into_vec().pop().unwrap();
//! assert_eq!(help.as_deref(), Some("calls made"));
//! ```

use std::fmt;
use std::sync::OnceLock;
use tokio::time::Instant;

/// How many recorders' handles a [`Handles`] keeps (in practice one or two: none installed
/// yet, then the application's); handles for further recorders are registered at each use.
pub const MAX_RECORDERS: usize = 8;

/// The identity of the recorder current on this thread: its address.
#[inline]
fn current() -> usize {
    metrics::with_recorder(|r| (r as *const dyn metrics::Recorder).cast::<()>() as usize)
}

/// Whether a recorder that can record is current on this thread (one of non-zero size: not
/// the facade's no-op recorder). Layers read the clock for a duration only when it is.
#[inline]
pub fn recording() -> bool {
    metrics::with_recorder(|r| std::mem::size_of_val(r) != 0)
}

/// A set of metric handles, registered with each recorder they are used under. See the
/// [module docs](self).
pub struct Handles<T> {
    first: OnceLock<Box<Entry<T>>>,
}

struct Entry<T> {
    recorder: usize,
    handles: T,
    next: OnceLock<Box<Entry<T>>>,
}

impl<T> Handles<T> {
    /// None registered yet: the first use registers them.
    pub const fn new() -> Self {
        Handles {
            first: OnceLock::new(),
        }
    }

    /// Runs `f` with the handles registered with the current recorder, calling `register` to
    /// register them (and describe them, and set gauges to the values they stand for) first
    /// if this recorder has not seen them yet.
    #[inline]
    pub fn with<R>(&self, register: impl FnOnce() -> T, f: impl FnOnce(&T) -> R) -> R {
        let id = current();
        let mut slot = &self.first;
        for _ in 0..MAX_RECORDERS {
            match slot.get() {
                Some(entry) if entry.recorder == id => return f(&entry.handles),
                Some(entry) => slot = &entry.next,
                None => return register_at(slot, id, register, f),
            }
        }
        // Too many recorders met: these handles live for this use only.
        f(&register())
    }

}

#[cold]
fn register_at<T, R>(
        mut slot: &OnceLock<Box<Entry<T>>>,
        id: usize,
        register: impl FnOnce() -> T,
        f: impl FnOnce(&T) -> R,
    ) -> R {
        let mut made = Box::new(Entry {
            recorder: id,
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

impl<T> Default for Handles<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> fmt::Debug for Handles<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handles")
            .field("registrations", &self.registrations())
            .finish()
    }
}

/// When something started, on tokio's clock, read only if a recorder is installed
/// ([`recording`]): a duration histogram costs no clock read without one.
#[derive(Debug, Clone, Copy, Default)]
pub struct Stopwatch(Option<Instant>);

impl Stopwatch {
    /// Started now if a recorder is installed; else a stopwatch that never reads the clock.
    #[inline]
    pub fn start() -> Self {
        Stopwatch(recording().then(Instant::now))
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
