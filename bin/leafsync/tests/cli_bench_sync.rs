//! `leafsync bench sync` end to end on a small state: servers in a child process, a client
//! syncing over loopback RLPx behind emulated links, leaf sync and heal-only, the JSON line.
#![allow(clippy::unwrap_used)] // tests fail loudly

use std::process::Command;

use serde_json::Value;

const RUN_KEYS: [&str; 21] = [
    "wall_s",
    "cpu_s",
    "excluded_cpu_s",
    "cpu_system_s",
    "bytes_down",
    "bytes_up",
    "snappy_bytes_down",
    "wire_s",
    "wall_over_wire",
    "requests",
    "sync_requests",
    "healed_nodes",
    "root_ok",
    "timeouts",
    "clients",
    "client_wall_s",
    "phases",
    "peak_rss_mib",
    "peak_rss_reset",
    "servers",
    "apply_after_sync",
];

fn bench_sync(dir: &std::path::Path, extra: &[&str]) -> (String, Value) {
    bench_sync_at(dir, "0", extra)
}

/// `bench sync` with links of `mbit` Mbit/s.
fn bench_sync_at(dir: &std::path::Path, mbit: &str, extra: &[&str]) -> (String, Value) {
    let out = Command::new(env!("CARGO_BIN_EXE_leafsync"))
        .args(["bench", "sync", "--accounts", "2000", "--servers", "2", "--rtt-ms", "5"])
        .args(["--mbit", mbit, "--json", "--workdir", dir.to_str().unwrap()])
        .args(extra)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let last = stdout.lines().last().unwrap_or_default();
    let json: Value = serde_json::from_str(last).unwrap_or_else(|e| panic!("{e}: {last}"));
    // The benchmark cleans up after itself (its databases and the servers' state).
    assert_eq!(std::fs::read_dir(dir).unwrap().count(), 0);
    (stdout, json)
}

fn run<'a>(json: &'a Value, name: &str) -> &'a Value {
    let run = &json[name];
    for key in RUN_KEYS {
        assert!(run.get(key).is_some(), "{name} lacks {key}: {json}");
    }
    let wall = run["wall_s"].as_f64().unwrap();
    assert!(wall > 0.0, "{json}");
    // CPU of the timed window only: no more than every core for the whole window (plus clock
    // ticks of rounding, one per thread measured).
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    assert!(run["cpu_s"].as_f64().unwrap() <= wall * cores + 0.1, "{json}");
    // The kernel's part of the process's CPU, before the bench's own threads are left out.
    let system = run["cpu_system_s"].as_f64().unwrap();
    let process = run["cpu_s"].as_f64().unwrap() + run["excluded_cpu_s"].as_f64().unwrap();
    assert!((0.0..=process + 0.02).contains(&system), "{json}");
    assert_eq!(run["root_ok"], Value::Bool(true), "{json}");
    assert!(run["requests"].as_u64().unwrap() > 0, "{json}");
    // Units asked of a peer other than their rendezvous home.
    assert!(run["chunks_stolen"].as_u64().is_some(), "{json}");
    run
}

