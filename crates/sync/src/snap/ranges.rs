//! Chunks through snap/1 ranges: a `leaf/1` chunk of a prefix is the key range
//! `prefix‖00… ..= prefix‖ff…`, asked with `GetAccountRange` / `GetStorageRanges` and continued
//! from the last key until the range is covered, the chunk passes its `max_bytes` ("too large",
//! the syncer splits it) or [`max_rounds`] is spent (what came is returned and judged by the
//! skeleton hash).
//!
//! When a range is covered: an item past its end came (servers send the first one past the
//! limit), the last item is the end itself, the answer holds no item but a proof (nothing more
//! from the origin on), or a storage answer holds no proof (the whole storage came uncut). An
//! answer with no item and no proof is "no state for this root".

use alloy_primitives::{B256, Bytes, U256};
use alloy_rlp::Encodable;
use futures::{StreamExt, stream::FuturesOrdered};
use leafsync_p2p::{
    leaf::{
        AccountLeaf, AccountPiece, AccountStorage, ChainHead, Chunk, ChunkContent, GetChunk,
        GetStorageChunk, StorageChunk, StoragePiece, StoragePrefix, StorageSlot, WirePath,
    },
    requests::LeafResponse,
    snap::{EMPTY_ROOT_HASH, GetAccountRange, GetStorageRanges, SnapMessage},
};

use super::{
    Fault, Inner, MIN_RESPONSE_BYTES, max_rounds,
    storages::{STORAGE_BATCH, inline_storages, list_bytes, slot_value, slots, whole_lists},
};

/// The first and last 32-byte keys under `prefix`.
pub(crate) fn prefix_bounds(prefix: &WirePath) -> (B256, B256) {
    let (mut low, mut high) = ([0u8; 32], [0xffu8; 32]);
    for (i, nibble) in prefix.as_slice().iter().enumerate().take(64) {
        let shift = if i % 2 == 0 { 4 } else { 0 };
        let byte = i / 2;
        low[byte] = (low[byte] & !(0x0f << shift)) | ((nibble & 0x0f) << shift);
        high[byte] = (high[byte] & !(0x0f << shift)) | ((nibble & 0x0f) << shift);
    }
    (B256::from(low), B256::from(high))
}

/// The key after `key`, `None` after the last.
fn next_key(key: B256) -> Option<B256> {
    U256::from_be_bytes(key.0).checked_add(U256::from(1u8)).map(|k| B256::from(k.to_be_bytes()))
}

/// Whether `keys` are strictly increasing and none is before `origin`, checked over the whole
/// answer before any of it is read: a key past the range's limit ends the reading, and a list
/// out of order after it must not pass as a shorter, well-formed answer.
fn ordered_from(origin: B256, keys: impl Iterator<Item = B256>) -> bool {
    let mut previous: Option<B256> = None;
    for key in keys {
        if key < origin || previous.is_some_and(|p| p >= key) {
            return false;
        }
        previous = Some(key);
    }
    true
}

/// Where a range stands after one answer.
enum Progress {
    /// Asked again from the key after the last one that came.
    Continue,
    /// Every key of the range came.
    Covered,
    /// The range holds more than the chunk's `max_bytes`.
    TooLarge,
}

/// How far past `max_bytes` the items read so far must project a storage range, spread over
/// its keys, to call it "too large" before reading it up to `max_bytes` (1.25×). Hashed keys are
/// uniform: a first answer of thousands of slots projects the whole within a few percent, so
/// only a range clearly too large is cut short; one near `max_bytes` is read on and judged by
/// its bytes. A server that skews its answers costs a needless split (more requests, each
/// checked by its hash), no more.
pub(crate) const TOO_LARGE_MARGIN: f64 = 1.25;

/// Share of `max_bytes` the first round of a storage range asks for (an eighth: 256 KiB of
/// 2 MiB, thousands of slots). A leaf/1 server knows a storage's size and says "too large" for
/// nothing; a snap/1 server must be read to find out, and a storage of gigabytes is split level
/// by level, each of its units read until it shows too large: an eighth of `max_bytes` each,
/// where reading to `max_bytes` cost the whole of it. A range larger than that takes one round
/// trip more.
pub(crate) const SIZING_SHARE: u64 = 8;

