//! Who the members are: the list every clone of a balancer reads, and the feed that changes it.
//!
//! The list is a [`Roster`] published under a version number. A clone reads its own copy of
//! the list (a reference count) and takes the newest one when the version moves (one atomic
//! load per `poll_ready`). Changes come from a feed (a `tower::discover` stream) held here,
//! polled by whichever clone is readied after the feed has woken, under a lock no one waits
//! for: the feed's waker only raises a flag.

use crate::core::{Core, EndpointState};
use crate::key::EndpointKey;
use crate::roster::Roster;
use crate::sync::{lock, AtomicBool, AtomicU64, Mutex, Ordering};
use bulwark_core::BoxError;
use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::task::{Context, Poll, Wake, Waker};
use tower::discover::{Change, Discover};

/// One member: what the balancer knows of it, and the service that reaches it (each
/// balancer clone that sends it a request clones it; the lock, taken only to clone it, lets
/// clones on other threads share a service that is not `Sync`).
pub(crate) struct Member<S> {
    pub(crate) state: Arc<EndpointState>,
    service: Mutex<S>,
}

/// A clone of a member's service, with its state: what a balancer clone sends requests to.
pub(crate) fn materialize<S: Clone>(member: &Arc<Member<S>>) -> Slot<S> {
    Slot {
        state: member.state.clone(),
        service: lock(&member.service).clone(),
        member: member.clone(),
    }
}

/// A balancer clone's own clone of a member's service.
pub(crate) struct Slot<S> {
    pub(crate) state: Arc<EndpointState>,
    pub(crate) service: S,
    /// The member it was cloned from (a member given a new service is a new one).
    pub(crate) member: Arc<Member<S>>,
}

/// The member operations a feed needs of the balancer's core (which is generic over the
/// classifier; the feed is not).
pub(crate) trait Members: Send + Sync {
    fn add(&self, name: String, weight: u32, priority: u32, warm: bool) -> Arc<EndpointState>;
    fn update(&self, state: &EndpointState, weight: u32, priority: u32);
    fn remove(&self, state: &Arc<EndpointState>);
    fn name(&self) -> &str;
    fn wake_waiters(&self);
}

impl<C: Send + Sync> Members for Core<C> {
    fn add(&self, name: String, weight: u32, priority: u32, warm: bool) -> Arc<EndpointState> {
        self.add_member(name, weight, priority, warm)
    }

    fn update(&self, state: &EndpointState, weight: u32, priority: u32) {
        Core::update(self, state, weight, priority)
    }

    fn remove(&self, state: &Arc<EndpointState>) {
        Core::remove(self, state)
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn wake_waiters(&self) {
        Core::wake_waiters(self)
    }
}

/// Changes to the member list, made by a feed while it holds the writer's lock.
pub(crate) struct Edit<'a, S> {
    roster: &'a mut Roster<Arc<Member<S>>>,
    core: &'a dyn Members,
    changed: bool,
    /// Whether the list had members when this batch of changes began: the members of the
    /// first batch (a first DNS answer, say) are the balancer's start and do not ramp up.
    warm: bool,
}

