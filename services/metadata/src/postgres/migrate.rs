//! Versioned schema migrations, applied when a [`super::PostgresStore`] connects.
//!
//! Invariants:
//! - Migration `n` is applied at most once, in one transaction that also records `n` in
//!   `schema_migrations`; a failed migration leaves nothing behind.
//! - Every migration transaction first takes a transaction-scoped advisory lock
//!   ([`MIGRATION_LOCK`]), so processes starting together apply each migration once: the
//!   others wait, then see it recorded. The lock ends with the transaction, so a crashed
//!   process never leaves it held.
//! - A database whose schema is newer than this build knows is refused: an old binary
//!   must not write into tables it does not understand.
//!
//! Migrations are append-only: a released file is never edited; a change is a new file.

use deadpool_postgres::{Client, GenericClient};

use super::error::PgError;
use crate::store::StoreError;

/// One schema change.
#[derive(Debug, Clone, Copy)]
pub(super) struct Migration {
    /// Version, starting at 1, one more than the previous migration's.
    pub version: i64,
    /// What it does, recorded beside the version.
    pub name: &'static str,
    /// The SQL, run as one batch.
    pub sql: &'static str,
}

/// Every migration, in order.
pub(super) const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "initial schema",
        sql: include_str!("migrations/0001_initial.sql"),
    },
    Migration {
        version: 2,
        name: "leader lease",
        sql: include_str!("migrations/0002_leader_lease.sql"),
    },
    Migration {
        version: 3,
        name: "retention: unreferenced objects",
        sql: include_str!("migrations/0003_retention.sql"),
    },
];

/// The schema version this build writes: the last migration's.
pub const SCHEMA_VERSION: i64 = MIGRATIONS[MIGRATIONS.len() - 1].version;

/// Advisory lock key held while migrating ("STRATA" + "M1" in ASCII).
const MIGRATION_LOCK: i64 = 0x5354_5241_5441_4d31;

const CREATE_HISTORY: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (
    version BIGINT PRIMARY KEY,
    name TEXT NOT NULL,
    applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
)";

/// Applies every pending migration; returns the schema version now in force.
pub(super) async fn migrate(client: &mut Client) -> Result<i64, PgError> {
    loop {
        let tx = client.transaction().await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await?;
        // no "already exists, skipping" notices in the logs at every start
        tx.batch_execute("SET LOCAL client_min_messages = warning")
            .await?;
        tx.batch_execute(CREATE_HISTORY).await?;
        let current = applied_version(&tx).await?;
        if current > SCHEMA_VERSION {
            return Err(PgError::Store(StoreError::Database(format!(
                "the metadata database has schema version {current}, newer than this build's \
                 {SCHEMA_VERSION}; run a newer strata"
            ))));
        }
        let Some(next) = MIGRATIONS.iter().find(|m| m.version > current) else {
            tx.commit().await?;
            return Ok(current);
        };
        tx.batch_execute(next.sql).await?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
            &[&next.version, &next.name],
        )
        .await?;
        tx.commit().await?;
        tracing::info!(
            version = next.version,
            name = next.name,
            "applied metadata schema migration"
        );
    }
}

/// The newest version recorded in `schema_migrations` (0 when none is).
pub(super) async fn applied_version(client: &impl GenericClient) -> Result<i64, PgError> {
    let row = client
        .query_one(
            "SELECT COALESCE(max(version), 0)::BIGINT FROM schema_migrations",
            &[],
        )
        .await?;
    Ok(row.get(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_count_up_from_one() {
        assert_eq!(MIGRATIONS[0].version, 1);
        // strictly increasing; version 2 is the leader lease
        for pair in MIGRATIONS.windows(2) {
            assert!(
                pair[1].version > pair[0].version,
                "migration {:?}",
                pair[1].name
            );
        }
    }
}
