//! Serving budgets and settings: every limit is a named constant saying why it has its value, and
//! [`ServeConfig`] gathers the ones an operator may tune, each defaulting to its constant.

use std::time::{Duration, Instant};

use leafsync_p2p::leaf::protocol::{
    MAX_CHUNKS_PER_REQUEST, MAX_CODES_PER_REQUEST, MAX_INLINE_STORAGE_SLOTS, MAX_NODES_PER_REQUEST,
    MAX_RESPONSE_BYTES, MAX_STORAGE_CHUNKS_PER_REQUEST, REQUEST_TIMEOUT,
};

/// Server cap on any response's encoded size: the protocol's `MAX_RESPONSE_BYTES` (2 MiB). A
/// client's `max_bytes` above it is lowered to it; the spec promises clients nothing larger.
pub const SERVE_MAX_RESPONSE_BYTES: u64 = MAX_RESPONSE_BYTES;

/// Smallest `max_bytes` a chunk is computed with (16 KiB), so that a client asking for a tiny
/// `max_bytes` (even 0) costs the same bounded work as a normal one and lands in one cache
/// class. A chunk that does not fit the client's own `max_bytes` is still answered "too large".
pub const MIN_CHUNK_BYTES_CLASS: u64 = 16 * 1024;

/// Default encoded size up to which an account's storage is sent inline in its chunk leaf
/// (256 KiB: about the protocol's [`INLINE_STORAGE_SLOTS_LIMIT`] of 4096 slots, and at most a
/// quarter of a default 1 MiB chunk). Larger storage gets the "large storage" mark. A large
/// storage costs the client files of its own and cuts in its account chunk's files (each a file
/// creation, sync and ingestion), so inlining up to the protocol's limit makes a sync cheaper:
/// 10 KiB (the seed's proof of concept) gave 2.6× as many chunks and 2.8× as many table files
/// in a sync of 1M accounts, and 20–24% more client CPU than 64 KiB; 64 KiB (with 1024 slots)
/// gave 1.56× the files of 256 KiB and 1–6% more client CPU (docs/benchmarks.md).
pub const DEFAULT_INLINE_STORAGE_BYTES: usize = 256 * 1024;

/// Hard ceiling on inline slots per leaf, whatever the configured byte threshold: the protocol's
/// `MAX_INLINE_STORAGE_SLOTS` (a client rejects a leaf with more as a breach).
pub const INLINE_STORAGE_SLOTS_LIMIT: usize = MAX_INLINE_STORAGE_SLOTS;

/// Most slots read to count a large storage for its "large storage" mark (4096). The count is a
/// sizing hint (spec: "a sizing hint"): up to this many slots it is exact; beyond, it is
/// estimated from the fraction of the hashed key space the first 4096 slots cover (hashed slots
/// are uniform, so the relative error is about 1/√4096 ≈ 1.6 %). Scanning a 150k-slot contract
/// on every chunk request would cost ~40× more reads than the rest of a typical leaf.
pub const SLOT_COUNT_SCAN_LIMIT: usize = 4096;

/// Default time budget of one request (1 s). The client's `REQUEST_TIMEOUT` is 10 s and a 2 MiB
/// answer needs ~8.4 s at 2 Mbit/s, so a server that spends more than ~1.5 s reading risks
/// answering a client that has already given up. Over the budget a chunk is answered "too
/// large" (the client asks for the 16 smaller children; a chunk is never partial; the answer is
/// for that request only, never cached: it says nothing of the chunk) and
/// nodes/codes stop early with what they have. A batch of account or storage chunks starts no
/// uncached piece after the budget (each piece has a budget of its own), so it takes at most
/// three times the budget: a piece started just before the budget ends may wait up to the
/// budget for another request's read of the same chunk, then read it itself.
pub const DEFAULT_REQUEST_TIME_BUDGET: Duration = Duration::from_secs(1);

