//! The snap/1 servers of `bench sync --snap`: the same generated state served by
//! `leafsync_serve::snap::serve_message`, one thread per server in the client's process (no
//! network speaks snap/1 from a leafsync node to another yet), behind the same WAN emulation as
//! the `leaf/1` servers. The client syncs through `leafsync_sync::SnapPeer` over
//! [`WanSnap`], a [`SnapTransport`] that carries each snap/1 message's encoding over the
//! emulated links and decodes the answer with snap/1's limits, as the network would.
//!
//! The server threads' CPU time (serving, encoding, snappy) is measured by each thread and
//! left out of the client's ([`SnapServers::finish`]).

use std::sync::Arc;

use bytes::Bytes;
use leafsync_leafdb::LeafDb;
use leafsync_p2p::{
    PeerId, PenaltyClass,
    leaf::ChainHead,
    requests::{RequestError, ResponseViolation},
    snap::SnapMessage,
};
use leafsync_serve::snap::serve_message;
use leafsync_sync::{PeerFuture, SnapTransport};
use tokio::sync::{mpsc, oneshot};
use tracing::warn;

use super::{
    cpu_ticks,
    wan::{FRAME_OVERHEAD_BYTES, Links},
};

/// Requests queued at one server thread at most (16, the protocol's requests in flight per
/// peer): a client never has more outstanding at one server.
const SERVER_QUEUE_BOUND: usize = 16;

/// An answer as the server thread sends it: message id, payload, and the payload's size after
/// snappy.
type Answer = Result<(u8, Bytes, u64), RequestError>;

/// A request for a server thread: message id, payload, where the answer goes.
type Job = (u8, Vec<u8>, oneshot::Sender<Answer>);

/// The running server threads.
#[derive(Debug)]
pub(crate) struct SnapServers {
    senders: Vec<mpsc::Sender<Job>>,
    threads: Vec<std::thread::JoinHandle<u64>>,
}

impl SnapServers {
    /// Starts `count` server threads over `db`.
    pub(crate) fn start(db: &Arc<LeafDb>, count: usize) -> Self {
        let (mut senders, mut threads) = (Vec::new(), Vec::new());
        for _ in 0..count {
            let (tx, rx) = mpsc::channel(SERVER_QUEUE_BOUND);
            let db = Arc::clone(db);
            threads.push(std::thread::spawn(move || serve(&db, rx)));
            senders.push(tx);
        }
        Self { senders, threads }
    }

    /// A transport to server `i` (of [`Self::start`]'s `count`) behind `links`.
    pub(crate) fn transport(&self, i: usize, head: ChainHead, links: Links) -> Option<WanSnap> {
        let server = self.senders.get(i)?.clone();
        let mut id = PeerId::ZERO;
        id.0[0] = 0x5a;
        id.0[63] = u8::try_from(i).unwrap_or(u8::MAX);
        Some(WanSnap { id, head, server, links: Arc::new(links) })
    }

    /// Waits for every thread to end (every transport dropped) and returns their CPU time in
    /// clock ticks.
    pub(crate) fn finish(self) -> u64 {
        drop(self.senders);
        self.threads.into_iter().map(|t| t.join().unwrap_or(0)).sum()
    }
}

/// One server thread: answers each request as a snap/1 server's session would (decode with
/// snap/1's limits, serve, encode, compress), until every sender is gone. Returns its CPU time.
fn serve(db: &LeafDb, mut rx: mpsc::Receiver<Job>) -> u64 {
    let mut encoder = snap::raw::Encoder::new();
    let mut compressed = Vec::new();
    while let Some((id, payload, reply)) = rx.blocking_recv() {
        let answer = match serve_message(db, id, &payload) {
            Ok(Some(answer)) => {
                let encoded = answer.encoded();
                compressed.resize(snap::raw::max_compress_len(encoded.len()), 0);
                let size = encoder.compress(&encoded, &mut compressed).unwrap_or(encoded.len());
                Ok((answer.id(), Bytes::from(encoded), size as u64))
            }
            // Not a request: a server would drop the session.
            Ok(None) => Err(RequestError::Disconnected),
            Err(e) => {
                warn!(error = %e, "bench snap server: bad request; dropping it as a session would");
                Err(RequestError::Disconnected)
            }
        };
        let _ = reply.send(answer);
    }
    cpu_ticks("thread-self").unwrap_or(0)
}

/// A snap/1 server thread behind an emulated WAN connection.
#[derive(Debug)]
pub(crate) struct WanSnap {
    id: PeerId,
    head: ChainHead,
    server: mpsc::Sender<Job>,
    links: Arc<Links>,
}

impl SnapTransport for WanSnap {
    fn id(&self) -> PeerId {
        self.id
    }

    fn head(&self) -> ChainHead {
        self.head
    }

    fn request(&self, request: SnapMessage) -> PeerFuture<SnapMessage> {
        let (server, links) = (self.server.clone(), Arc::clone(&self.links));
        Box::pin(async move {
            let (id, payload) = (request.id(), request.encoded());
            let up = payload.len() as u64;
            links.traffic.request(up);
            links.up.carry(up + FRAME_OVERHEAD_BYTES).await;
            let (tx, rx) = oneshot::channel();
            server.send((id, payload, tx)).await.map_err(|_| RequestError::Disconnected)?;
            let (id, payload, snappy) = rx.await.map_err(|_| RequestError::Disconnected)??;
            let down = payload.len() as u64;
            links.traffic.answer(down);
            links.traffic.snappy(snappy);
            links.down.carry(down + FRAME_OVERHEAD_BYTES).await;
            SnapMessage::decode(id, &payload)
                .map_err(|_| RequestError::InvalidResponse(ResponseViolation::WrongType))
        })
    }

    fn penalise(&self, class: PenaltyClass) {
        warn!(peer = %self.id, ?class, "bench snap server penalised");
    }
}
