//! The daemon's sync entry point: [`run_until_done`] waits for peers, runs a sync over them,
//! and starts it again (from its progress record) while it stops for a transient reason
//! ([`SyncError::is_transient`]); [`retry_transient`] is that policy on its own.

use std::{future::Future, sync::Arc, sync::Mutex, sync::PoisonError};

use leafsync_leafdb::KvStore;
use leafsync_p2p::peers::NetworkHandle;
use tracing::{info, warn};

use crate::{
    config::{PEER_CHECK_INTERVAL, PEER_WAIT_LOG_INTERVAL, SYNC_RETRY_PAUSE},
    error::SyncError,
    peer::{NewPeers, SyncPeer},
    sources::{PeerSources, has_sync_peers, watch_network_peers},
    syncer::{SyncOutcome, Syncer},
};

/// Runs `attempt` until it succeeds or fails for a reason that is not transient, pausing
/// [`SYNC_RETRY_PAUSE`] after each transient failure.
pub async fn retry_transient<F, Fut>(mut attempt: F) -> Result<SyncOutcome, SyncError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<SyncOutcome, SyncError>>,
{
    loop {
        match attempt().await {
            Err(e) if e.is_transient() => {
                warn!(error = %e, "state sync paused; it resumes from its saved progress when peers are back");
                tokio::time::sleep(SYNC_RETRY_PAUSE).await;
            }
            result => return result,
        }
    }
}

/// Syncs from the peers of `handle` (the kinds `sources` takes) until the state is complete:
/// waits for a first peer that serves state, builds a [`Syncer`] with `build` from the peers
/// serving now and the channel of peers that join later (see [`watch_network_peers`]; `build`
/// adds the pivot feed, progress channel and config), runs it, and on a transient failure (no
/// usable peer left, an item nobody has) starts again after [`SYNC_RETRY_PAUSE`] from the
/// progress record. Any other error is returned.
pub async fn run_until_done<S, F>(
    handle: &NetworkHandle,
    sources: &PeerSources,
    build: F,
) -> Result<SyncOutcome, SyncError>
where
    S: KvStore + 'static,
    F: FnMut(Vec<Arc<dyn SyncPeer>>, NewPeers) -> Syncer<S> + Send,
{
    let build = Mutex::new(build);
    let build = &build;
    retry_transient(move || async move {
        wait_for_peers(handle, sources).await;
        let (peers, joining) = watch_network_peers(handle, sources).await;
        info!(peers = peers.len(), "syncing the state");
        let syncer = (build.lock().unwrap_or_else(PoisonError::into_inner))(peers, joining);
        syncer.run().await
    })
    .await
}

/// Waits until `handle` has a peer that serves state, saying so in the log every
/// [`PEER_WAIT_LOG_INTERVAL`].
async fn wait_for_peers(handle: &NetworkHandle, sources: &PeerSources) {
    let (kinds, hint) = if sources.snap.is_some() {
        (
            "leaf/1 or snap/1",
            "check p2p.bootnodes / p2p.static_peers, or el.enode for the execution client's own snap/1",
        )
    } else {
        (
            "leaf/1",
            "check p2p.bootnodes / p2p.static_peers; a chain without leafsync nodes needs \"snap\" in sync.sources",
        )
    };
    info!("waiting for {kinds} peers to sync the state from");
    let first = tokio::time::Instant::now() + PEER_WAIT_LOG_INTERVAL;
    let mut reminder = tokio::time::interval_at(first, PEER_WAIT_LOG_INTERVAL);
    while !has_sync_peers(handle, sources).await {
        tokio::select! {
            _ = reminder.tick() => {
                info!("still waiting for {kinds} peers ({hint})");
            }
            () = tokio::time::sleep(PEER_CHECK_INTERVAL) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn transient_failures_are_retried_after_a_pause_and_others_returned() {
        let started = tokio::time::Instant::now();
        let mut calls = 0;
        let result = retry_transient(|| {
            calls += 1;
            let n = calls;
            async move { if n < 3 { Err(SyncError::NoPeers) } else { Err(SyncError::NoPivot) } }
        })
        .await;
        assert!(matches!(result, Err(SyncError::NoPivot)), "{result:?}");
        assert_eq!(calls, 3);
        assert_eq!(started.elapsed(), 2 * SYNC_RETRY_PAUSE);
        assert!(
            SyncError::Unavailable { what: "code", hash: Default::default(), rounds: 1 }
                .is_transient()
        );
        assert!(!SyncError::NoTrustedPivot.is_transient());
    }
}
