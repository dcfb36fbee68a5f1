//! Helpers shared by the serve integration tests: a generated RocksDB state and an independent
//! reference model of it computed from the generator's parameters.
#![allow(dead_code, unreachable_pub, missing_docs, clippy::unwrap_used)]

use std::{
    collections::BTreeMap,
    path::Path,
    sync::{Arc, OnceLock},
};

use alloy_primitives::{Address, B256, U256, keccak256};
use alloy_trie::{EMPTY_ROOT_HASH, TrieAccount};
use leafsync_leafdb::{
    AccountChange, AccountUpdate, BlockDiff, BlockHeader, DbOptions, EMPTY_CODE_HASH, GenParams,
    LeafDb, LeafDbConfig, RocksStore, schema::slot_leaf_value, trie::root_of_sorted,
};
use leafsync_p2p::leaf::{AccountLeaf, AccountStorage, StorageSlot, WirePath};
use leafsync_serve::config::{DEFAULT_INLINE_STORAGE_BYTES, INLINE_STORAGE_SLOTS_LIMIT};

pub const ACCOUNTS: u64 = 20_000;
pub const SEED: u64 = 7;

/// One account of the reference model.
#[derive(Debug, Clone)]
pub struct RefAccount {
    pub hashed: B256,
    pub account: TrieAccount,
    pub slots: Vec<(B256, U256)>,
}

/// A generated state in RocksDB, shared read-only by the tests of one binary.
pub struct Fixture {
    pub _dir: tempfile::TempDir,
    pub db: Arc<LeafDb>,
    pub params: GenParams,
    pub model: Vec<RefAccount>,
}

pub fn open_rocks(dir: &Path) -> LeafDb {
    let options = DbOptions::default().block_cache_bytes(32 << 20).write_buffer_bytes(16 << 20);
    LeafDb::open(dir, &options, LeafDbConfig::default()).unwrap()
}

/// A fresh generated state (for tests that apply blocks).
pub fn generated(accounts: u64, seed: u64) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let db = open_rocks(dir.path());
    let params = GenParams { accounts, seed };
    db.generate(params).unwrap();
    let model = reference(params);
    Fixture { _dir: dir, db: Arc::new(db), params, model }
}

/// The shared read-only 20k-account state.
pub fn shared() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| generated(ACCOUNTS, SEED))
}

/// The reference model: every account of the generator, sorted by hashed address, with its
/// storage root computed independently of the leafdb.
pub fn reference(params: GenParams) -> Vec<RefAccount> {
    params
        .hashed_accounts()
        .map(|a| RefAccount {
            hashed: a.hashed_address,
            account: TrieAccount {
                nonce: a.nonce,
                balance: a.balance,
                storage_root: storage_root(&a.slots),
                code_hash: a.code_hash,
            },
            slots: a.slots,
        })
        .collect()
}

pub fn storage_root(slots: &[(B256, U256)]) -> B256 {
    if slots.is_empty() {
        return EMPTY_ROOT_HASH;
    }
    root_of_sorted(slots.iter().map(|(k, v)| (alloy_trie::Nibbles::unpack(k), slot_leaf_value(v))))
        .unwrap()
}

pub fn has_prefix(key: &B256, prefix: &WirePath) -> bool {
    let nibbles = alloy_trie::Nibbles::unpack(key);
    prefix.as_slice().iter().enumerate().all(|(i, n)| nibbles.get_unchecked(i) == *n)
}

/// The prefix of `depth` nibbles numbered `index` (big-endian base 16).
pub fn prefix(depth: usize, index: usize) -> WirePath {
    let nibbles: Vec<u8> =
        (0..depth).map(|i| ((index >> (4 * (depth - 1 - i))) & 0xf) as u8).collect();
    WirePath::from_nibbles(&nibbles).unwrap()
}

/// The storage as the server should carry it in a leaf under the default inline threshold.
pub fn expected_storage(slots: &[(B256, U256)]) -> AccountStorage {
    let inline: Vec<StorageSlot> =
        slots.iter().map(|(k, v)| StorageSlot { hashed_slot: *k, value: *v }).collect();
    let size: usize = inline.iter().map(alloy_rlp::Encodable::length).sum();
    if inline.len() <= INLINE_STORAGE_SLOTS_LIMIT && size <= DEFAULT_INLINE_STORAGE_BYTES {
        AccountStorage::Inline(inline)
    } else {
        AccountStorage::Large { slot_count: slots.len() as u64 }
    }
}

/// The leaf the server should send for a reference account.
pub fn expected_leaf(a: &RefAccount) -> AccountLeaf {
    AccountLeaf {
        hashed_address: a.hashed,
        nonce: a.account.nonce,
        balance: a.account.balance,
        storage_root: a.account.storage_root,
        code_hash: a.account.code_hash,
        storage: expected_storage(&a.slots),
    }
}

/// The reference accounts under `prefix`, in key order.
pub fn model_under<'m>(model: &'m [RefAccount], prefix: &WirePath) -> Vec<&'m RefAccount> {
    model.iter().filter(|a| has_prefix(&a.hashed, prefix)).collect()
}

/// A block header chained to its parent number.
pub fn header(number: u64) -> BlockHeader {
    let hash = |n: u64| keccak256(n.to_be_bytes());
    BlockHeader {
        number,
        hash: hash(number),
        parent_hash: if number == 0 { B256::ZERO } else { hash(number - 1) },
        state_root: B256::ZERO,
        timestamp: 0,
    }
}

/// A block that sets the balance of `count` generated accounts (spread over the key space) to
/// a value encoding the block number, and one storage slot of a contract.
pub fn marker_block(params: GenParams, number: u64, count: u64) -> BlockDiff {
    let mut accounts = BTreeMap::new();
    for k in 0..count {
        let i = (number * 7919 + k * 104_729) % params.accounts;
        let a = params.account(i);
        let code_hash = a.code.map_or(EMPTY_CODE_HASH, |c| keccak256(params.code(c)));
        let mut storage = BTreeMap::new();
        if a.slots > 0 {
            storage.insert(params.slot(i, 0).0, U256::from(number + 1));
        }
        accounts.insert(
            a.address,
            AccountChange::Updated(AccountUpdate {
                nonce: a.nonce + number,
                balance: U256::from(number * 1_000_000 + k),
                code_hash,
                storage_wiped: false,
                storage,
            }),
        );
    }
    BlockDiff { accounts, codes: Vec::new() }
}

pub fn address_of(params: GenParams, i: u64) -> Address {
    params.address(i)
}

pub type Db = LeafDb<RocksStore>;
