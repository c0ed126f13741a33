//! OffsetCommit, OffsetFetch and OffsetDelete: committed positions, durable in the store.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use super::{code, GroupCoordinator};
use crate::store::{CommittedOffset, StoreError};

/// The first OffsetFetch version that batches groups.
const BATCHED_FETCH_VERSION: i16 = 8;

/// One partition's committed offset as OffsetFetch reports it: (offset, epoch, metadata, error).
type Fetched = (i64, i32, Option<StrBytes>, i16);

impl GroupCoordinator {
    pub(super) async fn offset_commit(&self, request: OffsetCommitRequest) -> OffsetCommitResponse {
        let instance = request.group_instance_id.as_deref();
        let checked = self.check_commit(
            &request.group_id,
            &request.member_id,
            instance,
            request.generation_id_or_member_epoch,
        );
        let now = self.clock.now_millis();
        let mut accepted = Vec::new();
        let mut errors: Vec<Vec<Option<ResponseError>>> = Vec::with_capacity(request.topics.len());
        for topic in &request.topics {
            let known = match self.store.topic_by_name(&topic.name).await {
                Ok(found) => found.map(|t| t.partition_count),
                Err(_) => None,
            };
            let mut topic_errors = Vec::with_capacity(topic.partitions.len());
            for p in &topic.partitions {
                let error = match (&checked, known) {
                    (Err(error), _) => Some(*error),
                    (Ok(()), Some(count)) if (0..count).contains(&p.partition_index) => None,
                    (Ok(()), _) => Some(ResponseError::UnknownTopicOrPartition),
                };
                if error.is_none() {
                    accepted.push(CommittedOffset {
                        topic: topic.name.to_string(),
                        partition: p.partition_index,
                        offset: p.committed_offset,
                        leader_epoch: p.committed_leader_epoch,
                        metadata: p.committed_metadata.as_ref().map(|m| m.to_string()),
                        commit_time_ms: now,
                    });
                }
                topic_errors.push(error);
            }
            errors.push(topic_errors);
        }
        let stored = if accepted.is_empty() {
            Ok(())
        } else {
            self.store.commit_offsets(&request.group_id, accepted).await
        };
        let store_error = stored.err().map(|e: StoreError| {
            tracing::warn!(error = %e, group = %request.group_id.as_str(), "offset commit failed");
            ResponseError::CoordinatorNotAvailable
        });
        let topics = request
            .topics
            .iter()
            .zip(errors)
            .map(|(topic, topic_errors)| {
                let partitions = topic
                    .partitions
                    .iter()
                    .zip(topic_errors)
                    .map(|(p, error)| {
                        OffsetCommitResponsePartition::default()
                            .with_partition_index(p.partition_index)
                            .with_error_code(code(error.or(store_error)))
                    })
                    .collect();
                OffsetCommitResponseTopic::default()
                    .with_name(topic.name.clone())
                    .with_partitions(partitions)
            })
            .collect();
        OffsetCommitResponse::default().with_topics(topics)
    }

    /// A group's offsets for the requested topics (all when `None`), keyed by topic name.
    async fn fetched(
        &self,
        group: &str,
        topics: Option<Vec<(TopicName, Vec<i32>)>>,
    ) -> Result<Vec<(TopicName, Vec<(i32, Fetched)>)>, ResponseError> {
        let names = topics
            .as_ref()
            .map(|t| t.iter().map(|(n, _)| n.to_string()).collect());
        let stored = self
            .store
            .fetch_offsets(group, names)
            .await
            .map_err(|_| ResponseError::CoordinatorNotAvailable)?;
        let found = |topic: &str, partition: i32| -> Fetched {
            match stored
                .iter()
                .find(|o| o.topic == topic && o.partition == partition)
            {
                Some(o) => (
                    o.offset,
                    o.leader_epoch,
                    o.metadata.clone().map(StrBytes::from_string),
                    0,
                ),
                None => (-1, -1, Some(StrBytes::default()), 0),
            }
        };
        let wanted = match topics {
            Some(topics) => topics,
            None => {
                let mut all: Vec<(TopicName, Vec<i32>)> = Vec::new();
                for o in &stored {
                    match all.last_mut() {
                        Some((name, parts)) if name.as_str() == o.topic => parts.push(o.partition),
                        _ => all.push((
                            TopicName(StrBytes::from_string(o.topic.clone())),
                            vec![o.partition],
                        )),
                    }
                }
                all
            }
        };
        Ok(wanted
            .into_iter()
            .map(|(name, partitions)| {
                let rows = partitions
                    .into_iter()
                    .map(|p| (p, found(&name, p)))
                    .collect();
                (name, rows)
            })
            .collect())
    }

