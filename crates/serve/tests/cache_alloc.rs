//! What a cache entry really costs: the bytes [`ChunkCache`] charges an entry must cover the heap
//! it takes (the map's bucket and the LRU order's entry, both holding the key and its prefix,
//! the shared chunk and its encoded body), or a flood of tiny entries fills the byte bound with
//! several times its memory. A counting global allocator measures the live heap as tiny entries
//! go in (this binary holds only this test, so no other thread allocates meanwhile).

use std::sync::Arc;

use alloy_primitives::B256;
use leafsync_p2p::test_utils::CountingAlloc;
use leafsync_serve::{CachedChunk, ChunkCache, ChunkKey, ChunkKind};

#[global_allocator]
static ALLOCATOR: CountingAlloc = CountingAlloc::new();

/// Entries inserted: enough for the map to grow through many sizes (its cost per entry is
/// highest right after it doubles).
const ENTRIES: u64 = 40_000;

/// Entries in before the charge is compared with the heap: the map's and the order's first
/// allocations are the cache's, not an entry's.
const WARM: u64 = 1_000;

/// The cheapest entry a client can make the server keep: one slot of an account under a
/// 64-nibble prefix (the longest key), charged as any other.
fn tiny(n: u64) -> (ChunkKey, Arc<CachedChunk>) {
    let account = B256::left_padding_from(&n.to_be_bytes());
    let key = ChunkKey {
        kind: ChunkKind::Storage,
        account,
        prefix: account.iter().flat_map(|b| [b >> 4, b & 0xf]).collect(),
        bytes_class: 16 * 1024,
        reverts: 0,
    };
    // `[[hashed_slot, value]]`: one slot of value 1 (36 bytes).
    let mut content = vec![0xe3, 0xe2, 0xa0];
    content.extend_from_slice(account.as_slice());
    content.push(0x01);
    (key, Arc::new(CachedChunk::new(1_000_000, &content, 1, false)))
}

#[test]
fn a_cache_entry_is_charged_at_least_the_heap_it_takes() {
    let cache = ChunkCache::new(usize::MAX, 16);
    let base = ALLOCATOR.live();
    let mut worst = (0usize, 0u64);
    for n in 1..=ENTRIES {
        let (key, chunk) = tiny(n);
        cache.insert(key, chunk);
        let real = ALLOCATOR.live().saturating_sub(base);
        let charged = cache.stats().bytes;
        if n < WARM {
            continue;
        }
        if real / n as usize > worst.0 {
            worst = (real / n as usize, n);
        }
        assert!(
            charged >= real,
            "{n} entries take {real} bytes of heap ({} each) but are charged {charged} ({} each)",
            real / n as usize,
            charged / n as usize,
        );
    }
    let real = ALLOCATOR.live().saturating_sub(base);
    let charged = cache.stats().bytes;
    println!(
        "{ENTRIES} tiny entries: {} bytes of heap each, charged {} each; at most {} each (at {} \
         entries)",
        real / ENTRIES as usize,
        charged / ENTRIES as usize,
        worst.0,
        worst.1,
    );
}
