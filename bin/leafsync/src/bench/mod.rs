//! `leafsync bench …`: benchmarks that print JSON on stdout (see docs/benchmarks.md). This file
//! owns the subcommand and every argument shared by several benchmarks; each benchmark is a
//! module of its own.

mod apply;
mod ingest;
mod leafdb;
mod proc;
mod serve;
mod sync;

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
};

use clap::{Args, Subcommand};

use crate::error::CliError;

#[derive(Debug, Subcommand)]
pub(crate) enum BenchCommand {
    /// Bulk build and apply_block on a synthetic state.
    Leafdb(LeafdbBench),
    /// leaf/1 serving: chunk MB/s uncached and cached, nodes/s, p99 per request kind.
    Serve(serve::ServeBench),
    /// Block application latency (p50/p99) idle and while clients request uncached chunks.
    Apply(apply::ApplyBench),
    /// Ingest: blocks per second through trace decoding, fold and apply_block.
    Ingest(StateBenchArgs),
    /// Leaf sync against heal-only sync from servers on loopback behind emulated WAN links.
    Sync(sync::SyncBench),
    /// The servers of `bench sync`, run by it in a child process (not for direct use).
    #[command(hide = true)]
    SyncServers(sync::ServersArgs),
}

/// Arguments of `bench leafdb`.
#[derive(Debug, Args)]
pub(crate) struct LeafdbBench {
    /// The state and the blocks applied to it.
    #[command(flatten)]
    pub(crate) state: StateBenchArgs,
    /// Blocks for which replaced nodes stay in the recent-node cache (0 disables it).
    #[arg(long, default_value_t = leafsync_leafdb::DEFAULT_RECENT_BLOCKS)]
    pub(crate) recent_blocks: u64,
    /// RocksDB block cache, MiB: the daemon's `leafdb.block_cache_mib` (at least 1).
    #[arg(long, default_value_t = (leafsync_leafdb::kv::rocks::DEFAULT_BLOCK_CACHE_BYTES >> 20) as u64,
          value_parser = clap::value_parser!(u64).range(1..=1 << 20))]
    pub(crate) block_cache_mib: u64,
    /// How the blocks are spaced.
    #[command(flatten)]
    pub(crate) pace: PaceArgs,
}

/// How a benchmark spaces the blocks it applies (`bench leafdb`): a node following a chain gets
/// one block a slot, and RocksDB flushes and compacts what each block wrote before the next.
#[derive(Debug, Clone, Copy, Args)]
pub(crate) struct PaceArgs {
    /// Blocks applied first and not timed, so that the timed ones meet a node's steady state:
    /// the recent-node cache full (it keeps `--recent-blocks` blocks) and RocksDB's levels
    /// grown by what blocks write.
    #[arg(long, default_value_t = leafsync_leafdb::DEFAULT_RECENT_BLOCKS)]
    pub(crate) warmup_blocks: u64,
    /// Before each block, wait until RocksDB has no flush or compaction to do, at most this
    /// many milliseconds: the chain's slot (12 s on mainnet). 0: blocks back to back, RocksDB's
    /// background work competing with them.
    #[arg(long, default_value_t = 12_000)]
    pub(crate) slot_ms: u64,
}

impl PaceArgs {
    /// Blocks back to back from the first: no warm-up, no wait.
    pub(crate) const BACK_TO_BACK: Self = Self { warmup_blocks: 0, slot_ms: 0 };
}

/// A synthetic state and mainnet-sized blocks applied to it: shared by the benchmarks that
/// apply blocks (`bench leafdb`, `bench ingest`).
#[derive(Debug, Args)]
pub(crate) struct StateBenchArgs {
    /// Accounts in the synthetic state.
    #[arg(long, default_value_t = 1_000_000)]
    pub(crate) accounts: u64,
    /// Blocks applied.
    #[arg(long, default_value_t = 30)]
    pub(crate) blocks: u64,
    /// What each block changes.
    #[command(flatten)]
    pub(crate) block: BlockShapeArgs,
    /// Where to put the benchmark database (a fresh temporary directory inside it).
    #[arg(long, default_value = ".")]
    pub(crate) workdir: PathBuf,
    /// Seed of the generator.
    #[arg(long, default_value_t = 1)]
    pub(crate) seed: u64,
}

/// What each of a benchmark's mainnet-sized blocks changes (`bench leafdb`, `ingest`, `apply`,
/// `sync --apply-blocks`).
#[derive(Debug, Clone, Copy, Args)]
pub(crate) struct BlockShapeArgs {
    /// Accounts changed per block.
    #[arg(long, default_value_t = 2_000)]
    pub(crate) block_accounts: u64,
    /// Storage slots changed per block.
    #[arg(long, default_value_t = 5_000)]
    pub(crate) block_slots: u64,
}

/// Runs `f` in a fresh directory `<workdir>/leafsync-bench-<name>-<pid>` for a benchmark's
/// databases, and removes the directory afterwards whether `f` succeeded or not.
pub(crate) fn in_scratch_dir<T>(
    workdir: &Path,
    name: &str,
    f: impl FnOnce(&Path) -> Result<T, CliError>,
) -> Result<T, CliError> {
    let dir = workdir.join(format!("leafsync-bench-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|source| CliError::Io { path: dir.clone(), source })?;
    let result = f(&dir);
    let cleanup = std::fs::remove_dir_all(&dir);
    let out = result?;
    cleanup.map_err(|source| CliError::Io { path: dir, source })?;
    Ok(out)
}

impl BenchCommand {
    /// Runs the benchmark.
    pub(crate) fn run(self) -> Result<ExitCode, CliError> {
        match self {
            Self::Leafdb(args) => leafdb::leafdb(&args),
            Self::Serve(args) => serve::serve(&args),
            Self::Apply(args) => apply::apply(&args),
            Self::Ingest(args) => ingest::ingest(&args),
            Self::Sync(args) => sync::sync(&args),
            Self::SyncServers(args) => sync::servers(&args),
        }
    }
}
