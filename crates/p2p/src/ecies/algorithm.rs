//! The pure cryptography of the RLPx handshake: ECIES message encryption, EIP-8 (and legacy
//! pre-EIP-8) auth/ack packets, and the derivation of the session secrets.
//!
//! Nothing here does I/O; [`super::stream`] drives it over a socket.

use crate::ecies::{error::EciesError, mac::Mac};
use aes::Aes128;
use alloy_primitives::{B256, B512, keccak256};
use alloy_rlp::{Decodable, Encodable, Header};
use ctr::cipher::{KeyIvInit, StreamCipher};
use hmac::{Hmac, Mac as _};
use rand::Rng;
use secp256k1::{
    Message, PublicKey, SECP256K1, SecretKey,
    ecdsa::{RecoverableSignature, RecoveryId},
};
use sha2::{Digest, Sha256};

/// A devp2p node id: the 64-byte uncompressed secp256k1 public key without its `0x04` prefix.
pub type PeerId = B512;

type Aes128Ctr = ctr::Ctr128BE<Aes128>;
type HmacSha256 = Hmac<Sha256>;

/// Fixed size added by ECIES: ephemeral public key (65) + IV (16) + HMAC-SHA256 tag (32).
pub const ECIES_OVERHEAD: usize = 65 + 16 + 32;

/// Size of a legacy (pre-EIP-8) auth packet: a 194-byte plaintext plus [`ECIES_OVERHEAD`].
pub const LEGACY_AUTH_LEN: usize = 194 + ECIES_OVERHEAD;

/// Size of a legacy (pre-EIP-8) ack packet: a 97-byte plaintext plus [`ECIES_OVERHEAD`].
pub const LEGACY_ACK_LEN: usize = 97 + ECIES_OVERHEAD;

/// Largest EIP-8 auth/ack packet we accept (after the 2-byte size prefix). go-ethereum uses the
/// same 2 KiB bound (`baseProtocolMaxMsgSize`); honest packets are about 400-600 bytes, so this
/// leaves room for extra list elements while keeping a pre-auth peer from making us buffer 64 KiB.
pub const MAX_HANDSHAKE_PACKET_SIZE: usize = 2048;

/// Fewest random padding bytes appended to our EIP-8 auth/ack. EIP-8 asks for "at least 100"
/// so that the packet size does not reveal the format or the implementation.
pub const MIN_PADDING: usize = 100;

/// Most random padding bytes appended to our EIP-8 auth/ack (geth pads 100-199; 300 keeps our
/// largest packet well under [`MAX_HANDSHAKE_PACKET_SIZE`]).
pub const MAX_PADDING: usize = 300;

/// The auth-vsn / ack-vsn we send (RLPx v4 handshake).
pub const HANDSHAKE_VERSION: u64 = 4;

/// Node id of a public key.
pub fn id_from_pk(pk: &PublicKey) -> PeerId {
    B512::from_slice(&pk.serialize_uncompressed()[1..])
}

/// Public key of a node id; fails when the id is not a point on the curve.
pub fn pk_from_id(id: &PeerId) -> Result<PublicKey, EciesError> {
    let mut bytes = [4u8; 65];
    bytes[1..].copy_from_slice(id.as_slice());
    Ok(PublicKey::from_slice(&bytes)?)
}

/// RLPx ECDH: the raw x-coordinate of `secret * public` (not hashed, unlike libsecp's default).
pub fn ecdh_x(public: &PublicKey, secret: &SecretKey) -> B256 {
    B256::from_slice(&secp256k1::ecdh::shared_secret_point(public, secret)[..32])
}

/// NIST SP 800-56 concatenation KDF with SHA-256 (as go-ethereum's `ecies.ConcatKDF`).
pub fn concat_kdf(z: &[u8], s1: &[u8], len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 32);
    let mut counter: u32 = 1;
    while out.len() < len {
        let mut h = Sha256::new();
        h.update(counter.to_be_bytes());
        h.update(z);
        h.update(s1);
        out.extend_from_slice(&h.finalize());
        counter = counter.wrapping_add(1);
    }
    out.truncate(len);
    out
}

/// ECIES keys from a shared x-coordinate: `(kE, kM)` with `kE = K[0..16]`,
/// `kM = sha256(K[16..32])`.
fn ecies_keys(shared: &B256) -> ([u8; 16], [u8; 32]) {
    let k = concat_kdf(shared.as_slice(), &[], 32);
    let mut ke = [0u8; 16];
    ke.copy_from_slice(&k[..16]);
    (ke, Sha256::digest(&k[16..32]).into())
}

