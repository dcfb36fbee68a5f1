//! `[sync]`: where the pivot comes from, which peers a sync downloads from, and its limits.

use std::time::Duration;

use alloy_primitives::B256;
use leafsync_p2p::{chain::ChainSpec, leaf::ChainHead};
use serde::{Deserialize, Serialize};

use super::{ElSection, MAX_INTERVAL_SECS};
use crate::config::{
    ConfigError, Origin,
    settings::{PivotSource, SyncSettings, SyncSources},
};

/// Smallest `sync.chunk_target_kib` (16 KiB): below it the skeleton costs more round trips than
/// the chunks save.
const MIN_CHUNK_TARGET_KIB: u64 = 16;

/// `sync.checkpoint`: a block the operator trusts, synced as the pivot.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub(crate) struct CheckpointKey {
    /// Block number.
    pub(crate) number: u64,
    /// Block hash (0x-hex, 32 bytes).
    pub(crate) hash: String,
    /// The block's state root (0x-hex, 32 bytes).
    pub(crate) state_root: String,
}

impl CheckpointKey {
    /// The block as a chain head; the hashes must be 0x-prefixed 32-byte hex.
    fn validate(&self, o: &Origin<'_>) -> Result<ChainHead, ConfigError> {
        let word = |key: &str, v: &str| {
            v.strip_prefix("0x")
                .filter(|h| h.len() == 64)
                .and_then(|_| v.parse::<B256>().ok())
                .ok_or_else(|| {
                    o.invalid(key, format!("{v:?} is not a 0x-prefixed 32-byte hex hash"))
                })
        };
        Ok(ChainHead {
            number: self.number,
            hash: word("sync.checkpoint.hash", &self.hash)?,
            state_root: word("sync.checkpoint.state_root", &self.state_root)?,
        })
    }
}

/// How a sync downloads the state (`sync.mode`).
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum SyncModeKey {
    /// Chunks verified against the skeleton, healed where they differ.
    Leaf,
    /// Every trie node from the root down (the old fast sync; a baseline).
    HealOnly,
}

/// A kind of peer a sync downloads from (`sync.sources`).
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum SyncSourceKey {
    /// Other leafsync nodes, over `leaf/1`.
    Leaf,
    /// Ethereum nodes serving `snap/1` beside eth/69 (geth).
    Snap,
}

/// `[sync]`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct SyncSection {
    /// The kinds of peers a sync downloads from; absent means `["leaf"]` (without `leaf/1`,
    /// `serve.leaf = false`, none).
    pub(crate) sources: Option<Vec<SyncSourceKey>>,
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
    /// Whether every sync ends by scanning and hashing the whole flat state.
    pub(crate) full_final_check: bool,
}

impl Default for SyncSection {
    fn default() -> Self {
        let d = leafsync_sync::SyncConfig::default();
        Self {
            sources: None,
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
            full_final_check: d.full_final_check,
        }
    }
}

impl SyncSection {
    /// Checks the pivot choice against `chain` and `el` and every limit.
    pub(crate) fn validate(
        &self,
        chain: &ChainSpec,
        el: &ElSection,
        o: &Origin<'_>,
    ) -> Result<SyncSettings, ConfigError> {
        if self.pivot == PivotSource::El && el.rpc.is_none() {
            return Err(o.invalid("sync.pivot", "\"el\" needs `el.rpc`".into()));
        }
        let checkpoint = match &self.checkpoint {
            None if self.pivot == PivotSource::Checkpoint => {
                return Err(
                    o.invalid("sync.pivot", "\"checkpoint\" needs `sync.checkpoint`".into())
                );
            }
            None => None,
            Some(c) => Some(c.validate(o)?),
        };
        // Peer heads are unauthenticated: on a public chain Sybil peers could choose the state
        // synced, so the peers' pivot needs an explicit opt-in there.
        let peer_pivot = chain.dev || self.allow_peer_pivot;
        if self.pivot == PivotSource::Peers && !peer_pivot {
            let reason = format!(
                "\"peers\" on {} needs `sync.allow_peer_pivot = true`: peers' heads are \
                 unauthenticated; prefer `el.rpc` or `sync.checkpoint`",
                chain.name
            );
            return Err(o.invalid("sync.pivot", reason));
        }
        self.check_limits(o)?;
        let mut settings = SyncSettings {
            sources: self.sources(o)?,
            pivot: self.pivot,
            checkpoint,
            peer_pivot,
            progress_bar: self.progress_bar,
            config: self.sync_config(),
        };
        // Unlisted, a public chain's sync and repairs also take snap/1 peers when they can (the
        // execution client is the pivot): its first leafsync has no leaf/1 peer, and every geth
        // is a snap/1 server. For every start, a node with a state too: a node off for more
        // than the 128 blocks its execution client traces back can only be repaired, and
        // without snap/1 it would wait for a leaf/1 peer for good. A dev chain has none.
        if self.sources.is_none() && !chain.dev && settings.pivot_from_el(el.rpc.is_some()) {
            settings.sources.snap = true;
        }
        // snap/1 servers keep only the states of their last 128 blocks, and the pivot must be
        // one of them: the execution client's moving head is the only pivot that stays there.
        if settings.sources.snap && !settings.pivot_from_el(el.rpc.is_some()) {
            let reason = match el.rpc {
                None => "\"snap\" needs `el.rpc`: a snap/1 sync is at the execution client's \
                         latest block"
                    .to_string(),
                Some(_) => format!(
                    "\"snap\" syncs at the execution client's latest block, but `sync.pivot` \
                     chooses {}: set `sync.pivot = \"el\"` or remove `sync.checkpoint`",
                    if self.pivot == PivotSource::Peers { "the peers'" } else { "the checkpoint" }
                ),
            };
            return Err(o.invalid("sync.sources", reason));
        }
        Ok(settings)
    }

