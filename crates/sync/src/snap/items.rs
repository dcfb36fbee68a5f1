//! Trie nodes and codes through snap/1: `GetNodes` → `GetTrieNodes` (geth's compact paths,
//! storage paths grouped under their account) and `GetCodes` → `GetByteCodes`.
//!
//! A snap/1 server leaves out what it cannot serve (a code it lacks, a path ending inside its
//! parent), so answers are matched to the requests by hash, as go-ethereum's syncer does: each
//! item fills the next request it hashes to, the requests it skips stay unanswered (asked
//! elsewhere by the syncer). An item matching no request left is an answer no honest server
//! sends. Empty entries (a path leading nowhere) answer nothing.

use alloy_primitives::{B256, Bytes, keccak256};
use leafsync_p2p::{
    leaf::{Codes, GetCodes, GetNodes, Nodes, TrieOwner},
    requests::LeafResponse,
    snap::{GetByteCodes, GetTrieNodes, SnapMessage, path::group_path_sets},
};

use super::{Fault, Inner};

/// `items` matched to the requested `hashes` in order (see the module docs): one entry per
/// request up to the last answered, empty where unanswered.
pub(crate) fn match_by_hash(hashes: &[B256], items: Vec<Bytes>) -> Result<Vec<Bytes>, Fault> {
    if items.len() > hashes.len() {
        return Err(Fault::Malformed("more items than requested"));
    }
    let mut out: Vec<Bytes> = Vec::with_capacity(items.len());
    for item in items.into_iter().filter(|i| !i.is_empty()) {
        let hash = keccak256(&item);
        let skip = hashes[out.len()..]
            .iter()
            .position(|h| *h == hash)
            .ok_or(Fault::Malformed("an item no request asked for"))?;
        out.extend(std::iter::repeat_n(Bytes::new(), skip));
        out.push(item);
    }
    Ok(out)
}

/// Trie nodes at the pivot's `root`.
pub(crate) async fn nodes(inner: &Inner, root: B256, req: GetNodes) -> Result<LeafResponse, Fault> {
    let owner = |o: TrieOwner| match o {
        TrieOwner::Accounts => None,
        TrieOwner::Storage(account) => Some(account),
    };
    let paths = group_path_sets(req.nodes.iter().map(|n| (owner(n.owner), n.path.as_slice())));
    let request =
        GetTrieNodes { request_id: 0, root, paths, bytes: inner.budget().min(req.max_bytes) };
    let answer = match inner.ask(SnapMessage::GetTrieNodes(request)).await? {
        SnapMessage::TrieNodes(answer) => answer,
        _ => return Err(Fault::Malformed("answer of another kind to GetTrieNodes")),
    };
    // A server with the root's state always serves the first node asked for (geth serves in
    // order and stops at its byte budget only after a node); no node at all is how geth (and
    // leafsync's snap/1 server) answer for a root they do not have: marked, not penalised.
    if !req.nodes.is_empty() && answer.nodes.iter().all(|n| n.is_empty()) {
        return Err(Fault::NoState);
    }
    let hashes: Vec<B256> = req.nodes.iter().map(|n| n.hash).collect();
    let nodes = match_by_hash(&hashes, answer.nodes)?;
    Ok(LeafResponse::Nodes(Nodes { nodes }))
}

/// Codes by hash (no state root involved).
pub(crate) async fn codes(inner: &Inner, req: GetCodes) -> Result<LeafResponse, Fault> {
    let request = GetByteCodes {
        request_id: 0,
        hashes: req.hashes.clone(),
        bytes: inner.budget().min(req.max_bytes),
    };
    let answer = match inner.ask(SnapMessage::GetByteCodes(request)).await? {
        SnapMessage::ByteCodes(answer) => answer,
        _ => return Err(Fault::Malformed("answer of another kind to GetByteCodes")),
    };
    let codes = match_by_hash(&req.hashes, answer.codes)?;
    Ok(LeafResponse::Codes(Codes { codes }))
}
