//! `leafsync run`: the daemon. It serves the leafdb over `leaf/1` (with discv5 discovery, static
//! and trusted peers) and, with `el.rpc`, follows the execution client block by block (an empty
//! leafdb is first loaded from `el.genesis`). An empty leafdb without a genesis file is first
//! synced from `leaf/1` peers (pivot: the execution client's head when there is one).

use std::{
    io::Write,
    path::{Path, PathBuf},
    process::ExitCode,
    sync::Arc,
};

use alloy_primitives::B256;
use alloy_trie::EMPTY_ROOT_HASH;
use leafsync_ingest::RpcClient;
use leafsync_ingest::{Follower, FollowerConfig, IngestError, IngestStats};
use leafsync_leafdb::{DbOptions, LeafDb, LeafDbConfig};
use leafsync_p2p::{
    discovery::DiscoveryConfig,
    leaf::{ChainHead, ServeFlags},
    peers::{LocalHead, Network, NetworkConfig, NetworkHandle},
};
use leafsync_serve::{LeafServer, ServeConfig};
use leafsync_sync::{SyncError, SyncStats, Syncer, network_peers, watch_network_peers};
use secp256k1::SecretKey;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::{
    config::{Config, PivotSource},
    error::CliError,
};

/// Name of the node key file in the datadir: the secp256k1 secret as 64 hex characters.
pub(crate) const NODEKEY_FILE: &str = "nodekey";

