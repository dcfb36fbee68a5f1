//! Undoing a block, for a reorg that drops it. Before a block is applied, [`LeafDb::undo_of`]
//! reads what its diff will overwrite (every touched account's record, every touched slot's
//! value) and turns it into the diff that puts them back; [`LeafDb::revert_block`] applies that
//! diff onto the parent's header when the block leaves the chain. The old values are the
//! leafdb's own, not the execution client's traces, and the result is checked like any block:
//! the reverted state must have the parent's state root.

use std::{collections::BTreeMap, sync::atomic::Ordering};

use alloy_primitives::{Address, B256, U256, keccak256};
use alloy_rlp::{Decodable, RlpDecodable, RlpEncodable};
use alloy_trie::EMPTY_ROOT_HASH;

use crate::{
    ApplyOutcome, BlockHeader, LeafDb, LeafDbError, Result,
    diff::{AccountChange, AccountUpdate, BlockDiff},
    keys::storage_key,
    kv::{Durability, KvStore, Table, WriteBatch},
    schema::{decode_account, decode_slot_value},
};

/// Meta key prefix of the kept undos, one entry per block (`undo/` ‖ number, big-endian).
const UNDO_PREFIX: &[u8] = b"undo/";

/// The end of the undo key range (`/` + 1).
const UNDO_END: &[u8] = b"undo0";

fn undo_key(number: u64) -> Vec<u8> {
    [UNDO_PREFIX, &number.to_be_bytes()].concat()
}

/// What undoes one applied block, as a follower keeps it ([`LeafDb::put_undo`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockUndo {
    /// The head before the block: what reverting it makes the head again.
    pub parent: BlockHeader,
    /// The block's number.
    pub number: u64,
    /// The block's hash.
    pub hash: B256,
    /// The diff that undoes it ([`LeafDb::undo_of`]).
    pub diff: BlockDiff,
}

/// [`BlockUndo`] as stored: an undo holds no code and never wipes a storage.
#[derive(RlpEncodable, RlpDecodable)]
struct StoredUndo {
    parent: BlockHeader,
    number: u64,
    hash: B256,
    accounts: Vec<StoredAccount>,
}

#[derive(RlpEncodable, RlpDecodable)]
struct StoredAccount {
    address: Address,
    deleted: bool,
    nonce: u64,
    balance: U256,
    code_hash: B256,
    slots: Vec<StoredSlot>,
}

#[derive(RlpEncodable, RlpDecodable)]
struct StoredSlot {
    slot: B256,
    value: U256,
}

impl BlockUndo {
    fn encode(&self) -> Vec<u8> {
        let accounts = self
            .diff
            .accounts
            .iter()
            .map(|(address, change)| match change {
                AccountChange::Deleted => StoredAccount {
                    address: *address,
                    deleted: true,
                    nonce: 0,
                    balance: U256::ZERO,
                    code_hash: B256::ZERO,
                    slots: Vec::new(),
                },
                AccountChange::Updated(u) => StoredAccount {
                    address: *address,
                    deleted: false,
                    nonce: u.nonce,
                    balance: u.balance,
                    code_hash: u.code_hash,
                    slots: u
                        .storage
                        .iter()
                        .map(|(&slot, &value)| StoredSlot { slot, value })
                        .collect(),
                },
            })
            .collect();
        let stored =
            StoredUndo { parent: self.parent, number: self.number, hash: self.hash, accounts };
        alloy_rlp::encode(stored)
    }

    fn decode(bytes: &[u8]) -> Result<Self> {
        let mut b = bytes;
        let stored = StoredUndo::decode(&mut b)
            .map_err(|e| LeafDbError::corrupt("meta", "block undo", e))?;
        if !b.is_empty() {
            return Err(LeafDbError::corrupt("meta", "block undo", "trailing bytes"));
        }
        let mut diff = BlockDiff::default();
        for a in stored.accounts {
            let change = if a.deleted {
                AccountChange::Deleted
            } else {
                AccountChange::Updated(AccountUpdate {
                    nonce: a.nonce,
                    balance: a.balance,
                    code_hash: a.code_hash,
                    storage_wiped: false,
                    storage: a.slots.into_iter().map(|s| (s.slot, s.value)).collect(),
                })
            };
            diff.accounts.insert(a.address, change);
        }
        Ok(Self { parent: stored.parent, number: stored.number, hash: stored.hash, diff })
    }
}

