//! Chunk answers judged without I/O. [`check_chunk`] turns one piece of an account batch, and
//! [`check_piece`] one piece of a storage batch, into a [`ChunkVerdict`]: leaves to import
//! (checked cheaply: order, prefix, values), a split, or what the answer says about its server.
//! After the import compared the subtrie with the skeleton hash,
//! [`judge_mismatch`] says whether a differing chunk is a lie or a stale server, and
//! [`check_account`] what a verified account's storage needs.

use alloy_primitives::{B256, U256};
use alloy_trie::{EMPTY_ROOT_HASH, Nibbles, TrieAccount};
use leafsync_leafdb::{ChunkAccount, EMPTY_CODE_HASH};
use leafsync_p2p::leaf::{
    AccountLeaf, AccountPiece, AccountStorage, ChainHead, ChunkContent, StoragePiece, StorageSlot,
    protocol::MAX_PIECE_AGE_BLOCKS,
};

use crate::{config::HEAD_CLAIM_SLACK, peer_set::Verdict, tasks::Unit};

/// A chunk no honest server can send: out of order, outside its prefix, or with zero slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Malformed;

/// Checked leaves of a chunk, ready for the leafdb.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Leaves {
    /// An account chunk's accounts, and the announced slot count of each large storage among
    /// them (a sizing hint for batching its storage units).
    Accounts { accounts: Vec<ChunkAccount>, large: Vec<(B256, u64)> },
    /// A storage chunk's slots of the account `owner`.
    Slots { owner: B256, slots: Vec<(B256, U256)> },
}

impl Leaves {
    /// The accounts and the slots of a storage chunk (an account chunk's inline slots are not
    /// counted here).
    pub(crate) fn counts(&self) -> (u64, u64) {
        match self {
            Self::Accounts { accounts, .. } => (accounts.len() as u64, 0),
            Self::Slots { slots, .. } => (0, slots.len() as u64),
        }
    }
}

/// What a chunk answer is.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ChunkVerdict {
    /// Leaves to import, read at the server's `head_number`.
    Import { leaves: Leaves, head_number: u64 },
    /// "Too large", read at the server's `head_number`: a unit of many leaves is split into its
    /// children; for a unit that is a single leaf at the pivot the syncer judges the claim by
    /// its head (`Syncer::on_chunk`).
    Split { head_number: u64 },
    /// The answer counts against its server ([`Verdict::Empty`], `Junk`, `Invalid`); the unit
    /// is asked again elsewhere.
    Refused(Verdict),
}

/// Whether `key` lies under `prefix`, unpacking only the bytes the prefix covers (none for the
/// empty prefix of inline slots).
fn under(prefix: &Nibbles, key: &B256) -> bool {
    Nibbles::unpack(&key[..prefix.len().div_ceil(2)]).starts_with(prefix)
}

/// Checks inline slots (sorted, non-zero) and turns them into pairs.
fn slots(items: &[StorageSlot], prefix: &Nibbles) -> Result<Vec<(B256, U256)>, Malformed> {
    let mut out: Vec<(B256, U256)> = Vec::with_capacity(items.len());
    for s in items {
        if s.value.is_zero()
            || !under(prefix, &s.hashed_slot)
            || out.last().is_some_and(|(last, _)| *last >= s.hashed_slot)
        {
            return Err(Malformed);
        }
        out.push((s.hashed_slot, s.value));
    }
    Ok(out)
}

/// Checks an account chunk's leaves and turns them into the leafdb's import form.
pub(crate) fn accounts(prefix: &Nibbles, leaves: Vec<AccountLeaf>) -> Result<Leaves, Malformed> {
    let mut out: Vec<ChunkAccount> = Vec::with_capacity(leaves.len());
    let mut large = Vec::new();
    for leaf in leaves {
        if !under(prefix, &leaf.hashed_address)
            || out.last().is_some_and(|last| last.hashed_address >= leaf.hashed_address)
        {
            return Err(Malformed);
        }
        let storage = match &leaf.storage {
            AccountStorage::Inline(items) => Some(slots(items, &Nibbles::new())?),
            AccountStorage::Large { slot_count } => {
                large.push((leaf.hashed_address, *slot_count));
                None
            }
        };
        out.push(ChunkAccount {
            hashed_address: leaf.hashed_address,
            account: TrieAccount {
                nonce: leaf.nonce,
                balance: leaf.balance,
                storage_root: leaf.storage_root,
                code_hash: leaf.code_hash,
            },
            storage,
        });
    }
    Ok(Leaves::Accounts { accounts: out, large })
}

/// The items of a chunk's content read at `head_number`, or its early verdict: "too large" is
/// a split (judged by the syncer where the unit is a single leaf); no items is an empty
/// answer.
fn items<T>(content: ChunkContent<T>, head_number: u64) -> Result<Vec<T>, ChunkVerdict> {
    match content {
        ChunkContent::TooLarge => Err(ChunkVerdict::Split { head_number }),
        ChunkContent::Items(items) if items.is_empty() => {
            Err(ChunkVerdict::Refused(Verdict::Empty))
        }
        ChunkContent::Items(items) => Ok(items),
    }
}

