//! The unit tests' allocator: the system's, counting the bytes each thread holds, so that a
//! test can measure what a structure costs ([`live_bytes`]) while other tests run beside it.

use std::{
    alloc::{GlobalAlloc, Layout, System},
    cell::Cell,
};

thread_local! {
    /// Bytes allocated and not freed by this thread (a block freed by another thread counts
    /// there).
    static LIVE: Cell<isize> = const { Cell::new(0) };
}

fn count(bytes: isize) {
    // Allocations while the thread's locals are torn down go uncounted.
    let _ = LIVE.try_with(|live| live.set(live.get() + bytes));
}

/// Bytes this thread has allocated and not freed.
pub(crate) fn live_bytes() -> isize {
    LIVE.with(Cell::get)
}

struct Counting;

// SAFETY: every call goes to `System` with the caller's arguments; only a thread-local counter
// (no allocation: a const-initialised `Cell`) is added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, passed on unchanged.
        let block = unsafe { System.alloc(layout) };
        if !block.is_null() {
            count(layout.size() as isize);
        }
        block
    }

    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        // SAFETY: as for `alloc`.
        unsafe { System.dealloc(block, layout) };
        count(-(layout.size() as isize));
    }

    unsafe fn realloc(&self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let moved = unsafe { System.realloc(block, layout, new_size) };
        if !moved.is_null() {
            count(new_size as isize - layout.size() as isize);
        }
        moved
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;
