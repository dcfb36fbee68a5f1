//! The `snap/1` wire messages: plain structs deriving RLP, one per message, with the layouts of
//! go-ethereum's `eth/protocols/snap/protocol.go` (every request carries an id its response
//! echoes).

use alloy_primitives::{B256, Bytes, KECCAK256_EMPTY, U256, b256};
use alloy_rlp::{RlpDecodable, RlpDecodableWrapper, RlpEncodable, RlpEncodableWrapper};

/// Root of the empty trie, keccak256(rlp("")): the storage root of an account without storage.
pub const EMPTY_ROOT_HASH: B256 =
    b256!("56e81f171bcc55a6ff8345e692c0f86e5b48e01b996cadc001622fb5e363b421");

/// `GetAccountRange` (0x00): the accounts of the state trie `root` from `origin` on, up to about
/// `bytes` of response. RLP: `[request_id, root, origin, limit, bytes]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, RlpEncodable, RlpDecodable)]
pub struct GetAccountRange {
    /// Id chosen by the requester, echoed in the response.
    pub request_id: u64,
    /// State root whose accounts are asked for.
    pub root: B256,
    /// Hashed address of the first account wanted.
    pub origin: B256,
    /// Hashed address after which the server may stop (it still sends the first account past it).
    pub limit: B256,
    /// Soft response size in bytes (the server caps it at 2 MiB).
    pub bytes: u64,
}

/// An account in snap's "slim" encoding: the consensus account, with the storage root and the
/// code hash left empty when they are the empty root and the empty code hash.
/// RLP: `[nonce, balance, storage_root or "", code_hash or ""]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, RlpEncodable, RlpDecodable)]
pub struct SlimAccount {
    /// Nonce.
    pub nonce: u64,
    /// Balance in wei.
    pub balance: U256,
    /// Storage root, empty for [`EMPTY_ROOT_HASH`]; otherwise 32 bytes.
    pub storage_root: Bytes,
    /// Code hash, empty for the empty code's hash; otherwise 32 bytes.
    pub code_hash: Bytes,
}

impl SlimAccount {
    /// The slim form of a consensus account.
    pub fn new(nonce: u64, balance: U256, storage_root: B256, code_hash: B256) -> Self {
        let slim = |h: B256, empty: B256| {
            if h == empty { Bytes::new() } else { Bytes::copy_from_slice(h.as_slice()) }
        };
        Self {
            nonce,
            balance,
            storage_root: slim(storage_root, EMPTY_ROOT_HASH),
            code_hash: slim(code_hash, KECCAK256_EMPTY),
        }
    }

    /// The storage root, `None` when the field is neither empty nor 32 bytes.
    pub fn storage_root(&self) -> Option<B256> {
        full_hash(&self.storage_root, EMPTY_ROOT_HASH)
    }

    /// The code hash, `None` when the field is neither empty nor 32 bytes.
    pub fn code_hash(&self) -> Option<B256> {
        full_hash(&self.code_hash, KECCAK256_EMPTY)
    }
}

fn full_hash(field: &[u8], empty: B256) -> Option<B256> {
    match field.len() {
        0 => Some(empty),
        32 => Some(B256::from_slice(field)),
        _ => None,
    }
}

/// One account of an [`AccountRange`]. RLP: `[hash, slim_account]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, RlpEncodable, RlpDecodable)]
pub struct AccountData {
    /// Hashed address: the account's key in the state trie.
    pub hash: B256,
    /// The account in slim encoding.
    pub account: SlimAccount,
}

/// `AccountRange` (0x01): consecutive accounts and the proof of the range's edges (the origin and
/// the last account), or nothing if the server does not have the state.
/// RLP: `[request_id, [[hash, slim_account], ...], [node, ...]]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, RlpEncodable, RlpDecodable)]
pub struct AccountRange {
    /// The request's id.
    pub request_id: u64,
    /// Accounts in increasing hash order.
    pub accounts: Vec<AccountData>,
    /// Trie nodes proving the first (origin) and last edges of the range.
    pub proof: Vec<Bytes>,
}

