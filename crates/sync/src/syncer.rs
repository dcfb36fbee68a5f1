//! [`Syncer`]: the one owner loop of a sync. It owns its parts — the pivot's `Work`, the
//! codes (`CodeQueue`), heal bookkeeping (`HealState`), the peers (`PeerSet`) and the
//! counters (`Reporter`) — picks the pivot, seeds the skeleton, hands work to peers by their
//! measured capacity, and applies each answer (`answers.rs`) through the work-creation rules of
//! `items.rs`, writing verified chunks off the loop (`commit.rs`); see `docs/sync.md`.

mod answers;
mod commit;
mod finish;
mod items;
mod trust;

use std::sync::Arc;

use alloy_primitives::B256;
use alloy_trie::{EMPTY_ROOT_HASH, Nibbles};
use futures::StreamExt;
use leafsync_leafdb::{KvStore, LeafDb, SyncMark};
use leafsync_p2p::{PeerId, leaf::ChainHead};
use tokio::{sync::watch, time::Instant};
use tracing::{info, warn};

use self::{commit::Writes, trust::Trust};
pub use crate::resume::{choose_pivot, chunk_depth};
use crate::{
    carry::Carry,
    codes::CodeQueue,
    config::{MAX_FINAL_REPAIRS, MAX_IN_FLIGHT_BYTES, RECHECK_INTERVAL, SyncConfig, SyncMode},
    dispatch::{self, InFlight},
    error::SyncError,
    heal::HealState,
    marks::{Marked, Marks},
    peer::{NewPeers, SyncPeer},
    peer_set::PeerSet,
    prepare::Epoch,
    progress::SyncProgress,
    resume::{decide_start, heal_root_item},
    stats::{Phase, Reporter, SyncStats},
    tasks::Job,
    work::Work,
};

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
    db: Arc<LeafDb<S>>,
    config: SyncConfig,
    pivot: ChainHead,
    depth: usize,
    /// Advanced by each re-pivot; answers to requests of an earlier epoch are dropped, unprepared
    /// when they arrive after it ([`Epoch`]).
    epoch: Epoch,
    /// Bytes and requests of earlier runs of this sync (from the progress record).
    prior: (u64, u64),
    /// Everything bound to the pivot: replaced whole by a re-pivot.
    work: Work,
    heal: HealState,
    /// Codes do not depend on the pivot: they survive a re-pivot.
    codes: CodeQueue,
    /// What re-pivots and crashes left half done: heal roots cut short and storages open
    /// ([`Carry`]).
    carry: Carry,
    /// What this run keeps open, staged to be marked in the leafdb ([`Marks`]).
    marks: Marks,
    peers: PeerSet,
    reporter: Reporter,
    /// Peers that start serving during the sync.
    new_peers: Option<NewPeers>,
    /// Trusted heads (the neighbour execution client's): the pivot and where it moves.
    pivot_feed: Option<watch::Receiver<ChainHead>>,
    /// What the run can vouch for in the tables ([`Trust`]).
    trust: Trust,
    /// Verified chunks and codes held back or being written ([`commit`]).
    writes: Writes,
}

impl<S: KvStore> std::fmt::Debug for Syncer<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let stats = &self.reporter.stats;
        f.debug_struct("Syncer").field("pivot", &self.pivot).field("stats", stats).finish()
    }
}

