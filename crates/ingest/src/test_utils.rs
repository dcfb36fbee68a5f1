//! Harnesses for the tests of this crate and of the binary (feature `test-utils`): the pinned
//! anvil binary (tests/anvil at the repository root), one at a time, killed on drop; its
//! workload; a connection-dropping proxy; and the pieces of a fake execution client (HTTP
//! requests read by hand, sealed headers).

#![allow(clippy::unwrap_used)] // harnesses fail loudly on bad fixtures

use std::{
    io::Read,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::Arc,
    time::Duration,
};

use alloy_primitives::{Address, B256, U256, keccak256};
use leafsync_leafdb::{LeafDb, MemStore, test_utils::package_dir};
use serde_json::{Value, json};
use tokio::{
    net::{TcpListener, TcpStream},
    sync::watch,
};

use crate::{IngestStats, RpcClient, RpcHeader};

/// Reads one HTTP/1.1 request from `stream`: its head, then a body of Content-Length bytes;
/// what follows stays in `buf` for the next. Returns the body, `None` once the stream ends.
pub async fn read_http_request(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map_or(0, |v| v.trim().parse().unwrap());
    while buf.len() < head_end + length {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    Some(buf.drain(..head_end + length).skip(head_end).collect())
}

/// A follower running in a task of its own.
pub struct Running {
    /// Its counters.
    pub stats: Arc<IngestStats>,
    /// Set to stop it.
    pub stop: watch::Sender<bool>,
    /// Its task.
    pub task: tokio::task::JoinHandle<Result<(), crate::IngestError>>,
}

impl Running {
    /// Stops the follower and waits (bounded) for its clean end.
    pub async fn stop(self) {
        self.stop.send_replace(true);
        tokio::time::timeout(FOLLOW_TIMEOUT, self.task).await.unwrap().unwrap().unwrap();
    }
}

/// Starts a follower of `url` writing into `db`, polling every [`POLL`], its configuration
/// changed by `configure`.
pub fn spawn_follower<S: leafsync_leafdb::KvStore + 'static>(
    db: &Arc<leafsync_leafdb::LeafDb<S>>,
    url: String,
    configure: impl FnOnce(&mut crate::FollowerConfig),
) -> Running {
    let mut config = crate::FollowerConfig::new(url);
    config.poll_interval = POLL;
    configure(&mut config);
    let follower = crate::Follower::new(Arc::clone(db), config).unwrap();
    let stats = follower.stats();
    let (stop, stopped) = watch::channel(false);
    Running { stats, stop, task: tokio::spawn(follower.run(stopped)) }
}

/// How long anvil may take to answer after being spawned.
pub const ANVIL_START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long the follower may take to reach a block.
pub const FOLLOW_TIMEOUT: Duration = Duration::from_secs(30);
/// Follower poll interval in the tests.
pub const POLL: Duration = Duration::from_millis(20);

/// The test's logs: `RUST_LOG`, else warnings and ingest's info lines, to the test's output.
pub fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,leafsync_ingest=info".into()),
        )
        .try_init();
}

