//! Steps 1 and 3 of [`LeafDb::apply_block`] for the account trie: split under its root branch
//! into sixteen parts, each loaded on the paths thread and handed on at once, then changed,
//! committed and staged on whichever of the block's two threads takes it, and the root joined
//! over them (docs/leafdb.md, "Applying a block").

use std::{
    collections::BTreeMap,
    sync::{
        Arc, Mutex, PoisonError,
        mpsc::{Receiver, Sender},
    },
    time::{Duration, Instant},
};

use alloy_primitives::B256;
use alloy_trie::{EMPTY_ROOT_HASH, Nibbles, TrieAccount, nodes::RlpNode};

use super::{ApplyOutcome, Loaded, PlannedAccount, Replaced, stage_commit, wipe_storage};
use crate::{
    db::LeafDb,
    diff::AccountChange,
    error::{LeafDbError, Result},
    kv::{KvStore, Table, WriteBatch},
    schema::{decode_account, encode_account},
    trie::{NodeSource, RootBranch, TrieCommit, TrieUpdate},
};

/// The account trie as steps 1 and 2 leave it.
pub(super) enum AccountTrie<'d, 'n, N: ?Sized> {
    /// Split under its root branch (every state past a few accounts), each root child's part
    /// already changed, committed and staged ([`stage_part`]) on one of the block's two threads.
    Split { root: RootBranch, parts: Vec<StagedPart<'d>> },
    /// A root that is no branch (an empty or tiny state): loaded whole, changed in step 3.
    Whole { update: TrieUpdate<'n, N>, accounts: Vec<PlannedAccount<'d>> },
}

impl<'d, N: ?Sized> AccountTrie<'d, '_, N> {
    /// A split trie with `more` staged parts (the block's thread's) beside the paths thread's,
    /// all in nibble order.
    pub(super) fn with_parts(self, mut more: Vec<StagedPart<'d>>) -> Self {
        match self {
            Self::Split { root, parts } => {
                more.extend(parts);
                more.sort_unstable_by_key(|part| part.nibble);
                Self::Split { root, parts: more }
            }
            whole => whole,
        }
    }
}

/// [`TrieUpdate::split_root`]'s answer: the root branch and its sixteen parts, or the update
/// of a root that is no branch.
pub(super) type SplitTrie<'n, N> =
    std::result::Result<(RootBranch, Vec<TrieUpdate<'n, N>>), TrieUpdate<'n, N>>;

/// One root child's part of the account trie, its paths loaded, with its changed accounts (in
/// key order) and their old records.
pub(super) struct AccountPart<'d, 'n, N: ?Sized> {
    update: TrieUpdate<'n, N>,
    accounts: Vec<PlannedAccount<'d>>,
}

/// A part changed and committed: its reference in the root, its commit, and what it stages: the
/// flat accounts, and apart from them the trie nodes (dropped if the root does not stay a
/// branch, when the accounts are set again in a whole update).
pub(super) struct StagedPart<'d> {
    nibble: u8,
    reference: Option<RlpNode>,
    commit: TrieCommit,
    flat: WriteBatch,
    nodes: WriteBatch,
    /// The nodes `nodes` writes and deletes ([`stage_commit`]).
    nodes_counted: (usize, usize),
    accounts: Vec<PlannedAccount<'d>>,
}

