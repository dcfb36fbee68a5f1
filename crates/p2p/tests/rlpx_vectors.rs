//! RLPx test vectors read from `../shared/testdata/rlpx/` at test time: EIP-8 (and legacy)
//! auth/ack packets, derived secrets and MACs, real go-ethereum Hello frames, the EIP-8 Hello
//! with extra elements, and the ECIES primitives of aleth and reth. Each test names its source.

use alloy_primitives::{B256, keccak256};
use alloy_rlp::Decodable;
use bytes::BytesMut;
use leafsync_p2p::test_utils::package_dir;
use leafsync_p2p::{
    ecies::{
        Ecies, FrameCodec, Secrets,
        algorithm::{
            HandshakeFormat, LEGACY_ACK_LEN, LEGACY_AUTH_LEN, concat_kdf, decrypt_message,
            derive_secrets, ecdh_x, id_from_pk, initial_mac,
        },
        mac::Mac,
        pk_from_id,
    },
    p2pstream::{Capability, HelloMessage},
};
use secp256k1::{PublicKey, SECP256K1, SecretKey};
use serde_json::Value;

fn load(file: &str) -> Value {
    let path =
        package_dir(env!("CARGO_MANIFEST_DIR")).join("../../../shared/testdata/rlpx").join(file);
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_str(&text).expect("vector json")
}

fn bytes(v: &Value) -> Vec<u8> {
    hex::decode(v.as_str().expect("hex string")).expect("hex")
}

fn b256(v: &Value) -> B256 {
    B256::from_slice(&bytes(v))
}

fn sk(v: &Value) -> SecretKey {
    SecretKey::from_byte_array(bytes(v).try_into().expect("32 bytes")).expect("secret key")
}

fn id_of(sk: &SecretKey) -> leafsync_p2p::PeerId {
    id_from_pk(&PublicKey::from_secret_key(SECP256K1, sk))
}

struct Keys {
    static_a: SecretKey,
    static_b: SecretKey,
    eph_a: SecretKey,
    eph_b: SecretKey,
    nonce_a: B256,
    nonce_b: B256,
}

fn eip8_keys(v: &Value) -> Keys {
    let k = &v["keys"];
    let keys = Keys {
        static_a: sk(&k["static_key_a"]["private"]),
        static_b: sk(&k["static_key_b"]["private"]),
        eph_a: sk(&k["ephemeral_key_a"]["private"]),
        eph_b: sk(&k["ephemeral_key_b"]["private"]),
        nonce_a: b256(&v["nonce_a"]),
        nonce_b: b256(&v["nonce_b"]),
    };
    // the helper-derived public keys must agree with ours
    assert_eq!(id_of(&keys.static_a).as_slice(), bytes(&k["static_key_a"]["public_derived"]));
    assert_eq!(id_of(&keys.eph_b).as_slice(), bytes(&k["ephemeral_key_b"]["public_derived"]));
    keys
}

fn recipient(keys: &Keys) -> Ecies {
    Ecies::new_recipient_with(keys.static_b, keys.eph_b, keys.nonce_b)
}

fn initiator(keys: &Keys) -> Ecies {
    Ecies::new_initiator_with(keys.static_a, id_of(&keys.static_b), keys.eph_a, keys.nonce_a)
        .expect("initiator")
}

/// What `e` read from the remote's auth or ack packet `name`: its format and version, nonce and
/// ephemeral key.
fn assert_remote(
    e: &Ecies,
    name: &str,
    (format, version): (HandshakeFormat, u64),
    nonce: B256,
    eph: &SecretKey,
) {
    assert_eq!(e.remote_format(), Some(format), "{name}");
    assert_eq!(e.remote_version(), Some(version), "{name}");
    assert_eq!(e.remote_nonce(), Some(nonce), "{name}");
    assert_eq!(e.remote_ephemeral_id(), Some(id_of(eph)), "{name}");
}

