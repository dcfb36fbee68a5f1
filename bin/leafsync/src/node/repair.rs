//! Repairing a state that went off the chain. A block whose computed root differs from its
//! header's (a reorg deeper than the undos kept, an undo lost in a crash, a faulty trace, a bug)
//! leaves the leafdb with a state no header names: the node stops offering it
//! ([`super::head::head_and_flags`]), and following alone rarely brings it back, since only blocks
//! that happen to rewrite every wrong account and slot would. So a following node whose state is
//! off the chain, once a peer that serves state (`sync.sources`) is connected, stops its
//! follower and syncs the state at the execution client's head over what the leafdb holds: the
//! subtries that still match are found complete and only what differs is healed (a small part
//! of a full sync: `crates/sync/tests/repair.rs`). Then it follows again from that head.
//!
//! A follower stuck at a block the execution client keeps failing to trace
//! ([`IngestStats::stuck_block`]: a geth beside a daemon that was down longer than the 128
//! states it keeps cannot trace the next block again) is repaired the same way: the state is
//! synced at the client's head, past the blocks it cannot trace.
//!
//! The sync keeps its progress record like any: a repair cut short by a shutdown or a crash is
//! resumed at the next start ([`super::Start::Repair`]) before anything is followed. Repairs are
//! paced ([`RepairPace`]): an execution client whose traces keep taking the state off the chain
//! must not keep the node syncing.

use std::{
    sync::{Arc, atomic::Ordering},
    time::{Duration, Instant},
};

use leafsync_ingest::IngestStats;
use leafsync_leafdb::LeafDb;
use leafsync_p2p::{leaf::ServeFlags, peers::NetworkHandle};
use leafsync_sync::{PeerSources, has_sync_peers};
use tokio::sync::watch;
use tracing::{info, warn};

use super::{
    Node,
    head::head_and_flags,
    sync::{SyncPlan, sync_from_peers},
};
use crate::{
    config::{PivotSource, SyncSettings},
    error::CliError,
    phase::DaemonPhase,
};

/// How often a following node looks whether its state is off the chain and a peer could repair
/// it.
pub(crate) const REPAIR_CHECK_INTERVAL: Duration = Duration::from_secs(2);
/// The least time between the end of a repair and the start of the next.
pub(crate) const REPAIR_PAUSE_MIN: Duration = Duration::from_secs(60);
/// The most: the pause doubles for each repair that follows the one before within it.
pub(crate) const REPAIR_PAUSE_MAX: Duration = Duration::from_secs(3600);

/// When the next repair may start: at once the first time; then [`REPAIR_PAUSE_MIN`] after the
/// last one ended, doubled for each repair that came within [`REPAIR_PAUSE_MAX`] (plus the
/// pause) of the one before, up to [`REPAIR_PAUSE_MAX`]. A state that goes off the chain block
/// after block (a faulty trace, every block) is then repaired at most once an hour, not
/// continually.
#[derive(Debug, Default)]
pub(crate) struct RepairPace {
    last: Option<Instant>,
    pause: Duration,
}

impl RepairPace {
    /// The earliest the next repair may start, if not now.
    pub(crate) fn not_before(&self) -> Option<Instant> {
        self.last.map(|t| t + self.pause)
    }

    /// A repair ended at `now`.
    pub(crate) fn ended(&mut self, now: Instant) {
        self.pause = match self.last {
            Some(t) if now.saturating_duration_since(t) < REPAIR_PAUSE_MAX + self.pause => {
                (self.pause * 2).clamp(REPAIR_PAUSE_MIN, REPAIR_PAUSE_MAX)
            }
            _ => REPAIR_PAUSE_MIN,
        };
        self.last = Some(now);
    }
}

/// The `[sync]` settings of a repair: the configured ones with the execution client's head as
/// the pivot (a checkpoint or the peers' heads would take the state away from the block the
/// follower goes on from).
pub(crate) fn repair_settings(settings: &SyncSettings) -> SyncSettings {
    SyncSettings { pivot: PivotSource::El, checkpoint: None, peer_pivot: false, ..settings.clone() }
}

