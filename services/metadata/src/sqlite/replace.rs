//! Compaction's index swap (`replace_chunks`) in SQLite.
//!
//! The decisions are [`crate::replace_rules`]'s. It runs in one transaction of the store's
//! single connection, so no commit, trim or other swap interleaves: the rows checked are
//! the rows deleted, and the new rows, the new object's record and the marking of the old
//! objects it leaves unreferenced appear together or not at all.

use rusqlite::{params, Transaction};

use super::{db, offsets_of, retention};
use crate::replace_rules::{check_expected, replaced_objects, replaced_range, REPLACED_OUTCOME};
use crate::store::{ChunkReplacement, ExpectedRow, ReplaceOutcome, StoreError};

/// Applies a validated replacement (see [`crate::replace_rules::validate`]).
pub(super) fn replace(
    tx: &Transaction<'_>,
    r: &ChunkReplacement,
) -> Result<ReplaceOutcome, StoreError> {
    let Some((start, end)) = replaced_range(r) else {
        return Err(StoreError::InvalidRequest("no rows to replace".into()));
    };
    let recorded: bool = tx
        .prepare_cached("SELECT EXISTS(SELECT 1 FROM segments WHERE object_key = ?1)")
        .map_err(db)?
        .query_row([&r.object.object_key], |row| row.get(0))
        .map_err(db)?;
    if recorded {
        return Ok(ReplaceOutcome::AlreadyApplied);
    }
    let p = &r.partition;
    if offsets_of(tx, p)?.is_none() {
        return Ok(ReplaceOutcome::UnknownPartition);
    }
    let found = tx
        .prepare_cached(
            "SELECT base_offset, end_offset, object_key FROM chunks
             WHERE topic_id = ?1 AND partition = ?2 AND end_offset > ?3 AND base_offset < ?4
             ORDER BY base_offset",
        )
        .map_err(db)?
        .query_map(params![&p.topic_id[..], p.partition, start, end], |row| {
            Ok(ExpectedRow {
                base_offset: row.get(0)?,
                end_offset: row.get(1)?,
                object_key: row.get(2)?,
            })
        })
        .map_err(db)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(db)?;
    if let Err(reason) = check_expected(&r.expected, &found) {
        return Ok(ReplaceOutcome::Conflict { reason });
    }
    tx.prepare_cached(
        "DELETE FROM chunks
         WHERE topic_id = ?1 AND partition = ?2 AND base_offset >= ?3 AND base_offset < ?4",
    )
    .map_err(db)?
    .execute(params![&p.topic_id[..], p.partition, start, end])
    .map_err(db)?;
    for row in &r.rows {
        tx.prepare_cached(
            "INSERT INTO chunks (topic_id, partition, base_offset, end_offset, object_key,
                                 byte_offset, byte_length, raw_offset, raw_length, max_timestamp)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        )
        .map_err(db)?
        .execute(params![
            &p.topic_id[..],
            p.partition,
            row.base_offset,
            row.end_offset,
            row.object_key,
            row.byte_offset as i64,
            row.byte_length,
            row.raw_offset,
            row.raw_length,
            row.max_timestamp
        ])
        .map_err(db)?;
    }
    tx.prepare_cached(
        "INSERT INTO segments (object_key, object_size, committed_at_ms, outcome)
         VALUES (?1, ?2, ?3, ?4)",
    )
    .map_err(db)?
    .execute(params![
        r.object.object_key,
        r.object.object_size as i64,
        r.object.committed_at_ms,
        REPLACED_OUTCOME
    ])
    .map_err(db)?;
    let old = replaced_objects(&r.expected);
    retention::mark_unreferenced(tx, &old)?;
    let mut unreferenced = Vec::new();
    for key in old {
        let listed: bool = tx
            .prepare_cached(
                "SELECT EXISTS(SELECT 1 FROM unreferenced_objects WHERE object_key = ?1)",
            )
            .map_err(db)?
            .query_row([&key], |row| row.get(0))
            .map_err(db)?;
        if listed {
            unreferenced.push(key);
        }
    }
    Ok(ReplaceOutcome::Replaced { unreferenced })
}
