//! The `leaf/1` session layer, on top of the p2p stream (reth's layering: ECIES stream → P2P
//! stream → leaf stream): the `Status` handshake ([`UnauthedLeafStream`]), typed `leaf/1`
//! messages afterwards ([`LeafStream`]), and helpers that run the whole ECIES → Hello → Status
//! sequence over TCP ([`establish_outbound`], [`establish_inbound`]).

mod error;
mod establish;
mod stream;

pub use error::SessionError;
pub use establish::{
    DIAL_TIMEOUT, Established, MAX_SESSION_FRAME_SIZE, SessionParams, TcpLeafStream,
    establish_authenticated, establish_inbound, establish_outbound, leaf_protocol,
};
pub use stream::{LeafStream, UnauthedLeafStream};
