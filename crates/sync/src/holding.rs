//! Verified chunks held back so that their writes share table files.
//!
//! Each table file a write makes costs about a millisecond of CPU beyond its bytes (creating
//! it, its sync, its manifest entry; docs/benchmarks.md), and a write can put chunks into one
//! file only where their key ranges meet ([`leafsync_leafdb::LeafDb::commit_chunks`]). Chunks
//! arrive a few at a time from several peers, each working through its own part of the key
//! space, so one answer's chunks rarely meet another's: written answer by answer, a 1M-account
//! sync made ~1,100 files of ~0.6 MB. [`Holding`] keeps verified chunks back and hands them to
//! the write in *runs* (held chunks whose ranges meet):
//! * a run of [`Holding::new`]'s `run_bytes` is written: its files are large enough;
//! * a run that meets written chunks (or its trie's ends) on both sides can grow no more: it
//!   goes with the next write;
//! * otherwise chunks wait for their neighbours until [`Holding::over`] their byte budget; then
//!   the largest runs go until half the budget is left.
//!
//! Which chunks go together never changes what is written, only into how many files: any
//! grouping of disjoint chunks is a valid write.

use std::collections::{BTreeMap, HashSet};

/// A key range `[start, end)`.
type Span = (Vec<u8>, Vec<u8>);

/// One held chunk: where its key range ends, the ends of its whole trie's range, its staged
/// bytes, and what the caller keeps with it.
#[derive(Debug)]
struct Held<T> {
    end: Vec<u8>,
    trie: Span,
    bytes: usize,
    item: T,
}

/// Chunks held back, by the start of their key ranges (disjoint); see the module docs.
#[derive(Debug)]
pub(crate) struct Holding<T> {
    held: BTreeMap<Vec<u8>, Held<T>>,
    bytes: usize,
    budget: usize,
    run_bytes: usize,
    /// Range ends of the chunks handed out to be written whose other side is not written yet: a
    /// run that meets them (or its trie's ends) on both sides is complete.
    edges: HashSet<Vec<u8>>,
}

impl<T> Holding<T> {
    /// Holds chunks until a run of them reaches `run_bytes` staged bytes or `budget` bytes of
    /// them are held.
    pub(crate) fn new(budget: usize, run_bytes: usize) -> Self {
        Self { held: BTreeMap::new(), bytes: 0, budget, run_bytes, edges: HashSet::new() }
    }

    /// Holds a chunk spanning `span` in the trie spanning `trie`, of `bytes` staged bytes.
    /// Returns the held chunks whose ranges overlap it, taken out, in key order: not expected (a
    /// prefix is imported once a pivot), but if it happens they are to be written before it, so
    /// that one write never holds both and the later chunk wins, as it would unheld.
    #[must_use = "overlapping chunks taken out must be written"]
    pub(crate) fn hold(&mut self, span: Span, trie: Span, bytes: usize, item: T) -> Vec<T> {
        let overlapping: Vec<Vec<u8>> = (self.held.range(..span.1.clone()).rev())
            .take_while(|(_, held)| held.end > span.0)
            .map(|(start, _)| start.clone())
            .collect();
        let mut overlapping = self.take(overlapping);
        overlapping.reverse();
        self.bytes += bytes;
        self.held.insert(span.0, Held { end: span.1, trie, bytes, item });
        overlapping
    }

    /// Whether nothing is held.
    pub(crate) fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    /// Whether the held chunks reach the budget.
    pub(crate) fn over(&self) -> bool {
        self.bytes >= self.budget
    }

    /// Whether a write is due: the held chunks reach the budget, or a run reaches `run_bytes`.
    pub(crate) fn due(&self) -> bool {
        self.over() || self.runs().iter().any(|run| run.bytes >= self.run_bytes)
    }

    /// Takes every held chunk, in key order.
    pub(crate) fn take_all(&mut self) -> Vec<T> {
        let starts: Vec<Vec<u8>> = self.held.keys().cloned().collect();
        self.take(starts)
    }

