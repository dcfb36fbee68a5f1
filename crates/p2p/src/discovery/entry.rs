//! The `leaf` ENR entry, our node record, and the checks that turn a discovered record into a
//! dial candidate: a `leaf/1` node by its `leaf` entry, or (with eth enabled) a snap/1 server by
//! its `snap` entry and an `eth` fork id our [`SnapFilter`] accepts.

use crate::{
    chain::{ChainSpec, Enr},
    ecies::PeerId,
    eth::EthForkCheck,
    leaf::protocol::PROTOCOL_VERSION,
};
use alloy_eip2124::{EnrForkIdEntry, ForkHash, ForkId};
use alloy_rlp::{Decodable, Encodable, Header};
use bytes::BufMut;
use enr::{CombinedKey, CombinedPublicKey, EnrPublicKey, NodeId};
use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4},
    time::{SystemTime, UNIX_EPOCH},
};

/// ENR key of the `leaf` entry.
pub const LEAF_ENR_KEY: &str = "leaf";

/// ENR key of the `eth` fork-id entry (EIP-868, as go-ethereum writes it).
pub const ETH_ENR_KEY: &str = "eth";

/// ENR key of the `snap` entry: go-ethereum advertises snap/1 with an empty list under it.
pub const SNAP_ENR_KEY: &str = "snap";

/// The `snap` ENR entry as go-ethereum writes it: an empty list (`0xc0`; its `enrEntry` has
/// only a `rlp:"tail"` field).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SnapEnrEntry;

impl Encodable for SnapEnrEntry {
    fn encode(&self, out: &mut dyn BufMut) {
        Header { list: true, payload_length: 0 }.encode(out);
    }

    fn length(&self) -> usize {
        1
    }
}

/// What our node record advertises.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalRecord {
    /// The `eth` entry: our fork id, when we speak eth/69; `None` leaves the entry out. geth's
    /// discovery dials any record with a compatible `eth` entry, so a node without eth/69
    /// advertising one would pay an ECIES handshake for each such dial, every one ending in "no
    /// shared capability".
    pub fork_id: Option<ForkId>,
    /// The `leaf` entry, when we offer `leaf/1` (also what `leaf` records are checked against).
    pub leaf: Option<LeafEnrEntry>,
    /// Whether to advertise the `snap` entry (we serve snap/1).
    pub snap: bool,
}

/// The `leaf` ENR entry: `[version, network_id, genesis_fork_hash]`.
///
/// `version` is the highest `leaf` version the node speaks, so a record is a dial candidate when
/// it is at least ours ([`dial_candidate`]): a node speaking a later version beside ours
/// advertises the later one, and the RLPx Hello then agrees on the highest version both speak; a
/// node that dropped ours fails at Hello, as any useless peer (`0x03`). A lower version (0
/// included: no `leaf` version is 0) is not dialed. `genesis_fork_hash` is the CRC32 of the
/// genesis hash (the EIP-2124 fork hash before any fork), which separates chains that share a
/// network id without changing at every fork. Decoding ignores extra list elements (EIP-8
/// style) so that later revisions can extend the entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LeafEnrEntry {
    /// Highest `leaf` protocol version the node speaks (dialed when at least ours).
    pub version: u8,
    /// The node's network id.
    pub network_id: u64,
    /// CRC32 of the node's genesis hash.
    pub genesis_fork_hash: ForkHash,
}

impl LeafEnrEntry {
    /// Our entry for `chain`.
    pub fn for_chain(chain: &ChainSpec) -> Self {
        Self {
            version: PROTOCOL_VERSION,
            network_id: chain.network_id,
            genesis_fork_hash: chain.genesis_fork_hash(),
        }
    }

    fn payload_length(&self) -> usize {
        self.version.length() + self.network_id.length() + self.genesis_fork_hash.length()
    }
}

impl Encodable for LeafEnrEntry {
    fn encode(&self, out: &mut dyn BufMut) {
        Header { list: true, payload_length: self.payload_length() }.encode(out);
        self.version.encode(out);
        self.network_id.encode(out);
        self.genesis_fork_hash.encode(out);
    }

