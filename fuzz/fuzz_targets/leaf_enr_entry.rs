//! The `leaf` ENR entry as discovery reads it from a record (`get_decodable`: one RLP item, extra
//! list elements and trailing bytes ignored): no panic, and what decodes re-encodes to the three
//! known fields, which decode again equal. An entry that decodes is then put in a signed record
//! and run through `dial_candidate`, whose verdict must agree with the decoded fields.
#![no_main]

use alloy_rlp::{Decodable, Encodable};
use leafsync_p2p::{
    chain::{ChainSpec, Enr},
    discovery::{Incompatible, LEAF_ENR_KEY, LeafEnrEntry, combined_key, dial_candidate},
};
use libfuzzer_sys::fuzz_target;
use std::{net::Ipv4Addr, sync::LazyLock};

static KEY: LazyLock<enr::CombinedKey> = LazyLock::new(|| {
    combined_key(&secp256k1::SecretKey::from_byte_array([0x42; 32]).expect("valid key"))
        .expect("key converts")
});

/// Our entry: `leaf/1` on mainnet.
static OURS: LazyLock<LeafEnrEntry> = LazyLock::new(|| {
    LeafEnrEntry::for_chain(&ChainSpec::preset("mainnet").expect("preset parses"))
});

fuzz_target!(|data: &[u8]| {
    let Ok(entry) = LeafEnrEntry::decode(&mut &data[..]) else { return };
    let again = alloy_rlp::encode(entry);
    assert_eq!(again.len(), entry.length());
    assert!(again.len() <= data.len(), "the re-encoding only drops extra elements");
    assert_eq!(alloy_rlp::decode_exact::<LeafEnrEntry>(&again).expect("re-decodes"), entry);

    // Signing a record costs far more than decoding, so only entries that decode are put in one
    // (for the others `dial_candidate` only maps the error), and none over the 300 bytes a record
    // may have.
    if data.len() > 300 {
        return;
    }
    let mut builder = Enr::builder();
    builder.ip4(Ipv4Addr::LOCALHOST).udp4(30_303).tcp4(30_303);
    builder.add_value_rlp(LEAF_ENR_KEY, data.to_vec().into());
    let Ok(record) = builder.build(&KEY) else { return };
    match dial_candidate(&record, &OURS) {
        Ok(candidate) => {
            assert_eq!(entry, *OURS);
            assert_eq!(candidate.enr, record);
        }
        Err(why) => {
            assert_ne!(entry, *OURS);
            assert!(!matches!(why, Incompatible::MalformedLeafEntry | Incompatible::NoLeafEntry));
        }
    }
});
