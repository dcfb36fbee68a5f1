//! Answers applied: each finished request, prepared off the loop (`prepare.rs`: chunks checked
//! and staged, codes hashed), is judged by the pure parts (`import.rs`, `heal.rs`, the hash
//! checks here), its verdict recorded in the [`PeerSet`] (the earned penalty is sent
//! without waiting), and its results written and queued. Everything here is synchronous.
//!
//! [`PeerSet`]: crate::peer_set::PeerSet

use alloy_primitives::{B256, keccak256};
use alloy_trie::Nibbles;
use leafsync_leafdb::{ChunkSet, KvStore, trie::DecodedNode};
use leafsync_p2p::leaf::{ChainHead, Codes, Nodes};
use tracing::debug;

use super::{Syncer, commit::Verified, items::Hold};
use crate::{
    error::SyncError,
    heal::children,
    import::judge_mismatch,
    peer_set::{Sender, Verdict},
    prepare::{Body, Checked, Done, Pieces, Staged},
    stats::WorkKind,
    tasks::{CodeTask, Job, NodeTask, Owner, Purpose, Unit, queue_again, requeue},
};

impl<S: KvStore + 'static> Syncer<S> {
    /// Records `verdict` for `peer` and sends the penalty it earned, if any. An empty answer of
    /// a peer that said it has no state for the pivot's root is no fault ([`Verdict::NoState`]).
    pub(super) fn judge(&mut self, peer: usize, verdict: Verdict) {
        let verdict = match verdict {
            Verdict::Empty if self.lacks_pivot_state(peer) => Verdict::NoState,
            verdict => verdict,
        };
        self.record(peer, verdict);
    }

    /// [`Self::judge`] without the excuse: for codes, which name no root (a peer without the
    /// pivot's state still gets them, and answering them empty counts as empty).
    fn record(&mut self, peer: usize, verdict: Verdict) {
        if let Some(class) = self.peers.record(peer, verdict, &mut self.reporter.stats) {
            self.peers.slot(peer).peer.penalise(class);
        }
    }

    /// Whether `peer` said it has no flat state or no trie nodes for the pivot's root.
    fn lacks_pivot_state(&self, peer: usize) -> bool {
        let (server, root) = (&self.peers.slot(peer).peer, &self.pivot.state_root);
        server.lacks_state(root) || server.lacks_nodes(root)
    }

    /// Puts a job's items back, marked as tried by `peer`.
    fn requeue(&mut self, job: Job, peer: usize) {
        match job {
            Job::Chunk(units) | Job::Storage(units) => requeue(&mut self.work.units, units, peer),
            Job::Nodes(tasks) => requeue(&mut self.work.nodes, tasks, peer),
            Job::Codes(tasks) => self.codes.requeue(tasks, peer),
            Job::Probe(_) => {}
        }
    }

    pub(super) fn on_done(&mut self, done: Done) -> Result<(), SyncError> {
        let Done { epoch, peer, asked_at, job, result, elapsed } = done;
        let size = result.as_ref().ok().map(|answer| answer.size);
        if matches!(job, Job::Probe(_)) {
            self.peers.probed(peer, size.map(|_| elapsed));
        } else {
            self.peers.finished(peer, size.map(|size| (size, elapsed)));
        }
        let stats = &mut self.reporter.stats;
        if self.epoch.outdates(epoch, &job) {
            stats.bytes_down += size.unwrap_or(0);
            return Ok(());
        }
        let body = match result {
            Ok(answer) => answer.body,
            Err(e) => {
                self.judge(peer, Verdict::from(&e));
                self.requeue(job, peer);
                return Ok(());
            }
        };
        let size = size.unwrap_or(0);
        stats.bytes_down += size;
        self.peers.answered(peer);
        match (job, body) {
            (Job::Chunk(units) | Job::Storage(units), Body::Pieces(pieces)) => {
                self.on_batch(peer, asked_at, size, units, pieces)
            }
            (Job::Nodes(tasks), Body::Nodes(nodes)) => self.on_nodes(peer, tasks, &nodes),
            (Job::Codes(tasks), Body::Codes { codes, hashes }) => {
                self.on_codes(peer, tasks, &codes, hashes)
            }
            (Job::Probe(root), Body::Nodes(nodes)) => {
                // Measured already; the node is the pivot's root, which the syncer has.
                let node = nodes.nodes.first().filter(|rlp| !rlp.is_empty());
                let wrong = node.is_some_and(|rlp| keccak256(rlp) != root);
                let delivered = usize::from(node.is_some() && !wrong);
                self.judge(peer, delivery(wrong, delivered, "node with the wrong hash"));
                Ok(())
            }
            // Not reached: a stale answer's epoch is an earlier one, dropped above.
            (_, Body::Stale) => Ok(()),
            (job, _) => {
                self.judge(peer, Verdict::Invalid("answer of the wrong kind"));
                self.requeue(job, peer);
                Ok(())
            }
        }
    }

    /// A `Chunk` or `StorageChunk` answer (its `pieces`, checked and staged off the loop) to the
    /// account or storage `units`: each piece is judged and imported on its own, exactly as a
    /// single chunk is, so a lie in one piece costs its server and leaves the others standing.
    /// Once a piece got its server banned, its further pieces are not imported: their units are
    /// queued again as tried by it. Once its server is benched for stale chunks
    /// ([`crate::peer_set::PeerSet::takes_chunks`]), only further pieces that equal their
    /// skeleton hash are imported (a stale server's chunks mostly do: only the prefixes its head
    /// changed differ), and the others are queued again as tried by it instead of healed. So a
    /// batch heals no more of a liar's or a stale server's chunks than single chunks would, and
    /// an honest stale server's good pieces are not thrown away. Units after the last
    /// piece were left out at the server's byte or time budget, which is honest: in an answer
    /// of `size` bytes that filled at least half the `max_bytes` asked, they are queued again
    /// untried, so that the same server (their home) takes them next; in a smaller one they go
    /// back as tried by it, so that another peer does: else a server answering each batch
    /// late with its first piece only took the rest back at once, batch after batch, and held
    /// them hostage for a request timeout each. An answer without any piece is empty.
    fn on_batch(
        &mut self,
        peer: usize,
        asked_at: ChainHead,
        size: u64,
        units: Vec<Unit>,
        pieces: Pieces,
    ) -> Result<(), SyncError> {
        let Pieces::Checked(pieces) = pieces else {
            self.judge(peer, Verdict::Invalid("more chunk pieces than chunks asked"));
            requeue(&mut self.work.units, units, peer);
            return Ok(());
        };
        if pieces.is_empty() {
            self.judge(peer, Verdict::Empty);
            requeue(&mut self.work.units, units, peer);
            return Ok(());
        }
        let mut units = units.into_iter();
        let (mut delivered, mut refused) = (false, false);
        // The key space the delivered account pieces cover, to learn the trie's size from.
        let mut account_share = 0.0;
        let mut passed = Vec::new();
        let mut verified = Verified::default();
        // Pieces first: `zip` takes from its first iterator before its second, so no unit is
        // taken past the last piece.
        for (piece, unit) in pieces.into_iter().zip(units.by_ref()) {
            if self.peers.is_banned(peer) {
                passed.push(unit);
                continue;
            }
            let verified_only = !self.peers.takes_chunks(peer);
            // A unit of a "too large" claim: its size, to judge the claim (encoded only then).
            // A piece marking a storage large does not carry that storage's bytes (a liar can
            // mark small storages so and make an honest claim look implausible): its claim is
            // left unjudged.
            let (owner, prefix) = (unit.owner, unit.prefix);
            let claimed = match self.work.is_claimed(owner, prefix) {
                true if piece.marks_large => {
                    self.work.drop_claim(owner, prefix);
                    None
                }
                true => Some(piece.length),
                false => None,
            };
            let verdict = piece.verdict;
            let split = matches!(verdict, Checked::Split { .. });
            match self.on_chunk(peer, asked_at, unit, verdict, verified_only, &mut verified)? {
                Some(Verdict::Delivered) => {
                    delivered = true;
                    if owner.is_none() && !split {
                        account_share += 16f64.powi(-(prefix.len() as i32));
                    }
                    if let Some(bytes) = claimed {
                        self.settle_claim(owner, prefix, split, bytes);
                    }
                }
                Some(Verdict::Empty) => {}
                Some(verdict) => {
                    refused = true;
                    self.judge(peer, verdict);
                }
                // A stale piece of a benched server: queued again, nothing said about it.
                None => refused = true,
            }
        }
        self.take_in(verified)?;
        if !refused && passed.is_empty() {
            // Every piece delivered: the answer's bytes are theirs.
            self.work.sizes.learn_accounts(size, account_share);
        }
        let cut_short = (size.saturating_mul(2) < self.config.chunk_max_bytes).then_some(peer);
        let units = units.map(|mut unit| {
            unit.attempts.tried.extend(cut_short);
            unit
        });
        queue_again(&mut self.work.units, units);
        if delivered {
            self.judge(peer, Verdict::Delivered);
        } else if !refused && passed.is_empty() {
            self.judge(peer, Verdict::Empty);
        }
        self.reporter.stats.chunks_passed += passed.len() as u64;
        requeue(&mut self.work.units, passed, peer);
        Ok(())
    }

    /// A unit in with `bytes` (`split`: it was too large in turn): if it was the last of a
    /// peer's "too large" claim, the claim is judged. Units that together hold less than half
    /// the `max_bytes` the claimant was asked with were no chunk too large for an honest
    /// server with time to read it: the claimant is a poor source of chunks, and after a few
    /// such claims gets none ([`crate::peer_set::PeerSet::implausible_split`]).
    fn settle_claim(&mut self, owner: Owner, prefix: Nibbles, split: bool, bytes: u64) {
        if split {
            return self.work.drop_claim(owner, prefix);
        }
        let Some(claim) = self.work.claim_delivered(owner, prefix, bytes) else { return };
        if claim.bytes.saturating_mul(2) < claim.max_bytes && self.peers.holds(claim.by) {
            self.reporter.stats.implausible_splits += 1;
            self.peers.implausible_split(claim.by.0);
        }
    }

    /// Applies the verdict on one chunk (one piece of an account or storage batch, staged) for
    /// `unit` and returns what it says about its server: [`Verdict::Delivered`] for leaves
    /// imported or a split, else the refusal (the unit is queued again, tried by `peer`). A
    /// chunk that equals its skeleton hash is staged in `verified`, written and taken in with
    /// the answer's other verified pieces ([`Self::take_in`]); one that differs is written at
    /// once (after those staged before it) and healed, or judged as junk; of a peer that reads
    /// at the pivot's root ([`crate::peer::SyncPeer::exact_root`]) it is invalid. With
    /// `verified_only` (its server is benched for stale chunks), a chunk that differs from its
    /// skeleton hash is not imported but queued again, tried by `peer`: `None`.
    fn on_chunk(
        &mut self,
        peer: usize,
        asked_at: ChainHead,
        unit: Unit,
        verdict: Checked,
        verified_only: bool,
        verified: &mut Verified,
    ) -> Result<Option<Verdict>, SyncError> {
        let (leaves, claimed, staged) = match verdict {
            Checked::Import { leaves, head_number, staged } => (leaves, head_number, staged?),
            Checked::Split { head_number } if unit.leaf || unit.prefix.len() == 64 => {
                return Ok(self.leaf_too_large(peer, unit, (head_number, asked_at)));
            }
            Checked::Split { head_number } => {
                // The unit's node is fetched and its children become the units; the
                // expansion holds the trie open in the unit's place.
                self.reporter.stats.chunks_split += 1;
                self.reporter.stats.chunks_total =
                    self.reporter.stats.chunks_total.saturating_sub(1);
                let announced = self.peers.slot(peer).peer.head();
                let provable = judge_mismatch(head_number, asked_at, announced, &self.pivot);
                let by = self.peers.sender(peer);
                self.work.replace(&unit, Purpose::Split { by, provable: provable.is_some() });
                return Ok(Some(Verdict::Delivered));
            }
            Checked::Refused(verdict) => {
                requeue(&mut self.work.units, [unit], peer);
                return Ok(Some(verdict));
            }
            // Its server was banned for an earlier piece (and so not asked here): queued again,
            // tried by it.
            Checked::AfterInvalid => {
                requeue(&mut self.work.units, [unit], peer);
                return Ok(None);
            }
        };
        // A chunk that differs from its skeleton hash, staged to be written alone.
        let mut differing = ChunkSet::default();
        match *staged {
            Staged::Accounts(staged) => {
                if staged.outcome().root == unit.hash {
                    let (chunk, outcome) = ChunkSet::of(staged);
                    let sender = self.peers.sender(peer);
                    verified.push(chunk, sender, unit, leaves, outcome.storage_roots);
                    return Ok(Some(Verdict::Delivered));
                }
                differing.add(staged);
            }
            Staged::Slots(staged) => {
                if *staged.outcome() == unit.hash {
                    let sender = self.peers.sender(peer);
                    verified.push(ChunkSet::of(staged).0, sender, unit, leaves, Vec::new());
                    return Ok(Some(Verdict::Delivered));
                }
                differing.add(staged);
            }
        }
        if verified_only {
            return Ok(self.pass_stale(peer, unit, claimed, asked_at));
        }
        if self.peers.slot(peer).peer.exact_root() {
            // Read at the pivot's root itself (snap/1): not stale but a lie, or a chunk cut
            // short by a peer starving it. Nothing of it is written or healed.
            requeue(&mut self.work.units, [unit], peer);
            return Ok(Some(Verdict::Invalid("a chunk read at the pivot's root differs from it")));
        }
        // The verified pieces staged so far are held (or written) first; theirs and this one's
        // prefixes are disjoint, so which of the writes lands first does not matter.
        self.take_in(std::mem::take(verified))?;
        self.reporter.stats.table_files += self.db.commit_chunks(differing)?;
        self.count_import(&unit, leaves.counts());
        self.work.drop_claim(unit.owner, unit.prefix);
        self.mark_heal(peer, &unit, claimed, asked_at)?;
        Ok(Some(Verdict::Delivered))
    }

    /// Peer `peer`, asked while it announced `asked_at`, called `unit`, a single leaf at the pivot,
    /// "too large", read at head `claimed` (`claim` holds the two). One leaf always fits (a storage
    /// beyond the inline cap is sent as a mark), so read at the pivot's state, or at a head the
    /// server never announced, the claim is a lie: junk. Read at another head it proves nothing:
    /// the prefix may have gained leaves since the pivot, and an honest server whose time budget
    /// ran out between two of them says "too large". Then the unit goes to another peer and the
    /// claim counts as an implausible split: after a few the server gets no more chunks
    /// ([`crate::peer_set::PeerSet::implausible_split`]), with no penalty (`None`).
    fn leaf_too_large(
        &mut self,
        peer: usize,
        unit: Unit,
        claim: (u64, ChainHead),
    ) -> Option<Verdict> {
        let (claimed, asked_at) = claim;
        requeue(&mut self.work.units, [unit], peer);
        if self.head_claim_lie(peer, claimed, asked_at).is_some() {
            return Some(Verdict::Junk("\"too large\" for a single leaf"));
        }
        self.reporter.stats.implausible_splits += 1;
        self.peers.implausible_split(peer);
        None
    }

    /// Counts an imported chunk of `accounts` accounts and `slots` storage slots in the stats.
    pub(super) fn count_import(&mut self, unit: &Unit, (accounts, slots): (u64, u64)) {
        let stats = &mut self.reporter.stats;
        stats.accounts += accounts;
        stats.slots += slots;
        stats.chunks_done += 1;
        self.reporter.mark(if unit.owner.is_none() { WorkKind::Chunks } else { WorkKind::Storage });
    }

    /// A piece of a server benched for stale chunks differed from its skeleton hash: it is not
    /// imported (nor healed) but queued again, tried by `peer`; a head claim that is a lie is
    /// junk as ever ([`Self::head_claim_lie`]), else nothing is said about its server.
    fn pass_stale(
        &mut self,
        peer: usize,
        unit: Unit,
        claimed: u64,
        asked_at: ChainHead,
    ) -> Option<Verdict> {
        self.reporter.stats.chunks_passed += 1;
        requeue(&mut self.work.units, [unit], peer);
        self.head_claim_lie(peer, claimed, asked_at).map(Verdict::Junk)
    }

    /// A chunk differed from its skeleton hash: its prefix is healed (the heal root replaces the
    /// unit), and its server judged by its head claim ([`Self::head_claim_lie`]).
    fn mark_heal(
        &mut self,
        peer: usize,
        unit: &Unit,
        claimed: u64,
        asked_at: ChainHead,
    ) -> Result<(), SyncError> {
        self.reporter.stats.chunks_healed += 1;
        self.add_heal_root_held(unit.owner, unit.prefix, unit.hash, Hold::Replaces(unit))?;
        match self.head_claim_lie(peer, claimed, asked_at) {
            Some(why) => self.judge(peer, Verdict::Junk(why)),
            None => {
                let announced = self.peers.slot(peer).peer.head();
                self.peers.stale_chunk(peer, announced);
            }
        }
        Ok(())
    }

    /// Whether a chunk of `peer` that differs from its skeleton hash (or calls a single leaf
    /// too large) and claims head `claimed`, asked while `peer` announced `asked_at`, lies about
    /// its head ([`judge_mismatch`]): why, logged.
    fn head_claim_lie(
        &self,
        peer: usize,
        claimed: u64,
        asked_at: ChainHead,
    ) -> Option<&'static str> {
        let server = &self.peers.slot(peer).peer;
        let announced = server.head();
        let why = judge_mismatch(claimed, asked_at, announced, &self.pivot)?;
        debug!(peer = %server.id(), claimed, asked_at = asked_at.number,
            announced = announced.number,
            pivot = self.pivot.number, why, "a chunk's head claim is a lie");
        Some(why)
    }

    /// A `Nodes` answer to `tasks`: every node must hash to its request (else the peer is
    /// banned and the rest asked elsewhere); empty entries are asked elsewhere.
    fn on_nodes(
        &mut self,
        peer: usize,
        tasks: Vec<NodeTask>,
        nodes: &Nodes,
    ) -> Result<(), SyncError> {
        let mut delivered = 0usize;
        let mut wrong = false;
        let mut retry = Vec::new();
        for (i, task) in tasks.into_iter().enumerate() {
            match nodes.nodes.get(i) {
                Some(rlp) if !wrong && !rlp.is_empty() => {
                    if keccak256(rlp) != task.hash {
                        wrong = true;
                        retry.push(task);
                        continue;
                    }
                    delivered += 1;
                    self.on_node(&task, rlp.to_vec())?;
                }
                _ => retry.push(task),
            }
        }
        self.judge(peer, delivery(wrong, delivered, "node with the wrong hash"));
        requeue(&mut self.work.nodes, retry, peer);
        Ok(())
    }

    fn on_node(&mut self, task: &NodeTask, rlp: Vec<u8>) -> Result<(), SyncError> {
        let node =
            DecodedNode::decode(&rlp).map_err(|_| SyncError::BadPivotNode { hash: task.hash })?;
        match task.purpose {
            Purpose::Expand => self.expand(task, &node, rlp, None),
            Purpose::Split { by, provable } => {
                let by = self.peers.holds(by).then_some((by, provable));
                self.expand(task, &node, rlp, by)
            }
            Purpose::Heal { parent } => self.heal_node(task, &node, rlp, parent),
        }
    }

    /// A skeleton node: branch and extension children become chunks (or, above the chunk depth,
    /// further skeleton nodes); a leaf is a chunk by itself. The node of a unit that peer
    /// `split_by` called "too large": a leaf there makes that a lie (one leaf always fits) where
    /// the claim was `provable` (read at the pivot's state: [`Purpose::Split`]; read at another
    /// head it counts as an implausible split once the leaf is in), and the units it becomes go
    /// to the other peers first, so that a peer saying "too large" for every chunk of more than
    /// one leaf splits each unit it is asked once, not again and again down to single leaves.
    fn expand(
        &mut self,
        task: &NodeTask,
        node: &DecodedNode,
        rlp: Vec<u8>,
        split_by: Option<(Sender, bool)>,
    ) -> Result<(), SyncError> {
        self.reporter.stats.skeleton_nodes += 1;
        let kind = if task.owner.is_none() { WorkKind::Skeleton } else { WorkKind::Storage };
        self.reporter.mark(kind);
        let mark = self.work.units_queued();
        if let DecodedNode::Leaf { .. } = node {
            if let Some(((peer, _), true)) = split_by {
                self.judge(peer, Verdict::Junk("\"too large\" for a single leaf"));
            }
            self.add_unit_of(task.owner, task.path, task.hash, true)?;
        } else {
            let limit = if task.owner.is_none() { self.depth } else { 0 };
            let children = children(&task.path, node)?;
            self.work.keep_skeleton(task.owner, task.path, rlp);
            for child in children {
                if child.by_hash && child.path.len() < limit {
                    self.add_expand(task.owner, child.path, child.hash);
                } else {
                    self.add_unit(task.owner, child.path, child.hash)?;
                }
            }
        }
        if let Some((by, _)) = split_by {
            self.work.split_claim(mark, by, self.config.chunk_max_bytes);
        }
        self.close(task.owner)
    }

    /// A heal node: the heal state machine says what to fetch and what to write.
    fn heal_node(
        &mut self,
        task: &NodeTask,
        node: &DecodedNode,
        rlp: Vec<u8>,
        parent: Option<alloy_trie::Nibbles>,
    ) -> Result<(), SyncError> {
        self.reporter.mark(WorkKind::Heal);
        let owner = task.owner;
        // One reader for the node's children: their paths ascend, so rebuilding a leaf from
        // the flat tables costs a seek each.
        let step = {
            let mut local = self.db.node_reader();
            let local_hash = |path: &_| Ok(local.node(owner.as_ref(), path)?.map(keccak256));
            self.heal.on_node(owner, task.path, parent, node, rlp, local_hash)?
        };
        for (path, hash) in step.fetch {
            self.work.add_heal_child(owner, path, hash, task.path);
        }
        if step.commit.is_empty() {
            return Ok(());
        }
        self.reporter.stats.healed_nodes += step.commit.len() as u64;
        self.db.write_trie_nodes(owner.as_ref(), &step.commit)?;
        for done in step.finished {
            let (path, hash) = (done.path, done.hash);
            // A healed subtrie is complete: its flat entries are re-derived from it. In tables
            // that held a complete state only where the heal wrote: the subtries it found
            // unchanged agree with their flat entries.
            let mut kept = if self.trust.tables_complete { done.kept } else { Vec::new() };
            kept.retain(|path| !self.carry.is_suspect(owner, path));
            self.resume_complete_except(owner, path, hash, &kept)?;
            // Only now: a crash before this point finds the heal root again and redoes the
            // flat rewrite (its top node is fetched once more, everything below is complete).
            self.heal_root_finished(owner, &path, hash)?;
            self.close(owner)?;
        }
        Ok(())
    }

    /// A `Codes` answer to `tasks`, each entry with its hash: every code must hash to its
    /// request. Empty entries are asked elsewhere; the hashes after the last entry were left out
    /// at the server's byte budget (honest: batches ask for more than fit) and are queued again
    /// untried.
    fn on_codes(
        &mut self,
        peer: usize,
        tasks: Vec<CodeTask>,
        codes: &Codes,
        hashes: Vec<B256>,
    ) -> Result<(), SyncError> {
        let mut got = Vec::new();
        let mut missing = Vec::new();
        let mut wrong = false;
        let answered = codes.codes.len();
        // Past the first wrong code nothing is used.
        let mut tasks = tasks.into_iter();
        // Entries first: `zip` takes from its first iterator before its second, so no task is
        // taken past the last entry.
        for ((code, hash), task) in codes.codes.iter().zip(hashes).zip(tasks.by_ref()) {
            if !wrong && !code.is_empty() {
                if hash == task.hash {
                    got.push((task.hash, code.to_vec()));
                    continue;
                }
                wrong = true;
            }
            missing.push(task);
        }
        self.record(peer, delivery(wrong, got.len(), "code with the wrong hash"));
        self.reporter.stats.codes += got.len() as u64;
        if !got.is_empty() {
            self.reporter.mark(WorkKind::Codes);
        }
        self.codes.delivered(&got);
        self.hold_codes(got)?;
        self.codes.requeue(missing, peer);
        if answered > 0 {
            self.codes.queue_again(tasks);
        } else {
            self.codes.requeue(tasks, peer);
        }
        Ok(())
    }
}

/// What a batch answer showed: an item with the wrong hash is invalid (`why`), nothing
/// delivered is empty.
fn delivery(wrong: bool, delivered: usize, why: &'static str) -> Verdict {
    if wrong {
        Verdict::Invalid(why)
    } else if delivered == 0 {
        Verdict::Empty
    } else {
        Verdict::Delivered
    }
}
