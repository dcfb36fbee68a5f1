//! `leaf/1` constants: the capability's name and version, its message ids and every limit of the
//! protocol. Only constants live here (like go-ethereum's `snap/protocol.go`); the message types
//! are re-exported from [`crate::leaf`]. `docs/leaf-protocol.md` is the normative description; a
//! test keeps the two in agreement.

use std::time::Duration;

/// Capability name announced in the devp2p `Hello` message.
pub const PROTOCOL_NAME: &str = "leaf";

/// Capability version announced in the devp2p `Hello` message and repeated in `Status`.
pub const PROTOCOL_VERSION: u8 = 1;

/// Number of message ids `leaf/1` occupies after its offset (0x00..=0x09). The RLPx layer reserves
/// exactly this many ids for the capability, so the next capability starts at `offset + 10`.
pub const MESSAGE_COUNT: u8 = 10;

/// Relative message ids of `leaf/1` (add the capability offset for the wire id).
pub mod ids {
    /// `Status`: the handshake, sent once by both sides before anything else.
    pub const STATUS: u8 = 0x00;
    /// `NewHead`: a server announces its new head as it moves.
    pub const NEW_HEAD: u8 = 0x01;
    /// `GetChunk`: request the account leaves under several hashed-key prefixes.
    pub const GET_CHUNK: u8 = 0x02;
    /// `Chunk`: response to `GetChunk`, one piece per requested prefix.
    pub const CHUNK: u8 = 0x03;
    /// `GetStorageChunk`: request the storage slots of several accounts, each under a prefix.
    pub const GET_STORAGE_CHUNK: u8 = 0x04;
    /// `StorageChunk`: response to `GetStorageChunk`, one piece per requested chunk.
    pub const STORAGE_CHUNK: u8 = 0x05;
    /// `GetNodes`: request trie nodes by (owner, path, expected hash).
    pub const GET_NODES: u8 = 0x06;
    /// `Nodes`: response to `GetNodes`.
    pub const NODES: u8 = 0x07;
    /// `GetCodes`: request contract bytecodes by hash.
    pub const GET_CODES: u8 = 0x08;
    /// `Codes`: response to `GetCodes`.
    pub const CODES: u8 = 0x09;
}

/// Upper bound a server applies to any client's `max_bytes` (2 MiB). Large enough that a chunk
/// round trip is dominated by transfer rather than latency on a 100 Mbit/s link with 100 ms
/// RTT (~0.17 s of transfer), small enough that one response never monopolises the connection
/// for long or needs more than one 16 MiB RLPx frame. Same order as geth's snap soft limit.
pub const MAX_RESPONSE_BYTES: u64 = 2 * 1024 * 1024;

/// Largest encoded message payload accepted for a response (4 MiB), checked before any list is
/// decoded. Responses stop at [`MAX_RESPONSE_BYTES`] but may exceed it by the one item that
/// crossed the limit (an account leaf with up to [`MAX_INLINE_STORAGE_SLOTS`] slots, a trie node,
/// or a contract code); doubling the cap leaves room for that and for RLP overhead.
pub const MAX_RESPONSE_MESSAGE_SIZE: usize = 4 * 1024 * 1024;

/// Largest encoded message payload accepted for `Status`, `NewHead` and every request (64 KiB),
/// checked before decoding. The largest legal request, a `GetNodes` with
/// [`MAX_NODES_PER_REQUEST`] entries of 32-byte owner, 33-byte compact path and 32-byte hash, is
/// about 38 KiB; anything beyond 64 KiB cannot be a legal request.
pub const MAX_REQUEST_MESSAGE_SIZE: usize = 64 * 1024;

/// Maximum number of nibbles in a chunk prefix or a trie-node path: a hashed key has 64 nibbles,
/// so no trie path can be longer.
pub const MAX_PREFIX_NIBBLES: usize = 64;

/// Maximum number of trie nodes a client may ask for in one `GetNodes` (and a server may return).
/// Healing nodes average ~500 bytes, so 384 nodes are ~190 KiB, well under
/// [`MAX_RESPONSE_BYTES`], while keeping a server's hash-checking work per request bounded
/// (go-ethereum's snap heal uses the same batch size).
pub const MAX_NODES_PER_REQUEST: usize = 384;

/// Maximum number of code hashes in one `GetCodes` (and codes in one `Codes`). Most contract codes
/// are a few KiB, so 1024 of them usually fill [`MAX_RESPONSE_BYTES`]; a bigger batch would only
/// make the request larger without making the response bigger.
pub const MAX_CODES_PER_REQUEST: usize = 1024;

/// Maximum number of prefixes in one `GetChunk` (and pieces in one `Chunk`). Account chunks
/// are sized by the skeleton depth to 40–100% of a client's chunk target, so a 2 MiB answer
/// holds a few of them; 256 leave room for the small children of a split chunk and for a state
/// much smaller than its estimate. The request stays under 9 KiB (a prefix is at most 34
/// bytes), and each piece is a cached chunk, so a server's work per request is bounded by its
/// byte and time budgets, not by this count.
pub const MAX_CHUNKS_PER_REQUEST: usize = 256;

/// Maximum number of (account, prefix) chunks in one `GetStorageChunk` (and pieces in one
/// `StorageChunk`). A "large storage" is above its server's inline limit (64 KiB by default,
/// 10 KiB in the seed), so a 1–2 MiB answer holds up to ~30 (~200) whole storages; 256 leave room
/// for small sub-chunks of split tries. The request stays under
/// 18 KiB (an entry is at most 69 bytes: 33 for the account, 34 for the prefix, 2 of headers),
/// and each piece is a cached chunk, so a server's work per request is bounded by its byte and
/// time budgets, not by this count.
pub const MAX_STORAGE_CHUNKS_PER_REQUEST: usize = 256;

/// Blocks a chunk piece's `head_number` may lie behind the head its server announced when it
/// was asked: a server may hand out a piece it read and cached that long ago (16 blocks, ~3
/// minutes on mainnet; the client heals what changed since). A server never caches longer, and
/// a client takes a differing piece that claims an older head for a lie.
pub const MAX_PIECE_AGE_BLOCKS: u64 = 16;

/// Largest number of storage slots a server puts inline in an account leaf; an account with more
/// slots is sent with a "large storage" mark and fetched with `GetStorageChunk`. 4096 slots are at
/// most ~280 KiB encoded, a quarter of a default 1 MiB chunk, and all but a few hundred
/// thousandths of contracts (which have fewer slots) arrive with their account in one round
/// trip: a large storage costs the client a request and table files of its own.
pub const MAX_INLINE_STORAGE_SLOTS: usize = 4096;

/// Maximum number of requests a client may have outstanding at one peer. Enough to keep a fast
/// peer busy over a high-latency link (16 x 2 MiB = 32 MiB in flight), small enough that one
/// client cannot make a server queue unbounded work. Requests beyond it are a protocol breach.
pub const MAX_IN_FLIGHT_REQUESTS: usize = 16;

/// Time a peer has to answer a request before it is counted as timed out (and penalised). 2 MiB
/// at 2 Mbit/s is ~8.4 s; a slower peer is not worth waiting for and its request is re-sent
/// elsewhere.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Time a peer has to send its `Status` after the RLPx session is up. The message is tiny; geth
/// uses the same handshake timeout for `eth`.
pub const STATUS_TIMEOUT: Duration = Duration::from_secs(5);
