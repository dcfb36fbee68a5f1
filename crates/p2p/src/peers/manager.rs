//! [`PeerManager`]: the one owner of every peer's state. A single task runs [`PeerManager::run`],
//! the select loop; the admission and dial policy is the pure [`PeerTable`], the handshake tasks
//! are in `handshake.rs`; everything else talks to it over bounded channels: handles send
//! [`Command`]s, sessions send [`SessionEvent`]s, handshake tasks send [`HandshakeEvent`]s, and
//! discovery sends dial candidates. The manager itself never waits on a session (it uses
//! `try_send`), so no cycle of full channels can deadlock it.

use super::{
    EthConfig, LocalHead, NetworkConfig, NodeRecord, RequestHandler,
    active::{
        ActiveSession, ResponseSender, SESSION_COMMAND_CHANNEL_CAPACITY, SessionCommand,
        SessionEvent, SnapResponseSender,
    },
    eth::{record_fork_id, should_announce},
    eth_session::EthSession,
    events::{
        Direction, DiscoveryCounters, EthPeerInfo, NetworkEvent, PeerInfo, PenaltyReason, SessionId,
    },
    handshake::{HandshakeEvent, MAX_PENDING_INBOUND, accept, dial},
    heads::HeadFilter,
    pending::PendingInbound,
    score::ScoreState,
    serving::Serving,
    table::{Connected, Limits, PeerTable},
    throttle::InboundThrottle,
};
use crate::{
    PeerId, PenaltyClass,
    chain::Enr,
    discovery::{DialCandidate, Discovery},
    eth::BlockRangeUpdate,
    leaf::{ChainHead, LeafRequest},
    p2pstream::DisconnectReason,
    requests::{RequestError, RequestTracker},
    session::{Established, LocalStatus, PeerStatus, SessionParams},
    snap::SnapMessage,
    util::{WarnEvery, recv_opt, sleep_until_opt},
};
use std::{net::SocketAddr, sync::Arc, time::Duration};
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

/// Time sessions get at shutdown to send their Disconnect before they are aborted.
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(3);

/// Pause of the accept loop after an accept error. Errors like EMFILE (out of file descriptors)
/// repeat at once; pausing 100 ms keeps the manager from spinning while sessions close and free
/// descriptors, and delays new inbound peers only slightly.
pub const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(100);
/// Least time between two `warn` lines of accept errors (else one per backoff, out of fds).
const ACCEPT_ERROR_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// What a handle asks the manager.
#[derive(Debug)]
pub(crate) enum Command {
    Peers(oneshot::Sender<Vec<PeerInfo>>),
    AddPeer(NodeRecord),
    Request { peer: PeerId, request: LeafRequest, reply: ResponseSender },
    SnapRequest { peer: PeerId, request: SnapMessage, reply: SnapResponseSender },
    Report { peer: PeerId, class: PenaltyClass },
    Disconnect { peer: PeerId, reason: DisconnectReason },
    LocalEnr(oneshot::Sender<Option<Enr>>),
    DiscoveryCounters(oneshot::Sender<Option<DiscoveryCounters>>),
    Shutdown(oneshot::Sender<()>),
}

/// What the manager keeps of a connected peer (the table keeps its direction and address).
#[derive(Debug)]
pub(crate) struct PeerEntry {
    session: SessionId,
    commands: mpsc::Sender<SessionCommand>,
    client_version: String,
    status: PeerStatus,
    /// The peer's latest eth block range (from its Status or `BlockRangeUpdate`).
    eth_range: Option<BlockRangeUpdate>,
    head: ChainHead,
}

/// Everything [`PeerManager::new`] needs.
pub(crate) struct ManagerParts {
    pub(crate) local_id: PeerId,
    pub(crate) params: Arc<SessionParams>,
    pub(crate) listener: TcpListener,
    pub(crate) commands: mpsc::Receiver<Command>,
    pub(crate) events: broadcast::Sender<NetworkEvent>,
    pub(crate) discovery: Option<(Discovery, mpsc::Receiver<DialCandidate>)>,
    /// The rest of the configuration: the handler, our head, eth/69 and the peer limits (its
    /// discovery settings are spent on `discovery`).
    pub(crate) config: NetworkConfig,
}

