//! Trie-node decoding (`DecodedNode::decode`, what sync and heal run on every node a peer sends):
//! any bytes, no panic; a node that decodes re-encodes to exactly the input (the decoder accepts
//! only the canonical encoding) and decodes again to an equal node.
#![no_main]

use leafsync_leafdb::trie::DecodedNode;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(node) = DecodedNode::decode(data) else { return };
    match &node {
        DecodedNode::Leaf { key, .. } => assert!(key.len() <= 64),
        DecodedNode::Extension { key, child } => {
            assert!(!key.is_empty() && key.len() <= 64);
            assert!(child.len() < 32 || child.as_hash().is_some());
        }
        DecodedNode::Branch { children, value } => {
            for child in children.iter().flatten() {
                assert!(child.len() < 32 || child.as_hash().is_some());
            }
            assert!(value.as_ref().is_none_or(|v| !v.is_empty()));
        }
    }
    let mut again = Vec::new();
    node.encode(&mut again);
    assert_eq!(again, data, "re-encoding differs from the accepted node");
    assert_eq!(DecodedNode::decode(&again).expect("re-decodes"), node);
});
