//! discv5 discovery: our node record carries the `eth` fork-id entry when we speak eth/69, the
//! `leaf` entry (see [`LeafEnrEntry`]) and, when we serve snap/1, geth's `snap` entry
//! ([`LocalRecord`]); random lookups run back to back while we are short of candidates and at
//! an interval otherwise, and every discovered node whose `leaf` entry matches ours, or (with
//! eth enabled) that has a `snap` entry and an `eth` fork id our [`SnapFilter`] accepts, is sent
//! to the peer manager as a [`DialCandidate`] on a bounded channel. Other nodes stay in the
//! discv5 table (they help routing) and are only counted.

mod entry;

pub use entry::{
    CandidateKind, DialCandidate, ETH_ENR_KEY, EnrBuildError, Incompatible, LEAF_ENR_KEY,
    LeafEnrEntry, LocalRecord, SNAP_ENR_KEY, SnapEnrEntry, SnapFilter, build_local_enr,
    combined_key, dial_candidate, is_public_address, snap_dial_candidate,
};

use crate::{
    chain::{DEFAULT_PORT, Enr},
    eth::EthForkCheck,
};
use alloy_eip2124::{EnrForkIdEntry, ForkId};
use discv5::{Discv5, Event, ListenConfig, RateLimiterBuilder};
use enr::NodeId;
use futures::{
    FutureExt,
    future::{BoxFuture, OptionFuture},
};
use std::{
    collections::HashMap,
    net::{Ipv4Addr, SocketAddrV4},
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};
use tokio::{
    net::UdpSocket,
    sync::{mpsc, oneshot},
    task::JoinHandle,
    time::Instant,
};
use tracing::{debug, trace, warn};

/// Default pause between two random lookups while we are not short of candidates (see
/// [`FAST_LOOKUP_INTERVAL`]). A lookup contacts a few dozen nodes; one every 10 s keeps a steady
/// trickle of new candidates at negligible bandwidth: at most 6 lookups a minute.
pub const DEFAULT_LOOKUP_INTERVAL: Duration = Duration::from_secs(10);

/// Pause between two random lookups (1 s; the configured interval if shorter) while fewer than
/// [`WANTED_RECENT_CANDIDATES`] nodes were offered within [`REOFFER_AFTER`] and either the last
/// lookup found a new dial candidate or fewer than [`MAX_BARREN_FAST_LOOKUPS`] in a row found
/// none: geth's discv5 iterator runs lookups back to back while it needs peers, and on a
/// DHT shared with every consensus client and other chains the records we can dial (a `leaf`
/// entry, or `eth` and `snap` of our chain) are a small fraction. At most 60 lookups a minute
/// whatever happens: the pause follows the end of a lookup, and one that ends at once (an empty
/// table) still waits it; a lookup of a few round trips to a few dozen nodes makes it fewer in
/// practice.
pub const FAST_LOOKUP_INTERVAL: Duration = Duration::from_secs(1);

/// Lookups in a row that found no new candidate after which a node short of candidates goes
/// back to the configured interval (30: half a minute at the fast pace): on a network with
/// few nodes we can dial (the first leafsync nodes of a chain), looking faster finds no more,
/// and a lookup a second would go on for good. A lookup
/// that finds one starts the fast pace again.
pub const MAX_BARREN_FAST_LOOKUPS: u32 = 30;

/// Nodes offered as dial candidates within [`REOFFER_AFTER`] below which we count ourselves
/// short of peers and look up at [`FAST_LOOKUP_INTERVAL`] (50: twice the peer manager's default
/// 25 outbound slots, since many dials fail: a geth's peer slots are mostly full). Discovery does
/// not know the peer count, and the candidate channel's free room says nothing about it (the
/// manager drains it at once); what it offered lately is the signal it has.
pub const WANTED_RECENT_CANDIDATES: usize = 50;

/// Default capacity of the dial-candidate channel. The peer manager drains it quickly; when it is
/// full, new candidates are dropped (and found again by a later lookup) instead of stalling
/// discovery.
pub const DEFAULT_CANDIDATE_CHANNEL_CAPACITY: usize = 256;

/// Most node ids remembered as recently emitted, so that a node is offered once per
/// [`REOFFER_AFTER`] rather than after every lookup that meets it. When full, the entries past
/// that time are forgotten, and if none is, all (nodes may then be offered early, which the peer
/// manager tolerates: it knows its peers).
pub const MAX_REMEMBERED_CANDIDATES: usize = 8192;

