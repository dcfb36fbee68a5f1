//! `snap/1` constants: the capability's name and version, its message ids and every limit we
//! apply. Only constants live here (as in go-ethereum's `eth/protocols/snap/protocol.go`).

use std::time::Duration;

/// Capability name announced in the devp2p `Hello` message.
pub const PROTOCOL_NAME: &str = "snap";

/// Capability version: `snap/1`, the version every geth from v1.10 serves (snap/2 is behind a
/// feature flag in geth and not spoken here).
pub const PROTOCOL_VERSION: u64 = 1;

/// Number of message ids `snap/1` occupies after its offset (0x00..=0x07). Capabilities are
/// sorted by name, so beside `eth/69` (18 ids from 0x10) snap's ids start at 0x22; when `leaf/1`
/// is shared too it sits between them and snap starts at `0x22 + leaf::protocol::MESSAGE_COUNT`.
pub const MESSAGE_COUNT: u8 = 8;

/// Relative message ids of `snap/1` (add the capability offset for the wire id).
pub mod ids {
    /// `GetAccountRange`: accounts of a state trie from an origin hash, with edge proofs.
    pub const GET_ACCOUNT_RANGE: u8 = 0x00;
    /// `AccountRange`: response to `GetAccountRange`.
    pub const ACCOUNT_RANGE: u8 = 0x01;
    /// `GetStorageRanges`: storage slots of one or more accounts.
    pub const GET_STORAGE_RANGES: u8 = 0x02;
    /// `StorageRanges`: response to `GetStorageRanges`.
    pub const STORAGE_RANGES: u8 = 0x03;
    /// `GetByteCodes`: contract codes by hash.
    pub const GET_BYTE_CODES: u8 = 0x04;
    /// `ByteCodes`: response to `GetByteCodes`.
    pub const BYTE_CODES: u8 = 0x05;
    /// `GetTrieNodes`: trie nodes by compact path, grouped per account.
    pub const GET_TRIE_NODES: u8 = 0x06;
    /// `TrieNodes`: response to `GetTrieNodes`.
    pub const TRIE_NODES: u8 = 0x07;
}

/// Server cap on any request's byte budget (2 MiB): go-ethereum's `softResponseLimit`. A response
/// stops once it passes the budget, so it exceeds it by at most one item (plus proofs).
pub const SOFT_RESPONSE_LIMIT: u64 = 2 * 1024 * 1024;

/// Largest payload accepted for any `snap/1` message (10 MiB), checked before decoding:
/// go-ethereum's `maxMessageSize`, so that every response a geth may legally send is accepted.
pub const MAX_MESSAGE_SIZE: usize = 10 * 1024 * 1024;

/// Largest payload accepted for a request (512 KiB), checked before decoding. go-ethereum's
/// syncer keeps its requests under `maxRequestSize` (512 KiB); nothing larger is a real request.
pub const MAX_REQUEST_MESSAGE_SIZE: usize = 512 * 1024;

/// Most account hashes one `GetStorageRanges` may name. geth's syncer batches at most
/// `maxStorageSetRequestCount` (512 KiB / 1024 = 512) accounts; four times that leaves room for
/// other clients while bounding the work list a request can make us allocate.
pub const MAX_STORAGE_ACCOUNTS_PER_REQUEST: usize = 2048;

/// Most code hashes one `GetByteCodes` may name: 4096, four times what a server serves
/// ([`MAX_CODE_LOOKUPS`]); the rest of a longer list is ignored by geth and by us, a list past
/// this bound is refused.
pub const MAX_CODE_HASHES_PER_REQUEST: usize = 4096;

/// Most codes a server looks up for one request (go-ethereum's `maxCodeLookups`): bounds disk
/// reads per request. Also the most codes a `ByteCodes` response may carry.
pub const MAX_CODE_LOOKUPS: usize = 1024;

/// Most trie nodes a server loads for one `GetTrieNodes` (go-ethereum's `maxTrieNodeLookups`).
pub const MAX_TRIE_NODE_LOOKUPS: usize = 1024;

/// Most paths (over all path sets, account hashes included) in one `GetTrieNodes`: geth's syncer
/// asks for at most `maxTrieRequestCount` (1024) nodes; 4096 leaves room and bounds allocation.
/// It is also the most entries a `TrieNodes` response may carry (one per requested path at most).
pub const MAX_TRIE_PATHS_PER_REQUEST: usize = 4096;

/// Longest path element accepted in a `GetTrieNodes` path set (64 bytes). A compact path is at
/// most 33 bytes and an account hash 32; geth accepts longer ones and answers them empty (its
/// conformance suite sends a 54-byte path), so we accept up to 64 bytes and refuse beyond.
pub const MAX_TRIE_PATH_BYTES: usize = 64;

/// Longest slot value in a `StorageRanges` (33 bytes): the RLP of a 256-bit integer, a one-byte
/// header and 32 bytes.
pub const MAX_SLOT_BODY_BYTES: usize = 33;

/// Most proof nodes a range response may carry: go-ethereum refuses a response with more than
/// 128 (two edge paths of at most 64 nodes each).
pub const MAX_PROOF_NODES: usize = 128;

/// Most accounts one `AccountRange` may carry. geth counts an account as its 32-byte hash plus
/// its slim encoding (at least 5 bytes) and stops once past [`SOFT_RESPONSE_LIMIT`], so its
/// answers hold at most ~56,700; 65,536 accepts them and bounds decoding to a few MiB.
pub const MAX_ACCOUNTS_PER_RESPONSE: usize = 65_536;

/// Most storage slots (over all accounts) one `StorageRanges` may carry. geth cuts a storage
/// answer at the budget plus 10 % slack (at most 2.2 MiB) and counts a slot as at least 33 bytes,
/// so its answers hold at most ~69,900 slots; 131,072 accepts them with room and bounds decoding
/// to ~10 MiB of memory.
pub const MAX_SLOTS_PER_RESPONSE: usize = 131_072;

/// Longest time a server spends on one query before answering with what it has (5 s):
/// go-ethereum's `maxTrieNodeTimeSpent`. A longer query would likely time out at the requester,
/// wasting the work; we apply it to every query, not only trie nodes.
pub const MAX_QUERY_TIME: Duration = Duration::from_secs(5);

/// The ratio by which a storage response may pass the byte budget to finish the account it is
/// serving rather than cut it (and prove it): go-ethereum's `stateLookupSlack` (10 %).
pub const STATE_LOOKUP_SLACK_PERCENT: u64 = 10;
