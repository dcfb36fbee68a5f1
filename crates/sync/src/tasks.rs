//! The work items of a sync, the one place a job becomes a `leaf/1` request ([`Job::request`]),
//! and the queue discipline: an item is retried on a peer that has not tried it yet; once every
//! usable peer has, a new round starts, up to [`MAX_TASK_ROUNDS`].

use std::collections::VecDeque;

use alloy_primitives::B256;
use alloy_trie::Nibbles;
use leafsync_p2p::{
    leaf::{
        GetChunk, GetCodes, GetNodes, GetStorageChunk, NodeRequest, StoragePrefix, TrieOwner,
        WirePath, protocol::MAX_RESPONSE_BYTES,
    },
    requests::LeafRequest,
};

use tokio::time::Instant;

use crate::{
    config::{MAX_PARKS, MAX_TASK_ROUNDS, PARK_INTERVAL, QUEUE_SCAN_LIMIT},
    error::SyncError,
    peer_set::Sender,
    rendezvous::{Home, Placed, unit_key},
};

/// The trie an item belongs to: `None` for the account trie, else the hashed account.
pub(crate) type Owner = Option<B256>;

/// The wire form of a path.
pub(crate) fn wire_path(path: &Nibbles) -> Result<WirePath, SyncError> {
    WirePath::try_from(path).map_err(|_| SyncError::PathTooLong)
}

/// The wire form of a trie owner.
pub(crate) fn wire_owner(owner: Owner) -> TrieOwner {
    TrieOwner::from(owner)
}

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
    /// When the item was last put in its queue (`None`: not recorded, as if long ago). A chunk
    /// unit waits this long for its rendezvous home before another peer may take it
    /// ([`crate::dispatch::StealGate`]).
    pub(crate) queued: Option<Instant>,
}

impl Attempts {
    /// Fresh bookkeeping of an item queued now.
    pub(crate) fn queued_now() -> Self {
        Self { queued: Some(Instant::now()), ..Self::default() }
    }
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
    /// The unit's rendezvous home, cached with the stamp it was computed under
    /// ([`crate::rendezvous::Rendezvous::is_home`]); `None` until first asked.
    pub(crate) home: Option<Home>,
}

impl Placed for Unit {
    fn key(&self) -> u64 {
        unit_key(self.owner, &self.prefix)
    }

    fn tried(&self) -> &[usize] {
        &self.attempts.tried
    }

    fn home_cache(&mut self) -> &mut Option<Home> {
        &mut self.home
    }
}

/// Why a node is fetched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Purpose {
    /// A skeleton node: its children become chunks or further skeleton nodes.
    Expand,
    /// The node of a unit that peer `by` called "too large": expanded as a skeleton node, its
    /// child units asked of the other peers first. A leaf there makes the claim a lie if it was
    /// read at the pivot's state or at a head `by` never announced (`provable`); read at
    /// another head, the prefix may have held more leaves (`Syncer::leaf_too_large`).
    Split { by: Sender, provable: bool },
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
    /// Account units, asked in one `GetChunk` (dispatch puts storage units in [`Job::Storage`]).
    Chunk(Vec<Unit>),
    /// Storage units of one or more accounts, asked in one `GetStorageChunk`.
    Storage(Vec<Unit>),
    Nodes(Vec<NodeTask>),
    Codes(Vec<CodeTask>),
    /// The account trie's root node at the pivot (its hash), asked alone of a peer whose round
    /// trip is measured ([`crate::window::PeerWindow::probe_due`]): a small answer's round trip
    /// is the link's and the server's, with no answer's transmission in it.
    Probe(B256),
}

