//! The session layer, on top of the p2p stream (reth's layering: ECIES stream → P2P stream →
//! session stream): the Status handshakes of `leaf/1` and `eth/69` ([`UnauthedPeerStream`]; the
//! messages a subprotocol may send before another's Status are kept, bounded, in `early`),
//! typed `leaf/1`, `eth/69` and `snap/1` messages afterwards ([`PeerStream`]), and helpers that
//! run the whole ECIES → Hello → Status sequence over TCP ([`establish_outbound`],
//! [`establish_inbound`]).

mod early;
mod error;
mod establish;
mod protocols;
mod stream;

pub use early::{MAX_EARLY_BYTES, MAX_EARLY_MESSAGES};
pub use error::SessionError;
pub use establish::{
    DIAL_TIMEOUT, Established, MAX_ETH_SESSION_FRAME_SIZE, MAX_SESSION_FRAME_SIZE, SessionParams,
    TcpPeerStream, establish_authenticated, establish_inbound, establish_outbound, leaf_protocol,
};
pub use protocols::{Subprotocol, hello_protocols};
pub use stream::{LocalStatus, PeerMessage, PeerStatus, PeerStream, UnauthedPeerStream};
