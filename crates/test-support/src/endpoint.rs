//! A mock endpoint for the cancellation suites: its readiness, latency and answers drawn from
//! its own seeded source (or fixed, as the test sets), and every call counted while it is
//! alive, so a test can check that nothing a dropped request started is left behind.

use crate::{ms, Rng};
use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Sleep;
use tower_service::Service;

/// How an [`Endpoint`] behaves, as the test sets it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// Readiness, failures and latency drawn from the endpoint's [`Odds`].
    Random,
    /// Always ready, always answering (after its steady delay).
    Healthy,
    /// Always ready, always failing (after its steady delay).
    Broken,
}

/// The odds of an endpoint behaving [`Behaviour::Random`], and its steady delay.
#[derive(Debug, Clone, Copy)]
pub struct Odds {
    /// The chance in 100 that `poll_ready` is pending (waking the task at once); never drawn
    /// when 0.
    pub not_ready: u64,
    /// The chance in 100 that a call fails.
    pub fail: u64,
    /// A call takes `0..delay_ms` milliseconds.
    pub delay_ms: u64,
    /// When healthy or broken, a call takes `0..steady_delay_ms` milliseconds (drawn), or
    /// 1 ms when this is 0 (nothing drawn).
    pub steady_delay_ms: u64,
}

/// Calls counted over every endpoint that shares it.
#[derive(Debug, Default)]
pub struct Counts {
    /// Calls made.
    pub calls: AtomicUsize,
    /// Calls alive: made and not dropped yet.
    pub live: AtomicUsize,
}

impl Counts {
    /// Calls alive now.
    pub fn live(&self) -> usize {
        self.live.load(Ordering::SeqCst)
    }

    /// Calls made so far.
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

/// Something a call holds until it is dropped (see [`Endpoint::on_call`]).
pub type Guard = Box<dyn Send>;

/// Runs a closure when dropped: a [`Guard`] that undoes what a call's hook did.
pub struct OnDrop<F: FnOnce()>(Option<F>);

impl<F: FnOnce()> OnDrop<F> {
    /// Runs `f` on drop.
    pub fn new(f: F) -> Self {
        OnDrop(Some(f))
    }
}

impl<F: FnOnce()> Drop for OnDrop<F> {
    fn drop(&mut self) {
        if let Some(f) = self.0.take() {
            f();
        }
    }
}

impl<F: FnOnce()> fmt::Debug for OnDrop<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OnDrop")
    }
}

type Hook<Req> = Arc<dyn Fn(&Req) -> Option<Guard> + Send + Sync>;

/// A request's own fate for its call: whether it fails, and its delay (`None`: drawn).
type Fate<Req> = fn(&Req) -> Option<(bool, Duration)>;

/// A mock endpoint answering its id (a `usize`) or an `io::Error`, after a delay on tokio's
/// clock. Clones share its random source, its behaviour and its counts.
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// use bulwark_test_support::{Behaviour, Counts, Endpoint, Odds};
/// use std::sync::Arc;
/// use tower::ServiceExt;
///
/// let counts = Arc::new(Counts::default());
/// let odds = Odds { not_ready: 0, fail: 50, delay_ms: 60, steady_delay_ms: 0 };
/// let endpoint = Endpoint::<u32>::new(3, 42, odds, counts.clone());
/// endpoint.behave(Behaviour::Healthy);
/// assert_eq!(endpoint.clone().oneshot(1).await.unwrap(), 3);
/// assert_eq!((counts.calls(), counts.live()), (1, 0));
/// # }
/// ```
pub struct Endpoint<Req> {
    id: usize,
    rng: Arc<Mutex<Rng>>,
    behaviour: Arc<AtomicU8>,
    odds: Odds,
    counts: Arc<Counts>,
    hook: Option<Hook<Req>>,
    fate: Option<Fate<Req>>,
}

impl<Req> Endpoint<Req> {
    /// Endpoint `id`, drawing from `Rng::new(seed)`, behaving [`Behaviour::Random`].
    pub fn new(id: usize, seed: u64, odds: Odds, counts: Arc<Counts>) -> Self {
        Endpoint {
            id,
            rng: Arc::new(Mutex::new(Rng::new(seed))),
            behaviour: Arc::new(AtomicU8::new(Behaviour::Random as u8)),
            odds,
            counts,
            hook: None,
            fate: None,
        }
    }

