//! Every `snap/1` message: the first byte is the relative message id (all 256 values, so unknown
//! ids are exercised too), the rest the RLP payload given to `SnapMessage::decode`, which both
//! the snap/1 server (requests) and the snap/1 sync source (answers) read from peers. No panic; a
//! decoded message keeps its id, is within its size limit, re-encodes to exactly the payload
//! (the decoder accepts only canonical RLP) and decodes again to an equal message.
#![no_main]

use leafsync_p2p::{
    MessageFault,
    snap::{SnapError, SnapMessage, max_payload_size},
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&id, payload)) = data.split_first() else { return };
    match SnapMessage::decode(id, payload) {
        Ok(msg) => {
            assert_eq!(msg.id(), id);
            assert!(payload.len() <= max_payload_size(id).expect("known id"));
            let again = msg.encoded();
            assert_eq!(again, payload, "re-encoding differs from the accepted payload");
            assert_eq!(SnapMessage::decode(id, &again).expect("re-decodes"), msg);
            // A request's empty answer is a response of the kind that answers it.
            if let Some(empty) = msg.empty_answer() {
                assert!(!msg.is_response() && empty.is_response());
                assert!(msg.is_answered_by(&empty));
                assert_eq!(empty.request_id(), msg.request_id());
            } else {
                assert!(msg.is_response());
            }
        }
        Err(err) => {
            // An unknown id is the only error that is not a protocol breach.
            assert_eq!(err.is_protocol_breach(), !matches!(err, SnapError::UnknownMessageId(_)));
            assert_eq!(err.disconnect_reason().is_some(), err.is_protocol_breach());
            if max_payload_size(id).is_none() {
                assert_eq!(err, SnapError::UnknownMessageId(id));
            }
        }
    }
});
