//! Every `leaf/1` message: the first byte is the relative message id (all 256 values, so unknown
//! ids are exercised too), the rest the RLP payload given to `LeafMessage::decode`. No panic; a
//! decoded message keeps its id, is within its size limit, re-encodes to exactly the payload
//! (the decoders accept only canonical RLP) and decodes again to an equal message.
#![no_main]

use alloy_rlp::Encodable;
use leafsync_p2p::{
    MessageFault,
    leaf::{LeafError, LeafMessage, max_payload_size},
};
use libfuzzer_sys::fuzz_target;

/// `Encodable::length` of the message body, which must agree with what `encode` writes.
fn length(msg: &LeafMessage) -> usize {
    match msg {
        LeafMessage::Status(m) => m.length(),
        LeafMessage::NewHead(m) => m.length(),
        LeafMessage::GetChunk(m) => m.length(),
        LeafMessage::Chunk(m) => m.length(),
        LeafMessage::GetStorageChunk(m) => m.length(),
        LeafMessage::StorageChunk(m) => m.length(),
        LeafMessage::GetNodes(m) => m.length(),
        LeafMessage::Nodes(m) => m.length(),
        LeafMessage::GetCodes(m) => m.length(),
        LeafMessage::Codes(m) => m.length(),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&id, payload)) = data.split_first() else { return };
    match LeafMessage::decode(id, payload) {
        Ok(msg) => {
            assert_eq!(msg.id(), id);
            assert!(payload.len() <= max_payload_size(id).expect("known id"));
            assert_eq!(msg.request_id().is_none(), id <= 1, "only Status and NewHead lack one");
            let again = msg.encoded();
            assert_eq!(again, payload, "re-encoding differs from the accepted payload");
            assert_eq!(length(&msg), again.len(), "length() disagrees with encode()");
            assert_eq!(LeafMessage::decode(id, &again).expect("re-decodes"), msg);
        }
        Err(err) => {
            // An unknown id is the only error that is not a protocol breach.
            assert_eq!(err.is_protocol_breach(), !matches!(err, LeafError::UnknownMessageId(_)));
            assert_eq!(err.disconnect_reason().is_some(), err.is_protocol_breach());
            if max_payload_size(id).is_none() {
                assert_eq!(err, LeafError::UnknownMessageId(id));
            }
        }
    }
});
