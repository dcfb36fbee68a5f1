//! Small helpers for `tokio::select!` loops: an optional deadline or receiver that, when absent,
//! is pending forever (its branch is disabled by a guard anyway). Used by the peer manager and the
//! session task, and by other crates' owner loops. And `or_on_panic`, for the tasks whose end
//! the peer manager must hear of.

use std::{future::Future, panic::AssertUnwindSafe, time::Duration};

use futures::FutureExt;
use tokio::{sync::mpsc, time::Instant};

/// Runs `task`; if it panics (a bug), logs it and returns `on_panic()` instead, so that whoever
/// waits for the task's report (the peer manager, for a session's `Closed` or a handshake's
/// outcome) still gets one: a panicked session or dial otherwise kept its peer slot for good.
pub(crate) async fn or_on_panic<F: Future>(
    task: F,
    what: &'static str,
    on_panic: impl FnOnce() -> F::Output,
) -> F::Output {
    match AssertUnwindSafe(task).catch_unwind().await {
        Ok(output) => output,
        Err(_) => {
            tracing::error!(what, "a peer task panicked (a bug): its slot is freed");
            on_panic()
        }
    }
}

/// Sleeps until `deadline`, or forever without one.
pub async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// At most one `warn` line per interval for a failure that can repeat fast (an accept error
/// out of file descriptors, a read error every request meets): [`Self::due`] says whether this
/// occurrence gets one, and the caller logs the others at `debug`.
#[derive(Debug, Clone, Copy)]
pub struct WarnEvery {
    interval: Duration,
    last: Option<Instant>,
}

impl WarnEvery {
    /// At most one warning per `interval`, the first at once.
    pub const fn new(interval: Duration) -> Self {
        Self { interval, last: None }
    }

    /// Whether this occurrence is to be logged at `warn` (and noted as the last one).
    pub fn due(&mut self) -> bool {
        let now = Instant::now();
        let due = self.last.is_none_or(|t| now.duration_since(t) >= self.interval);
        if due {
            self.last = Some(now);
        }
        due
    }
}

/// Receives from `rx`, or waits forever without one.
pub async fn recv_opt<T>(rx: &mut Option<mpsc::Receiver<T>>) -> Option<T> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panicking_task_gives_the_fallback() {
        let panics = async {
            if std::hint::black_box(true) {
                panic!("a bug");
            }
            1
        };
        assert_eq!(or_on_panic(panics, "test", || 7).await, 7);
        assert_eq!(or_on_panic(async { 1 }, "test", || 7).await, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn one_warning_per_interval() {
        let mut w = WarnEvery::new(Duration::from_secs(10));
        assert!(w.due(), "the first at once");
        tokio::time::advance(Duration::from_secs(9)).await;
        assert!(!w.due());
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(w.due(), "then one per interval");
        assert!(!w.due());
    }
}
