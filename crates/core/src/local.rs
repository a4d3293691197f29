//! References to a layer's shared state that threads do not fight over.
//!
//! Internal plumbing of the tower-bulwark layer crates, hidden from the documentation: not part
//! of the public API, and free to change in any release.
//!
//! A response future must keep its layer's shared state (settings, windows, budget) alive until
//! it has reported its outcome, so it holds a reference count. If every future counted on the
//! one `Arc`, threads sharing a layer would bounce that count's cache line on every call, and
//! the line would drag along whatever else sits next to the count. [`LocalRef`] gives each
//! long-lived clone of a service its own count instead: a clone starts out sharing its
//! parent's, and takes one of its own (one small allocation, aligned to its own cache lines) on
//! its second call. A clone made for a single call, as `tower::retry` and axum's router make
//! them, never allocates.
//!
//! ```
//! use bulwark_core::local::LocalRef;
//! use std::sync::Arc;
//!
//! let mut svc_state = LocalRef::new(Arc::new(String::from("settings")));
//! let for_future = svc_state.for_call(); // what a response future holds
//! assert_eq!(&*for_future, "settings");
//! ```

use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

/// The per-clone reference, padded so no two share a cache line.
#[repr(align(128))]
struct Padded<T>(Arc<T>);

/// A service clone's reference to shared state `T`. Clone it with the service.
pub struct LocalRef<T> {
    local: Arc<Padded<T>>,
    own: bool,
    called: bool,
}

/// What a response future holds: dereferences to the shared state.
pub struct CallRef<T>(Arc<Padded<T>>);

impl<T> LocalRef<T> {
    /// The reference of the service a layer builds (it owns its count from the start).
    pub fn new(shared: Arc<T>) -> Self {
        LocalRef {
            local: Arc::new(Padded(shared)),
            own: true,
            called: false,
        }
    }

    /// The shared state.
    #[inline]
    pub fn get(&self) -> &T {
        &self.local.0
    }

    /// The shared state's `Arc` (for handles that outlive the service).
    pub fn shared(&self) -> &Arc<T> {
        &self.local.0
    }

    /// A reference for one call's future.
    #[inline]
    pub fn for_call(&mut self) -> CallRef<T> {
        if !self.own {
            self.not_own_yet();
        }
        CallRef(self.local.clone())
    }

    /// A clone's first call shares its parent's count; its second takes one of its own.
    #[cold]
    #[inline(never)]
    fn not_own_yet(&mut self) {
        if self.called {
            self.local = Arc::new(Padded(self.local.0.clone()));
            self.own = true;
        }
        self.called = true;
    }
}

impl<T> Clone for LocalRef<T> {
    fn clone(&self) -> Self {
        LocalRef {
            local: self.local.clone(),
            own: false,
            called: false,
        }
    }
}

impl<T> Deref for CallRef<T> {
    type Target = T;

    #[inline]
    fn deref(&self) -> &T {
        &self.0 .0
    }
}

impl<T: fmt::Debug> fmt::Debug for LocalRef<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("LocalRef").field(self.get()).finish()
    }
}

impl<T: fmt::Debug> fmt::Debug for CallRef<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("CallRef").field(&**self).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_take_their_own_count_on_the_second_call() {
        let shared = Arc::new(5u32);
        let mut parent = LocalRef::new(shared.clone());
        let a = parent.for_call();
        let mut child = parent.clone();
        let first = child.for_call(); // shares the parent's count
        assert!(Arc::ptr_eq(&first.0, &a.0));
        let second = child.for_call(); // its own now
        assert!(!Arc::ptr_eq(&second.0, &a.0));
        assert_eq!((*a, *first, *second), (5, 5, 5));
        assert_eq!(Arc::strong_count(&shared), 3); // the test's, the parent's, the child's
    }
}
