//! The file's schema, one struct per `[section]`, each with its documented defaults and a
//! `validate` that turns it into the typed settings the node uses. The schema is user-facing and
//! back-compat tested (`tests/fixtures/leafsync-0.1.toml`): keys are only ever added. The
//! largest section, `[sync]`, is in `sections/sync.rs`.

mod sync;

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::PathBuf,
    str::FromStr,
};

use alloy_primitives::B256;
use leafsync_p2p::{chain::ChainSpec, leaf::protocol::MAX_PIECE_AGE_BLOCKS, peers::NodeRecord};
use serde::{Deserialize, Serialize};

pub(crate) use self::sync::SyncSection;
use super::{
    DEFAULT_ADMIN_LISTEN, Origin,
    settings::{LeafdbSettings, NetworkSettings, SyncSettings},
};
use crate::config::ConfigError;

/// The file's schema. Unknown keys are errors; absent keys take the documented defaults.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct FileConfig {
    /// Where the leafdb and the node key live.
    pub(crate) datadir: PathBuf,
    /// Chain preset: mainnet, sepolia, holesky, hoodi or dev.
    pub(crate) chain: String,
    /// Genesis hash; required for `dev` (its preset cannot know it), checked against the preset
    /// otherwise.
    pub(crate) genesis_hash: Option<String>,
    /// Networking.
    pub(crate) p2p: P2pSection,
    /// The neighbouring execution client.
    pub(crate) el: ElSection,
    /// Syncing an empty leafdb from peers.
    pub(crate) sync: SyncSection,
    /// Serving.
    pub(crate) serve: ServeSection,
    /// The state store.
    pub(crate) leafdb: LeafdbSection,
    /// The admin JSON-RPC.
    pub(crate) admin: ListenSection,
    /// The Prometheus endpoint.
    pub(crate) metrics: ListenSection,
    /// Logging.
    pub(crate) log: LogSection,
}

impl Default for FileConfig {
    fn default() -> Self {
        Self {
            datadir: PathBuf::from("leafsync-data"),
            chain: "mainnet".into(),
            genesis_hash: None,
            p2p: P2pSection::default(),
            el: ElSection::default(),
            sync: SyncSection::default(),
            serve: ServeSection::default(),
            leafdb: LeafdbSection::default(),
            admin: ListenSection { listen: DEFAULT_ADMIN_LISTEN.into() },
            metrics: ListenSection::default(),
            log: LogSection::default(),
        }
    }
}

impl FileConfig {
    /// `chain` and `genesis_hash`: the preset, its genesis known.
    pub(crate) fn chain_spec(&self, o: &Origin<'_>) -> Result<ChainSpec, ConfigError> {
        let chain = ChainSpec::preset(&self.chain).map_err(|_| {
            let known = leafsync_p2p::chain::PRESET_NAMES.join(", ");
            o.invalid("chain", format!("unknown chain {:?} (known: {known})", self.chain))
        })?;
        let genesis_hash = self
            .genesis_hash
            .as_deref()
            .map(|s| {
                B256::from_str(s)
                    .map_err(|e| o.invalid("genesis_hash", format!("not a 32-byte hex hash: {e}")))
            })
            .transpose()?;
        match genesis_hash {
            Some(hash) if chain.has_placeholder_genesis() => Ok(chain.with_genesis_hash(hash)),
            Some(hash) if hash != chain.genesis_hash => Err(o.invalid(
                "genesis_hash",
                format!("{hash} differs from the {} genesis {}", chain.name, chain.genesis_hash),
            )),
            None if chain.has_placeholder_genesis() => Err(o.invalid(
                "genesis_hash",
                format!(
                    "required for chain {:?}: its genesis depends on your genesis file",
                    self.chain
                ),
            )),
            _ => Ok(chain),
        }
    }
}

/// `[admin]` and `[metrics]`: one address each.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct ListenSection {
    /// Address of the endpoint (`ip:port`); an empty string disables it. Admin: the JSON-RPC,
    /// default [`DEFAULT_ADMIN_LISTEN`]; metrics: `GET /metrics`, default off.
    pub(crate) listen: String,
}

