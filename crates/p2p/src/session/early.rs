//! [`EarlyMessages`]: what a peer sends on a capability whose Status handshake is done while the
//! Status of another is still awaited, kept in order for the established session.
//!
//! A client hosting `leaf/1` beside geth's `eth/69` runs one goroutine per capability: its eth
//! handshake may finish, and its eth handler announce transactions or ask for headers, before
//! its `leaf/1` Status is sent. The order that matters is per capability (its Status first);
//! such a message is no breach, but the session is not established yet, so it waits here.

use super::{PeerMessage, SessionError};
use crate::{
    eth::{EthMessage, protocol::GOSSIP_BURST_BYTES},
    leaf::protocol::MAX_IN_FLIGHT_REQUESTS,
};
use std::collections::VecDeque;

/// Most messages kept before the Status handshakes end (32). At most two capabilities can be
/// ahead of the handshake at once (the one whose Status came and `snap/1`, which has none),
/// each with at most [`MAX_IN_FLIGHT_REQUESTS`] unanswered requests: the most a peer within
/// the request limits sends before we can answer. An honest peer sends a handful in the few
/// milliseconds between its Statuses; more is a flood ([`SessionError::EarlyFlood`]).
pub const MAX_EARLY_MESSAGES: usize = 2 * MAX_IN_FLIGHT_REQUESTS;

/// Most payload bytes kept before the Status handshakes end (1 MiB): room for any one request
/// (the largest, `snap/1`'s, is 512 KiB) and for a burst of honest ones (a `GetBlockHeaders`
/// is ~50 bytes), while a pending handshake cannot make us hold more than a small part of what
/// one frame may already take (`MAX_ETH_SESSION_FRAME_SIZE`, ~11.7 MiB). Counted on the
/// payloads as received; the decoders bound what a decoded message takes.
pub const MAX_EARLY_BYTES: usize = 1024 * 1024;

/// Messages received before the session was established, in order, within
/// [`MAX_EARLY_MESSAGES`] and [`MAX_EARLY_BYTES`].
#[derive(Debug, Default)]
pub(crate) struct EarlyMessages {
    queue: VecDeque<PeerMessage>,
    bytes: usize,
    /// Bytes of transaction gossip dropped so far: at most [`GOSSIP_BURST_BYTES`], the budget an
    /// established session starts with.
    gossip: u64,
}

impl EarlyMessages {
    /// Keeps `message`, whose payload had `size` bytes, for the established session. An `eth/69`
    /// transaction announcement is dropped instead: the session ignores them anyway, and a geth
    /// announces its whole pool to a new peer, which must not count against the bounds; up to
    /// [`GOSSIP_BURST_BYTES`] of them, as an established session's budget allows at once. Beyond
    /// any bound the peer flooded us ([`SessionError::EarlyFlood`]).
    pub(crate) fn keep(&mut self, message: PeerMessage, size: usize) -> Result<(), SessionError> {
        if matches!(message, PeerMessage::Eth(EthMessage::Announcement { .. })) {
            self.gossip = self.gossip.saturating_add(size as u64);
            if self.gossip > GOSSIP_BURST_BYTES {
                return Err(SessionError::EarlyFlood);
            }
            return Ok(());
        }
        let bytes = self.bytes.saturating_add(size);
        if self.queue.len() >= MAX_EARLY_MESSAGES || bytes > MAX_EARLY_BYTES {
            return Err(SessionError::EarlyFlood);
        }
        self.bytes = bytes;
        self.queue.push_back(message);
        Ok(())
    }

    /// The oldest message kept.
    pub(crate) fn pop(&mut self) -> Option<PeerMessage> {
        let message = self.queue.pop_front();
        if self.queue.is_empty() {
            self.bytes = 0;
        }
        message
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        eth::{BlockRangeUpdate, protocol::ids},
        snap::{GetByteCodes, SnapMessage},
    };
    use alloy_primitives::B256;

    fn range(latest: u64) -> PeerMessage {
        let update = BlockRangeUpdate { earliest: 0, latest, latest_hash: B256::repeat_byte(1) };
        PeerMessage::Eth(EthMessage::BlockRangeUpdate(update))
    }

    #[test]
    fn messages_come_back_in_order_and_announcements_are_dropped() {
        let mut early = EarlyMessages::default();
        let codes = GetByteCodes { request_id: 7, hashes: vec![B256::ZERO], bytes: 100 };
        let snap = PeerMessage::Snap(SnapMessage::GetByteCodes(codes));
        early.keep(range(1), 40).expect("kept");
        for id in [ids::TRANSACTIONS, ids::NEW_POOLED_TRANSACTION_HASHES] {
            let announcement = PeerMessage::Eth(EthMessage::Announcement { id, size: 40 });
            // 4 MiB of each: past the early byte bound, within the gossip burst.
            for _ in 0..2 * MAX_EARLY_MESSAGES {
                early.keep(announcement.clone(), 64 * 1024).expect("dropped, not counted");
            }
        }
        early.keep(snap.clone(), 40).expect("kept");
        assert_eq!(early.pop(), Some(range(1)));
        assert_eq!(early.pop(), Some(snap));
        assert_eq!(early.pop(), None);
    }

    /// Transaction gossip before the session is up is dropped up to the burst an established
    /// session's budget allows at once; beyond it the peer flooded us.
    #[test]
    fn gossip_beyond_the_burst_before_the_session_is_a_flood() {
        let mut early = EarlyMessages::default();
        let id = ids::TRANSACTIONS;
        let size = MAX_EARLY_BYTES;
        let announcement = PeerMessage::Eth(EthMessage::Announcement { id, size });
        for _ in 0..GOSSIP_BURST_BYTES / size as u64 {
            early.keep(announcement.clone(), size).expect("within the burst");
        }
        let err = early.keep(announcement, 1).expect_err("one byte past the burst");
        assert!(matches!(err, SessionError::EarlyFlood), "{err}");
    }

    #[test]
    fn more_messages_or_bytes_than_the_bounds_are_a_flood() {
        let mut early = EarlyMessages::default();
        for n in 0..MAX_EARLY_MESSAGES {
            early.keep(range(n as u64), 1).expect("within the count");
        }
        let err = early.keep(range(0), 1).expect_err("one too many");
        assert!(matches!(err, SessionError::EarlyFlood), "{err}");
        assert!(err.is_protocol_breach());

        let mut early = EarlyMessages::default();
        early.keep(range(0), MAX_EARLY_BYTES - 10).expect("within the bytes");
        early.keep(range(1), 10).expect("exactly the bytes");
        assert!(matches!(early.keep(range(2), 1), Err(SessionError::EarlyFlood)));
        // A hostile size cannot overflow the sum.
        let mut early = EarlyMessages::default();
        early.keep(range(0), 1).expect("kept");
        assert!(matches!(early.keep(range(1), usize::MAX), Err(SessionError::EarlyFlood)));
    }
}
