//! `leafsync run`: the daemon. It serves the leafdb over `leaf/1` (with discv5 discovery, static
//! and trusted peers) and, with `el.rpc`, follows the execution client block by block (an empty
//! leafdb is first loaded from `el.genesis`). An empty leafdb without a genesis file is first
//! synced from `leaf/1` peers (pivot: the execution client's head when there is one).

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
    sync::Arc,
};

use leafsync_leafdb::{DbOptions, LeafDb, LeafDbConfig, LeafDbError};
use leafsync_p2p::NodeKey;
use tracing::{debug, info, warn};

use crate::{
    config::{Config, NetworkSettings},
    error::CliError,
    node::{Node, NodeBuilder},
};

/// Name of the node key file in the datadir: the secp256k1 secret as 64 hex characters.
pub(crate) const NODEKEY_FILE: &str = "nodekey";

/// File descriptors kept for everything but RocksDB's table files, on top of the sockets counted
/// from the config (see [`fd_reserve`]): 256 for stdio, the discv5 socket, the execution client's
/// connection, RocksDB's WAL, MANIFEST, LOCK and info log, the SST writers of a bulk import, the
/// runtime's epoll and event descriptors, and a margin.
pub(crate) const FD_RESERVE_BASE: u64 = 256;
/// The database's least share of the file descriptors when the limit is below the reserve plus
/// this: then it gets half the limit instead.
pub(crate) const MIN_DB_OPEN_FILES: u64 = 64;
/// Highest soft RLIMIT_NOFILE asked for when the hard limit is higher or unlimited: 2^20, Linux's
/// default `fs.nr_open`, beyond which `setrlimit` fails. RocksDB may keep all of it but the
/// reserve open ([`db_open_files`]): a freshly synced leafdb holds ~700 table files per million
/// accounts (5,546–5,750 at 8M in docs/benchmarks.md), ~150–200k on mainnet until compactions
/// merge them, and a file RocksDB had to close is opened again (its index read again) on the
/// next read that needs it.
pub(crate) const FD_LIMIT_CEILING: u64 = 1 << 20;

/// File descriptors to leave for sockets and the rest: [`FD_RESERVE_BASE`], every p2p session
/// and pending handshake, and both HTTP endpoints at their connection cap.
pub(crate) fn fd_reserve(max_inbound: usize, max_outbound: usize) -> u64 {
    FD_RESERVE_BASE
        + (max_inbound + max_outbound + leafsync_p2p::peers::MAX_PENDING_INBOUND) as u64
        + 2 * crate::admin::MAX_HTTP_CONNECTIONS as u64
}

/// RocksDB's `max_open_files` under a file descriptor limit of `limit`: the limit less
/// `reserve` (as many table files as the limit allows, see [`FD_LIMIT_CEILING`]); half the limit
/// when that would leave the database fewer than [`MIN_DB_OPEN_FILES`]. Always below `limit`
/// (`i32::MAX` for a limit beyond it, an unlimited one).
pub(crate) fn db_open_files(limit: u64, reserve: u64) -> i32 {
    let share = match limit.checked_sub(reserve) {
        Some(left) if left >= MIN_DB_OPEN_FILES => left,
        _ => limit / 2,
    };
    i32::try_from(share).unwrap_or(i32::MAX)
}

/// Raises the soft RLIMIT_NOFILE to the hard limit (at most [`FD_LIMIT_CEILING`]), as geth does:
/// the usual soft limit of 1024 is what RocksDB alone can reach on a mainnet state. Returns the
/// soft limit before and after.
#[cfg(unix)]
pub(crate) fn raise_fd_limit() -> std::io::Result<(u64, u64)> {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit only writes the struct we pass, which lives for the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let before = limit.rlim_cur;
    let target = limit.rlim_max.min(FD_LIMIT_CEILING);
    if before >= target {
        return Ok((before, before));
    }
    let raised = libc::rlimit { rlim_cur: target, rlim_max: limit.rlim_max };
    // SAFETY: setrlimit only reads the struct we pass.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok((before, target))
}

