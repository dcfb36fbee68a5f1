//! `leafsync bench apply`: block application latency while `leaf/1` serving loads the node
//! (review finding H3, issue 13's goal: loaded p99 at most twice idle p99).
//!
//! Like the daemon: one multi-thread runtime with tokio's defaults; serve requests go through the
//! real serve path ([`RequestHandler::handle`] of a [`LeafServer`] with the daemon's default
//! [`ServeConfig`], called in the runtime's blocking pool as a p2p session does), and blocks are
//! folded and applied on the follower's dedicated [`ApplyThread`] (or, with `--shared-pool`, in
//! the blocking pool, as before the fix). Mainnet-sized synthetic blocks are applied back to
//! back: first for `--duration-secs` with no serving (idle), then for as long again while
//! `--clients` clients each keep one uncached chunk request in flight. The server's chunk cache is
//! off, as in `bench serve`'s uncached pass: every request reads the leafdb, as when an attacker
//! picks prefixes and byte classes no one asked for before. Prints one JSON object.

use std::{
    path::PathBuf,
    process::ExitCode,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use alloy_primitives::{B256, keccak256};
use leafsync_ingest::{
    ApplyThread, IngestError, TxTrace,
    bench::{IngestBenchParams, synthetic_trace},
    fold_block,
};
use leafsync_leafdb::{BlockHeader, DbOptions, GenParams, LeafDb, LeafDbConfig, RocksStore};
use leafsync_p2p::{
    PeerId,
    leaf::{GetChunk, WirePath},
    peers::RequestHandler,
    requests::LeafRequest,
};
use leafsync_serve::{LeafServer, ServeConfig};
use serde_json::json;

use super::{BlockShapeArgs, in_scratch_dir};
use crate::error::CliError;

/// Arguments of `bench apply`.
#[derive(Debug, clap::Args)]
pub(crate) struct ApplyBench {
    /// Accounts in the synthetic state.
    #[arg(long, default_value_t = 200_000)]
    pub(crate) accounts: u64,
    /// Seed of the generator.
    #[arg(long, default_value_t = 1)]
    pub(crate) seed: u64,
    /// Seconds of each phase (idle, then loaded).
    #[arg(long, default_value_t = 60)]
    pub(crate) duration_secs: u64,
    /// Serve clients in the loaded phase, each with one request in flight.
    #[arg(long, default_value_t = 32)]
    pub(crate) clients: usize,
    /// What each block changes.
    #[command(flatten)]
    pub(crate) block: BlockShapeArgs,
    /// Serve handler calls running at once (the daemon's global cap, p2p's
    /// `max_concurrent_handler_calls`); default: the daemon's default for this machine.
    #[arg(long, default_value_t = leafsync_p2p::peers::default_max_concurrent_handler_calls())]
    pub(crate) handler_cap: usize,
    /// Apply in the runtime's blocking pool (`spawn_blocking`, the follower before the fix)
    /// instead of the dedicated thread, for comparison.
    #[arg(long)]
    pub(crate) shared_pool: bool,
    /// Nice value of the runtime's threads (serve handlers); 0 leaves them at block
    /// application's priority, as before the fix.
    #[arg(long, default_value_t = crate::run::RUNTIME_THREAD_NICE)]
    pub(crate) runtime_nice: i32,
    /// Where to put the benchmark database (a fresh temporary directory inside it, removed at the
    /// end).
    #[arg(long, default_value = ".")]
    pub(crate) workdir: PathBuf,
}

/// Nibbles of a requested chunk prefix: 1 or 2, so that a request reads up to its byte class of
/// a 200k–1M state (hundreds to thousands of accounts), like a syncing client's first requests.
const LOAD_DEPTHS: [usize; 2] = [1, 2];

/// `max_bytes` of the load's requests: eight powers of two from 16 KiB to 2 MiB, one byte class
/// each, so that the same prefix asked with another class misses the cache too.
const LOAD_MAX_BYTES: [u64; 8] =
    [16 << 10, 32 << 10, 64 << 10, 128 << 10, 256 << 10, 512 << 10, 1 << 20, 2 << 20];

fn percentile_ms(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)].as_secs_f64() * 1e3
}