/// The handshake packet `name` of the EIP-8 vectors `v`, checked against its stated length.
fn packet(v: &Value, name: &str) -> Vec<u8> {
    let packet = bytes(&v["messages"][name]["hex"]);
    let length = v["messages"][name]["length_bytes"].as_u64().expect("length_bytes");
    assert_eq!(packet.len() as u64, length, "{name}");
    packet
}

fn with_foo(mac: &Mac) -> B256 {
    let mut m = mac.clone();
    m.update(b"foo");
    m.digest()
}

/// EIP-8 "RLPx Handshake" vectors Auth1/Ack1 (legacy), Auth2/Ack2, Auth3/Ack3 (EIP-8, extra
/// elements): node B decodes each auth and learns A's static key, ephemeral key (recovered from
/// the signature), nonce and version; node A decodes each ack and learns B's.
#[test]
fn eip8_auth_and_ack_packets_decode_in_both_formats() {
    let v = load("rlpx-handshake-vectors.json");
    let keys = eip8_keys(&v);
    for (auth, ack, format, (auth_version, ack_version)) in [
        ("auth1", "ack1", HandshakeFormat::Legacy, (4, 4)),
        ("auth2", "ack2", HandshakeFormat::Eip8, (4, 4)),
        ("auth3", "ack3", HandshakeFormat::Eip8, (56, 57)),
    ] {
        let mut b = recipient(&keys);
        b.read_auth(&packet(&v, auth)).unwrap_or_else(|e| panic!("{auth}: {e}"));
        assert_eq!(b.remote_id(), Some(id_of(&keys.static_a)), "{auth}");
        assert_remote(&b, auth, (format, auth_version), keys.nonce_a, &keys.eph_a);
        let mut a = initiator(&keys);
        a.read_ack(&packet(&v, ack)).unwrap_or_else(|e| panic!("{ack}: {e}"));
        assert_remote(&a, ack, (format, ack_version), keys.nonce_b, &keys.eph_b);
    }
    assert_eq!(packet(&v, "auth1").len(), LEGACY_AUTH_LEN);
    assert_eq!(packet(&v, "ack1").len(), LEGACY_ACK_LEN);
}

/// A packet addressed to B does not decode with A's key (the tag check fails).
#[test]
fn auth_for_another_key_is_rejected() {
    let v = load("rlpx-handshake-vectors.json");
    let keys = eip8_keys(&v);
    let mut wrong = Ecies::new_recipient_with(keys.static_a, keys.eph_b, keys.nonce_b);
    assert!(wrong.read_auth(&packet(&v, "auth2")).is_err());
}

/// EIP-8 "Node B derives the connection secrets for (Auth2, Ack2)" (also geth
/// TestHandshakeForwardCompatibility): aes-secret, mac-secret and ingress-mac after "foo".
#[test]
fn eip8_secrets_auth2_ack2_official() {
    let v = load("rlpx-handshake-vectors.json");
    let keys = eip8_keys(&v);
    let exp = &v["expected_secrets_auth2_ack2"];
    let mut b = recipient(&keys);
    b.read_auth(&packet(&v, "auth2")).expect("auth2");
    b.create_ack().expect("ack");
    let s = b.secrets().expect("secrets");
    assert_eq!(s.aes_secret, b256(&exp["aes_secret"]));
    assert_eq!(s.mac_secret, b256(&exp["mac_secret"]));
    assert_eq!(with_foo(&s.ingress_mac), b256(&exp["ingress_mac_foo"]));
}

