//! The follower: one owner loop that keeps the leafdb at the execution client's head, block by
//! block, in order and exactly once.
//!
//! The leafdb head (written atomically with each block) is the only progress marker: the next
//! block is always `head + 1`, so a restart resumes there and a failed fetch or apply is simply
//! retried. A reorg rolls the blocks it drops back to the fork point, each undone with what it
//! overwrote (kept for the last [`UNDO_DEPTH`] blocks) and checked against its parent's state
//! root, then applies the new canonical blocks; one deeper than that, or after a restart, has
//! the new blocks applied on top.

mod reorg;
mod repeats;
mod stats;

use std::{
    collections::VecDeque,
    path::PathBuf,
    sync::{Arc, atomic::Ordering},
    time::{Duration, Instant},
};

use alloy_primitives::{B256, KECCAK256_EMPTY};
use leafsync_leafdb::{BlockHeader, BlockUndo, KvStore, LeafDb, read_alloc_file};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use self::stats::unix_secs;
use self::{reorg::kept_undos, repeats::Repeats};
pub use self::{repeats::REPEAT_LOG_INTERVAL, stats::IngestStats};
use crate::{
    apply::ApplyThread,
    error::IngestError,
    fold::fold_full_block,
    rpc::RpcClient,
    system::{
        REQUEST_CONTRACTS, SlotWrite, SystemWrites, is_prague, pre_execution_writes,
        request_state_slots,
    },
    types::RpcBlock,
};

/// First wait after a failure: short, since a restarting neighbour is usually back quickly.
pub const INITIAL_BACKOFF: Duration = Duration::from_millis(100);

/// Longest wait between retries: a block time is 12 s, so retrying at least every 5 s keeps us
/// within a block of a neighbour that comes back, without hammering one that stays down.
pub const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// How far back a reorg's fork point is searched among the blocks applied by this process.
/// Beyond 64 blocks (two epochs) the chain is finalized; deeper reorgs cannot happen.
pub const MAX_REORG_DEPTH: usize = 64;

/// How many of the last blocks applied a reorg can roll back: each one's undo (what it
/// overwrote, [`LeafDb::undo_of`]; about half a megabyte for a mainnet block) is kept in memory.
/// A deeper reorg, or one after a restart, applies the new blocks on top instead.
pub const UNDO_DEPTH: usize = 16;

/// Default interval between head polls over HTTP (and between re-checks over WebSocket): a
/// fraction of the 12 s slot, so a new block is picked up within a second.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(1);

/// How long the execution client may fail to give the next block's trace before the follower
/// reports it stuck ([`IngestStats::stuck_block`]; 2 minutes). A geth beside a daemon that was
/// down longer than its 128 kept states (about 26 minutes) cannot trace the next block again,
/// ever: the daemon then repairs its state from peers at the client's head, as for a state off
/// the chain, rather than retry for good.
pub const DEFAULT_STUCK_AFTER: Duration = Duration::from_secs(120);

/// How far the execution client's head may be below the leafdb's before the follower warns: a
/// reorg onto a shorter chain takes it a block or two back, a resync or a rewind further.
pub const EL_BELOW_TOLERANCE: u64 = 2;

/// Where to follow from and how.
#[derive(Debug, Clone)]
pub struct FollowerConfig {
    /// The execution client's JSON-RPC URL, `http://…` or `ws://…` (no default).
    pub url: String,
    /// A genesis allocation (geth genesis or bare alloc JSON) to load when the leafdb is empty
    /// (default none: an empty leafdb is an error).
    pub genesis: Option<PathBuf>,
    /// Head polling interval over HTTP, re-check interval over WebSocket (default
    /// [`DEFAULT_POLL_INTERVAL`]).
    pub poll_interval: Duration,
    /// The configured chain's genesis hash: the execution client's block 0 must have it
    /// (checked before anything else is read, and again after every failure that reset the
    /// connection and every reorg without a fork point among the blocks applied; default none:
    /// not checked).
    pub genesis_hash: Option<B256>,
    /// How long the next block's trace may keep failing before the follower reports it stuck
    /// (default [`DEFAULT_STUCK_AFTER`]).
    pub stuck_after: Duration,
}

impl FollowerConfig {
    /// A configuration for `url` with the defaults.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            genesis: None,
            poll_interval: DEFAULT_POLL_INTERVAL,
            genesis_hash: None,
            stuck_after: DEFAULT_STUCK_AFTER,
        }
    }
}

