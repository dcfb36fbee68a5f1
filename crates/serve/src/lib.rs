//! `leaf/1` serving: pure request → response functions over a leafdb snapshot (chunks, storage
//! chunks, trie nodes, codes) with byte, count and time budgets and a response cache.
//!
//! Not implemented yet: this crate is planned by the serve issue and deliberately holds no code,
//! so nothing can depend on behaviour that does not exist.
