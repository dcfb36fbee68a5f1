//! [`ChunkCache`]: encoded chunk bodies shared by every client asking for the same chunk.
//!
//! * Key: [`ChunkKey`] = (kind, account, prefix, byte class). The byte class is the power of two
//!   at or above the client's honoured `max_bytes` ([`crate::ServeConfig::chunk_bytes_class`]);
//!   the chunk is computed with the class as its bound, and a client whose own `max_bytes` is
//!   below the cached body's size gets "too large", so every answer is exact for its client.
//! * Value: [`CachedChunk`], one piece's fields as they go on the wire (the head number the
//!   leaves were read at and the content's RLP). A batched answer is the cached pieces of its
//!   chunks copied one after the other, each behind its list header, with no decode or encode;
//!   the p2p session puts the client's request id in front when it frames the message.
//! * Bounded in bytes (body + [`crate::config::CACHE_ENTRY_OVERHEAD`] per entry), least recently
//!   used out; an entry is handed out while the head is at most `reuse_blocks` past the head it
//!   was read at, and dropped when found older. A lookup from a snapshot older than the entry (a
//!   request that took its snapshot before the block the entry was read at) misses and leaves
//!   the entry alone, and its result does not replace it.
//! * Single flight: a request that misses a key another request is computing now waits for that
//!   computation (at most the request time budget, [`ChunkCache::lead_or_join`]) and takes its
//!   result, counted as a hit (`joined` says how many hits waited). Two clients asking the same
//!   server for the same chunk at the same moment (clients syncing side by side send each chunk
//!   to the same server) cost one leafdb read, not two. A waiter that finds nothing after the
//!   wait (the leader failed, is slower than the wait, ran out of time, or its chunk was too
//!   large to cache) computes the chunk itself. A leader finishes its chunk before it waits for
//!   any other, so waits form no cycle.
//! * Never cached ([`crate::ChunkRead::cacheable`]): a chunk "too large" only because its time
//!   budget ran out ([`crate::ChunkRead::timed_out`]): it is true for its asker at that moment,
//!   not for the chunk; and an empty chunk, cheaper to read again than to keep (a flood of them,
//!   all different, would push every real chunk out). Their waiters find nothing and read the
//!   chunk themselves, each with a budget of its own.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{
        Arc, Condvar, Mutex, MutexGuard, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use alloy_primitives::B256;
use alloy_rlp::Encodable;
use bytes::{BufMut, Bytes, BytesMut};

use crate::config::CACHE_ENTRY_OVERHEAD;

/// Which request a cached chunk answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChunkKind {
    /// `GetChunk` (the account is zero in the key).
    Accounts,
    /// `GetStorageChunk` of one account.
    Storage,
}

/// What identifies a cached chunk.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ChunkKey {
    /// Request kind.
    pub kind: ChunkKind,
    /// The account whose storage is meant ([`B256::ZERO`] for account chunks).
    pub account: B256,
    /// The prefix's nibbles.
    pub prefix: Vec<u8>,
    /// The byte bound the chunk was computed with.
    pub bytes_class: u64,
    /// The leafdb's reverts when the chunk was read ([`leafsync_leafdb::LeafDb::reverts`]): a
    /// chunk read before a reorg was rolled back is never served after it, when its head number
    /// may name another block.
    pub reverts: u64,
}

/// An encoded chunk piece: the fields of one `[head_number, content]` piece of a batched answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedChunk {
    /// The head number the leaves were read at.
    pub head_number: u64,
    /// The piece's fields: the RLP of `head_number`, then of the content (the item list, or
    /// `0x80` "too large").
    pub fields: Bytes,
    /// Number of items (0 for "too large").
    pub items: usize,
    /// Whether the content is "too large".
    pub too_large: bool,
}