/// The first round's budget of a storage range read against `max_bytes` ([`SIZING_SHARE`]),
/// never below [`MIN_RESPONSE_BYTES`].
fn sizing_bytes(max_bytes: u64) -> u64 {
    (max_bytes / SIZING_SHARE).max(MIN_RESPONSE_BYTES)
}

/// One chunk's key range, `prefix‖00… ..= prefix‖ff…`, read over as many snap/1 rounds as it
/// takes (see the module docs for when it is covered).
struct RangeRead {
    /// The range's first key.
    first: B256,
    origin: B256,
    limit: B256,
    max_bytes: u64,
    /// Bytes of the items kept so far.
    bytes: u64,
}

impl RangeRead {
    fn new(prefix: &WirePath, max_bytes: u64) -> Self {
        let (origin, limit) = prefix_bounds(prefix);
        Self { first: origin, origin, limit, max_bytes, bytes: 0 }
    }

    /// Whether the items so far, spread over the whole range as hashed keys are, make clearly
    /// more than `max_bytes` ([`TOO_LARGE_MARGIN`] times it): the range is "too large" without
    /// reading up to `max_bytes` of it. Only a sample of at least half a sizing round's bytes
    /// ([`sizing_bytes`]) is projected: a server could otherwise have a unit split for the
    /// price of a few slots (as it is, a lie costs it about what an honest answer does).
    fn looks_too_large(&self) -> bool {
        if self.bytes < sizing_bytes(self.max_bytes) / 2 {
            return false;
        }
        let first = U256::from_be_bytes(self.first.0);
        let read = U256::from_be_bytes(self.origin.0).saturating_sub(first);
        // The whole key space is 2^256 keys; one fewer is as good a fraction's denominator.
        let range =
            U256::from_be_bytes(self.limit.0).saturating_sub(first).saturating_add(U256::from(1u8));
        // Both to 64 significant bits: a fraction is all that is needed.
        let shift = range.bit_len().saturating_sub(64);
        let read = (read >> shift).saturating_to::<u64>() as f64;
        let range = (range >> shift).saturating_to::<u64>() as f64;
        read > 0.0 && self.bytes as f64 * range / read > self.max_bytes as f64 * TOO_LARGE_MARGIN
    }

    /// The budget of the next round: the peer's, but no more than the chunk may still take
    /// (plus one byte, so that a chunk over `max_bytes` shows as such).
    fn budget(&self, inner: &Inner) -> u64 {
        inner.budget().min(self.max_bytes.saturating_sub(self.bytes).saturating_add(1))
    }

    /// What `max_bytes` leaves after the items kept.
    fn room(&self) -> u64 {
        self.max_bytes.saturating_sub(self.bytes)
    }

    /// Reads one non-empty answer: checks the order of all its `items` first (`disorder` names
    /// the fault), then hands each item up to the range's end to `keep`, which returns its size.
    /// `whole`: the answer says nothing lies past its last item (a storage answer without a
    /// proof).
    fn read<T>(
        &mut self,
        items: Vec<T>,
        key: impl Fn(&T) -> B256,
        whole: bool,
        disorder: &'static str,
        mut keep: impl FnMut(T) -> Result<u64, Fault>,
    ) -> Result<Progress, Fault> {
        if !ordered_from(self.origin, items.iter().map(&key)) {
            return Err(Fault::Malformed(disorder));
        }
        let mut covered = whole;
        let mut previous = None;
        for item in items {
            let item_key = key(&item);
            previous = Some(item_key);
            if item_key > self.limit {
                covered = true;
                break;
            }
            self.bytes += keep(item)?;
            if item_key == self.limit {
                covered = true;
                break;
            }
        }
        if self.bytes > self.max_bytes {
            return Ok(Progress::TooLarge);
        }
        match previous.and_then(next_key) {
            Some(next) if !covered => {
                self.origin = next;
                Ok(Progress::Continue)
            }
            _ => Ok(Progress::Covered),
        }
    }
}

