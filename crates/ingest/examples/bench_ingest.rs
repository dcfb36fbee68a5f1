//! Runs the ingest benchmark and prints its JSON report:
//! `cargo run --release -p leafsync-ingest --example bench_ingest -- [ACCOUNTS] [BLOCKS] [WORKDIR]`.

use leafsync_ingest::bench::{IngestBenchParams, run};
use leafsync_leafdb::GenParams;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let accounts = args.next().map_or(Ok(1_000_000), |a| a.parse())?;
    let blocks = args.next().map_or(Ok(20), |a| a.parse())?;
    let workdir = args.next().unwrap_or_else(|| ".".to_owned());
    let dir = std::path::Path::new(&workdir)
        .join(format!("leafsync-ingest-bench-{}", std::process::id()));
    let params = IngestBenchParams {
        state: GenParams { accounts, seed: 1 },
        blocks,
        block_accounts: 2_000,
        block_slots: 5_000,
    };
    let report = run(&dir, params);
    let _ = std::fs::remove_dir_all(&dir);
    println!("{}", serde_json::to_string_pretty(&report?)?);
    Ok(())
}
