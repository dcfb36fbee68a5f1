//! The admission and dial policy in a table, without sockets.

use super::*;
use crate::discovery::CandidateKind;
use crate::peers::score::BAN_DURATION;
use std::net::Ipv4Addr;

fn id(n: u8) -> PeerId {
    PeerId::repeat_byte(n)
}

fn addr(host: u8, port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::new(10, 0, 0, host), port))
}

fn record(n: u8) -> NodeRecord {
    NodeRecord { id: id(n), addr: addr(n, 30303) }
}

const LIMITS: Limits = Limits {
    max_inbound: 2,
    max_inbound_per_ip: 1,
    max_outbound: 2,
    max_static_peers: 3,
    leaf_reserve_inbound: 0,
    leaf_reserve_outbound: 0,
};

fn table(local: u8) -> PeerTable<()> {
    PeerTable::new(id(local), LIMITS, Vec::new(), Vec::new())
}

use Direction::{Inbound, Outbound};

/// The simultaneous-dial rule: of two connections with one peer, both sides keep the one dialed
/// by the smaller node id. Every order of arrival, on both sides, ends with that connection.
#[test]
fn simultaneous_dials_keep_the_connection_dialed_by_the_smaller_id() {
    let now = Instant::now();
    let (small, large) = (1u8, 2u8);
    // (local, peer, direction of the connection that arrived first, of the second, verdict)
    let cases = [
        // At the smaller node: its own dial (outbound) is the one to keep.
        (small, large, Outbound, Inbound, Err(DisconnectReason::AlreadyConnected)),
        (small, large, Inbound, Outbound, Ok(())),
        // At the larger node: the peer's dial (inbound) is the one to keep.
        (large, small, Inbound, Outbound, Err(DisconnectReason::AlreadyConnected)),
        (large, small, Outbound, Inbound, Ok(())),
    ];
    for (local, peer, first, second, verdict) in cases {
        let mut t = table(local);
        assert_eq!(t.admit(id(peer), addr(peer, 1), first, now), Ok(()));
        assert!(t.on_connected(id(peer), addr(peer, 1), first, true, ()).is_none());
        assert_eq!(t.admit(id(peer), addr(peer, 2), second, now), verdict, "{local} {first:?}");
        if verdict.is_ok() {
            let replaced = t.on_connected(id(peer), addr(peer, 2), second, true, ());
            assert_eq!(replaced.map(|c| c.direction), Some(first), "the old one is closed");
        }
        // Either way, the kept connection was dialed by the smaller id.
        let kept = t.get(&id(peer)).map(|c| c.direction);
        let dialed_by_small = if local == small { Outbound } else { Inbound };
        assert_eq!(kept, Some(dialed_by_small), "local {local}, first {first:?}");
        // A second connection in the same direction is always refused.
        assert_eq!(
            t.admit(id(peer), addr(peer, 3), dialed_by_small, now),
            Err(DisconnectReason::AlreadyConnected)
        );
    }
}

#[test]
fn self_and_banned_peers_are_refused_but_trusted_ones_are_not_banned() {
    let now = Instant::now();
    let mut t = PeerTable::<()>::new(id(1), LIMITS, vec![record(9)], Vec::new());
    assert_eq!(t.admit(id(1), addr(1, 1), Inbound, now), Err(DisconnectReason::ConnectedToSelf));
    assert_eq!(t.penalise(id(5), PenaltyClass::Fatal, now), ScoreState::Ban);
    assert_eq!(t.admit(id(5), addr(5, 1), Inbound, now), Err(DisconnectReason::UselessPeer));
    assert_eq!(t.admit(id(5), addr(5, 1), Outbound, now), Err(DisconnectReason::UselessPeer));
    let later = now + BAN_DURATION + std::time::Duration::from_secs(1);
    assert_eq!(t.admit(id(5), addr(5, 1), Inbound, later), Ok(()), "the ban expires");
    t.penalise(id(9), PenaltyClass::Fatal, now);
    assert_eq!(t.admit(id(9), addr(9, 1), Inbound, now), Ok(()), "trusted");
}

#[test]
fn inbound_limits_count_untrusted_peers_only() {
    let now = Instant::now();
    let mut t = PeerTable::<()>::new(id(1), LIMITS, vec![record(9)], Vec::new());
    // One per IP.
    t.on_connected(id(2), addr(2, 1), Inbound, true, ());
    assert_eq!(t.admit(id(3), addr(2, 2), Inbound, now), Err(DisconnectReason::TooManyPeers));
    // Two in all.
    t.on_connected(id(3), addr(3, 1), Inbound, true, ());
    assert_eq!(t.admit(id(4), addr(4, 1), Inbound, now), Err(DisconnectReason::TooManyPeers));
    // Outbound sessions and trusted peers are not limited by the inbound limits.
    assert_eq!(t.admit(id(4), addr(4, 1), Outbound, now), Ok(()));
    assert_eq!(t.admit(id(9), addr(2, 9), Inbound, now), Ok(()));
    // A slot frees when a session closes.
    assert!(t.on_closed(&id(3), now, |()| true).is_some());
    assert_eq!(t.admit(id(4), addr(4, 1), Inbound, now), Ok(()));
}

/// The per-IP limit counts an IPv6 /64 as one host, whichever of its addresses a session uses.
#[test]
fn the_inbound_limit_per_ip_counts_an_ipv6_64_as_one_host() {
    let now = Instant::now();
    let mut t = table(1);
    let v6 = |s: &str| SocketAddr::new(s.parse().expect("address"), 30303);
    t.on_connected(id(2), v6("2001:db8::1"), Inbound, true, ());
    assert_eq!(
        t.admit(id(3), v6("2001:db8::2"), Inbound, now),
        Err(DisconnectReason::TooManyPeers)
    );
    assert_eq!(t.admit(id(3), v6("2001:db8:0:1::1"), Inbound, now), Ok(()), "another /64");
}

