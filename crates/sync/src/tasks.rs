//! The work items of a sync and the queue discipline: an item is retried on a peer that has not
//! tried it yet; once every usable peer has, a new round starts, up to [`MAX_TASK_ROUNDS`].

use std::{collections::VecDeque, time::Duration};

use alloy_primitives::B256;
use alloy_trie::Nibbles;
use leafsync_p2p::{
    leaf::{Chunk, Codes, Nodes, StorageChunk},
    requests::RequestError,
};

use tokio::time::Instant;

use crate::{
    config::{MAX_PARKS, MAX_TASK_ROUNDS, PARK_INTERVAL},
    error::SyncError,
};

/// The trie an item belongs to: `None` for the account trie, else the hashed account.
pub(crate) type Owner = Option<B256>;

/// Most queued items looked at to find one a peer has not tried (bounds a dispatch's cost).
pub(crate) const QUEUE_SCAN_LIMIT: usize = 4096;

/// Retry bookkeeping of one item.
#[derive(Debug, Clone, Default)]
pub(crate) struct Attempts {
    /// Peers (by index) that failed to deliver the item this round.
    pub(crate) tried: Vec<usize>,
    /// Completed rounds over all peers since the item was last parked.
    pub(crate) rounds: u32,
    /// Times the item was parked (see [`PARK_INTERVAL`]).
    pub(crate) parks: u32,
    /// Not asked for before this instant.
    pub(crate) parked_until: Option<Instant>,
}

/// A subtrie fetched as one chunk: all leaves under `prefix`, whose top node hashes to `hash`.
#[derive(Debug, Clone)]
pub(crate) struct Unit {
    pub(crate) owner: Owner,
    pub(crate) prefix: Nibbles,
    pub(crate) hash: B256,
    /// The unit's node is known to be a leaf: "too large" for it is a lie.
    pub(crate) leaf: bool,
    pub(crate) attempts: Attempts,
}

/// Why a node is fetched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Purpose {
    /// A skeleton node: its children become chunks or further skeleton nodes.
    Expand,
    /// A heal node; `parent` is the pending node waiting for it (`None` for a heal root).
    Heal { parent: Option<Nibbles> },
}

/// One trie node to fetch by path and hash.
#[derive(Debug, Clone)]
pub(crate) struct NodeTask {
    pub(crate) owner: Owner,
    pub(crate) path: Nibbles,
    pub(crate) hash: B256,
    pub(crate) purpose: Purpose,
    pub(crate) attempts: Attempts,
}

/// One code to fetch.
#[derive(Debug, Clone)]
pub(crate) struct CodeTask {
    pub(crate) hash: B256,
    pub(crate) attempts: Attempts,
}

/// A request's work.
#[derive(Debug)]
pub(crate) enum Job {
    Chunk(Unit),
    Nodes(Vec<NodeTask>),
    Codes(Vec<CodeTask>),
}

/// A request's typed answer.
#[derive(Debug)]
pub(crate) enum Answer {
    Chunk(Chunk),
    StorageChunk(StorageChunk),
    Nodes(Nodes),
    Codes(Codes),
}

impl Answer {
    /// Encoded size, for throughput and the byte count.
    pub(crate) fn size(&self) -> u64 {
        use alloy_rlp::Encodable;
        (match self {
            Self::Chunk(m) => m.length(),
            Self::StorageChunk(m) => m.length(),
            Self::Nodes(m) => m.length(),
            Self::Codes(m) => m.length(),
        }) as u64
    }
}

/// A finished request.
#[derive(Debug)]
pub(crate) struct Done {
    /// The pivot epoch the request was sent in.
    pub(crate) epoch: u64,
    pub(crate) peer: usize,
    pub(crate) job: Job,
    pub(crate) result: Result<Answer, RequestError>,
    pub(crate) elapsed: Duration,
}

/// Items with [`Attempts`].
pub(crate) trait Retry {
    fn attempts(&mut self) -> &mut Attempts;
    fn hash(&self) -> B256;
    fn what() -> &'static str;
}

impl Retry for Unit {
    fn attempts(&mut self) -> &mut Attempts {
        &mut self.attempts
    }
    fn hash(&self) -> B256 {
        self.hash
    }
    fn what() -> &'static str {
        "chunk"
    }
}

impl Retry for NodeTask {
    fn attempts(&mut self) -> &mut Attempts {
        &mut self.attempts
    }
    fn hash(&self) -> B256 {
        self.hash
    }
    fn what() -> &'static str {
        "trie node"
    }
}

impl Retry for CodeTask {
    fn attempts(&mut self) -> &mut Attempts {
        &mut self.attempts
    }
    fn hash(&self) -> B256 {
        self.hash
    }
    fn what() -> &'static str {
        "code"
    }
}

/// Takes up to `max` items that `peer` has not tried, starting a new round for items every peer
/// in `active` has tried. An item no peer delivered in [`MAX_TASK_ROUNDS`] rounds is parked for
/// [`PARK_INTERVAL`] while the rest of the work goes on; only one parked [`MAX_PARKS`] times
/// fails the sync.
pub(crate) fn take_for<T: Retry>(
    queue: &mut VecDeque<T>,
    peer: usize,
    active: &[usize],
    max: usize,
) -> Result<Vec<T>, SyncError> {
    let now = Instant::now();
    let mut out = Vec::new();
    let mut i = 0;
    while i < queue.len() && i < QUEUE_SCAN_LIMIT && out.len() < max {
        let Some(item) = queue.get_mut(i) else { break };
        let attempts = item.attempts();
        if attempts.parked_until.is_some_and(|t| t > now) {
            i += 1;
            continue;
        }
        if active.iter().all(|p| attempts.tried.contains(p)) {
            attempts.tried.clear();
            attempts.rounds += 1;
            if attempts.rounds > MAX_TASK_ROUNDS {
                attempts.rounds = 0;
                attempts.parks += 1;
                if attempts.parks > MAX_PARKS {
                    return Err(SyncError::Unavailable {
                        what: T::what(),
                        hash: item.hash(),
                        rounds: MAX_TASK_ROUNDS * MAX_PARKS,
                    });
                }
                attempts.parked_until = Some(now + PARK_INTERVAL);
                tracing::debug!(what = T::what(), hash = %item.hash(), "no peer has it; parked");
                i += 1;
                continue;
            }
        }
        if item.attempts().tried.contains(&peer) {
            i += 1;
            continue;
        }
        if let Some(item) = queue.remove(i) {
            out.push(item);
        }
    }
    Ok(out)
}
