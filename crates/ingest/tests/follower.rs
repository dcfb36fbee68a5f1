//! Follower behaviour that needs no execution client.

#![allow(clippy::unwrap_used)] // tests fail loudly on bad fixtures

use std::sync::Arc;

use leafsync_ingest::{Follower, FollowerConfig, IngestError};
use leafsync_leafdb::LeafDb;

#[tokio::test]
async fn an_empty_leafdb_without_genesis_is_fatal() {
    let db = Arc::new(LeafDb::in_memory());
    // Never contacted: the leafdb is checked first.
    let follower = Follower::new(db, FollowerConfig::new("http://127.0.0.1:9")).unwrap();
    let (_stop, stopped) = tokio::sync::watch::channel(false);
    let err = follower.run(stopped).await.unwrap_err();
    assert!(matches!(err, IngestError::NoState), "{err}");
}

#[test]
fn only_plain_http_and_ws_urls() {
    let db = Arc::new(LeafDb::in_memory());
    for url in ["https://127.0.0.1:8545", "wss://127.0.0.1:8546", "127.0.0.1:8545", "ipc:///tmp/x"]
    {
        let err = Follower::new(Arc::clone(&db), FollowerConfig::new(url)).unwrap_err();
        assert!(matches!(err, IngestError::UnsupportedUrl(_)), "{url}: {err}");
    }
}
