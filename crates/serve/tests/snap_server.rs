//! The snap/1 server beyond geth's conformance cases: budgets on a generated state (bytes, the
//! 2 MiB cap, counts), batched storage ranges, trie nodes and ranges of an older root from the
//! recent-node cache, `serve_message`'s decode → answer → response path, and any request a peer may send
//! (a proptest) answered within bounds or refused.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use std::sync::OnceLock;

use alloy_primitives::{Address, B256, Bytes, KECCAK256_EMPTY, U256, keccak256};
use alloy_rlp::Encodable;
use leafsync_leafdb::{
    AccountChange, AccountUpdate, BlockDiff, BlockHeader, DbOptions, GenParams, LeafDb,
    LeafDbConfig,
};
use leafsync_p2p::MessageFault;
use leafsync_p2p::snap::{
    AccountRange, GetAccountRange, GetByteCodes, GetStorageRanges, GetTrieNodes, SnapError,
    SnapMessage, TrieNodePathSet,
    protocol::{MAX_CODE_LOOKUPS, MAX_MESSAGE_SIZE, SOFT_RESPONSE_LIMIT, ids},
};
use leafsync_serve::snap::{
    answer_account_range, answer_byte_codes, answer_storage_ranges, answer_trie_nodes,
    serve_message,
};

const MAX: B256 = B256::repeat_byte(0xff);

struct Fixture {
    _dir: tempfile::TempDir,
    db: LeafDb,
    keys: Vec<B256>,
}

/// A RocksDB leafdb of `config` in a temporary directory (the in-memory store copies itself for
/// every snapshot and scan, too slow for thousands of range queries), holding the state `params`
/// generates; and that state's root.
fn generated(params: GenParams, config: LeafDbConfig) -> (tempfile::TempDir, LeafDb, B256) {
    let dir = tempfile::tempdir().unwrap();
    let db = LeafDb::open(dir.path(), &DbOptions::default(), config).unwrap();
    db.generate(params).unwrap();
    let root = db.account_root().unwrap();
    (dir, db, root)
}

/// 20,000 generated accounts: ~2,000 contracts with storage.
fn fixture() -> &'static Fixture {
    static FX: OnceLock<Fixture> = OnceLock::new();
    FX.get_or_init(|| {
        let params = GenParams { accounts: 20_000, seed: 99 };
        let (dir, db, _) = generated(params, LeafDbConfig::default());
        let keys =
            db.snap_reader().unwrap().accounts_from(&B256::ZERO).map(|a| a.unwrap().0).collect();
        Fixture { _dir: dir, db, keys }
    })
}

fn item_size(range: &AccountRange, i: usize) -> u64 {
    32 + range.accounts[i].account.length() as u64
}

#[test]
fn account_ranges_stop_just_past_the_byte_budget() {
    let fx = fixture();
    let root = fx.db.account_root().unwrap();
    for bytes in [0, 1, 100, 5_000, 50_000, 300_000] {
        let req = GetAccountRange { request_id: 1, root, origin: B256::ZERO, limit: MAX, bytes };
        let res = answer_account_range(&fx.db, &req);
        let n = res.accounts.len();
        assert!(n >= 1);
        let before_last: u64 = (0..n - 1).map(|i| item_size(&res, i)).sum();
        let total = before_last + item_size(&res, n - 1);
        // Every account but the last fitted; the last is the one that crossed the budget.
        assert!(before_last <= bytes, "{bytes}: {before_last}");
        assert!(total > bytes, "{bytes}: {total}");
        // The accounts are exactly the first n of the state.
        assert!(res.accounts.iter().zip(&fx.keys).all(|(a, k)| a.hash == *k));
    }
}

#[test]
fn huge_budgets_are_capped_at_2_mib_and_our_own_decoder_accepts_the_answer() {
    let fx = fixture();
    let root = fx.db.account_root().unwrap();
    let req =
        GetAccountRange { request_id: 1, root, origin: B256::ZERO, limit: MAX, bytes: u64::MAX };
    let res = answer_account_range(&fx.db, &req);
    // 20,000 slim accounts are ~1.5 MiB: all of them, under the cap.
    assert_eq!(res.accounts.len(), fx.keys.len());
    let size: u64 = (0..res.accounts.len()).map(|i| item_size(&res, i)).sum();
    assert!(size <= SOFT_RESPONSE_LIMIT + 200);
    let encoded = alloy_rlp::encode(&res);
    assert!(encoded.len() <= MAX_MESSAGE_SIZE);
    assert_eq!(
        SnapMessage::decode(ids::ACCOUNT_RANGE, &encoded),
        Ok(SnapMessage::AccountRange(res))
    );
    // Byte codes: at most 1024 hashes are looked at, however large the budget.
    let codes =
        GetByteCodes { request_id: 2, hashes: vec![KECCAK256_EMPTY; 3000], bytes: u64::MAX };
    assert_eq!(answer_byte_codes(&fx.db, &codes).codes.len(), MAX_CODE_LOOKUPS);
}

