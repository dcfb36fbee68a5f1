//! Our snap/1 server held to go-ethereum's own answers.
//!
//! The state is go-ethereum's devp2p test chain head (`../shared/testdata/snap-ethtest/`, from
//! `cmd/devp2p/internal/ethtest/testdata` at go-ethereum 02b73d4ea7), loaded from its `geth dump`
//! into a temporary RocksDB leafdb. Every case of `cmd/devp2p/internal/ethtest/snap.go` that
//! concerns the head state is one test here, with the figures geth answers quoted from that file
//! (`TestSnapGetAccountRange`, `TestSnapGetStorageRanges`, `TestSnapGetByteCodes`,
//! `TestSnapTrieNodes`; "case N" is the index in its table). As snap.go does, range answers are
//! also checked for order and their edge proofs verified.
//!
//! Cases about other blocks' states are not reproducible from a leafdb that holds one state:
//! `TestSnapGetAccountRange` case 12 (the root 127 blocks before the head, which geth still
//! serves from its 128 diff layers) and `TestSnapTrieNodes` case 2 (the root node of the state
//! one block before the head). They are listed in `docs/snap.md`; the head-root analogue of the
//! latter is tested below. The genesis-root case (11) needs no other state: geth answers it
//! empty, so must we.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use leafsync_p2p::test_utils::package_dir;
use std::{collections::HashMap, path::PathBuf, sync::OnceLock};

use alloy_primitives::{B256, Bytes, KECCAK256_EMPTY, U256, b256, keccak256};
use alloy_trie::{EMPTY_ROOT_HASH, Nibbles, TrieAccount, proof::verify_proof};
use leafsync_leafdb::{
    BlockHeader, DbOptions, LeafDb, LeafDbConfig, read_state_file, schema::encode_account,
    trie::DecodedNode,
};
use leafsync_p2p::snap::{
    AccountRange, GetAccountRange, GetByteCodes, GetStorageRanges, GetTrieNodes, SlimAccount,
    SnapError, StorageData, TrieNodePathSet,
    path::{TERMINATOR, hex_to_compact},
};
use leafsync_serve::snap::{
    answer_account_range, answer_byte_codes, answer_storage_ranges, answer_trie_nodes,
};

/// The head state root of the test chain (block 600), `headblock.json`'s `stateRoot`.
const HEAD_ROOT: B256 = b256!("8fcfb02cfca007773bd55bc1c3e50a3c8612a59c87ce057e5957e8bf17c1728b");
/// The head block's hash (`headblock.json`).
const HEAD_HASH: B256 = b256!("44e3809c9a3cda717f00aea3a9da336d149612c8d5657fbc0028176ef8d94d2a");
/// The head block's parent hash (`headblock.json`).
const HEAD_PARENT: B256 = b256!("7e80093a491eba0e5b2c1895837902f64f514100221801318fe391e1e09c96a6");
/// snap.go's storage test account (`0x8bebc8ba651aee624937e7d897853ac30c95a067`), its hashed
/// address (the dump's `key`).
const STORAGE_ACCOUNT: B256 =
    b256!("445cb5c1278fdce2f9cbdb681bdd76c52f8e50e41dbd9e220242a69ba99ac099");
/// That account's storage root at the head (the dump's `root`; snap.go's `TestSnapTrieNodes`
/// case 6 expects the node with this hash at the empty path of its storage trie).
const STORAGE_ROOT: B256 =
    b256!("be3d75a1729be157e79c3b77f00206db4d54e3ea14375a015451c88ec067c790");
const MAX_HASH: B256 = B256::repeat_byte(0xff);

/// The data directory: `$LEAFSYNC_SNAP_TESTDATA`, else `shared/testdata/snap-ethtest` beside the
/// workspace (crates/serve → the workspace → its parent holds `shared/`).
fn testdata() -> PathBuf {
    let dir = std::env::var_os("LEAFSYNC_SNAP_TESTDATA").map_or_else(
        || package_dir(env!("CARGO_MANIFEST_DIR")).join("../../../shared/testdata/snap-ethtest"),
        PathBuf::from,
    );
    assert!(
        dir.join("headstate.json").exists(),
        "snap conformance data not found at {} (see its README.md)",
        dir.display()
    );
    dir
}

