//! CommitSegment (one segment or a group of them) and InitProducerId, each in one
//! PostgreSQL transaction.
//!
//! A group commit runs, in one READ COMMITTED transaction, with a fixed number of
//! statements however many segments it carries:
//! 1. claim the object keys: `INSERT INTO segments ... ON CONFLICT DO NOTHING RETURNING`.
//!    A concurrent commit of the same key waits here for the first one to end; it then
//!    finds the key taken and replays the stored outcome (or, if the first rolled back,
//!    claims the key);
//! 2. lock the partition rows the claimed commits append to, `SELECT ... FOR UPDATE`
//!    sorted by (topic id, partition), and read their high watermarks: from here on no
//!    other transaction can hand out offsets in these partitions until this one ends;
//! 3. read the producers' epochs and per-partition sequence state; a (producer, partition)
//!    state is only written by a transaction holding that partition's lock, so it is current;
//! 4. decide every run of every commit, in order, with [`crate::commit_plan::plan`] (the
//!    rules every store shares), each commit planned against the state the earlier ones
//!    leave; a commit the rules refuse gives up its claim and leaves nothing else;
//! 5. write index rows, high watermarks, producer states and outcomes, then commit.
//!
//! Producer epochs are read without a lock: InitProducerId only writes `producers` and
//! only reads `producers`, so a commit interleaved with an epoch bump is equivalent to
//! the commit running first, which is an order a client could have observed anyway.

use std::collections::{BTreeMap, HashMap, HashSet};

use deadpool_postgres::Transaction;

use super::error::PgError;
use super::{execute, query, Writer};
use crate::commit_plan::{
    bump_epoch, decode_producer_state, encode_outcomes, encode_producer_state, first_of_keys,
    partitions_of, plan, producer_ids_of, producer_keys_of, repeated_key, replayed_outcomes,
    CommitInputs, CommitPlan, EpochBump, PlannedRow,
};
use crate::store::{
    CommitOutcome, PartitionId, PartitionOffsets, ProducerRejection, SegmentCommit, StoreError,
    TopicId,
};

/// The result of each commit of a group, in order.
type GroupResults = Vec<Result<CommitOutcome, StoreError>>;

/// Commits `commits` in order in one transaction, replaying the stored outcome of any whose
/// object key was committed before.
pub(super) async fn commit_segments(
    mut client: Writer,
    commits: &[SegmentCommit],
) -> Result<GroupResults, PgError> {
    let mut results: Vec<Option<Result<CommitOutcome, StoreError>>> =
        commits.iter().map(|_| None).collect();
    // (index, size) of each commit that may be claimed
    let mut candidates = Vec::new();
    for ((i, commit), first) in commits.iter().enumerate().zip(first_of_keys(commits)) {
        if !first {
            results[i] = Some(Err(repeated_key(commit)));
        } else if let Ok(size) = i64::try_from(commit.object_size) {
            candidates.push((i, size));
        } else {
            results[i] = Some(Err(StoreError::InvalidRequest(
                "object size exceeds i64".into(),
            )));
        }
    }
    let tx = client.begin().await?;
    let claimed = claim(&tx, commits, &candidates).await?;
    let replays: Vec<usize> = candidates
        .iter()
        .map(|(i, _)| *i)
        .filter(|i| !claimed.contains(&commits[*i].object_key))
        .collect();
    for (i, outcome) in replay(&tx, commits, &replays).await? {
        results[i] = Some(outcome);
    }
    let fresh: Vec<&SegmentCommit> = candidates
        .iter()
        .map(|(i, _)| &commits[*i])
        .filter(|c| claimed.contains(&c.object_key))
        .collect();
    let mut state = read_inputs(&tx, &fresh).await?;
    let mut written = Written::default();
    let mut refused = Vec::new();
    for (i, commit) in commits.iter().enumerate() {
        if !claimed.contains(&commit.object_key) || results[i].is_some() {
            continue;
        }
        let planned = plan(commit, state.for_commit(commit))
            .and_then(|planned| written.add(commit, planned, &mut state));
        match planned {
            Ok(chunks) => {
                results[i] = Some(Ok(CommitOutcome {
                    chunks,
                    already_committed: false,
                }));
            }
            Err(refusal) => {
                refused.push(commit.object_key.as_str());
                results[i] = Some(Err(refusal));
            }
        }
    }
    if !refused.is_empty() {
        execute(
            &tx,
            "DELETE FROM segments WHERE object_key = ANY($1)",
            &[&refused],
        )
        .await?;
    }
    written.write(&tx).await?;
    tx.commit().await?;
    results
        .into_iter()
        .map(|r| r.ok_or_else(|| StoreError::Database("a commit got no outcome".into()).into()))
        .collect()
}

