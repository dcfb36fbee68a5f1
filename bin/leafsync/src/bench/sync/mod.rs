//! `leafsync bench sync`: leaf sync against heal-only sync of the same generated state, from `K`
//! servers over real RLPx on loopback, every peer behind an emulated WAN link (`wan.rs`). The
//! servers run in a child process (`servers.rs`) so the client's CPU time and memory are its own;
//! with `--clients N` that many clients sync from them at once, and with `--churn` the servers
//! apply blocks meanwhile (`churn.rs`). Prints a table and, with `--json`, one JSON object as the
//! last line (see docs/benchmarks.md).

mod churn;
mod servers;
mod snap_source;
mod wan;

use std::{
    collections::HashSet,
    path::{Path, PathBuf},
    process::ExitCode,
    sync::Arc,
    time::{Duration, Instant},
};

use alloy_primitives::B256;
use alloy_rlp::Encodable;
use alloy_trie::Nibbles;
use leafsync_leafdb::{EMPTY_CODE_HASH, LeafDb};
use leafsync_p2p::leaf::ChainHead;
use leafsync_sync::{
    NewPeers, PeerSources, PhaseTimes, SnapPeer, SnapTransport, SyncConfig, SyncMode, SyncOutcome,
    SyncPeer, SyncStats, Syncer, WorkKind, config::DEFAULT_CHUNK_TARGET_BYTES, watch_network_peers,
};
use serde_json::{Value, json};
use tokio::runtime::Runtime;

pub(crate) use self::servers::{ServersArgs, servers};
use self::{
    churn::{ChainReport, ChurnArgs, ChurnPlan, ChurnPreset},
    servers::{ServerCounters, ServerProcess},
    snap_source::SnapServers,
    wan::{LEAF_KINDS, Links, Snappy, Traffic, WanConfig, WanPeer},
};
use crate::{
    bench::{
        in_scratch_dir,
        leafdb::{Leaf, hash_builder_root},
        proc::{USER_HZ, cpu_since, cpu_ticks, peak_rss_mib, reset_peak_rss},
    },
    error::CliError,
    node::loopback::{check_servers, open, runtime, start_client},
};

// The targets the benchmark reports against (from the issue).
/// Leaf sync's wall time over heal-only's, at most.
const TARGET_TIME: f64 = 0.2;
/// Leaf sync's bytes up over heal-only's, at most.
const TARGET_UPLOAD: f64 = 0.005;
/// Leaf sync's requests over heal-only's, at most.
const TARGET_REQUESTS: f64 = 0.02;
/// Leaf sync's bytes down over the raw leaf bytes, at most.
const TARGET_BYTES_OVER_RAW: f64 = 1.1;
/// Leaf sync's client CPU over the floor, at most.
const TARGET_CPU_OVER_FLOOR: f64 = 2.0;
/// Leaf sync's bytes down over the raw leaf and code bytes, at most (issue 15, goal 4).
const TARGET_BYTES_OVER_RAW_AND_CODE: f64 = 1.03;
/// Leaf sync's wall time over its wire time, at most (issue 15, goal 1).
const TARGET_WALL_OVER_WIRE: f64 = 1.5;
/// The sync client's peak resident set, MiB, at most (issue 15, goal 7).
const TARGET_PEAK_RSS_MIB: u64 = 1024;
/// Chunk requests answered from the servers' caches with two clients, at least (issue 15,
/// goal 6).
const TARGET_CACHE_HIT_RATE: f64 = 0.45;
/// Healed trie nodes over all trie nodes with churn in proportion to mainnet's, at most (issue
/// 15, goal 5).
const TARGET_HEAL_FRACTION: f64 = 0.01;

/// Peers that joined the network and wait for the sync to take them, at most.
const JOINING_BOUND: usize = 16;

/// The work kinds of [`PhaseTimes`], in the order the JSON and the table show them.
const PHASES: [(&str, WorkKind); 6] = [
    ("skeleton", WorkKind::Skeleton),
    ("chunks", WorkKind::Chunks),
    ("storage", WorkKind::Storage),
    ("codes", WorkKind::Codes),
    ("heal", WorkKind::Heal),
    ("finish", WorkKind::Finish),
];

