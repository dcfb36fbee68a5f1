//! [`CandidateQueue`]: discovery's dial candidates waiting for an outbound slot, bounded in total
//! and per IP and per subnet, so that one host (or one /24) handing out many identities cannot
//! fill the queue and with it our outbound peer set (review finding M7). `leaf/1` candidates are
//! dialed before snap/1 servers, and snap/1 servers make room first when the queue is full.

use super::{NodeRecord, host::host_of};
use crate::discovery::CandidateKind;
use std::{
    collections::{HashMap, VecDeque},
    net::IpAddr,
};

/// Most discovery candidates queued for dialing; the oldest are dropped (discovery finds nodes
/// again).
pub const MAX_QUEUED_CANDIDATES: usize = 256;

/// Most queued candidates with one IP address. Two allow a host running two nodes; more
/// identities from one address are a Sybil pattern, not diversity.
pub const MAX_QUEUED_CANDIDATES_PER_IP: usize = 2;

/// Most queued candidates in one IPv4 /24 (or IPv6 /64). Eight keep a hosting provider's block
/// from owning more than a few percent of the queue, as discv5's own table limits 10 per /24.
pub const MAX_QUEUED_CANDIDATES_PER_SUBNET: usize = 8;

/// The subnet an address counts against: its /24 for IPv4, its host's /64 for IPv6.
fn subnet(ip: IpAddr) -> [u8; 8] {
    match host_of(ip) {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            [4, a, b, c, 0, 0, 0, 0]
        }
        IpAddr::V6(v6) => {
            let o = v6.octets();
            [o[0], o[1], o[2], o[3], o[4], o[5], o[6], o[7]]
        }
    }
}

/// Why a candidate was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// It is queued already.
    Duplicate,
    /// Its IP has [`MAX_QUEUED_CANDIDATES_PER_IP`] candidates queued.
    Ip,
    /// Its subnet has [`MAX_QUEUED_CANDIDATES_PER_SUBNET`] candidates queued.
    Subnet,
}

/// Two FIFOs of dial candidates (`leaf/1` first, then snap/1) with shared per-IP and
/// per-subnet caps.
#[derive(Debug, Default)]
pub(crate) struct CandidateQueue {
    leaf: VecDeque<NodeRecord>,
    snap: VecDeque<NodeRecord>,
    per_ip: HashMap<IpAddr, usize>,
    per_subnet: HashMap<[u8; 8], usize>,
}

fn decrement<K: std::hash::Hash + Eq>(map: &mut HashMap<K, usize>, key: &K) {
    if let Some(n) = map.get_mut(key) {
        *n = n.saturating_sub(1);
        if *n == 0 {
            map.remove(key);
        }
    }
}

impl CandidateQueue {
    /// Queues `record` as a candidate of `kind`, unless it is queued already or its IP or subnet
    /// has its share; when the queue is full, the oldest snap/1 candidate (else the oldest
    /// `leaf/1` one) makes room.
    pub(crate) fn push(&mut self, record: NodeRecord, kind: CandidateKind) -> Result<(), Refused> {
        let ip = record.addr.ip().to_canonical();
        if self.leaf.iter().chain(&self.snap).any(|r| r.id == record.id) {
            return Err(Refused::Duplicate);
        }
        if kind == CandidateKind::Leaf {
            self.evict_snap_sharing(ip);
        }
        if self.per_ip.get(&ip).copied().unwrap_or(0) >= MAX_QUEUED_CANDIDATES_PER_IP {
            return Err(Refused::Ip);
        }
        if self.per_subnet.get(&subnet(ip)).copied().unwrap_or(0)
            >= MAX_QUEUED_CANDIDATES_PER_SUBNET
        {
            return Err(Refused::Subnet);
        }
        if self.len() >= MAX_QUEUED_CANDIDATES {
            let oldest = self.snap.pop_front().or_else(|| self.leaf.pop_front());
            if let Some(oldest) = oldest {
                self.forget(&oldest);
            }
        }
        *self.per_ip.entry(ip).or_insert(0) += 1;
        *self.per_subnet.entry(subnet(ip)).or_insert(0) += 1;
        match kind {
            CandidateKind::Leaf => self.leaf.push_back(record),
            CandidateKind::Snap => self.snap.push_back(record),
        }
        Ok(())
    }

