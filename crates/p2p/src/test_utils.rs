//! Test harnesses for every crate that runs `leaf/1` nodes in its tests (feature `test-utils`,
//! reth's habit): a [`TestNode`] on `127.0.0.1:0` with static peers, and [`wait_connected`] /
//! [`wait_event`], which wait on the node's [`NetworkEvent`]s instead of polling with sleeps.
//! Every wait is bounded by [`WAIT`]: a test fails rather than hangs. [`NodeScript`] runs an
//! independent devp2p peer of `tests/interop` for the interop tests; [`CountingAlloc`] measures
//! what a test's code allocates; [`raw`] is a peer run by hand, for what no well-behaved peer
//! sends.

mod counting_alloc;
mod node_script;
pub mod raw;
pub use counting_alloc::CountingAlloc;
pub use node_script::{NodeScript, interop_dir};

use crate::{
    EciesStream, PeerId,
    chain::{ChainSpec, Enr},
    ecies::{Ecies, FrameCodec, id_from_pk},
    leaf::{ChainHead, ServeFlags},
    peers::{
        EthConfig, EthHead, LocalHead, MAX_PENDING_INBOUND, Network, NetworkConfig, NetworkEvent,
        NetworkHandle, NodeRecord, RequestHandler, SnapHandler,
    },
};
use alloy_primitives::B256;
use discv5::{Discv5, ListenConfig};
use enr::CombinedKey;
use secp256k1::{PublicKey, SECP256K1, SecretKey};
use std::{
    net::{Ipv4Addr, SocketAddr},
    sync::Arc,
    time::Duration,
};
use tokio::{
    net::{TcpListener, TcpStream, UdpSocket},
    sync::{broadcast, watch},
};

/// Upper bound of any single wait of a test (connecting, an event).
pub const WAIT: Duration = Duration::from_secs(20);

/// Dial interval of test nodes: static peers are dialed (and redialed) quickly.
pub const TEST_DIAL_INTERVAL: Duration = Duration::from_millis(100);

/// The chain test nodes run: the `sepolia` preset (a known genesis).
pub fn test_chain() -> ChainSpec {
    ChainSpec::preset("sepolia").expect("the sepolia preset parses")
}

/// A fresh node key and its node id.
pub fn test_key() -> (SecretKey, PeerId) {
    let sk = SecretKey::new(&mut rand::rng());
    (sk, id_from_pk(&PublicKey::from_secret_key(SECP256K1, &sk)))
}

/// A head at block `number` (hash `number` repeated) with `state_root`, serving everything.
pub fn test_head(number: u64, state_root: B256) -> LocalHead {
    LocalHead {
        head: ChainHead { number, hash: B256::repeat_byte(number as u8), state_root },
        timestamp: 0,
        account_estimate: 1000,
        serves: ServeFlags::ALL,
    }
}

/// The configuration of a test node: a fresh key, [`test_chain`], `127.0.0.1:0`, a quick dial
/// interval, and per-IP limits as high as the global ones (every test peer is on 127.0.0.1; the
/// per-IP limits are tested on their own). Returns the head sender that drives the node's head.
pub fn test_config(
    handler: Arc<dyn RequestHandler>,
    head: LocalHead,
) -> (NetworkConfig, watch::Sender<LocalHead>) {
    let (head_tx, head_rx) = watch::channel(head);
    let mut config = NetworkConfig::new(test_key().0, test_chain(), head_rx, handler);
    config.listen_addr = SocketAddr::from(([127, 0, 0, 1], 0));
    config.dial_interval = TEST_DIAL_INTERVAL;
    config.max_pending_inbound_per_ip = MAX_PENDING_INBOUND;
    config.max_inbound_per_ip = config.max_inbound;
    (config, head_tx)
}

/// `eth/69` and `snap/1` for a test node at [`test_chain`]'s genesis (headers answered empty,
/// snap/1 answered by `snap`, or empty), and the sender that moves the execution client's head.
pub fn test_eth(snap: Option<Arc<dyn SnapHandler>>) -> (EthConfig, watch::Sender<EthHead>) {
    let (tx, rx) = watch::channel(EthHead::genesis(&test_chain()));
    let mut eth = EthConfig::new(rx);
    eth.snap = snap;
    (eth, tx)
}

/// A running node on loopback, with its head sender and an event subscription taken at start.
#[derive(Debug)]
pub struct TestNode {
    /// The network handle.
    pub handle: NetworkHandle,
    /// Moves the node's head.
    pub head: watch::Sender<LocalHead>,
    /// The node's events since it started.
    pub events: broadcast::Receiver<NetworkEvent>,
}

impl TestNode {
    /// Starts a node with [`test_config`] that answers with `handler`, at `head`, dialing `peers`
    /// as static peers.
    pub async fn start(
        handler: Arc<dyn RequestHandler>,
        head: LocalHead,
        peers: Vec<NodeRecord>,
    ) -> Self {
        let (mut config, head) = test_config(handler, head);
        config.static_peers = peers;
        Self::with_config(config, head).await
    }

    /// Starts a node from a (test) configuration; `events` sees every event from the start (a
    /// static peer's connection may be made before `start` returns).
    pub async fn with_config(config: NetworkConfig, head: watch::Sender<LocalHead>) -> Self {
        let (handle, events) =
            Network::start_subscribed(config).await.expect("the network starts on loopback");
        Self { handle, head, events }
    }