impl<S: Clone> Edit<'_, S> {
    /// Adds a member; returns its state.
    pub(crate) fn add(
        &mut self,
        name: String,
        weight: u32,
        priority: u32,
        service: S,
    ) -> Arc<EndpointState> {
        // A member that joins a balancer that already had members ramps up (slow start).
        let state = self.core.add(name, weight, priority, self.warm);
        self.roster.push(Arc::new(Member {
            state: state.clone(),
            service: Mutex::new(service),
        }));
        self.changed = true;
        state
    }

    /// Adds one of the members the balancer starts with (weight 1, priority 0, no slow start).
    pub(crate) fn add_initial(&mut self, name: String, service: S) -> Arc<EndpointState> {
        let state = self.core.add(name, 1, 0, false);
        self.roster.push(Arc::new(Member {
            state: state.clone(),
            service: Mutex::new(service),
        }));
        self.changed = true;
        state
    }

    /// Gives a member a new service, weight and priority; what the balancer learned of it
    /// (latency, ejections, health) stays.
    pub(crate) fn update(
        &mut self,
        state: &Arc<EndpointState>,
        weight: u32,
        priority: u32,
        service: S,
    ) {
        let i = state.index.load(Ordering::Acquire);
        if i < self.roster.len() && Arc::ptr_eq(&self.roster.get(i).state, state) {
            self.roster.set(
                i,
                Arc::new(Member {
                    state: state.clone(),
                    service: Mutex::new(service),
                }),
            );
            self.core.update(state, weight, priority);
            self.changed = true;
        }
    }

    /// Removes a member: it is not picked again; its requests in flight finish.
    pub(crate) fn remove(&mut self, state: &Arc<EndpointState>) {
        let i = state.index.load(Ordering::Acquire);
        if i < self.roster.len() && Arc::ptr_eq(&self.roster.get(i).state, state) {
            self.roster.swap_remove(i);
        }
        // The core moves its own list's last member into the same place, and sets the
        // moved member's index.
        self.core.remove(state);
        self.changed = true;
    }
}

/// A source of membership changes.
pub(crate) trait Feed<S>: Send {
    /// Applies every change ready now.
    fn poll_feed(&mut self, cx: &mut Context<'_>, edit: &mut Edit<'_, S>);
}

/// The feed's waker: raises the flag that tells the next `poll_ready` to poll the feed, and
/// wakes the requests waiting for an endpoint (a new one may be able to take them).
struct Flag {
    dirty: AtomicBool,
    core: Weak<dyn Members>,
}

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.dirty.store(true, Ordering::Release);
        if let Some(core) = self.core.upgrade() {
            core.wake_waiters();
        }
    }
}

struct Writer<S> {
    roster: Roster<Arc<Member<S>>>,
    feed: Option<Box<dyn Feed<S>>>,
}

/// The member list of one balancer and its clones.
pub(crate) struct Membership<S> {
    published: Mutex<Roster<Arc<Member<S>>>>,
    version: AtomicU64,
    writer: Mutex<Writer<S>>,
    flag: Arc<Flag>,
    waker: Waker,
    core: Arc<dyn Members>,
}

impl<S: Clone + Send + 'static> Membership<S> {
    pub(crate) fn new(core: Arc<dyn Members>, feed: Option<Box<dyn Feed<S>>>) -> Self {
        let flag = Arc::new(Flag {
            dirty: AtomicBool::new(feed.is_some()),
            core: Arc::downgrade(&core),
        });
        Membership {
            published: Mutex::new(Roster::default()),
            version: AtomicU64::new(0),
            writer: Mutex::new(Writer {
                roster: Roster::default(),
                feed,
            }),
            waker: Waker::from(flag.clone()),
            flag,
            core,
        }
    }

    /// Makes changes directly (a static list, at build).
    pub(crate) fn edit(&self, f: impl FnOnce(&mut Edit<'_, S>)) {
        let mut writer = lock(&self.writer);
        let writer = &mut *writer;
        let mut edit = Edit {
            warm: !writer.roster.is_empty(),
            roster: &mut writer.roster,
            core: &*self.core,
            changed: false,
        };
        f(&mut edit);
        if edit.changed {
            self.publish(&writer.roster);
        }
    }
}

impl<S> Membership<S> {
    fn publish(&self, roster: &Roster<Arc<Member<S>>>) {
        *lock(&self.published) = roster.clone();
        self.version.fetch_add(1, Ordering::AcqRel);
        self.core.wake_waiters();
    }

    /// The version of the published list.
    #[inline]
    pub(crate) fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    /// The published list and its version.
    pub(crate) fn current(&self) -> (Roster<Arc<Member<S>>>, u64) {
        let roster = lock(&self.published).clone();
        (roster, self.version())
    }

