//! The work of a sync, as owned queues: [`Work`] holds everything bound to one pivot (chunk
//! units, trie-node tasks, the skeleton above the chunks, which storage tries are started, and
//! how many items keep each storage trie open) and is replaced whole on a re-pivot; the codes,
//! which do not depend on the pivot and survive it, are [`crate::codes::CodeQueue`]'s.

use std::collections::{HashMap, HashSet, VecDeque};

use alloy_primitives::B256;
use alloy_trie::Nibbles;

use crate::{
    config::{BYTES_PER_ACCOUNT_ESTIMATE, BYTES_PER_SLOT_ESTIMATE},
    peer_set::Sender,
    tasks::{Attempts, NodeTask, Owner, Purpose, Unit},
};

/// Trie nodes of one storage trie to write once nothing below them is open.
pub(crate) type SkeletonNodes = Vec<(Nibbles, Vec<u8>)>;

/// The items of one pivot; see the module docs.
///
/// Every unit, skeleton node and heal root of a storage trie holds it *open*; the skeleton
/// above its chunks is written only when the last one resolves ([`Self::close`]), so a stored
/// node always has its complete subtree. An item that is replaced by another (a unit split into
/// its expansion, or handed to heal) passes its hold on through [`Self::replace`].
#[derive(Debug, Default)]
pub(crate) struct Work {
    /// Chunks to fetch.
    pub(crate) units: VecDeque<Unit>,
    /// Trie nodes to fetch (skeleton and heal).
    pub(crate) nodes: VecDeque<NodeTask>,
    /// Storage tries whose fetch or heal was started (each once per pivot).
    storage_started: HashSet<B256>,
    /// Skeleton nodes (above the chunks) per trie, written once the trie below them is complete.
    skeleton: HashMap<Owner, SkeletonNodes>,
    /// Open units, skeleton nodes and heal roots per storage trie.
    open: HashMap<B256, usize>,
    /// Estimated sizes of the account trie and the large storage tries, to batch their units.
    pub(crate) sizes: UnitSizes,
    /// "Too large" claims whose units are not all in yet, by id, and the claim each unit of
    /// theirs counts toward.
    claims: HashMap<u64, SplitClaim>,
    claimed: HashMap<(Owner, Nibbles), u64>,
    next_claim: u64,
}

/// A peer's "too large" for a unit, judged once the units it split into are all in: their
/// bytes against the `max_bytes` it was asked with.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SplitClaim {
    /// The claimant.
    pub(crate) by: Sender,
    pub(crate) max_bytes: u64,
    /// Its units not yet in, and the bytes of those that are.
    pending: usize,
    pub(crate) bytes: u64,
}

/// Estimated encoded size of the account trie, from the peers' account estimate that also chose
/// the skeleton depth ([`crate::chunk_depth`]), and of each large storage trie, from the slot
/// count its account's chunk announced with the "large storage" mark (one entry per large
/// storage of the pivot).
#[derive(Debug, Default)]
pub(crate) struct UnitSizes {
    /// The account trie's estimated size; `None` while no peer gave an estimate.
    accounts: Option<u64>,
    storages: HashMap<B256, u64>,
}

impl UnitSizes {
    /// Records that the state holds about `accounts` accounts (0: unknown).
    pub(crate) fn record_accounts(&mut self, accounts: u64) {
        self.accounts = (accounts > 0).then(|| accounts.saturating_mul(BYTES_PER_ACCOUNT_ESTIMATE));
    }

    /// Learns the account trie's size from an answer: `bytes` of account pieces that cover
    /// `share` of the key space (a unit at depth d covers 16^-d). An estimate more than twice
    /// what the verified pieces show is replaced by it: the estimate came from the peers' word,
    /// and one far too high sends every unit alone. One too low stays (a batch past `max_bytes`
    /// is cut by its server and its tail asked again).
    pub(crate) fn learn_accounts(&mut self, bytes: u64, share: f64) {
        if share <= 0.0 {
            return;
        }
        let shown = (bytes as f64 / share).min(u64::MAX as f64) as u64;
        match self.accounts {
            Some(estimate) if shown.saturating_mul(2) >= estimate => {}
            _ => self.accounts = Some(shown.max(1)),
        }
    }