#[test]
fn storage_ranges_batch_small_storages_and_prove_a_cut_one() {
    let fx = fixture();
    let root = fx.db.account_root().unwrap();
    let reader = fx.db.snap_reader().unwrap();
    let slot_count = |k: &B256| reader.storage_from(k, &B256::ZERO).count();
    // The first 50 accounts: most have no storage and get no list; the small ones come whole.
    let accounts: Vec<B256> = fx.keys[..50].to_vec();
    let with_storage: Vec<usize> =
        accounts.iter().map(slot_count).filter(|n| *n > 0 && *n < 20).collect();
    let small: Vec<B256> =
        accounts.iter().filter(|k| (1..20).contains(&slot_count(k))).copied().collect();
    assert!(!with_storage.is_empty());
    let req = GetStorageRanges {
        request_id: 3,
        root,
        accounts: small.clone(),
        origin: Bytes::new(),
        limit: Bytes::new(),
        bytes: 1_000_000,
    };
    let res = answer_storage_ranges(&fx.db, &req);
    assert_eq!(res.slots.len(), small.len());
    assert!(res.proof.is_empty(), "whole storages need no proof");
    for (list, n) in res.slots.iter().zip(&with_storage) {
        assert_eq!(list.len(), *n);
    }
    // The largest storage, with a budget that cuts it: a partial list, a proof, nothing after.
    let big = *fx.keys.iter().max_by_key(|k| slot_count(k)).unwrap();
    let total = slot_count(&big);
    assert!(total > 100, "{total}");
    let req = GetStorageRanges {
        request_id: 4,
        root,
        accounts: vec![big, small[0]],
        origin: Bytes::new(),
        limit: Bytes::new(),
        bytes: 1_000,
    };
    let res = answer_storage_ranges(&fx.db, &req);
    assert_eq!(res.slots.len(), 1);
    let n = res.slots[0].len();
    assert!(n > 1 && n < total, "{n} of {total}");
    // 1,000 bytes and 10 % slack: the list stops once it reached 1,100.
    let size: usize = res.slots[0].iter().map(|s| 32 + s.body.len()).sum();
    assert!((1_100..1_100 + 70).contains(&size), "{size}");
    assert!(!res.proof.is_empty());
    // Other roots: nothing.
    let req = GetStorageRanges { root: B256::repeat_byte(1), ..req };
    assert!(answer_storage_ranges(&fx.db, &req).slots.is_empty());
}

#[test]
fn trie_nodes_stop_at_the_byte_budget() {
    let fx = fixture();
    let root = fx.db.account_root().unwrap();
    let paths: Vec<TrieNodePathSet> = (0u8..16).map(|n| TrieNodePathSet::account(&[n])).collect();
    let all = answer_trie_nodes(
        &fx.db,
        &GetTrieNodes { request_id: 5, root, paths: paths.clone(), bytes: 1 << 20 },
    )
    .unwrap();
    assert_eq!(all.nodes.len(), 16);
    assert!(all.nodes.iter().all(|n| !n.is_empty()));
    let one =
        answer_trie_nodes(&fx.db, &GetTrieNodes { request_id: 5, root, paths, bytes: 1 }).unwrap();
    assert_eq!(one.nodes, all.nodes[..1]);
}

