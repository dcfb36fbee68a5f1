//! Chunk answers: checked cheaply (order, prefix, values), written with their subtrie, and
//! compared with the skeleton hash: equal = verified, different = kept and marked for heal.

use alloy_primitives::{B256, U256};
use alloy_trie::{EMPTY_ROOT_HASH, Nibbles, TrieAccount};
use leafsync_leafdb::{ChunkAccount, KvStore};
use leafsync_p2p::leaf::{
    AccountLeaf, AccountStorage, Chunk, ChunkContent, StorageChunk, StorageSlot,
};

use crate::{
    config::{HEAD_CLAIM_SLACK, MAX_STALE_HEALS, SyncMode},
    error::SyncError,
    syncer::Syncer,
    tasks::Unit,
};

/// A chunk no honest server can send: out of order, outside its prefix, or with zero slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Malformed;

fn under(prefix: &Nibbles, key: &B256) -> bool {
    Nibbles::unpack(key).starts_with(prefix)
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
pub(crate) fn accounts(
    prefix: &Nibbles,
    leaves: Vec<AccountLeaf>,
) -> Result<Vec<ChunkAccount>, Malformed> {
    let mut out: Vec<ChunkAccount> = Vec::with_capacity(leaves.len());
    for leaf in leaves {
        if !under(prefix, &leaf.hashed_address)
            || out.last().is_some_and(|last| last.hashed_address >= leaf.hashed_address)
        {
            return Err(Malformed);
        }
        let storage = match &leaf.storage {
            AccountStorage::Inline(items) => Some(slots(items, &Nibbles::new())?),
            AccountStorage::Large { .. } => None,
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
    Ok(out)
}

impl<S: KvStore + 'static> Syncer<S> {
    /// An account chunk arrived for `unit`.
    pub(crate) async fn on_chunk(
        &mut self,
        peer: usize,
        unit: Unit,
        chunk: Chunk,
    ) -> Result<(), SyncError> {
        let leaves = match chunk.content {
            ChunkContent::TooLarge => return self.too_large(peer, unit).await,
            ChunkContent::Items(leaves) if leaves.is_empty() => {
                self.on_empty(peer).await;
                self.requeue(crate::tasks::Job::Chunk(unit), peer);
                return Ok(());
            }
            ChunkContent::Items(leaves) => leaves,
        };
        let Ok(accounts) = accounts(&unit.prefix, leaves) else {
            self.ban(peer, "malformed chunk").await;
            self.requeue(crate::tasks::Job::Chunk(unit), peer);
            return Ok(());
        };
        self.peers[peer].empties = 0;
        let outcome = self.db.import_account_chunk(&unit.prefix, &accounts)?;
        self.stats.chunks_done += 1;
        self.stats.accounts += accounts.len() as u64;
        if outcome.root != unit.hash {
            return self.mark_heal(peer, &unit, chunk.head_number).await;
        }
        self.stats.chunks_verified += 1;
        let mut lied = None;
        for (a, computed) in accounts.iter().zip(outcome.storage_roots) {
            self.stats.slots += a.storage.as_ref().map_or(0, |s| s.len() as u64);
            if let Err(lie) = self.after_verified_account(a.hashed_address, &a.account, computed)? {
                lied = Some(lie);
            }
        }
        if let Some(why) = lied {
            self.junk(peer, why).await;
        }
        Ok(())
    }

    /// A storage chunk arrived for `unit`.
    pub(crate) async fn on_storage_chunk(
        &mut self,
        peer: usize,
        unit: Unit,
        chunk: StorageChunk,
    ) -> Result<(), SyncError> {
        let items = match chunk.content {
            ChunkContent::TooLarge => return self.too_large(peer, unit).await,
            ChunkContent::Items(items) if items.is_empty() => {
                self.on_empty(peer).await;
                self.requeue(crate::tasks::Job::Chunk(unit), peer);
                return Ok(());
            }
            ChunkContent::Items(items) => items,
        };
        let (Some(owner), Ok(slots)) = (unit.owner, slots(&items, &unit.prefix)) else {
            self.ban(peer, "malformed storage chunk").await;
            self.requeue(crate::tasks::Job::Chunk(unit), peer);
            return Ok(());
        };
        self.peers[peer].empties = 0;
        let root = self.db.import_storage_chunk(&owner, &unit.prefix, &slots)?;
        self.stats.chunks_done += 1;
        self.stats.slots += slots.len() as u64;
        if root != unit.hash {
            return self.mark_heal(peer, &unit, chunk.head_number).await;
        }
        self.stats.chunks_verified += 1;
        self.close(unit.owner)
    }

    /// "Too large": a lie for a single leaf (an account's storage beyond the cap is sent as a
    /// mark, so one leaf always fits); otherwise the unit is split.
    async fn too_large(&mut self, peer: usize, unit: Unit) -> Result<(), SyncError> {
        if unit.leaf || unit.prefix.len() == 64 {
            self.junk(peer, "\"too large\" for a single leaf").await;
            self.requeue(crate::tasks::Job::Chunk(unit), peer);
        } else {
            self.split(peer, &unit);
        }
        Ok(())
    }

    /// The unit's node is fetched and its children become the units.
    fn split(&mut self, peer: usize, unit: &Unit) {
        self.peers[peer].empties = 0;
        self.stats.chunks_split += 1;
        self.stats.chunks_total = self.stats.chunks_total.saturating_sub(1);
        self.add_expand(unit.owner, unit.prefix, unit.hash);
        // The unit is replaced by its expansion; the expansion holds the owner open.
        if let Some(o) = unit.owner
            && let Some(n) = self.owner_open.get_mut(&o)
        {
            *n = n.saturating_sub(1);
        }
    }

    /// A chunk differed from its skeleton hash: its prefix is healed. The server lied if it
    /// claims a head far from the one it announced, or the pivot's own head (unless it
    /// announced a sibling block at the pivot's height); otherwise it is stale, which costs it
    /// its chunk work after [`MAX_STALE_HEALS`] such chunks while its head stays.
    async fn mark_heal(
        &mut self,
        peer: usize,
        unit: &Unit,
        head_number: u64,
    ) -> Result<(), SyncError> {
        self.stats.chunks_healed += 1;
        self.add_heal_root(unit.owner, unit.prefix, unit.hash)?;
        if let Some(o) = unit.owner
            && let Some(n) = self.owner_open.get_mut(&o)
        {
            // The heal root replaces the unit.
            *n = n.saturating_sub(1);
        }
        let announced = self.peers[peer].peer.head();
        let sibling = announced.number == self.pivot.number && announced.hash != self.pivot.hash;
        if head_number.abs_diff(announced.number) > HEAD_CLAIM_SLACK {
            self.junk(peer, "chunk claims a head its server did not announce").await;
        } else if head_number == self.pivot.number && !sibling {
            self.junk(peer, "junk chunks at the pivot head").await;
        } else {
            let slot = &mut self.peers[peer];
            if slot.stale_at.is_some_and(|h| h != announced) {
                slot.stale_heals = 0;
                slot.stale_at = None;
            }
            slot.stale_heals += 1;
            if slot.stale_heals >= MAX_STALE_HEALS && slot.stale_at.is_none() {
                tracing::debug!(peer = %slot.peer.id(), head = announced.number,
                    "server's chunks are from another head; no more chunks until it moves");
                slot.stale_at = Some(announced);
            }
        }
        Ok(())
    }

    /// An account of a verified chunk: its storage and code. The account itself is proven by
    /// the chunk's hash, and one snapshot serves it and its storage: inline storage that does
    /// not hash to its storage root, or a "large storage" mark on empty storage, is a lie
    /// (`Ok(Err(why))`). The lie's storage is dropped and fetched again as a unit.
    fn after_verified_account(
        &mut self,
        hashed: B256,
        account: &TrieAccount,
        inline_root: Option<B256>,
    ) -> Result<Result<(), &'static str>, SyncError> {
        self.want_code(account.code_hash)?;
        let lie = match inline_root {
            Some(root) if root == account.storage_root => return Ok(Ok(())),
            Some(_) => "inline storage contradicts its account's storage root",
            None if account.storage_root == EMPTY_ROOT_HASH => "empty storage marked large",
            None => {
                if self.storage_started.insert(hashed) {
                    self.add_unit(Some(hashed), Nibbles::new(), account.storage_root)?;
                }
                return Ok(Ok(()));
            }
        };
        // The lie's slots and nodes go; the storage is asked again, from any server (or
        // written empty at once for the empty root).
        self.db.import_storage_chunk(&hashed, &Nibbles::new(), &[])?;
        if self.storage_started.insert(hashed) {
            self.add_unit(Some(hashed), Nibbles::new(), account.storage_root)?;
        }
        Ok(Err(lie))
    }

    /// An account re-derived from a healed subtrie: fetch or heal its storage unless the stored
    /// storage trie already has its root; fetch its code.
    pub(crate) fn after_healed_account(
        &mut self,
        hashed: B256,
        account: &TrieAccount,
    ) -> Result<(), SyncError> {
        self.want_code(account.code_hash)?;
        let stored = self.db.stored_storage_root(&hashed)?;
        if stored == account.storage_root || !self.storage_started.insert(hashed) {
            return Ok(());
        }
        if account.storage_root == alloy_trie::EMPTY_ROOT_HASH {
            self.db.import_storage_chunk(&hashed, &Nibbles::new(), &[])?;
        } else if self.config.mode == SyncMode::Leaf && stored == alloy_trie::EMPTY_ROOT_HASH {
            self.add_unit(Some(hashed), Nibbles::new(), account.storage_root)?;
        } else {
            self.add_heal_root(Some(hashed), Nibbles::new(), account.storage_root)?;
        }
        Ok(())
    }
}
