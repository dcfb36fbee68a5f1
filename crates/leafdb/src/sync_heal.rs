//! Healing writes of a state sync: forgetting stale nodes above a heal, writing verified nodes
//! with the stale nodes below them pruned, and re-deriving the flat tables from a healed subtrie
//! (flat reconciliation). Bulk chunk import is in [`crate::sync_import`].

use alloy_primitives::{B256, U256, keccak256};
use alloy_rlp::Decodable;
use alloy_trie::{EMPTY_ROOT_HASH, Nibbles, TrieAccount};

use crate::{
    db::LeafDb,
    error::{LeafDbError, Result},
    keys::{
        account_range, child_range, key_of_path, node_key, node_range, node_table, prefix_end,
        storage_key, storage_range,
    },
    kv::{Durability, KvStore, Table, WriteBatch},
    nodes::TrieNodes,
    schema::{decode_account, encode_slot_value},
    trie::{DecodedNode, LeafWalk, NodeSource, checked_join},
};

/// Keys deleted one by one at most where a range of them goes (flat slots a storage's
/// reconciliation finds stale, stored nodes a heal's nodes no longer reach); more are cleared
/// as a range, whose tombstone costs every later read of the memtable.
const MAX_POINT_DELETES: usize = 256;

/// The 32-byte key a leaf of the trie of `owner` at `path` stands for.
fn leaf_key(owner: Option<&B256>, path: &Nibbles) -> Result<B256> {
    key_of_path(path)
        .ok_or(LeafDbError::BadKey { table: node_table(owner).name(), len: path.len().div_ceil(2) })
}

impl<S: KvStore> LeafDb<S> {
    /// Deletes the stored node at `path` and at every path above it in the trie of `owner`, in
    /// one write. A heal calls it when it starts at `path`: the nodes there and above are stale,
    /// and the heal will replace nodes below them one by one, so a stale ancestor left in place
    /// would claim a subtree it no longer has (were its hash ever wanted again, as after a
    /// pivot move, it would be taken as complete).
    /// Only stored nodes get a delete: a tombstone for a key that is not there would cost every
    /// later iterator passing it (a heal-only sync forgets the absent root of every storage trie).
    pub fn forget_path(&self, owner: Option<&B256>, path: &Nibbles) -> Result<()> {
        let mut batch = WriteBatch::default();
        let table = node_table(owner);
        for len in 0..=path.len() {
            let key = node_key(owner, &path.slice(..len));
            if self.store().get(table, &key)?.is_some() {
                batch.delete(table, key);
            }
        }
        if !batch.is_empty() {
            self.store().write(batch, Durability::Logged)?;
        }
        Ok(())
    }

    /// Writes verified nodes (each `(path, rlp)`, children already stored) and deletes every
    /// stored node below each of them that its new encoding no longer reaches, in one write.
    pub fn write_trie_nodes(
        &self,
        owner: Option<&B256>,
        nodes: &[(Nibbles, Vec<u8>)],
    ) -> Result<()> {
        let mut batch = WriteBatch::default();
        let table = node_table(owner);
        // The key ranges below the nodes that their encodings no longer reach.
        let mut unreachable = Vec::new();
        for (path, rlp) in nodes {
            match DecodedNode::decode(rlp)? {
                DecodedNode::Leaf { .. } => unreachable.push(child_range(owner, path, 0, 16)),
                DecodedNode::Branch { children, .. } => {
                    for (i, c) in (0u8..).zip(children.iter()) {
                        if c.as_ref().is_none_or(|r| r.as_hash().is_none()) {
                            unreachable.push(child_range(owner, path, i, i + 1));
                        }
                    }
                }
                DecodedNode::Extension { key, child } => {
                    checked_join(path, &key)?;
                    // Below each level of the extension only the nibble it continues with.
                    let mut at = *path;
                    for i in 0..key.len() {
                        let k = key.get_unchecked(i);
                        unreachable.push(child_range(owner, &at, 0, k));
                        unreachable.push(child_range(owner, &at, k + 1, 16));
                        at.push(k);
                        if i + 1 < key.len() {
                            batch.delete(table, node_key(owner, &at));
                        }
                    }
                    if child.as_hash().is_none() {
                        unreachable.push(node_range(owner, &at));
                    }
                }
            }
            batch.put(table, node_key(owner, path), rlp.clone());
        }
        // A range tombstone costs every later read of the memtable (RocksDB re-fragments all of
        // them after each write that adds one, which made heal quadratic), so a range that
        // holds no key gets none, and one that holds a few (a removed leaf's parent, a small
        // subtrie) gets point deletes. No node of the batch lies in another's ranges (they are
        // the unreachable parts of one verified trie), so reading the stored state is exact.
        // The ranges are disjoint: in key order one cursor reads them all (a cursor each cost
        // most of a heal's writes).
        unreachable.sort_unstable();
        if let Some((first, _)) = unreachable.first() {
            let mut cursor = self.store().cursor(table, first)?;
            for (lo, hi) in unreachable {
                cursor.skip_to(&lo)?;
                let mut keys = Vec::new();
                while let Some((key, _)) = cursor.current().filter(|(k, _)| *k < hi.as_slice()) {
                    if keys.len() == MAX_POINT_DELETES {
                        break;
                    }
                    keys.push(key.to_vec());
                    cursor.next()?;
                }
                if keys.len() == MAX_POINT_DELETES {
                    batch.delete_range(table, lo, hi);
                } else {
                    for key in keys {
                        batch.delete(table, key);
                    }
                }
            }
        }
        self.store().write(batch, Durability::Logged)
    }

