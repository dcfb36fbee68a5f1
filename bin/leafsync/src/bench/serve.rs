//! `leafsync bench serve`: `leaf/1` serving throughput over a generated state in RocksDB. Prints
//! one JSON object: chunk MB/s uncached and cached, nodes per second, p50/p99 latency per
//! request kind.

use std::{
    path::PathBuf,
    process::ExitCode,
    sync::Arc,
    time::{Duration, Instant},
};

use alloy_primitives::{B256, keccak256};
use leafsync_leafdb::{DbOptions, GenParams, LeafDb, LeafDbConfig};
use leafsync_p2p::leaf::{
    AccountStorage, ChunkContent, GetChunk, GetCodes, GetNodes, GetStorageChunk, LeafMessage,
    LeafRequest, LeafResponse, NodeRequest, StoragePrefix, TrieOwner, WirePath,
    protocol::MAX_RESPONSE_BYTES,
};
use leafsync_serve::{LeafServer, ServeConfig};
use serde_json::json;

use super::in_scratch_dir;
use crate::error::CliError;

/// Accounts per chunk the benchmark aims at when it picks the chunk depth (a few hundred KiB per
/// chunk with inline storage, well under the 2 MiB cap, like a real client's first guess).
const TARGET_ACCOUNTS_PER_CHUNK: u64 = 4000;

/// Node requests per `GetNodes` (the protocol maximum).
const NODES_PER_REQUEST: usize = 384;

/// Code hashes per `GetCodes`.
const CODES_PER_REQUEST: usize = 64;

/// Arguments of `bench serve`.
#[derive(Debug, clap::Args)]
pub(crate) struct ServeBench {
    /// Accounts in the synthetic state.
    #[arg(long, default_value_t = 1_000_000)]
    pub(crate) accounts: u64,
    /// Seed of the generator.
    #[arg(long, default_value_t = 1)]
    pub(crate) seed: u64,
    /// Where to put the benchmark database (a fresh temporary directory inside it, removed at the
    /// end). Ignored with `--datadir`.
    #[arg(long, default_value = ".")]
    pub(crate) workdir: PathBuf,
    /// Reuse (or generate once and keep) the state in this directory.
    #[arg(long)]
    pub(crate) datadir: Option<PathBuf>,
    /// `max_bytes` of every chunk request.
    #[arg(long, default_value_t = MAX_RESPONSE_BYTES)]
    pub(crate) max_bytes: u64,
    /// Cached passes over all chunks (after one warming pass).
    #[arg(long, default_value_t = 3)]
    pub(crate) cached_passes: u32,
}

/// Latencies of one request kind and the bytes answered.
#[derive(Default)]
struct Kind {
    latencies: Vec<Duration>,
    bytes: u64,
    items: u64,
}

impl Kind {
    fn add(&mut self, latency: Duration, bytes: usize, items: usize) {
        self.latencies.push(latency);
        self.bytes += bytes as u64;
        self.items += items as u64;
    }

    fn summary(&mut self) -> serde_json::Value {
        self.latencies.sort();
        let total: Duration = self.latencies.iter().sum();
        let secs = total.as_secs_f64();
        json!({
            "requests": self.latencies.len(),
            "items": self.items,
            "mb": self.bytes as f64 / 1e6,
            "seconds": secs,
            "mb_per_s": if secs > 0.0 { self.bytes as f64 / 1e6 / secs } else { 0.0 },
            "items_per_s": if secs > 0.0 { self.items as f64 / secs } else { 0.0 },
            "p50_ms": percentile_ms(&self.latencies, 0.5),
            "p99_ms": percentile_ms(&self.latencies, 0.99),
            "max_ms": self.latencies.last().map_or(0.0, |d| d.as_secs_f64() * 1e3),
        })
    }
}

fn percentile_ms(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)].as_secs_f64() * 1e3
}

/// The prefix of `depth` nibbles numbered `index` (big-endian base 16).
fn prefix(depth: usize, index: usize) -> WirePath {
    (0..depth).fold(WirePath::root(), |p, d| {
        let nibble = ((index >> (4 * (depth - 1 - d))) & 0xf) as u8;
        // A nibble below 16 on a path shorter than 64 always has a child.
        p.child(nibble).unwrap_or(p)
    })
}