/// CPU nice value of the runtime's threads (network, `leaf/1` serve handlers in the blocking
/// pool, admin, the sync), against 0 for the block application thread and RocksDB's own threads:
/// 19, the lowest priority. The Linux scheduler weighs a nice-19 thread at 15 against 1024 for a
/// nice-0 one, so however many serve handlers run, block application keeps nearly a whole core
/// when it needs it (review finding H3), while serving still gets every cycle block application
/// (a fraction of each 12 s slot) and the execution client leave idle. At nice 10 (weight 110),
/// 32 busy handlers on 2 cores still tripled block latency in `bench apply`.
pub(crate) const RUNTIME_THREAD_NICE: i32 = 19;

/// Lowers the calling thread's CPU priority to [`RUNTIME_THREAD_NICE`] (Linux, where the nice
/// value is per thread; elsewhere nothing). Best effort: a failure is only logged. A thread
/// spawned later from a lowered thread inherits its value, so the block application thread must
/// be started from the main thread.
pub(crate) fn lower_thread_priority() {
    set_thread_nice(RUNTIME_THREAD_NICE);
}

/// Sets the calling thread's nice value (Linux; elsewhere nothing). Best effort, see
/// [`lower_thread_priority`].
pub(crate) fn set_thread_nice(nice: i32) {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: setpriority takes plain integers; who = 0 is the calling thread on Linux.
        if unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, nice) } != 0 {
            debug!(error = %std::io::Error::last_os_error(), nice, "cannot set a thread's priority");
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = nice;
}

/// Raises the file descriptor limit and returns RocksDB's `max_open_files` for it (RocksDB's
/// default when the limit cannot be read).
fn size_open_files(network: &NetworkSettings) -> i32 {
    let reserve = fd_reserve(network.max_inbound, network.max_outbound);
    #[cfg(unix)]
    match raise_fd_limit() {
        Ok((before, now)) => {
            let files = db_open_files(now, reserve);
            info!(before, now, reserve, max_open_files = files, "file descriptor limit");
            if now < reserve + 4 * MIN_DB_OPEN_FILES {
                warn!(
                    limit = now,
                    reserve,
                    "the file descriptor limit is low for a node; raise the hard limit \
                     (LimitNOFILE= in systemd, `ulimit -Hn`)"
                );
            }
            return files;
        }
        Err(e) => warn!(error = %e, "cannot read or raise the file descriptor limit"),
    }
    DbOptions::default().max_open_files
}

/// The options `leafsync run` opens the leafdb with under `config` (raising the file descriptor
/// limit for RocksDB's open files).
pub(crate) fn leafdb_options(config: &Config) -> (DbOptions, LeafDbConfig) {
    config.leafdb.leafdb_options(size_open_files(&config.network))
}

/// Creates the datadir `path` unless it is there; an error names it, and says so when something
/// other than a directory stands there.
pub(crate) fn create_datadir(path: &Path) -> Result<(), CliError> {
    if path.exists() && !path.is_dir() {
        return Err(CliError::Invalid {
            what: format!("datadir {}", path.display()),
            reason: "exists and is not a directory".into(),
        });
    }
    std::fs::create_dir_all(path)
        .map_err(|source| CliError::Io { path: path.to_path_buf(), source })
}

