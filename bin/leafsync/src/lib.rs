//! The `leafsync` binary's library: the CLI, the configuration, and the [`node::Node`] that the
//! daemon, the demo, the benchmarks and the tests all start. `main.rs` is a thin shell.

#![cfg_attr(not(test), warn(unused_crate_dependencies))]

mod admin;
mod bench;
mod cli;
mod config;
mod demo;
mod error;
pub mod node;
mod phase;
mod progress;
mod run;
mod tool;

use std::process::ExitCode;

use clap::Parser;
// The process's allocator is set by `main.rs`, not here.
use tikv_jemallocator as _;

pub use crate::{config::ConfigError, error::CliError};

/// Parses the command line, runs the command and reports its error with its causes.
pub fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    if let Some(level) = cli.default_log_level() {
        init_logging(level);
    }
    match cli.run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                eprintln!("  caused by: {s}");
                source = s.source();
            }
            ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr (stdout carries command output), above the sync progress bar when one is
/// drawn; `RUST_LOG` overrides the level.
pub(crate) fn init_logging(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // A second call (there is none today) would keep the first subscriber. Colours only on a
    // terminal: log files and journald get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(progress::log_writer)
        .with_ansi(ansi)
        .try_init();
}
