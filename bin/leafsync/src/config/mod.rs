//! The daemon's configuration: a TOML file (every key optional, defaults documented in
//! `config/leafsync.toml`) merged with command-line flags into one validated [`Config`]; only a
//! validated config builds components.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    str::FromStr,
};

use alloy_primitives::B256;
use leafsync_p2p::{
    chain::{ChainSpec, Enr, PRESET_NAMES},
    leaf::ChainHead,
    peers::NodeRecord,
};
use serde::Deserialize;

/// Smallest `sync.chunk_target_kib` (16 KiB): below it the skeleton costs more round trips than
/// the chunks save.
const MIN_CHUNK_TARGET_KIB: u64 = 16;

/// Default admin JSON-RPC address: loopback only, so nothing outside the machine can add peers.
pub(crate) const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:8647";

/// Where `leafsync status` looks for the admin JSON-RPC by default.
pub(crate) const DEFAULT_ADMIN_URL: &str = "http://127.0.0.1:8647";

/// Why a configuration was rejected. Every variant names the file (or the flag) and the key.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConfigError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this schema (unknown key, wrong type, …); the parser's
    /// message names the key, the line and the reason.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
    /// A value is well-formed but unusable.
    #[error("{origin}: `{key}`: {reason}")]
    Invalid {
        /// The file, or `command line`.
        origin: String,
        /// The key, e.g. `p2p.static_peers[1]`.
        key: String,
        /// Why.
        reason: String,
    },
}

/// The file's schema. Unknown keys are errors; absent keys take the documented defaults.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
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
    pub(crate) admin: AdminSection,
    /// The Prometheus endpoint.
    pub(crate) metrics: MetricsSection,
    /// Logging.
    pub(crate) log: LogSection,
}

/// `[admin]`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct AdminSection {
    /// Address of the admin JSON-RPC; an empty string disables it.
    pub(crate) listen: String,
}

impl Default for AdminSection {
    fn default() -> Self {
        Self { listen: DEFAULT_ADMIN_LISTEN.into() }
    }
}

/// `[metrics]`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct MetricsSection {
    /// Address of the Prometheus endpoint (`GET /metrics`); empty disables it.
    pub(crate) listen: String,
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
            admin: AdminSection::default(),
            metrics: MetricsSection::default(),
            log: LogSection::default(),
        }
    }
}

/// `[p2p]`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct P2pSection {
    /// IP address to listen on (TCP for RLPx, UDP for discv5).
    pub(crate) listen_ip: IpAddr,
    /// Port for RLPx and discv5; 0 picks a free one.
    pub(crate) port: u16,
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
            discovery: true,
            bootnodes: None,
            static_peers: Vec::new(),
            trusted_peers: Vec::new(),
            max_inbound: leafsync_p2p::peers::DEFAULT_MAX_INBOUND,
            max_outbound: leafsync_p2p::peers::DEFAULT_MAX_OUTBOUND,
        }
    }
}

/// `[el]`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct ElSection {
    /// JSON-RPC URL of the neighbouring execution client (http:// or ws://).
    pub(crate) rpc: Option<String>,
    /// Genesis allocation to load into an empty leafdb before following (small chains).
    pub(crate) genesis: Option<PathBuf>,
}

/// Where the pivot of a sync comes from (`sync.pivot`).
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
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

/// `sync.checkpoint`: a block the operator trusts, synced as the pivot.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub(crate) struct CheckpointKey {
    /// Block number.
    pub(crate) number: u64,
    /// Block hash (0x-hex, 32 bytes).
    pub(crate) hash: String,
    /// The block's state root (0x-hex, 32 bytes).
    pub(crate) state_root: String,
}

/// How a sync downloads the state (`sync.mode`).
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum SyncModeKey {
    /// Chunks verified against the skeleton, healed where they differ.
    Leaf,
    /// Every trie node from the root down (the old fast sync; a baseline).
    HealOnly,
}