/// Arguments of `bench sync`.
#[derive(Debug, clap::Args)]
pub(crate) struct SyncBench {
    /// Accounts in the generated state.
    #[arg(long, default_value_t = 1_000_000)]
    accounts: u64,
    /// Number of servers (each a node of its own, over one shared leafdb).
    #[arg(long, default_value_t = 4)]
    servers: usize,
    /// Emulated round-trip time of every peer link, milliseconds (0: none).
    #[arg(long, default_value_t = 50)]
    rtt_ms: u64,
    /// Emulated bandwidth per direction per peer, Mbit/s (0: unlimited).
    #[arg(long, default_value_t = 100)]
    mbit: u64,
    /// End the output with one line of JSON.
    #[arg(long)]
    json: bool,
    /// Clients syncing at once from the same servers, each with its own leafdb, node key and
    /// links (the snap/1 source always syncs one).
    #[arg(long, default_value_t = 1)]
    clients: usize,
    /// Run leaf sync only (`heal_only` is then null).
    #[arg(long)]
    skip_heal_only: bool,
    /// Also sync through snap/1 (`snap` in the JSON, null otherwise): last, from in-process
    /// snap/1 servers over the same state, behind the same links.
    #[arg(long)]
    snap: bool,
    /// Target chunk size of the leaf sync, KiB (the sync's default: 1024). Chunks are a 16th of
    /// the state per skeleton level, so this picks the skeleton depth.
    #[arg(long, default_value_t = DEFAULT_CHUNK_TARGET_BYTES / 1024)]
    chunk_target_kib: u64,
    /// Seed of the generator.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Where to put the databases (a fresh temporary directory inside it, removed at the end).
    #[arg(long, default_value = ".")]
    workdir: PathBuf,
    /// Blocks the servers apply while the clients sync (not with `--snap`).
    #[command(flatten)]
    churn: ChurnArgs,
}

/// Where a sync gets its state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// `leaf/1` chunks from the server process ([`SyncMode::Leaf`]).
    Leaf,
    /// Every trie node from the server process ([`SyncMode::HealOnly`]).
    HealOnly,
    /// snap/1 from in-process servers over the servers' leafdb, through `SnapPeer`.
    Snap,
}

/// How every sync of a run is set up.
#[derive(Debug, Clone, Copy)]
struct Setup {
    wan: WanConfig,
    chunk_target_bytes: u64,
    /// Clients syncing at once (from leaf/1 servers; the snap/1 source syncs one).
    clients: usize,
}

/// One sync's measurements (all its clients together).
#[derive(Debug)]
struct Run {
    /// Until every client was done.
    wall_s: f64,
    /// The client process's CPU, without the bench's own threads (snappy sizing, in-process
    /// servers).
    cpu_s: f64,
    /// CPU of the bench's own threads, left out of `cpu_s`.
    excluded_cpu_s: f64,
    bytes_down: u64,
    bytes_up: u64,
    /// Requests on the wire (snap/1 requests for the snap source).
    requests: u64,
    /// `leaf/1` requests by kind ([`LEAF_KINDS`]; zeros for the snap source).
    leaf_kinds: [u64; 4],
    /// Answers' payloads after snappy.
    snappy_bytes_down: u64,
    /// Time the bytes down need on the emulated links together (`None`: unlimited bandwidth).
    wire_s: Option<f64>,
    root_ok: bool,
    /// Each client's counters (its wall time is `elapsed`).
    stats: Vec<SyncStats>,
    /// The client process's peak resident set during the sync, MiB (see [`sync_once`]).
    peak_rss_mib: Option<u64>,
    /// Whether the peak was reset before the sync (else it counts from the process's start).
    peak_rss_reset: bool,
    /// What the server process did during the sync (`None`: in-process servers, snap/1).
    servers: Option<ServerCounters>,
    /// With churn: the first client's pivot, the chain at the sync's end and the trie nodes
    /// its state has.
    churn: Option<ChurnRun>,
}

/// What a sync under churn met.
#[derive(Debug)]
struct ChurnRun {
    pivot: ChainHead,
    /// The chain when the last client was done.
    chain: ChainReport,
    /// Trie nodes stored by the first client (the denominator of the heal fraction).
    trie_nodes: u64,
}

impl Run {
    /// Wall time over wire time.
    fn over_wire(&self) -> Option<f64> {
        self.wire_s.map(|wire| ratio(self.wall_s, wire))
    }

    /// `f` summed over the clients.
    fn sum(&self, f: impl Fn(&SyncStats) -> u64) -> u64 {
        self.stats.iter().map(f).sum()
    }

    /// The first client's phase times.
    fn phases(&self) -> PhaseTimes {
        self.stats.first().map(|s| s.phases).unwrap_or_default()
    }

    /// The first client's healed nodes over its trie nodes (`None` without churn).
    fn heal_fraction(&self) -> Option<f64> {
        let churn = self.churn.as_ref()?;
        let healed = self.stats.first().map_or(0, |s| s.healed_nodes);
        Some(ratio(healed as f64, churn.trie_nodes as f64))
    }

    /// The servers' CPU seconds per MB of answers (RLP bodies on the links).
    fn server_cpu_per_mb(&self) -> Option<f64> {
        let c = self.servers?;
        Some(ratio(c.cpu_ticks as f64 / USER_HZ, self.bytes_down as f64 / 1e6))
    }