struct Fixture {
    _dir: tempfile::TempDir,
    db: LeafDb,
    /// Hashed addresses in order.
    keys: Vec<B256>,
    /// Distinct non-empty code hashes, sorted (go-ethereum's `Chain.CodeHashes`).
    code_hashes: Vec<B256>,
    /// The genesis state root (computed from `genesis.json`'s alloc).
    genesis_root: B256,
}

fn fixture() -> &'static Fixture {
    static FX: OnceLock<Fixture> = OnceLock::new();
    FX.get_or_init(|| {
        let data = testdata();
        let file = read_state_file(&data.join("headstate.json")).unwrap();
        assert_eq!(file.expected_root, Some(HEAD_ROOT));
        let dir = tempfile::tempdir().unwrap();
        let db = LeafDb::open(dir.path(), &DbOptions::default(), LeafDbConfig::default()).unwrap();
        let head = BlockHeader {
            number: 600,
            hash: HEAD_HASH,
            parent_hash: HEAD_PARENT,
            state_root: HEAD_ROOT,
            // headblock.json: "timestamp": "0x1770"
            timestamp: 0x1770,
        };
        let out = db.init_genesis(&file.alloc, head).unwrap();
        assert_eq!(out.root, HEAD_ROOT, "the dump must load to the head state root");
        assert_eq!(db.account_root().unwrap(), HEAD_ROOT);
        let mut keys: Vec<B256> = file.alloc.keys().map(keccak256).collect();
        keys.sort();
        assert_eq!(keys.len(), 194);
        let mut code_hashes: Vec<B256> = file
            .alloc
            .values()
            .filter_map(|a| a.code.as_ref().map(keccak256))
            .filter(|h| *h != KECCAK256_EMPTY)
            .collect();
        code_hashes.sort();
        code_hashes.dedup();
        let genesis = leafsync_leafdb::read_alloc_file(&data.join("genesis.json")).unwrap();
        let genesis_root =
            LeafDb::in_memory().init_genesis(&genesis, BlockHeader::default()).unwrap().root;
        Fixture { _dir: dir, db, keys, code_hashes, genesis_root }
    })
}

/// `h + n` as 256-bit integers (snap.go's `hashAdd`).
fn hash_add(h: B256, n: i64) -> B256 {
    let v = U256::from_be_bytes(h.0);
    let v = if n >= 0 { v + U256::from(n) } else { v - U256::from(-n) };
    B256::from(v.to_be_bytes())
}

/// The proof nodes on the path to `key`, in path order, picked out of an unordered proof set.
fn path_nodes(root: B256, key: &B256, proof: &[Bytes]) -> Vec<Bytes> {
    let by_hash: HashMap<B256, &Bytes> = proof.iter().map(|n| (keccak256(n), n)).collect();
    let key = Nibbles::unpack(key);
    let mut out = Vec::new();
    let mut next = Some(root);
    let mut depth = 0;
    while let Some(hash) = next.take() {
        let Some(rlp) = by_hash.get(&hash) else { break };
        out.push((*rlp).clone());
        let mut node = DecodedNode::decode(rlp).unwrap();
        loop {
            let child = match &node {
                DecodedNode::Leaf { .. } => None,
                DecodedNode::Extension { key: k, child } => {
                    if !key.slice(depth..).starts_with(k) {
                        None
                    } else {
                        depth += k.len();
                        Some(child.clone())
                    }
                }
                DecodedNode::Branch { children, .. } => {
                    let c = children[key.get_unchecked(depth) as usize].clone();
                    depth += 1;
                    c
                }
            };
            match child {
                None => break,
                Some(c) => match c.as_hash() {
                    Some(h) => {
                        next = Some(h);
                        break;
                    }
                    None => node = DecodedNode::decode(&c).unwrap(),
                },
            }
        }
    }
    out
}

