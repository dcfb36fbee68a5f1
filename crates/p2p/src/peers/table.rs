//! [`PeerTable`]: the admission and dial policy of the peer manager, pure (no sockets, no tasks,
//! time passed in), as reth splits `PeersManager` from its network manager. It knows the
//! connected peers (with whatever the manager keeps per session, `E`), the dials in progress,
//! static and trusted peers, queued dial candidates, scores and bans, dial backoff and the
//! connection limits; the manager asks it who may connect and whom to dial, and reports what
//! happened.

use super::{
    NetworkConfig, NodeRecord,
    candidates::{CandidateQueue, Refused},
    dial::Backoff,
    events::Direction,
    host::host_of,
    score::{PeerScores, ScoreState},
};
use crate::{PeerId, PenaltyClass, discovery::CandidateKind, p2pstream::DisconnectReason};
use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
};
use tokio::time::Instant;
use tracing::{debug, warn};

/// The share of each direction's sessions kept for `leaf/1` peers when the node also speaks
/// eth/69 (a third: 16 of the default 50 inbound, 8 of the 25 outbound). On a public chain
/// nearly every node that dials us or that discovery offers is a geth (our record carries an
/// `eth` entry, and every geth serves snap/1), and a synced one stays for good: without a
/// reserve they fill every slot, and the few leafsync nodes are refused (`TooManyPeers`) or
/// never dialed, so two of them never meet. geth keeps such a reserve for its own non-snap
/// peers (`eth/handler.go`).
pub const LEAF_RESERVE_DIVISOR: usize = 3;

/// The connection limits of a [`PeerTable`] (from `NetworkConfig`). Trusted peers count against
/// none of them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) max_inbound: usize,
    pub(crate) max_inbound_per_ip: usize,
    pub(crate) max_outbound: usize,
    pub(crate) max_static_peers: usize,
    /// Inbound slots sessions without `leaf/1` may not take ([`LEAF_RESERVE_DIVISOR`]).
    pub(crate) leaf_reserve_inbound: usize,
    /// Outbound slots snap/1 candidates may not take ([`LEAF_RESERVE_DIVISOR`]).
    pub(crate) leaf_reserve_outbound: usize,
}

impl Limits {
    /// The limits `config` sets; the `leaf/1` reserve only for a node that speaks both `leaf/1`
    /// and eth/69 (with one of them alone, every session has the same offer).
    pub(crate) fn of(config: &NetworkConfig) -> Self {
        let reserve = |max: usize| {
            if config.leaf && config.eth.is_some() { max / LEAF_RESERVE_DIVISOR } else { 0 }
        };
        Self {
            max_inbound: config.max_inbound,
            max_inbound_per_ip: config.max_inbound_per_ip,
            max_outbound: config.max_outbound,
            max_static_peers: config.max_static_peers,
            leaf_reserve_inbound: reserve(config.max_inbound),
            leaf_reserve_outbound: reserve(config.max_outbound),
        }
    }
}

/// A connected peer as the table sees it, with the manager's per-session data `entry`.
#[derive(Debug)]
pub(crate) struct Connected<E> {
    pub(crate) direction: Direction,
    pub(crate) addr: SocketAddr,
    /// Whether the session speaks `leaf/1`.
    pub(crate) leaf: bool,
    pub(crate) entry: E,
}

/// The admission and dial policy; see the module documentation.
#[derive(Debug)]
pub(crate) struct PeerTable<E> {
    local_id: PeerId,
    limits: Limits,
    connected: HashMap<PeerId, Connected<E>>,
    /// Dials in progress, with the kind of candidate each is (`None`: a static peer).
    dialing: HashMap<PeerId, Option<CandidateKind>>,
    /// Static and trusted peers, with whether they are trusted (at most `max_static_peers`).
    statics: HashMap<PeerId, (NodeRecord, bool)>,
    queue: CandidateQueue,
    scores: PeerScores,
    backoff: Backoff,
}

impl<E> PeerTable<E> {
    /// A table for the node `local_id`. Trusted peers are taken first: when the configuration
    /// lists more peers than `max_static_peers`, they are the ones kept.
    pub(crate) fn new(
        local_id: PeerId,
        limits: Limits,
        trusted: Vec<NodeRecord>,
        statics: Vec<NodeRecord>,
    ) -> Self {
        let mut table = Self {
            local_id,
            limits,
            connected: HashMap::new(),
            dialing: HashMap::new(),
            statics: HashMap::new(),
            queue: CandidateQueue::default(),
            scores: PeerScores::default(),
            backoff: Backoff::default(),
        };
        for (record, is_trusted) in
            trusted.into_iter().map(|r| (r, true)).chain(statics.into_iter().map(|r| (r, false)))
        {
            if !table.has_static_room(&record.id) {
                warn!(peer = %record.id, max = limits.max_static_peers, "too many static peers; ignoring");
                continue;
            }
            table.statics.entry(record.id).or_insert((record, is_trusted));
        }
        table
    }

