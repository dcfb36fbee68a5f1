//! `leafsync bench ingest`: blocks per second through ingest's per-block path (trace JSON
//! decoding, fold, the undo read, apply_block) with mainnet-sized blocks on a synthetic state.

use std::process::ExitCode;

use leafsync_ingest::bench::{IngestBenchParams, run};
use leafsync_leafdb::GenParams;

use super::{StateBenchArgs, in_scratch_dir};
use crate::error::CliError;

/// Runs the benchmark (the same state and blocks as `bench leafdb`) and prints its JSON report.
pub(crate) fn ingest(args: &StateBenchArgs) -> Result<ExitCode, CliError> {
    let params = IngestBenchParams {
        state: GenParams { accounts: args.accounts, seed: args.seed },
        blocks: args.blocks,
        block_accounts: args.block.block_accounts,
        block_slots: args.block.block_slots,
    };
    let report = in_scratch_dir(&args.workdir, "ingest", |dir| Ok(run(dir, params)?))?;
    match serde_json::to_string_pretty(&report) {
        Ok(json) => println!("{json}"),
        Err(e) => {
            return Err(CliError::Invalid { what: "report".to_owned(), reason: e.to_string() });
        }
    }
    Ok(ExitCode::SUCCESS)
}