/// What snap.go checks of an account range: the count, first and last hashes, strictly
/// increasing order, and (ours in addition) every account equal to the state and both edges
/// proven against `root`.
fn check_accounts(
    res: &AccountRange,
    root: B256,
    origin: B256,
    count: usize,
    first: B256,
    last: B256,
) {
    assert_eq!(res.accounts.len(), count, "account count");
    if count == 0 {
        return;
    }
    assert_eq!(res.accounts[0].hash, first, "first account");
    assert_eq!(res.accounts[count - 1].hash, last, "last account");
    assert!(res.accounts.windows(2).all(|w| w[0].hash < w[1].hash), "accounts not increasing");
    let fx = fixture();
    for a in &res.accounts {
        let stored = fx.db.account(&a.hash).unwrap().unwrap();
        let slim =
            SlimAccount::new(stored.nonce, stored.balance, stored.storage_root, stored.code_hash);
        assert_eq!(a.account, slim);
    }
    // The origin's proof (present or absent) and the last account's inclusion proof.
    let origin_value = fx.db.account(&origin).unwrap().map(|a| encode_account(&a));
    verify_proof(
        root,
        Nibbles::unpack(origin),
        origin_value,
        &path_nodes(root, &origin, &res.proof),
    )
    .unwrap();
    let last_value = fx.db.account(&last).unwrap().map(|a| encode_account(&a));
    assert!(last_value.is_some());
    verify_proof(root, Nibbles::unpack(last), last_value, &path_nodes(root, &last, &res.proof))
        .unwrap();
}

fn account_range(root: B256, origin: B256, limit: B256, bytes: u64) -> AccountRange {
    let req = GetAccountRange { request_id: 0x5eed, root, origin, limit, bytes };
    let res = answer_account_range(&fixture().db, &req);
    assert_eq!(res.request_id, 0x5eed);
    res
}

fn first_key() -> B256 {
    fixture().keys[0]
}

fn second_key() -> B256 {
    fixture().keys[1]
}

/// geth's figure for the last account of a 4000-byte range from the start.
const LAST_4000: B256 = b256!("59312f89c13e9e24c1cb8b103aa39a9b2800348d97a92c2c9e2a78fa02b70025");

// ---------------------------------------------------------------- TestSnapGetAccountRange

/// Case 0: the whole range, 4000 bytes → 68 accounts, the last 0x59312f89…0025.
#[test]
fn account_range_00_4000_bytes() {
    let res = account_range(HEAD_ROOT, B256::ZERO, MAX_HASH, 4000);
    check_accounts(&res, HEAD_ROOT, B256::ZERO, 68, first_key(), LAST_4000);
}

/// Case 1: 3000 bytes → 50 accounts, the last 0x4615e5f5…ebaa.
#[test]
fn account_range_01_3000_bytes() {
    let res = account_range(HEAD_ROOT, B256::ZERO, MAX_HASH, 3000);
    let last = b256!("4615e5f5df5b25349a00ad313c6cd0436b6c08ee5826e33a018661997f85ebaa");
    check_accounts(&res, HEAD_ROOT, B256::ZERO, 50, first_key(), last);
}

/// Case 2: 2000 bytes → 35 accounts, the last 0x2de4bdbd…3284.
#[test]
fn account_range_02_2000_bytes() {
    let res = account_range(HEAD_ROOT, B256::ZERO, MAX_HASH, 2000);
    let last = b256!("2de4bdbddcfbb9c3e195dae6b45f9c38daff897e926764bf34887fb0db5c3284");
    check_accounts(&res, HEAD_ROOT, B256::ZERO, 35, first_key(), last);
}

/// Case 3: 1 byte → exactly the first account.
#[test]
fn account_range_03_1_byte() {
    let res = account_range(HEAD_ROOT, B256::ZERO, MAX_HASH, 1);
    check_accounts(&res, HEAD_ROOT, B256::ZERO, 1, first_key(), first_key());
}

/// Case 4: 0 bytes → still one account.
#[test]
fn account_range_04_0_bytes() {
    let res = account_range(HEAD_ROOT, B256::ZERO, MAX_HASH, 0);
    check_accounts(&res, HEAD_ROOT, B256::ZERO, 1, first_key(), first_key());
}

/// Case 5: origin 500 before the first key, limit one past it → the first and second accounts.
#[test]
fn account_range_05_origin_before_first_limit_after() {
    let origin = hash_add(first_key(), -500);
    let res = account_range(HEAD_ROOT, origin, hash_add(first_key(), 1), 4000);
    check_accounts(&res, HEAD_ROOT, origin, 2, first_key(), second_key());
}

/// Case 6: both bounds before the first key → the first account (out of bounds, but the next).
#[test]
fn account_range_06_both_bounds_before_first() {
    let origin = hash_add(first_key(), -500);
    let res = account_range(HEAD_ROOT, origin, hash_add(first_key(), -450), 4000);
    check_accounts(&res, HEAD_ROOT, origin, 1, first_key(), first_key());
}

