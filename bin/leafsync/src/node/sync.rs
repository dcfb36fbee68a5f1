//! Syncing an empty leafdb from `leaf/1` and snap/1 peers (`sync.sources`): the pivot (a
//! checkpoint, the execution client's head, or the peers'), waiting for peers, and resuming
//! from the record when peers run out.

use std::sync::Arc;

use leafsync_ingest::{
    HEAD_POLL_INTERVAL, IngestError, PIVOT_CONFIRMATIONS, PIVOT_MAX_AGE, check_el_tracing,
    head_feed_behind, wait_el_synced,
};
use leafsync_leafdb::LeafDb;
use leafsync_p2p::{chain::ChainSpec, leaf::ChainHead, peers::NetworkHandle};
use leafsync_sync::{PeerSources, SyncOutcome, SyncStats, Syncer, run_until_done};
use tokio::sync::watch;
use tracing::{info, warn};

use super::head::chain_head;
use crate::{config::SyncSettings, error::CliError};

/// What a sync needs besides the network and the leafdb.
pub(crate) struct SyncPlan<'a> {
    /// `[sync]`.
    pub(crate) settings: &'a SyncSettings,
    /// `el.rpc`, the source of the trusted pivot feed.
    pub(crate) el_rpc: Option<&'a str>,
    /// The chain (named in errors).
    pub(crate) chain: &'a ChainSpec,
}

impl SyncPlan<'_> {
    /// Whether the execution client's head is the pivot: `el.rpc` is set and `sync.pivot` takes
    /// it.
    fn pivot_from_el(&self) -> bool {
        self.el_rpc.is_some() && self.settings.pivot_from_el(true)
    }

    /// What the configuration alone says against syncing an empty leafdb (no trusted pivot, or
    /// no peers that could fill it), checked before the network starts: such a start then fails
    /// before it opens a port. [`sync_from_peers`] checks the same again.
    pub(crate) fn check(&self) -> Result<(), CliError> {
        if self.settings.trusted_checkpoint().is_none()
            && !self.pivot_from_el()
            && !self.settings.peer_pivot
        {
            return Err(CliError::Invalid {
                what: "sync".into(),
                reason: format!(
                    "no trusted pivot on {}: set `el.rpc` (the execution client's head) or \
                     `sync.checkpoint`; `sync.allow_peer_pivot = true` lets peers' \
                     unauthenticated heads choose it",
                    self.chain.name
                ),
            });
        }
        check_sources(self.settings, self.pivot_from_el())
    }
}

/// The execution client's heads as sync pivots, [`PIVOT_CONFIRMATIONS`] blocks behind on a public
/// chain (a dev chain's blocks are not reorged, and its head may sit for ever):
/// [`leafsync_ingest::head_feed_behind`] mapped to [`ChainHead`]s by a task that ends with either
/// side. The execution client must be on `chain` (its block 0 is the chain's genesis) and serve
/// traces ([`check_tracing`]), both checked first, so that a misconfiguration fails at once;
/// then, while it syncs itself, the pivot waits for it ([`wait_el_synced`]).
async fn el_pivot_feed(
    url: &str,
    chain: &ChainSpec,
) -> Result<watch::Receiver<ChainHead>, CliError> {
    let public = !chain.dev;
    let behind = pivot_confirmations(chain);
    let genesis = Some(chain.genesis_hash);
    let mut headers = head_feed_behind(url, HEAD_POLL_INTERVAL, genesis, behind).await?;
    check_tracing(url).await?;
    // A public chain's pivot must be recent: a dev chain's head may sit for ever.
    let max_age = public.then_some(PIVOT_MAX_AGE);
    if wait_el_synced(url, max_age, HEAD_POLL_INTERVAL).await? {
        info!("the execution client is synced: the sync takes its pivot");
    }
    // The feed kept reading meanwhile: its head is the newest.
    let first = chain_head(&headers.borrow_and_update());
    info!(
        number = first.number,
        behind_head = behind,
        state_root = %first.state_root,
        "sync pivot from the execution client"
    );
    let (tx, rx) = watch::channel(first);
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = tx.closed() => return,
                changed = headers.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    tx.send_replace(chain_head(&headers.borrow_and_update()));
                }
            }
        }
    });
    Ok(rx)
}