/// How long after offering a node discovery offers it again, when an event or lookup meets it
/// (10 minutes). The peer manager keeps a candidate only in its bounded queue: one the queue
/// dropped (its per-IP caps, or evicted by newer ones), whose dial failed or whose session ended
/// would otherwise never be dialed again, and the node's outbound peers would dwindle as
/// sessions end; and Sybil records filling the queue once would push honest nodes out for good.
pub const REOFFER_AFTER: Duration = Duration::from_secs(600);

/// When each node was last offered as a dial candidate: a node is offered again once
/// [`REOFFER_AFTER`] has passed, and at most [`MAX_REMEMBERED_CANDIDATES`] are remembered.
#[derive(Debug, Default)]
struct Offered {
    at: HashMap<NodeId, Instant>,
}

impl Offered {
    /// Whether `node` may be offered at `now`.
    fn due(&self, node: &NodeId, now: Instant) -> bool {
        self.at.get(node).is_none_or(|at| now.saturating_duration_since(*at) >= REOFFER_AFTER)
    }

    /// How many nodes were offered within [`REOFFER_AFTER`] before `now` (one pass over at most
    /// [`MAX_REMEMBERED_CANDIDATES`] entries, once per lookup).
    fn recent(&self, now: Instant) -> usize {
        self.at.values().filter(|at| now.saturating_duration_since(**at) < REOFFER_AFTER).count()
    }

    /// `node` was offered at `now`.
    fn offered(&mut self, node: NodeId, now: Instant) {
        if self.at.len() >= MAX_REMEMBERED_CANDIDATES && !self.at.contains_key(&node) {
            self.at.retain(|_, at| now.saturating_duration_since(*at) < REOFFER_AFTER);
            if self.at.len() >= MAX_REMEMBERED_CANDIDATES {
                self.at.clear();
            }
        }
        self.at.insert(node, now);
    }
}

/// Incoming discv5 packets per second accepted in total when the packet filter is on (bursts
/// allowed). Lighthouse's setting: ample for a node's own lookups and the queries of a few
/// hundred peers, while a flood is dropped before any decryption work.
pub const DISCV5_MAX_PACKETS_PER_SECOND: usize = 300;

/// Incoming discv5 packets per second from one IP address when the packet filter is on; an IP
/// that exceeds it is banned by discv5 for an hour (lighthouse's setting).
pub const DISCV5_MAX_PACKETS_PER_IP_PER_SECOND: usize = 9;

/// Incoming discv5 packets per second from one node id when the packet filter is on
/// (lighthouse's setting).
pub const DISCV5_MAX_PACKETS_PER_NODE_PER_SECOND: usize = 8;

/// Configuration of [`Discovery`].
#[derive(Debug, Clone)]
pub struct DiscoveryConfig {
    /// UDP address to bind. Default: `0.0.0.0:30403` ([`DEFAULT_PORT`]). Port 0 picks a free port;
    /// the record then carries the bound port.
    pub listen_addr: SocketAddrV4,
    /// IPv4 address to put in our record. Default: `None`, meaning the bound address when it is
    /// public ([`is_public_address`]; any but `0.0.0.0` with `allow_local_addresses`), else no
    /// address until discv5 learns our external address from peers: a cloud VM's private
    /// address would only send the peers that read our record to a host they cannot reach.
    pub external_ip: Option<Ipv4Addr>,
    /// RLPx TCP port to advertise. Default: [`DEFAULT_PORT`].
    pub tcp_port: u16,
    /// Records to bootstrap from (the chain preset's bootnodes). Default: none.
    pub bootnodes: Vec<Enr>,
    /// Pause between random lookups while we are not short of candidates (else
    /// [`FAST_LOOKUP_INTERVAL`], or this if shorter). Default: [`DEFAULT_LOOKUP_INTERVAL`].
    pub lookup_interval: Duration,
    /// Capacity of the dial-candidate channel. Default: [`DEFAULT_CANDIDATE_CHANNEL_CAPACITY`].
    pub candidate_channel_capacity: usize,
    /// Offer nodes whose record points to a loopback, private, link-local, shared (CGNAT),
    /// multicast, broadcast or unspecified address as dial candidates. Default: `false`: on the
    /// internet such a record is a mistake or an attempt to steer us into dialing hosts of our
    /// own network (review finding L8); nor does discv5 contact them (its table filter), so
    /// that a lookup sends no datagram there either. Loopback and LAN test networks set it.
    pub allow_local_addresses: bool,
    /// discv5's IP limit on its routing table (at most 10 nodes per /24 in the table and 2 per
    /// bucket), against a single host filling our table with identities. Default: `true`.
    /// Loopback test networks, where every node shares one address, turn it off.
    pub ip_limit: bool,
    /// discv5's incoming packet filter: rate limits of [`DISCV5_MAX_PACKETS_PER_SECOND`] in
    /// total, [`DISCV5_MAX_PACKETS_PER_IP_PER_SECOND`] per IP and
    /// [`DISCV5_MAX_PACKETS_PER_NODE_PER_SECOND`] per node, and at most 10 node ids per IP.
    /// Default: `true`. Loopback test networks turn it off (discv5's bans are process-wide, so
    /// one busy test node could ban 127.0.0.1 for every other).
    pub packet_filter: bool,
}

