//! Request replay: capped body buffering so an HTTP request can be sent more than once.
//!
//! A retry, a failover or a hedged request sends the same request again, so the request has to be
//! cloned. A request whose body is already in memory (`String`, `Vec<u8>`, `Bytes`,
//! `http_body_util::Full`) is `Clone` and needs nothing from this module. A streaming body (hyper's
//! `Incoming`, axum's `Body`, a file or a channel) cannot be cloned: its bytes are read once.
//!
//! [`ReplayBody`] wraps such a body. The first attempt streams the inner body as usual while a copy
//! of up to `cap` bytes (default [`DEFAULT_REPLAY_CAP`], 64 KiB) is kept; a clone replays the copy
//! and then carries on reading whatever of the inner body nobody has read yet. So a first attempt
//! that fails half-way through sending (a connection reset mid-upload) still leaves a complete
//! body for the next attempt.
//!
//! A body larger than the cap is not an error: the attempt that is reading it keeps streaming,
//! nothing is lost, but the copy is dropped and [`ReplayBody::can_replay`] turns false, so the
//! request goes once and is not retried. The retry layer checks [`CanReplay::can_replay`] before
//! every further attempt; a clone that is polled anyway yields a [`ReplayError`] rather than a
//! silently truncated body.
//!
//! Pick:
//! * nothing, for requests whose body is `Clone` already;
//! * [`replayable`] (or [`ReplayBody::new`]) for streaming bodies, with a cap that bounds the
//!   memory one request in flight may hold for retries.
//!
//! # Concurrency
//!
//! Clones share one state behind a mutex that is held only inside a single synchronous call
//! (`poll_frame`, `is_end_stream`, `size_hint`, `can_replay`), never across an `.await`. Each
//! clone has its own read position. A clone whose position is behind the copy replays the copy; only
//! a clone that has caught up with everything read so far polls the inner body, under the lock,
//! and appends what it reads to the copy before the lock is released. So clones polled at the same
//! time (a hedged request) never race on the inner body: whichever reaches the end of the copy
//! first reads the next chunk, and the others then replay it from the copy. When the inner body is
//! not ready, every clone waiting on it is woken when it makes progress.
//!
//! # Example
//!
//! ```
//! use bulwark_core::replay::{replayable, CanReplay, DEFAULT_REPLAY_CAP};
//! use bytes::Bytes;
//! use http_body_util::{BodyExt, StreamBody};
//! use http_body::Frame;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let chunks = ["hello ", "streaming ", "world"]
//!     .map(|s| Ok::<_, std::io::Error>(Frame::data(Bytes::from(s))));
//! let body = StreamBody::new(futures_util::stream::iter(chunks));
//! let request = http::Request::post("http://books.example/search").body(body).unwrap();
//!
//! let request = replayable(request, DEFAULT_REPLAY_CAP);
//! let retry = request.clone();
//!
//! // The first attempt streams the body...
//! let first = request.into_body().collect().await.unwrap().to_bytes();
//! assert_eq!(first, "hello streaming world");
//!
//! // ...and a retry sends the same bytes again.
//! assert!(retry.can_replay());
//! let again = retry.into_body().collect().await.unwrap().to_bytes();
//! assert_eq!(again, first);
//! # }
//! ```

use std::fmt;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Wake, Waker};

use bytes::{Buf, Bytes};
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};

use crate::BoxError;

/// The replay cap [`replayable`] users pick when they have no reason to pick another: 64 KiB.
///
/// Large enough for typical JSON and form requests, small enough that many requests in flight do
/// not hold much memory for retries. Larger uploads go once, unretried.
pub const DEFAULT_REPLAY_CAP: usize = 64 * 1024;