impl ListenSection {
    /// The address, `None` when disabled; `section` names the key in errors.
    pub(crate) fn validate(
        &self,
        section: &str,
        o: &Origin<'_>,
    ) -> Result<Option<SocketAddr>, ConfigError> {
        if self.listen.is_empty() {
            return Ok(None);
        }
        SocketAddr::from_str(&self.listen).map(Some).map_err(|e| {
            o.invalid(
                &format!("{section}.listen"),
                format!("{:?} is not ip:port: {e}", self.listen),
            )
        })
    }
}

/// `[p2p]`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct P2pSection {
    /// IP address to listen on (TCP for RLPx, UDP for discv5).
    pub(crate) listen_ip: IpAddr,
    /// Port for RLPx and discv5; 0 picks a free one.
    pub(crate) port: u16,
    /// The public IPv4 address to put in our discv5 record (behind NAT, or on a host that
    /// listens on `0.0.0.0`); absent: the one discv5 peers report.
    pub(crate) external_ip: Option<Ipv4Addr>,
    /// Whether to run discv5 discovery.
    pub(crate) discovery: bool,
    /// discv5 bootnodes (ENR strings); absent means the chain preset's.
    pub(crate) bootnodes: Option<Vec<String>>,
    /// Peers kept connected (enode URLs).
    pub(crate) static_peers: Vec<String>,
    /// Peers kept connected and exempt from limits and bans (enode URLs).
    pub(crate) trusted_peers: Vec<String>,
    /// Most inbound sessions.
    pub(crate) max_inbound: usize,
    /// Most outbound sessions.
    pub(crate) max_outbound: usize,
}

impl Default for P2pSection {
    fn default() -> Self {
        Self {
            listen_ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            port: leafsync_p2p::chain::DEFAULT_PORT,
            external_ip: None,
            discovery: true,
            bootnodes: None,
            static_peers: Vec::new(),
            trusted_peers: Vec::new(),
            max_inbound: leafsync_p2p::peers::DEFAULT_MAX_INBOUND,
            max_outbound: leafsync_p2p::peers::DEFAULT_MAX_OUTBOUND,
        }
    }
}

impl P2pSection {
    /// Parses the peers and addresses; bootnodes default to `chain`'s.
    pub(crate) fn validate(
        &self,
        chain: &ChainSpec,
        o: &Origin<'_>,
    ) -> Result<NetworkSettings, ConfigError> {
        let bootnodes = match &self.bootnodes {
            None => chain.bootnodes.clone(),
            Some(list) => o.parse_list("p2p.bootnodes", list, |e| format!("not an ENR: {e}"))?,
        };
        if self.max_outbound == 0 && !self.static_peers.is_empty() {
            return Err(
                o.invalid("p2p.max_outbound", "is 0 but static peers are configured".into())
            );
        }
        if let Some(ip) = self.external_ip
            && (ip.is_unspecified() || ip.is_multicast() || ip.is_broadcast())
        {
            let reason = format!("{ip} is no address a peer can reach us at");
            return Err(o.invalid("p2p.external_ip", reason));
        }
        Ok(NetworkSettings {
            listen: SocketAddr::new(self.listen_ip, self.port),
            external_ip: self.external_ip,
            discovery: self.discovery,
            bootnodes,
            static_peers: o.parse_list("p2p.static_peers", &self.static_peers, |e| e)?,
            trusted_peers: o.parse_list("p2p.trusted_peers", &self.trusted_peers, |e| e)?,
            el_peer: None,
            max_inbound: self.max_inbound,
            max_outbound: self.max_outbound,
        })
    }
}

/// The longest interval a `*_secs` key takes: a week (a timer far in the future overflows the
/// clock, a panic, and means "never" anyway).
pub(crate) const MAX_INTERVAL_SECS: u64 = 7 * 24 * 3600;

/// `[el]`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct ElSection {
    /// JSON-RPC URL of the neighbouring execution client (http:// or ws://).
    pub(crate) rpc: Option<String>,
    /// Genesis allocation to load into an empty leafdb before following (small chains).
    pub(crate) genesis: Option<PathBuf>,
    /// The execution client's own enode URL (geth prints it in `admin_nodeInfo`): kept connected
    /// as a static and trusted peer. Default none.
    pub(crate) enode: Option<String>,
    /// Seconds the next block's trace may keep failing before the state is repaired from peers
    /// past it (`leafsync_ingest::DEFAULT_STUCK_AFTER`).
    pub(crate) stuck_after_secs: u64,
}

