//! Integration tests of the leafdb over RocksDB and the in-memory store.

#![allow(clippy::unwrap_used)] // tests fail loudly on bad fixtures

mod common;

use std::{collections::BTreeMap, sync::atomic::AtomicBool};

use alloy_primitives::{Address, B256, U256, keccak256};
use alloy_trie::{EMPTY_ROOT_HASH, Nibbles, proof::verify_proof};
use common::{
    Model, Rng, account_diff, fresh_build, header, random_block, reference_root, testdata,
};
use leafsync_leafdb::{
    AccountChange, AccountUpdate, BlockDiff, Cursor, DbOptions, Durability, EMPTY_CODE_HASH,
    KvRead, KvStore, LeafDb, LeafDbConfig, LeafDbError, Reading, Table, WriteBatch,
    keys::{node_key, node_table},
    read_alloc_file, schema,
    trie::{NodeSink, StackBuilder},
};
use proptest::prelude::*;

fn rocks(dir: &std::path::Path) -> LeafDb {
    LeafDb::open(dir, &DbOptions::default().block_cache_bytes(8 << 20), LeafDbConfig::default())
        .unwrap()
}

/// RocksDB's own log is bounded: it rolls at a size and keeps a few old files (its defaults keep
/// one file growing for the life of the process and up to 1,000 old ones). RocksDB records the
/// options it runs with in the database's `OPTIONS-*` file.
#[test]
fn rocksdb_keeps_its_own_log_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let _db = rocks(dir.path());
    let options = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("OPTIONS-"))
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect::<Vec<_>>();
    assert!(!options.is_empty(), "no OPTIONS file in {}", dir.path().display());
    let size = format!("max_log_file_size={}", leafsync_leafdb::kv::rocks::ROCKSDB_LOG_FILE_BYTES);
    let kept = format!("keep_log_file_num={}", leafsync_leafdb::kv::rocks::ROCKSDB_LOG_FILES_KEPT);
    for text in &options {
        assert!(text.contains(&size) && text.contains(&kept), "{size}, {kept} not in {text}");
    }
}

/// A database open in this process is not opened a second time: the error says it is in use and
/// names it (another process is refused the same way: `bin/leafsync/tests/cli_tool.rs`).
#[test]
fn a_database_in_use_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let _held = rocks(dir.path());
    let options = DbOptions::default().block_cache_bytes(8 << 20);
    match LeafDb::open(dir.path(), &options, LeafDbConfig::default()) {
        Err(e @ LeafDbError::InUse { .. }) => {
            assert!(e.to_string().contains(&dir.path().display().to_string()), "{e}");
        }
        other => panic!("a second open gave {other:?}"),
    }
}

/// A leafdb is bound to the first chain it is opened for: the same chain again is fine; while
/// it holds nothing, another chain takes it over; once it holds state, another is refused
/// naming both genesis hashes, across a reopen.
#[test]
fn a_leafdb_belongs_to_one_chain() {
    let dir = tempfile::tempdir().unwrap();
    let (ours, other) = (B256::repeat_byte(1), B256::repeat_byte(2));
    {
        let db = rocks(dir.path());
        db.bind_chain(other).unwrap();
        db.bind_chain(ours).unwrap();
        db.bind_chain(ours).unwrap();
        db.generate(leafsync_leafdb::GenParams { accounts: 10, seed: 1 }).unwrap();
    }
    let db = rocks(dir.path());
    db.bind_chain(ours).unwrap();
    match db.bind_chain(other) {
        Err(e @ LeafDbError::OtherChain { .. }) => {
            let text = e.to_string();
            assert!(text.contains(&ours.to_string()) && text.contains(&other.to_string()), "{e}");
        }
        r => panic!("another chain gave {r:?}"),
    }
    db.bind_chain(ours).unwrap();

    // A recorded genesis that is not 32 bytes is corruption, not another chain.
    let mut batch = WriteBatch::default();
    batch.put(Table::Meta, b"chain_genesis", vec![1, 2, 3]);
    db.store().write(batch, Durability::Synced).unwrap();
    assert!(matches!(db.bind_chain(ours), Err(LeafDbError::Corrupt { .. })));
}

#[test]
fn genesis_roots_of_public_networks() {
    for net in ["mainnet", "sepolia", "holesky", "hoodi"] {
        let path = testdata(&format!("genesis/{net}-genesis-alloc.json"));
        let meta: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let expected: B256 = meta["stateRoot"].as_str().unwrap().parse().unwrap();
        let alloc = read_alloc_file(&path).unwrap();
        let db = LeafDb::in_memory();
        let out = db.init_genesis(&alloc, common::header(0, B256::ZERO)).unwrap();
        assert_eq!(out.root, expected, "{net}");
        assert_eq!(db.head().unwrap().unwrap().state_root, expected, "{net}: head");
        assert!(db.verify().unwrap().ok(), "{net}: verify");
    }
}

#[test]
fn mainnet_genesis_through_rocksdb_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let alloc = read_alloc_file(&testdata("genesis/mainnet-genesis-alloc.json")).unwrap();
    let root = rocks(dir.path()).init_genesis(&alloc, header(0, B256::ZERO)).unwrap().root;
    assert_eq!(
        root,
        "0xd7f8974fb5ac78d9ac099b9ad5018bedc2ce0a72dad1827a1709da30580f0544"
            .parse::<B256>()
            .unwrap()
    );
    let db = rocks(dir.path());
    assert_eq!(db.account_root().unwrap(), root);
    let report = db.verify().unwrap();
    assert!(report.ok(), "{report:?}");
    assert_eq!(report.accounts, 8893);
    // A second import into a non-empty datadir is refused.
    assert!(matches!(
        db.init_genesis(&alloc, header(0, B256::ZERO)),
        Err(LeafDbError::NotEmpty { .. })
    ));
    // So is one into a leafdb with no head and no account but storage rows (a sync cut off
    // between its storage and its accounts): the genesis would be laid over them.
    let left = LeafDb::in_memory();
    let mut batch = WriteBatch::default();
    let key = schema::storage_key(&B256::repeat_byte(7), &B256::repeat_byte(1));
    batch.put(Table::Storage, key.to_vec(), schema::encode_slot_value(&U256::from(1)));
    left.store().write(batch, Durability::Logged).unwrap();
    let refused = left.init_genesis(&alloc, header(0, B256::ZERO));
    assert!(matches!(refused, Err(LeafDbError::NotEmpty { head: None, .. })), "{refused:?}");
}

