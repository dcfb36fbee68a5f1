//! Requests and their answers: the request id of any message, the empty answer of a request,
//! and which responses answer which request ([`TrackedRequest`], so that our snap/1 requests
//! go through the same [`crate::requests::RequestTracker`] as `leaf/1`'s).

use super::{
    SnapMessage,
    types::{AccountRange, ByteCodes, StorageRanges, TrieNodes},
};
use crate::requests::TrackedRequest;

impl SnapMessage {
    /// The message with its request id replaced by `request_id`.
    pub fn with_request_id(mut self, request_id: u64) -> Self {
        match &mut self {
            Self::GetAccountRange(m) => m.request_id = request_id,
            Self::AccountRange(m) => m.request_id = request_id,
            Self::GetStorageRanges(m) => m.request_id = request_id,
            Self::StorageRanges(m) => m.request_id = request_id,
            Self::GetByteCodes(m) => m.request_id = request_id,
            Self::ByteCodes(m) => m.request_id = request_id,
            Self::GetTrieNodes(m) => m.request_id = request_id,
            Self::TrieNodes(m) => m.request_id = request_id,
        }
        self
    }

    /// The empty answer to a request, with its request id: no accounts, slots, codes or nodes
    /// and no proof (what a server without the state sends, and what snap/1 clients read as "no
    /// state for this root"). `None` for a response.
    pub fn empty_answer(&self) -> Option<Self> {
        let request_id = self.request_id();
        Some(match self {
            Self::GetAccountRange(_) => Self::AccountRange(AccountRange {
                request_id,
                accounts: Vec::new(),
                proof: Vec::new(),
            }),
            Self::GetStorageRanges(_) => Self::StorageRanges(StorageRanges {
                request_id,
                slots: Vec::new(),
                proof: Vec::new(),
            }),
            Self::GetByteCodes(_) => Self::ByteCodes(ByteCodes { request_id, codes: Vec::new() }),
            Self::GetTrieNodes(_) => Self::TrieNodes(TrieNodes { request_id, nodes: Vec::new() }),
            _ => return None,
        })
    }

    /// Whether `response` is of the kind that answers this request (ids and content aside).
    pub fn is_answered_by(&self, response: &Self) -> bool {
        !self.is_response() && response.id() == self.id() + 1
    }

    /// The most items an answer may hold: one storage list per account, one code per hash,
    /// one node per path. `None` when only bytes bound it (account ranges).
    pub fn max_response_items(&self) -> Option<usize> {
        match self {
            Self::GetStorageRanges(m) => Some(m.accounts.len()),
            Self::GetByteCodes(m) => Some(m.hashes.len()),
            Self::GetTrieNodes(m) => {
                Some(m.paths.iter().map(|set| set.0.len().saturating_sub(1).max(1)).sum())
            }
            _ => None,
        }
    }

    /// The number of items of a response (storage lists, codes, nodes, accounts).
    pub fn item_count(&self) -> usize {
        match self {
            Self::AccountRange(m) => m.accounts.len(),
            Self::StorageRanges(m) => m.slots.len(),
            Self::ByteCodes(m) => m.codes.len(),
            Self::TrieNodes(m) => m.nodes.len(),
            _ => 0,
        }
    }
}

impl TrackedRequest for SnapMessage {
    type Response = Self;
    type Message = Self;

    fn with_id(&self, request_id: u64) -> Self {
        self.clone().with_request_id(request_id)
    }

    fn answered_by(&self, response: &Self) -> bool {
        self.is_answered_by(response)
    }

    fn max_items(&self) -> Option<usize> {
        self.max_response_items()
    }

    fn items(response: &Self) -> usize {
        response.item_count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::requests::ResponseViolation;
    use crate::snap::{GetByteCodes, GetTrieNodes, TrieNodePathSet};
    use alloy_primitives::{B256, Bytes};

    #[test]
    fn answers_match_their_request_by_kind_and_count() {
        let codes = SnapMessage::GetByteCodes(GetByteCodes {
            request_id: 3,
            hashes: vec![B256::ZERO; 2],
            bytes: 100,
        });
        let empty = codes.empty_answer().expect("a request");
        assert_eq!(empty.request_id(), 3);
        assert!(codes.check_response(&empty).is_ok());
        let three =
            SnapMessage::ByteCodes(ByteCodes { request_id: 3, codes: vec![Bytes::new(); 3] });
        assert_eq!(
            codes.check_response(&three),
            Err(ResponseViolation::TooManyItems { got: 3, requested: 2 })
        );
        let nodes = SnapMessage::TrieNodes(TrieNodes { request_id: 3, nodes: Vec::new() });
        assert_eq!(codes.check_response(&nodes), Err(ResponseViolation::WrongType));
        assert_eq!(empty.empty_answer(), None);
        assert_eq!(codes.with_id(9).request_id(), 9);
    }

    #[test]
    fn trie_node_requests_count_one_node_per_path() {
        let paths = vec![
            TrieNodePathSet(vec![Bytes::from_static(&[0])]),
            TrieNodePathSet(vec![Bytes::from(vec![1; 32]), Bytes::new(), Bytes::new()]),
        ];
        let request = SnapMessage::GetTrieNodes(GetTrieNodes {
            request_id: 0,
            root: B256::ZERO,
            paths,
            bytes: 1,
        });
        assert_eq!(request.max_response_items(), Some(3));
    }
}
