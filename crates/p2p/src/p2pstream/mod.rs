//! The devp2p base protocol (p2p v5) on top of RLPx frames: Hello, Disconnect, Ping/Pong,
//! snappy, and the capability message-id space.

pub mod capability;
pub mod disconnect;
pub mod error;
pub mod hello;
pub mod pinger;
pub mod stream;

pub use capability::{Capability, Protocol, SharedCapabilities, SharedCapability};
pub use disconnect::DisconnectReason;
pub use error::P2PError;
pub use hello::{HelloMessage, HelloMessageWithProtocols, P2P_PROTOCOL_VERSION};
pub use pinger::{PING_INTERVAL, PING_TIMEOUT};
pub use stream::{CapabilityMessage, MAX_MESSAGE_SIZE, P2PStream, UnauthedP2PStream};
