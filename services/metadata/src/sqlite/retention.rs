//! Log start moves (DeleteRecords, retention) and unreferenced objects, in SQLite.
//!
//! The decisions are [`crate::retention_rules`]'s. Every function runs inside one
//! transaction of the store's single connection, so a trim, the removal of its index rows
//! and the marking of the objects it left unreferenced are one atomic step, and no
//! other write interleaves with it.
//!
//! `unreferenced_objects` holds the keys of committed objects no index row names; its
//! `unreferenced_since_ms` is NULL until the first listing stamps it with the caller's
//! clock, which starts the object's grace period.

use rusqlite::{params, Connection, Transaction};

use super::{db, offsets_of, SqliteStore};
use crate::retention_rules::{
    decide_target, retention_cut, row_time, RetentionRow, TargetDecision, MAX_ROWS_PER_PASS,
};
use crate::store::{
    LogStartOutcome, LogStartTarget, PartitionId, PartitionOffsets, RetentionPolicy, StoreError,
    UnreferencedObject,
};

/// Schema version 2: the unreferenced-object table. Applied after the version 1 schema.
pub(super) const SCHEMA_V2: &str = "
CREATE TABLE IF NOT EXISTS unreferenced_objects (
    object_key TEXT PRIMARY KEY,
    unreferenced_since_ms INTEGER
);
CREATE INDEX IF NOT EXISTS unreferenced_objects_by_time
    ON unreferenced_objects (unreferenced_since_ms);
";

/// Upgrades a version 1 database: besides creating the table, records every committed
/// object that no index row names any more (e.g. the objects of topics deleted before
/// this version), so they are collected too.
pub(super) const UPGRADE_FROM_V1: &str = "
INSERT OR IGNORE INTO unreferenced_objects (object_key, unreferenced_since_ms)
SELECT s.object_key, NULL FROM segments s
WHERE NOT EXISTS (SELECT 1 FROM chunks c WHERE c.object_key = s.object_key);
";

/// Moves the log start to a DeleteRecords target.
pub(super) fn advance(
    tx: &Transaction<'_>,
    p: &PartitionId,
    target: LogStartTarget,
) -> Result<LogStartOutcome, StoreError> {
    let Some(offsets) = offsets_of(tx, p)? else {
        return Ok(LogStartOutcome::UnknownPartition);
    };
    match decide_target(target, offsets) {
        TargetDecision::OutOfRange => Ok(LogStartOutcome::OutOfRange { offsets }),
        TargetDecision::Stay => Ok(unchanged(offsets)),
        TargetDecision::Move(start) => trim(tx, p, offsets, start),
    }
}

/// Applies a retention policy to one partition.
pub(super) fn apply_retention(
    tx: &Transaction<'_>,
    p: &PartitionId,
    policy: RetentionPolicy,
    now_ms: i64,
) -> Result<LogStartOutcome, StoreError> {
    let Some(offsets) = offsets_of(tx, p)? else {
        return Ok(LogStartOutcome::UnknownPartition);
    };
    if policy == RetentionPolicy::default() {
        return Ok(unchanged(offsets));
    }
    let stored_bytes: i64 = match policy.max_bytes {
        Some(_) => tx
            .prepare_cached(
                "SELECT COALESCE(SUM(raw_length), 0) FROM chunks WHERE topic_id = ?1 AND partition = ?2",
            )
            .map_err(db)?
            .query_row(params![&p.topic_id[..], p.partition], |r| r.get(0))
            .map_err(db)?,
        None => 0,
    };
    let mut stmt = tx
        .prepare_cached(
            "SELECT c.end_offset, c.raw_length, c.max_timestamp, s.committed_at_ms
             FROM chunks c LEFT JOIN segments s ON s.object_key = c.object_key
             WHERE c.topic_id = ?1 AND c.partition = ?2 AND c.end_offset > ?3
             ORDER BY c.base_offset LIMIT ?4",
        )
        .map_err(db)?;
    let rows = stmt
        .query_map(
            params![
                &p.topic_id[..],
                p.partition,
                offsets.log_start_offset,
                MAX_ROWS_PER_PASS
            ],
            |row| {
                Ok(RetentionRow {
                    end_offset: row.get(0)?,
                    bytes: row.get(1)?,
                    timestamp_ms: row_time(row.get(2)?, row.get(3)?),
                })
            },
        )
        .map_err(db)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(db)?;
    let cut = retention_cut(&rows, stored_bytes, policy, now_ms, offsets.high_watermark);
    match cut {
        Some(start) if start > offsets.log_start_offset => trim(tx, p, offsets, start),
        _ => Ok(unchanged(offsets)),
    }
}

fn unchanged(offsets: PartitionOffsets) -> LogStartOutcome {
    LogStartOutcome::Moved {
        offsets,
        previous: offsets.log_start_offset,
    }
}

/// Sets the log start to `start` (above the current one, at most the high watermark),
/// removes the rows wholly below it and marks the objects they leave unreferenced.
fn trim(
    tx: &Transaction<'_>,
    p: &PartitionId,
    offsets: PartitionOffsets,
    start: i64,
) -> Result<LogStartOutcome, StoreError> {
    tx.prepare_cached(
        "UPDATE partitions SET log_start_offset = ?3 WHERE topic_id = ?1 AND partition = ?2",
    )
    .map_err(db)?
    .execute(params![&p.topic_id[..], p.partition, start])
    .map_err(db)?;
    let keys = tx
        .prepare_cached(
            "DELETE FROM chunks
             WHERE topic_id = ?1 AND partition = ?2 AND base_offset < ?3 AND end_offset <= ?3
             RETURNING object_key",
        )
        .map_err(db)?
        .query_map(params![&p.topic_id[..], p.partition, start], |r| r.get(0))
        .map_err(db)?
        .collect::<Result<Vec<String>, _>>()
        .map_err(db)?;
    mark_unreferenced(tx, &keys)?;
    Ok(LogStartOutcome::Moved {
        offsets: PartitionOffsets {
            log_start_offset: start,
            high_watermark: offsets.high_watermark,
        },
        previous: offsets.log_start_offset,
    })
}