impl Job {
    /// The one place a job becomes a `leaf/1` request. The request id is not here: the transport
    /// chooses it.
    pub(crate) fn request(&self, chunk_max_bytes: u64) -> Result<LeafRequest, SyncError> {
        Ok(match self {
            Self::Chunk(units) => {
                let prefixes = units.iter().map(|unit| wire_path(&unit.prefix)).collect::<Result<
                    Vec<_>,
                    SyncError,
                >>(
                )?;
                LeafRequest::GetChunk(GetChunk { prefixes, max_bytes: chunk_max_bytes })
            }
            Self::Storage(units) => {
                let chunks = units
                    .iter()
                    .map(|unit| {
                        // Dispatch batches storage units only: the zero account is never used.
                        let account = unit.owner.unwrap_or_default();
                        Ok(StoragePrefix { account, prefix: wire_path(&unit.prefix)? })
                    })
                    .collect::<Result<Vec<_>, SyncError>>()?;
                LeafRequest::GetStorageChunk(GetStorageChunk { chunks, max_bytes: chunk_max_bytes })
            }
            Self::Nodes(tasks) => {
                let nodes = tasks
                    .iter()
                    .map(|t| {
                        Ok(NodeRequest {
                            owner: wire_owner(t.owner),
                            path: wire_path(&t.path)?,
                            hash: t.hash,
                        })
                    })
                    .collect::<Result<Vec<_>, SyncError>>()?;
                LeafRequest::GetNodes(GetNodes { nodes, max_bytes: MAX_RESPONSE_BYTES })
            }
            Self::Codes(tasks) => LeafRequest::GetCodes(GetCodes {
                hashes: tasks.iter().map(|t| t.hash).collect(),
                max_bytes: MAX_RESPONSE_BYTES,
            }),
            Self::Probe(root) => LeafRequest::GetNodes(GetNodes {
                nodes: vec![NodeRequest {
                    owner: wire_owner(None),
                    path: wire_path(&Nibbles::new())?,
                    hash: *root,
                }],
                max_bytes: MAX_RESPONSE_BYTES,
            }),
        })
    }
}

/// Items with [`Attempts`].
pub(crate) trait Retry {
    /// What the item is, for logs and [`SyncError::Unavailable`].
    const WHAT: &'static str;
    fn attempts(&mut self) -> &mut Attempts;
    fn hash(&self) -> B256;
}

/// One [`Retry`] impl per item type: each has `attempts` and `hash` fields.
macro_rules! retry {
    ($($item:ty => $what:literal),* $(,)?) => {$(
        impl Retry for $item {
            const WHAT: &'static str = $what;
            fn attempts(&mut self) -> &mut Attempts {
                &mut self.attempts
            }
            fn hash(&self) -> B256 {
                self.hash
            }
        }
    )*};
}

retry!(Unit => "chunk", NodeTask => "trie node", CodeTask => "code");

/// Puts items back at the end of `queue`, marked as tried by `peer`.
pub(crate) fn requeue<T: Retry>(
    queue: &mut VecDeque<T>,
    items: impl IntoIterator<Item = T>,
    peer: usize,
) {
    let now = Instant::now();
    for mut item in items {
        item.attempts().tried.push(peer);
        item.attempts().queued = Some(now);
        queue.push_back(item);
    }
}

