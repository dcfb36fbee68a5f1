//! Simulated snap/1 peers: a [`SnapTransport`] over serve's snap/1 server (`serve_message` on a
//! source leafdb), honest or with one kind of misbehaviour. Requests and answers go through
//! their wire encoding and `SnapMessage::decode` (snap/1's limits), as over RLPx.

use std::sync::{
    Arc, Mutex,
    atomic::{AtomicU64, Ordering},
};

use alloy_primitives::{B512, Bytes, U256};
use alloy_rlp::{Decodable, Encodable};
use leafsync_leafdb::{LeafDb, MemStore};
use leafsync_p2p::{
    MessageFault, PeerId, PenaltyClass,
    leaf::ChainHead,
    requests::{RequestError, TrackedRequest},
    snap::{SlimAccount, SnapMessage},
};
use leafsync_serve::snap::serve_message;
use leafsync_sync::{PeerFuture, SnapPeer, SnapTransport, SyncPeer, link::Link};

use super::{db_head, mutant::Mutator};

/// How a simulated snap/1 server behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapBehaviour {
    /// Serves its leafdb, as serve's server does.
    Honest,
    /// Answers every range empty with an empty proof (Besu's default, a geth still generating
    /// its snapshot); trie nodes and codes honest.
    EmptyRanges,
    /// Answers ranges and trie nodes empty, as a geth does for a root it cannot open (one still
    /// syncing, or one whose head trails the pivot); codes honest.
    Stateless,
    /// Every account balance and slot value in ranges off by one; nodes and codes honest.
    Junk,
    /// Ranges cut to their first item (proof kept): a peer starving the sync.
    OneAtATime,
    /// Account ranges with their accounts in reverse order: malformed, whatever the values.
    Unordered,
    /// Trie nodes answered with bytes no request asked for.
    WrongNodes,
    /// Changes `rate` of every eight answers at random ([`super::mutant::Mutator`], drawn
    /// from `seed`).
    Mutant { seed: u64, rate: u64 },
    /// Never answers.
    Silent,
    /// Answers its first `n` requests, then every request fails as a disconnect.
    Limited(u64),
}

/// Runs before each request with the server's leafdb (to move its head mid-sync).
pub type BeforeHook = Box<dyn Fn(&LeafDb<MemStore>) + Send + Sync>;

/// A snap/1 server over `db`.
pub struct SimSnap {
    pub id: PeerId,
    pub db: Arc<LeafDb<MemStore>>,
    pub behaviour: SnapBehaviour,
    pub requests: AtomicU64,
    /// Of `requests`, those for account or storage ranges.
    pub range_requests: AtomicU64,
    pub penalties: Mutex<Vec<PenaltyClass>>,
    /// The link each answer crosses, if any.
    pub link: Option<Arc<Link>>,
    pub before: Option<BeforeHook>,
    /// The changes of a [`SnapBehaviour::Mutant`].
    pub mutator: Option<Mutex<Mutator>>,
}

impl SimSnap {
    pub fn new(n: u8, db: Arc<LeafDb<MemStore>>, behaviour: SnapBehaviour) -> Arc<Self> {
        Self::with(n, db, behaviour, None, None)
    }

    pub fn with(
        n: u8,
        db: Arc<LeafDb<MemStore>>,
        behaviour: SnapBehaviour,
        link: Option<Arc<Link>>,
        before: Option<BeforeHook>,
    ) -> Arc<Self> {
        Arc::new(Self {
            id: B512::repeat_byte(n),
            db,
            behaviour,
            requests: AtomicU64::new(0),
            range_requests: AtomicU64::new(0),
            penalties: Mutex::new(Vec::new()),
            link,
            before,
            mutator: match behaviour {
                SnapBehaviour::Mutant { seed, rate } => Some(Mutex::new(Mutator::new(seed, rate))),
                _ => None,
            },
        })
    }

    /// The honest answer, through the wire encoding and the decoder's limits.
    fn serve(&self, request: &SnapMessage) -> SnapMessage {
        let answer = serve_message(&self.db, request.id(), &request.encoded()).unwrap().unwrap();
        SnapMessage::decode(answer.id(), &answer.encoded()).unwrap()
    }

