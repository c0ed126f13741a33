//! Log start moves (DeleteRecords, retention) and unreferenced objects, in PostgreSQL.
//!
//! The decisions are [`crate::retention_rules`]'s; this file reads their inputs and writes
//! their results, each call in one READ COMMITTED transaction.
//!
//! # Invariants
//!
//! - A log start move locks its partition row (`SELECT ... FOR UPDATE`) before reading the
//!   offsets it decides on, as CommitSegment does, so it sees the latest high watermark and
//!   no commit or other move of that partition interleaves. It locks one partition only,
//!   so it cannot take part in a lock cycle with commits (which lock in key order).
//! - An object is recorded as unreferenced only by a statement that finds no index row
//!   naming it, run after the transaction has deleted its own rows and locked the
//!   object's `segments` row. Two transactions trimming different partitions of one
//!   object therefore check one after the other, and the second sees the first's deletions
//!   (READ COMMITTED takes a new snapshot per statement): the last row's removal is never
//!   missed. Segment rows are locked in key order, so such transactions cannot deadlock
//!   either.
//! - Topic deletion (see [`super::topics`]) uses [`mark_unreferenced`] the same way.

use deadpool_postgres::{GenericClient, Transaction};
use tokio_postgres::Row;

use super::error::PgError;
use super::{execute, query, Writer};
use crate::retention_rules::{
    decide_target, retention_cut, row_time, RetentionRow, TargetDecision, MAX_ROWS_PER_PASS,
};
use crate::store::{
    LogStartOutcome, LogStartTarget, PartitionId, PartitionOffsets, RetentionPolicy,
    UnreferencedObject,
};

/// Locks a partition row and reads its offsets; `None` when it does not exist.
async fn lock_partition(
    tx: &Transaction<'_>,
    p: &PartitionId,
) -> Result<Option<PartitionOffsets>, PgError> {
    let rows = query(
        tx,
        "SELECT log_start_offset, next_offset FROM partitions
         WHERE topic_id = $1 AND partition = $2 FOR UPDATE",
        &[&&p.topic_id[..], &p.partition],
    )
    .await?;
    rows.first()
        .map(|row| {
            Ok(PartitionOffsets {
                log_start_offset: row.try_get(0)?,
                high_watermark: row.try_get(1)?,
            })
        })
        .transpose()
}

fn unchanged(offsets: PartitionOffsets) -> LogStartOutcome {
    LogStartOutcome::Moved {
        offsets,
        previous: offsets.log_start_offset,
    }
}

/// Moves the log start to a DeleteRecords target.
pub(super) async fn advance(
    mut client: Writer,
    p: &PartitionId,
    target: LogStartTarget,
) -> Result<LogStartOutcome, PgError> {
    let tx = client.begin().await?;
    let Some(offsets) = lock_partition(&tx, p).await? else {
        return Ok(LogStartOutcome::UnknownPartition);
    };
    let outcome = match decide_target(target, offsets) {
        TargetDecision::OutOfRange => return Ok(LogStartOutcome::OutOfRange { offsets }),
        TargetDecision::Stay => return Ok(unchanged(offsets)),
        TargetDecision::Move(start) => trim(&tx, p, offsets, start).await?,
    };
    tx.commit().await?;
    Ok(outcome)
}

/// Applies a retention policy to one partition.
pub(super) async fn apply_retention(
    mut client: Writer,
    p: &PartitionId,
    policy: RetentionPolicy,
    now_ms: i64,
) -> Result<LogStartOutcome, PgError> {
    let tx = client.begin().await?;
    let Some(offsets) = lock_partition(&tx, p).await? else {
        return Ok(LogStartOutcome::UnknownPartition);
    };
    if policy == RetentionPolicy::default() {
        return Ok(unchanged(offsets));
    }
    let stored_bytes: i64 = match policy.max_bytes {
        Some(_) => {
            let rows = query(
                &tx,
                "SELECT COALESCE(SUM(raw_length), 0)::BIGINT FROM chunks
                 WHERE topic_id = $1 AND partition = $2",
                &[&&p.topic_id[..], &p.partition],
            )
            .await?;
            rows.first().map(|r| r.try_get(0)).transpose()?.unwrap_or(0)
        }
        None => 0,
    };
    let rows = query(
        &tx,
        "SELECT c.end_offset, c.raw_length, c.max_timestamp, s.committed_at_ms
         FROM chunks c LEFT JOIN segments s ON s.object_key = c.object_key
         WHERE c.topic_id = $1 AND c.partition = $2 AND c.end_offset > $3
         ORDER BY c.base_offset LIMIT $4",
        &[
            &&p.topic_id[..],
            &p.partition,
            &offsets.log_start_offset,
            &i64::from(MAX_ROWS_PER_PASS),
        ],
    )
    .await?;
    let rows = rows
        .iter()
        .map(retention_row)
        .collect::<Result<Vec<_>, PgError>>()?;
    let cut = retention_cut(&rows, stored_bytes, policy, now_ms, offsets.high_watermark);
    let outcome = match cut {
        Some(start) if start > offsets.log_start_offset => trim(&tx, p, offsets, start).await?,
        _ => return Ok(unchanged(offsets)),
    };
    tx.commit().await?;
    Ok(outcome)
}

fn retention_row(row: &Row) -> Result<RetentionRow, PgError> {
    Ok(RetentionRow {
        end_offset: row.try_get(0)?,
        bytes: row.try_get(1)?,
        timestamp_ms: row_time(row.try_get(2)?, row.try_get(3)?),
    })
}

