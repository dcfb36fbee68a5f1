//! `leaf/1` serving, in go-ethereum's snap-handler style: decode, then a pure query over one
//! leafdb snapshot, then send. Every answer is bounded by bytes, items and time
//! ([`config`]); encoded chunks are cached and handed to every client asking for the same prefix
//! ([`cache`]); [`LeafServer::answer`] turns a decoded request into the encoded response that the
//! p2p session sends (it is the session's [`leafsync_p2p::peers::RequestHandler`]).

#![cfg_attr(not(test), warn(unused_crate_dependencies))]

pub mod cache;
pub mod chunk;
pub mod config;
pub mod error;
mod handler;
mod log;
pub mod nodes;
pub mod server;
pub mod snap;

pub use cache::{CacheStats, CachedChunk, ChunkCache, ChunkKey, ChunkKind};
pub use chunk::{ChunkRead, serve_chunk, serve_storage_chunk};
pub use config::{Budget, ServeConfig};
pub use error::ServeError;
pub use log::READ_ERROR_LOG_INTERVAL;
pub use nodes::{serve_codes, serve_nodes};
pub use server::{LeafServer, ServeStats};
