//! Reading one trie's nodes by path: stored branches and extensions, and leaves rebuilt from the
//! flat tables (`TrieNodes`), many in a row through open cursors ([`NodeReader`]).

use std::sync::{Mutex, PoisonError};

use alloy_primitives::{B256, keccak256};
use alloy_trie::Nibbles;

use crate::{
    error::{LeafDbError, Result},
    keys::{account_range, node_key, node_table, storage_range},
    kv::{Cursor, KvRead, Table},
    schema,
    trie::{KnownLeaf, NodeSource, checked_join, node::encode_leaf, verified},
};

/// Reads the nodes of one trie (the account trie, or the storage trie of `owner`), or of the
/// subtrie at `base` as if it were a whole trie (node encodings are relative to their own path,
/// so a subtrie is position-independent).
///
/// Branches and extensions are stored; leaves mostly are not (schema 3): a leaf is the one flat
/// entry under its path, so a node missing from the node table is rebuilt from the flat table
/// when exactly one key lies under its path (see [`Self::leaf_from_flat`]). Every reader checks
/// what it gets against the hash its parent holds (or, serving a peer, the hash asked for), so a
/// path that is no leaf position yields nothing that passes.
pub(crate) struct TrieNodes<'a, R: ?Sized> {
    kv: &'a R,
    owner: Option<B256>,
    base: Nibbles,
    /// The flat table's cursor of the last leaf rebuilt, kept open for the next.
    flat: Mutex<Option<FlatCursor<'a>>>,
}

/// A cursor over a flat table, kept open between leaf rebuilds: a seek on an open RocksDB
/// iterator costs about 2 µs, a new iterator 4–20 µs (docs/benchmarks.md), and a block's or a
/// walk's leaves come mostly in key order.
struct FlatCursor<'a> {
    cursor: Box<dyn Cursor + 'a>,
    /// Every key below this one has been passed: the cursor can move on to any key at or after
    /// it (it never moves back).
    passed: Vec<u8>,
}

impl<R: ?Sized> std::fmt::Debug for TrieNodes<'_, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrieNodes")
            .field("owner", &self.owner)
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl<'a, R: KvRead + ?Sized> TrieNodes<'a, R> {
    /// The account trie.
    pub(crate) const fn account(kv: &'a R) -> Self {
        Self { kv, owner: None, base: Nibbles::new(), flat: Mutex::new(None) }
    }

    /// The storage trie of `owner`.
    pub(crate) const fn storage(kv: &'a R, owner: B256) -> Self {
        Self { kv, owner: Some(owner), base: Nibbles::new(), flat: Mutex::new(None) }
    }

    /// The trie of `owner` (`None`: the account trie).
    pub(crate) const fn of(kv: &'a R, owner: Option<&B256>) -> Self {
        match owner {
            None => Self::account(kv),
            Some(o) => Self::storage(kv, *o),
        }
    }

    /// The subtrie at `base` of this trie.
    pub(crate) fn below(self, base: Nibbles) -> Self {
        Self { base, ..self }
    }

    /// The storage trie of `owner` read through this reader's open flat cursor (storage tries
    /// taken in owner order then share one cursor).
    pub(crate) fn into_storage(self, owner: B256) -> Self {
        Self { owner: Some(owner), base: Nibbles::new(), ..self }
    }

    /// The leaf at the full path `path`, rebuilt from the flat table. With `want` `None`: the
    /// leaf of the one key under `path`, or `None` when none or several are there. With a hash:
    /// the leaf, among the first [`MAX_LEAF_CANDIDATES`] keys under `path`, that hashes to it
    /// (flat entries the trie does not have, as a heal leaves them until its flat rewrite, are
    /// passed over). `None` too when the leaf would be shorter than a hash below the root (its
    /// parent holds it inline; it is no node of its own).
    /// Whether `path` is a leaf position is not known here: callers check the result against
    /// the hash that the parent holds.
    fn leaf_from_flat(&self, path: &Nibbles, want: Option<&B256>) -> Result<Option<Vec<u8>>> {
        let (table, owner_len, (lo, hi)) = match &self.owner {
            None => (Table::Accounts, 0, account_range(path)),
            Some(owner) => (Table::Storage, 32, storage_range(owner, path)),
        };
        let mut slot = self.flat.lock().unwrap_or_else(PoisonError::into_inner);
        let flat = match slot.as_mut() {
            Some(flat) if flat.passed <= lo => {
                flat.cursor.skip_to(&lo)?;
                flat
            }
            _ => {
                slot.insert(FlatCursor { cursor: self.kv.cursor(table, &lo)?, passed: Vec::new() })
            }
        };
        flat.passed = lo;
        let mut found = None;
        for _ in 0..MAX_LEAF_CANDIDATES {
            let Some((key, value)) = flat.cursor.current().filter(|(k, _)| *k < hi.as_slice())
            else {
                break;
            };
            if found.is_some() {
                // A second key under `path`: no leaf position.
                return Ok(None);
            }
            let Some(full) = key.get(owner_len..).filter(|k| k.len() == 32) else {
                return Err(LeafDbError::corrupt(
                    table.name(),
                    "key",
                    "not 32 bytes after its owner",
                ));
            };
            let full = Nibbles::unpack(full);
            let value = match self.owner {
                None => value.to_vec(),
                Some(_) => schema::slot_leaf_value(&schema::decode_slot_value(value)?),
            };
            let mut rlp = Vec::with_capacity(value.len() + 40);
            encode_leaf(&full.slice(path.len()..), &value, &mut rlp);
            flat.passed = [key, &[0]].concat();
            flat.cursor.next()?;
            if rlp.len() < 32 && !path.is_empty() {
                return Ok(None);
            }
            match want {
                Some(hash) if keccak256(&rlp) == *hash => return Ok(Some(rlp)),
                Some(_) => {}
                None => found = Some(rlp),
            }
        }
        Ok(found)
    }
}