/// The account chunks of `req`, read side by side and answered in order as [`in_order`] keeps
/// them. Each as [`account_piece`] reads it.
pub(crate) async fn account_chunk(
    inner: &Inner,
    pivot: &ChainHead,
    req: GetChunk,
) -> Result<LeafResponse, Fault> {
    let max_bytes = req.max_bytes;
    let reads = req.prefixes.iter().map(|prefix| account_read(inner, pivot, prefix, max_bytes));
    let pieces = in_order(inner, pivot.state_root, reads.collect(), max_bytes).await?;
    Ok(LeafResponse::Chunk(Chunk { pieces }))
}

/// The account chunk of `prefix` as a [`Read`] of its own.
async fn account_read(
    inner: &Inner,
    pivot: &ChainHead,
    prefix: &WirePath,
    max_bytes: u64,
) -> Result<Read<AccountPiece>, Fault> {
    let content = account_piece(inner, pivot, prefix, max_bytes).await?;
    Ok(Read { pieces: vec![AccountPiece { head_number: pivot.number, content }], whole: true })
}

/// What one read of a request brought: the pieces of some consecutive chunks, in order, and
/// whether it covered all of them (`false`: it stopped at the request's `max_bytes`).
struct Read<P> {
    pieces: Vec<P>,
    whole: bool,
}

/// Reads of one request running at once, at most (4). Each is a chain of snap/1 round trips
/// that brings up to the request's `max_bytes` of pieces.
pub(crate) const READS_AT_ONCE: usize = 4;

/// How many times the request's `max_bytes` the pieces of an answer may reach before the reads
/// still running are dropped (2): one read more can bring `max_bytes`, so an answer holds at
/// most three times `max_bytes` (five, with every running read kept), where the syncer counts
/// one per request in flight.
pub(crate) const KEPT_PAST_MAX: u64 = 2;

/// The pieces of `reads` (each of some consecutive chunks of one request, in the request's
/// order), in order. Up to [`READS_AT_ONCE`] reads run side by side, each a chain of snap/1
/// round trips (a range continued from its last key), so that a request of several chunks
/// takes about its longest chain rather than their sum; the peer's cap on requests in flight is
/// kept by [`Inner::ask`]. No read starts once the pieces so far reach `max_bytes` (the
/// `leaf/1` server's rule: the syncer asks for the chunks after them again), but the pieces of
/// reads already running are kept, until they reach [`KEPT_PAST_MAX`] times `max_bytes`: the
/// syncer's batches are sized by estimates, and pieces read only to be dropped were 11% of a
/// 4M-account sync's bytes; past that the reads still running are dropped, which bounds the
/// answer's memory (a peer answering every read at once with `max_bytes` of pieces, and the
/// first read last, would otherwise bring five times it). A read that stopped short of its
/// chunks (at `max_bytes`) ends the answer, since the pieces after it would not follow their
/// chunks; the reads after it are dropped (not the peer's fault). So does a read that found the
/// peer without state for the pivot's `root` (a server whose root fell out of its window mid
/// request): the pieces before it are answered and judged as any others (so a lie in them
/// still costs the peer), and the peer is marked; with no piece before it, the answer is the
/// no-state one. Any other error of a read fails the request once the pieces reach it.
async fn in_order<P: Encodable>(
    inner: &Inner,
    root: B256,
    reads: Vec<impl Future<Output = Result<Read<P>, Fault>>>,
    max_bytes: u64,
) -> Result<Vec<P>, Fault> {
    let mut waiting = reads.into_iter();
    let mut running: FuturesOrdered<_> = waiting.by_ref().take(READS_AT_ONCE).collect();
    let (mut pieces, mut bytes) = (Vec::new(), 0u64);
    while let Some(read) = running.next().await {
        let read = match read {
            Err(Fault::NoState) if !pieces.is_empty() => {
                inner.lacks_state(root);
                break;
            }
            read => read?,
        };
        for piece in read.pieces {
            bytes += piece.length() as u64;
            pieces.push(piece);
        }
        if !read.whole || bytes >= max_bytes.saturating_mul(KEPT_PAST_MAX) {
            break;
        }
        if bytes < max_bytes
            && let Some(next) = waiting.next()
        {
            running.push_back(next);
        }
    }
    Ok(pieces)
}