    fn length(&self) -> usize {
        let payload_length = self.payload_length();
        Header { list: true, payload_length }.length() + payload_length
    }
}

impl Decodable for LeafEnrEntry {
    fn decode(buf: &mut &[u8]) -> alloy_rlp::Result<Self> {
        let header = Header::decode(buf)?;
        if !header.list {
            return Err(alloy_rlp::Error::UnexpectedString);
        }
        if buf.len() < header.payload_length {
            return Err(alloy_rlp::Error::InputTooShort);
        }
        let (mut payload, rest) = buf.split_at(header.payload_length);
        let entry = Self {
            version: u8::decode(&mut payload)?,
            network_id: u64::decode(&mut payload)?,
            genesis_fork_hash: ForkHash::decode(&mut payload)?,
        };
        // Extra elements after the three known ones are ignored (forward compatibility).
        *buf = rest;
        Ok(entry)
    }
}

/// Why a discovered node is not a dial candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum Incompatible {
    /// The record has no `leaf` entry (a consensus client, a plain execution client).
    #[error("no leaf entry")]
    NoLeafEntry,
    /// The `leaf` entry is not valid RLP of the documented layout.
    #[error("malformed leaf entry")]
    MalformedLeafEntry,
    /// A `leaf` version below ours: the node does not speak ours.
    #[error("leaf version {0}")]
    Version(u8),
    /// Another network id.
    #[error("network id {0}")]
    Network(u64),
    /// Same network id, another genesis.
    #[error("other genesis")]
    Genesis,
    /// No IPv4 address and TCP port to dial.
    #[error("no ipv4 tcp address")]
    NoTcpAddress,
    /// Not a secp256k1 identity, so not an RLPx node.
    #[error("not a secp256k1 node")]
    NotSecp256k1,
    /// Neither a `leaf` entry nor a `snap` entry.
    #[error("no snap entry")]
    NoSnapEntry,
    /// A `snap` entry without an `eth` entry (geth serves snap/1 only beside eth).
    #[error("no eth entry")]
    NoEthEntry,
    /// The `eth` entry is not `[[fork_hash, fork_next]]`.
    #[error("malformed eth entry")]
    MalformedEthEntry,
    /// Our fork filter rejects the `eth` entry's fork id (another chain, or a stale fork).
    #[error("incompatible fork id")]
    ForkId,
    /// The `eth` entry's fork hash is not ours, though on our chain: a snap/1 server behind our
    /// fork (still syncing: geth announces its own head's fork id) or ahead of it.
    #[error("not on our fork")]
    OtherFork,
}

/// Which protocol a dial candidate is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CandidateKind {
    /// A `leaf/1` node (its `leaf` entry matches ours).
    Leaf,
    /// A snap/1 server (a `snap` entry and a compatible `eth` entry): dialed after `leaf/1`
    /// nodes, only with eth enabled.
    Snap,
}

/// A compatible node, ready to be dialed over RLPx.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DialCandidate {
    /// discv5 node id (keccak256 of the public key).
    pub node_id: NodeId,
    /// The node's secp256k1 public key: its RLPx identity.
    pub public_key: secp256k1::PublicKey,
    /// The same key as an RLPx peer id (64-byte uncompressed key without the 0x04 prefix).
    pub peer_id: PeerId,
    /// The RLPx TCP address from its record.
    pub tcp_addr: SocketAddr,
    /// The full record.
    pub enr: Enr,
    /// Which protocol it is dialed for.
    pub kind: CandidateKind,
}

