//! ListOffsets: latest (-1), earliest (-2), max timestamp (-3) and by timestamp.

use bytes::{Bytes, BytesMut};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::list_offsets_request::ListOffsetsPartition;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};
use kafka_protocol::records::RecordBatchDecoder;
use strata_batch::set_base_offset;
use strata_proto::metadata::v1 as pb;

use crate::context::Agent;
use crate::read::placed_batches;
use crate::topics::Topic;

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;

/// Answers each partition's offset query.
pub async fn handle(agent: &Agent, request: ListOffsetsRequest) -> ListOffsetsResponse {
    let mut topics = Vec::with_capacity(request.topics.len());
    for t in request.topics {
        let topic = agent.topics.by_name(&t.name).await;
        let mut partitions = Vec::with_capacity(t.partitions.len());
        for p in &t.partitions {
            let base =
                ListOffsetsPartitionResponse::default().with_partition_index(p.partition_index);
            let answer = match &topic {
                Ok(topic) if topic.has_partition(p.partition_index) => {
                    lookup(agent, topic, p).await
                }
                Ok(_) => Err(ResponseError::UnknownTopicOrPartition),
                Err(error) => Err(*error),
            };
            partitions.push(match answer {
                Ok((offset, timestamp)) => base.with_offset(offset).with_timestamp(timestamp),
                Err(error) => base
                    .with_error_code(error.code())
                    .with_offset(-1)
                    .with_timestamp(-1),
            });
        }
        topics.push(
            ListOffsetsTopicResponse::default()
                .with_name(t.name)
                .with_partitions(partitions),
        );
    }
    ListOffsetsResponse::default().with_topics(topics)
}

/// The (offset, timestamp) a query resolves to; (-1, -1) when no record matches.
async fn lookup(
    agent: &Agent,
    topic: &Topic,
    p: &ListOffsetsPartition,
) -> Result<(i64, i64), ResponseError> {
    let partition = pb::PartitionRef {
        topic_id: topic.id.as_bytes().to_vec(),
        partition: p.partition_index,
    };
    if p.timestamp == LATEST || p.timestamp == EARLIEST {
        let (log_start, high_watermark) =
            agent.partition_offsets(topic.id, p.partition_index).await?;
        let offset = if p.timestamp == LATEST {
            high_watermark
        } else {
            log_start
        };
        return Ok((offset, -1));
    }
    if p.timestamp < MAX_TIMESTAMP {
        return Err(ResponseError::InvalidRequest);
    }
    let response = agent
        .metadata
        .clone()
        .lookup_by_timestamp(pb::LookupByTimestampRequest {
            partition: Some(partition.clone()),
            timestamp: p.timestamp,
            max_timestamp: p.timestamp == MAX_TIMESTAMP,
        })
        .await
        .map_err(|_| ResponseError::RequestTimedOut)?
        .into_inner();
    if response.error != pb::PartitionError::None as i32 {
        return Err(ResponseError::UnknownTopicOrPartition);
    }
    let Some(mut row) = response.chunk else {
        return Ok((-1, -1));
    };
    let exact = p.timestamp == MAX_TIMESTAMP;
    let target = if exact {
        row.max_timestamp
    } else {
        p.timestamp
    };
    // a chunk's rows share its max timestamp, so the record may sit in a later row
    for _ in 0..MAX_ROWS_SCANNED {
        if row.max_timestamp >= target {
            let data = agent
                .reader
                .read(&row)
                .await
                .map_err(|_| ResponseError::KafkaStorageError)?;
            let batches =
                crate::read::row_slice(&data, &row).map_err(|_| ResponseError::CorruptMessage)?;
            let found = find_record(
                batches,
                row.base_offset,
                response.log_start_offset,
                target,
                exact,
            )?;
            if found.0 >= 0 {
                return Ok(found);
            }
        }
        match next_row(agent, &partition, row.end_offset).await? {
            Some(next) => row = next,
            None => break,
        }
    }
    Ok((-1, -1))
}

/// Most index rows one timestamp query reads before giving up.
const MAX_ROWS_SCANNED: usize = 64;

/// The index row holding `offset`, if any.
async fn next_row(
    agent: &Agent,
    partition: &pb::PartitionRef,
    offset: i64,
) -> Result<Option<pb::IndexedChunk>, ResponseError> {
    let request = pb::LookupBatchesRequest {
        partitions: vec![pb::PartitionFetch {
            topic_id: partition.topic_id.clone(),
            partition: partition.partition,
            offset,
            max_bytes: 1,
        }],
    };
    let response = agent
        .metadata
        .clone()
        .lookup_batches(request)
        .await
        .map_err(|_| ResponseError::RequestTimedOut)?
        .into_inner();
    Ok(response
        .partitions
        .into_iter()
        .next()
        .and_then(|p| p.chunks.into_iter().next()))
}

/// In a decoded chunk, the first record at or above `log_start` whose timestamp is >=
/// `target` (or == with `exact`); records below the log start (a row DeleteRecords cut
/// through) are deleted and never an answer.
fn find_record(
    data: &[u8],
    chunk_base: i64,
    log_start: i64,
    target: i64,
    exact: bool,
) -> Result<(i64, i64), ResponseError> {
    for placed in placed_batches(data, chunk_base) {
        let placed = placed.map_err(|_| ResponseError::CorruptMessage)?;
        if placed.header.max_timestamp < target || placed.end_offset() <= log_start {
            continue;
        }
        let mut copy = BytesMut::from(placed.bytes);
        set_base_offset(&mut copy, placed.base_offset);
        let mut bytes: Bytes = copy.freeze();
        let set =
            RecordBatchDecoder::decode(&mut bytes).map_err(|_| ResponseError::CorruptMessage)?;
        let hit = set.records.iter().find(|r| {
            if r.offset < log_start {
                return false;
            }
            if exact {
                r.timestamp == target
            } else {
                r.timestamp >= target
            }
        });
        if let Some(record) = hit {
            return Ok((record.offset, record.timestamp));
        }
    }
    Ok((-1, -1))
}
