//! Folding a block's diff-mode prestate traces and its withdrawals into one [`BlockDiff`]:
//! one post-state per touched account and slot.
//!
//! Rules (geth's `prestateTracer` with `diffMode`, per transaction):
//! * an account in `pre` and absent from `post` was deleted (self-destruct);
//! * `post` lists only changed fields; unchanged ones come from `pre` (geth omits a zero nonce
//!   and empty code there), or from the state before the block when `pre` lacks the account;
//! * a slot in `pre` and absent from `post` of an account still alive was cleared;
//! * `code` in `post` is new code;
//! * an account deleted and created again in the same block has its storage wiped.
//!
//! Withdrawals are credited after all transactions (EIP-4895), gwei → wei. The system calls'
//! writes, which no trace shows ([`crate::system`]), are folded in around the transactions by
//! [`fold_full_block`], each only where its contract exists.

use std::collections::{BTreeMap, BTreeSet};

use alloy_primitives::{Address, B256, Bytes, KECCAK256_EMPTY, U256, keccak256};
use leafsync_leafdb::{AccountChange, AccountUpdate, BlockDiff, KvStore, LeafDb};

use crate::{
    error::IngestError,
    system::{SlotWrite, SystemWrites},
    types::{TracedAccount, TxTrace, Withdrawal},
};

/// Wei per gwei: withdrawal amounts are in gwei.
pub const WEI_PER_GWEI: u64 = 1_000_000_000;

/// The fields of an account that a trace can leave unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccountInfo {
    /// Nonce.
    pub nonce: u64,
    /// Balance in wei.
    pub balance: U256,
    /// Code hash (`KECCAK256_EMPTY` for none).
    pub code_hash: B256,
}

impl Default for AccountInfo {
    fn default() -> Self {
        Self { nonce: 0, balance: U256::ZERO, code_hash: KECCAK256_EMPTY }
    }
}

/// The state before the block, for accounts a trace does not describe in `pre`.
pub trait StateView {
    /// The account at `address`, if it exists.
    fn account(&self, address: &Address) -> Result<Option<AccountInfo>, IngestError>;
}

impl<S: KvStore> StateView for LeafDb<S> {
    fn account(&self, address: &Address) -> Result<Option<AccountInfo>, IngestError> {
        Ok(self.account_by_address(address)?.map(|a| AccountInfo {
            nonce: a.nonce,
            balance: a.balance,
            code_hash: a.code_hash,
        }))
    }
}

impl StateView for BTreeMap<Address, AccountInfo> {
    fn account(&self, address: &Address) -> Result<Option<AccountInfo>, IngestError> {
        Ok(self.get(address).copied())
    }
}

/// An account's state while the block is folded.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Folded {
    Deleted,
    Alive { info: AccountInfo, storage_wiped: bool, storage: BTreeMap<B256, U256> },
}

fn info_from_pre(pre: &TracedAccount) -> AccountInfo {
    let code_hash = match (&pre.code, pre.code_hash) {
        (Some(code), _) if !code.is_empty() => keccak256(code),
        (_, Some(hash)) => hash,
        _ => KECCAK256_EMPTY,
    };
    AccountInfo {
        nonce: pre.nonce.unwrap_or(0),
        balance: pre.balance.unwrap_or(U256::ZERO),
        code_hash,
    }
}

/// The folded state of `address` before a change, taking it from the block so far, the
/// transaction's `pre`, or the state before the block.
fn base(
    folded: &mut BTreeMap<Address, Folded>,
    address: Address,
    pre: Option<&TracedAccount>,
    state: &impl StateView,
) -> Result<(AccountInfo, bool, BTreeMap<B256, U256>), IngestError> {
    Ok(match folded.remove(&address) {
        Some(Folded::Alive { info, storage_wiped, storage }) => (info, storage_wiped, storage),
        // Deleted earlier in the block and created again: nothing of the old storage survives.
        Some(Folded::Deleted) => (AccountInfo::default(), true, BTreeMap::new()),
        None => {
            let info = match pre {
                Some(pre) => info_from_pre(pre),
                None => state.account(&address)?.unwrap_or_default(),
            };
            (info, false, BTreeMap::new())
        }
    })
}

/// Folds the traces of a block's transactions (in block order) and its withdrawals into the
/// block's [`BlockDiff`], without system calls ([`fold_full_block`]). `block` only names the
/// block in errors.
pub fn fold_block(
    block: u64,
    traces: &[TxTrace],
    withdrawals: &[Withdrawal],
    state: &impl StateView,
) -> Result<BlockDiff, IngestError> {
    fold_full_block(block, &SystemWrites::default(), traces, withdrawals, state)
}

