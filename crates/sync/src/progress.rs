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
//! * 1 — `[pivot, depth, [[owner, path, hash]…], bytes_down, requests]`: the heal roots inside the
//!   record, rewritten whole each time one was added (quadratic in the number of heal roots: a
//!   heal-only sync of 1M accounts adds one per storage trie).
//! * 2 — `[pivot, depth, bytes_down, requests]`; each heal root is an entry of its own in the
//!   leafdb (`put_sync_heal_root`), key RLP `[owner, path]`, value the 32-byte hash.
//! * 3 — version 2's record, written by a run that also marks what it keeps open
//!   ([`leafsync_leafdb::SyncMark`]: storage tries and codes still to come, heals a re-pivot cut
//!   short), so that a resumed run can trust the rest of its tables ([`SyncProgress::marked`]).

use alloy_primitives::B256;
use alloy_rlp::{RlpDecodable, RlpEncodable};
use leafsync_leafdb::{KvStore, LeafDb};
use leafsync_p2p::leaf::{ChainHead, TrieOwner, WirePath};

use crate::error::SyncError;

/// The version this build writes.
pub const PROGRESS_VERSION: u8 = 3;

/// A subtrie whose chunk was imported but differed from the skeleton: heal it on resume.
#[derive(Debug, Clone, PartialEq, Eq, RlpEncodable, RlpDecodable)]
pub struct HealRoot {
    /// The trie.
    pub owner: TrieOwner,
    /// Path of the subtrie's top node.
    pub path: WirePath,
    /// The pivot's hash of that node.
    pub hash: B256,
}

impl HealRoot {
    /// The leafdb key of this heal root in version 2: RLP `[owner, path]` (a suspect mark's too).
    pub fn key(&self) -> Vec<u8> {
        alloy_rlp::encode(TriePath { owner: self.owner, path: self.path.clone() })
    }

    /// A heal root from its version-2 key and value.
    pub fn from_entry(key: &[u8], value: &[u8]) -> Result<Self, SyncError> {
        let k: TriePath = decode_all(key)?;
        let hash = B256::try_from(value)
            .map_err(|_| SyncError::ProgressDecode(alloy_rlp::Error::UnexpectedLength))?;
        Ok(Self { owner: k.owner, path: k.path, hash })
    }
}

/// A node's place: its trie and path. The key of a heal root entry and of a suspect mark.
#[derive(Debug, Clone, PartialEq, Eq, RlpEncodable, RlpDecodable)]
pub(crate) struct TriePath {
    pub(crate) owner: TrieOwner,
    pub(crate) path: WirePath,
}

impl TriePath {
    /// Decodes a whole key.
    pub(crate) fn decode_key(key: &[u8]) -> Result<Self, SyncError> {
        decode_all(key)
    }
}

/// The persisted progress of a sync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncProgress {
    /// The pivot being synced to.
    pub pivot: ChainHead,
    /// Depth of the account skeleton (the chunk prefixes' length).
    pub depth: u64,
    /// Imported chunks that await heal, as a version-1 record held them (version 2 keeps them
    /// as entries of their own; empty when decoded from it, ignored by [`Self::encode`]).
    pub heal_roots: Vec<HealRoot>,
    /// Bytes downloaded by all runs so far.
    pub bytes_down: u64,
    /// Requests sent by all runs so far.
    pub requests: u64,
    /// Whether the runs that wrote it marked what they kept open (version 3): everything else
    /// stored is then complete or consistent (see `crate::carry`). A version-2 record's run did
    /// not, so a run resuming it re-derives every stored subtrie it meets.
    pub marked: bool,
}

/// Version 1's record.
#[derive(RlpEncodable, RlpDecodable)]
struct RecordV1 {
    pivot: ChainHead,
    depth: u64,
    heal_roots: Vec<HealRoot>,
    bytes_down: u64,
    requests: u64,
}

/// Version 2's record.
#[derive(RlpEncodable, RlpDecodable)]
struct RecordV2 {
    pivot: ChainHead,
    depth: u64,
    bytes_down: u64,
    requests: u64,
}

fn decode_all<T: alloy_rlp::Decodable>(mut rest: &[u8]) -> Result<T, SyncError> {
    let record = T::decode(&mut rest)?;
    if !rest.is_empty() {
        return Err(SyncError::ProgressDecode(alloy_rlp::Error::UnexpectedLength));
    }
    Ok(record)
}