    /// `sync.sources`: at least one, each once.
    fn sources(&self, o: &Origin<'_>) -> Result<SyncSources, ConfigError> {
        let Some(listed) = &self.sources else {
            return Ok(SyncSources { leaf: true, snap: false });
        };
        let mut sources = SyncSources { leaf: false, snap: false };
        for (i, source) in listed.iter().enumerate() {
            let seen = match source {
                SyncSourceKey::Leaf => std::mem::replace(&mut sources.leaf, true),
                SyncSourceKey::Snap => std::mem::replace(&mut sources.snap, true),
            };
            if seen {
                return Err(o.invalid(&format!("sync.sources[{i}]"), "listed twice".into()));
            }
        }
        if listed.is_empty() {
            return Err(
                o.invalid("sync.sources", "is empty: list \"leaf\", \"snap\" or both".into())
            );
        }
        Ok(sources)
    }

    /// The numeric limits: each within the range the sync can work with.
    fn check_limits(&self, o: &Origin<'_>) -> Result<(), ConfigError> {
        let max_kib = leafsync_sync::config::CHUNK_MAX_BYTES >> 10;
        if !(MIN_CHUNK_TARGET_KIB..=max_kib).contains(&self.chunk_target_kib) {
            let reason =
                format!("{} is outside {MIN_CHUNK_TARGET_KIB}..={max_kib}", self.chunk_target_kib);
            return Err(o.invalid("sync.chunk_target_kib", reason));
        }
        let recent = leafsync_leafdb::DEFAULT_RECENT_BLOCKS;
        if self.repivot_distance == 0 || self.repivot_distance >= recent {
            let reason = format!(
                "{} is outside 1..{recent}: servers keep a pivot's nodes for {recent} blocks",
                self.repivot_distance
            );
            return Err(o.invalid("sync.repivot_distance", reason));
        }
        let at_least_one = [
            ("sync.junk_ban_threshold", u64::from(self.junk_ban_threshold)),
            ("sync.stall_timeout_secs", self.stall_timeout_secs),
            ("sync.progress_interval_secs", self.progress_interval_secs),
        ];
        o.at_least_one(&at_least_one)?;
        let at_most = [
            ("sync.stall_timeout_secs", self.stall_timeout_secs, MAX_INTERVAL_SECS),
            ("sync.progress_interval_secs", self.progress_interval_secs, MAX_INTERVAL_SECS),
        ];
        o.at_most(&at_most, "seconds")
    }

    /// The sync crate's settings (the pivot itself comes from the feed or the peers).
    fn sync_config(&self) -> leafsync_sync::SyncConfig {
        leafsync_sync::SyncConfig {
            mode: match self.mode {
                SyncModeKey::Leaf => leafsync_sync::SyncMode::Leaf,
                SyncModeKey::HealOnly => leafsync_sync::SyncMode::HealOnly,
            },
            chunk_target_bytes: self.chunk_target_kib << 10,
            junk_ban_threshold: self.junk_ban_threshold,
            repivot_distance: self.repivot_distance,
            stall_timeout: Duration::from_secs(self.stall_timeout_secs),
            progress_interval: Duration::from_secs(self.progress_interval_secs),
            full_final_check: self.full_final_check,
            ..leafsync_sync::SyncConfig::default()
        }
    }
}