/// Sets the slots of `writes` whose contract exists (has code) in the block so far or in
/// `state`: a system call to an address without code does nothing.
fn system_writes(
    folded: &mut BTreeMap<Address, Folded>,
    writes: &[SlotWrite],
    state: &impl StateView,
) -> Result<(), IngestError> {
    for write in writes {
        let exists = match folded.get(&write.address) {
            Some(Folded::Alive { info, .. }) => info.code_hash != KECCAK256_EMPTY,
            Some(Folded::Deleted) => false,
            None => state.account(&write.address)?.is_some_and(|a| a.code_hash != KECCAK256_EMPTY),
        };
        if !exists {
            continue;
        }
        let (info, storage_wiped, mut storage) = base(folded, write.address, None, state)?;
        storage.insert(write.slot, write.value);
        folded.insert(write.address, Folded::Alive { info, storage_wiped, storage });
    }
    Ok(())
}

/// [`fold_block`] with the block's system calls: `system.before` set before the first
/// transaction, `system.after` after the last (and after the withdrawals, which touch no
/// contract storage). Each applies only where its contract exists.
pub fn fold_full_block(
    block: u64,
    system: &SystemWrites,
    traces: &[TxTrace],
    withdrawals: &[Withdrawal],
    state: &impl StateView,
) -> Result<BlockDiff, IngestError> {
    let mut folded: BTreeMap<Address, Folded> = BTreeMap::new();
    let mut codes: BTreeMap<B256, Bytes> = BTreeMap::new();
    system_writes(&mut folded, &system.before, state)?;
    for (index, tx) in traces.iter().enumerate() {
        let Some(diff) = &tx.result else {
            let message = tx.error.clone().unwrap_or_else(|| "no result and no error".to_owned());
            return Err(IngestError::TraceFailed { block, index, message });
        };
        let touched: BTreeSet<&Address> = diff.pre.keys().chain(diff.post.keys()).collect();
        for address in touched {
            let pre = diff.pre.get(address);
            let Some(post) = diff.post.get(address) else {
                // In `pre` only: the account is gone after this transaction.
                folded.insert(*address, Folded::Deleted);
                continue;
            };
            let (mut info, storage_wiped, mut storage) = base(&mut folded, *address, pre, state)?;
            if let Some(balance) = post.balance {
                info.balance = balance;
            }
            if let Some(nonce) = post.nonce {
                info.nonce = nonce;
            }
            if let Some(code) = &post.code {
                if code.is_empty() {
                    info.code_hash = KECCAK256_EMPTY;
                } else {
                    let hash = keccak256(code);
                    info.code_hash = hash;
                    codes.entry(hash).or_insert_with(|| code.clone());
                }
            } else if let Some(hash) = post.code_hash {
                info.code_hash = hash;
            }
            let post_slots = post.storage.as_ref();
            if let Some(pre_slots) = pre.and_then(|p| p.storage.as_ref()) {
                for slot in pre_slots.keys() {
                    if !post_slots.is_some_and(|s| s.contains_key(slot)) {
                        storage.insert(*slot, U256::ZERO);
                    }
                }
            }
            if let Some(post_slots) = post_slots {
                storage.extend(post_slots.iter().map(|(k, v)| (*k, *v)));
            }
            folded.insert(*address, Folded::Alive { info, storage_wiped, storage });
        }
    }
    for w in withdrawals {
        if w.amount == 0 {
            // Crediting zero changes nothing (and an empty account would not be created).
            continue;
        }
        let (mut info, storage_wiped, storage) = base(&mut folded, w.address, None, state)?;
        info.balance = info.balance.saturating_add(U256::from(w.amount) * U256::from(WEI_PER_GWEI));
        folded.insert(w.address, Folded::Alive { info, storage_wiped, storage });
    }
    system_writes(&mut folded, &system.after, state)?;
    let accounts = folded
        .into_iter()
        .map(|(address, f)| {
            let change = match f {
                Folded::Deleted => AccountChange::Deleted,
                Folded::Alive { info, storage_wiped, mut storage } => {
                    if storage_wiped {
                        // The storage starts empty: a cleared slot has nothing to delete.
                        storage.retain(|_, v| !v.is_zero());
                    }
                    AccountChange::Updated(AccountUpdate {
                        nonce: info.nonce,
                        balance: info.balance,
                        code_hash: info.code_hash,
                        storage_wiped,
                        storage,
                    })
                }
            };
            (address, change)
        })
        .collect();
    Ok(BlockDiff { accounts, codes: codes.into_values().collect() })
}