impl SyncProgress {
    /// The record persisted in `db`, with the heal roots of its entries after its own (version
    /// 1 kept them in the record, version 2 keeps one entry each). The inner error: the record
    /// or an entry does not decode (a damaged file, a record of a newer leafsync); the syncer
    /// drops such a record rather than failing every start: it only saves work.
    pub(crate) fn stored<S: KvStore>(
        db: &LeafDb<S>,
    ) -> Result<Result<Option<Self>, SyncError>, SyncError> {
        let Some(bytes) = db.sync_progress()? else { return Ok(Ok(None)) };
        let entries = db.sync_heal_roots()?;
        Ok(Self::decode(&bytes).and_then(|mut record| {
            for (key, value) in &entries {
                record.heal_roots.push(HealRoot::from_entry(key, value)?);
            }
            Ok(Some(record))
        }))
    }

    /// Version byte followed by the RLP record of [`PROGRESS_VERSION`] (of version 2, which has
    /// the same fields, when not [`Self::marked`]).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![if self.marked { PROGRESS_VERSION } else { 2 }];
        out.extend(alloy_rlp::encode(RecordV2 {
            pivot: self.pivot,
            depth: self.depth,
            bytes_down: self.bytes_down,
            requests: self.requests,
        }));
        out
    }

    /// Decodes any version this build knows.
    pub fn decode(bytes: &[u8]) -> Result<Self, SyncError> {
        match bytes.split_first() {
            Some((&1, rest)) => {
                let r: RecordV1 = decode_all(rest)?;
                Ok(Self {
                    pivot: r.pivot,
                    depth: r.depth,
                    heal_roots: r.heal_roots,
                    bytes_down: r.bytes_down,
                    requests: r.requests,
                    marked: false,
                })
            }
            Some((&version @ (2 | 3), rest)) => {
                let r: RecordV2 = decode_all(rest)?;
                Ok(Self {
                    pivot: r.pivot,
                    depth: r.depth,
                    heal_roots: Vec::new(),
                    bytes_down: r.bytes_down,
                    requests: r.requests,
                    marked: version == 3,
                })
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
                    path: WirePath::from_nibbles(&[1, 2]).unwrap(),
                    hash: B256::repeat_byte(0x33),
                },
                HealRoot {
                    owner: TrieOwner::Storage(B256::repeat_byte(0x44)),
                    path: WirePath::root(),
                    hash: B256::repeat_byte(0x55),
                },
            ],
            bytes_down: 1000,
            requests: 7,
            marked: false,
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
    }

    /// Version 2's bytes, frozen; the heal roots are entries of their own.
    #[test]
    fn version_2_round_trips_and_is_frozen() {
        // [2] ‖ [[8, hash, root], 2, 1000, 7]
        let v2 = concat!(
            "02f84af84308a0",
            "1111111111111111111111111111111111111111111111111111111111111111",
            "a0",
            "2222222222222222222222222222222222222222222222222222222222222222",
            "028203e807"
        );
        let bytes = alloy_primitives::hex::decode(v2).unwrap();
        assert_eq!(sample().encode(), bytes);
        let back = SyncProgress::decode(&bytes).unwrap();
        assert_eq!(back, SyncProgress { heal_roots: Vec::new(), ..sample() });
        // Version 3: the same record under its own version byte, marked.
        let marked = SyncProgress { heal_roots: Vec::new(), marked: true, ..sample() };
        let v3 = [&[3u8][..], &bytes[1..]].concat();
        assert_eq!(marked.encode(), v3);
        assert_eq!(SyncProgress::decode(&v3).unwrap(), marked);
        for root in sample().heal_roots {
            let again = HealRoot::from_entry(&root.key(), root.hash.as_slice()).unwrap();
            assert_eq!(again, root);
        }
        assert!(HealRoot::from_entry(&[0xc0], &[0; 31]).is_err());
    }

    #[test]
    fn unknown_versions_and_garbage_are_errors() {
        let mut bytes = sample().encode();
        bytes[0] = 9;
        assert!(matches!(SyncProgress::decode(&bytes), Err(SyncError::ProgressVersion(9))));
        assert!(SyncProgress::decode(&[]).is_err());
        assert!(SyncProgress::decode(&[1, 0xff]).is_err());
        assert!(SyncProgress::decode(&[2, 0xff]).is_err());
        assert!(SyncProgress::decode(&[3, 0xff]).is_err());
    }
}
