//! Review finding M1: `LeafMessage::decode` must refuse a list beyond its item limit from the RLP
//! headers, before allocating the list. A counting global allocator measures the peak heap use of
//! one decode call (this binary holds only this test, so no other thread allocates meanwhile).

use alloy_primitives::Bytes;
use leafsync_p2p::leaf::{
    Codes, LeafError, LeafMessage, Nodes, RequestPair,
    protocol::{MAX_CODES_PER_REQUEST, MAX_NODES_PER_REQUEST, MAX_RESPONSE_MESSAGE_SIZE, ids},
};
use std::{
    alloc::{GlobalAlloc, Layout, System},
    sync::atomic::{AtomicUsize, Ordering},
};

/// The system allocator, counting live bytes and their peak.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(bytes: usize) {
    let live = LIVE.fetch_add(bytes, Ordering::SeqCst) + bytes;
    PEAK.fetch_max(live, Ordering::SeqCst);
}

// SAFETY: every call is forwarded unchanged to `System`; only counters are updated besides.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            grew(layout.size());
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::SeqCst);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            LIVE.fetch_sub(layout.size(), Ordering::SeqCst);
            grew(new_size);
        }
        new
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Peak heap growth above the current live bytes while `f` runs.
fn peak_during<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let base = LIVE.load(Ordering::SeqCst);
    PEAK.store(base, Ordering::SeqCst);
    let out = f();
    (out, PEAK.load(Ordering::SeqCst).saturating_sub(base))
}

/// What a decode may allocate at most for a refused payload: far below the 128-256 MiB that
/// decoding the whole list cost before the fix.
const PEAK_LIMIT: usize = 8 * 1024 * 1024;

#[test]
fn oversized_lists_are_refused_before_they_are_allocated() {
    // ~4 MiB of one-byte entries (0x80, the empty string): 4 million list items.
    let entries = 4_000_000;
    let nodes = LeafMessage::Nodes(RequestPair {
        request_id: 0,
        message: Nodes { nodes: vec![Bytes::new(); entries] },
    });
    let payload = nodes.encoded();
    drop(nodes);
    assert!(payload.len() <= MAX_RESPONSE_MESSAGE_SIZE, "within the size limit: {}", payload.len());
    let (result, peak) = peak_during(|| LeafMessage::decode(ids::NODES, &payload));
    eprintln!("Nodes of {entries} empty entries: peak allocation {peak} bytes during decode");
    assert_eq!(
        result,
        Err(LeafError::TooManyItems {
            id: ids::NODES,
            what: "nodes",
            count: entries,
            limit: MAX_NODES_PER_REQUEST
        })
    );
    assert!(peak < PEAK_LIMIT, "decoding allocated {peak} bytes");

    // One-byte codes: each would be a heap allocation of its own.
    let codes = LeafMessage::Codes(RequestPair {
        request_id: 0,
        message: Codes { codes: vec![Bytes::from_static(&[1]); entries] },
    });
    let payload = codes.encoded();
    drop(codes);
    let (result, peak) = peak_during(|| LeafMessage::decode(ids::CODES, &payload));
    eprintln!("Codes of {entries} one-byte entries: peak allocation {peak} bytes during decode");
    assert!(
        matches!(result, Err(LeafError::TooManyItems { limit: MAX_CODES_PER_REQUEST, .. })),
        "{result:?}"
    );
    assert!(peak < PEAK_LIMIT, "decoding allocated {peak} bytes");
}