/// Checks a discovered record against our `leaf` entry: its version at least ours (the highest
/// it speaks; see [`LeafEnrEntry`]), our network id and genesis, and an RLPx address.
pub fn dial_candidate(enr: &Enr, ours: &LeafEnrEntry) -> Result<DialCandidate, Incompatible> {
    let entry = enr
        .get_decodable::<LeafEnrEntry>(LEAF_ENR_KEY)
        .ok_or(Incompatible::NoLeafEntry)?
        .map_err(|_| Incompatible::MalformedLeafEntry)?;
    if entry.version < ours.version {
        return Err(Incompatible::Version(entry.version));
    }
    if entry.network_id != ours.network_id {
        return Err(Incompatible::Network(entry.network_id));
    }
    if entry.genesis_fork_hash != ours.genesis_fork_hash {
        return Err(Incompatible::Genesis);
    }
    rlpx_candidate(enr, CandidateKind::Leaf)
}

/// What a snap/1 server's `eth` entry is checked against: the fork id we announce for the
/// execution client's head, and the EIP-2124 check at that head.
///
/// A snap/1 server is useful only with the state at our pivot, near the execution client's
/// head: one on our fork. EIP-2124 accepts nodes behind us by design, and a geth still syncing
/// advertises its own head's fork id (a fresh one: the genesis's) beside a `snap` entry it sets
/// whether or not it has its snapshot; such a server would take an outbound slot and keep it.
/// So once our fork id is past the genesis's, a server's fork hash must equal ours (its `next`
/// may differ: a server may know of a fork our execution client does not schedule yet). While
/// ours is still the genesis's, our head is likely not known yet (until the execution client
/// answers, the network's eth head is the genesis, or the leafdb's head, and nothing marks
/// which head came from where) and the EIP-2124 check decides alone: on our chain nobody is
/// behind the genesis fork anyway.
#[derive(Debug, Clone)]
pub struct SnapFilter {
    check: EthForkCheck,
    genesis_fork_hash: ForkHash,
}

impl SnapFilter {
    /// The filter for our fork `check` on the chain whose genesis fork hash (the CRC32 of its
    /// genesis hash, [`ChainSpec::genesis_fork_hash`]) is `genesis_fork_hash`.
    pub const fn new(check: EthForkCheck, genesis_fork_hash: ForkHash) -> Self {
        Self { check, genesis_fork_hash }
    }

    /// Replaces the check: our execution client's head moved.
    pub fn set_check(&mut self, check: EthForkCheck) {
        self.check = check;
    }

    /// Whether a snap/1 server announcing `theirs` can serve our sync: see the type's docs.
    pub fn validate(&self, theirs: ForkId) -> Result<(), Incompatible> {
        let ours = self.check.ours();
        if ours.hash == self.genesis_fork_hash {
            return self.check.validate(theirs).map_err(|_| Incompatible::ForkId);
        }
        if theirs.hash == ours.hash {
            return Ok(());
        }
        // Only for the log and counters: another chain, or ours at another fork.
        match self.check.validate(theirs) {
            Ok(()) => Err(Incompatible::OtherFork),
            Err(_) => Err(Incompatible::ForkId),
        }
    }
}

/// Checks a discovered record as a snap/1 server: a `snap` entry, and an `eth` entry whose fork
/// id `filter` accepts (see [`SnapFilter`]).
pub fn snap_dial_candidate(enr: &Enr, filter: &SnapFilter) -> Result<DialCandidate, Incompatible> {
    if enr.get_raw_rlp(SNAP_ENR_KEY).is_none() {
        return Err(Incompatible::NoSnapEntry);
    }
    let eth = enr
        .get_decodable::<EnrForkIdEntry>(ETH_ENR_KEY)
        .ok_or(Incompatible::NoEthEntry)?
        .map_err(|_| Incompatible::MalformedEthEntry)?;
    filter.validate(ForkId::from(eth))?;
    rlpx_candidate(enr, CandidateKind::Snap)
}

/// The RLPx identity and TCP address of a compatible record.
fn rlpx_candidate(enr: &Enr, kind: CandidateKind) -> Result<DialCandidate, Incompatible> {
    let tcp_addr = enr.tcp4_socket().ok_or(Incompatible::NoTcpAddress)?;
    let public_key = match enr.public_key() {
        key @ CombinedPublicKey::Secp256k1(_) => secp256k1::PublicKey::from_slice(&key.encode())
            .map_err(|_| Incompatible::NotSecp256k1)?,
        CombinedPublicKey::Ed25519(_) => return Err(Incompatible::NotSecp256k1),
    };
    let peer_id = PeerId::from_slice(&public_key.serialize_uncompressed()[1..]);
    Ok(DialCandidate {
        node_id: enr.node_id(),
        public_key,
        peer_id,
        tcp_addr: tcp_addr.into(),
        enr: enr.clone(),
        kind,
    })
}