    pub(super) async fn offset_fetch(
        &self,
        request: OffsetFetchRequest,
        version: i16,
    ) -> OffsetFetchResponse {
        if version >= BATCHED_FETCH_VERSION {
            let mut groups = Vec::with_capacity(request.groups.len());
            for g in request.groups {
                let topics = g.topics.map(|t| {
                    t.into_iter()
                        .map(|t| (t.name, t.partition_indexes))
                        .collect()
                });
                let group = OffsetFetchResponseGroup::default().with_group_id(g.group_id.clone());
                groups.push(match self.fetched(&g.group_id, topics).await {
                    Ok(fetched) => group.with_topics(
                        fetched
                            .into_iter()
                            .map(|(name, rows)| {
                                let partitions = rows
                                    .into_iter()
                                    .map(|(p, (offset, epoch, metadata, error))| {
                                        OffsetFetchResponsePartitions::default()
                                            .with_partition_index(p)
                                            .with_committed_offset(offset)
                                            .with_committed_leader_epoch(epoch)
                                            .with_metadata(metadata)
                                            .with_error_code(error)
                                    })
                                    .collect();
                                OffsetFetchResponseTopics::default()
                                    .with_name(name)
                                    .with_partitions(partitions)
                            })
                            .collect(),
                    ),
                    Err(error) => group.with_error_code(error.code()),
                });
            }
            return OffsetFetchResponse::default().with_groups(groups);
        }
        let topics = request.topics.map(|t| {
            t.into_iter()
                .map(|t| (t.name, t.partition_indexes))
                .collect()
        });
        match self.fetched(&request.group_id, topics).await {
            Ok(fetched) => OffsetFetchResponse::default().with_topics(
                fetched
                    .into_iter()
                    .map(|(name, rows)| {
                        let partitions = rows
                            .into_iter()
                            .map(|(p, (offset, epoch, metadata, error))| {
                                OffsetFetchResponsePartition::default()
                                    .with_partition_index(p)
                                    .with_committed_offset(offset)
                                    .with_committed_leader_epoch(epoch)
                                    .with_metadata(metadata)
                                    .with_error_code(error)
                            })
                            .collect();
                        OffsetFetchResponseTopic::default()
                            .with_name(name)
                            .with_partitions(partitions)
                    })
                    .collect(),
            ),
            Err(error) => OffsetFetchResponse::default().with_error_code(error.code()),
        }
    }

    pub(super) async fn offset_delete(&self, request: OffsetDeleteRequest) -> OffsetDeleteResponse {
        let subscribed = self.has_members(&request.group_id);
        let known = match self.store.fetch_offsets(&request.group_id, None).await {
            Ok(offsets) => !offsets.is_empty(),
            Err(_) => {
                return OffsetDeleteResponse::default()
                    .with_error_code(ResponseError::CoordinatorNotAvailable.code())
            }
        };
        if !known && !subscribed {
            return OffsetDeleteResponse::default()
                .with_error_code(ResponseError::GroupIdNotFound.code());
        }
        let partition_error = subscribed.then_some(ResponseError::GroupSubscribedToTopic);
        if !subscribed {
            let doomed = request
                .topics
                .iter()
                .flat_map(|t| {
                    t.partitions
                        .iter()
                        .map(move |p| (t.name.to_string(), p.partition_index))
                })
                .collect();
            if self
                .store
                .delete_offsets(&request.group_id, doomed)
                .await
                .is_err()
            {
                return OffsetDeleteResponse::default()
                    .with_error_code(ResponseError::CoordinatorNotAvailable.code());
            }
        }
        let topics = request
            .topics
            .iter()
            .map(|t| {
                let partitions = t
                    .partitions
                    .iter()
                    .map(|p| {
                        OffsetDeleteResponsePartition::default()
                            .with_partition_index(p.partition_index)
                            .with_error_code(code(partition_error))
                    })
                    .collect();
                OffsetDeleteResponseTopic::default()
                    .with_name(t.name.clone())
                    .with_partitions(partitions)
            })
            .collect();
        OffsetDeleteResponse::default().with_topics(topics)
    }
}
