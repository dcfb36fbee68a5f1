//! The daemon's node in-process: built from a configuration file's text, driven by a shutdown
//! future, synced from a loopback server, stopped in order.
#![allow(clippy::unwrap_used)] // tests fail loudly on bad fixtures

use std::{path::Path, sync::Arc, time::Duration};

use leafsync_leafdb::{DbOptions, GenParams, LeafDb, LeafDbConfig};
use leafsync_p2p::chain::ChainSpec;

use super::{DaemonPhase, NodeBuilder, Start};
use crate::config::{Config, FileConfig};

/// Bound on every wait in these tests.
const WAIT: Duration = Duration::from_secs(60);

fn open(path: &Path) -> Arc<LeafDb> {
    std::fs::create_dir_all(path).unwrap();
    Arc::new(LeafDb::open(path, &DbOptions::default(), LeafDbConfig::default()).unwrap())
}

/// A dev-chain daemon config with its datadir in `dir`, on free loopback ports.
fn daemon_config(dir: &Path) -> Config {
    let text = format!(
        r#"
datadir = {datadir:?}
chain = "dev"
genesis_hash = "0x1111111111111111111111111111111111111111111111111111111111111111"

[p2p]
listen_ip = "127.0.0.1"
port = 0
discovery = false

[admin]
listen = "127.0.0.1:0"

[sync]
progress_bar = false
"#,
        datadir = dir.to_str().unwrap()
    );
    let file = FileConfig::parse(Path::new("test.toml"), &text).unwrap();
    Config::validate(file, "test.toml").unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_daemon_syncs_from_a_loopback_server_then_serves_and_stops_on_its_future() {
    let dir = tempfile::tempdir().unwrap();
    let server_db = open(&dir.path().join("server"));
    let generated = server_db.generate(GenParams { accounts: 500, seed: 5 }).unwrap();
    let config = daemon_config(&dir.path().join("client"));
    let chain: ChainSpec = config.chain.clone();
    let server = NodeBuilder::loopback(server_db, chain).start().await.unwrap();
    assert_eq!(server.start_mode(), Start::Serve);
    let record = server.network().local_enode();
    let (server_stop, server_stopped) = tokio::sync::oneshot::channel::<()>();
    let server_task = tokio::spawn(server.run(async {
        let _ = server_stopped.await;
    }));

    let client_db = open(&dir.path().join("client"));
    let key = secp256k1::SecretKey::new(&mut rand::rng());
    let mut config = config;
    config.network.static_peers = vec![record];
    let node = NodeBuilder::from_config(&config, client_db.clone(), key).start().await.unwrap();
    assert_eq!(node.start_mode(), Start::SyncFromPeers);
    assert!(node.admin_addr().is_some());
    let mut phase = node.phase();
    assert_eq!(*phase.borrow(), DaemonPhase::Syncing);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let client_task = tokio::spawn(node.run(async {
        let _ = stopped.await;
    }));
    tokio::time::timeout(WAIT, phase.wait_for(|p| *p == DaemonPhase::Serving))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(client_db.account_root().unwrap(), generated.root);

    stop.send(()).unwrap();
    tokio::time::timeout(WAIT, client_task).await.unwrap().unwrap().unwrap();
    server_stop.send(()).unwrap();
    tokio::time::timeout(WAIT, server_task).await.unwrap().unwrap().unwrap();
    assert_eq!(Arc::strong_count(&client_db), 1, "the node let go of its leafdb");
}

/// A leafdb with a head and a sync's progress record holds a repair cut short: with an
/// execution client to take the pivot from, the node finishes it before following; without
/// one (no blocks, so no repair), or without a record, it serves.
#[test]
fn a_head_beside_a_progress_record_is_a_repair_to_finish() {
    let dir = tempfile::tempdir().unwrap();
    let head = leafsync_leafdb::BlockHeader { number: 7, ..Default::default() };
    let chain = ChainSpec::preset("dev").unwrap();
    let mut builder = NodeBuilder::loopback(open(dir.path()), chain);
    assert_eq!(builder.start_mode(Some(&head), true), Start::Serve, "no execution client");
    builder.el.rpc = Some("ws://127.0.0.1:8546".into());
    assert_eq!(builder.start_mode(Some(&head), true), Start::Repair);
    assert_eq!(builder.start_mode(Some(&head), false), Start::Serve);
    assert_eq!(builder.start_mode(None, true), Start::SyncFromPeers, "a first sync resumes");
}

/// A follower task that dies without an answer (a panic) leaves a node that no longer follows
/// the chain: `run` ends with an error, so the process exits non-zero and a supervisor
/// (`Restart=on-failure`) starts it again; before, it ended with `Ok` and exit status 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_that_panics_ends_the_run_with_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(&dir.path().join("db"));
    db.generate(GenParams { accounts: 10, seed: 1 }).unwrap();
    let chain = daemon_config(&dir.path().join("db")).chain;
    let mut node = NodeBuilder::loopback(db, chain).start().await.unwrap();
    let task = tokio::spawn(async { panic!("a bug in the follower") });
    node.follower = Some((Arc::new(leafsync_ingest::IngestStats::default()), task));
    let ended = tokio::time::timeout(WAIT, node.run(std::future::pending())).await.unwrap();
    let error = ended.unwrap_err();
    assert!(
        matches!(error, crate::error::CliError::FollowerFailed(_)),
        "{error}: the run must fail"
    );
}

/// A repair cut short (a progress record over a head) finishes only at the execution client's
/// head. Without `el.rpc` the node refuses to start, naming the key, rather than serving tables
/// that hold no account root (nothing, for good, without a word).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repair_cut_short_without_an_execution_client_is_refused_naming_el_rpc() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(&dir.path().join("db"));
    db.generate(GenParams { accounts: 10, seed: 1 }).unwrap();
    db.put_sync_progress(&[2, 0xff, 0x01]).unwrap();
    let chain = daemon_config(&dir.path().join("db")).chain;
    let error = NodeBuilder::loopback(db, chain).start().await.err().expect("refused");
    let text = error.to_string();
    assert!(text.contains("el.rpc") && text.contains("repair cut short"), "{text}");
}

/// The public chain's default snap/1 source serves a sync only: a node that starts with a state
/// keeps eth/69 off (as before the default) unless `sync.sources` lists "snap".
#[test]
fn snap_peers_by_default_only_for_a_sync() {
    let parse = |extra: &str| {
        let text = format!("chain = \"sepolia\"\n[el]\nrpc = \"ws://127.0.0.1:8546\"\n{extra}");
        Config::validate(FileConfig::parse(Path::new("t.toml"), &text).unwrap(), "t.toml").unwrap()
    };
    let defaulted = parse("").sync;
    assert!(defaulted.sources.snap);
    assert!(super::sources_at_start(&defaulted, Start::SyncFromPeers).snap);
    assert!(super::sources_at_start(&defaulted, Start::Repair).snap);
    assert!(!super::sources_at_start(&defaulted, Start::Serve).snap);
    let listed = parse("[sync]\nsources = [\"leaf\", \"snap\"]\n").sync;
    assert!(super::sources_at_start(&listed, Start::Serve).snap, "listed: kept");
}