/// Puts items back at the front of `queue`, in their order, untried (a server left them out of
/// a batch at its budget, which is honest), as queued now. They were next in line: at the end
/// of the queue they came back long after their neighbours, and the chunks written around them
/// could not share table files with them.
pub(crate) fn queue_again<T: Retry>(queue: &mut VecDeque<T>, items: impl IntoIterator<Item = T>) {
    let now = Instant::now();
    let items: Vec<T> = items.into_iter().collect();
    for mut item in items.into_iter().rev() {
        item.attempts().queued = Some(now);
        queue.push_front(item);
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
    take_matching(queue, peer, active, max, |_| true)
}

/// [`take_for`], taking only items that `accept` takes: it is asked about each item `peer` may
/// get, in queue order, and an item it refuses stays where it is.
pub(crate) fn take_matching<T: Retry>(
    queue: &mut VecDeque<T>,
    peer: usize,
    active: &[usize],
    max: usize,
    mut accept: impl FnMut(&mut T) -> bool,
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
                        what: T::WHAT,
                        hash: item.hash(),
                        rounds: MAX_TASK_ROUNDS * MAX_PARKS,
                    });
                }
                attempts.parked_until = Some(now + PARK_INTERVAL);
                tracing::debug!(what = T::WHAT, hash = %item.hash(), "no peer has it; parked");
                i += 1;
                continue;
            }
        }
        if item.attempts().tried.contains(&peer) || !accept(item) {
            i += 1;
            continue;
        }
        if let Some(item) = queue.remove(i) {
            out.push(item);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(n: u8) -> CodeTask {
        CodeTask { hash: B256::repeat_byte(n), attempts: Attempts::default() }
    }

    /// Asks `peer` for what it may take and puts it all back as failed by it.
    fn fail_round(queue: &mut VecDeque<CodeTask>, peer: usize) -> Result<usize, SyncError> {
        let taken = take_for(queue, peer, &[0], 8)?;
        let n = taken.len();
        requeue(queue, taken, peer);
        Ok(n)
    }

    #[test]
    fn items_left_out_go_back_first_in_their_order_untried() {
        let mut queue: VecDeque<CodeTask> = [code(4), code(5)].into();
        queue_again(&mut queue, [code(1), code(2), code(3)]);
        let order: Vec<u8> = queue.iter().map(|c| c.hash[0]).collect();
        assert_eq!(order, [1, 2, 3, 4, 5]);
        assert!(
            queue
                .iter()
                .take(3)
                .all(|c| c.attempts.tried.is_empty() && c.attempts.queued.is_some())
        );
    }

    #[test]
    fn every_job_becomes_one_request_of_its_kind() {
        let unit = |owner| Unit {
            owner,
            prefix: Nibbles::from_nibbles([1, 2]),
            hash: B256::ZERO,
            leaf: false,
            attempts: Attempts::default(),
            home: None,
        };
        let Ok(LeafRequest::GetChunk(chunk)) =
            Job::Chunk(vec![unit(None), unit(None)]).request(777)
        else {
            panic!("account units are a GetChunk")
        };
        assert_eq!((chunk.prefixes.len(), chunk.prefixes[1].len(), chunk.max_bytes), (2, 2, 777));
        let account = B256::repeat_byte(4);
        let Ok(LeafRequest::GetStorageChunk(storage)) =
            Job::Storage(vec![unit(Some(account)), unit(Some(B256::ZERO))]).request(777)
        else {
            panic!("storage units are a GetStorageChunk")
        };
        assert_eq!(storage.max_bytes, 777);
        let accounts: Vec<B256> = storage.chunks.iter().map(|c| c.account).collect();
        assert_eq!(accounts, vec![account, B256::ZERO]);
        assert_eq!(storage.chunks[0].prefix.len(), 2);
        let node = NodeTask {
            owner: Some(account),
            path: Nibbles::new(),
            hash: B256::repeat_byte(5),
            purpose: Purpose::Expand,
            attempts: Attempts::default(),
        };
        let Ok(LeafRequest::GetNodes(nodes)) = Job::Nodes(vec![node]).request(777) else {
            panic!("nodes are a GetNodes")
        };
        assert_eq!(nodes.nodes[0].owner, TrieOwner::Storage(account));
        assert_eq!(nodes.max_bytes, MAX_RESPONSE_BYTES);
        let Ok(LeafRequest::GetCodes(codes)) = Job::Codes(vec![code(6)]).request(777) else {
            panic!("codes are a GetCodes")
        };
        assert_eq!(codes.hashes, vec![B256::repeat_byte(6)]);
    }

    #[tokio::test(start_paused = true)]
    async fn an_item_nobody_has_is_parked_while_other_work_goes_on() {
        let mut queue = VecDeque::from([code(1)]);
        for _ in 0..=MAX_TASK_ROUNDS {
            assert_eq!(fail_round(&mut queue, 0).unwrap(), 1);
        }
        // Every round failed: the item rests instead of failing the sync...
        assert_eq!(fail_round(&mut queue, 0).unwrap(), 0);
        // ...while new work is handed out...
        queue.push_back(code(2));
        assert_eq!(take_for(&mut queue, 0, &[0], 8).unwrap().len(), 1);
        // ...and after the pause it is asked again.
        tokio::time::advance(PARK_INTERVAL).await;
        assert_eq!(fail_round(&mut queue, 0).unwrap(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn an_item_parked_too_often_fails_the_sync() {
        let mut queue = VecDeque::from([code(1)]);
        let mut result = Ok(0);
        for _ in 0..(MAX_TASK_ROUNDS + 2) * (MAX_PARKS + 2) {
            result = fail_round(&mut queue, 0);
            if result.is_err() {
                break;
            }
            tokio::time::advance(PARK_INTERVAL).await;
        }
        assert!(matches!(result, Err(SyncError::Unavailable { .. })), "{result:?}");
    }
}
