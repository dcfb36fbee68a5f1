use alloy_trie::TrieAccount;

use super::{stage::account_prefix_ranges, *};
use crate::kv::rocks::DbOptions;

fn account(i: u64, slots: u64) -> ChunkAccount {
    let mut hashed = keccak256(i.to_be_bytes());
    hashed[0] = 0x30 | (hashed[0] & 0x0f);
    let storage = (0..slots).map(|s| (keccak256([i as u8, s as u8]), U256::from(s + 1)));
    let mut storage: Vec<_> = storage.collect();
    storage.sort();
    ChunkAccount {
        hashed_address: hashed,
        account: TrieAccount { nonce: i, ..Default::default() },
        storage: Some(storage),
    }
}

fn tables<S: KvStore>(db: &LeafDb<S>) -> Vec<(Table, crate::kv::KvPair)> {
    let mut all = Vec::new();
    for table in [Table::Accounts, Table::Storage, Table::AccountNodes, Table::StorageNodes] {
        for item in db.store().iter_from(table, &[]) {
            all.push((table, item.unwrap()));
        }
    }
    all
}

fn chunk(ids: &[(u64, u64)]) -> Vec<ChunkAccount> {
    let mut accounts: Vec<_> = ids.iter().map(|(i, s)| account(*i, *s)).collect();
    accounts.sort_by_key(|a| a.hashed_address);
    accounts
}

/// Importing over an earlier import of the same prefix (a retry with another peer's answer)
/// leaves exactly what importing it alone leaves, also where the ranges were found
/// occupied; and a first import into empty ranges writes no range deletes.
#[test]
fn a_reimported_chunk_replaces_the_earlier_one() {
    let prefix = Nibbles::from_nibbles([3]);
    let first = chunk(&[(1, 3), (2, 0), (3, 40), (4, 1)]);
    let second = chunk(&[(2, 5), (5, 0), (6, 30)]);
    let dir = tempfile::tempdir().unwrap();
    let rocks = LeafDb::open(dir.path(), &DbOptions::default(), Default::default()).unwrap();
    let mem = LeafDb::in_memory();
    let fresh = LeafDb::in_memory();
    fresh.import_account_chunk(&prefix, &second).unwrap();
    mem.import_account_chunk(&prefix, &first).unwrap();
    mem.import_account_chunk(&prefix, &second).unwrap();
    mem.import_account_chunk(&prefix, &second).unwrap();
    assert_eq!(tables(&mem), tables(&fresh));
    rocks.import_account_chunk(&prefix, &first).unwrap();
    rocks.import_account_chunk(&prefix, &second).unwrap();
    assert_eq!(tables(&rocks), tables(&fresh));

    // Storage chunks: a smaller storage under one prefix replaces a larger one.
    let owner = second[2].hashed_address;
    let slots = |n: u64| {
        let mut s: Vec<_> = (0..n).map(|s| (keccak256([9, s as u8]), U256::from(s + 7))).collect();
        s.retain(|(k, _)| k[0] >> 4 == 0xa);
        s.sort();
        s
    };
    let sub = Nibbles::from_nibbles([0xa]);
    fresh.import_storage_chunk(&owner, &sub, &slots(60)).unwrap();
    rocks.import_storage_chunk(&owner, &sub, &slots(200)).unwrap();
    rocks.import_storage_chunk(&owner, &sub, &slots(60)).unwrap();
    assert_eq!(tables(&rocks), tables(&fresh));
}

