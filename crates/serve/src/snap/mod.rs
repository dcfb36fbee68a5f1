//! `snap/1` serving over the leafdb, in go-ethereum's shape: decode (with `snap/1`'s limits,
//! [`leafsync_p2p::snap::SnapMessage::decode`]) → a pure `answer_*(db, request) -> response` over
//! one consistent [`SnapReader`] → send. Every answer is clamped by bytes (the request's budget,
//! capped at [`SOFT_RESPONSE_LIMIT`]), by item count and by [`MAX_QUERY_TIME`], and holds at least
//! one item when there is one to give.
//!
//! Account and storage ranges are read from the flat state at the leafdb's head root, and at an
//! older root (a syncing geth's pivot is 64 to ~120 blocks behind the chain's head) by walking
//! its trie; trie nodes serve older roots the same way. Older roots resolve as far as the node
//! store and the recent-node cache hold their nodes (the last `recent_blocks` blocks' replaced
//! nodes, none from before a restart). When it answers empty: a root whose trie does not
//! resolve, and any internal trouble (logged, then an empty answer, as geth does). Only an empty
//! `GetTrieNodes` path set is refused as a protocol breach.

mod accounts;
mod codes;
mod server;
mod storage;
mod trie_nodes;

use std::time::Instant;

pub use accounts::answer_account_range;
pub use codes::answer_byte_codes;
pub use server::SnapServer;
pub use storage::answer_storage_ranges;
pub use trie_nodes::answer_trie_nodes;

use alloy_primitives::B256;
use leafsync_leafdb::{KvStore, LeafDb, snap_read::SnapReader};
use leafsync_p2p::snap::{
    SnapError, SnapMessage,
    protocol::{MAX_QUERY_TIME, SOFT_RESPONSE_LIMIT},
};

/// Answers one `snap/1` message with relative id `id`: `Ok(Some(response))` for a request,
/// `Ok(None)` for a response (those belong to the syncer, not the server), `Err` for a message
/// that breaks the protocol (disconnect as the [`SnapError`]'s
/// [`disconnect_reason`](leafsync_p2p::MessageFault::disconnect_reason) says).
pub fn serve_message<S: KvStore>(
    db: &LeafDb<S>,
    id: u8,
    payload: &[u8],
) -> Result<Option<SnapMessage>, SnapError> {
    let message = SnapMessage::decode(id, payload)?;
    Ok(Some(match message {
        SnapMessage::GetAccountRange(req) => {
            SnapMessage::AccountRange(answer_account_range(db, &req))
        }
        SnapMessage::GetStorageRanges(req) => {
            SnapMessage::StorageRanges(answer_storage_ranges(db, &req))
        }
        SnapMessage::GetByteCodes(req) => SnapMessage::ByteCodes(answer_byte_codes(db, &req)),
        SnapMessage::GetTrieNodes(req) => SnapMessage::TrieNodes(answer_trie_nodes(db, &req)?),
        SnapMessage::AccountRange(_)
        | SnapMessage::StorageRanges(_)
        | SnapMessage::ByteCodes(_)
        | SnapMessage::TrieNodes(_) => return Ok(None),
    }))
}

/// A query's byte budget: the request's, capped at [`SOFT_RESPONSE_LIMIT`].
fn byte_budget(requested: u64) -> u64 {
    requested.min(SOFT_RESPONSE_LIMIT)
}

/// The time a query may still run until, from now.
fn deadline() -> Instant {
    Instant::now() + MAX_QUERY_TIME
}

/// Whether the query's time is up.
fn expired(deadline: Instant) -> bool {
    Instant::now() >= deadline
}

/// A view of the leafdb for one query, `None` (logged) when it cannot be opened.
fn reader<S: KvStore>(db: &LeafDb<S>) -> Option<SnapReader<'_, S>> {
    match db.snap_reader() {
        Ok(r) => Some(r),
        Err(error) => {
            crate::log::serve_warn!(%error, "snap/1: cannot open a leafdb view; answering empty");
            None
        }
    }
}

/// go-ethereum's `common.BytesToHash`: the last 32 bytes, right-aligned (a short value is
/// left-padded with zeros).
fn bytes_to_hash(bytes: &[u8]) -> B256 {
    let tail = &bytes[bytes.len().saturating_sub(32)..];
    let mut out = B256::ZERO;
    out[32 - tail.len()..].copy_from_slice(tail);
    out
}

/// Appends proof nodes to `proof`, skipping those it already holds (the two edges of a range
/// share their upper nodes; geth's proof set holds each node once).
fn add_proof(proof: &mut Vec<alloy_primitives::Bytes>, nodes: Vec<Vec<u8>>) {
    for node in nodes {
        if !proof.iter().any(|p| p[..] == node[..]) {
            proof.push(node.into());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_to_hash_is_geths() {
        assert_eq!(bytes_to_hash(&[]), B256::ZERO);
        assert_eq!(bytes_to_hash(&[5]), B256::with_last_byte(5));
        let mut long = vec![9u8];
        long.extend([1u8; 32]);
        assert_eq!(bytes_to_hash(&long), B256::repeat_byte(1));
    }
}
