//! Conditions that last (the execution client failing, the state off the chain, the client's
//! head below ours) are told to the operator without a line per retry or per block: the first
//! occurrence, then one line per [`REPEAT_LOG_INTERVAL`] with the count meanwhile, then the end.
//! A condition that comes and goes (a client behind a proxy that flaps, one backend of two
//! behind) is held to the same pace: a spell that begins within the interval of the last line is
//! not told, nor its end, and its occurrences are counted in the next line, or, when the
//! condition does not come back, in the follower's line a minute ([`Repeats::take_untold`]).

use std::time::{Duration, Instant};

/// Least time between two lines about one lasting condition.
pub const REPEAT_LOG_INTERVAL: Duration = Duration::from_secs(60);

/// One lasting condition's occurrences in its current spell and since its last line.
#[derive(Debug, Default)]
pub(super) struct Repeats {
    /// Occurrences since the current spell began; 0: it holds not.
    total: u64,
    /// Occurrences since the last line, over spells.
    unlogged: u64,
    /// Whether a line told of the current spell (its end is then told too).
    told: bool,
    last_line: Option<Instant>,
}

impl Repeats {
    /// Counts one occurrence; `Some(occurrences since the last line, this one included)` when
    /// this one is to be logged: one per [`REPEAT_LOG_INTERVAL`], the first at once.
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
        self.told = true;
        Some(std::mem::take(&mut self.unlogged))
    }

    /// Occurrences of spells that ended untold and are in no line yet, for a periodic line to
    /// tell (0 while a spell holds: its next line counts them).
    pub(super) fn take_untold(&mut self) -> u64 {
        if self.total > 0 { 0 } else { std::mem::take(&mut self.unlogged) }
    }

    /// The spell is over: `Some(its occurrences)` if a line told of it, to say so once.
    pub(super) fn end(&mut self) -> Option<u64> {
        let total = std::mem::take(&mut self.total);
        let told = std::mem::take(&mut self.told);
        (told && total > 0).then_some(total)
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
        // A spell long after the last line is told at once.
        assert_eq!(r.note_at(t0 + 3 * REPEAT_LOG_INTERVAL), Some(2), "one unlogged and this one");
    }

    /// A spell within the interval of the condition's last line is told by the periodic line,
    /// not lost when the condition does not come back.
    #[test]
    fn an_untold_spell_is_left_for_the_periodic_line() {
        let mut r = Repeats::default();
        let t0 = Instant::now();
        assert_eq!(r.note_at(t0), Some(1));
        assert_eq!(r.end(), Some(1));
        for s in 30..=55 {
            assert_eq!(r.note_at(t0 + Duration::from_secs(s)), None, "second {s}");
        }
        assert_eq!(r.take_untold(), 0, "the spell holds: its next line counts them");
        assert_eq!(r.end(), None, "its start was not told, nor its end");
        assert_eq!(r.take_untold(), 26);
        assert_eq!(r.take_untold(), 0, "told once");
    }

    /// A condition that comes and goes every second (a flapping client) is told as a lasting
    /// one is: a line an interval, not two a second.
    #[test]
    fn a_flapping_condition_is_told_at_most_once_an_interval() {
        let mut r = Repeats::default();
        let t0 = Instant::now();
        let mut lines = Vec::new();
        for s in 0..180u64 {
            let now = t0 + Duration::from_secs(s);
            if s % 2 == 0 {
                if let Some(n) = r.note_at(now) {
                    lines.push((s, "note", n));
                }
            } else if let Some(n) = r.end() {
                lines.push((s, "end", n));
            }
        }
        assert_eq!(
            lines,
            [
                (0, "note", 1),
                (1, "end", 1),
                (60, "note", 30),
                (61, "end", 1),
                (120, "note", 30),
                (121, "end", 1)
            ]
        );
    }
}
