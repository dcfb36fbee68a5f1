//! Decoding a [`LeafMessage`] from its relative id and RLP payload with every limit checked, and
//! [`LeafError`], what can be wrong with a message from a peer.

use super::{
    kinds::{LeafMessage, max_payload_size},
    protocol::{
        MAX_CHUNKS_PER_REQUEST, MAX_CODES_PER_REQUEST, MAX_INLINE_STORAGE_SLOTS,
        MAX_NODES_PER_REQUEST, MAX_STORAGE_CHUNKS_PER_REQUEST, ids,
    },
    types::{AccountStorage, ChunkContent},
};
use crate::{
    penalty::MessageFault,
    rlp_walk::{count_items, list_field, split_item},
};

/// What is wrong with a `leaf/1` message received from a peer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LeafError {
    /// The relative message id is not one of `leaf/1`'s ten ids.
    #[error("unknown leaf/1 message id {0:#04x}")]
    UnknownMessageId(u8),
    /// The payload is larger than that message may ever be; it was not decoded.
    #[error("leaf/1 message {id:#04x} of {size} bytes exceeds its limit of {limit} bytes")]
    MessageTooLarge {
        /// Relative message id.
        id: u8,
        /// Payload size in bytes.
        size: usize,
        /// The limit for this message id.
        limit: usize,
    },
    /// The payload is not the RLP layout of its message (including bad nibble paths, bad trie
    /// owners and trailing bytes).
    #[error("malformed leaf/1 message {id:#04x}: {source}")]
    Malformed {
        /// Relative message id.
        id: u8,
        /// The RLP decoding error.
        source: alloy_rlp::Error,
    },
    /// A list holds more items than the protocol allows.
    #[error("leaf/1 message {id:#04x} lists {count} {what}, more than the limit of {limit}")]
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
}

impl MessageFault for LeafError {
    fn is_protocol_breach(&self) -> bool {
        !matches!(self, Self::UnknownMessageId(_))
    }
}

impl LeafMessage {
    /// Decodes the RLP `payload` of the message with relative id `id`.
    ///
    /// Checks, in this order: the id is known; the payload is within that message's size limit
    /// (before any list is decoded, so a hostile length costs nothing); the item counts of its
    /// bounded lists, read from the RLP list headers alone (before any list is allocated: a
    /// 4 MiB `Nodes` of one-byte entries would otherwise become 4 million 32-byte `Bytes`); the
    /// payload is exactly one well-formed message.
    pub fn decode(id: u8, payload: &[u8]) -> Result<Self, LeafError> {
        let limit = max_payload_size(id).ok_or(LeafError::UnknownMessageId(id))?;
        if payload.len() > limit {
            return Err(LeafError::MessageTooLarge { id, size: payload.len(), limit });
        }
        let malformed = |source| LeafError::Malformed { id, source };
        check_item_counts(id, payload)?;
        let message = Self::decode_rlp(id, payload)
            .ok_or(LeafError::UnknownMessageId(id))?
            .map_err(malformed)?;
        message.check_item_limits()?;
        Ok(message)
    }

    /// Checks every list of a decoded message against its item limit (the same limits as
    /// [`check_item_counts`], kept as a second line of defence).
    fn check_item_limits(&self) -> Result<(), LeafError> {
        let id = self.id();
        let check = |what, count, limit| {
            if count > limit {
                Err(LeafError::TooManyItems { id, what, count, limit })
            } else {
                Ok(())
            }
        };
        match self {
            Self::GetNodes(m) => check("nodes", m.message.nodes.len(), MAX_NODES_PER_REQUEST),
            Self::Nodes(m) => check("nodes", m.message.nodes.len(), MAX_NODES_PER_REQUEST),
            Self::GetCodes(m) => {
                check("code hashes", m.message.hashes.len(), MAX_CODES_PER_REQUEST)
            }
            Self::Codes(m) => check("codes", m.message.codes.len(), MAX_CODES_PER_REQUEST),
            Self::GetChunk(m) => {
                check("account chunks", m.message.prefixes.len(), MAX_CHUNKS_PER_REQUEST)
            }
            Self::Chunk(m) => {
                check("account pieces", m.message.pieces.len(), MAX_CHUNKS_PER_REQUEST)?;
                let leaves = m.message.pieces.iter().flat_map(|piece| match &piece.content {
                    ChunkContent::Items(leaves) => leaves.as_slice(),
                    ChunkContent::TooLarge => &[],
                });
                leaves.into_iter().try_for_each(|leaf| match &leaf.storage {
                    AccountStorage::Inline(slots) => {
                        check("inline storage slots", slots.len(), MAX_INLINE_STORAGE_SLOTS)
                    }
                    AccountStorage::Large { .. } => Ok(()),
                })
            }
            Self::GetStorageChunk(m) => {
                check("storage chunks", m.message.chunks.len(), MAX_STORAGE_CHUNKS_PER_REQUEST)
            }
            Self::StorageChunk(m) => {
                check("storage pieces", m.message.pieces.len(), MAX_STORAGE_CHUNKS_PER_REQUEST)
            }
            Self::Status(_) | Self::NewHead(_) => Ok(()),
        }
    }
}

