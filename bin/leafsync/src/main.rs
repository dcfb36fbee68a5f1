//! The `leafsync` binary: a thin shell over its library (`lib.rs`).

use std::process::ExitCode;

fn main() -> ExitCode {
    leafsync::main()
}
