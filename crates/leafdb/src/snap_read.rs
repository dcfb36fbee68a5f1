//! [`SnapReader`]: the reads a snap/1 server needs, over one consistent snapshot of the leafdb:
//! flat accounts and storage from an arbitrary origin (not only under a prefix), Merkle proofs of
//! any key against the head root, and trie nodes by path with go-ethereum's lookup semantics
//! (`trie.GetNode`), also under older roots as far as the node store and the recent-node cache
//! still resolve them.

mod at_root;

use std::{cell::RefCell, collections::HashMap};

use alloy_primitives::{B256, U256, keccak256};
use alloy_trie::{EMPTY_ROOT_HASH, Nibbles, TrieAccount, nodes::RlpNode};

use crate::{
    db::{LeafDb, read_account_root},
    error::{LeafDbError, Result},
    kv::{KvRead, KvStore, Reading, Table},
    nodes::TrieNodes,
    recent::RecentWindow,
    schema::{BlockHeader, decode_account, decode_head, decode_slot_value, meta},
    trie::{DecodedNode, NodeSource, prove},
};

pub use at_root::{AccountAt, LeavesAt};

/// Nibble value geth appends to a key path to mark a leaf's end (its hex "terminator").
pub const TERMINATOR: u8 = 16;

/// Longest nibble path (with terminator) that can lead to anything in a state trie: 64 key
/// nibbles and the terminator. Longer paths are answered "absent" without any lookup.
pub const MAX_LOOKUP_NIBBLES: usize = 65;

/// What a trie path leads to, in the terms of go-ethereum's `trie.GetNode`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathLookup {
    /// The path ends exactly at a stored (hash-referenced) node: its RLP.
    Node(Vec<u8>),
    /// Nothing lives at the path (it leaves the trie, or the trie is empty): geth answers an
    /// empty entry.
    Absent,
    /// The path ends at a node embedded in its parent, or at a leaf's value: geth reports a
    /// "non-consensus node" error and leaves the entry out.
    NotANode,
    /// A node on the way could not be resolved (not in the node store under that hash, nor in
    /// the recent-node cache): geth's lookup error, entry left out.
    Unresolved,
}

/// A read-only snap/1 view of the leafdb at the moment [`LeafDb::snap_reader`] was called.
pub struct SnapReader<'a, S: KvStore> {
    snap: S::Snapshot<'a>,
    /// The store the snapshot borrows from.
    _store: std::marker::PhantomData<&'a S>,
    head: Option<BlockHeader>,
    root: B256,
    /// Nodes this view has resolved, by (owner, path, hash): a query walking many paths from
    /// one root pays for each node once, as geth's in-memory trie does.
    resolved: RefCell<HashMap<NodeKey, Vec<u8>>>,
    /// The recent-node cache as the view was opened: a range walked at an older root and its
    /// proof see the same nodes, whatever blocks expire meanwhile.
    recent: RecentWindow,
}

/// A node's identity within one view: its trie's owner, its path and its hash.
type NodeKey = (Option<B256>, Vec<u8>, B256);

/// Most nodes a [`SnapReader`] keeps resolved (~2 MiB of nodes at ~500 bytes each); past it,
/// lookups still work but are not remembered. A snap/1 query stops after 1024 loads anyway.
pub const MAX_RESOLVED_NODES: usize = 4096;

impl<S: KvStore> std::fmt::Debug for SnapReader<'_, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapReader")
            .field("head", &self.head)
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

impl<S: KvStore> LeafDb<S> {
    /// A consistent snap/1 view of the current state.
    pub fn snap_reader(&self) -> Result<SnapReader<'_, S>> {
        let snap = self.store().snapshot();
        let head = snap.get(Table::Meta, meta::HEAD)?.map(|b| decode_head(&b)).transpose()?;
        let root = read_account_root(&snap)?;
        // After the snapshot: a block applied in between only adds nodes of the snapshot's
        // state, which the store holds anyway.
        let recent = self.recent_cache().window();
        let _store = std::marker::PhantomData;
        Ok(SnapReader { snap, _store, head, root, resolved: RefCell::default(), recent })
    }
}