/// Checks the item counts of the bounded lists of the message with relative id `id` by walking
/// the RLP headers of `payload`, before anything is decoded (review finding M1: decoding first
/// turned a 4 MiB payload into up to 256 MiB of vectors). Walking costs no allocation and one
/// header read per item. A payload whose headers do not parse is malformed.
fn check_item_counts(id: u8, payload: &[u8]) -> Result<(), LeafError> {
    let malformed = |source| LeafError::Malformed { id, source };
    let check = |what, list: Option<&[u8]>, limit| -> Result<(), LeafError> {
        let Some(list) = list else { return Ok(()) };
        let count = count_items(list).map_err(malformed)?;
        if count > limit { Err(LeafError::TooManyItems { id, what, count, limit }) } else { Ok(()) }
    };
    match id {
        // [request_id, [node, ...], ...]
        ids::GET_NODES | ids::NODES => {
            check("nodes", list_field(payload, 1).map_err(malformed)?, MAX_NODES_PER_REQUEST)
        }
        ids::GET_CODES => {
            check("code hashes", list_field(payload, 1).map_err(malformed)?, MAX_CODES_PER_REQUEST)
        }
        ids::CODES => {
            check("codes", list_field(payload, 1).map_err(malformed)?, MAX_CODES_PER_REQUEST)
        }
        // [request_id, [[account, prefix], ...], max_bytes] and [request_id, [[head_number,
        // content], ...]]: the pieces' slots are bounded by bytes, like a chunk's leaves (a slot
        // is >= 35 bytes on the wire and 64 in memory).
        ids::GET_STORAGE_CHUNK => check(
            "storage chunks",
            list_field(payload, 1).map_err(malformed)?,
            MAX_STORAGE_CHUNKS_PER_REQUEST,
        ),
        ids::STORAGE_CHUNK => check(
            "storage pieces",
            list_field(payload, 1).map_err(malformed)?,
            MAX_STORAGE_CHUNKS_PER_REQUEST,
        ),
        // [request_id, [prefix, ...], max_bytes]
        ids::GET_CHUNK => check(
            "account chunks",
            list_field(payload, 1).map_err(malformed)?,
            MAX_CHUNKS_PER_REQUEST,
        ),
        // [request_id, [[head_number, [[hashed_address, nonce, balance, root, code_hash,
        // storage], ...]], ...]]: the pieces are counted first; the leaves themselves are bounded
        // by bytes (each is >= 100 bytes on the wire and ~170 in memory), their inline storage by
        // count.
        ids::CHUNK => {
            let pieces = list_field(payload, 1).map_err(malformed)?;
            check("account pieces", pieces, MAX_CHUNKS_PER_REQUEST)?;
            let mut pieces = pieces.unwrap_or_default();
            while !pieces.is_empty() {
                let (is_list, mut fields) = split_item(&mut pieces).map_err(malformed)?;
                if !is_list {
                    // Not a piece: decoding finds it malformed.
                    continue;
                }
                split_item(&mut fields).map_err(malformed)?;
                let (is_list, mut leaves) = split_item(&mut fields).map_err(malformed)?;
                // Not a list: the "too large" mark (or junk that decoding refuses).
                if is_list {
                    while !leaves.is_empty() {
                        let (_, mut fields) = split_item(&mut leaves).map_err(malformed)?;
                        for _ in 0..5 {
                            split_item(&mut fields).map_err(malformed)?;
                        }
                        let (is_list, storage) = split_item(&mut fields).map_err(malformed)?;
                        let storage = is_list.then_some(storage);
                        check("inline storage slots", storage, MAX_INLINE_STORAGE_SLOTS)?;
                    }
                }
            }
            Ok(())
        }
        _ => Ok(()),
    }
}