/// `[sync]`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct SyncSection {
    /// Where the pivot comes from.
    pub(crate) pivot: PivotSource,
    /// A trusted block to sync (see [`PivotSource::Checkpoint`]).
    pub(crate) checkpoint: Option<CheckpointKey>,
    /// Whether the head most peers announce may be the pivot on a public chain.
    pub(crate) allow_peer_pivot: bool,
    /// Leaf sync or heal-only.
    pub(crate) mode: SyncModeKey,
    /// Target chunk size in KiB.
    pub(crate) chunk_target_kib: u64,
    /// Junk chunks at the pivot head before a server is banned.
    pub(crate) junk_ban_threshold: u32,
    /// Blocks the pivot source may move past the pivot before the sync moves with it.
    pub(crate) repivot_distance: u64,
    /// Seconds without any request to send before the sync restarts from its record.
    pub(crate) stall_timeout_secs: u64,
    /// Seconds between two progress log lines.
    pub(crate) progress_interval_secs: u64,
    /// Whether to draw a progress bar on stderr when it is a terminal.
    pub(crate) progress_bar: bool,
}

impl Default for SyncSection {
    fn default() -> Self {
        let d = leafsync_sync::SyncConfig::default();
        Self {
            pivot: PivotSource::Auto,
            checkpoint: None,
            allow_peer_pivot: false,
            mode: SyncModeKey::Leaf,
            chunk_target_kib: d.chunk_target_bytes >> 10,
            junk_ban_threshold: d.junk_ban_threshold,
            repivot_distance: d.repivot_distance,
            stall_timeout_secs: d.stall_timeout.as_secs(),
            progress_interval_secs: d.progress_interval.as_secs(),
            progress_bar: true,
        }
    }
}

impl SyncSection {
    /// The sync crate's settings (the pivot itself comes from the feed or the peers).
    pub(crate) fn sync_config(&self) -> leafsync_sync::SyncConfig {
        leafsync_sync::SyncConfig {
            mode: match self.mode {
                SyncModeKey::Leaf => leafsync_sync::SyncMode::Leaf,
                SyncModeKey::HealOnly => leafsync_sync::SyncMode::HealOnly,
            },
            chunk_target_bytes: self.chunk_target_kib << 10,
            junk_ban_threshold: self.junk_ban_threshold,
            repivot_distance: self.repivot_distance,
            stall_timeout: std::time::Duration::from_secs(self.stall_timeout_secs),
            progress_interval: std::time::Duration::from_secs(self.progress_interval_secs),
            ..leafsync_sync::SyncConfig::default()
        }
    }
}

/// `[serve]`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct ServeSection {
    /// Storage up to this many bytes travels inline in chunks.
    pub(crate) inline_storage_bytes: usize,
    /// Byte budget of the chunk response cache.
    pub(crate) cache_bytes: usize,
    /// Blocks for which a cached chunk is reused.
    pub(crate) cache_reuse_blocks: u64,
}

impl Default for ServeSection {
    fn default() -> Self {
        let d = leafsync_serve::ServeConfig::default();
        Self {
            inline_storage_bytes: d.inline_storage_bytes,
            cache_bytes: d.cache_bytes,
            cache_reuse_blocks: d.cache_reuse_blocks,
        }
    }
}

/// `[leafdb]`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct LeafdbSection {
    /// RocksDB block cache in MiB.
    pub(crate) block_cache_mib: usize,
    /// Blocks for which replaced trie nodes stay servable by hash.
    pub(crate) recent_blocks: u64,
    /// Byte budget of that cache in MiB.
    pub(crate) recent_cache_mib: usize,
}

impl Default for LeafdbSection {
    fn default() -> Self {
        Self {
            block_cache_mib: leafsync_leafdb::kv::rocks::DEFAULT_BLOCK_CACHE_BYTES >> 20,
            recent_blocks: leafsync_leafdb::DEFAULT_RECENT_BLOCKS,
            recent_cache_mib: leafsync_leafdb::recent::DEFAULT_RECENT_CACHE_BYTES >> 20,
        }
    }
}

/// `[log]`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
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

