//! State sync: pivot selection, skeleton, chunk scheduling across many peers, import and
//! verification against the pivot, heal, persisted progress.
//!
//! Not implemented yet: this crate is planned by the sync issue and deliberately holds no code,
//! so nothing can depend on behaviour that does not exist.