/// The anvil binary of tests/anvil/node_modules. Panics, naming the install command, when it
/// is missing: the test script installs it first, so a missing anvil is an error, not a skip.
pub fn anvil_binary() -> PathBuf {
    let p = package_dir(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/anvil/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil");
    assert!(
        p.is_file(),
        "anvil not found at {}: run `npm ci --prefix tests/anvil` (scripts/setup.sh does)",
        p.display()
    );
    p
}

/// One anvil at a time in a test binary: two tests starting theirs at once could pick the same
/// free port (each binds port 0 and lets it go before anvil binds it) and then share one chain.
static ANVIL_TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The hardfork every test anvil runs: at Prague every block runs EIP-2935's system call, a
/// write no trace shows, so every test that follows anvil follows it.
pub const ANVIL_HARDFORK: &str = "prague";

/// This test's turn ([`ANVIL_TURN`]) and its own anvil, with the test's logs set up
/// ([`init_logs`]).
pub async fn anvil_turn() -> (tokio::sync::MutexGuard<'static, ()>, Anvil) {
    init_logs();
    let turn = ANVIL_TURN.lock().await;
    (turn, Anvil::start(&anvil_binary()).await)
}

/// What a test that follows anvil from its genesis starts with ([`anvil_genesis`]). Bind
/// `turn` too (`turn: _turn`): dropped, it lets the next test start its anvil.
pub struct AnvilGenesis {
    /// This test's turn ([`anvil_turn`]).
    pub turn: tokio::sync::MutexGuard<'static, ()>,
    /// The test's own anvil.
    pub anvil: Anvil,
    /// A client of its JSON-RPC.
    pub rpc: RpcClient,
    /// A scratch directory holding `genesis_file`.
    pub dir: tempfile::TempDir,
    /// anvil's genesis state as an allocation file ([`dump_state_alloc`]).
    pub genesis_file: PathBuf,
    /// An empty in-memory leafdb, for a follower to load `genesis_file` into.
    pub db: Arc<LeafDb<MemStore>>,
}

/// This test's turn and its own anvil, with a client of its RPC, its genesis state written
/// to a scratch directory and an empty leafdb.
pub async fn anvil_genesis() -> AnvilGenesis {
    let (turn, anvil) = anvil_turn().await;
    let mut rpc = anvil.rpc();
    let dir = tempfile::tempdir().unwrap();
    let genesis_file = dump_state_alloc(&mut rpc, dir.path()).await;
    AnvilGenesis { turn, anvil, rpc, dir, genesis_file, db: Arc::new(LeafDb::in_memory()) }
}

/// A running anvil, killed on drop.
pub struct Anvil {
    child: Child,
    /// Its JSON-RPC address (HTTP and WebSocket) on loopback.
    pub addr: SocketAddr,
}

impl Anvil {
    /// Starts the anvil at `bin` on a free loopback port, without mining (blocks are mined on
    /// request), and waits until it answers.
    pub async fn start(bin: &Path) -> Self {
        for _ in 0..3 {
            let port =
                std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            let child = Command::new(bin)
                .args(["--host", "127.0.0.1", "--port", &port.to_string()])
                .args(["--hardfork", ANVIL_HARDFORK, "--no-mining", "--silent"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            let mut anvil = Self { child, addr: SocketAddr::from(([127, 0, 0, 1], port)) };
            let mut rpc = anvil.rpc();
            let deadline = tokio::time::Instant::now() + ANVIL_START_TIMEOUT;
            while tokio::time::Instant::now() < deadline {
                if rpc.block_number().await.is_ok() {
                    return anvil;
                }
                if anvil.child.try_wait().unwrap().is_some() {
                    break; // port taken in between: try another
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        panic!("anvil did not start");
    }

    /// Its HTTP URL.
    pub fn http(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Its WebSocket URL.
    pub fn ws(&self) -> String {
        format!("ws://{}", self.addr)
    }

    /// A client of its JSON-RPC over HTTP.
    pub fn rpc(&self) -> RpcClient {
        RpcClient::new(&self.http()).unwrap()
    }
}

impl Drop for Anvil {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes anvil's current state (`anvil_dumpState`: hex of gzipped JSON) as a bare alloc file,
/// `genesis.json` in `dir`; returns its path.
pub async fn dump_state_alloc(rpc: &mut RpcClient, dir: &Path) -> PathBuf {
    let hex: String = rpc.call("anvil_dumpState", json!([])).await.unwrap();
    let gz = alloy_primitives::hex::decode(hex.trim_start_matches("0x")).unwrap();
    let mut text = String::new();
    flate2::read::GzDecoder::new(gz.as_slice()).read_to_string(&mut text).unwrap();
    let dump: Value = serde_json::from_str(&text).unwrap();
    let accounts = dump["accounts"].as_object().expect("dumpState has accounts");
    assert!(!accounts.is_empty());
    let path = dir.join("genesis.json");
    std::fs::write(&path, serde_json::to_vec(&dump["accounts"]).unwrap()).unwrap();
    path
}

/// A TCP proxy in front of anvil that can be taken down: while down it closes every
/// connection, open or new.
pub struct Proxy {
    /// Where clients connect.
    pub addr: SocketAddr,
    down: Arc<watch::Sender<bool>>,
}

impl Proxy {
    /// A proxy to `upstream`, up.
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = watch::channel(false);
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if *rx.borrow() {
                    continue; // dropped: the client sees the connection closed
                }
                let mut down = rx.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(upstream).await else { return };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = down.wait_for(|d| *d) => {}
                    }
                });
            }
        });
        Self { addr, down: Arc::new(tx) }
    }

    /// Takes the proxy down (every connection closed, new ones refused) or up again.
    pub fn set_down(&self, down: bool) {
        self.down.send_replace(down);
    }

    /// Its HTTP URL.
    pub fn http(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// Waits until the follower has applied block `number`.
pub async fn wait_for_head(stats: &IngestStats, number: u64) {
    let deadline = tokio::time::Instant::now() + FOLLOW_TIMEOUT;
    while stats.head() < number || stats.blocks_applied() == 0 && number > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "follower stuck at {} < {number}",
            stats.head()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Runtime of a contract that stores calldata word 1 at slot calldata word 0:
/// `PUSH1 0x20 CALLDATALOAD PUSH1 0 CALLDATALOAD SSTORE STOP`.
const STORE_RUNTIME: &str = "6020356000355500";
/// Init code: `CODECOPY` the 8-byte runtime from offset 12 and return it; prefixed to it.
const STORE_INIT: &str = "6008600c60003960086000f3";

/// Mines `blocks` blocks of the workload; returns it to mine more.
pub async fn mine_blocks(rpc: &mut RpcClient, blocks: u64) -> Workload {
    let mut workload = Workload::new(rpc).await;
    for _ in 0..blocks {
        workload.mine_block(rpc).await;
    }
    workload
}

/// Drives a workload of several transactions per block against anvil's dev accounts.
pub struct Workload {
    /// anvil's dev accounts, which send the transactions.
    pub dev: Vec<Address>,
    /// The contracts the workload deployed, in order.
    pub contracts: Vec<Address>,
    fresh: Vec<Address>,
    block: u64,
}

impl Workload {
    /// A workload over the dev accounts of the anvil behind `rpc` (at least 8).
    pub async fn new(rpc: &mut RpcClient) -> Self {
        let dev: Vec<Address> = rpc.call("eth_accounts", json!([])).await.unwrap();
        assert!(dev.len() >= 8);
        Self { dev, contracts: Vec::new(), fresh: Vec::new(), block: 0 }
    }

    async fn send(rpc: &mut RpcClient, tx: Value) -> alloy_primitives::B256 {
        rpc.call("eth_sendTransaction", json!([tx])).await.unwrap()
    }

    /// Queues this block's transactions and mines them; returns the new block number.
    pub async fn mine_block(&mut self, rpc: &mut RpcClient) -> u64 {
        let i = self.block;
        self.block += 1;
        let d = |k: u64| self.dev[((i + k) % self.dev.len() as u64) as usize];
        // A transfer to a fresh address (never 0 value: anvil keeps empty accounts).
        let fresh = Address::from_slice(&keccak256(format!("fresh-{i}"))[12..]);
        Self::send(rpc, json!({"from": d(0), "to": fresh, "value": format!("{:#x}", 1_000_000_000_000_000u64 + i)})).await;
        // A transfer between existing dev accounts.
        Self::send(rpc, json!({"from": d(1), "to": d(3), "value": format!("{:#x}", i + 1)})).await;
        // A transfer to an address created earlier.
        if let Some(&old) = self.fresh.get((i as usize * 7) % self.fresh.len().max(1)) {
            Self::send(rpc, json!({"from": d(5), "to": old, "value": "0x3"})).await;
        }
        self.fresh.push(fresh);
        // A deployment every 4th block.
        let mut deploy = None;
        if i.is_multiple_of(4) {
            deploy = Some(
                Self::send(
                    rpc,
                    json!({"from": d(2), "data": format!("0x{STORE_INIT}{STORE_RUNTIME}")}),
                )
                .await,
            );
        }
        // Storage writes (never zero: anvil keeps zero slots), overwriting slots over time.
        for (n, &c) in self.contracts.iter().rev().take(2).enumerate() {
            let slot = U256::from((i + n as u64) % 5);
            let value = U256::from(i * 10 + n as u64 + 1);
            let data = format!("0x{:064x}{:064x}", slot, value);
            Self::send(rpc, json!({"from": d(4 + n as u64), "to": c, "data": data})).await;
        }
        let _: Value = rpc.call("evm_mine", json!([])).await.unwrap();
        if let Some(hash) = deploy {
            let receipt: Value =
                rpc.call("eth_getTransactionReceipt", json!([hash])).await.unwrap();
            let addr: Address = serde_json::from_value(receipt["contractAddress"].clone()).unwrap();
            assert_eq!(receipt["status"], "0x1");
            self.contracts.push(addr);
        }
        rpc.block_number().await.unwrap()
    }
}

/// A Cancun-shaped header (as `eth_getHeaderBy*` answers it) for block `n` with `parent` and
/// `state_root`, its `hash` the one its fields give.
pub fn sealed_header(n: u64, parent: B256, state_root: B256) -> Value {
    let mut json = json!({
        "hash": B256::ZERO, "parentHash": parent,
        "sha3Uncles": B256::ZERO, "miner": "0x00000000000000000000000000000000000000aa",
        "stateRoot": state_root, "transactionsRoot": B256::ZERO,
        "receiptsRoot": B256::ZERO, "logsBloom": format!("0x{}", "0".repeat(512)),
        "difficulty": "0x0", "number": format!("{n:#x}"), "gasLimit": "0x1c9c380",
        "gasUsed": "0x0", "timestamp": format!("{:#x}", 1_700_000_000 + 12 * n),
        "extraData": "0x", "mixHash": B256::ZERO, "nonce": "0x0000000000000000",
        "baseFeePerGas": "0x7", "withdrawalsRoot": B256::ZERO, "blobGasUsed": "0x0",
        "excessBlobGas": "0x0", "parentBeaconBlockRoot": B256::ZERO,
    });
    let header: RpcHeader = serde_json::from_value(json.clone()).unwrap();
    json["hash"] = json!(keccak256(header.rlp()));
    json
}

/// The `hash` of a header of [`sealed_header`].
pub fn header_hash(header: &Value) -> B256 {
    serde_json::from_value(header["hash"].clone()).unwrap()
}

/// Headers of blocks `0..=head` ([`sealed_header`], state root `keccak(n)`), each the child of
/// the one before, except that block `orphan` names another parent (as when the execution
/// client reorged between two reads of a query).
pub fn header_chain(head: u64, orphan: Option<u64>) -> Vec<Value> {
    let mut chain: Vec<Value> = Vec::new();
    for n in 0..=head {
        let parent = match chain.last() {
            _ if Some(n) == orphan => B256::repeat_byte(0xee),
            Some(before) => header_hash(before),
            None => B256::ZERO,
        };
        chain.push(sealed_header(n, parent, keccak256(n.to_be_bytes())));
    }
    chain
}
