//! The follower: one owner loop that keeps the leafdb at the execution client's head, block by
//! block, in order and exactly once.
//!
//! The leafdb head (written atomically with each block) is the only progress marker: the next
//! block is always `head + 1`, so a restart resumes there and a failed fetch or apply is simply
//! retried. A reorg rolls the blocks it drops back to the fork point, each undone with what it
//! overwrote (kept for the last [`UNDO_DEPTH`] blocks) and checked against its parent's state
//! root, then applies the new canonical blocks; one deeper than that, or after a restart, has
//! the new blocks applied on top.

use std::{
    collections::VecDeque,
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use alloy_primitives::{B256, KECCAK256_EMPTY};
use leafsync_leafdb::{BlockHeader, BlockUndo, KvStore, LeafDb, LeafDbError, read_alloc_file};
use tokio::sync::watch;
use tracing::{info, warn};

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

/// Declares [`IngestStats`]: one relaxed `AtomicU64` and one getter per counter.
macro_rules! ingest_stats {
    ($($(#[doc = $doc:literal])* $name:ident),* $(,)?) => {
        /// Counters of the follower, shared with whoever exports metrics.
        #[derive(Debug, Default)]
        pub struct IngestStats {
            $($name: AtomicU64,)*
        }

        impl IngestStats {
            $(
                $(#[doc = $doc])*
                pub fn $name(&self) -> u64 {
                    self.$name.load(Ordering::Relaxed)
                }
            )*
        }
    };
}

ingest_stats! {
    /// The execution client's head number, as last seen.
    el_head,
    /// The leafdb head number (as last applied or read).
    head,
    /// Blocks applied by this process.
    blocks_applied,
    /// Applied blocks whose computed root differed from the header's.
    mismatching_blocks,
    /// Reorgs detected.
    reorgs,
    /// Blocks rolled back by reorgs (each undone onto its parent, root checked).
    blocks_reverted,
    /// Failures retried after a backoff.
    retries,
    /// Time to fold and apply the last block, in microseconds.
    last_apply_micros,
    /// Total fold-and-apply time of all applied blocks, in microseconds.
    total_apply_micros,
    /// The block whose trace (or its application) has failed for at least
    /// [`FollowerConfig::stuck_after`] while the execution client answered for the block
    /// itself: following is stuck there (0: it is not).
    stuck_block,
}

impl IngestStats {
    /// Blocks the leafdb is behind the execution client's head (as last seen).
    pub fn blocks_behind(&self) -> u64 {
        self.el_head().saturating_sub(self.head())
    }
}

/// The undos the leafdb kept ([`LeafDb::put_undo`]), if they still undo the head: a run of
/// blocks each the child of the one before, the last one the head. Anything else (a crash
/// between a block and its undo, a head written by a sync, a record that does not decode) is
/// dropped: an undo only ever saves a repair from peers, so a bad one must not stop the daemon.
fn kept_undos<S: KvStore>(db: &LeafDb<S>) -> Result<VecDeque<BlockUndo>, IngestError> {
    let undos = match db.undos() {
        Ok(undos) => undos,
        Err(error @ LeafDbError::Corrupt { .. }) => {
            warn!(%error, "kept block undos do not decode; dropping them");
            db.clear_undos()?;
            return Ok(VecDeque::new());
        }
        Err(error) => return Err(error.into()),
    };
    let head = db.head()?;
    let chained = undos
        .windows(2)
        .all(|w| w[1].parent.hash == w[0].hash && w[0].number.checked_add(1) == Some(w[1].number));
    let at_head = undos.last().is_some_and(|u| head.is_some_and(|h| h.hash == u.hash));
    if chained && at_head {
        let skip = undos.len().saturating_sub(UNDO_DEPTH);
        return Ok(undos.into_iter().skip(skip).collect());
    }
    if !undos.is_empty() {
        db.clear_undos()?;
    }
    Ok(VecDeque::new())
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
    /// Whether the execution client's chain is to be checked before the next step: at the
    /// start, after a failure (the client behind the URL may have been replaced, a devnet
    /// redeployed), and after a reorg with no fork point among the blocks applied.
    check_chain: bool,
    /// Where blocks are folded and applied: a thread of its own, so that the runtime's blocking
    /// pool (where the daemon runs serve handlers) never delays a block.
    applier: ApplyThread,
}

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
            check_chain: true,
            applier: ApplyThread::spawn()?,
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
            warn!(url = %self.rpc.url(), error = %wait, retry_in_ms = backoff.as_millis() as u64, "execution client request failed");
            self.rpc.reset();
            self.check_chain = true;
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                _ = shutdown.changed() => {}
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    async fn step(&mut self) -> Result<Step, IngestError> {
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
        let next = self.replay_from.unwrap_or(head.number + 1);
        if next > el_head {
            // At the head: check that our head is still canonical.
            if el_head == head.number {
                let ours = self.rpc.block(head.number).await?;
                if ours.hash != head.hash {
                    self.reorg(&head, &ours).await?;
                    return Ok(Step::Again);
                }
            }
            return Ok(Step::CaughtUp);
        }
        let block = self.rpc.block(next).await?;
        if self.replay_from.is_none() && block.parent_hash != head.hash {
            self.reorg(&head, &block).await?;
            return Ok(Step::Again);
        }
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

    /// Counts a failure to trace or apply block `number` (which the execution client has): once
    /// that block has kept failing for [`FollowerConfig::stuck_after`], following is stuck there
    /// ([`IngestStats::stuck_block`], said once in the log).
    fn failed_at(&mut self, number: u64, error: &IngestError) {
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

    /// Logs a reorg seen at `seen` (a block at our height with another hash, or the next block
    /// whose parent is not our head) and sets the first new canonical block to apply.
    async fn reorg(&mut self, head: &BlockHeader, seen: &RpcBlock) -> Result<(), IngestError> {
        // The fork point: the newest block we applied that is still canonical.
        let mut fork = None;
        for &(number, hash) in self.recent.iter().rev() {
            if number >= seen.number {
                continue;
            }
            if self.rpc.block(number).await?.hash == hash {
                fork = Some(number);
                break;
            }
        }
        // Unknown (restarted, or deeper than we remember): apply the new blocks from `seen`,
        // once the client is seen to be on our chain still.
        if fork.is_none()
            && let Some(expected) = self.config.genesis_hash
        {
            self.rpc.check_genesis(expected).await?;
        }
        let fork = fork.unwrap_or(seen.number.saturating_sub(1));
        self.stats.reorgs.fetch_add(1, Ordering::Relaxed);
        self.recent.retain(|&(n, _)| n <= fork);
        if self.roll_back(head, fork).await? {
            info!(
                head = head.number,
                head_hash = %head.hash,
                seen = seen.number,
                seen_hash = %seen.hash,
                fork,
                "reorg: rolled back to the fork point; applying the new canonical blocks"
            );
            return Ok(());
        }
        warn!(
            head = head.number,
            head_hash = %head.hash,
            seen = seen.number,
            seen_hash = %seen.hash,
            seen_parent = %seen.parent_hash,
            fork,
            "reorg: our head is not on the execution client's chain; applying the new canonical \
             blocks on top (the blocks since the fork could not all be undone: applied before a \
             restart, deeper than the undo kept, or a revert missed its parent's root; the \
             leafdb is eventually consistent)"
        );
        self.replay_from = Some(fork + 1);
        Ok(())
    }

    /// `head`, with the execution client's block 0's hash when it is block 0 written without
    /// one (`tool init-genesis` knows only the allocation, a generated state has none) and its
    /// state root is that block's: else block 1's parent hash never matched it, and following
    /// began with a reorg warning and a reorg counted for a chain that had none.
    async fn with_genesis_hash(&mut self, head: BlockHeader) -> Result<BlockHeader, IngestError> {
        if head.number != 0 || !head.hash.is_zero() {
            return Ok(head);
        }
        let genesis = self.rpc.block(0).await?;
        Ok(if genesis.state_root == head.state_root {
            BlockHeader { hash: genesis.hash, ..head }
        } else {
            head
        })
    }

    /// Undoes the blocks after `fork`, newest first, when the undo of each is kept; returns
    /// whether the head is the fork point's block again, its root checked. A revert whose root
    /// is not its parent's stops there (logged): the rest is then applied on top.
    async fn roll_back(&mut self, head: &BlockHeader, fork: u64) -> Result<bool, IngestError> {
        let depth = head.number.saturating_sub(fork) as usize;
        let kept = self.undo.back().is_some_and(|u| u.hash == head.hash)
            && self.undo.len() >= depth
            && depth > 0;
        if !kept {
            self.clear_undo()?;
            return Ok(false);
        }
        for _ in 0..depth {
            let Some(undo) = self.undo.pop_back() else { return Ok(false) };
            let db = Arc::clone(&self.db);
            let parent = undo.parent;
            let (number, hash) = (undo.number, undo.hash);
            let outcome = self
                .applier
                .run(move || {
                    let outcome = db.revert_block(&parent, &undo.diff)?;
                    db.delete_undo(number)?;
                    Ok(outcome)
                })
                .await?;
            self.stats.head.store(parent.number, Ordering::Relaxed);
            if !outcome.root_matches {
                self.stats.mismatching_blocks.fetch_add(1, Ordering::Relaxed);
                warn!(
                    number,
                    parent = parent.number,
                    expected = %parent.state_root,
                    computed = %outcome.root,
                    "reorg: a reverted block did not leave its parent's state root"
                );
                self.clear_undo()?;
                return Ok(false);
            }
            self.stats.blocks_reverted.fetch_add(1, Ordering::Relaxed);
            info!(number, %hash, "reorg: block reverted");
        }
        self.replay_from = None;
        Ok(true)
    }

    /// Forgets every undo, here and in the leafdb (only when there is one: a catch-up would
    /// otherwise write a range deletion per block).
    fn clear_undo(&mut self) -> Result<(), IngestError> {
        if !self.undo.is_empty() {
            self.undo.clear();
            self.db.clear_undos()?;
        }
        Ok(())
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
        let (outcome, decoding, undo) = self
            .applier
            .run(move || {
                let t = Instant::now();
                let traces: Vec<crate::types::TxTrace> = traces.decode()?;
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
                // Kept after the block's write: a crash between the two loses only this undo,
                // and the chain of those read back at start then ends short of the head.
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
        if !outcome.root_matches {
            self.stats.mismatching_blocks.fetch_add(1, Ordering::Relaxed);
            warn!(
                number = header.number,
                hash = %header.hash,
                expected = %header.state_root,
                computed = %outcome.root,
                "state root mismatch after applying block"
            );
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use leafsync_leafdb::{Durability, GenParams, MemStore, Table, WriteBatch};

    use super::*;

    /// A generated state with `blocks` blocks applied, each with its undo kept.
    fn followed(blocks: u64) -> (LeafDb<MemStore>, GenParams) {
        let params = GenParams { accounts: 300, seed: 4 };
        let db = LeafDb::in_memory();
        db.generate(params).unwrap();
        for n in 1..=blocks {
            let parent = db.head().unwrap().unwrap();
            let (header, diff) = params.block(n, 10);
            let undo = db.undo_of(&diff).unwrap().unwrap();
            let (_, header) = db.apply_generated_block(&header, &diff).unwrap();
            let undo = BlockUndo { parent, number: n, hash: header.hash, diff: undo };
            db.put_undo(&undo, UNDO_DEPTH as u64).unwrap();
        }
        (db, params)
    }

    #[test]
    fn kept_undos_are_taken_back_only_when_they_chain_to_the_head_and_decode() {
        let (db, params) = followed(3);
        let kept = kept_undos(&db).unwrap();
        assert_eq!(kept.iter().map(|u| u.number).collect::<Vec<_>>(), [1, 2, 3]);

        // A hole in the chain (an undo lost): none is kept, and the leafdb forgets them.
        db.delete_undo(2).unwrap();
        assert!(kept_undos(&db).unwrap().is_empty());
        assert!(db.undos().unwrap().is_empty());

        // A head past the last undo (a crash between a block and its undo): none is kept.
        let (db, _) = followed(3);
        let (header, diff) = params.block(4, 10);
        db.apply_generated_block(&header, &diff).unwrap();
        assert!(kept_undos(&db).unwrap().is_empty());
        assert!(db.undos().unwrap().is_empty());

        // A record that does not decode (a bad disk): dropped, and the follower starts.
        let (db, _) = followed(3);
        let mut batch = WriteBatch::default();
        // The meta key of block 3's undo (`undo/` ‖ number, leafdb's undo.rs).
        batch.put(Table::Meta, [b"undo/".as_slice(), &3u64.to_be_bytes()].concat(), vec![0xc2, 1]);
        db.store().write(batch, Durability::Logged).unwrap();
        assert!(db.undos().is_err());
        assert!(kept_undos(&db).unwrap().is_empty());
        assert!(db.undos().unwrap().is_empty());
    }
}
