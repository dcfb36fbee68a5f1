//! [`Syncer`]: the one owner loop of a sync. It picks the pivot, seeds the skeleton, hands work
//! to peers by their measured capacity, and feeds each answer to the chunk importer
//! (`import.rs`) or the node handler (`heal.rs`); see `docs/sync.md`.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    sync::Arc,
};

use alloy_primitives::{B256, keccak256};
use alloy_trie::{EMPTY_ROOT_HASH, Nibbles};
use futures::{StreamExt, future::BoxFuture, stream::FuturesUnordered};
use leafsync_leafdb::{BlockHeader, DEFAULT_RECENT_BLOCKS, EMPTY_CODE_HASH, KvStore, LeafDb};
use leafsync_p2p::{
    PeerId,
    leaf::{
        self, ChainHead, GetChunk, GetCodes, GetNodes, GetStorageChunk, NodeRequest, PenaltyClass,
        TrieOwner,
        protocol::{MAX_NODES_PER_REQUEST, MAX_RESPONSE_BYTES},
    },
    requests::RequestError,
};
use tokio::{
    sync::{mpsc, watch},
    time::Instant,
};
use tracing::{debug, info, warn};

use crate::{
    config::{
        BYTES_PER_ACCOUNT_ESTIMATE, MAX_CHUNK_DEPTH, MAX_CONSECUTIVE_EMPTIES,
        MAX_CONSECUTIVE_TIMEOUTS, MAX_FINAL_REPAIRS, MAX_IN_FLIGHT_BYTES, MAX_SYNC_PEERS,
        SyncConfig, SyncMode,
    },
    error::SyncError,
    heal::HealState,
    peer::SyncPeer,
    progress::{HealRoot, SyncProgress},
    rate::PeerRate,
    stats::{Phase, SyncStats},
    tasks::{Answer, Attempts, CodeTask, Done, Job, NodeTask, Owner, Purpose, Unit, take_for},
};

/// How often a sync with nothing to send looks again at its peers' heads (500 ms): a peer may
/// reach the pivot, and only then be asked for its nodes.
const RECHECK_INTERVAL: std::time::Duration = std::time::Duration::from_millis(500);

/// How long a peer dropped for silence rests before it is asked again (30 s): a stalled honest
/// server (a pause, a congested link) comes back; a dead one costs one timeout per rest.
const SILENT_REVIVE_AFTER: std::time::Duration = std::time::Duration::from_secs(30);

/// Shortest interval between two publications of the counters on the progress channel (250 ms).
const PUBLISH_INTERVAL: std::time::Duration = std::time::Duration::from_millis(250);

/// Codes asked per `GetCodes` (256): codes are 1–24 KiB, so 256 of them mostly fill a 2 MiB
/// answer; the rest of a larger batch would come back empty and be asked again.
pub const CODES_PER_REQUEST: usize = 256;

/// Where a peer stands with this sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Standing {
    Active,
    Dropped,
    Banned,
}

/// A peer and what the syncer measured of it.
pub(crate) struct PeerSlot {
    pub(crate) peer: Arc<dyn SyncPeer>,
    pub(crate) rate: PeerRate,
    pub(crate) in_flight: usize,
    pub(crate) junk: u32,
    pub(crate) timeouts: u32,
    pub(crate) empties: u32,
    /// Chunks from this server at another head that failed verification (no penalty).
    pub(crate) stale_heals: u32,
    /// The head this server announced when it reached [`crate::config::MAX_STALE_HEALS`]: it
    /// gets chunks again once it announces another.
    pub(crate) stale_at: Option<ChainHead>,
    pub(crate) standing: Standing,
    /// When a peer dropped for silence may be asked again (a stall is not a lie).
    pub(crate) revive_at: Option<Instant>,
}

impl PeerSlot {
    /// A peer new to this sync: unmeasured, active.
    fn new(peer: Arc<dyn SyncPeer>) -> Self {
        Self {
            peer,
            rate: PeerRate::default(),
            in_flight: 0,
            junk: 0,
            timeouts: 0,
            empties: 0,
            stale_heals: 0,
            stale_at: None,
            standing: Standing::Active,
            revive_at: None,
        }
    }

    /// Whether this server should get no chunks now: it sent too many from another head and
    /// still announces that head.
    pub(crate) fn chunks_benched(&self) -> bool {
        self.stale_at.is_some_and(|h| h == self.peer.head())
    }
}

/// The result of a finished sync.
#[derive(Debug, Clone)]
pub struct SyncOutcome {
    /// The pivot synced to.
    pub pivot: ChainHead,
    /// The root recorded in the leafdb (equal to the pivot's state root).
    pub root: B256,
    /// Counters.
    pub stats: SyncStats,
    /// Peers banned during the sync.
    pub banned: Vec<PeerId>,
    /// Peers dropped during the sync.
    pub dropped: Vec<PeerId>,
}