/// Runs `blocks` random blocks on `db` and checks every root against the reference.
fn run_blocks<S: KvStore>(db: &LeafDb<S>, seed: u64, blocks: u64, changes: u64) -> Model {
    let mut rng = Rng::new(seed);
    let mut model = Model::new();
    for n in 1..=blocks {
        let diff = random_block(&mut rng, &mut model, changes);
        let expected = reference_root(&model);
        let out = db.apply_block(&header(n, expected), &diff).unwrap();
        assert_eq!(out.root, expected, "seed {seed} block {n}");
        assert!(out.root_matches);
    }
    model
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    /// Incremental RocksDB root = HashBuilder over maps = fresh build over the final leaves, the
    /// stored nodes equal a fresh build's node for node, and a reopen keeps root and head.
    #[test]
    fn incremental_equals_reference_and_fresh_build(seed in any::<u64>(), blocks in 1u64..25, changes in 1u64..30) {
        let dir = tempfile::tempdir().unwrap();
        let model = {
            let db = rocks(dir.path());
            run_blocks(&db, seed, blocks, changes)
        };
        let db = rocks(dir.path());
        let expected = reference_root(&model);
        prop_assert_eq!(db.account_root().unwrap(), expected);
        prop_assert_eq!(db.head().unwrap().unwrap().number, blocks);
        let report = db.verify().unwrap();
        prop_assert!(report.ok(), "{:?}", report);
        let fresh = LeafDb::in_memory();
        prop_assert_eq!(fresh_build(&fresh, &model), expected);
        // The same blocks on the in-memory store give the same root.
        let mem = LeafDb::in_memory();
        run_blocks(&mem, seed, blocks, changes);
        prop_assert_eq!(mem.account_root().unwrap(), expected);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    /// Blocks applied on a bulk-imported state, which stores no leaf node (each is rebuilt from
    /// the flat tables when a block reads it), give the reference root block after block,
    /// through insertions that split a leaf and deletions that fold a branch into it; the
    /// result verifies, and a reopen reads it alike.
    #[test]
    fn blocks_on_a_leafless_import_equal_the_reference(seed in any::<u64>(), blocks in 1u64..20, changes in 1u64..30) {
        let mut rng = Rng::new(seed);
        let mut model = Model::new();
        for _ in 0..6 {
            random_block(&mut rng, &mut model, 30);
        }
        let dir = tempfile::tempdir().unwrap();
        {
            let db = rocks(dir.path());
            prop_assert_eq!(fresh_build(&db, &model), reference_root(&model));
            prop_assert!(tries_agree(&db.verify().unwrap()));
            for n in 1..=blocks {
                let diff = random_block(&mut rng, &mut model, changes);
                let expected = reference_root(&model);
                let out = db.apply_block(&header(n, expected), &diff).unwrap();
                prop_assert_eq!(out.root, expected, "block {}", n);
            }
        }
        let db = rocks(dir.path());
        prop_assert_eq!(db.account_root().unwrap(), reference_root(&model));
        let report = db.verify().unwrap();
        prop_assert!(tries_agree(&report), "{:?}", report);
    }
}

/// Whether `verify` found the tries and the flat tables in agreement (the bulk import of a
/// model state writes no code, so missing code is not looked at).
fn tries_agree(r: &leafsync_leafdb::verify::VerifyReport) -> bool {
    r.computed_root == r.stored_root
        && r.storage_root_mismatches == 0
        && r.node_mismatches == 0
        && r.extra_nodes == 0
}

#[test]
fn proofs_verify_with_alloy_trie() {
    let db = LeafDb::in_memory();
    let model = run_blocks(&db, 7, 10, 40);
    let root = db.account_root().unwrap();
    let mut checked_slots = 0;
    for i in 0..60u8 {
        let addr = Address::with_last_byte(i);
        let p = db.account_proof(&addr).unwrap();
        let expected = p.account.map(alloy_rlp::encode);
        assert_eq!(p.account.is_some(), model.contains_key(&addr));
        verify_proof(root, Nibbles::unpack(keccak256(addr)), expected, p.proof.iter()).unwrap();
        if let Some(acct) = p.account {
            for s in 0..45u8 {
                let slot = B256::with_last_byte(s);
                let (value, proof) = db.storage_proof(&addr, &slot).unwrap();
                let expected = (!value.is_zero()).then(|| alloy_rlp::encode(value));
                verify_proof(
                    acct.storage_root,
                    Nibbles::unpack(keccak256(slot)),
                    expected,
                    proof.iter(),
                )
                .unwrap();
                checked_slots += 1;
            }
        }
    }
    assert!(checked_slots > 100);
    // A proof against another root fails.
    let p = db.account_proof(&Address::with_last_byte(1)).unwrap();
    let value = p.account.map(alloy_rlp::encode);
    assert!(
        verify_proof(
            keccak256(b"other"),
            Nibbles::unpack(keccak256(Address::with_last_byte(1))),
            value,
            p.proof.iter()
        )
        .is_err()
    );
}

#[test]
fn newer_schema_is_refused_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = rocks(dir.path());
        let mut b = WriteBatch::default();
        b.put(Table::Meta, b"schema_version".to_vec(), 99u32.to_be_bytes().to_vec());
        db.store().write(b, Durability::Synced).unwrap();
    }
    let err = LeafDb::open(dir.path(), &DbOptions::default(), LeafDbConfig::default()).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, LeafDbError::SchemaTooNew { found: 99, supported: 3 }));
    assert!(msg.contains("99") && msg.contains("newer"), "{msg}");
}

/// A datadir written by schema 1 (four-field head, version marker 1) opens: its state and head
/// read as before, the head's timestamp as 0, and the marker is raised to this build's schema.
#[test]
fn a_schema_1_database_still_opens() {
    let dir = tempfile::tempdir().unwrap();
    let params = leafsync_leafdb::GenParams { accounts: 300, seed: 9 };
    let root = {
        let db = rocks(dir.path());
        let root = db.generate(params).unwrap().root;
        // Rewrite the marker and the head as schema 1 wrote them (frozen bytes).
        let v1_head = format!("f864{}a0{}a0{}a0{}", "80", "11".repeat(32), "00".repeat(32), root);
        let v1_head = alloy_primitives::hex::decode(v1_head.replace("0x", "")).unwrap();
        let mut b = WriteBatch::default();
        b.put(Table::Meta, b"schema_version".to_vec(), 1u32.to_be_bytes().to_vec());
        b.put(Table::Meta, b"head".to_vec(), v1_head);
        db.store().write(b, Durability::Synced).unwrap();
        root
    };
    let db = rocks(dir.path());
    let head = db.head().unwrap().unwrap();
    assert_eq!(
        (head.number, head.hash, head.state_root, head.timestamp),
        (0, B256::repeat_byte(0x11), root, 0)
    );
    assert_eq!(*db.subscribe_head().borrow(), Some(head));
    assert_eq!(
        db.store().get(Table::Meta, b"schema_version").unwrap(),
        Some(leafsync_leafdb::SCHEMA_VERSION.to_be_bytes().to_vec())
    );
    assert!(db.verify().unwrap().ok());
    // Blocks apply on top, and their timestamps are kept.
    let next = leafsync_leafdb::BlockHeader { timestamp: 1_700_000_000, ..header(1, root) };
    db.apply_block(&next, &BlockDiff::default()).unwrap();
    drop(db);
    assert_eq!(rocks(dir.path()).head().unwrap(), Some(next));
}

