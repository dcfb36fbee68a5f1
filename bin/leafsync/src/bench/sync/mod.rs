//! `leafsync bench sync`: leaf sync against heal-only sync of the same generated state, from `K`
//! servers over real RLPx on loopback, every peer behind an emulated WAN link (`wan.rs`). The
//! servers run in a child process (`servers.rs`) so the client's CPU time and memory are its own;
//! with `--clients N` that many clients sync from them at once (`clients.rs`), and with
//! `--churn` the servers apply blocks meanwhile (`churn.rs`). Prints a table (`report.rs`) and,
//! with `--json`, one JSON object as the last line (see docs/benchmarks.md).

mod churn;
mod clients;
mod examine;
mod report;
mod servers;
mod snap_source;
mod wan;

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
    sync::Arc,
    time::{Duration, Instant},
};

use leafsync_leafdb::{GenParams, LeafDb};
use leafsync_p2p::leaf::ChainHead;
use leafsync_sync::{
    PhaseTimes, SyncConfig, SyncMode, SyncStats, WorkKind, config::DEFAULT_CHUNK_TARGET_BYTES,
};
use serde_json::{Value, json};
use tokio::runtime::Runtime;

pub(crate) use self::servers::{ServersArgs, servers};
use self::{
    churn::{ChainReport, ChurnArgs},
    clients::{peers, sync_all},
    examine::{Examined, examine},
    report::{ratio, sources_table, table},
    servers::{ServerCounters, ServerProcess},
    snap_source::SnapServers,
    wan::{LEAF_KINDS, Links, Snappy, Traffic, WanConfig},
};
use crate::{
    bench::{
        BlockShapeArgs, PaceArgs, in_scratch_dir,
        leafdb::apply_generated,
        proc::{USER_HZ, cpu_s, cpu_split, cpu_ticks, peak_rss_mib, reset_peak_rss},
    },
    config::{Config, FileConfig},
    error::CliError,
    node::loopback::{check_servers, open, runtime},
};

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
    /// End every sync with the full scan of the flat state, as `sync.full_final_check` does
    /// (without it a clean sync ends on its root check).
    #[arg(long)]
    full_final_check: bool,
    /// Seed of the generator.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Where to put the databases (a fresh temporary directory inside it, removed at the end).
    #[arg(long, default_value = ".")]
    workdir: PathBuf,
    /// Blocks the servers apply while the clients sync (not with `--snap`).
    #[command(flatten)]
    churn: ChurnArgs,
    /// After the leaf sync, generated blocks applied to the first client's synced leafdb,
    /// opened again as `leafsync run` opens its own (`apply_after_sync` in the JSON).
    #[arg(long, default_value_t = 0)]
    apply_blocks: u64,
    /// What each of those blocks changes.
    #[command(flatten)]
    block: BlockShapeArgs,
    /// Also measure a repair (`repair` in the JSON, null otherwise): after the leaf sync, a
    /// client leafdb holding the generated state with this many generated blocks applied (the
    /// shape of `--block-accounts` and `--block-slots`), a state off the servers' chain, is
    /// synced back to the servers' state over what it holds, as the daemon repairs a state that
    /// went off the chain. Not with `--churn`.
    #[arg(long, default_value_t = 0)]
    repair_blocks: u64,
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
    /// `leaf/1` chunks from the server process over a leafdb off the servers' chain
    /// (`--repair-blocks`).
    Repair,
}

/// How every sync of a run is set up.
#[derive(Debug, Clone, Copy)]
struct Setup {
    wan: WanConfig,
    chunk_target_bytes: u64,
    /// `SyncConfig::full_final_check`.
    full_final_check: bool,
    /// Clients syncing at once (from leaf/1 servers; the snap/1 source syncs one).
    clients: usize,
    /// Blocks applied to the leaf sync's result ([`apply_after_sync`]).
    apply_blocks: u64,
    /// What each of them changes.
    block: BlockShapeArgs,
    /// The generator's seed (the blocks change its accounts).
    seed: u64,
    /// Blocks the client's leafdb is off the servers' chain by, for [`Source::Repair`].
    repair_blocks: u64,
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
    /// The kernel's part of the client process's CPU (the bench's own threads not left out).
    cpu_system_s: f64,
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
    /// Blocks applied to the first client's synced leafdb ([`apply_after_sync`]): their
    /// latencies' JSON.
    apply_after_sync: Option<Value>,
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
            "cpu_system_s": self.cpu_system_s,
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
            "implausible_splits": self.sum(|s| s.implausible_splits),
            "root_ok": self.root_ok,
            "apply_after_sync": self.apply_after_sync,
            "timeouts": self.sum(|s| s.timeouts),
            "chunks": self.sum(|s| s.chunks_done),
            "chunks_healed": self.sum(|s| s.chunks_healed),
            "chunks_split": self.sum(|s| s.chunks_split),
            "chunks_passed": self.sum(|s| s.chunks_passed),
            "chunks_stolen": self.sum(|s| s.chunks_stolen),
            "table_files": self.sum(|s| s.table_files),
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
    if source == Source::Repair {
        // The servers' state, then blocks of another chain: off the servers' chain.
        let params = GenParams { accounts: servers.accounts, seed: setup.seed };
        for db in &dbs {
            db.generate(params)?;
            let pace = PaceArgs::BACK_TO_BACK;
            apply_generated(db, params, setup.repair_blocks, &setup.block, pace)?;
        }
    }
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
        let config = SyncConfig {
            mode,
            chunk_target_bytes: setup.chunk_target_bytes,
            full_final_check: setup.full_final_check,
            ..SyncConfig::default()
        };
        let (cpu, wall) = (cpu_split("self")?, Instant::now());
        let outcomes = sync_all(&dbs, peer_sets, &config).await?;
        let (wall_s, after) = (wall.elapsed().as_secs_f64(), cpu_split("self")?);
        let (cpu_s, cpu_system_s) = (after.seconds_since(cpu), after.system_s_since(cpu));
        for client in nodes {
            client.shutdown().await?;
        }
        Ok::<_, CliError>((outcomes, wall_s, cpu_s, cpu_system_s, before))
    })?;
    let (outcomes, wall_s, cpu_s, cpu_system_s, before) = synced;
    let peak_rss_mib = peak_rss_mib();
    let server_counters = match counters_before {
        Some(before) => Some(servers.counters()?.since(before)),
        None => None,
    };
    let chain = if servers.churn.is_some() { Some(servers.chain()?) } else { None };
    // Every sender is gone with the syncer's peers: the threads end.
    let excluded = snappy.finish() + snap.map_or(0, SnapServers::finish);
    let excluded_cpu_s = excluded as f64 / USER_HZ + traffic.encode_cpu_s();
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
    // The clients' leafdbs close (the first may open again as the daemon's).
    drop(dbs);
    let apply_after_sync = if source == Source::Leaf && setup.apply_blocks > 0 {
        let params = GenParams { accounts: servers.accounts, seed: setup.seed };
        Some(apply_after_sync(&paths[0], params, setup)?)
    } else {
        None
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
        cpu_system_s,
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
        apply_after_sync,
    };
    // A long benchmark says where it is (the table comes at the end).
    eprintln!("bench sync: {source:?} sync done: {}", run.json());
    for path in &paths {
        std::fs::remove_dir_all(path)
            .map_err(|source| CliError::Io { path: path.clone(), source })?;
    }
    Ok((run, examined))
}

