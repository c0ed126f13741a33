//! CommitSegment and InitProducerId inside one SQLite transaction.

use rusqlite::{params, OptionalExtension, Transaction};

use super::{db, offsets_of};
use crate::producer_sequence::{after_append, decide, Decision, ProducerPartitionState};
use crate::store::{
    ChunkOutcome, ChunkToCommit, PartitionId, PartitionOffsets, ProducerBatch, ProducerRejection,
    RunOutcome, SegmentCommit, StoreError,
};

/// The outcomes stored for an object committed before, returned unchanged.
pub(super) fn replay(
    tx: &Transaction<'_>,
    commit: &SegmentCommit,
) -> Result<Vec<ChunkOutcome>, StoreError> {
    let stored: String = tx
        .prepare_cached("SELECT outcome FROM segments WHERE object_key = ?1")
        .map_err(db)?
        .query_row([&commit.object_key], |r| r.get(0))
        .map_err(db)?;
    let outcomes: Vec<ChunkOutcome> = serde_json::from_str(&stored)
        .map_err(|e| StoreError::Database(format!("stored commit outcome: {e}")))?;
    if outcomes.len() != commit.chunks.len() {
        return Err(StoreError::InvalidRequest(format!(
            "object {} was committed with {} chunks, the retry has {}",
            commit.object_key,
            outcomes.len(),
            commit.chunks.len()
        )));
    }
    Ok(outcomes)
}

/// Assigns offsets run by run, records index rows and the commit's outcome.
pub(super) fn apply(
    tx: &Transaction<'_>,
    commit: &SegmentCommit,
) -> Result<Vec<ChunkOutcome>, StoreError> {
    let mut outcomes = Vec::with_capacity(commit.chunks.len());
    for chunk in &commit.chunks {
        outcomes.push(apply_chunk(tx, &commit.object_key, chunk)?);
    }
    let stored =
        serde_json::to_string(&outcomes).map_err(|e| StoreError::Database(e.to_string()))?;
    tx.prepare_cached(
        "INSERT INTO segments (object_key, object_size, committed_at_ms, outcome) VALUES (?1, ?2, ?3, ?4)",
    )
    .map_err(db)?
    .execute(params![commit.object_key, commit.object_size as i64, commit.committed_at_ms, stored])
    .map_err(db)?;
    Ok(outcomes)
}

/// A stretch of accepted runs that becomes one index row.
struct Row {
    raw_offset: u32,
    raw_end: u32,
    base_offset: i64,
    end_offset: i64,
}

fn apply_chunk(
    tx: &Transaction<'_>,
    object_key: &str,
    chunk: &ChunkToCommit,
) -> Result<ChunkOutcome, StoreError> {
    let p = chunk.partition;
    let Some(before) = offsets_of(tx, &p)? else {
        return Ok(ChunkOutcome::UnknownPartition);
    };
    let mut next = before.high_watermark;
    let mut runs = Vec::with_capacity(chunk.runs.len());
    let mut rows: Vec<Row> = Vec::new();
    for run in &chunk.runs {
        if run.offset_count <= 0 || run.raw_length == 0 {
            return Err(StoreError::InvalidRequest(format!(
                "a run of partition {} holds {} offsets in {} bytes",
                p.partition, run.offset_count, run.raw_length
            )));
        }
        let decision = match &run.producer {
            None => Decision::Append,
            Some(batch) => check_sequence(tx, &p, batch)?,
        };
        let outcome = match decision {
            Decision::Append => {
                let base_offset = next;
                next += run.offset_count;
                if let Some(batch) = &run.producer {
                    record_sequence(tx, &p, batch, base_offset)?;
                }
                let run_end = run.raw_offset + run.raw_length;
                match rows.last_mut() {
                    Some(row) if row.raw_end == run.raw_offset && row.end_offset == base_offset => {
                        row.raw_end = run_end;
                        row.end_offset = next;
                    }
                    _ => rows.push(Row {
                        raw_offset: run.raw_offset,
                        raw_end: run_end,
                        base_offset,
                        end_offset: next,
                    }),
                }
                RunOutcome::Appended { base_offset }
            }
            Decision::Duplicate(base_offset) => RunOutcome::Duplicate { base_offset },
            Decision::Reject(reason) => RunOutcome::Rejected(reason),
        };
        runs.push(outcome);
    }
    for row in &rows {
        tx.prepare_cached(
            "INSERT INTO chunks (topic_id, partition, base_offset, end_offset, object_key, byte_offset,
                                 byte_length, raw_offset, raw_length, max_timestamp)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        )
        .map_err(db)?
        .execute(params![
            &p.topic_id[..],
            p.partition,
            row.base_offset,
            row.end_offset,
            object_key,
            chunk.byte_offset as i64,
            chunk.byte_length,
            row.raw_offset,
            row.raw_end - row.raw_offset,
            chunk.max_timestamp
        ])
        .map_err(db)?;
    }
    if next != before.high_watermark {
        tx.prepare_cached(
            "UPDATE partitions SET next_offset = ?3 WHERE topic_id = ?1 AND partition = ?2",
        )
        .map_err(db)?
        .execute(params![&p.topic_id[..], p.partition, next])
        .map_err(db)?;
    }
    Ok(ChunkOutcome::Committed {
        runs,
        offsets: PartitionOffsets {
            log_start_offset: before.log_start_offset,
            high_watermark: next,
        },
    })
}