/// The peers a repair could take state from, for `has_sync_peers`; or why this node cannot
/// repair its state (no execution client to take the pivot from, or no kind of peer that
/// serves state in `sync.sources`).
pub(crate) fn repair_sources(plan: &SyncPlan<'_>) -> Result<PeerSources, String> {
    plan.check().map_err(|e| e.to_string())?;
    // A snap/1 peer's head follows the pivot; whether one is connected does not depend on it.
    let (_, any_pivot) = watch::channel(Default::default());
    let snap = plan.settings.sources.snap.then_some(any_pivot);
    Ok(PeerSources { leaf: plan.settings.sources.leaf, snap })
}

/// Why a state needs repairing from peers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Trouble {
    /// The state is off the chain: its head's root is not the stored state's.
    OffTheChain,
    /// The follower is stuck at this block: the execution client keeps failing to trace it.
    Stuck(u64),
    /// A repair was cut short (by a shutdown or a crash) and is resumed at the start.
    CutShort,
}

impl std::fmt::Display for Trouble {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::OffTheChain => f.write_str("the state is off the chain"),
            Self::Stuck(n) => write!(f, "the execution client keeps failing to trace block {n}"),
            Self::CutShort => f.write_str("a repair was cut short"),
        }
    }
}

/// What needs repairing, if anything: a state off the chain, or a follower stuck at a block.
fn trouble(db: &LeafDb, follower: &IngestStats) -> Option<Trouble> {
    if off_the_chain(db) {
        return Some(Trouble::OffTheChain);
    }
    match follower.stuck_block() {
        0 => None,
        n => Some(Trouble::Stuck(n)),
    }
}

/// Whether the leafdb's state is off the chain: it has a head whose root is not the stored
/// state's.
fn off_the_chain(db: &LeafDb) -> bool {
    match head_and_flags(db) {
        Ok(Some((_, flags))) => flags == ServeFlags::NONE,
        Ok(None) => false,
        Err(e) => {
            warn!(error = %e, "reading the leafdb head");
            false
        }
    }
}

/// Returns why, once the state is off the chain or the follower stuck ([`Trouble`]), a peer
/// that could repair it is connected, and the pace allows a repair (`not_before`); never when
/// this node cannot repair (said once in the log, when the trouble starts).
pub(crate) async fn repair_due(
    db: Arc<LeafDb>,
    follower: Arc<IngestStats>,
    network: NetworkHandle,
    sources: Result<PeerSources, String>,
    not_before: Option<Instant>,
) -> Trouble {
    let mut said = false;
    loop {
        if let Some(trouble) = trouble(&db, &follower) {
            let wait =
                not_before.map_or(Duration::ZERO, |t| t.saturating_duration_since(Instant::now()));
            let paced = !wait.is_zero();
            match &sources {
                Ok(_) if paced && !said => warn!(
                    %trouble,
                    in_secs = wait.as_secs(),
                    "the state needs repairing again soon after a repair: the next repair waits \
                     (the execution client's traces may be faulty)"
                ),
                Ok(_) if paced => {}
                Ok(sources) if has_sync_peers(&network, sources).await => return trouble,
                Ok(sources) if !said => warn!(
                    %trouble,
                    snap = sources.snap.is_some(),
                    "the state is repaired from peers once one that serves state is connected \
                     (leaf/1, or snap/1 such as geth with \"snap\" in `sync.sources`); until \
                     then the node follows on"
                ),
                Err(why) if !said => warn!(
                    %trouble,
                    reason = %why,
                    "this node cannot repair its state from peers; it follows on (off the \
                     chain it offers no state; a resync from an empty datadir serves again)"
                ),
                _ => {}
            }
            said = true;
        } else {
            said = false;
        }
        tokio::time::sleep(REPAIR_CHECK_INTERVAL).await;
    }
}

