//! Auth packets (EIP-8 and legacy) as a recipient reads them: any bytes, no panic.
#![no_main]

use leafsync_p2p::ecies::Ecies;
use libfuzzer_sys::fuzz_target;
use secp256k1::SecretKey;

fuzz_target!(|data: &[u8]| {
    let key = SecretKey::from_byte_array([0x11; 32]).expect("valid key");
    let mut ecies = Ecies::new_recipient(key);
    if ecies.read_auth(data).is_ok() {
        // a decoded auth must lead to an ack and secrets
        let _ = ecies.create_ack().expect("ack after a valid auth");
        let _ = ecies.secrets().expect("secrets after auth and ack");
    }
});
