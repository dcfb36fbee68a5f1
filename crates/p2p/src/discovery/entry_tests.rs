//! Tests of the `leaf` ENR entry, the dial-candidate checks and our node record.

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
            record(Some(&alloy_rlp::encode(LeafEnrEntry { version: 0, ..ours })), true).0,
            Incompatible::Version(0),
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

/// The entry's version is the highest the node speaks: a node speaking a later version beside
/// ours (the Hello agrees on the highest both speak) is dialed; one below ours is not.
#[test]
fn leaf_versions_at_least_ours_are_candidates() {
    let ours = entry();
    for version in [1, 2, u8::MAX] {
        let (enr, _) = record(Some(&alloy_rlp::encode(LeafEnrEntry { version, ..ours })), true);
        let candidate = dial_candidate(&enr, &ours).map(|c| c.kind);
        assert_eq!(candidate, Ok(CandidateKind::Leaf), "version {version}");
    }
    let (enr, _) = record(Some(&alloy_rlp::encode(LeafEnrEntry { version: 0, ..ours })), true);
    assert_eq!(dial_candidate(&enr, &ours), Err(Incompatible::Version(0)));
    // A later node is checked against a later entry of ours the same way.
    let ours_v2 = LeafEnrEntry { version: 2, ..ours };
    let (enr, _) = record(Some(&alloy_rlp::encode(ours)), true);
    assert_eq!(dial_candidate(&enr, &ours_v2), Err(Incompatible::Version(1)));
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
    let public = ["1.1.1.1", "8.8.8.8", "172.32.0.1", "100.128.0.1", "198.17.0.1", "198.20.0.1"];
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
    let check =
        EthForkCheck::new(chain.fork_filter(number, timestamp), chain.fork_id(number, timestamp));
    SnapFilter::new(check, chain.genesis_fork_hash())
}

#[test]
fn snap_servers_need_a_snap_entry_and_a_compatible_fork_id() {
    let chain = ChainSpec::preset("mainnet").expect("preset");
    let ours = chain.fork_id(0, 0);
    let filter = filter_at(&chain, 0, 0);
    let candidate = snap_dial_candidate(&geth_record(Some(ours), true), &filter);
    assert_eq!(candidate.map(|c| (c.kind, c.tcp_addr.port())), Ok((CandidateKind::Snap, 30_303)));
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

/// A freshly built record starts at the time in milliseconds (as geth's `LocalNode`), not at 1:
/// discv5 replaces a record only by a higher sequence number, so a record changed between runs
/// must exceed whatever the previous run reached (1 plus its updates).
#[test]
fn local_records_start_at_the_time_in_milliseconds() {
    let key = combined_key(&secp256k1::SecretKey::from_byte_array([0x42; 32]).expect("key"))
        .expect("key converts");
    let udp = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 4000);
    let record = LocalRecord { fork_id: None, leaf: Some(entry()), snap: false };
    let before = initial_seq(SystemTime::now());
    let first = build_local_enr(&key, udp, 4001, &record).expect("record builds");
    assert!(first.seq() >= before && first.seq() > 1, "seq {} from the clock", first.seq());
    // The next start, once the clock has moved on (a millisecond at most): a higher sequence
    // number for the same key.
    while initial_seq(SystemTime::now()) <= first.seq() {
        std::thread::yield_now();
    }
    let changed = LocalRecord { snap: true, ..record };
    let second = build_local_enr(&key, udp, 4001, &changed).expect("record builds");
    assert!(second.seq() > first.seq(), "{} after {}", second.seq(), first.seq());
    assert_eq!(second.node_id(), first.node_id());

    // Updates while we run still add to it (what discv5 does when an entry or address changes).
    let mut updated = second.clone();
    updated
        .insert(
            ETH_ENR_KEY,
            &EnrForkIdEntry::from(ForkId { hash: ForkHash([1; 4]), next: 0 }),
            &key,
        )
        .expect("entry fits");
    assert_eq!(updated.seq(), second.seq() + 1);
    updated.set_udp_socket(SocketAddr::from(([1, 2, 3, 4], 4000)), &key).expect("address fits");
    assert_eq!(updated.seq(), second.seq() + 2);
    assert!(updated.verify());

    // The clock's milliseconds, and 1 before 1970.
    let at = |ms| initial_seq(UNIX_EPOCH + std::time::Duration::from_millis(ms));
    assert_eq!(at(1_700_000_000_123), 1_700_000_000_123);
    assert!(at(1_700_000_000_126) > at(1_700_000_000_123));
    assert_eq!(at(0), 1);
    assert_eq!(initial_seq(UNIX_EPOCH - std::time::Duration::from_secs(1)), 1);
}
