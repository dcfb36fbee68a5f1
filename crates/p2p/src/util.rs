//! Small helpers for `tokio::select!` loops: an optional deadline or receiver that, when absent,
//! is pending forever (its branch is disabled by a guard anyway). Used by the peer manager and the
//! session task, and by other crates' owner loops.

use tokio::{sync::mpsc, time::Instant};

/// Sleeps until `deadline`, or forever without one.
pub async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Receives from `rx`, or waits forever without one.
pub async fn recv_opt<T>(rx: &mut Option<mpsc::Receiver<T>>) -> Option<T> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}
