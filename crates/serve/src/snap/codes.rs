//! `GetByteCodes` → `ByteCodes`.

use alloy_primitives::{Bytes, KECCAK256_EMPTY, keccak256};
use leafsync_leafdb::{KvStore, LeafDb};
use leafsync_p2p::snap::{ByteCodes, GetByteCodes, protocol::MAX_CODE_LOOKUPS};

use super::{byte_budget, deadline, expired, reader};

/// Answers `GetByteCodes`: the codes found, in request order, unknown hashes left out; the
/// empty code for its hash without a lookup (repeated hashes answered repeatedly); at most
/// [`MAX_CODE_LOOKUPS`] hashes looked at; stops once the codes passed the byte budget.
pub fn answer_byte_codes<S: KvStore>(db: &LeafDb<S>, req: &GetByteCodes) -> ByteCodes {
    let mut out = ByteCodes { request_id: req.request_id, codes: Vec::new() };
    let Some(view) = reader(db) else { return out };
    let budget = byte_budget(req.bytes);
    let until = deadline();
    let mut size = 0u64;
    for hash in req.hashes.iter().take(MAX_CODE_LOOKUPS) {
        if *hash == KECCAK256_EMPTY {
            out.codes.push(Bytes::new());
        } else {
            match view.code(hash) {
                // Only a code that hashes to what was asked (a corrupt row is not served).
                Ok(Some(code)) if !code.is_empty() && keccak256(&code) == *hash => {
                    size += code.len() as u64;
                    out.codes.push(code.into());
                }
                Ok(_) => {}
                Err(error) => {
                    crate::log::serve_warn!(%error, "snap/1: reading codes failed; answering what we have");
                    break;
                }
            }
        }
        if size > budget || expired(until) {
            break;
        }
    }
    out
}