    fn tamper(&self, answer: &mut SnapMessage) {
        let bump = |body: &Bytes| {
            let value = U256::decode(&mut body.as_ref()).unwrap() + U256::from(1u8);
            let mut out = Vec::new();
            value.encode(&mut out);
            Bytes::from(out)
        };
        match (self.behaviour, answer) {
            (
                SnapBehaviour::EmptyRanges | SnapBehaviour::Stateless,
                SnapMessage::AccountRange(a),
            ) => {
                a.accounts.clear();
                a.proof.clear();
            }
            (
                SnapBehaviour::EmptyRanges | SnapBehaviour::Stateless,
                SnapMessage::StorageRanges(s),
            ) => {
                s.slots.clear();
                s.proof.clear();
            }
            (SnapBehaviour::Stateless, SnapMessage::TrieNodes(t)) => t.nodes.clear(),
            (SnapBehaviour::Junk, SnapMessage::AccountRange(a)) => {
                for item in &mut a.accounts {
                    let acc = &item.account;
                    item.account =
                        SlimAccount { balance: acc.balance + U256::from(1u8), ..acc.clone() };
                }
            }
            (SnapBehaviour::Junk, SnapMessage::StorageRanges(s)) => {
                for slot in s.slots.iter_mut().flatten() {
                    slot.body = bump(&slot.body);
                }
            }
            (SnapBehaviour::Unordered, SnapMessage::AccountRange(a)) => a.accounts.reverse(),
            (SnapBehaviour::OneAtATime, SnapMessage::AccountRange(a)) => a.accounts.truncate(1),
            (SnapBehaviour::OneAtATime, SnapMessage::StorageRanges(s)) => {
                s.slots.truncate(1);
                if let Some(list) = s.slots.first_mut() {
                    list.truncate(1);
                }
            }
            (SnapBehaviour::WrongNodes, SnapMessage::TrieNodes(t)) => {
                for node in &mut t.nodes {
                    *node = Bytes::from(vec![0xc2, 0x80, 0x80]);
                }
            }
            _ => {}
        }
    }
}

impl SnapTransport for SimSnap {
    fn id(&self) -> PeerId {
        self.id
    }

    fn head(&self) -> ChainHead {
        db_head(&self.db)
    }

    fn request(&self, request: SnapMessage) -> PeerFuture<SnapMessage> {
        let n = self.requests.fetch_add(1, Ordering::Relaxed);
        if matches!(request, SnapMessage::GetAccountRange(_) | SnapMessage::GetStorageRanges(_)) {
            self.range_requests.fetch_add(1, Ordering::Relaxed);
        }
        match self.behaviour {
            SnapBehaviour::Silent => return Box::pin(futures::future::pending()),
            SnapBehaviour::Limited(limit) if n >= limit => {
                return Box::pin(async { Err(RequestError::Disconnected) });
            }
            _ => {}
        }
        if let Some(before) = &self.before {
            before(&self.db);
        }
        let mut answer = self.serve(&request);
        self.tamper(&mut answer);
        if let Some(mutator) = &self.mutator {
            mutator.lock().unwrap().mutate_snap(&request, &mut answer);
        }
        // What the network refuses before the sync sees it: an answer its decoder's limits
        // reject (the session ends on a breach, and the network penalises the peer), of
        // another kind, or with more items than asked.
        let answer = match SnapMessage::decode(answer.id(), &answer.encoded()) {
            Ok(decoded) => request
                .check_response(&decoded)
                .map(|()| decoded)
                .map_err(RequestError::InvalidResponse),
            Err(fault) => {
                self.penalise(fault.penalty());
                Err(RequestError::Disconnected)
            }
        };
        let link = self.link.clone();
        Box::pin(async move {
            let answer = answer?;
            if let Some(link) = link {
                link.carry(answer.encoded().len() as u64).await;
            }
            Ok(answer)
        })
    }

    fn penalise(&self, class: PenaltyClass) {
        self.penalties.lock().unwrap().push(class);
    }
}

impl super::Liar for SimSnap {
    fn liar(&self) -> (PeerId, Option<&Mutex<Mutator>>, &Mutex<Vec<PenaltyClass>>) {
        (self.id, self.mutator.as_ref(), &self.penalties)
    }
}

/// The sync peer of a simulated snap/1 server.
pub fn snap_peer(server: &Arc<SimSnap>) -> Arc<dyn SyncPeer> {
    Arc::new(SnapPeer::new(Arc::clone(server) as Arc<dyn SnapTransport>))
}

/// Sync peers of several simulated snap/1 servers.
pub fn snap_peers(servers: &[Arc<SimSnap>]) -> Vec<Arc<dyn SyncPeer>> {
    servers.iter().map(snap_peer).collect()
}

/// Sync peers of several simulated snap/1 servers, each probed for an account estimate at its
/// head root first (as the network does before handing a snap/1 peer to a sync). A mutant's
/// lies in the probe are not counted: the probe reads a size hint, nothing it could judge.
pub async fn probed_snap_peers(servers: &[Arc<SimSnap>]) -> Vec<Arc<dyn SyncPeer>> {
    let mut peers = Vec::new();
    for server in servers {
        let peer = SnapPeer::new(Arc::clone(server) as Arc<dyn SnapTransport>);
        peer.probe_accounts(server.head().state_root).await;
        if let Some(mutator) = &server.mutator {
            let mut mutator = mutator.lock().unwrap();
            (mutator.provable, mutator.no_state_claims) = (0, 0);
        }
        peers.push(Arc::new(peer) as Arc<dyn SyncPeer>);
    }
    peers
}