/// Loads the node key, creating it (readable by the owner only) on first start.
fn node_key(datadir: &Path) -> Result<SecretKey, CliError> {
    let path = datadir.join(NODEKEY_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let bytes =
                alloy_primitives::hex::decode(text.trim()).map_err(|e| CliError::Invalid {
                    what: path.display().to_string(),
                    reason: format!("not a hex node key: {e}"),
                })?;
            SecretKey::from_byte_array(bytes.as_slice().try_into().map_err(|_| {
                CliError::Invalid {
                    what: path.display().to_string(),
                    reason: "a node key is 32 bytes".into(),
                }
            })?)
            .map_err(|e| CliError::Invalid {
                what: path.display().to_string(),
                reason: e.to_string(),
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = SecretKey::new(&mut rand::rng());
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
            let mut f =
                opts.open(&path).map_err(|source| CliError::Io { path: path.clone(), source })?;
            f.write_all(alloy_primitives::hex::encode(key.secret_bytes()).as_bytes())
                .map_err(|source| CliError::Io { path: path.clone(), source })?;
            info!(path = %path.display(), "created a new node key");
            Ok(key)
        }
        Err(source) => Err(CliError::Io { path, source }),
    }
}

/// Accounts estimate from one 1/256 slice of the key space (cheap at start-up, ±10% on large
/// states).
fn account_estimate(db: &LeafDb) -> Result<u64, CliError> {
    let snap = db.snapshot()?;
    let prefix = alloy_trie::Nibbles::from_nibbles([0, 0]);
    let slice = snap.accounts_with_prefix(&prefix).count() as u64;
    Ok(slice * 256)
}

/// File descriptors kept for everything but RocksDB's table files, on top of the sockets counted
/// from the config (see [`fd_reserve`]): 256 for stdio, the discv5 socket, the execution client's
/// connection, RocksDB's WAL, MANIFEST, LOCK and info log, the SST writers of a bulk import, the
/// runtime's epoll and event descriptors, and a margin.
pub(crate) const FD_RESERVE_BASE: u64 = 256;
/// The database's least share of the file descriptors when the limit is below the reserve plus
/// this: then it gets half the limit instead.
pub(crate) const MIN_DB_OPEN_FILES: u64 = 64;
/// The most table files RocksDB keeps open: 65,536 files of 64 MiB are 4 TiB, far more than a
/// mainnet state, so the table cache never evicts below this.
pub(crate) const MAX_DB_OPEN_FILES: u64 = 65_536;
/// Highest soft RLIMIT_NOFILE asked for when the hard limit is higher or unlimited: 2^20, Linux's
/// default `fs.nr_open`, beyond which `setrlimit` fails.
pub(crate) const FD_LIMIT_CEILING: u64 = 1 << 20;

/// File descriptors to leave for sockets and the rest: [`FD_RESERVE_BASE`], every p2p session
/// and pending handshake, and both HTTP endpoints at their connection cap.
pub(crate) fn fd_reserve(max_inbound: usize, max_outbound: usize) -> u64 {
    FD_RESERVE_BASE
        + (max_inbound + max_outbound + leafsync_p2p::peers::MAX_PENDING_INBOUND) as u64
        + 2 * crate::admin::MAX_HTTP_CONNECTIONS as u64
}

/// RocksDB's `max_open_files` under a file descriptor limit of `limit`: the limit less
/// `reserve`, at most [`MAX_DB_OPEN_FILES`]; half the limit when that would leave the database
/// fewer than [`MIN_DB_OPEN_FILES`]. Always below `limit`.
pub(crate) fn db_open_files(limit: u64, reserve: u64) -> i32 {
    let share = match limit.checked_sub(reserve) {
        Some(left) if left >= MIN_DB_OPEN_FILES => left,
        _ => limit / 2,
    };
    i32::try_from(share.min(MAX_DB_OPEN_FILES)).unwrap_or(i32::MAX)
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
fn size_open_files(config: &Config) -> i32 {
    let reserve = fd_reserve(config.file.p2p.max_inbound, config.file.p2p.max_outbound);
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

pub(crate) fn run(config: Config) -> Result<ExitCode, CliError> {
    let datadir: PathBuf = config.file.datadir.clone();
    std::fs::create_dir_all(&datadir)
        .map_err(|source| CliError::Io { path: datadir.clone(), source })?;
    let options = DbOptions::default()
        .block_cache_bytes(config.file.leafdb.block_cache_mib << 20)
        .max_open_files(size_open_files(&config));
    let db_config = LeafDbConfig {
        recent_blocks: config.file.leafdb.recent_blocks,
        recent_cache_bytes: config.file.leafdb.recent_cache_mib << 20,
        ..LeafDbConfig::default()
    };
    let db = Arc::new(LeafDb::open(&datadir.join("leafdb"), &options, db_config)?);
    // Serve handlers (and the network) yield the CPU to block application, whose thread the
    // follower starts from this (main) thread, at the normal priority.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .on_thread_start(lower_thread_priority)
        .build()
        .map_err(|source| CliError::Io { path: PathBuf::from("<tokio runtime>"), source })?;
    let (stop_tx, stop_rx) = watch::channel(false);
    // An empty leafdb without a genesis file to load is synced from leaf/1 peers first; the
    // execution client is followed from then on.
    let needs_sync = db.head()?.is_none() && config.file.el.genesis.is_none();
    // Following the execution client, when configured: it also bootstraps an empty leafdb from
    // `el.genesis` before anything is served.
    let start_follower =
        |runtime: &tokio::runtime::Handle| -> Result<Option<FollowerTask>, CliError> {
            let Some(url) = &config.file.el.rpc else { return Ok(None) };
            let mut fc = FollowerConfig::new(url.clone());
            fc.genesis.clone_from(&config.file.el.genesis);
            let _guard = runtime.enter();
            // Called on the main thread (directly, or in `block_on`'s future), never on a
            // runtime thread: the block application thread it starts keeps the normal priority.
            let follower = Follower::new(db.clone(), fc)?;
            let stats = follower.stats();
            Ok(Some((stats, runtime.spawn(follower.run(stop_rx.clone())))))
        };
    let follower = if needs_sync { None } else { start_follower(runtime.handle())? };
    let head = match db.head()? {
        Some(head) => Some(head),
        None if follower.is_some() => {
            Some(runtime.block_on(wait_for_bootstrap(&db, follower.as_ref()))?)
        }
        None => None,
    };
    let key = node_key(&datadir)?;
    let local = match head {
        Some(head) => LocalHead {
            head: ChainHead { number: head.number, hash: head.hash, state_root: head.state_root },
            timestamp: if head.number == 0 { config.chain.genesis_timestamp } else { unix_now() },
            account_estimate: account_estimate(&db)?,
            serves: serve_flags(&db, &head)?,
        },
        // Nothing to serve until the sync is done.
        None => LocalHead {
            head: ChainHead { number: 0, hash: B256::ZERO, state_root: EMPTY_ROOT_HASH },
            timestamp: config.chain.genesis_timestamp,
            account_estimate: 0,
            serves: ServeFlags::default(),
        },
    };
    let syncing = Arc::new(AtomicBool::new(needs_sync));
    let (sync_tx, sync_rx) = watch::channel(SyncStats::default());
    let serve = ServeConfig {
        inline_storage_bytes: config.file.serve.inline_storage_bytes,
        cache_bytes: config.file.serve.cache_bytes,
        cache_reuse_blocks: config.file.serve.cache_reuse_blocks,
        ..ServeConfig::default()
    };
    let server = Arc::new(LeafServer::new(db.clone(), serve));
    let handler = server.clone();

    // Set now when following already, else once the follower starts after the sync.
    let ingest_stats = std::sync::OnceLock::new();
    if let Some((stats, _)) = &follower {
        let _ = ingest_stats.set(stats.clone());
    }
    let (db_task, server_task) = (db.clone(), server.clone());
    let sync_settings = config.clone();
    runtime.block_on(async move {
        let (db, server) = (db_task, server_task);
        let (head_tx, head_rx) = watch::channel(local);
        let mut net = NetworkConfig::new(key, config.chain.clone(), head_rx, handler);
        net.listen_addr = config.listen;
        net.static_peers = config.static_peers.clone();
        net.trusted_peers = config.trusted_peers.clone();
        net.max_inbound = config.file.p2p.max_inbound;
        net.max_outbound = config.file.p2p.max_outbound;
        if config.file.p2p.discovery {
            let ip = match config.listen.ip() {
                std::net::IpAddr::V4(ip) => ip,
                std::net::IpAddr::V6(_) => std::net::Ipv4Addr::UNSPECIFIED,
            };
            // A node listening on a loopback or private address is on a test network or a LAN:
            // its peers have such addresses too, and share few IPs.
            let local = ip.is_loopback() || ip.is_private();
            net.discovery = Some(DiscoveryConfig {
                listen_addr: std::net::SocketAddrV4::new(ip, config.listen.port()),
                bootnodes: config.bootnodes.clone(),
                allow_local_addresses: local,
                ip_limit: !local,
                packet_filter: !local,
                ..DiscoveryConfig::default()
            });
        }
        let handle = Network::start(net).await?;
        let state = Arc::new(crate::admin::AdminState {
            network: handle.clone(),
            db: db.clone(),
            server: server.clone(),
            chain: config.chain.clone(),
            started: std::time::Instant::now(),
            ingest: ingest_stats,
            syncing: syncing.clone(),
            sync: sync_rx,
            added_peers: std::sync::Mutex::default(),
        });
        // Peers learn our new heads as the follower applies blocks.
        tokio::spawn(announce_heads(db.clone(), head_tx));
        // Machine-readable lines on stdout; everything else goes to the log on stderr.
        println!("enode: {}", handle.local_enode());
        match handle.local_enr().await {
            Some(enr) => println!("enr: {}", enr.to_base64()),
            None => println!("enr: none (discovery is off)"),
        }
        if let Some(addr) = config.admin {
            let bound = crate::admin::serve(addr, crate::admin::Role::Admin, state.clone()).await?;
            println!("admin: http://{bound}");
        }
        if let Some(addr) = config.metrics {
            let bound =
                crate::admin::serve(addr, crate::admin::Role::Metrics, state.clone()).await?;
            println!("metrics: http://{bound}/metrics");
        }
        info!(
            chain = %config.chain.name,
            head = local.head.number,
            state_root = %local.head.state_root,
            accounts = local.account_estimate,
            enode = %handle.local_enode(),
            "leaf/1 network up"
        );
        let mut follower = follower;
        if needs_sync {
            tokio::select! {
                () = wait_for_shutdown() => {
                    info!("shutting down during sync (progress is kept)");
                    handle.shutdown().await;
                    return Ok(());
                }
                r = sync_from_peers(&handle, &db, &sync_settings, sync_tx) => r?,
            }
            syncing.store(false, Ordering::Relaxed);
            follower = start_follower(&tokio::runtime::Handle::current())?;
            if let Some((stats, _)) = &follower {
                let _ = state.ingest.set(stats.clone());
            }
        }
        let reason = match follower.as_mut() {
            Some((_, task)) => tokio::select! {
                () = wait_for_shutdown() => None,
                r = task => Some(r),
            },
            None => {
                wait_for_shutdown().await;
                None
            }
        };
        info!("shutting down");
        let _ = stop_tx.send(true);
        if let Some((_, task)) = follower
            && reason.is_none()
            && tokio::time::timeout(FOLLOWER_STOP_TIMEOUT, task).await.is_err()
        {
            warn!("the follower did not stop in time");
        }
        handle.shutdown().await;
        match reason {
            Some(Ok(Ok(()))) | None => {}
            Some(Ok(Err(e))) => return Err(CliError::Ingest(e)),
            Some(Err(e)) => warn!(error = %e, "the follower task failed"),
        }
        Ok::<_, CliError>(())
    })?;
    // Dropping the runtime ends every task (sessions, admin server) and their references.
    drop(runtime);
    drop(server);
    match Arc::try_unwrap(db) {
        Ok(db) => drop(db),
        Err(_) => warn!("the database is still referenced at shutdown; RocksDB closes it at exit"),
    }
    info!("database closed; bye");
    Ok(ExitCode::SUCCESS)
}

/// How long shutdown waits for the follower to finish the block it is applying.
const FOLLOWER_STOP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// How often the leafdb head is checked for announcement to peers.
const HEAD_CHECK_INTERVAL: std::time::Duration = std::time::Duration::from_millis(500);
/// How long an empty leafdb may take to be bootstrapped from the genesis file.
const BOOTSTRAP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);

/// How long a node with an empty leafdb waits for its first `leaf/1` peer before it says so
/// in the log again (it keeps waiting).
const PEER_WAIT_LOG_INTERVAL: std::time::Duration = std::time::Duration::from_secs(30);

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// How often the execution client's head is read for the pivot feed.
const EL_HEAD_POLL_INTERVAL: std::time::Duration = std::time::Duration::from_secs(2);
/// Pause before a sync that found no usable peer starts again from its record.
const SYNC_RETRY_PAUSE: std::time::Duration = std::time::Duration::from_secs(5);

/// The execution client's head, read now.
async fn el_head(rpc: &mut RpcClient) -> Result<ChainHead, leafsync_ingest::IngestError> {
    let number = rpc.block_number().await?;
    let block = rpc.block(number).await?;
    Ok(ChainHead { number, hash: block.hash, state_root: block.state_root })
}

/// A feed of the execution client's heads (the trusted pivot): waits for the first one, then a
/// task polls for newer ones until the receiver is dropped.
async fn el_pivot_feed(url: &str) -> Result<watch::Receiver<ChainHead>, CliError> {
    let mut rpc = RpcClient::new(url)?;
    let mut last_log: Option<std::time::Instant> = None;
    let first = loop {
        match el_head(&mut rpc).await {
            Ok(head) => break head,
            Err(e) => {
                if last_log.is_none_or(|t| t.elapsed() > PEER_WAIT_LOG_INTERVAL) {
                    warn!(url, error = %e, "cannot read the execution client's head for the sync pivot; retrying");
                    last_log = Some(std::time::Instant::now());
                }
                rpc.reset();
                tokio::time::sleep(EL_HEAD_POLL_INTERVAL).await;
            }
        }
    };
    info!(number = first.number, state_root = %first.state_root, "sync pivot from the execution client");
    let (tx, rx) = watch::channel(first);
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = tx.closed() => return,
                () = tokio::time::sleep(EL_HEAD_POLL_INTERVAL) => {}
            }
            match el_head(&mut rpc).await {
                Ok(head) if head.number > tx.borrow().number => {
                    tx.send_replace(head);
                }
                Ok(_) => {}
                Err(e) => {
                    debug!(error = %e, "execution client head not read; the pivot stays");
                    rpc.reset();
                }
            }
        }
    });
    Ok(rx)
}

