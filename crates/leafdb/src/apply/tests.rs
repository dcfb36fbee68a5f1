//! Tests of block application: the storage tries' workers, account tries whose root is no
//! branch or stops being one, and a node missing on either of a block's threads.

use alloy_primitives::{Address, KECCAK256_EMPTY};

use super::*;
use crate::{AccountUpdate, LeafDb};

/// A diff of `contracts` accounts, each setting `slots` slots to values drawn from `seed`.
fn storage_diff(contracts: u64, slots: u64, seed: u64) -> BlockDiff {
    let mut diff = BlockDiff::default();
    for c in 0..contracts {
        let mut update =
            AccountUpdate { nonce: 1, code_hash: KECCAK256_EMPTY, ..Default::default() };
        for s in 0..slots {
            let slot = B256::from(U256::from(s * 7 + seed % 5));
            update.storage.insert(slot, U256::from(seed * 1_000 + c * 31 + s + 1));
        }
        diff.accounts.insert(Address::with_last_byte(c as u8 + 1), AccountChange::Updated(update));
    }
    diff
}

/// The storage tries split over several workers give what one thread gives: the same roots,
/// writes, deletions and replaced encodings (a machine of two cores only ever runs one).
#[test]
fn storage_tries_on_several_workers_match_one() {
    let db = LeafDb::in_memory();
    let header = BlockHeader { number: 1, ..Default::default() };
    db.apply_generated_block(&header, &storage_diff(9, 40, 1)).unwrap();
    let diff = storage_diff(9, 40, 2);
    let hashed: BTreeMap<B256, &AccountChange> =
        diff.accounts.iter().map(|(a, c)| (keccak256(a), c)).collect();
    let jobs = db.plan_storage(&hashed).unwrap();
    assert_eq!(jobs.len(), 9);
    assert!(jobs.iter().all(|j| j.root != EMPTY_ROOT_HASH));
    let one = storage_tries_on(db.store(), &jobs, 1).unwrap();
    let sorted = |mut v: Vec<Nibbles>| {
        v.sort_unstable();
        v
    };
    for workers in [2, 3, 4] {
        let split = storage_tries_on(db.store(), &jobs, workers).unwrap();
        assert_eq!(split.len(), one.len());
        for ((o1, c1), (o2, c2)) in one.iter().zip(&split) {
            assert_eq!((o1, c1.root), (o2, c2.root));
            assert_eq!(c1.writes, c2.writes);
            assert_eq!(sorted(c1.deletes.clone()), sorted(c2.deletes.clone()));
            assert_eq!(sorted(c1.store_deletes.clone()), sorted(c2.store_deletes.clone()));
            assert_eq!(c1.replaced.len(), c2.replaced.len());
        }
    }
}

/// A root branch left with one child (the parts' nodes dropped, the accounts set again in
/// one whole update), a root that is a leaf (loaded whole) and an empty root give the
/// roots of the same states built fresh, and leave node tables that verify.
#[test]
fn roots_that_collapse_or_are_no_branch_update_whole() {
    let account = |i: u64| {
        AccountChange::Updated(AccountUpdate {
            nonce: i,
            balance: U256::from(i * 1_000),
            code_hash: KECCAK256_EMPTY,
            ..Default::default()
        })
    };
    // Three addresses under different root children, by their hashes' first nibble.
    let mut addrs: Vec<Address> = Vec::new();
    for b in 1..=u8::MAX {
        let a = Address::repeat_byte(b);
        if addrs.iter().all(|o| keccak256(o)[0] >> 4 != keccak256(a)[0] >> 4) {
            addrs.push(a);
        }
        if addrs.len() == 3 {
            break;
        }
    }
    let fresh = |present: &[(usize, u64)]| {
        let db = LeafDb::in_memory();
        let mut diff = BlockDiff::default();
        for &(i, version) in present {
            diff.accounts.insert(addrs[i], account(version));
        }
        db.apply_generated_block(&BlockHeader::default(), &diff).unwrap().0.root
    };
    let db = LeafDb::in_memory();
    // Each block's changes (an account's version, or its deletion) and the state after it.
    type Step<'a> = (&'a [(usize, Option<u64>)], &'a [(usize, u64)]);
    let steps: [Step<'_>; 4] = [
        // From an empty root.
        (&[(0, Some(1)), (1, Some(2)), (2, Some(3))], &[(0, 1), (1, 2), (2, 3)]),
        // The root branch keeps one child.
        (&[(1, None), (2, None)], &[(0, 1)]),
        // From a leaf root.
        (&[(1, Some(4))], &[(0, 1), (1, 4)]),
        // A branch root that stays one.
        (&[(0, Some(5))], &[(0, 5), (1, 4)]),
    ];
    for (n, (changes, present)) in (1u64..).zip(steps) {
        let mut diff = BlockDiff::default();
        for &(i, version) in changes {
            diff.accounts.insert(addrs[i], version.map_or(AccountChange::Deleted, account));
        }
        let header = BlockHeader { number: n, ..Default::default() };
        let (out, _) = db.apply_generated_block(&header, &diff).unwrap();
        assert_eq!(out.root, fresh(present), "block {n}");
        let report = db.verify().unwrap();
        assert!(report.ok(), "block {n}: {report:?}");
    }
}