/// `GetStorageRanges` (0x02): storage slots of the accounts `accounts` in state `root`; `origin`
/// and `limit` (at most 32 bytes each, empty for "from the start" / "to the end") apply to the
/// first account only. RLP: `[request_id, root, [account, ...], origin, limit, bytes]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, RlpEncodable, RlpDecodable)]
pub struct GetStorageRanges {
    /// Id chosen by the requester, echoed in the response.
    pub request_id: u64,
    /// State root the accounts belong to.
    pub root: B256,
    /// Hashed addresses of the accounts whose storage is asked for.
    pub accounts: Vec<B256>,
    /// First hashed slot wanted in the first account (empty: from zero).
    pub origin: Bytes,
    /// Hashed slot after which the server may stop in the first account (empty: to the end).
    pub limit: Bytes,
    /// Soft response size in bytes (the server caps it at 2 MiB).
    pub bytes: u64,
}

/// One storage slot of a [`StorageRanges`]. RLP: `[hash, value_rlp]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, RlpEncodable, RlpDecodable)]
pub struct StorageData {
    /// Hashed slot key.
    pub hash: B256,
    /// The slot value as the trie stores it: the RLP of the integer.
    pub body: Bytes,
}

/// `StorageRanges` (0x03): per account (only those that had slots to send, in request order),
/// its consecutive slots; a proof only when the last range was cut short or did not start at
/// zero. RLP: `[request_id, [[[hash, value], ...], ...], [node, ...]]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, RlpEncodable, RlpDecodable)]
pub struct StorageRanges {
    /// The request's id.
    pub request_id: u64,
    /// Slot lists, one per served account.
    pub slots: Vec<Vec<StorageData>>,
    /// Edge proof of the last slot list, when it is partial.
    pub proof: Vec<Bytes>,
}

/// `GetByteCodes` (0x04): contract codes by hash. RLP: `[request_id, [hash, ...], bytes]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, RlpEncodable, RlpDecodable)]
pub struct GetByteCodes {
    /// Id chosen by the requester, echoed in the response.
    pub request_id: u64,
    /// Code hashes.
    pub hashes: Vec<B256>,
    /// Soft response size in bytes (the server caps it at 2 MiB).
    pub bytes: u64,
}

/// `ByteCodes` (0x05): the codes found, in request order, unknown ones left out.
/// RLP: `[request_id, [code, ...]]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, RlpEncodable, RlpDecodable)]
pub struct ByteCodes {
    /// The request's id.
    pub request_id: u64,
    /// The codes.
    pub codes: Vec<Bytes>,
}

/// One group of a `GetTrieNodes` request: either one compact path in the account trie (`[path]`)
/// or an account hash followed by compact paths in that account's storage trie
/// (`[account, path, ...]`). An empty set is a protocol breach.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, RlpEncodableWrapper, RlpDecodableWrapper)]
pub struct TrieNodePathSet(pub Vec<Bytes>);

/// `GetTrieNodes` (0x06): trie nodes of the state `root` by path.
/// RLP: `[request_id, root, [[path...], ...], bytes]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, RlpEncodable, RlpDecodable)]
pub struct GetTrieNodes {
    /// Id chosen by the requester, echoed in the response.
    pub request_id: u64,
    /// State root the paths start from.
    pub root: B256,
    /// Path sets, account-trie paths alone, storage-trie paths grouped under their account.
    pub paths: Vec<TrieNodePathSet>,
    /// Soft response size in bytes (the server caps it at 2 MiB).
    pub bytes: u64,
}

/// `TrieNodes` (0x07): one entry per served path in request order (empty for a path that leads
/// nowhere), stopping early when a budget is spent. RLP: `[request_id, [node, ...]]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, RlpEncodable, RlpDecodable)]
pub struct TrieNodes {
    /// The request's id.
    pub request_id: u64,
    /// Node RLPs (or empty strings).
    pub nodes: Vec<Bytes>,
}
