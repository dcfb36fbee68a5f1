//! The `leaf/1` wire messages: plain structs deriving RLP, one per message, plus the few value
//! types they share. Layouts and limits are specified in `docs/leaf-protocol.md`.
//!
//! A request or response struct holds only its own fields: the request id is the transport's,
//! carried by [`super::RequestPair`], whose flat codec writes `[request_id, fields...]` (the
//! `RLP:` layouts below show the message as it is on the wire, id included).

use super::{path::WirePath, rlp_fields};
use alloy_eip2124::ForkId;
use alloy_primitives::{B256, Bytes, U256};
use alloy_rlp::{
    Decodable, Encodable, Header, RlpDecodable, RlpDecodableWrapper, RlpEncodable,
    RlpEncodableWrapper,
};
use bytes::BufMut;

/// What a node serves, as a bit set (RLP: an unsigned integer). Unknown bits are kept and ignored
/// so that later revisions can add services without breaking `leaf/1` peers.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, RlpEncodableWrapper, RlpDecodableWrapper,
)]
pub struct ServeFlags(pub u64);

impl ServeFlags {
    /// Answers `GetChunk` from a complete leafdb.
    pub const ACCOUNTS: Self = Self(1 << 0);
    /// Answers `GetStorageChunk`.
    pub const STORAGE: Self = Self(1 << 1);
    /// Answers `GetNodes`.
    pub const NODES: Self = Self(1 << 2);
    /// Answers `GetCodes`.
    pub const CODES: Self = Self(1 << 3);
    /// Everything a fully synced server offers.
    pub const ALL: Self = Self(Self::ACCOUNTS.0 | Self::STORAGE.0 | Self::NODES.0 | Self::CODES.0);
    /// Nothing: a node that is still syncing and only consumes.
    pub const NONE: Self = Self(0);

    /// Whether every service in `other` is offered.
    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }
}

/// A block as a server sees its head: enough for a client to pick a pivot. It is the whole body of
/// the `NewHead` message and the `head` field of `Status`. RLP: `[number, hash, state_root]`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, RlpEncodable, RlpDecodable)]
pub struct ChainHead {
    /// Block number.
    pub number: u64,
    /// Block hash.
    pub hash: B256,
    /// State root in that block's header.
    pub state_root: B256,
}

/// `NewHead` (0x01): a server's new head, announced as it moves. It is not a request and carries
/// no request id.
pub type NewHead = ChainHead;

/// `Status` (0x00): the handshake each side sends first.
///
/// RLP: `[version, network_id, genesis_hash, [fork_hash, fork_next], [head_number, head_hash,
/// head_state_root], account_estimate, serves]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, RlpEncodable, RlpDecodable)]
pub struct Status {
    /// `leaf` protocol version the sender speaks (1).
    pub version: u8,
    /// Network id of the sender's chain (1 for mainnet).
    pub network_id: u64,
    /// Hash of the sender's genesis block.
    pub genesis_hash: B256,
    /// The sender's current EIP-2124 fork id.
    pub fork_id: ForkId,
    /// The sender's head block, number, hash and state root.
    pub head: ChainHead,
    /// The sender's estimate of the number of accounts in its state (0 if unknown); lets a client
    /// size its chunk depth before the first request.
    pub account_estimate: u64,
    /// What the sender serves.
    pub serves: ServeFlags,
}

/// `GetChunk` (0x02): several account chunks, each every account leaf whose hashed address
/// starts with a prefix. RLP: `[request_id, [prefix, ...], max_bytes]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GetChunk {
    /// Hashed-address prefixes, 0..=64 nibbles each, in the order they are answered; at most
    /// `MAX_CHUNKS_PER_REQUEST`.
    pub prefixes: Vec<WirePath>,
    /// Response size the client accepts; the server caps it at `MAX_RESPONSE_BYTES`. Each chunk
    /// is complete or "too large" against it, and the answer stops before the chunk that would
    /// take it over (the first chunk is always answered).
    pub max_bytes: u64,
}

/// One storage slot of an account. RLP: `[hashed_slot, value]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, RlpEncodable, RlpDecodable)]
pub struct StorageSlot {
    /// keccak256 of the slot key.
    pub hashed_slot: B256,
    /// The slot value (never zero in a well-formed state: zero slots are deleted).
    pub value: U256,
}

/// The storage of one account inside a [`Chunk`].
///
/// RLP: a list of [`StorageSlot`] when inline (the empty list for an account without storage), or
/// an unsigned integer, the slot count, for the "large storage" mark.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AccountStorage {
    /// All slots, in hashed-slot order (at most `MAX_INLINE_STORAGE_SLOTS`).
    Inline(Vec<StorageSlot>),
    /// Too many slots to inline: fetch them with `GetStorageChunk`.
    Large {
        /// Number of slots the server holds for the account (a sizing hint).
        slot_count: u64,
    },
}

impl Encodable for AccountStorage {
    fn encode(&self, out: &mut dyn BufMut) {
        match self {
            Self::Inline(slots) => slots.encode(out),
            Self::Large { slot_count } => slot_count.encode(out),
        }
    }