/// Node loads are counted as geth counts them: a node resolved once in a query is free after,
/// so a heal request of many paths under the same upper nodes is served whole.
#[test]
fn trie_node_loads_count_each_node_once() {
    let fx = fixture();
    let root = fx.db.account_root().unwrap();
    let depth2: Vec<TrieNodePathSet> =
        (0u8..=255).map(|b| TrieNodePathSet::account(&[b >> 4, b & 0x0f])).collect();
    // 768 paths, 273 distinct nodes (root, 16, 256): under the 1024-load bound.
    let paths: Vec<TrieNodePathSet> = depth2.iter().cycle().take(768).cloned().collect();
    let req = GetTrieNodes { request_id: 8, root, paths, bytes: u64::MAX };
    let res = answer_trie_nodes(&fx.db, &req).unwrap();
    assert_eq!(res.nodes.len(), 768);
    assert_eq!(res.nodes[..256], res.nodes[256..512]);
    // 4096 depth-4 paths need more than 1024 distinct nodes: the answer stops at the bound.
    let deep: Vec<TrieNodePathSet> = (0u16..4096)
        .map(|i| {
            let n = [(i >> 8) as u8 & 0xf, (i >> 4) as u8 & 0xf, i as u8 & 0xf, 0];
            TrieNodePathSet::account(&n)
        })
        .collect();
    let req = GetTrieNodes { request_id: 9, root, paths: deep, bytes: u64::MAX };
    let res = answer_trie_nodes(&fx.db, &req).unwrap();
    assert!(res.nodes.len() > 500 && res.nodes.len() < 1024, "{}", res.nodes.len());
}

/// A block changes one account: the previous root's nodes are still served from the recent-node
/// cache (the paths that did not change from the node store), ranges only at the new head.
#[test]
fn older_roots_serve_trie_nodes_from_the_recent_cache() {
    let params = GenParams { accounts: 2_000, seed: 5 };
    let (_dir, db, old_root) = generated(params, LeafDbConfig::default());
    let old_root_node = db.node(None, &Default::default()).unwrap().unwrap();
    let address = Address::repeat_byte(0x77);
    let mut diff = BlockDiff::default();
    diff.accounts.insert(
        address,
        AccountChange::Updated(AccountUpdate {
            nonce: 1,
            balance: U256::from(10),
            code_hash: KECCAK256_EMPTY,
            ..Default::default()
        }),
    );
    let header = BlockHeader { number: 1, ..Default::default() };
    let out = db.apply_block(&header, &diff).unwrap();
    assert_ne!(out.root, old_root);

    let root_path = vec![TrieNodePathSet::account(&[])];
    let res = answer_trie_nodes(
        &db,
        &GetTrieNodes { request_id: 6, root: old_root, paths: root_path.clone(), bytes: 5000 },
    )
    .unwrap();
    assert_eq!(res.nodes, vec![Bytes::from(old_root_node)]);
    // A child the block did not touch: from the node store, checked against the old parent.
    let untouched = (0u8..16).find(|n| *n != keccak256(address)[0] >> 4).unwrap();
    let res = answer_trie_nodes(
        &db,
        &GetTrieNodes {
            request_id: 6,
            root: old_root,
            paths: vec![TrieNodePathSet::account(&[untouched])],
            bytes: 5000,
        },
    )
    .unwrap();
    assert_eq!(res.nodes.len(), 1);
    assert_eq!(
        Some(res.nodes[0].to_vec()),
        db.node(None, &alloy_trie::Nibbles::from_nibbles([untouched])).unwrap()
    );
    // The new head serves too; an unknown root answers nothing.
    let res = answer_trie_nodes(
        &db,
        &GetTrieNodes { request_id: 6, root: out.root, paths: root_path.clone(), bytes: 5000 },
    )
    .unwrap();
    assert_eq!(keccak256(&res.nodes[0]), out.root);
    let res = answer_trie_nodes(
        &db,
        &GetTrieNodes { request_id: 6, root: B256::repeat_byte(3), paths: root_path, bytes: 5000 },
    )
    .unwrap();
    assert!(res.nodes.is_empty());
}

/// Every account a root's ranges give, asked from zero on in `bytes`-sized answers as a syncing
/// geth asks, each answer proving its first edge against `root`.
fn all_accounts(db: &LeafDb, root: B256, bytes: u64) -> Vec<(B256, Vec<u8>)> {
    let mut out = Vec::new();
    let mut origin = B256::ZERO;
    loop {
        let req = GetAccountRange { request_id: 1, root, origin, limit: MAX, bytes };
        let res = answer_account_range(db, &req);
        assert_eq!(keccak256(&res.proof[0]), root, "proved against the root asked for");
        let Some(last) = res.accounts.last().map(|a| a.hash) else { return out };
        out.extend(res.accounts.iter().map(|a| (a.hash, alloy_rlp::encode(&a.account))));
        if last == MAX {
            return out;
        }
        origin = B256::from(alloy_primitives::U256::from_be_bytes(last.0) + U256::from(1));
    }
}