/// Collects the leaves a builder emits and nothing else.
struct LeafSink(Vec<(Nibbles, Vec<u8>)>);

impl NodeSink for LeafSink {
    fn node(&mut self, _: &Nibbles, _: &[u8]) -> leafsync_leafdb::Result<()> {
        Ok(())
    }

    fn leaf(&mut self, path: &Nibbles, rlp: &[u8]) -> leafsync_leafdb::Result<()> {
        self.0.push((*path, rlp.to_vec()));
        Ok(())
    }
}

/// Stores every leaf node of every trie, as schema 2 did: the tries rebuilt from the flat
/// tables. Returns how many.
fn store_every_leaf<S: KvStore>(db: &LeafDb<S>) -> usize {
    let mut batch = WriteBatch::default();
    let mut accounts = StackBuilder::new(LeafSink(Vec::new()));
    for item in db.store().iter_from(Table::Accounts, &[]) {
        let (k, v) = item.unwrap();
        accounts.add_leaf(Nibbles::unpack(&k), v.to_vec()).unwrap();
    }
    let mut leaves: Vec<_> =
        accounts.finish_into().unwrap().1.0.into_iter().map(|(p, rlp)| (None, p, rlp)).collect();
    let mut by_owner: BTreeMap<B256, Vec<(Nibbles, Vec<u8>)>> = BTreeMap::new();
    for item in db.store().iter_from(Table::Storage, &[]) {
        let (k, v) = item.unwrap();
        let value = schema::slot_leaf_value(&schema::decode_slot_value(&v).unwrap());
        by_owner
            .entry(B256::from_slice(&k[..32]))
            .or_default()
            .push((Nibbles::unpack(&k[32..]), value));
    }
    for (owner, slots) in by_owner {
        let mut storage = StackBuilder::new(LeafSink(Vec::new()));
        for (slot, value) in slots {
            storage.add_leaf(slot, value).unwrap();
        }
        leaves.extend(
            storage.finish_into().unwrap().1.0.into_iter().map(|(p, rlp)| (Some(owner), p, rlp)),
        );
    }
    for (owner, path, rlp) in &leaves {
        batch.put(node_table(owner.as_ref()), node_key(owner.as_ref(), path), rlp.clone());
    }
    db.store().write(batch, Durability::Synced).unwrap();
    leaves.len()
}

/// A datadir written by schema 2, which stored every leaf node, opens: it verifies, its marker
/// is raised, and blocks give the same roots on it as on the same state imported without
/// leaves (reads take a stored leaf where there is one).
#[test]
fn a_schema_2_database_with_every_leaf_stored_still_opens() {
    let dir = tempfile::tempdir().unwrap();
    let params = leafsync_leafdb::GenParams { accounts: 300, seed: 12 };
    let twin = LeafDb::in_memory();
    twin.generate(params).unwrap();
    let stored = {
        let db = rocks(dir.path());
        db.generate(params).unwrap();
        let stored = store_every_leaf(&db);
        assert!(stored >= 300, "{stored} leaves");
        let mut b = WriteBatch::default();
        b.put(Table::Meta, b"schema_version".to_vec(), 2u32.to_be_bytes().to_vec());
        db.store().write(b, Durability::Synced).unwrap();
        stored
    };
    let db = rocks(dir.path());
    assert_eq!(
        db.store().get(Table::Meta, b"schema_version").unwrap(),
        Some(leafsync_leafdb::SCHEMA_VERSION.to_be_bytes().to_vec())
    );
    let report = db.verify().unwrap();
    assert!(report.ok(), "{report:?}");
    assert_eq!(db.account_root().unwrap(), twin.account_root().unwrap());
    // Blocks that update existing accounts and slots (replacing stored leaves), clear slots
    // and delete accounts (removing them).
    for n in 1..=4u64 {
        let (_, mut diff) = params.block(n, 60);
        diff.accounts.insert(params.address(n * 7), AccountChange::Deleted);
        let theirs = twin.apply_block(&header(n, B256::ZERO), &diff).unwrap();
        let ours = db.apply_block(&header(n, theirs.root), &diff).unwrap();
        assert!(ours.root_matches, "block {n}");
    }
    let leaves = |db: &LeafDb| {
        [Table::AccountNodes, Table::StorageNodes]
            .into_iter()
            .flat_map(|t| db.store().iter_from(t, &[]).map(Result::unwrap).collect::<Vec<_>>())
            .filter(|(_, v)| leafsync_leafdb::trie::node::is_leaf(v))
            .count()
    };
    assert!(leaves(&db) < stored, "blocks replaced stored leaves without storing any");
    let report = db.verify().unwrap();
    assert!(report.ok(), "{report:?}");
}

/// Every head write reaches `subscribe_head` receivers: a bulk import, each block, a sync's end.
#[test]
fn head_subscribers_see_every_new_head() {
    let db = LeafDb::in_memory();
    let mut rx = db.subscribe_head();
    assert_eq!(*rx.borrow_and_update(), None);
    let root = db.generate(leafsync_leafdb::GenParams { accounts: 50, seed: 1 }).unwrap().root;
    assert!(rx.has_changed().unwrap());
    assert_eq!(rx.borrow_and_update().map(|h| h.state_root), Some(root));
    let h1 = header(1, root);
    db.apply_block(&h1, &BlockDiff::default()).unwrap();
    assert_eq!(*rx.borrow_and_update(), Some(h1));
    assert!(!rx.has_changed().unwrap());
    // A late subscriber starts from the current head.
    assert_eq!(*db.subscribe_head().borrow(), Some(h1));
}

