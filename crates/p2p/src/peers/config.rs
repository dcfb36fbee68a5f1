//! [`NetworkConfig`]: everything [`super::Network::start`] needs, with documented defaults.

use super::{EthConfig, NodeRecord, RequestHandler};
use crate::{
    chain::ChainSpec,
    discovery::DiscoveryConfig,
    leaf::{ChainHead, ServeFlags, Status},
};
use secp256k1::SecretKey;
use std::{net::SocketAddr, sync::Arc, time::Duration};
use tokio::sync::watch;

/// Default most inbound sessions. Serving is the cheap side (cached chunks), so a node accepts
/// more than it dials, as geth does with its 1/3 outbound ratio.
pub const DEFAULT_MAX_INBOUND: usize = 50;

/// Default most outbound sessions (dialed by us, static peers included). Enough parallel servers
/// to saturate a typical link during sync with chunk requests of up to 2 MiB.
pub const DEFAULT_MAX_OUTBOUND: usize = 25;

/// Default pause between two passes of the dialer over static peers and queued candidates. One
/// second keeps reconnects prompt without busy-looping; backoff spaces the retries of one peer.
pub const DEFAULT_DIAL_INTERVAL: Duration = Duration::from_secs(1);

/// Default most inbound handshakes in progress from one IP address, or one IPv6 /64 (of
/// `MAX_PENDING_INBOUND` in all). Honest peers behind one address handshake one at a time; four
/// leave room for a few behind a NAT, while an attacker needs eight addresses, not one, to occupy
/// every pending slot with slow connections (review finding M2). Loopback tests raise it.
pub const DEFAULT_MAX_PENDING_INBOUND_PER_IP: usize = 4;

/// Default most established inbound sessions from one IP address, or one IPv6 /64 (trusted
/// peers excepted). Four of the 50 inbound slots: a few nodes behind one NAT are served, but one
/// host with many throw-away identities cannot fill the inbound set (review findings M2, M7).
/// Loopback tests raise it.
pub const DEFAULT_MAX_INBOUND_PER_IP: usize = 4;

/// `RequestHandler` calls running at once across all sessions, per core of the machine (2): a
/// call reads the database and hashes nothing, so two per core keep the cores and a disk busy;
/// more would only queue on the CPU that block application needs (review finding H3;
/// `leafsync bench apply`). A session's requests beyond the cap wait for a permit; a closed
/// session's waiting requests never start.
pub const HANDLER_CALLS_PER_CORE: usize = 2;

/// Fewest concurrent `RequestHandler` calls whatever the core count (4).
pub const MIN_CONCURRENT_HANDLER_CALLS: usize = 4;

/// Most concurrent `RequestHandler` calls whatever the core count (64).
pub const MAX_CONCURRENT_HANDLER_CALLS: usize = 64;

/// The default global cap on concurrent `RequestHandler` calls: [`HANDLER_CALLS_PER_CORE`] per
/// available core, within [`MIN_CONCURRENT_HANDLER_CALLS`]..=[`MAX_CONCURRENT_HANDLER_CALLS`].
pub fn default_max_concurrent_handler_calls() -> usize {
    std::thread::available_parallelism()
        .map_or(MIN_CONCURRENT_HANDLER_CALLS, |n| n.get() * HANDLER_CALLS_PER_CORE)
        .clamp(MIN_CONCURRENT_HANDLER_CALLS, MAX_CONCURRENT_HANDLER_CALLS)
}

/// Default most static peers (configured plus added through `admin_addPeer`). Static peers are
/// dialed first and held in memory for good, so the admin API must not add them without bound;
/// 256 is ten times the outbound limit. Further additions are refused and logged.
pub const DEFAULT_MAX_STATIC_PEERS: usize = 256;

/// Our head as the node's owner publishes it (through a `watch` channel): it fills our `Status`
/// and is announced to peers as `NewHead` when it changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LocalHead {
    /// Head block number, hash and state root.
    pub head: ChainHead,
    /// Head block timestamp (selects the EIP-2124 fork id).
    pub timestamp: u64,
    /// Estimate of the number of accounts in our state (0 if unknown).
    pub account_estimate: u64,
    /// What we serve.
    pub serves: ServeFlags,
}

impl LocalHead {
    /// Our `Status` for `chain` at this head.
    pub fn status(&self, chain: &ChainSpec) -> Status {
        Status::ours(chain, self.head, self.timestamp, self.account_estimate, self.serves)
    }
}

