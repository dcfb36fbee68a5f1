//! The validated, typed settings of each section, and their conversions into the crates'
//! configurations. Nothing here can be invalid: only `sections.rs` builds these.

use std::{net::SocketAddr, sync::Arc};

use leafsync_leafdb::{DbOptions, LeafDbConfig};
use leafsync_p2p::{
    chain::{ChainSpec, Enr},
    discovery::DiscoveryConfig,
    leaf::ChainHead,
    peers::{LocalHead, NetworkConfig, NodeRecord, RequestHandler},
};
use secp256k1::SecretKey;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

/// Where the pivot of a sync comes from (`sync.pivot`).
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum PivotSource {
    /// `sync.checkpoint` when set, else the execution client's latest block when `el.rpc` is
    /// set, else (only where peers may choose it) the peers'.
    Auto,
    /// The execution client's latest block (requires `el.rpc`).
    El,
    /// `sync.checkpoint` (requires it).
    Checkpoint,
    /// The head most peers announce (a dev chain, or `sync.allow_peer_pivot`).
    Peers,
}

/// `[p2p]`, parsed.
#[derive(Debug, Clone)]
pub(crate) struct NetworkSettings {
    /// RLPx (TCP) and discv5 (UDP) address.
    pub(crate) listen: SocketAddr,
    /// `p2p.external_ip`: the address our discv5 record announces.
    pub(crate) external_ip: Option<std::net::Ipv4Addr>,
    /// Whether discv5 runs.
    pub(crate) discovery: bool,
    /// discv5 bootnodes (the chain preset's unless the file lists its own).
    pub(crate) bootnodes: Vec<Enr>,
    /// Peers kept connected.
    pub(crate) static_peers: Vec<NodeRecord>,
    /// Peers kept connected and exempt from limits and bans.
    pub(crate) trusted_peers: Vec<NodeRecord>,
    /// `el.enode`: the execution client, kept connected, trusted.
    pub(crate) el_peer: Option<NodeRecord>,
    /// Most inbound sessions.
    pub(crate) max_inbound: usize,
    /// Most outbound sessions.
    pub(crate) max_outbound: usize,
}

impl NetworkSettings {
    /// The network's configuration for a node with `key` on `chain`, announcing `head`, answering
    /// with `handler`.
    pub(crate) fn network_config(
        &self,
        key: SecretKey,
        chain: ChainSpec,
        head: watch::Receiver<LocalHead>,
        handler: Arc<dyn RequestHandler>,
    ) -> NetworkConfig {
        let dev = chain.dev;
        let mut net = NetworkConfig::new(key, chain, head, handler);
        net.listen_addr = self.listen;
        net.static_peers.clone_from(&self.static_peers);
        net.trusted_peers.clone_from(&self.trusted_peers);
        if let Some(el) = &self.el_peer {
            net.static_peers.push(*el);
            net.trusted_peers.push(*el);
        }
        net.max_inbound = self.max_inbound;
        net.max_outbound = self.max_outbound;
        net.discovery = self.discovery.then(|| self.discovery_config(dev));
        net
    }

    /// discv5 on the RLPx port (IPv4: an IPv6 `listen_ip` runs it on `0.0.0.0`, `::1` on
    /// `127.0.0.1`). A node listening on a loopback address, or on a private one on the `dev`
    /// chain, is on a test network or a LAN: its peers have such addresses too, and share few
    /// IPs, so local records are dialed and discv5's IP limit and packet filter are off. On a
    /// public chain a private address is a cloud VM's or a home router's, not a LAN network:
    /// the defences stay on.
    pub(crate) fn discovery_config(&self, dev: bool) -> DiscoveryConfig {
        let ip = match self.listen.ip() {
            std::net::IpAddr::V4(ip) => ip,
            std::net::IpAddr::V6(ip) if ip.is_loopback() => std::net::Ipv4Addr::LOCALHOST,
            std::net::IpAddr::V6(_) => std::net::Ipv4Addr::UNSPECIFIED,
        };
        let local = ip.is_loopback() || (ip.is_private() && dev);
        DiscoveryConfig {
            listen_addr: std::net::SocketAddrV4::new(ip, self.listen.port()),
            external_ip: self.external_ip,
            bootnodes: self.bootnodes.clone(),
            allow_local_addresses: local,
            ip_limit: !local,
            packet_filter: !local,
            ..DiscoveryConfig::default()
        }
    }
}

/// `sync.sources`: the kinds of peers a sync downloads from (at least one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SyncSources {
    /// leafsync peers over `leaf/1`.
    pub(crate) leaf: bool,
    /// Ethereum peers over `snap/1` (the pivot is then the execution client's block).
    pub(crate) snap: bool,
}

/// `[sync]`, checked against the chain and `[el]`.
#[derive(Debug, Clone)]
pub(crate) struct SyncSettings {
    /// The kinds of peers to sync from.
    pub(crate) sources: SyncSources,
    /// Where the pivot comes from.
    pub(crate) pivot: PivotSource,
    /// `sync.checkpoint`, parsed.
    pub(crate) checkpoint: Option<ChainHead>,
    /// Whether the head most peers announce may be a sync's pivot (a dev chain, or
    /// `sync.allow_peer_pivot`).
    pub(crate) peer_pivot: bool,
    /// Whether to draw a progress bar.
    pub(crate) progress_bar: bool,
    /// The sync crate's limits (no pivot yet: see [`SyncSettings::sync_config`]).
    pub(crate) config: leafsync_sync::SyncConfig,
}

impl SyncSettings {
    /// The checkpoint when it is the pivot: `sync.pivot` is `auto` or `checkpoint`.
    pub(crate) fn trusted_checkpoint(&self) -> Option<ChainHead> {
        match self.pivot {
            PivotSource::Auto | PivotSource::Checkpoint => self.checkpoint,
            PivotSource::El | PivotSource::Peers => None,
        }
    }

    /// Whether the execution client's head is the pivot, given whether `el.rpc` is set.
    pub(crate) fn pivot_from_el(&self, has_el: bool) -> bool {
        has_el
            && match self.pivot {
                PivotSource::Auto => self.trusted_checkpoint().is_none(),
                PivotSource::El => true,
                PivotSource::Checkpoint | PivotSource::Peers => false,
            }
    }

    /// The sync crate's settings with the fixed pivot, if any.
    pub(crate) fn sync_config(&self) -> leafsync_sync::SyncConfig {
        leafsync_sync::SyncConfig {
            pivot: self.trusted_checkpoint(),
            peer_pivot: self.peer_pivot,
            ..self.config.clone()
        }
    }
}

/// `[leafdb]`, in bytes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LeafdbSettings {
    /// RocksDB block cache.
    pub(crate) block_cache_bytes: usize,
    /// Blocks for which replaced trie nodes stay servable by hash.
    pub(crate) recent_blocks: u64,
    /// Byte budget of that cache.
    pub(crate) recent_cache_bytes: usize,
    /// Table files written past the page cache.
    pub(crate) direct_writes: bool,
}

impl LeafdbSettings {
    /// RocksDB's options (with `max_open_files` sized by the caller) and the leafdb's.
    pub(crate) fn leafdb_options(&self, max_open_files: i32) -> (DbOptions, LeafDbConfig) {
        let options = DbOptions::default()
            .block_cache_bytes(self.block_cache_bytes)
            .max_open_files(max_open_files)
            .direct_writes(self.direct_writes);
        let config = LeafDbConfig {
            recent_blocks: self.recent_blocks,
            recent_cache_bytes: self.recent_cache_bytes,
            ..LeafDbConfig::default()
        };
        (options, config)
    }
}
