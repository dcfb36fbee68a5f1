//! [`Response`]: an answer ready for the wire (relative message id and RLP payload), and the cheap
//! re-encoding that puts a client's request id in front of a cached chunk body.
//!
//! A cached chunk is stored as the RLP of its content (the item list or the "too large" mark)
//! plus its head number, without the request id, which differs per client. Serving it to a
//! client writes a list header, the id and the head number (at most ~25 bytes) and copies the
//! body once: no item is decoded or re-encoded.

use alloy_rlp::{Encodable, Header};
use bytes::{BufMut, Bytes, BytesMut};
use leafsync_p2p::leaf::{LeafError, LeafMessage, protocol::ids};

/// An encoded `leaf/1` response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Relative message id (`Chunk`, `StorageChunk`, `Nodes` or `Codes`).
    pub message_id: u8,
    /// The RLP payload, without the message id.
    pub payload: Bytes,
}

impl Response {
    /// Encodes a typed message.
    pub fn from_message(message: &LeafMessage) -> Self {
        Self { message_id: message.id(), payload: Bytes::from(message.encoded()) }
    }

    /// A `Chunk` from a cached body: `[request_id, head_number, content]`.
    pub fn chunk(request_id: u64, head_number: u64, content_rlp: &[u8]) -> Self {
        Self { message_id: ids::CHUNK, payload: with_id(request_id, head_number, content_rlp) }
    }

    /// A `StorageChunk` from a cached body.
    pub fn storage_chunk(request_id: u64, head_number: u64, content_rlp: &[u8]) -> Self {
        Self {
            message_id: ids::STORAGE_CHUNK,
            payload: with_id(request_id, head_number, content_rlp),
        }
    }

    /// Decodes the response as a client would (with the protocol's limits), for tests and tools.
    pub fn decode(&self) -> Result<LeafMessage, LeafError> {
        LeafMessage::decode(self.message_id, &self.payload)
    }
}

/// `[request_id, head_number, <content_rlp>]` with `content_rlp` copied as it is.
fn with_id(request_id: u64, head_number: u64, content_rlp: &[u8]) -> Bytes {
    let payload_length = request_id.length() + head_number.length() + content_rlp.len();
    let header = Header { list: true, payload_length };
    let mut out = BytesMut::with_capacity(header.length() + payload_length);
    header.encode(&mut out);
    request_id.encode(&mut out);
    head_number.encode(&mut out);
    out.put_slice(content_rlp);
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_primitives::B256;
    use leafsync_p2p::leaf::{Chunk, ChunkContent, StorageChunk, StorageSlot};

    #[test]
    fn cached_body_plus_id_equals_full_encoding() {
        let content = ChunkContent::Items(vec![StorageSlot {
            hashed_slot: B256::repeat_byte(7),
            value: alloy_primitives::U256::from(5u64),
        }]);
        let body = alloy_rlp::encode(&content);
        let typed = StorageChunk { request_id: 1 << 40, head_number: 77, content };
        let r = Response::storage_chunk(1 << 40, 77, &body);
        assert_eq!(r, Response::from_message(&LeafMessage::StorageChunk(typed.clone())));
        assert_eq!(r.decode().unwrap(), LeafMessage::StorageChunk(typed));

        let too_large = alloy_rlp::encode(ChunkContent::<StorageSlot>::TooLarge);
        let r = Response::chunk(0, 0, &too_large);
        let typed = Chunk { request_id: 0, head_number: 0, content: ChunkContent::TooLarge };
        assert_eq!(r.decode().unwrap(), LeafMessage::Chunk(typed));
    }
}
