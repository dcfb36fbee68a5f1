//! Ack packets (EIP-8 and legacy) as an initiator reads them: any bytes, no panic.
#![no_main]

use leafsync_p2p::ecies::{Ecies, algorithm::id_from_pk};
use libfuzzer_sys::fuzz_target;
use secp256k1::{PublicKey, SECP256K1, SecretKey};

fuzz_target!(|data: &[u8]| {
    let ours = SecretKey::from_byte_array([0x11; 32]).expect("valid key");
    let theirs = SecretKey::from_byte_array([0x22; 32]).expect("valid key");
    let remote = id_from_pk(&PublicKey::from_secret_key(SECP256K1, &theirs));
    let mut ecies = Ecies::new_initiator(ours, remote).expect("valid remote");
    let _ = ecies.create_auth().expect("auth");
    if ecies.read_ack(data).is_ok() {
        let _ = ecies.secrets().expect("secrets after auth and ack");
    }
});
