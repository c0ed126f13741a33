//! CommitSegment and InitProducerId, each in one PostgreSQL transaction.
//!
//! A commit runs, in one READ COMMITTED transaction:
//! 1. claim the object key: `INSERT INTO segments ... ON CONFLICT DO NOTHING`. A concurrent
//!    commit of the same key waits here for the first one to end; it then finds the key
//!    taken and replays the stored outcome (or, if the first rolled back, claims the key);
//! 2. lock the partition rows it appends to, `SELECT ... FOR UPDATE` sorted by
//!    (topic id, partition), and read their high watermarks: from here on no other commit
//!    can hand out offsets in these partitions until this transaction ends;
//! 3. read the producers' epochs and per-partition sequence state; a (producer, partition)
//!    state is only written by a commit holding that partition's lock, so it is current;
//! 4. decide every run with [`crate::commit_plan::plan`] (the rules every store shares);
//! 5. write index rows, high watermarks, producer states and the outcome, then commit.
//!
//! Producer epochs are read without a lock: InitProducerId only writes `producers` and
//! only reads `producers`, so a commit interleaved with an epoch bump is equivalent to
//! the commit running first, which is an order a client could have observed anyway.

use std::collections::BTreeMap;

use deadpool_postgres::{Client, Transaction};

use super::error::PgError;
use super::{begin_write, execute, query};
use crate::commit_plan::{
    bump_epoch, decode_producer_state, encode_outcomes, encode_producer_state, partitions_of, plan,
    producer_ids_of, producer_keys_of, replayed_outcomes, CommitInputs, CommitPlan, EpochBump,
};
use crate::store::{
    CommitOutcome, PartitionId, PartitionOffsets, ProducerRejection, SegmentCommit, StoreError,
    TopicId,
};

/// Commits `commit`, or replays its stored outcome when its object key was committed.
pub(super) async fn commit_segment(
    mut client: Client,
    commit: &SegmentCommit,
) -> Result<CommitOutcome, PgError> {
    let tx = begin_write(&mut client).await?;
    let size = i64::try_from(commit.object_size)
        .map_err(|_| StoreError::InvalidRequest("object size exceeds i64".into()))?;
    let claimed = execute(
        &tx,
        "INSERT INTO segments (object_key, object_size, committed_at_ms, outcome)
         VALUES ($1, $2, $3, '') ON CONFLICT (object_key) DO NOTHING",
        &[&commit.object_key, &size, &commit.committed_at_ms],
    )
    .await?;
    if claimed == 0 {
        let rows = query(
            &tx,
            "SELECT outcome FROM segments WHERE object_key = $1",
            &[&commit.object_key],
        )
        .await?;
        let stored: String = match rows.first() {
            Some(row) => row.try_get(0)?,
            None => return Err(StoreError::Database("claimed segment row vanished".into()).into()),
        };
        return Ok(CommitOutcome {
            chunks: replayed_outcomes(commit, &stored)?,
            already_committed: true,
        });
    }
    let inputs = read_inputs(&tx, commit).await?;
    let plan = plan(commit, inputs)?;
    write_plan(&tx, commit, &plan).await?;
    tx.commit().await?;
    Ok(CommitOutcome {
        chunks: plan.outcomes,
        already_committed: false,
    })
}

fn topic_id(bytes: Vec<u8>) -> Result<TopicId, PgError> {
    bytes
        .try_into()
        .map_err(|_| StoreError::Database("topic id is not 16 bytes".into()).into())
}