/// The account chunk of `prefix` at the pivot's root.
async fn account_piece(
    inner: &Inner,
    pivot: &ChainHead,
    prefix: &WirePath,
    max_bytes: u64,
) -> Result<ChunkContent<AccountLeaf>, Fault> {
    let mut range = RangeRead::new(prefix, max_bytes);
    let mut leaves: Vec<AccountLeaf> = Vec::new();
    for _ in 0..max_rounds(max_bytes) {
        let request = GetAccountRange {
            request_id: 0,
            root: pivot.state_root,
            origin: range.origin,
            limit: range.limit,
            bytes: range.budget(inner),
        };
        let answer = match inner.ask(SnapMessage::GetAccountRange(request)).await? {
            SnapMessage::AccountRange(answer) => answer,
            _ => return Err(Fault::Malformed("answer of another kind to GetAccountRange")),
        };
        let progress = if answer.accounts.is_empty() {
            if answer.proof.is_empty() {
                return Err(Fault::NoState);
            }
            Progress::Covered
        } else {
            range.read(
                answer.accounts,
                |item| item.hash,
                false,
                "accounts out of order or before the origin",
                |item| {
                    let (Some(storage_root), Some(code_hash)) =
                        (item.account.storage_root(), item.account.code_hash())
                    else {
                        return Err(Fault::Malformed(
                            "slim account field neither empty nor 32 bytes",
                        ));
                    };
                    // Marked here; `inline_storages` inlines the storages that come whole.
                    let storage = if storage_root == EMPTY_ROOT_HASH {
                        AccountStorage::Inline(Vec::new())
                    } else {
                        AccountStorage::Large { slot_count: 0 }
                    };
                    let size = 32 + item.account.length() as u64;
                    leaves.push(AccountLeaf {
                        hashed_address: item.hash,
                        nonce: item.account.nonce,
                        balance: item.account.balance,
                        storage_root,
                        code_hash,
                        storage,
                    });
                    Ok(size)
                },
            )?
        };
        match progress {
            Progress::Continue => {}
            Progress::TooLarge => return Ok(ChunkContent::TooLarge),
            Progress::Covered => {
                inline_storages(inner, pivot.state_root, &mut leaves, range.room()).await?;
                return Ok(ChunkContent::Items(leaves));
            }
        }
    }
    // Starved: what came is judged by the skeleton hash.
    Ok(ChunkContent::Items(leaves))
}

/// The storage chunks of `req`, read side by side and answered in order as [`in_order`] keeps
/// them. Whole storages (an empty prefix) next to each other are read [`STORAGE_BATCH`] at a
/// time, several accounts per `GetStorageRanges` ([`whole_storages`]), as snap/1 allows; a chunk
/// under a prefix is a read of its own ([`storage_piece`]).
pub(crate) async fn storage_chunk(
    inner: &Inner,
    pivot: &ChainHead,
    req: GetStorageChunk,
) -> Result<LeafResponse, Fault> {
    let mut runs: Vec<&[StoragePrefix]> = Vec::new();
    let mut rest = req.chunks.as_slice();
    while !rest.is_empty() {
        let whole = rest.iter().take_while(|c| c.prefix.is_empty()).take(STORAGE_BATCH).count();
        let (run, after) = rest.split_at(whole.max(1));
        runs.push(run);
        rest = after;
    }
    let reads = runs.into_iter().map(|run| storage_run(inner, pivot, run, req.max_bytes));
    let pieces = in_order(inner, pivot.state_root, reads.collect(), req.max_bytes).await?;
    Ok(LeafResponse::StorageChunk(StorageChunk { pieces }))
}

