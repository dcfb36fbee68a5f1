//! Property tests of the p2p codecs: Hello, Disconnect and capability message framing
//! (message id + snappy) roundtrip, and the decoders never panic on arbitrary bytes.

use alloy_primitives::B512;
use alloy_rlp::Decodable;
use leafsync_p2p::{
    DisconnectReason, HelloMessage,
    p2pstream::{
        Capability,
        stream::{decode_disconnect, decompress, encode_message, split_message},
    },
};
use proptest::prelude::*;

fn capability() -> impl Strategy<Value = Capability> {
    ("[a-z]{1,8}", any::<u64>()).prop_map(|(name, version)| Capability::new(name, version))
}

fn hello() -> impl Strategy<Value = HelloMessage> {
    (
        any::<u64>(),
        ".{0,40}",
        prop::collection::vec(capability(), 0..6),
        any::<u16>(),
        any::<[u8; 64]>(),
    )
        .prop_map(|(protocol_version, client_version, capabilities, port, id)| HelloMessage {
            protocol_version,
            client_version,
            capabilities,
            port,
            id: B512::from(id),
        })
}

proptest! {
    #[test]
    fn hello_roundtrips(h in hello()) {
        let encoded = alloy_rlp::encode(&h);
        prop_assert_eq!(encoded.len(), alloy_rlp::Encodable::length(&h));
        let mut buf = &encoded[..];
        prop_assert_eq!(HelloMessage::decode(&mut buf).expect("decode"), h);
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn hello_with_extra_elements_still_decodes(h in hello(), extra in prop::collection::vec(any::<u64>(), 1..4)) {
        // re-encode the list with extra trailing items
        let mut inner = alloy_rlp::encode(&h);
        let header = alloy_rlp::Header::decode(&mut &inner[..]).expect("header");
        let header_len = inner.len() - header.payload_length;
        let mut payload = inner.split_off(header_len);
        for x in &extra {
            alloy_rlp::Encodable::encode(x, &mut payload);
        }
        let mut out = Vec::new();
        alloy_rlp::Header { list: true, payload_length: payload.len() }.encode(&mut out);
        out.extend(payload);
        prop_assert_eq!(HelloMessage::decode(&mut &out[..]).expect("decode"), h);
    }

    #[test]
    fn disconnect_roundtrips_in_every_form(i in 0usize..13, compressed in any::<bool>()) {
        let reason = DisconnectReason::ALL[i];
        let list = alloy_rlp::encode(reason);
        prop_assert_eq!(DisconnectReason::decode_payload(&list).expect("list"), reason);
        prop_assert_eq!(DisconnectReason::decode_payload(&alloy_rlp::encode(reason.code())).expect("int"), reason);
        let frame = encode_message(0x01, &list, compressed).expect("frame");
        let (id, payload) = split_message(&frame).expect("split");
        prop_assert_eq!(id, 1);
        prop_assert_eq!(decode_disconnect(payload).expect("decode"), reason);
        prop_assert!(!reason.to_string().is_empty());
    }

    #[test]
    fn capability_messages_roundtrip(id in any::<u64>(), payload in prop::collection::vec(any::<u8>(), 0..5000)) {
        let frame = encode_message(id, &payload, true).expect("frame");
        let (got_id, compressed) = split_message(&frame).expect("split");
        prop_assert_eq!(got_id, id);
        prop_assert_eq!(decompress(compressed).expect("snappy"), payload);
    }

    #[test]
    fn decoders_never_panic(data in prop::collection::vec(any::<u8>(), 0..300)) {
        let _ = HelloMessage::decode(&mut &data[..]);
        let _ = DisconnectReason::decode_payload(&data);
        let _ = decode_disconnect(&data);
        let _ = decompress(&data);
        let _ = split_message(&data);
    }
}
