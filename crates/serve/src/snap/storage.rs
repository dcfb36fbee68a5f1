//! `GetStorageRanges` → `StorageRanges`.

use alloy_primitives::{B256, Bytes};
use leafsync_leafdb::{KvStore, LeafDb, schema::slot_leaf_value};
use leafsync_p2p::snap::{
    GetStorageRanges, StorageData, StorageRanges,
    protocol::{MAX_SLOTS_PER_RESPONSE, STATE_LOOKUP_SLACK_PERCENT},
};

use super::{add_proof, byte_budget, bytes_to_hash, deadline, expired, reader_at};

/// Answers `GetStorageRanges` at the leafdb's head, as go-ethereum does:
///
/// * accounts in request order; no new account is opened once the byte budget is reached;
/// * `origin` and `limit` apply to the first account only; within an account slots are sent from
///   the origin until one at or past the limit, or until the response reaches the budget plus
///   10 % slack (then the account's range is cut short);
/// * an account with no slots to send gets no list (the lists that follow move up);
/// * the last list gets an edge proof (origin and last slot) when it started past zero or was cut
///   short, and nothing is served after it;
/// * empty (no lists, no proof) for any other root, or if a proof is needed for an account that
///   does not exist, or on internal trouble.
pub fn answer_storage_ranges<S: KvStore>(db: &LeafDb<S>, req: &GetStorageRanges) -> StorageRanges {
    let empty = StorageRanges { request_id: req.request_id, ..Default::default() };
    let Some(view) = reader_at(db, req.root) else { return empty };
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
        let mut slots = Vec::new();
        let mut cut = false;
        for item in view.storage_from(account, &origin) {
            if size >= hard_limit || count >= MAX_SLOTS_PER_RESPONSE || expired(until) {
                cut = true;
                break;
            }
            let (hash, value) = match item {
                Ok(s) => s,
                Err(error) => {
                    crate::log::serve_warn!(%error, "snap/1: reading storage failed; answering empty");
                    return empty;
                }
            };
            let body = Bytes::from(slot_leaf_value(&value));
            size += (B256::len_bytes() + body.len()) as u64;
            count += 1;
            slots.push(StorageData { hash, body });
            if hash >= limit {
                break;
            }
        }
        let last = slots.last().map(|s| s.hash);
        let partial = origin != B256::ZERO || (cut && last.is_some());
        if !slots.is_empty() {
            out.slots.push(slots);
        }
        if partial {
            let storage_root = match view.account(account) {
                Ok(Some(a)) => a.storage_root,
                Ok(None) => return empty,
                Err(error) => {
                    crate::log::serve_warn!(%error, "snap/1: reading an account failed; answering empty");
                    return empty;
                }
            };
            for edge in std::iter::once(origin).chain(last) {
                match view.prove_storage(account, storage_root, &edge) {
                    Ok(nodes) => add_proof(&mut out.proof, nodes),
                    Err(error) => {
                        crate::log::serve_warn!(%error, "snap/1: proving a storage range failed");
                        return empty;
                    }
                }
            }
            break;
        }
    }
    out
}
