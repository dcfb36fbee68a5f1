//! What the network tells the rest of the program: [`NetworkEvent`]s, [`PeerInfo`].

use crate::{
    PeerId, PenaltyClass, eth,
    leaf::{ChainHead, Status},
    p2pstream::DisconnectReason,
    requests::ResponseViolation,
};
use std::net::SocketAddr;

/// Capacity of the event broadcast channel. Subscribers that fall further behind miss the oldest
/// events (`RecvError::Lagged`) instead of slowing the peer manager down; 1024 events are minutes
/// of activity for a node with 75 peers announcing a head every 12 s.
pub const EVENT_CHANNEL_CAPACITY: usize = 1024;

/// Unique id of one session (a peer may reconnect; events of an old session must not touch the
/// new one).
pub(crate) type SessionId = u64;

/// Who opened a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// The peer dialed us.
    Inbound,
    /// We dialed the peer.
    Outbound,
}

/// Why a peer was penalised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PenaltyReason {
    /// One of our requests timed out.
    Timeout,
    /// A response came after its request's timeout.
    LateResponse,
    /// A response whose id matches no request we sent.
    UnsolicitedResponse,
    /// A response of the wrong type, or with more items than requested.
    InvalidResponse(ResponseViolation),
    /// More than `MAX_IN_FLIGHT_REQUESTS` of its requests unanswered at once.
    RequestFlood,
    /// More `eth/69` transaction gossip than its budget allows (`GOSSIP_BYTES_PER_SECOND`, after
    /// a burst of `GOSSIP_BURST_BYTES`).
    GossipFlood,
    /// A message id `leaf/1` does not define.
    UnknownMessage,
    /// An implausible `NewHead` (zero hash, absurd number, deep rewind).
    InvalidHead,
    /// A malformed or oversized message, or another breach of protocol.
    Breach,
    /// The `Status` handshake failed (mismatch or timeout).
    Handshake,
    /// Reported by the program through [`super::NetworkHandle::report`].
    Reported,
}

/// Something that happened in the network.
// `PeerConnected` carries both Statuses (~430 bytes): the broadcast ring of
// `EVENT_CHANNEL_CAPACITY` slots costs ~440 KiB, and subscribers match on the fields directly.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum NetworkEvent {
    /// A session was established.
    PeerConnected {
        /// The peer.
        peer: PeerId,
        /// Its address.
        addr: SocketAddr,
        /// Who dialed.
        direction: Direction,
        /// Its `leaf/1` Status, if the session speaks `leaf/1`.
        leaf: Option<Status>,
        /// Its `eth/69` Status and range, if the session speaks `eth/69`.
        eth: Option<EthPeerInfo>,
        /// Whether the session speaks `snap/1`.
        snap: bool,
    },
    /// A session ended.
    PeerDisconnected {
        /// The peer.
        peer: PeerId,
        /// The reason sent or received, if any.
        reason: Option<DisconnectReason>,
    },
    /// A peer announced a new head.
    NewHead {
        /// The peer.
        peer: PeerId,
        /// Its head.
        head: ChainHead,
    },
    /// A peer announced a new `eth/69` block range (`BlockRangeUpdate`, validated): the head of
    /// a snap/1 peer moved.
    BlockRange {
        /// The peer.
        peer: PeerId,
        /// Its range.
        range: eth::BlockRangeUpdate,
    },
    /// A peer was penalised.
    PeerPenalised {
        /// The peer.
        peer: PeerId,
        /// Severity.
        class: PenaltyClass,
        /// Cause.
        reason: PenaltyReason,
        /// Its score afterwards.
        score: f64,
    },
    /// A peer was banned for `BAN_DURATION`.
    PeerBanned {
        /// The peer.
        peer: PeerId,
    },
}

/// A connected peer, as [`super::NetworkHandle::peers`] reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerInfo {
    /// Its node id.
    pub id: PeerId,
    /// Its address.
    pub addr: SocketAddr,
    /// Who dialed.
    pub direction: Direction,
    /// Client id from its Hello.
    pub client_version: String,
    /// Its `leaf/1` Status at the handshake, if the session speaks `leaf/1`.
    pub leaf: Option<Status>,
    /// Its `eth/69` Status and latest block range, if the session speaks `eth/69`.
    pub eth: Option<EthPeerInfo>,
    /// Whether the session speaks `snap/1` (always beside `eth/69`).
    pub snap: bool,
    /// Its latest head: from its `leaf/1` Status or `NewHead`; for a peer without `leaf/1`, the
    /// number and hash of its eth block range with a zero state root (eth announces none).
    pub head: ChainHead,
    /// Its current score.
    pub score: f64,
    /// Whether it is a trusted peer.
    pub trusted: bool,
}

/// What an `eth/69` peer announced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EthPeerInfo {
    /// Its `eth/69` Status at the handshake.
    pub status: eth::Status,
    /// Its latest block range (from the Status or a `BlockRangeUpdate`).
    pub range: eth::BlockRangeUpdate,
}

impl EthPeerInfo {
    /// From the peer's Status.
    pub fn new(status: eth::Status) -> Self {
        Self { status, range: status.block_range() }
    }

    /// The head its range announces: number and hash, with a zero state root.
    pub fn head(&self) -> ChainHead {
        ChainHead {
            number: self.range.latest,
            hash: self.range.latest_hash,
            state_root: alloy_primitives::B256::ZERO,
        }
    }
}

/// A snapshot of discovery's counters (see [`crate::discovery::DiscoveryStats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DiscoveryCounters {
    /// Records considered.
    pub seen: u64,
    /// Dial candidates offered to the peer manager.
    pub emitted: u64,
    /// Records dropped because they are not compatible `leaf` nodes.
    pub incompatible: u64,
    /// Compatible records dropped because their address is not public.
    pub not_public: u64,
    /// Lookups completed.
    pub lookups: u64,
}

impl From<&crate::discovery::DiscoveryStats> for DiscoveryCounters {
    fn from(stats: &crate::discovery::DiscoveryStats) -> Self {
        use std::sync::atomic::Ordering::Relaxed;
        Self {
            seen: stats.seen.load(Relaxed),
            emitted: stats.emitted.load(Relaxed),
            incompatible: stats.incompatible.load(Relaxed),
            not_public: stats.not_public.load(Relaxed),
            lookups: stats.lookups.load(Relaxed),
        }
    }
}
