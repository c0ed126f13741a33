//! Store-neutral decisions of CommitSegment and InitProducerId.
//!
//! A store reads what a commit depends on inside its transaction (the offsets of the
//! partitions it touches, with those rows locked; the epochs of the producers it names; their
//! per-partition sequence state), hands them to [`plan`], and writes the returned
//! [`CommitPlan`] back in the same transaction. The rules therefore live in one place:
//!
//! - A chunk's accepted runs get consecutive offsets starting at the partition's high
//!   watermark; the high watermark moves by exactly the offsets handed out (dense offsets).
//! - Idempotent batches are checked with [`crate::producer_sequence`]; duplicates are
//!   answered with their original offset, refused batches get no offsets, and neither
//!   leaves an index row.
//! - Accepted runs that are contiguous both in the decompressed chunk and in offsets share
//!   one index row.
//! - A chunk for a missing partition is [`ChunkOutcome::UnknownPartition`]; the rest of the
//!   segment commits.
//!
//! The stored outcome of a commit (what makes CommitSegment idempotent by object key) is
//! encoded and checked on replay by [`encode_outcomes`] and [`replayed_outcomes`].

use std::collections::{BTreeMap, BTreeSet};

use crate::producer_sequence::{after_append, decide, Decision, ProducerPartitionState};
use crate::store::{
    ChunkOutcome, ChunkRow, ChunkToCommit, PartitionId, PartitionOffsets, RunOutcome,
    SegmentCommit, StoreError,
};

/// A producer's state on one partition is keyed by (producer id, partition).
pub type ProducerKey = (i64, PartitionId);

/// What a store read before planning a commit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommitInputs {
    /// Offsets of the commit's partitions that exist; a missing one is unknown.
    pub offsets: BTreeMap<PartitionId, PartitionOffsets>,
    /// Current epoch of each named producer that was ever issued.
    pub epochs: BTreeMap<i64, i16>,
    /// Stored sequence state of each (producer, partition) the commit names.
    pub states: BTreeMap<ProducerKey, ProducerPartitionState>,
}

/// An index row to insert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedRow {
    /// The partition the row belongs to.
    pub partition: PartitionId,
    /// The row itself.
    pub row: ChunkRow,
}

/// Everything a commit writes, and what it answers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommitPlan {
    /// One outcome per chunk, in request order; stored as the commit's outcome.
    pub outcomes: Vec<ChunkOutcome>,
    /// Index rows to insert, in request order.
    pub rows: Vec<PlannedRow>,
    /// New high watermark of each partition that received offsets.
    pub high_watermarks: BTreeMap<PartitionId, i64>,
    /// New sequence state of each (producer, partition) that appended a batch.
    pub producer_states: BTreeMap<ProducerKey, ProducerPartitionState>,
}

impl CommitInputs {
    /// The part of these inputs `commit` depends on (as a store would have read for it).
    pub fn for_commit(&self, commit: &SegmentCommit) -> CommitInputs {
        let mut inputs = CommitInputs::default();
        for p in partitions_of([commit]) {
            if let Some(offsets) = self.offsets.get(&p) {
                inputs.offsets.insert(p, *offsets);
            }
        }
        for key in producer_keys_of([commit]) {
            if let Some(epoch) = self.epochs.get(&key.0) {
                inputs.epochs.insert(key.0, *epoch);
            }
            if let Some(state) = self.states.get(&key) {
                inputs.states.insert(key, state.clone());
            }
        }
        inputs
    }

    /// Applies what `plan` writes, so a later commit of the same transaction plans against
    /// the state this one leaves.
    pub fn absorb(&mut self, plan: &CommitPlan) {
        for (p, high_watermark) in &plan.high_watermarks {
            if let Some(offsets) = self.offsets.get_mut(p) {
                offsets.high_watermark = *high_watermark;
            }
        }
        for (key, state) in &plan.producer_states {
            self.states.insert(*key, state.clone());
        }
    }
}

/// For each commit, whether it is the first of `commits` with its object key.
pub fn first_of_keys(commits: &[SegmentCommit]) -> Vec<bool> {
    let mut seen = std::collections::HashSet::new();
    commits
        .iter()
        .map(|c| seen.insert(c.object_key.as_str()))
        .collect()
}

/// The refusal of a commit whose object key came earlier in the same group commit.
pub fn repeated_key(commit: &SegmentCommit) -> StoreError {
    StoreError::InvalidRequest(format!(
        "object {} appears twice in one group commit",
        commit.object_key
    ))
}

