//! `leafsync bench sync`: leaf sync against heal-only sync of the same generated state, from `K`
//! servers over real RLPx on loopback, every peer behind an emulated WAN link (`wan.rs`). The
//! servers run in a child process (`servers.rs`) so the client's CPU time is its own. Prints a
//! table and, with `--json`, one JSON object as the last line (see docs/benchmarks.md).

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
    SnapPeer, SnapTransport, SyncConfig, SyncMode, SyncPeer, SyncStats, Syncer,
    config::DEFAULT_CHUNK_TARGET_BYTES, network_peers,
};
use serde_json::{Value, json};
use tokio::runtime::Runtime;

pub(crate) use self::servers::{ServersArgs, servers};
use self::{
    servers::ServerProcess,
    snap_source::SnapServers,
    wan::{Links, Snappy, Traffic, WanConfig, WanPeer},
};
use crate::{
    bench::leafdb::{Leaf, hash_builder_root},
    error::CliError,
    node::loopback::{check_servers, open, runtime, start_client},
};

/// Clock ticks per second of the CPU times in `/proc/*/stat` (`USER_HZ`, 100 on every Linux
/// architecture leafsync builds for).
const USER_HZ: f64 = 100.0;

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

/// One sync's measurements.
#[derive(Debug)]
struct Run {
    wall_s: f64,
    /// The client's CPU, without the bench's own threads (snappy sizing, in-process servers).
    cpu_s: f64,
    /// CPU of the bench's own threads, left out of `cpu_s`.
    excluded_cpu_s: f64,
    bytes_down: u64,
    bytes_up: u64,
    /// Requests on the wire (snap/1 requests for the snap source).
    requests: u64,
    /// Answers' payloads after snappy.
    snappy_bytes_down: u64,
    /// Time the bytes down need on the emulated links together (`None`: unlimited bandwidth).
    wire_s: Option<f64>,
    root_ok: bool,
    stats: SyncStats,
}

impl Run {
    /// Wall time over wire time.
    fn over_wire(&self) -> Option<f64> {
        self.wire_s.map(|wire| ratio(self.wall_s, wire))
    }

    fn json(&self) -> Value {
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
            "sync_requests": self.stats.requests,
            "healed_nodes": self.stats.healed_nodes,
            "root_ok": self.root_ok,
            "timeouts": self.stats.timeouts,
        })
    }
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

/// CPU time (user + system) so far, in clock ticks, of what `/proc/<path>/stat` describes:
/// `self` for the whole process (every thread), `thread-self` for the calling thread.
fn cpu_ticks(path: &str) -> Result<u64, CliError> {
    let file = format!("/proc/{path}/stat");
    let stat = std::fs::read_to_string(&file)
        .map_err(|source| CliError::Io { path: file.clone().into(), source })?;
    // Fields after the command name (which may hold spaces) start at field 3; utime and stime
    // are fields 14 and 15.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let field = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
    match (field(11), field(12)) {
        (Some(user), Some(system)) => Ok(user + system),
        _ => Err(CliError::Invalid { what: file, reason: "no utime/stime fields".into() }),
    }
}

/// CPU seconds since `start` ticks of [`cpu_ticks`]`(path)`.
fn cpu_since(path: &str, start: u64) -> Result<f64, CliError> {
    Ok(cpu_ticks(path)?.saturating_sub(start) as f64 / USER_HZ)
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

/// The sync's peers for `source`, each behind links of its own from `links`; and the client
/// node to shut down after a `leaf/1` sync.
async fn peers(
    source: Source,
    db: &Arc<LeafDb>,
    servers: &ServerProcess,
    snap: Option<&SnapServers>,
    mut links: impl FnMut() -> Links,
) -> Result<(Vec<Arc<dyn SyncPeer>>, Option<crate::node::Node>), CliError> {
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
        return Ok((peers, None));
    }
    let client = start_client(Arc::clone(db), servers.records.clone()).await?;
    let peers = network_peers(client.network())
        .await
        .into_iter()
        .map(|p| Arc::new(WanPeer::new(p, links())) as Arc<dyn SyncPeer>)
        .collect();
    Ok((peers, Some(client)))
}

