//! [`CandidateQueue`]: discovery's dial candidates waiting for an outbound slot, bounded in total
//! and per IP and per subnet, so that one host (or one /24) handing out many identities cannot
//! fill the queue and with it our outbound peer set (review finding M7).

use super::NodeRecord;
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

/// The subnet an address counts against: its /24 for IPv4, its /64 for IPv6.
fn subnet(ip: IpAddr) -> [u8; 8] {
    match ip.to_canonical() {
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

/// A FIFO of dial candidates with per-IP and per-subnet caps.
#[derive(Debug, Default)]
pub(crate) struct CandidateQueue {
    queue: VecDeque<NodeRecord>,
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
    /// Queues `record` unless a cap refuses it; drops the oldest candidate when full.
    pub(crate) fn push(&mut self, record: NodeRecord) -> Result<(), Refused> {
        let ip = record.addr.ip().to_canonical();
        if self.queue.iter().any(|r| r.id == record.id) {
            return Err(Refused::Duplicate);
        }
        if self.per_ip.get(&ip).copied().unwrap_or(0) >= MAX_QUEUED_CANDIDATES_PER_IP {
            return Err(Refused::Ip);
        }
        if self.per_subnet.get(&subnet(ip)).copied().unwrap_or(0)
            >= MAX_QUEUED_CANDIDATES_PER_SUBNET
        {
            return Err(Refused::Subnet);
        }
        if self.queue.len() >= MAX_QUEUED_CANDIDATES {
            let _ = self.pop();
        }
        *self.per_ip.entry(ip).or_insert(0) += 1;
        *self.per_subnet.entry(subnet(ip)).or_insert(0) += 1;
        self.queue.push_back(record);
        Ok(())
    }

    /// The oldest candidate.
    pub(crate) fn pop(&mut self) -> Option<NodeRecord> {
        let record = self.queue.pop_front()?;
        let ip = record.addr.ip().to_canonical();
        decrement(&mut self.per_ip, &ip);
        decrement(&mut self.per_subnet, &subnet(ip));
        Some(record)
    }

    /// Candidates queued.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.queue.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PeerId;
    use std::net::SocketAddr;

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
            (0..200).filter(|n| queue.push(record(*n, "203.0.113.7:30303")).is_ok()).count();
        assert_eq!(queued, MAX_QUEUED_CANDIDATES_PER_IP);
        let queued = (200..400)
            .filter(|n| queue.push(record(*n, &format!("203.0.113.{}:30303", n % 250))).is_ok())
            .count();
        assert_eq!(queued + MAX_QUEUED_CANDIDATES_PER_IP, MAX_QUEUED_CANDIDATES_PER_SUBNET);
        assert_eq!(queue.len(), MAX_QUEUED_CANDIDATES_PER_SUBNET);
        assert_eq!(queue.push(record(999, "198.51.100.1:30303")), Ok(()));
        assert_eq!(queue.push(record(999, "198.51.100.2:30303")), Err(Refused::Duplicate));
        // Popping frees the IP's share again.
        let first = queue.pop().expect("oldest");
        assert_eq!(first.addr.ip().to_string(), "203.0.113.7");
        assert_eq!(queue.push(record(1000, "203.0.113.7:30303")), Ok(()));
        assert_eq!(queue.push(record(1001, "203.0.113.99:30303")), Err(Refused::Subnet));
    }

    #[test]
    fn a_full_queue_drops_its_oldest() {
        let mut queue = CandidateQueue::default();
        for n in 0..(MAX_QUEUED_CANDIDATES as u32 + 10) {
            let addr = format!("10.{}.{}.1:30303", n / 256, n % 256);
            assert_eq!(queue.push(record(n, &addr)), Ok(()));
        }
        assert_eq!(queue.len(), MAX_QUEUED_CANDIDATES);
        assert_eq!(queue.pop().map(|r| r.id), Some(record(10, "10.0.0.1:1").id));
        assert!(
            queue.per_ip.len() <= MAX_QUEUED_CANDIDATES
                && queue.per_subnet.len() <= MAX_QUEUED_CANDIDATES
        );
    }
}