fn key_of(k: &[u8], what: &'static str) -> Result<B256> {
    B256::try_from(k).map_err(|_| LeafDbError::corrupt("flat state", what, "not 32 bytes"))
}

impl<S: KvStore> SnapReader<'_, S> {
    /// The head block of the view, if any state was loaded.
    pub const fn head(&self) -> Option<BlockHeader> {
        self.head
    }

    /// Root of the account trie at the view's head: the only root whose flat state it holds.
    pub const fn root(&self) -> B256 {
        self.root
    }

    /// An account by hashed address, from the flat state at the head.
    pub fn account(&self, hashed: &B256) -> Result<Option<TrieAccount>> {
        self.snap.get(Table::Accounts, hashed.as_slice())?.map(|b| decode_account(&b)).transpose()
    }

    /// Bytecode by hash.
    pub fn code(&self, hash: &B256) -> Result<Option<Vec<u8>>> {
        self.snap.get(Table::Code, hash.as_slice())
    }

    /// Accounts with hashed address `>= origin`, in key order, from the flat state at the head.
    pub fn accounts_from<'s>(
        &'s self,
        origin: &B256,
    ) -> impl Iterator<Item = Result<(B256, TrieAccount)>> + 's {
        self.snap.range_from(Table::Accounts, origin.as_slice(), Reading::Serve).map(|item| {
            let (k, v) = item?;
            Ok((key_of(&k, "account key")?, decode_account(&v)?))
        })
    }

    /// Storage slots of `account` with hashed slot `>= origin`, in key order, from the flat
    /// state at the head.
    pub fn storage_from<'s>(
        &'s self,
        account: &B256,
        origin: &B256,
    ) -> impl Iterator<Item = Result<(B256, U256)>> + 's {
        let account = *account;
        let mut start = account.to_vec();
        start.extend_from_slice(origin.as_slice());
        self.snap
            .range_from(Table::Storage, &start, Reading::Serve)
            .take_while(move |item| {
                item.as_ref().map_or(true, |(k, _)| k.len() == 64 && k[..32] == account[..])
            })
            .map(|item| {
                let (k, v) = item?;
                Ok((key_of(&k[32..], "slot key")?, decode_slot_value(&v)?))
            })
    }

    /// The nodes proving `key` (present or absent) in the account trie at the head root.
    pub fn prove_account(&self, key: &B256) -> Result<Vec<Vec<u8>>> {
        prove(&TrieNodes::account(&self.snap), self.root, &Nibbles::unpack(key))
    }

    /// The nodes proving `key` (present or absent) in the storage trie of `owner`, whose root
    /// at the head is `storage_root`.
    pub fn prove_storage(
        &self,
        owner: &B256,
        storage_root: B256,
        key: &B256,
    ) -> Result<Vec<Vec<u8>>> {
        prove(&TrieNodes::storage(&self.snap, *owner), storage_root, &Nibbles::unpack(key))
    }

    /// The RLP of the node with hash `hash` that a trie of `owner` (`None`: the account trie)
    /// holds at `path`: the stored node at that path if it hashes to `hash`, else the recent-node
    /// cache's node for `hash` (a node replaced within the last blocks). `None` if neither has it.
    pub fn resolve(
        &self,
        owner: Option<&B256>,
        path: &[u8],
        hash: &B256,
    ) -> Result<Option<Vec<u8>>> {
        let stored = match path_key_nibbles(path) {
            None => None,
            Some(p) => TrieNodes::of(&self.snap, owner).node(&p)?,
        };
        if let Some(rlp) = stored
            && keccak256(&rlp) == *hash
        {
            return Ok(Some(rlp));
        }
        Ok(self.recent.get(hash))
    }

    /// [`Self::resolve`] through the view's cache of resolved nodes; `loads` counts only the
    /// nodes read from the store or the recent-node cache.
    fn resolve_counted(
        &self,
        owner: Option<&B256>,
        path: &[u8],
        hash: &B256,
        loads: &mut usize,
    ) -> Result<Option<Vec<u8>>> {
        let key: NodeKey = (owner.copied(), path.to_vec(), *hash);
        if let Some(rlp) = self.resolved.borrow().get(&key) {
            return Ok(Some(rlp.clone()));
        }
        *loads += 1;
        let found = self.resolve(owner, path, hash)?;
        if let Some(rlp) = &found {
            let mut cache = self.resolved.borrow_mut();
            if cache.len() < MAX_RESOLVED_NODES {
                cache.insert(key, rlp.clone());
            }
        }
        Ok(found)
    }

    /// What the nibble `path` (geth's hex form: nibbles, optionally ending in [`TERMINATOR`])
    /// leads to in the trie of `owner` with root `root`, walking from the root and checking every
    /// node against its parent's hash, with the outcomes of go-ethereum's `trie.GetNode`.
    /// Returns the outcome and the number of node loads it cost (nodes this view resolved
    /// before cost nothing).
    pub fn lookup_path(
        &self,
        owner: Option<&B256>,
        root: B256,
        path: &[u8],
    ) -> Result<(PathLookup, usize)> {
        if root == EMPTY_ROOT_HASH || path.len() > MAX_LOOKUP_NIBBLES {
            return Ok((PathLookup::Absent, 0));
        }
        let mut loads = 0;
        // The current position: a hash reference to load, an embedded node, or a value.
        let mut current = Cursor::Hash(root);
        let mut pos = 0;
        loop {
            if pos >= path.len() {
                return Ok(match current {
                    Cursor::Hash(h) => match self.resolve_counted(owner, path, &h, &mut loads)? {
                        Some(rlp) => (PathLookup::Node(rlp), loads),
                        None => (PathLookup::Unresolved, loads),
                    },
                    Cursor::Inline(_) | Cursor::Value => (PathLookup::NotANode, loads),
                });
            }
            let node = match current {
                Cursor::Value => return Ok((PathLookup::Absent, loads)),
                Cursor::Inline(node) => node,
                Cursor::Hash(h) => {
                    let Some(rlp) = self.resolve_counted(owner, &path[..pos], &h, &mut loads)?
                    else {
                        return Ok((PathLookup::Unresolved, loads));
                    };
                    DecodedNode::decode(&rlp)?
                }
            };
            match node {
                DecodedNode::Leaf { key, .. } => {
                    // geth's leaf keys carry the terminator.
                    let rest = &path[pos..];
                    let matches = rest.len() > key.len()
                        && (0..key.len()).all(|i| rest[i] == key.get_unchecked(i))
                        && rest[key.len()] == TERMINATOR;
                    if !matches {
                        return Ok((PathLookup::Absent, loads));
                    }
                    pos += key.len() + 1;
                    current = Cursor::Value;
                }
                DecodedNode::Extension { key, child } => {
                    let rest = &path[pos..];
                    let matches = rest.len() >= key.len()
                        && (0..key.len()).all(|i| rest[i] == key.get_unchecked(i));
                    if !matches {
                        return Ok((PathLookup::Absent, loads));
                    }
                    pos += key.len();
                    current = Cursor::of(&child)?;
                }
                DecodedNode::Branch { children, value } => {
                    let nibble = path[pos];
                    pos += 1;
                    current = if nibble == TERMINATOR {
                        match value {
                            Some(_) => Cursor::Value,
                            None => return Ok((PathLookup::Absent, loads)),
                        }
                    } else {
                        match children.get(usize::from(nibble)).and_then(Option::as_ref) {
                            Some(child) => Cursor::of(child)?,
                            None => return Ok((PathLookup::Absent, loads)),
                        }
                    };
                }
            }
        }
    }

    /// The account with hashed address `hashed` in the account trie with root `root`: from the
    /// flat state when `root` is the head root, else by walking the trie (as far as it resolves).
    /// Returns what was found ([`AccountAt`]: an account whose path does not resolve is told
    /// apart from one that is not there) and the node loads it cost.
    pub fn account_at(&self, root: B256, hashed: &B256) -> Result<(AccountAt, usize)> {
        if root == self.root {
            let found = self.account(hashed)?.map_or(AccountAt::Absent, AccountAt::Found);
            return Ok((found, 1));
        }
        let mut loads = 0;
        let key = Nibbles::unpack(hashed);
        let mut current = Cursor::Hash(root);
        let mut pos = 0;
        let mut path: Vec<u8> = Vec::with_capacity(64);
        loop {
            let node = match current {
                Cursor::Value => return Ok((AccountAt::Absent, loads)),
                Cursor::Inline(node) => node,
                Cursor::Hash(h) => match self.resolve_counted(None, &path, &h, &mut loads)? {
                    Some(rlp) => DecodedNode::decode(&rlp)?,
                    None => return Ok((AccountAt::Unresolved, loads)),
                },
            };
            match node {
                DecodedNode::Leaf { key: k, value } => {
                    if key.slice(pos..) != k {
                        return Ok((AccountAt::Absent, loads));
                    }
                    let account = decode_account(&value)?;
                    return Ok((AccountAt::Found(account), loads));
                }
                DecodedNode::Extension { key: k, child } => {
                    if !key.slice(pos..).starts_with(&k) {
                        return Ok((AccountAt::Absent, loads));
                    }
                    path.extend(k.to_vec());
                    pos += k.len();
                    current = Cursor::of(&child)?;
                }
                DecodedNode::Branch { children, .. } => {
                    if pos >= key.len() {
                        return Ok((AccountAt::Absent, loads));
                    }
                    let nibble = key.get_unchecked(pos);
                    let Some(child) = &children[usize::from(nibble)] else {
                        return Ok((AccountAt::Absent, loads));
                    };
                    path.push(nibble);
                    pos += 1;
                    current = Cursor::of(child)?;
                }
            }
        }
    }
}