impl CachedChunk {
    /// A chunk read at `head_number` whose content encodes to `content_rlp`.
    pub fn new(head_number: u64, content_rlp: &[u8], items: usize, too_large: bool) -> Self {
        let mut fields = BytesMut::with_capacity(head_number.length() + content_rlp.len());
        head_number.encode(&mut fields);
        fields.put_slice(content_rlp);
        Self { head_number, fields: fields.freeze(), items, too_large }
    }

    /// The RLP of the content, after the head number.
    pub fn content_rlp(&self) -> &[u8] {
        &self.fields[self.head_number.length()..]
    }

    /// Whether a client with this honoured `max_bytes` gets the body as it is; otherwise it gets
    /// "too large" (the body has more than one item and exceeds its `max_bytes`).
    pub fn fits(&self, max_bytes: u64) -> bool {
        self.too_large || self.items <= 1 || self.content_rlp().len() as u64 <= max_bytes
    }

    fn charge(&self) -> usize {
        self.content_rlp().len() + CACHE_ENTRY_OVERHEAD
    }
}

/// Counters of a [`ChunkCache`] (plain atomics, read with [`ChunkCache::stats`]).
#[derive(Debug, Default)]
pub struct CacheMetrics {
    hits: AtomicU64,
    joined: AtomicU64,
    misses: AtomicU64,
    stale: AtomicU64,
    evictions: AtomicU64,
    inserts: AtomicU64,
}

/// The counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Lookups answered from the cache, including those that waited for another request's
    /// computation of the same chunk.
    pub hits: u64,
    /// Of the hits, those that waited for another request's computation (single flight).
    pub joined: u64,
    /// Lookups that found nothing usable (including stale entries).
    pub misses: u64,
    /// Entries dropped because the head moved more than the reuse window.
    pub stale: u64,
    /// Entries evicted to stay within the byte bound.
    pub evictions: u64,
    /// Entries inserted.
    pub inserts: u64,
    /// Bytes charged now.
    pub bytes: usize,
    /// Entries held now.
    pub entries: usize,
}

impl CacheMetrics {
    fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

struct Slot {
    chunk: Arc<CachedChunk>,
    tick: u64,
}

/// A chunk being computed by one request; others missing the same key wait for it.
#[derive(Default)]
struct Flight {
    done: Mutex<bool>,
    landed: Condvar,
}

impl Flight {
    fn wait(&self, at_most: Duration) {
        let done = self.done.lock().unwrap_or_else(PoisonError::into_inner);
        let _ = self.landed.wait_timeout_while(done, at_most, |done| !*done);
    }
}

/// What a request that missed does next ([`ChunkCache::lead_or_join`]).
pub enum Fill<'a> {
    /// Another request computed the chunk meanwhile: here it is.
    Joined(Arc<CachedChunk>),
    /// Compute the chunk and insert it; while the guard (if any) lives, requests missing the
    /// same key wait for it. Dropping it (after the insert, or on an error) wakes them.
    Compute(Option<FlightGuard<'a>>),
}

/// Marks a chunk as being computed; see [`Fill::Compute`].
pub struct FlightGuard<'a> {
    cache: &'a ChunkCache,
    key: ChunkKey,
    flight: Arc<Flight>,
}

impl Drop for FlightGuard<'_> {
    fn drop(&mut self) {
        self.cache.lock().flights.remove(&self.key);
        *self.flight.done.lock().unwrap_or_else(PoisonError::into_inner) = true;
        self.flight.landed.notify_all();
    }
}

#[derive(Default)]
struct Inner {
    map: HashMap<ChunkKey, Slot>,
    /// Chunks being computed now.
    flights: HashMap<ChunkKey, Arc<Flight>>,
    /// Last-use tick → key; the first entry is the least recently used.
    order: BTreeMap<u64, ChunkKey>,
    tick: u64,
    bytes: usize,
}

impl Inner {
    fn remove(&mut self, key: &ChunkKey) {
        if let Some(slot) = self.map.remove(key) {
            self.order.remove(&slot.tick);
            self.bytes -= slot.chunk.charge();
        }
    }