/// Every slot of `account` at `root`, asked as a syncing geth asks (a cut range continued from
/// its last slot).
fn all_slots(db: &LeafDb, root: B256, account: B256) -> Vec<(B256, Bytes)> {
    let mut out: Vec<(B256, Bytes)> = Vec::new();
    loop {
        let origin = out.last().map_or(B256::ZERO, |(k, _)| {
            B256::from(alloy_primitives::U256::from_be_bytes(k.0) + U256::from(1))
        });
        let req = GetStorageRanges {
            request_id: 1,
            root,
            accounts: vec![account],
            origin: origin.to_vec().into(),
            limit: Bytes::new(),
            bytes: 200,
        };
        let res = answer_storage_ranges(db, &req);
        let Some(slots) = res.slots.first() else { return out };
        out.extend(slots.iter().map(|s| (s.hash, s.body.clone())));
        if res.proof.is_empty() {
            return out; // asked from zero and not cut: the whole storage came
        }
    }
}

/// A syncing geth asks for ranges at its pivot, 64 blocks or more behind the chain's head: they
/// are served at a root the blocks since have replaced (its trie walked through the node store
/// and the recent-node cache), equal to what that root's head served; an unknown root answers
/// nothing.
#[test]
fn ranges_at_an_older_root_are_the_ranges_that_root_had() {
    let params = GenParams { accounts: 3_000, seed: 21 };
    let (_dir, db, old_root) = generated(params, LeafDbConfig::default());
    let before = all_accounts(&db, old_root, 4_000);
    assert!(before.len() >= 3_000, "{} accounts", before.len());
    let storages = storage_keys(&db);
    let slots_before: Vec<_> = storages.iter().map(|a| all_slots(&db, old_root, *a)).collect();
    // One request naming several storages and an account the root does not have, cut by its
    // budget: the same lists, in the same places, and the same proof once the root is older.
    let mut several = storages[..6].to_vec();
    several.insert(2, B256::repeat_byte(0x5a));
    let batch = GetStorageRanges {
        request_id: 2,
        root: old_root,
        accounts: several,
        origin: Bytes::new(),
        limit: Bytes::new(),
        bytes: 3_000,
    };
    let batch_before = answer_storage_ranges(&db, &batch);
    assert!(batch_before.slots.len() >= 2 && !batch_before.proof.is_empty(), "{batch_before:?}");
    apply_blocks(&db, params, 1..=3);
    let head_root = db.account_root().unwrap();
    assert_ne!(head_root, old_root);
    let after = all_accounts(&db, head_root, 4_000);
    assert_ne!(after, before, "the blocks changed accounts");
    assert_eq!(all_accounts(&db, old_root, 4_000), before, "the older root's accounts");
    let mut changed = 0;
    for (account, slots) in storages.iter().zip(&slots_before) {
        assert_eq!(&all_slots(&db, old_root, *account), slots, "storage of {account}");
        changed += usize::from(all_slots(&db, head_root, *account) != *slots);
    }
    assert!(changed > 0, "the blocks changed some storage");
    assert_eq!(answer_storage_ranges(&db, &batch), batch_before);
    assert_no_accounts_at(&db, B256::repeat_byte(3));
}

/// Applies the generated blocks numbered `blocks` of `params` (300 changes each) to `db`.
fn apply_blocks(db: &LeafDb, params: GenParams, blocks: std::ops::RangeInclusive<u64>) {
    for n in blocks {
        let (header, diff) = params.block(n, 300);
        db.apply_generated_block(&header, &diff).unwrap();
    }
}

/// The hashed keys of `db`'s accounts with a storage, in key order.
fn storage_keys(db: &LeafDb) -> Vec<B256> {
    db.snap_reader()
        .unwrap()
        .accounts_from(&B256::ZERO)
        .map(Result::unwrap)
        .filter(|(_, a)| a.storage_root != alloy_trie::EMPTY_ROOT_HASH)
        .map(|(k, _)| k)
        .collect()
}

/// Asserts that an account range at `root` is answered as for a root the server does not have:
/// no accounts and no proof, under the request's id.
fn assert_no_accounts_at(db: &LeafDb, root: B256) {
    let req = GetAccountRange { request_id: 7, root, origin: B256::ZERO, limit: MAX, bytes: 4_000 };
    let empty = AccountRange { request_id: 7, ..Default::default() };
    assert_eq!(answer_account_range(db, &req), empty, "accounts at {root}");
}

