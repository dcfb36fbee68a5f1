//! An emulated one-way network link, for `leafsync bench sync` and the sync tests: a serialising
//! queue. A message of `n` bytes handed to it at `now` starts when the link is free
//! (`max(now, free_at)`), occupies it for `n · 8 / bandwidth`, and arrives the one-way delay
//! after it has been sent. On loopback (or between simulated peers) a round trip costs nothing,
//! so a sync that needs many would look as cheap as one that needs few.

use std::{
    sync::{Mutex, PoisonError},
    time::Duration,
};

use tokio::time::Instant;

/// One direction of an emulated connection (tokio time: virtual under paused time).
#[derive(Debug)]
pub struct Link {
    one_way: Duration,
    bits_per_sec: u64,
    /// When the link has finished sending everything handed to it so far.
    free_at: Mutex<Instant>,
}

impl Link {
    /// A link whose messages arrive `one_way` after they are sent, at `bits_per_sec` (zero
    /// turns the bandwidth limit off).
    pub fn new(one_way: Duration, bits_per_sec: u64) -> Self {
        Self { one_way, bits_per_sec, free_at: Mutex::new(Instant::now()) }
    }

    /// Time the link is busy sending `bytes`.
    fn transmission(&self, bytes: u64) -> Duration {
        if self.bits_per_sec == 0 {
            return Duration::ZERO;
        }
        let nanos = u128::from(bytes) * 8 * 1_000_000_000 / u128::from(self.bits_per_sec);
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    /// When a message of `bytes` handed to the link at `now` arrives; the link stays busy until
    /// it has been sent.
    pub fn arrival(&self, bytes: u64, now: Instant) -> Instant {
        let transmission = self.transmission(bytes);
        let sent = if transmission.is_zero() {
            now
        } else {
            let mut free_at = self.free_at.lock().unwrap_or_else(PoisonError::into_inner);
            *free_at = (*free_at).max(now) + transmission;
            *free_at
        };
        sent + self.one_way
    }

    /// Carries a message of `bytes`: returns once it has arrived.
    pub async fn carry(&self, bytes: u64) {
        let now = Instant::now();
        let at = self.arrival(bytes, now);
        if at > now {
            tokio::time::sleep_until(at).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 8 Mbit/s: one byte per microsecond, so times are easy to read.
    const ONE_BYTE_PER_US: u64 = 8_000_000;

    fn link(one_way_ms: u64, bits_per_sec: u64) -> Link {
        Link::new(Duration::from_millis(one_way_ms), bits_per_sec)
    }

    #[tokio::test(start_paused = true)]
    async fn a_message_arrives_the_one_way_delay_after_its_transmission() {
        let link = link(25, ONE_BYTE_PER_US);
        let start = Instant::now();
        link.carry(10_000).await;
        // 10,000 bytes at 1 byte/µs = 10 ms, then 25 ms of propagation.
        assert_eq!(start.elapsed(), Duration::from_millis(35));
    }

    #[tokio::test(start_paused = true)]
    async fn back_to_back_messages_serialise_but_propagate_together() {
        let link = link(25, ONE_BYTE_PER_US);
        let start = Instant::now();
        let timed = |bytes| {
            let link = &link;
            async move {
                link.carry(bytes).await;
                start.elapsed()
            }
        };
        let (first, second) = tokio::join!(timed(10_000), timed(20_000));
        assert_eq!(first, Duration::from_millis(35));
        // The second waits for the first's 10 ms on the wire, then needs its own 20 ms.
        assert_eq!(second, Duration::from_millis(55));
        // Once the link is idle again, a message starts at once.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let again = Instant::now();
        link.carry(1_000).await;
        assert_eq!(again.elapsed(), Duration::from_millis(26));
    }

    #[tokio::test(start_paused = true)]
    async fn zero_turns_each_part_off() {
        let start = Instant::now();
        link(0, ONE_BYTE_PER_US).carry(5_000).await;
        assert_eq!(start.elapsed(), Duration::from_millis(5));
        let start = Instant::now();
        let both = link(20, 0);
        tokio::join!(both.carry(1 << 30), both.carry(1 << 30));
        assert_eq!(start.elapsed(), Duration::from_millis(20));
        let start = Instant::now();
        link(0, 0).carry(1 << 30).await;
        assert_eq!(start.elapsed(), Duration::ZERO);
    }
}
