//! The clients of `bench sync`: each client's peers (the servers behind emulated links, and for
//! `leaf/1` those that join later) and their syncs, run at once.

use std::sync::Arc;

use alloy_primitives::B256;
use leafsync_leafdb::LeafDb;
use leafsync_p2p::leaf::ChainHead;
use leafsync_sync::{
    NewPeers, PeerSources, SnapPeer, SnapTransport, SyncConfig, SyncOutcome, SyncPeer, Syncer,
    watch_network_peers,
};

use super::{
    Source,
    servers::ServerProcess,
    snap_source::SnapServers,
    wan::{Links, WanPeer},
};
use crate::{error::CliError, node::loopback::start_client};

/// Peers that joined the network and wait for the sync to take them, at most.
const JOINING_BOUND: usize = 16;

/// A client's peers: those it starts with, and for `leaf/1` the ones that join later.
pub(super) struct ClientPeers {
    now: Vec<Arc<dyn SyncPeer>>,
    joining: Option<NewPeers>,
}

/// Relays the peers that join the network's `joining` to the sync, each behind links of its own
/// from `links`, until the sync drops its end.
fn relay_joining(mut joining: NewPeers, links: impl Fn() -> Links + Send + 'static) -> NewPeers {
    let (tx, rx) = tokio::sync::mpsc::channel(JOINING_BOUND);
    tokio::spawn(async move {
        loop {
            let peer = tokio::select! {
                () = tx.closed() => return,
                peer = joining.recv() => peer,
            };
            let Some(peer) = peer else { return };
            if tx.send(Arc::new(WanPeer::new(peer, links())) as Arc<dyn SyncPeer>).await.is_err() {
                return;
            }
        }
    });
    rx
}

/// The sync's peers for `source`, each behind links of its own from `links`; and the client
/// node to shut down after a `leaf/1` sync. `leaf/1` peers are the daemon's
/// ([`watch_network_peers`]): their heads follow their announcements, which a sync under churn
/// needs.
pub(super) async fn peers(
    source: Source,
    db: &Arc<LeafDb>,
    servers: &ServerProcess,
    snap: Option<&SnapServers>,
    links: impl Fn() -> Links + Send + Clone + 'static,
) -> Result<(ClientPeers, Option<crate::node::Node>), CliError> {
    if source == Source::Snap {
        let Some(snap) = snap else {
            return Err(CliError::Invalid {
                what: "snap sync".into(),
                reason: "no servers".into(),
            });
        };
        let head = ChainHead { number: 0, hash: B256::ZERO, state_root: servers.root };
        let mut peers = Vec::new();
        for i in 0..servers.records.len() {
            let Some(transport) = snap.transport(i, head, links()) else { break };
            let peer = SnapPeer::new(Arc::new(transport) as Arc<dyn SnapTransport>);
            // snap/1 announces no account count: the network probes each peer first.
            peer.probe_accounts(servers.root).await;
            peers.push(Arc::new(peer) as Arc<dyn SyncPeer>);
        }
        return Ok((ClientPeers { now: peers, joining: None }, None));
    }
    let client = start_client(Arc::clone(db), servers.records.clone()).await?;
    let (now, joining) = watch_network_peers(client.network(), &PeerSources::default()).await;
    let now = now.into_iter().map(|p| Arc::new(WanPeer::new(p, links())) as Arc<dyn SyncPeer>);
    let now = now.collect();
    let joining = Some(relay_joining(joining, links));
    Ok((ClientPeers { now, joining }, Some(client)))
}

/// The clients' syncs run at once, each in a task of its own; each client's outcome in order.
pub(super) async fn sync_all(
    dbs: &[Arc<LeafDb>],
    peer_sets: Vec<ClientPeers>,
    config: &SyncConfig,
) -> Result<Vec<Result<SyncOutcome, leafsync_sync::SyncError>>, CliError> {
    let tasks: Vec<_> = dbs
        .iter()
        .zip(peer_sets)
        .map(|(db, peers)| {
            let syncer = Syncer::new(Arc::clone(db), config.clone(), peers.now);
            let syncer = match peers.joining {
                Some(joining) => syncer.with_new_peers(joining),
                None => syncer,
            };
            tokio::spawn(syncer.run())
        })
        .collect();
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(task.await.map_err(|e| CliError::Invalid {
            what: "a sync task".into(),
            reason: e.to_string(),
        })?);
    }
    Ok(outcomes)
}
