//! The cluster as a benchmark sees it: the brokers, the topic's partitions and their leaders
//! (Metadata), creating the topic when asked (CreateTopics), and partition offsets
//! (ListOffsets, sent to each partition's leader).

use std::collections::{BTreeMap, HashMap};
use std::ops::RangeInclusive;
use std::time::Duration;

use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    ApiKey, BrokerId, CreateTopicsRequest, CreateTopicsResponse, ListOffsetsRequest,
    ListOffsetsResponse, MetadataRequest, MetadataResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use tokio::time::Instant;

use crate::connection::{check_code, Connection};
use crate::error::{is_retriable, BenchError};

/// Metadata versions this tool speaks.
pub const METADATA_VERSIONS: RangeInclusive<i16> = 1..=12;
/// CreateTopics versions this tool speaks.
pub const CREATE_TOPICS_VERSIONS: RangeInclusive<i16> = 2..=7;
/// ListOffsets versions this tool speaks.
pub const LIST_OFFSETS_VERSIONS: RangeInclusive<i16> = 1..=7;

/// ListOffsets timestamp asking for the high watermark.
pub const LATEST: i64 = -1;
/// ListOffsets timestamp asking for the log start offset.
pub const EARLIEST: i64 = -2;

const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const TOPIC_ALREADY_EXISTS: i16 = 36;

/// A topic's partitions, each with the address of its leader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicLayout {
    /// The topic's name.
    pub topic: String,
    /// Partition index to the leader's host:port; every partition has a leader.
    pub leaders: BTreeMap<i32, String>,
}

impl TopicLayout {
    /// The partition indexes, ascending.
    pub fn partitions(&self) -> Vec<i32> {
        self.leaders.keys().copied().collect()
    }

    /// The host:port of `partition`'s leader.
    pub fn leader(&self, partition: i32) -> Result<&str, BenchError> {
        self.leaders
            .get(&partition)
            .map(String::as_str)
            .ok_or_else(|| BenchError::PartitionMissing {
                topic: self.topic.clone(),
                partition,
            })
    }
}

/// What Metadata says about a topic.
#[derive(Debug)]
enum TopicState {
    Missing,
    /// Exists, but some partition has no leader yet.
    NotReady,
    Ready(TopicLayout),
}

async fn describe(
    connection: &mut Connection,
    topic: &str,
    timeout: Duration,
) -> Result<TopicState, BenchError> {
    let version = connection.version(ApiKey::Metadata, METADATA_VERSIONS)?;
    let mut request = MetadataRequest::default().with_topics(Some(vec![
        MetadataRequestTopic::default().with_name(Some(topic_name(topic))),
    ]));
    if version >= 4 {
        // never let a benchmark create a topic with the broker's default partition count
        request.allow_auto_topic_creation = false;
    }
    let response: MetadataResponse = connection
        .call(ApiKey::Metadata, version, &request, timeout)
        .await?;
    let brokers: HashMap<i32, String> = response
        .brokers
        .iter()
        .map(|b| (b.node_id.0, format!("{}:{}", b.host.as_str(), b.port)))
        .collect();
    let Some(found) = response
        .topics
        .iter()
        .find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == topic))
    else {
        return Ok(TopicState::Missing);
    };
    match found.error_code {
        0 => {}
        UNKNOWN_TOPIC_OR_PARTITION => return Ok(TopicState::Missing),
        code if is_retriable(code) => return Ok(TopicState::NotReady),
        code => {
            return Err(BenchError::Kafka {
                operation: "Metadata",
                what: format!("topic {topic}"),
                code,
            })
        }
    }
    let mut leaders = BTreeMap::new();
    for partition in &found.partitions {
        let leader = brokers.get(&partition.leader_id.0);
        match leader {
            Some(address) if partition.error_code == 0 => {
                leaders.insert(partition.partition_index, address.clone());
            }
            _ => return Ok(TopicState::NotReady),
        }
    }
    if leaders.is_empty() {
        return Ok(TopicState::NotReady);
    }
    Ok(TopicState::Ready(TopicLayout {
        topic: topic.to_string(),
        leaders,
    }))
}

/// The topic's layout, waiting (up to `timeout`) for every partition to have a leader.
/// A topic that does not exist is an error: consumers never create topics.
pub async fn existing_topic(
    connection: &mut Connection,
    topic: &str,
    timeout: Duration,
) -> Result<TopicLayout, BenchError> {
    wait_ready(connection, topic, timeout, false).await
}

