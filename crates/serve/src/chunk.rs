//! `GetChunk` and `GetStorageChunk`: the complete list of leaves under a prefix, or "too large".
//!
//! A chunk is never partial. It is "too large" when its encoded item list exceeds the byte bound
//! and holds more than one item (a single item is always sent, so a client asking for ever longer
//! prefixes always makes progress), or when the time budget ran out before the last item; a
//! [`ChunkRead`] says which, so that only the first is cached. A `Chunk` or `StorageChunk` is a
//! batch of such chunks, one piece per requested prefix or (account, prefix), filled as
//! [`PieceBudget`] says.

use std::time::Instant;

use alloy_primitives::{B256, U256};
use alloy_rlp::{Encodable, Header};
use alloy_trie::EMPTY_ROOT_HASH;
use leafsync_leafdb::{KvStore, LeafDbError, LeafSnapshot};
use leafsync_p2p::leaf::{
    AccountLeaf, AccountPiece, AccountStorage, Chunk, ChunkContent, GetChunk, GetStorageChunk,
    StorageChunk, StoragePiece, StorageSlot, WirePath,
};

use crate::{
    config::{
        Budget, INLINE_STORAGE_SLOTS_LIMIT, MAX_CHUNKS_SERVED, MAX_STORAGE_CHUNKS_SERVED,
        SLOT_COUNT_SCAN_LIMIT, ServeConfig,
    },
    error::ServeError,
};

/// The head number a snapshot serves (0 for a leafdb without a head yet).
pub fn head_number<S: KvStore>(snap: &LeafSnapshot<'_, S>) -> u64 {
    snap.head().map_or(0, |h| h.number)
}

/// Answers `GetChunk` from `snap` with the client's `max_bytes` (capped by the server limit):
/// one piece per requested prefix (at most [`MAX_CHUNKS_SERVED`]), each complete or "too large"
/// against `max_bytes`, as many as [`PieceBudget`] admits and the time budget allows (the first
/// always). The uncached form of what [`crate::LeafServer`] answers.
pub fn serve_chunk<S: KvStore>(
    snap: &LeafSnapshot<'_, S>,
    request: &GetChunk,
    config: &ServeConfig,
) -> Result<Chunk, ServeError> {
    let budget = config.budget(request.max_bytes);
    let prefixes = request.prefixes.iter().take(MAX_CHUNKS_SERVED);
    let pieces = collect_pieces(prefixes, budget, |prefix| {
        let content = account_chunk(snap, prefix, budget.bytes, config, budget.deadline)?.content;
        Ok(AccountPiece { head_number: head_number(snap), content })
    })?;
    Ok(Chunk { pieces })
}

/// Answers `GetStorageChunk` from `snap` with the client's `max_bytes` (capped): one piece per
/// requested chunk (at most [`MAX_STORAGE_CHUNKS_SERVED`]), each complete or "too large" against
/// `max_bytes`, as many as [`PieceBudget`] admits and the time budget allows (the first always).
/// The uncached form of what [`crate::LeafServer`] answers.
pub fn serve_storage_chunk<S: KvStore>(
    snap: &LeafSnapshot<'_, S>,
    request: &GetStorageChunk,
    config: &ServeConfig,
) -> Result<StorageChunk, ServeError> {
    let budget = config.budget(request.max_bytes);
    let chunks = request.chunks.iter().take(MAX_STORAGE_CHUNKS_SERVED);
    let pieces = collect_pieces(chunks, budget, |chunk| {
        let (account, prefix) = (&chunk.account, &chunk.prefix);
        let read = storage_chunk(snap, account, prefix, budget.bytes, budget.deadline)?;
        Ok(StoragePiece { head_number: head_number(snap), content: read.content })
    })?;
    Ok(StorageChunk { pieces })
}