    /// The hash of the stored top node of `owner`'s storage trie (the empty root if none).
    pub fn stored_storage_root(&self, owner: &B256) -> Result<B256> {
        Ok(self.node(Some(owner), &Nibbles::new())?.map_or(EMPTY_ROOT_HASH, keccak256))
    }

    /// Rewrites the flat accounts under `prefix` from the stored subtrie there (hash `hash`):
    /// accounts the trie no longer has are deleted with their storage, and only entries that
    /// differ are written (a heal of a state that was mostly right, as a repair's, changes few).
    /// Calls `each` with every account of the subtrie, in key order, with whether its flat entry
    /// was written (it was missing or differed), once the entry is.
    ///
    /// It goes [`RECONCILE_WINDOW`] leaves at a time, each window one write: a whole mainnet
    /// trie (a repair from the root) is never held in memory. A failure may leave the windows
    /// before it written, which a sync's heal root (still recorded) or final check redoes.
    ///
    /// `kept`: full paths of subtries below `prefix` whose flat entries are known to agree with
    /// their stored nodes (a heal over a complete state found them unchanged): they are neither
    /// walked nor scanned, and their accounts are not passed to `each`.
    pub fn reconcile_accounts<E: From<LeafDbError>>(
        &self,
        prefix: &Nibbles,
        hash: B256,
        kept: &[Nibbles],
        each: impl FnMut(B256, TrieAccount, bool) -> std::result::Result<(), E>,
    ) -> std::result::Result<(), E> {
        self.reconcile_accounts_by(prefix, hash, kept, RECONCILE_WINDOW, each)
    }

    /// [`Self::reconcile_accounts`] `window` leaves at a time.
    fn reconcile_accounts_by<E: From<LeafDbError>>(
        &self,
        prefix: &Nibbles,
        hash: B256,
        kept: &[Nibbles],
        window: usize,
        mut each: impl FnMut(B256, TrieAccount, bool) -> std::result::Result<(), E>,
    ) -> std::result::Result<(), E> {
        let src = TrieNodes::account(self.store()).below(*prefix);
        let (skip, holes) = kept_below(prefix, kept, account_range)?;
        let mut windows = Windows::new(LeafWalk::new(&src, hash, &skip), None, prefix, window);
        let (mut lo, hi) = account_range(prefix);
        while let Some((leaves, end)) = windows.next_window(&hi)? {
            let mut derived = Vec::with_capacity(leaves.len());
            for (key, value) in leaves {
                derived.push((key, decode_account(&value)?, value, true));
            }
            self.write_account_window(&mut derived, (lo, end.clone()), &holes)?;
            for (key, account, _, changed) in derived {
                each(key, account, changed)?;
            }
            lo = end;
        }
        Ok(())
    }

    /// Writes the flat accounts of one window `derived` (key, account, encoding, changed) over
    /// the flat accounts in `range` outside the `holes`, marking those already right unchanged.
    fn write_account_window(
        &self,
        derived: &mut [(B256, TrieAccount, Vec<u8>, bool)],
        range: (Vec<u8>, Vec<u8>),
        holes: &[(Vec<u8>, Vec<u8>)],
    ) -> Result<()> {
        let mut batch = WriteBatch::default();
        let mut next = 0;
        // A deleted account's storage gets a range delete only where it has any: each range
        // tombstone costs every later read of the memtable (an account is deleted in a sync
        // over a state off the chain, for each one the chain never had). Accounts ascend, so
        // one cursor a table finds them.
        let mut storage = self.store().cursor(Table::Storage, &range.0)?;
        let mut storage_nodes = self.store().cursor(Table::StorageNodes, &range.0)?;
        scan_outside(self.store(), Table::Accounts, range, holes, |k, v| {
            let key = B256::try_from(k)
                .map_err(|_| LeafDbError::BadKey { table: Table::Accounts.name(), len: k.len() })?;
            // The walk goes in path order: keys ascend.
            while derived.get(next).is_some_and(|d| d.0 < key) {
                batch.put(Table::Accounts, derived[next].0.as_slice(), derived[next].2.clone());
                next += 1;
            }
            match derived.get_mut(next) {
                Some(d) if d.0 == key => {
                    if d.2.as_slice() == v {
                        d.3 = false;
                    } else {
                        batch.put(Table::Accounts, key.as_slice(), d.2.clone());
                    }
                    next += 1;
                }
                _ => {
                    batch.delete(Table::Accounts, key.as_slice());
                    for (table, cursor) in
                        [(Table::Storage, &mut storage), (Table::StorageNodes, &mut storage_nodes)]
                    {
                        cursor.skip_to(key.as_slice())?;
                        if cursor.current().is_some_and(|(k, _)| k.starts_with(key.as_slice())) {
                            batch.delete_range(table, key.to_vec(), prefix_end(key.as_slice()));
                        }
                    }
                }
            }
            Ok(())
        })?;
        for (key, _, value, _) in &derived[next..] {
            batch.put(Table::Accounts, key.as_slice(), value.clone());
        }
        if !batch.is_empty() {
            self.store().write(batch, Durability::Logged)?;
        }
        Ok(())
    }