/// Waits for peers, then syncs the empty leafdb from them; peers that connect later join. The
/// pivot is the execution client's head (`sync.pivot`), else the head most peers announce. A
/// sync that runs out of usable peers waits for peers again and resumes from its record.
async fn sync_from_peers(
    handle: &NetworkHandle,
    db: &Arc<LeafDb>,
    config: &Config,
    progress: watch::Sender<SyncStats>,
) -> Result<(), CliError> {
    let settings = &config.file.sync;
    // A checkpoint is a fixed trusted pivot; else the execution client's head is the trusted,
    // moving one; peers' heads only where `config.peer_pivot` allows.
    let checkpoint = match settings.pivot {
        PivotSource::Auto | PivotSource::Checkpoint => config.checkpoint,
        PivotSource::El | PivotSource::Peers => None,
    };
    let feed = match (settings.pivot, &config.file.el.rpc) {
        (PivotSource::Auto, Some(url)) if checkpoint.is_none() => Some(el_pivot_feed(url).await?),
        (PivotSource::El, Some(url)) => Some(el_pivot_feed(url).await?),
        _ => None,
    };
    if let Some(c) = checkpoint {
        info!(number = c.number, hash = %c.hash, state_root = %c.state_root, "sync pivot from sync.checkpoint");
    } else if feed.is_none() && !config.peer_pivot {
        return Err(CliError::Invalid {
            what: "sync".into(),
            reason: format!(
                "no trusted pivot on {}: set `el.rpc` (the execution client's head) or \
                 `sync.checkpoint`; `sync.allow_peer_pivot = true` lets peers' unauthenticated \
                 heads choose it",
                config.chain.name
            ),
        });
    } else if feed.is_none() {
        warn!("sync pivot from the head most peers announce (unauthenticated)");
    }
    let sync_config = leafsync_sync::SyncConfig {
        pivot: checkpoint,
        peer_pivot: config.peer_pivot,
        ..settings.sync_config()
    };
    let bar = settings.progress_bar.then(|| crate::progress::Bar::start(progress.subscribe()));
    let result = loop {
        let mut last_log = std::time::Instant::now();
        info!("the leafdb is empty: waiting for leaf/1 peers to sync from");
        while network_peers(handle).await.is_empty() {
            if last_log.elapsed() > PEER_WAIT_LOG_INTERVAL {
                info!("still waiting for leaf/1 peers (check p2p.bootnodes / p2p.static_peers)");
                last_log = std::time::Instant::now();
            }
            tokio::time::sleep(HEAD_CHECK_INTERVAL).await;
        }
        let (peers, joining) = watch_network_peers(handle).await;
        info!(peers = peers.len(), mode = ?settings.mode, "syncing the state");
        let mut syncer = Syncer::new(db.clone(), sync_config.clone(), peers)
            .with_new_peers(joining)
            .with_progress(progress.clone());
        if let Some(feed) = &feed {
            syncer = syncer.with_pivot_feed(feed.clone());
        }
        match syncer.run().await {
            Ok(out) => break Ok(out),
            Err(e @ (SyncError::NoPeers | SyncError::Unavailable { .. })) => {
                warn!(error = %e, "state sync paused; it resumes from its saved progress when peers are back");
                tokio::time::sleep(SYNC_RETRY_PAUSE).await;
            }
            Err(e) => break Err(CliError::Sync(e)),
        }
    };
    drop(bar);
    let out = result?;
    info!(
        pivot = out.pivot.number,
        root = %out.root,
        bytes = out.stats.bytes_down,
        requests = out.stats.requests,
        heal_fraction = out.stats.heal_fraction(),
        secs = out.stats.elapsed.as_secs_f64(),
        "state sync done; serving"
    );
    Ok(())
}

