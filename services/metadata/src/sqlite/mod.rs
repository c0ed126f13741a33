//! The embedded SQLite store: the `strata dev` default.
//!
//! One connection in WAL mode with `synchronous = FULL`, so a commit that returned is on disk
//! before any producer is answered. Calls run on tokio's blocking pool.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension};

use crate::store::{
    ChunkReplacement, ChunkRow, CommitOutcome, CommittedOffset, ConfigChange, LogStartOutcome,
    LogStartTarget, MetadataStore, PartitionId, PartitionOffsets, ProducerRejection,
    ReplaceOutcome, RetentionPolicy, SegmentCommit, StoreError, TimestampQuery, TopicId,
    TopicRecord, UnreferencedObject,
};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS topics (
    topic_id BLOB PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    partition_count INTEGER NOT NULL,
    configs TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS partitions (
    topic_id BLOB NOT NULL,
    partition INTEGER NOT NULL,
    log_start_offset INTEGER NOT NULL DEFAULT 0,
    next_offset INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (topic_id, partition)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS segments (
    object_key TEXT PRIMARY KEY,
    object_size INTEGER NOT NULL,
    committed_at_ms INTEGER NOT NULL,
    outcome TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS producers (
    producer_id INTEGER PRIMARY KEY AUTOINCREMENT,
    epoch INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS producer_partitions (
    producer_id INTEGER NOT NULL,
    topic_id BLOB NOT NULL,
    partition INTEGER NOT NULL,
    state TEXT NOT NULL,
    PRIMARY KEY (producer_id, topic_id, partition)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS chunks (
    topic_id BLOB NOT NULL,
    partition INTEGER NOT NULL,
    base_offset INTEGER NOT NULL,
    end_offset INTEGER NOT NULL,
    object_key TEXT NOT NULL,
    byte_offset INTEGER NOT NULL,
    byte_length INTEGER NOT NULL,
    raw_offset INTEGER NOT NULL,
    raw_length INTEGER NOT NULL,
    max_timestamp INTEGER NOT NULL,
    PRIMARY KEY (topic_id, partition, base_offset)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS chunks_by_object ON chunks (object_key);
CREATE TABLE IF NOT EXISTS group_offsets (
    group_id TEXT NOT NULL,
    topic TEXT NOT NULL,
    partition INTEGER NOT NULL,
    committed_offset INTEGER NOT NULL,
    leader_epoch INTEGER NOT NULL,
    metadata TEXT,
    commit_time_ms INTEGER NOT NULL,
    PRIMARY KEY (group_id, topic, partition)
) WITHOUT ROWID;
";

const CHUNK_COLUMNS: &str =
    "object_key, byte_offset, byte_length, raw_offset, raw_length, base_offset, end_offset, max_timestamp";

/// Version of the schema ([`SCHEMA`], then each later version's additions), kept in
/// SQLite's `user_version`.
const SCHEMA_VERSION: i64 = 2;

/// A [`MetadataStore`] in one SQLite database file.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
}

fn db(err: rusqlite::Error) -> StoreError {
    StoreError::Database(err.to_string())
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and applies the schema.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| StoreError::Database(format!("{}: {e}", dir.display())))?;
        }
        Self::init(Connection::open(path).map_err(db)?)
    }

    /// An in-memory database, for tests.
    pub fn in_memory() -> Result<Self, StoreError> {
        Self::init(Connection::open_in_memory().map_err(db)?)
    }

    fn init(conn: Connection) -> Result<Self, StoreError> {
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;",
        )
        .map_err(db)?;
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(db)?;
        let has_tables: bool = conn
            .query_row(
                "SELECT EXISTS(SELECT 1 FROM sqlite_master WHERE type = 'table')",
                [],
                |r| r.get(0),
            )
            .map_err(db)?;
        if has_tables && !(1..=SCHEMA_VERSION).contains(&version) {
            return Err(StoreError::Database(format!(
                "metadata database has schema version {version}, this build needs {SCHEMA_VERSION}"
            )));
        }
        // one transaction: an interrupted upgrade leaves the old version behind, whole
        let upgrade = if has_tables && version < 2 {
            retention::UPGRADE_FROM_V1
        } else {
            ""
        };
        conn.execute_batch(&format!(
            "BEGIN; {SCHEMA} {} {upgrade} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;",
            retention::SCHEMA_V2
        ))
        .map_err(db)?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// Runs `f` with the connection on the blocking pool.
    async fn with_conn<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        tokio::task::spawn_blocking(move || {
            let mut guard = conn
                .lock()
                .map_err(|_| StoreError::Database("connection lock poisoned".into()))?;
            f(&mut guard)
        })
        .await
        .map_err(|e| StoreError::Database(format!("store task failed: {e}")))?
    }
}

fn topic_from_row(
    row: &rusqlite::Row<'_>,
) -> rusqlite::Result<(Vec<u8>, String, i32, String, i64)> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
    ))
}

