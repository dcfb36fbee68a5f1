//! [`PeerManager`]: the one owner of every peer's state (sessions, scores, bans, dialing). A single
//! task runs [`PeerManager::run`]; everything else talks to it over bounded channels: handles send
//! [`Command`]s, sessions send [`SessionEvent`]s, handshake tasks send [`HandshakeEvent`]s, and
//! discovery sends dial candidates. The manager itself never waits on a session (it uses
//! `try_send`), so no cycle of full channels can deadlock it.

use super::{
    LocalHead, NodeRecord, RequestHandler,
    active::{
        ActiveSession, ResponseSender, SESSION_COMMAND_CHANNEL_CAPACITY, SessionCommand,
        SessionEvent,
    },
    candidates::CandidateQueue,
    dial::Backoff,
    events::{Direction, DiscoveryCounters, NetworkEvent, PeerInfo, PenaltyReason, SessionId},
    heads::HeadFilter,
    pending::{PendingInbound, PendingSlot},
    score::{PeerScores, ScoreState},
};
use crate::{
    PeerId, PenaltyClass,
    chain::Enr,
    discovery::{DialCandidate, Discovery},
    ecies::EciesStream,
    leaf::LeafRequest,
    leaf::{ChainHead, Status},
    p2pstream::{DisconnectReason, stream::encode_message},
    requests::{RequestError, RequestTracker},
    session::{
        Established, SessionError, SessionParams, establish_authenticated, establish_outbound,
    },
};
use alloy_eip2124::ForkFilter;
use futures::SinkExt;
use std::{
    collections::{HashMap, HashSet, VecDeque},
    net::{IpAddr, SocketAddr},
    sync::{Arc, atomic::AtomicBool},
    time::Duration,
};
use tokio::{
    net::{TcpListener, TcpStream},
    sync::{Semaphore, broadcast, mpsc, oneshot, watch},
    task::JoinSet,
    time::{Instant, MissedTickBehavior},
};
use tracing::{debug, trace, warn};

/// Capacity of the command channel from [`super::NetworkHandle`]s. Handles wait when it is full,
/// which only happens if the manager is overloaded; 256 commands are a few milliseconds of work.
pub const COMMAND_CHANNEL_CAPACITY: usize = 256;

/// Capacity of the channel from sessions to the manager (penalties, head announcements, ends). A
/// session waits when it is full and meanwhile stops reading its socket: backpressure, not loss.
pub const SESSION_EVENT_CHANNEL_CAPACITY: usize = 1024;

/// Capacity of the channel from handshake tasks to the manager. Each task sends at most two
/// events; with at most [`MAX_PENDING_INBOUND`] inbound and `max_outbound` outbound handshakes at
/// once, 128 is rarely reached (tasks wait when it is).
pub const HANDSHAKE_EVENT_CHANNEL_CAPACITY: usize = 128;

/// Most inbound connections in their handshake at once; further accepted sockets are closed at
/// once. Bounds the work an attacker can cause with connections that never finish their
/// handshake (each one lasts at most [`INBOUND_HANDSHAKE_TIMEOUT`]); the per-IP share
/// (`NetworkConfig::max_pending_inbound_per_ip`) keeps one host from taking all of them.
pub const MAX_PENDING_INBOUND: usize = 32;