fn tag(mkey: &[u8; 32], iv: &[u8], ciphertext: &[u8], auth_data: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length, so `new_from_slice` cannot fail here.
    let mut mac =
        <HmacSha256 as hmac::Mac>::new_from_slice(mkey).unwrap_or_else(|_| unreachable!());
    mac.update(iv);
    mac.update(ciphertext);
    mac.update(auth_data);
    mac
}

/// ECIES-encrypts `plaintext` to `remote`; `auth_data` is MACed but not sent (EIP-8 passes the
/// 2-byte size prefix). Output: `0x04 || R || iv || ciphertext || tag`.
pub fn encrypt_message(remote: &PublicKey, plaintext: &[u8], auth_data: &[u8]) -> Vec<u8> {
    let mut rng = rand::rng();
    let ephemeral = SecretKey::new(&mut rng);
    let shared = ecdh_x(remote, &ephemeral);
    let (ke, km) = ecies_keys(&shared);
    let iv: [u8; 16] = rng.random();
    let mut out = Vec::with_capacity(plaintext.len() + ECIES_OVERHEAD);
    out.extend_from_slice(
        &PublicKey::from_secret_key(SECP256K1, &ephemeral).serialize_uncompressed(),
    );
    out.extend_from_slice(&iv);
    let start = out.len();
    out.extend_from_slice(plaintext);
    Aes128Ctr::new(&ke.into(), &iv.into()).apply_keystream(&mut out[start..]);
    let t = tag(&km, &iv, &out[start..], auth_data).finalize().into_bytes();
    out.extend_from_slice(&t);
    out
}

/// Decrypts an ECIES message addressed to `secret`, checking its tag over `auth_data` first.
pub fn decrypt_message(
    secret: &SecretKey,
    data: &[u8],
    auth_data: &[u8],
) -> Result<Vec<u8>, EciesError> {
    if data.len() < ECIES_OVERHEAD {
        return Err(EciesError::MessageTooShort(data.len()));
    }
    let (point, rest) = data.split_at(65);
    let (iv, rest) = rest.split_at(16);
    let (ciphertext, t) = rest.split_at(rest.len() - 32);
    let remote = PublicKey::from_slice(point)?;
    let (ke, km) = ecies_keys(&ecdh_x(&remote, secret));
    tag(&km, iv, ciphertext, auth_data).verify_slice(t).map_err(|_| EciesError::TagMismatch)?;
    let mut plain = ciphertext.to_vec();
    let mut ivb = [0u8; 16];
    ivb.copy_from_slice(iv);
    Aes128Ctr::new(&ke.into(), &ivb.into()).apply_keystream(&mut plain);
    Ok(plain)
}

/// The secrets both sides derive from the handshake: AES and MAC secrets of the frame codec, and
/// the two seeded MAC states.
pub struct Secrets {
    /// AES-256-CTR key of both frame directions.
    pub aes_secret: B256,
    /// Key of the frame MAC's AES-ECB seed step.
    pub mac_secret: B256,
    /// MAC state of frames we send.
    pub egress_mac: Mac,
    /// MAC state of frames we receive.
    pub ingress_mac: Mac,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secrets").finish_non_exhaustive()
    }
}

/// `(aes-secret, mac-secret)` from the ephemeral ECDH x-coordinate and both nonces:
/// `shared = keccak(ecdhe || keccak(nonce_recipient || nonce_initiator))`,
/// `aes = keccak(ecdhe || shared)`, `mac = keccak(ecdhe || aes)`.
pub fn derive_secrets(ecdhe: B256, initiator_nonce: B256, recipient_nonce: B256) -> (B256, B256) {
    let nonce_hash = keccak256([recipient_nonce.as_slice(), initiator_nonce.as_slice()].concat());
    let shared = keccak256([ecdhe.as_slice(), nonce_hash.as_slice()].concat());
    let aes = keccak256([ecdhe.as_slice(), shared.as_slice()].concat());
    let mac = keccak256([ecdhe.as_slice(), aes.as_slice()].concat());
    (aes, mac)
}