/// Helper-computed (unofficial, reproduces the official pair above) secrets for all three
/// auth/ack pairs: B's ingress MAC from the auth, A's ingress MAC (= B's egress) from the ack.
#[test]
fn secrets_and_macs_for_every_pair() {
    let v = load("rlpx-handshake-vectors.json");
    let keys = eip8_keys(&v);
    for (pair, auth, ack) in [
        ("auth1_ack1", "auth1", "ack1"),
        ("auth2_ack2", "auth2", "ack2"),
        ("auth3_ack3", "auth3", "ack3"),
    ] {
        let exp = &v["helper_computed_unofficial"]["pairs"][pair];
        let mut b = recipient(&keys);
        b.read_auth(&packet(&v, auth)).expect("auth");
        b.create_ack().expect("ack");
        let sb = b.secrets().expect("secrets b");
        assert_eq!(sb.aes_secret, b256(&exp["aes_secret"]), "{pair}");
        assert_eq!(sb.mac_secret, b256(&exp["mac_secret"]), "{pair}");
        assert_eq!(
            sb.ingress_mac.digest(),
            b256(&exp["recipient_ingress_mac_initial_digest"]),
            "{pair}"
        );
        assert_eq!(with_foo(&sb.ingress_mac), b256(&exp["recipient_ingress_mac_foo"]), "{pair}");

        let mut a = initiator(&keys);
        a.create_auth().expect("auth");
        a.read_ack(&packet(&v, ack)).expect("ack");
        let sa = a.secrets().expect("secrets a");
        assert_eq!(sa.aes_secret, sb.aes_secret, "{pair}");
        assert_eq!(
            sa.ingress_mac.digest(),
            b256(&exp["recipient_egress_mac_initial_digest"]),
            "{pair}"
        );
        assert_eq!(with_foo(&sa.ingress_mac), b256(&exp["recipient_egress_mac_foo"]), "{pair}");
    }
}

fn codec_for(ecies: &Ecies) -> FrameCodec {
    FrameCodec::new(ecies.secrets().expect("secrets"))
}

/// aleth `test_secrets_from_go` (values generated by go-ethereum, legacy handshake): both legacy
/// packets decrypt to the given plaintexts and decode, the ecdhe/aes/mac secrets and both
/// initial MAC digests match, and the real go-ethereum Hello frame of each side decrypts with a
/// valid header MAC and body MAC and decodes as a Hello.
#[test]
fn geth_legacy_handshake_and_hello_frames() {
    let v = load("rlpx-frame-and-ecies-vectors.json");
    let t = &v["aleth_test_secrets_from_go"];
    let (ia, ea, na) = (
        sk(&t["initiator_static_private"]),
        sk(&t["initiator_ephemeral_private"]),
        b256(&t["initiator_nonce"]),
    );
    let (rb, eb, nb) = (
        sk(&t["recipient_static_private"]),
        sk(&t["recipient_ephemeral_private"]),
        b256(&t["recipient_nonce"]),
    );
    let auth = bytes(&t["auth_ciphertext"]);
    let ack = bytes(&t["ack_ciphertext"]);
    assert_eq!(decrypt_message(&rb, &auth, &[]).expect("auth"), bytes(&t["auth_plaintext"]));
    assert_eq!(decrypt_message(&ia, &ack, &[]).expect("ack"), bytes(&t["ack_plaintext"]));
    let ecdhe = ecdh_x(&PublicKey::from_secret_key(SECP256K1, &eb), &ea);
    assert_eq!(ecdhe, b256(&t["ecdhe_shared_secret"]));

    let mut b = Ecies::new_recipient_with(rb, eb, nb);
    b.read_auth(&auth).expect("read auth");
    assert_eq!(b.remote_format(), Some(HandshakeFormat::Legacy));
    assert_eq!(b.remote_id(), Some(id_of(&ia)));
    let legacy_ack = b.create_ack().expect("ack");
    assert_eq!(legacy_ack.len(), LEGACY_ACK_LEN, "a legacy auth is answered with a legacy ack");

    let mut a = Ecies::new_initiator_with(ia, id_of(&rb), ea, na).expect("initiator");
    a.create_auth().expect("auth");
    a.read_ack(&ack).expect("read ack");
    assert_eq!(a.remote_format(), Some(HandshakeFormat::Legacy));

    let (sa, sb) = (a.secrets().expect("a"), b.secrets().expect("b"));
    assert_eq!(sa.aes_secret, b256(&t["aes_secret"]));
    assert_eq!(sa.mac_secret, b256(&t["mac_secret"]));
    assert_eq!(sb.aes_secret, sa.aes_secret);
    assert_eq!(sa.ingress_mac.digest(), b256(&t["initiator_ingress_mac_initial_digest"]));
    // B's ingress is A's egress
    assert_eq!(sb.ingress_mac.digest(), b256(&t["initiator_egress_mac_initial_digest"]));

    let decoded = &t["helper_decoded_unofficial"];
    for (codec, frame, content, sender) in [
        (codec_for(&b), "initiator_hello_frame", "initiator_hello_frame_content", &ia),
        (codec_for(&a), "recipient_hello_frame", "recipient_hello_frame_content", &rb),
    ] {
        let mut codec = codec;
        let mut buf = BytesMut::from(&bytes(&t[frame])[..]);
        let body = codec.decode_frame(&mut buf).expect("frame verifies").expect("complete frame");
        assert!(buf.is_empty());
        assert_eq!(&body[..], &bytes(&decoded[content])[..], "{frame}");
        assert_eq!(body[0], 0x80, "message id 0 = Hello");
        let hello = HelloMessage::decode(&mut &body[1..]).expect("hello");
        assert_eq!(hello.protocol_version, 3);
        assert_eq!(hello.id, id_of(sender), "{frame}: Hello carries the sender's node id");
        assert_eq!(hello.capabilities.len(), 2);
    }
}

