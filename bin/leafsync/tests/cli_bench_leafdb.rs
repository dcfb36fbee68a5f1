//! `leafsync bench leafdb` end to end on a small state: the bulk import against its floors,
//! blocks applied, the JSON line with the options it ran with.
#![allow(clippy::unwrap_used)] // tests fail loudly

use std::process::{Command, Output};

use serde_json::Value;

fn bench_leafdb(dir: &std::path::Path, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_leafsync"))
        .args(["bench", "leafdb", "--accounts", "3000", "--blocks", "3"])
        .args(["--block-accounts", "50", "--block-slots", "100"])
        .args(["--workdir", dir.to_str().unwrap()])
        .args(extra)
        .output()
        .unwrap()
}

#[test]
fn reports_roots_blocks_and_the_block_cache_it_ran_with() {
    let dir = tempfile::tempdir().unwrap();
    let out = bench_leafdb(dir.path(), &["--block-cache-mib", "8", "--warmup-blocks", "2"]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let last = stdout.lines().last().unwrap_or_default();
    let json: Value = serde_json::from_str(last).unwrap_or_else(|e| panic!("{e}: {last}"));
    assert_eq!(json["roots_agree"], Value::Bool(true), "{json}");
    assert_eq!(json["accounts"], 3000, "{json}");
    let apply = &json["apply_block"];
    assert_eq!(apply["blocks"], 3, "{json}");
    assert_eq!(apply["block_cache_mib"], 8, "{json}");
    assert!(apply["median_ms"].as_f64().unwrap() > 0.0, "{json}");
    // Two blocks of warm-up, then the three timed ones, each once RocksDB was done with the
    // last one's flushes and compactions (the default slot is mainnet's 12 s).
    assert_eq!(apply["warmup_blocks"], 2, "{json}");
    assert_eq!(apply["head_number"], 5, "{json}");
    assert_eq!(apply["slot_ms"], 12_000, "{json}");
    assert_eq!(apply["slots_overrun"], 0, "{json}");
    assert!(apply["background_wait_s"].as_f64().unwrap() < 36.0, "{json}");
    // CPU time of the process across the blocks: something, and for 3 blocks a sum of at
    // least their median.
    let (cpu_median, cpu_total) =
        (apply["cpu_median_ms"].as_f64().unwrap(), apply["cpu_total_s"].as_f64().unwrap());
    assert!(cpu_median > 0.0 && cpu_total * 1000.0 >= cpu_median, "{json}");
    // Applying a block touches memory the process did not have before: some page faults.
    assert!(apply["minor_faults_median"].as_u64().is_some_and(|f| f > 0), "{json}");
    assert!(json["bulk_cpu_s"].as_f64().unwrap() > 0.0, "{json}");
    assert!(matches!(json["keccak_lanes"].as_u64(), Some(1 | 8)), "{json}");
    // The benchmark's database is removed at the end.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn refuses_an_empty_block_cache() {
    let dir = tempfile::tempdir().unwrap();
    let out = bench_leafdb(dir.path(), &["--block-cache-mib", "0"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--block-cache-mib"), "{stderr}");
}
