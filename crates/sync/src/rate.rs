//! [`PeerRate`]: a peer's throughput and round trip measured answer by answer (go-ethereum's
//! msgrate idea). The snap/1 adapter sizes each answer's byte budget with it
//! (`SnapPeer::budget`). How many requests a peer gets at once is the syncer's
//! [`crate::window::PeerWindow`], which measures the peer as a pipe over all its answers: an
//! answer's own bytes over its own round trip understate a peer that has many in flight.

use std::time::Duration;

/// Weight of a new measurement in the moving averages (0.1, as msgrate's `measurementImpact`):
/// one odd answer moves the estimate a little, a trend moves it within ~10 answers.
pub const MEASUREMENT_IMPACT: f64 = 0.1;

/// Throughput assumed of a new peer (1 MiB/s) until its first answer is measured.
pub const INITIAL_BYTES_PER_SEC: f64 = 1024.0 * 1024.0;

/// Round trip assumed of a new peer (500 ms), until measured.
pub const TARGET_ROUND_TRIP: Duration = Duration::from_millis(500);

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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_peers_measure_faster_and_penalties_halve() {
        let mut fast = PeerRate::default();
        let mut slow = PeerRate::default();
        for _ in 0..50 {
            fast.update(1 << 20, Duration::from_millis(50));
            slow.update(1 << 10, Duration::from_millis(900));
        }
        assert!(fast.bytes_per_sec > 10.0 * (1 << 20) as f64, "{}", fast.bytes_per_sec);
        assert!(slow.bytes_per_sec < 200_000.0, "{}", slow.bytes_per_sec);
        let before = fast.bytes_per_sec;
        fast.penalise();
        assert!(fast.bytes_per_sec < before);
    }
}
