//! [`ChainSpec`]: what leafsync needs to know about a chain (network id, genesis, fork schedule,
//! discv5 bootnodes, default ports), loaded from TOML presets under `crates/p2p/chains/` that
//! are compiled into the binary, and the EIP-2124 fork id and fork filter derived from it.

use alloy_eip2124::{ForkFilter, ForkFilterKey, ForkHash, ForkId, Head};
use alloy_primitives::B256;
use serde::{Deserialize, Deserializer};
use std::{collections::BTreeMap, str::FromStr};

/// A discv5 node record, as the `discv5` crate uses it.
pub type Enr = discv5::Enr;

/// Default TCP (RLPx) and UDP (discv5) port. Not 30303, which the neighbouring execution client
/// (geth, reth) binds on the same host; 30403 is free in the usual Ethereum port ranges.
pub const DEFAULT_PORT: u16 = 30403;

/// The embedded presets, by name: the TOML files under `crates/p2p/chains/`, compiled in.
const PRESETS: [(&str, &str); 5] = [
    ("mainnet", include_str!("../../chains/mainnet.toml")),
    ("sepolia", include_str!("../../chains/sepolia.toml")),
    ("holesky", include_str!("../../chains/holesky.toml")),
    ("hoodi", include_str!("../../chains/hoodi.toml")),
    ("dev", include_str!("../../chains/dev.toml")),
];

/// Names of the embedded chain presets, in the order of the embedded table `PRESETS`.
pub const PRESET_NAMES: [&str; PRESETS.len()] = {
    let mut names = [""; PRESETS.len()];
    let mut i = 0;
    while i < PRESETS.len() {
        names[i] = PRESETS[i].0;
        i += 1;
    }
    names
};

/// Why a chain spec could not be loaded or used.
#[derive(Debug, thiserror::Error)]
pub enum ChainSpecError {
    /// No embedded preset has this name.
    #[error("unknown chain preset {0:?} (known: {known})", known = PRESET_NAMES.join(", "))]
    UnknownPreset(String),
    /// The TOML is invalid, has an unknown or missing key, or a value of the wrong type; the
    /// message names the key and its position.
    #[error("invalid chain spec: {0}")]
    Toml(#[from] toml::de::Error),
    /// A bootnode is not a valid ENR.
    #[error("bootnode {index} is not a valid ENR: {reason}")]
    InvalidBootnode {
        /// Position in `bootnodes`.
        index: usize,
        /// The ENR parser's explanation.
        reason: String,
    },
    /// The genesis hash is still the all-zero placeholder of the `dev` preset.
    #[error("chain {0:?} has the placeholder genesis hash: set the real one first")]
    PlaceholderGenesis(String),
}

/// Default devp2p ports of a chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ports {
    /// RLPx TCP port. Default: [`DEFAULT_PORT`].
    #[serde(default = "default_port")]
    pub tcp: u16,
    /// discv5 UDP port. Default: [`DEFAULT_PORT`].
    #[serde(default = "default_port")]
    pub udp: u16,
}

impl Default for Ports {
    fn default() -> Self {
        Self { tcp: DEFAULT_PORT, udp: DEFAULT_PORT }
    }
}

fn default_port() -> u16 {
    DEFAULT_PORT
}

/// Fork activations, by name (names are informative; only the values matter to EIP-2124).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForkSchedule {
    /// Block-number activated forks (pre-merge). Default: none.
    #[serde(default)]
    pub blocks: BTreeMap<String, u64>,
    /// Timestamp activated forks (post-merge), unix seconds. Default: none.
    #[serde(default)]
    pub times: BTreeMap<String, u64>,
}

/// A chain as leafsync needs to know it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChainSpec {
    /// Short name ("mainnet").
    pub name: String,
    /// A local development chain (the `dev` preset): its blocks are not reorged, so a sync's
    /// pivot needs no confirmations and peers may choose it, and a private listen address is
    /// a LAN's. Default: false (a public chain, with those defences on).
    #[serde(default)]
    pub dev: bool,
    /// Network id sent in `Status` and the ENR `leaf` entry.
    pub network_id: u64,
    /// Hash of block 0 (all zeros: placeholder to be replaced, see [`Self::with_genesis_hash`]).
    #[serde(deserialize_with = "deserialize_b256")]
    pub genesis_hash: B256,
    /// Timestamp of block 0; EIP-2124 ignores time forks at or before it. Default: 0.
    #[serde(default)]
    pub genesis_timestamp: u64,
    /// The fork schedule. Default: no forks.
    #[serde(default)]
    pub forks: ForkSchedule,
    /// discv5 bootnodes (ENRs, `enr:` base64 form). Default: none.
    #[serde(default, deserialize_with = "deserialize_enrs")]
    pub bootnodes: Vec<Enr>,
    /// Default ports. Default: [`DEFAULT_PORT`] for both.
    #[serde(default)]
    pub ports: Ports,
}