impl Default for ElSection {
    fn default() -> Self {
        Self {
            rpc: None,
            genesis: None,
            enode: None,
            stuck_after_secs: leafsync_ingest::DEFAULT_STUCK_AFTER.as_secs(),
        }
    }
}

impl ElSection {
    /// Checks the URL's scheme and the enode.
    pub(crate) fn validate(&self, o: &Origin<'_>) -> Result<Self, ConfigError> {
        if let Some(url) = &self.rpc {
            // The follower speaks plain HTTP and WebSocket (the execution client is local, and
            // no TLS stack is built in): an https:// or wss:// URL is refused here, at start.
            if !["http://", "ws://"].iter().any(|p| url.starts_with(p)) {
                let reason = format!(
                    "{url:?} is not an http:// or ws:// URL (TLS is not supported: the execution \
                     client is expected on this machine or a private network)"
                );
                return Err(o.invalid("el.rpc", reason));
            }
        }
        // The follower loads the genesis file once the execution client confirms its chain;
        // without a client nothing would, and the node would serve an empty state for good.
        if self.genesis.is_some() && self.rpc.is_none() {
            let reason = "needs `el.rpc`: the genesis is loaded once the execution client it \
                          belongs to is reached";
            return Err(o.invalid("el.genesis", reason.into()));
        }
        self.peer(o)?;
        o.at_least_one(&[("el.stuck_after_secs", self.stuck_after_secs)])?;
        let most = MAX_INTERVAL_SECS;
        o.at_most(&[("el.stuck_after_secs", self.stuck_after_secs, most)], "seconds")?;
        Ok(self.clone())
    }

    /// `el.enode`, parsed.
    pub(crate) fn peer(&self, o: &Origin<'_>) -> Result<Option<NodeRecord>, ConfigError> {
        self.enode
            .as_deref()
            .map(|url| {
                NodeRecord::from_str(url)
                    .map_err(|e| o.invalid("el.enode", format!("{url:?}: {e}")))
            })
            .transpose()
    }
}

/// `[serve]`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct ServeSection {
    /// Storage up to this many bytes travels inline in chunks.
    pub(crate) inline_storage_bytes: usize,
    /// Byte budget of the chunk response cache.
    pub(crate) cache_bytes: usize,
    /// Blocks for which a cached chunk is reused.
    pub(crate) cache_reuse_blocks: u64,
    /// Whether to serve snap/1 (beside eth/69) from the leafdb's head; default false.
    pub(crate) snap: bool,
    /// Whether to offer `leaf/1`; default true. False (with `snap`) makes a node that speaks
    /// only eth/69 and snap/1, as geth does.
    pub(crate) leaf: bool,
}

impl Default for ServeSection {
    fn default() -> Self {
        let d = leafsync_serve::ServeConfig::default();
        Self {
            inline_storage_bytes: d.inline_storage_bytes,
            cache_bytes: d.cache_bytes,
            cache_reuse_blocks: d.cache_reuse_blocks,
            snap: false,
            leaf: true,
        }
    }
}

impl ServeSection {
    /// Checks that the node offers a protocol, and that a sync does not count on `leaf/1` peers
    /// the node cannot have; without `leaf/1` the default sync sources are none (a node that
    /// serves from its own execution client needs no sync).
    pub(crate) fn validate(
        &self,
        sync_section: &SyncSection,
        sync: &mut SyncSettings,
        o: &Origin<'_>,
    ) -> Result<(), ConfigError> {
        if self.cache_reuse_blocks > MAX_PIECE_AGE_BLOCKS {
            let reason = format!(
                "{} is more than {MAX_PIECE_AGE_BLOCKS}, the oldest piece leaf/1 clients accept",
                self.cache_reuse_blocks
            );
            return Err(o.invalid("serve.cache_reuse_blocks", reason));
        }
        if self.leaf {
            return Ok(());
        }
        if !self.snap {
            let reason = "false needs `serve.snap = true`: the node would offer no protocol";
            return Err(o.invalid("serve.leaf", reason.into()));
        }
        if sync_section.sources.is_some() && sync.sources.leaf {
            let reason = "false leaves no leaf/1 peers to sync from, but `sync.sources` lists \
                          \"leaf\": list only \"snap\"";
            return Err(o.invalid("serve.leaf", reason.into()));
        }
        sync.sources.leaf = false;
        Ok(())
    }

