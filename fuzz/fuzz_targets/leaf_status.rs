//! The `leaf/1` `Status` handshake: decoding (as the whole message and as a bare RLP value), the
//! exact roundtrip, and the check against our chain (mainnet, at a head just after Prague), whose
//! verdict must come with a disconnect reason that is never a protocol breach; and our own
//! `Status` at any realistic, plausible head passes our own check at that head.
#![no_main]

use alloy_rlp::Encodable;
use leafsync_p2p::{
    DisconnectReason,
    chain::ChainSpec,
    leaf::{LeafMessage, ServeFlags, Status, StatusError, protocol::ids},
};
use libfuzzer_sys::fuzz_target;
use std::sync::LazyLock;

/// Mainnet at block 22_431_084 (2025-05-07), as the unit tests use it.
const HEAD: (u64, u64) = (22_431_084, 1_746_612_400);

static CHAIN: LazyLock<ChainSpec> =
    LazyLock::new(|| ChainSpec::preset("mainnet").expect("preset parses"));

fuzz_target!(|data: &[u8]| {
    let bare = alloy_rlp::decode_exact::<Status>(data);
    let message = LeafMessage::decode(ids::STATUS, data);
    match (&bare, &message) {
        (Ok(status), Ok(LeafMessage::Status(m))) => assert_eq!(status, m),
        (Err(_), Err(_)) => {}
        // Status is far below the size limit, so the two decoders must agree.
        other => panic!("bare and message decoding disagree: {other:?}"),
    }
    let Ok(status) = bare else { return };

    let again = alloy_rlp::encode(status);
    assert_eq!(again, data, "re-encoding differs from the accepted bytes");
    assert_eq!(status.length(), again.len());
    assert_eq!(alloy_rlp::decode_exact::<Status>(&again).expect("re-decodes"), status);

    let filter = CHAIN.fork_filter(HEAD.0, HEAD.1);
    match status.validate(&CHAIN, &filter) {
        Ok(()) => {
            assert_eq!(status.version, 1);
            assert_eq!(status.network_id, CHAIN.network_id);
            assert_eq!(status.genesis_hash, CHAIN.genesis_hash);
        }
        Err(err) => {
            let reason = err.disconnect_reason();
            assert_ne!(reason, DisconnectReason::ProtocolBreach);
            assert_eq!(err.should_ban(), reason == DisconnectReason::UselessPeer);
            if let StatusError::VersionMismatch { theirs, .. } = err {
                assert_eq!(theirs, status.version);
            }
        }
    }

    // A head that fails the plausibility checks (a zero hash or root past block 0) is refused.
    if status.head.number != 0 && status.head.check_plausible().is_err() {
        assert!(status.validate(&CHAIN, &filter).is_err());
        return;
    }
    // Our own Status at the decoded head (with an arbitrary head time, taken from the estimate)
    // passes our own check at that head: fork id and fork filter agree for any plausible head
    // below 1.3 billion blocks. (Beyond, alloy-eip2124 compares a timestamp FORK_NEXT with the
    // head's block number when the current fork was a block fork, and finds its own fork id
    // stale; found by this target, see docs/fuzzing.md.)
    if status.head.number >= 1_300_000_000 {
        return;
    }
    let time = status.account_estimate;
    let ours = Status::ours(&CHAIN, status.head, time, 0, ServeFlags::ALL);
    let filter = CHAIN.fork_filter(status.head.number, time);
    assert_eq!(ours.validate(&CHAIN, &filter), Ok(()));
});
