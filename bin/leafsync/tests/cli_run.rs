//! `leafsync run` as an operator runs it: a process started from a TOML file serves the
//! datadir's state over leaf/1 to a peer on loopback, and SIGTERM shuts it down cleanly.
#![allow(clippy::unwrap_used)] // tests fail loudly on bad fixtures

mod support;

use leafsync_p2p::test_utils::package_dir;
use std::{
    str::FromStr,
    sync::Arc,
    time::{Duration, Instant},
};

use alloy_primitives::B256;
use leafsync::node::NodeBuilder;
use leafsync_leafdb::{DbOptions, LeafDb, LeafDbConfig};
use leafsync_p2p::{
    chain::ChainSpec,
    leaf::{Chunk, ChunkContent, GetChunk, WirePath},
    peers::NodeRecord,
};
use support::{
    GENESIS, WAIT, http, leafsync, line_with, sigterm_and_wait, spawn_daemon, start_daemon,
    status_text,
};

#[test]
fn run_serves_the_datadir_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let datadir = dir.path().join("data");
    let out = leafsync()
        .args(["tool", "gen-state", "--datadir", datadir.to_str().unwrap(), "--accounts", "2000"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let config = dir.path().join("leafsync.toml");
    std::fs::write(
        &config,
        support::daemon_toml(&datadir, &support::dev_chain(GENESIS), None, support::METRICS),
    )
    .unwrap();

    let log = dir.path().join("run.log");
    let (mut child, rx) = spawn_daemon(&config, &log);
    let enode = line_with(&rx, "enode: ");
    let record = NodeRecord::from_str(&enode).unwrap();
    assert!(line_with(&rx, "enr: ").starts_with("none"), "discovery is off");
    let admin = line_with(&rx, "admin: ");
    let metrics = line_with(&rx, "metrics: http://");

    // A peer on the same dev chain fetches the 16 chunks of depth 1: 2,000 accounts in all.
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let client_dir = dir.path().join("client");
    let accounts = runtime.block_on(async move {
        let chain =
            ChainSpec::preset("dev").unwrap().with_genesis_hash(B256::from_str(GENESIS).unwrap());
        std::fs::create_dir_all(&client_dir).unwrap();
        let db = LeafDb::open(&client_dir, &DbOptions::default(), LeafDbConfig::default()).unwrap();
        let node = NodeBuilder::loopback(Arc::new(db), chain)
            .static_peers(vec![record])
            .start()
            .await
            .unwrap();
        node.wait_for_peers(1, WAIT).await.unwrap();
        let client = node.network();
        let mut accounts = 0;
        // All 16 depth-1 chunks in one batch (~20 KB each, far below 2 MiB together).
        let prefixes = (0..16u8).map(|n| WirePath::from_nibbles(&[n]).unwrap()).collect();
        let request = GetChunk { prefixes, max_bytes: 2 << 20 };
        let answer = client.request(record.id, request.into()).await.unwrap();
        let pieces = Chunk::try_from(answer).unwrap().pieces;
        assert_eq!(pieces.len(), 16);
        for (n, piece) in (0..16u8).zip(pieces) {
            match piece.content {
                ChunkContent::Items(leaves) => {
                    assert!(leaves.iter().all(|l| l.hashed_address.0[0] >> 4 == n));
                    accounts += leaves.len();
                }
                ChunkContent::TooLarge => {
                    panic!("a 2,000-account state has no 2 MiB chunk at depth 1")
                }
            }
        }
        node.shutdown().await.unwrap();
        accounts
    });
    assert_eq!(accounts, 2_000);

    // `leafsync status` over the admin JSON-RPC.
    let status = support::status(&admin);
    assert_eq!(status["node"]["chain"], "dev");
    assert_eq!(status["node"]["enode"], enode.as_str());
    assert_eq!(status["sync"]["phase"], "serving");
    assert_eq!(status["sync"]["head"]["number"], 0);
    // One batch of 16 chunks: one request, 16 cached pieces.
    assert!(status["sync"]["served"].as_u64().unwrap() >= 1, "{status}");
    assert!(status["sync"]["cacheMisses"].as_u64().unwrap() >= 16, "{status}");
    assert!(status_text(&admin).contains("phase:   serving"));
    // A bad enode is a JSON-RPC error naming the problem.
    let answer = http(
        admin.strip_prefix("http://").unwrap(),
        "POST / HTTP/1.1",
        r#"{"jsonrpc":"2.0","id":7,"method":"admin_addPeer","params":["enode://zz@1.2.3.4:1"]}"#,
    );
    assert!(answer.contains("-32602") && answer.contains("invalid enode"), "{answer}");
    let answer = http(
        admin.strip_prefix("http://").unwrap(),
        "POST / HTTP/1.1",
        r#"{"jsonrpc":"2.0","id":8,"method":"nope"}"#,
    );
    assert!(answer.contains("-32601"), "{answer}");
    // Prometheus text.
    let scrape = http(metrics.trim_end_matches("/metrics"), "GET /metrics HTTP/1.1", "");
    // Every metric docs/operators.md lists for a serving node, with its type.
    for (name, kind) in [
        ("leafsync_head_number", "gauge"),
        ("leafsync_peers", "gauge"),
        ("leafsync_root_mismatches_total", "counter"),
        ("leafsync_leafdb_read_errors_total", "counter"),
        ("leafsync_repairs_total", "counter"),
        ("leafsync_serve_requests_total", "counter"),
        ("leafsync_serve_internal_errors_total", "counter"),
        ("leafsync_serve_off_chain_total", "counter"),
        ("leafsync_serve_cache_hits_total", "counter"),
        ("leafsync_serve_cache_misses_total", "counter"),
        ("leafsync_serve_cache_bytes", "gauge"),
        ("leafsync_recent_nodes", "gauge"),
        ("leafsync_recent_nodes_bytes", "gauge"),
        ("leafsync_recent_blocks", "gauge"),
        ("leafsync_recent_blocks_dropped_early_total", "counter"),
        ("leafsync_uptime_seconds", "gauge"),
    ] {
        assert!(scrape.contains(&format!("# TYPE {name} {kind}\n")), "{name}: {scrape}");
        assert!(scrape.contains(&format!("# HELP {name} ")), "{name}: {scrape}");
    }
    assert!(!scrape.contains("penalties"), "the serve penalties metric is gone: {scrape}");
    let served: f64 = scrape
        .lines()
        .find_map(|l| l.strip_prefix("leafsync_serve_requests_total "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(served >= 1.0, "{scrape}");

    // SIGTERM: a clean exit, and the datadir verifies afterwards.
    sigterm_and_wait(&mut child);
    let stderr = std::fs::read_to_string(&log).unwrap();
    assert!(stderr.contains("shutting down") && stderr.contains("database closed"), "{stderr}");
    let verify = leafsync()
        .args(["tool", "verify", "--datadir", datadir.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(verify.status.success(), "{}", String::from_utf8_lossy(&verify.stdout));
}

/// A sepolia config with an empty datadir under `dir`, no peers and the peers' pivot allowed, so
/// the daemon waits for peers to sync from; admin on a free loopback port.
fn write_waiting_config(config: &std::path::Path, dir: &std::path::Path) {
    std::fs::write(
        config,
        support::daemon_toml(
            &dir.join("empty"),
            r#"chain = "sepolia""#,
            None,
            "[sync]\nallow_peer_pivot = true",
        ),
    )
    .unwrap();
}

#[test]
fn run_refuses_a_bad_config_and_waits_for_peers_with_an_empty_datadir() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bad.toml");
    std::fs::write(&config, "chain = \"sepolia\"\n[p2p]\nprot = 1\n").unwrap();
    let out = leafsync().args(["run", "--config", config.to_str().unwrap()]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("bad.toml") && stderr.contains("prot"), "{stderr}");

    // An empty datadir with no peers (and the peers' pivot allowed): the node waits to sync,
    // says so, and stops cleanly.
    write_waiting_config(&config, dir.path());
    let (mut child, lines) = spawn_daemon(&config, &dir.path().join("run.log"));
    let admin = line_with(&lines, "admin: ");
    let out = leafsync().args(["status", "--rpc", &admin, "--json"]).output().unwrap();
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["sync"]["phase"], "syncing", "{s}");
    assert!(s["sync"]["head"].is_null(), "{s}");
    sigterm_and_wait(&mut child);
}

#[test]
fn an_empty_node_finds_a_server_through_discv5_and_syncs_its_state() {
    let dir = tempfile::tempdir().unwrap();
    let server_data = dir.path().join("server");
    let out = leafsync()
        .args([
            "tool",
            "gen-state",
            "--datadir",
            server_data.to_str().unwrap(),
            "--accounts",
            "3000",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let root = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let chain = support::dev_chain(GENESIS);
    let server_toml = support::daemon_toml(&server_data, &chain, Some(&[]), "");
    let (mut server, server_lines) = start_daemon(dir.path(), "server", &server_toml);
    let enr = line_with(&server_lines, "enr: ");
    assert!(enr.starts_with("enr:"), "the server runs discovery: {enr}");

    // The client knows nothing but the server's ENR, as a discv5 bootnode.
    let client_data = dir.path().join("client");
    let client_toml = support::daemon_toml(&client_data, &chain, Some(&[enr.as_str()]), "");
    let (mut client, client_lines) = start_daemon(dir.path(), "client", &client_toml);
    let admin = line_with(&client_lines, "admin: ");
    let deadline = Instant::now() + WAIT;
    let status = loop {
        let out = leafsync().args(["status", "--rpc", &admin, "--json"]).output().unwrap();
        if out.status.success() {
            let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            if s["sync"]["phase"] == "serving" && s["sync"]["head"]["stateRoot"] == root.as_str() {
                break s;
            }
        }
        assert!(Instant::now() < deadline, "the client did not sync the server's state");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(status["peers"].as_array().map(Vec::len), Some(1), "{status}");
    sigterm_and_wait(&mut client);
    sigterm_and_wait(&mut server);
    let verify = leafsync()
        .args(["tool", "verify", "--datadir", dir.path().join("client").to_str().unwrap()])
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&verify.stdout);
    assert!(verify.status.success() && report.contains(&root), "{report}");
}

/// A daemon started with a low soft file descriptor limit raises it to the hard one, logs both,
/// and sizes RocksDB's open files below it (review finding M8).
#[cfg(target_os = "linux")]
#[test]
fn run_raises_its_soft_file_descriptor_limit() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("leafsync.toml");
    write_waiting_config(&config, dir.path());
    let log = dir.path().join("run.log");
    // The soft limit lowered to 512 for this process only (the hard one stays).
    let mut child = support::Killed(
        std::process::Command::new("sh")
            .args(["-c", "ulimit -Sn 512 && exec \"$0\" run --config \"$1\""])
            .arg(env!("CARGO_BIN_EXE_leafsync"))
            .arg(&config)
            .env("RUST_LOG", "info")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::from(std::fs::File::create(&log).unwrap()))
            .spawn()
            .unwrap(),
    );
    let stdout = child.0.stdout.take().unwrap();
    let (tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    line_with(&lines, "admin: ");
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", child.0.id())).unwrap();
    let row = limits.lines().find(|l| l.starts_with("Max open files")).unwrap();
    let fields: Vec<&str> = row.split_whitespace().collect();
    let (soft, hard) = (fields[3], fields[4]);
    let expected = if hard == "unlimited" {
        (1u64 << 20).to_string()
    } else {
        hard.parse::<u64>().unwrap().min(1 << 20).to_string()
    };
    assert_eq!(soft, expected, "{row}");
    let stderr = std::fs::read_to_string(&log).unwrap();
    let line = stderr.lines().find(|l| l.contains("file descriptor limit")).unwrap();
    assert!(line.contains("before=512") && line.contains(&format!("now={expected}")), "{line}");
    sigterm_and_wait(&mut child);
}

/// On a public chain an empty datadir with no trusted pivot (no `el.rpc`, no `sync.checkpoint`)
/// is not synced from whatever head peers announce: the daemon stops at once, before it opens a
/// port, with an error that names the keys that fix it.
#[test]
fn an_empty_datadir_on_a_public_chain_without_a_trusted_pivot_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("leafsync.toml");
    std::fs::write(
        &config,
        format!(
            r#"datadir = {:?}
chain = "sepolia"

[p2p]
listen_ip = "127.0.0.1"
port = 0
discovery = false

[admin]
listen = ""
"#,
            dir.path().join("data").to_str().unwrap()
        ),
    )
    .unwrap();
    let log = dir.path().join("run.log");
    let (mut child, _rx) = spawn_daemon(&config, &log);
    let status = support::wait_for_exit(&mut child, "the daemon waited for peers instead");
    let stderr = std::fs::read_to_string(&log).unwrap();
    assert!(!status.success());
    assert!(stderr.contains("no trusted pivot") && stderr.contains("el.rpc"), "{stderr}");
    assert!(stderr.contains("sync.checkpoint") && stderr.contains("allow_peer_pivot"), "{stderr}");
    assert!(!stderr.contains("network up") && !stderr.contains("enode:"), "{stderr}");
}

/// `check-config` prints the merged configuration as TOML: saved to a file, it checks again to
/// the same configuration (flags included), and a bad file is refused naming the key.
#[test]
fn check_config_prints_toml_that_checks_again_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let documented = package_dir(env!("CARGO_MANIFEST_DIR")).join("../../config/leafsync.toml");
    let documented = documented.to_str().expect("a UTF-8 checkout path");
    let check = |args: &[&str]| {
        let out = leafsync().arg("check-config").args(args).output().unwrap();
        (out.status.success(), String::from_utf8(out.stdout).unwrap(), out.stderr)
    };
    let (ok, first, _) = check(&["--config", documented, "--chain", "sepolia", "--port", "30999"]);
    assert!(ok, "{first}");
    assert!(first.contains("chain = \"sepolia\"") && first.contains("port = 30999"), "{first}");
    assert!(first.contains("# chain: sepolia (network 11155111"), "{first}");
    let printed = dir.path().join("printed.toml");
    std::fs::write(&printed, &first).unwrap();
    let (ok, second, _) = check(&["--config", printed.to_str().unwrap()]);
    assert!(ok, "{second}");
    // Only the first comment line, which names the file, differs.
    assert_eq!(
        first.lines().skip(1).collect::<Vec<_>>(),
        second.lines().skip(1).collect::<Vec<_>>()
    );

    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[serve]\ncache_reuse_blocks = 17\n").unwrap();
    let (ok, _, stderr) = check(&["--config", bad.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&stderr);
    assert!(!ok && stderr.contains("serve.cache_reuse_blocks"), "{stderr}");
}

/// A `RUST_LOG` that is not a tracing filter is named in a warning, not dropped in silence, and
/// a misspelt `log.level` (a bare word, which the filter syntax takes for a target, so that
/// every other log would be off) is refused naming the key.
#[test]
fn a_bad_log_filter_is_named_not_dropped_in_silence() {
    let documented = package_dir(env!("CARGO_MANIFEST_DIR")).join("../../config/leafsync.toml");
    let out = leafsync()
        .args(["check-config", "--config"])
        .arg(&documented)
        .env("RUST_LOG", "info,,[")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("RUST_LOG is not a tracing filter and is ignored"), "{stderr}");

    let out = leafsync()
        .args(["check-config", "--log", "warning", "--config"])
        .arg(&documented)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("`log.level`") && stderr.contains("`warning` is not a level"),
        "{stderr}"
    );
}

/// A command that only prints ends as other command-line tools do when its reader has gone
/// (`leafsync check-config | head`): killed by `SIGPIPE`, not a panic about a broken pipe.
#[test]
fn a_printing_command_whose_reader_is_gone_ends_quietly() {
    use std::os::unix::process::ExitStatusExt;
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = leafsync()
        .args(["check-config", "--config"])
        .arg(package_dir(env!("CARGO_MANIFEST_DIR")).join("../../config/leafsync.toml"))
        .stdout(writer)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.signal(), Some(libc::SIGPIPE), "{:?}: {stderr}", out.status);
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// A datadir whose leafdb holds a state belongs to the chain the daemon first ran it for: a
/// start for another chain is refused, naming the datadir, both genesis hashes and the key.
#[test]
fn a_datadir_of_one_chain_is_refused_for_another() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let gen_state = ["tool", "gen-state", "--datadir", data.to_str().unwrap(), "--accounts", "100"];
    assert!(leafsync().args(gen_state).output().unwrap().status.success());
    let (first, other) = (B256::repeat_byte(1), B256::repeat_byte(2));
    let toml = support::daemon_toml(&data, &support::dev_chain(first), None, "");
    let (mut daemon, lines) = start_daemon(dir.path(), "first", &toml);
    line_with(&lines, "admin: ");
    sigterm_and_wait(&mut daemon);

    let config = dir.path().join("other.toml");
    std::fs::write(&config, support::daemon_toml(&data, &support::dev_chain(other), None, ""))
        .unwrap();
    let out = leafsync().args(["run", "--config", config.to_str().unwrap()]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    for part in [data.display().to_string(), first.to_string(), other.to_string()] {
        assert!(stderr.contains(&part), "{part} not in {stderr}");
    }
    assert!(stderr.contains("another datadir"), "{stderr}");
}
