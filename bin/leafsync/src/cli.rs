//! Command-line interface.

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};

use crate::{bench::BenchCommand, error::CliError, tool};

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
    /// Runs the daemon: syncs an empty datadir from peers, serves its state over leaf/1 (and
    /// snap/1), follows the execution client (see docs/operators.md).
    Run(crate::config::RunFlags),
    /// Checks a configuration file and prints the merged configuration as TOML.
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

impl Cli {
    /// Whether the command only prints and exits (`check-config`, `status`, `tool`): it may
    /// end as other command-line tools do when its reader goes away (`leafsync status | head`),
    /// where Rust's ignored `SIGPIPE` would make the next print panic. The daemon, the demo and
    /// the benchmarks keep `SIGPIPE` ignored (their sockets and child pipes report errors).
    pub(crate) fn prints_and_exits(&self) -> bool {
        matches!(self.command, Command::CheckConfig(_) | Command::Status { .. } | Command::Tool(_))
    }

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
                let config = crate::config::Config::validate_with_flags(
                    file.clone(),
                    &origin,
                    &flags.keys(),
                )?;
                println!("# leafsync check-config: {origin} with the flags and defaults applied");
                println!(
                    "# chain: {} (network {}, genesis {})",
                    config.chain.name, config.chain.network_id, config.chain.genesis_hash
                );
                print!("{}", file.to_toml(&origin)?);
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
            Command::Bench(command) => command.run(),
        }
    }
}