/// An answer's pieces, one per request item made by `piece`, as many as [`PieceBudget`] admits
/// within `budget`'s bytes and before its deadline (the first always).
fn collect_pieces<I, P: Encodable>(
    items: impl Iterator<Item = I>,
    budget: Budget,
    mut piece: impl FnMut(I) -> Result<P, ServeError>,
) -> Result<Vec<P>, ServeError> {
    let mut fill = PieceBudget::new(budget.bytes);
    let mut pieces = Vec::new();
    for item in items {
        if !pieces.is_empty() && Instant::now() > budget.deadline {
            break;
        }
        let piece = piece(item)?;
        if !fill.admit(piece.length()) {
            break;
        }
        pieces.push(piece);
    }
    Ok(pieces)
}

/// How a `Chunk` or `StorageChunk` fills its byte budget: the first piece always goes in (so a client
/// always makes progress), each further one only if the pieces so far and it encode to at most
/// the honoured `max_bytes`. A piece is at most `max_bytes` itself (or "too large"), so an answer
/// never exceeds `max_bytes` plus its list headers.
#[derive(Debug, Clone, Copy)]
pub struct PieceBudget {
    limit: u64,
    used: u64,
    pieces: usize,
}

impl PieceBudget {
    /// A budget of `limit` bytes (the client's `max_bytes` as honoured).
    pub const fn new(limit: u64) -> Self {
        Self { limit, used: 0, pieces: 0 }
    }

    /// Whether a piece that encodes to `len` bytes goes in; if so it is counted.
    pub fn admit(&mut self, len: usize) -> bool {
        let used = self.used.saturating_add(len as u64);
        if self.pieces > 0 && used > self.limit {
            return false;
        }
        self.used = used;
        self.pieces += 1;
        true
    }
}

/// Fewest encoded bytes of items for which a chunk is cached (4 KiB): below it a chunk is read
/// again rather than kept ([`ChunkRead::cacheable`]).
pub const MIN_CACHED_CHUNK_BYTES: usize = 4096;

/// A chunk as read: its content, and whether a "too large" came from the time budget rather than
/// from the chunk's size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkRead<T> {
    /// The complete item list, or "too large".
    pub content: ChunkContent<T>,
    /// Whether the content is "too large" only because the deadline passed before the last
    /// item. Such an answer is true for its asker, at that moment, but says nothing of the
    /// chunk: it is never cached, or one load spike would tell every client "too large" for
    /// the chunk for the whole reuse window (and clients bench a server whose "too large"
    /// chunks turn out small).
    pub timed_out: bool,
}

impl<T: Encodable> ChunkRead<T> {
    /// Whether the content is worth caching: it says something of the chunk itself, true for as
    /// long as the chunk is unchanged (anything but a time-out), and it costs more to read again
    /// than to keep: "too large", or items of at least [`MIN_CACHED_CHUNK_BYTES`]. A chunk of a
    /// few items (an unknown account's storage, a prefix of one leaf) is one seek to read and
    /// [`crate::config::CACHE_ENTRY_OVERHEAD`] to keep; kept, a client asking for many of them
    /// (256 a request, all different, in each byte class) pushed every real chunk out of the
    /// cache for a few hundred bytes downloaded per entry. Honest clients ask for chunks of
    /// tens of KiB and more.
    pub fn cacheable(&self) -> bool {
        !self.timed_out
            && match &self.content {
                ChunkContent::TooLarge => true,
                ChunkContent::Items(items) => items.length() >= MIN_CACHED_CHUNK_BYTES,
            }
    }
}

/// Every account leaf under `prefix` if their encoded list fits in `limit` bytes (or is a single
/// leaf) and is read before `deadline`; "too large" otherwise (the [`ChunkRead`] says whether
/// for lack of time).
pub fn account_chunk<S: KvStore>(
    snap: &LeafSnapshot<'_, S>,
    prefix: &WirePath,
    limit: u64,
    config: &ServeConfig,
    deadline: Instant,
) -> Result<ChunkRead<AccountLeaf>, ServeError> {
    let prefix = alloy_trie::Nibbles::from(prefix);
    // The accounts' storages lie in their order: one walk reads them all.
    let mut storages = snap.storage_walk(&prefix)?;
    let leaves = snap.accounts_with_prefix(&prefix).map(|item| {
        let (hashed_address, account) = item?;
        let storage: AccountStorage = if account.storage_root == EMPTY_ROOT_HASH {
            AccountStorage::Inline(Vec::new())
        } else {
            let slots = storages.slots(&hashed_address)?;
            account_storage(slots, config.inline_storage_bytes)?
        };
        Ok::<_, ServeError>(AccountLeaf {
            hashed_address,
            nonce: account.nonce,
            balance: account.balance,
            storage_root: account.storage_root,
            code_hash: account.code_hash,
            storage,
        })
    });
    collect_complete(leaves, limit, deadline)
}

