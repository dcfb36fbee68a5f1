//! The records a sync persists in the leafdb and reads back on restart: `SyncProgress` (version
//! byte + RLP, versions 1 to 3) and the heal-root entries (`HealRoot::from_entry`, whose key is
//! also a suspect mark's; the first input byte splits the rest into key and value). No panic; a
//! decoded progress re-encodes (as version 3 if marked, else 2, without the heal roots) to bytes
//! that decode equal, a version-2 or 3 record re-encodes exactly, and every heal root roundtrips
//! through its entry.
#![no_main]

use leafsync_sync::{HealRoot, PROGRESS_VERSION, SyncProgress};
use libfuzzer_sys::fuzz_target;

fn check_root(root: &HealRoot) {
    let key = root.key();
    let again = HealRoot::from_entry(&key, root.hash.as_slice()).expect("entry roundtrips");
    assert_eq!(&again, root);
}

fuzz_target!(|data: &[u8]| {
    if let Ok(progress) = SyncProgress::decode(data) {
        let again = progress.encode();
        assert_eq!(again[0], if progress.marked { PROGRESS_VERSION } else { 2 });
        if data[0] >= 2 {
            assert_eq!(again, data, "re-encoding differs from the accepted record");
        }
        let back = SyncProgress::decode(&again).expect("re-decodes");
        assert_eq!(back, SyncProgress { heal_roots: Vec::new(), ..progress.clone() });
        progress.heal_roots.iter().for_each(check_root);
    }

    if let Some((&split, rest)) = data.split_first() {
        let (key, value) = rest.split_at(usize::from(split).min(rest.len()));
        if let Ok(root) = HealRoot::from_entry(key, value) {
            assert_eq!(root.key(), key, "re-encoded key differs from the accepted key");
            assert_eq!(root.hash.as_slice(), value);
            check_root(&root);
        }
    }
});