/// Case 7: origin and limit zero → the first account.
#[test]
fn account_range_07_zero_zero() {
    let res = account_range(HEAD_ROOT, B256::ZERO, B256::ZERO, 4000);
    check_accounts(&res, HEAD_ROOT, B256::ZERO, 1, first_key(), first_key());
}

/// Case 8: origin exactly the first key → 68 accounts, the last 0x59312f89…0025.
#[test]
fn account_range_08_origin_is_first_key() {
    let res = account_range(HEAD_ROOT, first_key(), MAX_HASH, 4000);
    check_accounts(&res, HEAD_ROOT, first_key(), 68, first_key(), LAST_4000);
}

/// Case 9: origin one past the first key → 68 accounts from the second, the last
/// 0x59a7c881…e509.
#[test]
fn account_range_09_origin_after_first_key() {
    let origin = hash_add(first_key(), 1);
    let res = account_range(HEAD_ROOT, origin, MAX_HASH, 4000);
    let last = b256!("59a7c8818f1c16b298a054020dc7c3f403a970d1d1db33f9478b1c36e3a2e509");
    check_accounts(&res, HEAD_ROOT, origin, 68, second_key(), last);
}

/// Case 10: a non-existent root (0x1337…) → empty.
#[test]
fn account_range_10_unknown_root() {
    let mut root = B256::ZERO;
    root[0] = 0x13;
    root[1] = 0x37;
    let res = account_range(root, B256::ZERO, MAX_HASH, 4000);
    assert_eq!(res, AccountRange { request_id: 0x5eed, ..Default::default() });
}

/// Case 11: the genesis state root → empty (geth: "genesis is older than 127 blocks").
#[test]
fn account_range_11_genesis_root() {
    let genesis = fixture().genesis_root;
    assert_ne!(genesis, HEAD_ROOT);
    let res = account_range(genesis, B256::ZERO, MAX_HASH, 4000);
    assert_eq!(res, AccountRange { request_id: 0x5eed, ..Default::default() });
}

/// Case 13: a storage root used as the state root → empty.
#[test]
fn account_range_13_storage_root_as_state_root() {
    // snap.go takes the first account in hash order that has storage.
    let fx = fixture();
    let root = fx
        .keys
        .iter()
        .map(|k| fx.db.account(k).unwrap().unwrap().storage_root)
        .find(|r| *r != EMPTY_ROOT_HASH)
        .unwrap();
    let res = account_range(root, B256::ZERO, MAX_HASH, 4000);
    assert_eq!(res, AccountRange { request_id: 0x5eed, ..Default::default() });
}

/// Case 14: origin 0xff…ff after limit zero (wrong order) → no accounts.
#[test]
fn account_range_14_origin_after_limit() {
    let res = account_range(HEAD_ROOT, MAX_HASH, B256::ZERO, 4000);
    assert!(res.accounts.is_empty());
    // What geth's checker then verifies: the proof shows nothing lies past the origin.
    let nodes = path_nodes(HEAD_ROOT, &MAX_HASH, &res.proof);
    verify_proof(HEAD_ROOT, Nibbles::unpack(MAX_HASH), None, &nodes).unwrap();
}

/// Case 15: origin the first key, limit one before it → the first account.
#[test]
fn account_range_15_limit_before_origin() {
    let res = account_range(HEAD_ROOT, first_key(), hash_add(first_key(), -1), 4000);
    check_accounts(&res, HEAD_ROOT, first_key(), 1, first_key(), first_key());
}

/// Case 16: origin the first key, limit zero → the first account.
#[test]
fn account_range_16_limit_zero() {
    let res = account_range(HEAD_ROOT, first_key(), B256::ZERO, 4000);
    check_accounts(&res, HEAD_ROOT, first_key(), 1, first_key(), first_key());
}

// --------------------------------------------------------------- TestSnapGetStorageRanges