    /// The next candidate to dial and its kind: the oldest `leaf/1` one, else, with `snap`, the
    /// oldest snap/1 one (without, snap/1 candidates stay queued).
    pub(crate) fn pop(&mut self, snap: bool) -> Option<(NodeRecord, CandidateKind)> {
        let (record, kind) = match self.leaf.pop_front() {
            Some(record) => (record, CandidateKind::Leaf),
            None if snap => (self.snap.pop_front()?, CandidateKind::Snap),
            None => return None,
        };
        self.forget(&record);
        Some((record, kind))
    }

    /// Drops a queued snap/1 candidate holding the share of `ip`'s address (else of its subnet)
    /// that a `leaf/1` candidate from `ip` lacks: snap/1 candidates wait in the queue while the
    /// `leaf/1` reserve holds them back, and a hosting provider's /24 full of geth nodes must
    /// not keep out the leafsync node the reserve is for. Nothing when the shares are free or
    /// held by `leaf/1` candidates only.
    fn evict_snap_sharing(&mut self, ip: IpAddr) {
        let full_ip = self.per_ip.get(&ip).copied().unwrap_or(0) >= MAX_QUEUED_CANDIDATES_PER_IP;
        let full_subnet = self.per_subnet.get(&subnet(ip)).copied().unwrap_or(0)
            >= MAX_QUEUED_CANDIDATES_PER_SUBNET;
        let holds = |r: &NodeRecord| {
            let theirs = r.addr.ip().to_canonical();
            if full_ip { theirs == ip } else { subnet(theirs) == subnet(ip) }
        };
        if !(full_ip || full_subnet) {
            return;
        }
        if let Some(evicted) = self.snap.iter().position(holds).and_then(|i| self.snap.remove(i)) {
            self.forget(&evicted);
        }
    }

    /// Frees the shares of a record leaving the queue.
    fn forget(&mut self, record: &NodeRecord) {
        let ip = record.addr.ip().to_canonical();
        decrement(&mut self.per_ip, &ip);
        decrement(&mut self.per_subnet, &subnet(ip));
    }