/// The storage chunks of `run` (one chunk, or whole storages only) in order, until the pieces
/// so far reach `max_bytes` or the server says it has no state for the root: whole storages
/// several accounts per `GetStorageRanges`, a storage cut by that request's budget, or a chunk
/// under a prefix, as [`storage_piece`] asks it.
async fn storage_run(
    inner: &Inner,
    pivot: &ChainHead,
    run: &[StoragePrefix],
    max_bytes: u64,
) -> Result<Read<StoragePiece>, Fault> {
    let mut pieces = Vec::new();
    let mut bytes = 0u64;
    let mut next = 0;
    // Set when the server says it has no state for the root (any more): the run ends there.
    let mut lacking = false;
    while !lacking && next < run.len() && (pieces.is_empty() || bytes < max_bytes) {
        let accounts: Vec<B256> = run[next..].iter().map(|c| c.account).collect();
        let (mut contents, cut) = if accounts.len() > 1 {
            let room = max_bytes.saturating_sub(bytes).max(1);
            match whole_storages(inner, pivot, &accounts, max_bytes, room).await {
                Err(Fault::NoState) => {
                    lacking = true;
                    (Vec::new(), Vec::new())
                }
                answer => answer?,
            }
        } else {
            (Vec::new(), Vec::new())
        };
        if !lacking && contents.len() < accounts.len() {
            // The next chunk, continued after what its cut storage brought, if anything.
            let chunk = &run[next + contents.len()];
            match storage_piece(inner, pivot, chunk, max_bytes, cut).await {
                Err(Fault::NoState) => lacking = true,
                piece => contents.push(piece?),
            }
        }
        for content in contents {
            let piece = StoragePiece { head_number: pivot.number, content };
            bytes += piece.length() as u64;
            pieces.push(piece);
            next += 1;
        }
    }
    // The pieces before a no-state answer stand, judged as any others (a run cut short); the
    // peer is marked. Without any, the read is the no-state answer.
    match (lacking, pieces.is_empty()) {
        (true, true) => return Err(Fault::NoState),
        (true, false) => inner.lacks_state(pivot.state_root),
        (false, _) => {}
    }
    Ok(Read { pieces, whole: next == run.len() })
}

/// Whole storages of `accounts` from one `GetStorageRanges` within `room` bytes: the storages
/// that came uncut, in order (a storage over `max_bytes` as "too large"), and the checked slots
/// of the storage the budget cut after them (empty if none came), which the caller continues.
async fn whole_storages(
    inner: &Inner,
    pivot: &ChainHead,
    accounts: &[B256],
    max_bytes: u64,
    room: u64,
) -> Result<(Vec<ChunkContent<StorageSlot>>, Vec<StorageSlot>), Fault> {
    let request = GetStorageRanges {
        request_id: 0,
        root: pivot.state_root,
        accounts: accounts.to_vec(),

        origin: Bytes::new(),
        limit: Bytes::new(),
        bytes: inner.budget().min(room),
    };
    let answer = inner.storage_ranges(request).await?;
    if answer.slots.is_empty() && answer.proof.is_empty() {
        // Every account asked has storage: nothing at all is "no state".
        return Err(Fault::NoState);
    }
    // A proof means the last list was cut; with no list at all nothing came, and the first
    // storage is read on its own (`storage_run`).
    let whole = whole_lists(&answer);
    let mut contents = Vec::with_capacity(whole);
    let mut lists = answer.slots.into_iter();
    for list in lists.by_ref().take(whole) {
        let size = list_bytes(&list);
        // An empty list fails the account's storage root in the syncer, as any wrong one.
        let slots = slots(list)?;
        contents.push(if size > max_bytes {
            ChunkContent::TooLarge
        } else {
            ChunkContent::Items(slots)
        });
    }
    let cut = match lists.next() {
        Some(list) => slots(list)?,
        None => Vec::new(),
    };
    Ok((contents, cut))
}

