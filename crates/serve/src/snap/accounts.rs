//! `GetAccountRange` → `AccountRange`.

use alloy_primitives::B256;
use alloy_rlp::Encodable;
use alloy_trie::TrieAccount;
use leafsync_leafdb::{KvStore, LeafDb, Result, schema::decode_account};
use leafsync_p2p::snap::{
    AccountData, AccountRange, GetAccountRange, SlimAccount, protocol::MAX_ACCOUNTS_PER_RESPONSE,
};

use super::{add_proof, byte_budget, deadline, expired, reader};

/// Answers `GetAccountRange`: the accounts from `origin` on, in hash order, until one at or past
/// `limit` was sent or the response passed the byte budget (each account costs 32 bytes plus its
/// slim encoding, as geth counts), plus the proofs of `origin` and of the last account sent.
/// Always at least one account when one exists past `origin`. At the leafdb's head root from the
/// flat state; at a recent root (a syncing geth's pivot, 64 blocks or more behind the head) by
/// walking its trie ([`leafsync_leafdb::snap_read::LeavesAt`]), the range ending where a node
/// no longer resolves. Empty (no accounts, no proof) for a root whose trie does not resolve, or
/// on internal trouble.
pub fn answer_account_range<S: KvStore>(db: &LeafDb<S>, req: &GetAccountRange) -> AccountRange {
    let empty = AccountRange { request_id: req.request_id, ..Default::default() };
    let Some(view) = reader(db) else { return empty };
    let at_head = view.root() == req.root;
    let collected = if at_head {
        collect(req, view.accounts_from(&req.origin))
    } else {
        let mut walk = view.leaves_at(None, req.root, &req.origin);
        let decoded =
            walk.by_ref().map(|leaf| leaf.and_then(|(k, v)| Ok((k, decode_account(&v)?))));
        match collect(req, decoded) {
            // A root not held (or a walk cut before its first leaf): no state to give.
            Ok(accounts) if accounts.is_empty() && walk.cut() => return empty,
            other => other,
        }
    };
    let accounts = match collected {
        Ok(accounts) => accounts,
        Err(error) => {
            crate::log::serve_warn!(%error, "snap/1: reading accounts failed; answering empty");
            return empty;
        }
    };
    let mut proof = Vec::new();
    let edges = std::iter::once(req.origin).chain(accounts.last().map(|a| a.hash));
    for edge in edges {
        let nodes =
            if at_head { view.prove_account(&edge) } else { view.prove_at(None, req.root, &edge) };
        match nodes {
            Ok(nodes) => add_proof(&mut proof, nodes),
            Err(error) => {
                crate::log::serve_warn!(%error, %edge, "snap/1: proving an account range failed");
                return empty;
            }
        }
    }
    AccountRange { request_id: req.request_id, accounts, proof }
}

/// The accounts `items` gives, from the origin on, within the request's bounds (see
/// [`answer_account_range`]) and the query time.
fn collect(
    req: &GetAccountRange,
    items: impl Iterator<Item = Result<(B256, TrieAccount)>>,
) -> Result<Vec<AccountData>> {
    let budget = byte_budget(req.bytes);
    let until = deadline();
    let mut accounts = Vec::new();
    let mut size = 0u64;
    for item in items {
        let (hash, account) = item?;
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
    Ok(accounts)
}