/// A root whose nodes the recent-node cache no longer holds (past `recent_blocks`) resolves
/// nothing: ranges at it are answered empty, without a proof, as geth answers for a state it
/// no longer has.
#[test]
fn ranges_at_a_root_past_the_recent_window_are_empty() {
    let config = LeafDbConfig { recent_blocks: 1, ..LeafDbConfig::default() };
    let params = GenParams { accounts: 1_000, seed: 23 };
    let (_dir, db, old_root) = generated(params, config);
    let storage = storage_keys(&db)[0];
    apply_blocks(&db, params, 1..=1);
    assert!(!all_accounts(&db, old_root, 4_000).is_empty(), "one block back: in the window");
    apply_blocks(&db, params, 2..=3);
    assert_no_accounts_at(&db, old_root);
    let req = GetStorageRanges {
        request_id: 4,
        root: old_root,
        accounts: vec![storage],
        origin: Bytes::new(),
        limit: Bytes::new(),
        bytes: 4_000,
    };
    let res = answer_storage_ranges(&db, &req);
    assert!(res.slots.is_empty() && res.proof.is_empty(), "{res:?}");
}

/// A contract deleted since an older root takes its storage trie with it (a deletion's nodes
/// never enter the recent-node cache): a storage request at that root naming a readable
/// storage, the deleted one and another readable one answers the first list only, not the
/// third in the second's place (geth checks lists by position against the accounts it asked).
#[test]
fn a_storage_gone_since_an_older_root_ends_the_answer_there() {
    let params = GenParams { accounts: 1_000, seed: 29 };
    let (_dir, db, old_root) = generated(params, LeafDbConfig::default());
    let contracts: Vec<_> =
        (0..1_000).map(|i| params.account(i)).filter(|a| a.slots > 0).take(3).collect();
    assert_eq!(contracts.len(), 3);
    let hashed: Vec<B256> = contracts.iter().map(|a| keccak256(a.address)).collect();
    let mut diff = BlockDiff::default();
    diff.accounts.insert(contracts[1].address, AccountChange::Deleted);
    db.apply_generated_block(&GenParams::block_header(1), &diff).unwrap();
    assert!(db.account(&hashed[1]).unwrap().is_none(), "deleted at the head");

    let req = GetStorageRanges {
        request_id: 5,
        root: old_root,
        accounts: hashed.clone(),
        origin: Bytes::new(),
        limit: Bytes::new(),
        bytes: 1 << 20,
    };
    let res = answer_storage_ranges(&db, &req);
    assert_eq!(res.slots.len(), 1, "{res:?}");
    assert_eq!(res.slots[0], all_slots_list(&db, old_root, hashed[0]));
    // Named first, the gone storage gives nothing at all.
    let res =
        answer_storage_ranges(&db, &GetStorageRanges { accounts: hashed[1..].to_vec(), ..req });
    assert!(res.slots.is_empty() && res.proof.is_empty(), "{res:?}");
}

/// The whole storage of `account` at `root` as the one list of a storage answer.
fn all_slots_list(db: &LeafDb, root: B256, account: B256) -> Vec<leafsync_p2p::snap::StorageData> {
    all_slots(db, root, account)
        .into_iter()
        .map(|(hash, body)| leafsync_p2p::snap::StorageData { hash, body })
        .collect()
}

#[test]
fn serve_message_decodes_answers_and_refuses() {
    let fx = fixture();
    let root = fx.db.account_root().unwrap();
    let req = GetAccountRange { request_id: 42, root, origin: B256::ZERO, limit: MAX, bytes: 10 };
    let out = serve_message(&fx.db, ids::GET_ACCOUNT_RANGE, &alloy_rlp::encode(req)).unwrap();
    let Some(SnapMessage::AccountRange(res)) = out else { panic!("{out:?}") };
    assert_eq!(res.request_id, 42);
    assert_eq!(res.accounts.len(), 1);
    // A response is not the server's business.
    let stray = AccountRange::default();
    assert_eq!(serve_message(&fx.db, ids::ACCOUNT_RANGE, &alloy_rlp::encode(&stray)), Ok(None));
    // Breaches.
    let err = serve_message(&fx.db, ids::GET_ACCOUNT_RANGE, &[0xc1, 0x80]).unwrap_err();
    assert!(matches!(err, SnapError::Malformed { .. }));
    assert!(err.disconnect_reason().is_some());
    let bad = GetTrieNodes { request_id: 1, root, paths: vec![TrieNodePathSet(vec![])], bytes: 1 };
    assert_eq!(
        serve_message(&fx.db, ids::GET_TRIE_NODES, &alloy_rlp::encode(&bad)),
        Err(SnapError::EmptyPathSet { index: 0 })
    );
    assert_eq!(serve_message(&fx.db, 0x08, &[0xc0]), Err(SnapError::UnknownMessageId(8)));
}

