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
    if cli.prints_and_exits() {
        // SAFETY: sets this process's SIGPIPE disposition to the default before any thread is
        // started; nothing else here handles SIGPIPE.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
    if let Some(level) = cli.default_log_level() {
        init_logging(level);
    }
    match cli.run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("{}", error_report(&e));
            if e.leafdb_damaged() { ExitCode::from(error::DAMAGED_EXIT) } else { ExitCode::FAILURE }
        }
    }
}

/// The log filter of a configured `level`: that level, and `discv5` at `error` unless the level
/// names it. discv5 warns about packets any sender can make (a handshake packet without a
/// matching challenge, a source over its rate), each a line: at `info` a stranger could fill
/// the operator's log.
fn log_filter(level: &str) -> String {
    if level.contains("discv5") { level.to_owned() } else { format!("{level},discv5=error") }
}

/// Logs go to stderr (stdout carries command output), above the sync progress bar when one is
/// drawn; `RUST_LOG` overrides the level, `log.level` and `--log` alike (one that is not a
/// tracing filter is named in a warning and `default` used).
pub(crate) fn init_logging(default: &str) {
    let default = &log_filter(default);
    // `RUST_LOG` keeps discv5 at `error` too, unless it names it.
    // An empty `RUST_LOG` (`RUST_LOG=${RUST_LOG}` with the variable unset) is no filter: with
    // discv5's directive alone it would hide every other line, errors included.
    let from_env = std::env::var(tracing_subscriber::EnvFilter::DEFAULT_ENV)
        .ok()
        .filter(|level| !level.trim().is_empty())
        .map(|level| tracing_subscriber::EnvFilter::try_new(log_filter(&level)));
    let (filter, refused) = match from_env {
        Some(Ok(filter)) => (filter, None),
        Some(Err(e)) => (tracing_subscriber::EnvFilter::new(default), Some(e)),
        None => (tracing_subscriber::EnvFilter::new(default), None),
    };
    // A second call (there is none today) would keep the first subscriber. Colours only on a
    // terminal: log files and journald get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(progress::log_writer)
        .with_ansi(ansi)
        .try_init();
    if let Some(e) = refused {
        tracing::warn!(error = %e, filter = default, "RUST_LOG is not a tracing filter and is ignored");
    }
}

/// The error and its causes, one line each; a cause whose message the report already holds (an
/// error that shows its source in its own message) is left out.
fn error_report(e: &dyn std::error::Error) -> String {
    let mut report = format!("error: {e}");
    let mut source = e.source();
    while let Some(cause) = source {
        let message = cause.to_string();
        if !report.contains(&message) {
            report.push_str("\n  caused by: ");
            report.push_str(&message);
        }
        source = cause.source();
    }
    report
}

#[cfg(test)]
mod tests {
    use super::{error_report, log_filter};

    /// discv5's warnings (packets any sender can make) stay out of a log at `info`, unless the
    /// level names discv5; other warnings stay in.
    #[test]
    fn discv5_logs_only_errors_unless_named() {
        use tracing::Level;
        use tracing_subscriber::layer::SubscriberExt;
        let warns = |level: &str, discv5: bool| {
            let filter = tracing_subscriber::EnvFilter::new(log_filter(level));
            let subscriber = tracing_subscriber::registry().with(filter);
            tracing::subscriber::with_default(subscriber, || {
                if discv5 {
                    tracing::event_enabled!(target: "discv5::handler", Level::WARN)
                } else {
                    tracing::event_enabled!(target: "leafsync::node", Level::WARN)
                }
            })
        };
        assert!(!warns("info", true));
        assert!(warns("info", false));
        assert!(warns("info,discv5=warn", true));
    }

    /// An error with a message of its own and an optional cause.
    #[derive(Debug)]
    struct E(&'static str, Option<Box<E>>);

    impl std::fmt::Display for E {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for E {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|e| e as _)
        }
    }

    #[test]
    fn causes_already_said_are_left_out() {
        let io = E("Resource temporarily unavailable", None);
        let shown = E("storage: Resource temporarily unavailable", Some(Box::new(io)));
        assert_eq!(error_report(&shown), "error: storage: Resource temporarily unavailable");
        let hidden = E("opening the leafdb", Some(Box::new(E("disk full", None))));
        assert_eq!(error_report(&hidden), "error: opening the leafdb\n  caused by: disk full");
    }
}
