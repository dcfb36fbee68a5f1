//! [`CountingAlloc`]: the system allocator, counting the bytes live and their peak, for tests
//! that bound what a decoder, a cache or a reader allocates. A test binary installs it as its
//! global allocator and holds only tests that take turns, so that no other thread allocates
//! while one measures; or a test reads what its own thread holds ([`CountingAlloc::thread_live`]),
//! whatever runs beside it.

use std::{
    alloc::{GlobalAlloc, Layout, System},
    cell::Cell,
    sync::atomic::{AtomicUsize, Ordering},
};

thread_local! {
    /// Bytes this thread allocated and has not freed (a block freed by another thread counts
    /// there). Const-initialised, without a destructor: reading it never allocates.
    static THREAD_LIVE: Cell<isize> = const { Cell::new(0) };
}

/// Adds `bytes` to this thread's count; allocations while the thread's locals are torn down go
/// uncounted.
fn thread_grew(bytes: isize) {
    let _ = THREAD_LIVE.try_with(|live| live.set(live.get() + bytes));
}

/// The system allocator with two counters: install it with
/// `#[global_allocator] static ALLOC: CountingAlloc = CountingAlloc::new();`.
#[derive(Debug, Default)]
pub struct CountingAlloc {
    live: AtomicUsize,
    peak: AtomicUsize,
}

impl CountingAlloc {
    /// Both counters at zero.
    pub const fn new() -> Self {
        Self { live: AtomicUsize::new(0), peak: AtomicUsize::new(0) }
    }

    /// Bytes allocated and not yet freed.
    pub fn live(&self) -> usize {
        self.live.load(Ordering::SeqCst)
    }

    /// Bytes the calling thread allocated and has not freed: a measurement that tests running
    /// on other threads do not disturb.
    pub fn thread_live(&self) -> isize {
        THREAD_LIVE.with(Cell::get)
    }

    /// `f`'s result, and how far the live bytes rose above where they stood when it began.
    pub fn peak_during<T>(&self, f: impl FnOnce() -> T) -> (T, usize) {
        let base = self.live();
        self.peak.store(base, Ordering::SeqCst);
        let out = f();
        (out, self.peak.load(Ordering::SeqCst).saturating_sub(base))
    }

    fn grew(&self, bytes: usize) {
        let live = self.live.fetch_add(bytes, Ordering::SeqCst) + bytes;
        self.peak.fetch_max(live, Ordering::SeqCst);
        thread_grew(bytes as isize);
    }

    fn shrank(&self, bytes: usize) {
        self.live.fetch_sub(bytes, Ordering::SeqCst);
        thread_grew(-(bytes as isize));
    }
}

// SAFETY: every call is forwarded unchanged to `System`; only the counters are updated besides.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            self.grew(layout.size());
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.dealloc(ptr, layout) };
        self.shrank(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            self.shrank(layout.size());
            self.grew(new_size);
        }
        new
    }
}