/// `hashed_accounts` is the generated state (same order, same root), and synthetic blocks are
/// deterministic and apply cleanly on it.
#[test]
fn generated_accounts_and_blocks() {
    let params = leafsync_leafdb::GenParams { accounts: 1_500, seed: 11 };
    let db = LeafDb::in_memory();
    let root = db.generate(params).unwrap().root;
    let accounts: Vec<_> = params.hashed_accounts().collect();
    assert!(accounts.windows(2).all(|w| w[0].hashed_address < w[1].hashed_address));
    let leaves = accounts.iter().map(|a| {
        let storage = leafsync_leafdb::trie::root_of_sorted(
            a.slots
                .iter()
                .map(|(k, v)| (Nibbles::unpack(k), leafsync_leafdb::schema::slot_leaf_value(v))),
        )
        .unwrap();
        let account = alloy_trie::TrieAccount {
            nonce: a.nonce,
            balance: a.balance,
            storage_root: storage,
            code_hash: a.code_hash,
        };
        (Nibbles::unpack(a.hashed_address), alloy_rlp::encode(account))
    });
    assert_eq!(leafsync_leafdb::trie::root_of_sorted(leaves).unwrap(), root);
    assert_eq!(params.block(3, 40), params.block(3, 40));
    for n in 1..=3 {
        let (header, diff) = params.block(n, 200);
        assert!((150..=200).contains(&diff.accounts.len()), "{}", diff.accounts.len());
        assert_eq!((header.number, header.parent_hash), (n, db.head().unwrap().unwrap().hash));
        db.apply_block(&header, &diff).unwrap();
    }
    // The headers carry no root, so only the tables are compared.
    let report = db.verify().unwrap();
    assert_eq!(report.computed_root, report.stored_root, "{report:?}");
    assert_eq!(
        (report.node_mismatches, report.extra_nodes, report.storage_root_mismatches),
        (0, 0, 0)
    );
    assert!(report.accounts > 1_500, "{report:?}");
}

#[test]
fn account_estimate_samples_one_256th() {
    let db = LeafDb::in_memory();
    assert_eq!(db.estimate_accounts().unwrap(), 0);
    db.generate(leafsync_leafdb::GenParams { accounts: 20_000, seed: 3 }).unwrap();
    let estimate = db.estimate_accounts().unwrap();
    assert_eq!(estimate % 256, 0);
    assert!((16_000..=24_000).contains(&estimate), "{estimate}");
}

#[test]
fn verify_detects_corrupted_and_stray_nodes() {
    let db = LeafDb::in_memory();
    run_blocks(&db, 3, 5, 30);
    assert!(db.verify().unwrap().ok());
    // Flip a byte in one stored account-trie node (not the root).
    let (key, mut value) = db.store().iter_from(Table::AccountNodes, &[0]).next().unwrap().unwrap();
    let last = value.len() - 1;
    value[last] ^= 0x01;
    let mut b = WriteBatch::default();
    b.put(Table::AccountNodes, key.to_vec(), value.to_vec());
    db.store().write(b, Durability::Logged).unwrap();
    let r = db.verify().unwrap();
    assert!(!r.ok());
    assert_eq!(r.node_mismatches, 1, "{r:?}");
    assert!(r.problems[0].contains("differs"), "{:?}", r.problems);
    // A stray node is found too.
    let db = LeafDb::in_memory();
    run_blocks(&db, 3, 5, 30);
    let mut b = WriteBatch::default();
    b.put(Table::StorageNodes, [7u8; 40].to_vec(), vec![0xc0]);
    db.store().write(b, Durability::Logged).unwrap();
    let r = db.verify().unwrap();
    assert_eq!(r.extra_nodes, 1, "{r:?}");
    assert!(!r.ok());
}

/// `verify` merges the node tables in order with the recomputed tries: a missing storage-trie
/// node, a changed one in another trie and stray nodes around them are each found once. Blocks
/// store no leaf node (the tries verify without them: leaves are rebuilt from the flat tables).
#[test]
fn verify_finds_missing_and_changed_storage_nodes_by_merge() {
    let db = LeafDb::in_memory();
    run_blocks(&db, 9, 6, 40);
    assert!(db.verify().unwrap().ok());
    let nodes: Vec<_> =
        db.store().iter_from(Table::StorageNodes, &[]).map(|r| r.unwrap()).collect();
    assert!(nodes.iter().all(|(_, v)| !leafsync_leafdb::trie::node::is_leaf(v)));
    // Two non-root nodes (key longer than the owner) of two different storage tries.
    let deep: Vec<_> = nodes.iter().filter(|(k, _)| k.len() > 32).collect();
    let first = deep[0];
    let other = deep.iter().find(|(k, _)| k[..32] != first.0[..32]).unwrap();
    let mut b = WriteBatch::default();
    b.delete(Table::StorageNodes, first.0.to_vec());
    let mut changed = other.1.to_vec();
    let last = changed.len() - 1;
    changed[last] ^= 0x01;
    b.put(Table::StorageNodes, other.0.to_vec(), changed);
    // Strays: before every owner, inside the changed trie (a path no node has), after all.
    b.put(Table::StorageNodes, [0u8; 33].to_vec(), vec![0xc0]);
    let mut inside = other.0[..32].to_vec();
    inside.extend([15u8; 40]);
    b.put(Table::StorageNodes, inside, vec![0xc0]);
    b.put(Table::StorageNodes, [0xffu8; 40].to_vec(), vec![0xc0]);
    db.store().write(b, Durability::Logged).unwrap();
    let r = db.verify().unwrap();
    assert_eq!(r.node_mismatches, 2, "{r:?}");
    assert_eq!(r.extra_nodes, 2, "{r:?}");
    assert_eq!(r.storage_root_mismatches, 0, "{r:?}");
    assert!(r.problems.iter().any(|p| p.contains("is missing")), "{:?}", r.problems);
    assert!(r.problems.iter().any(|p| p.contains("differs")), "{:?}", r.problems);
}

#[test]
fn recent_node_cache_keeps_replaced_nodes_for_k_blocks() {
    let config = LeafDbConfig { recent_blocks: 4, ..LeafDbConfig::default() };
    let db = LeafDb::with_store(leafsync_leafdb::MemStore::new(), config).unwrap();
    let mut model = Model::new();
    let mut rng = Rng::new(11);
    let diff = random_block(&mut rng, &mut model, 20);
    db.apply_block(&header(1, reference_root(&model)), &diff).unwrap();
    let root1 = db.account_root().unwrap();
    let root_node = db.node(None, &Nibbles::new()).unwrap().unwrap();
    assert_eq!(keccak256(&root_node), root1);
    assert!(db.recent_node(&root1).unwrap().is_none(), "current nodes are found by path");
    for n in 2..=5 {
        let diff = random_block(&mut rng, &mut model, 5);
        db.apply_block(&header(n, reference_root(&model)), &diff).unwrap();
        // Block 1's root was replaced in block 2 and stays for 4 blocks: through block 5.
        assert_eq!(db.recent_node(&root1).unwrap().as_deref(), Some(&root_node[..]), "block {n}");
    }
    let diff = random_block(&mut rng, &mut model, 5);
    db.apply_block(&header(6, reference_root(&model)), &diff).unwrap();
    assert!(db.recent_node(&root1).unwrap().is_none(), "expired after 4 blocks");
}

