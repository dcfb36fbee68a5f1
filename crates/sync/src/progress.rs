//! [`SyncProgress`]: what a sync persists in the leafdb so that a restart (also after kill -9)
//! resumes instead of starting over, with a versioned encoding.
//!
//! Most progress needs no record: every chunk and healed node is written atomically with its
//! complete subtree, so on restart a chunk whose stored top node already hashes to its skeleton
//! hash is complete and is not fetched again. The record adds what the tables cannot say: the
//! pivot and skeleton depth (so the same chunks are meant), the chunks being healed (so they are
//! healed, not downloaded again), and the counters.
//!
//! Encoding: one version byte, then the RLP of that version's record. Version history:
//! * 1 — `[pivot, depth, [[owner, path, hash]…], bytes_down, requests]`.

use alloy_primitives::B256;
use alloy_rlp::{RlpDecodable, RlpEncodable};
use leafsync_p2p::leaf::{ChainHead, Nibbles, TrieOwner};

use crate::error::SyncError;

/// The version this build writes.
pub const PROGRESS_VERSION: u8 = 1;

/// A subtrie whose chunk was imported but differed from the skeleton: heal it on resume.
#[derive(Debug, Clone, PartialEq, Eq, RlpEncodable, RlpDecodable)]
pub struct HealRoot {
    /// The trie.
    pub owner: TrieOwner,
    /// Path of the subtrie's top node.
    pub path: Nibbles,
    /// The pivot's hash of that node.
    pub hash: B256,
}

/// The persisted progress of a sync.
#[derive(Debug, Clone, PartialEq, Eq, RlpEncodable, RlpDecodable)]
pub struct SyncProgress {
    /// The pivot being synced to.
    pub pivot: ChainHead,
    /// Depth of the account skeleton (the chunk prefixes' length).
    pub depth: u64,
    /// Imported chunks that await heal.
    pub heal_roots: Vec<HealRoot>,
    /// Bytes downloaded by all runs so far.
    pub bytes_down: u64,
    /// Requests sent by all runs so far.
    pub requests: u64,
}

impl SyncProgress {
    /// Version byte followed by the RLP record.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![PROGRESS_VERSION];
        out.extend(alloy_rlp::encode(self));
        out
    }

    /// Decodes any version this build knows.
    pub fn decode(bytes: &[u8]) -> Result<Self, SyncError> {
        match bytes.split_first() {
            Some((&1, mut rest)) => {
                let record = <Self as alloy_rlp::Decodable>::decode(&mut rest)?;
                if !rest.is_empty() {
                    return Err(SyncError::ProgressDecode(alloy_rlp::Error::UnexpectedLength));
                }
                Ok(record)
            }
            Some((&v, _)) => Err(SyncError::ProgressVersion(v)),
            None => Err(SyncError::ProgressDecode(alloy_rlp::Error::InputTooShort)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> SyncProgress {
        SyncProgress {
            pivot: ChainHead {
                number: 8,
                hash: B256::repeat_byte(0x11),
                state_root: B256::repeat_byte(0x22),
            },
            depth: 2,
            heal_roots: vec![
                HealRoot {
                    owner: TrieOwner::Accounts,
                    path: Nibbles::from_nibbles(&[1, 2]).unwrap(),
                    hash: B256::repeat_byte(0x33),
                },
                HealRoot {
                    owner: TrieOwner::Storage(B256::repeat_byte(0x44)),
                    path: Nibbles::root(),
                    hash: B256::repeat_byte(0x55),
                },
            ],
            bytes_down: 1000,
            requests: 7,
        }
    }

    /// Version 1's bytes, frozen: later versions must keep decoding them.
    #[test]
    fn version_1_still_decodes() {
        // [1] ‖ [[8, hash, root], 2, [["", 0x0012, hash], [owner, 0x00, hash]], 1000, 7]
        let v1 = concat!(
            "01f8b7f84308a0",
            "1111111111111111111111111111111111111111111111111111111111111111",
            "a0",
            "2222222222222222222222222222222222222222222222222222222222222222",
            "02f86be580820012a0",
            "3333333333333333333333333333333333333333333333333333333333333333",
            "f843a0",
            "4444444444444444444444444444444444444444444444444444444444444444",
            "00a0",
            "5555555555555555555555555555555555555555555555555555555555555555",
            "8203e807"
        );
        let bytes = alloy_primitives::hex::decode(v1).unwrap();
        assert_eq!(SyncProgress::decode(&bytes).unwrap(), sample());
        assert_eq!(sample().encode(), bytes);
    }

    #[test]
    fn unknown_versions_and_garbage_are_errors() {
        let mut bytes = sample().encode();
        bytes[0] = 9;
        assert!(matches!(SyncProgress::decode(&bytes), Err(SyncError::ProgressVersion(9))));
        assert!(SyncProgress::decode(&[]).is_err());
        assert!(SyncProgress::decode(&[1, 0xff]).is_err());
    }
}
