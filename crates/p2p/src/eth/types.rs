//! The `eth/69` messages leafsync reads or sends.

use alloy_eip2124::ForkId;
use alloy_primitives::B256;
use alloy_rlp::{Decodable, Encodable, Header, RlpDecodable, RlpEncodable};
use bytes::BufMut;

/// `Status` (0x00), EIP-7642: exactly seven fields.
/// RLP: `[version, network_id, genesis, [fork_hash, fork_next], earliest, latest, latest_hash]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, RlpEncodable, RlpDecodable)]
pub struct Status {
    /// `eth` version (69). geth decodes it as a `uint32`.
    pub version: u32,
    /// Network id (1 for mainnet).
    pub network_id: u64,
    /// Genesis block hash.
    pub genesis: B256,
    /// EIP-2124 fork id at the sender's head.
    pub fork_id: ForkId,
    /// Oldest block whose body and receipts the sender serves.
    pub earliest: u64,
    /// The sender's latest block number.
    pub latest: u64,
    /// The sender's latest block hash.
    pub latest_hash: B256,
}

/// `BlockRangeUpdate` (0x11): the range of blocks the sender serves moved.
/// RLP: `[earliest, latest, latest_hash]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, RlpEncodable, RlpDecodable)]
pub struct BlockRangeUpdate {
    /// Oldest block served.
    pub earliest: u64,
    /// Latest block number.
    pub latest: u64,
    /// Latest block hash.
    pub latest_hash: B256,
}

/// Where a header query starts: a block hash (32-byte string) or a number (integer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HashOrNumber {
    /// By hash.
    Hash(B256),
    /// By number.
    Number(u64),
}

impl Encodable for HashOrNumber {
    fn encode(&self, out: &mut dyn BufMut) {
        match self {
            Self::Hash(h) => h.encode(out),
            Self::Number(n) => n.encode(out),
        }
    }
    fn length(&self) -> usize {
        match self {
            Self::Hash(h) => h.length(),
            Self::Number(n) => n.length(),
        }
    }
}

impl Decodable for HashOrNumber {
    fn decode(buf: &mut &[u8]) -> alloy_rlp::Result<Self> {
        let mut peek = *buf;
        let header = Header::decode(&mut peek)?;
        if header.list {
            return Err(alloy_rlp::Error::UnexpectedList);
        }
        if header.payload_length == 32 {
            Ok(Self::Hash(B256::decode(buf)?))
        } else {
            Ok(Self::Number(u64::decode(buf)?))
        }
    }
}

/// The query of a `GetBlockHeaders`. RLP: `[origin, amount, skip, reverse]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, RlpEncodable, RlpDecodable)]
pub struct HeadersRequest {
    /// First block.
    pub origin: HashOrNumber,
    /// Most headers wanted (we serve at most `MAX_HEADERS_SERVE`).
    pub amount: u64,
    /// Blocks skipped between consecutive headers.
    pub skip: u64,
    /// Towards genesis instead of towards the head.
    pub reverse: bool,
}

/// `GetBlockHeaders` (0x03). RLP: `[request_id, [origin, amount, skip, reverse]]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, RlpEncodable, RlpDecodable)]
pub struct GetBlockHeaders {
    /// Request id, echoed in `BlockHeaders`.
    pub request_id: u64,
    /// The query.
    pub query: HeadersRequest,
}

/// `GetBlockBodies`, `GetReceipts` or `GetPooledTransactions`: a request id and a list of
/// hashes. RLP: `[request_id, [hash, ...]]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, RlpEncodable, RlpDecodable)]
pub struct RequestIds {
    /// Request id, echoed in the response.
    pub request_id: u64,
    /// Block or transaction hashes.
    pub hashes: Vec<B256>,
}

/// An empty answer (`BlockHeaders`, `BlockBodies`, `Receipts`, `PooledTransactions` with no
/// items): the request id and an empty list. RLP: `[request_id, []]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EmptyResponse {
    /// The request's id.
    pub request_id: u64,
}

impl Encodable for EmptyResponse {
    fn encode(&self, out: &mut dyn BufMut) {
        let payload_length = self.request_id.length() + 1;
        Header { list: true, payload_length }.encode(out);
        self.request_id.encode(out);
        out.put_u8(alloy_rlp::EMPTY_LIST_CODE);
    }
    fn length(&self) -> usize {
        let payload_length = self.request_id.length() + 1;
        payload_length + alloy_rlp::length_of_length(payload_length)
    }
}
