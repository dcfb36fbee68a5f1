//! What the serve tests that speak `snap/1` over RLPx offer in their Hello.

use leafsync_p2p::{eth, leaf::protocol as leaf, p2pstream::Protocol, snap};

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
