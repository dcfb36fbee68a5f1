//! The sync progress bar: one line at the bottom of a terminal, redrawn as the counters change,
//! with log lines printed above it. Only drawn when stderr is a terminal; logs to files and
//! journald never see it.

use std::{
    io::{IsTerminal, Write},
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use leafsync_sync::{Phase, SyncStats};
use tokio::sync::watch;

/// How often the bar is redrawn.
const REDRAW_INTERVAL: Duration = Duration::from_millis(500);
/// Width of the bar itself, in characters.
const BAR_WIDTH: usize = 24;

/// The bar currently drawn, if any: log lines are printed above it.
static BAR: Mutex<Option<ProgressBar>> = Mutex::new(None);

/// Writes to stderr, above the bar when one is drawn.
fn write_stderr(bytes: &[u8]) {
    // Nothing useful can be done when stderr itself fails.
    let write = || {
        let mut err = std::io::stderr().lock();
        let _ = err.write_all(bytes);
        let _ = err.flush();
    };
    let bar = BAR.lock().unwrap_or_else(PoisonError::into_inner).clone();
    match bar {
        Some(bar) => bar.suspend(write),
        None => write(),
    }
}

/// The log writer: buffers one formatted event and writes it in one go above the bar.
#[derive(Debug, Default)]
pub(crate) struct LogWriter(Vec<u8>);

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LogWriter {
    fn drop(&mut self) {
        if !self.0.is_empty() {
            write_stderr(&self.0);
        }
    }
}

/// Makes a [`LogWriter`] per event, for `tracing_subscriber`.
pub(crate) fn log_writer() -> LogWriter {
    LogWriter::default()
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / f64::from(1u32 << 20)
}

fn duration(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, s % 3600 / 60)
    } else {
        format!("{}m{:02}s", s / 60, s % 60)
    }
}

/// The bar's text for `s`.
pub(crate) fn render(s: &SyncStats) -> String {
    let fraction = if s.chunks_total == 0 {
        0.0
    } else {
        (s.chunks_done as f64 / s.chunks_total as f64).clamp(0.0, 1.0)
    };
    let filled = (fraction * BAR_WIDTH as f64).round() as usize;
    let bar: String = "#".repeat(filled) + &"-".repeat(BAR_WIDTH - filled.min(BAR_WIDTH));
    let phase = match s.phase {
        Phase::Chunks => "chunks",
        Phase::Heal => "heal",
        Phase::Done => "done",
    };
    let eta = s.eta().map_or_else(|| "?".to_string(), duration);
    format!(
        "sync {phase} [{bar}] {:>3.0}% {}/{} chunks, {} accounts, {} slots, {:.1} MiB at {:.1} MiB/s, heal queue {}, {} peers, eta {eta}",
        fraction * 100.0,
        s.chunks_done,
        s.chunks_total,
        s.accounts,
        s.slots,
        mib(s.bytes_down),
        mib(s.rate() as u64),
        s.heal_queue,
        s.peers,
    )
}

/// The bar while it is drawn: `indicatif` draws it on stderr, a thread of its own (a busy
/// runtime must not starve it) feeds it the counters; stopped and the line cleared when dropped.
#[derive(Debug)]
pub(crate) struct Bar {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    bar: ProgressBar,
}

impl Bar {
    /// Starts drawing `stats` when stderr is a terminal; `None` otherwise.
    pub(crate) fn start(stats: watch::Receiver<SyncStats>) -> Option<Self> {
        if !std::io::stderr().is_terminal() {
            return None;
        }
        let style = ProgressStyle::with_template("{wide_msg}").ok()?;
        let bar =
            ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()).with_style(style);
        *BAR.lock().unwrap_or_else(PoisonError::into_inner) = Some(bar.clone());
        let stop = Arc::new(AtomicBool::new(false));
        let (flag, drawn) = (Arc::clone(&stop), bar.clone());
        let thread = std::thread::Builder::new()
            .name("progress-bar".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    let s = stats.borrow().clone();
                    if s.phase == Phase::Done {
                        break;
                    }
                    drawn.set_message(render(&s));
                    std::thread::sleep(REDRAW_INTERVAL);
                }
            })
            .ok()?;
        Some(Self { stop, thread: Some(thread), bar })
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        *BAR.lock().unwrap_or_else(PoisonError::into_inner) = None;
        self.bar.finish_and_clear();
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bar_shows_the_chunk_fraction_and_counters() {
        let s = SyncStats {
            chunks_total: 200,
            chunks_done: 50,
            accounts: 12_345,
            bytes_down: 3 << 20,
            peers: 3,
            elapsed: Duration::from_secs(10),
            ..SyncStats::default()
        };
        let text = render(&s);
        assert!(text.contains(&format!("[{}{}]", "#".repeat(6), "-".repeat(18))), "{text}");
        assert!(text.contains(" 25% 50/200 chunks"), "{text}");
        assert!(text.contains("12345 accounts") && text.contains("3.0 MiB"), "{text}");
        assert!(text.contains("3 peers") && text.contains("eta 0m30s"), "{text}");
        let empty = render(&SyncStats::default());
        assert!(empty.contains(&format!("[{}]", "-".repeat(BAR_WIDTH))) && empty.contains("eta ?"));
    }
}
