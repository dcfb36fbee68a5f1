//! [`SnapMessage`]: one `snap/1` message of any kind, decoded from its relative id and RLP payload
//! with every limit checked first, and [`SnapError`], what can be wrong with one from a peer.

use super::{
    kinds::{SnapMessage, max_payload_size},
    protocol::{
        MAX_ACCOUNTS_PER_RESPONSE, MAX_CODE_HASHES_PER_REQUEST, MAX_CODE_LOOKUPS, MAX_PROOF_NODES,
        MAX_SLOT_BODY_BYTES, MAX_SLOTS_PER_RESPONSE, MAX_STORAGE_ACCOUNTS_PER_REQUEST,
        MAX_TRIE_PATH_BYTES, MAX_TRIE_PATHS_PER_REQUEST, ids,
    },
};
use crate::{
    penalty::MessageFault,
    rlp_walk::{count_items, list_field, split_item},
};

/// What is wrong with a `snap/1` message received from a peer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapError {
    /// The relative message id is not one of `snap/1`'s eight ids.
    #[error("unknown snap/1 message id {0:#04x}")]
    UnknownMessageId(u8),
    /// The payload is larger than that message may ever be; it was not decoded.
    #[error("snap/1 message {id:#04x} of {size} bytes exceeds its limit of {limit} bytes")]
    MessageTooLarge {
        /// Relative message id.
        id: u8,
        /// Payload size in bytes.
        size: usize,
        /// The limit for this message id.
        limit: usize,
    },
    /// The payload is not the RLP layout of its message (including trailing bytes).
    #[error("malformed snap/1 message {id:#04x}: {source}")]
    Malformed {
        /// Relative message id.
        id: u8,
        /// The RLP decoding error.
        source: alloy_rlp::Error,
    },
    /// A list holds more items than we accept.
    #[error("snap/1 message {id:#04x} lists {count} {what}, more than the limit of {limit}")]
    TooManyItems {
        /// Relative message id.
        id: u8,
        /// What was counted.
        what: &'static str,
        /// How many there were.
        count: usize,
        /// The limit.
        limit: usize,
    },
    /// A field has a length its type forbids (a slot origin over 32 bytes, a slim account's
    /// root or code hash neither empty nor 32 bytes, a trie path over the limit, a slot value
    /// over 33 bytes).
    #[error("snap/1 message {id:#04x}: {what} has {len} bytes")]
    BadLength {
        /// Relative message id.
        id: u8,
        /// Which field.
        what: &'static str,
        /// Its length.
        len: usize,
    },
    /// A `GetTrieNodes` path set is empty (go-ethereum drops such a peer).
    #[error("snap/1 GetTrieNodes: path set {index} is empty")]
    EmptyPathSet {
        /// Position of the set in the request.
        index: usize,
    },
}

impl MessageFault for SnapError {
    fn is_protocol_breach(&self) -> bool {
        !matches!(self, Self::UnknownMessageId(_))
    }
}

impl SnapMessage {
    /// Decodes the RLP `payload` of the message with relative id `id`.
    ///
    /// Checks, in this order: the id is known; the payload is within that message's size limit;
    /// the item counts of its lists, read from the RLP headers alone (nothing is allocated
    /// before they pass); the payload is exactly one well-formed message; field lengths.
    pub fn decode(id: u8, payload: &[u8]) -> Result<Self, SnapError> {
        let limit = max_payload_size(id).ok_or(SnapError::UnknownMessageId(id))?;
        if payload.len() > limit {
            return Err(SnapError::MessageTooLarge { id, size: payload.len(), limit });
        }
        check_item_counts(id, payload)?;
        let message = Self::decode_rlp(id, payload)
            .ok_or(SnapError::UnknownMessageId(id))?
            .map_err(|source| SnapError::Malformed { id, source })?;
        message.check_fields()?;
        Ok(message)
    }

