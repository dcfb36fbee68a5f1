//! Property tests of the frame codec: any sequence of frames, encoded by one side's codec and
//! delivered in arbitrary chunks, decodes to the same frames on the other side (the keys come
//! from a real in-memory handshake); any flipped bit is caught by a MAC.

use bytes::BytesMut;
use leafsync_p2p::test_utils::frame_codecs;
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(leafsync_p2p::test_utils::proptest_cases(64)))]

    #[test]
    fn frames_roundtrip_in_any_chunking(
        frames in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..3000), 1..8),
        chunk in 1usize..700,
        a_sends in any::<bool>(),
    ) {
        let (a, b) = frame_codecs();
        let (mut tx, mut rx) = if a_sends { (a, b) } else { (b, a) };
        let mut wire = BytesMut::new();
        for f in &frames {
            tx.encode_frame(f, &mut wire).expect("encode");
        }
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for piece in wire.chunks(chunk) {
            buf.extend_from_slice(piece);
            while let Some(frame) = rx.decode_frame(&mut buf).expect("decode") {
                got.push(frame.to_vec());
            }
        }
        prop_assert!(buf.is_empty());
        prop_assert_eq!(got, frames);
    }

    #[test]
    fn any_flipped_bit_fails_a_mac(
        frame in prop::collection::vec(any::<u8>(), 0..200),
        bit in any::<prop::sample::Index>(),
    ) {
        let (mut tx, mut rx) = frame_codecs();
        let mut wire = BytesMut::new();
        tx.encode_frame(&frame, &mut wire).expect("encode");
        let i = bit.index(wire.len() * 8);
        wire[i / 8] ^= 1 << (i % 8);
        // never Ok(Some): either a MAC error, a size error, or waiting for bytes that a
        // corrupted size asks for (then the MAC fails once they come)
        prop_assert!(!matches!(rx.decode_frame(&mut wire), Ok(Some(_))), "corrupted frame accepted");
    }
}
