//! CommitSegment and InitProducerId inside one SQLite transaction.
//!
//! The decisions (offsets, idempotent-producer sequences, index rows) are
//! [`crate::commit_plan`]'s, shared with PostgreSQL; this file only reads the plan's inputs
//! and writes its results.

use rusqlite::{params, Connection, OptionalExtension};

use super::{db, offsets_of};
use crate::commit_plan::{
    bump_epoch, decode_producer_state, encode_outcomes, encode_producer_state, partitions_of, plan,
    producer_keys_of, replayed_outcomes, CommitInputs, EpochBump,
};
use crate::store::{
    ChunkOutcome, CommitOutcome, PartitionId, ProducerRejection, SegmentCommit, StoreError,
};

/// Commits one segment, or replays its stored outcome when its key was committed before.
pub(super) fn commit_one(
    tx: &Connection,
    commit: &SegmentCommit,
) -> Result<CommitOutcome, StoreError> {
    let seen: bool = tx
        .prepare_cached("SELECT EXISTS(SELECT 1 FROM segments WHERE object_key = ?1)")
        .map_err(db)?
        .query_row([&commit.object_key], |r| r.get(0))
        .map_err(db)?;
    Ok(if seen {
        CommitOutcome {
            chunks: replay(tx, commit)?,
            already_committed: true,
        }
    } else {
        CommitOutcome {
            chunks: apply(tx, commit)?,
            already_committed: false,
        }
    })
}

/// The outcomes stored for an object committed before, returned unchanged.
fn replay(tx: &Connection, commit: &SegmentCommit) -> Result<Vec<ChunkOutcome>, StoreError> {
    let stored: String = tx
        .prepare_cached("SELECT outcome FROM segments WHERE object_key = ?1")
        .map_err(db)?
        .query_row([&commit.object_key], |r| r.get(0))
        .map_err(db)?;
    replayed_outcomes(commit, &stored)
}

/// Reads what the plan needs, applies it, and records the commit's outcome.
fn apply(tx: &Connection, commit: &SegmentCommit) -> Result<Vec<ChunkOutcome>, StoreError> {
    let mut inputs = CommitInputs::default();
    for p in partitions_of([commit]) {
        if let Some(offsets) = offsets_of(tx, &p)? {
            inputs.offsets.insert(p, offsets);
        }
    }
    for (producer_id, p) in producer_keys_of([commit]) {
        if let Some(epoch) = producer_epoch(tx, producer_id)? {
            inputs.epochs.insert(producer_id, epoch);
        }
        if let Some(state) = partition_state(tx, &p, producer_id)? {
            inputs.states.insert((producer_id, p), state);
        }
    }
    let planned = plan(commit, inputs)?;
    for row in &planned.rows {
        let (p, r) = (&row.partition, &row.row);
        tx.prepare_cached(
            "INSERT INTO chunks (topic_id, partition, base_offset, end_offset, object_key, byte_offset,
                                 byte_length, raw_offset, raw_length, max_timestamp)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        )
        .map_err(db)?
        .execute(params![
            &p.topic_id[..],
            p.partition,
            r.base_offset,
            r.end_offset,
            r.object_key,
            r.byte_offset as i64,
            r.byte_length,
            r.raw_offset,
            r.raw_length,
            r.max_timestamp
        ])
        .map_err(db)?;
    }
    for (p, high_watermark) in &planned.high_watermarks {
        tx.prepare_cached(
            "UPDATE partitions SET next_offset = ?3 WHERE topic_id = ?1 AND partition = ?2",
        )
        .map_err(db)?
        .execute(params![&p.topic_id[..], p.partition, high_watermark])
        .map_err(db)?;
    }
    for ((producer_id, p), state) in &planned.producer_states {
        tx.prepare_cached(
            "INSERT INTO producer_partitions (producer_id, topic_id, partition, state) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (producer_id, topic_id, partition) DO UPDATE SET state = excluded.state",
        )
        .map_err(db)?
        .execute(params![producer_id, &p.topic_id[..], p.partition, encode_producer_state(state)?])
        .map_err(db)?;
    }
    tx.prepare_cached(
        "INSERT INTO segments (object_key, object_size, committed_at_ms, outcome) VALUES (?1, ?2, ?3, ?4)",
    )
    .map_err(db)?
    .execute(params![
        commit.object_key,
        commit.object_size as i64,
        commit.committed_at_ms,
        encode_outcomes(&planned.outcomes)?
    ])
    .map_err(db)?;
    Ok(planned.outcomes)
}

fn producer_epoch(tx: &Connection, producer_id: i64) -> Result<Option<i16>, StoreError> {
    tx.prepare_cached("SELECT epoch FROM producers WHERE producer_id = ?1")
        .map_err(db)?
        .query_row([producer_id], |r| r.get(0))
        .optional()
        .map_err(db)
}

fn partition_state(
    tx: &Connection,
    p: &PartitionId,
    producer_id: i64,
) -> Result<Option<crate::producer_sequence::ProducerPartitionState>, StoreError> {
    let stored: Option<String> = tx
        .prepare_cached("SELECT state FROM producer_partitions WHERE producer_id = ?1 AND topic_id = ?2 AND partition = ?3")
        .map_err(db)?
        .query_row(params![producer_id, &p.topic_id[..], p.partition], |r| r.get(0))
        .optional()
        .map_err(db)?;
    stored.as_deref().map(decode_producer_state).transpose()
}

/// Issues a producer id, or bumps the epoch of the given current one.
pub(super) fn init_producer(
    tx: &Connection,
    current: Option<(i64, i16)>,
) -> Result<Result<(i64, i16), ProducerRejection>, StoreError> {
    if let Some((producer_id, epoch)) = current {
        match bump_epoch(producer_epoch(tx, producer_id)?, epoch) {
            EpochBump::Bump(next) => {
                tx.execute(
                    "UPDATE producers SET epoch = ?2 WHERE producer_id = ?1",
                    params![producer_id, next],
                )
                .map_err(db)?;
                return Ok(Ok((producer_id, next)));
            }
            EpochBump::NewProducer => {}
            EpochBump::Fenced => return Ok(Err(ProducerRejection::FencedEpoch)),
        }
    }
    tx.execute("INSERT INTO producers (epoch) VALUES (0)", [])
        .map_err(db)?;
    Ok(Ok((tx.last_insert_rowid(), 0)))
}