/// A byte budget too small for `recent_blocks` blocks drops the oldest early, and says so in
/// what the cache reports (the daemon's `leafsync_recent_blocks` and its one warning).
#[test]
fn a_recent_node_budget_too_small_for_the_blocks_is_reported() {
    // A block of these replaces ~17 KB of nodes: 40 KiB holds two.
    const BUDGET: usize = 40 << 10;
    let config =
        LeafDbConfig { recent_blocks: 8, recent_cache_bytes: BUDGET, ..LeafDbConfig::default() };
    let db = LeafDb::with_store(leafsync_leafdb::MemStore::new(), config).unwrap();
    let mut model = Model::new();
    let mut rng = Rng::new(12);
    for n in 1..=8 {
        let diff = random_block(&mut rng, &mut model, 20);
        db.apply_block(&header(n, reference_root(&model)), &diff).unwrap();
    }
    let size = db.recent_cache_size();
    assert!((1..8).contains(&size.blocks), "{size:?}: fewer than the 8 blocks asked");
    assert!(size.dropped_early > 0 && size.bytes <= BUDGET, "{size:?}");
}

#[test]
fn mismatching_roots_and_parents_are_counted_not_fatal() {
    let db = LeafDb::in_memory();
    let mut diff = BlockDiff::default();
    diff.accounts.insert(
        Address::with_last_byte(1),
        AccountChange::Updated(AccountUpdate {
            nonce: 1,
            balance: U256::from(5),
            code_hash: EMPTY_CODE_HASH,
            ..Default::default()
        }),
    );
    let out = db.apply_block(&header(1, B256::repeat_byte(9)), &diff).unwrap();
    assert!(!out.root_matches);
    assert_eq!(db.root_mismatches().unwrap(), 1);
    // A block whose parent is not our head is applied all the same.
    let mut h = header(5, B256::ZERO);
    h.parent_hash = B256::repeat_byte(3);
    diff.accounts.insert(Address::with_last_byte(1), AccountChange::Deleted);
    let out = db.apply_block(&h, &diff).unwrap();
    assert_eq!(out.root, EMPTY_ROOT_HASH);
    assert_eq!(db.head().unwrap().unwrap().number, 5);
    assert_eq!(db.root_mismatches().unwrap(), 2);
}

/// Block 1 creates a contract at `addr` with 50 slots; returns its update.
fn create_contract(db: &LeafDb<leafsync_leafdb::MemStore>, addr: Address) -> AccountUpdate {
    let mut storage = BTreeMap::new();
    for s in 0..50u8 {
        storage.insert(B256::with_last_byte(s), U256::from(s as u64 + 1));
    }
    let created = AccountUpdate {
        nonce: 1,
        balance: U256::ZERO,
        code_hash: keccak256(b"c"),
        storage_wiped: false,
        storage,
    };
    let mut diff = BlockDiff::default();
    diff.accounts.insert(addr, AccountChange::Updated(created.clone()));
    db.apply_block(&header(1, B256::ZERO), &diff).unwrap();
    created
}

#[test]
fn deleting_and_recreating_wipes_storage() {
    let db = LeafDb::in_memory();
    let addr = Address::with_last_byte(9);
    let created = create_contract(&db, addr);
    let root_with_storage = db.account_by_address(&addr).unwrap().unwrap().storage_root;
    assert_ne!(root_with_storage, EMPTY_ROOT_HASH);
    // Destroyed and created again with one slot: only that slot remains.
    let mut one = BTreeMap::new();
    one.insert(B256::with_last_byte(200), U256::from(1));
    let mut diff = BlockDiff::default();
    diff.accounts.insert(
        addr,
        AccountChange::Updated(AccountUpdate {
            storage_wiped: true,
            storage: one.clone(),
            ..created
        }),
    );
    db.apply_block(&header(2, B256::ZERO), &diff).unwrap();
    let mut model = Model::new();
    model.insert(
        addr,
        common::ModelAccount {
            nonce: 1,
            balance: U256::ZERO,
            code_hash: keccak256(b"c"),
            storage: one,
        },
    );
    assert_eq!(db.account_root().unwrap(), reference_root(&model));
    assert_eq!(
        db.storage(&keccak256(addr), &keccak256(B256::with_last_byte(3))).unwrap(),
        U256::ZERO
    );
    let r = db.verify().unwrap();
    assert_eq!(r.slots, 1);
    // Deleted: nothing of it remains.
    let mut diff = BlockDiff::default();
    diff.accounts.insert(addr, AccountChange::Deleted);
    db.apply_block(&header(3, B256::ZERO), &diff).unwrap();
    let r = db.verify().unwrap();
    assert_eq!((r.accounts, r.slots, r.computed_root), (0, 0, EMPTY_ROOT_HASH));
    assert_eq!(r.orphan_slots, 0, "{:?}", r.problems);
    assert_eq!(db.store().iter_from(Table::Storage, &[]).count(), 0);
    assert_eq!(db.store().iter_from(Table::StorageNodes, &[]).count(), 0);
}

/// `verify` counts flat storage of no account, wherever it sorts (before the first account,
/// between two, after the last): a deletion that left its slots would bring them back under an
/// account created again at that address, and served chunks would carry them.
#[test]
fn verify_finds_flat_storage_of_no_account() {
    let db = LeafDb::in_memory();
    let model = run_blocks(&db, 7, 3, 20);
    assert!(db.verify().unwrap().ok());
    let owners: Vec<B256> = db
        .store()
        .iter_from(Table::Accounts, &[])
        .map(|row| B256::from_slice(&row.unwrap().0))
        .collect();
    assert!(owners.len() >= 2, "{} accounts", model.len());
    let mut between = owners[0];
    between.0[31] ^= 1; // sorts right next to the first account, as no account does
    assert!(!owners.contains(&between));
    let mut batch = WriteBatch::default();
    for owner in [B256::ZERO, between, B256::repeat_byte(0xff)] {
        let key = schema::storage_key(&owner, &B256::repeat_byte(1));
        batch.put(Table::Storage, key.to_vec(), schema::encode_slot_value(&U256::from(1)));
    }
    db.store().write(batch, Durability::Logged).unwrap();
    let r = db.verify().unwrap();
    assert_eq!(r.orphan_slots, 3, "{:?}", r.problems);
    assert!(!r.ok());
    assert!(r.problems.iter().any(|p| p.contains("belong to no account")), "{:?}", r.problems);
}

