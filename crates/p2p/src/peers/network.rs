//! [`Network::start`] and the [`NetworkHandle`] the rest of the program uses.

use super::{
    NetworkConfig, NodeRecord,
    eth::record_fork_id,
    events::{DiscoveryCounters, EVENT_CHANNEL_CAPACITY, NetworkEvent, PeerInfo},
    manager::{COMMAND_CHANNEL_CAPACITY, Command, ManagerParts, PeerManager},
};
use crate::{
    PeerId, PenaltyClass,
    chain::{ChainSpecError, Enr},
    discovery::{Discovery, DiscoveryError, LeafEnrEntry, LocalRecord, SnapFilter},
    ecies::id_from_pk,
    leaf::{LeafRequest, LeafResponse},
    p2pstream::{DisconnectReason, HelloMessageWithProtocols},
    requests::RequestError,
    session::{SessionParams, hello_protocols},
    snap::SnapMessage,
};
use secp256k1::{PublicKey, SECP256K1};
use std::{net::SocketAddr, sync::Arc};
use tokio::{
    net::TcpListener,
    sync::{broadcast, mpsc, oneshot},
};

/// Why the network could not start.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    /// Binding the TCP listener on `addr` failed.
    #[error("binding the RLPx listener on {addr}: {source}")]
    Bind {
        /// The address asked for (`p2p.listen_ip`, `p2p.port`).
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The chain spec cannot be announced (placeholder genesis).
    #[error(transparent)]
    Chain(#[from] ChainSpecError),
    /// Discovery failed to start.
    #[error(transparent)]
    Discovery(#[from] DiscoveryError),
    /// The configuration offers no protocol (`leaf` off and no `eth`).
    #[error("no protocol to offer: enable leaf/1 or eth/69")]
    NoProtocols,
}

/// The networking service: RLPx listener, discovery, and the peer manager.
#[derive(Debug)]
pub struct Network;

impl Network {
    /// Binds the listener, starts discovery (if configured) and the peer manager task, and returns
    /// the handle. Must be called within a tokio runtime.
    pub async fn start(config: NetworkConfig) -> Result<NetworkHandle, NetworkError> {
        Ok(Self::start_subscribed(config).await?.0)
    }

    /// [`Self::start`], with a receiver of the network's events subscribed before the manager
    /// runs: it sees every event, even a static peer's connection made at once (a receiver
    /// taken from the handle afterwards may come too late for it).
    pub async fn start_subscribed(
        mut config: NetworkConfig,
    ) -> Result<(NetworkHandle, broadcast::Receiver<NetworkEvent>), NetworkError> {
        config.chain.ensure_genesis_known()?;
        if !config.leaf && config.eth.is_none() {
            return Err(NetworkError::NoProtocols);
        }
        let addr = config.listen_addr;
        let bind_error = |source| NetworkError::Bind { addr, source };
        let listener = TcpListener::bind(addr).await.map_err(bind_error)?;
        let local_addr = listener.local_addr().map_err(bind_error)?;
        let local_id = id_from_pk(&PublicKey::from_secret_key(SECP256K1, &config.secret_key));
        let discovery = match config.discovery.take() {
            Some(mut discovery_config) => {
                discovery_config.tcp_port = local_addr.port();
                // The `eth` entry only with eth/69: geth dials any record with a compatible one.
                let fork_id = config
                    .eth
                    .is_some()
                    .then(|| record_fork_id(&config.chain, &config.head, config.eth.as_ref()));
                let record = LocalRecord {
                    fork_id,
                    leaf: config.leaf.then(|| LeafEnrEntry::for_chain(&config.chain)),
                    snap: config.eth.as_ref().is_some_and(|eth| eth.snap.is_some()),
                };
                // Kept at the execution client's head by the manager (`update_snap_filter`).
                let genesis_fork_hash = config.chain.genesis_fork_hash();
                let snap_filter = config.eth.as_ref().map(|eth| {
                    SnapFilter::new(eth.head.borrow().fork_check(&config.chain), genesis_fork_hash)
                });
                Some(
                    Discovery::start(&config.secret_key, discovery_config, record, snap_filter)
                        .await?,
                )
            }
            None => None,
        };
        let hello = HelloMessageWithProtocols::new(
            config.client_version.clone(),
            hello_protocols(config.leaf, config.eth.is_some()),
            local_addr.port(),
            local_id,
        );
        let params = Arc::new(SessionParams {
            secret_key: config.secret_key,
            hello,
            chain: config.chain.clone(),
        });
        let (commands_tx, commands) = mpsc::channel(COMMAND_CHANNEL_CAPACITY);
        let (events, _) = broadcast::channel(EVENT_CHANNEL_CAPACITY);
        let manager = PeerManager::new(ManagerParts {
            local_id,
            params,
            listener,
            commands,
            events: events.clone(),
            discovery,
            config,
        });
        let first = events.subscribe();
        tokio::spawn(manager.run());
        let handle = NetworkHandle {
            inner: Arc::new(Inner {
                commands: commands_tx,
                events,
                local: NodeRecord { id: local_id, addr: local_addr },
            }),
        };
        Ok((handle, first))
    }
}

#[derive(Debug)]
struct Inner {
    commands: mpsc::Sender<Command>,
    events: broadcast::Sender<NetworkEvent>,
    local: NodeRecord,
}

/// A cloneable handle to the running network. When the last handle is dropped the network shuts
/// down.
#[derive(Debug, Clone)]
pub struct NetworkHandle {
    inner: Arc<Inner>,
}

impl NetworkHandle {
    async fn command(&self, command: Command) -> Result<(), RequestError> {
        self.inner.commands.send(command).await.map_err(|_| RequestError::NetworkClosed)
    }

    /// Sends the command `make` builds around a reply channel and waits for the reply;
    /// [`RequestError::Disconnected`] when the reply channel is dropped unanswered.
    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, RequestError> {
        let (reply, rx) = oneshot::channel();
        self.command(make(reply)).await?;
        rx.await.map_err(|_| RequestError::Disconnected)
    }

    /// Our enode URL (node id and bound RLPx address).
    pub fn local_enode(&self) -> NodeRecord {
        self.inner.local
    }

    /// Our node id.
    pub fn local_id(&self) -> PeerId {
        self.inner.local.id
    }

    /// Our RLPx listen address.
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local.addr
    }

    /// Our discv5 record, if discovery runs.
    pub async fn local_enr(&self) -> Option<Enr> {
        self.ask(Command::LocalEnr).await.ok().flatten()
    }

    /// Discovery's counters, if discovery runs.
    pub async fn discovery_counters(&self) -> Option<DiscoveryCounters> {
        self.ask(Command::DiscoveryCounters).await.ok().flatten()
    }

    /// The connected peers.
    pub async fn peers(&self) -> Vec<PeerInfo> {
        self.ask(Command::Peers).await.unwrap_or_default()
    }

    /// Adds a static peer (kept connected, redialed with backoff) and dials it now.
    pub async fn add_peer(&self, record: NodeRecord) -> Result<(), RequestError> {
        self.command(Command::AddPeer(record)).await
    }

    /// Sends `request` to `peer` and waits for its response (at most `REQUEST_TIMEOUT` once the
    /// request is on the wire). The request id is assigned by the session, which delivers only a
    /// response of the kind that answers `request` (`Chunk::try_from(response)` and the like
    /// take it apart).
    pub async fn request(
        &self,
        peer: PeerId,
        request: LeafRequest,
    ) -> Result<LeafResponse, RequestError> {
        self.ask(|reply| Command::Request { peer, request, reply }).await?
    }

    /// Sends the snap/1 `request` to `peer` and waits for its response (at most
    /// `REQUEST_TIMEOUT` once the request is on the wire). The session assigns the request id
    /// (the one in `request` is replaced) and delivers only a response of the kind that answers
    /// the request, decoded within snap/1's limits (`snap::max_payload_size` first); its
    /// request id is the one the session chose. Fails with [`RequestError::NotSupported`] when
    /// the session does not speak snap/1, [`RequestError::NotARequest`] for a response.
    pub async fn snap_request(
        &self,
        peer: PeerId,
        request: SnapMessage,
    ) -> Result<SnapMessage, RequestError> {
        self.ask(|reply| Command::SnapRequest { peer, request, reply }).await?
    }

    /// Penalises `peer` (e.g. the sync layer found its chunk to be junk); enough penalties
    /// disconnect and ban it.
    pub async fn report(&self, peer: PeerId, class: PenaltyClass) -> Result<(), RequestError> {
        self.command(Command::Report { peer, class }).await
    }

    /// Disconnects `peer` with `reason`.
    pub async fn disconnect(
        &self,
        peer: PeerId,
        reason: DisconnectReason,
    ) -> Result<(), RequestError> {
        self.command(Command::Disconnect { peer, reason }).await
    }

    /// Subscribes to network events (from now on).
    pub fn events(&self) -> broadcast::Receiver<NetworkEvent> {
        self.inner.events.subscribe()
    }

    /// Disconnects every peer (reason "client quitting"), stops discovery and the manager, and
    /// waits for it.
    pub async fn shutdown(&self) {
        let _ = self.ask(Command::Shutdown).await;
    }
}