/// The partitions some commits touch, sorted and without repeats: the order in which a
/// store locks them, so that concurrent commits never wait on each other in a cycle.
pub fn partitions_of<'a>(commits: impl IntoIterator<Item = &'a SegmentCommit>) -> Vec<PartitionId> {
    let set: BTreeSet<PartitionId> = commits
        .into_iter()
        .flat_map(|commit| commit.chunks.iter().map(|c| c.partition))
        .collect();
    set.into_iter().collect()
}

/// The (producer, partition) pairs some commits name, sorted and without repeats.
pub fn producer_keys_of<'a>(
    commits: impl IntoIterator<Item = &'a SegmentCommit>,
) -> Vec<ProducerKey> {
    let set: BTreeSet<ProducerKey> = commits
        .into_iter()
        .flat_map(|commit| commit.chunks.iter())
        .flat_map(|c| {
            c.runs
                .iter()
                .filter_map(move |r| r.producer.map(|p| (p.producer_id, c.partition)))
        })
        .collect();
    set.into_iter().collect()
}

/// The producer ids some commits name, sorted and without repeats.
pub fn producer_ids_of<'a>(commits: impl IntoIterator<Item = &'a SegmentCommit>) -> Vec<i64> {
    let set: BTreeSet<i64> = producer_keys_of(commits).into_iter().map(|k| k.0).collect();
    set.into_iter().collect()
}

/// Decides every run of `commit` given what the store read.
pub fn plan(commit: &SegmentCommit, inputs: CommitInputs) -> Result<CommitPlan, StoreError> {
    let CommitInputs {
        mut offsets,
        epochs,
        mut states,
    } = inputs;
    let mut plan = CommitPlan::default();
    for chunk in &commit.chunks {
        let Some(partition_offsets) = offsets.get_mut(&chunk.partition) else {
            plan.outcomes.push(ChunkOutcome::UnknownPartition);
            continue;
        };
        let mut producers = ProducerView {
            epochs: &epochs,
            states: &mut states,
            changed: &mut plan.producer_states,
        };
        let before = partition_offsets.high_watermark;
        let (outcome, rows) =
            plan_chunk(&commit.object_key, chunk, partition_offsets, &mut producers)?;
        if partition_offsets.high_watermark != before {
            plan.high_watermarks
                .insert(chunk.partition, partition_offsets.high_watermark);
        }
        plan.outcomes.push(outcome);
        plan.rows.extend(rows);
    }
    Ok(plan)
}

/// Producer epochs and states as they stand while a commit is planned.
struct ProducerView<'a> {
    epochs: &'a BTreeMap<i64, i16>,
    states: &'a mut BTreeMap<ProducerKey, ProducerPartitionState>,
    changed: &'a mut BTreeMap<ProducerKey, ProducerPartitionState>,
}

fn plan_chunk(
    object_key: &str,
    chunk: &ChunkToCommit,
    offsets: &mut PartitionOffsets,
    producers: &mut ProducerView<'_>,
) -> Result<(ChunkOutcome, Vec<PlannedRow>), StoreError> {
    let p = chunk.partition;
    let mut runs = Vec::with_capacity(chunk.runs.len());
    let mut rows: Vec<PlannedRow> = Vec::new();
    for run in &chunk.runs {
        if run.offset_count <= 0
            || run.raw_length == 0
            || run.raw_offset.checked_add(run.raw_length).is_none()
        {
            return Err(StoreError::InvalidRequest(format!(
                "a run of partition {} holds {} offsets in {} bytes at {}",
                p.partition, run.offset_count, run.raw_length, run.raw_offset
            )));
        }
        let decision = match &run.producer {
            None => Decision::Append,
            Some(batch) => decide(
                producers.epochs.get(&batch.producer_id).copied(),
                producers.states.get(&(batch.producer_id, p)),
                batch,
            ),
        };
        let outcome = match decision {
            Decision::Append => {
                let base_offset = offsets.high_watermark;
                offsets.high_watermark += run.offset_count;
                if let Some(batch) = &run.producer {
                    let key = (batch.producer_id, p);
                    let state = after_append(producers.states.remove(&key), batch, base_offset);
                    producers.changed.insert(key, state.clone());
                    producers.states.insert(key, state);
                }
                let span = Span {
                    raw_offset: run.raw_offset,
                    raw_length: run.raw_length,
                    base_offset,
                    end_offset: offsets.high_watermark,
                };
                add_run(&mut rows, object_key, chunk, span);
                RunOutcome::Appended { base_offset }
            }
            Decision::Duplicate(base_offset) => RunOutcome::Duplicate { base_offset },
            Decision::Reject(reason) => RunOutcome::Rejected(reason),
        };
        runs.push(outcome);
    }
    let outcome = ChunkOutcome::Committed {
        runs,
        offsets: *offsets,
    };
    Ok((outcome, rows))
}

/// Where an accepted run lies in the decompressed chunk and in offsets.
struct Span {
    raw_offset: u32,
    raw_length: u32,
    base_offset: i64,
    end_offset: i64,
}