/// The same geth frame with one flipped bit fails: in the header MAC, or in the body MAC.
#[test]
fn geth_hello_frame_with_flipped_bits_fails_mac() {
    let v = load("rlpx-frame-and-ecies-vectors.json");
    let t = &v["aleth_test_secrets_from_go"];
    let mut b = Ecies::new_recipient_with(
        sk(&t["recipient_static_private"]),
        sk(&t["recipient_ephemeral_private"]),
        b256(&t["recipient_nonce"]),
    );
    b.read_auth(&bytes(&t["auth_ciphertext"])).expect("auth");
    b.create_ack().expect("ack");
    let frame = bytes(&t["initiator_hello_frame"]);
    for (pos, header) in [(3, true), (20, true), (40, false), (frame.len() - 1, false)] {
        let mut bad = frame.clone();
        bad[pos] ^= 1;
        let err = codec_for(&b).decode_frame(&mut BytesMut::from(&bad[..])).expect_err("must fail");
        let expected = if header { "header" } else { "body" };
        assert!(err.to_string().contains(expected), "byte {pos}: {err}");
    }
}

/// aleth `test_secrets_cpp_vectors`: keys and nonces are keccak256 of ASCII strings, packets
/// empty; ecdhe, aes and mac secrets and the first 16 bytes of both initial MACs match.
#[test]
fn aleth_cpp_secret_vectors() {
    let v = load("rlpx-frame-and-ecies-vectors.json");
    let t = &v["aleth_test_secrets_cpp_vectors"];
    let k = |s: &str| keccak256(s.as_bytes());
    let init_eph = SecretKey::from_byte_array(k("initiator-random").0).expect("key");
    let recv_eph = SecretKey::from_byte_array(k("remote-recv-random").0).expect("key");
    let (n_init, n_recv) = (k("initiator-nonce"), k("remote-recv-nonce"));
    let ecdhe = ecdh_x(&PublicKey::from_secret_key(SECP256K1, &recv_eph), &init_eph);
    assert_eq!(ecdhe, b256(&t["ecdhe_shared_secret"]));
    let (aes, mac) = derive_secrets(ecdhe, n_init, n_recv);
    assert_eq!(aes, b256(&t["aes_secret"]));
    assert_eq!(mac, b256(&t["mac_secret"]));
    assert_eq!(
        initial_mac(mac, n_recv, &[]).mac()[..],
        bytes(&t["initiator_egress_mac_initial_digest_first16"])[..]
    );
    assert_eq!(
        initial_mac(mac, n_init, &[]).mac()[..],
        bytes(&t["initiator_ingress_mac_initial_digest_first16"])[..]
    );
}