/// Claims the object keys of `candidates` (index into `commits`, object size); returns
/// the keys this transaction claimed.
async fn claim(
    tx: &Transaction<'_>,
    commits: &[SegmentCommit],
    candidates: &[(usize, i64)],
) -> Result<HashSet<String>, PgError> {
    let keys: Vec<&str> = candidates
        .iter()
        .map(|(i, _)| commits[*i].object_key.as_str())
        .collect();
    let sizes: Vec<i64> = candidates.iter().map(|(_, size)| *size).collect();
    let times: Vec<i64> = candidates
        .iter()
        .map(|(i, _)| commits[*i].committed_at_ms)
        .collect();
    let rows = query(
        tx,
        "INSERT INTO segments (object_key, object_size, committed_at_ms, outcome)
         SELECT key, size, at, '' FROM unnest($1::text[], $2::int8[], $3::int8[]) AS u(key, size, at)
         ON CONFLICT (object_key) DO NOTHING RETURNING object_key",
        &[&keys, &sizes, &times],
    )
    .await?;
    rows.iter()
        .map(|row| Ok(row.try_get::<_, String>(0)?))
        .collect()
}

/// The stored outcomes of the commits at `indexes`, whose keys were committed before.
async fn replay(
    tx: &Transaction<'_>,
    commits: &[SegmentCommit],
    indexes: &[usize],
) -> Result<Vec<(usize, Result<CommitOutcome, StoreError>)>, PgError> {
    if indexes.is_empty() {
        return Ok(Vec::new());
    }
    let keys: Vec<&str> = indexes
        .iter()
        .map(|i| commits[*i].object_key.as_str())
        .collect();
    let rows = query(
        tx,
        "SELECT object_key, outcome FROM segments WHERE object_key = ANY($1)",
        &[&keys],
    )
    .await?;
    let mut stored = HashMap::new();
    for row in &rows {
        stored.insert(row.try_get::<_, String>(0)?, row.try_get::<_, String>(1)?);
    }
    Ok(indexes
        .iter()
        .map(|&i| {
            let commit = &commits[i];
            let outcome = match stored.get(&commit.object_key) {
                Some(stored) => replayed_outcomes(commit, stored).map(|chunks| CommitOutcome {
                    chunks,
                    already_committed: true,
                }),
                None => Err(StoreError::Database("claimed segment row vanished".into())),
            };
            (i, outcome)
        })
        .collect())
}

fn topic_id(bytes: Vec<u8>) -> Result<TopicId, PgError> {
    bytes
        .try_into()
        .map_err(|_| StoreError::Database("topic id is not 16 bytes".into()).into())
}