/// A storage wiped with no slot set after (a contract destroyed and created again without
/// storage) ends empty: no slot and no storage-trie node of it remains.
#[test]
fn a_storage_wiped_with_no_slot_after_ends_empty() {
    let db = LeafDb::in_memory();
    let addr = Address::with_last_byte(9);
    let created = create_contract(&db, addr);
    let mut diff = BlockDiff::default();
    let wiped = AccountUpdate { storage_wiped: true, storage: BTreeMap::new(), ..created };
    diff.accounts.insert(addr, AccountChange::Updated(wiped));
    db.apply_block(&header(2, B256::ZERO), &diff).unwrap();
    assert_eq!(db.account_by_address(&addr).unwrap().unwrap().storage_root, EMPTY_ROOT_HASH);
    let r = db.verify().unwrap();
    assert_eq!((r.accounts, r.slots, r.storage_root_mismatches), (1, 0, 0));
    assert_eq!(r.computed_root, r.stored_root);
    assert_eq!(db.store().iter_from(Table::StorageNodes, &[]).count(), 0);
}

#[test]
fn an_interrupted_import_is_discarded_on_open_and_can_run_again() {
    let dir = tempfile::tempdir().unwrap();
    let account = |byte: u8| leafsync_leafdb::ImportAccount {
        hashed_address: B256::repeat_byte(byte),
        nonce: 0,
        balance: U256::from(1),
        code_hash: EMPTY_CODE_HASH,
    };
    {
        let db = rocks(dir.path());
        let mut import = leafsync_leafdb::BulkImport::start(&db, "test state").unwrap();
        import.add_account(account(1), []).unwrap();
        import.add_account(account(2), [(B256::repeat_byte(3), U256::from(4))]).unwrap();
        // Part of it on disk, as its table files or flushed batches leave it.
        let mut batch = WriteBatch::default();
        for table in [Table::Accounts, Table::Storage, Table::Code, Table::AccountNodes] {
            batch.put(table, vec![0xff; 96], vec![1]);
            batch.put(table, vec![0x00], vec![1]);
        }
        db.store().write(batch, Durability::Synced).unwrap();
        // Dropped without finish: a crash mid-import.
    }
    let db = rocks(dir.path());
    for table in [Table::Accounts, Table::Storage, Table::Code, Table::AccountNodes] {
        assert!(db.store().iter_from(table, &[]).next().is_none(), "{table:?} emptied");
    }
    assert_eq!(db.head().unwrap(), None);
    assert_eq!(db.account(&B256::repeat_byte(1)).unwrap(), None, "the partial import is gone");
    let mut import = leafsync_leafdb::BulkImport::start(&db, "test state").unwrap();
    import.add_account(account(5), []).unwrap();
    let outcome = import.finish(leafsync_leafdb::BlockHeader::default()).unwrap();
    assert_eq!(outcome.accounts, 1, "only the new import's account");
    assert_eq!(db.head().unwrap().unwrap().state_root, outcome.root);
}

#[test]
fn generated_state_is_deterministic_and_verifies() {
    let a = LeafDb::in_memory();
    let b = LeafDb::in_memory();
    let params = leafsync_leafdb::GenParams { accounts: 2_000, seed: 5 };
    let ra = a.generate(params).unwrap();
    let rb = b.generate(params).unwrap();
    assert_eq!(ra, rb);
    assert_eq!(ra.accounts, 2_000);
    assert!(ra.slots > 1_000, "{ra:?}");
    let r = a.verify().unwrap();
    assert!(r.ok(), "{r:?}");
    let other = LeafDb::in_memory()
        .generate(leafsync_leafdb::GenParams { accounts: 2_000, seed: 6 })
        .unwrap();
    assert_ne!(other.root, ra.root);
}

/// `verify_with` reports its way through the accounts in key order, and finds what `verify`
/// finds.
#[test]
fn verify_reports_its_progress_in_key_order() {
    let db = LeafDb::in_memory();
    let generated = db.generate(leafsync_leafdb::GenParams { accounts: 2_000, seed: 5 }).unwrap();
    let mut seen = Vec::new();
    let report = db.verify_with(500, |p| seen.push(*p)).unwrap();
    assert_eq!(report, db.verify().unwrap());
    assert!(report.ok(), "{report:?}");
    let counts: Vec<u64> = seen.iter().map(|p| p.accounts).collect();
    assert_eq!(counts, [500, 1_000, 1_500, 2_000]);
    assert!(seen.windows(2).all(|w| w[0].last < w[1].last && w[0].slots <= w[1].slots));
    assert!(seen.windows(2).all(|w| w[0].fraction() < w[1].fraction()));
    let last = seen[3];
    assert_eq!(last.slots, generated.slots);
    // Hashed addresses spread evenly: the last of 2,000 lies in the last percent of the space.
    assert!(last.fraction() > 0.99 && last.fraction() < 1.0, "{}", last.fraction());
    assert!((seen[1].fraction() - 0.5).abs() < 0.1, "{}", seen[1].fraction());
}

#[test]
fn snapshot_prefix_scans_partition_the_state_and_ignore_later_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let db = rocks(dir.path());
    let params = leafsync_leafdb::GenParams { accounts: 3_000, seed: 9 };
    db.generate(params).unwrap();
    let snap = db.snapshot().unwrap();
    let all: Vec<_> = snap.accounts_with_prefix(&Nibbles::new()).map(|r| r.unwrap()).collect();
    assert_eq!(all.len(), 3_000);
    // The 16 × 16 prefixes of depth 2 hold every account exactly once, in order.
    let mut joined = Vec::new();
    for a in 0..16u8 {
        for b in 0..16u8 {
            let p = Nibbles::from_nibbles([a, b]);
            for item in snap.accounts_with_prefix(&p) {
                let (k, _) = item.unwrap();
                assert!(Nibbles::unpack(k).starts_with(&p));
                joined.push(k);
            }
        }
    }
    assert_eq!(joined, all.iter().map(|(k, _)| *k).collect::<Vec<_>>());
    // Storage of the largest contract, split by first nibble, equals the whole.
    let (owner, _) =
        all.iter().max_by_key(|(k, a)| (a.storage_root != EMPTY_ROOT_HASH, *k)).unwrap();
    let whole: Vec<_> =
        snap.storage_with_prefix(owner, &Nibbles::new()).map(|r| r.unwrap()).collect();
    let parts: usize = (0..16u8)
        .map(|n| snap.storage_with_prefix(owner, &Nibbles::from_nibbles([n])).count())
        .sum();
    assert_eq!(parts, whole.len());
    // A block applied after the snapshot is invisible to it.
    let head = snap.head().unwrap();
    let diff = common::account_diff(Address::with_last_byte(0xee), 1, 1);
    db.apply_block(&header(1, B256::ZERO), &diff).unwrap();
    assert_eq!(snap.head().unwrap(), head);
    assert_eq!(snap.accounts_with_prefix(&Nibbles::new()).count(), 3_000);
    assert_eq!(db.snapshot().unwrap().accounts_with_prefix(&Nibbles::new()).count(), 3_001);
}

