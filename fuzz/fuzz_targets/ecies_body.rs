//! Handshake bodies as a hostile peer chooses them. Anyone may encrypt any plaintext to our
//! public key, so the auth and ack parsers see attacker-chosen bytes behind a valid tag; the
//! `ecies_auth` and `ecies_ack` targets mutate ciphertexts, which almost never pass the tag. This
//! target encrypts the fuzzed body itself.
//!
//! The first byte picks auth or ack, EIP-8 or legacy, and a raw body (the rest of the input,
//! encrypted as it is: no panic; an accepted auth leads to an ack and secrets, an accepted ack to
//! secrets) or a well-formed one built from fuzzed fields: keys, nonce, version and, for EIP-8,
//! further list elements and padding. A well-formed, correctly signed body must be accepted, and
//! what the reader learned must be what was sent: EIP-8 readers ignore what they do not know.
#![no_main]

use alloy_primitives::{B256, keccak256};
use alloy_rlp::{Encodable, Header};
use leafsync_p2p::ecies::{
    Ecies,
    algorithm::{
        ECIES_OVERHEAD, HandshakeFormat, MAX_HANDSHAKE_PACKET_SIZE, PeerId, ecdh_x,
        encrypt_message, id_from_pk,
    },
};
use libfuzzer_sys::{arbitrary::Unstructured, fuzz_target};
use secp256k1::{Message, PublicKey, SECP256K1, SecretKey};

/// Our static key: the recipient of an auth, the initiator reading an ack.
const OURS: [u8; 32] = [0x11; 32];

/// Most list elements a well-formed body carries past the ones the reader knows.
const MAX_EXTRA_ELEMENTS: usize = 4;

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let Ok(mode) = u.arbitrary::<u8>() else { return };
    let (auth, eip8, raw) = (mode & 1 == 0, mode & 2 == 0, mode & 4 == 0);
    let ours = SecretKey::from_byte_array(OURS).expect("valid key");
    let our_pk = PublicKey::from_secret_key(SECP256K1, &ours);
    if raw {
        let packet = seal(&our_pk, u.take_rest(), eip8);
        if auth {
            read_raw_auth(ours, &packet);
        } else {
            read_raw_ack(ours, &packet);
        }
        return;
    }
    let (Some(theirs), Some(eph), Ok(nonce), Ok(version)) =
        (key(&mut u), key(&mut u), u.arbitrary::<[u8; 32]>(), u.arbitrary::<u64>())
    else {
        return;
    };
    let nonce = B256::from(nonce);
    let eph_id = id_from_pk(&PublicKey::from_secret_key(SECP256K1, &eph));
    let their_id = id_from_pk(&PublicKey::from_secret_key(SECP256K1, &theirs));
    if auth {
        // The initiator signs (static shared secret ^ nonce) with its ephemeral key.
        let shared = ecdh_x(&our_pk, &theirs);
        let msg = Message::from_digest((shared ^ nonce).0);
        let (rec, sig) = SECP256K1.sign_ecdsa_recoverable(msg, &eph).serialize_compact();
        let mut signature = sig.to_vec();
        signature.push(i32::from(rec) as u8);
        let plain = if eip8 {
            let known = [
                rlp(&signature.as_slice()),
                rlp(&their_id.as_slice()),
                rlp(&nonce.as_slice()),
                rlp(&version),
            ];
            let Some(plain) = eip8_body(&known, u) else { return };
            plain
        } else {
            let mut plain = signature;
            plain.extend_from_slice(keccak256(eph_id).as_slice());
            plain.extend_from_slice(their_id.as_slice());
            plain.extend_from_slice(nonce.as_slice());
            plain.push(u.arbitrary::<u8>().unwrap_or(0));
            plain
        };
        let packet = seal(&our_pk, &plain, eip8);
        let mut ecies = Ecies::new_recipient(ours);
        let read = ecies.read_auth(&packet);
        if !fits(&plain, eip8) {
            assert!(read.is_err(), "an auth past the size limit was accepted");
            return;
        }
        read.expect("a well-formed, signed auth is accepted");
        assert_eq!(ecies.remote_id(), Some(their_id), "initiator id");
        check_learned(&ecies, eph_id, nonce, version, eip8);
        let _ = ecies.create_ack().expect("ack after a valid auth");
        let _ = ecies.secrets().expect("secrets after auth and ack");
    } else {
        let plain = if eip8 {
            let known = [rlp(&eph_id.as_slice()), rlp(&nonce.as_slice()), rlp(&version)];
            let Some(plain) = eip8_body(&known, u) else { return };
            plain
        } else {
            let mut plain = eph_id.to_vec();
            plain.extend_from_slice(nonce.as_slice());
            plain.push(u.arbitrary::<u8>().unwrap_or(0));
            plain
        };
        let packet = seal(&our_pk, &plain, eip8);
        let mut ecies = initiator(ours, their_id);
        let read = ecies.read_ack(&packet);
        if !fits(&plain, eip8) {
            assert!(read.is_err(), "an ack past the size limit was accepted");
            return;
        }
        read.expect("a well-formed ack is accepted");
        check_learned(&ecies, eph_id, nonce, version, eip8);
        let _ = ecies.secrets().expect("secrets after auth and ack");
    }
});

