//! The head a node announces to its peers: built from the leafdb head, and republished whenever
//! that head moves.

use std::{sync::Arc, time::Duration};

use alloy_primitives::B256;
use alloy_trie::EMPTY_ROOT_HASH;
use leafsync_leafdb::{BlockHeader, KvStore, LeafDb, LeafDbError};
use leafsync_p2p::{
    chain::ChainSpec,
    leaf::{ChainHead, ServeFlags},
    peers::LocalHead,
};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// How often a waiting node looks again (for peers to sync from, for a bootstrap's first head).
pub(crate) const HEAD_CHECK_INTERVAL: Duration = Duration::from_millis(500);

/// The timestamp announced with `head` (it selects the EIP-2124 fork id): the header's, the
/// genesis's for block 0, and the wall clock only for a head written without one (schema 1, or
/// a synced pivot before the first followed block).
fn head_timestamp(head: &BlockHeader, chain: &ChainSpec) -> u64 {
    match (head.number, head.timestamp) {
        (0, _) => chain.genesis_timestamp,
        (_, 0) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        (_, t) => t,
    }
}

/// The leafdb's head and what the node offers at it, both read from one snapshot: everything
/// when the stored state is the header's state, and nothing once it is off the chain (a block
/// whose computed root differed from its header's, after a lying trace or a reorg with no
/// rollback). Syncing clients would otherwise take chunks that fail their proofs and ban us; the
/// state is served again once it matches a header. Read apart, a block applied between the two
/// reads paired one head with the next block's root: a healthy state looked off the chain, and a
/// repair could start for nothing.
pub(crate) fn head_and_flags<S: KvStore>(
    db: &LeafDb<S>,
) -> Result<Option<(BlockHeader, ServeFlags)>, LeafDbError> {
    let snap = db.snapshot()?;
    Ok(snap.head().map(|head| {
        let flags =
            if snap.account_root() == head.state_root { ServeFlags::ALL } else { ServeFlags::NONE };
        (head, flags)
    }))
}

/// The head announced for the leafdb's head; with none, block 0 of an empty state serving
/// nothing (until a sync is done).
pub(crate) fn local_head<S: KvStore>(
    db: &LeafDb<S>,
    chain: &ChainSpec,
) -> Result<LocalHead, LeafDbError> {
    Ok(match head_and_flags(db)? {
        Some((head, serves)) => LocalHead {
            head: chain_head(&head),
            timestamp: head_timestamp(&head, chain),
            account_estimate: db.estimate_accounts()?,
            serves,
        },
        None => LocalHead {
            head: ChainHead { number: 0, hash: B256::ZERO, state_root: EMPTY_ROOT_HASH },
            timestamp: chain.genesis_timestamp,
            account_estimate: 0,
            serves: ServeFlags::default(),
        },
    })
}

/// What to tell an operator who starts a node with a state but no execution client (`el.rpc`):
/// nothing follows the chain, and nothing repairs. A state off the chain then offers nothing
/// for good; a public chain's state is served at a block the chain leaves behind. `None` for a
/// dev chain's state on the chain (a fixed state served as it is).
pub(crate) fn unfollowed_warning<S: KvStore>(
    db: &LeafDb<S>,
    chain: &ChainSpec,
) -> Result<Option<&'static str>, LeafDbError> {
    let off_chain = head_and_flags(db)?.is_some_and(|(_, serves)| serves != ServeFlags::ALL);
    Ok(if off_chain {
        Some(
            "the state is off the chain (its root is not its head's) and no execution client \
             (`el.rpc`) is set to repair it: the node offers no state until `el.rpc` is set (a \
             repair) or it is resynced from an empty datadir",
        )
    } else if !chain.dev {
        // Nothing moves its head: peers get an older state with every block of the chain.
        Some(
            "no execution client (`el.rpc`): the leafdb is not followed and stays at this block \
             while it is served",
        )
    } else {
        None
    })
}

pub(crate) fn chain_head(h: &BlockHeader) -> ChainHead {
    ChainHead { number: h.number, hash: h.hash, state_root: h.state_root }
}

