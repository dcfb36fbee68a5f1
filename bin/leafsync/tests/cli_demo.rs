//! `leafsync demo`, as the README runs it (on a smaller state).
#![allow(clippy::unwrap_used)] // tests fail loudly on bad fixtures

use std::process::Command;

#[test]
fn demo_syncs_a_client_from_several_servers_and_checks_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_leafsync"))
        .args([
            "demo",
            "--accounts",
            "3000",
            "--servers",
            "2",
            "--workdir",
            dir.path().to_str().unwrap(),
        ])
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("2 servers, 1 client, 3000 accounts"), "{stdout}");
    assert!(stdout.contains("(equal)") && stdout.contains("equal to the servers'"), "{stdout}");
    // The demo cleans up after itself.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}