/// Sets the log start to `start` (above the current one, at most the high watermark),
/// removes the rows wholly below it and marks the objects they leave unreferenced.
async fn trim(
    tx: &Transaction<'_>,
    p: &PartitionId,
    offsets: PartitionOffsets,
    start: i64,
) -> Result<LogStartOutcome, PgError> {
    execute(
        tx,
        "UPDATE partitions SET log_start_offset = $3 WHERE topic_id = $1 AND partition = $2",
        &[&&p.topic_id[..], &p.partition, &start],
    )
    .await?;
    let removed = query(
        tx,
        "DELETE FROM chunks
         WHERE topic_id = $1 AND partition = $2 AND base_offset < $3 AND end_offset <= $3
         RETURNING object_key",
        &[&&p.topic_id[..], &p.partition, &start],
    )
    .await?;
    let keys = removed
        .iter()
        .map(|row| row.try_get(0))
        .collect::<Result<Vec<String>, _>>()?;
    mark_unreferenced(tx, keys).await?;
    Ok(LogStartOutcome::Moved {
        offsets: PartitionOffsets {
            log_start_offset: start,
            high_watermark: offsets.high_watermark,
        },
        previous: offsets.log_start_offset,
    })
}

/// Records those of `keys` that are committed and named by no index row as unreferenced,
/// after locking their `segments` rows in key order (see the module's invariants).
pub(super) async fn mark_unreferenced(
    tx: &Transaction<'_>,
    mut keys: Vec<String>,
) -> Result<(), PgError> {
    keys.sort_unstable();
    keys.dedup();
    if keys.is_empty() {
        return Ok(());
    }
    query(
        tx,
        "SELECT object_key FROM segments WHERE object_key = ANY($1)
         ORDER BY object_key FOR UPDATE",
        &[&keys],
    )
    .await?;
    execute(
        tx,
        "INSERT INTO unreferenced_objects (object_key, unreferenced_since_ms)
         SELECT s.object_key, NULL FROM segments s
         WHERE s.object_key = ANY($1)
           AND NOT EXISTS (SELECT 1 FROM chunks c WHERE c.object_key = s.object_key)
         ON CONFLICT (object_key) DO NOTHING",
        &[&keys],
    )
    .await?;
    Ok(())
}

/// [`mark_unreferenced`] in a transaction of its own.
pub(super) async fn mark_unreferenced_now(
    mut client: Writer,
    keys: &[String],
) -> Result<(), PgError> {
    let tx = client.begin().await?;
    mark_unreferenced(&tx, keys.to_vec()).await?;
    tx.commit().await?;
    Ok(())
}

/// The distinct objects a topic's index rows name; call before deleting them.
pub(super) async fn objects_of_topic(
    client: &impl GenericClient,
    topic_id: &[u8],
) -> Result<Vec<String>, PgError> {
    query(
        client,
        "SELECT DISTINCT object_key FROM chunks WHERE topic_id = $1",
        &[&topic_id],
    )
    .await?
    .iter()
    .map(|row| Ok(row.try_get(0)?))
    .collect()
}

/// Stamps newly seen unreferenced objects with `now_ms`, then lists those whose grace
/// started at or before `before_ms`.
pub(super) async fn unreferenced_objects(
    mut client: Writer,
    now_ms: i64,
    before_ms: i64,
    limit: u32,
) -> Result<Vec<UnreferencedObject>, PgError> {
    let tx = client.begin().await?;
    execute(
        &tx,
        "UPDATE unreferenced_objects SET unreferenced_since_ms = $1
         WHERE unreferenced_since_ms IS NULL",
        &[&now_ms],
    )
    .await?;
    let rows = query(
        &tx,
        "SELECT u.object_key, u.unreferenced_since_ms, s.committed_at_ms
         FROM unreferenced_objects u JOIN segments s ON s.object_key = u.object_key
         WHERE u.unreferenced_since_ms <= $1
           AND NOT EXISTS (SELECT 1 FROM chunks c WHERE c.object_key = u.object_key)
         ORDER BY u.unreferenced_since_ms, u.object_key LIMIT $2",
        &[&before_ms, &i64::from(limit)],
    )
    .await?;
    let objects = rows
        .iter()
        .map(|row| {
            Ok(UnreferencedObject {
                object_key: row.try_get(0)?,
                unreferenced_since_ms: row.try_get(1)?,
                committed_at_ms: row.try_get(2)?,
            })
        })
        .collect::<Result<Vec<_>, PgError>>()?;
    tx.commit().await?;
    Ok(objects)
}

/// Drops the records of unreferenced objects committed at or before `committed_before_ms`.
pub(super) async fn forget(
    mut client: Writer,
    keys: &[String],
    committed_before_ms: i64,
) -> Result<Vec<String>, PgError> {
    let tx = client.begin().await?;
    let rows = query(
        &tx,
        "WITH gone AS (
             DELETE FROM segments s USING unreferenced_objects u
             WHERE s.object_key = u.object_key AND s.object_key = ANY($1)
               AND s.committed_at_ms <= $2
               AND NOT EXISTS (SELECT 1 FROM chunks c WHERE c.object_key = s.object_key)
             RETURNING s.object_key
         )
         DELETE FROM unreferenced_objects WHERE object_key IN (SELECT object_key FROM gone)
         RETURNING object_key",
        &[&keys, &committed_before_ms],
    )
    .await?;
    let forgotten = rows
        .iter()
        .map(|row| row.try_get(0))
        .collect::<Result<Vec<String>, _>>()?;
    tx.commit().await?;
    Ok(forgotten)
}
