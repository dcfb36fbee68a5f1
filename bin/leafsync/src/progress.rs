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

use leafsync_sync::{Phase, SyncStats};
use tokio::sync::watch;

/// How often the bar is redrawn.
const REDRAW_INTERVAL: Duration = Duration::from_millis(500);
/// Width of the bar itself, in characters.
const BAR_WIDTH: usize = 24;

/// The line currently shown at the bottom of the terminal (empty: none).
static LINE: Mutex<String> = Mutex::new(String::new());

/// Writes to stderr, first clearing the progress line and then drawing it again below.
fn write_stderr(bytes: &[u8]) {
    let line = LINE.lock().unwrap_or_else(PoisonError::into_inner);
    let mut err = std::io::stderr().lock();
    // Nothing useful can be done when stderr itself fails.
    if line.is_empty() {
        let _ = err.write_all(bytes);
    } else {
        let _ = err.write_all(b"\r\x1b[2K");
        let _ = err.write_all(bytes);
        let _ = err.write_all(line.as_bytes());
    }
    let _ = err.flush();
}

fn set_line(text: String) {
    let mut line = LINE.lock().unwrap_or_else(PoisonError::into_inner);
    *line = text;
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(b"\r\x1b[2K");
    let _ = err.write_all(line.as_bytes());
    let _ = err.flush();
}

/// Removes the bar's line from the terminal.
fn clear() {
    let mut line = LINE.lock().unwrap_or_else(PoisonError::into_inner);
    if !line.is_empty() {
        line.clear();
        let _ = std::io::stderr().lock().write_all(b"\r\x1b[2K");
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

/// The bar while it is drawn: a thread of its own (a busy runtime must not starve it), stopped
/// and the line cleared when dropped.
#[derive(Debug)]
pub(crate) struct Bar {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Bar {
    /// Starts drawing `stats` when stderr is a terminal; `None` otherwise.
    pub(crate) fn start(stats: watch::Receiver<SyncStats>) -> Option<Self> {
        if !std::io::stderr().is_terminal() {
            return None;
        }
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("progress-bar".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    let s = stats.borrow().clone();
                    if s.phase == Phase::Done {
                        break;
                    }
                    set_line(render(&s));
                    std::thread::sleep(REDRAW_INTERVAL);
                }
            })
            .ok()?;
        Some(Self { stop, thread: Some(thread) })
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        clear();
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