/// What one step did.
enum Step {
    /// A block was applied or a reorg's replay set up; go on at once.
    Again,
    /// At the execution client's head; wait for a new one.
    CaughtUp,
}

/// The follower; see the module docs.
#[derive(Debug)]
pub struct Follower<S: KvStore + 'static> {
    db: Arc<LeafDb<S>>,
    rpc: RpcClient,
    config: FollowerConfig,
    stats: Arc<IngestStats>,
    /// `(number, hash)` of the last blocks applied by this process, newest last, at most
    /// [`MAX_REORG_DEPTH`]: where a reorg's fork point is searched.
    recent: VecDeque<(u64, B256)>,
    /// What undoes each of the last blocks applied, newest last, at most [`UNDO_DEPTH`]: a
    /// run of blocks each the child of the one before, ending at the head. Kept in the leafdb
    /// too ([`LeafDb::put_undo`]), and read back at start.
    undo: VecDeque<BlockUndo>,
    /// The next block to apply when it is not `head + 1`: the first block after a fork point.
    replay_from: Option<u64>,
    /// The block whose trace or application last failed, and since when it has kept failing.
    failing: Option<(u64, Instant)>,
    /// Failed requests to the execution client since it last answered a whole step.
    failures: Repeats,
    /// Blocks applied off the chain (their root not their header's) since one matched.
    off_chain: Repeats,
    /// Steps that found the execution client's head below the leafdb's.
    el_below: Repeats,
    /// Whether the execution client's chain is to be checked before the next step: at the
    /// start, after a failure (the client behind the URL may have been replaced, a devnet
    /// redeployed), and after a reorg with no fork point among the blocks applied.
    check_chain: bool,
    /// Where blocks are folded and applied: a thread of its own, so that the runtime's blocking
    /// pool (where the daemon runs serve handlers) never delays a block.
    applier: ApplyThread,
    /// When the last "following" line was logged, and `blocks_applied` then.
    reported: (Instant, u64),
}

/// How often a follower that keeps up says so at `info` (60 s): a healthy node's log is not
/// silent for hours, and a minute's line costs nothing beside a block every 12 s.
pub const FOLLOW_LOG_INTERVAL: Duration = Duration::from_secs(60);