    fn has_static_room(&self, peer: &PeerId) -> bool {
        self.statics.len() < self.limits.max_static_peers || self.statics.contains_key(peer)
    }

    /// Whether `peer` is a trusted peer (exempt from limits and bans).
    pub(crate) fn is_trusted(&self, peer: &PeerId) -> bool {
        self.statics.get(peer).is_some_and(|(_, trusted)| *trusted)
    }

    /// The connected peers.
    pub(crate) fn connected(&self) -> impl Iterator<Item = (&PeerId, &Connected<E>)> {
        self.connected.iter()
    }

    /// The connected peer `peer`.
    pub(crate) fn get(&self, peer: &PeerId) -> Option<&Connected<E>> {
        self.connected.get(peer)
    }

    /// The connected peer `peer`, mutably.
    pub(crate) fn get_mut(&mut self, peer: &PeerId) -> Option<&mut Connected<E>> {
        self.connected.get_mut(peer)
    }

    /// Takes every connected peer out (shutdown).
    pub(crate) fn drain(&mut self) -> impl Iterator<Item = (PeerId, Connected<E>)> + '_ {
        self.connected.drain()
    }

    /// Connected peers in `direction` that count against the limits (not trusted).
    fn counted(&self, direction: Direction) -> impl Iterator<Item = (&PeerId, &Connected<E>)> {
        self.connected
            .iter()
            .filter(move |(id, c)| c.direction == direction && !self.is_trusted(id))
    }

    /// Established inbound sessions from `ip`'s host ([`host_of`]) that count against the
    /// per-IP limit.
    fn inbound_from(&self, ip: IpAddr) -> usize {
        let host = host_of(ip);
        self.counted(Direction::Inbound).filter(|(_, c)| host_of(c.addr.ip()) == host).count()
    }

    /// Outbound sessions and dials in progress that count against `max_outbound`.
    pub(crate) fn outbound_count(&self) -> usize {
        self.counted(Direction::Outbound).count()
            + self.dialing.keys().filter(|id| !self.is_trusted(id)).count()
    }

    /// Counted sessions in `direction` without `leaf/1` (other than `except`'s), and outbound
    /// the snap/1 candidates being dialed: what the `leaf/1` reserve bounds.
    fn without_leaf(&self, direction: Direction, except: Option<&PeerId>) -> usize {
        let sessions = self
            .counted(direction)
            .filter(|(id, c)| !c.leaf && Some(*id) != except && !self.statics.contains_key(*id))
            .count();
        let dials = match direction {
            Direction::Inbound => 0,
            Direction::Outbound => {
                self.dialing.values().filter(|k| **k == Some(CandidateKind::Snap)).count()
            }
        };
        sessions + dials
    }

    /// Whether an established inbound session of `peer` whose Hello offers `leaf/1` or not
    /// (`leaf`) may stay: sessions without it take at most the inbound slots the `leaf/1`
    /// reserve leaves (`TooManyPeers` past that). Outbound sessions were held to the reserve
    /// when dialed ([`Self::dial_candidates`]); static and trusted peers are exempt.
    pub(crate) fn admit_offer(
        &self,
        peer: &PeerId,
        direction: Direction,
        leaf: bool,
    ) -> Result<(), DisconnectReason> {
        let room = self.limits.max_inbound.saturating_sub(self.limits.leaf_reserve_inbound);
        if direction == Direction::Inbound
            && !leaf
            && !self.statics.contains_key(peer)
            && self.without_leaf(Direction::Inbound, Some(peer)) >= room
        {
            debug!(%peer, room, "inbound slots without leaf/1 are full; the rest are kept for leaf/1");
            return Err(DisconnectReason::TooManyPeers);
        }
        Ok(())
    }

    /// Whether a new connection with `peer` (from `addr`, in `direction`) may become a session.
    ///
    /// Of two connections with one peer (both dialed at once, the simultaneous dial) both sides
    /// keep the one dialed by the smaller node id, so that they agree: a second connection in the
    /// same direction is refused, and one in the other direction is refused unless it is the
    /// one initiated by the smaller id (then the manager replaces the existing session by it).
    pub(crate) fn admit(
        &mut self,
        peer: PeerId,
        addr: SocketAddr,
        direction: Direction,
        now: Instant,
    ) -> Result<(), DisconnectReason> {
        let trusted = self.is_trusted(&peer);
        if peer == self.local_id {
            return Err(DisconnectReason::ConnectedToSelf);
        }
        if !trusted && self.scores.is_banned(&peer, now) {
            return Err(DisconnectReason::UselessPeer);
        }
        if let Some(existing) = self.connected.get(&peer) {
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
            if self.counted(Direction::Inbound).count() >= self.limits.max_inbound {
                return Err(DisconnectReason::TooManyPeers);
            }
            if self.inbound_from(addr.ip()) >= self.limits.max_inbound_per_ip {
                debug!(%peer, %addr, "too many inbound sessions from this host");
                return Err(DisconnectReason::TooManyPeers);
            }
        }
        Ok(())
    }

    /// Records an admitted session; returns the session it replaces (the losing connection of a
    /// simultaneous dial), which the manager closes.
    pub(crate) fn on_connected(
        &mut self,
        peer: PeerId,
        addr: SocketAddr,
        direction: Direction,
        leaf: bool,
        entry: E,
    ) -> Option<Connected<E>> {
        if direction == Direction::Outbound {
            self.dialing.remove(&peer);
        }
        self.backoff.succeeded(&peer);
        self.connected.insert(peer, Connected { direction, addr, leaf, entry })
    }

    /// A session ended. Returns its entry if `is_current` accepts it (the manager checks that the
    /// ending session is the peer's current one, not a replaced one). A static peer is redialed
    /// after the backoff, not in a tight loop with a peer that keeps closing the session.
    pub(crate) fn on_closed(
        &mut self,
        peer: &PeerId,
        now: Instant,
        is_current: impl FnOnce(&E) -> bool,
    ) -> Option<Connected<E>> {
        if !self.connected.get(peer).is_some_and(|c| is_current(&c.entry)) {
            return None;
        }
        if self.statics.contains_key(peer) {
            self.backoff.failed(*peer, now);
        }
        self.connected.remove(peer)
    }

    /// A dial reached a session (admitted or not): it is no longer in progress.
    pub(crate) fn on_dialed(&mut self, peer: &PeerId) {
        self.dialing.remove(peer);
    }

    /// A dial failed: no longer in progress, and the peer is redialed only after the backoff.
    pub(crate) fn on_failed(&mut self, peer: PeerId, now: Instant) {
        self.dialing.remove(&peer);
        self.backoff.failed(peer, now);
    }

    /// Adds a static peer (its trust is kept if it is already known). Refused beyond
    /// `max_static_peers`.
    pub(crate) fn add_static(&mut self, record: NodeRecord) -> bool {
        if !self.has_static_room(&record.id) {
            warn!(peer = %record.id, max = self.limits.max_static_peers, "too many static peers; not adding");
            return false;
        }
        let trusted = self.is_trusted(&record.id);
        self.statics.insert(record.id, (record, trusted));
        true
    }

    /// Queues a discovered dial candidate (`leaf/1` candidates are dialed first).
    pub(crate) fn push_candidate(
        &mut self,
        record: NodeRecord,
        kind: CandidateKind,
    ) -> Result<(), Refused> {
        self.queue.push(record, kind)
    }

    fn may_dial(&mut self, peer: &PeerId, now: Instant) -> bool {
        *peer != self.local_id
            && !self.connected.contains_key(peer)
            && !self.dialing.contains_key(peer)
            && self.backoff.may_dial(peer, now)
            && (self.is_trusted(peer) || !self.scores.is_banned(peer, now))
    }

    /// Whom to dial now: static and trusted peers that are not connected (static ones while an
    /// outbound slot is free), then queued candidates while outbound slots are free, snap/1
    /// ones only while those without `leaf/1` leave the `leaf/1` reserve free. Each is marked
    /// as dialing.
    pub(crate) fn dial_candidates(&mut self, now: Instant) -> Vec<NodeRecord> {
        let mut dials = Vec::new();
        let statics: Vec<(NodeRecord, bool)> = self.statics.values().copied().collect();
        for (record, trusted) in statics {
            if self.may_dial(&record.id, now)
                && (trusted || self.outbound_count() < self.limits.max_outbound)
            {
                self.dialing.insert(record.id, None);
                dials.push(record);
            }
        }
        let snap_room = self.limits.max_outbound.saturating_sub(self.limits.leaf_reserve_outbound);
        while self.outbound_count() < self.limits.max_outbound {
            let snap = self.without_leaf(Direction::Outbound, None) < snap_room;
            let Some((record, kind)) = self.queue.pop(snap) else { break };
            if self.may_dial(&record.id, now) {
                self.dialing.insert(record.id, Some(kind));
                dials.push(record);
            }
        }
        dials
    }

    /// Applies a penalty; returns the resulting state (a trusted peer is never disconnected or
    /// banned for it: the manager checks [`Self::is_trusted`]).
    pub(crate) fn penalise(
        &mut self,
        peer: PeerId,
        class: PenaltyClass,
        now: Instant,
    ) -> ScoreState {
        self.scores.penalise(peer, class, now)
    }

    /// The peer's current score.
    pub(crate) fn score(&self, peer: &PeerId, now: Instant) -> f64 {
        self.scores.score(peer, now)
    }
}

#[cfg(test)]
mod tests;
