//! The `leaf/1` message kinds, from one table: [`LeafMessage`] (any message, as on the wire),
//! [`LeafRequest`] and [`LeafResponse`] (the four request/response kinds without their request
//! id), the conversions between them, and which response answers which request. Adding a kind is
//! one line of the `leaf_messages!` table (plus its struct in `types.rs` and its limits).

use super::{
    pair::{EncodedResponse, RequestPair},
    protocol::{MAX_REQUEST_MESSAGE_SIZE, MAX_RESPONSE_MESSAGE_SIZE, ids},
    types::{
        Chunk, Codes, GetChunk, GetCodes, GetNodes, GetStorageChunk, NewHead, Nodes, Status,
        StorageChunk,
    },
};
use alloy_rlp::Encodable;
use bytes::BufMut;

/// Generates the message enums and their conversions from `Request(id) => Response(id)` pairs.
macro_rules! leaf_messages {
    ($( $req:ident($req_id:path) => $resp:ident($resp_id:path) ),+ $(,)?) => {
        /// Any `leaf/1` message; requests and responses with their request id.
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub enum LeafMessage {
            /// 0x00, the handshake.
            Status(Status),
            /// 0x01, a server's new head.
            NewHead(NewHead),
            $(
                #[doc = concat!("`", stringify!($req), "`, a request.")]
                $req(RequestPair<$req>),
                #[doc = concat!("`", stringify!($resp), "`, the answer to `", stringify!($req), "`.")]
                $resp(RequestPair<$resp>),
            )+
        }

        /// A `leaf/1` request, without its request id (the session chooses it).
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub enum LeafRequest {
            $(
                #[doc = concat!("`", stringify!($req), "`.")]
                $req($req),
            )+
        }

        /// A `leaf/1` response, the answer to a [`LeafRequest`] of the same kind.
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub enum LeafResponse {
            $(
                #[doc = concat!("`", stringify!($resp), "`.")]
                $resp($resp),
            )+
        }

        /// Largest payload a message with relative id `id` may have, `None` for unknown ids.
        pub fn max_payload_size(id: u8) -> Option<usize> {
            match id {
                ids::STATUS | ids::NEW_HEAD $(| $req_id)+ => Some(MAX_REQUEST_MESSAGE_SIZE),
                $($resp_id)|+ => Some(MAX_RESPONSE_MESSAGE_SIZE),
                _ => None,
            }
        }

        impl LeafMessage {
            /// Relative message id.
            pub fn id(&self) -> u8 {
                match self {
                    Self::Status(_) => ids::STATUS,
                    Self::NewHead(_) => ids::NEW_HEAD,
                    $(Self::$req(_) => $req_id, Self::$resp(_) => $resp_id,)+
                }
            }

            /// The request id of a request or response; `None` for `Status` and `NewHead`.
            pub fn request_id(&self) -> Option<u64> {
                match self {
                    Self::Status(_) | Self::NewHead(_) => None,
                    $(
                        Self::$req(m) => Some(m.request_id),
                        Self::$resp(m) => Some(m.request_id),
                    )+
                }
            }

            /// Whether this is a response.
            pub fn is_response(&self) -> bool {
                matches!(self, $(Self::$resp(_))|+)
            }

            /// Appends the RLP payload (without the message id) to `out`.
            pub fn encode(&self, out: &mut dyn BufMut) {
                match self {
                    Self::Status(m) => m.encode(out),
                    Self::NewHead(m) => m.encode(out),
                    $(Self::$req(m) => m.encode(out), Self::$resp(m) => m.encode(out),)+
                }
            }

            /// Decodes `payload` as the message with relative id `id` (no limits checked);
            /// `None` for an unknown id.
            pub(super) fn decode_rlp(id: u8, payload: &[u8]) -> Option<alloy_rlp::Result<Self>> {
                Some(match id {
                    ids::STATUS => alloy_rlp::decode_exact(payload).map(Self::Status),
                    ids::NEW_HEAD => alloy_rlp::decode_exact(payload).map(Self::NewHead),
                    $(
                        $req_id => alloy_rlp::decode_exact(payload).map(Self::$req),
                        $resp_id => alloy_rlp::decode_exact(payload).map(Self::$resp),
                    )+
                    _ => return None,
                })
            }

            /// The message by its role: handshake, head announcement, request or response.
            pub fn into_role(self) -> MessageRole {
                match self {
                    Self::Status(m) => MessageRole::Status(m),
                    Self::NewHead(m) => MessageRole::NewHead(m),
                    $(
                        Self::$req(RequestPair { request_id, message }) => {
                            MessageRole::Request(RequestPair {
                                request_id,
                                message: LeafRequest::$req(message),
                            })
                        }
                        Self::$resp(RequestPair { request_id, message }) => {
                            MessageRole::Response(RequestPair {
                                request_id,
                                message: LeafResponse::$resp(message),
                            })
                        }
                    )+
                }
            }
        }

        impl From<RequestPair<LeafRequest>> for LeafMessage {
            fn from(RequestPair { request_id, message }: RequestPair<LeafRequest>) -> Self {
                match message {
                    $(LeafRequest::$req(message) => Self::$req(RequestPair { request_id, message }),)+
                }
            }
        }

        impl From<RequestPair<LeafResponse>> for LeafMessage {
            fn from(RequestPair { request_id, message }: RequestPair<LeafResponse>) -> Self {
                match message {
                    $(LeafResponse::$resp(message) => {
                        Self::$resp(RequestPair { request_id, message })
                    })+
                }
            }
        }

        impl LeafRequest {
            /// Relative message id of the request.
            pub fn id(&self) -> u8 {
                match self {
                    $(Self::$req(_) => $req_id,)+
                }
            }

            /// Relative message id of the response that answers it.
            pub fn response_id(&self) -> u8 {
                match self {
                    $(Self::$req(_) => $resp_id,)+
                }
            }

            /// Whether `response` is of the kind that answers this request.
            pub fn is_answered_by(&self, response: &LeafResponse) -> bool {
                matches!((self, response), $((Self::$req(_), LeafResponse::$resp(_)))|+)
            }

            /// The empty answer of the right kind ("I have nothing"): what a server sends when it
            /// cannot answer (the protocol allows incomplete, never wrong, answers).
            pub fn empty_response(&self) -> LeafResponse {
                match self {
                    $(Self::$req(_) => LeafResponse::$resp($resp::default()),)+
                }
            }
        }

        impl LeafResponse {
            /// Relative message id.
            pub fn id(&self) -> u8 {
                match self {
                    $(Self::$resp(_) => $resp_id,)+
                }
            }

            /// The response's fields encoded, ready for a request id to be put in front.
            pub fn encoded(&self) -> EncodedResponse {
                match self {
                    $(Self::$resp(m) => EncodedResponse::of($resp_id, m),)+
                }
            }
        }

        $(
            impl From<$req> for LeafRequest {
                fn from(request: $req) -> Self {
                    Self::$req(request)
                }
            }

            impl From<$resp> for LeafResponse {
                fn from(response: $resp) -> Self {
                    Self::$resp(response)
                }
            }

            impl TryFrom<LeafResponse> for $resp {
                /// A response of another kind, given back.
                type Error = LeafResponse;

                fn try_from(response: LeafResponse) -> Result<Self, LeafResponse> {
                    match response {
                        LeafResponse::$resp(m) => Ok(m),
                        #[allow(unreachable_patterns)]
                        other => Err(other),
                    }
                }
            }
        )+
    };
}