/// The peer manager; see the module documentation.
pub(crate) struct PeerManager {
    params: Arc<SessionParams>,
    listener: TcpListener,
    handler: Arc<dyn RequestHandler>,
    head: watch::Receiver<LocalHead>,
    /// eth/69 and snap/1, when enabled.
    eth: Option<EthConfig>,
    /// The block range last announced to eth peers (geth's `blockRangeState.prev`).
    range_sent: Option<BlockRangeUpdate>,
    commands: mpsc::Receiver<Command>,
    events: broadcast::Sender<NetworkEvent>,
    session_tx: mpsc::Sender<SessionEvent>,
    session_rx: mpsc::Receiver<SessionEvent>,
    handshake_tx: mpsc::Sender<HandshakeEvent>,
    handshake_rx: mpsc::Receiver<HandshakeEvent>,
    discovery: Option<Discovery>,
    candidates: Option<mpsc::Receiver<DialCandidate>>,
    /// Who is connected, who may connect, whom to dial: the pure policy.
    table: PeerTable<PeerEntry>,
    /// Inbound handshakes in progress; each task holds a slot that frees itself when dropped.
    pending_inbound: PendingInbound,
    /// One inbound connection per public host and period, checked before any handshake work.
    inbound_throttle: InboundThrottle,
    /// Permits for request-handler calls, shared by every session (the global serving cap).
    handler_permits: Arc<Semaphore>,
    dial_interval: Duration,
    next_session: SessionId,
    sessions: JoinSet<()>,
    handshakes: JoinSet<()>,
    /// Set after an accept error: accepting resumes at this instant.
    accept_resume: Option<Instant>,
    /// Accept errors logged at `warn`: at most one per [`ACCEPT_ERROR_LOG_INTERVAL`].
    accept_warnings: WarnEvery,
    /// The fork id in our discv5 record.
    fork_id: alloy_eip2124::ForkId,
}

