//! Peer management: lighthouse-style scoring and bans ([`score`]), enode URLs, the per-session
//! task that routes requests and serves the peer, and the `PeerManager` owner loop
//! behind the cloneable [`NetworkHandle`]. `docs/p2p.md` describes the whole.

mod active;
mod candidates;
mod config;
mod dial;
mod enode;
mod eth;
mod eth_session;
mod events;
mod handler;
mod handshake;
mod heads;
mod host;
mod manager;
mod network;
mod pending;
pub mod score;
mod serving;
mod table;
mod throttle;

pub use crate::leaf::{InvalidHead, MAX_HEAD_NUMBER, MAX_HEAD_REWIND};
pub use active::{
    MAX_CONCURRENT_HANDLER_CALLS_PER_PEER, SESSION_CLOSE_TIMEOUT, SESSION_COMMAND_CHANNEL_CAPACITY,
    SESSION_SEND_TIMEOUT, STALL_PENALTY_WINDOW,
};
pub use candidates::{
    MAX_QUEUED_CANDIDATES, MAX_QUEUED_CANDIDATES_PER_IP, MAX_QUEUED_CANDIDATES_PER_SUBNET,
};
pub use config::{
    DEFAULT_DIAL_INTERVAL, DEFAULT_MAX_INBOUND, DEFAULT_MAX_INBOUND_PER_IP, DEFAULT_MAX_OUTBOUND,
    DEFAULT_MAX_PENDING_INBOUND_PER_IP, DEFAULT_MAX_STATIC_PEERS, HANDLER_CALLS_PER_CORE,
    LocalHead, MAX_CONCURRENT_HANDLER_CALLS, MIN_CONCURRENT_HANDLER_CALLS, NetworkConfig,
    default_max_concurrent_handler_calls,
};
pub use dial::{Backoff, DIAL_BACKOFF_BASE, DIAL_BACKOFF_MAX, MAX_BACKOFF_ENTRIES};
pub use enode::{EnodeError, NodeRecord};
pub use eth::{
    BLOCK_RANGE_UPDATE_INTERVAL, EMPTY_ANSWER_COST_BYTES, EthConfig, EthHead, GOSSIP_BURST_BYTES,
    GOSSIP_BYTES_PER_SECOND, HEADER_BUDGET_BURST, HEADER_BUDGET_PER_SECOND, HEADER_SOURCE_TIMEOUT,
    HeaderSource, HeaderSourceError, MAX_CONCURRENT_HEADER_CALLS_PER_PEER,
    MAX_HEADERS_RESPONSE_BYTES, MAX_SKIPPING_HEADERS_SERVE, NoHeaders, SnapHandler,
};
pub use events::{
    Direction, DiscoveryCounters, EVENT_CHANNEL_CAPACITY, EthPeerInfo, NetworkEvent, PeerInfo,
    PenaltyReason,
};
pub use handler::{EmptyHandler, RequestHandler};
pub use handshake::{INBOUND_HANDSHAKE_TIMEOUT, MAX_PENDING_INBOUND, OUTBOUND_HANDSHAKE_TIMEOUT};
pub use heads::NEW_HEAD_MIN_INTERVAL;
pub use manager::{
    ACCEPT_ERROR_BACKOFF, COMMAND_CHANNEL_CAPACITY, HANDSHAKE_EVENT_CHANNEL_CAPACITY,
    SESSION_EVENT_CHANNEL_CAPACITY, SHUTDOWN_TIMEOUT,
};
pub use network::{Network, NetworkError, NetworkHandle};
pub use table::LEAF_RESERVE_DIVISOR;
pub use throttle::{INBOUND_THROTTLE, MAX_THROTTLED_HOSTS};
