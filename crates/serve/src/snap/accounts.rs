//! `GetAccountRange` → `AccountRange`.

use alloy_primitives::B256;
use alloy_rlp::Encodable;
use leafsync_leafdb::{KvStore, LeafDb};
use leafsync_p2p::snap::{
    AccountData, AccountRange, GetAccountRange, SlimAccount, protocol::MAX_ACCOUNTS_PER_RESPONSE,
};

use super::{add_proof, byte_budget, deadline, expired, reader_at};

/// Answers `GetAccountRange` at the leafdb's head: the accounts from `origin` on, in hash order,
/// until one at or past `limit` was sent or the response passed the byte budget (each account
/// costs 32 bytes plus its slim encoding, as geth counts), plus the proofs of `origin` and of the
/// last account sent. Always at least one account when one exists past `origin`. Empty (no
/// accounts, no proof) for any other root or on internal trouble.
pub fn answer_account_range<S: KvStore>(db: &LeafDb<S>, req: &GetAccountRange) -> AccountRange {
    let empty = AccountRange { request_id: req.request_id, ..Default::default() };
    let Some(view) = reader_at(db, req.root) else { return empty };
    let budget = byte_budget(req.bytes);
    let until = deadline();
    let mut accounts = Vec::new();
    let mut size = 0u64;
    for item in view.accounts_from(&req.origin) {
        let (hash, account) = match item {
            Ok(a) => a,
            Err(error) => {
                crate::log::serve_warn!(%error, "snap/1: reading accounts failed; answering empty");
                return empty;
            }
        };
        let slim = SlimAccount::new(
            account.nonce,
            account.balance,
            account.storage_root,
            account.code_hash,
        );
        size += (B256::len_bytes() + slim.length()) as u64;
        accounts.push(AccountData { hash, account: slim });
        if hash >= req.limit
            || size > budget
            || accounts.len() >= MAX_ACCOUNTS_PER_RESPONSE
            || expired(until)
        {
            break;
        }
    }
    let mut proof = Vec::new();
    let edges = std::iter::once(req.origin).chain(accounts.last().map(|a| a.hash));
    for edge in edges {
        match view.prove_account(&edge) {
            Ok(nodes) => add_proof(&mut proof, nodes),
            Err(error) => {
                crate::log::serve_warn!(%error, %edge, "snap/1: proving an account range failed");
                return empty;
            }
        }
    }
    AccountRange { request_id: req.request_id, accounts, proof }
}