impl<S: KvStore> LeafDb<S> {
    /// Step 1 for the account trie, on a thread of its own: splits the trie under its root and,
    /// one root child at a time in key order, reads its changed accounts' old records (one
    /// batched read) and loads the paths to them (an existing account's record is its leaf's
    /// value, so its leaf is not looked for in the flat table), and sends the part to be
    /// changed and staged. Then stages parts itself, from when the storage roots come. A root
    /// that is no branch is loaded whole. Returns the trie and when its last path was loaded.
    pub(super) fn load_account_paths<'d, 'n, N: NodeSource + ?Sized>(
        &self,
        hashed: &BTreeMap<B256, &'d AccountChange>,
        split: SplitTrie<'n, N>,
        parts_tx: Sender<AccountPart<'d, 'n, N>>,
        roots_rx: &Receiver<Arc<BTreeMap<B256, B256>>>,
        parts_rx: &Mutex<Receiver<AccountPart<'d, 'n, N>>>,
        started: Instant,
    ) -> Result<(AccountTrie<'d, 'n, N>, Duration)> {
        let (root, updates) = match split {
            Ok(split) => split,
            Err(mut update) => {
                let entries: Vec<_> = hashed.iter().map(|(k, c)| (*k, *c)).collect();
                let accounts = self.touch_accounts(&mut update, &entries)?;
                return Ok((AccountTrie::Whole { update, accounts }, started.elapsed()));
            }
        };
        let mut entries = hashed.iter().map(|(k, c)| (*k, *c)).peekable();
        for (nibble, mut update) in (0u8..).zip(updates) {
            let mut mine = Vec::new();
            while let Some(entry) = entries.next_if(|(k, _)| k[0] >> 4 == nibble) {
                mine.push(entry);
            }
            let accounts = self.touch_accounts(&mut update, &mine)?;
            if parts_tx.send(AccountPart { update, accounts }).is_err() {
                break;
            }
        }
        drop(parts_tx);
        let loaded = started.elapsed();
        let parts = match roots_rx.recv() {
            Ok(roots) => stage_parts(parts_rx, &roots)?,
            // This block's thread failed before the storage roots: it returns its error.
            Err(_) => Vec::new(),
        };
        Ok((AccountTrie::Split { root, parts }, loaded))
    }

    /// Reads the old records of `accounts` (in key order; one batched read) and loads the paths
    /// to them in `update`. Returns them with their old records.
    fn touch_accounts<'d, N: NodeSource + ?Sized>(
        &self,
        update: &mut TrieUpdate<'_, N>,
        accounts: &[(B256, &'d AccountChange)],
    ) -> Result<Vec<PlannedAccount<'d>>> {
        let keys: Vec<&[u8]> = accounts.iter().map(|(k, _)| k.as_slice()).collect();
        let olds = self.store().multi_get(Table::Accounts, &keys)?;
        let mut planned = Vec::with_capacity(accounts.len());
        for (&(haddr, change), old) in accounts.iter().zip(olds) {
            update.touch(&Nibbles::unpack(haddr), old.as_deref())?;
            planned.push((haddr, change, old.map(|b| decode_account(&b)).transpose()?));
        }
        Ok(planned)
    }
}

/// Step 3: the account trie's commit and every node encoding the block replaced. A split trie's
/// parts are staged already: its root is joined over them and everything staged in key order
/// (the root, then each part's flat accounts and nodes). A trie that is no branch at its root,
/// or whose root does not stay one, has its accounts staged and set here (`nodes` and `root`:
/// where it is read from).
pub(super) fn stage_accounts<N: NodeSource + ?Sized>(
    loaded: Loaded<'_, '_, N>,
    nodes: &N,
    root: B256,
    batch: &mut WriteBatch,
    outcome: &mut ApplyOutcome,
) -> Result<(TrieCommit, Replaced)> {
    let Loaded { account_trie, storage_roots, mut replaced } = loaded;
    // What to stage: a commit, then whole batches, then parts (each its flat accounts and
    // nodes, its commit appended to the first).
    let (mut commit, batches, parts) = match account_trie {
        AccountTrie::Whole { mut update, accounts } => {
            let mut flat = WriteBatch::default();
            stage_account_records(&mut update, &accounts, &storage_roots, &mut flat)?;
            (update.commit()?, vec![flat], Vec::new())
        }
        AccountTrie::Split { root: branch, parts } => {
            let mut refs: [Option<RlpNode>; 16] = Default::default();
            for part in &parts {
                refs[usize::from(part.nibble)].clone_from(&part.reference);
            }
            match branch.join(&refs)? {
                Some(root_commit) => (root_commit, Vec::new(), parts),
                None => {
                    // The root keeps fewer than two children: the parts' flat accounts stand,
                    // their nodes are made again by one whole update.
                    let mut update = TrieUpdate::new(nodes, root);
                    let mut scratch = WriteBatch::default();
                    let mut flat = Vec::with_capacity(parts.len());
                    for part in parts {
                        let accounts = &part.accounts;
                        stage_account_records(&mut update, accounts, &storage_roots, &mut scratch)?;
                        flat.push(part.flat);
                    }
                    (update.commit()?, flat, Vec::new())
                }
            }
        }
    };
    outcome.count_nodes(stage_commit(batch, None, &commit));
    for staged in batches {
        batch.append(staged);
    }
    for part in parts {
        batch.append(part.flat);
        batch.append(part.nodes);
        outcome.count_nodes(part.nodes_counted);
        commit.append(part.commit);
    }
    replaced.append(&mut commit.replaced);
    Ok((commit, replaced))
}