/// Every storage slot of `account` under `prefix`, with the same rules as [`account_chunk`]. An
/// unknown account has no slots: the empty list.
pub fn storage_chunk<S: KvStore>(
    snap: &LeafSnapshot<'_, S>,
    account: &B256,
    prefix: &WirePath,
    limit: u64,
    deadline: Instant,
) -> Result<ChunkRead<StorageSlot>, ServeError> {
    let slots = snap.storage_with_prefix(account, &alloy_trie::Nibbles::from(prefix)).map(|item| {
        let (hashed_slot, value) = item?;
        Ok::<_, ServeError>(StorageSlot { hashed_slot, value })
    });
    collect_complete(slots, limit, deadline)
}

/// The storage of one account (`slots`, in key order) as a chunk leaf carries it: inline when at
/// most `inline_bytes` encoded and at most [`INLINE_STORAGE_SLOTS_LIMIT`] slots, else the "large
/// storage" mark with the slot count (see [`SLOT_COUNT_SCAN_LIMIT`]: exact up to it, estimated beyond). Reads at most
/// [`SLOT_COUNT_SCAN_LIMIT`] slots, however large the storage.
pub fn account_storage(
    mut slots: impl Iterator<Item = Result<(B256, U256), LeafDbError>>,
    inline_bytes: usize,
) -> Result<AccountStorage, ServeError> {
    let mut inline = Vec::new();
    let mut inline_size = 0usize;
    for item in slots.by_ref() {
        let (hashed_slot, value) = item?;
        let slot = StorageSlot { hashed_slot, value };
        inline_size += slot.length();
        inline.push(slot);
        if inline.len() > INLINE_STORAGE_SLOTS_LIMIT || inline_size > inline_bytes {
            let mut seen = inline.len();
            let mut last = hashed_slot;
            while seen < SLOT_COUNT_SCAN_LIMIT {
                match slots.next() {
                    Some(item) => {
                        last = item?.0;
                        seen += 1;
                    }
                    None => return Ok(AccountStorage::Large { slot_count: seen as u64 }),
                }
            }
            let slot_count = match slots.next() {
                None => seen as u64,
                Some(item) => {
                    item?;
                    estimate_slot_count(seen as u64, &last)
                }
            };
            return Ok(AccountStorage::Large { slot_count });
        }
    }
    Ok(AccountStorage::Inline(inline))
}

/// Estimates how many uniformly spread hashed keys a trie holds when its `seen` smallest keys end
/// at `last`: they cover the fraction `last / 2^256` of the key space, so the total is about
/// `seen / fraction`. Never less than `seen + 1` (more keys were seen to follow).
pub fn estimate_slot_count(seen: u64, last: &B256) -> u64 {
    let mut top = [0u8; 8];
    top.copy_from_slice(&last[..8]);
    // The next key up bounds the covered fraction from above; +1 avoids a zero fraction.
    let fraction = (u64::from_be_bytes(top) as f64 + 1.0) / 18_446_744_073_709_551_616.0;
    let estimate = (seen as f64 / fraction).min(u64::MAX as f64) as u64;
    estimate.max(seen.saturating_add(1))
}

/// Size of an RLP list whose items encode to `payload` bytes.
fn list_size(payload: u64) -> u64 {
    let header = Header { list: true, payload_length: payload as usize };
    payload + header.length() as u64
}

