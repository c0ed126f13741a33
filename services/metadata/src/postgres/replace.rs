//! Compaction's index swap (`replace_chunks`) in PostgreSQL.
//!
//! The decisions are [`crate::replace_rules`]'s. One READ COMMITTED transaction, begun by
//! [`Writer::begin`] (so a deposed leader cannot swap), takes its locks in the order every
//! other writer does:
//! 1. claim the new object's key in `segments` (`ON CONFLICT DO NOTHING`): a concurrent
//!    retry waits here and then finds the key taken (`AlreadyApplied`);
//! 2. lock the partition row `FOR UPDATE`, as commits and log start moves do: no commit,
//!    trim or other swap of this partition interleaves from here on, so the rows read next
//!    are the rows deleted;
//! 3. read the rows overlapping the replaced range and check them; on a mismatch the
//!    transaction is rolled back (the claim with it) and `Conflict` returned;
//! 4. delete them, insert the new rows, and mark the old objects left with no row
//!    unreferenced, after locking their `segments` rows in key order exactly as
//!    [`super::retention`] does, so concurrent trims or swaps of other partitions of a
//!    shared object never both miss its last row.

use super::error::PgError;
use super::{execute, query, retention, Writer};
use crate::commit_plan::PlannedRow;
use crate::replace_rules::{check_expected, replaced_objects, replaced_range, REPLACED_OUTCOME};
use crate::store::{ChunkReplacement, ExpectedRow, ReplaceOutcome, StoreError};

/// Applies a validated replacement (see [`crate::replace_rules::validate`]).
pub(super) async fn replace(
    mut client: Writer,
    r: &ChunkReplacement,
) -> Result<ReplaceOutcome, PgError> {
    let Some((start, end)) = replaced_range(r) else {
        return Err(StoreError::InvalidRequest("no rows to replace".into()).into());
    };
    let size = i64::try_from(r.object.object_size)
        .map_err(|_| StoreError::InvalidRequest("object size exceeds i64".into()))?;
    let p = &r.partition;
    let topic: &[u8] = &p.topic_id[..];
    let tx = client.begin().await?;
    let claimed = query(
        &tx,
        "INSERT INTO segments (object_key, object_size, committed_at_ms, outcome)
         VALUES ($1, $2, $3, $4) ON CONFLICT (object_key) DO NOTHING RETURNING object_key",
        &[
            &r.object.object_key,
            &size,
            &r.object.committed_at_ms,
            &REPLACED_OUTCOME,
        ],
    )
    .await?;
    if claimed.is_empty() {
        return Ok(ReplaceOutcome::AlreadyApplied);
    }
    let locked = query(
        &tx,
        "SELECT 1 FROM partitions WHERE topic_id = $1 AND partition = $2 FOR UPDATE",
        &[&topic, &p.partition],
    )
    .await?;
    if locked.is_empty() {
        return Ok(ReplaceOutcome::UnknownPartition);
    }
    let rows = query(
        &tx,
        "SELECT base_offset, end_offset, object_key FROM chunks
         WHERE topic_id = $1 AND partition = $2 AND end_offset > $3 AND base_offset < $4
         ORDER BY base_offset",
        &[&topic, &p.partition, &start, &end],
    )
    .await?;
    let found = rows
        .iter()
        .map(|row| {
            Ok(ExpectedRow {
                base_offset: row.try_get(0)?,
                end_offset: row.try_get(1)?,
                object_key: row.try_get(2)?,
            })
        })
        .collect::<Result<Vec<_>, PgError>>()?;
    if let Err(reason) = check_expected(&r.expected, &found) {
        return Ok(ReplaceOutcome::Conflict { reason });
    }
    execute(
        &tx,
        "DELETE FROM chunks
         WHERE topic_id = $1 AND partition = $2 AND base_offset >= $3 AND base_offset < $4",
        &[&topic, &p.partition, &start, &end],
    )
    .await?;
    insert_rows(&tx, r).await?;
    let old = replaced_objects(&r.expected);
    retention::mark_unreferenced(&tx, old.clone()).await?;
    let listed = query(
        &tx,
        "SELECT object_key FROM unreferenced_objects WHERE object_key = ANY($1)
         ORDER BY object_key",
        &[&old],
    )
    .await?;
    let unreferenced = listed
        .iter()
        .map(|row| row.try_get(0))
        .collect::<Result<Vec<String>, _>>()?;
    tx.commit().await?;
    Ok(ReplaceOutcome::Replaced { unreferenced })
}

/// Inserts the replacement's rows in one statement.
async fn insert_rows(
    tx: &deadpool_postgres::Transaction<'_>,
    r: &ChunkReplacement,
) -> Result<(), PgError> {
    let rows: Vec<PlannedRow> = r
        .rows
        .iter()
        .map(|row| PlannedRow {
            partition: r.partition,
            row: row.clone(),
        })
        .collect();
    super::commit::insert_rows(tx, &rows).await
}
