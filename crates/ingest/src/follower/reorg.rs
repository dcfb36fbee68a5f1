//! Reorgs: the fork point among the blocks applied, the blocks after it rolled back with their
//! kept undos (each checked against its parent's root), or the new canonical blocks applied on
//! top when they cannot be.

use std::{
    collections::VecDeque,
    sync::{Arc, atomic::Ordering},
};

use leafsync_leafdb::{BlockHeader, BlockUndo, KvStore, LeafDb, LeafDbError};
use tracing::{info, warn};

use super::{Follower, UNDO_DEPTH};
use crate::{error::IngestError, types::RpcBlock};

/// The undos the leafdb kept ([`LeafDb::put_undo`]), if they still undo the head: a run of
/// blocks each the child of the one before, the last one the head. Anything else (a crash
/// between a block and its undo, a head written by a sync, a record that does not decode) is
/// dropped: an undo only ever saves a repair from peers, so a bad one must not stop the daemon.
pub(super) fn kept_undos<S: KvStore>(db: &LeafDb<S>) -> Result<VecDeque<BlockUndo>, IngestError> {
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

impl<S: KvStore + 'static> Follower<S> {
    /// Logs a reorg seen at `seen` (a block at our height with another hash, or the next block
    /// whose parent is not our head) and sets the first new canonical block to apply.
    pub(super) async fn reorg(
        &mut self,
        head: &BlockHeader,
        seen: &RpcBlock,
    ) -> Result<(), IngestError> {
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
    pub(super) async fn with_genesis_hash(
        &mut self,
        head: BlockHeader,
    ) -> Result<BlockHeader, IngestError> {
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
            let outcome =
                self.applier.run(move || Ok(db.revert_block(&parent, &undo.diff)?)).await?;
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
    pub(super) fn clear_undo(&mut self) -> Result<(), IngestError> {
        if !self.undo.is_empty() {
            self.undo.clear();
            self.db.clear_undos()?;
        }
        Ok(())
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

        // A rollback cut off after a revert (a crash, a full disk): the undos left still
        // undo the head, block 2.
        let undos = db.undos().unwrap();
        db.revert_block(&undos[2].parent, &undos[2].diff).unwrap();
        let kept = kept_undos(&db).unwrap();
        assert_eq!(kept.iter().map(|u| u.number).collect::<Vec<_>>(), [1, 2]);

        // A hole in the chain (an undo lost): none is kept, and the leafdb forgets them.
        let (db, _) = followed(3);
        let mut batch = WriteBatch::default();
        batch.delete(Table::Meta, [b"undo/".as_slice(), &2u64.to_be_bytes()].concat());
        db.store().write(batch, Durability::Logged).unwrap();
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
