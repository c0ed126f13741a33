//! OffsetForLeaderEpoch: every partition has one leader epoch, 0, so the end offset of any
//! epoch >= 0 is the high watermark.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};

use crate::context::Agent;

/// Answers each partition with epoch 0 and the high watermark.
pub async fn handle(
    agent: &Agent,
    request: OffsetForLeaderEpochRequest,
) -> OffsetForLeaderEpochResponse {
    let mut topics = Vec::with_capacity(request.topics.len());
    for t in request.topics {
        let topic = agent.topics.by_name(&t.topic).await;
        let mut partitions = Vec::with_capacity(t.partitions.len());
        for p in &t.partitions {
            let base = EpochEndOffset::default().with_partition(p.partition);
            let answer = match &topic {
                Ok(topic) if topic.has_partition(p.partition) && p.leader_epoch >= 0 => agent
                    .partition_offsets(topic.id, p.partition)
                    .await
                    .map(|(_, high_watermark)| high_watermark),
                Ok(topic) if topic.has_partition(p.partition) => {
                    Err(ResponseError::UnknownLeaderEpoch)
                }
                Ok(_) => Err(ResponseError::UnknownTopicOrPartition),
                Err(error) => Err(*error),
            };
            partitions.push(match answer {
                Ok(end_offset) => base.with_leader_epoch(0).with_end_offset(end_offset),
                Err(error) => base
                    .with_error_code(error.code())
                    .with_leader_epoch(-1)
                    .with_end_offset(-1),
            });
        }
        topics.push(
            OffsetForLeaderTopicResult::default()
                .with_topic(t.topic)
                .with_partitions(partitions),
        );
    }
    OffsetForLeaderEpochResponse::default().with_topics(topics)
}