/// The sync owner loop; see the module docs.
pub struct Syncer<S: KvStore> {
    pub(crate) db: Arc<LeafDb<S>>,
    pub(crate) config: SyncConfig,
    pub(crate) peers: Vec<PeerSlot>,
    pub(crate) pivot: ChainHead,
    pub(crate) depth: usize,
    pub(crate) units: VecDeque<Unit>,
    pub(crate) nodes: VecDeque<NodeTask>,
    pub(crate) codes: VecDeque<CodeTask>,
    pub(crate) codes_seen: HashSet<B256>,
    pub(crate) storage_started: HashSet<B256>,
    /// Skeleton nodes (above the chunks) per trie, written once the trie below them is complete.
    pub(crate) skeleton: HashMap<Owner, Vec<(Nibbles, Vec<u8>)>>,
    /// Open units, skeleton nodes and heal roots per storage trie.
    pub(crate) owner_open: HashMap<B256, usize>,
    pub(crate) heal: HealState,
    pub(crate) stats: SyncStats,
    /// Incremented by each re-pivot; answers to requests of an earlier epoch are dropped.
    epoch: u64,
    /// Bytes and requests of earlier runs of this sync (from the progress record).
    prior: (u64, u64),
    started: Instant,
    /// Peers that start serving during the sync.
    new_peers: Option<mpsc::UnboundedReceiver<Arc<dyn SyncPeer>>>,
    /// Trusted heads (the neighbour execution client's): the pivot and where it moves.
    pivot_feed: Option<watch::Receiver<ChainHead>>,
    /// Where the counters are published for status and metrics.
    progress: Option<watch::Sender<SyncStats>>,
    last_publish: Option<Instant>,
}

impl<S: KvStore> std::fmt::Debug for Syncer<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Syncer").field("pivot", &self.pivot).field("stats", &self.stats).finish()
    }
}

/// The pivot: the configured one, else the head most peers announce (the higher on a tie).
pub fn choose_pivot(configured: Option<ChainHead>, heads: &[ChainHead]) -> Option<ChainHead> {
    if configured.is_some() {
        return configured;
    }
    let mut counts: HashMap<ChainHead, usize> = HashMap::new();
    for h in heads {
        *counts.entry(*h).or_default() += 1;
    }
    counts.into_iter().max_by_key(|(h, n)| (*n, h.number)).map(|(h, _)| h)
}

/// Depth of the account skeleton such that a chunk of a state of `accounts` accounts is at most
/// about `target_bytes` (each level divides a chunk by 16), at most [`MAX_CHUNK_DEPTH`].
pub fn chunk_depth(accounts: u64, target_bytes: u64) -> usize {
    let mut bytes = accounts.saturating_mul(BYTES_PER_ACCOUNT_ESTIMATE);
    let mut depth = 0;
    while bytes > target_bytes.max(1) && depth < MAX_CHUNK_DEPTH {
        bytes /= 16;
        depth += 1;
    }
    depth
}

/// The wire form of a path.
pub(crate) fn wire_path(path: &Nibbles) -> Result<leaf::Nibbles, SyncError> {
    leaf::Nibbles::from_nibbles(&path.to_vec()).map_err(|_| SyncError::PathTooLong)
}

/// The wire form of a trie owner.
pub(crate) fn wire_owner(owner: Owner) -> TrieOwner {
    owner.map_or(TrieOwner::Accounts, TrieOwner::Storage)
}