impl<S: KvStore> LeafDb<S> {
    /// The diff that takes the current state back from after `diff` to now: every account
    /// `diff` touches back to its record now (deleted if it has none), every slot back to its
    /// value now. `None` when `diff` wipes or deletes a non-empty storage, whose slots are not
    /// read back: after Cancun no block can (SELFDESTRUCT deletes only an account created in the
    /// same transaction, whose storage was empty before the block).
    pub fn undo_of(&self, diff: &BlockDiff) -> Result<Option<BlockDiff>> {
        let hashed: Vec<B256> = diff.accounts.keys().map(keccak256).collect();
        let records = self.read_in_any_order(Table::Accounts, &hashed)?;
        let slot_keys: Vec<[u8; 64]> = diff
            .accounts
            .values()
            .zip(&hashed)
            .filter_map(|(change, owner)| match change {
                AccountChange::Updated(update) => Some((update, owner)),
                AccountChange::Deleted => None,
            })
            .flat_map(|(update, owner)| {
                update.storage.keys().map(move |slot| storage_key(owner, &keccak256(slot)))
            })
            .collect();
        let mut values = self.read_in_any_order(Table::Storage, &slot_keys)?.into_iter();
        let mut undo = BlockDiff::default();
        for ((address, change), record) in diff.accounts.iter().zip(records) {
            let touched = match change {
                AccountChange::Updated(update) => update.storage.keys().collect(),
                AccountChange::Deleted => Vec::new(),
            };
            let old: Vec<U256> = touched
                .iter()
                .map(|_| values.next().flatten().map_or(Ok(U256::ZERO), |v| decode_slot_value(&v)))
                .collect::<Result<_>>()?;
            let Some(record) = record else {
                // No account before the block: undoing it deletes the account and its storage.
                undo.accounts.insert(*address, AccountChange::Deleted);
                continue;
            };
            let account = decode_account(&record)?;
            let storage_gone = match change {
                AccountChange::Deleted => true,
                AccountChange::Updated(update) => update.storage_wiped,
            };
            if storage_gone && account.storage_root != EMPTY_ROOT_HASH {
                return Ok(None);
            }
            let storage: BTreeMap<B256, U256> = touched.into_iter().copied().zip(old).collect();
            let update = AccountUpdate {
                nonce: account.nonce,
                balance: account.balance,
                code_hash: account.code_hash,
                storage_wiped: false,
                storage,
            };
            undo.accounts.insert(*address, AccountChange::Updated(update));
        }
        Ok(Some(undo))
    }

    /// The values of `keys`, in their order: one `multi_get` of them sorted, as it takes them.
    fn read_in_any_order<K: AsRef<[u8]>>(
        &self,
        table: Table,
        keys: &[K],
    ) -> Result<Vec<Option<Vec<u8>>>> {
        let mut order: Vec<usize> = (0..keys.len()).collect();
        order.sort_unstable_by(|&a, &b| keys[a].as_ref().cmp(keys[b].as_ref()));
        let sorted: Vec<&[u8]> = order.iter().map(|&i| keys[i].as_ref()).collect();
        let mut out = vec![None; keys.len()];
        for (i, value) in order.into_iter().zip(self.store().multi_get(table, &sorted)?) {
            out[i] = value;
        }
        Ok(out)
    }