    fn length(&self) -> usize {
        match self {
            Self::Inline(slots) => slots.length(),
            Self::Large { slot_count } => slot_count.length(),
        }
    }
}

impl Decodable for AccountStorage {
    fn decode(buf: &mut &[u8]) -> alloy_rlp::Result<Self> {
        if is_list(buf)? {
            Ok(Self::Inline(Vec::decode(buf)?))
        } else {
            Ok(Self::Large { slot_count: u64::decode(buf)? })
        }
    }
}

/// One account leaf of a [`Chunk`]: the hashed address, the four fields of the account's RLP and
/// its storage. RLP: `[hashed_address, nonce, balance, storage_root, code_hash, storage]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, RlpEncodable, RlpDecodable)]
pub struct AccountLeaf {
    /// keccak256 of the address: the leaf's key in the account trie.
    pub hashed_address: B256,
    /// Account nonce.
    pub nonce: u64,
    /// Account balance in wei.
    pub balance: U256,
    /// Root of the account's storage trie.
    pub storage_root: B256,
    /// keccak256 of the account's code.
    pub code_hash: B256,
    /// The storage inline, or the "large storage" mark.
    pub storage: AccountStorage,
}

/// Body of a [`Chunk`] or [`StorageChunk`]: the items under the prefix, or "too large".
///
/// RLP: the list of items (possibly empty), or the empty string `0x80` for "too large".
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ChunkContent<T> {
    /// Every item under the prefix, in key order.
    Items(Vec<T>),
    /// The prefix holds more than `max_bytes`: ask for its 16 children instead.
    TooLarge,
}

impl<T: Encodable> Encodable for ChunkContent<T> {
    fn encode(&self, out: &mut dyn BufMut) {
        match self {
            Self::Items(items) => items.encode(out),
            Self::TooLarge => out.put_u8(alloy_rlp::EMPTY_STRING_CODE),
        }
    }

    fn length(&self) -> usize {
        match self {
            Self::Items(items) => items.length(),
            Self::TooLarge => 1,
        }
    }
}

impl<T: Decodable> Decodable for ChunkContent<T> {
    fn decode(buf: &mut &[u8]) -> alloy_rlp::Result<Self> {
        if is_list(buf)? {
            return Ok(Self::Items(Vec::decode(buf)?));
        }
        let mark = Header::decode_bytes(buf, false)?;
        if mark.is_empty() {
            Ok(Self::TooLarge)
        } else {
            Err(alloy_rlp::Error::Custom("chunk content: neither a list nor the too-large mark"))
        }
    }
}

impl<T> ChunkContent<T> {
    /// Number of items (0 for "too large").
    pub fn len(&self) -> usize {
        match self {
            Self::Items(items) => items.len(),
            Self::TooLarge => 0,
        }
    }

    /// Whether there are no items (also true for "too large").
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One chunk of a [`Chunk`]: the account leaves under one requested prefix, read at
/// `head_number`. RLP: `[head_number, content]`.
///
/// Each piece carries its own head, as a [`StoragePiece`] does: a server assembles a batched
/// answer from pieces it cached at different heads, and a client judges each piece by its own
/// claim.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, RlpEncodable, RlpDecodable)]
pub struct AccountPiece {
    /// The server's head number when it read the leaves (lets the client judge staleness).
    pub head_number: u64,
    /// The account leaves under the prefix, or "too large".
    pub content: ChunkContent<AccountLeaf>,
}

/// `Chunk` (0x03): response to [`GetChunk`].
/// RLP: `[request_id, [[head_number, content], ...]]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Chunk {
    /// One piece per requested prefix, in request order. The list may stop early (byte or time
    /// budget): the prefixes after the last piece were not answered.
    pub pieces: Vec<AccountPiece>,
}

/// One storage chunk asked for in [`GetStorageChunk`]: the slots of `account` whose hashed slot
/// starts with `prefix`. RLP: `[account, prefix]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, RlpEncodable, RlpDecodable)]
pub struct StoragePrefix {
    /// Hashed address of the account.
    pub account: B256,
    /// Hashed-slot prefix, 0..=64 nibbles.
    pub prefix: WirePath,
}

/// `GetStorageChunk` (0x04): several storage chunks, each the slots of one account under a
/// prefix. RLP: `[request_id, [[account, prefix], ...], max_bytes]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GetStorageChunk {
    /// The chunks, in the order they are answered; at most `MAX_STORAGE_CHUNKS_PER_REQUEST`.
    pub chunks: Vec<StoragePrefix>,
    /// Response size the client accepts; the server caps it at `MAX_RESPONSE_BYTES`. Each chunk
    /// is complete or "too large" against it, and the answer stops before the chunk that would
    /// take it over (the first chunk is always answered).
    pub max_bytes: u64,
}

/// One chunk of a [`StorageChunk`]: the slots of one requested (account, prefix), read at
/// `head_number`. RLP: `[head_number, content]`.
///
/// Each piece carries its own head: a server assembles a batched answer from pieces it cached at
/// different heads (within its reuse window), and a client judges each piece by its own claim.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, RlpEncodable, RlpDecodable)]
pub struct StoragePiece {
    /// The server's head number when it read the slots.
    pub head_number: u64,
    /// The slots under the prefix, or "too large".
    pub content: ChunkContent<StorageSlot>,
}

