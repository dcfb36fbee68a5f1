//! A frame body as the p2p layer reads it: message id, then the snappy payload, whose announced
//! length is checked against the limit before decompressing (snappy bombs).
#![no_main]

use leafsync_p2p::p2pstream::{
    MAX_MESSAGE_SIZE,
    stream::{decompress, encode_message, split_message},
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok((id, payload)) = split_message(data) {
        if let Ok(plain) = decompress(payload) {
            assert!(plain.len() <= MAX_MESSAGE_SIZE);
            let again = encode_message(id, &plain, true).expect("fits");
            let (id2, payload2) = split_message(&again).expect("splits");
            assert_eq!(id2, id);
            assert_eq!(decompress(payload2).expect("decompresses"), plain);
        }
    }
});