#[test]
fn generated_blocks_complete_their_roots_and_a_checkpoint_follows_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    let params = leafsync_leafdb::GenParams { accounts: 2_000, seed: 9 };
    let chain = rocks(&dir.path().join("chain"));
    chain.generate(params).unwrap();
    chain.checkpoint(&dir.path().join("copy")).unwrap();
    let copy = rocks(&dir.path().join("copy"));
    assert_eq!(copy.head().unwrap(), chain.head().unwrap());
    assert_eq!(copy.account_root().unwrap(), chain.account_root().unwrap());
    let nodes_at_start = chain.trie_node_count().unwrap();
    for n in 1..=3 {
        let (header, diff) = params.block(n, 100);
        assert_eq!(header.state_root, B256::ZERO);
        let (outcome, done) = chain.apply_generated_block(&header, &diff).unwrap();
        assert!(outcome.root_matches);
        assert_eq!(done, leafsync_leafdb::BlockHeader { state_root: outcome.root, ..header });
        assert_eq!(chain.head().unwrap(), Some(done));
        // The copy is a database of its own: it moves only with the blocks applied to it.
        assert_eq!(copy.head().unwrap().unwrap().number, n - 1);
        assert!(copy.apply_block(&done, &diff).unwrap().root_matches);
    }
    assert_eq!((chain.root_mismatches().unwrap(), copy.root_mismatches().unwrap()), (0, 0));
    assert_eq!(copy.trie_node_count().unwrap(), chain.trie_node_count().unwrap());
    assert_ne!(chain.trie_node_count().unwrap(), nodes_at_start);
    assert!(copy.verify().unwrap().ok());
}

#[test]
fn trie_node_count_counts_the_nodes_stored_alone() {
    let db = LeafDb::in_memory();
    assert_eq!(db.trie_node_count().unwrap(), 0);
    let first = Address::with_last_byte(1);
    db.apply_block(&header(1, B256::ZERO), &account_diff(first, 1, 1)).unwrap();
    // One account: the root is its leaf.
    assert_eq!(db.trie_node_count().unwrap(), 1);
    // A second account under another first nibble: a branch over two leaves.
    let nibble = |a: &Address| keccak256(a)[0] >> 4;
    let second =
        (2..=255u8).map(Address::with_last_byte).find(|a| nibble(a) != nibble(&first)).unwrap();
    db.apply_block(&header(2, B256::ZERO), &account_diff(second, 1, 1)).unwrap();
    assert_eq!(db.trie_node_count().unwrap(), 3);
}

/// A scan cursor gives the pairs `range_from` gives, from the same start, and skips forward
/// (never back) to the first key at or after the one asked for: on RocksDB (its raw iterator),
/// in memory (the default over `range_from`), and on their snapshots, which later writes do not
/// reach.
#[test]
fn scan_cursors_lend_the_scanned_pairs_and_skip_forward() {
    fn pairs(cursor: &mut dyn Cursor) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut out = Vec::new();
        while let Some((k, v)) = cursor.current() {
            out.push((k.to_vec(), v.to_vec()));
            cursor.next().unwrap();
        }
        cursor.next().unwrap();
        assert!(cursor.current().is_none(), "stays past the end");
        out
    }
    fn check<R: KvRead + ?Sized>(kv: &R, keys: &[u8]) {
        for start in [&[][..], &[3][..], &[4][..], &[200][..]] {
            let scanned: Vec<_> = kv
                .range_from(Table::Storage, start, Reading::Scan)
                .map(|r| r.map(|(k, v)| (k.to_vec(), v.to_vec())).unwrap())
                .collect();
            let mut cursor = kv.range_cursor(Table::Storage, start, Reading::Scan).unwrap();
            assert_eq!(pairs(cursor.as_mut()), scanned, "from {start:?}");
        }
        let mut cursor = kv.range_cursor(Table::Storage, &[], Reading::Scan).unwrap();
        cursor.skip_to(&[5]).unwrap();
        assert_eq!(cursor.current(), Some((&[6][..], &[60][..])), "the next key at or after");
        cursor.skip_to(&[1]).unwrap();
        assert_eq!(cursor.current().map(|(k, _)| k), Some(&[6][..]), "never back");
        cursor.skip_to(&[keys[keys.len() - 1] + 1]).unwrap();
        assert!(cursor.current().is_none());
        let empty = kv.range_cursor(Table::Accounts, &[], Reading::Scan).unwrap();
        assert!(empty.current().is_none());
    }
    let keys = [2u8, 4, 6, 8, 20];
    let dir = tempfile::tempdir().unwrap();
    let rocks = rocks(dir.path());
    let mem = LeafDb::in_memory();
    let mut batch = WriteBatch::default();
    for k in keys {
        batch.put(Table::Storage, vec![k], vec![k * 10]);
    }
    rocks.store().write(batch.clone(), Durability::Logged).unwrap();
    mem.store().write(batch, Durability::Logged).unwrap();
    let (rocks_snap, mem_snap) = (rocks.store().snapshot(), mem.store().snapshot());
    let mut later = WriteBatch::default();
    later.put(Table::Storage, vec![5], vec![1]);
    rocks.store().write(later.clone(), Durability::Logged).unwrap();
    mem.store().write(later, Durability::Logged).unwrap();
    check(&rocks_snap, &keys);
    check(&mem_snap, &keys);
    // The stores themselves see the later key.
    for kv in [rocks.store() as &dyn KvRead, mem.store() as &dyn KvRead] {
        let mut cursor = kv.range_cursor(Table::Storage, &[5], Reading::Scan).unwrap();
        assert_eq!(cursor.current(), Some((&[5][..], &[1][..])));
        cursor.next().unwrap();
        assert_eq!(cursor.current().map(|(k, _)| k), Some(&[6][..]));
    }
}