/// Collects the complete list, or "too large" once it holds two or more items and exceeds
/// `limit`, or (`timed_out`) once `deadline` has passed with another item still to come.
fn collect_complete<T: Encodable>(
    items: impl Iterator<Item = Result<T, ServeError>>,
    limit: u64,
    deadline: Instant,
) -> Result<ChunkRead<T>, ServeError> {
    let too_large = |timed_out| Ok(ChunkRead { content: ChunkContent::TooLarge, timed_out });
    let mut out = Vec::new();
    let mut payload = 0u64;
    for item in items {
        let item = item?;
        if !out.is_empty() && Instant::now() > deadline {
            return too_large(true);
        }
        payload += item.length() as u64;
        out.push(item);
        if out.len() > 1 && list_size(payload) > limit {
            return too_large(false);
        }
    }
    Ok(ChunkRead { content: ChunkContent::Items(out), timed_out: false })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn far() -> Instant {
        Instant::now() + Duration::from_secs(60)
    }

    fn slots(n: u8) -> Vec<Result<StorageSlot, ServeError>> {
        (0..n)
            .map(|i| {
                Ok(StorageSlot {
                    hashed_slot: B256::repeat_byte(i),
                    value: alloy_primitives::U256::from(1u64),
                })
            })
            .collect()
    }

    #[test]
    fn complete_or_too_large() {
        let all = alloy_rlp::encode(slots(10).into_iter().map(Result::unwrap).collect::<Vec<_>>());
        let exact = all.len() as u64;
        let collect = |n, limit| collect_complete(slots(n).into_iter(), limit, far()).unwrap();
        assert_eq!(collect(10, exact).content.len(), 10);
        let too_large = ChunkRead { content: ChunkContent::TooLarge, timed_out: false };
        assert_eq!(collect(10, exact - 1), too_large);
        assert!(too_large.cacheable(), "too large for its size: true for every asker");
        // A single item is always sent, whatever the limit; two are not.
        assert_eq!(collect(1, 0).content.len(), 1);
        assert_eq!(collect(2, 0), too_large);
        assert_eq!(collect(0, 0).content.len(), 0);
        assert!(!collect(0, 0).cacheable(), "an empty chunk is cheaper to read than to keep");
        assert!(!collect(1, 0).cacheable(), "so is a chunk of one slot");
        let many = collect(200, u64::MAX);
        assert!(many.content.length() >= MIN_CACHED_CHUNK_BYTES && many.cacheable());
    }

    #[test]
    fn deadline_gives_too_large_unless_single() {
        let past = Instant::now();
        std::thread::sleep(Duration::from_millis(2));
        let late = collect_complete(slots(3).into_iter(), u64::MAX, past).unwrap();
        assert_eq!(late, ChunkRead { content: ChunkContent::TooLarge, timed_out: true });
        assert!(!late.cacheable(), "a time-out says nothing of the chunk");
        let single = collect_complete(slots(1).into_iter(), u64::MAX, past).unwrap();
        assert_eq!(single.content.len(), 1);
        assert!(!single.cacheable(), "one slot: cheaper to read again than to keep");
    }

    #[test]
    fn a_piece_budget_always_admits_the_first_piece_and_stops_before_the_limit() {
        let mut fill = PieceBudget::new(100);
        assert!(fill.admit(150), "the first piece goes in, whatever its size");
        assert!(!fill.admit(1));
        let mut fill = PieceBudget::new(100);
        assert!(fill.admit(60));
        assert!(fill.admit(40), "exactly at the limit");
        assert!(!fill.admit(1));
        let mut fill = PieceBudget::new(100);
        assert!(fill.admit(60));
        assert!(!fill.admit(41), "a piece that would cross the limit stops the answer");
    }

    #[test]
    fn estimate_is_close_for_uniform_keys() {
        // 4096 of 100_000 uniform keys end near 4096/100_000 of the key space.
        let fraction = 4096.0 / 100_000.0;
        let top = (fraction * 18_446_744_073_709_551_616.0) as u64;
        let mut last = B256::ZERO;
        last[..8].copy_from_slice(&top.to_be_bytes());
        let estimate = estimate_slot_count(4096, &last);
        assert!((99_000..=101_000).contains(&estimate), "{estimate}");
        assert_eq!(estimate_slot_count(10, &B256::repeat_byte(0xff)), 11);
    }
}
