//! Hello decoding: any bytes, no panic; what decodes re-encodes to something that decodes equal.
#![no_main]

use alloy_rlp::Decodable;
use leafsync_p2p::HelloMessage;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(hello) = HelloMessage::decode(&mut &data[..]) {
        let again = alloy_rlp::encode(&hello);
        assert_eq!(HelloMessage::decode(&mut &again[..]).expect("re-decodes"), hello);
    }
});