/// The distinct objects a topic's index rows name; call before deleting them.
pub(super) fn objects_of_topic(
    conn: &Connection,
    topic_id: &[u8],
) -> Result<Vec<String>, StoreError> {
    conn.prepare_cached("SELECT DISTINCT object_key FROM chunks WHERE topic_id = ?1")
        .map_err(db)?
        .query_map([topic_id], |r| r.get(0))
        .map_err(db)?
        .collect::<Result<Vec<String>, _>>()
        .map_err(db)
}

/// Records those of `keys` that are committed and named by no index row as unreferenced.
pub(super) fn mark_unreferenced(conn: &Connection, keys: &[String]) -> Result<(), StoreError> {
    let mut stmt = conn
        .prepare_cached(
            "INSERT OR IGNORE INTO unreferenced_objects (object_key, unreferenced_since_ms)
             SELECT s.object_key, NULL FROM segments s
             WHERE s.object_key = ?1
               AND NOT EXISTS (SELECT 1 FROM chunks c WHERE c.object_key = s.object_key)",
        )
        .map_err(db)?;
    for key in keys {
        stmt.execute([key]).map_err(db)?;
    }
    Ok(())
}

/// Stamps newly seen unreferenced objects with `now_ms`, then lists those whose grace
/// started at or before `before_ms`.
pub(super) fn unreferenced_objects(
    tx: &Transaction<'_>,
    now_ms: i64,
    before_ms: i64,
    limit: u32,
) -> Result<Vec<UnreferencedObject>, StoreError> {
    tx.prepare_cached(
        "UPDATE unreferenced_objects SET unreferenced_since_ms = ?1
         WHERE unreferenced_since_ms IS NULL",
    )
    .map_err(db)?
    .execute([now_ms])
    .map_err(db)?;
    let mut stmt = tx
        .prepare_cached(
            "SELECT u.object_key, u.unreferenced_since_ms, s.committed_at_ms
             FROM unreferenced_objects u JOIN segments s ON s.object_key = u.object_key
             WHERE u.unreferenced_since_ms <= ?1
               AND NOT EXISTS (SELECT 1 FROM chunks c WHERE c.object_key = u.object_key)
             ORDER BY u.unreferenced_since_ms, u.object_key LIMIT ?2",
        )
        .map_err(db)?;
    let rows = stmt
        .query_map(params![before_ms, limit], |row| {
            Ok(UnreferencedObject {
                object_key: row.get(0)?,
                unreferenced_since_ms: row.get(1)?,
                committed_at_ms: row.get(2)?,
            })
        })
        .map_err(db)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(db)
}

/// Drops the records of unreferenced objects committed at or before `committed_before_ms`.
pub(super) fn forget(
    tx: &Transaction<'_>,
    keys: &[String],
    committed_before_ms: i64,
) -> Result<Vec<String>, StoreError> {
    let mut forgotten = Vec::new();
    for key in keys {
        let deleted = tx
            .prepare_cached(
                "DELETE FROM segments
                 WHERE object_key = ?1 AND committed_at_ms <= ?2
                   AND EXISTS (SELECT 1 FROM unreferenced_objects u WHERE u.object_key = ?1)
                   AND NOT EXISTS (SELECT 1 FROM chunks c WHERE c.object_key = ?1)",
            )
            .map_err(db)?
            .execute(params![key, committed_before_ms])
            .map_err(db)?;
        if deleted == 0 {
            continue;
        }
        tx.prepare_cached("DELETE FROM unreferenced_objects WHERE object_key = ?1")
            .map_err(db)?
            .execute([key])
            .map_err(db)?;
        forgotten.push(key.clone());
    }
    Ok(forgotten)
}

impl SqliteStore {
    /// Runs `f` in one transaction on the blocking pool; commits when it returns `Ok`.
    pub(super) async fn in_transaction<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&rusqlite::Transaction<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        self.with_conn(move |conn| {
            let tx = conn.transaction().map_err(db)?;
            let out = f(&tx)?;
            tx.commit().map_err(db)?;
            Ok(out)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::super::{SqliteStore, SCHEMA};
    use crate::store::MetadataStore;
    use rusqlite::Connection;

    /// A version 1 database is upgraded in place, and the objects that had already lost
    /// their last index row (topics deleted by an older version) are found.
    #[tokio::test]
    async fn version_one_databases_are_upgraded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metadata.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(SCHEMA).unwrap();
            conn.execute_batch(
                "PRAGMA user_version = 1;
                 INSERT INTO segments VALUES ('old', 10, 0, '[]'), ('live', 10, 0, '[]');
                 INSERT INTO chunks VALUES (x'01', 0, 0, 1, 'live', 0, 10, 0, 10, 0);",
            )
            .unwrap();
        }
        let store = SqliteStore::open(&path).unwrap();
        let listed = store.unreferenced_objects(7, 7, 10).await.unwrap();
        assert_eq!(
            listed
                .iter()
                .map(|o| o.object_key.as_str())
                .collect::<Vec<_>>(),
            ["old"]
        );
        drop(store);
        // opening again changes nothing
        let again = SqliteStore::open(&path).unwrap();
        assert_eq!(again.unreferenced_objects(8, 8, 10).await.unwrap(), listed);
    }
}
