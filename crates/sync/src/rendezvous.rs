//! Rendezvous (highest-random-weight) hashing of chunk units onto peers: each unit has a *home*,
//! the peer with the highest `weight(peer, unit)` among those that may get it now. Two clients
//! syncing from the same servers send the same chunk to the same server, so a server's chunk
//! cache answers the second one (docs/sync.md "Which peer gets which chunk").
//!
//! Weights depend only on the peer's id and the unit's trie owner and prefix, never on local
//! indices or order: a peer that leaves takes only its own units' homes with it, and the rest
//! stay where they were.

use alloy_primitives::{B256, keccak256};
use alloy_trie::Nibbles;
use leafsync_p2p::PeerId;

/// A peer's rendezvous key: the first 8 bytes of the keccak of its id.
pub(crate) fn peer_key(id: &PeerId) -> u64 {
    first_u64(keccak256(id.as_slice()).as_slice())
}

/// A unit's rendezvous key: the first 8 bytes of the keccak of its owner (32 zero bytes for the
/// account trie) and its prefix nibbles, the last one without its low bits: all four of them
/// (the sixteen children of one trie node share a home) below the top level, two at the top
/// (the trie's sixteen top units go to their homes in four groups, so that a small state still
/// spreads over the peers). A peer works through the siblings of its home one batch after the
/// other: its answers' pieces meet, and the client writes them into shared table files
/// (`LeafDb::commit_chunks`; each file costs about a millisecond of CPU besides its bytes).
/// With siblings in groups of four at every level, the answers of all peers interleaved in
/// the key space: a 1M-account sync wrote about a quarter more table files, a 4M one about a
/// third more (docs/benchmarks.md, "chunks held back"). A peer that ends up with more than
/// its share of the groups gives the rest up to the others by work stealing.
pub(crate) fn unit_key(owner: Option<B256>, prefix: &Nibbles) -> u64 {
    let mut bytes = Vec::with_capacity(32 + prefix.len());
    bytes.extend_from_slice(owner.unwrap_or_default().as_slice());
    bytes.extend(prefix.iter());
    let low_bits = if prefix.len() > 1 { 4 } else { 2 };
    if !prefix.is_empty()
        && let Some(last) = bytes.last_mut()
    {
        *last >>= low_bits;
    }
    first_u64(keccak256(&bytes).as_slice())
}

fn first_u64(bytes: &[u8]) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[..8]);
    u64::from_be_bytes(word)
}

/// The weight of a peer for a unit: both keys mixed by splitmix64's finalizer (a bijection, so
/// distinct peers never tie on one unit).
fn weight(peer: u64, unit: u64) -> u64 {
    let mut z = peer ^ unit;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A unit's home as last computed: the peer (`None`: every peer of the roster tried it this
/// round), valid while the roster's fingerprint and the unit's tried count are `stamp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Home {
    stamp: (u64, usize),
    peer: Option<usize>,
}

/// What the rendezvous places: a chunk unit ([`crate::tasks::Unit`]), which keeps its home.
pub(crate) trait Placed {
    /// The unit's [`unit_key`].
    fn key(&self) -> u64;
    /// The peers that tried the unit this round: none of them is its home.
    fn tried(&self) -> &[usize];
    /// The unit's home as last computed (`None` until first asked).
    fn home_cache(&mut self) -> &mut Option<Home>;
}

/// The peers that may get chunks now, with their keys, and a fingerprint of that set.
#[derive(Debug, Default, Clone)]
pub(crate) struct Rendezvous {
    peers: Vec<(usize, u64)>,
    /// Changes whenever the set of peers (or a slot's peer) changes: a unit's cached home is
    /// valid only for the fingerprint it was computed under.
    fingerprint: u64,
}

impl Rendezvous {
    /// The rendezvous over `peers`, each a peer index and its [`peer_key`].
    pub(crate) fn new(peers: Vec<(usize, u64)>) -> Self {
        // Order-independent, and tied to each index's key (a reused slot changes it).
        let fingerprint =
            peers.iter().fold(peers.len() as u64, |acc, &(i, key)| acc ^ weight(key, i as u64 + 1));
        Self { peers, fingerprint }
    }

