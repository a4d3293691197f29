//! A box made only when needed, whose drop costs nothing while it is empty.
//!
//! A response future that sometimes carries extra state (a retry's span, a failover's record
//! of failures) keeps it in a [`LazyBox`]: an `Option<Box<T>>` that stays `None`, and
//! allocates nothing, on the path where it is not needed. Its drop checks for `None` inline
//! and drops a value out of line, so the common path pays no call for it.

use std::mem::ManuallyDrop;
use std::ops::{Deref, DerefMut};

/// An `Option<Box<T>>` (read and written through `Deref`) whose drop looks for `None`
/// inline and drops a value in a cold function.
///
/// ```
/// use bulwark_core::slot::LazyBox;
///
/// let mut trail: LazyBox<Vec<u32>> = LazyBox::new();
/// assert!(trail.is_none());
/// trail.get_or_insert_with(Box::default).push(7);
/// assert_eq!(trail.as_deref(), Some(&vec![7]));
/// trail.set(None);
/// assert!(trail.is_none());
/// ```
#[doc(hidden)]
pub struct LazyBox<T>(ManuallyDrop<Option<Box<T>>>);

impl<T> LazyBox<T> {
    /// An empty slot (no allocation).
    pub const fn new() -> Self {
        LazyBox(ManuallyDrop::new(None))
    }

    /// A slot holding what `make` returns, boxed, made out of line. For a value the hot path
    /// rarely wants (a span, made only when a subscriber asks for it): the caller's code
    /// moves one pointer, never the value, whether or not it was made.
    ///
    /// ```
    /// use bulwark_core::slot::LazyBox;
    ///
    /// let made = LazyBox::made_by(|| Some(String::from("span")));
    /// assert_eq!(made.as_deref().map(String::as_str), Some("span"));
    /// ```
    #[cold]
    #[inline(never)]
    pub fn made_by(make: impl FnOnce() -> Option<T>) -> Self {
        LazyBox(ManuallyDrop::new(make().map(Box::new)))
    }

    /// Puts `value` in the slot (boxed), or empties it; drops what it held out of line.
    pub fn set(&mut self, value: Option<T>) {
        let old = std::mem::replace(&mut *self.0, value.map(Box::new));
        if old.is_some() {
            cold_drop(old);
        }
    }
}

impl<T> Default for LazyBox<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Deref for LazyBox<T> {
    type Target = Option<Box<T>>;

    #[inline]
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl<T> DerefMut for LazyBox<T> {
    #[inline]
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl<T> Drop for LazyBox<T> {
    #[inline]
    fn drop(&mut self) {
        if self.0.is_some() {
            cold_drop(std::mem::take(&mut *self.0));
        }
    }
}

impl<T: std::fmt::Debug> std::fmt::Debug for LazyBox<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

#[cold]
#[inline(never)]
fn cold_drop<T>(value: T) {
    drop(value);
}