/// The test account's three slots as snap.go lists them (hashed keys; values 2, 1, 3).
fn acct_slots() -> Vec<StorageData> {
    vec![
        StorageData {
            hash: b256!("405787fa12a823e0f2b7631cc41b3ba8828b3321ca811111fa75cd3aa3bb5ace"),
            body: Bytes::from_static(&[0x02]),
        },
        StorageData {
            hash: b256!("b10e2d527612073b26eecdfd717e6a320cf44b4afac2b0732d9fcbe2b7fa0cf6"),
            body: Bytes::from_static(&[0x01]),
        },
        StorageData {
            hash: b256!("c2575a0e9e593c00f959f8c92f12db2869c3395a3b0502d05e2516446f71f85b"),
            body: Bytes::from_static(&[0x03]),
        },
    ]
}

fn storage_ranges(origin: &[u8], limit: &[u8], bytes: u64) -> Vec<Vec<StorageData>> {
    assert_eq!(
        keccak256(alloy_primitives::address!("8bebc8ba651aee624937e7d897853ac30c95a067")),
        STORAGE_ACCOUNT
    );
    let req = GetStorageRanges {
        request_id: 7,
        root: HEAD_ROOT,
        accounts: vec![STORAGE_ACCOUNT],
        origin: Bytes::copy_from_slice(origin),
        limit: Bytes::copy_from_slice(limit),
        bytes,
    };
    let res = answer_storage_ranges(&fixture().db, &req);
    assert_eq!(res.request_id, 7);
    for list in &res.slots {
        assert!(list.windows(2).all(|w| w[0].hash < w[1].hash), "slots not increasing");
    }
    // A range that starts past zero carries its edge proof, which must verify.
    if origin.iter().any(|b| *b != 0) && !res.slots.is_empty() {
        let last = res.slots[0].last().unwrap();
        let nodes = path_nodes(STORAGE_ROOT, &last.hash, &res.proof);
        verify_proof(STORAGE_ROOT, Nibbles::unpack(last.hash), Some(last.body.to_vec()), &nodes)
            .unwrap();
    }
    res.slots
}

/// Case 0: range 00..ff, 500 bytes → all three slots.
#[test]
fn storage_ranges_00_whole_range() {
    assert_eq!(storage_ranges(&[0; 32], &[0xff; 32], 500), vec![acct_slots()]);
}

/// Case 1: from the first slot, 1000 bytes → all three slots.
#[test]
fn storage_ranges_01_from_first_slot() {
    let origin = acct_slots()[0].hash;
    assert_eq!(storage_ranges(origin.as_slice(), &[0xff; 32], 1000), vec![acct_slots()]);
}

/// Case 2: from one past the first slot (…5acf) → the second and third slots.
#[test]
fn storage_ranges_02_past_first_slot() {
    let origin = b256!("405787fa12a823e0f2b7631cc41b3ba8828b3321ca811111fa75cd3aa3bb5acf");
    assert_eq!(
        storage_ranges(origin.as_slice(), &[0xff; 32], 500),
        vec![acct_slots()[1..].to_vec()]
    );
}

/// Case 3: from the first to exactly the second slot → the first and second slots.
#[test]
fn storage_ranges_03_first_to_second() {
    let (origin, limit) = (acct_slots()[0].hash, acct_slots()[1].hash);
    assert_eq!(
        storage_ranges(origin.as_slice(), limit.as_slice(), 500),
        vec![acct_slots()[..2].to_vec()]
    );
}

/// Case 4: from 0x4fff…ff to one past the second slot (…0cf7) → the second and third slots
/// (the next available one past the limit is included).
#[test]
fn storage_ranges_04_next_available_past_limit() {
    let origin = b256!("4fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff");
    let limit = b256!("b10e2d527612073b26eecdfd717e6a320cf44b4afac2b0732d9fcbe2b7fa0cf7");
    assert_eq!(
        storage_ranges(origin.as_slice(), limit.as_slice(), 500),
        vec![acct_slots()[1..].to_vec()]
    );
}

// ------------------------------------------------------------------ TestSnapGetByteCodes

fn byte_codes(hashes: Vec<B256>, bytes: u64) -> Vec<Bytes> {
    let req = GetByteCodes { request_id: 3, hashes, bytes };
    let hashes = &req.hashes;
    let res = answer_byte_codes(&fixture().db, &req);
    assert_eq!(res.request_id, 3);
    // snap.go's cross-check: every code answers a requested hash, in request order.
    let mut j = 0;
    for code in &res.codes {
        let h = keccak256(code);
        while j < hashes.len() && hashes[j] != h {
            j += 1;
        }
        assert!(j < hashes.len(), "unexpected bytecode");
        j += 1;
    }
    res.codes
}