/// Most node requests served from one `GetNodes`: the protocol limit (384; the p2p decoder
/// refuses more as a breach before the server sees the request).
pub const MAX_NODES_SERVED: usize = MAX_NODES_PER_REQUEST;

/// Most code hashes served from one `GetCodes`: the protocol limit (1024; refused beyond by the
/// decoder like [`MAX_NODES_SERVED`]).
pub const MAX_CODES_SERVED: usize = MAX_CODES_PER_REQUEST;

/// Most account chunks served from one `GetChunk`: the protocol limit (256; refused beyond by the
/// decoder like [`MAX_NODES_SERVED`]). A batch stops earlier at its byte budget, and no uncached
/// piece is started after the time budget ran out.
pub const MAX_CHUNKS_SERVED: usize = MAX_CHUNKS_PER_REQUEST;

/// Most storage chunks served from one `GetStorageChunk`: the protocol limit (256; refused beyond
/// by the decoder like [`MAX_NODES_SERVED`]). A batch stops earlier at its byte budget, and no
/// uncached piece is started after the time budget ran out.
pub const MAX_STORAGE_CHUNKS_SERVED: usize = MAX_STORAGE_CHUNKS_PER_REQUEST;

/// Default byte bound of the chunk response cache (256 MiB): about 128 full 2 MiB chunks, a few
/// hundred smaller ones. That is not a state's worth: a client syncing mainnet asks its
/// depth-4 chunks, 65,536 of them (~42 GB in all). The cache serves clients that sync at the same
/// time, which ask for the same chunks in the same order within a few blocks of each other, so
/// a chunk read for one is handed to the others. Entries are least-recently-used out.
pub const DEFAULT_CACHE_BYTES: usize = 256 * 1024 * 1024;

/// Default number of blocks a cached chunk is handed out after it was read: the protocol's
/// bound, [`MAX_PIECE_AGE_BLOCKS`] (16, ~3 minutes on mainnet). A chunk is allowed to be stale
/// (the client heals what changed), and 16 blocks touch a tiny fraction of the leaves; a larger
/// value would make clients take honest pieces for lies, so the cache never uses one.
///
/// [`MAX_PIECE_AGE_BLOCKS`]: leafsync_p2p::leaf::protocol::MAX_PIECE_AGE_BLOCKS
pub const DEFAULT_CACHE_REUSE_BLOCKS: u64 = leafsync_p2p::leaf::protocol::MAX_PIECE_AGE_BLOCKS;

/// Bytes charged to the cache per entry beyond its encoded body (768): what an entry takes on the
/// heap besides its body, so that the byte bound bounds memory for tiny entries too (a client
/// can make a server keep many: 256 chunks a request, each an account and a 64-nibble prefix).
/// Measured (`tests/cache_alloc.rs`): up to 627 bytes of heap for a one-slot entry with a
/// 64-nibble prefix, body included, right after the map doubled: the map's bucket and the LRU
/// order's entry (each with the key and its own copy of the prefix), the shared chunk and its
/// body; plus the allocator's own headers on those five allocations. 128 (the value before)
/// let such a flood fill the default 256 MiB with ~1 GiB of heap.
pub const CACHE_ENTRY_OVERHEAD: usize = 768;

// The time budget must leave the client time to receive the answer.
const _: () = assert!(DEFAULT_REQUEST_TIME_BUDGET.as_millis() * 5 < REQUEST_TIMEOUT.as_millis());

/// What one request may cost: bytes in its answer and time until its deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Byte bound of the answer (the client's `max_bytes`, capped).
    pub bytes: u64,
    /// When the server stops reading.
    pub deadline: Instant,
}