impl Default for DiscoveryConfig {
    fn default() -> Self {
        Self {
            listen_addr: SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, DEFAULT_PORT),
            external_ip: None,
            tcp_port: DEFAULT_PORT,
            bootnodes: Vec::new(),
            lookup_interval: DEFAULT_LOOKUP_INTERVAL,
            candidate_channel_capacity: DEFAULT_CANDIDATE_CHANNEL_CAPACITY,
            allow_local_addresses: false,
            ip_limit: true,
            packet_filter: true,
        }
    }
}

/// Why discovery could not start.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    /// Binding the UDP socket on `addr` failed.
    #[error("cannot bind the discv5 UDP socket on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddrV4,
        /// Why.
        source: std::io::Error,
    },
    /// The bound socket is not IPv4.
    #[error("the discv5 socket is not bound to an IPv4 address")]
    NotIpv4,
    /// Our record could not be built.
    #[error(transparent)]
    Enr(#[from] EnrBuildError),
    /// discv5 refused its configuration.
    #[error("discv5 setup failed: {0}")]
    Setup(&'static str),
    /// discv5 failed to start.
    #[error("discv5 failed to start: {0:?}")]
    Start(discv5::Error),
}

/// Counters of what discovery saw; cheap to read at any time.
#[derive(Debug, Default)]
pub struct DiscoveryStats {
    /// Records considered (each discovered record once per sighting).
    pub seen: AtomicU64,
    /// Dial candidates sent to the channel.
    pub emitted: AtomicU64,
    /// Records dropped because they are neither compatible `leaf` nodes nor (with eth enabled)
    /// compatible snap/1 servers.
    pub incompatible: AtomicU64,
    /// Compatible records dropped because their address is not a public one (see
    /// [`DiscoveryConfig::allow_local_addresses`]).
    pub not_public: AtomicU64,
    /// Compatible records dropped because the channel was full.
    pub channel_full: AtomicU64,
    /// Lookups completed (successfully or not).
    pub lookups: AtomicU64,
}

/// A running discv5 service. Dropping it stops discovery.
pub struct Discovery {
    discv5: Arc<Discv5>,
    stats: Arc<DiscoveryStats>,
    /// The filter snap/1 candidates' `eth` entries must pass; `None`: no snap/1 candidates.
    snap_filter: Arc<Mutex<Option<SnapFilter>>>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Discovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Discovery").field("local_enr", &self.local_enr()).finish_non_exhaustive()
    }
}

