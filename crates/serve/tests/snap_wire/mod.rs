//! What the serve tests that speak `snap/1` over RLPx share: the state they serve and the
//! capabilities of our Hello.

use alloy_primitives::B256;
use leafsync_leafdb::{GenParams, LeafDb, MemStore};
use leafsync_p2p::{eth, leaf::protocol as leaf, p2pstream::Protocol, snap};

/// An in-memory leafdb with a generated state of `accounts` accounts, and its state root.
pub(crate) fn generated_state(accounts: u64, seed: u64) -> (LeafDb<MemStore>, B256) {
    let db = LeafDb::in_memory();
    db.generate(GenParams { accounts, seed }).unwrap();
    let root = db.account_root().unwrap();
    (db, root)
}

/// Our capabilities, as the daemon will offer them with `snap/1`: `eth/69`, `leaf/1`, `snap/1`.
pub(crate) fn eth_leaf_snap() -> Vec<Protocol> {
    vec![
        Protocol::new(
            eth::protocol::PROTOCOL_NAME,
            eth::protocol::PROTOCOL_VERSION,
            eth::protocol::MESSAGE_COUNT,
        ),
        Protocol::new(leaf::PROTOCOL_NAME, u64::from(leaf::PROTOCOL_VERSION), leaf::MESSAGE_COUNT),
        Protocol::new(
            snap::protocol::PROTOCOL_NAME,
            snap::protocol::PROTOCOL_VERSION,
            snap::protocol::MESSAGE_COUNT,
        ),
    ]
}