fn to_topic(raw: (Vec<u8>, String, i32, String, i64)) -> Result<TopicRecord, StoreError> {
    let (id, name, partition_count, configs, created_at_ms) = raw;
    let topic_id: TopicId = id
        .try_into()
        .map_err(|_| StoreError::Database("topic id is not 16 bytes".into()))?;
    let configs: BTreeMap<String, String> = serde_json::from_str(&configs)
        .map_err(|e| StoreError::Database(format!("topic configs: {e}")))?;
    Ok(TopicRecord {
        topic_id,
        name,
        partition_count,
        configs,
        created_at_ms,
    })
}

fn chunk_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<ChunkRow> {
    Ok(ChunkRow {
        object_key: row.get(0)?,
        byte_offset: row.get::<_, i64>(1)? as u64,
        byte_length: row.get(2)?,
        raw_offset: row.get(3)?,
        raw_length: row.get(4)?,
        base_offset: row.get(5)?,
        end_offset: row.get(6)?,
        max_timestamp: row.get(7)?,
    })
}

mod commit;
mod configs;
mod replace;
mod retention;

fn offsets_of(tx: &Connection, p: &PartitionId) -> Result<Option<PartitionOffsets>, StoreError> {
    tx.prepare_cached(
        "SELECT log_start_offset, next_offset FROM partitions WHERE topic_id = ?1 AND partition = ?2",
    )
    .map_err(db)?
    .query_row(params![&p.topic_id[..], p.partition], |row| {
        Ok(PartitionOffsets {
            log_start_offset: row.get(0)?,
            high_watermark: row.get(1)?,
        })
    })
    .optional()
    .map_err(db)
}

fn select_topic(
    conn: &Connection,
    clause: &str,
    key: &dyn rusqlite::ToSql,
) -> Result<Option<TopicRecord>, StoreError> {
    let sql = format!(
        "SELECT topic_id, name, partition_count, configs, created_at_ms FROM topics WHERE {clause}"
    );
    let raw = conn
        .prepare_cached(&sql)
        .map_err(db)?
        .query_row([key], topic_from_row)
        .optional()
        .map_err(db)?;
    raw.map(to_topic).transpose()
}

#[async_trait]
impl MetadataStore for SqliteStore {
    async fn create_topic(&self, topic: TopicRecord) -> Result<TopicRecord, StoreError> {
        self.with_conn(move |conn| {
            let tx = conn.transaction().map_err(db)?;
            let taken: bool = tx
                .query_row("SELECT EXISTS(SELECT 1 FROM topics WHERE name = ?1)", [&topic.name], |r| r.get(0))
                .map_err(db)?;
            if taken {
                return Err(StoreError::TopicExists(topic.name));
            }
            let configs = serde_json::to_string(&topic.configs)
                .map_err(|e| StoreError::InvalidConfig(e.to_string()))?;
            tx.execute(
                "INSERT INTO topics (topic_id, name, partition_count, configs, created_at_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![&topic.topic_id[..], topic.name, topic.partition_count, configs, topic.created_at_ms],
            )
            .map_err(db)?;
            for partition in 0..topic.partition_count {
                tx.execute(
                    "INSERT INTO partitions (topic_id, partition) VALUES (?1, ?2)",
                    params![&topic.topic_id[..], partition],
                )
                .map_err(db)?;
            }
            tx.commit().map_err(db)?;
            Ok(topic)
        })
        .await
    }

