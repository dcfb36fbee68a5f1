//! Small storages inline: after an account chunk's accounts came, their storages are asked
//! several accounts per `GetStorageRanges` (go-ethereum's batching), and every storage that
//! came whole is put inline in the chunk, as a `leaf/1` server inlines small storages (within
//! the chunk's `max_bytes` and `MAX_INLINE_STORAGE_SLOTS`). The
//! syncer checks each against its account's storage root once the chunk's hash verified it
//! (a mismatch is junk, and that storage is fetched again as a unit). A storage cut by the byte
//! budget, one that came whole but too large to inline (marked with its slot count), and those
//! not reached within [`STORAGE_ROUNDS`] requests keep the "large storage" mark and become
//! storage units (continued ranges of their own).

use alloy_primitives::{B256, Bytes, U256};
use alloy_rlp::Decodable;
use leafsync_p2p::{
    leaf::{AccountLeaf, AccountStorage, StorageSlot, protocol::MAX_INLINE_STORAGE_SLOTS},
    snap::{GetStorageRanges, StorageData, StorageRanges},
};

use super::{Fault, Inner, density_estimate};

/// Accounts asked per `GetStorageRanges` (512, geth's own batch): with geth's budget of 2 MiB a
/// batch of small storages fits, and a chunk's storages take one round trip where they took
/// two to four at 128 (a 1M-account sync: 1,031 storage requests, now 372).
pub const STORAGE_BATCH: usize = 512;

/// Storage requests one account chunk may add (4): every answer covers at least one account,
/// and what is left after them is fetched as storage units, so a peer answering one account at
/// a time costs a few round trips, not one per account.
pub const STORAGE_ROUNDS: usize = 4;

/// The slot count of a storage whose answer was cut after `beginning` (its first slots, in
/// order): what that many slots up to the last one make over the whole key space, as a leaf/1
/// server estimates its "large storage" mark. 0 (unknown) for an empty beginning. A sizing hint
/// only: a peer that skews it makes the syncer batch that storage's units worse, nothing more.
pub(crate) fn sized_from(beginning: &[StorageData]) -> u64 {
    beginning.last().map_or(0, |last| density_estimate(beginning.len() as u64, last.hash))
}

/// How many of a `StorageRanges` answer's slot lists came whole: all of them, but the last
/// when a proof follows (it was cut). A proof with no list at all brought none (saturating: one
/// such answer once made the sync panic on the subtraction).
pub(crate) fn whole_lists(answer: &StorageRanges) -> usize {
    answer.slots.len().saturating_sub(usize::from(!answer.proof.is_empty()))
}

/// The bytes a slot list counts against a budget: key and value body, as servers count them.
pub(crate) fn list_bytes(list: &[StorageData]) -> u64 {
    list.iter().map(|s| (32 + s.body.len()) as u64).sum()
}

/// Slots of a storage answer, checked: strictly increasing hashed slots, each value the RLP of
/// a non-zero integer.
pub(crate) fn slots(list: Vec<StorageData>) -> Result<Vec<StorageSlot>, Fault> {
    let mut out: Vec<StorageSlot> = Vec::with_capacity(list.len());
    for item in list {
        if out.last().is_some_and(|last| last.hashed_slot >= item.hash) {
            return Err(Fault::Malformed("slots out of order"));
        }
        out.push(StorageSlot { hashed_slot: item.hash, value: slot_value(&item.body)? });
    }
    Ok(out)
}

/// A slot value from its trie encoding: the RLP of a non-zero integer, nothing after it.
pub(crate) fn slot_value(body: &Bytes) -> Result<U256, Fault> {
    let mut rest = body.as_ref();
    U256::decode(&mut rest)
        .ok()
        .filter(|v| rest.is_empty() && !v.is_zero())
        .ok_or(Fault::Malformed("slot value not the RLP of a non-zero integer"))
}

/// Fills in the storage of `leaves` marked "large" where it comes whole and fits in `room`
/// bytes (what the chunk's `max_bytes` leaves after its accounts, so that a chunk stays within
/// it as a `leaf/1` chunk does) and in [`MAX_INLINE_STORAGE_SLOTS`] (see the module docs).
pub(crate) async fn inline_storages(
    inner: &Inner,
    root: B256,
    leaves: &mut [AccountLeaf],
    room: u64,
) -> Result<(), Fault> {
    let mut room = room;
    let pending: Vec<usize> = (0..leaves.len())
        .filter(|i| matches!(leaves[*i].storage, AccountStorage::Large { .. }))
        .collect();
    let mut next = 0;
    for _ in 0..STORAGE_ROUNDS {
        let batch: Vec<usize> = pending.iter().skip(next).take(STORAGE_BATCH).copied().collect();
        if batch.is_empty() || room == 0 {
            break;
        }
        let request = GetStorageRanges {
            request_id: 0,
            root,
            accounts: batch.iter().map(|i| leaves[*i].hashed_address).collect(),
            origin: Bytes::new(),
            limit: Bytes::new(),
            bytes: inner.budget().min(room),
        };
        let answer = inner.storage_ranges(request).await?;
        if answer.slots.is_empty() {
            // Every account asked has storage: nothing at all is "no state" (the root fell out
            // of the server's window since its accounts came: the peer is marked, and the
            // chunk stands, judged as any other); lists missing with a proof leave the storages
            // to their units.
            if answer.proof.is_empty() {
                inner.lacks_state(root);
            }
            return Ok(());
        }
        // A proof means the last list was cut: that storage stays a unit.
        let whole = whole_lists(&answer);
        next += answer.slots.len();
        for (i, (list, index)) in answer.slots.into_iter().zip(&batch).enumerate() {
            if i == whole {
                // Its beginning sizes it, as a leaf/1 server's mark is sized.
                let slot_count = sized_from(&list);
                leaves[*index].storage = AccountStorage::Large { slot_count };
                break;
            }
            let size = list_bytes(&list);
            let slots = slots(list)?;
            leaves[*index].storage = if slots.len() <= MAX_INLINE_STORAGE_SLOTS && size <= room {
                room -= size;
                AccountStorage::Inline(slots)
            } else {
                // Whole but too large to inline: a storage unit, sized by its exact count (the
                // syncer batches sized storages several to a request, unsized ones one each).
                AccountStorage::Large { slot_count: slots.len() as u64 }
            };
        }
    }
    Ok(())
}
