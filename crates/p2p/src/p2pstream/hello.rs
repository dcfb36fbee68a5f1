//! The devp2p `Hello` message (id `0x00`), the first message each side sends.

use crate::{
    ecies::PeerId,
    p2pstream::capability::{Capability, Protocol},
};
use alloy_primitives::B512;
use alloy_rlp::{BufMut, Decodable, Encodable, Header};

/// The p2p base protocol version we speak: 5, which snappy-compresses every message after Hello.
pub const P2P_PROTOCOL_VERSION: u64 = 5;

/// Largest Hello we accept (its frame body). go-ethereum bounds the Hello by the same 2 KiB
/// (`baseProtocolMaxMsgSize`): real ones are ~150 bytes, and before Hello nothing else is bounded.
pub const MAX_HELLO_SIZE: usize = 2048;

/// Most capabilities we read from a Hello; more is junk (real clients advertise fewer than 10).
pub const MAX_HELLO_CAPABILITIES: usize = 64;

/// A Hello: `[protocolVersion, clientId, [[cap, version], ...], listenPort, nodeId, ...]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HelloMessage {
    /// p2p base protocol version.
    pub protocol_version: u64,
    /// Free-form client identifier, e.g. `leafsync/0.1.0`.
    pub client_version: String,
    /// Advertised capabilities.
    pub capabilities: Vec<Capability>,
    /// TCP listening port (0 when not listening or unknown).
    pub port: u16,
    /// Node id (the secp256k1 public key).
    pub id: PeerId,
}

impl HelloMessage {
    fn payload_length(&self) -> usize {
        let caps: usize = self.capabilities.iter().map(Encodable::length).sum();
        self.protocol_version.length()
            + self.client_version.as_bytes().length()
            + caps
            + alloy_rlp::length_of_length(caps)
            + self.port.length()
            + self.id.length()
    }
}

impl Encodable for HelloMessage {
    fn encode(&self, out: &mut dyn BufMut) {
        Header { list: true, payload_length: self.payload_length() }.encode(out);
        self.protocol_version.encode(out);
        self.client_version.as_bytes().encode(out);
        alloy_rlp::encode_list::<Capability, Capability>(&self.capabilities, out);
        self.port.encode(out);
        self.id.encode(out);
    }

    fn length(&self) -> usize {
        let p = self.payload_length();
        p + alloy_rlp::length_of_length(p)
    }
}

/// Decodes a Hello, ignoring list elements after the node id (EIP-8 forward compatibility) and
/// replacing invalid UTF-8 in the client id.
impl Decodable for HelloMessage {
    fn decode(buf: &mut &[u8]) -> alloy_rlp::Result<Self> {
        let mut body = Header::decode_bytes(buf, true)?;
        let protocol_version = u64::decode(&mut body)?;
        let client_version =
            String::from_utf8_lossy(Header::decode_bytes(&mut body, false)?).into_owned();
        let mut caps = Header::decode_bytes(&mut body, true)?;
        let mut capabilities = Vec::new();
        while !caps.is_empty() {
            if capabilities.len() == MAX_HELLO_CAPABILITIES {
                return Err(alloy_rlp::Error::Custom("too many capabilities"));
            }
            capabilities.push(Capability::decode(&mut caps)?);
        }
        let port = u16::decode(&mut body)?;
        let id = B512::decode(&mut body)?;
        Ok(Self { protocol_version, client_version, capabilities, port, id })
    }
}

/// What we put into our Hello: the fields, plus how many message ids each protocol uses (which
/// the wire does not carry but the offsets need).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HelloMessageWithProtocols {
    /// p2p base protocol version (normally [`P2P_PROTOCOL_VERSION`]).
    pub protocol_version: u64,
    /// Our client identifier.
    pub client_version: String,
    /// The protocols we offer.
    pub protocols: Vec<Protocol>,
    /// Our TCP listening port.
    pub port: u16,
    /// Our node id.
    pub id: PeerId,
}

impl HelloMessageWithProtocols {
    /// A Hello at [`P2P_PROTOCOL_VERSION`].
    pub fn new(
        client_version: impl Into<String>,
        protocols: Vec<Protocol>,
        port: u16,
        id: PeerId,
    ) -> Self {
        Self {
            protocol_version: P2P_PROTOCOL_VERSION,
            client_version: client_version.into(),
            protocols,
            port,
            id,
        }
    }

    /// The message as sent.
    pub fn message(&self) -> HelloMessage {
        HelloMessage {
            protocol_version: self.protocol_version,
            client_version: self.client_version.clone(),
            capabilities: self.protocols.iter().map(|p| p.cap.clone()).collect(),
            port: self.port,
            id: self.id,
        }
    }
}
