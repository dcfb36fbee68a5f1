#![allow(clippy::unwrap_used)]

use super::*;
use crate::tasks::Attempts;

fn unit(owner: Option<B256>, prefix: &[u8], leaf: bool) -> Unit {
    let prefix = Nibbles::from_nibbles(prefix);
    Unit { owner, prefix, hash: B256::ZERO, leaf, attempts: Attempts::default(), home: None }
}

fn leaf(first_byte: u8) -> AccountLeaf {
    let mut hashed_address = B256::repeat_byte(0x11);
    hashed_address.0[0] = first_byte;
    AccountLeaf {
        hashed_address,
        nonce: 1,
        balance: U256::from(1u64),
        storage_root: EMPTY_ROOT_HASH,
        code_hash: B256::ZERO,
        storage: AccountStorage::Inline(Vec::new()),
    }
}

fn chunk(content: ChunkContent<AccountLeaf>) -> AccountPiece {
    AccountPiece { head_number: 9, content }
}

#[test]
fn leaves_in_order_under_the_prefix_are_imported() {
    let verdict = check_chunk(
        &unit(None, &[1], false),
        chunk(ChunkContent::Items(vec![leaf(0x10), leaf(0x12)])),
    );
    let ChunkVerdict::Import { leaves: Leaves::Accounts { accounts, large }, head_number: 9 } =
        verdict
    else {
        panic!("{verdict:?}")
    };
    assert_eq!(accounts.len(), 2);
    assert!(large.is_empty());
    // A large storage's announced slot count comes along as a sizing hint.
    let mut big = leaf(0x13);
    big.storage = AccountStorage::Large { slot_count: 5000 };
    let verdict = check_chunk(&unit(None, &[1], false), chunk(ChunkContent::Items(vec![big])));
    let ChunkVerdict::Import { leaves: Leaves::Accounts { large, .. }, .. } = verdict else {
        panic!("{verdict:?}")
    };
    assert_eq!(large, vec![(leaf(0x13).hashed_address, 5000)]);
}

#[test]
fn leaves_out_of_order_or_outside_the_prefix_ban_their_server() {
    let malformed = ChunkVerdict::Refused(Verdict::Invalid("malformed chunk"));
    let u = unit(None, &[1], false);
    assert_eq!(
        check_chunk(&u, chunk(ChunkContent::Items(vec![leaf(0x12), leaf(0x10)]))),
        malformed
    );
    assert_eq!(check_chunk(&u, chunk(ChunkContent::Items(vec![leaf(0x20)]))), malformed);
}

/// "Too large" comes with the head it was read at, for a unit of many leaves as for a single
/// leaf: whether the latter is a lie depends on that head against the pivot (the syncer judges
/// it, `hostile.rs::too_large_for_a_single_leaf_*`).
#[test]
fn too_large_is_a_split_read_at_the_pieces_head() {
    for leaf in [false, true] {
        assert_eq!(
            check_chunk(&unit(None, &[1], leaf), chunk(ChunkContent::TooLarge)),
            ChunkVerdict::Split { head_number: 9 }
        );
    }
    assert_eq!(
        check_chunk(&unit(None, &[1], false), chunk(ChunkContent::Items(Vec::new()))),
        ChunkVerdict::Refused(Verdict::Empty)
    );
}

#[test]
fn storage_slots_must_be_sorted_and_non_zero_and_answer_a_storage_unit() {
    let owner = B256::repeat_byte(3);
    let slot =
        |b: u8, v: u64| StorageSlot { hashed_slot: B256::repeat_byte(b), value: U256::from(v) };
    let piece = |slots| StoragePiece { head_number: 1, content: ChunkContent::Items(slots) };
    let u = unit(Some(owner), &[], false);
    let ok = check_piece(&u, owner, piece(vec![slot(1, 1), slot(2, 1)]));
    assert!(matches!(ok, ChunkVerdict::Import { leaves: Leaves::Slots { .. }, .. }), "{ok:?}");
    let zero = check_piece(&u, owner, piece(vec![slot(1, 0)]));
    assert_eq!(zero, ChunkVerdict::Refused(Verdict::Invalid("malformed storage chunk")));
    let unsorted = check_piece(&u, owner, piece(vec![slot(2, 1), slot(1, 1)]));
    assert_eq!(unsorted, ChunkVerdict::Refused(Verdict::Invalid("malformed storage chunk")));
    // Outside the unit's prefix.
    let outside = check_piece(&unit(Some(owner), &[0xf], false), owner, piece(vec![slot(1, 1)]));
    assert_eq!(outside, ChunkVerdict::Refused(Verdict::Invalid("malformed storage chunk")));
    let large = StoragePiece { head_number: 1, content: ChunkContent::TooLarge };
    assert_eq!(check_piece(&u, owner, large), ChunkVerdict::Split { head_number: 1 });
    assert_eq!(check_piece(&u, owner, piece(Vec::new())), ChunkVerdict::Refused(Verdict::Empty));
}