/// Sends one request and returns the decoded answer, its payload size and the time the answer
/// took (query, cache and the wire payload). An undecodable answer is a server bug: it is counted
/// in `failures` (reported in the JSON, and the exit code is then a failure).
fn ask<S: leafsync_leafdb::KvStore>(
    server: &LeafServer<S>,
    request: &LeafRequest,
    failures: &mut u64,
) -> Option<(LeafResponse, usize, Duration)> {
    let t = Instant::now();
    let encoded = server.answer(request);
    let payload = encoded.payload(0);
    let elapsed = t.elapsed();
    let decoded = LeafMessage::decode(encoded.id, &payload)
        .ok()
        .and_then(LeafMessage::into_response)
        .map(|pair| (pair.message, payload.len(), elapsed));
    if decoded.is_none() {
        eprintln!("serve benchmark: undecodable answer to {request:?}");
        *failures += 1;
    }
    decoded
}

/// One pass over every chunk (subdividing "too large" ones); returns the large-storage accounts.
fn chunk_pass<S: leafsync_leafdb::KvStore>(
    server: &LeafServer<S>,
    depth: usize,
    max_bytes: u64,
    kind: &mut Kind,
    failures: &mut u64,
) -> Vec<B256> {
    let mut large = Vec::new();
    let mut stack: Vec<WirePath> =
        (0..16usize.pow(depth as u32)).rev().map(|i| prefix(depth, i)).collect();
    while let Some(prefix) = stack.pop() {
        let request = GetChunk { prefixes: vec![prefix.clone()], max_bytes };
        let Some((LeafResponse::Chunk(chunk), size, elapsed)) =
            ask(server, &request.into(), failures)
        else {
            continue;
        };
        let Some(piece) = chunk.pieces.into_iter().next() else {
            eprintln!("serve benchmark: no piece for {prefix:?}");
            *failures += 1;
            continue;
        };
        match piece.content {
            ChunkContent::Items(leaves) => {
                kind.add(elapsed, size, leaves.len());
                large.extend(
                    leaves
                        .iter()
                        .filter(|l| matches!(l.storage, AccountStorage::Large { .. }))
                        .map(|l| l.hashed_address),
                );
            }
            ChunkContent::TooLarge => {
                kind.add(elapsed, size, 0);
                stack.extend((0..16).rev().filter_map(|n| prefix.child(n)));
            }
        }
    }
    large
}