    /// Whether `peer` is `unit`'s home: the peer of highest weight among those that have not
    /// tried it this round. The home is cached in the unit until the peer set or its tried list
    /// changes, so a dispatch looks at each unit's peers once per change, not per scan.
    pub(crate) fn is_home(&self, unit: &mut impl Placed, peer: usize) -> bool {
        self.home(unit) == Some(peer)
    }

    /// Whether `unit` has a home: a peer of the roster that has not tried it this round.
    pub(crate) fn has_home(&self, unit: &mut impl Placed) -> bool {
        self.home(unit).is_some()
    }

    /// `unit`'s home (see [`Self::is_home`]), cached in the unit.
    fn home(&self, unit: &mut impl Placed) -> Option<usize> {
        let stamp = (self.fingerprint, unit.tried().len());
        if let Some(Home { stamp: s, peer }) = *unit.home_cache()
            && s == stamp
        {
            return peer;
        }
        let key = unit.key();
        let tried = unit.tried();
        let peer = self
            .peers
            .iter()
            .filter(|(i, _)| !tried.contains(i))
            .max_by_key(|(_, k)| weight(*k, key))
            .map(|(i, _)| *i);
        *unit.home_cache() = Some(Home { stamp, peer });
        peer
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tasks::{Attempts, Unit};

    fn unit(n: u16) -> Unit {
        Unit {
            owner: None,
            prefix: Nibbles::from_nibbles([(n >> 8) as u8 & 15, (n >> 4) as u8 & 15, n as u8 & 15]),
            hash: B256::ZERO,
            leaf: false,
            attempts: Attempts::default(),
            home: None,
        }
    }

    #[test]
    fn homes_spread_over_the_peers_and_move_only_from_a_peer_that_left() {
        let keys: Vec<u64> = (1..=4u8).map(|n| peer_key(&PeerId::repeat_byte(n))).collect();
        let all = Rendezvous::new(keys.iter().copied().enumerate().collect());
        let three = Rendezvous::new(keys.iter().copied().enumerate().take(3).collect());
        let home = |r: &Rendezvous, u: &mut Unit| (0..4).find(|p| r.is_home(u, *p));
        let mut counts = [0; 4];
        for n in 0..4096 {
            let mut u = unit(n);
            let before = home(&all, &mut u).expect("every unit has a home");
            counts[before] += 1;
            let after = home(&three, &mut u).expect("still");
            if before != 3 {
                assert_eq!(after, before, "a unit whose home stayed does not move");
            }
        }
        // 256 groups of sixteen siblings over four peers.
        assert!(counts.iter().all(|c| (640..=1_400).contains(c)), "{counts:?}");
    }

    #[test]
    fn siblings_share_a_home() {
        let keys: Vec<u64> = (1..=4u8).map(|n| peer_key(&PeerId::repeat_byte(n))).collect();
        let r = Rendezvous::new(keys.into_iter().enumerate().collect());
        let home = |u: &mut Unit| (0..4).find(|p| r.is_home(u, *p));
        let homes: Vec<_> = (0..4096).map(|n| home(&mut unit(n))).collect();
        for siblings in homes.chunks(16) {
            assert!(siblings.iter().all(|h| *h == siblings[0]), "{siblings:?}");
        }
        // Not all children of a grandparent go to one peer.
        assert!(homes.chunks(256).any(|g| g.iter().any(|h| *h != g[0])));
    }

    #[test]
    fn a_peer_that_tried_a_unit_is_not_its_home_this_round() {
        let keys =
            vec![(0, peer_key(&PeerId::repeat_byte(1))), (1, peer_key(&PeerId::repeat_byte(2)))];
        let r = Rendezvous::new(keys);
        let mut u = unit(7);
        let first = (0..2).find(|p| r.is_home(&mut u, *p)).unwrap();
        u.attempts.tried.push(first);
        assert!(r.is_home(&mut u, 1 - first));
        u.attempts.tried.push(1 - first);
        assert!(!r.is_home(&mut u, 0) && !r.is_home(&mut u, 1), "no home until a new round");
    }
}