impl Discovery {
    /// Binds the UDP socket, builds our record (`record`: the `eth`, `leaf` and `snap`
    /// entries; the address as [`DiscoveryConfig::external_ip`] says), starts discv5, adds the
    /// bootnodes and spawns the lookup loop. `leaf/1` candidates are records whose `leaf` entry
    /// matches `record.leaf`; with `snap_filter`, records with a `snap` entry and an `eth` fork
    /// id it accepts are snap/1 candidates too. Returns the service and the receiver of dial
    /// candidates (bounded by `config.candidate_channel_capacity`).
    pub async fn start(
        secret: &secp256k1::SecretKey,
        config: DiscoveryConfig,
        record: LocalRecord,
        snap_filter: Option<SnapFilter>,
    ) -> Result<(Self, mpsc::Receiver<DialCandidate>), DiscoveryError> {
        let addr = config.listen_addr;
        let bind_error = |source| DiscoveryError::Bind { addr, source };
        let socket = UdpSocket::bind(addr).await.map_err(bind_error)?;
        let std::net::SocketAddr::V4(bound) = socket.local_addr().map_err(bind_error)? else {
            return Err(DiscoveryError::NotIpv4);
        };
        let advertised = SocketAddrV4::new(advertised_ip(&config, *bound.ip()), bound.port());
        let key = combined_key(secret)?;
        let local_enr = build_local_enr(&key, advertised, config.tcp_port, &record)?;

        let listen = ListenConfig::FromSockets { ipv4: Some(Arc::new(socket)), ipv6: None };
        let mut builder = discv5::ConfigBuilder::new(listen);
        if config.ip_limit {
            builder.ip_limit();
        }
        if config.external_ip.is_some() {
            // The operator's address stays, as geth's `--nat extip:` pins it: behind a NAT whose
            // outbound address differs from the forwarded one, peers' votes would replace it.
            builder.disable_enr_update();
        }
        if !config.allow_local_addresses {
            // Records of local addresses are not dialed over TCP, and not contacted over UDP
            // either: discv5 sends a lookup's packets to the records it is answered with, so a
            // hostile node answering with `192.168.1.1:53` or `127.0.0.1:11211` would have us
            // send datagrams into the operator's network.
            builder.table_filter(has_public_ip4);
        }
        if config.packet_filter {
            let limiter = RateLimiterBuilder::new()
                .total_n_every(DISCV5_MAX_PACKETS_PER_SECOND as u64, Duration::from_secs(1))
                .ip_n_every(DISCV5_MAX_PACKETS_PER_IP_PER_SECOND as u64, Duration::from_secs(1))
                .node_n_every(DISCV5_MAX_PACKETS_PER_NODE_PER_SECOND as u64, Duration::from_secs(1))
                .build()
                .map_err(DiscoveryError::Setup)?;
            builder.enable_packet_filter().filter_rate_limiter(Some(limiter));
        }
        let discv5_config = builder.build();
        let mut discv5 =
            Discv5::new(local_enr.clone(), key, discv5_config).map_err(DiscoveryError::Setup)?;
        discv5.start().await.map_err(DiscoveryError::Start)?;
        for (index, bootnode) in config.bootnodes.iter().enumerate() {
            if let Err(reason) = discv5.add_enr(bootnode.clone()) {
                warn!(index, reason, "bootnode not added to the discv5 table");
            }
        }
        let events = discv5.event_stream().await.map_err(DiscoveryError::Start)?;

        let discv5 = Arc::new(discv5);
        let stats = Arc::new(DiscoveryStats::default());
        let (candidates_tx, candidates_rx) =
            mpsc::channel(config.candidate_channel_capacity.max(1));
        let (shutdown_tx, shutdown_rx) = oneshot::channel();
        let snap_filter = Arc::new(Mutex::new(snap_filter));
        let worker = Worker {
            discv5: Arc::clone(&discv5),
            ours: record.leaf,
            snap_filter: Arc::clone(&snap_filter),
            local_id: local_enr.node_id(),
            stats: Arc::clone(&stats),
            candidates: candidates_tx,
            emitted: Offered::default(),
            fresh: 0,
            barren: 0,
            allow_local_addresses: config.allow_local_addresses,
        };
        let task = tokio::spawn(worker.run(events, config.lookup_interval, shutdown_rx));
        let discovery =
            Self { discv5, stats, snap_filter, shutdown: Some(shutdown_tx), task: Some(task) };
        Ok((discovery, candidates_rx))
    }

    /// Our current node record (discv5 bumps its sequence number when it changes).
    pub fn local_enr(&self) -> Enr {
        self.discv5.local_enr()
    }