fn producer_epoch(tx: &Transaction<'_>, producer_id: i64) -> Result<Option<i16>, StoreError> {
    tx.prepare_cached("SELECT epoch FROM producers WHERE producer_id = ?1")
        .map_err(db)?
        .query_row([producer_id], |r| r.get(0))
        .optional()
        .map_err(db)
}

fn partition_state(
    tx: &Transaction<'_>,
    p: &PartitionId,
    producer_id: i64,
) -> Result<Option<ProducerPartitionState>, StoreError> {
    let stored: Option<String> = tx
        .prepare_cached("SELECT state FROM producer_partitions WHERE producer_id = ?1 AND topic_id = ?2 AND partition = ?3")
        .map_err(db)?
        .query_row(params![producer_id, &p.topic_id[..], p.partition], |r| r.get(0))
        .optional()
        .map_err(db)?;
    stored
        .map(|s| {
            serde_json::from_str(&s)
                .map_err(|e| StoreError::Database(format!("producer state: {e}")))
        })
        .transpose()
}

fn check_sequence(
    tx: &Transaction<'_>,
    p: &PartitionId,
    batch: &ProducerBatch,
) -> Result<Decision, StoreError> {
    let epoch = producer_epoch(tx, batch.producer_id)?;
    let state = partition_state(tx, p, batch.producer_id)?;
    Ok(decide(epoch, state.as_ref(), batch))
}

fn record_sequence(
    tx: &Transaction<'_>,
    p: &PartitionId,
    batch: &ProducerBatch,
    base_offset: i64,
) -> Result<(), StoreError> {
    let state = after_append(
        partition_state(tx, p, batch.producer_id)?,
        batch,
        base_offset,
    );
    let stored = serde_json::to_string(&state).map_err(|e| StoreError::Database(e.to_string()))?;
    tx.prepare_cached(
        "INSERT INTO producer_partitions (producer_id, topic_id, partition, state) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (producer_id, topic_id, partition) DO UPDATE SET state = excluded.state",
    )
    .map_err(db)?
    .execute(params![batch.producer_id, &p.topic_id[..], p.partition, stored])
    .map_err(db)?;
    Ok(())
}

/// Issues a producer id, or bumps the epoch of the given current one.
pub(super) fn init_producer(
    tx: &Transaction<'_>,
    current: Option<(i64, i16)>,
) -> Result<Result<(i64, i16), ProducerRejection>, StoreError> {
    if let Some((producer_id, epoch)) = current {
        match producer_epoch(tx, producer_id)? {
            Some(stored) if stored == epoch && epoch < i16::MAX => {
                tx.execute(
                    "UPDATE producers SET epoch = ?2 WHERE producer_id = ?1",
                    params![producer_id, epoch + 1],
                )
                .map_err(db)?;
                return Ok(Ok((producer_id, epoch + 1)));
            }
            Some(stored) if stored == epoch => {}
            _ => return Ok(Err(ProducerRejection::FencedEpoch)),
        }
    }
    tx.execute("INSERT INTO producers (epoch) VALUES (0)", [])
        .map_err(db)?;
    Ok(Ok((tx.last_insert_rowid(), 0)))
}
