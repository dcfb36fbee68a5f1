//! Helpers shared by the leafdb integration tests.
#![allow(dead_code, unreachable_pub, missing_docs)]
#![allow(clippy::unwrap_used)] // tests fail loudly on bad fixtures

use leafsync_leafdb::test_utils::package_dir;
use std::{collections::BTreeMap, path::PathBuf};

use alloy_primitives::{Address, B256, U256, keccak256};
use alloy_trie::{HashBuilder, Nibbles, TrieAccount};
use leafsync_leafdb::{
    AccountChange, AccountUpdate, BlockDiff, BlockHeader, EMPTY_CODE_HASH, GenParams, KvStore,
    LeafDb, schema::slot_leaf_value,
};

/// The shared test data folder.
pub fn testdata(rel: &str) -> PathBuf {
    package_dir(env!("CARGO_MANIFEST_DIR")).join("../../../shared/testdata").join(rel)
}

/// A model account.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModelAccount {
    pub nonce: u64,
    pub balance: U256,
    pub code_hash: B256,
    pub storage: BTreeMap<B256, U256>,
}

/// The state as plain maps.
pub type Model = BTreeMap<Address, ModelAccount>;

/// Root of the model by alloy-trie's HashBuilder: the independent reference.
pub fn reference_root(model: &Model) -> B256 {
    let mut accounts: Vec<(B256, Vec<u8>)> = model
        .iter()
        .map(|(addr, a)| {
            let mut slots: Vec<(B256, &U256)> = a
                .storage
                .iter()
                .filter(|(_, v)| !v.is_zero())
                .map(|(k, v)| (keccak256(k), v))
                .collect();
            slots.sort();
            let mut hb = HashBuilder::default();
            for (k, v) in slots {
                hb.add_leaf(Nibbles::unpack(k), &slot_leaf_value(v));
            }
            let acct = TrieAccount {
                nonce: a.nonce,
                balance: a.balance,
                storage_root: hb.root(),
                code_hash: a.code_hash,
            };
            (keccak256(addr), alloy_rlp::encode(acct))
        })
        .collect();
    accounts.sort();
    let mut hb = HashBuilder::default();
    for (k, v) in accounts {
        hb.add_leaf(Nibbles::unpack(k), &v);
    }
    hb.root()
}

/// The deterministic random stream of the test workloads: the generator's.
pub use leafsync_leafdb::generate::SplitMix as Rng;

/// A block that only sets `address`'s nonce and balance (no code, storage untouched).
pub fn account_diff(address: Address, nonce: u64, balance: u64) -> BlockDiff {
    let mut diff = BlockDiff::default();
    let update = AccountUpdate {
        nonce,
        balance: U256::from(balance),
        code_hash: EMPTY_CODE_HASH,
        ..Default::default()
    };
    diff.accounts.insert(address, AccountChange::Updated(update));
    diff
}

/// A random block over a small pool of addresses and slots, so that updates collide, accounts
/// die and come back, and storage tries grow, shrink and vanish. Updates `model` to match.
pub fn random_block(rng: &mut Rng, model: &mut Model, changes: u64) -> BlockDiff {
    let mut diff = BlockDiff::default();
    for _ in 0..changes {
        let addr = Address::with_last_byte(rng.below(48) as u8);
        let roll = rng.below(100);
        if roll < 8 {
            diff.accounts.insert(addr, AccountChange::Deleted);
            model.remove(&addr);
            continue;
        }
        let mut acct = model
            .get(&addr)
            .cloned()
            .unwrap_or(ModelAccount { code_hash: EMPTY_CODE_HASH, ..Default::default() });
        // Earlier changes of this block to the same account are folded in: a deletion earlier in
        // the block means the account was created again, with its old storage gone.
        let (mut wiped, mut touched) = match diff.accounts.get(&addr) {
            Some(AccountChange::Updated(u)) => (u.storage_wiped, u.storage.clone()),
            Some(AccountChange::Deleted) => (true, BTreeMap::new()),
            None => (false, BTreeMap::new()),
        };
        if roll < 14 {
            acct.storage.clear();
            touched.clear();
            wiped = true;
        }
        acct.nonce = rng.below(1000);
        acct.balance = U256::from(rng.next_u64());
        if roll.is_multiple_of(5) {
            let code = alloy_primitives::Bytes::from(
                rng.next_u64().to_be_bytes().repeat(1 + roll as usize % 7),
            );
            acct.code_hash = keccak256(&code);
            diff.codes.push(code);
        }
        for _ in 0..rng.below(12) {
            let slot = B256::with_last_byte(rng.below(40) as u8);
            let value = if rng.below(4) == 0 {
                U256::ZERO
            } else {
                U256::from(rng.next_u64() >> rng.below(64))
            };
            touched.insert(slot, value);
            if value.is_zero() {
                acct.storage.remove(&slot);
            } else {
                acct.storage.insert(slot, value);
            }
        }
        if wiped {
            // After a wipe the post-state lists every slot the account has.
            touched.retain(|_, v| !v.is_zero());
        }
        diff.accounts.insert(
            addr,
            AccountChange::Updated(AccountUpdate {
                nonce: acct.nonce,
                balance: acct.balance,
                code_hash: acct.code_hash,
                storage_wiped: wiped,
                storage: touched,
            }),
        );
        model.insert(addr, acct);
    }
    diff
}

/// Header of synthetic block `n` with the state root `state_root`.
pub fn header(n: u64, state_root: B256) -> BlockHeader {
    BlockHeader { state_root, ..GenParams::block_header(n) }
}

/// Loads `model` fresh into an empty leafdb through the bulk importer.
pub fn fresh_build<S: KvStore>(db: &LeafDb<S>, model: &Model) -> B256 {
    let mut sorted: Vec<_> = model.iter().map(|(a, acct)| (keccak256(a), acct)).collect();
    sorted.sort_by_key(|(h, _)| *h);
    let mut import = leafsync_leafdb::BulkImport::start(db, "test").unwrap();
    for (h, acct) in sorted {
        let mut slots: Vec<_> = acct.storage.iter().map(|(k, v)| (keccak256(k), *v)).collect();
        slots.sort();
        import
            .add_account(
                leafsync_leafdb::ImportAccount {
                    hashed_address: h,
                    nonce: acct.nonce,
                    balance: acct.balance,
                    code_hash: acct.code_hash,
                },
                slots,
            )
            .unwrap();
    }
    import.finish(BlockHeader::default()).unwrap().root
}
