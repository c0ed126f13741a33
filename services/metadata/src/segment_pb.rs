//! Conversions between the CommitSegment messages and the store's types.

use tonic::Status;

use strata_proto::metadata::v1 as pb;

use crate::store::{
    ChunkOutcome, ChunkToCommit, PartitionId, ProducerBatch, ProducerRejection, RunOutcome,
    RunToCommit, TopicId,
};

fn partition_id(topic: &[u8], partition: i32) -> Result<PartitionId, Status> {
    let topic_id = TopicId::try_from(topic).map_err(|_| {
        Status::invalid_argument(format!("topic id must be 16 bytes, got {}", topic.len()))
    })?;
    Ok(PartitionId {
        topic_id,
        partition,
    })
}

fn producer_from_pb(p: &pb::ProducerBatch) -> Result<ProducerBatch, Status> {
    Ok(ProducerBatch {
        producer_id: p.producer_id,
        epoch: i16::try_from(p.epoch)
            .map_err(|_| Status::invalid_argument("producer epoch must fit in 16 bits"))?,
        base_sequence: p.base_sequence,
        last_sequence: p.last_sequence,
    })
}

/// A chunk to commit, with its runs checked to cover it back to back.
pub fn chunk_from_pb(c: &pb::ChunkCommit) -> Result<ChunkToCommit, Status> {
    let mut expected = 0u32;
    let mut runs = Vec::with_capacity(c.runs.len());
    for run in &c.runs {
        if run.raw_offset != expected {
            return Err(Status::invalid_argument(format!(
                "runs of partition {} must be back to back: expected raw offset {expected}, got {}",
                c.partition, run.raw_offset
            )));
        }
        expected = run
            .raw_offset
            .checked_add(run.raw_length)
            .ok_or_else(|| Status::invalid_argument("run length overflows"))?;
        runs.push(RunToCommit {
            raw_offset: run.raw_offset,
            raw_length: run.raw_length,
            offset_count: run.offset_count,
            producer: run.producer.as_ref().map(producer_from_pb).transpose()?,
        });
    }
    if runs.is_empty() || expected != c.raw_length {
        return Err(Status::invalid_argument(format!(
            "runs of partition {} cover {expected} of {} bytes",
            c.partition, c.raw_length
        )));
    }
    Ok(ChunkToCommit {
        partition: partition_id(&c.topic_id, c.partition)?,
        byte_offset: c.byte_offset,
        byte_length: c.byte_length,
        raw_length: c.raw_length,
        batch_count: c.batch_count,
        record_count: c.record_count,
        max_timestamp: c.max_timestamp,
        runs,
    })
}

fn run_to_pb(outcome: &RunOutcome) -> pb::RunResult {
    let (status, base_offset) = match *outcome {
        RunOutcome::Appended { base_offset } => (pb::RunStatus::Appended, base_offset),
        RunOutcome::Duplicate { base_offset } => (pb::RunStatus::Duplicate, base_offset),
        RunOutcome::Rejected(ProducerRejection::OutOfOrderSequence) => {
            (pb::RunStatus::OutOfOrderSequence, -1)
        }
        RunOutcome::Rejected(ProducerRejection::FencedEpoch) => (pb::RunStatus::FencedEpoch, -1),
        RunOutcome::Rejected(ProducerRejection::UnknownProducer) => {
            (pb::RunStatus::UnknownProducer, -1)
        }
    };
    pb::RunResult {
        status: status as i32,
        base_offset,
    }
}

/// The wire form of one chunk's outcome.
pub fn chunk_result_to_pb(p: PartitionId, outcome: &ChunkOutcome) -> pb::ChunkResult {
    let mut result = pb::ChunkResult {
        topic_id: p.topic_id.to_vec(),
        partition: p.partition,
        error: pb::PartitionError::None as i32,
        log_start_offset: -1,
        runs: Vec::new(),
    };
    match outcome {
        ChunkOutcome::Committed { runs, offsets } => {
            result.log_start_offset = offsets.log_start_offset;
            result.runs = runs.iter().map(run_to_pb).collect();
        }
        ChunkOutcome::UnknownPartition => {
            result.error = pb::PartitionError::UnknownTopicOrPartition as i32
        }
    }
    result
}