/// A body that can be sent more than once: it streams the inner body on first use while keeping
/// a copy of up to `cap` bytes; clones replay the copy, then continue with whatever of the inner
/// body has not been read yet.
///
/// A clone always starts from the beginning of the body, whatever the position of the value it
/// was cloned from. All clones share one state (the copy, the inner body, its trailers); each has
/// its own read position. Trailers are passed through and replayed too.
///
/// Once more than `cap` bytes have gone through, the copy is dropped: the clone reading the inner
/// body keeps streaming it to the end (nothing is lost and no error is raised), but
/// [`can_replay`](Self::can_replay) is false from then on, and a clone that has to replay the
/// dropped copy yields a [`ReplayError`] instead of a truncated body. Likewise, once the inner body
/// has yielded an error (given, as is, to the clone that read it), a clone that reaches that point
/// yields a [`ReplayError`] rather than ending early, and `can_replay` is false.
///
/// See the [module docs](self) for how clones polled at the same time share the inner body.
pub struct ReplayBody<B> {
    shared: Arc<Mutex<Shared<B>>>,
    /// Data frames this clone has yielded (an index into the copy).
    pos: usize,
    /// Data bytes this clone has yielded.
    sent: u64,
    /// This clone has yielded its last frame (trailers, an error or the end).
    done: bool,
}

/// The state every clone of one [`ReplayBody`] shares.
struct Shared<B> {
    cap: usize,
    /// The copy: every data frame read from the inner body, while `!exceeded`.
    chunks: Vec<Bytes>,
    /// Data frames read from the inner body (kept counting after the copy is dropped).
    frames_read: usize,
    /// Data bytes read from the inner body.
    bytes_read: u64,
    /// More than `cap` bytes have been read: `chunks` is dropped and stays empty.
    exceeded: bool,
    inner: Inner<B>,
    /// Every clone waiting for the inner body; the inner body is polled with a waker that wakes
    /// them all.
    waiters: Arc<Waiters>,
    waker: Waker,
}

/// How far the inner body has got.
enum Inner<B> {
    /// Still has frames to give (boxed once, so it can be pinned inside the shared state).
    Reading(Pin<Box<B>>),
    /// Finished, with the trailers it sent, if any.
    Ended(Option<HeaderMap>),
    /// Yielded an error (its message kept for the clones that replay up to it).
    Failed(String),
}

impl<B> ReplayBody<B> {
    /// Wraps `body`, keeping a copy of up to `cap` bytes of it for replay.
    ///
    /// A `cap` of 0 keeps only bodies with no data bytes replayable.
    pub fn new(body: B, cap: usize) -> Self {
        let waiters = Arc::new(Waiters::default());
        let shared = Shared {
            cap,
            chunks: Vec::new(),
            frames_read: 0,
            bytes_read: 0,
            exceeded: false,
            inner: Inner::Reading(Box::pin(body)),
            waker: Waker::from(Arc::clone(&waiters)),
            waiters,
        };
        ReplayBody {
            shared: Arc::new(Mutex::new(shared)),
            pos: 0,
            sent: 0,
            done: false,
        }
    }

    /// Whether a fresh clone could still send the whole body: false once more than `cap` bytes
    /// have gone through (the copy was dropped), or once the inner body has failed.
    pub fn can_replay(&self) -> bool {
        let state = self.lock();
        !state.exceeded && !matches!(state.inner, Inner::Failed(_))
    }

    fn lock(&self) -> MutexGuard<'_, Shared<B>> {
        // Poisoned only if the inner body panicked while being polled; the bookkeeping is updated
        // after the poll returns, so it is still consistent.
        self.shared.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<B> Clone for ReplayBody<B> {
    /// A new handle on the same body, reading from the beginning.
    fn clone(&self) -> Self {
        ReplayBody {
            shared: Arc::clone(&self.shared),
            pos: 0,
            sent: 0,
            done: false,
        }
    }
}

impl<B> fmt::Debug for ReplayBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.lock();
        let inner = match state.inner {
            Inner::Reading(_) => "reading",
            Inner::Ended(_) => "ended",
            Inner::Failed(_) => "failed",
        };
        f.debug_struct("ReplayBody")
            .field("cap", &state.cap)
            .field("bytes_read", &state.bytes_read)
            .field("exceeded", &state.exceeded)
            .field("inner", &inner)
            .field("position", &self.pos)
            .finish_non_exhaustive()
    }
}