/// The storage chunk of `req.account` under `req.prefix` at the pivot's root, continued after
/// `start` (checked slots of its beginning that an earlier request brought; empty: from the
/// prefix's first key).
async fn storage_piece(
    inner: &Inner,
    pivot: &ChainHead,
    req: &StoragePrefix,
    max_bytes: u64,
    start: Vec<StorageSlot>,
) -> Result<ChunkContent<StorageSlot>, Fault> {
    let mut range = RangeRead::new(&req.prefix, max_bytes);
    if let Some(last) = start.last() {
        let (first_key, _) = prefix_bounds(&req.prefix);
        if start[0].hashed_slot < first_key || last.hashed_slot > range.limit {
            return Err(Fault::Malformed("slots outside the storage chunk"));
        }
        let Some(next) = next_key(last.hashed_slot) else {
            return Ok(ChunkContent::Items(start));
        };
        range.origin = next;
        range.bytes = start.iter().map(|s| 32 + s.value.length() as u64).sum();
        if range.looks_too_large() {
            return Ok(ChunkContent::TooLarge);
        }
    }
    let mut slots = start;
    for _ in 0..max_rounds(max_bytes) {
        // A storage's size is the snap/1 server's to know: the first round asks for a share
        // of `max_bytes`, enough to tell one far too large.
        let budget = range.budget(inner);
        let budget = if slots.is_empty() { budget.min(sizing_bytes(max_bytes)) } else { budget };
        let request = GetStorageRanges {
            request_id: 0,
            root: pivot.state_root,
            accounts: vec![req.account],
            origin: Bytes::copy_from_slice(range.origin.as_slice()),
            limit: Bytes::copy_from_slice(range.limit.as_slice()),
            bytes: budget,
        };
        let answer = inner.storage_ranges(request).await?;
        let Some(list) = answer.slots.into_iter().next().filter(|l| !l.is_empty()) else {
            return if answer.proof.is_empty() {
                Err(Fault::NoState)
            } else {
                Ok(ChunkContent::Items(slots))
            };
        };
        let progress = range.read(
            list,
            |slot| slot.hash,
            answer.proof.is_empty(),
            "slots out of order or before the origin",
            |item| {
                let value = slot_value(&item.body)?;
                slots.push(StorageSlot { hashed_slot: item.hash, value });
                Ok((32 + item.body.len()) as u64)
            },
        )?;
        match progress {
            Progress::Continue if range.looks_too_large() => return Ok(ChunkContent::TooLarge),
            Progress::Continue => {}
            Progress::TooLarge => return Ok(ChunkContent::TooLarge),
            Progress::Covered => return Ok(ChunkContent::Items(slots)),
        }
    }
    Ok(ChunkContent::Items(slots))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A range read as far as `read_to` (its next origin) with `bytes` of items, of a chunk of
    /// `max_bytes`, under prefix `prefix`.
    fn range(prefix: &[u8], read_to: B256, bytes: u64, max_bytes: u64) -> RangeRead {
        let mut range = RangeRead::new(&WirePath::from_nibbles(prefix).unwrap(), max_bytes);
        range.origin = read_to;
        range.bytes = bytes;
        range
    }

    /// Projected over its keys, a sample far past `max_bytes` is too large, one near it is
    /// not; a sample smaller than half a sizing round is not trusted, however it projects;
    /// the whole key space's size does not overflow.
    #[test]
    fn a_range_looks_too_large_from_a_fair_sample_only() {
        const MAX: u64 = 2 * 1024 * 1024;
        let sample = sizing_bytes(MAX);
        // A sixteenth of the whole key space read: the range is 16 × the sample.
        let mut sixteenth = [0u8; 32];
        sixteenth[0] = 0x10;
        let sixteenth = B256::from(sixteenth);
        assert!(range(&[], sixteenth, sample, MAX).looks_too_large(), "16 × 256 KiB");
        assert!(!range(&[], sixteenth, MAX / 16, MAX).looks_too_large(), "16 × 128 KiB = max");
        assert!(!range(&[], sixteenth, sample / 2 - 1, MAX).looks_too_large(), "too few bytes");
        // Under a prefix: a sixteenth of the prefix's keys.
        let mut key = [0u8; 32];
        key[0] = 0xa1;
        assert!(range(&[0xa], B256::from(key), sample, MAX).looks_too_large());
        assert!(!range(&[0xa], B256::from(key), MAX / 16, MAX).looks_too_large());
        // Nothing read yet.
        let (first, _) = prefix_bounds(&WirePath::root());
        assert!(!range(&[], first, MAX, MAX).looks_too_large());
    }
}