    /// The RLP payload (without the message id).
    pub fn encoded(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out);
        out
    }

    /// Field lengths the RLP layout alone does not bound.
    fn check_fields(&self) -> Result<(), SnapError> {
        let id = self.id();
        let bad = |what, len| SnapError::BadLength { id, what, len };
        match self {
            Self::GetStorageRanges(m) => {
                if m.origin.len() > 32 {
                    return Err(bad("slot origin", m.origin.len()));
                }
                if m.limit.len() > 32 {
                    return Err(bad("slot limit", m.limit.len()));
                }
            }
            Self::AccountRange(m) => {
                for a in &m.accounts {
                    if a.account.storage_root().is_none() {
                        return Err(bad("slim storage root", a.account.storage_root.len()));
                    }
                    if a.account.code_hash().is_none() {
                        return Err(bad("slim code hash", a.account.code_hash.len()));
                    }
                }
            }
            Self::GetTrieNodes(m) => {
                for (index, set) in m.paths.iter().enumerate() {
                    if set.0.is_empty() {
                        return Err(SnapError::EmptyPathSet { index });
                    }
                    if let Some(p) = set.0.iter().find(|p| p.len() > MAX_TRIE_PATH_BYTES) {
                        return Err(bad("trie path", p.len()));
                    }
                }
            }
            Self::StorageRanges(m) => {
                // A slot value is the RLP of a 256-bit integer: at most 33 bytes.
                let longest = m.slots.iter().flatten().map(|s| s.body.len()).max();
                if let Some(len) = longest.filter(|len| *len > MAX_SLOT_BODY_BYTES) {
                    return Err(bad("slot value", len));
                }
            }
            Self::GetAccountRange(_)
            | Self::GetByteCodes(_)
            | Self::ByteCodes(_)
            | Self::TrieNodes(_) => {}
        }
        Ok(())
    }
}

/// Checks the item counts of the bounded lists of message `id` by walking the RLP headers of
/// `payload` before anything is decoded (a 10 MiB response of one-byte items would otherwise
/// become millions of allocations).
fn check_item_counts(id: u8, payload: &[u8]) -> Result<(), SnapError> {
    let malformed = |source| SnapError::Malformed { id, source };
    let check = |what, count: usize, limit| -> Result<(), SnapError> {
        if count > limit { Err(SnapError::TooManyItems { id, what, count, limit }) } else { Ok(()) }
    };
    let count_field = |index| -> Result<usize, SnapError> {
        match list_field(payload, index).map_err(malformed)? {
            Some(list) => count_items(list).map_err(malformed),
            None => Ok(0),
        }
    };
    match id {
        // [id, root, [account, ...], origin, limit, bytes]
        ids::GET_STORAGE_RANGES => {
            check("accounts", count_field(2)?, MAX_STORAGE_ACCOUNTS_PER_REQUEST)
        }
        // [id, [hash, ...], bytes]
        ids::GET_BYTE_CODES => check("code hashes", count_field(1)?, MAX_CODE_HASHES_PER_REQUEST),
        // [id, root, [[path, ...], ...], bytes]: every path counts.
        ids::GET_TRIE_NODES => {
            let Some(mut sets) = list_field(payload, 2).map_err(malformed)? else {
                return Ok(());
            };
            let mut total = 0usize;
            while !sets.is_empty() {
                let (_, set) = split_item(&mut sets).map_err(malformed)?;
                total += count_items(set).map_err(malformed)?.max(1);
                check("trie paths", total, MAX_TRIE_PATHS_PER_REQUEST)?;
            }
            Ok(())
        }
        // [id, [[hash, account], ...], [node, ...]]
        ids::ACCOUNT_RANGE => {
            check("accounts", count_field(1)?, MAX_ACCOUNTS_PER_RESPONSE)?;
            check("proof nodes", count_field(2)?, MAX_PROOF_NODES)
        }
        // [id, [[[hash, value], ...], ...], [node, ...]]
        ids::STORAGE_RANGES => {
            if let Some(mut lists) = list_field(payload, 1).map_err(malformed)? {
                let (mut accounts, mut slots) = (0usize, 0usize);
                while !lists.is_empty() {
                    let (_, list) = split_item(&mut lists).map_err(malformed)?;
                    accounts += 1;
                    slots += count_items(list).map_err(malformed)?;
                    check("slot lists", accounts, MAX_STORAGE_ACCOUNTS_PER_REQUEST)?;
                    check("slots", slots, MAX_SLOTS_PER_RESPONSE)?;
                }
            }
            check("proof nodes", count_field(2)?, MAX_PROOF_NODES)
        }
        // [id, [code, ...]]
        ids::BYTE_CODES => check("codes", count_field(1)?, MAX_CODE_LOOKUPS),
        // [id, [node, ...]]
        ids::TRIE_NODES => check("trie nodes", count_field(1)?, MAX_TRIE_PATHS_PER_REQUEST),
        _ => Ok(()),
    }
}
