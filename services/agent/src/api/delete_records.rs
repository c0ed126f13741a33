//! DeleteRecords: moves partitions' log starts forward (`AdminClient.delete_records`,
//! `kafka-delete-records.sh`).
//!
//! Every partition of the request is checked here (topic and partition exist) and the rest
//! is sent to the metadata service in one `DeleteRecords` call, which moves each log start
//! in its own transaction. Offset -1 means the high watermark; an offset above it gets
//! OFFSET_OUT_OF_RANGE; an offset at or below the log start changes nothing. Each
//! partition's answer carries its log start afterwards (the low watermark). Any agent
//! accepts any partition, as for Produce. `timeout_ms` is not needed: the call returns
//! once the moves are durable.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};
use strata_proto::metadata::v1 as pb;

use super::NO_ERROR;
use crate::context::Agent;
use crate::topics::kafka_error_of;

/// Answers a DeleteRecords request, one result per requested partition.
pub async fn handle(agent: &Agent, request: DeleteRecordsRequest) -> DeleteRecordsResponse {
    // per partition: the index of its deletion in the metadata call, or its error
    let mut planned: Vec<Vec<(i32, Result<usize, ResponseError>)>> = Vec::new();
    let mut deletions = Vec::new();
    for t in &request.topics {
        let topic = agent.topics.by_name(&t.name).await;
        let partitions = t
            .partitions
            .iter()
            .map(|p| {
                let slot = match &topic {
                    Ok(topic) if topic.has_partition(p.partition_index) => {
                        deletions.push(pb::RecordDeletion {
                            topic_id: topic.id.as_bytes().to_vec(),
                            partition: p.partition_index,
                            offset: p.offset,
                        });
                        Ok(deletions.len() - 1)
                    }
                    Ok(_) => Err(ResponseError::UnknownTopicOrPartition),
                    Err(error) => Err(*error),
                };
                (p.partition_index, slot)
            })
            .collect();
        planned.push(partitions);
    }
    let results = if deletions.is_empty() {
        Ok(Vec::new())
    } else {
        agent
            .metadata
            .clone()
            .delete_records(pb::DeleteRecordsRequest {
                partitions: deletions,
            })
            .await
            .map(|r| r.into_inner().partitions)
            .map_err(|status| {
                tracing::warn!(%status, "DeleteRecords failed in the metadata service");
                kafka_error_of(&status)
            })
    };
    let topics = request
        .topics
        .iter()
        .zip(planned)
        .map(|(t, partitions)| {
            let partitions = partitions
                .into_iter()
                .map(|(partition, slot)| answer(agent, partition, slot, &results))
                .collect();
            DeleteRecordsTopicResult::default()
                .with_name(t.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    DeleteRecordsResponse::default().with_topics(topics)
}

/// One partition's answer from its slot in the metadata call.
fn answer(
    agent: &Agent,
    partition: i32,
    slot: Result<usize, ResponseError>,
    results: &Result<Vec<pb::RecordDeletionResult>, ResponseError>,
) -> DeleteRecordsPartitionResult {
    let base = DeleteRecordsPartitionResult::default()
        .with_partition_index(partition)
        .with_low_watermark(-1);
    let outcome = slot.and_then(|i| match results {
        Ok(results) => results
            .get(i)
            .ok_or(ResponseError::UnknownServerError)
            .and_then(result_of),
        Err(error) => Err(*error),
    });
    match outcome {
        Ok(low_watermark) => base
            .with_error_code(NO_ERROR)
            .with_low_watermark(low_watermark),
        Err(error) => {
            agent.metrics.partition_error("DeleteRecords", error);
            base.with_error_code(error.code())
        }
    }
}

/// The low watermark of a successful deletion, or the Kafka error of a refused one.
fn result_of(result: &pb::RecordDeletionResult) -> Result<i64, ResponseError> {
    match pb::PartitionError::try_from(result.error) {
        Ok(pb::PartitionError::None) => Ok(result.low_watermark),
        Ok(pb::PartitionError::OffsetOutOfRange) => Err(ResponseError::OffsetOutOfRange),
        Ok(pb::PartitionError::UnknownTopicOrPartition) => {
            Err(ResponseError::UnknownTopicOrPartition)
        }
        Err(_) => Err(ResponseError::UnknownServerError),
    }
}