impl<S: KvStore + 'static> Follower<S> {
    /// A follower of `config.url` writing into `db`.
    pub fn new(db: Arc<LeafDb<S>>, config: FollowerConfig) -> Result<Self, IngestError> {
        let rpc = RpcClient::new(&config.url)?;
        let undo = kept_undos(&db)?;
        // The blocks the kept undos name are where a reorg's fork point is looked for, as if
        // this process had applied them.
        let recent = undo
            .front()
            .map(|u| (u.parent.number, u.parent.hash))
            .into_iter()
            .chain(undo.iter().map(|u| (u.number, u.hash)))
            .collect();
        Ok(Self {
            db,
            rpc,
            config,
            stats: Arc::default(),
            recent,
            undo,
            replay_from: None,
            failing: None,
            failures: Repeats::default(),
            off_chain: Repeats::default(),
            el_below: Repeats::default(),
            check_chain: true,
            applier: ApplyThread::spawn()?,
            reported: (Instant::now(), 0),
        })
    }

    /// Counts into `stats` (a follower started again, after the daemon repaired its state,
    /// carries on with the counters of the one before), but for `stuck_block`: the new one is
    /// not stuck where the one before was (cleared here, before the daemon looks again).
    #[must_use]
    pub fn with_stats(mut self, stats: Arc<IngestStats>) -> Self {
        stats.stuck_block.store(0, Ordering::Relaxed);
        self.stats = stats;
        self
    }

    /// The follower's counters.
    pub fn stats(&self) -> Arc<IngestStats> {
        Arc::clone(&self.stats)
    }

    /// Follows until `shutdown` turns true (or its sender is dropped). Execution-client failures
    /// are retried with exponential backoff from [`INITIAL_BACKOFF`] to [`MAX_BACKOFF`]; leafdb
    /// and configuration errors end the loop.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) -> Result<(), IngestError> {
        let mut backoff = INITIAL_BACKOFF;
        loop {
            // A dropped sender is a shutdown too (else `changed()` would return at once forever).
            if *shutdown.borrow() || shutdown.has_changed().is_err() {
                return Ok(());
            }
            let wait = match self.step().await {
                Ok(Step::Again) => {
                    backoff = INITIAL_BACKOFF;
                    self.answering_again();
                    continue;
                }
                Ok(Step::CaughtUp) => {
                    // The backoff is reset only once the wait succeeds: a subscription that
                    // keeps failing right after a step that did nothing must back off too.
                    let wait = async {
                        self.rpc.ensure_subscribed().await?;
                        self.rpc.wait_new_head(self.config.poll_interval).await
                    };
                    tokio::select! {
                        r = wait => match r {
                            Ok(()) => {
                                backoff = INITIAL_BACKOFF;
                                self.answering_again();
                                continue;
                            }
                            Err(e) => e,
                        },
                        _ = shutdown.changed() => continue,
                    }
                }
                Err(e) => e,
            };
            if !wait.is_retryable() {
                return Err(wait);
            }
            self.stats.retries.fetch_add(1, Ordering::Relaxed);
            let retry_in_ms = backoff.as_millis() as u64;
            match self.failures.note() {
                Some(failures) => warn!(
                    url = %self.rpc.url(),
                    error = %wait,
                    retry_in_ms,
                    failures,
                    "execution client request failed (while it keeps failing: a line a minute)"
                ),
                None => {
                    debug!(url = %self.rpc.url(), error = %wait, retry_in_ms, "execution client request failed")
                }
            }
            self.rpc.reset();
            self.check_chain = true;
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                _ = shutdown.changed() => {}
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// Ends a run of failures where the backoff is reset, and says so once; then, every
    /// [`FOLLOW_LOG_INTERVAL`], where following stands.
    fn answering_again(&mut self) {
        self.el_answered();
        if let Some(failures) = self.failures.end() {
            info!(url = %self.rpc.url(), failures, "execution client answering again");
        }
        if self.reported.0.elapsed() >= FOLLOW_LOG_INTERVAL {
            // Spells too close to an earlier line to be told on their own (see `repeats`).
            let untold = [&mut self.failures, &mut self.off_chain, &mut self.el_below]
                .map(|r| r.take_untold());
            if untold.iter().any(|&n| n > 0) {
                let [failures, mismatching_blocks, el_below_steps] = untold;
                warn!(
                    failures,
                    mismatching_blocks,
                    el_below_steps,
                    "conditions came and went since the last lines about them (a flapping \
                     execution client?)"
                );
            }
            let applied = self.stats.blocks_applied();
            info!(
                head = self.stats.head(),
                el_head = self.stats.el_head(),
                behind = self.stats.blocks_behind(),
                blocks = applied.saturating_sub(self.reported.1),
                secs = self.reported.0.elapsed().as_secs(),
                "following the execution client"
            );
            self.reported = (Instant::now(), applied);
        }
    }

    /// Notes that the execution client answered (its head and the next block's header, if not
    /// the trace): `leaf_syncStatus`'s `elSilentSecs` counts from here.
    fn el_answered(&self) {
        self.stats.el_answered_at.store(unix_secs(), Ordering::Relaxed);
    }

    async fn step(&mut self) -> Result<Step, IngestError> {
        let next = self.next_block().await;
        if next.is_ok() {
            self.el_answered();
        }
        let (block, el_head) = match next {
            Ok(Ok(next)) => next,
            Ok(Err(step)) => return Ok(step),
            Err(e) => {
                // The client failed before the trace (down, restarting): the block is not
                // failing while the client answers nothing, so "stuck" restarts its count.
                self.failing = None;
                return Err(e);
            }
        };
        let next = block.number;
        let applied = match self.rpc.trace_block_raw(block.hash).await {
            Ok(traces) => self.apply(block, traces, el_head).await,
            Err(e) => Err(e),
        };
        if let Err(e) = applied {
            self.failed_at(next, &e);
            return Err(e);
        }
        self.failing = None;
        self.stats.stuck_block.store(0, Ordering::Relaxed);
        Ok(Step::Again)
    }

    /// The next block to trace and apply with the client's head number, or what to do instead
    /// (at the head; a reorg set up).
    async fn next_block(&mut self) -> Result<Result<(RpcBlock, u64), Step>, IngestError> {
        if self.check_chain {
            if let Some(expected) = self.config.genesis_hash
                && !self.rpc.check_genesis(expected).await?
            {
                // A client without block 0 is not asked again (nor warned about) each time.
                self.config.genesis_hash = None;
            }
            self.check_chain = false;
        }
        let head = match self.db.head()? {
            Some(head) => self.with_genesis_hash(head).await?,
            None => self.bootstrap().await?,
        };
        let el_head = self.rpc.block_number().await?;
        self.stats.el_head.store(el_head, Ordering::Relaxed);
        self.stats.head.store(head.number, Ordering::Relaxed);
        self.note_el_below(el_head, head.number);
        let next = self.replay_from.unwrap_or(head.number + 1);
        if next > el_head {
            // At the head: check that our head is still canonical.
            if el_head == head.number {
                let ours = self.rpc.block(head.number).await?;
                if ours.hash != head.hash {
                    self.reorg(&head, &ours).await?;
                    return Ok(Err(Step::Again));
                }
            }
            return Ok(Err(Step::CaughtUp));
        }
        let block = self.rpc.block(next).await?;
        if self.replay_from.is_none() && block.parent_hash != head.hash {
            self.reorg(&head, &block).await?;
            return Ok(Err(Step::Again));
        }
        Ok(Ok((block, el_head)))
    }

    /// Tells the operator when the execution client's head is more than [`EL_BELOW_TOLERANCE`]
    /// blocks below the leafdb's (it resyncs from scratch, or was rewound): nothing is followed
    /// then, and `blocks_behind` reads 0.
    fn note_el_below(&mut self, el_head: u64, head: u64) {
        if el_head.saturating_add(EL_BELOW_TOLERANCE) < head {
            if let Some(steps) = self.el_below.note() {
                warn!(
                    el_head,
                    head,
                    steps,
                    "the execution client's head is below the leafdb's (resyncing, or rewound): \
                     following waits until it passes ours (while it stays below: a line a minute)"
                );
            }
        } else if let Some(steps) = self.el_below.end() {
            info!(el_head, head, steps, "the execution client's head is near the leafdb's again");
        }
    }

    /// Counts a failure to trace or apply block `number` (which the execution client has): once
    /// that block has kept failing for [`FollowerConfig::stuck_after`], following is stuck there
    /// ([`IngestStats::stuck_block`], said once in the log).
    fn failed_at(&mut self, number: u64, error: &IngestError) {
        if matches!(error, IngestError::TracingUnavailable { .. }) {
            // Not the block: no block is traced until the client's `debug` namespace is on,
            // and a repair from peers would stop at the same place (a block stuck before the
            // client lost it is not stuck for that any more).
            self.failing = None;
            self.stats.stuck_block.store(0, Ordering::Relaxed);
            return;
        }
        let now = Instant::now();
        let since = match self.failing {
            Some((n, since)) if n == number => since,
            _ => now,
        };
        self.failing = Some((number, since));
        if now.duration_since(since) >= self.config.stuck_after
            && self.stats.stuck_block.swap(number, Ordering::Relaxed) != number
        {
            warn!(
                number,
                %error,
                failing_secs = now.duration_since(since).as_secs(),
                "the execution client keeps failing to trace this block (it may no longer keep \
                 its parent's state: geth keeps 128): following is stuck here, and the state is \
                 repaired from peers at the client's head once one that serves state is connected"
            );
        }
    }

    /// What `block`'s system calls write ([`crate::system`]): the pre-execution writes from its
    /// header and, after a Prague block, the request contracts' state slots read from the
    /// execution client at the block's hash (for the contracts the leafdb has: a system call to
    /// an address without code does nothing).
    async fn system_writes(&mut self, block: &RpcBlock) -> Result<SystemWrites, IngestError> {
        let mut after = Vec::new();
        if is_prague(block) {
            for address in REQUEST_CONTRACTS {
                let account = self.db.account_by_address(&address)?;
                if account.is_none_or(|a| a.code_hash == KECCAK256_EMPTY) {
                    continue;
                }
                for slot in request_state_slots() {
                    let value = self.rpc.storage_at(address, slot, block.hash).await?;
                    after.push(SlotWrite { address, slot, value });
                }
            }
        }
        Ok(SystemWrites { before: pre_execution_writes(block), after })
    }

    /// Decodes the block's traces, folds them and applies the block (keeping its undo when it is
    /// within [`UNDO_DEPTH`] of `el_head`), all on the apply thread
    /// (decoding a large trace on the runtime would hold one of its workers).
    async fn apply(
        &mut self,
        block: RpcBlock,
        traces: crate::rpc::RawResponse,
        el_head: u64,
    ) -> Result<(), IngestError> {
        let system = self.system_writes(&block).await?;
        let db = Arc::clone(&self.db);
        let header = block.header();
        let started = Instant::now();
        // Only a block near the execution client's head can be reorged away: one deeper than
        // the undo kept is not read for it (catching up pays nothing).
        let near_head = el_head.saturating_sub(header.number) < UNDO_DEPTH as u64;
        let url = self.rpc.url().to_owned();
        let (outcome, decoding, undo) = self
            .applier
            .run(move || {
                let t = Instant::now();
                let traces: Vec<crate::types::TxTrace> =
                    traces.decode().map_err(|e| crate::rpc::tracing_error(&url, e))?;
                let decoding = t.elapsed();
                let diff = fold_full_block(
                    header.number,
                    &system,
                    &traces,
                    &block.withdrawals,
                    db.as_ref(),
                )?;
                // What the block overwrites, read before it does: kept for a block near the
                // chain's head that extends ours, so that a reorg can take it back.
                let undo = match db.head()? {
                    Some(parent) if near_head && parent.hash == header.parent_hash => {
                        db.undo_of(&diff)?.map(|diff| BlockUndo {
                            parent,
                            number: header.number,
                            hash: header.hash,
                            diff,
                        })
                    }
                    _ => None,
                };
                let outcome = db.apply_block(&header, &diff)?;
                // Kept after the block's write: a crash between the two loses this undo, and
                // with it the use of the others (the chain read back at start ends short of the
                // head, so none is kept: none could undo the head).
                if let Some(undo) = &undo {
                    db.put_undo(undo, UNDO_DEPTH as u64)?;
                }
                Ok((outcome, decoding, undo))
            })
            .await?;
        match undo {
            Some(undo) => {
                self.undo.push_back(undo);
                if self.undo.len() > UNDO_DEPTH {
                    self.undo.pop_front();
                }
            }
            // No rollback can pass a block that cannot be undone (or was too deep to keep one).
            None => self.clear_undo()?,
        }
        // The counters keep measuring fold and apply (and any wait for the thread).
        let micros = started.elapsed().saturating_sub(decoding).as_micros() as u64;
        self.replay_from = None;
        self.stats.last_apply_micros.store(micros, Ordering::Relaxed);
        self.stats.total_apply_micros.fetch_add(micros, Ordering::Relaxed);
        self.stats.blocks_applied.fetch_add(1, Ordering::Relaxed);
        self.stats.head.store(header.number, Ordering::Relaxed);
        if outcome.root_matches {
            if let Some(blocks) = self.off_chain.end() {
                info!(number = header.number, blocks, "state root matches the header's again");
            }
        } else {
            self.stats.mismatching_blocks.fetch_add(1, Ordering::Relaxed);
            match self.off_chain.note() {
                Some(blocks) => warn!(
                    number = header.number,
                    hash = %header.hash,
                    expected = %header.state_root,
                    computed = %outcome.root,
                    blocks,
                    "state root mismatch after applying block: the state is off the chain (while \
                     it stays off: a line a minute)"
                ),
                None => {
                    debug!(number = header.number, computed = %outcome.root, "state root mismatch")
                }
            }
        }
        self.recent.retain(|&(n, _)| n < header.number);
        self.recent.push_back((header.number, header.hash));
        while self.recent.len() > MAX_REORG_DEPTH {
            self.recent.pop_front();
        }
        Ok(())
    }

    /// Loads the configured genesis allocation into the empty leafdb as the execution client's
    /// block 0.
    async fn bootstrap(&mut self) -> Result<BlockHeader, IngestError> {
        let path = self.config.genesis.clone().ok_or(IngestError::NoState)?;
        let genesis = self.rpc.block(0).await?;
        let db = Arc::clone(&self.db);
        // A zero root lets the leafdb record the root it computes.
        let header = BlockHeader { number: 0, state_root: B256::ZERO, ..genesis.header() };
        let outcome = self
            .applier
            .run(move || {
                let alloc = read_alloc_file(&path)?;
                Ok(db.init_genesis(&alloc, header)?)
            })
            .await?;
        if outcome.root != genesis.state_root {
            warn!(
                computed = %outcome.root,
                header = %genesis.state_root,
                "genesis allocation root differs from the execution client's genesis header"
            );
        }
        info!(accounts = outcome.accounts, root = %outcome.root, "leafdb initialised from genesis");
        Ok(BlockHeader { state_root: outcome.root, ..header })
    }
}