/// Settings of the serve layer. Every field's default is the constant named in its doc.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServeConfig {
    /// Cap on response bytes; a client's `max_bytes` is lowered to it. Default
    /// [`SERVE_MAX_RESPONSE_BYTES`]; values above it are lowered to it by [`Self::validated`].
    pub max_response_bytes: u64,
    /// Encoded storage size up to which storage is inlined in a chunk leaf. Default
    /// [`DEFAULT_INLINE_STORAGE_BYTES`]; never more than [`INLINE_STORAGE_SLOTS_LIMIT`] slots.
    pub inline_storage_bytes: usize,
    /// Time budget per request. Default [`DEFAULT_REQUEST_TIME_BUDGET`].
    pub request_time_budget: Duration,
    /// Byte bound of the chunk cache; 0 disables it. Default [`DEFAULT_CACHE_BYTES`].
    pub cache_bytes: usize,
    /// Blocks a cached chunk is reused for. Default [`DEFAULT_CACHE_REUSE_BLOCKS`]; 0 means
    /// only while the head has not moved; more than the default is used as the default.
    pub cache_reuse_blocks: u64,
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            max_response_bytes: SERVE_MAX_RESPONSE_BYTES,
            inline_storage_bytes: DEFAULT_INLINE_STORAGE_BYTES,
            request_time_budget: DEFAULT_REQUEST_TIME_BUDGET,
            cache_bytes: DEFAULT_CACHE_BYTES,
            cache_reuse_blocks: DEFAULT_CACHE_REUSE_BLOCKS,
        }
    }
}

impl ServeConfig {
    /// The config with protocol ceilings applied: response cap at most
    /// [`SERVE_MAX_RESPONSE_BYTES`] (and at least [`MIN_CHUNK_BYTES_CLASS`]).
    pub fn validated(mut self) -> Self {
        self.max_response_bytes =
            self.max_response_bytes.clamp(MIN_CHUNK_BYTES_CLASS, SERVE_MAX_RESPONSE_BYTES);
        self
    }

    /// The budget of one request starting now: the client's `max_bytes` as honoured and the
    /// deadline of [`Self::request_time_budget`].
    pub fn budget(&self, max_bytes: u64) -> Budget {
        Budget {
            bytes: self.effective_max_bytes(max_bytes),
            deadline: Instant::now() + self.request_time_budget,
        }
    }

    /// A client's `max_bytes` as the server honours it: at most the response cap.
    pub fn effective_max_bytes(&self, requested: u64) -> u64 {
        requested.min(self.max_response_bytes)
    }

    /// The byte bound a chunk is computed with for a client's `max_bytes`: the next power of two
    /// at or above the honoured `max_bytes`, between [`MIN_CHUNK_BYTES_CLASS`] and the response
    /// cap. All clients in one class share a cached chunk; the work per request is at most twice
    /// what the client asked for.
    pub fn chunk_bytes_class(&self, requested: u64) -> u64 {
        let honoured = self.effective_max_bytes(requested).max(MIN_CHUNK_BYTES_CLASS);
        honoured.checked_next_power_of_two().unwrap_or(u64::MAX).min(self.max_response_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_are_bounded_and_cover_the_request() {
        let c = ServeConfig::default();
        assert_eq!(c.chunk_bytes_class(0), MIN_CHUNK_BYTES_CLASS);
        assert_eq!(c.chunk_bytes_class(16 * 1024 + 1), 32 * 1024);
        assert_eq!(c.chunk_bytes_class(1_500_000), 2 * 1024 * 1024);
        assert_eq!(c.chunk_bytes_class(u64::MAX), SERVE_MAX_RESPONSE_BYTES);
        for requested in [1u64, 5000, 70_000, 1 << 20, 3 << 20] {
            assert!(c.chunk_bytes_class(requested) >= c.effective_max_bytes(requested));
        }
    }

    #[test]
    fn validated_applies_protocol_ceilings() {
        let c = ServeConfig { max_response_bytes: u64::MAX, ..ServeConfig::default() }.validated();
        assert_eq!(c.max_response_bytes, SERVE_MAX_RESPONSE_BYTES);
        let c = ServeConfig { max_response_bytes: 0, ..ServeConfig::default() }.validated();
        assert_eq!(c.max_response_bytes, MIN_CHUNK_BYTES_CLASS);
    }
}