/// Chunks written together (account chunks with a large storage among their accounts, and
/// that storage's own chunks) leave the tables that writing them one by one leaves, and
/// every file in the bottom level: the account chunk's storage files are cut around the
/// large storage, so its chunks' files overlap none (without the cut they go higher and
/// must be compacted).
#[test]
fn chunks_written_together_land_in_the_bottom_level() {
    let mut first = chunk(&[(1, 3), (2, 0), (3, 40), (4, 1), (7, 2), (8, 5)]);
    let large = first[2].hashed_address;
    first[2].storage = None;
    let second = chunk(&[(11, 2), (12, 0)]);
    let slots: Vec<_> = (0..200u64)
        .map(|s| (keccak256(s.to_be_bytes()), U256::from(s + 1)))
        .collect::<std::collections::BTreeMap<_, _>>()
        .into_iter()
        .collect();
    let under = |nibble: u8| -> Vec<(B256, U256)> {
        slots.iter().filter(|(k, _)| k[0] >> 4 == nibble).copied().collect()
    };
    let (p3, p9) = (Nibbles::from_nibbles([3]), Nibbles::from_nibbles([9]));
    let second: Vec<_> = second
        .into_iter()
        .map(|mut a| {
            a.hashed_address[0] = 0x90 | (a.hashed_address[0] & 0x0f);
            a
        })
        .collect();
    let mut second = second;
    second.sort_by_key(|a| a.hashed_address);

    let dir = tempfile::tempdir().unwrap();
    let rocks = LeafDb::open(dir.path(), &DbOptions::default(), Default::default()).unwrap();
    let mut set = ChunkSet::default();
    let one = set.add(stage_account_chunk(&p3, &first).unwrap());
    let two = set.add(stage_account_chunk(&p9, &second).unwrap());
    rocks.commit_chunks(set).unwrap();
    let mut set = ChunkSet::default();
    for nibble in [0x1, 0xa, 0xf] {
        let prefix = Nibbles::from_nibbles([nibble]);
        set.add(stage_storage_chunk(&large, &prefix, &under(nibble)).unwrap());
    }
    rocks.commit_chunks(set).unwrap();

    let mem = LeafDb::in_memory();
    assert_eq!(mem.import_account_chunk(&p3, &first).unwrap(), one);
    assert_eq!(mem.import_account_chunk(&p9, &second).unwrap(), two);
    for nibble in [0x1, 0xa, 0xf] {
        let prefix = Nibbles::from_nibbles([nibble]);
        mem.import_storage_chunk(&large, &prefix, &under(nibble)).unwrap();
    }
    assert_eq!(tables(&rocks), tables(&mem));
    for table in [Table::Accounts, Table::Storage, Table::AccountNodes, Table::StorageNodes] {
        let levels = rocks.store().files_per_level(table).unwrap();
        let (bottom, above) = levels.split_last().unwrap();
        assert!(*bottom > 0 && above.iter().all(|n| *n == 0), "{table:?}: {levels:?}");
    }
}

/// The accounts of `ids` moved under the one-nibble prefix `nibble`, sorted.
fn chunk_under(nibble: u8, ids: &[(u64, u64)]) -> Vec<ChunkAccount> {
    let mut accounts = chunk(ids);
    for a in &mut accounts {
        a.hashed_address[0] = nibble << 4 | (a.hashed_address[0] & 0x0f);
    }
    accounts.sort_by_key(|a| a.hashed_address);
    accounts
}

/// Neighbouring chunks written together (prefixes 3, 4 and 5, whose key ranges meet) share
/// their table files, and a chunk after a gap (9) gets files of its own. A large storage at
/// either end of a chunk (the last account of 3, the first of 5) is still spanned by no file
/// of theirs: after its own chunks every file is in the bottom level, and the tables are what
/// writing the chunks one by one leaves.
#[test]
fn neighbouring_chunks_share_table_files() {
    let mut three = chunk_under(3, &[(1, 3), (2, 0), (3, 4)]);
    let four = chunk_under(4, &[(4, 2), (5, 6)]);
    let mut five = chunk_under(5, &[(7, 2), (8, 5), (9, 1)]);
    let nine = chunk_under(9, &[(11, 2), (12, 0)]);
    let last = three.len() - 1;
    three[last].storage = None;
    five[0].storage = None;
    let large = [three[last].hashed_address, five[0].hashed_address];
    let slots = |owner: &B256, nibble: u8| -> Vec<(B256, U256)> {
        let mut slots: Vec<_> = (0..40u64)
            .map(|s| keccak256([owner.as_slice(), &s.to_be_bytes()].concat()))
            .filter(|k| k[0] >> 4 == nibble)
            .map(|k| (k, U256::from(7)))
            .collect();
        slots.sort();
        slots
    };
    let accounts = [(3, &three), (4, &four), (5, &five), (9, &nine)];

    let dir = tempfile::tempdir().unwrap();
    let rocks = LeafDb::open(dir.path(), &DbOptions::default(), Default::default()).unwrap();
    let mem = LeafDb::in_memory();
    let mut set = ChunkSet::default();
    for (nibble, chunk) in accounts {
        let prefix = Nibbles::from_nibbles([nibble]);
        set.add(stage_account_chunk(&prefix, chunk).unwrap());
        mem.import_account_chunk(&prefix, chunk).unwrap();
    }
    let files = |table| -> u64 { rocks.store().files_per_level(table).unwrap().iter().sum() };
    let all_files = || {
        files(Table::Accounts)
            + files(Table::Storage)
            + files(Table::AccountNodes)
            + files(Table::StorageNodes)
    };
    let written = rocks.commit_chunks(set).unwrap();
    for table in [Table::Accounts, Table::AccountNodes] {
        assert_eq!(files(table), 2, "{table:?}: one file for 3, 4 and 5, one for 9");
    }
    assert_eq!(written, all_files(), "commit_chunks counts the files it wrote");
    let mut set = ChunkSet::default();
    for owner in &large {
        for nibble in 0..16 {
            let prefix = Nibbles::from_nibbles([nibble]);
            set.add(stage_storage_chunk(owner, &prefix, &slots(owner, nibble)).unwrap());
            mem.import_storage_chunk(owner, &prefix, &slots(owner, nibble)).unwrap();
        }
    }
    let written = written + rocks.commit_chunks(set).unwrap();
    assert_eq!(mem.commit_chunks(ChunkSet::default()).unwrap(), 0, "no files in memory");

    assert_eq!(tables(&rocks), tables(&mem));
    for table in [Table::Accounts, Table::Storage, Table::AccountNodes, Table::StorageNodes] {
        let levels = rocks.store().files_per_level(table).unwrap();
        let (bottom, above) = levels.split_last().unwrap();
        assert!(*bottom > 0 && above.iter().all(|n| *n == 0), "{table:?}: {levels:?}");
    }
    // 3 up to its large storage, that storage (its sixteen chunks meet), 4, the other large
    // storage, the rest of 5, and 9.
    assert_eq!(files(Table::Storage), 6);
    assert_eq!(written, all_files());
}

