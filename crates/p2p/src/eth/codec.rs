//! [`EthMessage`]: an `eth/69` message as leafsync reads it, with every limit checked before
//! decoding, and [`EthError`].

use super::{
    protocol::{MAX_MESSAGE_SIZE, MAX_REQUEST_SIZE, MAX_STATUS_SIZE, ids},
    status::BlockRangeError,
    types::{BlockRangeUpdate, EmptyResponse, GetBlockHeaders, RequestIds, Status},
};
use crate::penalty::MessageFault;
use alloy_rlp::{Decodable, Header};

/// What is wrong with an `eth/69` message from a peer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EthError {
    /// Not an `eth/69` message id (dropped, not a breach).
    #[error("unknown eth/69 message id {0:#04x}")]
    UnknownMessageId(u8),
    /// `NewBlockHashes` or `NewBlock`: pre-merge messages go-ethereum no longer handles (it drops
    /// the peer), and so do we.
    #[error("eth/69 message {0:#04x} is no longer allowed after the merge")]
    Disallowed(u8),
    /// Larger than the message may be; not decoded.
    #[error("eth/69 message {id:#04x} of {size} bytes exceeds its limit of {limit} bytes")]
    MessageTooLarge {
        /// Relative id.
        id: u8,
        /// Payload size.
        size: usize,
        /// Its limit.
        limit: usize,
    },
    /// Not the RLP layout of the message.
    #[error("malformed eth/69 message {id:#04x}: {source}")]
    Malformed {
        /// Relative id.
        id: u8,
        /// The RLP error.
        source: alloy_rlp::Error,
    },
    /// A `BlockRangeUpdate` announcing an impossible range.
    #[error("eth/69 BlockRangeUpdate: {0}")]
    BlockRange(#[from] BlockRangeError),
}

impl MessageFault for EthError {
    /// Only an unknown id is not a breach.
    fn is_protocol_breach(&self) -> bool {
        !matches!(self, Self::UnknownMessageId(_))
    }
}

/// An `eth/69` message as leafsync, a quiet peer, reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EthMessage {
    /// 0x00.
    Status(Status),
    /// `Transactions` (0x02) or `NewPooledTransactionHashes` (0x08): read and ignored; only the
    /// size is checked, nothing is decoded.
    Announcement {
        /// Relative id.
        id: u8,
        /// Payload bytes, which the session charges to the peer's gossip budget.
        size: usize,
    },
    /// 0x03: answered with headers from the execution client, or empty.
    GetBlockHeaders(GetBlockHeaders),
    /// 0x05: answered empty.
    GetBlockBodies(RequestIds),
    /// 0x09: answered empty.
    GetPooledTransactions(RequestIds),
    /// 0x0f: answered empty.
    GetReceipts(RequestIds),
    /// A response (`BlockHeaders`, `BlockBodies`, `PooledTransactions`, `Receipts`). We send no
    /// `eth` requests, so it is unsolicited; only its request id is read, for the caller.
    Response {
        /// Relative id.
        id: u8,
        /// The request id it claims to answer.
        request_id: u64,
        /// Payload bytes, which the session charges to the peer's gossip budget.
        size: usize,
    },
    /// 0x11, validated.
    BlockRangeUpdate(BlockRangeUpdate),
}

/// Largest payload a message with relative id `id` may have; `Err` for ids we refuse.
fn max_payload_size(id: u8) -> Result<usize, EthError> {
    match id {
        ids::STATUS | ids::BLOCK_RANGE_UPDATE => Ok(MAX_STATUS_SIZE),
        ids::GET_BLOCK_HEADERS
        | ids::GET_BLOCK_BODIES
        | ids::GET_POOLED_TRANSACTIONS
        | ids::GET_RECEIPTS => Ok(MAX_REQUEST_SIZE),
        ids::TRANSACTIONS
        | ids::NEW_POOLED_TRANSACTION_HASHES
        | ids::BLOCK_HEADERS
        | ids::BLOCK_BODIES
        | ids::POOLED_TRANSACTIONS
        | ids::RECEIPTS => Ok(MAX_MESSAGE_SIZE),
        ids::NEW_BLOCK_HASHES | ids::NEW_BLOCK => Err(EthError::Disallowed(id)),
        _ => Err(EthError::UnknownMessageId(id)),
    }
}