    fn json(&self) -> Value {
        let servers = self.servers.map(|c| {
            json!({
                "cpu_s": c.cpu_ticks as f64 / USER_HZ,
                "cpu_s_per_mb": self.server_cpu_per_mb(),
                "served": c.served,
                "cache_hits": c.cache_hits,
                "cache_joined": c.cache_joined,
                "cache_misses": c.cache_misses,
                "cache_hit_rate": c.hit_rate(),
            })
        });
        let churn = self.churn.as_ref().map(|c| {
            json!({
                "blocks": self.servers.map(|s| s.blocks),
                "pivot": c.pivot.number,
                "chain_head": c.chain.head(),
                "server_heads": c.chain.heads,
                "late_ms": c.chain.late_ms,
                "trie_nodes": c.trie_nodes,
                "heal_fraction": self.heal_fraction(),
            })
        });
        json!({
            "wall_s": self.wall_s,
            "cpu_s": self.cpu_s,
            "excluded_cpu_s": self.excluded_cpu_s,
            "bytes_down": self.bytes_down,
            "bytes_up": self.bytes_up,
            "snappy_bytes_down": self.snappy_bytes_down,
            "wire_s": self.wire_s,
            "wall_over_wire": self.over_wire(),
            "requests": self.requests,
            "sync_requests": self.sum(|s| s.requests),
            "requests_by_kind": Value::Object(
                LEAF_KINDS.iter().zip(self.leaf_kinds).map(|(k, n)| (k.to_string(), n.into())).collect()
            ),
            "healed_nodes": self.sum(|s| s.healed_nodes),
            "final_rehashed": self.sum(|s| s.final_rehashed),
            "root_ok": self.root_ok,
            "timeouts": self.sum(|s| s.timeouts),
            "chunks": self.sum(|s| s.chunks_done),
            "chunks_healed": self.sum(|s| s.chunks_healed),
            "chunks_split": self.sum(|s| s.chunks_split),
            "chunks_passed": self.sum(|s| s.chunks_passed),
            "empty_answers": self.sum(|s| s.empty_answers),
            "junk_answers": self.sum(|s| s.junk_answers),
            "peers_banned": self.sum(|s| s.peers_banned),
            "repivots": self.sum(|s| s.repivots),
            "clients": self.stats.len(),
            "client_wall_s": self.stats.iter().map(|s| s.elapsed.as_secs_f64()).collect::<Vec<_>>(),
            "phases": phases_json(&self.phases()),
            "peak_rss_mib": self.peak_rss_mib,
            "peak_rss_reset": self.peak_rss_reset,
            "servers": servers,
            "churn": churn,
        })
    }
}

/// Per work kind, seconds from the sync's start until it was first and last done (null: never).
fn phases_json(phases: &PhaseTimes) -> Value {
    let secs = |d: Option<Duration>| d.map(|d| d.as_secs_f64());
    let map = PHASES.iter().map(|&(name, kind)| {
        let span = phases.span(kind);
        (name.to_string(), json!({ "first_s": secs(span.first), "last_s": secs(span.last) }))
    });
    Value::Object(map.collect())
}

/// What the client's flat tables hold, measured after a sync.
#[derive(Debug)]
struct Examined {
    /// Root by `HashBuilder` over the flat tables, storage roots recomputed.
    root: B256,
    accounts: u64,
    slots: u64,
    /// Referenced codes missing from the code table.
    missing_codes: u64,
    raw_leaf_bytes: u64,
    raw_code_bytes: u64,
    /// CPU seconds of the `HashBuilder` pass (the calling thread's only), and its wall time.
    floor_cpu_s: f64,
    floor_wall_s: f64,
}

/// The accounts and slots of the flat tables, in key order.
fn read_leaves(db: &LeafDb) -> Result<Vec<Leaf>, CliError> {
    let snap = db.snapshot()?;
    let mut leaves = Vec::new();
    for item in snap.accounts_with_prefix(&Nibbles::new()) {
        let (hashed, account) = item?;
        let slots = snap.storage_with_prefix(&hashed, &Nibbles::new()).collect::<Result<_, _>>()?;
        leaves.push(Leaf { hashed, account, slots });
    }
    Ok(leaves)
}