fn summary(latencies: &mut [Duration]) -> serde_json::Value {
    latencies.sort();
    let mean =
        latencies.iter().sum::<Duration>().as_secs_f64() * 1e3 / latencies.len().max(1) as f64;
    json!({
        "blocks": latencies.len(),
        "p50_ms": percentile_ms(latencies, 0.5),
        "p99_ms": percentile_ms(latencies, 0.99),
        "max_ms": latencies.last().map_or(0.0, |d| d.as_secs_f64() * 1e3),
        "mean_ms": mean,
    })
}

/// The blocks applied so far and how they are applied.
struct Blocks {
    db: Arc<LeafDb>,
    params: IngestBenchParams,
    head: BlockHeader,
    applier: ApplyThread,
    shared_pool: bool,
}

impl Blocks {
    /// Applies blocks back to back for `duration`; returns each block's fold-and-apply latency,
    /// measured from submission (queueing included) to completion.
    async fn run_for(&mut self, duration: Duration) -> Result<Vec<Duration>, CliError> {
        let mut latencies = Vec::new();
        let started = Instant::now();
        while started.elapsed() < duration {
            let number = self.head.number + 1;
            // Not timed: the trace JSON, as the execution client would send it, and its decoding.
            let (db, params) = (Arc::clone(&self.db), self.params);
            let traces: Vec<TxTrace> = self
                .applier
                .run(move || {
                    let text = synthetic_trace(&db, params, number)?.to_string();
                    serde_json::from_str(&text)
                        .map_err(|source| IngestError::Decode { method: "bench", source })
                })
                .await?;
            let header = BlockHeader {
                number,
                hash: keccak256(number.to_be_bytes()),
                parent_hash: self.head.hash,
                state_root: B256::ZERO,
                timestamp: 0,
            };
            let db = Arc::clone(&self.db);
            // The header takes the computed root (a synthetic block has no other): with a root
            // that mismatched, the state would be off the chain and the server would answer
            // every chunk empty, which is no serving load.
            let job = move || -> Result<BlockHeader, IngestError> {
                let diff = fold_block(number, &traces, &[], db.as_ref())?;
                Ok(db.apply_generated_block(&header, &diff)?.1)
            };
            let t = Instant::now();
            let header = if self.shared_pool {
                tokio::task::spawn_blocking(job).await.map_err(IngestError::from)??
            } else {
                self.applier.run(job).await?
            };
            latencies.push(t.elapsed());
            self.head = header;
        }
        Ok(latencies)
    }
}

/// Serve counters of the loaded phase.
#[derive(Default)]
struct Load {
    requests: AtomicU64,
    micros: AtomicU64,
}

/// One client: chunk requests with a random prefix and byte class, one at a time, through the
/// handler in the blocking pool, until `stop`.
async fn client(
    server: Arc<LeafServer<RocksStore>>,
    index: usize,
    stop: Arc<AtomicBool>,
    load: Arc<Load>,
    permits: Arc<tokio::sync::Semaphore>,
) {
    let h = keccak256(index.to_be_bytes());
    let peer = PeerId::from_slice(&[h.0, h.0].concat());
    let mut rng = leafsync_leafdb::generate::SplitMix::new(index as u64 ^ 0x5e7e);
    while !stop.load(Ordering::Relaxed) {
        let depth = LOAD_DEPTHS[rng.below(LOAD_DEPTHS.len() as u64) as usize];
        let max_bytes = LOAD_MAX_BYTES[rng.below(LOAD_MAX_BYTES.len() as u64) as usize];
        let mut prefix = WirePath::root();
        for _ in 0..depth {
            let nibble = rng.below(16) as u8;
            prefix = prefix.child(nibble).unwrap_or(prefix);
        }
        let request = LeafRequest::GetChunk(GetChunk { prefixes: vec![prefix], max_bytes });
        let server = Arc::clone(&server);
        let t = Instant::now();
        // The daemon's global cap on handler calls (p2p's `max_concurrent_handler_calls`).
        let Ok(permit) = Arc::clone(&permits).acquire_owned().await else { return };
        let call = tokio::task::spawn_blocking(move || {
            let answer = RequestHandler::handle(&*server, peer, &request);
            drop(permit);
            answer
        });
        if call.await.is_err() {
            return;
        }
        load.requests.fetch_add(1, Ordering::Relaxed);
        load.micros.fetch_add(t.elapsed().as_micros() as u64, Ordering::Relaxed);
    }
}

