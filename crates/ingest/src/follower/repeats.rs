//! Conditions that last (the execution client failing, the state off the chain, the client's
//! head below ours) are told to the operator without a line per retry or per block: the first
//! occurrence, then one line per [`REPEAT_LOG_INTERVAL`] with the count meanwhile, then the end.

use std::time::{Duration, Instant};

/// Least time between two lines about one lasting condition.
pub const REPEAT_LOG_INTERVAL: Duration = Duration::from_secs(60);

/// One lasting condition's occurrences since it began and since its last line.
#[derive(Debug, Default)]
pub(super) struct Repeats {
    /// Occurrences since the condition began; 0: it holds not.
    total: u64,
    /// Occurrences since the last line.
    unlogged: u64,
    last_line: Option<Instant>,
}

impl Repeats {
    /// Counts one occurrence; `Some(occurrences since the last line, this one included)` when
    /// this one is to be logged: the first, then one per [`REPEAT_LOG_INTERVAL`].
    pub(super) fn note(&mut self) -> Option<u64> {
        self.note_at(Instant::now())
    }

    fn note_at(&mut self, now: Instant) -> Option<u64> {
        self.total += 1;
        self.unlogged += 1;
        let due = self.last_line.is_none_or(|t| now.duration_since(t) >= REPEAT_LOG_INTERVAL);
        if !due {
            return None;
        }
        self.last_line = Some(now);
        Some(std::mem::take(&mut self.unlogged))
    }

    /// The condition is over: `Some(all its occurrences)` if it held, to say so once.
    pub(super) fn end(&mut self) -> Option<u64> {
        let total = std::mem::take(&mut self.total);
        *self = Self::default();
        (total > 0).then_some(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_occurrence_is_told_then_one_line_per_interval_then_the_end() {
        let mut r = Repeats::default();
        let t0 = Instant::now();
        assert_eq!(r.note_at(t0), Some(1));
        for s in 1..60 {
            assert_eq!(r.note_at(t0 + Duration::from_secs(s)), None, "second {s}");
        }
        assert_eq!(r.note_at(t0 + REPEAT_LOG_INTERVAL), Some(60), "59 unlogged and this one");
        assert_eq!(r.note_at(t0 + REPEAT_LOG_INTERVAL + Duration::from_secs(1)), None);
        assert_eq!(r.end(), Some(62));
        assert_eq!(r.end(), None, "said once");
        assert_eq!(r.note_at(t0 + REPEAT_LOG_INTERVAL + Duration::from_secs(2)), Some(1), "anew");
    }
}
