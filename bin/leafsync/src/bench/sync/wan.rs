//! WAN emulation for `bench sync`: [`WanPeer`] wraps a real [`SyncPeer`] and delays every
//! request and answer as a wide-area link would. On bare loopback a round trip costs nothing, so
//! a sync that needs many of them (heal-only) would look as cheap as one that needs few.
//!
//! Each peer has two [`Link`]s (serialising queues; see there), up (client → server) and down
//! (server → client), each with half the round trip as its one-way delay. A request crosses the
//! up link before it is given to the real network; its answer crosses the down link after the
//! real answer has arrived.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use leafsync_p2p::{PeerId, PenaltyClass, leaf::ChainHead, requests::LeafRequest};
use leafsync_sync::{PeerFuture, SyncPeer, link::Link, request_len};
use tokio::sync::mpsc;

use super::{cpu_s, cpu_ticks};

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

/// What crossed the links of one sync (all its peers): RLP bodies, without framing.
#[derive(Debug, Default)]
pub(crate) struct Traffic {
    bytes_up: AtomicU64,
    bytes_down: AtomicU64,
    requests: AtomicU64,
    /// `leaf/1` requests by kind, in the order of [`LEAF_KINDS`].
    leaf_kinds: [AtomicU64; 4],
    /// Answers' payloads after snappy, as RLPx sends them (see [`Snappy`]).
    snappy_down: AtomicU64,
    /// CPU nanoseconds the sync's threads spent encoding answers again for [`Snappy`]: the
    /// bench's work, not the sync's (a real client receives the bytes from the wire).
    encode_ns: AtomicU64,
}

/// The `leaf/1` request kinds, as [`Totals::leaf_kinds`] counts them.
pub(crate) const LEAF_KINDS: [&str; 4] = ["GetChunk", "GetStorageChunk", "GetNodes", "GetCodes"];

/// The index of `request`'s kind in [`LEAF_KINDS`].
const fn kind_index(request: &LeafRequest) -> usize {
    match request {
        LeafRequest::GetChunk(_) => 0,
        LeafRequest::GetStorageChunk(_) => 1,
        LeafRequest::GetNodes(_) => 2,
        LeafRequest::GetCodes(_) => 3,
    }
}

/// What crossed the links of one sync so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Totals {
    pub(crate) bytes_up: u64,
    pub(crate) bytes_down: u64,
    pub(crate) requests: u64,
    /// `leaf/1` requests by kind ([`LEAF_KINDS`]).
    pub(crate) leaf_kinds: [u64; 4],
    pub(crate) snappy_down: u64,
}

impl Totals {
    /// What crossed since `earlier`.
    pub(crate) fn since(self, earlier: Self) -> Self {
        Self {
            bytes_up: self.bytes_up - earlier.bytes_up,
            bytes_down: self.bytes_down - earlier.bytes_down,
            requests: self.requests - earlier.requests,
            leaf_kinds: std::array::from_fn(|i| self.leaf_kinds[i] - earlier.leaf_kinds[i]),
            snappy_down: self.snappy_down - earlier.snappy_down,
        }
    }
}

impl Traffic {
    /// Everything counted so far.
    pub(crate) fn totals(&self) -> Totals {
        Totals {
            bytes_up: self.bytes_up.load(Ordering::Relaxed),
            bytes_down: self.bytes_down.load(Ordering::Relaxed),
            requests: self.requests.load(Ordering::Relaxed),
            leaf_kinds: std::array::from_fn(|i| self.leaf_kinds[i].load(Ordering::Relaxed)),
            snappy_down: self.snappy_down.load(Ordering::Relaxed),
        }
    }

    /// A request of `bytes` goes up.
    pub(crate) fn request(&self, bytes: u64) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.bytes_up.fetch_add(bytes, Ordering::Relaxed);
    }

    /// The request that went up was a `leaf/1` `request`.
    pub(crate) fn leaf_kind(&self, request: &LeafRequest) {
        self.leaf_kinds[kind_index(request)].fetch_add(1, Ordering::Relaxed);
    }

    /// An answer of `bytes` comes down.
    pub(crate) fn answer(&self, bytes: u64) {
        self.bytes_down.fetch_add(bytes, Ordering::Relaxed);
    }

    /// An answer's payload took `bytes` after snappy.
    pub(crate) fn snappy(&self, bytes: u64) {
        self.snappy_down.fetch_add(bytes, Ordering::Relaxed);
    }

    /// CPU seconds the sync's threads spent encoding answers again for [`Snappy`], to be left
    /// out of the client's CPU like the snappy thread's own.
    pub(crate) fn encode_cpu_s(&self) -> f64 {
        self.encode_ns.load(Ordering::Relaxed) as f64 / 1e9
    }
}

/// Payloads waiting for [`Snappy`]'s thread at most (16, 32 MiB of 2 MiB answers): a sync
/// that outruns the compressor waits for it rather than holding every answer twice.
pub(crate) const SNAPPY_QUEUE_BOUND: usize = 16;

/// Sizes answers after snappy (`snap::raw`, RLPx's per-message compression) on a thread of its
/// own, so that the client's syncer does not pay for it in wall time; its CPU time is returned
/// by [`Snappy::finish`] and left out of the client's. The real RLPx of the leaf sync compresses
/// in the servers' process and decompresses here; the bench cannot see those sizes from
/// outside the session, so it compresses each payload once more.
#[derive(Debug)]
pub(crate) struct Snappy {
    tx: mpsc::Sender<Bytes>,
    thread: std::thread::JoinHandle<u64>,
}

