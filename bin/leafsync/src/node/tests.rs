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

/// A public chain's node that starts with a state repairs from snap/1 peers too, by default:
/// stopped for more than the 128 blocks its execution client traces back, it can only be
/// repaired, and the first leafsync of a chain has no leaf/1 peer to repair from (it kept
/// eth/69 off and waited for one for good).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_public_chain_node_with_a_state_repairs_from_snap_peers_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let datadir = dir.path().join("data");
    let text = format!(
        "datadir = {datadir:?}\nchain = \"sepolia\"\n[el]\nrpc = \"ws://127.0.0.1:9\"\n\
         [p2p]\nlisten_ip = \"127.0.0.1\"\nport = 0\ndiscovery = false\n\
         [admin]\nlisten = \"\"\n"
    );
    let config =
        Config::validate(FileConfig::parse(Path::new("t.toml"), &text).unwrap(), "t.toml").unwrap();
    let db = open(&datadir.join("leafdb"));
    db.generate(GenParams { accounts: 10, seed: 1 }).unwrap();
    let node = NodeBuilder::from_config(&config, db, secp256k1::SecretKey::new(&mut rand::rng()))
        .start()
        .await
        .unwrap();
    assert_eq!(node.start_mode(), Start::Serve);
    assert!(node.sync_sources().snap, "repairs take snap/1 peers");
    node.network().shutdown().await;
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
