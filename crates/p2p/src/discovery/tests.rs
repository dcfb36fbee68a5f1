//! Discovery on loopback: leaf nodes find each other through a bootnode; a discv5 node without
//! the `leaf` entry is found but never offered for dialing.

use super::*;
use crate::chain::ChainSpec;
use std::collections::HashMap;
use tokio::time::{Instant, timeout_at};

/// Hard limit for the whole scenario; the test fails rather than hang.
const SCENARIO_DEADLINE: Duration = Duration::from_secs(30);

/// Short lookup interval so that the scenario converges in a few seconds.
const TEST_LOOKUP_INTERVAL: Duration = Duration::from_millis(200);

fn loopback_config(bootnodes: Vec<Enr>, tcp_port: u16) -> DiscoveryConfig {
    DiscoveryConfig {
        listen_addr: SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0),
        external_ip: None,
        tcp_port,
        bootnodes,
        lookup_interval: TEST_LOOKUP_INTERVAL,
        candidate_channel_capacity: 16,
        allow_local_addresses: true,
        ip_limit: false,
        packet_filter: false,
    }
}

fn random_secret() -> secp256k1::SecretKey {
    loop {
        if let Ok(key) = secp256k1::SecretKey::from_byte_array(rand::random()) {
            return key;
        }
    }
}