impl<S: KvStore + 'static> Syncer<S> {
    /// A syncer writing into `db`, asking `peers`.
    pub fn new(db: Arc<LeafDb<S>>, config: SyncConfig, peers: Vec<Arc<dyn SyncPeer>>) -> Self {
        Self {
            writes: Writes::new(&config),
            peers: PeerSet::new(peers, config.junk_ban_threshold),
            db,
            config,
            pivot: ChainHead::default(),
            depth: 0,
            epoch: Epoch::default(),
            prior: (0, 0),
            work: Work::default(),
            heal: HealState::default(),
            codes: CodeQueue::default(),
            carry: Carry::default(),
            marks: Marks::default(),
            reporter: Reporter::default(),
            new_peers: None,
            pivot_feed: None,
            trust: Trust::default(),
        }
    }

    /// Peers that start serving during the sync join it from `peers` (see
    /// [`crate::watch_network_peers`]). While the channel is open, losing every peer is not
    /// fatal: the sync waits up to [`SyncConfig::stall_timeout`] for a new one.
    pub fn with_new_peers(mut self, peers: NewPeers) -> Self {
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
        self.reporter.publish_to(progress);
        self
    }

    /// The counters so far.
    pub fn stats(&self) -> &SyncStats {
        &self.reporter.stats
    }

    /// Runs the sync to the end. On failure the progress is persisted, so a new syncer on the
    /// same leafdb resumes, and the failure is returned: a failing record (a full disk fails it
    /// too) is only logged, so that the error names the write that failed first.
    pub async fn run(mut self) -> Result<SyncOutcome, SyncError> {
        match self.run_inner().await {
            Ok(()) => self.finish(),
            Err(e) => {
                self.abandon_commit();
                if self.pivot != ChainHead::default()
                    && let Err(record) = self.persist()
                {
                    warn!(error = %record, stopped_by = %e,
                        "state sync: its progress could not be recorded as it stopped");
                }
                Err(e)
            }
        }
    }

    async fn run_inner(&mut self) -> Result<(), SyncError> {
        self.reporter.start();
        let mut new_peers = self.new_peers.take();
        let mut pivot_feed = self.pivot_feed.take();
        let (record, mut unreadable) = match SyncProgress::stored(&self.db)? {
            Ok(record) => (record, false),
            Err(e) => {
                warn!(error = %e, "the stored sync progress does not decode: the sync starts \
                    over, every table checked (nothing else is lost)");
                (None, true)
            }
        };
        let marked = match record.as_ref().filter(|r| r.marked).map(|_| Marked::read(&self.db)) {
            Some(read) => match read? {
                Ok(marked) => Some(marked),
                Err(e) => {
                    warn!(error = %e, "a mark of the stored sync progress does not decode: the \
                        sync checks every table it resumes");
                    unreadable = true;
                    None
                }
            },
            None => None,
        };
        self.trust_tables(record.is_none() && !unreadable && self.db.head()?.is_some());
        let trusted = pivot_feed.as_ref().map(|f| *f.borrow());
        let heads = self.peers.heads();
        let estimate = self.peers.median_estimate();
        let start = decide_start(record, &self.config, trusted, &heads, estimate)?;
        (self.pivot, self.depth, self.prior) = (start.pivot, start.depth, start.prior);
        // The estimate that chose the depth also sizes account units for batching.
        self.work.sizes.record_accounts(estimate);
        let resumed = start.resumed.is_some() || unreadable;
        let holds_state = !resumed && self.db.holds_state()?;
        if resumed {
            // A crash (or an error) may have cut anything short: the tables are not all ours.
            self.trust.must_rehash(if unreadable {
                "a progress record that did not decode"
            } else {
                "resumed"
            });
        } else if holds_state {
            // Entries of an earlier state may lie where no chunk of this pivot writes.
            self.trust.must_rehash("tables held state at the start");
        }
        // Tables that held a complete state, or nothing: everything stored is then either
        // complete or this run's own work. Or a marked run's work: consistent but for what it
        // marked, which is carried as a re-pivot's is.
        self.trust.vouched =
            self.trust.tables_complete || !resumed && !holds_state || marked.is_some();
        if self.config.mode == SyncMode::HealOnly {
            self.trust.must_rehash("heal-only");
        }
        if self.config.full_final_check {
            self.trust.must_rehash("sync.full_final_check");
        }
        match &marked {
            Some(marked) => self.carry_marked(marked, start.resumed.is_none())?,
            None => self.db.clear_sync_marks(&[
                SyncMark::OpenStorage,
                SyncMark::OpenCode,
                SyncMark::Suspect,
            ])?,
        }
        if let Some(roots) = start.resumed {
            info!(pivot = self.pivot.number, heal_roots = roots.len(), "resuming state sync");
            for root in &roots {
                let (owner, path) = heal_root_item(root);
                if let Some(o) = owner {
                    self.work.start_storage(o);
                }
                self.add_heal_root(owner, path, root.hash)?;
            }
        } else {
            // Heal roots of another pivot (or of a record that did not decode) mean nothing now
            // (a marked run's are suspects now).
            self.db.clear_sync_heal_roots()?;
        }
        self.persist()?;
        info!(pivot = self.pivot.number, root = %self.pivot.state_root, depth = self.depth,
            peers = self.peers.len(), mode = ?self.config.mode, "state sync starting");
        self.seed(self.pivot.state_root)?;
        let (mut passes, mut catch_ups) = (0, 0);
        loop {
            self.drive(&mut new_peers, &mut pivot_feed).await?;
            let found = self.final_check().await?;
            if found.is_empty() {
                if !self.catch_up(pivot_feed.as_ref(), &mut catch_ups)? {
                    return Ok(());
                }
                continue;
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
        new_peers: &mut Option<NewPeers>,
        pivot_feed: &mut Option<watch::Receiver<ChainHead>>,
    ) -> Result<(), SyncError> {
        let mut in_flight = InFlight::new();
        let mut tick = tokio::time::interval(self.config.progress_interval);
        tick.tick().await;
        // Since when nothing could be sent (no peer, or none has the pivot's nodes).
        let mut stalled: Option<Instant> = None;
        loop {
            let steal_at = self.dispatch(&mut in_flight)?;
            if in_flight.is_empty() && self.writing() {
                // Nothing to wait for but the writes: what they bring decides what comes next
                // (and the wait is no stall).
                self.settle()?;
                continue;
            }
            if in_flight.is_empty() {
                if self.is_idle() {
                    break;
                }
                // Hopeless: no peer now, none can join, and none rests before a retry.
                let active = self.peers.active().len();
                let hopeless = active == 0 && new_peers.is_none() && !self.peers.any_resting();
                if stalled.is_none() && !hopeless {
                    info!(
                        peers = active,
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
                    self.on_done(done)?;
                    if self.reporter.publish_due() {
                        self.refresh_stats();
                        self.reporter.publish();
                    }
                }
                result = self.writes.committed(), if !self.writes.running.is_empty() => {
                    self.on_committed(result)?;
                }
                peer = next_peer(new_peers) => match peer {
                    Some(peer) => self.peers.add(peer, &mut self.reporter.stats),
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
                    self.write_held()?;
                    self.marks.flush(&self.db)?;
                    self.persist()?;
                }
                () = tokio::time::sleep(RECHECK_INTERVAL), if in_flight.is_empty() => {}
                () = sleep_until(steal_at), if steal_at.is_some() => {}
            }
            let trusted = pivot_feed.as_ref().map(|f| *f.borrow());
            self.maybe_repivot(trusted)?;
        }
        Ok(())
    }

    /// Fills every active peer's window (fastest first; [`crate::window::PeerWindow`]) with the
    /// next request it may get ([`dispatch::next_job`]): trie nodes if it has the pivot's, then
    /// a chunk of its own, then a full batch of codes, then another peer's chunk that waited
    /// for its home long enough, then codes; all requests in flight ask for at most
    /// [`MAX_IN_FLIGHT_BYTES`] together. Returns when a chunk it kept for its busy home may be
    /// taken by another peer, if any ([`dispatch::StealGate`]): the loop dispatches again then.
    fn dispatch(&mut self, in_flight: &mut InFlight) -> Result<Option<Instant>, SyncError> {
        self.peers.revive_silent();
        let roster = self.peers.roster(&self.pivot);
        let request_bytes = dispatch::request_bytes(self.config.chunk_max_bytes);
        let mut steal = dispatch::StealGate::new(self.config.steal_after, Instant::now());
        for &peer in &roster.active {
            while self.peers.slot(peer).has_room()
                && (in_flight.len() as u64 + 1) * request_bytes <= MAX_IN_FLIGHT_BYTES
            {
                // A batch fills what one answer may carry: its pieces are account chunks sized
                // by the skeleton depth, or whole storages and sub-chunks sized by their tries,
                // and the server cuts an underestimated batch at `max_bytes` (the tail is asked
                // again), so a batch never asks for more than `chunk_max_bytes`.
                let batch = self.config.chunk_batch_bytes.min(self.config.chunk_max_bytes);
                let probe = self.pivot.state_root != EMPTY_ROOT_HASH
                    && roster.serving.contains(&peer)
                    && self.peers.probe_due(peer);
                let job = if probe {
                    Job::Probe(self.pivot.state_root)
                } else {
                    let (work, codes) = (&mut self.work, &mut self.codes);
                    let next = dispatch::next_job(work, codes, peer, &roster, batch, &mut steal)?;
                    let Some(job) = next else { break };
                    job
                };
                let request = job.request(self.config.chunk_max_bytes)?;
                let server = Arc::clone(&self.peers.slot(peer).peer);
                let asked = (server.head(), server.request_at(&self.pivot, request));
                self.peers.sent(peer, probe);
                self.reporter.stats.requests += 1;
                let (timeout, epoch) = (self.config.request_timeout, &self.epoch);
                let sent = (epoch.current(), epoch);
                in_flight.push(dispatch::timed(asked, (&server, peer), timeout, sent, job));
            }
        }
        self.reporter.stats.chunks_stolen += steal.stolen() as u64;
        Ok(steal.next())
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
    /// moves. The pivot's work and heal state are replaced (codes survive: they do not depend
    /// on the pivot) and answers still in flight are ignored; the tables keep everything
    /// imported: chunks whose subtrie did not change are found complete, changed ones are
    /// healed from what is stored (see [`Self::add_unit`]).
    fn maybe_repivot(&mut self, trusted: Option<ChainHead>) -> Result<(), SyncError> {
        if self.config.pivot.is_some() {
            return Ok(());
        }
        let head = match trusted {
            Some(head) => head,
            // Unauthenticated heads never move the pivot unless peers may choose it.
            None if !self.config.peer_pivot => return Ok(()),
            None => {
                let heads: Vec<ChainHead> = (self.peers.active().into_iter())
                    .map(|i| self.peers.slot(i).peer.head())
                    .collect();
                let Some(head) = choose_pivot(None, &heads) else { return Ok(()) };
                head
            }
        };
        if head.number < self.pivot.number.saturating_add(self.config.repivot_distance) {
            return Ok(());
        }
        // The answer being written belongs to the old pivot's work: taken in before it goes.
        self.settle()?;
        info!(from = self.pivot.number, to = head.number, "re-pivoting state sync");
        self.trust.wrote_unhashed("re-pivot");
        // Everything the old pivot's work imported or finished is consistent; what it cut short
        // is carried, so the new pivot re-derives only that, not the whole state synced so far
        // (tens of minutes at mainnet size, longer than the blocks between two re-pivots), in a
        // run that can vouch for the rest.
        for (owner, path) in self.heal.roots() {
            self.carry.suspect(owner, path);
            self.marks.suspect(owner, &path)?;
        }
        let open: Vec<B256> = self.work.open_storages().collect();
        for account in open {
            // Marked when opened already, except a heal root's resumed from an older record.
            self.carry.carry_storage(account);
            self.marks.open_storage(account);
        }
        // Marked before the heal roots go: a crash in between leaves both, never neither.
        self.marks.flush(&self.db)?;
        self.epoch.advance();
        self.reporter.stats.repivots += 1;
        self.pivot = head;
        // The pivot's parts start over; `self.codes` survives (codes do not depend on it).
        self.work = Work::default();
        self.work.sizes.record_accounts(self.peers.median_estimate());
        self.heal = HealState::default();
        self.trust_tables(self.trust.vouched);
        self.db.clear_sync_heal_roots()?;
        self.persist()?;
        self.seed(head.state_root)
    }

    /// Carries what the marks of the run before say it left open ([`Marked`]), as a re-pivot
    /// carries what it cuts short: its heal roots and suspects become suspects (persisted as
    /// such when `new_pivot`: its heal roots are of another pivot and go), its open storages
    /// carried storages (and suspects: heals below a storage skeleton are not persisted), and
    /// its codes are queued again. The tables are then trusted but for those.
    fn carry_marked(&mut self, marked: &Marked, new_pivot: bool) -> Result<(), SyncError> {
        for (owner, path) in &marked.suspects {
            self.carry.suspect_after_crash(*owner, *path);
            if new_pivot {
                self.marks.suspect(*owner, path)?;
            }
        }
        for account in &marked.storages {
            self.carry.carry_storage(*account);
            self.carry.suspect_after_crash(Some(*account), Nibbles::new());
        }
        let mut stored = Vec::new();
        for code in &marked.codes {
            if !self.want_code(*code)? {
                stored.push(*code);
            }
        }
        self.marks.codes_written(&stored);
        self.marks.flush(&self.db)?;
        info!(
            suspects = marked.suspects.len(),
            storages = marked.storages.len(),
            codes = marked.codes.len() - stored.len(),
            "state sync: carrying what the run before left open"
        );
        self.trust_tables(true);
        Ok(())
    }

    /// Sets [`Trust::tables_complete`], and with it whether the heal gathers the subtries it
    /// finds unchanged (only a reconciliation over complete tables uses them).
    fn trust_tables(&mut self, complete: bool) {
        self.trust.tables_complete = complete;
        self.heal.gather_kept(complete);
    }

    fn is_idle(&self) -> bool {
        !self.writing() && self.work.is_idle() && self.codes.is_empty() && self.heal.is_empty()
    }

    /// Brings the derived counters (time, heal queue, phase, pivot, peers) up to date.
    fn refresh_stats(&mut self) {
        self.reporter.tick();
        let heal_queue = (self.heal.len() + self.work.nodes.len()) as u64;
        let peers = self.peers.active().len() as u64;
        let s = &mut self.reporter.stats;
        s.heal_queue = heal_queue;
        if s.phase != Phase::Done {
            // Heal once every chunk known so far is in (queued or in flight ones are not).
            let chunks_left = s.chunks_done < s.chunks_total;
            let chunks_over = s.chunks_done > 0 && self.work.units.is_empty() && !chunks_left;
            let heal = chunks_over || self.config.mode == SyncMode::HealOnly;
            s.phase = if heal { Phase::Heal } else { Phase::Chunks };
        }
        s.pivot = self.pivot;
        s.peers = peers;
    }

    /// Logs the structured progress line (and publishes the counters).
    fn log_progress(&mut self) {
        self.refresh_stats();
        self.reporter.log_progress();
    }

    /// Writes the progress record (the heal roots are entries of their own, written as they come
    /// and go).
    fn persist(&self) -> Result<(), SyncError> {
        let record = SyncProgress {
            pivot: self.pivot,
            depth: self.depth as u64,
            heal_roots: Vec::new(),
            bytes_down: self.prior.0 + self.reporter.stats.bytes_down,
            requests: self.prior.1 + self.reporter.stats.requests,
            marked: true,
        };
        self.db.put_sync_progress(&record.encode())?;
        Ok(())
    }
}

/// The next peer from an optional channel; pending forever without one. `None`: it closed.
async fn next_peer(rx: &mut Option<NewPeers>) -> Option<Arc<dyn SyncPeer>> {
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

/// Sleeps until `at` (forever without one; the caller guards the branch).
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