/// Case 0: state roots (genesis, head) as code hashes, 10000 bytes → no items.
#[test]
fn byte_codes_00_state_roots() {
    assert_eq!(byte_codes(vec![fixture().genesis_root, HEAD_ROOT], 10000).len(), 0);
}

/// Case 1: the genesis root twice → no items.
#[test]
fn byte_codes_01_genesis_root_twice() {
    let g = fixture().genesis_root;
    assert_eq!(byte_codes(vec![g, g], 10000).len(), 0);
}

/// Case 2: the empty trie root → no items.
#[test]
fn byte_codes_02_empty_root() {
    assert_eq!(byte_codes(vec![EMPTY_ROOT_HASH], 10000).len(), 0);
}

/// Case 3: the empty code hash → one (empty) item.
#[test]
fn byte_codes_03_empty_code() {
    assert_eq!(byte_codes(vec![KECCAK256_EMPTY], 10000), vec![Bytes::new()]);
}

/// Case 4: the empty code hash three times → three empty items.
#[test]
fn byte_codes_04_empty_code_three_times() {
    assert_eq!(byte_codes(vec![KECCAK256_EMPTY; 3], 10000), vec![Bytes::new(); 3]);
}

/// Case 5: every code of the state, 100000 bytes → all of them (65 in this state).
#[test]
fn byte_codes_05_all_codes() {
    let all = fixture().code_hashes.clone();
    assert_eq!(all.len(), 65);
    assert_eq!(byte_codes(all.clone(), 100_000).len(), all.len());
}

/// Case 6: every code, 1 byte → one item.
#[test]
fn byte_codes_06_one_byte() {
    assert_eq!(byte_codes(fixture().code_hashes.clone(), 1).len(), 1);
}

/// Case 7: every code, 0 bytes → one item.
#[test]
fn byte_codes_07_zero_bytes() {
    assert_eq!(byte_codes(fixture().code_hashes.clone(), 0).len(), 1);
}

/// Case 8: the first code hash four times, 1000 bytes → four items.
#[test]
fn byte_codes_08_same_hash_four_times() {
    let h = fixture().code_hashes[0];
    assert_eq!(byte_codes(vec![h; 4], 1000).len(), 4);
}

// -------------------------------------------------------------------- TestSnapTrieNodes

/// keccak256 of the empty string: what geth's checker sees for an empty entry.
const EMPTY: B256 = KECCAK256_EMPTY;

fn trie_nodes(root: B256, paths: Vec<TrieNodePathSet>, bytes: u64) -> Result<Vec<B256>, SnapError> {
    let req = GetTrieNodes { request_id: 11, root, paths, bytes };
    let res = answer_trie_nodes(&fixture().db, &req)?;
    assert_eq!(res.request_id, 11);
    Ok(res.nodes.iter().map(keccak256).collect())
}

/// snap.go's `makeSnapPath(key, n)`: the first `n` nibbles of `key`'s hex form with the last
/// replaced by 0, compact-encoded, as an account-trie path set.
fn snap_path(key: &B256, n: usize) -> TrieNodePathSet {
    let mut hex: Vec<u8> = Nibbles::unpack(key).to_vec();
    hex.push(TERMINATOR);
    let mut p = hex[..n].to_vec();
    *p.last_mut().unwrap() = 0;
    TrieNodePathSet(vec![Bytes::from(hex_to_compact(&p, false))])
}

/// snap.go's known account key for the account-path cases.
const KNOWN_KEY: B256 = b256!("a87387b50b481431c6ccdb9ae99a54d4dcdd4a3eff75d7b17b4818f7bbfc21e9");
/// Node at account path `[0]`, and at `[a, 0]` (snap.go's hard-coded figures).
const NODE_0: B256 = b256!("4bdecec09691ad38113eebee2df94fadefdff5841c0f182bae1be3c8a6d60bf3");
const NODE_A0: B256 = b256!("4178696465d4514ff5924ef8c28ce64d41a669634b63184c2c093e252d6b4bc4");

fn acc_paths() -> Vec<TrieNodePathSet> {
    (1..=65).map(|n| snap_path(&KNOWN_KEY, n)).collect()
}