impl<S: KvStore + 'static> Syncer<S> {
    /// A syncer writing into `db`, asking `peers`.
    pub fn new(db: Arc<LeafDb<S>>, config: SyncConfig, peers: Vec<Arc<dyn SyncPeer>>) -> Self {
        let peers = peers.into_iter().map(PeerSlot::new).collect();
        Self {
            db,
            config,
            peers,
            pivot: ChainHead::default(),
            depth: 0,
            units: VecDeque::new(),
            nodes: VecDeque::new(),
            codes: VecDeque::new(),
            codes_seen: HashSet::new(),
            storage_started: HashSet::new(),
            skeleton: HashMap::new(),
            owner_open: HashMap::new(),
            heal: HealState::default(),
            stats: SyncStats::default(),
            prior: (0, 0),
            epoch: 0,
            started: Instant::now(),
            new_peers: None,
            pivot_feed: None,
            progress: None,
            last_publish: None,
        }
    }

    /// Peers that start serving during the sync join it from `peers` (see
    /// [`crate::watch_network_peers`]). While the channel is open, losing every peer is not
    /// fatal: the sync waits up to [`SyncConfig::stall_timeout`] for a new one.
    pub fn with_new_peers(mut self, peers: mpsc::UnboundedReceiver<Arc<dyn SyncPeer>>) -> Self {
        self.new_peers = Some(peers);
        self
    }

    /// A trusted source of heads, such as the neighbour execution client: its current head is
    /// the pivot (unless a progress record has a pivot still within
    /// [`SyncConfig::repivot_distance`] of it), and the sync re-pivots to its head when that is
    /// `repivot_distance` past the pivot. Peers' announcements then never choose the pivot.
    pub fn with_pivot_feed(mut self, heads: watch::Receiver<ChainHead>) -> Self {
        self.pivot_feed = Some(heads);
        self
    }

    /// Publishes the counters to `progress` as they change (at most every 250 ms) and at the end.
    pub fn with_progress(mut self, progress: watch::Sender<SyncStats>) -> Self {
        self.progress = Some(progress);
        self
    }

    /// Adds a peer, or revives one dropped earlier (a new session of it); banned peers stay out.
    fn add_peer(&mut self, peer: Arc<dyn SyncPeer>) {
        let id = peer.id();
        let full = self.peers.len() >= MAX_SYNC_PEERS;
        match self.peers.iter_mut().find(|p| p.peer.id() == id) {
            Some(slot) if slot.standing == Standing::Banned => {}
            Some(slot) => {
                slot.peer = peer;
                slot.timeouts = 0;
                slot.empties = 0;
                if slot.standing == Standing::Dropped {
                    slot.standing = Standing::Active;
                    info!(peer = %id, "sync peer is back");
                }
            }
            None if !full => {
                info!(peer = %id, head = peer.head().number, "sync peer joined");
                self.peers.push(PeerSlot::new(peer));
            }
            None => {
                // Full: a dropped peer's slot is reused (its index may still be in items'
                // tried lists, which only skips the newcomer for those items this round).
                match self.peers.iter_mut().find(|p| p.standing == Standing::Dropped) {
                    Some(slot) => {
                        info!(peer = %id, head = peer.head().number, "sync peer joined");
                        *slot = PeerSlot::new(peer);
                    }
                    None => debug!(peer = %id, "sync peer table full; not used"),
                }
            }
        }
    }

    /// Whether peer `i` can be asked for the pivot's trie nodes: a server keeps the nodes of its
    /// last [`DEFAULT_RECENT_BLOCKS`] heads, so its head must be at the pivot or at most that far
    /// past it. Chunks and codes go to every peer (a chunk read at another head is healed).
    /// A server on another block at the pivot's height (a sibling) does not have them.
    fn has_pivot_nodes(&self, i: usize) -> bool {
        let head = self.peers[i].peer.head();
        if head.number == self.pivot.number && head.hash != self.pivot.hash {
            return false;
        }
        head.number >= self.pivot.number && head.number - self.pivot.number < DEFAULT_RECENT_BLOCKS
    }

    /// The counters so far.
    pub fn stats(&self) -> &SyncStats {
        &self.stats
    }

    /// Runs the sync to the end. On failure the progress is persisted, so a new syncer on the
    /// same leafdb resumes.
    pub async fn run(mut self) -> Result<SyncOutcome, SyncError> {
        match self.run_inner().await {
            Ok(()) => self.finish(),
            Err(e) => {
                if self.pivot != ChainHead::default() {
                    self.persist()?;
                }
                Err(e)
            }
        }
    }

    async fn run_inner(&mut self) -> Result<(), SyncError> {
        self.started = Instant::now();
        let mut new_peers = self.new_peers.take();
        let mut pivot_feed = self.pivot_feed.take();
        let heads: Vec<ChainHead> = self.peers.iter().map(|p| p.peer.head()).collect();
        let record = self.db.sync_progress()?.map(|b| SyncProgress::decode(&b)).transpose()?;
        let trusted = pivot_feed.as_ref().map(|f| *f.borrow());
        let distance = self.config.repivot_distance;
        let resumed = record.filter(|r| match (self.config.pivot, trusted) {
            (Some(p), _) => p == r.pivot,
            // A trusted head not far past the recorded pivot keeps the record's work.
            (None, Some(t)) => t.number >= r.pivot.number && t.number - r.pivot.number < distance,
            // A record's pivot came from a trusted source unless peers may choose it.
            (None, None) => self.config.peer_pivot,
        });
        if let Some(r) = &resumed {
            self.pivot = r.pivot;
            self.depth = usize::try_from(r.depth).unwrap_or(MAX_CHUNK_DEPTH).min(MAX_CHUNK_DEPTH);
            self.prior = (r.bytes_down, r.requests);
        } else {
            let trusted_pivot = self.config.pivot.or(trusted);
            if trusted_pivot.is_none() && !self.config.peer_pivot {
                return Err(SyncError::NoTrustedPivot);
            }
            self.pivot = choose_pivot(trusted_pivot, &heads).ok_or(SyncError::NoPivot)?;
            let mut estimates: Vec<u64> =
                self.peers.iter().map(|p| p.peer.account_estimate()).collect();
            estimates.sort_unstable();
            let estimate = estimates.get(estimates.len() / 2).copied().unwrap_or(0);
            self.depth = chunk_depth(estimate, self.config.chunk_target_bytes);
        }
        let root = self.pivot.state_root;
        if let Some(r) = resumed {
            // Version 1 kept the heal roots in the record; version 2 keeps one entry each.
            let mut roots = r.heal_roots;
            for (key, value) in self.db.sync_heal_roots()? {
                roots.push(HealRoot::from_entry(&key, &value)?);
            }
            info!(pivot = r.pivot.number, heal_roots = roots.len(), "resuming state sync");
            for h in roots {
                let owner = match h.owner {
                    TrieOwner::Accounts => None,
                    TrieOwner::Storage(o) => {
                        self.storage_started.insert(o);
                        Some(o)
                    }
                };
                let path = Nibbles::from_nibbles_unchecked(h.path.as_slice());
                self.add_heal_root(owner, path, h.hash)?;
            }
        } else {
            // Heal roots of another pivot (or of a record that did not decode) mean nothing now.
            self.db.clear_sync_heal_roots()?;
        }
        self.persist()?;
        info!(pivot = self.pivot.number, %root, depth = self.depth, peers = self.peers.len(),
            mode = ?self.config.mode, "state sync starting");
        self.seed(root)?;
        let mut passes = 0;
        loop {
            self.drive(&mut new_peers, &mut pivot_feed).await?;
            let found = self.final_check()?;
            if found.is_empty() {
                return Ok(());
            }
            if passes == MAX_FINAL_REPAIRS {
                return Err(SyncError::Incomplete { passes, what: found });
            }
            passes += 1;
            warn!(pass = passes, found, "state sync: final check sent the sync back");
        }
    }

    /// Runs the request loop until every queued item is done.
    async fn drive(
        &mut self,
        new_peers: &mut Option<mpsc::UnboundedReceiver<Arc<dyn SyncPeer>>>,
        pivot_feed: &mut Option<watch::Receiver<ChainHead>>,
    ) -> Result<(), SyncError> {
        let mut in_flight: FuturesUnordered<BoxFuture<'static, Done>> = FuturesUnordered::new();
        let mut tick = tokio::time::interval(self.config.progress_interval);
        tick.tick().await;
        // Since when nothing could be sent (no peer, or none has the pivot's nodes yet).
        let mut stalled: Option<Instant> = None;
        loop {
            self.dispatch(&mut in_flight)?;
            if in_flight.is_empty() {
                if self.is_idle() {
                    break;
                }
                // Hopeless: no peer now, none can join, and none rests before a retry.
                let resting = self.peers.iter().any(|p| p.revive_at.is_some());
                let hopeless = self.active().is_empty() && new_peers.is_none() && !resting;
                if stalled.is_none() && !hopeless {
                    info!(
                        peers = self.active().len(),
                        pivot = self.pivot.number,
                        "state sync waiting for a peer that can serve the pivot"
                    );
                }
                let since = *stalled.get_or_insert_with(Instant::now);
                if hopeless || since.elapsed() >= self.config.stall_timeout {
                    return Err(SyncError::NoPeers);
                }
            } else {
                stalled = None;
            }
            tokio::select! {
                Some(done) = in_flight.next(), if !in_flight.is_empty() => {
                    self.on_done(done).await?;
                    self.publish(false);
                }
                peer = next_peer(new_peers) => match peer {
                    Some(peer) => self.add_peer(peer),
                    None => *new_peers = None,
                },
                changed = feed_changed(pivot_feed) => {
                    if !changed {
                        // The trusted source is gone; the pivot stays where it is.
                        *pivot_feed = None;
                    }
                }
                _ = tick.tick() => {
                    self.log_progress();
                    self.persist()?;
                }
                () = tokio::time::sleep(RECHECK_INTERVAL), if in_flight.is_empty() => {}
            }
            let trusted = pivot_feed.as_ref().map(|f| *f.borrow());
            self.maybe_repivot(trusted)?;
        }
        Ok(())
    }

    /// Queues the first work for the pivot with state root `root`.
    fn seed(&mut self, root: B256) -> Result<(), SyncError> {
        if root != EMPTY_ROOT_HASH {
            match self.config.mode {
                SyncMode::Leaf if self.depth == 0 => self.add_unit(None, Nibbles::new(), root)?,
                SyncMode::Leaf => self.add_expand(None, Nibbles::new(), root),
                SyncMode::HealOnly if self.heal.has_root(None, Nibbles::new()) => {}
                SyncMode::HealOnly => self.add_heal_root(None, Nibbles::new(), root)?,
            }
        }
        Ok(())
    }

    /// Moves the pivot when the trusted head (`trusted`, from the pivot feed) or, without one,
    /// the head most peers announce is `repivot_distance` past it; a configured pivot never
    /// moves. Queued work is dropped and answers still in flight are ignored; the tables keep
    /// everything imported: chunks whose subtrie did not change are found complete, changed ones
    /// are healed from what is stored (see [`Self::add_unit`]).
    fn maybe_repivot(&mut self, trusted: Option<ChainHead>) -> Result<(), SyncError> {
        if self.config.pivot.is_some() {
            return Ok(());
        }
        let head = match trusted {
            Some(head) => head,
            // Unauthenticated heads never move the pivot unless peers may choose it.
            None if !self.config.peer_pivot => return Ok(()),
            None => {
                let heads: Vec<ChainHead> =
                    self.active().into_iter().map(|i| self.peers[i].peer.head()).collect();
                let Some(head) = choose_pivot(None, &heads) else { return Ok(()) };
                head
            }
        };
        if head.number < self.pivot.number.saturating_add(self.config.repivot_distance) {
            return Ok(());
        }
        info!(from = self.pivot.number, to = head.number, "re-pivoting state sync");
        self.epoch += 1;
        self.stats.repivots += 1;
        self.pivot = head;
        self.units.clear();
        self.nodes.clear();
        self.heal = HealState::default();
        self.skeleton.clear();
        self.owner_open.clear();
        self.storage_started.clear();
        self.db.clear_sync_heal_roots()?;
        self.persist()?;
        self.seed(head.state_root)
    }

    fn is_idle(&self) -> bool {
        self.units.is_empty()
            && self.nodes.is_empty()
            && self.codes.is_empty()
            && self.heal.is_empty()
    }

    /// Checks the end before it is committed: the account trie's root (with the skeleton above
    /// the chunks written) against the pivot's, then the flat state by merge-scan. Flat storage
    /// that does not hash to its account's root, storage without an account and missing codes
    /// are queued again; returns what was found (empty: complete).
    fn final_check(&mut self) -> Result<String, SyncError> {
        let skeleton = self.skeleton.remove(&None).unwrap_or_default();
        let root = self.db.write_sync_skeleton(&skeleton)?;
        if root != self.pivot.state_root {
            return Err(SyncError::RootMismatch { got: root, expected: self.pivot.state_root });
        }
        let check = self.db.check_flat_state()?;
        if check.accounts_root != self.pivot.state_root {
            // The flat accounts disagree with a verified trie: rewrite them from it.
            warn!(flat = %check.accounts_root, "flat accounts differ from the synced trie");
            self.stats.final_repairs += 1;
            self.resume_complete(None, Nibbles::new(), root)?;
            return Ok(format!("flat accounts hash to {}", check.accounts_root));
        }
        if check.problems == 0 {
            return Ok(String::new());
        }
        let found = format!(
            "{} accounts with wrong flat storage, {} orphan storages, {} missing codes",
            check.bad_storage.len(),
            check.orphan_storage.len(),
            check.missing_code.len()
        );
        self.stats.final_repairs += check.problems;
        for owner in check.orphan_storage {
            self.db.import_storage_chunk(&owner, &Nibbles::new(), &[])?;
        }
        for (owner, storage_root) in check.bad_storage {
            self.db.import_storage_chunk(&owner, &Nibbles::new(), &[])?;
            self.storage_started.insert(owner);
            self.add_unit(Some(owner), Nibbles::new(), storage_root)?;
        }
        for hash in check.missing_code {
            self.codes_seen.remove(&hash);
            self.want_code(hash)?;
        }
        Ok(found)
    }

    fn finish(mut self) -> Result<SyncOutcome, SyncError> {
        let head = BlockHeader {
            number: self.pivot.number,
            hash: self.pivot.hash,
            parent_hash: B256::ZERO,
            state_root: self.pivot.state_root,
            timestamp: 0,
        };
        let root = self.db.record_synced_head(head)?;
        self.db.clear_sync_progress()?;
        self.stats.phase = Phase::Done;
        self.stats.elapsed = self.started.elapsed();
        self.log_progress();
        let ids = |s: Standing| {
            self.peers.iter().filter(|p| p.standing == s).map(|p| p.peer.id()).collect()
        };
        Ok(SyncOutcome {
            pivot: self.pivot,
            root,
            banned: ids(Standing::Banned),
            dropped: ids(Standing::Dropped),
            stats: self.stats,
        })
    }

    /// Brings the derived counters (time, heal queue, phase, pivot, peers) up to date.
    fn refresh_stats(&mut self) {
        if self.stats.phase != Phase::Done {
            self.stats.elapsed = self.started.elapsed();
        }
        self.stats.heal_queue = (self.heal.len() + self.nodes.len()) as u64;
        if self.stats.phase != Phase::Done {
            // Heal once every chunk known so far is in (queued or in flight ones are not).
            let chunks_left = self.stats.chunks_done < self.stats.chunks_total;
            let chunks_over = self.stats.chunks_done > 0 && self.units.is_empty() && !chunks_left;
            self.stats.phase = if chunks_over || self.config.mode == SyncMode::HealOnly {
                Phase::Heal
            } else {
                Phase::Chunks
            };
        }
        self.stats.pivot = self.pivot;
        self.stats.peers = self.active().len() as u64;
    }

    /// Sends the counters to the progress channel, at most every [`PUBLISH_INTERVAL`] unless
    /// `now` (whose caller has refreshed them).
    fn publish(&mut self, now: bool) {
        if self.progress.is_none()
            || (!now && self.last_publish.is_some_and(|t| t.elapsed() < PUBLISH_INTERVAL))
        {
            return;
        }
        self.last_publish = Some(Instant::now());
        if !now {
            self.refresh_stats();
        }
        if let Some(tx) = &self.progress {
            tx.send_replace(self.stats.clone());
        }
    }

    /// Logs the structured progress line (and publishes the counters).
    pub(crate) fn log_progress(&mut self) {
        self.refresh_stats();
        self.publish(true);
        let s = &self.stats;
        info!(
            target: "leafsync::sync",
            phase = ?s.phase,
            chunks_done = s.chunks_done,
            chunks_total = s.chunks_total,
            accounts = s.accounts,
            slots = s.slots,
            codes = s.codes,
            bytes = s.bytes_down,
            rate_bps = s.rate() as u64,
            eta_s = s.eta().map(|d| d.as_secs()),
            peers = s.peers,
            heal_queue = s.heal_queue,
            "sync progress"
        );
    }

    pub(crate) fn active(&self) -> Vec<usize> {
        (0..self.peers.len()).filter(|i| self.peers[*i].standing == Standing::Active).collect()
    }

    // ---- work creation -------------------------------------------------------------------

    pub(crate) fn open(&mut self, owner: Owner) {
        if let Some(o) = owner {
            *self.owner_open.entry(o).or_default() += 1;
        }
    }

    /// One open item of `owner`'s storage trie resolved; the last one writes its skeleton.
    pub(crate) fn close(&mut self, owner: Owner) -> Result<(), SyncError> {
        let Some(o) = owner else { return Ok(()) };
        let left = self.owner_open.get_mut(&o).map(|n| {
            *n = n.saturating_sub(1);
            *n
        });
        if left == Some(0) {
            self.owner_open.remove(&o);
            if let Some(nodes) = self.skeleton.remove(&owner) {
                self.db.write_trie_nodes(Some(&o), &nodes)?;
            }
        }
        Ok(())
    }

    /// A chunk to fetch, unless the tables already hold it: a stored top node with the expected
    /// hash means the whole subtrie is there (a restart or an earlier pivot); a stored node with
    /// another hash means an older version of it is there, which heal repairs cheaper than a
    /// download.
    pub(crate) fn add_unit(
        &mut self,
        owner: Owner,
        prefix: Nibbles,
        hash: B256,
    ) -> Result<(), SyncError> {
        self.add_unit_of(owner, prefix, hash, false)
    }

    /// [`Self::add_unit`] for a unit whose node is known to be a leaf (`leaf`).
    pub(crate) fn add_unit_of(
        &mut self,
        owner: Owner,
        prefix: Nibbles,
        hash: B256,
        leaf: bool,
    ) -> Result<(), SyncError> {
        if self.empty_storage(owner, &prefix, hash)? || self.heal.has_root(owner, prefix) {
            return Ok(());
        }
        match self.db.node(owner.as_ref(), &prefix)? {
            Some(local) if keccak256(&local) == hash => {
                self.stats.chunks_resumed += 1;
                return self.resume_complete(owner, prefix, hash);
            }
            Some(_) if self.config.mode == SyncMode::Leaf => {
                self.stats.chunks_total += 1;
                self.stats.chunks_done += 1;
                self.stats.chunks_healed += 1;
                return self.add_heal_root(owner, prefix, hash);
            }
            _ => {}
        }
        self.open(owner);
        self.stats.chunks_total += 1;
        self.units.push_back(Unit { owner, prefix, hash, leaf, attempts: Attempts::default() });
        Ok(())
    }

    /// The empty root is no node anyone can serve: a storage trie with it is written empty at
    /// once (dropping whatever was there) and never becomes a request. Returns whether `hash`
    /// was the empty root.
    fn empty_storage(
        &mut self,
        owner: Owner,
        prefix: &Nibbles,
        hash: B256,
    ) -> Result<bool, SyncError> {
        if hash != EMPTY_ROOT_HASH {
            return Ok(false);
        }
        if let Some(o) = owner {
            self.db.import_storage_chunk(&o, prefix, &[])?;
        }
        // A record written before this rule may hold such a heal root.
        self.heal_root_finished(owner, prefix, hash)?;
        Ok(true)
    }

    /// A subtrie found complete in the tables: its flat entries are re-derived (a crash may have
    /// come between a heal's last node and its flat rewrite) and its accounts checked.
    pub(crate) fn resume_complete(
        &mut self,
        owner: Owner,
        prefix: Nibbles,
        hash: B256,
    ) -> Result<(), SyncError> {
        match owner {
            None => {
                for (hashed, account) in self.db.reconcile_accounts(&prefix, hash)? {
                    self.after_healed_account(hashed, &account)?;
                }
            }
            Some(o) => {
                self.db.reconcile_storage(&o, &prefix, hash)?;
            }
        }
        Ok(())
    }

    pub(crate) fn add_expand(&mut self, owner: Owner, path: Nibbles, hash: B256) {
        self.open(owner);
        self.nodes.push_back(NodeTask {
            owner,
            path,
            hash,
            purpose: Purpose::Expand,
            attempts: Attempts::default(),
        });
    }

    pub(crate) fn add_heal_root(
        &mut self,
        owner: Owner,
        path: Nibbles,
        hash: B256,
    ) -> Result<(), SyncError> {
        if self.empty_storage(owner, &path, hash)? {
            return Ok(());
        }
        // Heal replaces nodes below `path` before the ones at and above it: those must not stay
        // behind, stale, if this heal is cut short (a pivot move, a crash).
        self.db.forget_path(owner.as_ref(), &path)?;
        self.open(owner);
        self.heal.add_root(owner, path, hash);
        self.nodes.push_back(NodeTask {
            owner,
            path,
            hash,
            purpose: Purpose::Heal { parent: None },
            attempts: Attempts::default(),
        });
        if let Some(root) = persistent_heal_root(owner, &path, hash)? {
            self.db.put_sync_heal_root(&root.key(), hash.as_slice())?;
        }
        Ok(())
    }

    /// A heal root is complete: its persisted entry goes.
    pub(crate) fn heal_root_finished(
        &mut self,
        owner: Owner,
        path: &Nibbles,
        hash: B256,
    ) -> Result<(), SyncError> {
        if let Some(root) = persistent_heal_root(owner, path, hash)? {
            self.db.delete_sync_heal_root(&root.key())?;
        }
        Ok(())
    }

    /// Writes the progress record (the heal roots are entries of their own, written as they come
    /// and go).
    pub(crate) fn persist(&self) -> Result<(), SyncError> {
        let record = SyncProgress {
            pivot: self.pivot,
            depth: self.depth as u64,
            heal_roots: Vec::new(),
            bytes_down: self.prior.0 + self.stats.bytes_down,
            requests: self.prior.1 + self.stats.requests,
        };
        self.db.put_sync_progress(&record.encode())?;
        Ok(())
    }

    /// Queues the code `hash` unless it is empty, already seen or stored.
    pub(crate) fn want_code(&mut self, hash: B256) -> Result<(), SyncError> {
        if hash != EMPTY_CODE_HASH && self.codes_seen.insert(hash) && self.db.code(&hash)?.is_none()
        {
            self.codes.push_back(CodeTask { hash, attempts: Attempts::default() });
        }
        Ok(())
    }

    // ---- dispatch ------------------------------------------------------------------------

    fn dispatch(
        &mut self,
        in_flight: &mut FuturesUnordered<BoxFuture<'static, Done>>,
    ) -> Result<(), SyncError> {
        self.revive_silent();
        let mut order = self.active();
        order.sort_by(|a, b| {
            self.peers[*b].rate.bytes_per_sec.total_cmp(&self.peers[*a].rate.bytes_per_sec)
        });
        let active = order.clone();
        let serving: Vec<usize> =
            order.iter().copied().filter(|i| self.has_pivot_nodes(*i)).collect();
        // Servers benched for stale chunks get chunks only when no other peer can take them.
        let chunk_peers: Vec<usize> =
            order.iter().copied().filter(|i| !self.peers[*i].chunks_benched()).collect();
        let chunk_peers = if chunk_peers.is_empty() { active.clone() } else { chunk_peers };
        for peer in order {
            while self.peers[peer].in_flight < self.peers[peer].rate.capacity()
                && (in_flight.len() as u64 + 1) * self.request_bytes() <= MAX_IN_FLIGHT_BYTES
            {
                let Some(job) = self.next_job(peer, &active, &serving, &chunk_peers)? else {
                    break;
                };
                let fut = self.send(peer, job)?;
                self.peers[peer].in_flight += 1;
                self.stats.requests += 1;
                in_flight.push(fut);
            }
        }
        Ok(())
    }

    /// The most bytes one request may bring back (every request asks for at most this much), so
    /// the requests in flight ask for their count times it.
    fn request_bytes(&self) -> u64 {
        self.config.chunk_max_bytes.max(MAX_RESPONSE_BYTES)
    }

    /// The next request for `peer`: trie nodes (only if it is in `serving`, the peers that
    /// have the pivot's nodes), then a chunk (only if it is in `chunk_peers`), then codes.
    fn next_job(
        &mut self,
        peer: usize,
        active: &[usize],
        serving: &[usize],
        chunk_peers: &[usize],
    ) -> Result<Option<Job>, SyncError> {
        if serving.contains(&peer) {
            let nodes = take_for(&mut self.nodes, peer, serving, MAX_NODES_PER_REQUEST)?;
            if !nodes.is_empty() {
                return Ok(Some(Job::Nodes(nodes)));
            }
        }
        if chunk_peers.contains(&peer)
            && let Some(unit) = take_for(&mut self.units, peer, chunk_peers, 1)?.pop()
        {
            return Ok(Some(Job::Chunk(unit)));
        }
        let codes = take_for(&mut self.codes, peer, active, CODES_PER_REQUEST)?;
        Ok((!codes.is_empty()).then_some(Job::Codes(codes)))
    }

    fn send(&self, peer_index: usize, job: Job) -> Result<BoxFuture<'static, Done>, SyncError> {
        let peer = Arc::clone(&self.peers[peer_index].peer);
        let timeout = self.config.request_timeout;
        let request: BoxFuture<'static, Result<Answer, RequestError>> = match &job {
            Job::Chunk(unit) => {
                let prefix = wire_path(&unit.prefix)?;
                match unit.owner {
                    None => {
                        let f = peer.get_chunk(GetChunk {
                            request_id: 0,
                            prefix,
                            max_bytes: self.config.chunk_max_bytes,
                        });
                        Box::pin(async move { f.await.map(Answer::Chunk) })
                    }
                    Some(account) => {
                        let f = peer.get_storage_chunk(GetStorageChunk {
                            request_id: 0,
                            account,
                            prefix,
                            max_bytes: self.config.chunk_max_bytes,
                        });
                        Box::pin(async move { f.await.map(Answer::StorageChunk) })
                    }
                }
            }
            Job::Nodes(tasks) => {
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
                let f = peer.get_nodes(GetNodes {
                    request_id: 0,
                    nodes,
                    max_bytes: MAX_RESPONSE_BYTES,
                });
                Box::pin(async move { f.await.map(Answer::Nodes) })
            }
            Job::Codes(tasks) => {
                let hashes = tasks.iter().map(|t| t.hash).collect();
                let f = peer.get_codes(GetCodes {
                    request_id: 0,
                    hashes,
                    max_bytes: MAX_RESPONSE_BYTES,
                });
                Box::pin(async move { f.await.map(Answer::Codes) })
            }
        };
        let epoch = self.epoch;
        Ok(Box::pin(async move {
            let started = Instant::now();
            let result =
                tokio::time::timeout(timeout, request).await.unwrap_or(Err(RequestError::Timeout));
            Done { epoch, peer: peer_index, job, result, elapsed: started.elapsed() }
        }))
    }

    // ---- answers -------------------------------------------------------------------------

    async fn on_done(&mut self, done: Done) -> Result<(), SyncError> {
        let Done { epoch, peer, job, result, elapsed } = done;
        self.peers[peer].in_flight = self.peers[peer].in_flight.saturating_sub(1);
        if epoch != self.epoch && !matches!(job, Job::Codes(_)) {
            // Work for an earlier pivot (codes do not depend on the pivot).
            if let Ok(answer) = &result {
                self.stats.bytes_down += answer.size();
            }
            return Ok(());
        }
        let answer = match result {
            Ok(answer) => answer,
            Err(e) => {
                self.on_failure(peer, &e).await;
                self.requeue(job, peer);
                return Ok(());
            }
        };
        let size = answer.size();
        self.stats.bytes_down += size;
        self.peers[peer].rate.update(size, elapsed);
        self.peers[peer].timeouts = 0;
        match (job, answer) {
            (Job::Chunk(unit), Answer::Chunk(chunk)) => self.on_chunk(peer, unit, chunk).await,
            (Job::Chunk(unit), Answer::StorageChunk(chunk)) => {
                self.on_storage_chunk(peer, unit, chunk).await
            }
            (Job::Nodes(tasks), Answer::Nodes(nodes)) => self.on_nodes(peer, tasks, nodes).await,
            (Job::Codes(tasks), Answer::Codes(codes)) => self.on_codes(peer, tasks, codes).await,
            (job, _) => {
                // The request futures map each request to its own answer kind.
                self.ban(peer, "answer of the wrong kind").await;
                self.requeue(job, peer);
                Ok(())
            }
        }
    }

    async fn on_failure(&mut self, peer: usize, error: &RequestError) {
        match error {
            RequestError::Timeout => {
                self.stats.timeouts += 1;
                let slot = &mut self.peers[peer];
                slot.rate.penalise();
                slot.timeouts += 1;
                if slot.timeouts >= MAX_CONSECUTIVE_TIMEOUTS {
                    self.drop_peer(peer, "silent", Some(PenaltyClass::Low)).await;
                    // A stall is not a lie: the peer is asked again later (one request, as
                    // its window restarts small).
                    self.peers[peer].revive_at = Some(Instant::now() + SILENT_REVIVE_AFTER);
                }
            }
            RequestError::InvalidResponse(_) => self.ban(peer, "invalid response").await,
            RequestError::PeerBusy | RequestError::TooManyInFlight => {}
            // The session is gone; the network layer has already dealt with it.
            _ => self.drop_peer(peer, "disconnected", None).await,
        }
    }

    /// Puts a job's items back, marked as tried by `peer`.
    pub(crate) fn requeue(&mut self, job: Job, peer: usize) {
        match job {
            Job::Chunk(mut unit) => {
                unit.attempts.tried.push(peer);
                self.units.push_back(unit);
            }
            Job::Nodes(tasks) => {
                for mut t in tasks {
                    t.attempts.tried.push(peer);
                    self.nodes.push_back(t);
                }
            }
            Job::Codes(tasks) => {
                for mut t in tasks {
                    t.attempts.tried.push(peer);
                    self.codes.push_back(t);
                }
            }
        }
    }

    /// An answer with nothing in it.
    pub(crate) async fn on_empty(&mut self, peer: usize) {
        self.stats.empty_answers += 1;
        let slot = &mut self.peers[peer];
        slot.rate.penalise();
        slot.empties += 1;
        if slot.empties >= MAX_CONSECUTIVE_EMPTIES {
            self.drop_peer(peer, "answers empty", Some(PenaltyClass::Low)).await;
        }
    }

    /// A chunk that provably lies (read at the pivot head yet failing verification, a false head
    /// claim, storage contradicting its verified account, "too large" for one leaf): junk,
    /// counted against the server.
    pub(crate) async fn junk(&mut self, peer: usize, why: &'static str) {
        self.stats.junk_answers += 1;
        let slot = &mut self.peers[peer];
        slot.junk += 1;
        debug!(peer = %slot.peer.id(), why, junk = slot.junk, "junk answer");
        if slot.junk >= self.config.junk_ban_threshold {
            self.ban(peer, why).await;
        } else {
            slot.peer.penalise(PenaltyClass::High).await;
        }
    }

    pub(crate) async fn ban(&mut self, peer: usize, why: &'static str) {
        let slot = &mut self.peers[peer];
        if slot.standing == Standing::Banned {
            return;
        }
        warn!(peer = %slot.peer.id(), why, "banning sync peer");
        slot.standing = Standing::Banned;
        self.stats.peers_banned += 1;
        slot.peer.penalise(PenaltyClass::Fatal).await;
    }

    /// Stops asking a peer that is useless now but not shown dishonest: at most a minor
    /// penalty, never a ban.
    async fn drop_peer(&mut self, peer: usize, why: &'static str, penalty: Option<PenaltyClass>) {
        let slot = &mut self.peers[peer];
        if slot.standing != Standing::Active {
            return;
        }
        debug!(peer = %slot.peer.id(), why, "dropping sync peer");
        slot.standing = Standing::Dropped;
        slot.revive_at = None;
        self.stats.peers_dropped += 1;
        if let Some(class) = penalty {
            slot.peer.penalise(class).await;
        }
    }

    /// Peers dropped for silence whose pause is over are asked again.
    fn revive_silent(&mut self) {
        let now = Instant::now();
        for slot in &mut self.peers {
            if slot.standing == Standing::Dropped && slot.revive_at.is_some_and(|t| t <= now) {
                debug!(peer = %slot.peer.id(), "asking a silent sync peer again");
                slot.standing = Standing::Active;
                slot.revive_at = None;
                slot.timeouts = 0;
            }
        }
    }

    async fn on_codes(
        &mut self,
        peer: usize,
        tasks: Vec<CodeTask>,
        codes: leaf::Codes,
    ) -> Result<(), SyncError> {
        let mut got = Vec::new();
        let mut missing = Vec::new();
        let mut wrong = false;
        for (i, mut task) in tasks.into_iter().enumerate() {
            match codes.codes.get(i) {
                Some(code) if !wrong && !code.is_empty() => {
                    if keccak256(code) == task.hash {
                        got.push(code.to_vec());
                    } else {
                        wrong = true;
                        task.attempts.tried.push(peer);
                        missing.push(task);
                    }
                }
                _ => {
                    task.attempts.tried.push(peer);
                    missing.push(task);
                }
            }
        }
        if wrong {
            self.ban(peer, "code with the wrong hash").await;
        } else if got.is_empty() {
            self.on_empty(peer).await;
        } else {
            self.peers[peer].empties = 0;
        }
        self.stats.codes += got.len() as u64;
        self.db.write_codes(&got)?;
        self.codes.extend(missing);
        Ok(())
    }
}

/// The next peer from an optional channel; pending forever without one. `None`: it closed.
async fn next_peer(
    rx: &mut Option<mpsc::UnboundedReceiver<Arc<dyn SyncPeer>>>,
) -> Option<Arc<dyn SyncPeer>> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Resolves when an optional watch changes (`true`) or its sender is gone (`false`); pending
/// forever without one.
async fn feed_changed(rx: &mut Option<watch::Receiver<ChainHead>>) -> bool {
    match rx {
        Some(rx) => rx.changed().await.is_ok(),
        None => std::future::pending().await,
    }
}

/// The persisted form of a heal root worth persisting: account-trie ones and whole storage tries
/// (a storage subtrie below a storage skeleton is found again through that skeleton).
fn persistent_heal_root(
    owner: Owner,
    path: &Nibbles,
    hash: B256,
) -> Result<Option<HealRoot>, SyncError> {
    if owner.is_some() && !path.is_empty() {
        return Ok(None);
    }
    Ok(Some(HealRoot { owner: wire_owner(owner), path: wire_path(path)?, hash }))
}