/// Reads the client's flat tables into memory, then times `HashBuilder` over them (the floor)
/// and sizes them (the raw leaf bytes: per account its 32-byte hashed address and its RLP
/// account, per slot its 32-byte hashed key and its RLP value; code bytes apart).
fn examine(db: &LeafDb) -> Result<Examined, CliError> {
    let leaves = read_leaves(db)?;
    let mut raw_leaf_bytes = 0u64;
    let mut slots = 0u64;
    let mut code_hashes = HashSet::new();
    for leaf in &leaves {
        raw_leaf_bytes += 32 + leaf.account.length() as u64;
        for (_, value) in &leaf.slots {
            raw_leaf_bytes += 32 + value.length() as u64;
        }
        slots += leaf.slots.len() as u64;
        if leaf.account.code_hash != EMPTY_CODE_HASH {
            code_hashes.insert(leaf.account.code_hash);
        }
    }
    let (mut raw_code_bytes, mut missing_codes) = (0u64, 0u64);
    for hash in &code_hashes {
        match db.code(hash)? {
            Some(code) => raw_code_bytes += code.len() as u64,
            None => missing_codes += 1,
        }
    }
    let (cpu, wall) = (cpu_ticks("thread-self")?, Instant::now());
    let root = hash_builder_root(&leaves);
    let floor_wall_s = wall.elapsed().as_secs_f64();
    let floor_cpu_s = cpu_since("thread-self", cpu)?;
    Ok(Examined {
        root,
        accounts: leaves.len() as u64,
        slots,
        missing_codes,
        raw_leaf_bytes,
        raw_code_bytes,
        floor_cpu_s,
        floor_wall_s,
    })
}

/// A client's peers: those it starts with, and for `leaf/1` the ones that join later.
struct ClientPeers {
    now: Vec<Arc<dyn SyncPeer>>,
    joining: Option<NewPeers>,
}

/// Relays the peers that join the network's `joining` to the sync, each behind links of its own
/// from `links`, until the sync drops its end.
fn relay_joining(mut joining: NewPeers, links: impl Fn() -> Links + Send + 'static) -> NewPeers {
    let (tx, rx) = tokio::sync::mpsc::channel(JOINING_BOUND);
    tokio::spawn(async move {
        loop {
            let peer = tokio::select! {
                () = tx.closed() => return,
                peer = joining.recv() => peer,
            };
            let Some(peer) = peer else { return };
            if tx.send(Arc::new(WanPeer::new(peer, links())) as Arc<dyn SyncPeer>).await.is_err() {
                return;
            }
        }
    });
    rx
}

/// The sync's peers for `source`, each behind links of its own from `links`; and the client
/// node to shut down after a `leaf/1` sync. `leaf/1` peers are the daemon's
/// ([`watch_network_peers`]): their heads follow their announcements, which a sync under churn
/// needs.
async fn peers(
    source: Source,
    db: &Arc<LeafDb>,
    servers: &ServerProcess,
    snap: Option<&SnapServers>,
    links: impl Fn() -> Links + Send + Clone + 'static,
) -> Result<(ClientPeers, Option<crate::node::Node>), CliError> {
    if source == Source::Snap {
        let Some(snap) = snap else {
            return Err(CliError::Invalid {
                what: "snap sync".into(),
                reason: "no servers".into(),
            });
        };
        let head = ChainHead { number: 0, hash: B256::ZERO, state_root: servers.root };
        let mut peers = Vec::new();
        for i in 0..servers.records.len() {
            let Some(transport) = snap.transport(i, head, links()) else { break };
            let peer = SnapPeer::new(Arc::new(transport) as Arc<dyn SnapTransport>);
            // snap/1 announces no account count: the network probes each peer first.
            peer.probe_accounts(servers.root).await;
            peers.push(Arc::new(peer) as Arc<dyn SyncPeer>);
        }
        return Ok((ClientPeers { now: peers, joining: None }, None));
    }
    let client = start_client(Arc::clone(db), servers.records.clone()).await?;
    let (now, joining) = watch_network_peers(client.network(), &PeerSources::default()).await;
    let now = now.into_iter().map(|p| Arc::new(WanPeer::new(p, links())) as Arc<dyn SyncPeer>);
    let now = now.collect();
    let joining = Some(relay_joining(joining, links));
    Ok((ClientPeers { now, joining }, Some(client)))
}

/// The clients' syncs run at once, each in a task of its own; each client's outcome in order.
async fn sync_all(
    dbs: &[Arc<LeafDb>],
    peer_sets: Vec<ClientPeers>,
    config: &SyncConfig,
) -> Result<Vec<Result<SyncOutcome, leafsync_sync::SyncError>>, CliError> {
    let tasks: Vec<_> = dbs
        .iter()
        .zip(peer_sets)
        .map(|(db, peers)| {
            let syncer = Syncer::new(Arc::clone(db), config.clone(), peers.now);
            let syncer = match peers.joining {
                Some(joining) => syncer.with_new_peers(joining),
                None => syncer,
            };
            tokio::spawn(syncer.run())
        })
        .collect();
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(task.await.map_err(|e| CliError::Invalid {
            what: "a sync task".into(),
            reason: e.to_string(),
        })?);
    }
    Ok(outcomes)
}

