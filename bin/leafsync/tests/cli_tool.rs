//! The `leafsync tool` commands, run as a user would run them.

#![allow(clippy::unwrap_used)] // tests fail loudly on bad fixtures

use leafsync_p2p::test_utils::package_dir;
use std::{
    path::{Path, PathBuf},
    process::Command,
};

use alloy_primitives::B256;
use leafsync_leafdb::{
    DbOptions, Durability, KvRead, KvStore, LeafDb, LeafDbConfig, Table, WriteBatch,
};

fn leafsync(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_leafsync"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run leafsync");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `leafsync tool init-genesis` of the allocation file `alloc` into `datadir`.
fn init_genesis(datadir: &Path, alloc: &Path) -> (bool, String, String) {
    let datadir = datadir.to_str().unwrap();
    leafsync(&["tool", "init-genesis", "--datadir", datadir, "--alloc", alloc.to_str().unwrap()])
}

fn genesis(net: &str) -> PathBuf {
    package_dir(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/testdata/genesis")
        .join(format!("{net}-genesis-alloc.json"))
}

#[test]
fn state_root_of_public_genesis_allocations() {
    for net in ["mainnet", "sepolia", "holesky", "hoodi"] {
        let path = genesis(net);
        let meta: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let (ok, stdout, stderr) =
            leafsync(&["tool", "state-root", "--alloc", path.to_str().unwrap()]);
        assert!(ok, "{net}: {stderr}");
        assert_eq!(stdout.trim(), meta["stateRoot"].as_str().unwrap(), "{net}");
        assert_eq!(stdout.lines().count(), 1);
    }
}

/// go-ethereum's devp2p test chain's head state, as `geth dump` printed it.
fn snap_headstate() -> PathBuf {
    package_dir(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/testdata/snap-ethtest/headstate.json")
}

const SNAP_HEAD_ROOT: &str = "0x8fcfb02cfca007773bd55bc1c3e50a3c8612a59c87ce057e5957e8bf17c1728b";

#[test]
fn state_root_of_a_geth_dump_reproduces_its_root() {
    let path = snap_headstate();
    let (ok, stdout, stderr) = leafsync(&["tool", "state-root", "--alloc", path.to_str().unwrap()]);
    assert!(ok, "{stderr}");
    assert_eq!(stdout.trim(), SNAP_HEAD_ROOT);
}

#[test]
fn a_dump_whose_accounts_differ_from_its_root_fails_naming_both() {
    let mut dump: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(snap_headstate()).unwrap()).unwrap();
    let first = dump["accounts"].as_object_mut().unwrap().values_mut().next().unwrap();
    let balance: u128 = first["balance"].as_str().unwrap().parse().unwrap();
    first["balance"] = serde_json::Value::String((balance + 1).to_string());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("changed.json");
    std::fs::write(&file, serde_json::to_vec(&dump).unwrap()).unwrap();

    let (ok, stdout, stderr) = leafsync(&["tool", "state-root", "--alloc", file.to_str().unwrap()]);
    assert!(!ok, "a changed balance must not pass");
    let computed = stdout.trim();
    assert_ne!(computed, SNAP_HEAD_ROOT);
    assert!(stderr.contains(SNAP_HEAD_ROOT) && stderr.contains(computed), "{stderr}");

    // init-genesis checks the same before touching the datadir.
    let datadir = dir.path().join("data");
    let (ok, _, stderr) = init_genesis(&datadir, &file);
    assert!(!ok && stderr.contains("mismatch"), "{stderr}");
    assert!(!datadir.join("leafdb").exists(), "nothing written for a wrong dump");
    let (ok, stdout, stderr) = init_genesis(&datadir, &snap_headstate());
    assert!(ok, "{stderr}");
    assert_eq!(stdout.trim(), SNAP_HEAD_ROOT);
}

#[test]
fn malformed_genesis_names_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.json");
    std::fs::write(
        &file,
        r#"{"alloc": {"0x00000000000000000000000000000000000000aa": {"balance": "0xnothex"}}}"#,
    )
    .unwrap();
    let (ok, _, stderr) = leafsync(&["tool", "state-root", "--alloc", file.to_str().unwrap()]);
    assert!(!ok);
    assert!(
        stderr.contains("alloc.0x00000000000000000000000000000000000000aa.balance"),
        "{stderr}"
    );
    std::fs::write(&file, "{not json").unwrap();
    let (ok, _, stderr) = leafsync(&["tool", "state-root", "--alloc", file.to_str().unwrap()]);
    assert!(!ok);
    assert!(stderr.contains("bad.json") && stderr.contains("JSON"), "{stderr}");
}