/// Whether `ip` is an address a node on the internet can have: not loopback, private
/// (RFC 1918, IPv6 unique-local), link-local, shared (RFC 6598 CGNAT), "this network" (0/8),
/// benchmarking (RFC 2544, 198.18/15), reserved (240/4), multicast, broadcast or unspecified.
/// Dial candidates from discovery must pass it unless local addresses are allowed (`DiscoveryConfig::allow_local_addresses`); operator-configured
/// static peers are not checked.
pub fn is_public_address(ip: IpAddr) -> bool {
    match ip.to_canonical() {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_multicast()
                || v4.is_broadcast()
                || v4.is_unspecified()
                || a == 0
                || (a == 100 && (b & 0xc0) == 64)
                || (a == 198 && (b & 0xfe) == 18)
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_multicast()
                || v6.is_unspecified()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80)
        }
    }
}

/// Why our record could not be built.
#[derive(Debug, thiserror::Error)]
pub enum EnrBuildError {
    /// The secret key was refused by the ENR library.
    #[error("invalid node key")]
    InvalidKey,
    /// The record could not be signed or is too large.
    #[error("cannot build the node record: {0}")]
    Enr(#[from] enr::Error),
}

/// Converts our RLPx node key into the key type discv5 signs with.
pub fn combined_key(secret: &secp256k1::SecretKey) -> Result<CombinedKey, EnrBuildError> {
    let mut bytes = secret.secret_bytes();
    CombinedKey::secp256k1_from_bytes(&mut bytes).map_err(|_| EnrBuildError::InvalidKey)
}

/// The sequence number a freshly built record of ours starts at: the Unix time in milliseconds
/// (go-ethereum's `enode.LocalNode` does the same), 1 for a clock before 1970.
///
/// discv5 replaces a record it holds only by one with a higher sequence number. Each change
/// while we run (a fork id, the address our peers see) adds 1, far fewer in a run than the
/// milliseconds it lasts, so a record built at a later start exceeds whatever an earlier run
/// reached, and a record changed between runs (an entry toggled, another address or port)
/// replaces the old one. A fixed start would leave nodes holding the old record with it.
pub(crate) fn initial_seq(now: SystemTime) -> u64 {
    now.duration_since(UNIX_EPOCH)
        .map_or(1, |since| u64::try_from(since.as_millis()).unwrap_or(u64::MAX).max(1))
}

/// Builds our record: `ip` (none when `udp`'s address is unspecified), `udp`, `tcp`, and the
/// `eth`, `leaf` and `snap` entries as `record` says, at sequence number `initial_seq` of now.
pub fn build_local_enr(
    key: &CombinedKey,
    udp: SocketAddrV4,
    tcp_port: u16,
    record: &LocalRecord,
) -> Result<Enr, EnrBuildError> {
    let ip: Ipv4Addr = *udp.ip();
    let mut builder = Enr::builder();
    builder.seq(initial_seq(SystemTime::now()));
    if !ip.is_unspecified() {
        builder.ip4(ip);
    }
    builder.udp4(udp.port()).tcp4(tcp_port);
    if let Some(fork_id) = record.fork_id {
        builder.add_value(ETH_ENR_KEY, &EnrForkIdEntry::from(fork_id));
    }
    if let Some(leaf) = &record.leaf {
        builder.add_value(LEAF_ENR_KEY, leaf);
    }
    if record.snap {
        builder.add_value(SNAP_ENR_KEY, &SnapEnrEntry);
    }
    Ok(builder.build(key)?)
}

#[cfg(test)]
#[path = "entry_tests.rs"]
mod tests;
