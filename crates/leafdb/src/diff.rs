//! A block's state changes as the leafdb applies them.

use std::collections::BTreeMap;

use alloy_primitives::{Address, B256, Bytes, U256};

/// The post-state of one touched account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountChange {
    /// The account no longer exists (self-destructed or removed as empty); its storage goes too.
    Deleted,
    /// The account exists after the block with these values.
    Updated(AccountUpdate),
}

/// An account's post-state and the slots the block touched.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AccountUpdate {
    /// Nonce after the block.
    pub nonce: u64,
    /// Balance after the block, in wei.
    pub balance: U256,
    /// Hash of the account's code (`KECCAK_EMPTY` for none).
    pub code_hash: B256,
    /// The whole storage was wiped first (the account was destroyed and created again).
    pub storage_wiped: bool,
    /// Touched slots (unhashed keys) and their values after the block; zero deletes the slot.
    pub storage: BTreeMap<B256, U256>,
}

/// Everything a block changed in the state.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BlockDiff {
    /// Touched accounts by address.
    pub accounts: BTreeMap<Address, AccountChange>,
    /// Code deployed in the block.
    pub codes: Vec<Bytes>,
}
