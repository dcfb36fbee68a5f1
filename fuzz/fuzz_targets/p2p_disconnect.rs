//! Disconnect payload decoding in both forms (list / bare integer, compressed or raw).
#![no_main]

use leafsync_p2p::{DisconnectReason, p2pstream::stream::decode_disconnect};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = decode_disconnect(data);
    if let Ok(reason) = DisconnectReason::decode_payload(data) {
        let list = alloy_rlp::encode(reason);
        assert_eq!(DisconnectReason::decode_payload(&list).expect("re-decodes"), reason);
    }
});
