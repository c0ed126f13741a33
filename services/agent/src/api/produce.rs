//! Produce: validate batches, join the open segment in arrival order, answer after commit.
//!
//! Validation and the append happen before the connection reads its next request, so a
//! producer's pipelined requests reach the segment in the order it sent them. The reply
//! waits for the segment's commit; acks=0 requests are stored the same way but never
//! answered, as the protocol requires.

use std::sync::Arc;

use futures::future::join_all;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::produce_request::PartitionProduceData;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse, TopicName};
use strata_batch::BatchIter;
use strata_segment::PartitionKey;
use tokio::sync::oneshot;

use super::{encode_response, Call, Outcome};
use crate::context::Agent;
use crate::ingest::{Appended, BatchSummary, IngestError, Run};
use crate::metrics::AgentMetrics;
use crate::topics::Topic;
use strata_proto::metadata::v1 as pb;

/// A partition's appended batches: the commit to wait for, and the LogAppendTime given to
/// them (-1 for CreateTime topics).
type Pending = Result<
    (
        Option<oneshot::Receiver<Result<Appended, IngestError>>>,
        i64,
    ),
    ResponseError,
>;

/// Validates and appends every partition's batches, and returns the reply to send once
/// they are committed.
pub async fn handle(agent: &Arc<Agent>, call: Call, request: ProduceRequest) -> Outcome {
    let want_reply = request.acks != 0;
    let mut topics: Vec<(TopicName, Vec<(i32, Pending)>)> =
        Vec::with_capacity(request.topic_data.len());
    for topic_data in request.topic_data {
        let topic = agent.topics.by_name(&topic_data.name).await;
        let mut partitions = Vec::with_capacity(topic_data.partition_data.len());
        for p in topic_data.partition_data {
            let index = p.index;
            let pending = match &topic {
                Ok(topic) => append(agent, topic, p, want_reply).await,
                Err(error) => Err(*error),
            };
            partitions.push((index, pending));
        }
        topics.push((topic_data.name, partitions));
    }
    if !want_reply {
        return Outcome::Respond(Box::pin(async { Ok(None) }));
    }
    let metrics = agent.metrics.clone();
    Outcome::Respond(Box::pin(async move {
        let responses = join_all(topics.into_iter().map(|t| answer_topic(t, &metrics))).await;
        encode_response(&call, &ProduceResponse::default().with_responses(responses)).map(Some)
    }))
}

async fn answer_topic(
    (name, partitions): (TopicName, Vec<(i32, Pending)>),
    metrics: &AgentMetrics,
) -> TopicProduceResponse {
    let mut responses = Vec::with_capacity(partitions.len());
    for (index, pending) in partitions {
        let outcome = match pending {
            Ok((Some(receiver), append_time)) => match receiver.await {
                Ok(Ok(appended)) => Ok((appended, append_time)),
                Ok(Err(error)) => Err(error.kafka_error()),
                Err(_) => Err(ResponseError::UnknownServerError),
            },
            Ok((None, _)) => Err(ResponseError::UnknownServerError),
            Err(error) => Err(error),
        };
        let response = PartitionProduceResponse::default()
            .with_index(index)
            .with_log_append_time_ms(-1);
        responses.push(match outcome {
            Ok((appended, append_time)) => response
                .with_log_append_time_ms(append_time)
                .with_base_offset(appended.base_offset)
                .with_log_start_offset(appended.log_start_offset),
            Err(error) => {
                metrics.partition_error("Produce", error);
                response
                    .with_error_code(error.code())
                    .with_base_offset(-1)
                    .with_log_start_offset(-1)
            }
        });
    }
    TopicProduceResponse::default()
        .with_name(name)
        .with_partition_responses(responses)
}

