//! [`host_of`]: the host an address stands for, the key of every per-IP limit.

use std::net::{IpAddr, Ipv6Addr};

/// The host `ip` stands for: an IPv4 address as is (an IPv4-mapped IPv6 address as its IPv4),
/// any other IPv6 address as its /64 with the interface bits zeroed. A host is routinely given a
/// whole /64 and may answer on any address in it, so limits keyed by the full IPv6 address give
/// one host as many shares as it cares to use.
pub(crate) fn host_of(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !u128::from(u64::MAX);
            IpAddr::V6(Ipv6Addr::from(prefix))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(s: &str) -> String {
        host_of(s.parse().expect("address")).to_string()
    }

    #[test]
    fn ipv4_is_itself_and_ipv6_its_64() {
        assert_eq!(host("203.0.113.7"), "203.0.113.7");
        assert_eq!(host("::ffff:203.0.113.7"), "203.0.113.7");
        assert_eq!(host("2001:db8::1"), "2001:db8::");
        assert_eq!(host("2001:db8::ffff:ffff:ffff:ffff"), "2001:db8::");
        assert_eq!(host("2001:db8:0:1::1"), "2001:db8:0:1::");
    }
}
