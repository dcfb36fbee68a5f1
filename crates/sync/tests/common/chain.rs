//! A test chain: random block diffs over a generated state, and leafdbs at any of its heads.

use std::{collections::BTreeMap, sync::Arc};

use alloy_primitives::{Address, B256, Bytes, U256, keccak256};
use leafsync_leafdb::{
    AccountChange, AccountUpdate, BlockDiff, BlockHeader, EMPTY_CODE_HASH, GenParams, LeafDb,
    MemStore, generate::SplitMix,
};

use super::source;

/// Accounts of the chain's genesis state.
pub const ACCOUNTS: u64 = 2000;
/// Seed of the chain's genesis state.
pub const SEED: u64 = 5;

/// A random block diff over the state of `db`.
pub fn random_diff(db: &LeafDb<MemStore>, params: GenParams, block: u64) -> BlockDiff {
    let mut rng = SplitMix::new(block * 7919 + 1);
    let mut diff = BlockDiff::default();
    for _ in 0..40 {
        let i = rng.below(ACCOUNTS);
        let address = params.address(i);
        let Some(old) = db.account_by_address(&address).unwrap() else { continue };
        let change = match rng.below(10) {
            0 => AccountChange::Deleted,
            _ => {
                let mut storage = BTreeMap::new();
                let a = params.account(i);
                if old.code_hash != EMPTY_CODE_HASH {
                    for _ in 0..rng.below(20) {
                        let j = rng.below(a.slots + 5);
                        let value =
                            if rng.below(4) == 0 { U256::ZERO } else { U256::from(rng.next_u64()) };
                        storage.insert(params.slot(i, j).0, value);
                    }
                }
                AccountChange::Updated(AccountUpdate {
                    nonce: old.nonce + 1,
                    balance: U256::from(rng.next_u64()),
                    code_hash: old.code_hash,
                    storage_wiped: false,
                    storage,
                })
            }
        };
        diff.accounts.insert(address, change);
    }
    // A new contract with new code and storage.
    let code = Bytes::from(block.to_be_bytes().repeat(64));
    let mut storage = BTreeMap::new();
    for j in 0..rng.below(300) {
        let mut key = [0u8; 16];
        key[..8].copy_from_slice(&block.to_be_bytes());
        key[8..].copy_from_slice(&j.to_be_bytes());
        storage.insert(keccak256(key), U256::from(j + 1));
    }
    diff.accounts.insert(
        Address::repeat_byte(block as u8),
        AccountChange::Updated(AccountUpdate {
            nonce: 1,
            balance: U256::from(block),
            code_hash: keccak256(&code),
            storage_wiped: false,
            storage,
        }),
    );
    diff.codes.push(code);
    diff
}

/// The chain: headers (with their true state roots) and diffs of blocks 1..=`blocks`.
pub fn chain(blocks: u64) -> Vec<(BlockHeader, BlockDiff)> {
    let params = GenParams { accounts: ACCOUNTS, seed: SEED };
    let db = source(ACCOUNTS, SEED);
    let mut parent = BlockHeader { state_root: db.account_root().unwrap(), ..Default::default() };
    let mut out = Vec::new();
    for number in 1..=blocks {
        let diff = random_diff(&db, params, number);
        let mut header = BlockHeader {
            number,
            hash: B256::from(U256::from(number)),
            parent_hash: parent.hash,
            state_root: B256::ZERO,
            timestamp: 0,
        };
        header.state_root = db.apply_block(&header, &diff).unwrap().root;
        out.push((header, diff));
        parent = header;
    }
    out
}

/// A leafdb at block `head` of the chain.
pub fn at(chain: &[(BlockHeader, BlockDiff)], head: u64) -> Arc<LeafDb<MemStore>> {
    let db = source(ACCOUNTS, SEED);
    for (header, diff) in chain.iter().take(head as usize) {
        assert!(db.apply_block(header, diff).unwrap().root_matches);
    }
    db
}
