//! The end is checked before it is committed: flat storage that does not hash to its account's
//! storage root, storage of no account and missing codes are found by the final merge-scan and
//! fetched again, and the head is recorded only for a complete state. The flat state is scanned
//! only when something other than a verified import may have written it (a resume, heal, a
//! re-pivot, a repair) or a code queued was not written; a clean sync ends on its root check.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use alloy_primitives::{B256, U256};
use alloy_trie::EMPTY_ROOT_HASH;
use common::{
    Behaviour, Hook, Hooked, SimPeer, assert_synced,
    chain::{ACCOUNTS, at, chain},
    chain_head, dyn_peers, source,
};
use leafsync_leafdb::{
    Durability, KvRead, KvStore, LeafDb, MemStore, Table, WriteBatch,
    schema::{decode_account, encode_slot_value, storage_key},
};
use leafsync_sync::{SyncConfig, SyncError, SyncOutcome, SyncPeer, Syncer};

/// Once the client holds an account with storage, writes one junk slot into that account's flat
/// storage and (with `orphan`) one slot for an owner that has no account, as a bug or a crash
/// window could; the trie nodes stay right, so only the flat tables are wrong.
struct CorruptClient {
    client: Arc<LeafDb<MemStore>>,
    orphan: bool,
    done: AtomicBool,
}

impl Hook for CorruptClient {
    fn before(&self, _inner: &SimPeer) {
        if !self.done.load(Ordering::Relaxed) && corrupt(&self.client, self.orphan) {
            self.done.store(true, Ordering::Relaxed);
        }
    }
}

/// Writes the junk of [`CorruptClient`] into `client`; whether it found an account to corrupt.
fn corrupt(client: &LeafDb<MemStore>, orphan: bool) -> bool {
    {
        let store = client.store();
        let found = store.iter_from(Table::Accounts, &[]).map(Result::unwrap).find(|(k, v)| {
            decode_account(v).unwrap().storage_root != EMPTY_ROOT_HASH
                && store
                    .iter_from(Table::Storage, k)
                    .next()
                    .is_some_and(|r| r.unwrap().0.starts_with(k))
        });
        let Some((key, _)) = found else { return false };
        let owner = B256::from_slice(&key);
        let mut batch = WriteBatch::default();
        let junk = storage_key(&owner, &B256::repeat_byte(0x5a));
        batch.put(Table::Storage, junk.to_vec(), encode_slot_value(&U256::from(7)));
        if orphan {
            let mut stray = owner;
            stray.0[31] ^= 0xff;
            let stray = storage_key(&stray, &B256::repeat_byte(0x5a));
            batch.put(Table::Storage, stray.to_vec(), encode_slot_value(&U256::from(7)));
        }
        store.write(batch, Durability::Logged).unwrap();
        true
    }
}

/// A clean sync of a 2,000-account state from one honest peer whose every request first writes
/// the junk of [`CorruptClient`] (with an orphan) into the client; `full_final_check` as given.
/// Returns the outcome, the client, the source and its root.
async fn sync_with_writes_behind_its_back(
    full_final_check: bool,
) -> (SyncOutcome, Arc<LeafDb<MemStore>>, Arc<LeafDb<MemStore>>, B256) {
    let src = source(2000, 11);
    let root = src.account_root().unwrap();
    let client = Arc::new(LeafDb::in_memory());
    let inner = SimPeer::new(1, Arc::clone(&src), Behaviour::Honest, 2000);
    let hook =
        CorruptClient { client: Arc::clone(&client), orphan: true, done: AtomicBool::new(false) };
    let peer: Arc<dyn SyncPeer> = Arc::new(Hooked { inner, hook });
    // One unit a request, each written at once: requests go on after the first chunks are in.
    let config = SyncConfig {
        chunk_target_bytes: 16 * 1024,
        chunk_batch_bytes: 0,
        hold_bytes: 0,
        full_final_check,
        ..Default::default()
    };
    let out = Syncer::new(Arc::clone(&client), config, vec![peer]).run().await.unwrap();
    (out, client, src, root)
}

/// A clean sync trusts its verified imports and scans nothing at the end: flat entries written
/// behind its back (a junk slot, storage of no account) are not its to find, but `verify`'s.
#[tokio::test(start_paused = true)]
async fn a_clean_sync_leaves_writes_behind_its_back_to_verify() {
    let (out, client, _, root) = sync_with_writes_behind_its_back(false).await;
    assert_eq!(out.root, root);
    assert_eq!((out.stats.final_repairs, out.stats.final_rehashed), (0, 0), "{:?}", out.stats);
    let verified = client.verify().unwrap();
    assert!(!verified.ok(), "verify finds the writes: {verified:?}");
}

