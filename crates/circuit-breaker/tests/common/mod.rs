//! A scriptable backend for the breaker's tests: each request says how the call ends.
#![allow(dead_code, unreachable_pub)]

use bulwark_circuit_breaker::{CircuitBreaker, Classify, Open};
use bulwark_core::BoxError;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tower::{Service, ServiceExt};

/// How a call to the backend ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// `Ok` at once.
    Ok,
    /// `Err` (connection refused) at once.
    Fail,
    /// `Ok` after the delay.
    SlowOk(Duration),
    /// `Err` after the delay.
    SlowFail(Duration),
}

/// A backend that answers as told and counts the calls that reach it.
#[derive(Clone, Default)]
pub struct Backend {
    pub calls: Arc<AtomicUsize>,
}

impl Backend {
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl Service<Reply> for Backend {
    type Response = &'static str;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<&'static str, io::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut std::task::Context<'_>) -> std::task::Poll<io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, reply: Reply) -> Self::Future {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move {
            let refused = || io::Error::from(io::ErrorKind::ConnectionRefused);
            match reply {
                Reply::Ok => Ok("ok"),
                Reply::Fail => Err(refused()),
                Reply::SlowOk(d) => {
                    tokio::time::sleep(d).await;
                    Ok("ok")
                }
                Reply::SlowFail(d) => {
                    tokio::time::sleep(d).await;
                    Err(refused())
                }
            }
        })
    }
}

/// Sends one request through the breaker (ready, call, await).
pub async fn send<C>(
    svc: &mut CircuitBreaker<Backend, C>,
    reply: Reply,
) -> Result<&'static str, BoxError>
where
    C: Classify<&'static str, io::Error> + Send + Sync + 'static,
{
    svc.ready().await?.call(reply).await
}

/// The refusal inside an error, if it is one.
pub fn open_of(err: &BoxError) -> Option<&Open> {
    err.downcast_ref::<Open>()
}

pub fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

pub fn ms(m: u64) -> Duration {
    Duration::from_millis(m)
}
