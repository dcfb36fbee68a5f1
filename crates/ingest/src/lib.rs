//! Following the neighbouring execution client over JSON-RPC: new heads, per-block state diffs
//! (`debug_traceBlockByNumber` with the prestate tracer in diff mode) and withdrawals, applied to
//! the leafdb block by block.
//!
//! Not implemented yet: this crate is planned by the ingest issue and deliberately holds no code,
//! so nothing can depend on behaviour that does not exist.
