//! The RLPx transport: the ECIES (EIP-8) handshake and the encrypted, MACed frame codec.
//!
//! Layers, bottom up: [`algorithm`] (pure crypto: auth/ack packets, secrets), [`mac`] (the
//! keccak frame MAC), [`codec`] (frames), [`stream`] (handshake over a socket, then frames).

pub mod algorithm;
pub mod codec;
pub mod error;
pub mod mac;
pub mod stream;

pub use algorithm::{Ecies, PeerId, Secrets, id_from_pk, pk_from_id};
pub use codec::{FrameCodec, MAX_FRAME_SIZE};
pub use error::EciesError;
pub use stream::{EciesStream, HANDSHAKE_TIMEOUT};