/// The topic's layout; creates the topic with `partitions` partitions if it is missing.
/// Returns the layout and whether this call created the topic.
pub async fn ensure_topic(
    connection: &mut Connection,
    topic: &str,
    partitions: i32,
    timeout: Duration,
) -> Result<(TopicLayout, bool), BenchError> {
    if let TopicState::Ready(layout) = describe(connection, topic, timeout).await? {
        return Ok((layout, false));
    }
    let version = connection.version(ApiKey::CreateTopics, CREATE_TOPICS_VERSIONS)?;
    // replication factor -1 (the broker's default) needs v4; older brokers get 1
    let replication = if version >= 4 { -1 } else { 1 };
    let request = CreateTopicsRequest::default()
        .with_timeout_ms(millis_i32(timeout))
        .with_topics(vec![CreatableTopic::default()
            .with_name(topic_name(topic))
            .with_num_partitions(partitions)
            .with_replication_factor(replication)]);
    let response: CreateTopicsResponse = connection
        .call(ApiKey::CreateTopics, version, &request, timeout)
        .await?;
    let mut created = false;
    for result in &response.topics {
        match result.error_code {
            0 => created = true,
            TOPIC_ALREADY_EXISTS => {}
            code => check_code("CreateTopics", format!("topic {topic}"), code)?,
        }
    }
    let layout = wait_ready(connection, topic, timeout, true).await?;
    Ok((layout, created))
}

async fn wait_ready(
    connection: &mut Connection,
    topic: &str,
    timeout: Duration,
    missing_is_transient: bool,
) -> Result<TopicLayout, BenchError> {
    let started = Instant::now();
    loop {
        match describe(connection, topic, timeout).await? {
            TopicState::Ready(layout) => return Ok(layout),
            TopicState::Missing if !missing_is_transient => {
                return Err(BenchError::TopicMissing {
                    topic: topic.to_string(),
                })
            }
            TopicState::Missing | TopicState::NotReady => {}
        }
        if started.elapsed() >= timeout {
            return Err(BenchError::NoLeader {
                topic: topic.to_string(),
                waited: started.elapsed(),
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Offsets of `partitions` for `timestamp` ([`LATEST`] or [`EARLIEST`]), each asked of
/// the partition's leader.
pub async fn list_offsets(
    layout: &TopicLayout,
    partitions: &[i32],
    timestamp: i64,
    timeout: Duration,
) -> Result<BTreeMap<i32, i64>, BenchError> {
    let mut by_leader: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for partition in partitions {
        by_leader
            .entry(layout.leader(*partition)?)
            .or_default()
            .push(*partition);
    }
    let mut offsets = BTreeMap::new();
    for (address, partitions) in by_leader {
        let mut connection = Connection::connect(address, timeout).await?;
        let version = connection.version(ApiKey::ListOffsets, LIST_OFFSETS_VERSIONS)?;
        let request = ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_topics(vec![ListOffsetsTopic::default()
                .with_name(topic_name(&layout.topic))
                .with_partitions(
                    partitions
                        .iter()
                        .map(|p| {
                            ListOffsetsPartition::default()
                                .with_partition_index(*p)
                                .with_timestamp(timestamp)
                        })
                        .collect(),
                )]);
        let response: ListOffsetsResponse = connection
            .call(ApiKey::ListOffsets, version, &request, timeout)
            .await?;
        for topic in &response.topics {
            for p in &topic.partitions {
                check_code(
                    "ListOffsets",
                    format!("{}/{}", layout.topic, p.partition_index),
                    p.error_code,
                )?;
                offsets.insert(p.partition_index, p.offset);
            }
        }
        if let Some(missing) = partitions.iter().find(|p| !offsets.contains_key(p)) {
            return Err(BenchError::BadResponse {
                address: address.to_string(),
                api: ApiKey::ListOffsets,
                reason: format!("no offset for partition {missing}"),
            });
        }
    }
    Ok(offsets)
}

/// A topic name as the protocol carries it.
pub fn topic_name(topic: &str) -> TopicName {
    TopicName(StrBytes::from_string(topic.to_string()))
}

/// A duration in milliseconds as the protocol's i32 fields take it (saturating).
pub fn millis_i32(duration: Duration) -> i32 {
    i32::try_from(duration.as_millis()).unwrap_or(i32::MAX)
}

/// Shares `partitions` out among `clients`: round-robin when there are at least as many
/// partitions as clients; otherwise each client gets one partition, several clients
/// sharing a partition. Every returned list is non-empty.
pub fn share_out(partitions: &[i32], clients: usize) -> Vec<Vec<i32>> {
    if partitions.is_empty() || clients == 0 {
        return Vec::new();
    }
    if clients > partitions.len() {
        return (0..clients)
            .map(|i| vec![partitions[i % partitions.len()]])
            .collect();
    }
    let mut shares = vec![Vec::new(); clients];
    for (i, partition) in partitions.iter().enumerate() {
        shares[i % clients].push(*partition);
    }
    shares
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_are_shared_round_robin() {
        assert_eq!(share_out(&[0, 1, 2], 1), vec![vec![0, 1, 2]]);
        assert_eq!(share_out(&[0, 1, 2], 2), vec![vec![0, 2], vec![1]]);
        assert_eq!(share_out(&[0, 1], 3), vec![vec![0], vec![1], vec![0]]);
        assert!(share_out(&[], 3).is_empty());
    }
}