    async fn delete_topic(&self, name: &str) -> Result<TopicId, StoreError> {
        let name = name.to_string();
        self.with_conn(move |conn| {
            let tx = conn.transaction().map_err(db)?;
            let Some(topic) = select_topic(&tx, "name = ?1", &name)? else {
                return Err(StoreError::TopicNotFound(format!("{name:?}")));
            };
            let id = &topic.topic_id[..];
            let objects = retention::objects_of_topic(&tx, id)?;
            tx.execute("DELETE FROM chunks WHERE topic_id = ?1", [id])
                .map_err(db)?;
            tx.execute("DELETE FROM partitions WHERE topic_id = ?1", [id])
                .map_err(db)?;
            tx.execute("DELETE FROM topics WHERE topic_id = ?1", [id])
                .map_err(db)?;
            retention::mark_unreferenced(&tx, &objects)?;
            tx.commit().map_err(db)?;
            Ok(topic.topic_id)
        })
        .await
    }

    async fn list_topics(&self) -> Result<Vec<TopicRecord>, StoreError> {
        self.with_conn(|conn| {
            let mut stmt = conn
                .prepare_cached("SELECT topic_id, name, partition_count, configs, created_at_ms FROM topics ORDER BY name")
                .map_err(db)?;
            let rows = stmt.query_map([], topic_from_row).map_err(db)?;
            rows.map(|r| r.map_err(db).and_then(to_topic)).collect()
        })
        .await
    }

    async fn topic_by_name(&self, name: &str) -> Result<Option<TopicRecord>, StoreError> {
        let name = name.to_string();
        self.with_conn(move |conn| select_topic(conn, "name = ?1", &name))
            .await
    }

    async fn topic_by_id(&self, id: TopicId) -> Result<Option<TopicRecord>, StoreError> {
        self.with_conn(move |conn| select_topic(conn, "topic_id = ?1", &id.to_vec()))
            .await
    }

    async fn commit_segments(
        &self,
        commits: Vec<SegmentCommit>,
    ) -> Result<Vec<Result<CommitOutcome, StoreError>>, StoreError> {
        self.with_conn(move |conn| {
            let mut tx = conn.transaction().map_err(db)?;
            let mut results = Vec::with_capacity(commits.len());
            for (commit, first) in commits
                .iter()
                .zip(crate::commit_plan::first_of_keys(&commits))
            {
                if !first {
                    results.push(Err(crate::commit_plan::repeated_key(commit)));
                    continue;
                }
                // each commit in a savepoint, so a refused one leaves no trace
                let mut savepoint = tx.savepoint().map_err(db)?;
                let result = commit::commit_one(&savepoint, commit);
                if result.is_ok() {
                    savepoint.commit().map_err(db)?;
                } else {
                    savepoint.rollback().map_err(db)?;
                }
                results.push(result);
            }
            tx.commit().map_err(db)?;
            Ok(results)
        })
        .await
    }

    async fn partition_offsets(
        &self,
        partitions: &[PartitionId],
    ) -> Result<Vec<Option<PartitionOffsets>>, StoreError> {
        let partitions = partitions.to_vec();
        self.with_conn(move |conn| partitions.iter().map(|p| offsets_of(conn, p)).collect())
            .await
    }