/// Adds an accepted run to the rows: it extends the last row when it follows that row
/// directly in both bytes and offsets, and starts a new row otherwise.
fn add_run(rows: &mut Vec<PlannedRow>, object_key: &str, chunk: &ChunkToCommit, span: Span) {
    if let Some(last) = rows.last_mut() {
        let row = &mut last.row;
        if row.raw_offset + row.raw_length == span.raw_offset && row.end_offset == span.base_offset
        {
            row.raw_length += span.raw_length;
            row.end_offset = span.end_offset;
            return;
        }
    }
    rows.push(PlannedRow {
        partition: chunk.partition,
        row: ChunkRow {
            object_key: object_key.to_string(),
            byte_offset: chunk.byte_offset,
            byte_length: chunk.byte_length,
            raw_offset: span.raw_offset,
            raw_length: span.raw_length,
            base_offset: span.base_offset,
            end_offset: span.end_offset,
            max_timestamp: chunk.max_timestamp,
        },
    });
}

/// Encodes a commit's outcomes for storage beside its object key.
pub fn encode_outcomes(outcomes: &[ChunkOutcome]) -> Result<String, StoreError> {
    serde_json::to_string(outcomes)
        .map_err(|e| StoreError::Database(format!("encoding a commit outcome: {e}")))
}

/// The outcomes stored for an object committed before, checked against the retried commit.
pub fn replayed_outcomes(
    commit: &SegmentCommit,
    stored: &str,
) -> Result<Vec<ChunkOutcome>, StoreError> {
    let outcomes: Vec<ChunkOutcome> = serde_json::from_str(stored)
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

/// Encodes a producer's sequence state on one partition for storage.
pub fn encode_producer_state(state: &ProducerPartitionState) -> Result<String, StoreError> {
    serde_json::to_string(state)
        .map_err(|e| StoreError::Database(format!("encoding producer state: {e}")))
}

/// Decodes a stored producer sequence state.
pub fn decode_producer_state(stored: &str) -> Result<ProducerPartitionState, StoreError> {
    serde_json::from_str(stored).map_err(|e| StoreError::Database(format!("producer state: {e}")))
}

/// What InitProducerId does for a client that names its current (id, epoch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EpochBump {
    /// Store and return this new epoch for the same id.
    Bump(i16),
    /// The epoch is exhausted: issue a new producer id with epoch 0.
    NewProducer,
    /// The given epoch is not the producer's current one (or the id is unknown).
    Fenced,
}