/// `leafsync run`: opens the datadir, builds the node from `config` and runs it until SIGINT or
/// SIGTERM.
pub(crate) fn run(config: &Config) -> Result<ExitCode, CliError> {
    let datadir = &config.datadir;
    info!(
        version = env!("CARGO_PKG_VERSION"),
        leafdb_schema = leafsync_leafdb::SCHEMA_VERSION,
        chain = %config.chain.name,
        datadir = %datadir.display(),
        "leafsync starting"
    );
    create_datadir(datadir)?;
    let (options, db_config) = leafdb_options(config);
    let db = Arc::new(LeafDb::open(&datadir.join("leafdb"), &options, db_config)?);
    db.bind_chain(config.chain.genesis_hash).map_err(|e| match e {
        LeafDbError::OtherChain { .. } => CliError::Invalid {
            what: format!("datadir {}", datadir.display()),
            reason: format!(
                "{e}, which `chain = {:?}` names: use another datadir",
                config.chain.name
            ),
        },
        e => e.into(),
    })?;
    let key = NodeKey::load_or_create(&datadir.join(NODEKEY_FILE))?;
    if key.created() {
        info!(path = %datadir.join(NODEKEY_FILE).display(), "created a new node key");
    }
    // Serve handlers (and the network) yield the CPU to block application, whose thread the
    // follower starts from this (main) thread, at the normal priority.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .on_thread_start(lower_thread_priority)
        .build()
        .map_err(|source| CliError::Io { path: PathBuf::from("<tokio runtime>"), source })?;
    let builder = NodeBuilder::from_config(config, db, key.secret());
    let ran = runtime.block_on(async move {
        // Both run in `block_on`'s future, on this thread: see `NodeBuilder::start`.
        let node = builder.start().await?;
        let shutdown = shutdown_signals();
        print_endpoints(&node).await;
        node.run(shutdown).await
    });
    // Work on blocking threads that outlived the node would hold the exit for as long as it
    // runs (the flat-state scan of a stopped sync has its own stop flag; this is the backstop):
    // the leafdb survives being cut off anywhere, so it is given a few seconds, no more.
    runtime.shutdown_timeout(RUNTIME_SHUTDOWN_TIMEOUT);
    ran?;
    Ok(ExitCode::SUCCESS)
}

/// How long work still running on the runtime's blocking threads may hold the exit once the
/// node has stopped.
const RUNTIME_SHUTDOWN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// The exit status after a second SIGINT or SIGTERM cut a shutdown short (128 + SIGINT, as a
/// shell reports an interrupted command).
pub(crate) const SECOND_SIGNAL_EXIT: i32 = 130;

/// Machine-readable lines on stdout (everything else goes to the log on stderr): the enode, the
/// ENR, and the admin and metrics addresses.
async fn print_endpoints(node: &Node) {
    println!("enode: {}", node.network().local_enode());
    match node.network().local_enr().await {
        Some(enr) => println!("enr: {}", enr.to_base64()),
        None => println!("enr: none (discovery is off)"),
    }
    if let Some(bound) = node.admin_addr() {
        println!("admin: http://{bound}");
    }
    if let Some(bound) = node.metrics_addr() {
        println!("metrics: http://{bound}/metrics");
    }
}

