//! The states a layer built, so the layer can hand out their handles.
//!
//! A layer either builds one state for every `layer()` call (built with the layer, so its
//! handle exists before any service) or a state per call, which it keeps weakly: a dropped
//! service's state goes with it, and the layer lists the ones alive. Building a service is
//! not on the request path; the list is a mutex-guarded `Vec` pruned when it would grow.
//!
//! ```
//! use bulwark_core::built::Built;
//! use std::sync::Arc;
//!
//! let each: Built<u8> = Built::each();
//! let a = each.get_or_make(|| 1);
//! let b = each.get_or_make(|| 2);
//! assert_eq!(each.live().len(), 2);
//! drop(a);
//! assert_eq!(*each.live()[0], 2);
//!
//! let shared = Built::shared(Arc::new(7u8));
//! assert!(Arc::ptr_eq(&shared.get_or_make(|| 8), shared.shared_state().unwrap()));
//! # drop(b);
//! ```

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError, Weak};

/// One state shared by every `layer()` call, or each call's own (see the module docs).
/// Clones of a layer share it.
pub struct Built<T> {
    inner: Inner<T>,
}

enum Inner<T> {
    Shared(Arc<T>),
    Each(Arc<Mutex<Vec<Weak<T>>>>),
}

impl<T> Clone for Built<T> {
    fn clone(&self) -> Self {
        let inner = match &self.inner {
            Inner::Shared(state) => Inner::Shared(state.clone()),
            Inner::Each(list) => Inner::Each(list.clone()),
        };
        Built { inner }
    }
}

impl<T> fmt::Debug for Built<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.inner {
            Inner::Shared(_) => f.write_str("Built::Shared"),
            Inner::Each(_) => f.write_str("Built::Each"),
        }
    }
}

impl<T> Built<T> {
    /// Every `layer()` call gets `state`.
    pub fn shared(state: Arc<T>) -> Self {
        Built {
            inner: Inner::Shared(state),
        }
    }

    /// Every `layer()` call makes its own state.
    pub fn each() -> Self {
        Built {
            inner: Inner::Each(Arc::default()),
        }
    }

    /// The shared state, if there is one.
    pub fn shared_state(&self) -> Option<&Arc<T>> {
        match &self.inner {
            Inner::Shared(state) => Some(state),
            Inner::Each(_) => None,
        }
    }

    /// The state for one `layer()` call: the shared one, or one made by `make` and listed.
    pub fn get_or_make(&self, make: impl FnOnce() -> T) -> Arc<T> {
        match &self.inner {
            Inner::Shared(state) => state.clone(),
            Inner::Each(list) => {
                let state = Arc::new(make());
                let mut list = list.lock().unwrap_or_else(PoisonError::into_inner);
                if list.len() == list.capacity() {
                    // About to grow: forget the states that are gone first.
                    list.retain(|w| w.strong_count() > 0);
                }
                list.push(Arc::downgrade(&state));
                state
            }
        }
    }

    /// The states alive, in the order they were built.
    pub fn live(&self) -> Vec<Arc<T>> {
        match &self.inner {
            Inner::Shared(state) => vec![state.clone()],
            Inner::Each(list) => list
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .iter()
                .filter_map(Weak::upgrade)
                .collect(),
        }
    }
}