    /// Takes the complete runs, the runs of `run_bytes` and, when [`Self::over`] the budget,
    /// the largest others until at most half of it is held; in key order.
    pub(crate) fn take_ready(&mut self) -> Vec<T> {
        let runs = self.runs();
        let mut starts = Vec::new();
        let mut left = self.bytes;
        let mut open = Vec::new();
        for run in runs {
            if run.complete || run.bytes >= self.run_bytes {
                left -= run.bytes;
                starts.extend(run.starts);
            } else {
                open.push(run);
            }
        }
        if self.over() {
            open.sort_by_key(|run| std::cmp::Reverse(run.bytes));
            for run in open {
                if left <= self.budget / 2 {
                    break;
                }
                left -= run.bytes;
                starts.extend(run.starts);
            }
        }
        starts.sort_unstable();
        self.take(starts)
    }

    fn take(&mut self, starts: Vec<Vec<u8>>) -> Vec<T> {
        let mut items = Vec::with_capacity(starts.len());
        for start in starts {
            if let Some(held) = self.held.remove(&start) {
                self.bytes -= held.bytes;
                self.written_edge(held.end);
                self.written_edge(start);
                items.push(held.item);
            }
        }
        items
    }

    /// Notes that a chunk written now ends at `key`. Once the chunks on both sides of a key are
    /// written no chunk can end there any more: it is forgotten, so that only the edges of the
    /// written regions are kept (a few, however many chunks a state has).
    fn written_edge(&mut self, key: Vec<u8>) {
        if !self.edges.remove(&key) {
            self.edges.insert(key);
        }
    }

    /// The held chunks as runs of meeting ranges, in key order.
    fn runs(&self) -> Vec<Run> {
        let mut runs: Vec<Run> = Vec::new();
        let mut last: Option<(&Vec<u8>, &Span)> = None;
        for (start, held) in &self.held {
            let continues = last.is_some_and(|(end, trie)| end == start && *trie == held.trie);
            match runs.last_mut() {
                Some(run) if continues => {
                    run.starts.push(start.clone());
                    run.bytes += held.bytes;
                }
                _ => {
                    if let Some(run) = runs.last_mut() {
                        run.complete &= last.is_some_and(|(end, trie)| self.bounded(end, trie));
                    }
                    let complete = self.bounded(start, &held.trie);
                    runs.push(Run { starts: vec![start.clone()], bytes: held.bytes, complete });
                }
            }
            last = Some((&held.end, &held.trie));
        }
        if let Some(run) = runs.last_mut() {
            run.complete &= last.is_some_and(|(end, trie)| self.bounded(end, trie));
        }
        runs
    }

    /// Whether a run may end at `key` for good: a written chunk meets it there, or its trie's
    /// range ends there.
    fn bounded(&self, key: &Vec<u8>, trie: &Span) -> bool {
        *key == trie.0 || *key == trie.1 || self.edges.contains(key)
    }
}

/// Held chunks whose ranges meet, by their starts.
#[derive(Debug)]
struct Run {
    starts: Vec<Vec<u8>>,
    bytes: usize,
    /// Meets written chunks or its trie's ends on both sides.
    complete: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRIE: (u8, u8) = (0, 16);

    fn trie() -> Span {
        (vec![TRIE.0], vec![TRIE.1])
    }

    fn hold(h: &mut Holding<u8>, at: u8, bytes: usize) {
        assert!(h.hold((vec![at], vec![at + 1]), trie(), bytes, at).is_empty());
    }

    /// Holds the chunks at `ats`, `bytes` each.
    fn hold_each(h: &mut Holding<u8>, ats: &[u8], bytes: usize) {
        for &at in ats {
            hold(h, at, bytes);
        }
    }

