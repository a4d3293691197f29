//! The member list the balancer's clones read: a vector in chunks, shared by reference count.
//!
//! A retry above the balancer clones it for every request, so a clone must not copy the list:
//! cloning a [`Roster`] is one reference count. A membership change must not copy it either:
//! the writer changes its own copy, which shares every chunk it does not touch with the
//! copies readers hold, so a change copies the chunk it touches (at most [`CHUNK`] entries)
//! and, once per batch of changes, the table of chunk pointers (one per [`CHUNK`] members).

use std::sync::Arc;

/// Members per chunk.
pub(crate) const CHUNK: usize = 64;
const SHIFT: u32 = CHUNK.trailing_zeros();

/// A persistent vector of `T` in chunks of [`CHUNK`].
pub(crate) struct Roster<T> {
    chunks: Arc<Vec<Arc<Vec<T>>>>,
    len: usize,
}

impl<T> Clone for Roster<T> {
    #[inline]
    fn clone(&self) -> Self {
        Roster {
            chunks: self.chunks.clone(),
            len: self.len,
        }
    }
}

impl<T> Default for Roster<T> {
    fn default() -> Self {
        Roster {
            chunks: Arc::new(Vec::new()),
            len: 0,
        }
    }
}

impl<T> Roster<T> {
    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The member at `i`, which must be below `len`.
    #[inline]
    pub(crate) fn get(&self, i: usize) -> &T {
        &self.chunks[i >> SHIFT][i & (CHUNK - 1)]
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &T> {
        self.chunks.iter().flat_map(|c| c.iter())
    }
}

impl<T: Clone> Roster<T> {
    /// Appends `item`.
    pub(crate) fn push(&mut self, item: T) {
        let chunks = Arc::make_mut(&mut self.chunks);
        match chunks.last_mut() {
            Some(last) if last.len() < CHUNK => Arc::make_mut(last).push(item),
            _ => {
                let mut chunk = Vec::with_capacity(CHUNK);
                chunk.push(item);
                chunks.push(Arc::new(chunk));
            }
        }
        self.len += 1;
    }

    /// Replaces the member at `i` (below `len`).
    pub(crate) fn set(&mut self, i: usize, item: T) {
        let chunks = Arc::make_mut(&mut self.chunks);
        Arc::make_mut(&mut chunks[i >> SHIFT])[i & (CHUNK - 1)] = item;
    }

    /// Removes the member at `i` (below `len`), moving the last one into its place; returns
    /// the removed one.
    pub(crate) fn swap_remove(&mut self, i: usize) -> T {
        let last = self.len - 1;
        let chunks = Arc::make_mut(&mut self.chunks);
        let tail = chunks.last_mut().expect("a non-empty roster has a chunk");
        let moved = Arc::make_mut(tail)
            .pop()
            .expect("the last chunk is never empty");
        if tail.is_empty() {
            chunks.pop();
        }
        self.len = last;
        if i == last {
            return moved;
        }
        std::mem::replace(
            &mut Arc::make_mut(&mut chunks[i >> SHIFT])[i & (CHUNK - 1)],
            moved,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behaves_as_a_vec_and_readers_keep_their_copy() {
        let mut r = Roster::default();
        let mut v = Vec::new();
        for i in 0..200u32 {
            r.push(i);
            v.push(i);
        }
        let before = r.clone();
        for i in [0usize, 63, 64, 150, 3] {
            assert_eq!(r.swap_remove(i), v.swap_remove(i));
        }
        r.set(10, 1000);
        v[10] = 1000;
        while r.len() > 130 {
            let i = r.len() - 1;
            assert_eq!(r.swap_remove(i), v.swap_remove(i));
        }
        assert_eq!(r.len(), v.len());
        assert_eq!(r.iter().copied().collect::<Vec<_>>(), v);
        for (i, x) in v.iter().enumerate() {
            assert_eq!(r.get(i), x);
        }
        // The copy taken before the changes is unchanged.
        assert_eq!(before.len(), 200);
        assert_eq!(
            before.iter().copied().collect::<Vec<_>>(),
            (0..200).collect::<Vec<_>>()
        );
        // Down to nothing and back.
        while !r.is_empty() {
            r.swap_remove(0);
        }
        r.push(7);
        assert_eq!(*r.get(0), 7);
    }

    #[test]
    fn a_change_shares_the_chunks_it_does_not_touch() {
        let mut r = Roster::default();
        for i in 0..(CHUNK * 4) {
            r.push(i);
        }
        let reader = r.clone();
        r.set(1, 0);
        let shared = r
            .chunks
            .iter()
            .zip(reader.chunks.iter())
            .filter(|(a, b)| Arc::ptr_eq(a, b))
            .count();
        assert_eq!(shared, 3);
    }
}