/// One sync from `source` by `setup.clients` fresh clients at once (one for snap/1), each into a
/// fresh leafdb `<dir>/<name>[-i]`. `snap_db` is the servers' leafdb, for [`Source::Snap`].
///
/// The peak resident set is the process's `VmHWM`, reset just before the clients connect
/// ([`reset_peak_rss`]) and read after they have shut down, before the flat tables are read
/// into memory for the root check and the floor: the clients' syncs, RLPx sessions and RocksDB
/// instances, the emulated links and the snappy sizing thread. The leaf/1 servers are another
/// process; the snap/1 servers are threads of this one and are in it.
fn sync_once(
    runtime: &Runtime,
    servers: &mut ServerProcess,
    source: Source,
    snap_db: Option<&Arc<LeafDb>>,
    setup: Setup,
    dir: &Path,
    name: &str,
) -> Result<(Run, Examined), CliError> {
    let clients = if source == Source::Snap { 1 } else { setup.clients.max(1) };
    let paths: Vec<PathBuf> = (0..clients)
        .map(|i| if clients == 1 { dir.join(name) } else { dir.join(format!("{name}-{i}")) })
        .collect();
    let dbs = paths.iter().map(|p| open(p).map(Arc::new)).collect::<Result<Vec<_>, _>>()?;
    let traffic = Arc::new(Traffic::default());
    let snappy = Snappy::start(Arc::clone(&traffic));
    let snap = snap_db.map(|snap_db| SnapServers::start(snap_db, servers.records.len()));
    let mode = if source == Source::HealOnly { SyncMode::HealOnly } else { SyncMode::Leaf };
    let peak_rss_reset = reset_peak_rss();
    let counters_before = if source == Source::Snap { None } else { Some(servers.counters()?) };
    let synced = runtime.block_on(async {
        let links = {
            let (wan, traffic, snappy) = (setup.wan, Arc::clone(&traffic), snappy.sender());
            move || Links::new(wan, Arc::clone(&traffic), snappy.clone())
        };
        let (mut peer_sets, mut nodes) = (Vec::new(), Vec::new());
        for db in &dbs {
            let (peers, client) = peers(source, db, servers, snap.as_ref(), links.clone()).await?;
            peer_sets.push(peers);
            nodes.extend(client);
        }
        // A snap/1 peer's probe is not part of the sync.
        let before = traffic.totals();
        let chunk_target_bytes = setup.chunk_target_bytes;
        let config = SyncConfig { mode, chunk_target_bytes, ..SyncConfig::default() };
        let (cpu, wall) = (cpu_ticks("self")?, Instant::now());
        let outcomes = sync_all(&dbs, peer_sets, &config).await?;
        let (wall_s, cpu_s) = (wall.elapsed().as_secs_f64(), cpu_since("self", cpu)?);
        for client in nodes {
            client.shutdown().await?;
        }
        Ok::<_, CliError>((outcomes, wall_s, cpu_s, before))
    })?;
    let (outcomes, wall_s, cpu_s, before) = synced;
    let peak_rss_mib = peak_rss_mib();
    let server_counters = match counters_before {
        Some(before) => Some(servers.counters()?.since(before)),
        None => None,
    };
    let chain = if servers.churn.is_some() { Some(servers.chain()?) } else { None };
    // Every sender is gone with the syncer's peers: the threads end.
    let excluded = snappy.finish() + snap.map_or(0, SnapServers::finish);
    let excluded_cpu_s = excluded as f64 / USER_HZ;
    let mut stats = Vec::new();
    let mut root_ok = true;
    let mut floor = None;
    let mut churn = None;
    for (outcome, db) in outcomes.into_iter().zip(&dbs) {
        let outcome = outcome.map_err(|e| {
            let why = servers.exited().map_or_else(String::new, |s| format!(" ({s})"));
            CliError::Invalid { what: format!("{source:?} sync"), reason: format!("{e}{why}") }
        })?;
        let examined = examine(db)?;
        // Under churn the pivot is a block of the servers' chain, and the state is its.
        let (expected, counts) = match &chain {
            Some(chain) => (chain.root(outcome.pivot.number), true),
            None => (
                Some(servers.root),
                (examined.accounts, examined.slots) == (servers.accounts, servers.slots),
            ),
        };
        root_ok &= Some(outcome.root) == expected
            && examined.root == outcome.root
            && counts
            && examined.missing_codes == 0;
        if let Some(chain) = chain.as_ref().filter(|_| churn.is_none()) {
            let trie_nodes = db.trie_node_count()?;
            churn = Some(ChurnRun { pivot: outcome.pivot, chain: chain.clone(), trie_nodes });
        }
        stats.push(outcome.stats);
        floor.get_or_insert(examined);
    }
    let Some(examined) = floor else {
        return Err(CliError::Invalid {
            what: format!("{source:?} sync"),
            reason: "no client".into(),
        });
    };
    let totals = traffic.totals().since(before);
    // Every client has its own link to every server.
    let links = (servers.records.len() * clients) as f64;
    let links_bytes_per_sec = setup.wan.bits_per_sec as f64 / 8.0 * links;
    let run = Run {
        wall_s,
        // Both counted in 10 ms ticks: the difference is too (without float noise).
        cpu_s: ((cpu_s - excluded_cpu_s) * USER_HZ).round().max(0.0) / USER_HZ,
        excluded_cpu_s,
        bytes_down: totals.bytes_down,
        bytes_up: totals.bytes_up,
        requests: totals.requests,
        leaf_kinds: totals.leaf_kinds,
        snappy_bytes_down: totals.snappy_down,
        wire_s: (setup.wan.bits_per_sec > 0)
            .then(|| totals.bytes_down as f64 / links_bytes_per_sec),
        root_ok,
        stats,
        peak_rss_mib,
        peak_rss_reset,
        servers: server_counters,
        churn,
    };
    // A long benchmark says where it is (the table comes at the end).
    eprintln!("bench sync: {source:?} sync done: {}", run.json());
    drop(dbs);
    for path in &paths {
        std::fs::remove_dir_all(path)
            .map_err(|source| CliError::Io { path: path.clone(), source })?;
    }
    Ok((run, examined))
}