/// Blocks the pivot stays behind the execution client's head on `chain`: [`PIVOT_CONFIRMATIONS`]
/// on a public chain, none on `dev` (whose blocks are not reorged).
fn pivot_confirmations(chain: &ChainSpec) -> u64 {
    if chain.dev { 0 } else { PIVOT_CONFIRMATIONS }
}

/// The trusted pivot feed, or an error when nothing may choose the pivot, or when the execution
/// client (`el.rpc`) could not be followed after the sync (see [`check_tracing`]).
async fn pivot_feed(plan: &SyncPlan<'_>) -> Result<Option<watch::Receiver<ChainHead>>, CliError> {
    plan.check()?;
    let settings = plan.settings;
    let feed = match plan.el_rpc {
        Some(url) if plan.pivot_from_el() => Some(el_pivot_feed(url, plan.chain).await?),
        Some(url) => {
            check_tracing(url).await?;
            None
        }
        None => None,
    };
    if let Some(c) = settings.trusted_checkpoint() {
        info!(number = c.number, hash = %c.hash, state_root = %c.state_root, "sync pivot from sync.checkpoint");
    } else if feed.is_none() {
        warn!("sync pivot from the head most peers announce (unauthenticated)");
    }
    Ok(feed)
}

/// Refuses a sync whose execution client lacks `debug_traceBlockByHash`: the sync would take
/// hours and the follower then fail at its first block. Any other failure of the check (the
/// client down, its head not traceable while it syncs) is only logged: following retries.
async fn check_tracing(url: &str) -> Result<(), CliError> {
    match check_el_tracing(url).await {
        Ok(()) => Ok(()),
        Err(e @ IngestError::TracingUnavailable { .. }) => Err(e.into()),
        Err(error) => {
            warn!(url, %error, "could not check that the execution client serves block traces");
            Ok(())
        }
    }
}

/// Whether `sync.sources` names peers that can fill an empty leafdb: snap/1 peers need the
/// execution client's head as the pivot (`pivot_from_el`), and without leaf/1 they are the only
/// kind.
fn check_sources(settings: &SyncSettings, pivot_from_el: bool) -> Result<(), CliError> {
    if settings.sources.snap && !pivot_from_el {
        return Err(CliError::Invalid {
            what: "sync.sources".into(),
            reason: "\"snap\" needs the execution client's head as the pivot (`el.rpc`)".into(),
        });
    }
    if !settings.sources.leaf && !settings.sources.snap {
        return Err(CliError::Invalid {
            what: "sync.sources".into(),
            reason: "the leafdb is empty and no peers can fill it: without leaf/1 \
                     (`serve.leaf = false`) list \"snap\" in `sync.sources`, or set `el.genesis`"
                .into(),
        });
    }
    Ok(())
}