    /// Reverts the head block with `undo` ([`Self::undo_of`] of its diff, read before it was
    /// applied), making `parent` the head again, and drops the head block's kept undo
    /// ([`Self::put_undo`]) in the same write: a crash cannot leave an undo above the head,
    /// which would make the kept undos no longer end at the head, and a restart drop them all
    /// mid-rollback. The outcome's `root_matches` says whether the state is the parent's again;
    /// a mismatch is counted as any block's.
    pub fn revert_block(&self, parent: &BlockHeader, undo: &BlockDiff) -> Result<ApplyOutcome> {
        let mut batch = WriteBatch::default();
        if let Some(head) = self.head()? {
            if head.parent_hash != parent.hash || parent.number.checked_add(1) != Some(head.number)
            {
                return Err(LeafDbError::NotTheParent {
                    head: head.number,
                    head_hash: head.hash,
                    parent: parent.number,
                    parent_hash: parent.hash,
                });
            }
            batch.delete(Table::Meta, undo_key(head.number));
        }
        let outcome = self.apply_unchecked(*parent, undo, batch)?;
        self.reverts.fetch_add(1, Ordering::Release);
        Ok(outcome)
    }

    /// Keeps `undo` (through the log) and drops every kept undo of a block `keep` or more
    /// below it, so that a rollback survives a restart.
    pub fn put_undo(&self, undo: &BlockUndo, keep: u64) -> Result<()> {
        let mut batch = WriteBatch::default();
        let oldest = undo.number.saturating_add(1).saturating_sub(keep);
        batch.delete_range(Table::Meta, UNDO_PREFIX.to_vec(), undo_key(oldest));
        batch.put(Table::Meta, undo_key(undo.number), undo.encode());
        self.store().write(batch, Durability::Logged)
    }

    /// Drops every kept undo.
    pub fn clear_undos(&self) -> Result<()> {
        let mut batch = WriteBatch::default();
        batch.delete_range(Table::Meta, UNDO_PREFIX.to_vec(), UNDO_END.to_vec());
        self.store().write(batch, Durability::Logged)
    }

    /// The kept undos, oldest first.
    pub fn undos(&self) -> Result<Vec<BlockUndo>> {
        let mut out = Vec::new();
        for item in self.store().iter_from(Table::Meta, UNDO_PREFIX) {
            let (key, value) = item?;
            if !key.starts_with(UNDO_PREFIX) {
                break;
            }
            out.push(BlockUndo::decode(&value)?);
        }
        Ok(out)
    }