impl Snappy {
    /// Starts the thread, counting into `traffic`.
    pub(crate) fn start(traffic: Arc<Traffic>) -> Self {
        let (tx, mut rx) = mpsc::channel::<Bytes>(SNAPPY_QUEUE_BOUND);
        let thread = std::thread::spawn(move || {
            let mut encoder = snap::raw::Encoder::new();
            let mut out = Vec::new();
            while let Some(payload) = rx.blocking_recv() {
                out.resize(snap::raw::max_compress_len(payload.len()), 0);
                // A payload snappy cannot take (over 4 GiB) would go uncompressed.
                let size = encoder.compress(&payload, &mut out).unwrap_or(payload.len());
                traffic.snappy(size as u64);
            }
            cpu_ticks("thread-self").unwrap_or(0)
        });
        Self { tx, thread }
    }

    /// A sender for the payloads.
    pub(crate) fn sender(&self) -> mpsc::Sender<Bytes> {
        self.tx.clone()
    }

    /// Waits until every payload has been counted (every sender dropped) and returns the
    /// thread's CPU time in clock ticks.
    pub(crate) fn finish(self) -> u64 {
        drop(self.tx);
        self.thread.join().unwrap_or(0)
    }
}

/// A peer's two links and where their traffic is counted.
#[derive(Debug)]
pub(crate) struct Links {
    pub(crate) up: Link,
    pub(crate) down: Link,
    pub(crate) traffic: Arc<Traffic>,
    /// Answers' payloads to size after snappy.
    pub(crate) snappy: mpsc::Sender<Bytes>,
}

impl Links {
    /// A connection of `config`, counting into `traffic` and `snappy`.
    pub(crate) fn new(
        config: WanConfig,
        traffic: Arc<Traffic>,
        snappy: mpsc::Sender<Bytes>,
    ) -> Self {
        let link = || Link::new(config.rtt / 2, config.bits_per_sec);
        Self { up: link(), down: link(), traffic, snappy }
    }
}

/// A peer behind an emulated WAN connection; see the module docs.
pub(crate) struct WanPeer {
    inner: Arc<dyn SyncPeer>,
    links: Arc<Links>,
}

impl WanPeer {
    /// `inner` behind a connection of its own.
    pub(crate) fn new(inner: Arc<dyn SyncPeer>, links: Links) -> Self {
        Self { inner, links: Arc::new(links) }
    }

    /// One request (for `pivot`, if given): up the link, through the real peer, and its answer
    /// down the link.
    fn exchange(&self, pivot: Option<ChainHead>, request: LeafRequest) -> PeerFuture {
        let (inner, links) = (Arc::clone(&self.inner), Arc::clone(&self.links));
        Box::pin(async move {
            let up = request_len(&request);
            links.traffic.request(up);
            links.traffic.leaf_kind(&request);
            links.up.carry(up + FRAME_OVERHEAD_BYTES).await;
            let answer = match pivot {
                Some(pivot) => inner.request_at(&pivot, request).await?,
                None => inner.request(request).await?,
            };
            // The payload as RLPx compresses it, encoded on this thread (nothing awaited in
            // between, so its clock is the work's). Its length is the answer's size as the sync
            // counts it ([`leafsync_sync::response_len`]: the request id is one byte).
            let cpu = cpu_s(libc::CLOCK_THREAD_CPUTIME_ID);
            let payload = answer.encoded().payload(1);
            let down = payload.len() as u64;
            let spent = (cpu_s(libc::CLOCK_THREAD_CPUTIME_ID) - cpu).max(0.0);
            links.traffic.encode_ns.fetch_add((spent * 1e9) as u64, Ordering::Relaxed);
            links.traffic.answer(down);
            // Closed only once the bench has stopped counting.
            let _ = links.snappy.send(payload).await;
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
        self.exchange(None, request)
    }

    // What a source of other peers (snap/1) needs passes through.
    fn request_at(&self, pivot: &ChainHead, request: LeafRequest) -> PeerFuture {
        self.exchange(Some(*pivot), request)
    }

    fn lacks_state(&self, root: &alloy_primitives::B256) -> bool {
        self.inner.lacks_state(root)
    }

    fn lacks_nodes(&self, root: &alloy_primitives::B256) -> bool {
        self.inner.lacks_nodes(root)
    }

    fn exact_root(&self) -> bool {
        self.inner.exact_root()
    }

    fn last_answer(&self) -> Option<tokio::time::Instant> {
        self.inner.last_answer()
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
    use leafsync_sync::response_len;
    use tokio::time::Instant;

    use super::*;

    /// 8 Mbit/s: one byte per microsecond, so times are easy to read.
    const ONE_BYTE_PER_US: u64 = 8_000_000;

    fn config(rtt_ms: u64, bits_per_sec: u64) -> WanConfig {
        WanConfig { rtt: Duration::from_millis(rtt_ms), bits_per_sec }
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
        let snappy = Snappy::start(Arc::clone(&traffic));
        let inner = Arc::new(InstantPeer { node_bytes: 1000 });
        let links = Links::new(config(50, ONE_BYTE_PER_US), Arc::clone(&traffic), snappy.sender());
        let peer = WanPeer::new(inner, links);
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
        drop(peer);
        snappy.finish();
        let totals = traffic.totals();
        assert_eq!((totals.bytes_up, totals.bytes_down, totals.requests), (up, down, 1));
        // Ten 1000-byte runs of one byte compress to a small fraction.
        assert!(totals.snappy_down > 0 && totals.snappy_down < down / 10, "{totals:?}");
    }
}