/// Case 0: an empty request → no entries.
#[test]
fn trie_nodes_00_empty_request() {
    assert_eq!(trie_nodes(HEAD_ROOT, vec![], 500).unwrap(), Vec::<B256>::new());
}

/// Case 1: a request holding an empty path set → refused (geth drops the peer).
#[test]
fn trie_nodes_01_empty_path_set_rejected() {
    let paths = vec![TrieNodePathSet(vec![]), TrieNodePathSet(vec![Bytes::from_static(&[0])])];
    assert_eq!(trie_nodes(HEAD_ROOT, paths, 5000), Err(SnapError::EmptyPathSet { index: 0 }));
}

/// Case 2, at the head root (geth's case asks at the root one block before the head, a state
/// this leafdb does not hold): `[[0x00], [0x01, 0x00]]` → only the root node; the second set
/// names the account hash 0x00…01, which does not exist, so it gets no entries.
#[test]
fn trie_nodes_02_root_node_at_head() {
    let paths = vec![
        TrieNodePathSet(vec![Bytes::from_static(&[0])]),
        TrieNodePathSet(vec![Bytes::from_static(&[1]), Bytes::from_static(&[0])]),
    ];
    assert_eq!(trie_nodes(HEAD_ROOT, paths, 5000).unwrap(), vec![HEAD_ROOT]);
}

/// Case 3: a nonsensically long path (54 bytes) → one empty entry.
#[test]
fn trie_nodes_03_very_long_path() {
    let long: Vec<u8> = (0..6).flat_map(|_| 0u8..=8).collect();
    assert_eq!(long.len(), 54);
    let paths = vec![TrieNodePathSet(vec![Bytes::from(long)])];
    assert_eq!(trie_nodes(HEAD_ROOT, paths, 5000).unwrap(), vec![EMPTY]);
}

/// Case 4: the 65 prefixes of a known account's path → 0x4bdecec…, 0x41786964…, then 63 empty
/// entries.
#[test]
fn trie_nodes_04_known_account_paths() {
    let mut want = vec![NODE_0, NODE_A0];
    want.extend([EMPTY; 63]);
    assert_eq!(trie_nodes(HEAD_ROOT, acc_paths(), 5000).unwrap(), want);
}

/// Case 5: three of those paths out of key order → empty, 0x41786964…, 0x4bdecec….
#[test]
fn trie_nodes_05_paths_out_of_order() {
    let p = acc_paths();
    let paths = vec![p[10].clone(), p[1].clone(), p[0].clone()];
    assert_eq!(trie_nodes(HEAD_ROOT, paths, 5000).unwrap(), vec![EMPTY, NODE_A0, NODE_0]);
}

/// Case 6: the storage root node of the test account → 0xbe3d75a1….
#[test]
fn trie_nodes_06_storage_root_node() {
    let set = TrieNodePathSet(vec![
        Bytes::copy_from_slice(STORAGE_ACCOUNT.as_slice()),
        Bytes::from_static(&[0]),
    ]);
    assert_eq!(trie_nodes(HEAD_ROOT, vec![set], 5000).unwrap(), vec![STORAGE_ROOT]);
}

/// Case 7: the storage root node and the node at `[0x1b]` → 0xbe3d75a1…, 0xf4984a11….
#[test]
fn trie_nodes_07_storage_nodes() {
    let set = TrieNodePathSet(vec![
        Bytes::copy_from_slice(STORAGE_ACCOUNT.as_slice()),
        Bytes::from_static(&[0]),
        Bytes::from_static(&[0x1b]),
    ]);
    let want = vec![
        STORAGE_ROOT,
        b256!("f4984a11f61a2921456141df88de6e1a710d28681b91af794c5a721e47839cd7"),
    ];
    assert_eq!(trie_nodes(HEAD_ROOT, vec![set], 5000).unwrap(), want);
}

/// Not a geth case: the sanity of the fixture itself, the test account as the dump has it.
#[test]
fn fixture_matches_the_dump() {
    let a: TrieAccount = fixture().db.account(&STORAGE_ACCOUNT).unwrap().unwrap();
    assert_eq!(a.storage_root, STORAGE_ROOT);
    assert_eq!(a.nonce, 1);
    assert_eq!(a.balance, U256::from(1));
}