/// An operator who asks for it gets the scan at the end of a clean sync too: the same writes
/// behind its back are found and repaired before the head is recorded.
#[tokio::test(start_paused = true)]
async fn a_full_final_check_finds_writes_behind_a_clean_sync() {
    let (out, client, src, root) = sync_with_writes_behind_its_back(true).await;
    assert!(out.stats.final_repairs >= 1, "the writes were found: {:?}", out.stats);
    assert!(out.stats.final_rehashed > 0, "{:?}", out.stats);
    assert_synced(&out, &client, &src, root);
}

#[tokio::test(start_paused = true)]
async fn a_clean_sync_hashes_no_leaf_twice() {
    let src = source(2000, 12);
    let root = src.account_root().unwrap();
    let client = Arc::new(LeafDb::in_memory());
    let peers = [SimPeer::new(1, Arc::clone(&src), Behaviour::Honest, 2000)];
    let config = SyncConfig { chunk_target_bytes: 16 * 1024, ..Default::default() };
    let out = Syncer::new(Arc::clone(&client), config, dyn_peers(&peers)).run().await.unwrap();
    assert_synced(&out, &client, &src, root);
    assert_eq!((out.stats.chunks_healed, out.stats.final_repairs), (0, 0), "{:?}", out.stats);
    // Every code queued was counted written (else the end would have scanned and hashed).
    assert!(out.stats.codes > 0, "the state names codes: {:?}", out.stats);
    assert_eq!(out.stats.final_rehashed, 0, "every leaf was verified on import: {:?}", out.stats);
    assert!(client.verify().unwrap().ok(), "the full check agrees");
}

/// Stale servers make the sync heal; flat storage corrupted meanwhile (a junk slot and storage
/// of no account) is found by the final check, which scans and hashes everything after a heal,
/// and repaired: the slot fetched again, the orphan deleted.
#[tokio::test(start_paused = true)]
async fn after_a_heal_wrong_flat_storage_is_still_found() {
    let chain = chain(16);
    let pivot_db = at(&chain, 8);
    let pivot = chain[7].0;
    let client = Arc::new(LeafDb::in_memory());
    let mut peers: Vec<Arc<dyn SyncPeer>> = Vec::new();
    for (i, h) in [2u64, 5, 10, 13, 16].into_iter().enumerate() {
        let inner = SimPeer::new(i as u8 + 1, at(&chain, h), Behaviour::Honest, ACCOUNTS);
        let hook = CorruptClient {
            client: Arc::clone(&client),
            orphan: true,
            done: AtomicBool::new(false),
        };
        peers.push(Arc::new(Hooked { inner, hook }));
    }
    let config = SyncConfig {
        pivot: Some(chain_head(&pivot)),
        chunk_target_bytes: 16 * 1024,
        ..Default::default()
    };
    let out = Syncer::new(Arc::clone(&client), config, peers).run().await.unwrap();
    assert_synced(&out, &client, &pivot_db, pivot.state_root);
    assert!(out.stats.chunks_healed > 0, "stale chunks were healed: {:?}", out.stats);
    assert!(out.stats.final_repairs >= 2, "the junk slot and orphan were found: {:?}", out.stats);
    assert!(out.stats.final_rehashed > 0, "{:?}", out.stats);
}

/// A sync cut short, its flat storage corrupted while it was down (as a crash window could): the
/// resumed run cannot know which of its tables an import wrote, so it hashes them all again and
/// fetches the corrupted storage again.
#[tokio::test(start_paused = true)]
async fn a_resumed_sync_hashes_the_flat_state_again() {
    let src = source(2000, 13);
    let root = src.account_root().unwrap();
    let client = Arc::new(LeafDb::in_memory());
    // One unit a request, as before batching: 40 answers are a part of the sync.
    let config =
        SyncConfig { chunk_target_bytes: 16 * 1024, chunk_batch_bytes: 0, ..Default::default() };
    let limited = [SimPeer::new(1, Arc::clone(&src), Behaviour::Limited(40), 2000)];
    let cut = Syncer::new(Arc::clone(&client), config.clone(), dyn_peers(&limited)).run().await;
    assert!(matches!(cut, Err(SyncError::NoPeers)), "{cut:?}");
    assert!(corrupt(&client, false), "the first run imported storage");
    let honest = [SimPeer::new(1, Arc::clone(&src), Behaviour::Honest, 2000)];
    let out = Syncer::new(Arc::clone(&client), config, dyn_peers(&honest)).run().await.unwrap();
    assert_synced(&out, &client, &src, root);
    assert!(out.stats.final_repairs >= 1, "the junk slot was found: {:?}", out.stats);
    assert!(out.stats.final_rehashed > 0, "{:?}", out.stats);
}