/// Judges one piece of a `Chunk`, the answer for the account `unit`: the same rules for every
/// piece, independently of the batch's other pieces.
pub(crate) fn check_chunk(unit: &Unit, piece: AccountPiece) -> ChunkVerdict {
    let checked = items(piece.content, piece.head_number).and_then(|leaves| {
        accounts(&unit.prefix, leaves)
            .map_err(|_| ChunkVerdict::Refused(Verdict::Invalid("malformed chunk")))
    });
    match checked {
        Ok(leaves) => ChunkVerdict::Import { leaves, head_number: piece.head_number },
        Err(verdict) => verdict,
    }
}

/// Judges one piece of a `StorageChunk`, the answer for the storage `unit` of `owner`: the same
/// rules as a whole chunk, independently of the batch's other pieces.
pub(crate) fn check_piece(unit: &Unit, owner: B256, piece: StoragePiece) -> ChunkVerdict {
    let checked = items(piece.content, piece.head_number).and_then(|items| {
        slots(&items, &unit.prefix)
            .map_err(|_| ChunkVerdict::Refused(Verdict::Invalid("malformed storage chunk")))
    });
    match checked {
        Ok(slots) => ChunkVerdict::Import {
            leaves: Leaves::Slots { owner, slots },
            head_number: piece.head_number,
        },
        Err(verdict) => verdict,
    }
}

/// A chunk differed from its skeleton hash. Its server lied if it claims a head far from those
/// it announced from when it was asked (`asked_at`) until now (`announced`): more than
/// [`HEAD_CLAIM_SLACK`] past the newest, or more than that and the protocol's
/// [`MAX_PIECE_AGE_BLOCKS`] (a cached piece's age) before the oldest; or if it claims the
/// `pivot`'s own head (unless it announced a sibling block at the pivot's height, when asked or
/// now: a server that reorged onto the pivot's chain while its answer waited read it on the
/// sibling): `Some(why)`.
/// Otherwise (`None`) it is stale, which costs it its chunk work after a few such chunks
/// (`PeerSet::stale_chunk`). The heads in between count because an answer can wait on the link
/// and in the syncer's queue while its server moves on: with blocks every 2 s a few seconds are
/// several blocks.
pub(crate) fn judge_mismatch(
    head_number: u64,
    asked_at: ChainHead,
    announced: ChainHead,
    pivot: &ChainHead,
) -> Option<&'static str> {
    let is_sibling = |head: &ChainHead| head.number == pivot.number && head.hash != pivot.hash;
    let sibling = is_sibling(&asked_at) || is_sibling(&announced);
    let asked_at = asked_at.number;
    let (low, high) = (asked_at.min(announced.number), asked_at.max(announced.number));
    // A server may hand out a piece it cached up to MAX_PIECE_AGE_BLOCKS before.
    let oldest = low.saturating_sub(MAX_PIECE_AGE_BLOCKS + HEAD_CLAIM_SLACK);
    if head_number < oldest || head_number > high.saturating_add(HEAD_CLAIM_SLACK) {
        Some("chunk claims a head its server did not announce")
    } else if head_number == pivot.number && !sibling {
        Some("junk chunks at the pivot head")
    } else {
        None
    }
}

/// What the storage of an account of a verified chunk needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StorageCheck {
    /// Its inline storage hashes to its storage root.
    Complete,
    /// It is large: fetch it as a unit.
    Fetch,
    /// The chunk lied about it (the account itself is proven by the chunk's hash, and one
    /// snapshot serves it and its storage): drop what came and fetch it again.
    Lie(&'static str),
}

/// Checks a verified account's storage: `inline_root` is the root of its inline slots, `None`
/// for a "large storage" mark.
pub(crate) fn check_account(account: &TrieAccount, inline_root: Option<B256>) -> StorageCheck {
    match inline_root {
        Some(root) if root == account.storage_root => StorageCheck::Complete,
        Some(_) => StorageCheck::Lie("inline storage contradicts its account's storage root"),
        None if account.storage_root == EMPTY_ROOT_HASH => {
            StorageCheck::Lie("empty storage marked large")
        }
        None => StorageCheck::Fetch,
    }
}

/// Whether taking in a verified account, once its chunk is written, does anything: it has a
/// code to queue, or its storage is not complete inline (fetched apart, or a lie). Most
/// accounts do neither, and a held chunk need not keep them.
pub(crate) fn leaves_work(account: &TrieAccount, inline_root: Option<B256>) -> bool {
    account.code_hash != EMPTY_CODE_HASH
        || check_account(account, inline_root) != StorageCheck::Complete
}

#[cfg(test)]
#[path = "import_tests.rs"]
mod tests;
