//! `GetNodes` and `GetCodes`: one entry per requested item in request order, each either data
//! that hashes to what the client asked for or empty; the list stops early at the byte bound
//! (the item crossing it included) or when the time budget runs out.

use std::time::Instant;

use alloy_primitives::{B256, Bytes, keccak256};
use leafsync_leafdb::{KvStore, LeafSnapshot, NodeReader};
use leafsync_p2p::leaf::{Codes, GetCodes, GetNodes, NodeRequest, Nodes};

use crate::{
    config::{Budget, MAX_CODES_SERVED, MAX_NODES_SERVED, ServeConfig},
    error::ServeError,
};

/// The node the client asked for, if we have one that hashes to its expected hash: first from
/// the node store by path (a leaf rebuilt from the flat tables where none is stored) through
/// `reader`, one for the whole request; then, if the path holds another node or none, from the
/// recent-node cache by hash (nodes replaced in the last blocks). The store comes first because
/// most nodes a client asks for are still current, and the cache looks through its blocks one
/// by one for a hash it does not hold. Anything else is `None`.
pub fn find_node<S: KvStore>(
    snap: &LeafSnapshot<'_, S>,
    reader: &mut NodeReader<'_, S::Snapshot<'_>>,
    request: &NodeRequest,
) -> Result<Option<Vec<u8>>, ServeError> {
    let owner: Option<B256> = request.owner.into();
    let path = alloy_trie::Nibbles::from(&request.path);
    if let Some(node) = reader.node_hashing_to(owner.as_ref(), &path, &request.hash)? {
        return Ok(Some(node));
    }
    Ok(snap.recent_node(&request.hash)?.filter(|node| keccak256(node) == request.hash))
}

/// The code with this hash, only if it hashes to it.
pub fn find_code<S: KvStore>(
    snap: &LeafSnapshot<'_, S>,
    hash: &B256,
) -> Result<Option<Vec<u8>>, ServeError> {
    Ok(snap.code(hash)?.filter(|c| keccak256(c) == *hash))
}

/// Answers `GetNodes`: at most [`MAX_NODES_SERVED`] entries (p2p's decoder refuses longer
/// requests as a breach before they get here), bounded by the capped `max_bytes` and the time
/// budget.
pub fn serve_nodes<S: KvStore>(
    snap: &LeafSnapshot<'_, S>,
    request: &GetNodes,
    config: &ServeConfig,
) -> Result<Nodes, ServeError> {
    let budget = config.budget(request.max_bytes);
    let requests = request.nodes.iter().take(MAX_NODES_SERVED);
    let mut reader = snap.node_reader();
    let nodes = collect_bounded(requests, budget, |r| find_node(snap, &mut reader, r))?;
    Ok(Nodes { nodes })
}

/// Answers `GetCodes`: at most [`MAX_CODES_SERVED`] entries, bounded like [`serve_nodes`].
pub fn serve_codes<S: KvStore>(
    snap: &LeafSnapshot<'_, S>,
    request: &GetCodes,
    config: &ServeConfig,
) -> Result<Codes, ServeError> {
    let budget = config.budget(request.max_bytes);
    let hashes = request.hashes.iter().take(MAX_CODES_SERVED);
    let codes = collect_bounded(hashes, budget, |h| find_code(snap, h))?;
    Ok(Codes { codes })
}

/// One entry per request (empty when `find` has nothing), stopping after the entry that brings
/// the total past `budget`'s bytes, or before the next entry once its deadline has passed (at
/// least one entry is always looked up).
fn collect_bounded<'r, R: 'r>(
    requests: impl Iterator<Item = &'r R>,
    budget: Budget,
    mut find: impl FnMut(&R) -> Result<Option<Vec<u8>>, ServeError>,
) -> Result<Vec<Bytes>, ServeError> {
    let mut out = Vec::new();
    let mut size = 0u64;
    for request in requests {
        if size > budget.bytes || (!out.is_empty() && Instant::now() > budget.deadline) {
            break;
        }
        let entry = find(request)?.map(Bytes::from).unwrap_or_default();
        size += entry.len() as u64;
        out.push(entry);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn stops_after_the_item_crossing_the_limit() {
        let requests = [1usize, 2, 3, 4];
        let find = |n: &usize| Ok(Some(vec![0u8; *n * 10]));
        let far = |bytes| Budget { bytes, deadline: Instant::now() + Duration::from_secs(60) };
        let out = collect_bounded(requests.iter(), far(25), find).unwrap();
        // 10 + 20 = 30 > 25 after the second entry, which is still sent.
        assert_eq!(out.iter().map(|b| b.len()).collect::<Vec<_>>(), vec![10, 20]);
        let all = collect_bounded(requests.iter(), far(1000), find).unwrap();
        assert_eq!(all.len(), 4);
        let none = |_: &usize| Ok(None);
        let empty = collect_bounded(requests.iter(), far(0), none).unwrap();
        assert_eq!(empty, vec![Bytes::new(); 4], "empty entries cost nothing");
    }

    #[test]
    fn deadline_stops_after_one() {
        let past = Budget { bytes: u64::MAX, deadline: Instant::now() };
        std::thread::sleep(Duration::from_millis(2));
        let out = collect_bounded([1usize, 2].iter(), past, |_| Ok(Some(vec![1]))).unwrap();
        assert_eq!(out.len(), 1);
    }
}