/// A MAC state seeded with `(mac_secret ^ nonce) || packet`.
pub fn initial_mac(mac_secret: B256, nonce: B256, packet: &[u8]) -> Mac {
    let mut mac = Mac::new(mac_secret);
    mac.update((mac_secret ^ nonce).as_slice());
    mac.update(packet);
    mac
}

/// Which format a handshake packet used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeFormat {
    /// Pre-EIP-8 fixed-size packet.
    Legacy,
    /// EIP-8: size prefix, RLP body, random padding.
    Eip8,
}

/// One side of the RLPx handshake: our keys and nonce, and what we learned about the remote.
pub struct Ecies {
    initiator: bool,
    secret_key: SecretKey,
    remote_public_key: Option<PublicKey>,
    ephemeral_secret_key: SecretKey,
    nonce: B256,
    remote_ephemeral_public_key: Option<PublicKey>,
    remote_nonce: Option<B256>,
    remote_version: Option<u64>,
    remote_format: Option<HandshakeFormat>,
    init_msg: Option<Vec<u8>>,
    remote_init_msg: Option<Vec<u8>>,
}

impl std::fmt::Debug for Ecies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ecies")
            .field("initiator", &self.initiator)
            .field("remote_id", &self.remote_id())
            .finish_non_exhaustive()
    }
}

impl Ecies {
    /// The dialing side, with a fresh random ephemeral key and nonce.
    pub fn new_initiator(secret_key: SecretKey, remote_id: PeerId) -> Result<Self, EciesError> {
        let (ephemeral_secret_key, nonce) = random_ephemeral();
        Self::new_initiator_with(secret_key, remote_id, ephemeral_secret_key, nonce)
    }

    /// The dialing side with a given ephemeral key and nonce (test vectors).
    pub fn new_initiator_with(
        secret_key: SecretKey,
        remote_id: PeerId,
        ephemeral_secret_key: SecretKey,
        nonce: B256,
    ) -> Result<Self, EciesError> {
        let mut this = Self::new_recipient_with(secret_key, ephemeral_secret_key, nonce);
        this.initiator = true;
        this.remote_public_key = Some(pk_from_id(&remote_id)?);
        Ok(this)
    }

    /// The listening side, with a fresh random ephemeral key and nonce.
    pub fn new_recipient(secret_key: SecretKey) -> Self {
        let (ephemeral_secret_key, nonce) = random_ephemeral();
        Self::new_recipient_with(secret_key, ephemeral_secret_key, nonce)
    }

    /// The listening side with a given ephemeral key and nonce (test vectors).
    pub fn new_recipient_with(
        secret_key: SecretKey,
        ephemeral_secret_key: SecretKey,
        nonce: B256,
    ) -> Self {
        Self {
            initiator: false,
            secret_key,
            remote_public_key: None,
            ephemeral_secret_key,
            nonce,
            remote_ephemeral_public_key: None,
            remote_nonce: None,
            remote_version: None,
            remote_format: None,
            init_msg: None,
            remote_init_msg: None,
        }
    }

    /// The remote's node id, known from the start when dialing, after the auth when listening.
    pub fn remote_id(&self) -> Option<PeerId> {
        self.remote_public_key.as_ref().map(id_from_pk)
    }

    /// The auth-vsn / ack-vsn the remote announced (4 for legacy packets).
    pub fn remote_version(&self) -> Option<u64> {
        self.remote_version
    }

    /// The format of the remote's auth or ack.
    pub fn remote_format(&self) -> Option<HandshakeFormat> {
        self.remote_format
    }

    /// Our nonce.
    pub fn nonce(&self) -> B256 {
        self.nonce
    }

    /// The remote's nonce, once its auth/ack was read.
    pub fn remote_nonce(&self) -> Option<B256> {
        self.remote_nonce
    }

    /// The remote's ephemeral public key, once its auth/ack was read.
    pub fn remote_ephemeral_id(&self) -> Option<PeerId> {
        self.remote_ephemeral_public_key.as_ref().map(id_from_pk)
    }

    fn remote_pk(&self) -> Result<&PublicKey, EciesError> {
        self.remote_public_key.as_ref().ok_or(EciesError::IncompleteHandshake("remote public key"))
    }

    fn auth_signature(&self) -> Result<[u8; 65], EciesError> {
        let static_shared = ecdh_x(self.remote_pk()?, &self.secret_key);
        let msg = Message::from_digest((static_shared ^ self.nonce).0);
        let (rec, sig) =
            SECP256K1.sign_ecdsa_recoverable(msg, &self.ephemeral_secret_key).serialize_compact();
        let mut out = [0u8; 65];
        out[..64].copy_from_slice(&sig);
        out[64] = i32::from(rec) as u8;
        Ok(out)
    }