    /// The node's id.
    pub fn id(&self) -> PeerId {
        self.handle.local_id()
    }

    /// The node's enode (id and bound address), to give to other nodes as a peer.
    pub fn enode(&self) -> NodeRecord {
        self.handle.local_enode()
    }
}

/// Waits (at most [`WAIT`]) until `handle`'s node has an established session with `peer`.
pub async fn wait_connected(handle: &NetworkHandle, peer: PeerId) {
    // Subscribe first, then look: a connection made in between is seen by one of the two.
    let mut events = handle.events();
    if handle.peers().await.iter().any(|p| p.id == peer) {
        return;
    }
    wait_event(&mut events, |e| match e {
        NetworkEvent::PeerConnected { peer: p, .. } if *p == peer => Some(()),
        _ => None,
    })
    .await;
}

/// Waits (at most [`WAIT`]) for the first event `pick` accepts.
pub async fn wait_event<T>(
    events: &mut broadcast::Receiver<NetworkEvent>,
    mut pick: impl FnMut(&NetworkEvent) -> Option<T>,
) -> T {
    tokio::time::timeout(WAIT, async {
        loop {
            match events.recv().await {
                Ok(event) => {
                    if let Some(t) = pick(&event) {
                        return t;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => panic!("event channel closed"),
            }
        }
    })
    .await
    .expect("event within the wait limit")
}

/// A plain discv5 node on loopback (like a consensus client): no `leaf` entry, but a TCP port
/// (`tcp_port`) in its record, started and given `bootnode`.
pub async fn plain_discv5_node(bootnode: Enr, tcp_port: u16) -> Discv5 {
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind loopback");
    let port = socket.local_addr().expect("bound").port();
    let key = CombinedKey::generate_secp256k1();
    let enr = Enr::builder()
        .ip4(Ipv4Addr::LOCALHOST)
        .udp4(port)
        .tcp4(tcp_port)
        .build(&key)
        .expect("record builds");
    let listen = ListenConfig::FromSockets { ipv4: Some(Arc::new(socket)), ipv6: None };
    let mut discv5 =
        Discv5::new(enr, key, discv5::ConfigBuilder::new(listen).build()).expect("discv5 setup");
    discv5.start().await.expect("discv5 starts");
    discv5.add_enr(bootnode).expect("bootnode added");
    discv5
}

/// The two frame codecs of one session, (initiator, recipient), after an in-memory handshake
/// between fresh random keys.
pub fn frame_codecs() -> (FrameCodec, FrameCodec) {
    let ska = SecretKey::new(&mut rand::rng());
    let skb = SecretKey::new(&mut rand::rng());
    let mut a = Ecies::new_initiator(ska, id_from_pk(&PublicKey::from_secret_key(SECP256K1, &skb)))
        .expect("initiator");
    let mut b = Ecies::new_recipient(skb);
    b.read_auth(&a.create_auth().expect("auth")).expect("read auth");
    a.read_ack(&b.create_ack().expect("ack")).expect("read ack");
    (FrameCodec::new(a.secrets().expect("a")), FrameCodec::new(b.secrets().expect("b")))
}

/// Two ECIES streams over one loopback TCP connection: the initiator (key `initiator`) and the
/// recipient (key `recipient`, whose id the initiator dials), after the EIP-8 handshake.
pub async fn ecies_pair(
    initiator: SecretKey,
    recipient: SecretKey,
) -> (EciesStream<TcpStream>, EciesStream<TcpStream>) {
    let recipient_id = id_from_pk(&PublicKey::from_secret_key(SECP256K1, &recipient));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
    let addr = listener.local_addr().expect("bound");
    let accept = async {
        let (socket, _) = listener.accept().await.expect("accept");
        EciesStream::incoming(socket, recipient).await.expect("recipient handshake")
    };
    let connect = async {
        let socket = TcpStream::connect(addr).await.expect("connect");
        EciesStream::connect(socket, initiator, recipient_id).await.expect("initiator handshake")
    };
    tokio::join!(connect, accept)
}

/// The directory of the package whose test is running: `CARGO_MANIFEST_DIR` as cargo sets it
/// when the test runs, else `built_in` (the caller's `env!("CARGO_MANIFEST_DIR")`). A test binary
/// kept in a shared target directory from a build in another checkout would otherwise read that
/// checkout's files.
pub fn package_dir(built_in: &str) -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(|| built_in.into(), Into::into)
}

/// Cases a proptest over peer input runs: `default` (what every `cargo test` runs), or
/// `PROPTEST_CASES` for a soak (docs/testing.md). proptest's own `with_cases` would ignore the
/// variable.
pub fn proptest_cases(default: u32) -> u32 {
    env_number("PROPTEST_CASES", default)
}

/// The number in the environment variable `name`, or `default` when it is unset: a test's knob
/// for a soak (docs/testing.md). A value that is not such a number fails the test, naming it.
pub fn env_number<T: std::str::FromStr>(name: &str, default: T) -> T
where
    T::Err: std::fmt::Display,
{
    match std::env::var(name) {
        Ok(value) => value.trim().parse().unwrap_or_else(|e| panic!("{name}={value:?}: {e}")),
        Err(_) => default,
    }
}