/// Waits for the leafdb head to differ from `current` (by number or hash); `None` once the leafdb
/// is gone.
async fn next_head(
    heads: &mut watch::Receiver<Option<BlockHeader>>,
    current: &ChainHead,
) -> Option<BlockHeader> {
    loop {
        heads.changed().await.ok()?;
        if let Some(h) = *heads.borrow_and_update()
            && (h.hash != current.hash || h.number != current.number)
        {
            return Some(h);
        }
    }
}

/// Publishes the leafdb head to the network whenever it moves, until `stop`.
pub(crate) async fn announce_heads<S: KvStore + 'static>(
    db: Arc<LeafDb<S>>,
    chain: ChainSpec,
    tx: watch::Sender<LocalHead>,
    stop: CancellationToken,
) {
    let mut heads = db.subscribe_head();
    // The head may have moved since the announced one was built: compare once at the start.
    heads.mark_changed();
    loop {
        let current = *tx.borrow();
        tokio::select! {
            () = stop.cancelled() => return,
            h = next_head(&mut heads, &current.head) => if h.is_none() {
                return;
            },
        };
        // The head and root of one snapshot (maybe a block past the one the watch showed).
        let Ok(Some((h, serves))) = head_and_flags(&db) else { continue };
        if chain_head(&h) == current.head && serves == current.serves {
            continue;
        }
        // Off the chain, only the change of services is announced, not the blocks followed
        // on: a client takes a head that moves after a Status without services for a server
        // that began to serve (docs/leaf-protocol.md), and would ask, be answered empty and
        // drop us. The head is announced again with the services, once the state matches.
        if serves != ServeFlags::ALL && serves == current.serves {
            continue;
        }
        if serves != current.serves {
            if serves == ServeFlags::ALL {
                info!(number = h.number, "the state matches the header's root again; serving");
            } else {
                warn!(
                    number = h.number,
                    header_root = %h.state_root,
                    "the state is off the chain (root mismatch): no longer offering it to \
                     peers until it matches a header again (it is repaired from peers)"
                );
            }
        }
        let account_estimate = match current.account_estimate {
            0 => db.estimate_accounts().unwrap_or(0),
            known => known,
        };
        let next = LocalHead {
            head: chain_head(&h),
            timestamp: head_timestamp(&h, &chain),
            account_estimate,
            serves,
        };
        if tx.send(next).is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests fail loudly on bad fixtures

    use super::*;
    use leafsync_leafdb::{
        BlockDiff, GenParams, LeafDbConfig, Table,
        test_utils::{ACCOUNT_ROOT_KEY, HookAt, HookStore},
    };

    fn flags<S: KvStore>(db: &LeafDb<S>) -> ServeFlags {
        head_and_flags(db).unwrap().unwrap().1
    }

    /// The apply thread runs at a higher priority than the runtime's threads that read the head:
    /// a block applied between the reads of the head and of the state root must not make a
    /// healthy state look off the chain (the node would stop serving, and start a repair).
    #[test]
    fn a_block_applied_while_the_head_is_read_leaves_the_state_on_the_chain() {
        let params = GenParams { accounts: 50, seed: 3 };
        let (mut block, diff) = params.block(1, 5);
        let twin = LeafDb::in_memory();
        twin.generate(params).unwrap();
        block.state_root = twin.apply_block(&block, &diff).unwrap().root;

        let db = Arc::new(LeafDb::with_store(HookStore::new(), LeafDbConfig::default()).unwrap());
        db.generate(params).unwrap();
        let follower = Arc::clone(&db);
        db.store().set_hook(
            HookAt::Get(Table::Meta, ACCOUNT_ROOT_KEY),
            Box::new(move || {
                assert!(follower.apply_block(&block, &diff).unwrap().root_matches);
            }),
        );
        let (head, serves) = head_and_flags(&*db).unwrap().unwrap();
        assert_eq!(serves, ServeFlags::ALL, "block {} seen off the chain", head.number);
        // A direct read of the root applies the block now if the reads above did not.
        db.account_root().unwrap();
        assert_eq!(db.head().unwrap().map(|h| h.number), Some(1), "the hook ran");
        assert_eq!(flags(&*db), ServeFlags::ALL);
    }

    /// Off the chain, the head is announced once with no services, not again for every block
    /// followed on (a client takes a head that moves for a server that serves again), and again
    /// with the services once the state matches.
    #[tokio::test]
    async fn heads_followed_off_the_chain_are_not_announced() {
        let db = Arc::new(LeafDb::in_memory());
        db.generate(GenParams { accounts: 50, seed: 3 }).unwrap();
        let genesis = db.head().unwrap().unwrap();
        let chain = ChainSpec::preset("dev").unwrap();
        let (tx, mut rx) = watch::channel(local_head(&db, &chain).unwrap());
        let stop = CancellationToken::new();
        let task = tokio::spawn(announce_heads(Arc::clone(&db), chain, tx, stop.clone()));
        let block = |n: u8, parent: B256, state_root: B256| BlockHeader {
            number: u64::from(n),
            hash: B256::repeat_byte(n),
            parent_hash: parent,
            state_root,
            timestamp: 0,
        };
        let wait = Duration::from_secs(10);
        let off = block(1, genesis.hash, B256::repeat_byte(0xee));
        db.apply_block(&off, &BlockDiff::default()).unwrap();
        tokio::time::timeout(wait, rx.changed()).await.unwrap().unwrap();
        let announced = *rx.borrow_and_update();
        assert_eq!((announced.head.number, announced.serves), (1, ServeFlags::NONE));
        // Followed on, still off the chain: given time to be announced, it is not.
        let still_off = block(2, off.hash, B256::repeat_byte(0xee));
        db.apply_block(&still_off, &BlockDiff::default()).unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let matching = block(3, still_off.hash, genesis.state_root);
        db.apply_block(&matching, &BlockDiff::default()).unwrap();
        tokio::time::timeout(wait, rx.changed()).await.unwrap().unwrap();
        let announced = *rx.borrow_and_update();
        assert_eq!((announced.head.number, announced.serves), (3, ServeFlags::ALL));
        stop.cancel();
        task.await.unwrap();
    }

    /// Block 1 on `genesis`, an empty block whose header claims another root: applied, the
    /// state is off the chain.
    fn lying_child(genesis: &BlockHeader) -> BlockHeader {
        BlockHeader {
            number: 1,
            hash: B256::repeat_byte(1),
            parent_hash: genesis.hash,
            state_root: B256::repeat_byte(0xee),
            timestamp: 0,
        }
    }

    /// Started without an execution client, a state off the chain is named as such (it offers
    /// nothing, and nothing will repair it), not as a state served at its block.
    #[test]
    fn a_state_off_the_chain_without_an_execution_client_is_named() {
        let db = LeafDb::in_memory();
        db.generate(GenParams { accounts: 50, seed: 3 }).unwrap();
        let (dev, sepolia) =
            (ChainSpec::preset("dev").unwrap(), ChainSpec::preset("sepolia").unwrap());
        assert_eq!(unfollowed_warning(&db, &dev).unwrap(), None);
        let served = unfollowed_warning(&db, &sepolia).unwrap().unwrap();
        assert!(served.contains("stays at this block while it is served"), "{served}");
        let genesis = db.head().unwrap().unwrap();
        let lying = lying_child(&genesis);
        db.apply_block(&lying, &BlockDiff::default()).unwrap();
        for chain in [&dev, &sepolia] {
            let off = unfollowed_warning(&db, chain).unwrap().unwrap();
            assert!(off.contains("off the chain") && off.contains("el.rpc"), "{off}");
        }
    }

    #[test]
    fn a_state_off_the_chain_is_not_offered() {
        let db = LeafDb::in_memory();
        db.generate(GenParams { accounts: 50, seed: 3 }).unwrap();
        let genesis = db.head().unwrap().unwrap();
        assert_eq!(flags(&db), ServeFlags::ALL);
        // An empty block whose header claims another root: the state is now off the chain.
        let lying = lying_child(&genesis);
        assert!(!db.apply_block(&lying, &BlockDiff::default()).unwrap().root_matches);
        assert_eq!(flags(&db), ServeFlags::NONE);
        // A later header that matches the stored state again: offered again.
        let matching = BlockHeader {
            number: 2,
            hash: B256::repeat_byte(2),
            parent_hash: lying.hash,
            state_root: genesis.state_root,
            timestamp: 0,
        };
        assert!(db.apply_block(&matching, &BlockDiff::default()).unwrap().root_matches);
        assert_eq!(flags(&db), ServeFlags::ALL);
    }
}
