//! Tests of `sync_heal.rs`.
use super::*;
use crate::{
    MemStore,
    kv::{KvPair, KvRead, scan_range},
    schema::{BlockHeader, encode_account, slot_leaf_value},
    sync_import::ChunkAccount,
};

#[test]
fn chunk_import_matches_full_build_and_reconcile_prunes() {
    let db = LeafDb::in_memory();
    let mut accounts: Vec<ChunkAccount> = (0u64..200)
        .map(|i| ChunkAccount {
            hashed_address: keccak256(i.to_be_bytes()),
            account: TrieAccount { nonce: i, ..Default::default() },
            storage: Some(if i % 7 == 0 {
                vec![(keccak256([i as u8]), U256::from(i + 1))]
            } else {
                vec![]
            }),
        })
        .collect();
    accounts.sort_by_key(|a| a.hashed_address);
    for a in &mut accounts {
        if let Some(s) = &a.storage
            && let Some((k, v)) = s.first()
        {
            a.account.storage_root =
                crate::trie::root_of_sorted([(Nibbles::unpack(k), slot_leaf_value(v))]).unwrap();
        }
    }
    let mut skeleton = Vec::new();
    let mut children: [Option<alloy_trie::nodes::RlpNode>; 16] = Default::default();
    for n in 0u8..16 {
        let prefix = Nibbles::from_nibbles([n]);
        let part: Vec<_> = accounts
            .iter()
            .filter(|a| Nibbles::unpack(a.hashed_address).get_unchecked(0) == n)
            .cloned()
            .collect();
        let out = db.import_account_chunk(&prefix, &part).unwrap();
        if !part.is_empty() {
            children[n as usize] = Some(alloy_trie::nodes::RlpNode::word_rlp(&out.root));
        }
    }
    let mut rlp = Vec::new();
    crate::trie::node::encode_branch(&children, None, &mut rlp);
    let head = BlockHeader { state_root: keccak256(&rlp), ..Default::default() };
    skeleton.push((Nibbles::new(), rlp));
    assert_eq!(db.write_sync_skeleton(&skeleton).unwrap(), head.state_root);
    // A head whose root the trie does not have is refused, and nothing is recorded.
    let wrong = BlockHeader { state_root: keccak256(b"another root"), ..head };
    assert!(matches!(db.record_synced_head(wrong), Err(LeafDbError::SyncedRootMismatch { .. })));
    assert_eq!(db.head().unwrap(), None);
    assert_eq!(db.record_synced_head(head).unwrap(), head.state_root);
    assert_eq!(db.head().unwrap(), Some(head));
    let report = db.verify().unwrap();
    assert!(report.ok(), "{report:?}");
    assert_eq!(report.accounts, 200);
    // Junk accounts under prefix 0, one with storage (a slot and a node): reconcile from the
    // (correct) trie deletes them with that storage, and says that no account's flat entry
    // had to be written.
    let prefix = Nibbles::from_nibbles([0]);
    let good = db.node(None, &prefix).unwrap().unwrap();
    let mut junk = WriteBatch::default();
    let (mut k, mut with_storage) = ([0u8; 32], [0u8; 32]);
    (k[0], with_storage[0]) = (0x01, 0x02);
    for key in [k, with_storage] {
        junk.put(Table::Accounts, key.to_vec(), encode_account(&TrieAccount::default()));
    }
    let owner = B256::from(with_storage);
    junk.put(Table::Storage, storage_key(&owner, &B256::repeat_byte(9)).to_vec(), vec![1]);
    let node = crate::keys::storage_node_key(&owner, &Nibbles::from_nibbles([3]));
    junk.put(Table::StorageNodes, node, vec![0xc0]);
    db.store().write(junk, Durability::Logged).unwrap();
    assert!(!db.verify().unwrap().ok());
    let accounts = reconciled(&db, &prefix, keccak256(&good), &[], RECONCILE_WINDOW).unwrap();
    assert!(db.verify().unwrap().ok());
    assert!(!accounts.is_empty() && accounts.iter().all(|a| !a.2 && a.0 != B256::from(k)));
    for table in [Table::Storage, Table::StorageNodes] {
        let left = db.store().iter_from(table, owner.as_slice()).next().transpose().unwrap();
        assert!(left.is_none_or(|(key, _)| !key.starts_with(owner.as_slice())), "{table:?}");
    }
}

