//! Crash safety: a child process applying blocks is killed (SIGKILL) at random moments; every
//! reopen finds the state of a whole block — the last one it reported or the next — with flat
//! tables, tries and head agreeing, and the root equal to a reference that applied the same
//! blocks without interruption.

#![allow(clippy::unwrap_used)] // tests fail loudly on bad fixtures

mod common;

use std::time::Duration;

use alloy_primitives::{Address, B256, U256, keccak256};
use leafsync_leafdb::{
    AccountChange, AccountUpdate, BlockDiff, DbOptions, EMPTY_CODE_HASH, LeafDb, LeafDbConfig,
    test_utils::ChildTest,
};

const CHILD_ENV: &str = "LEAFSYNC_CRASH_TEST_DIR";
const CODES_CHILD_ENV: &str = "LEAFSYNC_CRASH_CODES_TEST_DIR";
/// Accounts touched per block: large enough that a block takes tens of milliseconds, so most
/// kills land inside `apply_block`.
const ACCOUNTS_PER_BLOCK: u64 = 3_000;
const ADDRESS_SPACE: u64 = 20_000;

/// Block `n`'s diff depends only on `n`, so the child, its restarts and the reference agree.
fn diff_of(n: u64) -> BlockDiff {
    let mut d = BlockDiff::default();
    for j in 0..ACCOUNTS_PER_BLOCK {
        let a = (n * 7_919 + j * 13) % ADDRESS_SPACE;
        let address = Address::left_padding_from(&a.to_be_bytes());
        if (a + n).is_multiple_of(17) {
            d.accounts.insert(address, AccountChange::Deleted);
            continue;
        }
        let mut u = AccountUpdate {
            nonce: n,
            balance: U256::from(n * 1_000 + j),
            code_hash: EMPTY_CODE_HASH,
            ..Default::default()
        };
        if a.is_multiple_of(5) {
            for s in 0..8u64 {
                let value =
                    if (s + n).is_multiple_of(6) { U256::ZERO } else { U256::from(n + s + 1) };
                u.storage.insert(B256::left_padding_from(&(s * 31 + n % 3).to_be_bytes()), value);
            }
        }
        d.accounts.insert(address, AccountChange::Updated(u));
    }
    d
}

fn open(dir: &std::path::Path) -> LeafDb {
    LeafDb::open(dir, &DbOptions::default().block_cache_bytes(16 << 20), LeafDbConfig::default())
        .unwrap()
}

/// A child's database, in the directory its parent named in `env`; `None` when this run is no
/// child's (the child tests are run by their parent tests only).
fn child_db(env: &str) -> Option<LeafDb> {
    if !ChildTest::is_child() {
        return None;
    }
    let dir = std::env::var(env).expect("child needs its directory");
    Some(open(std::path::Path::new(&dir)))
}

/// The child: applies blocks from the head on, printing each number after it is committed.
#[test]
#[ignore = "run by killed_mid_block_reopens_at_a_block_boundary as a child process"]
fn crash_child_writer() {
    let Some(db) = child_db(CHILD_ENV) else { return }; // run by its parent test only
    let mut n = db.head().unwrap().map_or(0, |h| h.number);
    loop {
        n += 1;
        db.apply_block(&common::header(n, B256::ZERO), &diff_of(n)).unwrap();
        println!("applied {n}");
    }
}

#[test]
fn killed_mid_block_reopens_at_a_block_boundary() {
    let dir = tempfile::tempdir().unwrap();
    let reference = LeafDb::in_memory();
    let mut reference_head = 0;
    let mut rng = common::Rng::new(0x5eed);
    for round in 0..6 {
        let child =
            ChildTest::spawn("crash_child_writer", [(CHILD_ENV, dir.path().as_os_str())]).unwrap();
        let applied = |line: &str| line.strip_prefix("applied ")?.trim().parse::<u64>().ok();
        // Let it commit at least two blocks, then kill it at a random moment. The child spends
        // nearly all its time inside `apply_block` (building a diff is cheap), so the kill
        // almost always lands in the middle of a block's work.
        let reported = child.wait_for(Duration::from_secs(120), |l| applied(l).filter(|n| *n >= 2));
        assert!(reported.is_some(), "round {round}: child made no progress");
        std::thread::sleep(Duration::from_millis(rng.below(120)));
        let rest = child.kill().unwrap(); // SIGKILL
        let reported = rest.iter().filter_map(|l| applied(l)).fold(reported.unwrap_or(0), u64::max);
        let db = open(dir.path());
        let head = db.head().unwrap().unwrap().number;
        assert!(
            head == reported || head == reported + 1,
            "round {round}: head {head} but the child last reported {reported}"
        );
        while reference_head < head {
            reference_head += 1;
            reference
                .apply_block(&common::header(reference_head, B256::ZERO), &diff_of(reference_head))
                .unwrap();
        }
        assert_eq!(db.account_root().unwrap(), reference.account_root().unwrap(), "round {round}");
        let report = db.verify().unwrap();
        assert_eq!(report.computed_root, report.stored_root, "round {round}: {report:?}");
        assert_eq!(
            (report.node_mismatches, report.extra_nodes, report.storage_root_mismatches),
            (0, 0, 0)
        );
        eprintln!("round {round}: killed after block {reported}, reopened at {head}");
    }
}

/// The codes a sync's child writes: 200 of 1 KiB, far below a memtable, so nothing but an
/// explicit flush puts them on disk.
fn synced_codes() -> Vec<(B256, Vec<u8>)> {
    (0..200u32)
        .map(|i| {
            let code: Vec<u8> = i.to_be_bytes().iter().copied().cycle().take(1024).collect();
            (keccak256(&code), code)
        })
        .collect()
}

/// The child: writes codes as a sync does (without the log), records a synced head over the
/// empty state, reports it and waits to be killed.
#[test]
#[ignore = "run by a_recorded_synced_head_keeps_the_codes_written_without_the_log as a child"]
fn crash_child_sync_codes() {
    let Some(db) = child_db(CODES_CHILD_ENV) else { return }; // run by its parent test only
    db.write_codes(synced_codes()).unwrap();
    let head = common::header(1, alloy_trie::EMPTY_ROOT_HASH);
    db.record_synced_head(head).unwrap();
    println!("recorded");
    std::thread::sleep(Duration::from_secs(120));
}

/// `write_codes` skips the log (a table file now; the memtable before): once the head is
/// recorded, a kill -9 must find every code on disk.
#[test]
fn a_recorded_synced_head_keeps_the_codes_written_without_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let child =
        ChildTest::spawn("crash_child_sync_codes", [(CODES_CHILD_ENV, dir.path().as_os_str())])
            .unwrap();
    // libtest may print "test <child> ... " on the same line.
    let recorded =
        child.wait_for(Duration::from_secs(60), |l| l.ends_with("recorded").then_some(()));
    assert!(recorded.is_some(), "child did not record its head");
    child.kill().unwrap(); // SIGKILL
    let db = open(dir.path());
    assert_eq!(db.head().unwrap().map(|h| h.number), Some(1));
    let missing = synced_codes().iter().filter(|(h, _)| db.code(h).unwrap().is_none()).count();
    assert_eq!(missing, 0, "codes lost after the head was recorded");
}