    /// Records that `account`'s storage holds about `slot_count` slots (0: unknown, as the
    /// snap/1 source marks a storage it could not size: its units then go one to a request,
    /// not all together as units of no size would).
    pub(crate) fn record(&mut self, account: B256, slot_count: u64) {
        if slot_count == 0 {
            self.storages.remove(&account);
        } else {
            self.storages.insert(account, slot_count.saturating_mul(BYTES_PER_SLOT_ESTIMATE));
        }
    }

    /// Estimated encoded size of a unit: its trie's size spread evenly over the `16^depth`
    /// prefixes at its depth (hashed keys are uniform). `None` when its trie's size is unknown.
    pub(crate) fn unit_bytes(&self, unit: &Unit) -> Option<u64> {
        let total = match unit.owner {
            None => self.accounts?,
            Some(owner) => *self.storages.get(&owner)?,
        };
        Some(total.checked_shr(4 * unit.prefix.len() as u32).unwrap_or(0))
    }
}

impl Work {
    /// Whether no unit or node is queued.
    pub(crate) fn is_idle(&self) -> bool {
        self.units.is_empty() && self.nodes.is_empty()
    }

    /// Queues a chunk unit; it holds its trie open.
    pub(crate) fn add_unit(&mut self, owner: Owner, prefix: Nibbles, hash: B256, leaf: bool) {
        self.hold(owner);
        self.units.push_back(Unit {
            owner,
            prefix,
            hash,
            leaf,
            attempts: Attempts::queued_now(),
            home: None,
        });
    }

    /// Units queued so far (a mark for [`Self::split_claim`]).
    pub(crate) fn units_queued(&self) -> usize {
        self.units.len()
    }

    /// Peer `by` (asked with `max_bytes`) called a unit "too large", and the units queued since
    /// the queue held `mark` units are what it split into: they are asked of it only after the
    /// other peers this round (others have the first say), and the claim is judged once they
    /// are all in ([`Self::claim_delivered`]).
    pub(crate) fn split_claim(&mut self, mark: usize, by: Sender, max_bytes: u64) {
        let claim = self.next_claim;
        let mut pending = 0;
        for unit in self.units.iter_mut().skip(mark) {
            unit.attempts.tried.push(by.0);
            self.claimed.insert((unit.owner, unit.prefix), claim);
            pending += 1;
        }
        if pending > 0 {
            self.next_claim += 1;
            self.claims.insert(claim, SplitClaim { by, max_bytes, pending, bytes: 0 });
        }
    }

    /// Whether the unit at `owner`, `prefix` counts toward a claim not yet judged.
    pub(crate) fn is_claimed(&self, owner: Owner, prefix: Nibbles) -> bool {
        self.claimed.contains_key(&(owner, prefix))
    }

    /// A unit of a claim came in with `bytes`: the claim once its last unit has.
    pub(crate) fn claim_delivered(
        &mut self,
        owner: Owner,
        prefix: Nibbles,
        bytes: u64,
    ) -> Option<SplitClaim> {
        let id = self.claimed.remove(&(owner, prefix))?;
        let claim = self.claims.get_mut(&id)?;
        claim.pending = claim.pending.saturating_sub(1);
        claim.bytes = claim.bytes.saturating_add(bytes);
        if claim.pending > 0 {
            return None;
        }
        self.claims.remove(&id)
    }

    /// A unit of a claim says nothing against it: it was itself too large (the claim was
    /// true), or it came as a piece that differs from its hash and is healed (its true size is
    /// unknown, and the piece's own is its sender's to choose). The claim is not judged.
    pub(crate) fn drop_claim(&mut self, owner: Owner, prefix: Nibbles) {
        if let Some(id) = self.claimed.remove(&(owner, prefix)) {
            self.claims.remove(&id);
        }
    }