impl ChainSpec {
    /// Loads an embedded preset (`mainnet`, `sepolia`, `holesky`, `hoodi`, `dev`).
    pub fn preset(name: &str) -> Result<Self, ChainSpecError> {
        let (_, toml) = PRESETS
            .iter()
            .find(|(preset, _)| *preset == name)
            .ok_or_else(|| ChainSpecError::UnknownPreset(name.to_owned()))?;
        Self::from_toml_str(toml)
    }

    /// Parses a chain spec from TOML (the presets' format). Unknown keys are errors.
    pub fn from_toml_str(toml: &str) -> Result<Self, ChainSpecError> {
        Ok(toml::from_str(toml)?)
    }

    /// The spec with another genesis hash (for the `dev` preset, whose hash is only known at run
    /// time).
    pub fn with_genesis_hash(mut self, genesis_hash: B256) -> Self {
        self.genesis_hash = genesis_hash;
        self
    }

    /// Whether the genesis hash is still the all-zero placeholder.
    pub fn has_placeholder_genesis(&self) -> bool {
        self.genesis_hash.is_zero()
    }

    /// Errs while the genesis hash is the placeholder: a node must not announce it.
    pub fn ensure_genesis_known(&self) -> Result<(), ChainSpecError> {
        if self.has_placeholder_genesis() {
            Err(ChainSpecError::PlaceholderGenesis(self.name.clone()))
        } else {
            Ok(())
        }
    }

    /// Every fork activation as EIP-2124 keys (duplicates and zero activations are removed by the
    /// filter).
    pub fn fork_keys(&self) -> impl Iterator<Item = ForkFilterKey> + '_ {
        let blocks = self.forks.blocks.values().map(|&b| ForkFilterKey::Block(b));
        let times = self.forks.times.values().map(|&t| ForkFilterKey::Time(t));
        blocks.chain(times)
    }

    /// The EIP-2124 fork filter for a node whose head is at `head_number` / `head_timestamp`.
    pub fn fork_filter(&self, head_number: u64, head_timestamp: u64) -> ForkFilter {
        let head = Head { number: head_number, timestamp: head_timestamp, ..Head::default() };
        ForkFilter::new(head, self.genesis_hash, self.genesis_timestamp, self.fork_keys())
    }

    /// The EIP-2124 fork id of a node whose head is at `head_number` / `head_timestamp`.
    pub fn fork_id(&self, head_number: u64, head_timestamp: u64) -> ForkId {
        self.fork_filter(head_number, head_timestamp).current()
    }

    /// CRC32 of the genesis hash: the fork hash before any fork, which never changes for a chain.
    pub fn genesis_fork_hash(&self) -> ForkHash {
        ForkHash::from(self.genesis_hash)
    }
}

fn deserialize_b256<'de, D: Deserializer<'de>>(deserializer: D) -> Result<B256, D::Error> {
    let text = String::deserialize(deserializer)?;
    B256::from_str(&text).map_err(|err| {
        serde::de::Error::custom(format!("expected a 0x-prefixed 32-byte hex hash: {err}"))
    })
}

fn deserialize_enrs<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<Enr>, D::Error> {
    let texts = Vec::<String>::deserialize(deserializer)?;
    texts
        .iter()
        .enumerate()
        .map(|(index, text)| {
            Enr::from_str(text).map_err(|reason| {
                serde::de::Error::custom(
                    ChainSpecError::InvalidBootnode { index, reason }.to_string(),
                )
            })
        })
        .collect()
}

/// `Ok` when a field of a peer's `Status` (`theirs`) is `ours`, else `Err(error(ours, theirs))`:
/// how the `eth/69` and `leaf/1` Status checks compare network id, version and genesis.
pub(crate) fn expect_ours<T: PartialEq, E>(
    ours: T,
    theirs: T,
    error: impl FnOnce(T, T) -> E,
) -> Result<(), E> {
    if ours == theirs { Ok(()) } else { Err(error(ours, theirs)) }
}

#[cfg(test)]
mod tests;
