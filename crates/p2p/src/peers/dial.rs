//! Redial backoff: after each failed dial of a peer the wait before the next one doubles, from
//! [`DIAL_BACKOFF_BASE`] up to [`DIAL_BACKOFF_MAX`]; a successful session resets it.

use crate::PeerId;
use std::{collections::HashMap, time::Duration};
use tokio::time::Instant;

/// Wait after the first failed dial. Short, because the usual first failure is a peer that was
/// restarting.
pub const DIAL_BACKOFF_BASE: Duration = Duration::from_secs(1);

/// Longest wait between two dials of one peer. Five minutes keep a dead static peer from costing
/// more than a connect attempt every five minutes, while a returning one is found soon enough.
pub const DIAL_BACKOFF_MAX: Duration = Duration::from_secs(300);

/// Most peers whose backoff is remembered; beyond it the oldest entries are forgotten (those
/// peers are simply dialed again as new). Static peers are far fewer.
pub const MAX_BACKOFF_ENTRIES: usize = 4096;

/// Failed-dial memory per peer.
#[derive(Debug, Default)]
pub struct Backoff {
    entries: HashMap<PeerId, (u32, Instant)>,
}

impl Backoff {
    /// The wait after `failures` consecutive failures (`failures >= 1`).
    pub fn delay(failures: u32) -> Duration {
        let exp = failures.saturating_sub(1).min(16);
        DIAL_BACKOFF_BASE.saturating_mul(1 << exp).min(DIAL_BACKOFF_MAX)
    }

    /// Records a failed dial at `now`.
    pub fn failed(&mut self, peer: PeerId, now: Instant) {
        if self.entries.len() >= MAX_BACKOFF_ENTRIES
            && !self.entries.contains_key(&peer)
            && let Some(oldest) = self.entries.iter().min_by_key(|(_, (_, at))| *at).map(|e| *e.0)
        {
            self.entries.remove(&oldest);
        }
        let failures = self.entries.get(&peer).map_or(0, |(f, _)| *f).saturating_add(1);
        self.entries.insert(peer, (failures, now + Self::delay(failures)));
    }

    /// Forgets `peer`'s failures (it connected).
    pub fn succeeded(&mut self, peer: &PeerId) {
        self.entries.remove(peer);
    }

    /// Whether `peer` may be dialed at `now`.
    pub fn may_dial(&self, peer: &PeerId, now: Instant) -> bool {
        self.entries.get(peer).is_none_or(|(_, next)| *next <= now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_and_resets() {
        assert_eq!(Backoff::delay(1), DIAL_BACKOFF_BASE);
        assert_eq!(Backoff::delay(2), DIAL_BACKOFF_BASE * 2);
        assert_eq!(Backoff::delay(4), DIAL_BACKOFF_BASE * 8);
        assert_eq!(Backoff::delay(40), DIAL_BACKOFF_MAX);
        let now = Instant::now();
        let peer = PeerId::repeat_byte(1);
        let mut b = Backoff::default();
        assert!(b.may_dial(&peer, now));
        b.failed(peer, now);
        b.failed(peer, now);
        assert!(!b.may_dial(&peer, now + DIAL_BACKOFF_BASE));
        assert!(b.may_dial(&peer, now + DIAL_BACKOFF_BASE * 2));
        b.succeeded(&peer);
        assert!(b.may_dial(&peer, now));
    }
}
