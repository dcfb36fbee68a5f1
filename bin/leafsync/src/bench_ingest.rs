//! `leafsync bench ingest`: blocks per second through ingest's per-block path (trace JSON
//! decoding, fold, apply_block) with mainnet-sized blocks on a synthetic state.

use std::{path::PathBuf, process::ExitCode};

use leafsync_ingest::bench::{IngestBenchParams, run};
use leafsync_leafdb::GenParams;

use crate::error::CliError;

/// Arguments of `bench ingest`.
#[derive(Debug, clap::Args)]
pub(crate) struct IngestBench {
    /// Accounts in the synthetic state.
    #[arg(long, default_value_t = 1_000_000)]
    pub(crate) accounts: u64,
    /// Blocks applied.
    #[arg(long, default_value_t = 30)]
    pub(crate) blocks: u64,
    /// Accounts changed per block.
    #[arg(long, default_value_t = 2_000)]
    pub(crate) block_accounts: u64,
    /// Storage slots changed per block.
    #[arg(long, default_value_t = 5_000)]
    pub(crate) block_slots: u64,
    /// Where to put the benchmark database (a fresh temporary directory inside it).
    #[arg(long, default_value = ".")]
    pub(crate) workdir: PathBuf,
    /// Seed of the generator.
    #[arg(long, default_value_t = 1)]
    pub(crate) seed: u64,
}

/// Runs the benchmark and prints its JSON report.
pub(crate) fn ingest(args: &IngestBench) -> Result<ExitCode, CliError> {
    let dir = args.workdir.join(format!("leafsync-bench-ingest-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|source| CliError::Io { path: dir.clone(), source })?;
    let params = IngestBenchParams {
        state: GenParams { accounts: args.accounts, seed: args.seed },
        blocks: args.blocks,
        block_accounts: args.block_accounts,
        block_slots: args.block_slots,
    };
    let report = run(&dir, params);
    let _ = std::fs::remove_dir_all(&dir);
    let report = report?;
    match serde_json::to_string_pretty(&report) {
        Ok(json) => println!("{json}"),
        Err(e) => {
            return Err(CliError::Invalid { what: "report".to_owned(), reason: e.to_string() });
        }
    }
    Ok(ExitCode::SUCCESS)
}
