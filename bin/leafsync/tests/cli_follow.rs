//! `leafsync run` following a real execution client: anvil (the pinned npm package) starts, the
//! daemon bootstraps its empty leafdb from anvil's genesis state (`el.genesis`), follows blocks of
//! transfers over WebSocket, reports them through `leafsync status`, and its state root equals
//! anvil's header root. Skipped, with a message, when anvil is not installed.
#![allow(clippy::unwrap_used)] // tests fail loudly on bad fixtures

use std::{
    io::{BufRead, BufReader, Read},
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use alloy_primitives::{Address, keccak256};
use leafsync_ingest::RpcClient;
use serde_json::{Value, json};

/// Bound on every wait in this test.
const WAIT: Duration = Duration::from_secs(60);
/// Blocks mined while the daemon follows.
const BLOCKS: u64 = 12;

fn anvil_binary() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/anvil/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil");
    p.is_file().then_some(p)
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn start_anvil(bin: &Path) -> (Killed, SocketAddr) {
    for _ in 0..3 {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new(bin)
            .args([
                "--host",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--hardfork",
                "cancun",
                "--no-mining",
                "--silent",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut anvil = Killed(child);
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut rpc = RpcClient::new(&format!("http://{addr}")).unwrap();
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            if rpc.block_number().await.is_ok() {
                return (anvil, addr);
            }
            if anvil.0.try_wait().unwrap().is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    panic!("anvil did not start");
}

fn leafsync() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_leafsync"));
    c.env("RUST_LOG", "info");
    c
}

fn status(admin: &str) -> Value {
    let out = leafsync().args(["status", "--rpc", admin, "--json"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_bootstraps_from_genesis_and_follows_anvil() {
    let Some(bin) = anvil_binary() else {
        eprintln!(
            "SKIP: anvil is not installed; run `npm ci --prefix tests/anvil` (scripts/setup.sh does)"
        );
        return;
    };
    let (_anvil, addr) = start_anvil(&bin).await;
    let mut rpc = RpcClient::new(&format!("http://{addr}")).unwrap();
    let dir = tempfile::tempdir().unwrap();

    // anvil's genesis state as a bare alloc file, and its genesis hash for the dev chain.
    let hex: String = rpc.call("anvil_dumpState", json!([])).await.unwrap();
    let gz = alloy_primitives::hex::decode(hex.trim_start_matches("0x")).unwrap();
    let mut text = String::new();
    flate2::read::GzDecoder::new(gz.as_slice()).read_to_string(&mut text).unwrap();
    let dump: Value = serde_json::from_str(&text).unwrap();
    let genesis_file = dir.path().join("genesis.json");
    std::fs::write(&genesis_file, serde_json::to_vec(&dump["accounts"]).unwrap()).unwrap();
    let genesis = rpc.block(0).await.unwrap();

    let config = dir.path().join("leafsync.toml");
    std::fs::write(
        &config,
        format!(
            "datadir = {:?}\nchain = \"dev\"\ngenesis_hash = \"{}\"\n\n[p2p]\nlisten_ip = \"127.0.0.1\"\nport = 0\ndiscovery = false\n\n[el]\nrpc = \"ws://{addr}\"\ngenesis = {:?}\n\n[admin]\nlisten = \"127.0.0.1:0\"\n",
            dir.path().join("data").to_str().unwrap(),
            genesis.hash,
            genesis_file.to_str().unwrap(),
        ),
    )
    .unwrap();
    let mut daemon = Killed(
        leafsync()
            .args(["run", "--config", config.to_str().unwrap()])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let stdout = daemon.0.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let admin = loop {
        match rx.recv_timeout(WAIT) {
            Ok(line) if line.starts_with("admin: ") => break line["admin: ".len()..].to_string(),
            Ok(_) => continue,
            Err(e) => panic!("no admin line from the daemon: {e}"),
        }
    };
    assert_eq!(status(&admin)["sync"]["phase"], "following");

    // Blocks of transfers to fresh addresses (never 0 value: anvil keeps empty accounts).
    let dev: Vec<Address> = rpc.call("eth_accounts", json!([])).await.unwrap();
    for i in 0..BLOCKS {
        for k in 0..3u64 {
            let to = Address::from_slice(&keccak256(format!("follow-{i}-{k}"))[12..]);
            let from = dev[((i + k) % dev.len() as u64) as usize];
            let tx = json!({"from": from, "to": to, "value": format!("{:#x}", 1_000_000_000_000_000u64 + i)});
            let _: Value = rpc.call("eth_sendTransaction", json!([tx])).await.unwrap();
        }
        let _: Value = rpc.call("evm_mine", json!([])).await.unwrap();
    }
    let head = rpc.block(BLOCKS).await.unwrap();
    let deadline = Instant::now() + WAIT;
    let s = loop {
        let s = status(&admin);
        if s["sync"]["head"]["number"] == BLOCKS {
            break s;
        }
        assert!(Instant::now() < deadline, "daemon did not follow to block {BLOCKS}: {s}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(s["sync"]["head"]["stateRoot"], head.state_root.to_string(), "{s}");
    assert_eq!(s["sync"]["head"]["hash"], head.hash.to_string());
    assert_eq!(s["sync"]["follow"]["blocksApplied"], BLOCKS);
    assert_eq!(s["sync"]["follow"]["mismatchingBlocks"], 0);
    assert_eq!(s["sync"]["follow"]["blocksBehind"], 0);

    let status_ok =
        Command::new("kill").args(["-TERM", &daemon.0.id().to_string()]).status().unwrap();
    assert!(status_ok.success());
    let deadline = Instant::now() + WAIT;
    let exit = loop {
        if let Some(s) = daemon.0.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "daemon did not stop after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(exit.success(), "{exit:?}");
}
