//! [`HeadFilter`]: one session's check of the peer's `NewHead` announcements. Implausible heads
//! are refused, and the rest are passed on at most once per [`NEW_HEAD_MIN_INTERVAL`] (the latest
//! one wins), so that a flood of announcements can neither fill the manager's event broadcast
//! (its subscribers would lag and miss peers connecting meanwhile) nor cost more than one event
//! per peer and interval (review finding L5).

use crate::leaf::{ChainHead, InvalidHead, MAX_HEAD_REWIND};
use std::time::Duration;
use tokio::time::Instant;

/// Shortest time between two heads of one peer passed on to the manager. Blocks come every 12 s
/// on mainnet (1 s on the fastest dev chains); a faster peer's heads are coalesced, and the
/// latest one is passed on when the interval is over, so nothing newer is ever lost.
pub const NEW_HEAD_MIN_INTERVAL: Duration = Duration::from_secs(1);

/// At most one value per [`NEW_HEAD_MIN_INTERVAL`] passed on; a value offered too soon waits,
/// replaced by any later one (the latest wins), until the interval is over. Rate-limits a peer's
/// `NewHead`s and `BlockRangeUpdate`s alike.
#[derive(Debug)]
pub(crate) struct Throttle<T> {
    /// When the next value may be passed on.
    next_allowed: Instant,
    /// A value waiting for `next_allowed`.
    pending: Option<T>,
}

impl<T: Copy> Throttle<T> {
    /// A throttle that passes the first value at once.
    pub(crate) fn new(now: Instant) -> Self {
        Self { next_allowed: now, pending: None }
    }

    /// `value` arrived at `now`: the value to pass on now, if any.
    pub(crate) fn offer(&mut self, value: T, now: Instant) -> Option<T> {
        if now >= self.next_allowed {
            self.next_allowed = now + NEW_HEAD_MIN_INTERVAL;
            self.pending = None;
            Some(value)
        } else {
            self.pending = Some(value);
            None
        }
    }

    /// When a pending value is due, if one waits.
    pub(crate) fn due(&self) -> Option<Instant> {
        self.pending.map(|_| self.next_allowed)
    }

    /// The pending value, if it is due at `now`.
    pub(crate) fn take_due(&mut self, now: Instant) -> Option<T> {
        if now < self.next_allowed {
            return None;
        }
        let value = self.pending.take()?;
        self.next_allowed = now + NEW_HEAD_MIN_INTERVAL;
        Some(value)
    }
}

/// The check and the rate limit of one peer's heads.
#[derive(Debug)]
pub(crate) struct HeadFilter {
    /// The latest accepted head (passed on or pending).
    last: ChainHead,
    throttle: Throttle<ChainHead>,
}

impl HeadFilter {
    /// A filter for a peer whose `Status` announced `head`.
    pub(crate) fn new(head: ChainHead, now: Instant) -> Self {
        Self { last: head, throttle: Throttle::new(now) }
    }

    /// A `NewHead` arrived at `now`: the head to pass on now, if any. A refused head changes
    /// nothing; an accepted one that came too soon is kept and returned by [`Self::take_due`].
    pub(crate) fn on_new_head(
        &mut self,
        head: ChainHead,
        now: Instant,
    ) -> Result<Option<ChainHead>, InvalidHead> {
        head.check_plausible()?;
        if head.number.saturating_add(MAX_HEAD_REWIND) < self.last.number {
            return Err(InvalidHead::Rewind { number: head.number, previous: self.last.number });
        }
        if head == self.last {
            return Ok(None);
        }
        self.last = head;
        Ok(self.throttle.offer(head, now))
    }

    /// When a pending head is due, if one waits.
    pub(crate) fn due(&self) -> Option<Instant> {
        self.throttle.due()
    }

    /// The pending head, if it is due at `now`.
    pub(crate) fn take_due(&mut self, now: Instant) -> Option<ChainHead> {
        self.throttle.take_due(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_primitives::B256;

    fn head(number: u64) -> ChainHead {
        ChainHead {
            number,
            hash: B256::with_last_byte(number as u8 | 1),
            state_root: B256::repeat_byte(0xaa),
        }
    }

    #[test]
    fn implausible_heads_are_refused() {
        let now = Instant::now();
        let mut filter = HeadFilter::new(head(1000), now);
        let zero = ChainHead { hash: B256::ZERO, ..head(1001) };
        assert_eq!(filter.on_new_head(zero, now), Err(InvalidHead::ZeroHash));
        let zero_root = ChainHead { state_root: B256::ZERO, ..head(1001) };
        assert_eq!(filter.on_new_head(zero_root, now), Err(InvalidHead::ZeroHash));
        assert_eq!(
            filter.on_new_head(head(u64::MAX), now),
            Err(InvalidHead::Implausible(u64::MAX))
        );
        assert_eq!(
            filter.on_new_head(head(1000 - MAX_HEAD_REWIND - 1), now),
            Err(InvalidHead::Rewind { number: 1000 - MAX_HEAD_REWIND - 1, previous: 1000 })
        );
        // A shallow reorg and any advance are fine; a repeat is ignored.
        assert_eq!(filter.on_new_head(head(1000 - MAX_HEAD_REWIND), now), Ok(Some(head(936))));
        let later = now + NEW_HEAD_MIN_INTERVAL;
        assert_eq!(filter.on_new_head(head(20_000_000), later), Ok(Some(head(20_000_000))));
        assert_eq!(filter.on_new_head(head(20_000_000), later + NEW_HEAD_MIN_INTERVAL), Ok(None));
    }

    #[test]
    fn a_flood_is_coalesced_to_one_head_per_interval_and_the_latest_is_kept() {
        let start = Instant::now();
        let mut filter = HeadFilter::new(head(0), start);
        let mut passed = Vec::new();
        for n in 1..=10_000u64 {
            let now = start + Duration::from_micros(n);
            passed.extend(filter.on_new_head(head(n), now).expect("valid"));
        }
        assert_eq!(passed, vec![head(1)]);
        let due = filter.due().expect("the latest waits");
        assert_eq!(due, start + Duration::from_micros(1) + NEW_HEAD_MIN_INTERVAL);
        assert_eq!(filter.take_due(due - Duration::from_millis(1)), None);
        assert_eq!(filter.take_due(due), Some(head(10_000)));
        assert_eq!(filter.due(), None);
    }
}
