//! [`TrackedRequest`] for snap/1 (which response answers a request, how many items it may hold),
//! so that our snap/1 requests go through the same [`crate::requests::RequestTracker`] as
//! `leaf/1`'s.

use super::SnapMessage;
use crate::requests::TrackedRequest;

impl TrackedRequest for SnapMessage {
    type Response = Self;
    type Message = Self;

    fn with_id(&self, request_id: u64) -> Self {
        self.clone().with_request_id(request_id)
    }

    fn answered_by(&self, response: &Self) -> bool {
        self.is_answered_by(response)
    }

    /// One storage list per account, one code per hash, one node per path; `None` when only
    /// bytes bound the answer (account ranges) and for a response.
    fn max_items(&self) -> Option<usize> {
        match self {
            Self::GetStorageRanges(m) => Some(m.accounts.len()),
            Self::GetByteCodes(m) => Some(m.hashes.len()),
            Self::GetTrieNodes(m) => {
                Some(m.paths.iter().map(|set| set.0.len().saturating_sub(1).max(1)).sum())
            }
            _ => None,
        }
    }

    /// Storage lists, codes, nodes or accounts; 0 for a request.
    fn items(response: &Self) -> usize {
        match response {
            Self::AccountRange(m) => m.accounts.len(),
            Self::StorageRanges(m) => m.slots.len(),
            Self::ByteCodes(m) => m.codes.len(),
            Self::TrieNodes(m) => m.nodes.len(),
            _ => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::requests::ResponseViolation;
    use crate::snap::{ByteCodes, GetByteCodes, GetTrieNodes, TrieNodePathSet, TrieNodes};
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
        assert_eq!(request.max_items(), Some(3));
    }
}