    #[test]
    fn runs_wait_for_their_neighbours_until_complete() {
        let mut h = Holding::new(100, 1000);
        hold_each(&mut h, &[1, 2], 10);
        // 1..3 meets neither a written chunk nor the trie's ends: it may still grow.
        assert!(h.take_ready().is_empty());
        hold(&mut h, 0, 10);
        // 0..3 starts at the trie's start but its end meets nothing yet.
        assert!(h.take_ready().is_empty());
        hold_each(&mut h, &(3..16).collect::<Vec<_>>(), 1);
        // 0..16 spans the whole trie: complete, and taken whole, in key order.
        assert_eq!(h.take_ready(), (0..16).collect::<Vec<_>>());
        assert!(h.is_empty());
        // Only the written region's ends are remembered: the trie's, here.
        assert_eq!(h.edges.len(), 2);
    }

    #[test]
    fn a_run_between_written_chunks_is_complete() {
        let mut h = Holding::new(100, 1000);
        hold_each(&mut h, &[3, 7], 10);
        assert!(h.take_all().len() == 2);
        // 4..7 meets the written 3 and 7: complete. 9 meets nothing written.
        hold_each(&mut h, &[5, 4, 6, 9], 10);
        assert_eq!(h.take_ready(), vec![4, 5, 6]);
        // 3..8 is written whole: its inner edges are forgotten.
        let mut edges: Vec<_> = h.edges.iter().map(|e| e[0]).collect();
        edges.sort_unstable();
        assert_eq!(edges, [3, 8]);
        assert_eq!(h.take_all(), vec![9]);
    }

    #[test]
    fn over_budget_the_largest_runs_go_until_half_is_left() {
        let mut h = Holding::new(100, 1000);
        // Runs: 1..4 (60 bytes), 6 (20), 8..10 (30), 12 (5): 115 bytes, over the budget.
        for (at, bytes) in [(1, 20), (2, 20), (3, 20), (6, 20), (8, 15), (9, 15), (12, 5)] {
            hold(&mut h, at, bytes);
        }
        assert!(h.over());
        // The largest (60) leaves 55, still over half the budget; the next (30) leaves 25.
        assert_eq!(h.take_ready(), vec![1, 2, 3, 8, 9]);
        assert!(!h.over());
        assert_eq!(h.take_all(), vec![6, 12]);
    }

    #[test]
    fn a_run_of_run_bytes_is_due() {
        let mut h = Holding::new(100, 30);
        hold_each(&mut h, &[1, 2, 5], 10);
        assert!(!h.due());
        hold(&mut h, 3, 10);
        assert!(h.due());
        // 1..4 has 30 bytes: taken; 5 waits for its neighbours.
        assert_eq!(h.take_ready(), vec![1, 2, 3]);
        assert!(!h.due());
        assert_eq!(h.take_all(), vec![5]);
    }

    #[test]
    fn chunks_a_new_one_overlaps_are_taken_out_before_it() {
        let mut h = Holding::new(100, 1000);
        hold_each(&mut h, &[1, 2, 3, 6], 10);
        // A chunk over 2..4 (a parent of 2 and 3, say) takes them out; 1 and 6 stay.
        assert_eq!(h.hold((vec![2], vec![4]), trie(), 20, 99), vec![2, 3]);
        // One starting where a held one starts takes it out too.
        assert_eq!(h.hold((vec![6], vec![7]), trie(), 10, 66), vec![6]);
        assert_eq!(h.take_all(), vec![1, 99, 66]);
        assert!(!h.over());
    }

    #[test]
    fn runs_of_different_tries_never_join() {
        let mut h = Holding::new(100, 1000);
        let other = (vec![16], vec![32]);
        // The account trie's last chunk ends where another trie's range starts: two runs, each
        // complete at its own trie's end only.
        assert!(h.hold((vec![15], vec![16]), trie(), 10, 15).is_empty());
        assert!(h.hold((vec![16], vec![17]), other.clone(), 10, 16).is_empty());
        assert!(h.take_ready().is_empty());
        assert!(h.hold((vec![17], vec![32]), other, 10, 17).is_empty());
        assert_eq!(h.take_ready(), vec![16, 17]);
        assert_eq!(h.take_all(), vec![15]);
    }
}