    fn ephemeral_id(&self) -> PeerId {
        id_from_pk(&PublicKey::from_secret_key(SECP256K1, &self.ephemeral_secret_key))
    }

    /// Builds our EIP-8 auth packet (size prefix included) and remembers it for the MAC seed.
    pub fn create_auth(&mut self) -> Result<Vec<u8>, EciesError> {
        let sig = self.auth_signature()?;
        let our_id = id_from_pk(&PublicKey::from_secret_key(SECP256K1, &self.secret_key));
        let fields: [&dyn Encodable; 4] =
            [&sig.as_slice(), &our_id.as_slice(), &self.nonce.as_slice(), &HANDSHAKE_VERSION];
        let packet = seal_eip8(self.remote_pk()?, &rlp_list(&fields));
        Ok(self.remember_sent(packet))
    }

    /// Builds a legacy (pre-EIP-8) auth packet; only old peers and our tests need it.
    pub fn create_auth_legacy(&mut self) -> Result<Vec<u8>, EciesError> {
        let mut plain = Vec::with_capacity(194);
        plain.extend_from_slice(&self.auth_signature()?);
        plain.extend_from_slice(keccak256(self.ephemeral_id()).as_slice());
        plain.extend_from_slice(
            id_from_pk(&PublicKey::from_secret_key(SECP256K1, &self.secret_key)).as_slice(),
        );
        plain.extend_from_slice(self.nonce.as_slice());
        plain.push(0);
        let packet = encrypt_message(self.remote_pk()?, &plain, &[]);
        Ok(self.remember_sent(packet))
    }

    /// Keeps our handshake packet for the MAC seed and gives it back to be sent.
    fn remember_sent(&mut self, packet: Vec<u8>) -> Vec<u8> {
        self.init_msg = Some(packet.clone());
        packet
    }

    /// Reads a complete handshake packet in either format: legacy when it has the legacy length
    /// and reads as one (an EIP-8 packet may have that length by chance), EIP-8 otherwise.
    fn read_either(
        &mut self,
        packet: &[u8],
        legacy_len: usize,
        read_legacy: fn(&mut Self, &[u8]) -> Result<(), EciesError>,
        read_eip8: fn(&mut Self, &[u8]) -> Result<(), EciesError>,
    ) -> Result<(), EciesError> {
        if packet.len() == legacy_len && read_legacy(self, packet).is_ok() {
            return Ok(());
        }
        read_eip8(self, packet)
    }

    /// Reads a complete auth packet in either format (EIP-8 with its size prefix, or legacy).
    pub fn read_auth(&mut self, packet: &[u8]) -> Result<(), EciesError> {
        self.read_either(packet, LEGACY_AUTH_LEN, Self::read_auth_legacy, Self::read_auth_eip8)
    }

    /// Reads a legacy 307-byte auth packet.
    pub fn read_auth_legacy(&mut self, packet: &[u8]) -> Result<(), EciesError> {
        let plain = open_legacy(&self.secret_key, packet, "auth plaintext", 194)?;
        let (sig, rest) = plain.split_at(65);
        let (eph_hash, rest) = rest.split_at(32);
        let (id, rest) = rest.split_at(64);
        let nonce = B256::from_slice(&rest[..32]);
        let eph = self.accept_auth(
            sig,
            B512::from_slice(id),
            nonce,
            HANDSHAKE_VERSION,
            HandshakeFormat::Legacy,
        )?;
        if keccak256(id_from_pk(&eph)).as_slice() != eph_hash {
            return Err(EciesError::EphemeralKeyHashMismatch);
        }
        self.remote_init_msg = Some(packet.to_vec());
        Ok(())
    }

    /// Reads an EIP-8 auth packet (2-byte size prefix included).
    pub fn read_auth_eip8(&mut self, packet: &[u8]) -> Result<(), EciesError> {
        let plain = open_eip8(&self.secret_key, packet)?;
        let mut body = rlp_list_payload(&plain)?;
        let sig = decode_fixed(&mut body, "signature", 65)?;
        let id = decode_fixed(&mut body, "initiator public key", 64)?;
        let nonce = decode_fixed(&mut body, "initiator nonce", 32)?;
        let version = u64::decode(&mut body)?;
        // Further list elements and the padding after the list are ignored (EIP-8).
        self.accept_auth(
            sig,
            B512::from_slice(id),
            B256::from_slice(nonce),
            version,
            HandshakeFormat::Eip8,
        )?;
        self.remote_init_msg = Some(packet.to_vec());
        Ok(())
    }