    /// Replaces the `eth` entry of our record with a new fork id; call it when the head crosses
    /// a fork. A record without the entry (we do not speak eth/69: see
    /// [`LocalRecord::fork_id`]) keeps none. Returns whether our record is current: false when
    /// discv5 refused the new one.
    pub fn update_fork_id(&self, fork_id: ForkId) -> bool {
        if self.discv5.local_enr().get_raw_rlp(ETH_ENR_KEY).is_none() {
            return true;
        }
        match self.discv5.enr_insert(ETH_ENR_KEY, &EnrForkIdEntry::from(fork_id)) {
            Ok(_) => true,
            Err(err) => {
                warn!(?err, "cannot update the eth entry of our node record");
                false
            }
        }
    }

    /// Replaces the check snap/1 candidates' fork ids must pass (our execution client's head
    /// moved; see [`SnapFilter`]); no effect when snap/1 candidates are off. The peer manager
    /// calls it at every move of that head, so the next record considered sees it.
    pub fn update_snap_filter(&self, check: EthForkCheck) {
        let mut current = self.snap_filter.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(filter) = current.as_mut() {
            filter.set_check(check);
        }
    }

    /// Node ids currently in the discv5 routing table (compatible or not).
    pub fn table_node_ids(&self) -> Vec<NodeId> {
        self.discv5.table_entries_id()
    }

    /// The counters.
    pub fn stats(&self) -> &DiscoveryStats {
        &self.stats
    }

    /// Stops the lookup loop and waits for it to end; discv5 itself stops when `self` drops.
    pub async fn shutdown(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            // The loop may already have ended (channel closed); nothing to signal then.
            let _ = shutdown.send(());
        }
        if let Some(task) = self.task.take()
            && let Err(err) = task.await
        {
            warn!(%err, "discovery loop ended abnormally");
        }
    }
}

