//! WAN emulation for `bench sync`: [`WanPeer`] wraps a real [`SyncPeer`] and delays every
//! request and answer as a wide-area link would. On bare loopback a round trip costs nothing, so
//! a sync that needs many of them (heal-only) would look as cheap as one that needs few.
//!
//! Each peer has two [`Link`]s, up (client → server) and down (server → client). A link is a
//! serialising queue: a message of `n` bytes handed to it at `now` starts when the link is free
//! (`max(now, free_at)`), occupies it for `n · 8 / bandwidth`, and arrives half the round trip
//! after it has been sent. A request crosses the up link before it is given to the real network;
//! its answer crosses the down link after the real answer has arrived.

use std::{
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use leafsync_p2p::{PeerId, PenaltyClass, leaf::ChainHead, requests::LeafRequest};
use leafsync_sync::{PeerFuture, SyncPeer, request_len, response_len};
use tokio::time::Instant;

/// Bytes a message occupies on a link beyond its RLP body (64): RLPx's 16-byte frame header, its
/// 16-byte MAC, the 16-byte frame MAC, the message-id byte and up to 15 bytes of padding to the
/// cipher's block. TCP/IP headers are not modelled (the bandwidth is that of the TCP payload).
pub(crate) const FRAME_OVERHEAD_BYTES: u64 = 64;

/// The emulated connection of every peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WanConfig {
    /// Round-trip time; zero turns latency off.
    pub(crate) rtt: Duration,
    /// Bandwidth per direction per peer, bits per second; zero turns the limit off.
    pub(crate) bits_per_sec: u64,
}

/// One direction of a peer's connection.
#[derive(Debug)]
pub(crate) struct Link {
    one_way: Duration,
    bits_per_sec: u64,
    /// When the link has finished sending everything handed to it so far.
    free_at: Mutex<Instant>,
}

impl Link {
    pub(crate) fn new(config: WanConfig) -> Self {
        Self {
            one_way: config.rtt / 2,
            bits_per_sec: config.bits_per_sec,
            free_at: Mutex::new(Instant::now()),
        }
    }

    /// Time the link is busy sending `bytes`.
    fn transmission(&self, bytes: u64) -> Duration {
        if self.bits_per_sec == 0 {
            return Duration::ZERO;
        }
        let nanos = u128::from(bytes) * 8 * 1_000_000_000 / u128::from(self.bits_per_sec);
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    /// When a message of `bytes` handed to the link at `now` arrives; the link stays busy until
    /// it has been sent.
    pub(crate) fn arrival(&self, bytes: u64, now: Instant) -> Instant {
        let transmission = self.transmission(bytes);
        let sent = if transmission.is_zero() {
            now
        } else {
            let mut free_at = self.free_at.lock().unwrap_or_else(PoisonError::into_inner);
            *free_at = (*free_at).max(now) + transmission;
            *free_at
        };
        sent + self.one_way
    }

    /// Carries a message of `bytes`: returns once it has arrived.
    pub(crate) async fn carry(&self, bytes: u64) {
        let now = Instant::now();
        let at = self.arrival(bytes, now);
        if at > now {
            tokio::time::sleep_until(at).await;
        }
    }
}

/// What crossed the links of one sync (all its peers): RLP bodies, without framing.
#[derive(Debug, Default)]
pub(crate) struct Traffic {
    bytes_up: AtomicU64,
    bytes_down: AtomicU64,
    requests: AtomicU64,
}

impl Traffic {
    /// `(bytes up, bytes down, requests)` so far.
    pub(crate) fn totals(&self) -> (u64, u64, u64) {
        (
            self.bytes_up.load(Ordering::Relaxed),
            self.bytes_down.load(Ordering::Relaxed),
            self.requests.load(Ordering::Relaxed),
        )
    }
}

#[derive(Debug)]
struct Links {
    up: Link,
    down: Link,
    traffic: Arc<Traffic>,
}

/// A peer behind an emulated WAN connection; see the module docs.
pub(crate) struct WanPeer {
    inner: Arc<dyn SyncPeer>,
    links: Arc<Links>,
}

impl WanPeer {
    /// `inner` behind a connection of its own, counting into `traffic`.
    pub(crate) fn new(inner: Arc<dyn SyncPeer>, config: WanConfig, traffic: Arc<Traffic>) -> Self {
        let links = Links { up: Link::new(config), down: Link::new(config), traffic };
        Self { inner, links: Arc::new(links) }
    }

    /// One request: up the link, through the real peer, and its answer down the link.
    fn exchange(&self, request: LeafRequest) -> PeerFuture {
        let (inner, links) = (Arc::clone(&self.inner), Arc::clone(&self.links));
        Box::pin(async move {
            let up = request_len(&request);
            links.traffic.requests.fetch_add(1, Ordering::Relaxed);
            links.traffic.bytes_up.fetch_add(up, Ordering::Relaxed);
            links.up.carry(up + FRAME_OVERHEAD_BYTES).await;
            let answer = inner.request(request).await?;
            let down = response_len(&answer);
            links.traffic.bytes_down.fetch_add(down, Ordering::Relaxed);
            links.down.carry(down + FRAME_OVERHEAD_BYTES).await;
            Ok(answer)
        })
    }
}

impl SyncPeer for WanPeer {
    fn id(&self) -> PeerId {
        self.inner.id()
    }

