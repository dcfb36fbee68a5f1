//! `GetStorageRanges` → `StorageRanges`.

use alloy_primitives::{B256, Bytes};
use leafsync_leafdb::{
    KvStore, LeafDb, Result,
    schema::slot_leaf_value,
    snap_read::{AccountAt, SnapReader},
};
use leafsync_p2p::snap::{
    GetStorageRanges, StorageData, StorageRanges,
    protocol::{MAX_SLOTS_PER_RESPONSE, STATE_LOOKUP_SLACK_PERCENT},
};

use super::{add_proof, byte_budget, bytes_to_hash, deadline, expired, reader};

/// Answers `GetStorageRanges`, as go-ethereum does:
///
/// * accounts in request order; no new account is opened once the byte budget is reached;
/// * `origin` and `limit` apply to the first account only; within an account slots are sent from
///   the origin until one at or past the limit, or until the response reaches the budget plus
///   10 % slack (then the account's range is cut short);
/// * an account with no slots to send gets no list (the lists that follow move up);
/// * the last list gets an edge proof (origin and last slot) when it started past zero or was cut
///   short, and nothing is served after it;
/// * empty (no lists, no proof) if a proof is needed for an account that does not exist, or on
///   internal trouble.
///
/// At the leafdb's head root from the flat state; at a recent root (a syncing geth's pivot) by
/// walking each account's storage trie at that root, found by walking the account trie
/// ([`leafsync_leafdb::snap_read::LeavesAt`]): a storage whose trie no longer resolves ends the
/// answer there (as a range cut short when some of its slots came; empty when the first
/// account's storage or the root itself does not resolve).
pub fn answer_storage_ranges<S: KvStore>(db: &LeafDb<S>, req: &GetStorageRanges) -> StorageRanges {
    let empty = StorageRanges { request_id: req.request_id, ..Default::default() };
    let Some(view) = reader(db) else { return empty };
    match serve(&view, req) {
        Ok(answer) => answer,
        Err(error) => {
            crate::log::serve_warn!(%error, "snap/1: reading or proving storage failed; answering empty");
            empty
        }
    }
}

/// [`answer_storage_ranges`] over one view; `Err` on internal trouble.
fn serve<S: KvStore>(view: &SnapReader<'_, S>, req: &GetStorageRanges) -> Result<StorageRanges> {
    let empty = StorageRanges { request_id: req.request_id, ..Default::default() };
    let at_head = view.root() == req.root;
    if !at_head && !view.resolves_root(None, req.root)? {
        return Ok(empty);
    }
    let budget = byte_budget(req.bytes);
    let hard_limit = budget + budget * STATE_LOOKUP_SLACK_PERCENT / 100;
    let until = deadline();
    let mut out = StorageRanges { request_id: req.request_id, ..Default::default() };
    let (mut size, mut count) = (0u64, 0usize);
    for (i, account) in req.accounts.iter().enumerate() {
        // Checked before each account's seek too: an account without slots runs no check of
        // the loop below, so a request naming 2,048 of them after the time is up or the slot
        // cap is reached would still cost a seek each.
        if size >= budget || count >= MAX_SLOTS_PER_RESPONSE || expired(until) {
            break;
        }
        let first = i == 0;
        let origin = if first { bytes_to_hash(&req.origin) } else { B256::ZERO };
        let limit = if first && !req.limit.is_empty() {
            bytes_to_hash(&req.limit)
        } else {
            B256::repeat_byte(0xff)
        };
        // At an older root, the account's storage root there (`None`: no such account); at
        // the head it is read only for a proof. An account whose path no longer resolves ends
        // the answer: leaving its list out would move the next one up, and geth checks lists by
        // position against the accounts it asked for (a mismatch, then a disconnect).
        let walked_root = if at_head {
            None
        } else {
            match view.account_at(req.root, account)?.0 {
                AccountAt::Found(a) => Some(Some(a.storage_root)),
                AccountAt::Absent => Some(None),
                AccountAt::Unresolved => return Ok(if first { empty } else { out }),
            }
        };
        let mut slots = Vec::new();
        let mut cut = false;
        let mut unresolved = false;
        {
            let mut take = |hash: B256, body: Bytes| {
                if size >= hard_limit || count >= MAX_SLOTS_PER_RESPONSE || expired(until) {
                    cut = true;
                    return false;
                }
                size += (B256::len_bytes() + body.len()) as u64;
                count += 1;
                slots.push(StorageData { hash, body });
                hash < limit
            };
            if at_head {
                for item in view.storage_from(account, &origin) {
                    let (hash, value) = item?;
                    if !take(hash, Bytes::from(slot_leaf_value(&value))) {
                        break;
                    }
                }
            } else if let Some(Some(root)) = walked_root {
                let mut walk = view.leaves_at(Some(account), root, &origin);
                for item in walk.by_ref() {
                    let (hash, body) = item?;
                    if !take(hash, Bytes::from(body)) {
                        break;
                    }
                }
                unresolved = walk.cut();
            }
        }
        if unresolved && slots.is_empty() {
            // Nothing of this storage can be read at that root: the lists so far are the answer.
            return Ok(if first { empty } else { out });
        }
        let cut = cut || unresolved;
        let last = slots.last().map(|s| s.hash);
        let partial = origin != B256::ZERO || (cut && last.is_some());
        if !slots.is_empty() {
            out.slots.push(slots);
        }
        if partial {
            let storage_root = match walked_root {
                Some(root) => root,
                None => view.account(account)?.map(|a| a.storage_root),
            };
            let Some(storage_root) = storage_root else { return Ok(empty) };
            for edge in std::iter::once(origin).chain(last) {
                let nodes = if at_head {
                    view.prove_storage(account, storage_root, &edge)
                } else {
                    view.prove_at(Some(account), storage_root, &edge)
                };
                add_proof(&mut out.proof, nodes?);
            }
            break;
        }
    }
    Ok(out)
}