    fn accept_auth(
        &mut self,
        sig: &[u8],
        id: PeerId,
        nonce: B256,
        version: u64,
        format: HandshakeFormat,
    ) -> Result<PublicKey, EciesError> {
        let remote = pk_from_id(&id)?;
        let static_shared = ecdh_x(&remote, &self.secret_key);
        let rec = RecoveryId::try_from(i32::from(sig[64]))?;
        let sig = RecoverableSignature::from_compact(&sig[..64], rec)?;
        let eph = SECP256K1.recover_ecdsa(Message::from_digest((static_shared ^ nonce).0), &sig)?;
        self.remote_public_key = Some(remote);
        self.remote_ephemeral_public_key = Some(eph);
        self.remote_nonce = Some(nonce);
        self.remote_version = Some(version);
        self.remote_format = Some(format);
        Ok(eph)
    }

    /// Builds our ack: EIP-8 unless the remote's auth was legacy (then legacy, as go-ethereum
    /// did while both formats were in use).
    pub fn create_ack(&mut self) -> Result<Vec<u8>, EciesError> {
        let remote = *self.remote_pk()?;
        let eph = self.ephemeral_id();
        let packet = if self.remote_format == Some(HandshakeFormat::Legacy) {
            let mut plain = Vec::with_capacity(97);
            plain.extend_from_slice(eph.as_slice());
            plain.extend_from_slice(self.nonce.as_slice());
            plain.push(0);
            encrypt_message(&remote, &plain, &[])
        } else {
            let fields: [&dyn Encodable; 3] =
                [&eph.as_slice(), &self.nonce.as_slice(), &HANDSHAKE_VERSION];
            seal_eip8(&remote, &rlp_list(&fields))
        };
        Ok(self.remember_sent(packet))
    }

    /// Reads a complete ack packet in either format.
    pub fn read_ack(&mut self, packet: &[u8]) -> Result<(), EciesError> {
        self.read_either(packet, LEGACY_ACK_LEN, Self::read_ack_legacy, Self::read_ack_eip8)
    }

    /// Reads a legacy 210-byte ack packet.
    pub fn read_ack_legacy(&mut self, packet: &[u8]) -> Result<(), EciesError> {
        let plain = open_legacy(&self.secret_key, packet, "ack plaintext", 97)?;
        self.accept_ack(&plain[..64], &plain[64..96], HANDSHAKE_VERSION, HandshakeFormat::Legacy)?;
        self.remote_init_msg = Some(packet.to_vec());
        Ok(())
    }

    /// Reads an EIP-8 ack packet (2-byte size prefix included).
    pub fn read_ack_eip8(&mut self, packet: &[u8]) -> Result<(), EciesError> {
        let plain = open_eip8(&self.secret_key, packet)?;
        let mut body = rlp_list_payload(&plain)?;
        let eph = decode_fixed(&mut body, "recipient ephemeral key", 64)?;
        let nonce = decode_fixed(&mut body, "recipient nonce", 32)?;
        let version = u64::decode(&mut body)?;
        self.accept_ack(eph, nonce, version, HandshakeFormat::Eip8)?;
        self.remote_init_msg = Some(packet.to_vec());
        Ok(())
    }

    fn accept_ack(
        &mut self,
        eph: &[u8],
        nonce: &[u8],
        version: u64,
        format: HandshakeFormat,
    ) -> Result<(), EciesError> {
        self.remote_ephemeral_public_key = Some(pk_from_id(&B512::from_slice(eph))?);
        self.remote_nonce = Some(B256::from_slice(nonce));
        self.remote_version = Some(version);
        self.remote_format = Some(format);
        Ok(())
    }