/// Slots under a storage that its trie does not have are deleted, a few one by one and many
/// as a range, and the storage's own slots stay as they were.
#[test]
fn reconcile_storage_deletes_stray_slots_a_few_or_many() {
    use crate::GenParams;
    let db = LeafDb::in_memory();
    db.generate(GenParams { accounts: 300, seed: 3 }).unwrap();
    let (first, _) = db.store().iter_from(Table::Storage, &[]).next().unwrap().unwrap();
    let owner = B256::from_slice(&first[..32]);
    let root = db.stored_storage_root(&owner).unwrap();
    let slots = |db: &LeafDb<_>| -> Vec<_> {
        let (lo, hi) = storage_range(&owner, &Nibbles::new());
        scan_range(db.store(), Table::Storage, (lo, hi)).map(Result::unwrap).collect()
    };
    let own = slots(&db);
    for stray in [3u64, 300] {
        let mut batch = WriteBatch::default();
        for i in 0..stray {
            let slot = keccak256(format!("stray {i}"));
            batch.put(Table::Storage, storage_key(&owner, &slot).to_vec(), vec![1]);
        }
        db.store().write(batch, Durability::Logged).unwrap();
        assert_eq!(slots(&db).len(), own.len() + stray as usize);
        let count = db.reconcile_storage(&owner, &Nibbles::new(), root, &[]).unwrap();
        assert_eq!(count, own.len() as u64);
        assert_eq!(slots(&db), own, "{stray} stray slots");
    }
    assert!(db.verify().unwrap().ok());
}

/// With `kept` subtries, a reconciliation walks and scans only the rest: a stray account in
/// the rest is deleted, one inside a kept subtrie is left (kept means trusted, not looked
/// at), and only the rest's accounts are returned.
#[test]
fn reconcile_passes_over_kept_subtries() {
    use crate::GenParams;
    let db = LeafDb::in_memory();
    db.generate(GenParams { accounts: 3000, seed: 5 }).unwrap();
    let prefix = Nibbles::from_nibbles([7]);
    let rlp = db.node(None, &prefix).unwrap().unwrap();
    let DecodedNode::Branch { children, .. } = DecodedNode::decode(&rlp).unwrap() else {
        panic!("no branch at [7]")
    };
    let by_hash: Vec<u8> =
        (0..16u8).filter(|i| children[*i as usize].as_ref().is_some_and(|c| c.is_hash())).collect();
    assert!(by_hash.len() > 4, "{by_hash:?}");
    let rest = by_hash[3];
    let kept: Vec<Nibbles> =
        by_hash.iter().filter(|i| **i != rest).map(|i| Nibbles::from_nibbles([7, *i])).collect();
    let key_in = |nibble: u8| {
        let mut k = [0xee; 32];
        k[0] = 0x70 | nibble;
        B256::from(k)
    };
    let (stray_rest, stray_kept) = (key_in(rest), key_in(by_hash[0]));
    let mut batch = WriteBatch::default();
    for key in [stray_rest, stray_kept] {
        let junk = TrieAccount { nonce: 99, ..Default::default() };
        batch.put(Table::Accounts, key.to_vec(), encode_account(&junk));
    }
    db.store().write(batch, Durability::Logged).unwrap();
    let accounts = reconciled(&db, &prefix, keccak256(&rlp), &kept, RECONCILE_WINDOW).unwrap();
    let (lo, hi) = account_range(&Nibbles::from_nibbles([7, rest]));
    let under_rest = scan_range(db.store(), Table::Accounts, (lo, hi)).count();
    assert_eq!(accounts.len(), under_rest, "the rest's accounts returned");
    assert!(accounts.iter().all(|(k, _, changed)| k[0] == 0x70 | rest && !changed));
    let flat = |key: B256| db.store().get(Table::Accounts, key.as_slice()).unwrap();
    assert!(flat(stray_rest).is_none(), "the stray account in the rest is deleted");
    assert!(flat(stray_kept).is_some(), "a kept subtrie is not scanned");
    let mut batch = WriteBatch::default();
    batch.delete(Table::Accounts, stray_kept.as_slice());
    db.store().write(batch, Durability::Logged).unwrap();
    assert!(db.verify().unwrap().ok());
    let outside = Nibbles::from_nibbles([8, 1]);
    assert!(reconciled(&db, &prefix, keccak256(&rlp), &[outside], RECONCILE_WINDOW).is_err());
}

