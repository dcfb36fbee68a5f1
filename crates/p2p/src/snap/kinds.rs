//! The `snap/1` message kinds, from one table: [`SnapMessage`] (any message, as on the wire),
//! its ids, request ids, encoding, which response answers which request and the empty answer
//! of each request. Like `leaf_messages!` for `leaf/1`; adding a kind is one line of the
//! `snap_messages!` table (plus its struct in `types.rs` and its limits in `codec.rs`).

use super::{
    protocol::{MAX_MESSAGE_SIZE, MAX_REQUEST_MESSAGE_SIZE, ids},
    types::{
        AccountRange, ByteCodes, GetAccountRange, GetByteCodes, GetStorageRanges, GetTrieNodes,
        StorageRanges, TrieNodes,
    },
};
use alloy_rlp::Encodable;
use bytes::BufMut;

/// Generates [`SnapMessage`] and its per-kind methods from `Request(id) => Response(id)` pairs.
/// Every `snap/1` message carries its request id as its first field.
macro_rules! snap_messages {
    ($( $req:ident($req_id:path) => $resp:ident($resp_id:path) ),+ $(,)?) => {
        /// Any `snap/1` message.
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub enum SnapMessage {
            $(
                #[doc = concat!("`", stringify!($req), "`, a request.")]
                $req($req),
                #[doc = concat!("`", stringify!($resp), "`, the answer to `", stringify!($req), "`.")]
                $resp($resp),
            )+
        }

        /// Largest payload a message with relative id `id` may have, `None` for unknown ids.
        pub fn max_payload_size(id: u8) -> Option<usize> {
            match id {
                $($req_id)|+ => Some(MAX_REQUEST_MESSAGE_SIZE),
                $($resp_id)|+ => Some(MAX_MESSAGE_SIZE),
                _ => None,
            }
        }

        impl SnapMessage {
            /// Relative message id.
            pub fn id(&self) -> u8 {
                match self {
                    $(Self::$req(_) => $req_id, Self::$resp(_) => $resp_id,)+
                }
            }

            /// The request id the message carries.
            pub fn request_id(&self) -> u64 {
                match self {
                    $(Self::$req(m) => m.request_id, Self::$resp(m) => m.request_id,)+
                }
            }

            /// The message with its request id replaced by `request_id`.
            pub fn with_request_id(mut self, request_id: u64) -> Self {
                match &mut self {
                    $(
                        Self::$req(m) => m.request_id = request_id,
                        Self::$resp(m) => m.request_id = request_id,
                    )+
                }
                self
            }

            /// Whether this is a response.
            pub fn is_response(&self) -> bool {
                matches!(self, $(Self::$resp(_))|+)
            }

            /// Whether `response` is of the kind that answers this request (ids and content
            /// aside).
            pub fn is_answered_by(&self, response: &Self) -> bool {
                matches!((self, response), $((Self::$req(_), Self::$resp(_)))|+)
            }

            /// The empty answer to a request, with its request id: no accounts, slots, codes or
            /// nodes and no proof (what a server without the state sends, and what snap/1
            /// clients read as "no state for this root"). `None` for a response.
            pub fn empty_answer(&self) -> Option<Self> {
                match self {
                    $(
                        Self::$req(m) => {
                            Some(Self::$resp($resp { request_id: m.request_id, ..Default::default() }))
                        }
                    )+
                    _ => None,
                }
            }

            /// Appends the RLP payload (without the message id) to `out`.
            pub fn encode(&self, out: &mut dyn BufMut) {
                match self {
                    $(Self::$req(m) => m.encode(out), Self::$resp(m) => m.encode(out),)+
                }
            }

            /// Decodes `payload` as the message with relative id `id` (no limits checked);
            /// `None` for an unknown id.
            pub(super) fn decode_rlp(id: u8, payload: &[u8]) -> Option<alloy_rlp::Result<Self>> {
                Some(match id {
                    $(
                        $req_id => alloy_rlp::decode_exact(payload).map(Self::$req),
                        $resp_id => alloy_rlp::decode_exact(payload).map(Self::$resp),
                    )+
                    _ => return None,
                })
            }
        }
    };
}

snap_messages! {
    GetAccountRange(ids::GET_ACCOUNT_RANGE) => AccountRange(ids::ACCOUNT_RANGE),
    GetStorageRanges(ids::GET_STORAGE_RANGES) => StorageRanges(ids::STORAGE_RANGES),
    GetByteCodes(ids::GET_BYTE_CODES) => ByteCodes(ids::BYTE_CODES),
    GetTrieNodes(ids::GET_TRIE_NODES) => TrieNodes(ids::TRIE_NODES),
}