/// The running follower: its counters and its task.
type FollowerTask = (Arc<IngestStats>, tokio::task::JoinHandle<Result<(), IngestError>>);

/// Waits until the follower has loaded the genesis (or failed).
async fn wait_for_bootstrap(
    db: &LeafDb,
    follower: Option<&FollowerTask>,
) -> Result<leafsync_leafdb::BlockHeader, CliError> {
    let deadline = tokio::time::Instant::now() + BOOTSTRAP_TIMEOUT;
    loop {
        if let Some(head) = db.head()? {
            return Ok(head);
        }
        if follower.is_some_and(|(_, task)| task.is_finished())
            || tokio::time::Instant::now() > deadline
        {
            return Err(CliError::Invalid {
                what: "el.genesis".into(),
                reason:
                    "the leafdb could not be bootstrapped from the execution client (see the log)"
                        .into(),
            });
        }
        tokio::time::sleep(HEAD_CHECK_INTERVAL).await;
    }
}

/// What the node offers at `head`: everything when the stored state is the header's state, and
/// nothing once it is off the chain (a block whose computed root differed from its header's, after
/// a lying trace or a reorg with no rollback). Syncing clients would otherwise take chunks that
/// fail their proofs and ban us; the state is served again once it matches a header.
fn serve_flags<S: leafsync_leafdb::KvStore>(
    db: &LeafDb<S>,
    head: &leafsync_leafdb::BlockHeader,
) -> Result<ServeFlags, leafsync_leafdb::LeafDbError> {
    Ok(if db.account_root()? == head.state_root { ServeFlags::ALL } else { ServeFlags::NONE })
}