/// A storage walk gives each account's slots as `storage_with_prefix` does when asked in key
/// order, passing over accounts without storage and storage of accounts never asked, and
/// starts at its prefix; on RocksDB and in memory.
#[test]
fn a_storage_walk_gives_each_accounts_slots_in_key_order() {
    let owner = |b: u8| B256::repeat_byte(b);
    let slots_of = |b: u8, n: u8| -> Vec<(B256, U256)> {
        (1..=n)
            .map(|i| (B256::repeat_byte(i), U256::from(u64::from(b) * 100 + u64::from(i))))
            .collect()
    };
    let stored = [(0x10, 3), (0x20, 4), (0x30, 2), (0x41, 1)];
    let mut batch = WriteBatch::default();
    for (b, n) in stored {
        for (slot, value) in slots_of(b, n) {
            let key = [owner(b).as_slice(), slot.as_slice()].concat();
            batch.put(Table::Storage, key, value.to_be_bytes_trimmed_vec());
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let rocks = rocks(dir.path());
    rocks.store().write(batch.clone(), Durability::Logged).unwrap();
    let mem = LeafDb::in_memory();
    mem.store().write(batch, Durability::Logged).unwrap();
    fn walk<S: KvStore>(db: &LeafDb<S>, prefix: &[u8], asked: &[B256]) -> Vec<Vec<(B256, U256)>> {
        let snap = db.snapshot().unwrap();
        let mut walk = snap.storage_walk(&Nibbles::from_nibbles(prefix)).unwrap();
        asked.iter().map(|a| walk.slots(a).unwrap().map(Result::unwrap).collect()).collect()
    }
    let asked = [owner(0x05), owner(0x10), owner(0x15), owner(0x30), owner(0x41)];
    let expected = vec![vec![], slots_of(0x10, 3), vec![], slots_of(0x30, 2), slots_of(0x41, 1)];
    assert_eq!(walk(&rocks, &[], &asked), expected);
    assert_eq!(walk(&mem, &[], &asked), expected);
    // A walk under prefix 4 starts there: the earlier owners are not in it.
    let under_4 = [owner(0x10), owner(0x41)];
    assert_eq!(walk(&rocks, &[4], &under_4), vec![vec![], slots_of(0x41, 1)]);
    assert_eq!(walk(&mem, &[4], &under_4), vec![vec![], slots_of(0x41, 1)]);
    // As `storage_with_prefix` reads them.
    let snap = rocks.snapshot().unwrap();
    let one: Vec<_> =
        snap.storage_with_prefix(&owner(0x20), &Nibbles::new()).map(Result::unwrap).collect();
    assert_eq!(one, slots_of(0x20, 4));
}

/// The flat check merge-scans storage beside the accounts: storage of no account right after a
/// large storage, between accounts and after the last one must be found, in RocksDB as in
/// memory, and every slot of an account counted.
#[test]
fn the_flat_check_finds_orphans_beside_large_storages() {
    let account = |b: u8| B256::repeat_byte(b);
    let mut next_to = account(0x20);
    next_to.0[31] = 0x21; // the first key after owner 0x20..20's slots
    let mut batch = WriteBatch::default();
    let storage_root = B256::repeat_byte(0xaa); // no storage hashes to it
    for b in [0x10, 0x20, 0x30] {
        let record = alloy_trie::TrieAccount {
            nonce: 1,
            balance: U256::ZERO,
            storage_root,
            code_hash: EMPTY_CODE_HASH,
        };
        batch.put(Table::Accounts, account(b).to_vec(), schema::encode_account(&record));
    }
    // (owner, slots); the orphans' slots follow.
    let rows = [(account(0x10), 3u8), (account(0x20), 40), (next_to, 2), (account(0x30), 9)];
    let orphans = [account(0x05), next_to, account(0x25), account(0xf0)];
    for (owner, n) in rows.into_iter().chain([(orphans[0], 1), (orphans[2], 12), (orphans[3], 30)])
    {
        for slot in 0..n {
            let key = schema::storage_key(&owner, &B256::repeat_byte(slot));
            batch.put(Table::Storage, key.to_vec(), schema::encode_slot_value(&U256::from(1)));
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let rocks = rocks(dir.path());
    rocks.store().write(batch.clone(), Durability::Logged).unwrap();
    let mem = LeafDb::in_memory();
    mem.store().write(batch, Durability::Logged).unwrap();
    let go_on = AtomicBool::new(false);
    for found in [rocks.check_flat_state(&go_on).unwrap(), mem.check_flat_state(&go_on).unwrap()] {
        assert_eq!(found.orphan_storage, orphans);
        assert_eq!(found.bad_storage.len(), 3, "no storage hashes to 0xaa..");
        assert_eq!((found.accounts, found.slots, found.problems), (3, 3 + 40 + 9, 4 + 3));
    }
    // A node stopping sets the flag: the check ends without a result.
    let stop = AtomicBool::new(true);
    for stopped in [rocks.check_flat_state(&stop), mem.check_flat_state(&stop)] {
        assert!(matches!(stopped, Err(LeafDbError::Stopped)), "{stopped:?}");
    }
}

/// The flat check builds the account root from the subtries of its 16 owner ranges, the root's
/// children, on several threads: it must equal an independent builder's root whatever the
/// accounts' first nibbles, including states whose accounts all share one (the root is then no
/// branch), one account and none.
#[test]
fn the_flat_check_builds_the_account_root_from_its_ranges() {
    let go_on = AtomicBool::new(false);
    let cases: [&[u8]; 6] = [
        &[],
        &[0x10],
        &[0x10, 0x1f],
        &[0x10, 0x11, 0x1f],
        &[0x10, 0x20],
        &[0x00, 0x0f, 0x10, 0x7a, 0xf0, 0xff],
    ];
    for firsts in cases {
        let mut batch = WriteBatch::default();
        let mut leaves = Vec::new();
        for (i, first) in firsts.iter().enumerate() {
            let mut key = B256::repeat_byte(i as u8);
            key.0[0] = *first;
            let record = alloy_trie::TrieAccount {
                nonce: i as u64 + 1,
                balance: U256::from(i),
                storage_root: EMPTY_ROOT_HASH,
                code_hash: EMPTY_CODE_HASH,
            };
            let value = schema::encode_account(&record);
            leaves.push((Nibbles::unpack(key), value.clone()));
            batch.put(Table::Accounts, key.to_vec(), value);
        }
        let mut expected = alloy_trie::HashBuilder::default();
        for (key, value) in &leaves {
            expected.add_leaf(*key, value);
        }
        let db = LeafDb::in_memory();
        db.store().write(batch, Durability::Logged).unwrap();
        let found = db.check_flat_state(&go_on).unwrap();
        assert_eq!(found.accounts_root, expected.root(), "first bytes {firsts:02x?}");
        assert_eq!((found.accounts, found.problems), (firsts.len() as u64, 0));
    }
    // Generated states (accounts with storage and code) of a few sizes.
    for accounts in [1, 2, 3, 40, 3000] {
        let db = LeafDb::in_memory();
        db.generate(leafsync_leafdb::GenParams { accounts, seed: accounts }).unwrap();
        let found = db.check_flat_state(&go_on).unwrap();
        let root = db.head().unwrap().unwrap().state_root;
        assert!(found.ok(root), "{accounts} accounts: {found:?}");
    }
}
