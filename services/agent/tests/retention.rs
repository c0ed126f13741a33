//! DeleteRecords and the unreferenced-object collector over a real TCP connection: a real
//! metadata gRPC server (SQLite) and an in-memory bucket, driven by one manual clock.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::TryStreamExt;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::delete_records_request::{
    DeleteRecordsPartition, DeleteRecordsTopic,
};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, CreateTopicsRequest, CreateTopicsResponse, DeleteRecordsRequest, DeleteRecordsResponse,
    DeleteTopicsRequest, DeleteTopicsResponse, FetchRequest, FetchResponse, ListOffsetsRequest,
    ListOffsetsResponse, ProduceRequest, ProduceResponse,
};
use kafka_protocol::records::RecordBatchDecoder;
use strata_agent::{Agent, AgentConfig};
use strata_clock::ManualClock;
use support::{encode_batch, name, start_agent, Conn};

const OFFSET_OUT_OF_RANGE: i16 = 1;
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;

/// An agent and a metadata service sharing `clock`, with no background collectors.
async fn start(clock: Arc<ManualClock>) -> (Arc<Agent>, std::net::SocketAddr) {
    let config = AgentConfig {
        flush_interval: Duration::from_millis(5),
        gc_interval: Duration::ZERO,
        ..AgentConfig::default()
    };
    start_agent(clock, config).await
}

fn batch(count: usize) -> Bytes {
    encode_batch((0..count).map(|i| {
        (
            None,
            Bytes::from(format!("v{i}")),
            1_700_000_000_000 + i as i64,
        )
    }))
}

/// Produces `count` records to each of `partitions` in one request (so one segment).
async fn produce(conn: &mut Conn, topic: &str, partitions: &[i32], count: usize) {
    let data = partitions
        .iter()
        .map(|p| {
            PartitionProduceData::default()
                .with_index(*p)
                .with_records(Some(batch(count)))
        })
        .collect();
    let request = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(5_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(name(topic))
            .with_partition_data(data)]);
    let response: ProduceResponse = conn.call(ApiKey::Produce, 9, &request).await;
    for p in &response.responses[0].partition_responses {
        assert_eq!(p.error_code, 0);
    }
}

/// DeleteRecords v2 for (topic, partition, offset); (error, low watermark) of each.
async fn delete_records(conn: &mut Conn, targets: &[(&str, i32, i64)]) -> Vec<(i16, i64)> {
    let topics = targets
        .iter()
        .map(|(topic, partition, offset)| {
            DeleteRecordsTopic::default()
                .with_name(name(topic))
                .with_partitions(vec![DeleteRecordsPartition::default()
                    .with_partition_index(*partition)
                    .with_offset(*offset)])
        })
        .collect();
    let request = DeleteRecordsRequest::default()
        .with_topics(topics)
        .with_timeout_ms(5_000);
    let response: DeleteRecordsResponse = conn.call(ApiKey::DeleteRecords, 2, &request).await;
    response
        .topics
        .iter()
        .map(|t| {
            let p = &t.partitions[0];
            (p.error_code, p.low_watermark)
        })
        .collect()
}

/// (error, log start, records) of a Fetch v12 of one partition from `offset`.
async fn fetch(conn: &mut Conn, topic: &str, partition: i32, offset: i64) -> (i16, i64, usize) {
    let request = FetchRequest::default()
        .with_max_wait_ms(0)
        .with_min_bytes(1)
        .with_max_bytes(10 << 20)
        .with_topics(vec![FetchTopic::default()
            .with_topic(name(topic))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(partition)
                .with_fetch_offset(offset)
                .with_partition_max_bytes(1 << 20)])]);
    let response: FetchResponse = conn.call(ApiKey::Fetch, 12, &request).await;
    let p = &response.responses[0].partitions[0];
    let mut records = p.records.clone().unwrap_or_default();
    let count = RecordBatchDecoder::decode_all(&mut records)
        .unwrap()
        .iter()
        .flat_map(|set| set.records.iter())
        .filter(|r| r.offset >= offset)
        .count();
    (p.error_code, p.log_start_offset, count)
}