/// The kinds of peers the sync takes (`sync.sources`); snap/1 peers sync at the execution
/// client's head, the trusted pivot `feed` (the configuration makes sure there is one).
fn peer_sources(
    settings: &SyncSettings,
    feed: Option<&watch::Receiver<ChainHead>>,
) -> Result<PeerSources, CliError> {
    check_sources(settings, feed.is_some())?;
    let snap = feed.filter(|_| settings.sources.snap).cloned();
    Ok(PeerSources { leaf: settings.sources.leaf, snap })
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
    let sources = peer_sources(plan.settings, feed.as_ref())?;
    let config = plan.settings.sync_config();
    let bar = plan.settings.progress_bar.then(|| crate::progress::Bar::start(progress.subscribe()));
    let result = run_until_done(handle, &sources, |peers, joining| {
        info!(mode = ?config.mode, "sync mode");
        let syncer = Syncer::new(db.clone(), config.clone(), peers)
            .with_new_peers(joining)
            .with_progress(progress.clone());
        match &feed {
            Some(feed) => syncer.with_pivot_feed(feed.clone()),
            None => syncer,
        }
    })
    .await
    .map_err(CliError::Sync);
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

#[cfg(test)]
mod tests {
    use alloy_primitives::B256;

    use super::*;
    use crate::config::{PivotSource, SyncSources};

    fn settings(leaf: bool, snap: bool) -> SyncSettings {
        SyncSettings {
            sources: SyncSources { leaf, snap },
            pivot: PivotSource::Auto,
            checkpoint: None,
            peer_pivot: false,
            progress_bar: false,
            config: leafsync_sync::SyncConfig::default(),
        }
    }

    /// snap/1 peers sync at the pivot feed; a sync with no kind of peer left is refused.
    #[test]
    fn the_sources_follow_sync_sources_and_the_pivot_feed() {
        let (_tx, feed) = watch::channel(ChainHead {
            number: 7,
            hash: B256::repeat_byte(1),
            state_root: B256::repeat_byte(2),
        });
        let both = peer_sources(&settings(true, true), Some(&feed)).unwrap();
        assert!(both.leaf);
        assert_eq!(both.snap.map(|pivot| pivot.borrow().number), Some(7));
        let leaf = peer_sources(&settings(true, false), Some(&feed)).unwrap();
        assert!(leaf.leaf && leaf.snap.is_none(), "no snap/1 peers unless listed");
        assert!(peer_sources(&settings(true, true), None).is_err(), "snap needs the EL's pivot");
        let none = peer_sources(&settings(false, false), Some(&feed)).unwrap_err().to_string();
        assert!(none.contains("sync.sources") && none.contains("serve.leaf"), "{none}");
    }

    /// A public chain's pivot stays [`PIVOT_CONFIRMATIONS`] behind the execution client's
    /// head; the dev chain's is its head.
    #[test]
    fn a_public_chains_pivot_stays_behind_the_head() {
        for name in ["mainnet", "sepolia", "holesky", "hoodi"] {
            let chain = ChainSpec::preset(name).unwrap();
            assert_eq!(pivot_confirmations(&chain), PIVOT_CONFIRMATIONS, "{name}");
        }
        assert_eq!(pivot_confirmations(&ChainSpec::preset("dev").unwrap()), 0);
    }

    /// The configuration alone refuses a sync with no trusted pivot or no peers to fill the
    /// leafdb, before the network starts; each way of choosing a pivot passes.
    #[test]
    fn a_plan_without_a_pivot_or_sources_is_refused_from_the_configuration() {
        let chain = ChainSpec::preset("sepolia").unwrap();
        let check = |settings: &SyncSettings, el_rpc: Option<&str>| {
            SyncPlan { settings, el_rpc, chain: &chain }.check().map_err(|e| e.to_string())
        };
        let leaf = settings(true, false);
        let none = check(&leaf, None).unwrap_err();
        assert!(none.contains("no trusted pivot on sepolia") && none.contains("el.rpc"), "{none}");
        check(&leaf, Some("http://127.0.0.1:8545")).unwrap();
        check(&SyncSettings { peer_pivot: true, ..leaf.clone() }, None).unwrap();
        let manual = SyncSettings { pivot: PivotSource::Checkpoint, ..leaf };
        assert!(check(&manual, Some("http://127.0.0.1:8545")).is_err(), "the EL is not the pivot");
        let snap = check(&SyncSettings { peer_pivot: true, ..settings(true, true) }, None);
        assert!(snap.unwrap_err().contains("\"snap\" needs"));
        let nobody = check(&SyncSettings { peer_pivot: true, ..settings(false, false) }, None);
        assert!(nobody.unwrap_err().contains("no peers can fill it"));
    }
}