impl Node {
    /// Repairs the state for `trouble`: stops the follower (it finishes its block), syncs the
    /// state at the execution client's head over the leafdb, and follows again from there; the
    /// pace then counts from its end ([`RepairPace`]). `false` when `shutdown` came first (the
    /// repair's progress is kept and it resumes at the next start).
    pub(super) async fn repair(
        &mut self,
        trouble: Trouble,
        shutdown: &mut std::pin::Pin<&mut impl Future<Output = ()>>,
    ) -> Result<bool, CliError> {
        let head = self.db.head()?;
        warn!(
            head = head.map(|h| h.number),
            %trouble,
            "repairing the state: the follower stops, and the state is synced at the execution \
             client's head over the leafdb, downloading only what differs"
        );
        let mut stats = None;
        if let Some((follower_stats, task)) = self.follower.take() {
            self.follower_stop.send_replace(true);
            // Not bounded: the sync must not write while the follower applies a block.
            match task.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(CliError::Ingest(e)),
                Err(e) => return Err(CliError::FollowerFailed(e.to_string())),
            }
            stats = Some(follower_stats);
        }
        self.follower_stop.send_replace(false);
        // The undos of blocks off the chain undo nothing at the head the repair ends on.
        self.db.clear_undos()?;
        self.phase.send_replace(DaemonPhase::Repairing);
        let settings = repair_settings(&self.sync);
        let plan =
            SyncPlan { settings: &settings, el_rpc: self.el.rpc.as_deref(), chain: &self.chain };
        let out = tokio::select! {
            () = shutdown => {
                info!("shutting down during the repair (progress is kept: it resumes at the next start)");
                return Ok(false);
            }
            r = sync_from_peers(&self.network, &self.db, &plan, self.sync_progress.clone()) => r?,
        };
        self.state.repairs.fetch_add(1, Ordering::Relaxed);
        self.repair_pace.ended(Instant::now());
        info!(
            pivot = out.pivot.number,
            bytes = out.stats.bytes_down,
            requests = out.stats.requests,
            healed_nodes = out.stats.healed_nodes,
            "state repaired; following again"
        );
        self.follow_again(stats)?;
        Ok(true)
    }
}

/// What a repair's start says when a configuration cannot resume it.
pub(crate) fn cannot_resume(plan: &SyncPlan<'_>) -> Result<(), CliError> {
    plan.check().map_err(|e| CliError::Invalid {
        what: "sync".into(),
        reason: format!(
            "the leafdb holds a repair of its state cut short, which this configuration cannot \
             resume ({e}); restore the settings it ran with, or start from an empty datadir"
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first repair starts at once; repairs close together wait longer and longer, up to
    /// the cap; after a quiet spell the pause is short again.
    #[test]
    fn repairs_close_together_are_paced_ever_further_apart_up_to_an_hour() {
        let mut pace = RepairPace::default();
        assert_eq!(pace.not_before(), None, "the first repair waits for nothing");
        let t0 = Instant::now();
        pace.ended(t0);
        assert_eq!(pace.not_before(), Some(t0 + REPAIR_PAUSE_MIN));
        // Each repair right after the pause allowed it: the pause doubles, up to the cap.
        let mut t = t0;
        let mut pauses = Vec::new();
        for _ in 0..8 {
            t = pace.not_before().unwrap() + Duration::from_secs(30);
            pace.ended(t);
            pauses.push(pace.not_before().unwrap() - t);
        }
        let minutes: Vec<u64> = pauses.iter().map(|p| p.as_secs() / 60).collect();
        assert_eq!(minutes, [2, 4, 8, 16, 32, 60, 60, 60]);
        // A repair long after the last one (the state stayed on the chain): short pause again.
        let later = t + REPAIR_PAUSE_MAX * 3;
        pace.ended(later);
        assert_eq!(pace.not_before(), Some(later + REPAIR_PAUSE_MIN));
    }
}