impl Drop for Discovery {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// The lookup loop's state.
struct Worker {
    discv5: Arc<Discv5>,
    /// Our `leaf` entry; `None`: no `leaf/1` candidates.
    ours: Option<LeafEnrEntry>,
    snap_filter: Arc<Mutex<Option<SnapFilter>>>,
    local_id: NodeId,
    stats: Arc<DiscoveryStats>,
    candidates: mpsc::Sender<DialCandidate>,
    emitted: Offered,
    /// Candidates emitted since the last lookup ended (by events or by that lookup).
    fresh: u64,
    /// Lookups in a row that ended with no new candidate.
    barren: u32,
    allow_local_addresses: bool,
}

type Lookup = BoxFuture<'static, Result<Vec<Enr>, discv5::QueryError>>;

impl Worker {
    /// Runs until shutdown, until the candidate receiver is dropped, or until discv5 stops: one
    /// lookup at a time, the next one [`Self::pause`] after the previous one ended; every record
    /// seen in events or lookup results is considered.
    async fn run(
        mut self,
        mut events: mpsc::Receiver<Event>,
        interval: Duration,
        mut shutdown: oneshot::Receiver<()>,
    ) {
        let mut lookup: Option<Lookup> = Some(self.lookup());
        let mut next_lookup = Box::pin(tokio::time::sleep(Duration::ZERO));
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                () = self.candidates.closed() => break,
                event = events.recv() => match event {
                    Some(event) => self.on_event(event),
                    None => break,
                },
                Some(result) = OptionFuture::from(lookup.as_mut()), if lookup.is_some() => {
                    lookup = None;
                    self.stats.lookups.fetch_add(1, Ordering::Relaxed);
                    match result {
                        Ok(found) => found.iter().for_each(|enr| self.consider(enr)),
                        Err(err) => debug!(?err, "discv5 lookup failed"),
                    }
                    let pause = self.pause(interval);
                    next_lookup.as_mut().reset(tokio::time::Instant::now() + pause);
                }
                () = &mut next_lookup, if lookup.is_none() => lookup = Some(self.lookup()),
            }
        }
    }

    /// The pause before the next lookup, now that one ended: [`lookup_pause`] with what we
    /// found since the previous one and offered lately. Starts counting anew.
    fn pause(&mut self, interval: Duration) -> Duration {
        let found_new = std::mem::take(&mut self.fresh) > 0;
        self.barren = if found_new { 0 } else { self.barren.saturating_add(1) };
        let recent = self.emitted.recent(Instant::now());
        lookup_pause(short_of_candidates(recent, found_new, self.barren), interval)
    }

    fn lookup(&self) -> Lookup {
        self.discv5.find_node(NodeId::random()).boxed()
    }

    fn on_event(&mut self, event: Event) {
        match event {
            Event::Discovered(enr) | Event::SessionEstablished(enr, _) => self.consider(&enr),
            Event::NodeInserted { node_id, .. } => {
                if let Some(enr) = self.discv5.find_enr(&node_id) {
                    self.consider(&enr);
                }
            }
            _ => {}
        }
    }

    /// The record as a dial candidate: a `leaf/1` node, else (without a `leaf` entry) a snap/1
    /// server when snap/1 candidates are on.
    fn candidate(&self, enr: &Enr) -> Result<DialCandidate, Incompatible> {
        let leaf = match &self.ours {
            Some(ours) => dial_candidate(enr, ours),
            None => Err(Incompatible::NoLeafEntry),
        };
        match leaf {
            Err(Incompatible::NoLeafEntry) => {
                match &*self.snap_filter.lock().unwrap_or_else(PoisonError::into_inner) {
                    Some(filter) => snap_dial_candidate(enr, filter),
                    None => Err(Incompatible::NoLeafEntry),
                }
            }
            other => other,
        }
    }

    /// Emits `enr` as a dial candidate if it is a compatible node not emitted within
    /// [`REOFFER_AFTER`].
    fn consider(&mut self, enr: &Enr) {
        let now = Instant::now();
        if enr.node_id() == self.local_id || !self.emitted.due(&enr.node_id(), now) {
            return;
        }
        self.stats.seen.fetch_add(1, Ordering::Relaxed);
        let candidate = match self.candidate(enr) {
            Ok(candidate) => candidate,
            Err(why) => {
                trace!(node = %enr.node_id(), %why, "discovered node is not a compatible peer");
                self.stats.incompatible.fetch_add(1, Ordering::Relaxed);
                return;
            }
        };
        if !self.allow_local_addresses && !is_public_address(candidate.tcp_addr.ip()) {
            trace!(node = %enr.node_id(), addr = %candidate.tcp_addr, "not a public address");
            self.stats.not_public.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let node_id = candidate.node_id;
        match self.candidates.try_send(candidate) {
            Ok(()) => {
                self.emitted.offered(node_id, now);
                self.fresh += 1;
                self.stats.emitted.fetch_add(1, Ordering::Relaxed);
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.stats.channel_full.fetch_add(1, Ordering::Relaxed);
            }
            // The receiver is gone: the loop notices via `closed()` and ends.
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }
}

/// Whether discovery is short of candidates, having offered `recent` nodes within
/// [`REOFFER_AFTER`], the last lookup having found a new one (`found_new`) or none for `barren`
/// lookups in a row. Not once [`WANTED_RECENT_CANDIDATES`] were offered, however many lookups
/// still find: on a public chain nearly every lookup meets a geth not offered for ten minutes.
fn short_of_candidates(recent: usize, found_new: bool, barren: u32) -> bool {
    recent < WANTED_RECENT_CANDIDATES && (found_new || barren < MAX_BARREN_FAST_LOOKUPS)
}

/// The pause before the next lookup: [`FAST_LOOKUP_INTERVAL`] (or `interval` if shorter) while
/// we are `short` of candidates (fewer than [`WANTED_RECENT_CANDIDATES`] offered lately, and
/// lookups still find some: see [`MAX_BARREN_FAST_LOOKUPS`]), else `interval`.
fn lookup_pause(short: bool, interval: Duration) -> Duration {
    if short { interval.min(FAST_LOOKUP_INTERVAL) } else { interval }
}

/// The address our record names for a socket bound to `bound`: `external_ip` when set, else
/// `bound` when it is a public address or local addresses are allowed (a loopback or LAN test
/// network), else none (`0.0.0.0`: discv5 fills it in from what its peers report).
fn advertised_ip(config: &DiscoveryConfig, bound: Ipv4Addr) -> Ipv4Addr {
    match config.external_ip {
        Some(ip) => ip,
        None if config.allow_local_addresses || is_public_address(bound.into()) => bound,
        None => Ipv4Addr::UNSPECIFIED,
    }
}

/// Whether `enr` names a public IPv4 address ([`is_public_address`]): discv5's table filter
/// when local addresses are not allowed.
fn has_public_ip4(enr: &Enr) -> bool {
    enr.ip4().is_some_and(|ip| is_public_address(ip.into()))
}

#[cfg(test)]
mod tests;