/// Locks the commits' partitions in key order and reads what their decisions depend on.
async fn read_inputs(
    tx: &Transaction<'_>,
    commits: &[&SegmentCommit],
) -> Result<CommitInputs, PgError> {
    let mut inputs = CommitInputs::default();
    let partitions = partitions_of(commits.iter().copied());
    if partitions.is_empty() {
        return Ok(inputs);
    }
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
    let producers = producer_ids_of(commits.iter().copied());
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
    let keys = producer_keys_of(commits.iter().copied());
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

/// What the planned commits of a group write, gathered to be written in a few statements.
#[derive(Default)]
struct Written {
    /// Index rows with the object key each belongs to.
    rows: Vec<PlannedRow>,
    /// Final high watermark of each partition.
    high_watermarks: BTreeMap<PartitionId, i64>,
    /// Final sequence state of each (producer, partition).
    producer_states: BTreeMap<crate::commit_plan::ProducerKey, ProducerState>,
    /// (object key, encoded outcome) of each planned commit.
    outcomes: Vec<(String, String)>,
}

type ProducerState = crate::producer_sequence::ProducerPartitionState;

impl Written {
    /// Adds a commit's plan after checking it can be stored, and moves `state` past it;
    /// returns the commit's outcomes.
    fn add(
        &mut self,
        commit: &SegmentCommit,
        plan: CommitPlan,
        state: &mut CommitInputs,
    ) -> Result<Vec<crate::store::ChunkOutcome>, StoreError> {
        if plan
            .rows
            .iter()
            .any(|r| i64::try_from(r.row.byte_offset).is_err())
        {
            return Err(StoreError::InvalidRequest(
                "chunk byte offset exceeds i64".into(),
            ));
        }
        let encoded = encode_outcomes(&plan.outcomes)?;
        state.absorb(&plan);
        self.outcomes.push((commit.object_key.clone(), encoded));
        self.rows.extend(plan.rows);
        self.high_watermarks.extend(plan.high_watermarks);
        self.producer_states.extend(plan.producer_states);
        Ok(plan.outcomes)
    }

    /// Writes index rows, high watermarks, producer states and the stored outcomes.
    /// The four writes touch different rows under locks already held, so they are sent
    /// together (pipelined on the connection) rather than one round trip each.
    async fn write(&self, tx: &Transaction<'_>) -> Result<(), PgError> {
        futures::try_join!(
            self.write_rows(tx),
            self.write_high_watermarks(tx),
            self.write_producer_states(tx),
            self.write_outcomes(tx),
        )?;
        Ok(())
    }

    async fn write_rows(&self, tx: &Transaction<'_>) -> Result<(), PgError> {
        if self.rows.is_empty() {
            return Ok(());
        }
        insert_rows(tx, &self.rows).await
    }

    async fn write_high_watermarks(&self, tx: &Transaction<'_>) -> Result<(), PgError> {
        if self.high_watermarks.is_empty() {
            return Ok(());
        }
        let ids: Vec<&[u8]> = self
            .high_watermarks
            .keys()
            .map(|p| &p.topic_id[..])
            .collect();
        let numbers: Vec<i32> = self.high_watermarks.keys().map(|p| p.partition).collect();
        let next: Vec<i64> = self.high_watermarks.values().copied().collect();
        execute(
            tx,
            "UPDATE partitions p SET next_offset = u.next_offset
             FROM unnest($1::bytea[], $2::int4[], $3::int8[]) AS u(topic_id, partition, next_offset)
             WHERE p.topic_id = u.topic_id AND p.partition = u.partition",
            &[&ids, &numbers, &next],
        )
        .await?;
        Ok(())
    }

    async fn write_producer_states(&self, tx: &Transaction<'_>) -> Result<(), PgError> {
        if self.producer_states.is_empty() {
            return Ok(());
        }
        upsert_states(tx, &self.producer_states).await
    }

    async fn write_outcomes(&self, tx: &Transaction<'_>) -> Result<(), PgError> {
        if self.outcomes.is_empty() {
            return Ok(());
        }
        let keys: Vec<&str> = self.outcomes.iter().map(|(k, _)| k.as_str()).collect();
        let outcomes: Vec<&str> = self.outcomes.iter().map(|(_, o)| o.as_str()).collect();
        execute(
            tx,
            // `= ANY($1)` lets the planner reach the rows through the key's index; a
            // join with unnest alone is planned as a scan of the whole table
            "UPDATE segments s SET outcome = u.outcome
             FROM unnest($1::text[], $2::text[]) AS u(object_key, outcome)
             WHERE s.object_key = ANY($1) AND s.object_key = u.object_key",
            &[&keys, &outcomes],
        )
        .await?;
        Ok(())
    }
}

/// Inserts index rows in one statement: a commit's, or the rows compaction swaps in.
pub(super) async fn insert_rows(tx: &Transaction<'_>, rows: &[PlannedRow]) -> Result<(), PgError> {
    let keys: Vec<&str> = rows.iter().map(|r| r.row.object_key.as_str()).collect();
    let ids: Vec<&[u8]> = rows.iter().map(|r| &r.partition.topic_id[..]).collect();
    let numbers: Vec<i32> = rows.iter().map(|r| r.partition.partition).collect();
    let column = |f: fn(&crate::store::ChunkRow) -> i64| -> Vec<i64> {
        rows.iter().map(|r| f(&r.row)).collect()
    };
    let base = column(|r| r.base_offset);
    let end = column(|r| r.end_offset);
    // checked to fit by the callers
    let byte_offset = column(|r| i64::try_from(r.byte_offset).unwrap_or(i64::MAX));
    let byte_length = column(|r| i64::from(r.byte_length));
    let raw_offset = column(|r| i64::from(r.raw_offset));
    let raw_length = column(|r| i64::from(r.raw_length));
    let max_timestamp = column(|r| r.max_timestamp);
    execute(
        tx,
        "INSERT INTO chunks (topic_id, partition, base_offset, end_offset, object_key, byte_offset,
                             byte_length, raw_offset, raw_length, max_timestamp)
         SELECT * FROM unnest($1::bytea[], $2::int4[], $3::int8[], $4::int8[], $5::text[],
                              $6::int8[], $7::int8[], $8::int8[], $9::int8[], $10::int8[])",
        &[
            &ids,
            &numbers,
            &base,
            &end,
            &keys,
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
    mut client: Writer,
    current: Option<(i64, i16)>,
) -> Result<Result<(i64, i16), ProducerRejection>, PgError> {
    let tx = client.begin().await?;
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
