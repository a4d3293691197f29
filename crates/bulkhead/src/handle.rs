//! Reading and steering a bulkhead from outside the request path.

use crate::config::{check_bounds, check_max_concurrent, ConfigError, Queue};
use crate::service::{Core, Shared};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// What a handle needs of a bulkhead, whatever its classifier type.
trait View: Send + Sync + 'static {
    fn core(&self) -> &Core;
}

impl<C: Send + Sync + 'static> View for Shared<C> {
    fn core(&self) -> &Core {
        &self.core
    }
}

/// A cloneable handle to one bulkhead: read its calls in flight, its queue and its limit, and
/// change the limit at run time.
///
/// Get one from [`Bulkhead::handle`](crate::Bulkhead::handle). Every clone of the service and
/// of the handle sees the same bulkhead.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use bulwark_bulkhead::{BulkheadLayer, Full};
/// use tower::{service_fn, Layer, Service, ServiceExt};
///
/// let layer = BulkheadLayer::builder().name("payments").max_concurrent(2).build().unwrap();
/// let mut svc = layer.layer(service_fn(|x: u8| async move { Ok::<_, std::io::Error>(x) }));
/// let handle = svc.handle();
/// assert_eq!((handle.max_concurrent(), handle.in_flight(), handle.queued()), (2, 0, 0));
///
/// // Maintenance: admit nothing new (the calls in flight finish).
/// handle.set_max_concurrent(1).unwrap();
/// let first = svc.ready().await.unwrap().call(1); // holds the only permit
/// let err = svc.ready().await.unwrap().call(2).await.unwrap_err();
/// assert!(err.is::<Full>());
/// assert_eq!(first.await.unwrap(), 1);
///
/// // A limit out of range is refused, naming the setting.
/// assert_eq!(handle.set_max_concurrent(0).unwrap_err().setting(), "max_concurrent");
/// # }
/// ```
#[derive(Clone)]
pub struct Handle {
    bulkhead: Arc<dyn View>,
}