/// A key for a request: one of the state's accounts (so that ranges, storages and paths start
/// where there is something to serve), next to one, or any.
fn key() -> impl proptest::strategy::Strategy<Value = B256> {
    use proptest::prelude::*;
    let keys = &fixture().keys;
    prop_oneof![
        (0..keys.len()).prop_map(move |i| keys[i]),
        any::<[u8; 32]>().prop_map(B256::from),
        Just(B256::ZERO),
        Just(MAX),
    ]
}

/// A byte budget: none, one byte, anything, or the most a request can say.
fn budget() -> impl proptest::strategy::Strategy<Value = u64> {
    use proptest::prelude::*;
    prop_oneof![Just(0u64), Just(1), 0u64..4 * 1024 * 1024, Just(u64::MAX)]
}

/// Origin or limit bytes of a storage request, or a trie path: of any length up to 40.
fn some_bytes() -> impl proptest::strategy::Strategy<Value = Bytes> {
    use proptest::prelude::*;
    proptest::collection::vec(any::<u8>(), 0..40).prop_map(Bytes::from)
}

/// Any request a peer may send, as it comes off the wire: an id and its payload.
fn any_request() -> impl proptest::strategy::Strategy<Value = (u8, Vec<u8>)> {
    use proptest::prelude::*;
    let root = || prop_oneof![3 => Just(fixture().db.account_root().unwrap()), 1 => key()];
    prop_oneof![
        (root(), key(), key(), budget()).prop_map(|(root, origin, limit, bytes)| {
            let req = GetAccountRange { request_id: 1, root, origin, limit, bytes };
            (ids::GET_ACCOUNT_RANGE, alloy_rlp::encode(req))
        }),
        (root(), proptest::collection::vec(key(), 0..8), some_bytes(), some_bytes(), budget())
            .prop_map(|(root, accounts, origin, limit, bytes)| {
                let req = GetStorageRanges { request_id: 2, root, accounts, origin, limit, bytes };
                (ids::GET_STORAGE_RANGES, alloy_rlp::encode(req))
            }),
        (proptest::collection::vec(key(), 0..8), budget()).prop_map(|(hashes, bytes)| {
            let req = GetByteCodes { request_id: 3, hashes, bytes };
            (ids::GET_BYTE_CODES, alloy_rlp::encode(req))
        }),
        (
            root(),
            proptest::collection::vec(proptest::collection::vec(some_bytes(), 0..4), 0..6),
            budget()
        )
            .prop_map(|(root, sets, bytes)| {
                let paths = sets.into_iter().map(TrieNodePathSet).collect();
                let req = GetTrieNodes { request_id: 4, root, paths, bytes };
                (ids::GET_TRIE_NODES, alloy_rlp::encode(req))
            }),
    ]
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(
        leafsync_p2p::test_utils::proptest_cases(256)
    ))]

    /// Whatever a peer asks (roots, keys, ranges backwards or empty, paths of any bytes,
    /// budgets of 0 to 2^64 − 1), the server answers without panicking, or refuses the request
    /// as a breach; an answer stays within geth's 2 MiB soft limit plus one item and its proofs,
    /// and decodes with the protocol's limits.
    #[test]
    fn any_request_is_answered_within_bounds_or_refused((id, payload) in any_request()) {
        let fx = fixture();
        let Ok(Some(answer)) = serve_message(&fx.db, id, &payload) else { return Ok(()) };
        let encoded = answer.encoded();
        proptest::prop_assert!(
            encoded.len() as u64 <= SOFT_RESPONSE_LIMIT + 128 * 1024,
            "{} bytes", encoded.len()
        );
        proptest::prop_assert!(SnapMessage::decode(answer.id(), &encoded).is_ok());
    }
}