/// Configuration of the network.
#[derive(Clone)]
pub struct NetworkConfig {
    /// Our node key (RLPx identity, also the discv5 key).
    pub secret_key: SecretKey,
    /// Our chain. Its genesis hash must be known.
    pub chain: ChainSpec,
    /// TCP address to listen on for RLPx. Default: `0.0.0.0:30403`; tests use `127.0.0.1:0`.
    pub listen_addr: SocketAddr,
    /// discv5 settings; `None` disables discovery (static peers only). Default: `None`. Its
    /// `tcp_port` is replaced by the bound RLPx port.
    pub discovery: Option<DiscoveryConfig>,
    /// Peers we keep connected and redial with backoff. Default: none.
    pub static_peers: Vec<NodeRecord>,
    /// Peers we keep connected and that are exempt from the peer limits and from bans. Default:
    /// none.
    pub trusted_peers: Vec<NodeRecord>,
    /// Most inbound sessions. Default: [`DEFAULT_MAX_INBOUND`].
    pub max_inbound: usize,
    /// Most outbound sessions. Default: [`DEFAULT_MAX_OUTBOUND`].
    pub max_outbound: usize,
    /// Pause between dialer passes. Default: [`DEFAULT_DIAL_INTERVAL`].
    pub dial_interval: Duration,
    /// Most inbound handshakes in progress from one IP (IPv6: one /64). Default:
    /// [`DEFAULT_MAX_PENDING_INBOUND_PER_IP`].
    pub max_pending_inbound_per_ip: usize,
    /// Most established inbound sessions from one IP (IPv6: one /64; trusted peers not counted).
    /// Default: [`DEFAULT_MAX_INBOUND_PER_IP`].
    pub max_inbound_per_ip: usize,
    /// Most request-handler calls running at once, over all sessions. Default:
    /// [`default_max_concurrent_handler_calls`].
    pub max_concurrent_handler_calls: usize,
    /// Most static and trusted peers held. Default: [`DEFAULT_MAX_STATIC_PEERS`].
    pub max_static_peers: usize,
    /// Client id in our Hello. Default: `leafsync/<crate version>`.
    pub client_version: String,
    /// Our head; the owner of the node updates it.
    pub head: watch::Receiver<LocalHead>,
    /// Answers the peers' requests.
    pub handler: Arc<dyn RequestHandler>,
    /// Whether our Hello offers `leaf/1`. Default: `true`. Only a node that speaks `eth/69` and
    /// `snap/1` alone (a stand-in for geth in tests) turns it off; without `eth` too no peer
    /// would be accepted.
    pub leaf: bool,
    /// `eth/69` and `snap/1` beside `leaf/1`; `None` offers only `leaf/1`. Default: `None`.
    pub eth: Option<EthConfig>,
}

impl NetworkConfig {
    /// The defaults documented on each field, for `chain`, `secret_key`, `head` and `handler`.
    pub fn new(
        secret_key: SecretKey,
        chain: ChainSpec,
        head: watch::Receiver<LocalHead>,
        handler: Arc<dyn RequestHandler>,
    ) -> Self {
        Self {
            secret_key,
            listen_addr: SocketAddr::from(([0, 0, 0, 0], chain.ports.tcp)),
            chain,
            discovery: None,
            static_peers: Vec::new(),
            trusted_peers: Vec::new(),
            max_inbound: DEFAULT_MAX_INBOUND,
            max_outbound: DEFAULT_MAX_OUTBOUND,
            dial_interval: DEFAULT_DIAL_INTERVAL,
            max_pending_inbound_per_ip: DEFAULT_MAX_PENDING_INBOUND_PER_IP,
            max_inbound_per_ip: DEFAULT_MAX_INBOUND_PER_IP,
            max_concurrent_handler_calls: default_max_concurrent_handler_calls(),
            max_static_peers: DEFAULT_MAX_STATIC_PEERS,
            client_version: concat!("leafsync/", env!("CARGO_PKG_VERSION")).to_owned(),
            head,
            handler,
            leaf: true,
            eth: None,
        }
    }
}

impl std::fmt::Debug for NetworkConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetworkConfig")
            .field("chain", &self.chain.name)
            .field("listen_addr", &self.listen_addr)
            .field("discovery", &self.discovery)
            .field("static_peers", &self.static_peers)
            .field("trusted_peers", &self.trusted_peers)
            .field("max_inbound", &self.max_inbound)
            .field("max_outbound", &self.max_outbound)
            .field("dial_interval", &self.dial_interval)
            .field("max_pending_inbound_per_ip", &self.max_pending_inbound_per_ip)
            .field("max_inbound_per_ip", &self.max_inbound_per_ip)
            .field("max_concurrent_handler_calls", &self.max_concurrent_handler_calls)
            .field("max_static_peers", &self.max_static_peers)
            .field("client_version", &self.client_version)
            .field("leaf", &self.leaf)
            .field("eth", &self.eth)
            .finish_non_exhaustive()
    }
}
