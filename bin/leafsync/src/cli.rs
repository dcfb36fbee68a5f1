//! Command-line interface.

use std::{path::PathBuf, process::ExitCode};

use clap::{Args, Parser, Subcommand};

use crate::{bench, error::CliError, tool};

/// leafsync: a devp2p sidecar that keeps a flat copy of the Ethereum state and serves and syncs
/// it over the `leaf/1` capability.
#[derive(Debug, Parser)]
#[command(version, about)]
pub(crate) struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Starts servers and a client on loopback over a generated state, syncs, and checks the
    /// result (non-zero exit if the client's state differs).
    Demo(crate::demo::DemoArgs),
    /// Runs the daemon: serves the datadir's state over leaf/1 (see docs/operators.md).
    Run(crate::config::RunFlags),
    /// Checks a configuration file and prints the merged configuration.
    CheckConfig(crate::config::RunFlags),
    /// Asks a running daemon for its phase, head and peers (admin JSON-RPC).
    Status {
        /// The daemon's admin JSON-RPC.
        #[arg(long, default_value = crate::config::DEFAULT_ADMIN_URL)]
        rpc: String,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Offline tools working on a datadir or a file.
    #[command(subcommand)]
    Tool(ToolCommand),
    /// Benchmarks printing JSON (see docs/benchmarks.md).
    #[command(subcommand)]
    Bench(BenchCommand),
}

#[derive(Debug, Subcommand)]
enum ToolCommand {
    /// Prints the state root of a genesis allocation (geth genesis file or bare alloc).
    StateRoot {
        /// The JSON file.
        #[arg(long)]
        alloc: PathBuf,
    },
    /// Writes a deterministic synthetic state into an empty datadir and prints its root.
    GenState {
        /// The datadir (created if missing; must not hold a state).
        #[arg(long)]
        datadir: PathBuf,
        /// Number of accounts.
        #[arg(long, default_value_t = 100_000)]
        accounts: u64,
        /// Seed of the generator.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Loads a genesis allocation into an empty datadir and prints its root.
    InitGenesis {
        /// The datadir.
        #[arg(long)]
        datadir: PathBuf,
        /// The JSON file.
        #[arg(long)]
        alloc: PathBuf,
    },
    /// Recomputes all roots from the flat tables and compares them with the stored tries and
    /// head; exits non-zero on any mismatch.
    Verify {
        /// The datadir.
        #[arg(long)]
        datadir: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// Bulk build and apply_block on a synthetic state.
    Leafdb(LeafdbBench),
    /// leaf/1 serving: chunk MB/s uncached and cached, nodes/s, p99 per request kind.
    Serve(crate::bench_serve::ServeBench),
    /// Block application latency (p50/p99) idle and while clients request uncached chunks.
    Apply(crate::bench_apply::ApplyBench),
    /// Ingest: blocks per second through trace decoding, fold and apply_block.
    Ingest(crate::bench_ingest::IngestBench),
    /// Leaf sync against heal-only sync from servers on loopback behind emulated WAN links.
    Sync(crate::bench_sync::SyncBench),
    /// The servers of `bench sync`, run by it in a child process (not for direct use).
    #[command(hide = true)]
    SyncServers(crate::bench_sync::ServersArgs),
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

impl Cli {
    /// Default log level: quiet for benchmarks, whose stdout is JSON. `None` for the daemon,
    /// which takes its level from its configuration.
    pub(crate) fn default_log_level(&self) -> Option<&'static str> {
        match self.command {
            // Benchmarks apply synthetic blocks whose header roots are unknown: root mismatch
            // warnings would only be noise there.
            Command::Bench(_) => Some("error"),
            Command::Tool(_) | Command::CheckConfig(_) => Some("info"),
            Command::Demo(_) => Some("info,leafsync_p2p=warn"),
            Command::Status { .. } => Some("warn"),
            Command::Run(_) => None,
        }
    }

    pub(crate) fn run(self) -> Result<ExitCode, CliError> {
        match self.command {
            Command::Run(flags) => {
                let config = crate::config::Config::load(&flags)?;
                crate::init_logging(&config.log_level);
                crate::run::run(&config)
            }
            Command::Status { rpc, json } => crate::admin::status(&rpc, json),
            Command::Demo(args) => crate::demo::demo(&args),
            Command::CheckConfig(flags) => {
                let (file, origin) = crate::config::FileConfig::load(&flags)?;
                let config = crate::config::Config::validate(file.clone(), &origin)?;
                println!("{file:#?}");
                println!(
                    "chain: {} (network {}, genesis {})",
                    config.chain.name, config.chain.network_id, config.chain.genesis_hash
                );
                Ok(ExitCode::SUCCESS)
            }
            Command::Tool(ToolCommand::StateRoot { alloc }) => tool::state_root(&alloc),
            Command::Tool(ToolCommand::GenState { datadir, accounts, seed }) => {
                tool::gen_state(&datadir, accounts, seed)
            }
            Command::Tool(ToolCommand::InitGenesis { datadir, alloc }) => {
                tool::init_genesis(&datadir, &alloc)
            }
            Command::Tool(ToolCommand::Verify { datadir }) => tool::verify(&datadir),
            Command::Bench(BenchCommand::Leafdb(args)) => bench::leafdb(&args),
            Command::Bench(BenchCommand::Serve(args)) => crate::bench_serve::serve(&args),
            Command::Bench(BenchCommand::Apply(args)) => crate::bench_apply::apply(&args),
            Command::Bench(BenchCommand::Ingest(args)) => crate::bench_ingest::ingest(&args),
            Command::Bench(BenchCommand::Sync(args)) => crate::bench_sync::sync(&args),
            Command::Bench(BenchCommand::SyncServers(args)) => crate::bench_sync::servers(&args),
        }
    }
}