    /// The serve crate's settings (checked by [`Self::validate`]).
    pub(crate) fn serve_config(&self) -> leafsync_serve::ServeConfig {
        leafsync_serve::ServeConfig {
            inline_storage_bytes: self.inline_storage_bytes,
            cache_bytes: self.cache_bytes,
            cache_reuse_blocks: self.cache_reuse_blocks,
            ..leafsync_serve::ServeConfig::default()
        }
    }
}

/// `[leafdb]`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct LeafdbSection {
    /// RocksDB block cache in MiB.
    pub(crate) block_cache_mib: usize,
    /// Blocks for which replaced trie nodes stay servable by hash.
    pub(crate) recent_blocks: u64,
    /// Byte budget of that cache in MiB.
    pub(crate) recent_cache_mib: usize,
    /// Write the table files of syncs and imports past the page cache (`O_DIRECT`).
    pub(crate) direct_writes: bool,
}

impl Default for LeafdbSection {
    fn default() -> Self {
        Self {
            block_cache_mib: leafsync_leafdb::kv::rocks::DEFAULT_BLOCK_CACHE_BYTES >> 20,
            recent_blocks: leafsync_leafdb::DEFAULT_RECENT_BLOCKS,
            recent_cache_mib: leafsync_leafdb::recent::DEFAULT_RECENT_CACHE_BYTES >> 20,
            direct_writes: true,
        }
    }
}

/// The largest cache `[leafdb]` takes, MiB: 1 TiB.
pub(crate) const MAX_CACHE_MIB: u64 = 1 << 20;

impl LeafdbSection {
    /// The sizes in bytes; the block cache must not be empty, and no cache over
    /// [`MAX_CACHE_MIB`] (a size given in bytes where MiB are asked would otherwise ask for
    /// terabytes, or wrap around to nothing).
    pub(crate) fn validate(&self, o: &Origin<'_>) -> Result<LeafdbSettings, ConfigError> {
        o.at_least_one(&[("leafdb.block_cache_mib", self.block_cache_mib as u64)])?;
        let fewest = leafsync_leafdb::DEFAULT_RECENT_BLOCKS;
        if self.recent_blocks < fewest {
            let reason = format!(
                "{} is less than {fewest}: leaf/1 clients keep a pivot up to {fewest} blocks and \
                 a syncing geth asks snap/1 ranges 64 to 128 blocks behind the head; their \
                 requests would be answered empty",
                self.recent_blocks
            );
            return Err(o.invalid("leafdb.recent_blocks", reason));
        }
        o.at_most(
            &[
                ("leafdb.block_cache_mib", self.block_cache_mib as u64, MAX_CACHE_MIB),
                ("leafdb.recent_cache_mib", self.recent_cache_mib as u64, MAX_CACHE_MIB),
            ],
            "MiB",
        )?;
        Ok(LeafdbSettings {
            block_cache_bytes: self.block_cache_mib << 20,
            recent_blocks: self.recent_blocks,
            recent_cache_bytes: self.recent_cache_mib << 20,
            direct_writes: self.direct_writes,
        })
    }
}

/// `[log]`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct LogSection {
    /// A tracing filter (`info`, `leafsync_p2p=debug,info`, …); `RUST_LOG` overrides it.
    pub(crate) level: String,
}

impl Default for LogSection {
    fn default() -> Self {
        Self { level: "info".into() }
    }
}

impl LogSection {
    /// The filter, checked. In the filter syntax a bare word that is not a level is a target
    /// shown at `trace` with everything else off, so a misspelt level (`warning`, `inf`) would
    /// silence the daemon: each directive must be a level or name one (`target=level`).
    pub(crate) fn validate(&self, o: &Origin<'_>) -> Result<String, ConfigError> {
        tracing_subscriber::EnvFilter::try_new(&self.level)
            .map_err(|e| o.invalid("log.level", format!("not a tracing filter: {e}")))?;
        let bare_word = self.level.split(',').map(str::trim).find(|directive| {
            !directive.is_empty()
                && !directive.contains(['=', '['])
                && directive.parse::<tracing_subscriber::filter::LevelFilter>().is_err()
        });
        if let Some(word) = bare_word {
            return Err(o.invalid(
                "log.level",
                format!(
                    "`{word}` is not a level (error, warn, info, debug, trace, off); a target \
                     takes one, as in `{word}=debug`"
                ),
            ));
        }
        Ok(self.level.clone())
    }
}