/// Locks the commit's partitions in key order and reads what its decisions depend on.
async fn read_inputs(
    tx: &Transaction<'_>,
    commit: &SegmentCommit,
) -> Result<CommitInputs, PgError> {
    let mut inputs = CommitInputs::default();
    let partitions = partitions_of(commit);
    let ids: Vec<&[u8]> = partitions.iter().map(|p| &p.topic_id[..]).collect();
    let numbers: Vec<i32> = partitions.iter().map(|p| p.partition).collect();
    let locked = query(
        tx,
        "SELECT topic_id, partition, log_start_offset, next_offset FROM partitions
         WHERE (topic_id, partition) IN (SELECT * FROM unnest($1::bytea[], $2::int4[]))
         ORDER BY topic_id, partition FOR UPDATE",
        &[&ids, &numbers],
    )
    .await?;
    for row in &locked {
        let partition = PartitionId {
            topic_id: topic_id(row.try_get(0)?)?,
            partition: row.try_get(1)?,
        };
        let offsets = PartitionOffsets {
            log_start_offset: row.try_get(2)?,
            high_watermark: row.try_get(3)?,
        };
        inputs.offsets.insert(partition, offsets);
    }
    let producers = producer_ids_of(commit);
    if producers.is_empty() {
        return Ok(inputs);
    }
    let epochs = query(
        tx,
        "SELECT producer_id, epoch FROM producers WHERE producer_id = ANY($1)",
        &[&producers],
    )
    .await?;
    for row in &epochs {
        inputs.epochs.insert(row.try_get(0)?, row.try_get(1)?);
    }
    let keys = producer_keys_of(commit);
    let key_producers: Vec<i64> = keys.iter().map(|k| k.0).collect();
    let key_ids: Vec<&[u8]> = keys.iter().map(|k| &k.1.topic_id[..]).collect();
    let key_numbers: Vec<i32> = keys.iter().map(|k| k.1.partition).collect();
    let states = query(
        tx,
        "SELECT producer_id, topic_id, partition, state FROM producer_partitions
         WHERE (producer_id, topic_id, partition) IN
               (SELECT * FROM unnest($1::int8[], $2::bytea[], $3::int4[]))",
        &[&key_producers, &key_ids, &key_numbers],
    )
    .await?;
    for row in &states {
        let partition = PartitionId {
            topic_id: topic_id(row.try_get(1)?)?,
            partition: row.try_get(2)?,
        };
        let state: String = row.try_get(3)?;
        inputs
            .states
            .insert((row.try_get(0)?, partition), decode_producer_state(&state)?);
    }
    Ok(inputs)
}

/// Writes a plan: index rows, high watermarks, producer states and the stored outcome.
async fn write_plan(
    tx: &Transaction<'_>,
    commit: &SegmentCommit,
    plan: &CommitPlan,
) -> Result<(), PgError> {
    if !plan.rows.is_empty() {
        insert_rows(tx, commit, plan).await?;
    }
    if !plan.high_watermarks.is_empty() {
        let ids: Vec<&[u8]> = plan
            .high_watermarks
            .keys()
            .map(|p| &p.topic_id[..])
            .collect();
        let numbers: Vec<i32> = plan.high_watermarks.keys().map(|p| p.partition).collect();
        let next: Vec<i64> = plan.high_watermarks.values().copied().collect();
        execute(
            tx,
            "UPDATE partitions p SET next_offset = u.next_offset
             FROM unnest($1::bytea[], $2::int4[], $3::int8[]) AS u(topic_id, partition, next_offset)
             WHERE p.topic_id = u.topic_id AND p.partition = u.partition",
            &[&ids, &numbers, &next],
        )
        .await?;
    }
    if !plan.producer_states.is_empty() {
        upsert_states(tx, &plan.producer_states).await?;
    }
    let outcome = encode_outcomes(&plan.outcomes)?;
    execute(
        tx,
        "UPDATE segments SET outcome = $2 WHERE object_key = $1",
        &[&commit.object_key, &outcome],
    )
    .await?;
    Ok(())
}