/// A secret key from 32 fuzzed bytes; `None` when they are no valid scalar or input ran out.
fn key(u: &mut Unstructured<'_>) -> Option<SecretKey> {
    SecretKey::from_byte_array(u.arbitrary::<[u8; 32]>().ok()?).ok()
}

/// The RLP encoding of `value`.
fn rlp<T: Encodable>(value: &T) -> Vec<u8> {
    let mut out = Vec::new();
    value.encode(&mut out);
    out
}

/// An EIP-8 body: the list of the `known` encoded fields and up to [`MAX_EXTRA_ELEMENTS`] fuzzed
/// elements (byte strings, or lists holding one), then fuzzed padding.
fn eip8_body(known: &[Vec<u8>], mut u: Unstructured<'_>) -> Option<Vec<u8>> {
    let mut items = known.to_vec();
    for _ in 0..u.int_in_range(0..=MAX_EXTRA_ELEMENTS).ok()? {
        let bytes: Vec<u8> = u.arbitrary().ok()?;
        let item = rlp(&bytes.as_slice());
        items.push(if u.arbitrary::<bool>().ok()? { list(&[item]) } else { item });
    }
    let mut plain = list(&items);
    plain.extend_from_slice(u.take_rest());
    Some(plain)
}

/// An RLP list of already encoded `items`.
fn list(items: &[Vec<u8>]) -> Vec<u8> {
    let payload_length = items.iter().map(Vec::len).sum();
    let mut out = Vec::new();
    Header { list: true, payload_length }.encode(&mut out);
    for item in items {
        out.extend_from_slice(item);
    }
    out
}

/// Whether an EIP-8 packet of `plain` stays within the handshake size limit (a legacy packet
/// has a fixed size).
fn fits(plain: &[u8], eip8: bool) -> bool {
    !eip8 || plain.len() + ECIES_OVERHEAD <= MAX_HANDSHAKE_PACKET_SIZE
}

/// `plain` encrypted to `to` as a handshake packet: EIP-8 behind its 2-byte size prefix (which
/// the tag covers), or legacy as it is. A size past what the prefix can hold is sent as its low
/// 16 bits, as a liar would.
fn seal(to: &PublicKey, plain: &[u8], eip8: bool) -> Vec<u8> {
    if !eip8 {
        return encrypt_message(to, plain, &[]);
    }
    let prefix = ((plain.len() + ECIES_OVERHEAD) as u16).to_be_bytes();
    let mut packet = prefix.to_vec();
    packet.extend_from_slice(&encrypt_message(to, plain, &prefix));
    packet
}

/// What a reader of a well-formed auth or ack must have learned.
fn check_learned(ecies: &Ecies, eph_id: PeerId, nonce: B256, version: u64, eip8: bool) {
    assert_eq!(ecies.remote_ephemeral_id(), Some(eph_id), "ephemeral key");
    assert_eq!(ecies.remote_nonce(), Some(nonce), "nonce");
    let (format, version) =
        if eip8 { (HandshakeFormat::Eip8, version) } else { (HandshakeFormat::Legacy, 4) };
    assert_eq!(ecies.remote_format(), Some(format), "format");
    assert_eq!(ecies.remote_version(), Some(version), "version");
}

/// A raw auth body: no panic; an accepted auth leads to an ack and secrets.
fn read_raw_auth(ours: SecretKey, packet: &[u8]) {
    let mut ecies = Ecies::new_recipient(ours);
    if ecies.read_auth(packet).is_ok() {
        let _ = ecies.create_ack().expect("ack after a valid auth");
        let _ = ecies.secrets().expect("secrets after auth and ack");
    }
}

/// A raw ack body: no panic; an accepted ack leads to secrets.
fn read_raw_ack(ours: SecretKey, packet: &[u8]) {
    let theirs = SecretKey::from_byte_array([0x22; 32]).expect("valid key");
    let mut ecies = initiator(ours, id_from_pk(&PublicKey::from_secret_key(SECP256K1, &theirs)));
    if ecies.read_ack(packet).is_ok() {
        let _ = ecies.secrets().expect("secrets after auth and ack");
    }
}

/// Our side dialing `remote`, its auth made: ready to read an ack.
fn initiator(ours: SecretKey, remote: PeerId) -> Ecies {
    let mut ecies = Ecies::new_initiator(ours, remote).expect("valid remote");
    let _ = ecies.create_auth().expect("auth");
    ecies
}
