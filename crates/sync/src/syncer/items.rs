//! Work creation against the tables: before an item is queued in [`Work`], the leafdb says
//! whether it is already there (complete, or an older version to heal), and heal roots are
//! persisted as they come and go.
//!
//! [`Work`]: crate::work::Work

use std::sync::Arc;

use alloy_primitives::{B256, keccak256};
use alloy_trie::{EMPTY_ROOT_HASH, Nibbles, TrieAccount};
use leafsync_leafdb::KvStore;

use super::Syncer;
use crate::{
    config::SyncMode,
    error::SyncError,
    import::{StorageCheck, check_account},
    resume::persistent_heal_root,
    tasks::{Owner, Purpose, Unit},
};

/// Whether a new heal root holds its trie open itself or takes over the hold of the unit it
/// replaces.
#[derive(Debug, Clone, Copy)]
pub(super) enum Hold<'a> {
    New,
    Replaces(&'a Unit),
}

impl<S: KvStore + 'static> Syncer<S> {
    /// A chunk to fetch, unless the tables already hold it: a stored top node with the expected
    /// hash means the whole subtrie is there (a restart or an earlier pivot); a stored node with
    /// another hash means an older version of it is there, which heal repairs cheaper than a
    /// download.
    pub(super) fn add_unit(
        &mut self,
        owner: Owner,
        prefix: Nibbles,
        hash: B256,
    ) -> Result<(), SyncError> {
        self.add_unit_of(owner, prefix, hash, false)
    }

    /// [`Self::add_unit`] for a unit whose node is known to be a leaf (`leaf`).
    pub(super) fn add_unit_of(
        &mut self,
        owner: Owner,
        prefix: Nibbles,
        hash: B256,
        leaf: bool,
    ) -> Result<(), SyncError> {
        if self.empty_storage(owner, &prefix, hash)? || self.heal.has_root(owner, prefix) {
            return Ok(());
        }
        let stats = &mut self.reporter.stats;
        match self.db.node(owner.as_ref(), &prefix)? {
            Some(local) if keccak256(&local) == hash => {
                stats.chunks_resumed += 1;
                // In tables that held a complete state its flat entries agree with it, unless
                // a heal a re-pivot cut short wrote it.
                if self.trust.tables_complete && !self.carry.is_suspect(owner, &prefix) {
                    return self.take_up_carried(owner, &prefix);
                }
                return self.resume_complete(owner, prefix, hash);
            }
            Some(_) if self.config.mode == SyncMode::Leaf => {
                stats.chunks_total += 1;
                stats.chunks_done += 1;
                stats.chunks_healed += 1;
                return self.add_heal_root(owner, prefix, hash);
            }
            _ => {}
        }
        stats.chunks_total += 1;
        self.work.add_unit(owner, prefix, hash, leaf);
        Ok(())
    }

    /// The empty root is no node anyone can serve: a storage trie with it is written empty at
    /// once (dropping whatever was there) and never becomes a request. Returns whether `hash`
    /// was the empty root.
    fn empty_storage(
        &mut self,
        owner: Owner,
        prefix: &Nibbles,
        hash: B256,
    ) -> Result<bool, SyncError> {
        if hash != EMPTY_ROOT_HASH {
            return Ok(false);
        }
        if let Some(o) = owner {
            self.db.import_storage_chunk(&o, prefix, &[])?;
        }
        // A record written before this rule may hold such a heal root.
        self.heal_root_finished(owner, prefix, hash)?;
        Ok(true)
    }

    /// A subtrie found complete in the tables: its flat entries are re-derived (a crash may have
    /// come between a heal's last node and its flat rewrite) and its accounts checked.
    pub(super) fn resume_complete(
        &mut self,
        owner: Owner,
        prefix: Nibbles,
        hash: B256,
    ) -> Result<(), SyncError> {
        self.resume_complete_except(owner, prefix, hash, &[])
    }

    /// [`Self::resume_complete`] past the subtries at `kept`, whose flat entries are known to
    /// agree with them (see [`LeafDb::reconcile_accounts`]).
    ///
    /// [`LeafDb::reconcile_accounts`]: leafsync_leafdb::LeafDb::reconcile_accounts
    pub(super) fn resume_complete_except(
        &mut self,
        owner: Owner,
        prefix: Nibbles,
        hash: B256,
        kept: &[Nibbles],
    ) -> Result<(), SyncError> {
        // Flat entries rewritten from stored nodes, not from leaves an import hashed.
        self.trust.wrote_unhashed("flat entries re-derived from the stored trie");
        match owner {
            None => {
                // In tables that held a complete state, an account whose flat entry was already
                // right has its storage and code (the final check scans anyway); not below a
                // heal a crash cut short, which may have rewritten it before marking what it
                // needs ([`crate::carry`]).
                let every =
                    !self.trust.tables_complete || self.carry.checks_every_account(owner, &prefix);
                let db = Arc::clone(&self.db);
                db.reconcile_accounts(&prefix, hash, kept, |hashed, account, changed| {
                    self.reporter.stats.rederived_accounts += 1;
                    if changed || every {
                        self.after_healed_account(hashed, &account)?;
                    }
                    Ok::<_, SyncError>(())
                })?;
            }
            Some(o) => {
                self.db.reconcile_storage(&o, &prefix, hash, kept)?;
            }
        }
        let settled = self.carry.settled(owner, &prefix);
        self.marks.settled(owner, &settled)?;
        self.take_up_carried(owner, &prefix)?;
        // Before a heal root that led here goes: what its accounts need is marked.
        self.marks.flush(&self.db)
    }

    /// The accounts below the account-trie `prefix` have their flat entries current: the
    /// storages a re-pivot carried for them ([`Carry`]) are fetched or healed now where the
    /// stored trie lacks their root.
    ///
    /// [`Carry`]: crate::carry::Carry
    pub(super) fn take_up_carried(
        &mut self,
        owner: Owner,
        prefix: &Nibbles,
    ) -> Result<(), SyncError> {
        if owner.is_some() {
            return Ok(());
        }
        for hashed in self.carry.take_storages_under(prefix) {
            if let Some(account) = self.db.account(&hashed)? {
                self.after_healed_account(hashed, &account)?;
            }
        }
        Ok(())
    }

    /// A skeleton node to fetch.
    pub(super) fn add_expand(&mut self, owner: Owner, path: Nibbles, hash: B256) {
        self.work.add_node(owner, path, hash, Purpose::Expand);
    }

    /// A subtrie to heal from its top node.
    pub(super) fn add_heal_root(
        &mut self,
        owner: Owner,
        path: Nibbles,
        hash: B256,
    ) -> Result<(), SyncError> {
        self.add_heal_root_held(owner, path, hash, Hold::New)
    }

    /// [`Self::add_heal_root`], holding the trie open as `hold` says.
    pub(super) fn add_heal_root_held(
        &mut self,
        owner: Owner,
        path: Nibbles,
        hash: B256,
        hold: Hold<'_>,
    ) -> Result<(), SyncError> {
        if self.empty_storage(owner, &path, hash)? {
            return Ok(());
        }
        self.trust.wrote_unhashed("healed");
        // Heal replaces nodes below `path` before the ones at and above it: those must not stay
        // behind, stale, if this heal is cut short (a pivot move, a crash).
        self.db.forget_path(owner.as_ref(), &path)?;
        self.heal.add_root(owner, path, hash);
        let purpose = Purpose::Heal { parent: None };
        match hold {
            Hold::New => self.work.add_node(owner, path, hash, purpose),
            Hold::Replaces(unit) => self.work.replace(unit, purpose),
        }
        if let Some(root) = persistent_heal_root(owner, &path, hash)? {
            self.db.put_sync_heal_root(&root.key(), hash.as_slice())?;
        }
        Ok(())
    }

    /// A heal root is complete: its persisted entry goes.
    pub(super) fn heal_root_finished(
        &mut self,
        owner: Owner,
        path: &Nibbles,
        hash: B256,
    ) -> Result<(), SyncError> {
        if let Some(root) = persistent_heal_root(owner, path, hash)? {
            self.db.delete_sync_heal_root(&root.key())?;
        }
        Ok(())
    }

    /// One open item of `owner`'s storage trie resolved; the last one writes its skeleton and
    /// unmarks the trie: it is complete, and every suspect in it was re-derived or replaced.
    pub(super) fn close(&mut self, owner: Owner) -> Result<(), SyncError> {
        if let Some((o, nodes)) = self.work.close(owner) {
            if !nodes.is_empty() {
                self.db.write_trie_nodes(Some(&o), &nodes)?;
            }
            self.marks.storage_closed(o);
            let settled = self.carry.settled(owner, &Nibbles::new());
            self.marks.settled(owner, &settled)?;
        }
        Ok(())
    }

    /// Queues (and marks) the code `hash` unless it is empty, already seen or stored; returns
    /// whether it was queued.
    pub(super) fn want_code(&mut self, hash: B256) -> Result<bool, SyncError> {
        let db = &self.db;
        let queued = self.codes.want(hash, |h| Ok(db.code(h)?.is_some()))?;
        if queued {
            self.marks.open_code(hash);
        }
        Ok(queued)
    }

    /// The storage trie of `hashed` is started (and marked open) unless it already was this
    /// pivot; returns whether it was.
    pub(super) fn start_storage(&mut self, hashed: B256) -> bool {
        let started = self.work.start_storage(hashed);
        if started {
            self.marks.open_storage(hashed);
        }
        started
    }

    /// An account of a verified chunk, once written: its storage (see [`check_account`]; its
    /// code was queued and the storage marked before the write, [`Self::before_write`]). The
    /// lie's storage is dropped and fetched again as a unit; returns the lie.
    pub(super) fn after_verified_account(
        &mut self,
        hashed: B256,
        account: &TrieAccount,
        inline_root: Option<B256>,
    ) -> Result<Option<&'static str>, SyncError> {
        let lie = match check_account(account, inline_root) {
            StorageCheck::Complete => return Ok(None),
            StorageCheck::Fetch => None,
            StorageCheck::Lie(why) => {
                // The lie's slots and nodes go; the storage is asked again, from any server
                // (or written empty at once for the empty root).
                self.db.import_storage_chunk(&hashed, &Nibbles::new(), &[])?;
                Some(why)
            }
        };
        if self.work.start_storage(hashed) {
            self.add_unit(Some(hashed), Nibbles::new(), account.storage_root)?;
        }
        Ok(lie)
    }

    /// An account of a verified chunk about to be written: its code is queued and its storage
    /// marked open unless complete inline, so that a crash after the write finds both
    /// ([`crate::marks`]).
    pub(super) fn before_write(
        &mut self,
        hashed: B256,
        account: &TrieAccount,
        inline_root: Option<B256>,
    ) -> Result<(), SyncError> {
        self.want_code(account.code_hash)?;
        if check_account(account, inline_root) != StorageCheck::Complete {
            self.marks.open_storage(hashed);
        }
        Ok(())
    }

    /// An account re-derived from a healed subtrie: fetch or heal its storage unless the stored
    /// storage trie already has its root; fetch its code.
    pub(super) fn after_healed_account(
        &mut self,
        hashed: B256,
        account: &TrieAccount,
    ) -> Result<(), SyncError> {
        self.want_code(account.code_hash)?;
        let stored = self.db.stored_storage_root(&hashed)?;
        if stored == account.storage_root || !self.start_storage(hashed) {
            return Ok(());
        }
        if account.storage_root == EMPTY_ROOT_HASH {
            self.db.import_storage_chunk(&hashed, &Nibbles::new(), &[])?;
        } else if self.config.mode == SyncMode::Leaf && stored == EMPTY_ROOT_HASH {
            self.add_unit(Some(hashed), Nibbles::new(), account.storage_root)?;
        } else {
            self.add_heal_root(Some(hashed), Nibbles::new(), account.storage_root)?;
        }
        Ok(())
    }
}