    fn head(&self) -> ChainHead {
        self.inner.head()
    }

    fn account_estimate(&self) -> u64 {
        self.inner.account_estimate()
    }

    fn request(&self, request: LeafRequest) -> PeerFuture {
        self.exchange(request)
    }

    /// Penalties are local to the client's network layer: no link to cross.
    fn penalise(&self, class: PenaltyClass) {
        self.inner.penalise(class)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use alloy_primitives::{B256, Bytes};
    use leafsync_p2p::{
        leaf::{GetNodes, Nodes},
        requests::LeafResponse,
    };

    use super::*;

    /// 8 Mbit/s: one byte per microsecond, so times are easy to read.
    const ONE_BYTE_PER_US: u64 = 8_000_000;

    fn config(rtt_ms: u64, bits_per_sec: u64) -> WanConfig {
        WanConfig { rtt: Duration::from_millis(rtt_ms), bits_per_sec }
    }

    #[tokio::test(start_paused = true)]
    async fn a_message_arrives_half_the_rtt_after_its_transmission() {
        let link = Link::new(config(50, ONE_BYTE_PER_US));
        let start = Instant::now();
        link.carry(10_000).await;
        // 10,000 bytes at 1 byte/µs = 10 ms, then 25 ms of propagation.
        assert_eq!(start.elapsed(), Duration::from_millis(35));
    }

    #[tokio::test(start_paused = true)]
    async fn back_to_back_messages_serialise_but_propagate_together() {
        let link = Link::new(config(50, ONE_BYTE_PER_US));
        let start = Instant::now();
        let timed = |bytes| {
            let link = &link;
            async move {
                link.carry(bytes).await;
                start.elapsed()
            }
        };
        let (first, second) = tokio::join!(timed(10_000), timed(20_000));
        assert_eq!(first, Duration::from_millis(35));
        // The second waits for the first's 10 ms on the wire, then needs its own 20 ms.
        assert_eq!(second, Duration::from_millis(55));
        // Once the link is idle again, a message starts at once.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let again = Instant::now();
        link.carry(1_000).await;
        assert_eq!(again.elapsed(), Duration::from_millis(26));
    }

    #[tokio::test(start_paused = true)]
    async fn zero_turns_each_part_off() {
        let start = Instant::now();
        Link::new(config(0, ONE_BYTE_PER_US)).carry(5_000).await;
        assert_eq!(start.elapsed(), Duration::from_millis(5));
        let start = Instant::now();
        let link = Link::new(config(40, 0));
        tokio::join!(link.carry(1 << 30), link.carry(1 << 30));
        assert_eq!(start.elapsed(), Duration::from_millis(20));
        let start = Instant::now();
        Link::new(config(0, 0)).carry(1 << 30).await;
        assert_eq!(start.elapsed(), Duration::ZERO);
    }

    /// Answers every `GetNodes` at once with `node_bytes` bytes per requested node.
    struct InstantPeer {
        node_bytes: usize,
    }

    impl SyncPeer for InstantPeer {
        fn id(&self) -> PeerId {
            PeerId::ZERO
        }
        fn head(&self) -> ChainHead {
            ChainHead::default()
        }
        fn account_estimate(&self) -> u64 {
            0
        }
        fn request(&self, request: LeafRequest) -> PeerFuture {
            let LeafRequest::GetNodes(request) = request else { unreachable!("not used") };
            let nodes = vec![Bytes::from(vec![0xaa; self.node_bytes]); request.nodes.len()];
            let answer = LeafResponse::Nodes(Nodes { nodes });
            Box::pin(async move { Ok(answer) })
        }
        fn penalise(&self, _: PenaltyClass) {}
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_pays_the_round_trip_and_both_transmissions() {
        let traffic = Arc::new(Traffic::default());
        let inner = Arc::new(InstantPeer { node_bytes: 1000 });
        let peer = WanPeer::new(inner, config(50, ONE_BYTE_PER_US), Arc::clone(&traffic));
        let request = GetNodes { nodes: Vec::new(), max_bytes: 1 << 20 };
        let mut nodes = Vec::new();
        for i in 0..10u8 {
            nodes.push(leafsync_p2p::leaf::NodeRequest {
                owner: leafsync_p2p::leaf::TrieOwner::Accounts,
                path: leafsync_p2p::leaf::WirePath::root(),
                hash: B256::repeat_byte(i),
            });
        }
        let request = GetNodes { nodes, ..request };
        let request = LeafRequest::GetNodes(request);
        let up = request_len(&request);
        let start = Instant::now();
        let answer = peer.request(request).await.unwrap();
        let down = response_len(&answer);
        assert!(down > 10_000, "{down}");
        let wire = up + down + 2 * FRAME_OVERHEAD_BYTES;
        let expected = Duration::from_millis(50) + Duration::from_micros(wire);
        // Each of the two sleeps ends on tokio's next millisecond tick.
        let elapsed = start.elapsed();
        assert!(
            elapsed >= expected && elapsed <= expected + Duration::from_millis(2),
            "{elapsed:?} for {expected:?}"
        );
        assert_eq!(traffic.totals(), (up, down, 1));
    }
}