/// Time an inbound connection has for its whole handshake: ECIES, our admission check, Hello and
/// Status. Each step has its own timeout too, but they add up to 25 s; one deadline of 10 s
/// (honest handshakes take a few round trips, well under a second) frees a pending slot held by
/// a slow-trickling peer as early as ECIES alone would (review finding M2).
pub const INBOUND_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Time a dial has for TCP connect plus the whole handshake (go-ethereum's 15 s dial timeout).
/// The step timeouts add up to 30 s; a tarpit candidate that answers each step just in time
/// would hold one of our outbound slots that long (review finding M7).
pub const OUTBOUND_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(15);

/// Time sessions get at shutdown to send their Disconnect before they are aborted.
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(3);

/// Pause of the accept loop after an accept error. Errors like EMFILE (out of file descriptors)
/// repeat at once; pausing 100 ms keeps the manager from spinning while sessions close and free
/// descriptors, and delays new inbound peers only slightly.
pub const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(100);

/// What a handle asks the manager.
#[derive(Debug)]
pub(crate) enum Command {
    Peers(oneshot::Sender<Vec<PeerInfo>>),
    AddPeer(NodeRecord),
    Request { peer: PeerId, request: LeafRequest, reply: ResponseSender },
    Report { peer: PeerId, class: PenaltyClass },
    Disconnect { peer: PeerId, reason: DisconnectReason },
    LocalEnr(oneshot::Sender<Option<Enr>>),
    DiscoveryCounters(oneshot::Sender<Option<DiscoveryCounters>>),
    Shutdown(oneshot::Sender<()>),
}

/// What a handshake task tells the manager.
#[derive(Debug)]
pub(crate) enum HandshakeEvent {
    /// An inbound connection passed ECIES: may it go on?
    Authenticated {
        peer: PeerId,
        addr: SocketAddr,
        reply: oneshot::Sender<Result<(), DisconnectReason>>,
    },
    /// A session is established.
    Established { direction: Direction, addr: SocketAddr, established: Box<Established> },
    /// A handshake failed.
    Failed { direction: Direction, peer: Option<PeerId>, error: SessionError },
}

/// A connected peer.
#[derive(Debug)]
struct PeerEntry {
    session: SessionId,
    commands: mpsc::Sender<SessionCommand>,
    addr: SocketAddr,
    direction: Direction,
    client_version: String,
    status: Status,
    head: ChainHead,
}

/// Everything [`PeerManager::new`] needs.
pub(crate) struct ManagerParts {
    pub(crate) local_id: PeerId,
    pub(crate) params: Arc<SessionParams>,
    pub(crate) listener: TcpListener,
    pub(crate) handler: Arc<dyn RequestHandler>,
    pub(crate) head: watch::Receiver<LocalHead>,
    pub(crate) commands: mpsc::Receiver<Command>,
    pub(crate) events: broadcast::Sender<NetworkEvent>,
    pub(crate) discovery: Option<(Discovery, mpsc::Receiver<DialCandidate>)>,
    pub(crate) static_peers: Vec<NodeRecord>,
    pub(crate) trusted_peers: Vec<NodeRecord>,
    pub(crate) max_inbound: usize,
    pub(crate) max_outbound: usize,
    pub(crate) dial_interval: Duration,
    pub(crate) max_pending_inbound_per_ip: usize,
    pub(crate) max_inbound_per_ip: usize,
    pub(crate) max_concurrent_handler_calls: usize,
    pub(crate) max_static_peers: usize,
}

/// The peer manager; see the module documentation.
pub(crate) struct PeerManager {
    local_id: PeerId,
    params: Arc<SessionParams>,
    listener: TcpListener,
    handler: Arc<dyn RequestHandler>,
    head: watch::Receiver<LocalHead>,
    commands: mpsc::Receiver<Command>,
    events: broadcast::Sender<NetworkEvent>,
    session_tx: mpsc::Sender<SessionEvent>,
    session_rx: mpsc::Receiver<SessionEvent>,
    handshake_tx: mpsc::Sender<HandshakeEvent>,
    handshake_rx: mpsc::Receiver<HandshakeEvent>,
    discovery: Option<Discovery>,
    candidates: Option<mpsc::Receiver<DialCandidate>>,
    peers: HashMap<PeerId, PeerEntry>,
    dialing: HashSet<PeerId>,
    /// Inbound handshakes in progress; each task holds a slot that frees itself when dropped.
    pending_inbound: PendingInbound,
    scores: PeerScores,
    backoff: Backoff,
    /// Static and trusted peers, with whether they are trusted (at most `max_static_peers`).
    statics: HashMap<PeerId, (NodeRecord, bool)>,
    queue: CandidateQueue,
    /// Permits for request-handler calls, shared by every session (the global serving cap).
    handler_permits: Arc<Semaphore>,
    max_inbound: usize,
    max_inbound_per_ip: usize,
    max_static_peers: usize,
    max_outbound: usize,
    dial_interval: Duration,
    next_session: SessionId,
    sessions: JoinSet<()>,
    handshakes: JoinSet<()>,
    /// Set after an accept error: accepting resumes at this instant.
    accept_resume: Option<Instant>,
    /// The fork id in our discv5 record.
    fork_id: alloy_eip2124::ForkId,
}

impl PeerManager {
    pub(crate) fn new(parts: ManagerParts) -> Self {
        let (session_tx, session_rx) = mpsc::channel(SESSION_EVENT_CHANNEL_CAPACITY);
        let (handshake_tx, handshake_rx) = mpsc::channel(HANDSHAKE_EVENT_CHANNEL_CAPACITY);
        let (discovery, candidates) = match parts.discovery {
            Some((d, c)) => (Some(d), Some(c)),
            None => (None, None),
        };
        let local = *parts.head.borrow();
        let fork_id = parts.params.chain.fork_id(local.head.number, local.timestamp);
        let mut statics = HashMap::new();
        // Trusted peers first: when the configuration lists more peers than the cap, they are
        // the ones kept.
        for (record, trusted) in parts
            .trusted_peers
            .into_iter()
            .map(|r| (r, true))
            .chain(parts.static_peers.into_iter().map(|r| (r, false)))
        {
            if statics.len() >= parts.max_static_peers && !statics.contains_key(&record.id) {
                warn!(peer = %record.id, max = parts.max_static_peers, "too many static peers; ignoring");
                continue;
            }
            statics.entry(record.id).or_insert((record, trusted));
        }
        Self {
            local_id: parts.local_id,
            params: parts.params,
            listener: parts.listener,
            handler: parts.handler,
            head: parts.head,
            commands: parts.commands,
            events: parts.events,
            session_tx,
            session_rx,
            handshake_tx,
            handshake_rx,
            discovery,
            candidates,
            peers: HashMap::new(),
            dialing: HashSet::new(),
            pending_inbound: PendingInbound::new(
                MAX_PENDING_INBOUND,
                parts.max_pending_inbound_per_ip,
            ),
            scores: PeerScores::default(),
            backoff: Backoff::default(),
            statics,
            queue: CandidateQueue::default(),
            handler_permits: Arc::new(Semaphore::new(parts.max_concurrent_handler_calls.max(1))),
            max_inbound: parts.max_inbound,
            max_inbound_per_ip: parts.max_inbound_per_ip,
            max_static_peers: parts.max_static_peers,
            max_outbound: parts.max_outbound,
            dial_interval: parts.dial_interval,
            next_session: 0,
            sessions: JoinSet::new(),
            handshakes: JoinSet::new(),
            accept_resume: None,
            fork_id,
        }
    }

    /// Runs until shutdown is commanded or every handle is dropped.
    pub(crate) async fn run(mut self) {
        let mut dial_tick = tokio::time::interval(self.dial_interval);
        dial_tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
        let ack = loop {
            tokio::select! {
                accepted = self.listener.accept(), if self.accept_resume.is_none() => {
                    match accepted {
                        Ok((tcp, addr)) => self.on_accept(tcp, addr),
                        // Transient (EMFILE, aborted handshakes): pause, then keep serving.
                        Err(error) => {
                            warn!(%error, "accept failed");
                            self.accept_resume = Some(Instant::now() + ACCEPT_ERROR_BACKOFF);
                        }
                    }
                }
                () = sleep_until_opt(self.accept_resume), if self.accept_resume.is_some() => {
                    self.accept_resume = None;
                }
                command = self.commands.recv() => match command {
                    None => break None,
                    Some(Command::Shutdown(ack)) => break Some(ack),
                    Some(command) => self.on_command(command),
                },
                Some(event) = self.session_rx.recv() => self.on_session_event(event),
                Some(event) = self.handshake_rx.recv() => self.on_handshake_event(event),
                Some(candidate) = recv_opt(&mut self.candidates) => self.on_candidate(&candidate),
                _ = dial_tick.tick() => self.dial_pass(),
                Ok(()) = self.head.changed() => self.announce_head(),
                Some(done) = self.sessions.join_next(), if !self.sessions.is_empty() => {
                    log_task_end(done);
                }
                Some(done) = self.handshakes.join_next(), if !self.handshakes.is_empty() => {
                    log_task_end(done);
                }
            }
        };
        self.shutdown().await;
        if let Some(ack) = ack {
            let _ = ack.send(());
        }
    }

    async fn shutdown(&mut self) {
        self.handshakes.abort_all();
        for entry in self.peers.values() {
            let _ = entry
                .commands
                .try_send(SessionCommand::Disconnect(DisconnectReason::ClientQuitting));
        }
        self.peers.clear();
        let sessions = &mut self.sessions;
        let _ = tokio::time::timeout(SHUTDOWN_TIMEOUT, async {
            while sessions.join_next().await.is_some() {}
        })
        .await;
        self.sessions.abort_all();
        if let Some(discovery) = self.discovery.take() {
            discovery.shutdown().await;
        }
    }

    fn is_trusted(&self, peer: &PeerId) -> bool {
        self.statics.get(peer).is_some_and(|(_, trusted)| *trusted)
    }

    fn inbound_count(&self) -> usize {
        self.peers
            .iter()
            .filter(|(id, e)| e.direction == Direction::Inbound && !self.is_trusted(id))
            .count()
    }

    /// Established inbound sessions from `ip` that count against the per-IP limit.
    fn inbound_from(&self, ip: IpAddr) -> usize {
        let ip = ip.to_canonical();
        self.peers
            .iter()
            .filter(|(id, e)| {
                e.direction == Direction::Inbound
                    && e.addr.ip().to_canonical() == ip
                    && !self.is_trusted(id)
            })
            .count()
    }

    fn outbound_count(&self) -> usize {
        let connected = self
            .peers
            .iter()
            .filter(|(id, e)| e.direction == Direction::Outbound && !self.is_trusted(id))
            .count();
        connected + self.dialing.iter().filter(|id| !self.is_trusted(id)).count()
    }

    /// Whether a new connection with `peer` in `direction` may become a session. Of two
    /// connections with one peer (both dialed at once) both sides keep the one dialed by the
    /// smaller node id, so that they agree.
    fn admit(
        &mut self,
        peer: PeerId,
        addr: SocketAddr,
        direction: Direction,
    ) -> Result<(), DisconnectReason> {
        let trusted = self.is_trusted(&peer);
        if peer == self.local_id {
            return Err(DisconnectReason::ConnectedToSelf);
        }
        if !trusted && self.scores.is_banned(&peer, Instant::now()) {
            return Err(DisconnectReason::UselessPeer);
        }
        if let Some(existing) = self.peers.get(&peer) {
            let initiator = |d: Direction| match d {
                Direction::Outbound => self.local_id,
                Direction::Inbound => peer,
            };
            if existing.direction == direction
                || initiator(existing.direction) == self.local_id.min(peer)
            {
                return Err(DisconnectReason::AlreadyConnected);
            }
        }
        if direction == Direction::Inbound && !trusted {
            if self.inbound_count() >= self.max_inbound {
                return Err(DisconnectReason::TooManyPeers);
            }
            if self.inbound_from(addr.ip()) >= self.max_inbound_per_ip {
                debug!(%peer, %addr, "too many inbound sessions from this IP");
                return Err(DisconnectReason::TooManyPeers);
            }
        }
        Ok(())
    }

    fn snapshot(&self) -> (Status, ForkFilter) {
        let local = *self.head.borrow();
        let chain = &self.params.chain;
        (local.status(chain), chain.fork_filter(local.head.number, local.timestamp))
    }

    fn on_accept(&mut self, tcp: TcpStream, addr: SocketAddr) {
        let slot = match self.pending_inbound.try_acquire(addr.ip()) {
            Ok(slot) => slot,
            Err(full) => {
                let pending = self.pending_inbound.total();
                debug!(%addr, ?full, pending, "too many pending inbound handshakes; closing");
                return;
            }
        };
        let (status, filter) = self.snapshot();
        let params = Arc::clone(&self.params);
        let events = self.handshake_tx.clone();
        self.handshakes.spawn(async move {
            let handshake = inbound(tcp, addr, &params, status, &filter, &events);
            let outcome = match tokio::time::timeout(INBOUND_HANDSHAKE_TIMEOUT, handshake).await {
                Ok(outcome) => outcome,
                Err(_) => {
                    debug!(%addr, "inbound handshake deadline passed; closing");
                    Err((None, SessionError::HandshakeTimeout))
                }
            };
            // The slot is free from here on, whatever the manager does with the event.
            drop::<PendingSlot>(slot);
            let event = match outcome {
                Ok(established) => HandshakeEvent::Established {
                    direction: Direction::Inbound,
                    addr,
                    established: Box::new(established),
                },
                Err((peer, error)) => {
                    HandshakeEvent::Failed { direction: Direction::Inbound, peer, error }
                }
            };
            let _ = events.send(event).await;
        });
    }

    fn dial(&mut self, record: NodeRecord) {
        trace!(peer = %record.id, addr = %record.addr, "dialing");
        self.dialing.insert(record.id);
        let (status, filter) = self.snapshot();
        let params = Arc::clone(&self.params);
        let events = self.handshake_tx.clone();
        self.handshakes.spawn(async move {
            let handshake = establish_outbound(record.addr, record.id, &params, status, &filter);
            let outcome = tokio::time::timeout(OUTBOUND_HANDSHAKE_TIMEOUT, handshake)
                .await
                .unwrap_or(Err(SessionError::HandshakeTimeout));
            let event = match outcome {
                Ok(established) => HandshakeEvent::Established {
                    direction: Direction::Outbound,
                    addr: record.addr,
                    established: Box::new(established),
                },
                Err(error) => HandshakeEvent::Failed {
                    direction: Direction::Outbound,
                    peer: Some(record.id),
                    error,
                },
            };
            let _ = events.send(event).await;
        });
    }

    fn may_dial(&mut self, peer: &PeerId, now: Instant) -> bool {
        *peer != self.local_id
            && !self.peers.contains_key(peer)
            && !self.dialing.contains(peer)
            && self.backoff.may_dial(peer, now)
            && (self.is_trusted(peer) || !self.scores.is_banned(peer, now))
    }

    /// Dials static and trusted peers that are not connected, then queued candidates while
    /// outbound slots are free.
    fn dial_pass(&mut self) {
        let now = Instant::now();
        let statics: Vec<(NodeRecord, bool)> = self.statics.values().copied().collect();
        for (record, trusted) in statics {
            if self.may_dial(&record.id, now)
                && (trusted || self.outbound_count() < self.max_outbound)
            {
                self.dial(record);
            }
        }
        while self.outbound_count() < self.max_outbound {
            let Some(record) = self.queue.pop() else { break };
            if self.may_dial(&record.id, now) {
                self.dial(record);
            }
        }
    }

    fn on_candidate(&mut self, candidate: &DialCandidate) {
        let record = NodeRecord { id: candidate.peer_id, addr: candidate.tcp_addr };
        if let Err(why) = self.queue.push(record) {
            trace!(peer = %record.id, addr = %record.addr, ?why, "dial candidate not queued");
        }
        self.dial_pass();
    }

    fn announce_head(&mut self) {
        let local = *self.head.borrow_and_update();
        let head = local.head;
        let fork_id = self.params.chain.fork_id(head.number, local.timestamp);
        if fork_id != self.fork_id
            && let Some(discovery) = &self.discovery
        {
            // Our head crossed a fork: peers filter on the `eth` entry of our record.
            if discovery.update_fork_id(fork_id) {
                self.fork_id = fork_id;
            }
        }
        for entry in self.peers.values() {
            // A session whose queue is full misses this head; the next one supersedes it.
            let _ = entry.commands.try_send(SessionCommand::NewHead(head));
        }
    }

    fn penalise(&mut self, peer: PeerId, class: PenaltyClass, reason: PenaltyReason) {
        let now = Instant::now();
        let trusted = self.is_trusted(&peer);
        let state = self.scores.penalise(peer, class, now);
        let score = self.scores.score(&peer, now);
        debug!(%peer, ?class, ?reason, score, "penalty");
        let _ = self.events.send(NetworkEvent::PeerPenalised { peer, class, reason, score });
        if trusted {
            return;
        }
        if state == ScoreState::Ban {
            let _ = self.events.send(NetworkEvent::PeerBanned { peer });
        }
        if state != ScoreState::Healthy
            && let Some(entry) = self.peers.get(&peer)
        {
            let _ =
                entry.commands.try_send(SessionCommand::Disconnect(DisconnectReason::UselessPeer));
        }
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Peers(reply) => {
                let now = Instant::now();
                let peers = self
                    .peers
                    .iter()
                    .map(|(id, e)| PeerInfo {
                        id: *id,
                        addr: e.addr,
                        direction: e.direction,
                        client_version: e.client_version.clone(),
                        status: e.status,
                        head: e.head,
                        score: self.scores.score(id, now),
                        trusted: self.is_trusted(id),
                    })
                    .collect();
                let _ = reply.send(peers);
            }
            Command::AddPeer(record) => {
                if self.statics.len() >= self.max_static_peers
                    && !self.statics.contains_key(&record.id)
                {
                    warn!(
                        peer = %record.id,
                        max = self.max_static_peers,
                        "too many static peers; not adding"
                    );
                    return;
                }
                let trusted = self.is_trusted(&record.id);
                self.statics.insert(record.id, (record, trusted));
                self.dial_pass();
            }
            Command::Request { peer, request, reply } => {
                let Some(entry) = self.peers.get(&peer) else {
                    let _ = reply.send(Err(RequestError::UnknownPeer));
                    return;
                };
                match entry.commands.try_send(SessionCommand::Request { request, reply }) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Full(SessionCommand::Request {
                        reply, ..
                    })) => {
                        let _ = reply.send(Err(RequestError::PeerBusy));
                    }
                    Err(mpsc::error::TrySendError::Closed(SessionCommand::Request {
                        reply,
                        ..
                    })) => {
                        let _ = reply.send(Err(RequestError::Disconnected));
                    }
                    Err(_) => {}
                }
            }
            Command::Report { peer, class } => self.penalise(peer, class, PenaltyReason::Reported),
            Command::Disconnect { peer, reason } => {
                if let Some(entry) = self.peers.get(&peer) {
                    let _ = entry.commands.try_send(SessionCommand::Disconnect(reason));
                }
            }
            Command::LocalEnr(reply) => {
                let _ = reply.send(self.discovery.as_ref().map(Discovery::local_enr));
            }
            Command::DiscoveryCounters(reply) => {
                let _ = reply.send(self.discovery.as_ref().map(|d| d.stats().into()));
            }
            // Handled by the loop.
            Command::Shutdown(_) => {}
        }
    }

    fn on_session_event(&mut self, event: SessionEvent) {
        match event {
            SessionEvent::Penalty { peer, class, reason } => self.penalise(peer, class, reason),
            SessionEvent::NewHead { peer, head } => {
                if let Some(entry) = self.peers.get_mut(&peer) {
                    entry.head = head;
                    let _ = self.events.send(NetworkEvent::NewHead { peer, head });
                }
            }
            SessionEvent::Closed { peer, session, reason } => {
                if self.peers.get(&peer).is_some_and(|e| e.session == session) {
                    self.peers.remove(&peer);
                    if self.statics.contains_key(&peer) {
                        // Redial after the backoff, not in a tight loop with a peer that keeps
                        // closing the session.
                        self.backoff.failed(peer, Instant::now());
                    }
                    let _ = self.events.send(NetworkEvent::PeerDisconnected { peer, reason });
                }
            }
        }
    }

    fn on_handshake_event(&mut self, event: HandshakeEvent) {
        match event {
            HandshakeEvent::Authenticated { peer, addr, reply } => {
                let _ = reply.send(self.admit(peer, addr, Direction::Inbound));
            }
            HandshakeEvent::Established { direction, addr, established } => {
                if direction == Direction::Outbound {
                    self.dialing.remove(&established.hello.id);
                }
                self.on_established(direction, addr, *established);
            }
            HandshakeEvent::Failed { direction, peer, error } => {
                debug!(?peer, ?direction, %error, "handshake failed");
                if direction == Direction::Outbound
                    && let Some(peer) = peer
                {
                    self.dialing.remove(&peer);
                    self.backoff.failed(peer, Instant::now());
                }
                if let (Some(peer), Some(class)) = (peer, error.penalty()) {
                    self.penalise(peer, class, PenaltyReason::Handshake);
                }
                self.dial_pass();
            }
        }
    }

    fn on_established(&mut self, direction: Direction, addr: SocketAddr, established: Established) {
        let Established { mut stream, hello, status } = established;
        let peer = hello.id;
        if let Err(reason) = self.admit(peer, addr, direction) {
            debug!(%peer, ?direction, %reason, "refusing established session");
            self.handshakes.spawn(async move {
                let _ = stream.disconnect(reason).await;
            });
            return;
        }
        if let Some(old) = self.peers.remove(&peer) {
            // The new connection is the preferred one of a simultaneous dial.
            let _ = old
                .commands
                .try_send(SessionCommand::Disconnect(DisconnectReason::AlreadyConnected));
        }
        self.backoff.succeeded(&peer);
        let session = self.next_session;
        self.next_session += 1;
        let (commands_tx, commands_rx) = mpsc::channel(SESSION_COMMAND_CHANNEL_CAPACITY);
        debug!(%peer, ?direction, %addr, "session established");
        self.peers.insert(
            peer,
            PeerEntry {
                session,
                commands: commands_tx,
                addr,
                direction,
                client_version: hello.client_version,
                head: status.head,
                status,
            },
        );
        let _ = self.events.send(NetworkEvent::PeerConnected { peer, addr, direction, status });
        let active = ActiveSession {
            peer,
            session,
            stream,
            commands: commands_rx,
            events: self.session_tx.clone(),
            handler: Arc::clone(&self.handler),
            handler_permits: Arc::clone(&self.handler_permits),
            alive: Arc::new(AtomicBool::new(true)),
            tracker: RequestTracker::default(),
            served: Default::default(),
            queued: VecDeque::new(),
            handlers: JoinSet::new(),
            heads: HeadFilter::new(status.head, Instant::now()),
            stalls: Default::default(),
        };
        self.sessions.spawn(active.run());
    }
}

