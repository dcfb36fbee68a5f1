//! Syncing an empty leafdb from `leaf/1` peers: the pivot (a checkpoint, the execution client's
//! head, or the peers'), waiting for peers, and resuming from the record when peers run out.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use leafsync_ingest::{IngestError, RpcClient};
use leafsync_leafdb::LeafDb;
use leafsync_p2p::{chain::ChainSpec, leaf::ChainHead, peers::NetworkHandle};
use leafsync_sync::{
    SyncError, SyncOutcome, SyncStats, Syncer, network_peers, watch_network_peers,
};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use super::head::HEAD_CHECK_INTERVAL;
use crate::{config::SyncSettings, error::CliError};

/// How long a node with an empty leafdb waits for its first `leaf/1` peer (or for the execution
/// client's first head) before it says so in the log again (it keeps waiting).
const PEER_WAIT_LOG_INTERVAL: Duration = Duration::from_secs(30);
/// How often the execution client's head is read for the pivot feed.
const EL_HEAD_POLL_INTERVAL: Duration = Duration::from_secs(2);
/// Pause before a sync that found no usable peer starts again from its record.
const SYNC_RETRY_PAUSE: Duration = Duration::from_secs(5);

/// What a sync needs besides the network and the leafdb.
pub(crate) struct SyncPlan<'a> {
    /// `[sync]`.
    pub(crate) settings: &'a SyncSettings,
    /// `el.rpc`, the source of the trusted pivot feed.
    pub(crate) el_rpc: Option<&'a str>,
    /// The chain (named in errors).
    pub(crate) chain: &'a ChainSpec,
}

/// The execution client's head, read now.
async fn el_head(rpc: &mut RpcClient) -> Result<ChainHead, IngestError> {
    let number = rpc.block_number().await?;
    let block = rpc.block(number).await?;
    Ok(ChainHead { number, hash: block.hash, state_root: block.state_root })
}

/// A feed of the execution client's heads (the trusted pivot): waits for the first one, then a
/// task polls for newer ones until the receiver is dropped.
// merge: `leafsync_ingest::head_feed(url)` replaces this function.
async fn el_pivot_feed(url: &str) -> Result<watch::Receiver<ChainHead>, CliError> {
    let mut rpc = RpcClient::new(url)?;
    let mut last_log: Option<Instant> = None;
    let first = loop {
        match el_head(&mut rpc).await {
            Ok(head) => break head,
            Err(e) => {
                if last_log.is_none_or(|t| t.elapsed() > PEER_WAIT_LOG_INTERVAL) {
                    warn!(url, error = %e, "cannot read the execution client's head for the sync pivot; retrying");
                    last_log = Some(Instant::now());
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

/// Whether a failed sync may resume from its record once peers are back.
// merge: `e.is_transient()` (SyncError::is_transient, crates/sync).
const fn is_transient(e: &SyncError) -> bool {
    matches!(e, SyncError::NoPeers | SyncError::Unavailable { .. })
}

/// The trusted pivot feed, or an error when nothing may choose the pivot.
async fn pivot_feed(plan: &SyncPlan<'_>) -> Result<Option<watch::Receiver<ChainHead>>, CliError> {
    let settings = plan.settings;
    let feed = match plan.el_rpc {
        Some(url) if settings.pivot_from_el(true) => Some(el_pivot_feed(url).await?),
        _ => None,
    };
    if let Some(c) = settings.trusted_checkpoint() {
        info!(number = c.number, hash = %c.hash, state_root = %c.state_root, "sync pivot from sync.checkpoint");
    } else if feed.is_none() && !settings.peer_pivot {
        return Err(CliError::Invalid {
            what: "sync".into(),
            reason: format!(
                "no trusted pivot on {}: set `el.rpc` (the execution client's head) or \
                 `sync.checkpoint`; `sync.allow_peer_pivot = true` lets peers' unauthenticated \
                 heads choose it",
                plan.chain.name
            ),
        });
    } else if feed.is_none() {
        warn!("sync pivot from the head most peers announce (unauthenticated)");
    }
    Ok(feed)
}

/// Waits until `handle` has a `leaf/1` peer, saying so every [`PEER_WAIT_LOG_INTERVAL`].
async fn wait_for_peers(handle: &NetworkHandle) {
    let mut last_log = Instant::now();
    info!("the leafdb is empty: waiting for leaf/1 peers to sync from");
    while network_peers(handle).await.is_empty() {
        if last_log.elapsed() > PEER_WAIT_LOG_INTERVAL {
            info!("still waiting for leaf/1 peers (check p2p.bootnodes / p2p.static_peers)");
            last_log = Instant::now();
        }
        tokio::time::sleep(HEAD_CHECK_INTERVAL).await;
    }
}

/// Waits for peers, then syncs the empty leafdb from them; peers that connect later join. The
/// pivot is the execution client's head (`sync.pivot`), else the head most peers announce. A
/// sync that runs out of usable peers waits for peers again and resumes from its record.
pub(crate) async fn sync_from_peers(
    handle: &NetworkHandle,
    db: &Arc<LeafDb>,
    plan: &SyncPlan<'_>,
    progress: watch::Sender<SyncStats>,
) -> Result<SyncOutcome, CliError> {
    let feed = pivot_feed(plan).await?;
    let config = plan.settings.sync_config();
    let bar = plan.settings.progress_bar.then(|| crate::progress::Bar::start(progress.subscribe()));
    // merge: `leafsync_sync::run_until_done(..)` replaces this loop.
    let result = loop {
        wait_for_peers(handle).await;
        let (peers, joining) = watch_network_peers(handle).await;
        info!(peers = peers.len(), mode = ?config.mode, "syncing the state");
        let mut syncer = Syncer::new(db.clone(), config.clone(), peers)
            .with_new_peers(joining)
            .with_progress(progress.clone());
        if let Some(feed) = &feed {
            syncer = syncer.with_pivot_feed(feed.clone());
        }
        match syncer.run().await {
            Ok(out) => break Ok(out),
            Err(e) if is_transient(&e) => {
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
    Ok(out)
}