/// Publishes the leafdb head to the network whenever it moves.
async fn announce_heads(db: Arc<LeafDb>, tx: watch::Sender<LocalHead>) {
    loop {
        tokio::time::sleep(HEAD_CHECK_INTERVAL).await;
        let Ok(Some(h)) = db.head() else { continue };
        let current = *tx.borrow();
        if current.head.hash != h.hash || current.head.number != h.number {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let Ok(serves) = serve_flags(&db, &h) else { continue };
            if serves != current.serves {
                if serves == ServeFlags::ALL {
                    info!(number = h.number, "the state matches the header's root again; serving");
                } else {
                    warn!(
                        number = h.number,
                        header_root = %h.state_root,
                        "the state is off the chain (root mismatch): no longer offering it to \
                         peers; resync to serve again"
                    );
                }
            }
            let next = LocalHead {
                head: ChainHead { number: h.number, hash: h.hash, state_root: h.state_root },
                timestamp: now,
                account_estimate: if current.account_estimate == 0 {
                    account_estimate(&db).unwrap_or(0)
                } else {
                    current.account_estimate
                },
                serves,
            };
            if tx.send(next).is_err() {
                return;
            }
        }
    }
}

/// Resolves on SIGINT or SIGTERM.
async fn wait_for_shutdown() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(e) => {
                warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops the daemon");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests fail loudly on bad fixtures

    use super::*;
    use leafsync_leafdb::{BlockDiff, BlockHeader, GenParams};

    #[test]
    fn the_database_leaves_the_socket_reserve_and_stays_under_the_limit() {
        let reserve = fd_reserve(50, 25);
        assert_eq!(reserve, 256 + 50 + 25 + 32 + 512);
        for limit in (0..5000).chain([20_000, 65_536, 524_288, 1 << 20, u64::MAX]) {
            let files = db_open_files(limit, reserve) as u64;
            assert!(files < limit.max(1), "limit {limit}: {files}");
            assert!(files <= MAX_DB_OPEN_FILES);
            if limit >= reserve + MIN_DB_OPEN_FILES {
                assert!(files + reserve <= limit, "limit {limit}: {files} leaves no reserve");
                assert!(files >= MIN_DB_OPEN_FILES);
            } else {
                assert_eq!(files, limit / 2);
            }
        }
        assert_eq!(db_open_files(1024, reserve), 1024 - 875);
        assert_eq!(db_open_files(20_000, reserve) as u64, 20_000 - reserve);
        assert_eq!(db_open_files(1 << 20, reserve) as u64, MAX_DB_OPEN_FILES);
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

    #[test]
    fn a_state_off_the_chain_is_not_offered() {
        let db = LeafDb::in_memory();
        db.generate(GenParams { accounts: 50, seed: 3 }).unwrap();
        let genesis = db.head().unwrap().unwrap();
        assert_eq!(serve_flags(&db, &genesis).unwrap(), ServeFlags::ALL);
        // An empty block whose header claims another root: the state is now off the chain.
        let lying = BlockHeader {
            number: 1,
            hash: B256::repeat_byte(1),
            parent_hash: genesis.hash,
            state_root: B256::repeat_byte(0xee),
            timestamp: 0,
        };
        assert!(!db.apply_block(&lying, &BlockDiff::default()).unwrap().root_matches);
        assert_eq!(serve_flags(&db, &db.head().unwrap().unwrap()).unwrap(), ServeFlags::NONE);
        // A later header that matches the stored state again: offered again.
        let matching = BlockHeader {
            number: 2,
            hash: B256::repeat_byte(2),
            parent_hash: lying.hash,
            state_root: genesis.state_root,
            timestamp: 0,
        };
        assert!(db.apply_block(&matching, &BlockDiff::default()).unwrap().root_matches);
        assert_eq!(serve_flags(&db, &db.head().unwrap().unwrap()).unwrap(), ServeFlags::ALL);
    }
}