/// aleth ECIES primitives: concat KDF, ECDH x-coordinate, ECIES decryption without auth-data;
/// and reth's `ecdh` test.
#[test]
fn ecies_primitives() {
    let v = load("rlpx-frame-and-ecies-vectors.json");
    let p = &v["aleth_ecies_interop_primitives"];
    for c in p["concat_kdf_sha256"].as_array().expect("kdf") {
        let len = c["len"].as_u64().expect("len") as usize;
        assert_eq!(concat_kdf(&bytes(&c["z"]), &bytes(&c["s1"]), len), bytes(&c["output"]));
    }
    let mut ecdh_cases = p["ecdh_x"].as_array().expect("ecdh").clone();
    ecdh_cases.push(v["reth_ecdh"].clone());
    for c in &ecdh_cases {
        let public =
            pk_from_id(&leafsync_p2p::PeerId::from_slice(&bytes(&c["public"]))).expect("pk");
        assert_eq!(ecdh_x(&public, &sk(&c["private"])), b256(&c["shared_x"]));
    }
    for c in p["ecies_decrypt"].as_array().expect("decrypt") {
        let plain =
            decrypt_message(&sk(&c["private"]), &bytes(&c["ciphertext"]), &[]).expect("decrypts");
        assert_eq!(plain, c["plaintext_ascii"].as_str().expect("ascii").as_bytes());
    }
}

/// go-ethereum `TestFrameReadWrite` (AES part only: its MAC hash is a fake that always returns
/// 0x01…, so only the ciphertext blocks are comparable): AES-256-CTR with key keccak256("")
/// and IV 0 over header and body.
#[test]
fn geth_frame_aes_ctr() {
    let v = load("rlpx-frame-and-ecies-vectors.json");
    let t = &v["geth_TestFrameReadWrite"];
    let secret = b256(&t["aes_secret"]);
    let mac_secret = b256(&t["mac_secret"]);
    let mut codec = FrameCodec::new(Secrets {
        aes_secret: secret,
        mac_secret,
        egress_mac: Mac::new(mac_secret),
        ingress_mac: Mac::new(mac_secret),
    });
    let mut out = BytesMut::new();
    codec.encode_frame(&bytes(&t["frame_plaintext_content_hex"]), &mut out).expect("encode");
    let golden = bytes(&t["golden_frame_hex"]);
    assert_eq!(out.len(), golden.len());
    assert_eq!(out[..16], golden[..16], "header ciphertext");
    assert_eq!(out[32..48], golden[32..48], "body ciphertext");
}

/// EIP-8 "devp2p hello packet ... containing a few additional list elements": decodes, the
/// extra elements after the node id are ignored.
#[test]
fn eip8_hello_with_extra_elements_decodes() {
    let v = load("eip8-hello-and-discv4-vectors.json");
    let raw = bytes(&v["devp2p_hello_version22_extra_elements"]["hex"]);
    let mut buf = &raw[..];
    let hello = HelloMessage::decode(&mut buf).expect("hello");
    assert!(buf.is_empty());
    assert_eq!(hello.protocol_version, 55);
    assert_eq!(hello.client_version, "kneth/v0.91/plan9");
    assert_eq!(hello.capabilities, vec![Capability::new("eth", 61), Capability::new("mork", 22)]);
    assert_eq!(hello.port, 9999);
    let keys = eip8_keys(&load("rlpx-handshake-vectors.json"));
    assert_eq!(hello.id, id_of(&keys.static_a));
}
