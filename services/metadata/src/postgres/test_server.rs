//! The PostgreSQL server tests run against, and a fresh database per test.
//!
//! `STRATA_TEST_POSTGRES_URL` names a server (e.g. the one `scripts/postgres.sh start DIR`
//! prints) on which the tests may create databases. Without it the PostgreSQL tests are
//! skipped with a note on stderr, unless `STRATA_REQUIRE_POSTGRES=1` makes that a failure.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::io::Write;

use super::{PostgresStore, PostgresUrl};

/// Names the server the PostgreSQL tests use.
pub const URL_VAR: &str = "STRATA_TEST_POSTGRES_URL";
/// Set to `1` to make a missing server a test failure instead of a skip.
pub const REQUIRE_VAR: &str = "STRATA_REQUIRE_POSTGRES";

/// The test server's URL; `None` (after a loud note) when none is configured.
///
/// # Panics
///
/// When no server is configured but `STRATA_REQUIRE_POSTGRES=1`.
pub fn server_url() -> Option<String> {
    if let Ok(url) = std::env::var(URL_VAR) {
        if !url.is_empty() {
            return Some(url);
        }
    }
    if std::env::var(REQUIRE_VAR).is_ok_and(|v| v == "1") {
        panic!(
            "{REQUIRE_VAR}=1 but {URL_VAR} is not set: start a server with \
             `scripts/postgres.sh start DIR` and export the URL it prints"
        );
    }
    // straight to the stream: libtest captures eprintln! of passing tests
    static NOTE: std::sync::Once = std::sync::Once::new();
    NOTE.call_once(|| {
        let _ = writeln!(
            std::io::stderr(),
            "\n!!! SKIPPED: the PostgreSQL store tests did not run: {URL_VAR} is not set. Start \
             a server with `scripts/postgres.sh start DIR` and export the URL it prints; \
             {REQUIRE_VAR}=1 makes this a failure. !!!\n"
        );
    });
    None
}

/// Connection settings for a new, empty database on the test server.
pub async fn fresh_database(server: &str) -> PostgresUrl {
    let name = format!("strata_test_{}", uuid::Uuid::new_v4().simple());
    let mut url = super::create_database(server, &name)
        .await
        .unwrap_or_else(|e| panic!("cannot create a database on {URL_VAR}={server}: {e}"));
    url.pool_size = 8;
    url
}

/// A store on a new, empty database of the test server.
pub async fn fresh_store(server: String) -> PostgresStore {
    PostgresStore::connect_with(fresh_database(&server).await)
        .await
        .expect("connect to the test database")
}