/// Flags that override the file.
#[derive(Debug, Clone, Default, clap::Args)]
pub(crate) struct RunFlags {
    /// The TOML configuration file.
    #[arg(long)]
    pub(crate) config: Option<PathBuf>,
    /// Overrides `datadir`.
    #[arg(long)]
    pub(crate) datadir: Option<PathBuf>,
    /// Overrides `chain`.
    #[arg(long)]
    pub(crate) chain: Option<String>,
    /// Overrides `p2p.port`.
    #[arg(long)]
    pub(crate) port: Option<u16>,
    /// Overrides `p2p.bootnodes` (comma-separated ENRs).
    #[arg(long, value_delimiter = ',')]
    pub(crate) bootnodes: Option<Vec<String>>,
    /// Overrides `el.rpc`.
    #[arg(long)]
    pub(crate) el_rpc: Option<String>,
    /// Overrides `metrics.listen` (e.g. 127.0.0.1:9403).
    #[arg(long)]
    pub(crate) metrics: Option<String>,
    /// Overrides `log.level`.
    #[arg(long)]
    pub(crate) log: Option<String>,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    /// The merged file and flags.
    pub(crate) file: FileConfig,
    /// The chain, its genesis known.
    pub(crate) chain: ChainSpec,
    /// Parsed bootnodes.
    pub(crate) bootnodes: Vec<Enr>,
    /// Parsed static peers.
    pub(crate) static_peers: Vec<NodeRecord>,
    /// Parsed trusted peers.
    pub(crate) trusted_peers: Vec<NodeRecord>,
    /// RLPx listen address.
    pub(crate) listen: SocketAddr,
    /// Admin JSON-RPC address, if enabled.
    pub(crate) admin: Option<SocketAddr>,
    /// Metrics address, if enabled.
    pub(crate) metrics: Option<SocketAddr>,
    /// `sync.checkpoint`, parsed.
    pub(crate) checkpoint: Option<ChainHead>,
    /// Whether the head most peers announce may be a sync's pivot (a dev chain, or
    /// `sync.allow_peer_pivot`).
    pub(crate) peer_pivot: bool,
}

impl FileConfig {
    /// Reads and parses a file (no validation beyond the schema).
    pub(crate) fn read(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
        Self::parse(path, &text)
    }

    /// Parses TOML text attributed to `path`.
    pub(crate) fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string().trim_end().replace('\n', " "),
        })
    }
}

impl Config {
    /// Loads the file named by the flags (if any), applies the flags and validates.
    pub(crate) fn load(flags: &RunFlags) -> Result<Self, ConfigError> {
        let (mut file, origin) = match &flags.config {
            Some(path) => (FileConfig::read(path)?, path.display().to_string()),
            None => (FileConfig::default(), "defaults".to_string()),
        };
        if let Some(v) = &flags.datadir {
            file.datadir.clone_from(v);
        }
        if let Some(v) = &flags.chain {
            file.chain.clone_from(v);
        }
        if let Some(v) = flags.port {
            file.p2p.port = v;
        }
        if let Some(v) = &flags.bootnodes {
            file.p2p.bootnodes = Some(v.clone());
        }
        if let Some(v) = &flags.el_rpc {
            file.el.rpc = Some(v.clone());
        }
        if let Some(v) = &flags.metrics {
            file.metrics.listen.clone_from(v);
        }
        if let Some(v) = &flags.log {
            file.log.level.clone_from(v);
        }
        Self::validate(file, &origin)
    }