/// The inbound handshake: ECIES, then the manager's admission check for the authenticated id
/// (a refused peer gets a Disconnect before Hello), then Hello and Status.
async fn inbound(
    tcp: TcpStream,
    addr: SocketAddr,
    params: &SessionParams,
    status: Status,
    filter: &ForkFilter,
    events: &mpsc::Sender<HandshakeEvent>,
) -> Result<Established, (Option<PeerId>, SessionError)> {
    tcp.set_nodelay(true).map_err(|e| (None, e.into()))?;
    let mut ecies =
        EciesStream::incoming(tcp, params.secret_key).await.map_err(|e| (None, e.into()))?;
    let peer = ecies.remote_id();
    let (reply, verdict) = oneshot::channel();
    let refused = |reason| (Some(peer), SessionError::Refused(reason));
    if events.send(HandshakeEvent::Authenticated { peer, addr, reply }).await.is_err() {
        return Err(refused(DisconnectReason::ClientQuitting));
    }
    match verdict.await {
        Ok(Ok(())) => {}
        Ok(Err(reason)) => {
            // Before Hello the Disconnect goes uncompressed.
            if let Ok(message) = encode_message(0x01, &alloy_rlp::encode(reason), false) {
                let _ = tokio::time::timeout(super::active::SESSION_CLOSE_TIMEOUT, async {
                    ecies.send(message).await?;
                    ecies.close().await
                })
                .await;
            }
            return Err(refused(reason));
        }
        Err(_) => return Err(refused(DisconnectReason::ClientQuitting)),
    }
    establish_authenticated(ecies, params, status, filter).await.map_err(|e| (Some(peer), e))
}

/// Logs a task that panicked (a bug); aborted tasks (at shutdown) are expected.
fn log_task_end(done: Result<(), tokio::task::JoinError>) {
    if let Err(error) = done
        && error.is_panic()
    {
        warn!(%error, "peer task panicked");
    }
}

/// Sleeps until `deadline`, or forever without one (the branch is disabled then anyway).
async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

async fn recv_opt<T>(rx: &mut Option<mpsc::Receiver<T>>) -> Option<T> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}