/// Two chunks of the same prefix in one set (never made by a sync: its units are
/// disjoint) are refused before anything is written, not written over each other.
#[test]
fn overlapping_chunks_in_one_set_are_refused() {
    let prefix = Nibbles::from_nibbles([3]);
    let dir = tempfile::tempdir().unwrap();
    let rocks = LeafDb::open(dir.path(), &DbOptions::default(), Default::default()).unwrap();
    let mut set = ChunkSet::default();
    set.add(stage_account_chunk(&prefix, &chunk(&[(1, 3), (2, 0)])).unwrap());
    set.add(stage_account_chunk(&prefix, &chunk(&[(1, 3), (5, 1)])).unwrap());
    assert!(matches!(rocks.commit_chunks(set), Err(LeafDbError::UnsortedInput { .. })));
    assert!(tables(&rocks).is_empty(), "nothing written");
}

/// The range deletes a commit of an account chunk at `prefix` would write now.
fn clear_account_prefix<S: KvRead>(kv: &S, batch: &mut WriteBatch, prefix: &Nibbles) -> Result<()> {
    account_prefix_ranges(prefix)
        .into_iter()
        .try_for_each(|(t, range)| clear_range(kv, batch, t, range))
}

#[test]
fn a_first_import_writes_no_range_deletes() {
    let db = LeafDb::in_memory();
    let mut batch = WriteBatch::default();
    clear_account_prefix(db.store(), &mut batch, &Nibbles::from_nibbles([3])).unwrap();
    assert!(batch.is_empty());
    db.import_account_chunk(&Nibbles::from_nibbles([3]), &chunk(&[(1, 2)])).unwrap();
    clear_account_prefix(db.store(), &mut batch, &Nibbles::from_nibbles([3])).unwrap();
    // Ranges of the account, its slots and its storage trie's branch: no leaf is stored, so
    // the account-trie range (its one leaf) is empty.
    assert_eq!(batch.len(), 3);
    let mut batch = WriteBatch::default();
    clear_account_prefix(db.store(), &mut batch, &Nibbles::from_nibbles([4])).unwrap();
    assert!(batch.is_empty());
}

/// A sync's codes arrive unsorted and may repeat (two answers with the same code): written as
/// one table file they are sorted and written once, every one readable, in RocksDB and in
/// memory alike; no code writes no file.
#[test]
fn codes_are_written_sorted_once_each() {
    let codes: Vec<(B256, Vec<u8>)> = (0..300u32)
        .map(|i| {
            let code = vec![i as u8; 1 + i as usize * 11];
            (keccak256(&code), code)
        })
        .collect();
    let mut given = codes.clone();
    given.extend(codes[..40].iter().cloned());
    let dir = tempfile::tempdir().unwrap();
    let rocks = LeafDb::open(dir.path(), &DbOptions::default(), Default::default()).unwrap();
    assert_eq!(rocks.write_codes(given.clone()).unwrap(), 1);
    assert_eq!(rocks.write_codes(Vec::new()).unwrap(), 0);
    let mem = LeafDb::in_memory();
    mem.write_codes(given).unwrap();
    for (hash, code) in &codes {
        assert_eq!(rocks.code(hash).unwrap().as_ref(), Some(code));
        assert_eq!(mem.code(hash).unwrap().as_ref(), Some(code));
    }
    assert_eq!(rocks.store().iter_from(Table::Code, &[]).count(), codes.len());
}