    /// The session secrets; needs our packet sent and the remote's packet read.
    pub fn secrets(&self) -> Result<Secrets, EciesError> {
        let remote_eph = self
            .remote_ephemeral_public_key
            .as_ref()
            .ok_or(EciesError::IncompleteHandshake("remote ephemeral key"))?;
        let remote_nonce =
            self.remote_nonce.ok_or(EciesError::IncompleteHandshake("remote nonce"))?;
        let init = self.init_msg.as_deref().ok_or(EciesError::IncompleteHandshake("our packet"))?;
        let remote_init = self
            .remote_init_msg
            .as_deref()
            .ok_or(EciesError::IncompleteHandshake("remote packet"))?;
        let ecdhe = ecdh_x(remote_eph, &self.ephemeral_secret_key);
        let (initiator_nonce, recipient_nonce) =
            if self.initiator { (self.nonce, remote_nonce) } else { (remote_nonce, self.nonce) };
        let (aes_secret, mac_secret) = derive_secrets(ecdhe, initiator_nonce, recipient_nonce);
        Ok(Secrets {
            aes_secret,
            mac_secret,
            egress_mac: initial_mac(mac_secret, remote_nonce, init),
            ingress_mac: initial_mac(mac_secret, self.nonce, remote_init),
        })
    }
}

/// A fresh random ephemeral key and nonce for one handshake.
fn random_ephemeral() -> (SecretKey, B256) {
    let mut rng = rand::rng();
    (SecretKey::new(&mut rng), B256::from(rng.random::<[u8; 32]>()))
}

fn check_len(field: &'static str, got: usize, expected: usize) -> Result<(), EciesError> {
    if got == expected { Ok(()) } else { Err(EciesError::BadFieldLength { field, got, expected }) }
}

/// The RLP list of `fields`.
fn rlp_list(fields: &[&dyn Encodable]) -> Vec<u8> {
    let mut out = Vec::new();
    alloy_rlp::encode_list::<_, dyn Encodable>(fields, &mut out);
    out
}

/// Pads an RLP body with random bytes and ECIES-encrypts it behind its 2-byte size prefix.
fn seal_eip8(remote: &PublicKey, body: &[u8]) -> Vec<u8> {
    let mut rng = rand::rng();
    let mut plain = body.to_vec();
    let pad = rng.random_range(MIN_PADDING..=MAX_PADDING);
    plain.extend((0..pad).map(|_| rng.random::<u8>()));
    let size = (plain.len() + ECIES_OVERHEAD) as u16;
    let prefix = size.to_be_bytes();
    let mut out = prefix.to_vec();
    out.extend_from_slice(&encrypt_message(remote, &plain, &prefix));
    out
}

/// The announced total length of an EIP-8 packet (prefix included), checked against
/// [`MAX_HANDSHAKE_PACKET_SIZE`].
pub fn eip8_packet_len(prefix: [u8; 2]) -> Result<usize, EciesError> {
    let size = u16::from_be_bytes(prefix) as usize;
    if size > MAX_HANDSHAKE_PACKET_SIZE {
        return Err(EciesError::HandshakePacketTooLarge { size, limit: MAX_HANDSHAKE_PACKET_SIZE });
    }
    Ok(size + 2)
}

/// Decrypts a legacy packet, whose plaintext has a fixed length.
fn open_legacy(
    secret: &SecretKey,
    packet: &[u8],
    field: &'static str,
    len: usize,
) -> Result<Vec<u8>, EciesError> {
    let plain = decrypt_message(secret, packet, &[])?;
    check_len(field, plain.len(), len)?;
    Ok(plain)
}

/// Decrypts an EIP-8 packet behind its 2-byte size prefix.
fn open_eip8(secret: &SecretKey, packet: &[u8]) -> Result<Vec<u8>, EciesError> {
    if packet.len() < 2 {
        return Err(EciesError::MessageTooShort(packet.len()));
    }
    let total = eip8_packet_len([packet[0], packet[1]])?;
    if packet.len() != total {
        return Err(EciesError::BadFieldLength {
            field: "EIP-8 packet",
            got: packet.len(),
            expected: total,
        });
    }
    decrypt_message(secret, &packet[2..], &packet[..2])
}

/// The payload of the RLP list at the start of `plain`; trailing padding is ignored.
fn rlp_list_payload(plain: &[u8]) -> Result<&[u8], EciesError> {
    let mut buf = plain;
    Ok(Header::decode_bytes(&mut buf, true)?)
}

fn decode_fixed<'a>(
    buf: &mut &'a [u8],
    field: &'static str,
    len: usize,
) -> Result<&'a [u8], EciesError> {
    let bytes = Header::decode_bytes(buf, false)?;
    check_len(field, bytes.len(), len)?;
    Ok(bytes)
}