/// A [`LeafMessage`] by its role ([`LeafMessage::into_role`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageRole {
    /// `Status`, the handshake.
    Status(Status),
    /// `NewHead`, a server's new head.
    NewHead(NewHead),
    /// A request with its id.
    Request(RequestPair<LeafRequest>),
    /// A response with the id it echoes.
    Response(RequestPair<LeafResponse>),
}

leaf_messages! {
    GetChunk(ids::GET_CHUNK) => Chunk(ids::CHUNK),
    GetStorageChunk(ids::GET_STORAGE_CHUNK) => StorageChunk(ids::STORAGE_CHUNK),
    GetNodes(ids::GET_NODES) => Nodes(ids::NODES),
    GetCodes(ids::GET_CODES) => Codes(ids::CODES),
}

impl LeafMessage {
    /// The RLP payload (without the message id).
    pub fn encoded(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out);
        out
    }

    /// The request in this message, if it is one.
    pub fn into_request(self) -> Option<RequestPair<LeafRequest>> {
        match self.into_role() {
            MessageRole::Request(request) => Some(request),
            _ => None,
        }
    }

    /// The response in this message, if it is one.
    pub fn into_response(self) -> Option<RequestPair<LeafResponse>> {
        match self.into_role() {
            MessageRole::Response(response) => Some(response),
            _ => None,
        }
    }
}

impl LeafRequest {
    /// The most items a response may hold: the number of requested nodes, codes, account or
    /// storage chunks (the leaves and slots of the chunks are bounded by bytes, checked at
    /// decoding).
    pub fn max_response_items(&self) -> usize {
        match self {
            Self::GetNodes(m) => m.nodes.len(),
            Self::GetCodes(m) => m.hashes.len(),
            Self::GetStorageChunk(m) => m.chunks.len(),
            Self::GetChunk(m) => m.prefixes.len(),
        }
    }
}

impl LeafResponse {
    /// Number of items: account or storage pieces, node or code entries.
    pub fn item_count(&self) -> usize {
        match self {
            Self::Chunk(m) => m.pieces.len(),
            Self::StorageChunk(m) => m.pieces.len(),
            Self::Nodes(m) => m.nodes.len(),
            Self::Codes(m) => m.codes.len(),
        }
    }
}
