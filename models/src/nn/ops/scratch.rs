//! Per-thread scratch buffers reused across calls: batch-sized im2col and transpose buffers are
//! megabytes, and allocating them fresh each time costs a page fault per 4 KiB.
//!
//! Buffers are taken out of the pool and given back rather than borrowed, so a kernel that is
//! re-entered on the same thread (rayon work stealing) gets a fresh buffer instead of a panic.

use super::storage::num_like::NumLike;
use std::cell::RefCell;
use std::thread::LocalKey;

/// Buffers above this size are not kept, so one odd call cannot pin memory forever.
const MAX_KEPT_BYTES: usize = 256 << 20;

pub trait Pooled: NumLike {
    fn pool() -> &'static LocalKey<RefCell<Vec<Vec<Self>>>>;
}

thread_local! {
    static F32_POOL: RefCell<Vec<Vec<f32>>> = const { RefCell::new(Vec::new()) };
    static F64_POOL: RefCell<Vec<Vec<f64>>> = const { RefCell::new(Vec::new()) };
}

impl Pooled for f32 {
    fn pool() -> &'static LocalKey<RefCell<Vec<Vec<f32>>>> {
        &F32_POOL
    }
}

impl Pooled for f64 {
    fn pool() -> &'static LocalKey<RefCell<Vec<Vec<f64>>>> {
        &F64_POOL
    }
}

/// A buffer of `len` elements with unspecified contents, returned to this thread's pool on drop.
pub struct Scratch<T: Pooled> {
    /// Always fully initialised (its `len` is its size), so reuse never rewrites it.
    buf: Vec<T>,
    len: usize,
}

impl<T: Pooled> Scratch<T> {
    pub fn new(len: usize) -> Self {
        // Best fit: the smallest pooled buffer that is large enough, else the largest one grown.
        let mut buf = T::pool().with(|p| {
            let mut p = p.borrow_mut();
            let fit = (0..p.len()).filter(|&i| p[i].len() >= len).min_by_key(|&i| p[i].len());
            let pick = fit.or_else(|| (0..p.len()).max_by_key(|&i| p[i].len()));
            pick.map(|i| p.swap_remove(i)).unwrap_or_default()
        });
        if buf.len() < len {
            buf.resize(len, T::ZERO);
        }
        Self { buf, len }
    }

}

impl<T: Pooled> std::ops::Deref for Scratch<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        &self.buf[..self.len]
    }
}

impl<T: Pooled> std::ops::DerefMut for Scratch<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        &mut self.buf[..self.len]
    }
}

impl<T: Pooled> Drop for Scratch<T> {
    fn drop(&mut self) {
        let buf = std::mem::take(&mut self.buf);
        if buf.len() * std::mem::size_of::<T>() <= MAX_KEPT_BYTES {
            // During thread teardown the pool may be gone; the buffer is then simply freed.
            let _ = T::pool().try_with(|p| p.borrow_mut().push(buf));
        }
    }
}