impl<B> Body for ReplayBody<B>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        let mut guard = this.shared.lock().unwrap_or_else(PoisonError::into_inner);
        let state = &mut *guard;

        // Behind the frontier: replay the copy.
        if this.pos < state.frames_read {
            if state.exceeded {
                this.done = true;
                return Poll::Ready(Some(Err(ReplayError::cap_exceeded(state.cap).into())));
            }
            let chunk = state.chunks[this.pos].clone();
            this.pos += 1;
            this.sent += chunk.len() as u64;
            return Poll::Ready(Some(Ok(Frame::data(chunk))));
        }

        // At the frontier: this clone has yielded every data frame read so far.
        let inner = match &mut state.inner {
            Inner::Reading(inner) => inner,
            Inner::Ended(trailers) => {
                this.done = true;
                return Poll::Ready(trailers.clone().map(|t| Ok(Frame::trailers(t))));
            }
            Inner::Failed(message) => {
                this.done = true;
                let err = ReplayError::body_failed(message.clone());
                return Poll::Ready(Some(Err(err.into())));
            }
        };

        state.waiters.register(cx.waker());
        let polled = inner
            .as_mut()
            .poll_frame(&mut Context::from_waker(&state.waker));
        match polled {
            Poll::Pending => Poll::Pending,
            Poll::Ready(None) => {
                state.inner = Inner::Ended(None);
                this.done = true;
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(err))) => {
                let err: BoxError = err.into();
                state.inner = Inner::Failed(err.to_string());
                this.done = true;
                Poll::Ready(Some(Err(err)))
            }
            Poll::Ready(Some(Ok(frame))) => {
                let frame = frame.map_data(|mut data| data.copy_to_bytes(data.remaining()));
                if let Some(data) = frame.data_ref() {
                    let len = data.len() as u64;
                    state.frames_read += 1;
                    state.bytes_read = state.bytes_read.saturating_add(len);
                    if !state.exceeded {
                        if state.bytes_read <= state.cap as u64 {
                            state.chunks.push(data.clone());
                        } else {
                            state.exceeded = true;
                            state.chunks = Vec::new();
                        }
                    }
                    this.pos += 1;
                    this.sent += len;
                    if inner.is_end_stream() {
                        state.inner = Inner::Ended(None);
                    }
                } else if let Some(trailers) = frame.trailers_ref() {
                    // Trailers are the last frame of a body.
                    state.inner = Inner::Ended(Some(trailers.clone()));
                    this.done = true;
                }
                Poll::Ready(Some(Ok(frame)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        if self.done {
            return true;
        }
        let state = self.lock();
        if self.pos < state.frames_read {
            return false;
        }
        match &state.inner {
            Inner::Reading(inner) => inner.is_end_stream(),
            Inner::Ended(trailers) => trailers.is_none(),
            Inner::Failed(_) => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        if self.done {
            return SizeHint::with_exact(0);
        }
        let state = self.lock();
        let behind = self.pos < state.frames_read;
        if behind && state.exceeded {
            // This clone will yield a `ReplayError`.
            return SizeHint::default();
        }
        let from_copy = state.bytes_read.saturating_sub(self.sent);
        match &state.inner {
            Inner::Reading(inner) => {
                let rest = inner.size_hint();
                let mut hint = SizeHint::new();
                hint.set_lower(rest.lower().saturating_add(from_copy));
                if let Some(upper) = rest.upper().and_then(|u| u.checked_add(from_copy)) {
                    hint.set_upper(upper);
                }
                hint
            }
            Inner::Ended(_) => SizeHint::with_exact(from_copy),
            Inner::Failed(_) => SizeHint::default(),
        }
    }
}

/// The wakers of every clone waiting for the inner body. The inner body is polled with a waker
/// that wakes them all, so clones polled at the same time cannot steal each other's wake-up.
#[derive(Default)]
struct Waiters {
    lists: Mutex<WaiterLists>,
}

#[derive(Default)]
struct WaiterLists {
    waiting: Vec<Waker>,
    /// An empty list kept to swap in while `waiting` is being woken, so waking does not allocate.
    spare: Vec<Waker>,
}

impl Waiters {
    fn register(&self, waker: &Waker) {
        let mut lists = self.lists.lock().unwrap_or_else(PoisonError::into_inner);
        if !lists.waiting.iter().any(|w| w.will_wake(waker)) {
            lists.waiting.push(waker.clone());
        }
    }
}

impl Wake for Waiters {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let mut batch = {
            let mut lists = self.lists.lock().unwrap_or_else(PoisonError::into_inner);
            let spare = std::mem::take(&mut lists.spare);
            std::mem::replace(&mut lists.waiting, spare)
        };
        // Wake outside the lock: a waker may run arbitrary code.
        for waker in batch.drain(..) {
            waker.wake();
        }
        let mut lists = self.lists.lock().unwrap_or_else(PoisonError::into_inner);
        if lists.spare.capacity() < batch.capacity() {
            lists.spare = batch;
        }
    }
}

/// Why a clone of a [`ReplayBody`] could not send the body again.
///
/// The retry layer checks [`CanReplay::can_replay`] before every further attempt, so this error
/// reaches a user only when a `ReplayBody` is cloned and resent by hand without that check. Test
/// for it with `err.is::<ReplayError>()`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayError {
    kind: ReplayErrorKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum ReplayErrorKind {
    CapExceeded { cap: usize },
    BodyFailed { message: String },
}

impl ReplayError {
    fn cap_exceeded(cap: usize) -> Self {
        ReplayError {
            kind: ReplayErrorKind::CapExceeded { cap },
        }
    }

    fn body_failed(message: String) -> Self {
        ReplayError {
            kind: ReplayErrorKind::BodyFailed { message },
        }
    }

    /// Whether the body was larger than the replay cap (rather than failed on an earlier send).
    pub fn is_cap_exceeded(&self) -> bool {
        matches!(self.kind, ReplayErrorKind::CapExceeded { .. })
    }

    /// The replay cap the body exceeded, if that is why it could not be sent again.
    pub fn cap(&self) -> Option<usize> {
        match self.kind {
            ReplayErrorKind::CapExceeded { cap } => Some(cap),
            ReplayErrorKind::BodyFailed { .. } => None,
        }
    }
}

impl fmt::Display for ReplayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            ReplayErrorKind::CapExceeded { cap } => write!(
                f,
                "request body exceeded the replay cap of {cap} bytes; it cannot be sent again"
            ),
            ReplayErrorKind::BodyFailed { message } => write!(
                f,
                "request body failed while it was first sent ({message}); it cannot be sent again"
            ),
        }
    }
}