    fn next_tick(&mut self) -> u64 {
        self.tick += 1;
        self.tick
    }
}

/// The chunk cache; see the module docs. Shared by all serving threads.
pub struct ChunkCache {
    capacity: usize,
    reuse_blocks: u64,
    inner: Mutex<Inner>,
    metrics: CacheMetrics,
}

impl std::fmt::Debug for ChunkCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChunkCache").field("stats", &self.stats()).finish_non_exhaustive()
    }
}

impl ChunkCache {
    /// A cache of at most `capacity` bytes whose entries serve heads up to `reuse_blocks` past
    /// their own, at most the protocol's [`MAX_PIECE_AGE_BLOCKS`] (older pieces are lies to a
    /// client). Capacity 0 disables caching.
    ///
    /// [`MAX_PIECE_AGE_BLOCKS`]: leafsync_p2p::leaf::protocol::MAX_PIECE_AGE_BLOCKS
    pub fn new(capacity: usize, reuse_blocks: u64) -> Self {
        Self {
            capacity,
            reuse_blocks: reuse_blocks.min(leafsync_p2p::leaf::protocol::MAX_PIECE_AGE_BLOCKS),
            inner: Mutex::new(Inner::default()),
            metrics: CacheMetrics::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the maps inconsistent with `bytes` in a
        // way that matters more than losing the cache; keep serving.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The entry for `key` if it may serve a client whose snapshot is at `head`. Counts a hit or
    /// a miss; drops the entry if the head has moved past the reuse window (an entry newer than
    /// `head` is kept: it serves the newer snapshots).
    pub fn get(&self, key: &ChunkKey, head: u64) -> Option<Arc<CachedChunk>> {
        let found = self.fresh(key, head);
        let counter = if found.is_some() { &self.metrics.hits } else { &self.metrics.misses };
        CacheMetrics::bump(counter);
        found
    }

    /// After `get` missed `key`: joins the request computing it, if one is, waiting at most
    /// `wait` for its chunk, or leads its computation. A fresh chunk found after the wait (or
    /// landed since the miss) turns the miss into a hit.
    pub fn lead_or_join(&self, key: &ChunkKey, head: u64, wait: Duration) -> Fill<'_> {
        if self.capacity == 0 {
            return Fill::Compute(None);
        }
        let flight = self.lock().flights.get(key).cloned();
        if let Some(flight) = &flight {
            flight.wait(wait);
        }
        if let Some(chunk) = self.fresh(key, head) {
            self.metrics.misses.fetch_sub(1, Ordering::Relaxed);
            CacheMetrics::bump(&self.metrics.hits);
            CacheMetrics::bump(&self.metrics.joined);
            return Fill::Joined(chunk);
        }
        let mut inner = self.lock();
        if flight.is_some() || inner.flights.contains_key(key) {
            // The leader failed or is slow: compute alongside, unmarked.
            return Fill::Compute(None);
        }
        let flight = Arc::new(Flight::default());
        inner.flights.insert(key.clone(), Arc::clone(&flight));
        Fill::Compute(Some(FlightGuard { cache: self, key: key.clone(), flight }))
    }

    /// The fresh entry for `key` at `head`, marked as used; a stale one is dropped, one read at
    /// a head newer than `head` (by a request with a newer snapshot) left as it is. Counts
    /// nothing but stale drops.
    fn fresh(&self, key: &ChunkKey, head: u64) -> Option<Arc<CachedChunk>> {
        let mut inner = self.lock();
        let slot = inner.map.get(key)?;
        let entry_head = slot.chunk.head_number;
        let age = head.checked_sub(entry_head)?;
        if age > self.reuse_blocks {
            inner.remove(key);
            CacheMetrics::bump(&self.metrics.stale);
            return None;
        }
        let old_tick = slot.tick;
        let chunk = Arc::clone(&slot.chunk);
        let tick = inner.next_tick();
        inner.order.remove(&old_tick);
        inner.order.insert(tick, key.clone());
        if let Some(slot) = inner.map.get_mut(key) {
            slot.tick = tick;
        }
        Some(chunk)
    }

    /// Stores `chunk` under `key`, evicting least recently used entries to stay within the byte
    /// bound. A chunk larger than the whole cache is not stored, nor one read at an older head
    /// than the entry it would replace (a request with an older snapshot missed that entry).
    pub fn insert(&self, key: ChunkKey, chunk: Arc<CachedChunk>) {
        let charge = chunk.charge();
        if charge > self.capacity {
            return;
        }
        let mut inner = self.lock();
        if inner.map.get(&key).is_some_and(|slot| slot.chunk.head_number > chunk.head_number) {
            return;
        }
        inner.remove(&key);
        while inner.bytes + charge > self.capacity {
            let Some((_, victim)) = inner.order.pop_first() else { break };
            if let Some(slot) = inner.map.remove(&victim) {
                inner.bytes -= slot.chunk.charge();
                CacheMetrics::bump(&self.metrics.evictions);
            }
        }
        let tick = inner.next_tick();
        inner.order.insert(tick, key.clone());
        inner.map.insert(key, Slot { chunk, tick });
        inner.bytes += charge;
        CacheMetrics::bump(&self.metrics.inserts);
    }

    /// The counters and current size.
    pub fn stats(&self) -> CacheStats {
        let (bytes, entries) = {
            let inner = self.lock();
            (inner.bytes, inner.map.len())
        };
        let m = &self.metrics;
        CacheStats {
            hits: m.hits.load(Ordering::Relaxed),
            joined: m.joined.load(Ordering::Relaxed),
            misses: m.misses.load(Ordering::Relaxed),
            stale: m.stale.load(Ordering::Relaxed),
            evictions: m.evictions.load(Ordering::Relaxed),
            inserts: m.inserts.load(Ordering::Relaxed),
            bytes,
            entries,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> ChunkKey {
        let prefix = vec![n];
        ChunkKey {
            kind: ChunkKind::Accounts,
            account: B256::ZERO,
            prefix,
            bytes_class: 1,
            reverts: 0,
        }
    }

    fn chunk(head: u64, len: usize) -> Arc<CachedChunk> {
        Arc::new(CachedChunk::new(head, &vec![0xc0; len], 2, false))
    }

    #[test]
    fn lru_eviction_by_bytes() {
        let per = 1000 + CACHE_ENTRY_OVERHEAD;
        let cache = ChunkCache::new(3 * per, 0);
        for n in 0..3 {
            cache.insert(key(n), chunk(5, 1000));
        }
        assert!(cache.get(&key(0), 5).is_some()); // 0 is now the most recent
        cache.insert(key(3), chunk(5, 1000)); // evicts 1, the least recently used
        assert!(cache.get(&key(1), 5).is_none());
        assert!(cache.get(&key(0), 5).is_some());
        assert!(cache.get(&key(2), 5).is_some());
        assert!(cache.get(&key(3), 5).is_some());
        let s = cache.stats();
        assert_eq!((s.entries, s.bytes, s.evictions, s.hits, s.misses), (3, 3 * per, 1, 4, 1));
        // One big entry pushes out two; one bigger than the cache is refused.
        cache.insert(key(9), chunk(5, 2000));
        assert_eq!(cache.stats().entries, 2);
        assert!(cache.stats().bytes <= 3 * per);
        cache.insert(key(10), chunk(5, 4 * per));
        assert!(cache.get(&key(10), 5).is_none());
    }

    #[test]
    fn reuse_window_and_invalidation() {
        let cache = ChunkCache::new(1 << 20, 4);
        cache.insert(key(1), chunk(10, 10));
        assert!(cache.get(&key(1), 10).is_some());
        assert!(cache.get(&key(1), 14).is_some());
        assert!(cache.get(&key(1), 15).is_none(), "head moved 5 > 4 blocks");
        assert_eq!(cache.stats().stale, 1);
        assert_eq!(cache.stats().entries, 0, "stale entry dropped");
        // Replacing an entry keeps the byte count right.
        cache.insert(key(2), chunk(10, 10));
        cache.insert(key(2), chunk(11, 20));
        assert_eq!(cache.stats().bytes, 20 + CACHE_ENTRY_OVERHEAD);
    }

    /// A request whose snapshot is older than an entry (taken before the block the entry was
    /// read at) misses it and leaves it for the newer snapshots; what it reads itself does not
    /// replace the newer entry.
    #[test]
    fn a_lookup_from_an_older_snapshot_misses_and_keeps_the_newer_entry() {
        let cache = ChunkCache::new(1 << 20, 4);
        cache.insert(key(1), chunk(10, 10));
        assert!(cache.get(&key(1), 9).is_none(), "read at 10: not for a snapshot at 9");
        assert!(cache.get(&key(1), 10).is_some(), "the entry at 10 was dropped by a lookup at 9");
        cache.insert(key(1), chunk(9, 10));
        assert_eq!(cache.get(&key(1), 10).map(|c| c.head_number), Some(10));
        let s = cache.stats();
        assert_eq!((s.hits, s.misses, s.stale, s.entries, s.inserts), (2, 1, 0, 1, 1));
    }

    #[test]
    fn fits_rules() {
        let c = chunk(1, 100);
        assert!(c.fits(100));
        assert!(!c.fits(99));
        let single = CachedChunk { items: 1, ..(*c).clone() };
        assert!(single.fits(0));
        let tl = CachedChunk { too_large: true, items: 0, ..(*c).clone() };
        assert!(tl.fits(0));
    }

    #[test]
    fn a_miss_of_a_chunk_in_flight_waits_for_it_and_counts_as_a_hit() {
        let cache = ChunkCache::new(1 << 20, 4);
        assert!(cache.get(&key(1), 5).is_none());
        let Fill::Compute(Some(flight)) = cache.lead_or_join(&key(1), 5, Duration::ZERO) else {
            panic!("the first miss leads")
        };
        std::thread::scope(|s| {
            let joiner = s.spawn(|| {
                assert!(cache.get(&key(1), 5).is_none());
                cache.lead_or_join(&key(1), 5, Duration::from_secs(60))
            });
            // The joiner waits until the leader has inserted its chunk and let go.
            while cache.stats().misses < 2 {
                std::thread::yield_now();
            }
            cache.insert(key(1), chunk(5, 10));
            drop(flight);
            let Ok(Fill::Joined(got)) = joiner.join() else { panic!("the second miss joins") };
            assert_eq!(got.head_number, 5);
        });
        let s = cache.stats();
        assert_eq!((s.hits, s.joined, s.misses, s.inserts), (1, 1, 1, 1));
    }

    #[test]
    fn a_waiter_whose_leader_failed_computes_the_chunk_itself() {
        let cache = ChunkCache::new(1 << 20, 4);
        let Fill::Compute(Some(flight)) = cache.lead_or_join(&key(1), 5, Duration::ZERO) else {
            panic!("the first miss leads")
        };
        // Nothing lands within the wait: the second computes too, unmarked.
        assert!(matches!(cache.lead_or_join(&key(1), 5, Duration::ZERO), Fill::Compute(None)));
        drop(flight); // the leader failed: nothing inserted
        // The flight is over: the next miss leads again.
        assert!(matches!(cache.lead_or_join(&key(1), 5, Duration::ZERO), Fill::Compute(Some(_))));
        // A disabled cache has no flights.
        let off = ChunkCache::new(0, 4);
        assert!(matches!(off.lead_or_join(&key(1), 5, Duration::ZERO), Fill::Compute(None)));
    }
}
