//! Failures to read the leafdb while serving are logged at `warn` at most once per
//! [`READ_ERROR_LOG_INTERVAL`] for the whole process, the others at `debug`: a damaged table
//! file fails every request for its range, and peers decide how often they ask
//! ([`crate::ServeStats::internal_errors`] counts the leaf/1 ones).

use std::{
    sync::{Mutex, PoisonError},
    time::Duration,
};

use leafsync_p2p::util::WarnEvery;

/// Least time between two `warn` lines about serving failures.
pub const READ_ERROR_LOG_INTERVAL: Duration = Duration::from_secs(10);

static WARNINGS: Mutex<WarnEvery> = Mutex::new(WarnEvery::new(READ_ERROR_LOG_INTERVAL));

/// Whether a serving failure now is to be logged at `warn` (and noted as the last one).
pub(crate) fn warning_due() -> bool {
    WARNINGS.lock().unwrap_or_else(PoisonError::into_inner).due()
}

/// `warn!` at most once per [`READ_ERROR_LOG_INTERVAL`] across serving, else `debug!`.
macro_rules! serve_warn {
    ($($arg:tt)*) => {
        if $crate::log::warning_due() {
            tracing::warn!($($arg)*)
        } else {
            tracing::debug!($($arg)*)
        }
    };
}
pub(crate) use serve_warn;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_warning_per_interval() {
        // The first call in this test process may or may not be due (another test may have
        // warned); the one right after it is not.
        let _ = warning_due();
        assert!(!warning_due());
    }
}