    /// Queues a skeleton node or a heal root; it holds its trie open.
    pub(crate) fn add_node(&mut self, owner: Owner, path: Nibbles, hash: B256, purpose: Purpose) {
        self.hold(owner);
        self.push_node(owner, path, hash, purpose);
    }

    /// Queues the node that replaces `unit` (its expansion, or its heal root): the node takes
    /// over the unit's hold on its trie.
    pub(crate) fn replace(&mut self, unit: &Unit, purpose: Purpose) {
        self.push_node(unit.owner, unit.prefix, unit.hash, purpose);
    }

    /// Queues a heal node below a pending one (its parent's heal holds the trie open), at the
    /// front: a heal goes depth first, so what waits (these tasks, and the pending nodes above
    /// them) is bounded by the trie's depth times a request's width, not by its widest level.
    /// Breadth first, a heal of a whole trie queued a task for nearly every leaf at once: ~500
    /// MiB for heal-only at 200,000 accounts, and for one large mainnet storage, which a
    /// server's stale piece can make a heal root, gigabytes.
    pub(crate) fn add_heal_child(
        &mut self,
        owner: Owner,
        path: Nibbles,
        hash: B256,
        parent: Nibbles,
    ) {
        let (attempts, purpose) = (Attempts::default(), Purpose::Heal { parent: Some(parent) });
        self.nodes.push_front(NodeTask { owner, path, hash, purpose, attempts });
    }

    fn push_node(&mut self, owner: Owner, path: Nibbles, hash: B256, purpose: Purpose) {
        let attempts = Attempts::default();
        self.nodes.push_back(NodeTask { owner, path, hash, purpose, attempts });
    }

    fn hold(&mut self, owner: Owner) {
        if let Some(o) = owner {
            *self.open.entry(o).or_default() += 1;
        }
    }

    /// One open item of `owner`'s storage trie resolved. The last one returns the trie and its
    /// skeleton nodes (maybe none), to be written now.
    pub(crate) fn close(&mut self, owner: Owner) -> Option<(B256, SkeletonNodes)> {
        let o = owner?;
        let left = self.open.get_mut(&o).map(|n| {
            *n = n.saturating_sub(1);
            *n
        });
        if left != Some(0) {
            return None;
        }
        self.open.remove(&o);
        Some((o, self.skeleton.remove(&owner).unwrap_or_default()))
    }

