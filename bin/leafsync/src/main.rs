//! The `leafsync` binary: a thin shell over its library (`lib.rs`).

use std::process::ExitCode;

/// jemalloc for every allocation of the process, RocksDB's included: see the workspace manifest.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    leafsync::main()
}