    /// Rewrites the flat storage of `owner` under `prefix` from the stored subtrie there.
    /// Returns the number of slots walked in the trie (all of them outside `kept`).
    /// Only slots that differ are written, and slots the trie no longer has deleted one by one
    /// (more than `MAX_POINT_DELETES`, 256, of them in one window with nothing `kept`: the
    /// window's range is cleared and its every slot written). Windows and `kept` as in
    /// [`Self::reconcile_accounts`]: a contract of tens of millions of slots is not held whole.
    pub fn reconcile_storage(
        &self,
        owner: &B256,
        prefix: &Nibbles,
        hash: B256,
        kept: &[Nibbles],
    ) -> Result<u64> {
        self.reconcile_storage_by(owner, prefix, hash, kept, RECONCILE_WINDOW)
    }

    fn reconcile_storage_by(
        &self,
        owner: &B256,
        prefix: &Nibbles,
        hash: B256,
        kept: &[Nibbles],
        window: usize,
    ) -> Result<u64> {
        let src = TrieNodes::storage(self.store(), *owner).below(*prefix);
        let (skip, holes) = kept_below(prefix, kept, |p| storage_range(owner, p))?;
        let walk = LeafWalk::new(&src, hash, &skip);
        let mut windows = Windows::new(walk, Some(owner), prefix, window);
        let (mut lo, hi) = storage_range(owner, prefix);
        let mut walked = 0;
        while let Some((leaves, end)) = windows.next_window(&hi)? {
            let mut derived = Vec::with_capacity(leaves.len());
            for (slot, value) in leaves {
                let v = U256::decode(&mut value.as_slice())
                    .map_err(|e| LeafDbError::corrupt("storage_nodes", "slot value", e))?;
                derived.push((storage_key(owner, &slot), encode_slot_value(&v)));
            }
            walked += derived.len() as u64;
            self.write_storage_window(&derived, (lo, end.clone()), &holes)?;
            lo = end;
        }
        Ok(walked)
    }

    /// Writes the flat slots of one window `derived` (sorted) over those in `range` outside the
    /// `holes`.
    fn write_storage_window(
        &self,
        derived: &[(impl AsRef<[u8]>, Vec<u8>)],
        range: (Vec<u8>, Vec<u8>),
        holes: &[(Vec<u8>, Vec<u8>)],
    ) -> Result<()> {
        let (mut writes, mut stale) = (Vec::new(), Vec::new());
        let mut next = 0;
        scan_outside(self.store(), Table::Storage, range.clone(), holes, |k, v| {
            while derived.get(next).is_some_and(|(d, _)| d.as_ref() < k) {
                writes.push(next);
                next += 1;
            }
            match derived.get(next) {
                Some((d, value)) if d.as_ref() == k => {
                    if value.as_slice() != v {
                        writes.push(next);
                    }
                    next += 1;
                }
                _ => stale.push(k.to_vec()),
            }
            Ok(())
        })?;
        writes.extend(next..derived.len());
        let mut batch = WriteBatch::default();
        if stale.len() > MAX_POINT_DELETES && holes.is_empty() {
            // The scan found keys in the range, so its one range delete is not wasted (each
            // costs every later iterator over the table: RocksDB fragments a memtable's range
            // deletes anew for each, and reads of leaves from the flat tables open many).
            batch.delete_range(Table::Storage, range.0, range.1);
            writes = (0..derived.len()).collect();
        } else {
            for key in stale {
                batch.delete(Table::Storage, key);
            }
        }
        for i in writes {
            let (key, value) = &derived[i];
            batch.put(Table::Storage, key.as_ref().to_vec(), value.clone());
        }
        if !batch.is_empty() {
            self.store().write(batch, Durability::Logged)?;
        }
        Ok(())
    }
}