    /// Polls the feed if it has woken since it was last polled (one atomic load otherwise).
    /// Another thread polling it already is left to it.
    #[inline]
    pub(crate) fn drive(&self) {
        if self.flag.dirty.load(Ordering::Acquire) {
            self.drive_now();
        }
    }

    #[cold]
    fn drive_now(&self) {
        let Ok(mut writer) = self.writer.try_lock() else {
            return;
        };
        let writer = &mut *writer;
        let Some(feed) = writer.feed.as_mut() else {
            return;
        };
        self.flag.dirty.store(false, Ordering::Release);
        let mut cx = Context::from_waker(&self.waker);
        let mut edit = Edit {
            warm: !writer.roster.is_empty(),
            roster: &mut writer.roster,
            core: &*self.core,
            changed: false,
        };
        feed.poll_feed(&mut cx, &mut edit);
        if edit.changed {
            self.publish(&writer.roster);
        }
    }
}

/// Called with each inserted endpoint's key and id (makes and hands over its health probe).
pub(crate) type OnInsert<K> = Box<dyn FnMut(&K, usize) + Send>;

/// A feed from a `tower::discover` stream. An insertion under a key already present updates
/// that member (new service, weight and priority; what the balancer learned of it stays); a
/// removal takes it out. A stream that fails is logged and polled again when it wakes; one
/// that ends leaves the members as they are.
pub(crate) struct DiscoverFeed<D: Discover> {
    discover: D,
    ended: bool,
    failing: bool,
    keys: HashMap<D::Key, Arc<EndpointState>>,
    on_insert: Option<OnInsert<D::Key>>,
}

impl<D: Discover> DiscoverFeed<D> {
    pub(crate) fn new(discover: D, on_insert: Option<OnInsert<D::Key>>) -> Self {
        DiscoverFeed {
            discover,
            ended: false,
            failing: false,
            keys: HashMap::new(),
            on_insert,
        }
    }
}

impl<D> Feed<D::Service> for DiscoverFeed<D>
where
    D: Discover + Unpin + Send,
    D::Key: EndpointKey + Send,
    D::Service: Clone,
    D::Error: Into<BoxError>,
{
    fn poll_feed(&mut self, cx: &mut Context<'_>, edit: &mut Edit<'_, D::Service>) {
        let mut added = 0usize;
        let mut removed = 0usize;
        while !self.ended {
            match Pin::new(&mut self.discover).poll_discover(cx) {
                Poll::Pending => break,
                Poll::Ready(None) => {
                    tracing::debug!(balancer = %edit.core.name(), "discovery stream ended");
                    self.ended = true;
                }
                Poll::Ready(Some(Err(e))) => {
                    if !self.failing {
                        let e: BoxError = e.into();
                        tracing::warn!(balancer = %edit.core.name(), error = %e, "discovery failed; keeping the endpoints");
                        self.failing = true;
                    }
                    break;
                }
                Poll::Ready(Some(Ok(Change::Insert(key, service)))) => {
                    self.failing = false;
                    let (weight, priority) = (key.weight(), key.priority());
                    if let Some(state) = self.keys.get(&key) {
                        edit.update(&state.clone(), weight, priority, service);
                        // The key may carry a new weight or priority: keep the new one.
                        if let Some(state) = self.keys.remove(&key) {
                            self.keys.insert(key, state);
                        }
                        continue;
                    }
                    let state = edit.add(key.to_string(), weight, priority, service);
                    if let Some(on_insert) = &mut self.on_insert {
                        on_insert(&key, state.id);
                    }
                    self.keys.insert(key, state);
                    added += 1;
                }
                Poll::Ready(Some(Ok(Change::Remove(key)))) => {
                    self.failing = false;
                    if let Some(state) = self.keys.remove(&key) {
                        edit.remove(&state);
                        removed += 1;
                    }
                }
            }
        }
        if added + removed > 0 {
            tracing::info!(
                balancer = %edit.core.name(),
                added,
                removed,
                endpoints = self.keys.len(),
                "endpoints changed"
            );
        }
    }
}