/// A generated state of `accounts` in memory and its root.
fn generated(accounts: u64, seed: u64) -> (LeafDb<MemStore>, B256) {
    let db = LeafDb::in_memory();
    db.generate(leafsync_leafdb::GenParams { accounts, seed }).unwrap();
    let root = db.account_root().unwrap();
    (db, root)
}

#[test]
fn the_flat_check_names_wrong_storage_orphans_and_missing_code() {
    let (db, root) = generated(300, 2);
    let clean = db.check_flat_state(&AtomicBool::new(false)).unwrap();
    assert!(clean.ok(root), "{clean:?}");
    assert_eq!(clean.accounts, 300);

    let store = db.store();
    let (with_code, code_hash) = store
        .iter_from(Table::Accounts, &[])
        .map(Result::unwrap)
        .find_map(|(k, v)| {
            let a = decode_account(&v).unwrap();
            (a.code_hash != alloy_primitives::KECCAK256_EMPTY).then_some((k, a.code_hash))
        })
        .unwrap();
    let owner = B256::from_slice(&with_code);
    let mut batch = WriteBatch::default();
    batch.put(Table::Storage, storage_key(&owner, &B256::repeat_byte(1)).to_vec(), vec![7]);
    batch.put(Table::Storage, storage_key(&B256::repeat_byte(0xff), &B256::ZERO).to_vec(), vec![1]);
    batch.delete(Table::Code, code_hash.as_slice().to_vec());
    store.write(batch, Durability::Logged).unwrap();

    let found = db.check_flat_state(&AtomicBool::new(false)).unwrap();
    assert!(!found.ok(root));
    assert_eq!(found.accounts_root, root, "accounts are untouched");
    assert_eq!(found.bad_storage.iter().map(|(o, _)| *o).collect::<Vec<_>>(), vec![owner]);
    assert_eq!(found.orphan_storage, vec![B256::repeat_byte(0xff)]);
    assert_eq!(found.missing_code, vec![code_hash]);
}

/// The flat check splits the owners into ranges scanned on several threads: it must find
/// storage of no account at both ends of the key space and between ranges, and missing codes,
/// in key order, and count every account.
#[test]
fn the_flat_check_finds_orphans_and_missing_codes_in_every_owner_range() {
    let (db, root) = generated(2000, 5);
    let clean = db.check_flat_state(&AtomicBool::new(false)).unwrap();
    assert!(clean.ok(root), "{clean:?}");
    assert_eq!(clean.hashed_leaves(), clean.accounts + clean.slots);

    let store = db.store();
    let mut codes: Vec<B256> = store
        .iter_from(Table::Accounts, &[])
        .map(Result::unwrap)
        .map(|(_, v)| decode_account(&v).unwrap().code_hash)
        .filter(|h| *h != alloy_primitives::KECCAK256_EMPTY)
        .collect();
    codes.sort();
    codes.dedup();
    assert!(codes.len() >= 2, "the state names codes");
    let missing = vec![codes[0], codes[codes.len() - 1]];
    let orphans: Vec<B256> = [0x00, 0x0f, 0x10, 0x80, 0xef, 0xff].map(B256::repeat_byte).to_vec();
    let mut batch = WriteBatch::default();
    for owner in &orphans {
        for slot in 0..3u8 {
            let key = storage_key(owner, &B256::repeat_byte(slot));
            batch.put(Table::Storage, key.to_vec(), vec![slot + 1]);
        }
    }
    for hash in &missing {
        batch.delete(Table::Code, hash.as_slice().to_vec());
    }
    store.write(batch, Durability::Logged).unwrap();

    let found = db.check_flat_state(&AtomicBool::new(false)).unwrap();
    assert_eq!(found.orphan_storage, orphans);
    assert_eq!(found.missing_code, missing);
    assert_eq!(found.problems, 8);
    assert!(found.bad_storage.is_empty());
    assert_eq!((found.accounts, found.slots), (clean.accounts, clean.slots));
    assert_eq!(found.accounts_root, root);
}