impl std::error::Error for ReplayError {}

/// Wraps a request's body so the request can be cloned and resent.
///
/// Method, URI, version, headers and extensions are kept as they are. The returned request is
/// `Clone` (extensions are `Clone` in http 1.x), each clone sending the whole body from the
/// start; check [`CanReplay::can_replay`] before sending a clone.
pub fn replayable<B>(req: http::Request<B>, cap: usize) -> http::Request<ReplayBody<B>> {
    req.map(|body| ReplayBody::new(body, cap))
}

/// Whether a value (a request or a body) can be sent again.
///
/// True for bodies held in memory (`String`, `Vec<u8>`, `Bytes`, `Full`, `Empty`, ...), which
/// are `Clone` already; for a [`ReplayBody`], true while its copy is complete. A request can be
/// sent again when its body can.
pub trait CanReplay {
    /// Whether a clone of this value, made now, would send the whole of it.
    fn can_replay(&self) -> bool;
}

impl<B> CanReplay for ReplayBody<B> {
    fn can_replay(&self) -> bool {
        ReplayBody::can_replay(self)
    }
}

impl<B: CanReplay> CanReplay for http::Request<B> {
    fn can_replay(&self) -> bool {
        self.body().can_replay()
    }
}

macro_rules! always_replayable {
    ($($ty:ty),* $(,)?) => {
        $(
            impl CanReplay for $ty {
                /// Always true: the body is in memory and `Clone`.
                fn can_replay(&self) -> bool {
                    true
                }
            }
        )*
    };
}

always_replayable!(
    String,
    Vec<u8>,
    Bytes,
    (),
    &'static str,
    http_body_util::Full<Bytes>,
    http_body_util::Empty<Bytes>,
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_messages() {
        assert_eq!(
            ReplayError::cap_exceeded(65536).to_string(),
            "request body exceeded the replay cap of 65536 bytes; it cannot be sent again"
        );
        let failed = ReplayError::body_failed("connection reset".into());
        assert!(!failed.is_cap_exceeded());
        assert_eq!(failed.cap(), None);
        assert!(failed.to_string().contains("connection reset"));
    }

    #[test]
    fn replay_body_is_send_and_sync_when_the_inner_body_is_send() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<ReplayBody<http_body_util::Full<Bytes>>>();
    }
}