    async fn all_partition_offsets(
        &self,
    ) -> Result<Vec<(PartitionId, PartitionOffsets)>, StoreError> {
        self.with_conn(|conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT topic_id, partition, log_start_offset, next_offset FROM partitions",
                )
                .map_err(db)?;
            let rows = stmt
                .query_map([], |row| {
                    Ok((
                        row.get::<_, Vec<u8>>(0)?,
                        row.get(1)?,
                        row.get(2)?,
                        row.get(3)?,
                    ))
                })
                .map_err(db)?;
            let mut out = Vec::new();
            for row in rows {
                let (id, partition, log_start_offset, high_watermark) = row.map_err(db)?;
                let Ok(topic_id) = TopicId::try_from(id) else {
                    continue;
                };
                out.push((
                    PartitionId {
                        topic_id,
                        partition,
                    },
                    PartitionOffsets {
                        log_start_offset,
                        high_watermark,
                    },
                ));
            }
            Ok(out)
        })
        .await
    }

    async fn lookup_chunks(
        &self,
        partition: PartitionId,
        offset: i64,
        max_bytes: u64,
        max_rows: u32,
    ) -> Result<Option<(PartitionOffsets, Vec<ChunkRow>)>, StoreError> {
        self.with_conn(move |conn| {
            let Some(offsets) = offsets_of(conn, &partition)? else {
                return Ok(None);
            };
            let sql = format!(
                "SELECT {CHUNK_COLUMNS} FROM chunks
                 WHERE topic_id = ?1 AND partition = ?2 AND end_offset > ?3
                 ORDER BY base_offset LIMIT ?4"
            );
            let mut stmt = conn.prepare_cached(&sql).map_err(db)?;
            let start = offset.max(offsets.log_start_offset);
            let rows = stmt
                .query_map(
                    params![
                        &partition.topic_id[..],
                        partition.partition,
                        start,
                        max_rows.max(1)
                    ],
                    chunk_from_row,
                )
                .map_err(db)?;
            let mut chunks = Vec::new();
            let mut bytes = 0u64;
            for row in rows {
                if !chunks.is_empty() && bytes >= max_bytes {
                    break;
                }
                let row = row.map_err(db)?;
                bytes += u64::from(row.raw_length);
                chunks.push(row);
            }
            Ok(Some((offsets, chunks)))
        })
        .await
    }

    async fn init_producer(
        &self,
        current: Option<(i64, i16)>,
    ) -> Result<Result<(i64, i16), ProducerRejection>, StoreError> {
        self.with_conn(move |conn| {
            let tx = conn.transaction().map_err(db)?;
            let issued = commit::init_producer(&tx, current)?;
            tx.commit().map_err(db)?;
            Ok(issued)
        })
        .await
    }

    async fn commit_offsets(
        &self,
        group: &str,
        offsets: Vec<CommittedOffset>,
    ) -> Result<(), StoreError> {
        let group = group.to_string();
        self.with_conn(move |conn| {
            let tx = conn.transaction().map_err(db)?;
            for o in &offsets {
                tx.prepare_cached(
                    "INSERT INTO group_offsets (group_id, topic, partition, committed_offset, leader_epoch, metadata, commit_time_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                     ON CONFLICT (group_id, topic, partition) DO UPDATE SET
                       committed_offset = excluded.committed_offset, leader_epoch = excluded.leader_epoch,
                       metadata = excluded.metadata, commit_time_ms = excluded.commit_time_ms",
                )
                .map_err(db)?
                .execute(params![group, o.topic, o.partition, o.offset, o.leader_epoch, o.metadata, o.commit_time_ms])
                .map_err(db)?;
            }
            tx.commit().map_err(db)
        })
        .await
    }

    async fn fetch_offsets(
        &self,
        group: &str,
        topics: Option<Vec<String>>,
    ) -> Result<Vec<CommittedOffset>, StoreError> {
        let group = group.to_string();
        self.with_conn(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT topic, partition, committed_offset, leader_epoch, metadata, commit_time_ms
                     FROM group_offsets WHERE group_id = ?1 ORDER BY topic, partition",
                )
                .map_err(db)?;
            let rows = stmt
                .query_map([&group], |row| {
                    Ok(CommittedOffset {
                        topic: row.get(0)?,
                        partition: row.get(1)?,
                        offset: row.get(2)?,
                        leader_epoch: row.get(3)?,
                        metadata: row.get(4)?,
                        commit_time_ms: row.get(5)?,
                    })
                })
                .map_err(db)?;
            let mut out = Vec::new();
            for row in rows {
                let row = row.map_err(db)?;
                if topics.as_ref().is_none_or(|t| t.contains(&row.topic)) {
                    out.push(row);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn delete_offsets(
        &self,
        group: &str,
        partitions: Vec<(String, i32)>,
    ) -> Result<(), StoreError> {
        let group = group.to_string();
        self.with_conn(move |conn| {
            let tx = conn.transaction().map_err(db)?;
            for (topic, partition) in &partitions {
                tx.prepare_cached("DELETE FROM group_offsets WHERE group_id = ?1 AND topic = ?2 AND partition = ?3")
                    .map_err(db)?
                    .execute(params![group, topic, partition])
                    .map_err(db)?;
            }
            tx.commit().map_err(db)
        })
        .await
    }

    async fn delete_group_offsets(&self, group: &str) -> Result<bool, StoreError> {
        let group = group.to_string();
        self.with_conn(move |conn| {
            let deleted = conn
                .execute("DELETE FROM group_offsets WHERE group_id = ?1", [&group])
                .map_err(db)?;
            Ok(deleted > 0)
        })
        .await
    }

    async fn committed_objects(&self, object_keys: Vec<String>) -> Result<Vec<bool>, StoreError> {
        self.with_conn(move |conn| {
            let mut stmt = conn
                .prepare_cached("SELECT EXISTS(SELECT 1 FROM segments WHERE object_key = ?1)")
                .map_err(db)?;
            object_keys
                .iter()
                .map(|key| stmt.query_row([key], |r| r.get(0)).map_err(db))
                .collect()
        })
        .await
    }

    async fn groups_with_offsets(&self) -> Result<Vec<String>, StoreError> {
        self.with_conn(|conn| {
            let mut stmt = conn
                .prepare_cached("SELECT DISTINCT group_id FROM group_offsets ORDER BY group_id")
                .map_err(db)?;
            let rows = stmt.query_map([], |row| row.get(0)).map_err(db)?;
            rows.map(|r| r.map_err(db)).collect()
        })
        .await
    }

    async fn chunk_by_timestamp(
        &self,
        partition: PartitionId,
        query: TimestampQuery,
    ) -> Result<Option<(PartitionOffsets, Option<ChunkRow>)>, StoreError> {
        self.with_conn(move |conn| {
            let Some(offsets) = offsets_of(conn, &partition)? else {
                return Ok(None);
            };
            let (filter, order, target) = match query {
                TimestampQuery::AtOrAfter(ts) => ("max_timestamp >= ?4", "base_offset", ts),
                TimestampQuery::Max => ("?4 = ?4", "max_timestamp DESC, base_offset", 0),
            };
            let sql = format!(
                "SELECT {CHUNK_COLUMNS} FROM chunks
                 WHERE topic_id = ?1 AND partition = ?2 AND end_offset > ?3 AND {filter}
                 ORDER BY {order} LIMIT 1"
            );
            let chunk = conn
                .prepare_cached(&sql)
                .map_err(db)?
                .query_row(
                    params![
                        &partition.topic_id[..],
                        partition.partition,
                        offsets.log_start_offset,
                        target
                    ],
                    chunk_from_row,
                )
                .optional()
                .map_err(db)?;
            Ok(Some((offsets, chunk)))
        })
        .await
    }

    async fn advance_log_start(
        &self,
        partition: PartitionId,
        target: LogStartTarget,
    ) -> Result<LogStartOutcome, StoreError> {
        self.in_transaction(move |tx| retention::advance(tx, &partition, target))
            .await
    }

    async fn apply_retention(
        &self,
        partition: PartitionId,
        policy: RetentionPolicy,
        now_ms: i64,
    ) -> Result<LogStartOutcome, StoreError> {
        self.in_transaction(move |tx| retention::apply_retention(tx, &partition, policy, now_ms))
            .await
    }

    async fn mark_unreferenced(&self, object_keys: Vec<String>) -> Result<(), StoreError> {
        self.in_transaction(move |tx| retention::mark_unreferenced(tx, &object_keys))
            .await
    }

    async fn unreferenced_objects(
        &self,
        now_ms: i64,
        unreferenced_before_ms: i64,
        limit: u32,
    ) -> Result<Vec<UnreferencedObject>, StoreError> {
        self.in_transaction(move |tx| {
            retention::unreferenced_objects(tx, now_ms, unreferenced_before_ms, limit)
        })
        .await
    }

    async fn forget_objects(
        &self,
        object_keys: Vec<String>,
        committed_before_ms: i64,
    ) -> Result<Vec<String>, StoreError> {
        self.in_transaction(move |tx| retention::forget(tx, &object_keys, committed_before_ms))
            .await
    }

    async fn replace_chunks(
        &self,
        replacement: ChunkReplacement,
    ) -> Result<ReplaceOutcome, StoreError> {
        crate::replace_rules::validate(&replacement)?;
        self.in_transaction(move |tx| replace::replace(tx, &replacement))
            .await
    }

    async fn alter_topic_configs(
        &self,
        name: &str,
        changes: Vec<ConfigChange>,
    ) -> Result<TopicRecord, StoreError> {
        let name = name.to_string();
        self.in_transaction(move |tx| configs::alter(tx, &name, &changes))
            .await
    }
}

#[cfg(test)]
mod tests {
    crate::conformance::store_conformance_tests!(|| async {
        crate::sqlite::SqliteStore::in_memory().expect("in-memory sqlite")
    });
}