/// A block whose account trie or storage trie lacks a node fails with `MissingNode`, on
/// whichever of the block's threads meets it, without waiting on the other and without writing
/// anything: the head and the root stay those of the block before.
#[test]
fn a_missing_node_fails_the_block_and_writes_nothing() {
    use crate::{
        LeafDbConfig,
        kv::{Durability, KvStore},
    };

    let account = |i: u64, slots: u64| {
        let mut update = AccountUpdate {
            nonce: i,
            balance: U256::from(i),
            code_hash: KECCAK256_EMPTY,
            ..Default::default()
        };
        for s in 0..slots {
            update.storage.insert(B256::from(U256::from(s + 1)), U256::from(i * 100 + s + 1));
        }
        AccountChange::Updated(update)
    };
    let addr = |i: u64| Address::from_word(B256::from(U256::from(i)));
    // 400 accounts: every root child is a stored branch. Account 0 has a storage trie.
    let mut diff = BlockDiff::default();
    for i in 0..400 {
        diff.accounts.insert(addr(i), account(i + 1, if i == 0 { 8 } else { 0 }));
    }
    let db = LeafDb::in_memory();
    let header = BlockHeader { number: 1, ..Default::default() };
    let (first, _) = db.apply_generated_block(&header, &diff).unwrap();
    let owner = keccak256(addr(0));
    let nibble = keccak256(addr(7))[0] >> 4;
    let cases = [(None, Nibbles::from_nibbles([nibble])), (Some(owner), Nibbles::new())];
    for (trie, path) in cases {
        let store = db.store().clone();
        let key = node_key(trie.as_ref(), &path);
        let table = node_table(trie.as_ref());
        let node = store.get(table, &key).unwrap().expect("the node to remove is stored");
        let mut remove = WriteBatch::default();
        remove.delete(table, key.clone());
        store.write(remove, Durability::Logged).unwrap();
        // A leafdb on the same tables with empty caches, so the removed node is not in memory.
        let broken = LeafDb::with_store(store.clone(), LeafDbConfig::default()).unwrap();
        let mut next = BlockDiff::default();
        next.accounts.insert(addr(0), account(1_000, 9));
        next.accounts.insert(addr(7), account(1_001, 0));
        next.accounts.insert(addr(399), AccountChange::Deleted);
        let header = BlockHeader { number: 2, ..Default::default() };
        let err = broken.apply_generated_block(&header, &next).unwrap_err();
        assert!(
            matches!(&err, LeafDbError::MissingNode { owner: o, .. } if *o == trie.unwrap_or_default()),
            "{trie:?}: {err}"
        );
        assert_eq!(broken.head().unwrap().map(|h| h.number), Some(1));
        assert_eq!(broken.account_root().unwrap(), first.root);
        let mut restore = WriteBatch::default();
        restore.put(table, key, node);
        store.write(restore, Durability::Logged).unwrap();
    }
}