/// `StorageChunk` (0x05): response to [`GetStorageChunk`].
/// RLP: `[request_id, [[head_number, content], ...]]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct StorageChunk {
    /// One piece per requested chunk, in request order. The list may stop early (byte or time
    /// budget): the chunks after the last piece were not answered.
    pub pieces: Vec<StoragePiece>,
}

/// Which trie a [`NodeRequest`] addresses.
///
/// RLP: the empty string for the account trie, or the 32-byte hashed address owning a storage
/// trie. Any other length is malformed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TrieOwner {
    /// The account trie.
    Accounts,
    /// The storage trie of the account with this hashed address.
    Storage(B256),
}

impl Encodable for TrieOwner {
    fn encode(&self, out: &mut dyn BufMut) {
        match self {
            Self::Accounts => out.put_u8(alloy_rlp::EMPTY_STRING_CODE),
            Self::Storage(owner) => owner.encode(out),
        }
    }

    fn length(&self) -> usize {
        match self {
            Self::Accounts => 1,
            Self::Storage(owner) => owner.length(),
        }
    }
}

impl Decodable for TrieOwner {
    fn decode(buf: &mut &[u8]) -> alloy_rlp::Result<Self> {
        let bytes = Header::decode_bytes(buf, false)?;
        match bytes.len() {
            0 => Ok(Self::Accounts),
            32 => Ok(Self::Storage(B256::from_slice(bytes))),
            _ => Err(alloy_rlp::Error::Custom("trie owner is neither empty nor 32 bytes")),
        }
    }
}

impl From<TrieOwner> for Option<B256> {
    /// `None` for the account trie, the owning account's hashed address for a storage trie.
    fn from(owner: TrieOwner) -> Self {
        match owner {
            TrieOwner::Accounts => None,
            TrieOwner::Storage(account) => Some(account),
        }
    }
}

impl From<Option<B256>> for TrieOwner {
    /// The account trie for `None`, else the storage trie of that hashed address.
    fn from(owner: Option<B256>) -> Self {
        owner.map_or(Self::Accounts, Self::Storage)
    }
}

/// One node asked for in [`GetNodes`]. RLP: `[owner, path, hash]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, RlpEncodable, RlpDecodable)]
pub struct NodeRequest {
    /// The trie the node belongs to.
    pub owner: TrieOwner,
    /// Path of the node from its trie's root, 0..=64 nibbles.
    pub path: WirePath,
    /// keccak256 of the node's RLP that the client expects; the server returns the node only if
    /// it hashes to this.
    pub hash: B256,
}

/// `GetNodes` (0x06): trie nodes by (owner, path, expected hash).
/// RLP: `[request_id, [[owner, path, hash], ...], max_bytes]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GetNodes {
    /// The nodes, at most `MAX_NODES_PER_REQUEST`.
    pub nodes: Vec<NodeRequest>,
    /// Response size the client accepts; the server caps it at `MAX_RESPONSE_BYTES`.
    pub max_bytes: u64,
}

/// `Nodes` (0x07): response to [`GetNodes`]. RLP: `[request_id, [node, ...]]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Nodes {
    /// One entry per requested node, in request order: the node's RLP, or empty when the server
    /// does not have a node with that hash. The list may stop early (byte budget); missing tail
    /// entries count as empty.
    pub nodes: Vec<Bytes>,
}

/// `GetCodes` (0x08): contract codes by hash. RLP: `[request_id, [code_hash, ...], max_bytes]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GetCodes {
    /// keccak256 of each wanted code, at most `MAX_CODES_PER_REQUEST`.
    pub hashes: Vec<B256>,
    /// Response size the client accepts; the server caps it at `MAX_RESPONSE_BYTES`.
    pub max_bytes: u64,
}

/// `Codes` (0x09): response to [`GetCodes`]. RLP: `[request_id, [code, ...]]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Codes {
    /// One entry per requested hash, in request order: the code, or empty when unknown. The list
    /// may stop early (byte budget).
    pub codes: Vec<Bytes>,
}

/// Whether the next RLP item in `buf` is a list, without consuming it.
fn is_list(buf: &[u8]) -> alloy_rlp::Result<bool> {
    let first = *buf.first().ok_or(alloy_rlp::Error::InputTooShort)?;
    Ok(first >= alloy_rlp::EMPTY_LIST_CODE)
}

impl<T> Default for ChunkContent<T> {
    /// No items: the content of an empty answer.
    fn default() -> Self {
        Self::Items(Vec::new())
    }
}

rlp_fields!(GetChunk { prefixes, max_bytes });
rlp_fields!(Chunk { pieces });
rlp_fields!(GetStorageChunk { chunks, max_bytes });
rlp_fields!(StorageChunk { pieces });
rlp_fields!(GetNodes { nodes, max_bytes });
rlp_fields!(Nodes { nodes });
rlp_fields!(GetCodes { hashes, max_bytes });
rlp_fields!(Codes { codes });