async fn leaf_node(
    chain: &ChainSpec,
    bootnodes: Vec<Enr>,
    tcp_port: u16,
) -> (Discovery, mpsc::Receiver<DialCandidate>, secp256k1::PublicKey) {
    let secret = random_secret();
    let public = secp256k1::PublicKey::from_secret_key_global(&secret);
    let (discovery, rx) = Discovery::start(
        &secret,
        loopback_config(bootnodes, tcp_port),
        LocalRecord {
            fork_id: Some(chain.fork_id(0, 0)),
            leaf: Some(LeafEnrEntry::for_chain(chain)),
            snap: false,
        },
        None,
    )
    .await
    .expect("discovery starts on loopback");
    (discovery, rx, public)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaf_nodes_discover_each_other_and_skip_nodes_without_the_entry() {
    let chain = ChainSpec::preset("sepolia").expect("preset parses");
    let (a, mut a_rx, a_key) = leaf_node(&chain, Vec::new(), 7001).await;
    let bootnode = a.local_enr();
    assert_eq!(bootnode.ip4(), Some(Ipv4Addr::LOCALHOST));
    let (b, mut b_rx, b_key) = leaf_node(&chain, vec![bootnode.clone()], 7002).await;
    let (c, mut c_rx, c_key) = leaf_node(&chain, vec![bootnode.clone()], 7003).await;
    let d = crate::test_utils::plain_discv5_node(bootnode, 30303).await;
    let d_id = d.local_enr().node_id();

    // D looks itself up through A, so that A learns about it and hands it out.
    let d_lookups = {
        let lookup = d.find_node(NodeId::random());
        let d = Arc::new(d);
        let d2 = Arc::clone(&d);
        tokio::spawn(async move {
            let _ = lookup.await;
            for _ in 0..100 {
                let _ = d2.find_node(NodeId::random()).await;
                tokio::time::sleep(TEST_LOOKUP_INTERVAL).await;
            }
        });
        d
    };

    let expected_by_b = HashMap::from([(a_key, 7001), (c_key, 7003)]);
    let expected_by_c = HashMap::from([(a_key, 7001), (b_key, 7002)]);
    let deadline = Instant::now() + SCENARIO_DEADLINE;
    let mut found_by_b = HashMap::new();
    let mut found_by_c = HashMap::new();
    let mut found_by_a = HashMap::new();
    // D is "found by discv5" once it is in B's or C's routing table and their lookup loop has
    // considered and dropped at least one record (D is the only node without the entry).
    let d_found = |b: &Discovery, c: &Discovery| {
        let in_table = b.table_node_ids().contains(&d_id) || c.table_node_ids().contains(&d_id);
        let dropped = b.stats().incompatible.load(Ordering::Relaxed)
            + c.stats().incompatible.load(Ordering::Relaxed);
        in_table && dropped >= 1
    };
    while found_by_b != expected_by_b || found_by_c != expected_by_c || !d_found(&b, &c) {
        let step = Instant::now() + Duration::from_millis(100);
        let next = timeout_at(step.min(deadline), async {
            tokio::select! {
                Some(cand) = b_rx.recv() => ("b", cand),
                Some(cand) = c_rx.recv() => ("c", cand),
                Some(cand) = a_rx.recv() => ("a", cand),
            }
        })
        .await;
        if let Ok((who, candidate)) = next {
            assert_ne!(candidate.node_id, d_id, "{who} emitted D, which has no leaf entry");
            assert_eq!(candidate.tcp_addr.ip(), std::net::IpAddr::V4(Ipv4Addr::LOCALHOST));
            let map = match who {
                "b" => &mut found_by_b,
                "c" => &mut found_by_c,
                _ => &mut found_by_a,
            };
            let previous = map.insert(candidate.public_key, candidate.tcp_addr.port());
            assert!(previous.is_none(), "{who} emitted the same node twice");
        }
        assert!(
            Instant::now() < deadline,
            "no convergence in {SCENARIO_DEADLINE:?}: b found {found_by_b:?}, c found \
             {found_by_c:?}, D in b's table: {}, D in c's table: {}",
            b.table_node_ids().contains(&d_id),
            c.table_node_ids().contains(&d_id),
        );
    }
    // Keep the lookups running for a while longer: nobody new (in particular not D) and nobody
    // twice is ever offered.
    let quiet_until = Instant::now() + Duration::from_secs(1);
    while let Ok((who, candidate)) = timeout_at(quiet_until, async {
        tokio::select! {
            Some(cand) = b_rx.recv() => ("b", cand),
            Some(cand) = c_rx.recv() => ("c", cand),
            Some(cand) = a_rx.recv() => ("a", cand),
        }
    })
    .await
    {
        assert_ne!(candidate.node_id, d_id, "{who} emitted D, which has no leaf entry");
        assert!(who == "a", "{who} emitted {candidate:?} after having found everybody");
        assert!(found_by_a.insert(candidate.public_key, 0).is_none(), "a emitted a node twice");
    }
    assert_eq!(b.stats().emitted.load(Ordering::Relaxed), 2);
    assert_eq!(c.stats().emitted.load(Ordering::Relaxed), 2);
    assert!(a.stats().emitted.load(Ordering::Relaxed) <= 2, "A only ever offers B and C");
    drop(d_lookups);
    for discovery in [a, b, c] {
        discovery.shutdown().await;
    }
}

#[tokio::test]
async fn start_fails_cleanly_on_a_busy_port() {
    let chain = ChainSpec::preset("sepolia").expect("preset parses");
    let busy = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind loopback");
    let port = busy.local_addr().expect("bound").port();
    let mut config = loopback_config(Vec::new(), 1);
    config.listen_addr = SocketAddrV4::new(Ipv4Addr::LOCALHOST, port);
    let result = Discovery::start(
        &random_secret(),
        config,
        LocalRecord {
            fork_id: Some(chain.fork_id(0, 0)),
            leaf: Some(LeafEnrEntry::for_chain(&chain)),
            snap: false,
        },
        None,
    )
    .await;
    let Err(e @ DiscoveryError::Bind { .. }) = result else { panic!("bound a busy port") };
    assert!(e.to_string().contains(&format!("127.0.0.1:{port}")), "{e}");
}

#[tokio::test]
async fn fork_id_updates_reach_the_local_record() {
    let chain = ChainSpec::preset("sepolia").expect("preset parses");
    let (node, _rx, _) = leaf_node(&chain, Vec::new(), 7010).await;
    let before = node.local_enr();
    let eth =
        |enr: &Enr| enr.get_decodable::<EnrForkIdEntry>(ETH_ENR_KEY).map(|e| e.map(ForkId::from));
    assert_eq!(eth(&before), Some(Ok(chain.fork_id(0, 0))));
    let later = chain.fork_id(2_000_000, 1_761_607_008);
    assert_ne!(later, chain.fork_id(0, 0));
    assert!(node.update_fork_id(later));
    let after = node.local_enr();
    assert_eq!(eth(&after), Some(Ok(later)));
    assert!(after.seq() > before.seq());
    // The leaf entry is untouched.
    assert_eq!(
        dial_candidate(&after, &LeafEnrEntry::for_chain(&chain)).map(|c| c.tcp_addr.port()),
        Ok(7010)
    );
    node.shutdown().await;
}

/// A node is offered once per `REOFFER_AFTER`, not after every lookup that meets it, and is
/// offered again after it: the peer manager keeps a candidate only in its queue, so a node
/// whose dial failed, whose session ended or that the queue dropped would otherwise never be
/// dialed again. The memory stays bounded, forgetting the oldest offers first.
#[test]
fn a_node_is_offered_again_once_the_reoffer_time_has_passed() {
    let start = tokio::time::Instant::now();
    let node = NodeId::random();
    let mut offered = Offered::default();
    assert!(offered.due(&node, start), "never offered");
    offered.offered(node, start);
    assert!(!offered.due(&node, start + REOFFER_AFTER / 2), "offered a moment ago");
    assert!(offered.due(&node, start + REOFFER_AFTER), "offered long ago");

    let mut full = Offered::default();
    let old: Vec<NodeId> = (0..MAX_REMEMBERED_CANDIDATES / 2).map(|_| NodeId::random()).collect();
    for id in &old {
        full.offered(*id, start);
    }
    let later = start + REOFFER_AFTER;
    let recent: Vec<NodeId> =
        (0..MAX_REMEMBERED_CANDIDATES / 2).map(|_| NodeId::random()).collect();
    for id in &recent {
        full.offered(*id, later);
    }
    assert_eq!(full.at.len(), MAX_REMEMBERED_CANDIDATES);
    full.offered(NodeId::random(), later);
    assert_eq!(full.at.len(), MAX_REMEMBERED_CANDIDATES / 2 + 1, "the old offers are forgotten");
    assert!(recent.iter().all(|id| !full.due(id, later)), "the recent offers are kept");
}

/// A node short of dial candidates looks up back to back (a second apart), not once per
/// `lookup_interval`, at most one lookup a second; alone, it finds nobody, and after
/// `MAX_BARREN_FAST_LOOKUPS` such lookups it goes back to `lookup_interval`.
#[tokio::test(start_paused = true)]
async fn a_node_short_of_candidates_looks_up_back_to_back() {
    let chain = ChainSpec::preset("sepolia").expect("preset parses");
    let mut config = loopback_config(Vec::new(), 7020);
    config.lookup_interval = DEFAULT_LOOKUP_INTERVAL;
    let record = LocalRecord {
        fork_id: Some(chain.fork_id(0, 0)),
        leaf: Some(LeafEnrEntry::for_chain(&chain)),
        snap: false,
    };
    let (node, _rx) = Discovery::start(&random_secret(), config, record, None)
        .await
        .expect("discovery starts on loopback");
    let fast = FAST_LOOKUP_INTERVAL * MAX_BARREN_FAST_LOOKUPS;
    tokio::time::sleep(fast).await;
    let lookups = node.stats().lookups.load(Ordering::Relaxed);
    let most = u64::from(MAX_BARREN_FAST_LOOKUPS) + 1;
    assert!(lookups >= most / 2, "{lookups} lookups in {fast:?}");
    assert!(lookups <= most, "{lookups} lookups in {fast:?}: more than the fast pace allows");
    // Barren ever since: the configured pace.
    tokio::time::sleep(fast).await;
    let slow = node.stats().lookups.load(Ordering::Relaxed);
    let fast_left = u64::from(MAX_BARREN_FAST_LOOKUPS).saturating_sub(lookups);
    let slow_most = fast_left + (fast.as_secs() / DEFAULT_LOOKUP_INTERVAL.as_secs()) + 1;
    assert!(slow - lookups <= slow_most, "{} lookups once barren", slow - lookups);
    node.shutdown().await;
}

/// Short of candidates (few offered lately, and lookups still finding some) the next lookup
/// follows after `FAST_LOOKUP_INTERVAL`; otherwise after the configured interval, which is never
/// lengthened. Enough offers end the fast pace even while every lookup finds a new node (a
/// public chain's geth nodes), and so do `MAX_BARREN_FAST_LOOKUPS` lookups in a row finding none.
#[test]
fn lookups_slow_down_once_candidates_are_plenty() {
    let slow = DEFAULT_LOOKUP_INTERVAL;
    let wanted = WANTED_RECENT_CANDIDATES;
    let barren = MAX_BARREN_FAST_LOOKUPS;
    assert!(short_of_candidates(0, false, 0) && short_of_candidates(wanted - 1, true, barren));
    assert!(!short_of_candidates(wanted, true, 0), "enough offered, though lookups still find");
    assert!(!short_of_candidates(0, false, barren), "lookups find nothing any more");
    assert!(short_of_candidates(0, false, barren - 1));
    assert_eq!(lookup_pause(true, slow), FAST_LOOKUP_INTERVAL);
    assert_eq!(lookup_pause(false, slow), slow);
    let short = Duration::from_millis(200);
    assert_eq!(lookup_pause(true, short), short);
    assert_eq!(lookup_pause(false, short), short);
    // Offers older than `REOFFER_AFTER` are not recent.
    let start = tokio::time::Instant::now();
    let mut offered = Offered::default();
    for _ in 0..wanted {
        offered.offered(NodeId::random(), start);
    }
    assert_eq!(offered.recent(start + REOFFER_AFTER / 2), wanted);
    assert_eq!(offered.recent(start + REOFFER_AFTER), 0);
}

/// Without eth/69 our record has no `eth` entry, and a fork id update (the peer manager makes
/// one when our leafdb head crosses a fork) does not add one.
#[tokio::test]
async fn without_eth_a_fork_id_update_leaves_the_record_alone() {
    let chain = ChainSpec::preset("sepolia").expect("preset parses");
    let record =
        LocalRecord { fork_id: None, leaf: Some(LeafEnrEntry::for_chain(&chain)), snap: false };
    let (node, _rx) =
        Discovery::start(&random_secret(), loopback_config(Vec::new(), 7040), record, None)
            .await
            .expect("discovery starts on loopback");
    let before = node.local_enr();
    assert_eq!(before.get_raw_rlp(ETH_ENR_KEY), None);
    assert!(node.update_fork_id(chain.fork_id(2_000_000, 1_761_607_008)), "nothing to update");
    let after = node.local_enr();
    assert_eq!(after.get_raw_rlp(ETH_ENR_KEY), None);
    assert_eq!(after.seq(), before.seq());
    node.shutdown().await;
}

/// Our record names the bound address only when it is public or local addresses are allowed
/// (a loopback or LAN test network): a cloud VM's private address is unreachable from the
/// internet. `external_ip` always wins.
#[tokio::test]
async fn a_local_listen_address_is_advertised_only_on_a_local_network() {
    let chain = ChainSpec::preset("sepolia").expect("preset parses");
    let record = LocalRecord {
        fork_id: Some(chain.fork_id(0, 0)),
        leaf: Some(LeafEnrEntry::for_chain(&chain)),
        snap: false,
    };
    let external = Ipv4Addr::new(203, 0, 113, 7);
    for (allow_local, external_ip, advertised) in [
        (true, None, Some(Ipv4Addr::LOCALHOST)),
        (false, None, None),
        (false, Some(external), Some(external)),
        (true, Some(external), Some(external)),
    ] {
        let mut config = loopback_config(Vec::new(), 7030);
        config.allow_local_addresses = allow_local;
        config.external_ip = external_ip;
        let (node, _rx) = Discovery::start(&random_secret(), config, record, None)
            .await
            .expect("discovery starts on loopback");
        let enr = node.local_enr();
        assert_eq!(enr.ip4(), advertised, "allow_local {allow_local}, external {external_ip:?}");
        assert_eq!(enr.tcp4(), Some(7030));
        assert!(enr.udp4().is_some_and(|port| port != 0));
        node.shutdown().await;
    }
}
