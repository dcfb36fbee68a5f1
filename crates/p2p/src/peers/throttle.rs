//! [`InboundThrottle`]: how often one host may open an inbound connection. An inbound handshake
//! costs about seven secp256k1 multiplications and a signature recovery before the peer has
//! proved anything (its first frame's MAC), and one valid auth packet can be replayed on any
//! number of short connections: without a rate, one host four connections at a time (its share
//! of the pending handshakes) keeps a core busy for the price of a few hundred bytes each. As
//! go-ethereum does (`inboundThrottleTime`), a host on the internet may open one inbound
//! connection per [`INBOUND_THROTTLE`]; hosts on loopback or a private network, the operator's
//! own, are not throttled.

use super::host::host_of;
use crate::discovery::is_public_address;
use std::{collections::HashMap, net::IpAddr, time::Duration};
use tokio::time::Instant;

/// Shortest time between two inbound connections of one public host (an IPv4 address or an
/// IPv6 /64): go-ethereum's `inboundThrottleTime`.
pub const INBOUND_THROTTLE: Duration = Duration::from_secs(30);

/// Hosts whose last inbound connection the throttle remembers at most: with more hosts than
/// this within one [`INBOUND_THROTTLE`] (a spread attack, which the total pending cap still
/// bounds), further hosts are let through unrecorded rather than the memory grow.
pub const MAX_THROTTLED_HOSTS: usize = 4096;

/// The last inbound connection of each recent public host.
#[derive(Debug, Default)]
pub(crate) struct InboundThrottle {
    last: HashMap<IpAddr, Instant>,
}

impl InboundThrottle {
    /// Whether a connection from `ip` at `now` may go on to its handshake: from a local host
    /// always; from a public one unless its previous connection was less than
    /// [`INBOUND_THROTTLE`] ago. An admitted public host's connection is remembered.
    pub(crate) fn admit(&mut self, ip: IpAddr, now: Instant) -> bool {
        if !is_public_address(ip) {
            return true;
        }
        let host = host_of(ip);
        let recent = |at: &Instant| now.saturating_duration_since(*at) < INBOUND_THROTTLE;
        if self.last.get(&host).is_some_and(recent) {
            return false;
        }
        if self.last.len() >= MAX_THROTTLED_HOSTS {
            self.last.retain(|_, at| recent(at));
        }
        if self.last.len() < MAX_THROTTLED_HOSTS {
            self.last.insert(host, now);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("address")
    }

    #[test]
    fn a_public_host_gets_one_connection_per_period() {
        let mut throttle = InboundThrottle::default();
        let t0 = Instant::now();
        assert!(throttle.admit(ip("203.0.113.7"), t0));
        assert!(!throttle.admit(ip("203.0.113.7"), t0 + Duration::from_secs(29)));
        assert!(throttle.admit(ip("203.0.113.8"), t0), "another host");
        assert!(throttle.admit(ip("203.0.113.7"), t0 + INBOUND_THROTTLE));
        // One /64 is one host; a refused attempt does not restart the period.
        assert!(throttle.admit(ip("2001:db8::1"), t0));
        assert!(!throttle.admit(ip("2001:db8::2"), t0 + Duration::from_secs(10)));
        assert!(throttle.admit(ip("2001:db8::3"), t0 + INBOUND_THROTTLE));
    }

    #[test]
    fn local_hosts_are_never_throttled() {
        let mut throttle = InboundThrottle::default();
        let t0 = Instant::now();
        for addr in ["127.0.0.1", "10.0.0.2", "192.168.1.5", "::1", "fd00::1"] {
            assert!((0..100).all(|_| throttle.admit(ip(addr), t0)), "{addr}");
        }
        assert!(throttle.last.is_empty());
    }

    #[test]
    fn the_memory_is_bounded_and_forgets_hosts_past_their_period() {
        let mut throttle = InboundThrottle::default();
        let t0 = Instant::now();
        let host = |i: usize| IpAddr::from([100, 128 + (i >> 16) as u8, (i >> 8) as u8, i as u8]);
        for i in 0..2 * MAX_THROTTLED_HOSTS {
            assert!(throttle.admit(host(i), t0));
        }
        assert_eq!(throttle.last.len(), MAX_THROTTLED_HOSTS, "the rest let through unrecorded");
        assert!(!throttle.admit(host(0), t0), "a recorded host is still throttled");
        // Once their period is over, the recorded hosts make room.
        assert!(throttle.admit(host(3 * MAX_THROTTLED_HOSTS), t0 + INBOUND_THROTTLE));
        assert_eq!(throttle.last.len(), 1);
    }
}