    /// Runs `hook` on every call; what it returns is dropped with the call.
    pub fn on_call(mut self, hook: impl Fn(&Req) -> Option<Guard> + Send + Sync + 'static) -> Self {
        self.hook = Some(Arc::new(hook));
        self
    }

    /// Lets the request decide a call's fate (whether it fails, and its delay) instead of
    /// the draws, where `fate` returns one.
    pub fn fate(mut self, fate: Fate<Req>) -> Self {
        self.fate = Some(fate);
        self
    }

    /// The endpoint's id, which it answers.
    pub fn id(&self) -> usize {
        self.id
    }

    /// Sets how it behaves from now on (every clone).
    pub fn behave(&self, behaviour: Behaviour) {
        self.behaviour.store(behaviour as u8, Ordering::SeqCst);
    }

    /// Draws from `Rng::new(seed)` from now on (every clone).
    pub fn reseed(&self, seed: u64) {
        *self.rng.lock().unwrap() = Rng::new(seed);
    }

    fn behaviour(&self) -> Behaviour {
        match self.behaviour.load(Ordering::SeqCst) {
            0 => Behaviour::Random,
            1 => Behaviour::Healthy,
            _ => Behaviour::Broken,
        }
    }
}

impl<Req> Clone for Endpoint<Req> {
    fn clone(&self) -> Self {
        Endpoint {
            id: self.id,
            rng: self.rng.clone(),
            behaviour: self.behaviour.clone(),
            odds: self.odds,
            counts: self.counts.clone(),
            hook: self.hook.clone(),
            fate: self.fate,
        }
    }
}

impl<Req> fmt::Debug for Endpoint<Req> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoint")
            .field("id", &self.id)
            .field("behaviour", &self.behaviour())
            .finish_non_exhaustive()
    }
}

impl<Req> Service<Req> for Endpoint<Req> {
    type Response = usize;
    type Error = io::Error;
    type Future = Call;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.odds.not_ready > 0
            && self.behaviour() == Behaviour::Random
            && self.rng.lock().unwrap().chance(self.odds.not_ready)
        {
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Req) -> Call {
        let decided = self.fate.and_then(|fate| fate(&request));
        let (fail, delay) = match (decided, self.behaviour()) {
            (Some(fate), _) => fate,
            (None, Behaviour::Random) => {
                let rng = self.rng.lock().unwrap();
                (
                    rng.chance(self.odds.fail),
                    ms(rng.below(self.odds.delay_ms)),
                )
            }
            (None, steady) => {
                let delay = match self.odds.steady_delay_ms {
                    0 => ms(1),
                    n => ms(self.rng.lock().unwrap().below(n)),
                };
                (steady == Behaviour::Broken, delay)
            }
        };
        self.counts.calls.fetch_add(1, Ordering::SeqCst);
        self.counts.live.fetch_add(1, Ordering::SeqCst);
        let guard = self.hook.as_ref().and_then(|hook| hook(&request));
        Call {
            sleep: Box::pin(tokio::time::sleep(delay)),
            answer: if fail {
                Err(io::ErrorKind::ConnectionRefused)
            } else {
                Ok(self.id)
            },
            counts: self.counts.clone(),
            _guard: guard,
        }
    }
}

/// The future of an [`Endpoint`] call: counted alive until dropped.
pub struct Call {
    sleep: Pin<Box<Sleep>>,
    answer: Result<usize, io::ErrorKind>,
    counts: Arc<Counts>,
    _guard: Option<Guard>,
}

impl Future for Call {
    type Output = Result<usize, io::Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        std::task::ready!(self.sleep.as_mut().poll(cx));
        Poll::Ready(self.answer.map_err(io::Error::from))
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        self.counts.live.fetch_sub(1, Ordering::SeqCst);
    }
}

impl fmt::Debug for Call {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Call")
            .field("answer", &self.answer)
            .finish()
    }
}