/// `leafsync bench apply`.
pub(crate) fn apply(args: &ApplyBench) -> Result<ExitCode, CliError> {
    let out = in_scratch_dir(&args.workdir, "apply", |dir| run(args, dir))?;
    println!("{out}");
    Ok(ExitCode::SUCCESS)
}

fn run(args: &ApplyBench, dir: &std::path::Path) -> Result<serde_json::Value, CliError> {
    let state = GenParams { accounts: args.accounts, seed: args.seed };
    let db = LeafDb::open(dir, &DbOptions::default(), LeafDbConfig::default())?;
    let t = Instant::now();
    db.generate(state)?;
    let generate_s = t.elapsed().as_secs_f64();
    let db = Arc::new(db);
    let head = db.head()?.unwrap_or_default();
    let params = IngestBenchParams {
        state,
        blocks: 0,
        block_accounts: args.block.block_accounts,
        block_slots: args.block.block_slots,
    };
    // The daemon's runtime (run.rs): tokio's defaults, threads at a lower CPU priority than
    // block application.
    let nice = args.runtime_nice;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .on_thread_start(move || crate::run::set_thread_nice(nice))
        .build()
        .map_err(|source| CliError::Io { path: PathBuf::from("<tokio runtime>"), source })?;
    let serve = ServeConfig { cache_bytes: 0, ..ServeConfig::default() };
    let server = Arc::new(LeafServer::new(Arc::clone(&db), serve));
    let duration = Duration::from_secs(args.duration_secs);
    let out = runtime.block_on(async {
        let mut blocks =
            Blocks { db, params, head, applier: ApplyThread::spawn()?, shared_pool: args.shared_pool };
        let mut idle = blocks.run_for(duration).await?;

        let stop = Arc::new(AtomicBool::new(false));
        let load = Arc::new(Load::default());
        let before = server.stats();
        let permits = Arc::new(tokio::sync::Semaphore::new(args.handler_cap));
        let clients: Vec<_> = (0..args.clients)
            .map(|i| {
                let permits = Arc::clone(&permits);
                tokio::spawn(client(Arc::clone(&server), i, stop.clone(), load.clone(), permits))
            })
            .collect();
        let mut loaded = blocks.run_for(duration).await?;
        stop.store(true, Ordering::Relaxed);
        for c in clients {
            let _ = c.await;
        }
        let after = server.stats();

        let idle = summary(&mut idle);
        let loaded = summary(&mut loaded);
        let idle_p99 = idle["p99_ms"].as_f64().unwrap_or(0.0);
        let loaded_p99 = loaded["p99_ms"].as_f64().unwrap_or(0.0);
        let ratio = if idle_p99 > 0.0 { loaded_p99 / idle_p99 } else { 0.0 };
        let requests = load.requests.load(Ordering::Relaxed);
        let hits = after.cache.hits - before.cache.hits;
        let misses = after.cache.misses - before.cache.misses;
        Ok::<_, CliError>(json!({
            "bench": "apply",
            "accounts": args.accounts,
            "generate_s": generate_s,
            "apply_on": if args.shared_pool { "blocking pool (spawn_blocking)" } else { "dedicated thread" },
            "runtime_nice": args.runtime_nice,
            "duration_secs": args.duration_secs,
            "block_accounts": args.block.block_accounts,
            "block_slots": args.block.block_slots,
            "idle": idle,
            "loaded": loaded,
            "ratio_p99_loaded_to_idle": ratio,
            "goal_p99_at_most_2x_idle": ratio <= 2.0,
            "serve": {
                "clients": args.clients,
                "handler_cap": args.handler_cap,
                "requests": requests,
                "requests_per_s": requests as f64 / duration.as_secs_f64().max(f64::MIN_POSITIVE),
                "mean_ms": load.micros.load(Ordering::Relaxed) as f64 / 1e3 / requests.max(1) as f64,
                "cache": "off",
                "cache_hits": hits,
                "cache_misses": misses,
            },
            "cores": std::thread::available_parallelism().map_or(0, |n| n.get()),
        }))
    })?;
    drop(runtime);
    Ok(out)
}