#[test]
fn leaf_sync_beats_heal_only_over_emulated_links() {
    let dir = tempfile::tempdir().unwrap();
    let (stdout, json) = bench_sync(dir.path(), &[]);
    assert!(stdout.contains("leafsync bench sync: 2000 accounts"), "{stdout}");
    assert_eq!(json["accounts"], 2000);
    assert_eq!(json["servers"], 2);
    assert_eq!(json["rtt_ms"], 5);
    assert_eq!(json["mbit"], 0);
    assert_eq!(json["chunk_target_bytes"], 1024 * 1024);
    assert_eq!(json["full_final_check"], false);
    let raw = json["raw_leaf_bytes"].as_u64().unwrap();
    // 2,000 accounts of at least 32 + 70 bytes each, plus their slots.
    assert!(raw > 2000 * 102, "{json}");
    assert!(json["floor_cpu_s"].as_f64().is_some(), "{json}");
    assert!(matches!(json["keccak_lanes"].as_u64(), Some(1 | 8)), "{json}");

    let leaf = run(&json, "leaf");
    let heal = run(&json, "heal_only");
    let get = |run: &Value, key: &str| run[key].as_u64().unwrap();
    // Leaf sync downloads the leaves (and codes) once, in a few requests; heal-only fetches every
    // node, hundreds of nodes per request, and asks for each by an (owner, path, hash) of 35–70 bytes.
    assert!(get(leaf, "requests") < get(heal, "requests"), "{json}");
    assert!(get(leaf, "bytes_down") >= raw, "{json}");
    assert!(get(leaf, "bytes_down") < get(heal, "bytes_down"), "{json}");
    assert!(get(heal, "bytes_down") > raw, "{json}");
    assert!(get(leaf, "bytes_up") * 10 < get(heal, "bytes_up"), "{json}");
    assert!(get(heal, "bytes_up") > get(heal, "healed_nodes") * 35, "{json}");
    assert_eq!(get(leaf, "healed_nodes"), 0, "{json}");
    // A clean leaf sync ends on its root check; heal-only scans and hashes the flat state.
    assert_eq!(get(leaf, "final_rehashed"), 0, "{json}");
    assert!(get(heal, "final_rehashed") > 2000, "{json}");
    assert!(get(heal, "healed_nodes") > 2000, "{json}");
}

#[test]
fn skip_heal_only_reports_null() {
    let dir = tempfile::tempdir().unwrap();
    let blocks = ["--apply-blocks", "3", "--block-accounts", "40", "--block-slots", "100"];
    let args = [&["--skip-heal-only", "--full-final-check", "--repair-blocks", "1"][..], &blocks];
    let args = args.concat();
    let (stdout, json) = bench_sync(dir.path(), &args);
    run(&json, "leaf");
    // Asked for, the scan ends even a clean sync: every account (and slot) hashed again.
    assert_eq!(json["full_final_check"], true);
    assert!(json["leaf"]["final_rehashed"].as_u64().unwrap() > 2000, "{json}");
    assert_eq!(json["heal_only"], Value::Null, "{stdout}");
    assert_eq!(json["snap"], Value::Null, "{stdout}");
    // Unlimited bandwidth: no wire time.
    assert_eq!(json["leaf"]["wire_s"], Value::Null, "{stdout}");
    let leaf = &json["leaf"];
    // Each kind of a leaf sync's work took place within the sync (2,000 accounts are one chunk:
    // no skeleton); nothing was healed.
    let wall = leaf["wall_s"].as_f64().unwrap();
    for kind in ["chunks", "codes", "finish"] {
        let span = &leaf["phases"][kind];
        let (first, last) = (span["first_s"].as_f64().unwrap(), span["last_s"].as_f64().unwrap());
        assert!(0.0 <= first && first <= last && last <= wall, "{kind}: {json}");
    }
    assert_eq!(leaf["phases"]["heal"]["last_s"], Value::Null, "{json}");
    assert!(leaf["peak_rss_mib"].as_u64().unwrap() > 0, "{json}");
    // The servers' process answered every request and says what it cost.
    let servers = &leaf["servers"];
    assert_eq!(servers["served"], leaf["requests"], "{json}");
    assert!(servers["cache_misses"].as_u64().unwrap() > 0, "{json}");
    assert!(servers["cpu_s_per_mb"].as_f64().is_some(), "a number: {json}");
    // Blocks applied to the synced leafdb, opened as the daemon opens its own.
    let applied = &leaf["apply_after_sync"];
    assert_eq!(applied["blocks"], 3, "{json}");
    assert_eq!(
        (&applied["accounts_per_block"], &applied["slots_per_block"]),
        (&40.into(), &100.into())
    );
    let median = applied["median_ms"].as_f64().unwrap();
    assert!(0.0 < median && median <= applied["max_ms"].as_f64().unwrap(), "{json}");
    assert!(applied["max_open_files"].as_i64().unwrap() > 0, "{json}");
    assert!(
        stdout.contains("3 blocks applied to the synced leafdb afterwards: median"),
        "{stdout}"
    );
    // A leafdb one block off the servers' chain, synced back over what it holds: it healed what
    // the block changed and downloaded less than the fresh sync.
    assert_eq!(json["repair_blocks"], 1, "{json}");
    let repair = run(&json, "repair");
    assert!(repair["healed_nodes"].as_u64().unwrap() > 0, "{json}");
    let bytes = |run: &Value| run["bytes_down"].as_u64().unwrap();
    assert!(bytes(repair) < bytes(leaf), "{json}");
    assert!(stdout.contains("\n  repair "), "{stdout}");
}

