//! Every `eth/69` message a quiet peer reads: the first byte is the relative message id (all
//! 256 values), the rest the RLP payload given to `EthMessage::decode`. No panic; a decoded
//! message keeps its id; ids we refuse or do not know are named as such whatever the payload.
#![no_main]

use leafsync_p2p::{
    MessageFault,
    eth::{EthError, EthMessage},
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&id, payload)) = data.split_first() else { return };
    match EthMessage::decode(id, payload) {
        Ok(msg) => assert_eq!(msg.id(), id),
        Err(err) => {
            // An unknown id is the only error that is not a protocol breach.
            assert_eq!(err.is_protocol_breach(), !matches!(err, EthError::UnknownMessageId(_)));
            assert_eq!(err.disconnect_reason().is_some(), err.is_protocol_breach());
            if let EthError::UnknownMessageId(x) | EthError::Disallowed(x) = err {
                assert_eq!(x, id);
            }
        }
    }
});
