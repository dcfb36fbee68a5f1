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
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};

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
/// `genesis_fork_hash` is the CRC32 of the genesis hash (the EIP-2124 fork hash before any fork),
/// which separates chains that share a network id without changing at every fork. Decoding ignores
/// extra list elements (EIP-8 style) so that later revisions can extend the entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LeafEnrEntry {
    /// Highest `leaf` protocol version the node speaks.
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
    /// Another `leaf` version.
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

/// Checks a discovered record against our `leaf` entry.
pub fn dial_candidate(enr: &Enr, ours: &LeafEnrEntry) -> Result<DialCandidate, Incompatible> {
    let entry = enr
        .get_decodable::<LeafEnrEntry>(LEAF_ENR_KEY)
        .ok_or(Incompatible::NoLeafEntry)?
        .map_err(|_| Incompatible::MalformedLeafEntry)?;
    if entry.version != ours.version {
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

/// Builds our record: `ip` (none when `udp`'s address is unspecified), `udp`, `tcp`, and the
/// `eth`, `leaf` and `snap` entries as `record` says.
pub fn build_local_enr(
    key: &CombinedKey,
    udp: SocketAddrV4,
    tcp_port: u16,
    record: &LocalRecord,
) -> Result<Enr, EnrBuildError> {
    let ip: Ipv4Addr = *udp.ip();
    let mut builder = Enr::builder();
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
mod tests {
    use super::*;
    use enr::EnrKey;

    fn entry() -> LeafEnrEntry {
        LeafEnrEntry {
            version: 1,
            network_id: 1,
            genesis_fork_hash: ForkHash([0xfc, 0x64, 0xec, 0x04]),
        }
    }

    #[test]
    fn leaf_entry_layout_and_forward_compatibility() {
        let rlp = alloy_rlp::encode(entry());
        assert_eq!(hex::encode(&rlp), "c7010184fc64ec04");
        assert_eq!(rlp.len(), entry().length());
        assert_eq!(alloy_rlp::decode_exact::<LeafEnrEntry>(&rlp), Ok(entry()));
        // A later revision's extra elements are ignored.
        let extended = hex::decode("c9010184fc64ec040203").expect("hex");
        assert_eq!(alloy_rlp::decode_exact::<LeafEnrEntry>(&extended), Ok(entry()));
        // Missing elements or a string are malformed.
        for bad in ["c20101", "83010203", "c7010184fc64ec"] {
            let bad = hex::decode(bad).expect("hex");
            assert!(alloy_rlp::decode_exact::<LeafEnrEntry>(&bad).is_err());
        }
    }

    fn record(leaf: Option<&[u8]>, tcp: bool) -> (Enr, CombinedKey) {
        let key = CombinedKey::generate_secp256k1();
        let mut builder = Enr::builder();
        builder.ip4(Ipv4Addr::LOCALHOST).udp4(30_000);
        if tcp {
            builder.tcp4(30_001);
        }
        if let Some(leaf) = leaf {
            builder.add_value_rlp(LEAF_ENR_KEY, leaf.to_vec().into());
        }
        (builder.build(&key).expect("record builds"), key)
    }

    #[test]
    fn dial_candidate_checks_every_field() {
        let ours = entry();
        let good = alloy_rlp::encode(ours);
        let (enr, key) = record(Some(&good), true);
        let candidate = dial_candidate(&enr, &ours).expect("compatible");
        assert_eq!(candidate.tcp_addr, "127.0.0.1:30001".parse::<SocketAddr>().expect("addr"));
        assert_eq!(candidate.node_id, enr.node_id());
        let uncompressed = key.public().encode_uncompressed();
        assert_eq!(&candidate.public_key.serialize_uncompressed()[1..], &uncompressed[..]);
        assert_eq!(candidate.peer_id.as_slice(), &uncompressed[..]);

        let cases = [
            (record(None, true).0, Incompatible::NoLeafEntry),
            (record(Some(&[0x83, 1, 2, 3]), true).0, Incompatible::MalformedLeafEntry),
            (
                record(Some(&alloy_rlp::encode(LeafEnrEntry { version: 2, ..ours })), true).0,
                Incompatible::Version(2),
            ),
            (
                record(Some(&alloy_rlp::encode(LeafEnrEntry { network_id: 5, ..ours })), true).0,
                Incompatible::Network(5),
            ),
            (
                record(
                    Some(&alloy_rlp::encode(LeafEnrEntry {
                        genesis_fork_hash: ForkHash([0; 4]),
                        ..ours
                    })),
                    true,
                )
                .0,
                Incompatible::Genesis,
            ),
            (record(Some(&good), false).0, Incompatible::NoTcpAddress),
        ];
        for (enr, why) in cases {
            assert_eq!(dial_candidate(&enr, &ours), Err(why));
        }
    }

    /// L8: records pointing into local networks are not dialable from the internet.
    #[test]
    fn only_public_addresses_pass() {
        for local in [
            "127.0.0.1",
            "127.8.9.10",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.1.1",
            "100.64.0.1",
            "100.127.255.254",
            "0.0.0.0",
            "0.1.2.3",
            "224.0.0.1",
            "239.255.255.250",
            "255.255.255.255",
            "198.18.0.1",
            "198.19.255.254",
            "240.0.0.1",
            "250.1.2.3",
            "::1",
            "::",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "ff02::1",
            "::ffff:192.168.1.1",
        ] {
            assert!(!is_public_address(local.parse().expect("ip")), "{local} is local");
        }
        let public =
            ["1.1.1.1", "8.8.8.8", "172.32.0.1", "100.128.0.1", "198.17.0.1", "198.20.0.1"];
        for public in public.into_iter().chain(["223.255.255.254", "2001:4860::8888"]) {
            assert!(is_public_address(public.parse().expect("ip")), "{public} is public");
        }
    }

    #[test]
    fn local_enr_carries_eth_and_leaf_entries() {
        let secret = secp256k1::SecretKey::from_byte_array([0x42; 32]).expect("valid key");
        let key = combined_key(&secret).expect("key converts");
        let fork_id = ForkId { hash: ForkHash([1, 2, 3, 4]), next: 9 };
        let udp = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 4000);
        let record = LocalRecord { fork_id: Some(fork_id), leaf: Some(entry()), snap: true };
        let enr = build_local_enr(&key, udp, 4001, &record).expect("record builds");
        assert_eq!(enr.udp4_socket(), Some(udp));
        assert_eq!(enr.tcp4(), Some(4001));
        let eth = enr.get_decodable::<EnrForkIdEntry>(ETH_ENR_KEY).expect("eth entry");
        assert_eq!(eth.map(ForkId::from), Ok(fork_id));
        // geth's layout: [[hash, next]].
        assert_eq!(
            enr.get_raw_rlp(ETH_ENR_KEY),
            Some(&hex::decode("c7c6840102030409").expect("hex")[..])
        );
        let candidate = dial_candidate(&enr, &entry()).expect("we are compatible with ourselves");
        let ours = secp256k1::PublicKey::from_secret_key_global(&secret);
        assert_eq!(candidate.public_key, ours);
        assert_eq!(candidate.kind, CandidateKind::Leaf);
        // geth's snap entry: an empty list.
        assert_eq!(enr.get_raw_rlp(SNAP_ENR_KEY), Some(&[0xc0][..]));
    }

    /// Without eth/69 the record has no `eth` entry (geth would dial it for nothing), and still
    /// everything a leafsync peer dials by; an unspecified address is left out.
    #[test]
    fn local_enr_without_eth_has_no_eth_entry() {
        let key = combined_key(&secp256k1::SecretKey::from_byte_array([0x42; 32]).expect("key"))
            .expect("key converts");
        let record = LocalRecord { fork_id: None, leaf: Some(entry()), snap: false };
        let udp = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 4000);
        let enr = build_local_enr(&key, udp, 4001, &record).expect("record builds");
        assert_eq!(enr.get_raw_rlp(ETH_ENR_KEY), None);
        assert_eq!(enr.get_raw_rlp(SNAP_ENR_KEY), None);
        assert_eq!((enr.ip4(), enr.udp4(), enr.tcp4()), (None, Some(4000), Some(4001)));
        let udp = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 4000);
        let enr = build_local_enr(&key, udp, 4001, &record).expect("record builds");
        let candidate = dial_candidate(&enr, &entry()).expect("a leaf/1 candidate");
        assert_eq!(candidate.tcp_addr, "127.0.0.1:4001".parse::<SocketAddr>().expect("addr"));
    }

    /// A record as geth writes it: `eth` = `[[hash, next]]`, `snap` = `[]`, no `leaf`.
    fn geth_record(eth: Option<ForkId>, snap: bool) -> Enr {
        let key = CombinedKey::generate_secp256k1();
        let mut builder = Enr::builder();
        builder.ip4(Ipv4Addr::LOCALHOST).udp4(30_000).tcp4(30_303);
        if let Some(fork_id) = eth {
            builder.add_value(ETH_ENR_KEY, &EnrForkIdEntry::from(fork_id));
        }
        if snap {
            builder.add_value(SNAP_ENR_KEY, &SnapEnrEntry);
        }
        builder.build(&key).expect("record builds")
    }

    /// Sepolia's fork ids: at its genesis, past the merge netsplit block and Shanghai, and at
    /// a recent head.
    fn sepolia_forks(chain: &ChainSpec) -> [ForkId; 3] {
        [
            chain.fork_id(0, 0),
            chain.fork_id(2_000_000, 1_700_000_000),
            chain.fork_id(2_000_000, 1_761_607_008),
        ]
    }

    fn filter_at(chain: &ChainSpec, number: u64, timestamp: u64) -> SnapFilter {
        let check = EthForkCheck::new(
            chain.fork_filter(number, timestamp),
            chain.fork_id(number, timestamp),
        );
        SnapFilter::new(check, chain.genesis_fork_hash())
    }

    #[test]
    fn snap_servers_need_a_snap_entry_and_a_compatible_fork_id() {
        let chain = ChainSpec::preset("mainnet").expect("preset");
        let ours = chain.fork_id(0, 0);
        let filter = filter_at(&chain, 0, 0);
        let candidate = snap_dial_candidate(&geth_record(Some(ours), true), &filter);
        assert_eq!(
            candidate.map(|c| (c.kind, c.tcp_addr.port())),
            Ok((CandidateKind::Snap, 30_303))
        );
        let other = ForkId { hash: ForkHash([1, 2, 3, 4]), next: 0 };
        let cases = [
            (geth_record(Some(ours), false), Incompatible::NoSnapEntry),
            (geth_record(None, true), Incompatible::NoEthEntry),
            (geth_record(Some(other), true), Incompatible::ForkId),
        ];
        for (enr, why) in cases {
            assert_eq!(snap_dial_candidate(&enr, &filter).map(|c| c.kind), Err(why));
        }
        // A fork the preset does not know passes when it is the one we announce (the
        // execution client's).
        let announced = EthForkCheck::new(chain.fork_filter(0, 0), other);
        let announced = SnapFilter::new(announced, chain.genesis_fork_hash());
        let candidate = snap_dial_candidate(&geth_record(Some(other), true), &announced);
        assert_eq!(candidate.map(|c| c.kind), Ok(CandidateKind::Snap));
    }

    /// Past the genesis fork, a snap/1 server must be on our fork (the same fork hash, whatever
    /// its `next`): EIP-2124 accepts a node behind us, such as a geth still syncing, which has
    /// no state at our pivot. At the genesis fork (our head not known yet) EIP-2124 decides.
    #[test]
    fn past_genesis_snap_servers_must_be_on_our_fork() {
        let chain = ChainSpec::preset("sepolia").expect("preset");
        let [genesis, shanghai, recent] = sepolia_forks(&chain);
        assert!(genesis.hash != shanghai.hash && shanghai.hash != recent.hash);
        let synced = filter_at(&chain, 2_000_000, 1_761_607_008);
        let server = |fork_id| snap_dial_candidate(&geth_record(Some(fork_id), true), &synced);
        assert_eq!(server(recent).map(|c| c.kind), Ok(CandidateKind::Snap));
        // A `next` we do not schedule (a fork our execution client does not know yet).
        let ahead_next = ForkId { next: recent.next.max(1_761_607_008) + 1, ..recent };
        assert_eq!(server(ahead_next).map(|c| c.kind), Ok(CandidateKind::Snap));
        // Behind: EIP-2124 accepts both, the snap filter neither.
        for behind in [genesis, shanghai] {
            assert!(synced.check.validate(behind).is_ok(), "EIP-2124 accepts {behind:?}");
            assert_eq!(server(behind).map(|c| c.kind), Err(Incompatible::OtherFork));
        }
        let another_chain = ForkId { hash: ForkHash([1, 2, 3, 4]), next: 0 };
        assert_eq!(server(another_chain).map(|c| c.kind), Err(Incompatible::ForkId));

        // At genesis, nodes ahead of us on our chain pass (EIP-2124), others do not.
        let unknown = filter_at(&chain, 0, 0);
        let server = |fork_id| snap_dial_candidate(&geth_record(Some(fork_id), true), &unknown);
        for fork_id in [genesis, shanghai, recent] {
            assert_eq!(server(fork_id).map(|c| c.kind), Ok(CandidateKind::Snap), "{fork_id:?}");
        }
        assert_eq!(server(another_chain).map(|c| c.kind), Err(Incompatible::ForkId));

        // The head moves: the filter follows.
        let mut moving = unknown;
        moving.set_check(synced.check.clone());
        let behind = snap_dial_candidate(&geth_record(Some(genesis), true), &moving);
        assert_eq!(behind.map(|c| c.kind), Err(Incompatible::OtherFork));
    }

    /// The network's head before the execution client answers (`EthHead::genesis`) announces
    /// the genesis fork hash on every public chain, so the snap filter falls back to EIP-2124
    /// while it is there.
    #[test]
    fn the_placeholder_head_is_at_the_genesis_fork() {
        for name in ["mainnet", "sepolia", "holesky", "hoodi"] {
            let chain = ChainSpec::preset(name).expect("preset");
            let head = crate::peers::EthHead::genesis(&chain);
            assert_eq!(head.fork_check(&chain).ours().hash, chain.genesis_fork_hash(), "{name}");
        }
    }
}