    /// Candidates queued.
    pub(crate) fn len(&self) -> usize {
        self.leaf.len() + self.snap.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PeerId;
    use std::net::SocketAddr;

    const LEAF: CandidateKind = CandidateKind::Leaf;

    fn record(n: u32, addr: &str) -> NodeRecord {
        let mut id = [0u8; 64];
        id[..4].copy_from_slice(&n.to_be_bytes());
        NodeRecord { id: PeerId::from(id), addr: addr.parse::<SocketAddr>().expect("addr") }
    }

    /// M7: 200 identities on one IP take at most `MAX_QUEUED_CANDIDATES_PER_IP` places, 200 in one
    /// /24 at most `MAX_QUEUED_CANDIDATES_PER_SUBNET`; other hosts still get in.
    #[test]
    fn one_ip_or_subnet_cannot_fill_the_queue() {
        let mut queue = CandidateQueue::default();
        let queued =
            (0..200).filter(|n| queue.push(record(*n, "203.0.113.7:30303"), LEAF).is_ok()).count();
        assert_eq!(queued, MAX_QUEUED_CANDIDATES_PER_IP);
        let queued = (200..400)
            .filter(|n| {
                queue.push(record(*n, &format!("203.0.113.{}:30303", n % 250)), LEAF).is_ok()
            })
            .count();
        assert_eq!(queued + MAX_QUEUED_CANDIDATES_PER_IP, MAX_QUEUED_CANDIDATES_PER_SUBNET);
        assert_eq!(queue.len(), MAX_QUEUED_CANDIDATES_PER_SUBNET);
        assert_eq!(queue.push(record(999, "198.51.100.1:30303"), LEAF), Ok(()));
        assert_eq!(queue.push(record(999, "198.51.100.2:30303"), LEAF), Err(Refused::Duplicate));
        // Popping frees the IP's share again.
        let (first, _) = queue.pop(true).expect("oldest");
        assert_eq!(first.addr.ip().to_string(), "203.0.113.7");
        assert_eq!(queue.push(record(1000, "203.0.113.7:30303"), LEAF), Ok(()));
        assert_eq!(queue.push(record(1001, "203.0.113.99:30303"), LEAF), Err(Refused::Subnet));
    }

    #[test]
    fn leaf_candidates_are_dialed_first_and_snap_ones_make_room() {
        let mut queue = CandidateQueue::default();
        let addr = |n: u32| format!("10.{}.{}.1:30303", n / 256, n % 256);
        assert_eq!(queue.push(record(1, &addr(1)), CandidateKind::Snap), Ok(()));
        assert_eq!(queue.push(record(2, &addr(2)), LEAF), Ok(()));
        assert_eq!(queue.push(record(2, &addr(3)), CandidateKind::Snap), Err(Refused::Duplicate));
        assert_eq!(queue.pop(true).map(|(r, _)| r.id), Some(record(2, "10.0.0.1:1").id));
        // Without room for snap/1 servers, they stay queued.
        assert_eq!(queue.pop(false), None);
        assert_eq!(queue.len(), 1);
        let snap = Some((record(1, "10.0.0.1:1").id, CandidateKind::Snap));
        assert_eq!(queue.pop(true).map(|(r, kind)| (r.id, kind)), snap);
        assert_eq!(queue.pop(true), None);
        // Full of leaf candidates but one snap/1 server: the snap/1 server makes room.
        assert_eq!(queue.push(record(0, &addr(0)), CandidateKind::Snap), Ok(()));
        for n in 1..MAX_QUEUED_CANDIDATES as u32 {
            assert_eq!(queue.push(record(n, &addr(n)), LEAF), Ok(()));
        }
        assert_eq!(queue.push(record(9999, &addr(9999)), LEAF), Ok(()));
        assert_eq!(queue.len(), MAX_QUEUED_CANDIDATES);
        assert_eq!(queue.pop(true).map(|(r, _)| r.id), Some(record(1, "10.0.0.1:1").id));
        let mut rest = std::iter::from_fn(|| queue.pop(true));
        assert!(rest.all(|(r, _)| r.id != record(0, "10.0.0.1:1").id));
    }

    /// snap/1 candidates parked by the `leaf/1` reserve give their IP's or subnet's share to a
    /// `leaf/1` candidate, which would otherwise be refused for a /24 full of geth nodes;
    /// `leaf/1` candidates keep theirs.
    #[test]
    fn a_leaf_candidate_takes_the_share_of_a_snap_one() {
        let mut queue = CandidateQueue::default();
        let snap = CandidateKind::Snap;
        for n in 0..MAX_QUEUED_CANDIDATES_PER_SUBNET as u32 {
            let addr = format!("203.0.113.{}:30303", n / 2);
            assert_eq!(queue.push(record(n, &addr), snap), Ok(()));
        }
        assert_eq!(queue.push(record(100, "203.0.113.200:30303"), snap), Err(Refused::Subnet));
        assert_eq!(queue.push(record(101, "203.0.113.200:30303"), LEAF), Ok(()));
        assert_eq!(queue.len(), MAX_QUEUED_CANDIDATES_PER_SUBNET);
        // Its address full of snap/1 candidates: one of those makes room.
        assert_eq!(queue.push(record(102, "203.0.113.0:30303"), LEAF), Ok(()));
        assert_eq!(queue.pop(false).map(|(r, _)| r.id), Some(record(101, "10.0.0.1:1").id));
        assert_eq!(queue.pop(false).map(|(r, _)| r.id), Some(record(102, "10.0.0.1:1").id));
        // A share held by leaf/1 candidates only stays theirs.
        let mut leafs = CandidateQueue::default();
        assert_eq!(leafs.push(record(1, "198.51.100.1:30303"), LEAF), Ok(()));
        assert_eq!(leafs.push(record(2, "198.51.100.1:30303"), LEAF), Ok(()));
        assert_eq!(leafs.push(record(3, "198.51.100.1:30303"), LEAF), Err(Refused::Ip));
    }

    #[test]
    fn a_full_queue_drops_its_oldest() {
        let mut queue = CandidateQueue::default();
        for n in 0..(MAX_QUEUED_CANDIDATES as u32 + 10) {
            let addr = format!("10.{}.{}.1:30303", n / 256, n % 256);
            assert_eq!(queue.push(record(n, &addr), LEAF), Ok(()));
        }
        assert_eq!(queue.len(), MAX_QUEUED_CANDIDATES);
        assert_eq!(queue.pop(true).map(|(r, _)| r.id), Some(record(10, "10.0.0.1:1").id));
        assert!(
            queue.per_ip.len() <= MAX_QUEUED_CANDIDATES
                && queue.per_subnet.len() <= MAX_QUEUED_CANDIDATES
        );
    }
}