/// Reads nodes of any trie by path, many in a row (the children a heal step compares, the
/// nodes of one served `GetNodes`), through one open flat cursor for the account trie and one
/// for the storage tries: a leaf rebuilt from the flat tables then costs a seek, not a new
/// iterator. Paths in key order (and owners in order) use the cursors best.
pub struct NodeReader<'a, R: ?Sized> {
    accounts: TrieNodes<'a, R>,
    storage: Option<TrieNodes<'a, R>>,
}

impl<R: ?Sized> std::fmt::Debug for NodeReader<'_, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeReader").finish_non_exhaustive()
    }
}

impl<'a, R: KvRead + ?Sized> NodeReader<'a, R> {
    pub(crate) const fn new(kv: &'a R) -> Self {
        Self { accounts: TrieNodes::account(kv), storage: None }
    }

    /// The reader of the trie of `owner` (`None`: the account trie).
    fn trie(&mut self, owner: Option<&B256>) -> &TrieNodes<'a, R> {
        let Some(owner) = owner else { return &self.accounts };
        let storage = match self.storage.take() {
            Some(t) if t.owner.as_ref() == Some(owner) => t,
            Some(t) => t.into_storage(*owner),
            None => TrieNodes::storage(self.accounts.kv, *owner),
        };
        self.storage.insert(storage)
    }

    /// The node at `path` of the trie of `owner`: as [`crate::LeafDb::node`].
    pub fn node(&mut self, owner: Option<&B256>, path: &Nibbles) -> Result<Option<Vec<u8>>> {
        self.trie(owner).node(path)
    }

    /// The node at `path` of the trie of `owner` if it hashes to `hash`: the stored one, or else
    /// a leaf rebuilt from a flat entry under `path` (stray entries beside it passed over).
    pub fn node_hashing_to(
        &mut self,
        owner: Option<&B256>,
        path: &Nibbles,
        hash: &B256,
    ) -> Result<Option<Vec<u8>>> {
        self.trie(owner).node_hashing_to(path, hash)
    }
}

/// Flat keys under one path that [`TrieNodes`] tries, looking for the leaf a parent's hash names:
/// more than a stray entry or two under a leaf's path means the path is no leaf position.
const MAX_LEAF_CANDIDATES: usize = 16;

impl<R: KvRead + ?Sized> TrieNodes<'_, R> {
    /// `path` of this reader's (sub)trie as a path of the whole trie.
    fn full_path(&self, path: &Nibbles) -> Result<Nibbles> {
        if self.base.is_empty() { Ok(*path) } else { checked_join(&self.base, path) }
    }

    /// The node stored at the full path `path`.
    fn stored(&self, path: &Nibbles) -> Result<Option<Vec<u8>>> {
        let owner = self.owner.as_ref();
        self.kv.get(node_table(owner), &node_key(owner, path))
    }

    /// The node at the full path `path` if it hashes to `hash`: the stored one, or else a leaf
    /// rebuilt from a flat entry under `path`.
    fn node_hashing_to(&self, path: &Nibbles, hash: &B256) -> Result<Option<Vec<u8>>> {
        match self.stored(path)? {
            Some(rlp) => Ok((keccak256(&rlp) == *hash).then_some(rlp)),
            None => self.leaf_from_flat(path, Some(hash)),
        }
    }
}

impl<R: KvRead + ?Sized> NodeSource for TrieNodes<'_, R> {
    fn node(&self, path: &Nibbles) -> Result<Option<Vec<u8>>> {
        let path = self.full_path(path)?;
        match self.stored(&path)? {
            Some(rlp) => Ok(Some(rlp)),
            None => self.leaf_from_flat(&path, None),
        }
    }

    fn load_verified_stored(
        &self,
        path: &Nibbles,
        expected: B256,
        leaf: Option<KnownLeaf<'_>>,
    ) -> Result<(Vec<u8>, bool)> {
        let full = self.full_path(path)?;
        if let Some(rlp) = self.stored(&full)? {
            return Ok((verified(self.owner(), path, expected, Some(rlp))?, true));
        }
        // Nothing stored: a leaf position (or a missing node). A known leaf that hashes right
        // is the node, without a seek in the flat table. Either leaf is taken only if it hashes
        // to `expected`, so it is not hashed again; `verified` names a missing one.
        match leaf.and_then(|leaf| leaf.at(path, &expected)) {
            Some(rlp) => Ok((rlp, false)),
            None => match self.leaf_from_flat(&full, Some(&expected))? {
                Some(rlp) => Ok((rlp, false)),
                None => Ok((verified(self.owner(), path, expected, None)?, false)),
            },
        }
    }

    fn owner(&self) -> B256 {
        self.owner.unwrap_or_default()
    }
}
