//! `eth/69` constants: name, version, message ids and limits (ids as in go-ethereum's
//! `eth/protocols/eth/protocol.go`).

use std::time::Duration;

/// Capability name announced in `Hello`.
pub const PROTOCOL_NAME: &str = "eth";

/// The one `eth` version we speak: 69 (EIP-7642), the oldest geth ≥ 1.17.1 accepts and the one
/// whose `Status` carries a block range instead of total difficulty.
pub const PROTOCOL_VERSION: u64 = 69;

/// Message ids `eth/69` occupies (0x00..=0x11). Capabilities are ordered by name and `eth` sorts
/// first, so it sits at 0x10..=0x21 and the next capability (`leaf` or `snap`) starts at 0x22.
pub const MESSAGE_COUNT: u8 = 18;

/// Relative message ids of `eth/69`.
pub mod ids {
    /// `Status`: the handshake.
    pub const STATUS: u8 = 0x00;
    /// `NewBlockHashes`: pre-merge block announcement; geth ≥ 1.17 no longer handles it (a peer
    /// sending it is dropped), so we never send it and drop a peer that does.
    pub const NEW_BLOCK_HASHES: u8 = 0x01;
    /// `Transactions`: transaction broadcast (read and ignored).
    pub const TRANSACTIONS: u8 = 0x02;
    /// `GetBlockHeaders`.
    pub const GET_BLOCK_HEADERS: u8 = 0x03;
    /// `BlockHeaders`.
    pub const BLOCK_HEADERS: u8 = 0x04;
    /// `GetBlockBodies`.
    pub const GET_BLOCK_BODIES: u8 = 0x05;
    /// `BlockBodies`.
    pub const BLOCK_BODIES: u8 = 0x06;
    /// `NewBlock`: pre-merge block propagation; like [`NEW_BLOCK_HASHES`], disallowed.
    pub const NEW_BLOCK: u8 = 0x07;
    /// `NewPooledTransactionHashes`: transaction announcement (read and ignored).
    pub const NEW_POOLED_TRANSACTION_HASHES: u8 = 0x08;
    /// `GetPooledTransactions`.
    pub const GET_POOLED_TRANSACTIONS: u8 = 0x09;
    /// `PooledTransactions`.
    pub const POOLED_TRANSACTIONS: u8 = 0x0a;
    /// `GetReceipts` (0x0f in eth/69; 0x0b..=0x0e are unused since eth/66).
    pub const GET_RECEIPTS: u8 = 0x0f;
    /// `Receipts`.
    pub const RECEIPTS: u8 = 0x10;
    /// `BlockRangeUpdate`: the peer's available block range moved (EIP-7642).
    pub const BLOCK_RANGE_UPDATE: u8 = 0x11;
}

/// Largest `eth/69` payload accepted (10 MiB), checked before anything is read: go-ethereum's
/// `maxMessageSize`, so nothing geth may send is refused.
pub const MAX_MESSAGE_SIZE: usize = 10 * 1024 * 1024;

/// Largest `Status` or `BlockRangeUpdate` payload (1 KiB): the seven fields of a `Status` take
/// at most ~130 bytes; anything far beyond that is not a status.
pub const MAX_STATUS_SIZE: usize = 1024;

/// Largest request payload decoded (256 KiB): a `GetPooledTransactions` of 4096 hashes (geth's
/// fetcher batches at most 256) is 135 KiB; decoding at most this many bytes of hashes bounds
/// the memory a request can make us use.
pub const MAX_REQUEST_SIZE: usize = 256 * 1024;

/// Most headers we serve for one `GetBlockHeaders` (go-ethereum's `maxHeadersServe`).
pub const MAX_HEADERS_SERVE: u64 = 1024;

/// Time the peer has to complete the handshake: go-ethereum's `handshakeTimeout` (5 s).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// Bytes of `eth/69` transaction gossip (`Transactions`, `NewPooledTransactionHashes`) one peer may
/// send a second on average (1 MiB); requests we answer empty have a budget of their own of the
/// same size ([`EMPTY_ANSWER_COST_BYTES`]). leafsync reads and drops gossip, but each message costs
/// its frame's decryption, MAC and decompression (and an empty answer a frame's encryption too),
/// and without a bound a peer could keep a core busy with them. An honest geth sends far less: full
/// transactions to the square root of its peers in messages of at most ~100 KiB, hashes to the
/// rest, a few to tens of KiB a second on mainnet; it asks bodies, receipts or pooled transactions
/// of a peer only as it syncs from it or after that peer announced them (we announce none). Beyond
/// the budget the peer is disconnected ([`PenaltyReason::GossipFlood`]).
///
/// [`PenaltyReason::GossipFlood`]: crate::peers::PenaltyReason::GossipFlood
pub const GOSSIP_BYTES_PER_SECOND: u64 = 1024 * 1024;

/// What a `GetBlockBodies`, `GetReceipts` or `GetPooledTransactions` we answer empty takes from
/// the peer's budget for such answers ([`GOSSIP_BYTES_PER_SECOND`] a second after a burst of
/// [`GOSSIP_BURST_BYTES`]): its hashes' bytes, at least 1 KiB for the frame read and the frame
/// written: 1,024 small requests a second after a burst of 16,384. Past it the session reads
/// nothing more from the peer until the budget covers the last one (slowed, not refused).
pub const EMPTY_ANSWER_COST_BYTES: u64 = 1024;

/// Bytes of transaction gossip one peer may send at once (16 MiB): a geth announces its whole
/// pool to a new peer (a default pool's ~6,000 hashes are ~250 KB), and bursts of full
/// transactions follow busy blocks.
pub const GOSSIP_BURST_BYTES: u64 = 16 * 1024 * 1024;
