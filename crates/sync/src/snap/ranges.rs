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
use leafsync_p2p::{
    leaf::{
        AccountLeaf, AccountStorage, ChainHead, Chunk, ChunkContent, GetChunk, GetStorageChunk,
        StorageChunk, StoragePiece, StoragePrefix, StorageSlot, WirePath,
    },
    requests::LeafResponse,
    snap::{EMPTY_ROOT_HASH, GetAccountRange, GetStorageRanges, SnapMessage},
};

use super::{
    Fault, Inner, max_rounds,
    storages::{inline_storages, slot_value},
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

/// The budget of the next round: the peer's, but no more than the chunk may still take (plus
/// one byte, so that a chunk over `max_bytes` shows as such).
fn round_budget(inner: &Inner, max_bytes: u64, got: u64) -> u64 {
    inner.budget().min(max_bytes.saturating_sub(got).saturating_add(1))
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

/// The account chunk of `req.prefix` at the pivot's root.
pub(crate) async fn account_chunk(
    inner: &Inner,
    pivot: &ChainHead,
    req: GetChunk,
) -> Result<LeafResponse, Fault> {
    let (mut origin, limit) = prefix_bounds(&req.prefix);
    let mut leaves: Vec<AccountLeaf> = Vec::new();
    let mut bytes = 0u64;
    let chunk = |leaves, content: Option<_>| {
        LeafResponse::Chunk(Chunk {
            head_number: pivot.number,
            content: content.unwrap_or(ChunkContent::Items(leaves)),
        })
    };
    for _ in 0..max_rounds(req.max_bytes) {
        let request = GetAccountRange {
            request_id: 0,
            root: pivot.state_root,
            origin,
            limit,
            bytes: round_budget(inner, req.max_bytes, bytes),
        };
        let answer = match inner.ask(SnapMessage::GetAccountRange(request)).await? {
            SnapMessage::AccountRange(answer) => answer,
            _ => return Err(Fault::Malformed("answer of another kind to GetAccountRange")),
        };
        if answer.accounts.is_empty() {
            if answer.proof.is_empty() {
                return Err(Fault::NoState);
            }
            let room = req.max_bytes.saturating_sub(bytes);
            inline_storages(inner, pivot.state_root, &mut leaves, room).await?;
            return Ok(chunk(leaves, None));
        }
        if !ordered_from(origin, answer.accounts.iter().map(|a| a.hash)) {
            return Err(Fault::Malformed("accounts out of order or before the origin"));
        }
        let mut covered = false;
        let mut previous = None;
        for item in answer.accounts {
            previous = Some(item.hash);
            if item.hash > limit {
                covered = true;
                break;
            }
            let (Some(storage_root), Some(code_hash)) =
                (item.account.storage_root(), item.account.code_hash())
            else {
                return Err(Fault::Malformed("slim account field neither empty nor 32 bytes"));
            };
            bytes += 32 + item.account.length() as u64;
            // Marked here; `inline_storages` inlines the storages that come whole.
            let storage = if storage_root == EMPTY_ROOT_HASH {
                AccountStorage::Inline(Vec::new())
            } else {
                AccountStorage::Large { slot_count: 0 }
            };
            leaves.push(AccountLeaf {
                hashed_address: item.hash,
                nonce: item.account.nonce,
                balance: item.account.balance,
                storage_root,
                code_hash,
                storage,
            });
            if item.hash == limit {
                covered = true;
                break;
            }
        }
        if bytes > req.max_bytes {
            return Ok(chunk(Vec::new(), Some(ChunkContent::TooLarge)));
        }
        match previous.and_then(next_key) {
            Some(next) if !covered => origin = next,
            _ => {
                let room = req.max_bytes.saturating_sub(bytes);
                inline_storages(inner, pivot.state_root, &mut leaves, room).await?;
                return Ok(chunk(leaves, None));
            }
        }
    }
    // Starved: what came is judged by the skeleton hash.
    Ok(chunk(leaves, None))
}

/// The storage chunks of `req`, one after the other, each as [`storage_piece`] asks it, until
/// the pieces so far reach `req.max_bytes` (the first is always asked): the leaf/1 server's
/// rule, so the chunks not reached are asked again by the syncer.
pub(crate) async fn storage_chunk(
    inner: &Inner,
    pivot: &ChainHead,
    req: GetStorageChunk,
) -> Result<LeafResponse, Fault> {
    let mut pieces = Vec::new();
    let mut bytes = 0u64;
    for chunk in &req.chunks {
        if !pieces.is_empty() && bytes >= req.max_bytes {
            break;
        }
        let content = storage_piece(inner, pivot, chunk, req.max_bytes).await?;
        let piece = StoragePiece { head_number: pivot.number, content };
        bytes += piece.length() as u64;
        pieces.push(piece);
    }
    Ok(LeafResponse::StorageChunk(StorageChunk { pieces }))
}

/// The storage chunk of `req.account` under `req.prefix` at the pivot's root.
async fn storage_piece(
    inner: &Inner,
    pivot: &ChainHead,
    req: &StoragePrefix,
    max_bytes: u64,
) -> Result<ChunkContent<StorageSlot>, Fault> {
    let (mut origin, limit) = prefix_bounds(&req.prefix);
    let mut slots: Vec<StorageSlot> = Vec::new();
    let mut bytes = 0u64;
    let chunk = |slots, content: Option<_>| content.unwrap_or(ChunkContent::Items(slots));
    for _ in 0..max_rounds(max_bytes) {
        let request = GetStorageRanges {
            request_id: 0,
            root: pivot.state_root,
            accounts: vec![req.account],
            origin: Bytes::copy_from_slice(origin.as_slice()),
            limit: Bytes::copy_from_slice(limit.as_slice()),
            bytes: round_budget(inner, max_bytes, bytes),
        };
        let answer = match inner.ask(SnapMessage::GetStorageRanges(request)).await? {
            SnapMessage::StorageRanges(answer) => answer,
            _ => return Err(Fault::Malformed("answer of another kind to GetStorageRanges")),
        };
        if answer.slots.len() > 1 {
            return Err(Fault::Malformed("storage lists for accounts not asked for"));
        }
        let Some(list) = answer.slots.into_iter().next().filter(|l| !l.is_empty()) else {
            return if answer.proof.is_empty() {
                Err(Fault::NoState)
            } else {
                Ok(chunk(slots, None))
            };
        };
        if !ordered_from(origin, list.iter().map(|slot| slot.hash)) {
            return Err(Fault::Malformed("slots out of order or before the origin"));
        }
        let mut covered = answer.proof.is_empty();
        let mut previous = None;
        for item in list {
            previous = Some(item.hash);
            if item.hash > limit {
                covered = true;
                break;
            }
            let value = slot_value(&item.body)?;
            bytes += (32 + item.body.len()) as u64;
            slots.push(StorageSlot { hashed_slot: item.hash, value });
            if item.hash == limit {
                covered = true;
                break;
            }
        }
        if bytes > max_bytes {
            return Ok(chunk(Vec::new(), Some(ChunkContent::TooLarge)));
        }
        match previous.and_then(next_key) {
            Some(next) if !covered => origin = next,
            _ => return Ok(chunk(slots, None)),
        }
    }
    Ok(chunk(slots, None))
}