/// One sync from `source` into a fresh leafdb at `path`, by a fresh client. `snap_db` is the
/// servers' leafdb, for [`Source::Snap`].
fn sync_once(
    runtime: &Runtime,
    servers: &mut ServerProcess,
    source: Source,
    snap_db: Option<&Arc<LeafDb>>,
    wan: WanConfig,
    chunk_target_bytes: u64,
    path: &Path,
) -> Result<(Run, Examined), CliError> {
    let db = Arc::new(open(path)?);
    let traffic = Arc::new(Traffic::default());
    let snappy = Snappy::start(Arc::clone(&traffic));
    let snap = snap_db.map(|snap_db| SnapServers::start(snap_db, servers.records.len()));
    let mode = if source == Source::HealOnly { SyncMode::HealOnly } else { SyncMode::Leaf };
    let synced = runtime.block_on(async {
        let links = || Links::new(wan, Arc::clone(&traffic), snappy.sender());
        let (peers, client) = peers(source, &db, servers, snap.as_ref(), links).await?;
        // A snap/1 peer's probe is not part of the sync.
        let before = traffic.totals();
        let config = SyncConfig { mode, chunk_target_bytes, ..SyncConfig::default() };
        let (cpu, wall) = (cpu_ticks("self")?, Instant::now());
        let outcome = Syncer::new(Arc::clone(&db), config, peers).run().await;
        let (wall_s, cpu_s) = (wall.elapsed().as_secs_f64(), cpu_since("self", cpu)?);
        if let Some(client) = client {
            client.shutdown().await?;
        }
        Ok::<_, CliError>((outcome, wall_s, cpu_s, before))
    })?;
    let (outcome, wall_s, cpu_s, before) = synced;
    // Every sender is gone with the syncer's peers: the threads end.
    let excluded = snappy.finish() + snap.map_or(0, SnapServers::finish);
    let excluded_cpu_s = excluded as f64 / USER_HZ;
    let outcome = outcome.map_err(|e| {
        let why = servers.exited().map_or_else(String::new, |s| format!(" ({s})"));
        CliError::Invalid { what: format!("{source:?} sync"), reason: format!("{e}{why}") }
    })?;
    let examined = examine(&db)?;
    let totals = traffic.totals().since(before);
    let root_ok = outcome.root == servers.root
        && examined.root == servers.root
        && (examined.accounts, examined.slots) == (servers.accounts, servers.slots)
        && examined.missing_codes == 0;
    let links_bytes_per_sec = wan.bits_per_sec as f64 / 8.0 * servers.records.len() as f64;
    let run = Run {
        wall_s,
        // Both counted in 10 ms ticks: the difference is too (without float noise).
        cpu_s: ((cpu_s - excluded_cpu_s) * USER_HZ).round().max(0.0) / USER_HZ,
        excluded_cpu_s,
        bytes_down: totals.bytes_down,
        bytes_up: totals.bytes_up,
        requests: totals.requests,
        snappy_bytes_down: totals.snappy_down,
        wire_s: (wan.bits_per_sec > 0).then(|| totals.bytes_down as f64 / links_bytes_per_sec),
        root_ok,
        stats: outcome.stats,
    };
    // A long benchmark says where it is (the table comes at the end).
    eprintln!("bench sync: {source:?} sync done: {}", run.json());
    drop(db);
    std::fs::remove_dir_all(path)
        .map_err(|source| CliError::Io { path: path.to_path_buf(), source })?;
    Ok((run, examined))
}

/// `leafsync bench sync`.
pub(crate) fn sync(args: &SyncBench) -> Result<ExitCode, CliError> {
    check_servers(args.servers)?;
    let dir = args.workdir.join(format!("leafsync-bench-sync-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|source| CliError::Io { path: dir.clone(), source })?;
    let result = run(args, &dir);
    let cleanup = std::fs::remove_dir_all(&dir);
    let report = result?;
    cleanup.map_err(|source| CliError::Io { path: dir.clone(), source })?;
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
    // Dropped (the child killed) before the directory is removed.
    let mut servers =
        ServerProcess::spawn(args.accounts, args.servers, args.seed, &dir.join("servers"))?;
    let runtime = runtime()?;
    let chunk_target = args.chunk_target_kib.saturating_mul(1024);
    let mut once = |source, snap_db: Option<&Arc<LeafDb>>, name: &str| {
        let path = dir.join(name);
        sync_once(&runtime, &mut servers, source, snap_db, wan, chunk_target, &path)
    };
    let (leaf, floor) = once(Source::Leaf, None, "leaf")?;
    let heal_only =
        if args.skip_heal_only { None } else { Some(once(Source::HealOnly, None, "heal-only")?.0) };
    let snap = if args.snap {
        // The server process closes its leafdb, which the in-process snap/1 servers then open.
        servers.stop()?;
        let snap_db = Arc::new(open(&dir.join("servers"))?);
        let run = sync_once(
            &runtime,
            &mut servers,
            Source::Snap,
            Some(&snap_db),
            wan,
            chunk_target,
            &dir.join("snap"),
        )?;
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
    row(&mut t, "healed nodes", pick(&|r| r.stats.healed_nodes as f64), 0, None);
    let heal_root = heal.map_or("-".to_string(), |h| h.root_ok.to_string());
    t += &format!("  {:<14}{:>12}{heal_root:>14}\n", "root ok", leaf.root_ok.to_string());
    let over_raw = ratio(leaf.bytes_down as f64, floor.raw_leaf_bytes as f64);
    let over_raw_code =
        ratio(leaf.bytes_down as f64, (floor.raw_leaf_bytes + floor.raw_code_bytes) as f64);
    let over_floor = ratio(leaf.cpu_s, floor.floor_cpu_s);
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
         {})\n",
        verdict(over_floor, TARGET_CPU_OVER_FLOOR)
    );
    t
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
            run.stats.requests
        );
    }
    t
}
