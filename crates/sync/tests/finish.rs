//! The end is checked before it is committed: flat storage that does not hash to its account's
//! storage root, storage of no account and missing codes are found by the final merge-scan and
//! fetched again, and the head is recorded only for a complete state.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use alloy_primitives::{B256, U256};
use alloy_trie::EMPTY_ROOT_HASH;
use common::{Behaviour, Hook, Hooked, SimPeer, assert_same_state, source};
use leafsync_leafdb::{
    Durability, KvRead, KvStore, LeafDb, MemStore, Table, WriteBatch,
    schema::{decode_account, encode_slot_value, storage_key},
};
use leafsync_sync::{SyncConfig, SyncPeer, Syncer};

/// Once the client holds an account with storage, writes one junk slot into that account's flat
/// storage and one slot for an owner that has no account, as a bug or a crash window could; the
/// trie nodes stay right, so only the flat tables are wrong.
struct CorruptClient {
    client: Arc<LeafDb<MemStore>>,
    done: AtomicBool,
}

impl Hook for CorruptClient {
    fn before(&self, _inner: &SimPeer) {
        if self.done.load(Ordering::Relaxed) {
            return;
        }
        let store = self.client.store();
        let found = store.iter_from(Table::Accounts, &[]).map(Result::unwrap).find(|(k, v)| {
            decode_account(v).unwrap().storage_root != EMPTY_ROOT_HASH
                && store
                    .iter_from(Table::Storage, k)
                    .next()
                    .is_some_and(|r| r.unwrap().0.starts_with(k))
        });
        let Some((key, _)) = found else { return };
        let owner = B256::from_slice(&key);
        let mut orphan = owner;
        orphan.0[31] ^= 0xff;
        let mut batch = WriteBatch::default();
        let junk = storage_key(&owner, &B256::repeat_byte(0x5a));
        batch.put(Table::Storage, junk.to_vec(), encode_slot_value(&U256::from(7)));
        let stray = storage_key(&orphan, &B256::repeat_byte(0x5a));
        batch.put(Table::Storage, stray.to_vec(), encode_slot_value(&U256::from(7)));
        store.write(batch, Durability::Logged).unwrap();
        self.done.store(true, Ordering::Relaxed);
    }
}

#[tokio::test(start_paused = true)]
async fn wrong_flat_storage_is_found_and_fetched_again_before_the_head_is_recorded() {
    let src = source(2000, 11);
    let root = src.account_root().unwrap();
    let client = Arc::new(LeafDb::in_memory());
    let inner = SimPeer::new(1, Arc::clone(&src), Behaviour::Honest, 2000);
    let hook = CorruptClient { client: Arc::clone(&client), done: AtomicBool::new(false) };
    let peer: Arc<dyn SyncPeer> = Arc::new(Hooked { inner, hook });
    let config = SyncConfig { chunk_target_bytes: 16 * 1024, ..Default::default() };
    let out = Syncer::new(Arc::clone(&client), config, vec![peer]).run().await.unwrap();
    assert_eq!(out.root, root);
    assert!(out.stats.final_repairs >= 2, "the final check found nothing: {:?}", out.stats);
    assert_same_state(&client, &src, root);
}

#[test]
fn the_flat_check_names_wrong_storage_orphans_and_missing_code() {
    let db = LeafDb::in_memory();
    db.generate(leafsync_leafdb::GenParams { accounts: 300, seed: 2 }).unwrap();
    let root = db.account_root().unwrap();
    let clean = db.check_flat_state().unwrap();
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

    let found = db.check_flat_state().unwrap();
    assert!(!found.ok(root));
    assert_eq!(found.accounts_root, root, "accounts are untouched");
    assert_eq!(found.bad_storage.iter().map(|(o, _)| *o).collect::<Vec<_>>(), vec![owner]);
    assert_eq!(found.orphan_storage, vec![B256::repeat_byte(0xff)]);
    assert_eq!(found.missing_code, vec![code_hash]);
}