/// Leaves a reconciliation re-derives at once (see [`LeafDb::reconcile_accounts`]): ~10 MB of
/// accounts, one write each window.
pub const RECONCILE_WINDOW: usize = 65_536;

/// Leaves (32-byte key, value) and the end of their range of flat keys.
type Window = (Vec<(B256, Vec<u8>)>, Vec<u8>);

/// The leaves of a walk below `prefix` of the trie of `owner`, as 32-byte keys, `window` at a
/// time, each window with the end of its range of flat keys (the next window's first leaf's
/// flat key, or the whole range's end).
struct Windows<'a, S: ?Sized> {
    walk: LeafWalk<'a, S>,
    owner: Option<&'a B256>,
    prefix: &'a Nibbles,
    window: usize,
    /// The first leaf of the next window, read ahead for its key; `None` at the start and end.
    ahead: Option<(B256, Vec<u8>)>,
    started: bool,
}

impl<'a, S: NodeSource + ?Sized> Windows<'a, S> {
    fn new(
        walk: LeafWalk<'a, S>,
        owner: Option<&'a B256>,
        prefix: &'a Nibbles,
        window: usize,
    ) -> Self {
        Self { walk, owner, prefix, window: window.max(1), ahead: None, started: false }
    }

    /// The next leaf of the walk, keyed.
    fn leaf(&mut self) -> Result<Option<(B256, Vec<u8>)>> {
        match self.walk.next().transpose()? {
            Some((suffix, value)) => {
                Ok(Some((leaf_key(self.owner, &checked_join(self.prefix, &suffix)?)?, value)))
            }
            None => Ok(None),
        }
    }

    /// The next window and the end of its range (`hi` for the last); `None` once all are out.
    /// A walk that fails fails the window it would have ended, before anything of it is written.
    fn next_window(&mut self, hi: &[u8]) -> Result<Option<Window>> {
        if !self.started {
            self.started = true;
            self.ahead = self.leaf()?;
        } else if self.ahead.is_none() {
            return Ok(None);
        }
        let mut leaves: Vec<_> = self.ahead.take().into_iter().collect();
        while leaves.len() < self.window {
            match self.leaf()? {
                Some(leaf) => leaves.push(leaf),
                None => return Ok(Some((leaves, hi.to_vec()))),
            }
        }
        self.ahead = self.leaf()?;
        let end = match (&self.ahead, self.owner) {
            (None, _) => hi.to_vec(),
            (Some((key, _)), None) => key.to_vec(),
            // A slot's flat key is its owner's and its own.
            (Some((slot, _)), Some(owner)) => storage_key(owner, slot).to_vec(),
        };
        Ok(Some((leaves, end)))
    }
}

/// A key range `[lo, hi)` of a table.
type KeyRange = (Vec<u8>, Vec<u8>);

/// The `kept` paths below `prefix` as a walk from `prefix` skips them (relative, sorted), and
/// as the flat key ranges a scan passes over (`range` of each full path, ascending).
fn kept_below(
    prefix: &Nibbles,
    kept: &[Nibbles],
    range: impl Fn(&Nibbles) -> KeyRange,
) -> Result<(Vec<Nibbles>, Vec<KeyRange>)> {
    let mut skip = Vec::with_capacity(kept.len());
    for path in kept {
        if path.len() <= prefix.len() || !path.starts_with(prefix) {
            return Err(LeafDbError::Invariant("a kept subtrie not below the reconciled one"));
        }
        skip.push(path.slice(prefix.len()..));
    }
    skip.sort_unstable();
    let mut holes: Vec<_> = kept.iter().map(range).collect();
    holes.sort_unstable();
    Ok((skip, holes))
}

/// Calls `f` with each pair of `table` in `[lo, hi)` outside the `holes` (ascending, disjoint
/// key ranges), in key order: one cursor, one seek past each hole.
fn scan_outside<S: KvStore>(
    store: &S,
    table: Table,
    (lo, hi): KeyRange,
    holes: &[KeyRange],
    mut f: impl FnMut(&[u8], &[u8]) -> Result<()>,
) -> Result<()> {
    let mut cursor = store.cursor(table, &lo)?;
    let mut holes = holes.iter().peekable();
    loop {
        let past_hole = match cursor.current() {
            Some((k, v)) if k < hi.as_slice() => {
                while holes.next_if(|(_, end)| end.as_slice() <= k).is_some() {}
                match holes.peek() {
                    Some((start, end)) if start.as_slice() <= k => Some(end),
                    _ => {
                        f(k, v)?;
                        None
                    }
                }
            }
            _ => break,
        };
        match past_hole {
            Some(end) => cursor.skip_to(end)?,
            None => cursor.next()?,
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "sync_heal_tests.rs"]
mod tests;