#[test]
fn gen_state_then_verify_then_detect_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let datadir = dir.path().join("data");
    let d = datadir.to_str().unwrap();
    let (ok, stdout, stderr) =
        leafsync(&["tool", "gen-state", "--datadir", d, "--accounts", "3000", "--seed", "4"]);
    assert!(ok, "{stderr}");
    let root: B256 = stdout.trim().parse().unwrap();
    // Deterministic: the same seed in another datadir gives the same root.
    let other = dir.path().join("other");
    let other = other.to_str().unwrap();
    let (_, stdout2, _) =
        leafsync(&["tool", "gen-state", "--datadir", other, "--accounts", "3000", "--seed", "4"]);
    assert_eq!(stdout2.trim(), root.to_string());
    // A second generation into the same datadir is refused.
    let (ok, _, stderr) = leafsync(&["tool", "gen-state", "--datadir", d, "--accounts", "10"]);
    assert!(!ok && stderr.contains("not empty"), "{stderr}");

    let (ok, stdout, stderr) = leafsync(&["tool", "verify", "--datadir", d]);
    assert!(ok, "{stdout}{stderr}");
    assert!(stdout.contains("OK") && stdout.contains(&root.to_string()), "{stdout}");

    // Corrupt one storage-trie node deep in the trie.
    {
        let db =
            LeafDb::open(&datadir.join("leafdb"), &DbOptions::default(), LeafDbConfig::default())
                .unwrap();
        let (key, mut value) =
            db.store().iter_from(Table::StorageNodes, &[0x80]).next().unwrap().unwrap();
        value[3] ^= 0xff;
        let mut b = WriteBatch::default();
        b.put(Table::StorageNodes, key.to_vec(), value.to_vec());
        db.store().write(b, Durability::Synced).unwrap();
        // While this process holds the database, another is refused, told why, in one line.
        let (ok, _, stderr) = leafsync(&["tool", "verify", "--datadir", d]);
        assert!(!ok && stderr.contains("is in use") && stderr.contains(d), "{stderr}");
        assert!(!stderr.contains("caused by"), "{stderr}");
    }
    let (ok, stdout, _) = leafsync(&["tool", "verify", "--datadir", d]);
    assert!(!ok, "verify must fail on a corrupted node: {stdout}");
    assert!(stdout.contains("MISMATCH") && stdout.contains("differs"), "{stdout}");
}

/// A damaged table file (a bad sector: a few KiB overwritten in the middle of the largest one)
/// fails RocksDB's block checksum; the error names the leafdb and says how to get out, instead
/// of an opaque storage error that a supervisor would restart into for ever, and the exit
/// status is its own (65).
#[test]
fn a_damaged_table_file_is_named_with_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let datadir = dir.path().join("data");
    let d = datadir.to_str().unwrap();
    let (ok, _, stderr) =
        leafsync(&["tool", "gen-state", "--datadir", d, "--accounts", "3000", "--seed", "4"]);
    assert!(ok, "{stderr}");
    let leafdb = datadir.join("leafdb");
    let len = leafsync_leafdb::test_utils::damage_largest_table(&leafdb).unwrap();
    assert!(len > 64 << 10, "the largest table file has only {len} bytes");

    let out = Command::new(env!("CARGO_BIN_EXE_leafsync"))
        .args(["tool", "verify", "--datadir", d])
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // 65 (EX_DATAERR), not 1: a supervisor can be told not to restart into the damage.
    assert_eq!(out.status.code(), Some(65), "verify must fail on a damaged table file: {stderr}");
    let error = stderr.lines().find(|l| l.starts_with("error: ")).unwrap_or_default();
    assert!(error.contains("Corruption"), "{stderr}");
    assert!(error.contains(&format!("the leafdb at {} is damaged", leafdb.display())), "{stderr}");
    assert!(error.contains("move it aside (or delete it) and start again"), "{stderr}");
    assert!(error.contains(&datadir.join("nodekey").display().to_string()), "{stderr}");
}

#[test]
fn verify_refuses_a_missing_datadir() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nothing");
    let (ok, _, stderr) = leafsync(&["tool", "verify", "--datadir", missing.to_str().unwrap()]);
    assert!(!ok);
    assert!(stderr.contains("no leafdb"), "{stderr}");
    assert!(!missing.exists(), "verify must not create a datadir");
}

#[test]
fn a_datadir_that_is_a_file_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    let d = file.to_str().unwrap();
    let (ok, _, stderr) = leafsync(&["tool", "gen-state", "--datadir", d, "--accounts", "10"]);
    assert!(!ok && stderr.contains(d) && stderr.contains("not a directory"), "{stderr}");
}