    /// Blocks reverted, and synced heads recorded ([`Self::record_synced_head`]), since the
    /// leafdb was opened: a state read before either may hold what a block the chain no longer
    /// has wrote, under a head number the chain now gives another block, so what is kept from
    /// reads (serve's chunk cache) is told apart by this count.
    pub fn reverts(&self) -> u64 {
        self.reverts.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use alloy_primitives::{Address, U256};

    use super::*;
    use crate::{GenParams, MemStore, generate::SplitMix, kv::KvRead};

    /// The flat state: every account and slot row.
    fn flat(db: &LeafDb<MemStore>) -> Vec<crate::kv::KvPair> {
        [Table::Accounts, Table::Storage]
            .into_iter()
            .flat_map(|t| db.store().iter_from(t, &[]).map(Result::unwrap).collect::<Vec<_>>())
            .collect()
    }

    fn updated(nonce: u64, storage: &[(u64, u64)]) -> AccountChange {
        AccountChange::Updated(AccountUpdate {
            nonce,
            balance: U256::from(nonce),
            code_hash: crate::EMPTY_CODE_HASH,
            storage_wiped: false,
            storage: storage
                .iter()
                .map(|&(k, v)| (B256::left_padding_from(&k.to_be_bytes()), U256::from(v)))
                .collect(),
        })
    }

    #[test]
    fn reverting_blocks_newest_first_restores_each_parent_exactly() {
        let params = GenParams { accounts: 2_000, seed: 5 };
        let db = LeafDb::in_memory();
        db.generate(params).unwrap();
        let plain = (0..).find(|&i| params.account(i).code.is_none()).unwrap();
        let other = (plain + 1..).find(|&i| params.account(i).code.is_none()).unwrap();
        let mut rng = SplitMix::new(9);
        let mut states = vec![(db.head().unwrap().unwrap(), flat(&db))];
        let mut undos = Vec::new();
        for n in 1..=6 {
            let (header, mut diff) = params.block(n, 40);
            // Beside the generator's changes (balances, nonces, slots set, changed and
            // cleared, new accounts): an account deleted, one created with storage, slots of
            // a new account set and changed in a later block, a wipe of an empty storage.
            let fresh = Address::repeat_byte(0xaa);
            match n {
                2 => {
                    diff.accounts.insert(params.address(plain), AccountChange::Deleted);
                    diff.accounts.insert(fresh, updated(1, &[(1, 5), (2, 6)]));
                }
                4 => {
                    diff.accounts.insert(fresh, updated(2, &[(1, 0), (3, rng.next_u64() | 1)]));
                }
                5 => {
                    let mut wiped = updated(3, &[(7, 7)]);
                    if let AccountChange::Updated(u) = &mut wiped {
                        u.storage_wiped = true;
                    }
                    diff.accounts.insert(params.address(other), wiped);
                }
                _ => {}
            }
            let undo = db.undo_of(&diff).unwrap().expect("no storage of an account is lost");
            let (outcome, header) = db.apply_generated_block(&header, &diff).unwrap();
            assert!(outcome.root_matches);
            undos.push(undo);
            states.push((header, flat(&db)));
        }
        for n in (1..=6).rev() {
            let (parent, parent_flat) = &states[n - 1];
            let outcome = db.revert_block(parent, &undos[n - 1]).unwrap();
            assert!(
                outcome.root_matches,
                "block {n}: {} against {}",
                outcome.root, parent.state_root
            );
            assert_eq!(db.head().unwrap().unwrap(), *parent);
            assert!(flat(&db) == *parent_flat, "block {n}: the flat state differs");
        }
        let report = db.verify().unwrap();
        assert!(report.ok(), "{report:?}");
    }

    #[test]
    fn kept_undos_read_back_in_order_and_only_the_last_few() {
        let params = GenParams { accounts: 300, seed: 8 };
        let db = LeafDb::in_memory();
        db.generate(params).unwrap();
        let mut kept = Vec::new();
        for n in 1..=6 {
            let parent = db.head().unwrap().unwrap();
            let (header, diff) = params.block(n, 20);
            let undo = db.undo_of(&diff).unwrap().unwrap();
            let (_, header) = db.apply_generated_block(&header, &diff).unwrap();
            let undo = BlockUndo { parent, number: n, hash: header.hash, diff: undo };
            db.put_undo(&undo, 4).unwrap();
            kept.push(undo);
        }
        assert_eq!(db.undos().unwrap(), kept[2..], "blocks 3 to 6, oldest first, decoded whole");
        // A revert drops the reverted block's undo in the same write.
        db.revert_block(&kept[5].parent, &kept[5].diff).unwrap();
        assert_eq!(db.undos().unwrap(), kept[2..5]);
        db.clear_undos().unwrap();
        assert!(db.undos().unwrap().is_empty());
    }

    #[test]
    fn a_lost_storage_cannot_be_undone_and_only_the_parent_takes_a_revert() {
        let params = GenParams { accounts: 500, seed: 6 };
        let db = LeafDb::in_memory();
        db.generate(params).unwrap();
        let contract = (0..).find(|&i| params.account(i).slots > 0).unwrap();
        let address = params.address(contract);
        let mut diff = BlockDiff::default();
        diff.accounts.insert(address, AccountChange::Deleted);
        assert_eq!(db.undo_of(&diff).unwrap(), None, "a deleted storage");
        diff.accounts.insert(address, updated(9, &[]));
        if let Some(AccountChange::Updated(u)) = diff.accounts.get_mut(&address) {
            u.storage_wiped = true;
        }
        assert_eq!(db.undo_of(&diff).unwrap(), None, "a wiped storage");

        let genesis = db.head().unwrap().unwrap();
        let (header, diff) = params.block(1, 10);
        let undo = db.undo_of(&diff).unwrap().unwrap();
        db.apply_generated_block(&header, &diff).unwrap();
        let elsewhere = BlockHeader { hash: B256::repeat_byte(7), ..genesis };
        assert!(matches!(
            db.revert_block(&elsewhere, &undo),
            Err(LeafDbError::NotTheParent { head: 1, parent: 0, .. })
        ));
        assert!(db.revert_block(&genesis, &undo).unwrap().root_matches);
    }
}