/// A position in a walk down a trie.
enum Cursor {
    /// A child referenced by hash, still to be loaded.
    Hash(B256),
    /// A child embedded in its parent.
    Inline(DecodedNode),
    /// A leaf's (or branch's) value.
    Value,
}

impl Cursor {
    fn of(r: &RlpNode) -> Result<Self> {
        Ok(match r.as_hash() {
            Some(h) => Self::Hash(h),
            None => Self::Inline(DecodedNode::decode(r)?),
        })
    }
}

/// The leafdb path of a nibble slice, `None` when it cannot be a stored path (a nibble above 15
/// or more than 64 nibbles).
fn path_key_nibbles(path: &[u8]) -> Option<Nibbles> {
    if path.len() > 64 || path.iter().any(|n| *n > 15) {
        return None;
    }
    Some(Nibbles::from_nibbles_unchecked(path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::GenParams;

    #[test]
    fn lookups_follow_geth() {
        let db = LeafDb::in_memory();
        db.generate(GenParams { accounts: 300, seed: 7 }).unwrap();
        let r = db.snap_reader().unwrap();
        let root = r.root();
        // The root itself.
        let (got, loads) = r.lookup_path(None, root, &[]).unwrap();
        assert_eq!(got, PathLookup::Node(db.node(None, &Nibbles::new()).unwrap().unwrap()));
        assert_eq!(loads, 1);
        // A path running past every leaf is absent.
        let (got, _) = r.lookup_path(None, root, &[1; 40]).unwrap();
        assert_eq!(got, PathLookup::Absent);
        // Accounts from a walk equal the flat ones.
        let (first, acct) = r.accounts_from(&B256::ZERO).next().unwrap().unwrap();
        assert_eq!(r.account_at(B256::repeat_byte(1), &first).unwrap().0, AccountAt::Unresolved);
        assert_eq!(r.account_at(r.root(), &first).unwrap().0, AccountAt::Found(acct));
        assert_eq!(r.account(&first).unwrap(), Some(acct));
        // An unknown root resolves nothing.
        let (got, _) = r.lookup_path(None, B256::repeat_byte(1), &[]).unwrap();
        assert_eq!(got, PathLookup::Unresolved);
    }
}