/// Decides InitProducerId given the stored epoch of the named producer id.
pub fn bump_epoch(stored: Option<i16>, given: i16) -> EpochBump {
    match stored {
        Some(current) if current == given && given < i16::MAX => EpochBump::Bump(given + 1),
        Some(current) if current == given => EpochBump::NewProducer,
        _ => EpochBump::Fenced,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::store::{ProducerBatch, ProducerRejection, RunToCommit};

    const T: [u8; 16] = [1; 16];

    fn pid(partition: i32) -> PartitionId {
        PartitionId {
            topic_id: T,
            partition,
        }
    }

    fn run(raw_offset: u32, offsets: i64, producer: Option<ProducerBatch>) -> RunToCommit {
        RunToCommit {
            raw_offset,
            raw_length: 10,
            offset_count: offsets,
            producer,
        }
    }

    fn chunk(partition: i32, runs: Vec<RunToCommit>) -> ChunkToCommit {
        ChunkToCommit {
            partition: pid(partition),
            byte_offset: 0,
            byte_length: 10,
            raw_length: 10 * runs.len() as u32,
            batch_count: runs.len() as u32,
            record_count: 1,
            max_timestamp: 7,
            runs,
        }
    }

    fn commit(chunks: Vec<ChunkToCommit>) -> SegmentCommit {
        SegmentCommit {
            object_key: "k".into(),
            object_size: 1,
            chunks,
            committed_at_ms: 0,
        }
    }

    fn at(high_watermark: i64) -> PartitionOffsets {
        PartitionOffsets {
            log_start_offset: 0,
            high_watermark,
        }
    }

    fn batch(base: i32, last: i32) -> Option<ProducerBatch> {
        Some(ProducerBatch {
            producer_id: 9,
            epoch: 0,
            base_sequence: base,
            last_sequence: last,
        })
    }

    #[test]
    fn runs_get_dense_offsets_and_contiguous_runs_share_a_row() {
        let c = commit(vec![chunk(0, vec![run(0, 3, None), run(10, 2, None)])]);
        let inputs = CommitInputs {
            offsets: BTreeMap::from([(pid(0), at(5))]),
            ..CommitInputs::default()
        };
        let plan = plan(&c, inputs).unwrap();
        assert_eq!(plan.high_watermarks, BTreeMap::from([(pid(0), 10)]));
        assert_eq!(plan.rows.len(), 1);
        let row = &plan.rows[0].row;
        assert_eq!((row.raw_offset, row.raw_length), (0, 20));
        assert_eq!((row.base_offset, row.end_offset), (5, 10));
        assert_eq!(
            plan.outcomes,
            [ChunkOutcome::Committed {
                runs: vec![
                    RunOutcome::Appended { base_offset: 5 },
                    RunOutcome::Appended { base_offset: 8 }
                ],
                offsets: at(10),
            }]
        );
    }

    #[test]
    fn skipped_runs_split_rows_and_unknown_partitions_commit_nothing() {
        let c = commit(vec![
            chunk(
                0,
                vec![
                    run(0, 1, batch(0, 0)),
                    run(10, 1, batch(5, 5)),
                    run(20, 1, None),
                ],
            ),
            chunk(3, vec![run(0, 1, None)]),
        ]);
        let inputs = CommitInputs {
            offsets: BTreeMap::from([(pid(0), at(0))]),
            epochs: BTreeMap::from([(9, 0)]),
            ..CommitInputs::default()
        };
        let plan = plan(&c, inputs).unwrap();
        let spans: Vec<_> = plan
            .rows
            .iter()
            .map(|r| (r.row.raw_offset, r.row.base_offset, r.row.end_offset))
            .collect();
        assert_eq!(spans, [(0, 0, 1), (20, 1, 2)]);
        assert_eq!(plan.outcomes[1], ChunkOutcome::UnknownPartition);
        let ChunkOutcome::Committed { runs, .. } = &plan.outcomes[0] else {
            panic!("partition 0 exists");
        };
        assert_eq!(
            runs[1],
            RunOutcome::Rejected(ProducerRejection::OutOfOrderSequence)
        );
        let state = &plan.producer_states[&(9, pid(0))];
        assert_eq!(state.last_sequence, 0);
    }

    #[test]
    fn a_retry_within_one_commit_is_a_duplicate() {
        let c = commit(vec![chunk(
            0,
            vec![run(0, 2, batch(0, 1)), run(10, 2, batch(0, 1))],
        )]);
        let inputs = CommitInputs {
            offsets: BTreeMap::from([(pid(0), at(0))]),
            epochs: BTreeMap::from([(9, 0)]),
            ..CommitInputs::default()
        };
        let plan = plan(&c, inputs).unwrap();
        let ChunkOutcome::Committed { runs, offsets } = &plan.outcomes[0] else {
            panic!("partition 0 exists");
        };
        assert_eq!(runs[1], RunOutcome::Duplicate { base_offset: 0 });
        assert_eq!(offsets.high_watermark, 2);
    }

    #[test]
    fn empty_runs_are_invalid() {
        let c = commit(vec![chunk(0, vec![run(0, 0, None)])]);
        let inputs = CommitInputs {
            offsets: BTreeMap::from([(pid(0), at(0))]),
            ..CommitInputs::default()
        };
        assert!(matches!(
            plan(&c, inputs),
            Err(StoreError::InvalidRequest(_))
        ));
    }

    #[test]
    fn lock_order_is_sorted_and_unique() {
        let c = commit(vec![
            chunk(2, vec![run(0, 1, batch(0, 0))]),
            chunk(0, vec![run(0, 1, None)]),
        ]);
        assert_eq!(partitions_of([&c]), [pid(0), pid(2)]);
        assert_eq!(producer_keys_of([&c]), [(9, pid(2))]);
        assert_eq!(producer_ids_of([&c]), [9]);
    }

    #[test]
    fn replays_must_match_the_chunk_count() {
        let c = commit(vec![chunk(0, vec![run(0, 1, None)])]);
        let stored = encode_outcomes(&[ChunkOutcome::UnknownPartition]).unwrap();
        assert_eq!(
            replayed_outcomes(&c, &stored).unwrap(),
            [ChunkOutcome::UnknownPartition]
        );
        let two = encode_outcomes(&vec![ChunkOutcome::UnknownPartition; 2]).unwrap();
        assert!(matches!(
            replayed_outcomes(&c, &two),
            Err(StoreError::InvalidRequest(_))
        ));
    }

    #[test]
    fn epochs_bump_until_exhausted() {
        assert_eq!(bump_epoch(Some(3), 3), EpochBump::Bump(4));
        assert_eq!(bump_epoch(Some(i16::MAX), i16::MAX), EpochBump::NewProducer);
        assert_eq!(bump_epoch(Some(4), 3), EpochBump::Fenced);
        assert_eq!(bump_epoch(None, 0), EpochBump::Fenced);
    }
}