#[test]
fn a_differing_chunk_is_a_lie_at_the_pivot_head_or_far_from_its_announcement() {
    let pivot = ChainHead { number: 10, hash: B256::repeat_byte(1), state_root: B256::ZERO };
    let at =
        |number, hash| ChainHead { number, hash: B256::repeat_byte(hash), state_root: B256::ZERO };
    // (the head the piece claims, the head announced when asked, the newest announced, a lie,
    // case)
    let cases = [
        (10, at(10, 1), at(10, 1), true, "junk at the pivot head"),
        (10, at(10, 2), at(10, 2), false, "a sibling at the pivot's height"),
        (20, at(12, 2), at(12, 2), true, "a claim far from the announcement"),
        (13, at(12, 2), at(12, 2), false, "stale, within the slack"),
        // The server moved on while the answer waited: a claim of a head it announced since
        // the request stands; one far before the request or past its newest announcement does
        // not.
        (12, at(12, 2), at(17, 2), false, "read before it moved on"),
        // A cached piece may be up to MAX_PIECE_AGE_BLOCKS older than the head when asked.
        (30, at(48, 2), at(48, 2), false, "a cached piece, 18 back"),
        (29, at(48, 2), at(48, 2), true, "older than any cache"),
        (0, at(12, 2), at(17, 2), false, "from a cache, near genesis"),
        (21, at(12, 2), at(17, 2), true, "past its newest head"),
        (19, at(12, 2), at(17, 2), false, "within the slack of it"),
        // A sibling server that reorged onto the pivot's chain while its answer waited read it
        // on the sibling: not junk.
        (10, at(10, 2), at(10, 1), false, "a sibling when asked"),
        (10, at(10, 2), at(11, 1), false, "and one block on"),
    ];
    for (claim, asked_at, announced, lie, case) in cases {
        let judged = judge_mismatch(claim, asked_at, announced, &pivot);
        assert_eq!(judged.is_some(), lie, "{case}: {judged:?}");
    }
}

#[test]
fn a_verified_accounts_storage_is_complete_fetched_or_a_lie() {
    let account = |storage_root| TrieAccount { storage_root, ..Default::default() };
    let root = B256::repeat_byte(5);
    assert_eq!(check_account(&account(root), Some(root)), StorageCheck::Complete);
    assert_eq!(check_account(&account(root), None), StorageCheck::Fetch);
    assert!(matches!(check_account(&account(root), Some(B256::ZERO)), StorageCheck::Lie(_)));
    assert!(matches!(check_account(&account(EMPTY_ROOT_HASH), None), StorageCheck::Lie(_)));
}

#[test]
fn only_accounts_with_a_code_or_storage_to_fetch_leave_work() {
    let root = B256::repeat_byte(5);
    let plain = TrieAccount { storage_root: root, ..Default::default() };
    assert!(!leaves_work(&plain, Some(root)), "no code, storage complete inline");
    assert!(!leaves_work(&TrieAccount::default(), Some(EMPTY_ROOT_HASH)), "an empty account");
    let contract = TrieAccount { code_hash: B256::repeat_byte(7), ..plain };
    assert!(leaves_work(&contract, Some(root)), "a code to fetch");
    assert!(leaves_work(&plain, None), "a large storage");
    assert!(leaves_work(&plain, Some(B256::ZERO)), "a lie");
}

#[test]
fn under_reads_only_the_nibbles_of_the_prefix() {
    let key = B256::from(U256::from_be_bytes([0x5a; 32]) ^ U256::from(0x1234_5678u64));
    let whole = Nibbles::unpack(key);
    for len in 0..=64 {
        let prefix = whole.slice(..len);
        assert!(under(&prefix, &key), "{len} nibbles of the key itself");
        if len > 0 {
            // The prefix differs in its last nibble only, at odd and even lengths alike.
            let mut other = prefix;
            other.set_at(len - 1, (prefix.get_unchecked(len - 1) + 1) & 0xf);
            assert!(!under(&other, &key), "{len} nibbles, the last one off");
        }
    }
}