    /// The storage tries with items still open (see [`Self::close`]).
    pub(crate) fn open_storages(&self) -> impl Iterator<Item = B256> + '_ {
        self.open.keys().copied()
    }

    /// Keeps a fetched skeleton node until its trie is complete.
    pub(crate) fn keep_skeleton(&mut self, owner: Owner, path: Nibbles, rlp: Vec<u8>) {
        self.skeleton.entry(owner).or_default().push((path, rlp));
    }

    /// The account trie's skeleton, taken for the final write.
    pub(crate) fn take_account_skeleton(&mut self) -> SkeletonNodes {
        self.skeleton.remove(&None).unwrap_or_default()
    }

    /// Marks the storage trie of `hashed` started; `false` if it already was.
    pub(crate) fn start_storage(&mut self, hashed: B256) -> bool {
        self.storage_started.insert(hashed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OWNER: Owner = Some(B256::repeat_byte(7));

    #[test]
    fn a_storage_skeleton_is_written_when_its_last_item_resolves() {
        let mut work = Work::default();
        work.add_node(OWNER, Nibbles::new(), B256::ZERO, Purpose::Expand);
        work.keep_skeleton(OWNER, Nibbles::new(), vec![1]);
        work.add_unit(OWNER, Nibbles::from_nibbles([1]), B256::ZERO, false);
        work.add_unit(OWNER, Nibbles::from_nibbles([2]), B256::ZERO, false);
        assert_eq!(work.close(OWNER), None, "the expansion resolved, two units open");
        // The first unit is split: its expansion holds the trie in its place.
        let unit = work.units.pop_front().unwrap();
        work.replace(&unit, Purpose::Expand);
        assert_eq!(work.close(OWNER), None, "the second unit");
        let (owner, nodes) = work.close(OWNER).unwrap();
        assert_eq!((Some(owner), nodes), (OWNER, vec![(Nibbles::new(), vec![1])]));
        // The account trie holds nothing open and is written at the end.
        assert_eq!(work.close(None), None);
        // A trie without a skeleton (one unit) closes with none.
        let single = B256::repeat_byte(8);
        work.add_unit(Some(single), Nibbles::new(), B256::ZERO, false);
        assert_eq!(work.close(Some(single)), Some((single, Vec::new())));
        assert_eq!(work.close(Some(single)), None, "closed once");
    }

    /// A heal of a whole trie, four levels of 16 children under its root (65,536 leaves), each
    /// request taking as many nodes as one may carry: the tasks waiting at once stay within
    /// the depth times a request's children, where breadth first they reached every leaf.
    #[test]
    fn a_heal_goes_depth_first_and_its_queue_stays_bounded() {
        use crate::tasks::take_for;
        use leafsync_p2p::leaf::protocol::MAX_NODES_PER_REQUEST;
        const DEPTH: usize = 4;
        let mut work = Work::default();
        work.add_node(None, Nibbles::new(), B256::ZERO, Purpose::Heal { parent: None });
        let (mut peak, mut fetched) = (0, 0);
        loop {
            let batch = take_for(&mut work.nodes, 0, &[0], MAX_NODES_PER_REQUEST).unwrap();
            if batch.is_empty() {
                break;
            }
            fetched += batch.len();
            for task in batch.into_iter().filter(|t| t.path.len() < DEPTH) {
                for nibble in 0..16 {
                    let mut child = task.path;
                    child.push(nibble);
                    work.add_heal_child(None, child, B256::ZERO, task.path);
                }
            }
            peak = peak.max(work.nodes.len());
        }
        assert_eq!(fetched, (16usize.pow(DEPTH as u32 + 1) - 1) / 15, "every node once");
        assert!(peak <= DEPTH * 16 * MAX_NODES_PER_REQUEST, "{peak} tasks waited at once");
    }

    #[test]
    fn units_are_sized_from_their_trie_estimate_and_depth() {
        let mut sizes = UnitSizes::default();
        let account = B256::repeat_byte(7);
        sizes.record(account, 16 * 1000);
        let unit = |owner, nibbles: &[u8]| Unit {
            owner,
            prefix: Nibbles::from_nibbles(nibbles),
            hash: B256::ZERO,
            leaf: false,
            attempts: Attempts::default(),
            home: None,
        };
        let total = 16 * 1000 * BYTES_PER_SLOT_ESTIMATE;
        assert_eq!(sizes.unit_bytes(&unit(Some(account), &[])), Some(total));
        assert_eq!(sizes.unit_bytes(&unit(Some(account), &[3])), Some(total / 16));
        assert_eq!(sizes.unit_bytes(&unit(Some(account), &[0; 64])), Some(0));
        assert_eq!(sizes.unit_bytes(&unit(Some(B256::ZERO), &[])), None, "unknown size");
        sizes.record(account, 0);
        assert_eq!(sizes.unit_bytes(&unit(Some(account), &[3])), None, "a count of 0 is none");
        assert_eq!(sizes.unit_bytes(&unit(None, &[])), None, "no account estimate");
        sizes.record_accounts(1_000_000);
        let accounts = 1_000_000 * BYTES_PER_ACCOUNT_ESTIMATE;
        assert_eq!(sizes.unit_bytes(&unit(None, &[1, 2])), Some(accounts / 256));
        sizes.record_accounts(0);
        assert_eq!(sizes.unit_bytes(&unit(None, &[1, 2])), None, "an estimate of 0 is none");
    }
}