/// A future resolving on SIGINT or SIGTERM. The handlers are installed at once, not when the
/// future is first polled, so a signal sent as soon as the endpoints are printed is not lost.
/// Once it has resolved, a second SIGINT or SIGTERM ends the process at once (exit status
/// [`SECOND_SIGNAL_EXIT`]): tokio's handlers stay installed for good, so without this an
/// operator's second Ctrl-C during a slow shutdown would do nothing. The leafdb survives an
/// abrupt end anywhere (a sync resumes from its record, a block is applied atomically). Must be
/// called within the runtime.
pub(crate) fn shutdown_signals() -> impl Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let (int, term) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate()));
        async move {
            match (int, term) {
                (Ok(mut int), Ok(mut term)) => {
                    tokio::select! {
                        _ = int.recv() => {}
                        _ = term.recv() => {}
                    }
                    info!("stopping; a second SIGINT or SIGTERM ends the process at once");
                    tokio::spawn(async move {
                        tokio::select! {
                            _ = int.recv() => {}
                            _ = term.recv() => {}
                        }
                        warn!("second signal: exiting at once (the leafdb is safe to cut off)");
                        std::process::exit(SECOND_SIGNAL_EXIT);
                    });
                }
                (_, Err(e)) | (Err(e), _) => {
                    warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops the daemon");
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests fail loudly on bad fixtures

    use leafsync_leafdb::test_utils::ChildTest;

    use super::*;

    /// The child of [`a_second_signal_ends_a_slow_shutdown_at_once`]: waits for the shutdown
    /// signal as the daemon does, then stalls as a shutdown held by slow work would.
    #[test]
    #[ignore = "run as a child process by a_second_signal_ends_a_slow_shutdown_at_once"]
    fn second_signal_child() {
        if !ChildTest::is_child() {
            return; // run by its parent test only
        }
        let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let shutdown = shutdown_signals();
            println!("ready");
            shutdown.await;
            println!("stopping");
            std::future::pending::<()>().await;
        });
    }

    /// tokio keeps its signal handlers for good: without a watcher of its own, a second Ctrl-C
    /// or SIGTERM during a slow shutdown did nothing, and only kill -9 ended the daemon.
    #[test]
    fn a_second_signal_ends_a_slow_shutdown_at_once() {
        const WAIT: std::time::Duration = std::time::Duration::from_secs(20);
        let signal = |child: &ChildTest, name: &str| {
            let pid = child.id().to_string();
            assert!(
                std::process::Command::new("kill").args([name, &pid]).status().unwrap().success()
            );
        };
        let mut child = ChildTest::spawn("run::tests::second_signal_child", []).unwrap();
        assert!(child.wait_for(WAIT, |l| l.ends_with("ready").then_some(())).is_some());
        signal(&child, "-TERM");
        assert!(child.wait_for(WAIT, |l| l.ends_with("stopping").then_some(())).is_some());
        assert_eq!(child.exit_within(std::time::Duration::from_millis(500)).unwrap(), None);
        signal(&child, "-INT");
        let status = child.exit_within(WAIT).unwrap().expect("the second signal ended it");
        assert_eq!(status.code(), Some(SECOND_SIGNAL_EXIT));
    }

    #[test]
    fn the_database_leaves_the_socket_reserve_and_stays_under_the_limit() {
        let reserve = fd_reserve(50, 25);
        assert_eq!(reserve, 256 + 50 + 25 + 32 + 512);
        for limit in (0..5000).chain([20_000, 65_536, 524_288, 1 << 20, u64::MAX]) {
            let files = db_open_files(limit, reserve) as u64;
            assert!(files < limit.max(1), "limit {limit}: {files}");
            if limit >= reserve + MIN_DB_OPEN_FILES {
                assert!(files + reserve <= limit, "limit {limit}: {files} leaves no reserve");
                assert!(files >= MIN_DB_OPEN_FILES);
            } else {
                assert_eq!(files, limit / 2);
            }
        }
        assert_eq!(db_open_files(1024, reserve), 1024 - 875);
        assert_eq!(db_open_files(20_000, reserve) as u64, 20_000 - reserve);
        assert_eq!(db_open_files(1 << 20, reserve) as u64, (1 << 20) - reserve);
        assert_eq!(db_open_files(u64::MAX, reserve), i32::MAX);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn runtime_threads_run_at_a_lower_priority_than_block_application() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .on_thread_start(lower_thread_priority)
            .build()
            .unwrap();
        // SAFETY: getpriority takes plain integers; who = 0 is the calling thread on Linux.
        let nice = || unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
        let main = nice();
        let (blocking, worker) = runtime.block_on(async move {
            let blocking = tokio::task::spawn_blocking(nice).await.unwrap();
            (blocking, tokio::spawn(async move { nice() }).await.unwrap())
        });
        assert_eq!((blocking, worker), (RUNTIME_THREAD_NICE, RUNTIME_THREAD_NICE));
        assert!(main < RUNTIME_THREAD_NICE, "the main thread keeps its priority: {main}");
        let apply = leafsync_ingest::ApplyThread::spawn().unwrap();
        assert_eq!(runtime.block_on(apply.run(move || Ok(nice()))).unwrap(), main);
    }

    #[cfg(unix)]
    #[test]
    fn the_soft_fd_limit_is_raised_to_the_hard_one() {
        let (before, now) = raise_fd_limit().unwrap();
        assert!(now >= before);
        let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: getrlimit only writes the struct passed.
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) }, 0);
        assert_eq!(limit.rlim_cur, now);
        assert_eq!(now, limit.rlim_max.min(FD_LIMIT_CEILING).max(before));
    }
}