#[test]
fn two_clients_sync_at_once_from_the_same_servers() {
    let dir = tempfile::tempdir().unwrap();
    let (stdout, json) = bench_sync(dir.path(), &["--skip-heal-only", "--clients", "2"]);
    assert!(stdout.contains("2 client(s)"), "{stdout}");
    let leaf = run(&json, "leaf");
    assert_eq!(leaf["clients"], 2, "{json}");
    assert_eq!(leaf["apply_after_sync"], Value::Null, "no --apply-blocks: {json}");
    assert_eq!(leaf["client_wall_s"].as_array().unwrap().len(), 2, "{json}");
    let servers = &leaf["servers"];
    assert_eq!(servers["served"], leaf["requests"], "{json}");
    let (hits, misses) =
        (servers["cache_hits"].as_u64().unwrap(), servers["cache_misses"].as_u64().unwrap());
    let rate = servers["cache_hit_rate"].as_f64().unwrap();
    assert!((rate - hits as f64 / (hits + misses) as f64).abs() < 1e-9, "{json}");
    // No chunk answered from a cache more often than it was computed for the other client.
    assert!(hits <= misses, "{json}");
}

#[test]
fn snap_source_syncs_the_same_state_through_snap_peer() {
    let dir = tempfile::tempdir().unwrap();
    let (stdout, json) = bench_sync_at(dir.path(), "50", &["--skip-heal-only", "--snap"]);
    assert!(stdout.contains("snap"), "{stdout}");
    let leaf = run(&json, "leaf");
    let snap = run(&json, "snap");
    let get = |run: &Value, key: &str| run[key].as_u64().unwrap();
    let float = |run: &Value, key: &str| run[key].as_f64().unwrap();
    for run in [leaf, snap] {
        // Wire time: the bytes down over 2 links of 50 Mbit/s.
        let wire = get(run, "bytes_down") as f64 * 8.0 / 100e6;
        assert!((float(run, "wire_s") - wire).abs() < 1e-6, "{json}");
        assert!(float(run, "wall_over_wire") > 0.0, "{json}");
        assert!(get(run, "snappy_bytes_down") > 0, "{json}");
        assert!(get(run, "snappy_bytes_down") <= get(run, "bytes_down") + 1024, "{json}");
    }
    // One leaf/1 request is one message; SnapPeer turns a chunk into several snap/1 requests.
    assert_eq!(get(leaf, "requests"), get(leaf, "sync_requests"), "{json}");
    assert!(get(snap, "requests") >= get(snap, "sync_requests"), "{json}");
    // The same state: the same leaves, each encoded once by either protocol (±25%).
    let (l, s) = (get(leaf, "bytes_down") as f64, get(snap, "bytes_down") as f64);
    assert!((s / l - 1.0).abs() < 0.25, "{json}");
    // The snap/1 servers are threads of the client's process: no server process counters.
    assert_eq!(snap["servers"], Value::Null, "{json}");
}