/// Every account `reconcile_accounts_by` passes on with `window`.
fn reconciled(
    db: &LeafDb<MemStore>,
    prefix: &Nibbles,
    hash: B256,
    kept: &[Nibbles],
    window: usize,
) -> Result<Vec<(B256, TrieAccount, bool)>> {
    let mut out = Vec::new();
    db.reconcile_accounts_by(prefix, hash, kept, window, |key, account, changed| {
        out.push((key, account, changed));
        Ok::<_, LeafDbError>(())
    })?;
    Ok(out)
}

/// A reconciliation a few leaves at a time writes what one of a single window writes: stray
/// flat entries on both sides of window boundaries deleted, the same accounts passed on with
/// the same flags, the storage's slots the same; an empty trie clears its range.
#[test]
fn reconciling_by_windows_equals_reconciling_at_once() {
    use crate::GenParams;
    let tables = |db: &LeafDb<MemStore>| -> Vec<Vec<KvPair>> {
        [Table::Accounts, Table::Storage, Table::AccountNodes, Table::StorageNodes]
            .into_iter()
            .map(|t| db.store().iter_from(t, &[]).map(Result::unwrap).collect())
            .collect()
    };
    // Strays only: the trie's leaves are read from the flat tables where no leaf node is
    // stored (imports store none), so a flat entry changed under one could not be walked.
    let damaged = || {
        let db = LeafDb::in_memory();
        db.generate(GenParams { accounts: 400, seed: 8 }).unwrap();
        let accounts: Vec<_> =
            scan_range(db.store(), Table::Accounts, account_range(&Nibbles::new()))
                .map(Result::unwrap)
                .collect();
        let mut batch = WriteBatch::default();
        // Beside every seventh account, in the key order a window boundary falls in.
        for (key, _) in accounts.iter().step_by(7) {
            let mut stray = key.to_vec();
            stray[31] ^= 0x55;
            batch.put(Table::Accounts, stray, encode_account(&TrieAccount::default()));
        }
        let (first, _) = db.store().iter_from(Table::Storage, &[]).next().unwrap().unwrap();
        let owner = B256::from_slice(&first[..32]);
        for i in 0..40u64 {
            let slot = keccak256(format!("stray {i}"));
            batch.put(Table::Storage, storage_key(&owner, &slot).to_vec(), vec![1]);
        }
        db.store().write(batch, Durability::Logged).unwrap();
        (db, owner)
    };
    let ((at_once, owner), (by_three, _)) = (damaged(), damaged());
    let root = at_once.account_root().unwrap();
    let storage_root = at_once.stored_storage_root(&owner).unwrap();
    let all = Nibbles::new();
    let one = reconciled(&at_once, &all, root, &[], RECONCILE_WINDOW).unwrap();
    let three = reconciled(&by_three, &all, root, &[], 3).unwrap();
    assert_eq!(one, three);
    assert_eq!(one.len(), 400, "every account, none written (all were right)");
    assert!(one.iter().all(|a| !a.2));
    let slots = at_once.reconcile_storage_by(&owner, &all, storage_root, &[], 1 << 20).unwrap();
    assert_eq!(by_three.reconcile_storage_by(&owner, &all, storage_root, &[], 3).unwrap(), slots);
    for (i, (a, b)) in tables(&at_once).iter().zip(tables(&by_three)).enumerate() {
        let first = a.iter().zip(&b).position(|(x, y)| x != y);
        assert!(
            a == &b,
            "table {i}: {} against {} rows, first difference at {first:?}",
            a.len(),
            b.len()
        );
    }
    assert!(by_three.verify().unwrap().ok());
    // A trie with no leaves leaves nothing in its range.
    let prefix = Nibbles::from_nibbles([5]);
    let none = reconciled(&by_three, &prefix, EMPTY_ROOT_HASH, &[], 3).unwrap();
    assert!(none.is_empty());
    assert_eq!(scan_range(by_three.store(), Table::Accounts, account_range(&prefix)).count(), 0);
}