/// Stages every account of `accounts` in `flat` (deleted with its storage, or written with its
/// new storage root from `storage_roots`, else its old one; its storage was staged in step 2)
/// and sets it in `update`.
fn stage_account_records<N: NodeSource + ?Sized>(
    update: &mut TrieUpdate<'_, N>,
    accounts: &[PlannedAccount<'_>],
    storage_roots: &BTreeMap<B256, B256>,
    flat: &mut WriteBatch,
) -> Result<()> {
    for (haddr, change, old) in accounts {
        let AccountChange::Updated(u) = change else {
            if old.is_some() {
                wipe_storage(flat, haddr);
                flat.delete(Table::Accounts, haddr.as_slice());
            }
            update.delete(&Nibbles::unpack(haddr))?;
            continue;
        };
        let storage_root = match storage_roots.get(haddr) {
            Some(root) => *root,
            None => old.map_or(EMPTY_ROOT_HASH, |a| a.storage_root),
        };
        let account = TrieAccount {
            nonce: u.nonce,
            balance: u.balance,
            storage_root,
            code_hash: u.code_hash,
        };
        let value = encode_account(&account);
        flat.put(Table::Accounts, haddr.as_slice(), value.clone());
        update.insert(&Nibbles::unpack(haddr), value)?;
    }
    Ok(())
}

/// Takes parts from `parts` until none is left and every sender is gone, and changes, commits
/// and stages each ([`stage_part`]). Both of a block's threads run this once the storage roots
/// are known, sharing the parts.
pub(super) fn stage_parts<'d, 'n, N: NodeSource + ?Sized>(
    parts: &Mutex<Receiver<AccountPart<'d, 'n, N>>>,
    storage_roots: &BTreeMap<B256, B256>,
) -> Result<Vec<StagedPart<'d>>> {
    let mut staged = Vec::new();
    loop {
        let next = parts.lock().unwrap_or_else(PoisonError::into_inner).recv();
        let Ok(part) = next else { return Ok(staged) };
        staged.push(stage_part(part, storage_roots)?);
    }
}

/// One part of the account trie changed, committed and staged (see [`StagedPart`]).
fn stage_part<'d, N: NodeSource + ?Sized>(
    part: AccountPart<'d, '_, N>,
    storage_roots: &BTreeMap<B256, B256>,
) -> Result<StagedPart<'d>> {
    let AccountPart { mut update, accounts } = part;
    let nibble = update
        .path()
        .first()
        .ok_or(LeafDbError::Invariant("an account-trie part without its root child's nibble"))?;
    let mut flat = WriteBatch::default();
    stage_account_records(&mut update, &accounts, storage_roots, &mut flat)?;
    let (reference, commit) = update.commit_subtrie()?;
    let mut nodes = WriteBatch::default();
    let nodes_counted = stage_commit(&mut nodes, None, &commit);
    Ok(StagedPart { nibble, reference, commit, flat, nodes, nodes_counted, accounts })
}