impl Handle {
    pub(crate) fn new<C: Send + Sync + 'static>(shared: Arc<Shared<C>>) -> Self {
        Handle { bulkhead: shared }
    }

    fn core(&self) -> &Core {
        self.bulkhead.core()
    }

    /// The bulkhead's name.
    pub fn name(&self) -> &str {
        &self.core().name
    }

    /// Calls in flight now (permits taken, including those reserved by `poll_ready` for a
    /// call not made yet). Above the limit for a while after the limit was lowered.
    pub fn in_flight(&self) -> u32 {
        self.core().limiter.in_flight()
    }

    /// Callers waiting in the queue now.
    pub fn queued(&self) -> u32 {
        self.core().limiter.queued()
    }

    /// The limit on calls in flight now (for an adaptive limit, where its controller has
    /// moved it).
    pub fn max_concurrent(&self) -> u32 {
        self.core().limiter.limit()
    }

    /// Changes the limit at once, without cutting off a call in flight: a higher limit admits
    /// waiting callers at once; a lower one admits nobody new until the calls in flight fall
    /// below it. Refused (naming `max_concurrent`) if zero or above
    /// [`MAX_LIMIT`](crate::MAX_LIMIT), or for an adaptive limit outside its `min_limit` and
    /// `max_limit`; the adaptive controller then moves on from the value set.
    pub fn set_max_concurrent(&self, limit: u32) -> Result<(), ConfigError> {
        check_max_concurrent(limit)?;
        let core = self.core();
        if let Some(controller) = &core.adaptive {
            let (min, max) = controller.bounds();
            if !(min..=max).contains(&limit) {
                return Err(ConfigError::Invalid {
                    setting: "max_concurrent",
                    reason: "must be between the adaptive limit's `min_limit` and `max_limit`",
                });
            }
            controller.set(limit);
        }
        tracing::info!(
            bulkhead = %core.name,
            limit,
            "bulkhead limit set by hand"
        );
        core.set_limit(limit);
        Ok(())
    }

    /// For an adaptive limit, the lowest latency measured without load (`None` for a fixed
    /// bulkhead, or before the first measurement).
    pub fn min_rtt(&self) -> Option<Duration> {
        self.core().adaptive.as_ref().and_then(|c| c.min_rtt())
    }

    /// Whether the limit is adaptive.
    pub fn is_adaptive(&self) -> bool {
        self.core().adaptive.is_some()
    }

    /// The queue in force, if any.
    pub fn queue(&self) -> Option<Queue> {
        self.core().queue()
    }

    /// Changes the queue, validated as the builder validates it (naming `queue.capacity`,
    /// `queue.timeout`, or `queue` in readiness mode); nothing changes on an error. No caller is
    /// dropped: a smaller queue (or none) turns new callers away until fewer wait than it
    /// holds, and those waiting keep their places and their deadlines; a new timeout applies
    /// to the callers that join from now on.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// use bulwark_bulkhead::{BulkheadLayer, Queue};
    /// use std::time::Duration;
    ///
    /// let layer = BulkheadLayer::builder().name("store").shared().build().unwrap();
    /// let handle = layer.handle().unwrap(); // before any service is built
    /// let queue = Queue { capacity: 8, timeout: Duration::from_millis(50) };
    /// handle.set_queue(Some(queue)).unwrap();
    /// assert_eq!(handle.queue(), Some(queue));
    ///
    /// let err = handle.set_queue(Some(Queue { capacity: 0, ..queue })).unwrap_err();
    /// assert_eq!(err.setting(), "queue.capacity");
    /// assert_eq!(handle.queue(), Some(queue));
    /// # }
    /// ```
    pub fn set_queue(&self, queue: Option<Queue>) -> Result<(), ConfigError> {
        self.core().set_queue(queue)
    }

    /// An adaptive limit's floor and ceiling (`None` for a fixed bulkhead).
    pub fn limits(&self) -> Option<(u32, u32)> {
        self.core().adaptive.as_ref().map(|c| c.bounds())
    }

    /// Moves an adaptive limit's floor and ceiling, validated as the builder validates
    /// `min_limit` and `max_limit`; nothing changes on an error. A limit now outside them is
    /// brought inside at once (lowering it cuts off no call in flight); the controller moves
    /// on within them. Refused, naming `min_limit`, for a fixed bulkhead (use
    /// [`Handle::set_max_concurrent`]).
    ///
    /// ```
    /// use bulwark_bulkhead::AdaptiveLimitLayer;
    ///
    /// let layer = AdaptiveLimitLayer::builder().limits(1, 20, 100).aimd_with(Default::default());
    /// let handle = layer.shared().build().unwrap().handle().unwrap();
    /// handle.set_limits(2, 10).unwrap();
    /// assert_eq!(handle.limits(), Some((2, 10)));
    /// assert_eq!(handle.max_concurrent(), 10); // 20 brought under the new ceiling
    ///
    /// let err = handle.set_limits(10, 5).unwrap_err();
    /// assert_eq!(err.to_string(), "`max_limit` must not be below `min_limit`");
    /// assert_eq!(handle.limits(), Some((2, 10)));
    /// ```
    pub fn set_limits(&self, min_limit: u32, max_limit: u32) -> Result<(), ConfigError> {
        let core = self.core();
        let Some(controller) = &core.adaptive else {
            return Err(ConfigError::Invalid {
                setting: "min_limit",
                reason: "is an adaptive limit's setting: this bulkhead's limit is fixed",
            });
        };
        check_bounds(min_limit, max_limit)?;
        if controller.bounds() == (min_limit, max_limit) {
            return Ok(());
        }
        let limit = controller.set_bounds(min_limit, max_limit);
        core.settings_changed();
        core.set_limit(limit);
        Ok(())
    }
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handle")
            .field("name", &self.name())
            .field("max_concurrent", &self.max_concurrent())
            .field("in_flight", &self.in_flight())
            .field("queued", &self.queued())
            .finish()
    }
}
