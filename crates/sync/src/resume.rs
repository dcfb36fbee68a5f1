//! Where a sync starts: [`decide_start`] resumes a progress record or chooses a new pivot and
//! chunk depth (no I/O), and [`persistent_heal_root`] says which heal roots are persisted.

use std::collections::HashMap;

use alloy_primitives::B256;
use alloy_trie::Nibbles;
use leafsync_p2p::leaf::{ChainHead, TrieOwner};

use crate::{
    config::{BYTES_PER_ACCOUNT_ESTIMATE, MAX_CHUNK_DEPTH, SyncConfig},
    error::SyncError,
    progress::{HealRoot, SyncProgress},
    tasks::{Owner, wire_owner, wire_path},
};

/// The pivot: the configured one, else the head most peers announce (the higher on a tie).
pub fn choose_pivot(configured: Option<ChainHead>, heads: &[ChainHead]) -> Option<ChainHead> {
    if configured.is_some() {
        return configured;
    }
    let mut counts: HashMap<ChainHead, usize> = HashMap::new();
    for h in heads {
        *counts.entry(*h).or_default() += 1;
    }
    counts.into_iter().max_by_key(|(h, n)| (*n, h.number)).map(|(h, _)| h)
}

/// Depth of the account skeleton such that a chunk of a state of `accounts` accounts is at most
/// about `target_bytes` (each level divides a chunk by 16), at most [`MAX_CHUNK_DEPTH`].
pub fn chunk_depth(accounts: u64, target_bytes: u64) -> usize {
    let mut bytes = accounts.saturating_mul(BYTES_PER_ACCOUNT_ESTIMATE);
    let mut depth = 0;
    while bytes > target_bytes.max(1) && depth < MAX_CHUNK_DEPTH {
        bytes /= 16;
        depth += 1;
    }
    depth
}

/// Where a sync starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Start {
    pub(crate) pivot: ChainHead,
    pub(crate) depth: usize,
    /// Bytes and requests of earlier runs (from the record).
    pub(crate) prior: (u64, u64),
    /// The record's version-1 heal roots when it is resumed (`None`: a fresh start, whose
    /// persisted heal roots mean nothing now).
    pub(crate) resumed: Option<Vec<HealRoot>>,
}

/// Resumes `record` if it still fits, else chooses a pivot. A record fits a configured pivot
/// equal to its own; a `trusted` head (the pivot feed's) not far past its pivot; and, with
/// neither, only if peers may choose the pivot (its pivot may have come from them). A new
/// pivot is the configured or trusted one, else the peers' (`heads`), if allowed; the depth
/// comes from the median account `estimate`.
pub(crate) fn decide_start(
    record: Option<SyncProgress>,
    config: &SyncConfig,
    trusted: Option<ChainHead>,
    heads: &[ChainHead],
    estimate: u64,
) -> Result<Start, SyncError> {
    let distance = config.repivot_distance;
    let resumed = record.filter(|r| match (config.pivot, trusted) {
        (Some(p), _) => p == r.pivot,
        // A trusted head not far past the recorded pivot keeps the record's work.
        (None, Some(t)) => t.number >= r.pivot.number && t.number - r.pivot.number < distance,
        // A record's pivot came from a trusted source unless peers may choose it.
        (None, None) => config.peer_pivot,
    });
    if let Some(r) = resumed {
        return Ok(Start {
            pivot: r.pivot,
            depth: usize::try_from(r.depth).unwrap_or(MAX_CHUNK_DEPTH).min(MAX_CHUNK_DEPTH),
            prior: (r.bytes_down, r.requests),
            resumed: Some(r.heal_roots),
        });
    }
    let trusted_pivot = config.pivot.or(trusted);
    if trusted_pivot.is_none() && !config.peer_pivot {
        return Err(SyncError::NoTrustedPivot);
    }
    Ok(Start {
        pivot: choose_pivot(trusted_pivot, heads).ok_or(SyncError::NoPivot)?,
        depth: chunk_depth(estimate, config.chunk_target_bytes),
        prior: (0, 0),
        resumed: None,
    })
}

/// A persisted heal root as the syncer's owner and path.
pub(crate) fn heal_root_item(root: &HealRoot) -> (Owner, Nibbles) {
    let owner = match root.owner {
        TrieOwner::Accounts => None,
        TrieOwner::Storage(o) => Some(o),
    };
    (owner, Nibbles::from_nibbles_unchecked(root.path.as_slice()))
}

/// The persisted form of a heal root worth persisting: account-trie ones and whole storage tries
/// (a storage subtrie below a storage skeleton is found again through that skeleton).
pub(crate) fn persistent_heal_root(
    owner: Owner,
    path: &Nibbles,
    hash: B256,
) -> Result<Option<HealRoot>, SyncError> {
    if owner.is_some() && !path.is_empty() {
        return Ok(None);
    }
    Ok(Some(HealRoot { owner: wire_owner(owner), path: wire_path(path)?, hash }))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn head(number: u64) -> ChainHead {
        ChainHead { number, hash: B256::repeat_byte(number as u8), state_root: B256::ZERO }
    }

    fn record(pivot: ChainHead) -> SyncProgress {
        SyncProgress {
            pivot,
            depth: 2,
            heal_roots: Vec::new(),
            bytes_down: 5,
            requests: 1,
            marked: true,
        }
    }

    #[test]
    fn a_record_is_resumed_only_while_the_trusted_head_is_near_its_pivot() {
        let config = SyncConfig { repivot_distance: 4, ..Default::default() };
        let near = decide_start(Some(record(head(10))), &config, Some(head(13)), &[], 0).unwrap();
        assert_eq!((near.pivot, near.prior, near.resumed.is_some()), (head(10), (5, 1), true));
        let far = decide_start(Some(record(head(10))), &config, Some(head(14)), &[], 0).unwrap();
        assert_eq!((far.pivot, far.prior, far.resumed), (head(14), (0, 0), None));
    }

    #[test]
    fn without_a_trusted_head_peers_choose_only_where_allowed() {
        let strict = SyncConfig { peer_pivot: false, ..Default::default() };
        let r = decide_start(Some(record(head(10))), &strict, None, &[head(11)], 0);
        assert!(matches!(r, Err(SyncError::NoTrustedPivot)));
        let open = SyncConfig::default();
        let heads = [head(11), head(12), head(12)];
        let start = decide_start(None, &open, None, &heads, 1_000_000).unwrap();
        assert_eq!(start.pivot, head(12));
        assert_eq!(start.depth, chunk_depth(1_000_000, open.chunk_target_bytes));
        assert!(matches!(decide_start(None, &open, None, &[], 0), Err(SyncError::NoPivot)));
    }
}