async fn insert_rows(
    tx: &Transaction<'_>,
    commit: &SegmentCommit,
    plan: &CommitPlan,
) -> Result<(), PgError> {
    let rows = &plan.rows;
    let ids: Vec<&[u8]> = rows.iter().map(|r| &r.partition.topic_id[..]).collect();
    let numbers: Vec<i32> = rows.iter().map(|r| r.partition.partition).collect();
    let column = |f: fn(&crate::store::ChunkRow) -> i64| -> Vec<i64> {
        rows.iter().map(|r| f(&r.row)).collect()
    };
    let base = column(|r| r.base_offset);
    let end = column(|r| r.end_offset);
    let byte_offset = rows
        .iter()
        .map(|r| i64::try_from(r.row.byte_offset))
        .collect::<Result<Vec<i64>, _>>()
        .map_err(|_| StoreError::InvalidRequest("chunk byte offset exceeds i64".into()))?;
    let byte_length = column(|r| i64::from(r.byte_length));
    let raw_offset = column(|r| i64::from(r.raw_offset));
    let raw_length = column(|r| i64::from(r.raw_length));
    let max_timestamp = column(|r| r.max_timestamp);
    execute(
        tx,
        "INSERT INTO chunks (topic_id, partition, base_offset, end_offset, object_key, byte_offset,
                             byte_length, raw_offset, raw_length, max_timestamp)
         SELECT u.topic_id, u.partition, u.base_offset, u.end_offset, $5, u.byte_offset,
                u.byte_length, u.raw_offset, u.raw_length, u.max_timestamp
         FROM unnest($1::bytea[], $2::int4[], $3::int8[], $4::int8[], $6::int8[], $7::int8[],
                     $8::int8[], $9::int8[], $10::int8[])
              AS u(topic_id, partition, base_offset, end_offset, byte_offset, byte_length,
                   raw_offset, raw_length, max_timestamp)",
        &[
            &ids,
            &numbers,
            &base,
            &end,
            &commit.object_key,
            &byte_offset,
            &byte_length,
            &raw_offset,
            &raw_length,
            &max_timestamp,
        ],
    )
    .await?;
    Ok(())
}

async fn upsert_states(
    tx: &Transaction<'_>,
    states: &BTreeMap<
        crate::commit_plan::ProducerKey,
        crate::producer_sequence::ProducerPartitionState,
    >,
) -> Result<(), PgError> {
    let producers: Vec<i64> = states.keys().map(|k| k.0).collect();
    let ids: Vec<&[u8]> = states.keys().map(|k| &k.1.topic_id[..]).collect();
    let numbers: Vec<i32> = states.keys().map(|k| k.1.partition).collect();
    let encoded = states
        .values()
        .map(encode_producer_state)
        .collect::<Result<Vec<String>, StoreError>>()?;
    execute(
        tx,
        "INSERT INTO producer_partitions (producer_id, topic_id, partition, state)
         SELECT * FROM unnest($1::int8[], $2::bytea[], $3::int4[], $4::text[])
         ON CONFLICT (producer_id, topic_id, partition) DO UPDATE SET state = excluded.state",
        &[&producers, &ids, &numbers, &encoded],
    )
    .await?;
    Ok(())
}

/// Issues a producer id with epoch 0, or bumps the epoch of the given current one.
pub(super) async fn init_producer(
    mut client: Client,
    current: Option<(i64, i16)>,
) -> Result<Result<(i64, i16), ProducerRejection>, PgError> {
    let tx = begin_write(&mut client).await?;
    if let Some((producer_id, epoch)) = current {
        let rows = query(
            &tx,
            "SELECT epoch FROM producers WHERE producer_id = $1 FOR UPDATE",
            &[&producer_id],
        )
        .await?;
        let stored: Option<i16> = rows.first().map(|r| r.try_get(0)).transpose()?;
        match bump_epoch(stored, epoch) {
            EpochBump::Bump(next) => {
                execute(
                    &tx,
                    "UPDATE producers SET epoch = $2 WHERE producer_id = $1",
                    &[&producer_id, &next],
                )
                .await?;
                tx.commit().await?;
                return Ok(Ok((producer_id, next)));
            }
            EpochBump::NewProducer => {}
            EpochBump::Fenced => return Ok(Err(ProducerRejection::FencedEpoch)),
        }
    }
    let rows = query(
        &tx,
        "INSERT INTO producers (epoch) VALUES (0) RETURNING producer_id",
        &[],
    )
    .await?;
    let producer_id: i64 = match rows.first() {
        Some(row) => row.try_get(0)?,
        None => return Err(StoreError::Database("no producer id was issued".into()).into()),
    };
    tx.commit().await?;
    Ok(Ok((producer_id, 0)))
}