/// Opens the synced leafdb at `path` as `leafsync run` opens its own (the default `[leafdb]`
/// and `[p2p]` settings, the file descriptor limit raised for RocksDB's open files) and applies
/// `setup.apply_blocks` generated blocks to it: how a node follows the chain on the table files
/// a sync leaves (docs/leafdb.md, "Chunk imports"), against `bench leafdb`'s bulk-built state.
fn apply_after_sync(path: &Path, params: GenParams, setup: Setup) -> Result<Value, CliError> {
    let config = Config::validate(FileConfig::default(), "defaults")?;
    let (options, db_config) = crate::run::leafdb_options(&config);
    let db = LeafDb::open(path, &options, db_config)?;
    let pace = PaceArgs::BACK_TO_BACK;
    let latencies = apply_generated(&db, params, setup.apply_blocks, &setup.block, pace)?;
    Ok(latencies.json(json!({
        "blocks": setup.apply_blocks,
        "accounts_per_block": setup.block.block_accounts,
        "slots_per_block": setup.block.block_slots,
        "max_open_files": options.max_open_files,
    })))
}

/// `leafsync bench sync`.
pub(crate) fn sync(args: &SyncBench) -> Result<ExitCode, CliError> {
    check_servers(args.servers)?;
    args.churn.check()?;
    if args.churn.enabled() && args.repair_blocks > 0 {
        return Err(CliError::Invalid {
            what: "--repair-blocks".into(),
            reason: "the repair syncs back to the generated state: not with --churn".into(),
        });
    }
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
    let setup = Setup {
        wan,
        chunk_target_bytes: chunk_target,
        full_final_check: args.full_final_check,
        clients: args.clients,
        apply_blocks: args.apply_blocks,
        block: args.block,
        seed: args.seed,
        repair_blocks: args.repair_blocks,
    };
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
    let repair =
        if args.repair_blocks > 0 { Some(once(Source::Repair, None, "repair")?.0) } else { None };
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
        && repair.as_ref().is_none_or(|r| r.root_ok)
        && snap.as_ref().is_none_or(|s| s.root_ok);
    let json = json!({
        "bench": "sync",
        "accounts": args.accounts,
        "servers": args.servers,
        "rtt_ms": args.rtt_ms,
        "mbit": args.mbit,
        "chunk_target_bytes": chunk_target,
        "full_final_check": args.full_final_check,
        "clients": args.clients,
        "churn": servers.churn,
        "slots": servers.slots,
        "generate_s": servers.generate_s,
        "raw_leaf_bytes": floor.raw_leaf_bytes,
        "raw_code_bytes": floor.raw_code_bytes,
        "floor_cpu_s": floor.floor_cpu_s,
        "floor_system_s": floor.floor_system_s,
        "floor_wall_s": floor.floor_wall_s,
        "keccak_lanes": leafsync_leafdb::trie::keccak_lanes(),
        "leaf": leaf.json(),
        "heal_only": heal_only.as_ref().map_or(Value::Null, Run::json),
        "snap": snap.as_ref().map_or(Value::Null, Run::json),
        "repair_blocks": args.repair_blocks,
        "repair": repair.as_ref().map_or(Value::Null, Run::json),
    });
    let mut table = table(args, &servers, &floor, &leaf, heal_only.as_ref());
    table += &sources_table(&leaf, heal_only.as_ref(), snap.as_ref(), repair.as_ref());
    if let Some(median) = leaf.apply_after_sync.as_ref().and_then(|a| a["median_ms"].as_f64()) {
        table += &format!(
            "\n{} blocks applied to the synced leafdb afterwards: median {median:.1} ms\n",
            args.apply_blocks
        );
    }
    Ok(Report { table, json, ok })
}