/// `leafsync bench serve`.
pub(crate) fn serve(args: &ServeBench) -> Result<ExitCode, CliError> {
    let out = match &args.datadir {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .map_err(|source| CliError::Io { path: dir.clone(), source })?;
            run(args, dir)?
        }
        None => in_scratch_dir(&args.workdir, "serve", |dir| run(args, dir))?,
    };
    println!("{out}");
    let ok = out["failures"].as_u64() == Some(0) && out["nodes_served"] == out["nodes_requested"];
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn run(args: &ServeBench, dir: &std::path::Path) -> Result<serde_json::Value, CliError> {
    let params = GenParams { accounts: args.accounts, seed: args.seed };
    let db = LeafDb::open(dir, &DbOptions::default(), LeafDbConfig::default())?;
    let t = Instant::now();
    let generated = if db.head()?.is_none() {
        db.generate(params)?;
        true
    } else {
        false
    };
    let generate_s = t.elapsed().as_secs_f64();
    let db = Arc::new(db);
    let mut depth = 0;
    while args.accounts >> (4 * depth) > TARGET_ACCOUNTS_PER_CHUNK {
        depth += 1;
    }

    // Uncached: every request reads the leafdb.
    let uncached_server =
        LeafServer::new(Arc::clone(&db), ServeConfig { cache_bytes: 0, ..ServeConfig::default() });
    let mut failures = 0u64;
    let mut uncached = Kind::default();
    let large = chunk_pass(&uncached_server, depth, args.max_bytes, &mut uncached, &mut failures);

    // Cached: one warming pass, then timed passes served from the cache.
    let cached_server = LeafServer::new(
        Arc::clone(&db),
        ServeConfig { cache_bytes: 4 << 30, ..ServeConfig::default() },
    );
    chunk_pass(&cached_server, depth, args.max_bytes, &mut Kind::default(), &mut failures);
    let mut cached = Kind::default();
    for _ in 0..args.cached_passes {
        chunk_pass(&cached_server, depth, args.max_bytes, &mut cached, &mut failures);
    }
    let cache_stats = cached_server.stats().cache;

    // Storage chunks: every large storage at depth 1.
    let mut storage = Kind::default();
    for account in &large {
        for n in 0..16u8 {
            let chunk = StoragePrefix { account: *account, prefix: prefix(1, usize::from(n)) };
            let request = GetStorageChunk { chunks: vec![chunk], max_bytes: args.max_bytes };
            if let Some((LeafResponse::StorageChunk(c), size, elapsed)) =
                ask(&uncached_server, &request.into(), &mut failures)
            {
                storage.add(elapsed, size, c.pieces.iter().map(|p| p.content.len()).sum());
            }
        }
    }

    // Nodes: the account trie's stored nodes down to depth 4, in batches of 384.
    let snap = db.snapshot()?;
    let mut wanted = Vec::new();
    for d in 0..=4usize {
        for i in 0..16usize.pow(d as u32) {
            let path = prefix(d, i);
            let at = alloy_trie::Nibbles::from_nibbles(path.as_slice());
            if let Some(node) = snap.node(None, &at)? {
                wanted.push(NodeRequest {
                    owner: TrieOwner::Accounts,
                    path,
                    hash: keccak256(&node),
                });
            }
        }
    }
    drop(snap);
    let mut nodes = Kind::default();
    let mut served_nodes = 0usize;
    for batch in wanted.chunks(NODES_PER_REQUEST) {
        let request = GetNodes { nodes: batch.to_vec(), max_bytes: MAX_RESPONSE_BYTES };
        if let Some((LeafResponse::Nodes(n), size, elapsed)) =
            ask(&uncached_server, &request.into(), &mut failures)
        {
            let found = n.nodes.iter().filter(|b| !b.is_empty()).count();
            served_nodes += found;
            nodes.add(elapsed, size, found);
        }
    }

    // Codes: the whole code pool in batches.
    let hashes: Vec<B256> = (0..params.code_pool()).map(|k| keccak256(params.code(k))).collect();
    let mut codes = Kind::default();
    for batch in hashes.chunks(CODES_PER_REQUEST) {
        let request = GetCodes { hashes: batch.to_vec(), max_bytes: MAX_RESPONSE_BYTES };
        if let Some((LeafResponse::Codes(c), size, elapsed)) =
            ask(&uncached_server, &request.into(), &mut failures)
        {
            codes.add(elapsed, size, c.codes.iter().filter(|b| !b.is_empty()).count());
        }
    }

    let uncached_summary = uncached.summary();
    let cached_summary = cached.summary();
    let speedup = cached_summary["mb_per_s"].as_f64().unwrap_or(0.0)
        / uncached_summary["mb_per_s"].as_f64().unwrap_or(1.0).max(f64::MIN_POSITIVE);
    Ok(json!({
        "bench": "serve",
        "accounts": args.accounts,
        "generated": generated,
        "generate_s": generate_s,
        "chunk_depth": depth,
        "max_bytes": args.max_bytes,
        "chunks_uncached": uncached_summary,
        "chunks_cached": cached_summary,
        "cached_speedup": speedup,
        "cache": {
            "hits": cache_stats.hits,
            "misses": cache_stats.misses,
            "entries": cache_stats.entries,
            "bytes": cache_stats.bytes,
        },
        "large_storages": large.len(),
        "storage_chunks": storage.summary(),
        "nodes": nodes.summary(),
        "nodes_requested": wanted.len(),
        "nodes_served": served_nodes,
        "codes": codes.summary(),
        "failures": failures,
    }))
}