/// Validates one partition's batches and joins them to the open segment, first waiting for
/// room in the agent's bounded ingest buffer (which holds the connection meanwhile).
async fn append(
    agent: &Agent,
    topic: &Topic,
    data: PartitionProduceData,
    want_reply: bool,
) -> Pending {
    if !topic.has_partition(data.index) {
        return Err(ResponseError::UnknownTopicOrPartition);
    }
    let records = data.records.unwrap_or_default();
    let max_batch = topic
        .config("max.message.bytes")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(usize::MAX);
    let (mut summary, runs) = validate(&records, max_batch)?;
    let key = PartitionKey {
        topic_id: *topic.id.as_bytes(),
        partition: data.index,
    };
    let mut append_time = -1;
    let mut stamped;
    let mut batches: &[u8] = &records;
    if topic.config("message.timestamp.type") == Some("LogAppendTime") {
        append_time = agent.clock.now_millis();
        stamped = bytes::BytesMut::from(&records[..]);
        stamp_log_append_time(&mut stamped, append_time)?;
        summary.max_timestamp = append_time;
        batches = &stamped;
    }
    agent.metrics.produce_bytes.inc_by(records.len() as u64);
    agent
        .metrics
        .produce_records
        .inc_by(u64::from(summary.record_count));
    let room = agent
        .ingest
        .reserve(batches.len())
        .await
        .map_err(|e| e.kafka_error())?;
    let receiver = agent
        .ingest
        .append(key, batches, summary, runs, want_reply, room)
        .map_err(|e| e.kafka_error())?;
    Ok((receiver, append_time))
}

/// Gives every batch in `records` the LogAppendTime `now` (batch CRCs are recomputed).
fn stamp_log_append_time(records: &mut [u8], now: i64) -> Result<(), ResponseError> {
    let mut at = 0;
    while at < records.len() {
        let len = strata_batch::BatchHeader::parse(&records[at..])
            .map_err(|_| ResponseError::CorruptMessage)?
            .total_len();
        strata_batch::set_log_append_time(&mut records[at..at + len], now)
            .map_err(|_| ResponseError::CorruptMessage)?;
        at += len;
    }
    Ok(())
}

/// Checks every batch (magic v2, length, CRC-32C, size limit), sums what the index needs
/// and splits the batches into runs: each idempotent batch alone (its sequence is checked
/// at commit), the others together.
fn validate(
    records: &[u8],
    max_batch_bytes: usize,
) -> Result<(BatchSummary, Vec<Run>), ResponseError> {
    let mut runs: Vec<Run> = Vec::new();
    let mut summary = BatchSummary {
        all_compressed: true,
        max_timestamp: i64::MIN,
        ..BatchSummary::default()
    };
    for item in BatchIter::new(records) {
        let (_, bytes) = item.map_err(|_| ResponseError::CorruptMessage)?;
        let header = strata_batch::validate(bytes).map_err(|e| {
            tracing::debug!(error = %e, "rejecting record batch");
            ResponseError::CorruptMessage
        })?;
        if bytes.len() > max_batch_bytes {
            return Err(ResponseError::MessageTooLarge);
        }
        if header.is_control() || header.is_transactional() {
            return Err(ResponseError::InvalidRecord);
        }
        let producer = header.is_idempotent().then(|| pb::ProducerBatch {
            producer_id: header.producer_id,
            epoch: i32::from(header.producer_epoch),
            base_sequence: header.base_sequence,
            last_sequence: last_sequence(header.base_sequence, header.last_offset_delta),
        });
        match runs.last_mut() {
            Some(run) if producer.is_none() && run.producer.is_none() => {
                run.len += bytes.len() as u32;
                run.offset_count += header.offset_count();
            }
            _ => runs.push(Run {
                len: bytes.len() as u32,
                offset_count: header.offset_count(),
                producer,
            }),
        }
        summary.batch_count += 1;
        summary.record_count += header.record_count as u32;
        summary.offset_count += header.offset_count();
        summary.max_timestamp = summary.max_timestamp.max(header.max_timestamp);
        summary.all_compressed &= header.compression() != 0;
    }
    if summary.batch_count == 0 {
        return Err(ResponseError::CorruptMessage);
    }
    Ok((summary, runs))
}

/// Sequence of a batch's last record; sequences wrap from i32::MAX to 0.
fn last_sequence(base: i32, last_offset_delta: i32) -> i32 {
    let last = i64::from(base) + i64::from(last_offset_delta);
    (last % (i64::from(i32::MAX) + 1)) as i32
}