async fn earliest(conn: &mut Conn, topic: &str, partition: i32) -> i64 {
    let request = ListOffsetsRequest::default()
        .with_replica_id(kafka_protocol::messages::BrokerId(-1))
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(name(topic))
            .with_partitions(vec![ListOffsetsPartition::default()
                .with_partition_index(partition)
                .with_timestamp(-2)])]);
    let response: ListOffsetsResponse = conn.call(ApiKey::ListOffsets, 7, &request).await;
    response.topics[0].partitions[0].offset
}

async fn objects(agent: &Agent) -> usize {
    let prefix = agent.bucket.path(strata_segment::naming::SEGMENTS_PREFIX);
    let listed: Vec<_> = agent
        .bucket
        .store
        .list(Some(&prefix))
        .try_collect()
        .await
        .unwrap();
    listed.len()
}

/// Two collection passes `grace` apart: the first starts the grace of what is newly
/// unreferenced, the second deletes it. Returns the segment objects left in the bucket.
async fn collect(agent: &Agent, clock: &ManualClock) -> usize {
    let grace = Duration::from_secs(1);
    strata_agent::unreferenced::collect_once(agent, grace)
        .await
        .unwrap();
    clock.advance(grace);
    strata_agent::unreferenced::collect_once(agent, grace)
        .await
        .unwrap();
    objects(agent).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_records_moves_the_low_watermark_and_frees_objects_no_partition_reads() {
    let clock = ManualClock::new(strata_clock::system().now_millis());
    let (agent, kafka) = start(clock.clone()).await;
    let mut conn = Conn::open(kafka).await;
    let create = CreateTopicsRequest::default()
        .with_timeout_ms(5_000)
        .with_topics(vec![CreatableTopic::default()
            .with_name(name("t"))
            .with_num_partitions(2)
            .with_replication_factor(1)]);
    let created: CreateTopicsResponse = conn.call(ApiKey::CreateTopics, 7, &create).await;
    assert_eq!(created.topics[0].error_code, 0);
    // object A holds both partitions' first records, object B partition 0's next ones
    produce(&mut conn, "t", &[0, 1], 3).await;
    produce(&mut conn, "t", &[0], 4).await;
    assert_eq!(objects(&agent).await, 2);

    assert_eq!(delete_records(&mut conn, &[("t", 0, 3)]).await, [(0, 3)]);
    assert_eq!(
        fetch(&mut conn, "t", 0, 0).await,
        (OFFSET_OUT_OF_RANGE, 3, 0)
    );
    assert_eq!(fetch(&mut conn, "t", 0, 3).await, (0, 3, 4));
    assert_eq!(earliest(&mut conn, "t", 0).await, 3);
    assert_eq!(
        delete_records(
            &mut conn,
            &[("t", 0, 8), ("t", 0, 1), ("t", 9, 0), ("missing", 0, 0)]
        )
        .await,
        [
            (OFFSET_OUT_OF_RANGE, -1),
            (0, 3),
            (UNKNOWN_TOPIC_OR_PARTITION, -1),
            (UNKNOWN_TOPIC_OR_PARTITION, -1)
        ],
        "above the high watermark, below the log start, unknown partition and topic"
    );
    assert_eq!(
        collect(&agent, &clock).await,
        2,
        "partition 1 still reads object A"
    );

    assert_eq!(delete_records(&mut conn, &[("t", 1, -1)]).await, [(0, 3)]);
    assert_eq!(collect(&agent, &clock).await, 1, "object A is deleted");
    assert_eq!(
        fetch(&mut conn, "t", 0, 3).await,
        (0, 3, 4),
        "object B is still served"
    );

    let delete = DeleteTopicsRequest::default()
        .with_topic_names(vec![name("t")])
        .with_timeout_ms(5_000);
    let deleted: DeleteTopicsResponse = conn.call(ApiKey::DeleteTopics, 5, &delete).await;
    assert_eq!(deleted.responses[0].error_code, 0);
    assert_eq!(
        collect(&agent, &clock).await,
        0,
        "a deleted topic's objects go"
    );
}