impl PeerManager {
    pub(crate) fn new(parts: ManagerParts) -> Self {
        let ManagerParts { local_id, params, listener, commands, events, discovery, config } =
            parts;
        let (session_tx, session_rx) = mpsc::channel(SESSION_EVENT_CHANNEL_CAPACITY);
        let (handshake_tx, handshake_rx) = mpsc::channel(HANDSHAKE_EVENT_CHANNEL_CAPACITY);
        let (discovery, candidates) = match discovery {
            Some((d, c)) => (Some(d), Some(c)),
            None => (None, None),
        };
        let fork_id = record_fork_id(&params.chain, &config.head, config.eth.as_ref());
        let limits = Limits::of(&config);
        let table = PeerTable::new(local_id, limits, config.trusted_peers, config.static_peers);
        Self {
            params,
            listener,
            handler: config.handler,
            head: config.head,
            range_sent: config.eth.as_ref().map(|eth| eth.head.borrow().range()),
            eth: config.eth,
            commands,
            events,
            session_tx,
            session_rx,
            handshake_tx,
            handshake_rx,
            discovery,
            candidates,
            table,
            pending_inbound: PendingInbound::new(
                MAX_PENDING_INBOUND,
                config.max_pending_inbound_per_ip,
            ),
            inbound_throttle: InboundThrottle::default(),
            handler_permits: Arc::new(Semaphore::new(config.max_concurrent_handler_calls.max(1))),
            dial_interval: config.dial_interval,
            next_session: 0,
            sessions: JoinSet::new(),
            handshakes: JoinSet::new(),
            accept_resume: None,
            accept_warnings: WarnEvery::new(ACCEPT_ERROR_LOG_INTERVAL),
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
                            if self.accept_warnings.due() {
                                warn!(%error, "accept failed; pausing (said at most every 10 s)");
                            } else {
                                debug!(%error, "accept failed");
                            }
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
                Ok(()) = eth_head_changed(&mut self.eth) => self.announce_range(),
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
        for (_, peer) in self.table.drain() {
            let quitting = SessionCommand::Disconnect(DisconnectReason::ClientQuitting);
            let _ = peer.entry.commands.try_send(quitting);
        }
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

    /// Our Statuses for a handshake starting now.
    fn snapshot(&self) -> LocalStatus {
        let local = *self.head.borrow();
        let chain = &self.params.chain;
        let eth = self.eth.as_ref().map(|eth| {
            let head = *eth.head.borrow();
            (head.status(chain), head.fork_check(chain))
        });
        LocalStatus {
            leaf: local.status(chain),
            leaf_filter: chain.fork_filter(local.head.number, local.timestamp),
            eth,
        }
    }

    fn on_accept(&mut self, tcp: TcpStream, addr: SocketAddr) {
        if !self.inbound_throttle.admit(addr.ip(), Instant::now()) {
            debug!(%addr, "inbound connection within the throttle period of its host; closing");
            return;
        }
        let slot = match self.pending_inbound.try_acquire(addr.ip()) {
            Ok(slot) => slot,
            Err(full) => {
                let pending = self.pending_inbound.total();
                debug!(%addr, ?full, pending, "too many pending inbound handshakes; closing");
                return;
            }
        };
        let status = self.snapshot();
        let params = Arc::clone(&self.params);
        let events = self.handshake_tx.clone();
        self.handshakes.spawn(accept(tcp, addr, slot, params, status, events));
    }

    /// Dials every peer the table picks (static and trusted peers, then queued candidates while
    /// outbound slots are free).
    fn dial_pass(&mut self) {
        for record in self.table.dial_candidates(Instant::now()) {
            trace!(peer = %record.id, addr = %record.addr, "dialing");
            let status = self.snapshot();
            let params = Arc::clone(&self.params);
            let events = self.handshake_tx.clone();
            self.handshakes.spawn(dial(record, params, status, events));
        }
    }

    fn on_candidate(&mut self, candidate: &DialCandidate) {
        let record = NodeRecord { id: candidate.peer_id, addr: candidate.tcp_addr };
        if let Err(why) = self.table.push_candidate(record, candidate.kind) {
            trace!(peer = %record.id, addr = %record.addr, ?why, "dial candidate not queued");
        }
        self.dial_pass();
    }

    fn announce_head(&mut self) {
        let head = self.head.borrow_and_update().head;
        self.update_record();
        for (_, peer) in self.table.connected() {
            // A session whose queue is full misses this head; the next one supersedes it.
            let _ = peer.entry.commands.try_send(SessionCommand::NewHead(head));
        }
    }

    /// Keeps our discv5 record's `eth` fork id and the snap/1 candidates' fork filter at our
    /// head: peers filter on the `eth` entry, and a head that crossed a fork changes it.
    fn update_record(&mut self) {
        let Some(discovery) = &self.discovery else { return };
        let chain = &self.params.chain;
        if let Some(eth) = &self.eth {
            discovery.update_snap_filter(eth.head.borrow().fork_check(chain));
        }
        let fork_id = record_fork_id(chain, &self.head, self.eth.as_ref());
        if fork_id != self.fork_id && discovery.update_fork_id(fork_id) {
            self.fork_id = fork_id;
        }
    }

    /// Our execution client's head moved: announced to eth peers as a `BlockRangeUpdate` when
    /// geth's rule says so (every `BLOCK_RANGE_UPDATE_INTERVAL` blocks, or backwards).
    fn announce_range(&mut self) {
        let Some(eth) = &mut self.eth else { return };
        let range = eth.head.borrow_and_update().range();
        self.update_record();
        // geth drops a peer for a zero latest hash: a head without one is not announced.
        if range.latest_hash.is_zero()
            || self.range_sent.is_some_and(|sent| !should_announce(&sent, &range))
        {
            return;
        }
        self.range_sent = Some(range);
        for (_, peer) in self.table.connected() {
            if peer.entry.status.eth.is_some() {
                // A session whose queue is full misses this range; the next one supersedes it.
                let _ = peer.entry.commands.try_send(SessionCommand::BlockRange(range));
            }
        }
    }

    fn penalise(&mut self, peer: PeerId, class: PenaltyClass, reason: PenaltyReason) {
        let now = Instant::now();
        let trusted = self.table.is_trusted(&peer);
        let state = self.table.penalise(peer, class, now);
        let score = self.table.score(&peer, now);
        debug!(%peer, ?class, ?reason, score, "penalty");
        let _ = self.events.send(NetworkEvent::PeerPenalised { peer, class, reason, score });
        if trusted {
            return;
        }
        if state == ScoreState::Ban {
            let _ = self.events.send(NetworkEvent::PeerBanned { peer });
        }
        if state != ScoreState::Healthy
            && let Some(connected) = self.table.get(&peer)
        {
            let useless = SessionCommand::Disconnect(DisconnectReason::UselessPeer);
            let _ = connected.entry.commands.try_send(useless);
        }
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Peers(reply) => {
                let now = Instant::now();
                let peers = self
                    .table
                    .connected()
                    .map(|(id, c)| PeerInfo {
                        id: *id,
                        addr: c.addr,
                        direction: c.direction,
                        client_version: c.entry.client_version.clone(),
                        leaf: c.entry.status.leaf,
                        eth: c.entry.status.eth.map(|status| EthPeerInfo {
                            status,
                            range: c.entry.eth_range.unwrap_or_else(|| status.block_range()),
                        }),
                        snap: c.entry.status.snap,
                        head: c.entry.head,
                        score: self.table.score(id, now),
                        trusted: self.table.is_trusted(id),
                    })
                    .collect();
                let _ = reply.send(peers);
            }
            Command::AddPeer(record) => {
                if self.table.add_static(record) {
                    self.dial_pass();
                }
            }
            Command::Request { peer, request, reply } => {
                self.to_session(peer, SessionCommand::Request { request, reply });
            }
            Command::SnapRequest { peer, request, reply } => {
                self.to_session(peer, SessionCommand::SnapRequest { request, reply });
            }
            Command::Report { peer, class } => self.penalise(peer, class, PenaltyReason::Reported),
            Command::Disconnect { peer, reason } => {
                if let Some(connected) = self.table.get(&peer) {
                    let _ = connected.entry.commands.try_send(SessionCommand::Disconnect(reason));
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

    /// Hands a request to `peer`'s session without waiting: it fails at once when the peer is
    /// not connected, its session's queue is full, or the session is gone.
    fn to_session(&self, peer: PeerId, command: SessionCommand) {
        let Some(Connected { entry, .. }) = self.table.get(&peer) else {
            command.fail(RequestError::UnknownPeer);
            return;
        };
        match entry.commands.try_send(command) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(command)) => command.fail(RequestError::PeerBusy),
            Err(mpsc::error::TrySendError::Closed(command)) => {
                command.fail(RequestError::Disconnected)
            }
        }
    }

    fn on_session_event(&mut self, event: SessionEvent) {
        match event {
            SessionEvent::Penalty { peer, class, reason } => self.penalise(peer, class, reason),
            SessionEvent::NewHead { peer, head } => {
                if let Some(connected) = self.table.get_mut(&peer) {
                    connected.entry.head = head;
                    let _ = self.events.send(NetworkEvent::NewHead { peer, head });
                }
            }
            SessionEvent::BlockRange { peer, range } => {
                if let Some(connected) = self.table.get_mut(&peer) {
                    connected.entry.eth_range = Some(range);
                    if connected.entry.status.leaf.is_none() {
                        connected.entry.head = ChainHead {
                            number: range.latest,
                            hash: range.latest_hash,
                            state_root: alloy_primitives::B256::ZERO,
                        };
                    }
                    let _ = self.events.send(NetworkEvent::BlockRange { peer, range });
                }
            }
            SessionEvent::Closed { peer, session, reason } => {
                let current = |e: &PeerEntry| e.session == session;
                if self.table.on_closed(&peer, Instant::now(), current).is_some() {
                    let _ = self.events.send(NetworkEvent::PeerDisconnected { peer, reason });
                }
            }
        }
    }

    fn on_handshake_event(&mut self, event: HandshakeEvent) {
        match event {
            HandshakeEvent::Authenticated { peer, addr, reply } => {
                let _ =
                    reply.send(self.table.admit(peer, addr, Direction::Inbound, Instant::now()));
            }
            HandshakeEvent::Established { direction, addr, established } => {
                if direction == Direction::Outbound {
                    self.table.on_dialed(&established.hello.id);
                }
                self.on_established(direction, addr, *established);
            }
            HandshakeEvent::Failed { direction, peer, error } => {
                debug!(?peer, ?direction, %error, "handshake failed");
                if direction == Direction::Outbound
                    && let Some(peer) = peer
                {
                    self.table.on_failed(peer, Instant::now());
                }
                // An id is judged only once its holder has proved it (see `proves_sender`).
                let proven = peer.filter(|_| error.proves_sender());
                if let (Some(peer), Some(class)) = (proven, error.penalty()) {
                    self.penalise(peer, class, PenaltyReason::Handshake);
                }
                self.dial_pass();
            }
        }
    }

    fn on_established(&mut self, direction: Direction, addr: SocketAddr, established: Established) {
        let Established { mut stream, hello, status } = established;
        let peer = hello.id;
        let leaf = status.leaf.is_some();
        let admitted = (self.table.admit(peer, addr, direction, Instant::now()))
            .and_then(|()| self.table.admit_offer(&peer, direction, leaf));
        if let Err(reason) = admitted {
            debug!(%peer, ?direction, %reason, "refusing established session");
            self.handshakes.spawn(async move {
                let _ = stream.disconnect(reason).await;
            });
            return;
        }
        let session = self.next_session;
        self.next_session += 1;
        let (commands_tx, commands_rx) = mpsc::channel(SESSION_COMMAND_CHANNEL_CAPACITY);
        let (leaf, eth, snap) = (status.leaf.is_some(), status.eth.is_some(), status.snap);
        debug!(%peer, ?direction, %addr, leaf, eth, snap, "session established");
        let eth_info = status.eth.map(EthPeerInfo::new);
        let head = match (status.leaf, eth_info) {
            (Some(leaf), _) => leaf.head,
            (None, Some(eth)) => eth.head(),
            (None, None) => ChainHead::default(),
        };
        let entry = PeerEntry {
            session,
            commands: commands_tx,
            client_version: hello.client_version,
            status,
            eth_range: None,
            head,
        };
        if let Some(old) = self.table.on_connected(peer, addr, direction, leaf, entry) {
            // The new connection is the preferred one of a simultaneous dial.
            let already = SessionCommand::Disconnect(DisconnectReason::AlreadyConnected);
            let _ = old.entry.commands.try_send(already);
        }
        let _ = self.events.send(NetworkEvent::PeerConnected {
            peer,
            addr,
            direction,
            leaf: status.leaf,
            eth: eth_info,
            snap: status.snap,
        });
        let now = Instant::now();
        let eth = match (&self.eth, eth_info) {
            (Some(config), Some(_)) => {
                Some(EthSession::new(peer, Arc::clone(&config.headers), now))
            }
            _ => None,
        };
        let snap_handler = self.eth.as_ref().and_then(|eth| eth.snap.clone());
        let active = ActiveSession {
            peer,
            session,
            stream,
            commands: commands_rx,
            events: self.session_tx.clone(),
            serving: Serving::new(
                peer,
                Arc::clone(&self.handler),
                snap_handler,
                Arc::clone(&self.handler_permits),
            ),
            eth,
            tracker: RequestTracker::default(),
            snap_tracker: RequestTracker::default(),
            heads: HeadFilter::new(head, now),
            stalls: Default::default(),
        };
        self.sessions.spawn(active.run());
    }
}

/// Waits for the execution client's head to change, or forever without eth.
async fn eth_head_changed(eth: &mut Option<EthConfig>) -> Result<(), watch::error::RecvError> {
    match eth {
        Some(eth) => eth.head.changed().await,
        None => std::future::pending().await,
    }
}

/// Logs a task that panicked (a bug); aborted tasks (at shutdown) are expected.
fn log_task_end(done: Result<(), tokio::task::JoinError>) {
    if let Err(error) = done
        && error.is_panic()
    {
        warn!(%error, "peer task panicked");
    }
}