impl EthMessage {
    /// Decodes the payload of relative id `id`: the id is allowed, the size within its limit
    /// (before anything is read), then exactly one well-formed message.
    pub fn decode(id: u8, payload: &[u8]) -> Result<Self, EthError> {
        let limit = max_payload_size(id)?;
        if payload.len() > limit {
            return Err(EthError::MessageTooLarge { id, size: payload.len(), limit });
        }
        Ok(match id {
            ids::STATUS => Self::Status(decode_exact(id, payload)?),
            ids::BLOCK_RANGE_UPDATE => {
                let update: BlockRangeUpdate = decode_exact(id, payload)?;
                update.validate()?;
                Self::BlockRangeUpdate(update)
            }
            ids::GET_BLOCK_HEADERS => Self::GetBlockHeaders(decode_exact(id, payload)?),
            ids::GET_BLOCK_BODIES => Self::GetBlockBodies(decode_exact(id, payload)?),
            ids::GET_POOLED_TRANSACTIONS => Self::GetPooledTransactions(decode_exact(id, payload)?),
            ids::GET_RECEIPTS => Self::GetReceipts(decode_exact(id, payload)?),
            ids::TRANSACTIONS | ids::NEW_POOLED_TRANSACTION_HASHES => {
                Self::Announcement { id, size: payload.len() }
            }
            _ => Self::Response {
                id,
                request_id: first_field(payload)
                    .map_err(|source| EthError::Malformed { id, source })?,
                size: payload.len(),
            },
        })
    }

    /// Relative id.
    pub fn id(&self) -> u8 {
        match self {
            Self::Status(_) => ids::STATUS,
            Self::Announcement { id, .. } | Self::Response { id, .. } => *id,
            Self::GetBlockHeaders(_) => ids::GET_BLOCK_HEADERS,
            Self::GetBlockBodies(_) => ids::GET_BLOCK_BODIES,
            Self::GetPooledTransactions(_) => ids::GET_POOLED_TRANSACTIONS,
            Self::GetReceipts(_) => ids::GET_RECEIPTS,
            Self::BlockRangeUpdate(_) => ids::BLOCK_RANGE_UPDATE,
        }
    }

    /// The empty answer to a request, as `(relative id, payload)`: `BlockHeaders`,
    /// `BlockBodies`, `PooledTransactions` or `Receipts` with no items. `None` for messages that
    /// are not requests. (Real headers, when the execution client has them, are the caller's.)
    pub fn empty_answer(&self) -> Option<(u8, Vec<u8>)> {
        let (id, request_id) = match self {
            Self::GetBlockHeaders(m) => (ids::BLOCK_HEADERS, m.request_id),
            Self::GetBlockBodies(m) => (ids::BLOCK_BODIES, m.request_id),
            Self::GetPooledTransactions(m) => (ids::POOLED_TRANSACTIONS, m.request_id),
            Self::GetReceipts(m) => (ids::RECEIPTS, m.request_id),
            _ => return None,
        };
        Some((id, alloy_rlp::encode(EmptyResponse { request_id })))
    }
}

/// Exactly one well-formed `T` in the payload of relative id `id`.
fn decode_exact<T: Decodable>(id: u8, payload: &[u8]) -> Result<T, EthError> {
    alloy_rlp::decode_exact(payload).map_err(|source| EthError::Malformed { id, source })
}

/// The first field of a list payload as an integer (a response's request id).
fn first_field(payload: &[u8]) -> alloy_rlp::Result<u64> {
    let mut buf = payload;
    let header = Header::decode(&mut buf)?;
    if !header.list {
        return Err(alloy_rlp::Error::UnexpectedString);
    }
    if header.payload_length != buf.len() {
        return Err(alloy_rlp::Error::UnexpectedLength);
    }
    u64::decode(&mut buf)
}