/// `leafsync bench sync`.
pub(crate) fn sync(args: &SyncBench) -> Result<ExitCode, CliError> {
    check_servers(args.servers)?;
    args.churn.check()?;
    if args.churn.enabled() && args.snap {
        return Err(CliError::Invalid {
            what: "--snap".into(),
            reason: "snap/1 syncs from the generated state after the servers stop: not with \
                     --churn"
                .into(),
        });
    }
    let report = in_scratch_dir(&args.workdir, "sync", |dir| run(args, dir))?;
    print!("{}", report.table);
    if args.json {
        println!("{}", report.json);
    }
    Ok(if report.ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

struct Report {
    table: String,
    json: Value,
    ok: bool,
}

fn run(args: &SyncBench, dir: &Path) -> Result<Report, CliError> {
    let wan = WanConfig {
        rtt: Duration::from_millis(args.rtt_ms),
        bits_per_sec: args.mbit.saturating_mul(1_000_000),
    };
    let chunk_target = args.chunk_target_kib.saturating_mul(1024);
    let setup = Setup { wan, chunk_target_bytes: chunk_target, clients: args.clients };
    // Dropped (the child killed) before the directory is removed.
    let mut servers = ServerProcess::spawn(
        args.accounts,
        args.servers,
        args.seed,
        &dir.join("servers"),
        &args.churn,
    )?;
    let runtime = runtime()?;
    let mut once = |source, snap_db: Option<&Arc<LeafDb>>, name: &str| {
        sync_once(&runtime, &mut servers, source, snap_db, setup, dir, name)
    };
    let (leaf, floor) = once(Source::Leaf, None, "leaf")?;
    let heal_only =
        if args.skip_heal_only { None } else { Some(once(Source::HealOnly, None, "heal-only")?.0) };
    let snap = if args.snap {
        // The server process closes its leafdb, which the in-process snap/1 servers then open.
        servers.stop()?;
        let snap_db = Arc::new(open(&dir.join("servers"))?);
        let run =
            sync_once(&runtime, &mut servers, Source::Snap, Some(&snap_db), setup, dir, "snap")?;
        Some(run.0)
    } else {
        None
    };
    drop(runtime);
    let ok = leaf.root_ok
        && heal_only.as_ref().is_none_or(|h| h.root_ok)
        && snap.as_ref().is_none_or(|s| s.root_ok);
    let json = json!({
        "bench": "sync",
        "accounts": args.accounts,
        "servers": args.servers,
        "rtt_ms": args.rtt_ms,
        "mbit": args.mbit,
        "chunk_target_bytes": chunk_target,
        "clients": args.clients,
        "churn": servers.churn,
        "slots": servers.slots,
        "generate_s": servers.generate_s,
        "raw_leaf_bytes": floor.raw_leaf_bytes,
        "raw_code_bytes": floor.raw_code_bytes,
        "floor_cpu_s": floor.floor_cpu_s,
        "floor_wall_s": floor.floor_wall_s,
        "leaf": leaf.json(),
        "heal_only": heal_only.as_ref().map_or(Value::Null, Run::json),
        "snap": snap.as_ref().map_or(Value::Null, Run::json),
    });
    let mut table = table(args, &servers, &floor, &leaf, heal_only.as_ref());
    table += &sources_table(&leaf, heal_only.as_ref(), snap.as_ref());
    Ok(Report { table, json, ok })
}

/// `value / base`, or NaN without a base.
fn ratio(value: f64, base: f64) -> f64 {
    if base > 0.0 { value / base } else { f64::NAN }
}

fn verdict(ratio: f64, target: f64) -> &'static str {
    if ratio <= target { "met" } else { "missed" }
}

/// One line of the table: leaf, heal-only, their ratio and its target.
fn row(
    t: &mut String,
    name: &str,
    (leaf, heal): (f64, Option<f64>),
    digits: usize,
    target: Option<f64>,
) {
    let ratio = heal.map(|h| ratio(leaf, h));
    let heal = heal.map_or("-".to_string(), |h| format!("{h:.digits$}"));
    let shown = ratio.map_or("-".to_string(), |r| format!("{r:.4}"));
    let target = match (target, ratio) {
        (Some(x), Some(r)) => format!("≤ {x}: {}", verdict(r, x)),
        (Some(x), None) => format!("≤ {x}"),
        (None, _) => String::new(),
    };
    *t += &format!(
        "  {name:<14}{:>12}{heal:>14}{shown:>16}   {target}\n",
        format!("{leaf:.digits$}")
    );
}

fn table(
    args: &SyncBench,
    servers: &ServerProcess,
    floor: &Examined,
    leaf: &Run,
    heal: Option<&Run>,
) -> String {
    let mb = |b: u64| b as f64 / 1e6;
    let rtt =
        if args.rtt_ms == 0 { "no latency".to_string() } else { format!("{} ms RTT", args.rtt_ms) };
    let bandwidth = if args.mbit == 0 {
        "unlimited bandwidth".to_string()
    } else {
        format!("{} Mbit/s per direction", args.mbit)
    };
    let mut t = format!(
        "leafsync bench sync: {} accounts, {} slots, {} servers; every peer link: {rtt}, \
         {bandwidth}\n",
        servers.accounts, servers.slots, args.servers
    );
    t += &format!(
        "  state generated by the server process in {:.1} s; raw leaf bytes {:.1} MB (+ {:.1} MB \
         of code); floor: HashBuilder over the client's leaves {:.2} s CPU ({:.2} s wall)\n\n",
        servers.generate_s,
        mb(floor.raw_leaf_bytes),
        mb(floor.raw_code_bytes),
        floor.floor_cpu_s,
        floor.floor_wall_s
    );
    t += &format!(
        "  {:<14}{:>12}{:>14}{:>16}   target\n",
        "", "leaf", "heal-only", "leaf/heal-only"
    );
    let pick = |f: &dyn Fn(&Run) -> f64| (f(leaf), heal.map(f));
    row(&mut t, "wall s", pick(&|r| r.wall_s), 2, Some(TARGET_TIME));
    row(&mut t, "client CPU s", pick(&|r| r.cpu_s), 2, None);
    row(&mut t, "MB down", pick(&|r| mb(r.bytes_down)), 1, None);
    row(&mut t, "MB up", pick(&|r| mb(r.bytes_up)), 3, Some(TARGET_UPLOAD));
    row(&mut t, "requests", pick(&|r| r.requests as f64), 0, Some(TARGET_REQUESTS));
    row(&mut t, "healed nodes", pick(&|r| r.sum(|s| s.healed_nodes) as f64), 0, None);
    let heal_root = heal.map_or("-".to_string(), |h| h.root_ok.to_string());
    t += &format!("  {:<14}{:>12}{heal_root:>14}\n", "root ok", leaf.root_ok.to_string());
    let over_raw = ratio(leaf.bytes_down as f64, floor.raw_leaf_bytes as f64);
    let over_raw_code =
        ratio(leaf.bytes_down as f64, (floor.raw_leaf_bytes + floor.raw_code_bytes) as f64);
    // With several clients in the process, each client's share of its CPU.
    let over_floor = ratio(leaf.cpu_s / leaf.stats.len().max(1) as f64, floor.floor_cpu_s);
    t += &format!(
        "\n  leaf bytes down / raw leaf bytes   {over_raw:.3} (target ≤ {TARGET_BYTES_OVER_RAW}: \
         {}); / (raw leaf + code bytes) {over_raw_code:.3} (target ≤ \
         {TARGET_BYTES_OVER_RAW_AND_CODE}: {})\n",
        verdict(over_raw, TARGET_BYTES_OVER_RAW),
        verdict(over_raw_code, TARGET_BYTES_OVER_RAW_AND_CODE)
    );
    if let Some(over_wire) = leaf.over_wire() {
        t += &format!(
            "  leaf wall time / wire time         {over_wire:.2} (target ≤ \
             {TARGET_WALL_OVER_WIRE}: {})\n",
            verdict(over_wire, TARGET_WALL_OVER_WIRE)
        );
    }
    t += &format!(
        "  leaf client CPU / floor            {over_floor:.2} (target ≤ {TARGET_CPU_OVER_FLOOR}: \
         {}){}\n",
        verdict(over_floor, TARGET_CPU_OVER_FLOOR),
        if leaf.stats.len() > 1 { ", per client" } else { "" }
    );
    if let (Some(plan), Some(churn)) = (&servers.churn, &leaf.churn) {
        t += &churn_lines(plan, leaf, churn);
    }
    t
}

/// The churn during the leaf sync and the heal it cost (the first client's).
fn churn_lines(plan: &ChurnPlan, leaf: &Run, churn: &ChurnRun) -> String {
    let preset = match plan.preset {
        ChurnPreset::Proportional => "the state's share of mainnet's changes",
        ChurnPreset::Mainnet => "mainnet-sized",
        ChurnPreset::None => "none",
    };
    let fraction = leaf.heal_fraction().unwrap_or(f64::NAN);
    let target = if plan.preset == ChurnPreset::Proportional {
        format!(
            " (target ≤ 1% with proportional churn: {})",
            verdict(fraction, TARGET_HEAL_FRACTION)
        )
    } else {
        String::new()
    };
    format!(
        "  churn: a block every {:.1} s of {} accounts and {} slots ({preset}), servers up to {} \
         blocks apart; {} blocks during the sync (up to {} ms late), pivot {}, chain head {} at \
         the end\n  heal under churn: {} of {} trie nodes healed = {:.3}%{target}\n",
        plan.interval_ms as f64 / 1e3,
        plan.accounts,
        plan.slots,
        plan.spread,
        leaf.servers.map_or(0, |s| s.blocks),
        churn.chain.late_ms,
        churn.pivot.number,
        churn.chain.head(),
        leaf.stats.first().map_or(0, |s| s.healed_nodes),
        churn.trie_nodes,
        fraction * 100.0,
    )
}

/// Each source's wall time against its wire time, its bytes before and after snappy.
fn sources_table(leaf: &Run, heal: Option<&Run>, snap: Option<&Run>) -> String {
    let mut t = format!(
        "\n  {:<10}{:>9}{:>9}{:>9}{:>11}{:>10}{:>12}{:>10}{:>9}\n",
        "source",
        "wall s",
        "CPU s",
        "wire s",
        "wall/wire",
        "MB down",
        "MB snappy",
        "requests",
        "(sync)"
    );
    let runs = [("leaf", Some(leaf)), ("heal-only", heal), ("snap", snap)];
    for (name, run) in runs.into_iter().filter_map(|(n, r)| r.map(|r| (n, r))) {
        let wire = run.wire_s.map_or("-".to_string(), |w| format!("{w:.2}"));
        let over = run.over_wire().map_or("-".to_string(), |r| format!("{r:.2}"));
        t += &format!(
            "  {name:<10}{:>9.2}{:>9.2}{wire:>9}{over:>11}{:>10.1}{:>12.1}{:>10}{:>9}\n",
            run.wall_s,
            run.cpu_s,
            run.bytes_down as f64 / 1e6,
            run.snappy_bytes_down as f64 / 1e6,
            run.requests,
            run.sum(|s| s.requests)
        );
    }
    for (name, run) in runs.into_iter().filter_map(|(n, r)| r.map(|r| (n, r))) {
        t += &memory_and_phases(name, run);
        if let Some(servers) = &run.servers {
            t += &servers_line(run, servers);
        }
    }
    t
}

/// A source's peak resident set and the time until each kind of its work was last done.
fn memory_and_phases(name: &str, run: &Run) -> String {
    let rss = run.peak_rss_mib.map_or("?".to_string(), |m| format!("{m} MiB"));
    let verdict =
        run.peak_rss_mib.map_or("?", |m| if m <= TARGET_PEAK_RSS_MIB { "met" } else { "missed" });
    let scope = if !run.peak_rss_reset {
        ", not reset: since the process started"
    } else if run.servers.is_none() {
        ", in-process servers included: an upper bound"
    } else {
        ""
    };
    let phases = run.phases();
    let last = PHASES.iter().map(|&(name, kind)| {
        let at =
            phases.span(kind).last.map_or("-".to_string(), |d| format!("{:.1}", d.as_secs_f64()));
        format!("{name} {at}")
    });
    format!(
        "\n  {name}: client peak RSS {rss} (target ≤ {TARGET_PEAK_RSS_MIB} MiB: {verdict}{scope}, \
         {} client(s)); seconds until the last of each: {}\n",
        run.stats.len(),
        last.collect::<Vec<_>>().join(", ")
    )
}

/// The servers' work during a sync: CPU per MB answered and the chunk cache's hit rate.
fn servers_line(run: &Run, c: &ServerCounters) -> String {
    let rate = c.hit_rate();
    let target = if run.stats.len() > 1 {
        format!(
            " (target ≥ {TARGET_CACHE_HIT_RATE} with 2 clients: {})",
            if rate >= TARGET_CACHE_HIT_RATE { "met" } else { "missed" }
        )
    } else {
        String::new()
    };
    format!(
        "  servers: {:.2} s CPU, {:.4} s per MB answered; {} requests; chunk cache {} hits ({} \
         waited for another request's read), {} misses: {:.3}{target}\n",
        c.cpu_ticks as f64 / USER_HZ,
        run.server_cpu_per_mb().unwrap_or(f64::NAN),
        c.served,
        c.cache_hits,
        c.cache_joined,
        c.cache_misses,
        rate,
    )
}
