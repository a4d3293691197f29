//! A balancer fed by `tower::discover`.

use crate::future::ResponseFuture;
use crate::service::Balance;
use bulwark_core::attempts::{NoAttempts, RequestAttempts};
use bulwark_core::{BoxError, Classify};
use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};
use tower::discover::{Change, Discover};
use tower_service::Service;

/// Called with each inserted endpoint's key and id (makes and hands over its health probe).
pub(crate) type OnInsert<K> = Box<dyn FnMut(&K, usize) + Send>;

/// A [`Balance`] whose endpoints come from a [`Discover`] stream: insertions and removals
/// are applied before each pick. An endpoint inserted again under the same key replaces the
/// old one. A removed endpoint is never picked again; its requests in flight finish as usual.
///
/// Built by [`BalanceLayer::build_discover`](crate::BalanceLayer::build_discover).
pub struct DiscoverBalance<D: Discover, C, A = NoAttempts> {
    discover: D,
    ended: bool,
    keys: Vec<D::Key>,
    balance: Balance<D::Service, C, A>,
    /// Makes a health probe for an inserted endpoint and hands it to the health task.
    on_insert: Option<OnInsert<D::Key>>,
}

impl<D: Discover, C, A> DiscoverBalance<D, C, A> {
    pub(crate) fn new(discover: D, balance: Balance<D::Service, C, A>) -> Self {
        DiscoverBalance {
            discover,
            ended: false,
            keys: Vec::new(),
            balance,
            on_insert: None,
        }
    }

    pub(crate) fn with_probes(mut self, on_insert: OnInsert<D::Key>) -> Self {
        self.on_insert = Some(on_insert);
        self
    }

    /// The balancer (its endpoints and handle).
    pub fn balance(&self) -> &Balance<D::Service, C, A> {
        &self.balance
    }

    /// A handle to read the endpoints' state and mark their health.
    pub fn handle(&self) -> crate::Handle
    where
        C: Send + Sync + 'static,
    {
        self.balance.handle()
    }
}

impl<D, C, A> fmt::Debug for DiscoverBalance<D, C, A>
where
    D: Discover,
    D::Key: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DiscoverBalance")
            .field("keys", &self.keys)
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}

impl<D, C, A> DiscoverBalance<D, C, A>
where
    D: Discover + Unpin,
    D::Key: Eq + fmt::Display,
    D::Error: Into<BoxError>,
{
    /// Applies every change the stream has ready.
    fn apply_changes(&mut self, cx: &mut Context<'_>) -> Result<(), BoxError> {
        while !self.ended {
            match Pin::new(&mut self.discover).poll_discover(cx) {
                Poll::Pending => break,
                Poll::Ready(None) => self.ended = true,
                Poll::Ready(Some(Err(e))) => return Err(e.into()),
                Poll::Ready(Some(Ok(Change::Insert(key, endpoint)))) => {
                    if let Some(i) = self.keys.iter().position(|k| *k == key) {
                        self.balance.remove(i);
                        self.keys.remove(i);
                    }
                    tracing::info!(balancer = %self.balance.name(), target = %key, "endpoint added");
                    let id = self.balance.insert(key.to_string(), endpoint);
                    if let Some(on_insert) = &mut self.on_insert {
                        on_insert(&key, id);
                    }
                    self.keys.push(key);
                }
                Poll::Ready(Some(Ok(Change::Remove(key)))) => {
                    if let Some(i) = self.keys.iter().position(|k| *k == key) {
                        tracing::info!(balancer = %self.balance.name(), target = %key, "endpoint removed");
                        self.balance.remove(i);
                        self.keys.remove(i);
                    }
                }
            }
        }
        Ok(())
    }
}

impl<D, C, A, Req> Service<Req> for DiscoverBalance<D, C, A>
where
    A: RequestAttempts<Req>,
    D: Discover + Unpin,
    D::Key: Eq + fmt::Display,
    D::Error: Into<BoxError>,
    D::Service: Service<Req>,
    <D::Service as Service<Req>>::Error: Into<BoxError>,
    C: Classify<<D::Service as Service<Req>>::Response, <D::Service as Service<Req>>::Error>
        + Send
        + Sync
        + 'static,
{
    type Response = <D::Service as Service<Req>>::Response;
    type Error = BoxError;
    type Future = ResponseFuture<<D::Service as Service<Req>>::Future, C>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.apply_changes(cx)?;
        self.balance.poll_ready(cx)
    }

    fn call(&mut self, request: Req) -> Self::Future {
        self.balance.call(request)
    }
}