#[test]
fn dials_fill_outbound_slots_once_and_back_off_after_failures() {
    let now = Instant::now();
    let statics = vec![record(2), record(3), record(4), record(5)];
    let mut t = PeerTable::<()>::new(id(1), LIMITS, vec![record(9)], statics);
    // Three static slots: the trusted peer and two statics are kept.
    let first = t.dial_candidates(now);
    assert!(first.iter().any(|r| r.id == id(9)), "trusted peers are dialed");
    assert_eq!(first.len(), 3, "{first:?}");
    assert_eq!(t.outbound_count(), 2, "trusted dials do not count");
    // Nothing is dialed twice while in progress, and no slot is free.
    assert!(t.dial_candidates(now).is_empty());
    assert_eq!(t.push_candidate(record(7), CandidateKind::Leaf), Ok(()));
    assert!(t.dial_candidates(now).is_empty(), "outbound slots are full");
    // A failed dial frees its slot for a candidate; the failed peer waits for its backoff.
    let failed = first.iter().find(|r| r.id != id(9)).map(|r| r.id).unwrap_or_default();
    t.on_failed(failed, now);
    assert_eq!(t.dial_candidates(now).iter().map(|r| r.id).collect::<Vec<_>>(), vec![id(7)]);
    let later = now + crate::peers::DIAL_BACKOFF_MAX;
    t.on_failed(id(7), now);
    assert!(t.dial_candidates(later).iter().any(|r| r.id == failed), "redialed after backoff");
    // Connected peers are not dialed.
    t.on_connected(failed, addr(1, 1), Outbound, true, ());
    assert!(!t.dial_candidates(later).iter().any(|r| r.id == failed));
}

#[test]
fn a_closed_static_peer_is_redialed_after_its_backoff() {
    let now = Instant::now();
    let mut t = PeerTable::<u32>::new(id(1), LIMITS, Vec::new(), vec![record(2)]);
    assert_eq!(t.dial_candidates(now).len(), 1);
    t.on_connected(id(2), addr(2, 1), Outbound, true, 7);
    // Only the current session's end counts.
    assert!(t.on_closed(&id(2), now, |session| *session == 6).is_none());
    assert!(t.on_closed(&id(2), now, |session| *session == 7).is_some());
    assert!(t.dial_candidates(now).is_empty(), "backing off");
    assert_eq!(t.dial_candidates(now + crate::peers::DIAL_BACKOFF_MAX).len(), 1);
    // Static peers are capped.
    assert!(t.add_static(record(3)));
    assert!(t.add_static(record(4)));
    assert!(!t.add_static(record(5)));
    assert!(t.add_static(record(2)), "a known one is updated");
}

/// Beside eth/69, a share of each direction's slots is kept for `leaf/1` peers: geth nodes
/// (snap/1 servers) that dial us or that discovery offers take the rest, and a leafsync node
/// still gets in and is still dialed. Trusted peers are exempt.
#[test]
fn a_share_of_the_slots_is_kept_for_leaf_peers() {
    let now = Instant::now();
    let limits = Limits {
        max_inbound: 6,
        max_inbound_per_ip: 6,
        max_outbound: 3,
        max_static_peers: 3,
        leaf_reserve_inbound: 2,
        leaf_reserve_outbound: 1,
    };
    let mut t = PeerTable::<()>::new(id(1), limits, vec![record(200)], Vec::new());
    let connect = |t: &mut PeerTable<()>, n: u8, leaf: bool| {
        t.admit(id(n), addr(n, 1), Inbound, now)?;
        t.admit_offer(&id(n), Inbound, leaf)?;
        t.on_connected(id(n), addr(n, 1), Inbound, leaf, ());
        Ok::<(), DisconnectReason>(())
    };
    // Inbound: four sessions without leaf/1, then the fifth is refused; leaf/1 ones take the
    // two slots kept for them, and then the table is full.
    for n in 10..14 {
        assert_eq!(connect(&mut t, n, false), Ok(()), "{n}");
    }
    assert_eq!(connect(&mut t, 14, false), Err(DisconnectReason::TooManyPeers));
    assert_eq!(t.admit_offer(&id(200), Inbound, false), Ok(()), "trusted");
    assert_eq!(connect(&mut t, 15, true), Ok(()));
    assert_eq!(connect(&mut t, 16, true), Ok(()));
    assert_eq!(connect(&mut t, 17, true), Err(DisconnectReason::TooManyPeers), "full");
    // Outbound: snap/1 candidates take two of the three slots; the third waits for a leaf/1 one.
    for n in 20..24 {
        assert_eq!(t.push_candidate(record(n), CandidateKind::Snap), Ok(()));
    }
    let dialed = |dials: Vec<NodeRecord>| dials.iter().map(|r| r.id).collect::<Vec<_>>();
    // The trusted peer is dialed beside them, outside the limits.
    assert_eq!(dialed(t.dial_candidates(now)), [id(200), id(20), id(21)]);
    assert!(t.dial_candidates(now).is_empty(), "the last slot is kept");
    assert_eq!(t.push_candidate(record(30), CandidateKind::Leaf), Ok(()));
    assert_eq!(dialed(t.dial_candidates(now)), [id(30)]);
    // A failed snap/1 dial frees its share; one that became a session keeps it.
    t.on_connected(id(20), addr(20, 1), Outbound, false, ());
    t.on_failed(id(21), now);
    assert_eq!(dialed(t.dial_candidates(now)), [id(22)]);
    assert!(t.dial_candidates(now).is_empty());
}
