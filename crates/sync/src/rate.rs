//! [`PeerRate`]: each peer's measured throughput and round-trip time, which size how many
//! requests it gets at once (go-ethereum's msgrate idea: give fast peers more, slow peers less,
//! and learn from every answer).

use std::time::Duration;

use crate::config::MAX_IN_FLIGHT_PER_PEER;

/// Weight of a new measurement in the moving averages (0.1, as msgrate's `measurementImpact`):
/// one odd answer moves the estimate a little, a trend moves it within ~10 answers.
pub const MEASUREMENT_IMPACT: f64 = 0.1;

/// Throughput assumed of a new peer (1 MiB/s): enough for two chunks in flight until measured.
pub const INITIAL_BYTES_PER_SEC: f64 = 1024.0 * 1024.0;

/// Round trip the in-flight window is sized for (500 ms): a peer gets as many requests as it can
/// answer in that time, so its pipe stays full without queueing work behind a slow peer.
pub const TARGET_ROUND_TRIP: Duration = Duration::from_millis(500);

/// Response size the window is computed with (256 KiB, a small chunk).
pub const TYPICAL_RESPONSE_BYTES: f64 = 256.0 * 1024.0;

/// Shortest elapsed time a measurement uses (1 ms), so an instant answer does not divide by 0.
pub const MIN_MEASURED_ELAPSED: Duration = Duration::from_millis(1);

/// A peer's measured capacity.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PeerRate {
    /// Moving average of bytes per second.
    pub bytes_per_sec: f64,
    /// Moving average of the round-trip time.
    pub rtt: Duration,
}

impl Default for PeerRate {
    fn default() -> Self {
        Self { bytes_per_sec: INITIAL_BYTES_PER_SEC, rtt: TARGET_ROUND_TRIP }
    }
}

impl PeerRate {
    /// Folds in an answer of `bytes` that took `elapsed`.
    pub fn update(&mut self, bytes: u64, elapsed: Duration) {
        let elapsed = elapsed.max(MIN_MEASURED_ELAPSED);
        let measured = bytes as f64 / elapsed.as_secs_f64();
        self.bytes_per_sec =
            (1.0 - MEASUREMENT_IMPACT) * self.bytes_per_sec + MEASUREMENT_IMPACT * measured;
        self.rtt = elapsed.mul_f64(MEASUREMENT_IMPACT) + self.rtt.mul_f64(1.0 - MEASUREMENT_IMPACT);
    }

    /// A timeout or an empty answer: the peer delivered nothing, halve its estimate.
    pub fn penalise(&mut self) {
        self.bytes_per_sec /= 2.0;
    }

    /// Requests it should have in flight: what it delivers in [`TARGET_ROUND_TRIP`], in
    /// [`TYPICAL_RESPONSE_BYTES`] answers, between 1 and [`MAX_IN_FLIGHT_PER_PEER`].
    pub fn capacity(&self) -> usize {
        let per_rtt = self.bytes_per_sec * TARGET_ROUND_TRIP.as_secs_f64();
        ((per_rtt / TYPICAL_RESPONSE_BYTES).ceil() as usize).clamp(1, MAX_IN_FLIGHT_PER_PEER)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_peers_get_more_slow_peers_less() {
        let mut fast = PeerRate::default();
        let mut slow = PeerRate::default();
        for _ in 0..50 {
            fast.update(1 << 20, Duration::from_millis(50));
            slow.update(1 << 10, Duration::from_millis(900));
        }
        assert_eq!(fast.capacity(), MAX_IN_FLIGHT_PER_PEER);
        assert_eq!(slow.capacity(), 1);
        let before = fast.bytes_per_sec;
        fast.penalise();
        assert!(fast.bytes_per_sec < before);
    }
}
