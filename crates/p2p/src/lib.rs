//! leafsync networking: the RLPx transport (EIP-8 ECIES handshake, framing, MACs, snappy), the
//! devp2p base protocol, the `leaf/1` capability, discv5 discovery and peer management.

#![cfg_attr(not(test), warn(unused_crate_dependencies))]

pub mod chain;
pub mod discovery;
pub mod eth;
pub mod leaf;
mod node_key;
pub mod peers;
pub mod penalty;
pub mod requests;
mod rlp_walk;
pub mod session;
pub mod snap;
#[cfg(any(test, feature = "test-utils"))]
pub mod test_utils;
pub mod util;

pub mod ecies;
pub mod p2pstream;

pub use ecies::{EciesError, EciesStream, PeerId};
pub use leaf::{EncodedResponse, LeafMessage, LeafRequest, LeafResponse, RequestPair};
pub use node_key::{NodeKey, NodeKeyError};
pub use p2pstream::{
    CapabilityMessage, DisconnectReason, HelloMessage, HelloMessageWithProtocols, P2PError,
    P2PStream, UnauthedP2PStream,
};
pub use penalty::{MessageFault, PenaltyClass};
