//! [`RequestPair`]: a request or response with its request id, reth's `RequestPair` shape with
//! `leaf/1`'s flat layout: `[request_id, field_1, field_2, ...]` (the id is one more list item,
//! not a list around the message). [`RlpFields`] is how a message writes and reads its fields
//! without a list header of its own.

use alloy_rlp::{Decodable, Encodable, Header};
use bytes::{BufMut, Bytes, BytesMut};

/// The fields of a message encoded one after the other, without a list header: what follows the
/// request id in a [`RequestPair`].
pub trait RlpFields: Sized {
    /// Encoded length of the fields.
    fn fields_length(&self) -> usize;
    /// Appends the fields to `out`.
    fn encode_fields(&self, out: &mut dyn BufMut);
    /// Reads the fields from the front of `buf`.
    fn decode_fields(buf: &mut &[u8]) -> alloy_rlp::Result<Self>;
}

/// Implements [`RlpFields`] for a struct from its field names, in wire order.
macro_rules! rlp_fields {
    ($ty:ident { $($field:ident),+ $(,)? }) => {
        impl $crate::leaf::RlpFields for $ty {
            fn fields_length(&self) -> usize {
                0 $(+ alloy_rlp::Encodable::length(&self.$field))+
            }

            fn encode_fields(&self, out: &mut dyn bytes::BufMut) {
                $(alloy_rlp::Encodable::encode(&self.$field, out);)+
            }

            fn decode_fields(buf: &mut &[u8]) -> alloy_rlp::Result<Self> {
                Ok(Self { $($field: alloy_rlp::Decodable::decode(buf)?),+ })
            }
        }
    };
}
pub(crate) use rlp_fields;

/// A message with the request id that pairs a response with its request. RLP (flat):
/// `[request_id, ...fields of message]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RequestPair<T> {
    /// Chosen by the client per request, echoed by the server.
    pub request_id: u64,
    /// The request or response.
    pub message: T,
}

impl<T: RlpFields> RequestPair<T> {
    fn payload_length(&self) -> usize {
        self.request_id.length() + self.message.fields_length()
    }
}

impl<T: RlpFields> Encodable for RequestPair<T> {
    fn encode(&self, out: &mut dyn BufMut) {
        Header { list: true, payload_length: self.payload_length() }.encode(out);
        self.request_id.encode(out);
        self.message.encode_fields(out);
    }

    fn length(&self) -> usize {
        let payload_length = self.payload_length();
        payload_length + alloy_rlp::length_of_length(payload_length)
    }
}

impl<T: RlpFields> Decodable for RequestPair<T> {
    fn decode(buf: &mut &[u8]) -> alloy_rlp::Result<Self> {
        let header = Header::decode(buf)?;
        if !header.list {
            return Err(alloy_rlp::Error::UnexpectedString);
        }
        let (mut payload, rest) =
            buf.split_at_checked(header.payload_length).ok_or(alloy_rlp::Error::InputTooShort)?;
        let request_id = u64::decode(&mut payload)?;
        let message = T::decode_fields(&mut payload)?;
        if !payload.is_empty() {
            return Err(alloy_rlp::Error::ListLengthMismatch {
                expected: header.payload_length,
                got: header.payload_length - payload.len(),
            });
        }
        *buf = rest;
        Ok(Self { request_id, message })
    }
}

/// A response already encoded by whoever answered it (the serving side): its relative message id
/// and its fields' RLP without the request id, e.g. a cached chunk body. The session puts the
/// request id in front ([`Self::payload`]) and sends it; nothing is decoded or re-encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedResponse {
    /// Relative message id of the response (`Chunk`, `StorageChunk`, `Nodes` or `Codes`).
    pub id: u8,
    /// The response's fields, RLP-encoded one after the other ([`RlpFields::encode_fields`]).
    pub fields: Bytes,
}

impl EncodedResponse {
    /// Encodes the fields of a typed response.
    pub fn of<T: RlpFields>(id: u8, message: &T) -> Self {
        let mut fields = BytesMut::with_capacity(message.fields_length());
        message.encode_fields(&mut fields);
        Self { id, fields: fields.freeze() }
    }

    /// The wire payload `[request_id, fields...]`: a list header and the id, then the fields
    /// copied as they are.
    pub fn payload(&self, request_id: u64) -> Bytes {
        let payload_length = request_id.length() + self.fields.len();
        let header = Header { list: true, payload_length };
        let mut out = BytesMut::with_capacity(header.length() + payload_length);
        header.encode(&mut out);
        request_id.encode(&mut out);
        out.put_slice(&self.fields);
        out.freeze()
    }
}
