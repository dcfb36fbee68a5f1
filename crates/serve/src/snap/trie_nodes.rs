//! `GetTrieNodes` → `TrieNodes`.

use alloy_primitives::Bytes;
use leafsync_leafdb::{
    KvStore, LeafDb,
    snap_read::{AccountAt, PathLookup, SnapReader},
};
use leafsync_p2p::snap::{
    GetTrieNodes, SnapError, TrieNodes, path::compact_to_hex, protocol::MAX_TRIE_NODE_LOOKUPS,
};

use super::{byte_budget, bytes_to_hash, deadline, expired, reader};

/// The running totals of one query.
struct Spent {
    bytes: u64,
    loads: usize,
    budget: u64,
    until: std::time::Instant,
}

impl Spent {
    fn exhausted(&self) -> bool {
        self.bytes > self.budget || self.loads > MAX_TRIE_NODE_LOOKUPS || expired(self.until)
    }
}

/// Answers `GetTrieNodes` for the state `root`: the head root, or an older one as far as the node
/// store and the recent-node cache still resolve it (else empty). One entry per path, in request
/// order, with go-ethereum's outcomes:
///
/// * a path that ends at a stored node: the node; a path that leads nowhere (leaves the trie,
///   runs past a leaf, or asks in an empty trie): an empty entry;
/// * a path that ends inside its parent (an embedded node or a value) or at a node that does not
///   resolve: no entry;
/// * a storage set whose account does not exist at `root`: no entries for the whole set.
///
/// Stops after the entry that passes the byte budget, after [`MAX_TRIE_NODE_LOOKUPS`] node loads
/// or when the time is up. An empty path set is a protocol breach (`Err`), as in geth.
pub fn answer_trie_nodes<S: KvStore>(
    db: &LeafDb<S>,
    req: &GetTrieNodes,
) -> Result<TrieNodes, SnapError> {
    if let Some(index) = req.paths.iter().position(|set| set.0.is_empty()) {
        return Err(SnapError::EmptyPathSet { index });
    }
    let mut out = TrieNodes { request_id: req.request_id, nodes: Vec::new() };
    let Some(view) = reader(db) else { return Ok(out) };
    match view.resolve(None, &[], &req.root) {
        Ok(Some(_)) => {}
        Ok(None) => return Ok(out),
        Err(error) => {
            crate::log::serve_warn!(%error, "snap/1: resolving a state root failed; answering empty");
            return Ok(out);
        }
    }
    let mut spent = Spent { bytes: 0, loads: 0, budget: byte_budget(req.bytes), until: deadline() };
    if let Err(error) = collect(&view, req, &mut spent, &mut out.nodes) {
        crate::log::serve_warn!(%error, "snap/1: reading trie nodes failed; answering what we have");
    }
    Ok(out)
}

fn collect<S: KvStore>(
    view: &SnapReader<'_, S>,
    req: &GetTrieNodes,
    spent: &mut Spent,
    nodes: &mut Vec<Bytes>,
) -> leafsync_leafdb::Result<()> {
    for set in &req.paths {
        match set.0.as_slice() {
            [] => {}
            [path] => {
                let (found, loads) = view.lookup_path(None, req.root, &compact_to_hex(path))?;
                spent.loads += loads;
                push(found, spent, nodes);
            }
            [account, paths @ ..] => {
                let account = bytes_to_hash(account);
                let (found, loads) = view.account_at(req.root, &account)?;
                spent.loads += loads + 1;
                if let AccountAt::Found(found) = found {
                    for path in paths {
                        let (got, loads) = view.lookup_path(
                            Some(&account),
                            found.storage_root,
                            &compact_to_hex(path),
                        )?;
                        spent.loads += loads;
                        if !push(got, spent, nodes) || spent.exhausted() {
                            break;
                        }
                    }
                }
            }
        }
        if spent.exhausted() {
            break;
        }
    }
    Ok(())
}

/// Adds a lookup's entry; `false` when the path produced no entry (geth stops that set there).
fn push(found: PathLookup, spent: &mut Spent, nodes: &mut Vec<Bytes>) -> bool {
    match found {
        PathLookup::Node(rlp) => {
            spent.bytes += rlp.len() as u64;
            nodes.push(rlp.into());
            true
        }
        PathLookup::Absent => {
            nodes.push(Bytes::new());
            true
        }
        PathLookup::NotANode | PathLookup::Unresolved => false,
    }
}
