//! The RLPx frame MAC: a running keccak256 state, seeded from the handshake, updated with
//! AES-256 (one ECB block) of the MAC secret as the devp2p RLPx spec prescribes.

use aes::{
    Aes256Enc,
    cipher::{BlockEncrypt, KeyInit},
};
use alloy_primitives::{B256, Keccak256};

/// Length of a header MAC and of a frame MAC on the wire.
pub const MAC_LEN: usize = 16;

/// One direction's MAC state (ingress or egress).
#[derive(Clone)]
pub struct Mac {
    cipher: Aes256Enc,
    hasher: Keccak256,
}

impl std::fmt::Debug for Mac {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mac").finish_non_exhaustive()
    }
}

impl Mac {
    /// A fresh MAC state keyed with `mac_secret`, with nothing hashed yet.
    pub fn new(mac_secret: B256) -> Self {
        Self { cipher: Aes256Enc::new(mac_secret.as_slice().into()), hasher: Keccak256::new() }
    }

    /// Absorbs raw bytes (used for the initial seed: `(mac-secret ^ nonce) || packet`).
    pub fn update(&mut self, data: &[u8]) {
        self.hasher.update(data);
    }

    /// Full 32-byte keccak256 digest of everything absorbed so far (the state is kept).
    pub fn digest(&self) -> B256 {
        self.hasher.clone().finalize()
    }

    /// The 16-byte MAC value the wire carries: the first half of [`Mac::digest`].
    pub fn mac(&self) -> [u8; MAC_LEN] {
        let mut out = [0u8; MAC_LEN];
        out.copy_from_slice(&self.digest()[..MAC_LEN]);
        out
    }

    /// Header update: `seed = aes(mac-secret, digest[..16]) ^ header-ciphertext`.
    pub fn update_header(&mut self, header_ciphertext: &[u8; 16]) {
        let mut seed = self.encrypted_digest();
        for (s, h) in seed.iter_mut().zip(header_ciphertext) {
            *s ^= h;
        }
        self.hasher.update(seed);
    }

    /// Body update: absorb the frame ciphertext, then
    /// `seed = aes(mac-secret, digest[..16]) ^ digest[..16]`.
    pub fn update_body(&mut self, body_ciphertext: &[u8]) {
        self.hasher.update(body_ciphertext);
        let prev = self.mac();
        let mut seed = self.encrypted_digest();
        for (s, p) in seed.iter_mut().zip(prev) {
            *s ^= p;
        }
        self.hasher.update(seed);
    }

    fn encrypted_digest(&self) -> [u8; 16] {
        let mut block = self.mac().into();
        self.cipher.encrypt_block(&mut block);
        block.into()
    }
}