    /// Checks every value and parses the structured ones.
    pub(crate) fn validate(file: FileConfig, origin: &str) -> Result<Self, ConfigError> {
        let invalid = |key: &str, reason: String| ConfigError::Invalid {
            origin: origin.to_string(),
            key: key.to_string(),
            reason,
        };
        let mut chain = ChainSpec::preset(&file.chain).map_err(|_| {
            invalid(
                "chain",
                format!("unknown chain {:?} (known: {})", file.chain, PRESET_NAMES.join(", ")),
            )
        })?;
        let genesis_hash = file
            .genesis_hash
            .as_deref()
            .map(|s| {
                B256::from_str(s)
                    .map_err(|e| invalid("genesis_hash", format!("not a 32-byte hex hash: {e}")))
            })
            .transpose()?;
        match genesis_hash {
            Some(hash) if chain.has_placeholder_genesis() => chain = chain.with_genesis_hash(hash),
            Some(hash) if hash != chain.genesis_hash => {
                return Err(invalid(
                    "genesis_hash",
                    format!(
                        "{hash} differs from the {} genesis {}",
                        chain.name, chain.genesis_hash
                    ),
                ));
            }
            None if chain.has_placeholder_genesis() => {
                return Err(invalid(
                    "genesis_hash",
                    format!(
                        "required for chain {:?}: its genesis depends on your genesis file",
                        file.chain
                    ),
                ));
            }
            _ => {}
        }
        let bootnodes = match &file.p2p.bootnodes {
            None => chain.bootnodes.clone(),
            Some(list) => list
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    Enr::from_str(s).map_err(|e| {
                        invalid(&format!("p2p.bootnodes[{i}]"), format!("not an ENR: {e}"))
                    })
                })
                .collect::<Result<_, _>>()?,
        };
        let enodes = |key: &str, list: &[String]| -> Result<Vec<NodeRecord>, ConfigError> {
            list.iter()
                .enumerate()
                .map(|(i, s)| {
                    NodeRecord::from_str(s)
                        .map_err(|e| invalid(&format!("{key}[{i}]"), e.to_string()))
                })
                .collect()
        };
        let static_peers = enodes("p2p.static_peers", &file.p2p.static_peers)?;
        let trusted_peers = enodes("p2p.trusted_peers", &file.p2p.trusted_peers)?;
        if file.p2p.max_outbound == 0 && !file.p2p.static_peers.is_empty() {
            return Err(invalid("p2p.max_outbound", "is 0 but static peers are configured".into()));
        }
        if let Some(url) = &file.el.rpc {
            let ok = ["http://", "https://", "ws://", "wss://"].iter().any(|p| url.starts_with(p));
            if !ok {
                return Err(invalid(
                    "el.rpc",
                    format!("{url:?} is not an http(s):// or ws(s):// URL"),
                ));
            }
        }
        let sync = &file.sync;
        if sync.pivot == PivotSource::El && file.el.rpc.is_none() {
            return Err(invalid("sync.pivot", "\"el\" needs `el.rpc`".into()));
        }
        let checkpoint = match &sync.checkpoint {
            None if sync.pivot == PivotSource::Checkpoint => {
                return Err(invalid("sync.pivot", "\"checkpoint\" needs `sync.checkpoint`".into()));
            }
            None => None,
            Some(c) => {
                let word = |key: &str, v: &str| {
                    v.strip_prefix("0x")
                        .filter(|h| h.len() == 64)
                        .and_then(|_| v.parse::<B256>().ok())
                        .ok_or_else(|| {
                            invalid(key, format!("{v:?} is not a 0x-prefixed 32-byte hex hash"))
                        })
                };
                Some(ChainHead {
                    number: c.number,
                    hash: word("sync.checkpoint.hash", &c.hash)?,
                    state_root: word("sync.checkpoint.state_root", &c.state_root)?,
                })
            }
        };
        // Peer heads are unauthenticated: on a public chain Sybil peers could choose the state
        // synced, so the peers' pivot needs an explicit opt-in there.
        let peer_pivot = chain.name == "dev" || sync.allow_peer_pivot;
        if sync.pivot == PivotSource::Peers && !peer_pivot {
            return Err(invalid(
                "sync.pivot",
                format!(
                    "\"peers\" on {} needs `sync.allow_peer_pivot = true`: peers' heads are \
                     unauthenticated; prefer `el.rpc` or `sync.checkpoint`",
                    chain.name
                ),
            ));
        }
        let max_kib = leafsync_sync::config::CHUNK_MAX_BYTES >> 10;
        if !(MIN_CHUNK_TARGET_KIB..=max_kib).contains(&sync.chunk_target_kib) {
            return Err(invalid(
                "sync.chunk_target_kib",
                format!("{} is outside {MIN_CHUNK_TARGET_KIB}..={max_kib}", sync.chunk_target_kib),
            ));
        }
        if sync.junk_ban_threshold == 0 {
            return Err(invalid("sync.junk_ban_threshold", "must be at least 1".into()));
        }
        let recent = leafsync_leafdb::DEFAULT_RECENT_BLOCKS;
        if sync.repivot_distance == 0 || sync.repivot_distance >= recent {
            return Err(invalid(
                "sync.repivot_distance",
                format!(
                    "{} is outside 1..{recent}: servers keep a pivot's nodes for {recent} blocks",
                    sync.repivot_distance
                ),
            ));
        }
        if sync.stall_timeout_secs == 0 {
            return Err(invalid("sync.stall_timeout_secs", "must be at least 1".into()));
        }
        if sync.progress_interval_secs == 0 {
            return Err(invalid("sync.progress_interval_secs", "must be at least 1".into()));
        }
        tracing_subscriber::EnvFilter::try_new(&file.log.level)
            .map_err(|e| invalid("log.level", format!("not a tracing filter: {e}")))?;
        if file.leafdb.block_cache_mib == 0 {
            return Err(invalid("leafdb.block_cache_mib", "must be at least 1".into()));
        }
        let listen = SocketAddr::new(file.p2p.listen_ip, file.p2p.port);
        let addr = |key: &str, v: &str| -> Result<Option<SocketAddr>, ConfigError> {
            if v.is_empty() {
                return Ok(None);
            }
            SocketAddr::from_str(v)
                .map(Some)
                .map_err(|e| invalid(key, format!("{v:?} is not ip:port: {e}")))
        };
        let admin = addr("admin.listen", &file.admin.listen)?;
        let metrics = addr("metrics.listen", &file.metrics.listen)?;
        Ok(Self {
            file,
            chain,
            bootnodes,
            static_peers,
            trusted_peers,
            listen,
            admin,
            metrics,
            checkpoint,
            peer_pivot,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::validate(FileConfig::parse(Path::new("test.toml"), text)?, "test.toml")
    }

    fn err(text: &str) -> String {
        match parse(text) {
            Ok(_) => panic!("accepted: {text}"),
            Err(e) => e.to_string(),
        }
    }

    /// The documented file is the defaults, key for key.
    #[test]
    fn documented_config_is_the_defaults() {
        let text = include_str!("../../../config/leafsync.toml");
        let file = FileConfig::parse(Path::new("config/leafsync.toml"), text).unwrap();
        assert_eq!(file, FileConfig::default());
        assert!(Config::validate(file, "config/leafsync.toml").is_ok());
    }

    /// Every key of the documented file (set or shown commented out) is in the reference.
    #[test]
    fn every_key_is_in_the_configuration_reference() {
        let file = include_str!("../../../config/leafsync.toml");
        let reference = include_str!("../../../docs/configuration.md");
        let mut section = String::new();
        let mut keys = 0;
        for line in file.lines() {
            let line = line.trim_start_matches('#').trim();
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                section = name.to_string();
                continue;
            }
            let Some((key, _)) = line.split_once(" = ") else { continue };
            if key.contains(' ') {
                continue;
            }
            let full =
                if section.is_empty() { key.to_string() } else { format!("{section}.{key}") };
            let found = reference.contains(&format!("| `{key}` |"))
                || reference.contains(&format!("| `{full}` |"));
            assert!(found, "`{full}` is not in docs/configuration.md");
            keys += 1;
        }
        assert!(keys >= 30, "parsed only {keys} keys");
    }

    #[test]
    fn every_preset_loads() {
        for name in PRESET_NAMES {
            let extra = if name == "dev" {
                "genesis_hash = \"0x0101010101010101010101010101010101010101010101010101010101010101\"\n"
            } else {
                ""
            };
            let config = parse(&format!("chain = \"{name}\"\n{extra}")).unwrap();
            assert_eq!(config.chain.name, name);
            assert!(!config.chain.has_placeholder_genesis());
        }
    }

    #[test]
    fn config_0_1_keeps_loading() {
        let path =
            Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/leafsync-0.1.toml"));
        let config = Config::validate(FileConfig::read(path).unwrap(), "fixture").unwrap();
        assert_eq!(config.chain.name, "sepolia");
        assert_eq!(config.listen.port(), 30404);
        assert_eq!(config.static_peers.len(), 1);
        assert_eq!(config.file.leafdb.block_cache_mib, 1024);
        assert_eq!(config.file.leafdb.recent_blocks, 128, "defaults fill what the file omits");
    }

    #[test]
    fn bad_files_name_the_file_the_key_and_the_reason() {
        let e = err("datadir = \"x\"\nchian = \"mainnet\"\n");
        assert!(e.contains("test.toml") && e.contains("chian"), "{e}");
        let e = err("[p2p]\nport = \"thirty\"\n");
        assert!(e.contains("test.toml") && e.contains("port"), "{e}");
        let e = err("[p2p]\nport = 70000\n");
        assert!(e.contains("port"), "{e}");
        let e = err("[serve]\nbogus = 1\n");
        assert!(e.contains("bogus"), "{e}");
        let e = err("chain = \"goerli\"\n");
        assert!(e.contains("`chain`") && e.contains("goerli") && e.contains("sepolia"), "{e}");
        let e = err("chain = \"dev\"\n");
        assert!(e.contains("`genesis_hash`") && e.contains("required"), "{e}");
        let e = err("chain = \"sepolia\"\ngenesis_hash = \"0x01\"\n");
        assert!(e.contains("`genesis_hash`"), "{e}");
        let e = err(
            "chain = \"sepolia\"\ngenesis_hash = \"0x0101010101010101010101010101010101010101010101010101010101010101\"\n",
        );
        assert!(e.contains("differs"), "{e}");
        let e = err("[p2p]\nstatic_peers = [\"enode://abc@1.2.3.4:30303\"]\n");
        assert!(e.contains("`p2p.static_peers[0]`"), "{e}");
        let e = err("[p2p]\nbootnodes = [\"enr:nope\"]\n");
        assert!(e.contains("`p2p.bootnodes[0]`"), "{e}");
        let e = err("[el]\nrpc = \"localhost:8545\"\n");
        assert!(e.contains("`el.rpc`"), "{e}");
        let e = err("[log]\nlevel = \"info,,[\"\n");
        assert!(e.contains("`log.level`"), "{e}");
        let e = err("[admin]\nlisten = \"localhost\"\n");
        assert!(e.contains("`admin.listen`"), "{e}");
        let e = err("[leafdb]\nblock_cache_mib = 0\n");
        assert!(e.contains("`leafdb.block_cache_mib`"), "{e}");
        let e = err("[sync]\npivot = \"el\"\n");
        assert!(e.contains("`sync.pivot`") && e.contains("el.rpc"), "{e}");
        let e = err("[sync]\npivot = \"majority\"\n");
        assert!(e.contains("majority") && e.contains("peers"), "{e}");
        let e = err("[sync]\nmode = \"snap\"\n");
        assert!(e.contains("snap") && e.contains("heal-only"), "{e}");
        let e = err("[sync]\nchunk_target_kib = 4096\n");
        assert!(e.contains("`sync.chunk_target_kib`") && e.contains("2048"), "{e}");
        let e = err("[sync]\npivot = \"peers\"\n");
        assert!(e.contains("`sync.pivot`") && e.contains("allow_peer_pivot"), "{e}");
        assert!(parse("[sync]\npivot = \"peers\"\nallow_peer_pivot = true\n").unwrap().peer_pivot);
        assert!(!parse("").unwrap().peer_pivot, "mainnet never trusts peers by default");
        let e = err("[sync]\npivot = \"checkpoint\"\n");
        assert!(e.contains("`sync.checkpoint`"), "{e}");
        let e = err("[sync.checkpoint]\nnumber = 5\nhash = \"0x12\"\nstate_root = \"0x12\"\n");
        assert!(e.contains("`sync.checkpoint.hash`"), "{e}");
        let ok = parse(&format!(
            "[sync.checkpoint]\nnumber = 5\nhash = \"{}\"\nstate_root = \"{}\"\n",
            B256::repeat_byte(1),
            B256::repeat_byte(2)
        ))
        .unwrap();
        assert_eq!(ok.checkpoint.map(|c| c.number), Some(5));
        let e = err("[sync]\nrepivot_distance = 500\n");
        assert!(e.contains("`sync.repivot_distance`"), "{e}");
        let e = err("[sync]\nstall_timeout_secs = 0\n");
        assert!(e.contains("`sync.stall_timeout_secs`"), "{e}");
    }

    #[test]
    fn flags_override_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "chain = \"sepolia\"\n[p2p]\nport = 1000\n").unwrap();
        let flags = RunFlags {
            config: Some(path),
            chain: Some("hoodi".into()),
            port: Some(2000),
            datadir: Some(PathBuf::from("/tmp/x")),
            ..RunFlags::default()
        };
        let config = Config::load(&flags).unwrap();
        assert_eq!(config.chain.name, "hoodi");
        assert_eq!(config.listen.port(), 2000);
        assert_eq!(config.file.datadir, PathBuf::from("/tmp/x"));
        let missing = RunFlags {
            config: Some(PathBuf::from("/nonexistent/leafsync.toml")),
            ..RunFlags::default()
        };
        let e = Config::load(&missing).unwrap_err().to_string();
        assert!(e.contains("/nonexistent/leafsync.toml"), "{e}");
    }
}
