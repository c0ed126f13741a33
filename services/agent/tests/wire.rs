//! The agent over a real TCP connection: a real metadata gRPC server (SQLite), an in-memory
//! bucket, and requests encoded with the kafka-protocol crate as a client would.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes};
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, CreateTopicsRequest, FetchRequest,
    FetchResponse, ProduceRequest, ProduceResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{RecordBatchDecoder, TimestampType};
use strata_agent::{Agent, AgentConfig};
use strata_clock::Clock;
use strata_metadata::sqlite::SqliteStore;
use strata_metadata::MetadataServiceImpl;
use support::{encode_batch, serve_metadata, Conn};
use tokio::net::TcpListener;

struct Node {
    kafka: std::net::SocketAddr,
    agent: Arc<Agent>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    serving: tokio::task::JoinHandle<()>,
}

async fn start_node(flush_interval: Duration) -> Node {
    start_node_with_clock(flush_interval, strata_clock::system()).await
}

async fn start_node_with_clock(
    flush_interval: Duration,
    clock: Arc<dyn strata_clock::Clock>,
) -> Node {
    let bucket = strata_storage::open("memory://", &Default::default()).unwrap();
    start_node_on(flush_interval, clock, bucket).await
}

async fn start_node_on(
    flush_interval: Duration,
    clock: Arc<dyn strata_clock::Clock>,
    bucket: strata_storage::Bucket,
) -> Node {
    let config = AgentConfig {
        flush_interval,
        ..AgentConfig::default()
    };
    start_node_configured(config, clock, bucket).await
}

/// A node with `config`, whose listen address and advertised port are filled in here.
async fn start_node_configured(
    config: AgentConfig,
    clock: Arc<dyn strata_clock::Clock>,
    bucket: strata_storage::Bucket,
) -> Node {
    let store = Arc::new(SqliteStore::in_memory().unwrap());
    let metadata = serve_metadata(MetadataServiceImpl::new(store, strata_clock::system())).await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let kafka = listener.local_addr().unwrap();
    let config = AgentConfig {
        kafka_listen: kafka,
        advertised_port: kafka.port(),
        ..config
    };
    let agent = Agent::start(config, metadata, bucket, clock);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(Arc::clone(&agent).serve(listener, async move {
        let _ = stopped.await;
    }));
    Node {
        kafka,
        agent,
        stop: Some(stop),
        serving,
    }
}

fn batch(first_value: usize, count: usize) -> Bytes {
    encode_batch((first_value..first_value + count).map(|n| {
        let key = Bytes::from(format!("k{n}"));
        (
            Some(key),
            Bytes::from(format!("v{n}")),
            1_700_000_000_000 + n as i64,
        )
    }))
}

fn produce(topic: &str, records: Bytes) -> ProduceRequest {
    ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(5_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(records))])])
}

fn fetch(topic: &str, offset: i64, max_wait_ms: i32) -> FetchRequest {
    FetchRequest::default()
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(1)
        .with_max_bytes(10 << 20)
        .with_topics(vec![FetchTopic::default()
            .with_topic(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(offset)
                .with_partition_max_bytes(1 << 20)])])
}

async fn create_topic(conn: &mut Conn, name: &str) {
    create_topic_with(conn, name, &[]).await;
}

async fn create_topic_with(conn: &mut Conn, name: &str, configs: &[(&'static str, &'static str)]) {
    let configs = configs
        .iter()
        .map(|(k, v)| {
            CreatableTopicConfig::default()
                .with_name(StrBytes::from_static_str(k))
                .with_value(Some(StrBytes::from_static_str(v)))
        })
        .collect();
    let request = CreateTopicsRequest::default()
        .with_timeout_ms(5_000)
        .with_topics(vec![CreatableTopic::default()
            .with_name(TopicName(StrBytes::from_string(name.to_string())))
            .with_num_partitions(1)
            .with_replication_factor(3)
            .with_configs(configs)]);
    let id = conn.send(ApiKey::CreateTopics, 7, &request).await;
    let response: kafka_protocol::messages::CreateTopicsResponse =
        conn.receive(ApiKey::CreateTopics, 7, id).await;
    assert_eq!(response.topics[0].error_code, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_produces_get_offsets_in_send_order() {
    // a short interval so the pipelined requests span several segments
    let node = start_node(Duration::from_millis(2)).await;
    let mut conn = Conn::open(node.kafka).await;
    create_topic(&mut conn, "ordered").await;
    let mut ids = Vec::new();
    for i in 0..40 {
        ids.push(
            conn.send(ApiKey::Produce, 9, &produce("ordered", batch(i * 3, 3)))
                .await,
        );
    }
    let mut bases = Vec::new();
    for id in ids {
        let response: ProduceResponse = conn.receive(ApiKey::Produce, 9, id).await;
        let partition = &response.responses[0].partition_responses[0];
        assert_eq!(partition.error_code, 0);
        bases.push(partition.base_offset);
    }
    let expected: Vec<i64> = (0..40).map(|i| i * 3).collect();
    assert_eq!(
        bases, expected,
        "each request's records follow the previous request's"
    );

    // everything reads back in order with the assigned offsets
    let mut offset = 0;
    let mut values = Vec::new();
    while offset < 120 {
        let id = conn
            .send(ApiKey::Fetch, 12, &fetch("ordered", offset, 500))
            .await;
        let response: FetchResponse = conn.receive(ApiKey::Fetch, 12, id).await;
        let partition = &response.responses[0].partitions[0];
        assert_eq!(partition.error_code, 0);
        assert_eq!(partition.high_watermark, 120);
        let mut records = partition.records.clone().unwrap();
        for set in RecordBatchDecoder::decode_all(&mut records).unwrap() {
            for record in set.records {
                if record.offset >= offset {
                    assert_eq!(record.offset as usize, values.len());
                    values.push(String::from_utf8(record.value.unwrap().to_vec()).unwrap());
                }
            }
        }
        offset = values.len() as i64;
    }
    let expected: Vec<String> = (0..120).map(|i| format!("v{i}")).collect();
    assert_eq!(values, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_at_the_end_waits_for_the_next_commit() {
    let node = start_node(Duration::from_millis(20)).await;
    let mut consumer = Conn::open(node.kafka).await;
    create_topic(&mut consumer, "poll").await;
    let waiting = consumer
        .send(ApiKey::Fetch, 12, &fetch("poll", 0, 10_000))
        .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut producer = Conn::open(node.kafka).await;
    let id = producer
        .send(ApiKey::Produce, 9, &produce("poll", batch(0, 2)))
        .await;
    let _: ProduceResponse = producer.receive(ApiKey::Produce, 9, id).await;
    let response: FetchResponse = tokio::time::timeout(
        Duration::from_secs(5),
        consumer.receive(ApiKey::Fetch, 12, waiting),
    )
    .await
    .expect("the commit wakes the waiting fetch long before max_wait_ms");
    let mut records = response.responses[0].partitions[0].records.clone().unwrap();
    assert!(records.has_remaining());
    let sets = RecordBatchDecoder::decode_all(&mut records).unwrap();
    let values: Vec<_> = sets
        .iter()
        .flat_map(|s| &s.records)
        .map(|r| r.value.clone().unwrap())
        .collect();
    assert_eq!(values, vec![Bytes::from("v0"), Bytes::from("v1")]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_append_time_topics_stamp_batches_on_arrival() {
    let node = start_node(Duration::from_millis(5)).await;
    let mut conn = Conn::open(node.kafka).await;
    create_topic_with(
        &mut conn,
        "stamped",
        &[("message.timestamp.type", "LogAppendTime")],
    )
    .await;
    let id = conn
        .send(ApiKey::Produce, 9, &produce("stamped", batch(0, 3)))
        .await;
    let response: ProduceResponse = conn.receive(ApiKey::Produce, 9, id).await;
    let append_time = response.responses[0].partition_responses[0].log_append_time_ms;
    assert!(
        append_time > 1_700_000_000_000,
        "the broker's clock, not the records' {append_time}"
    );
    let id = conn.send(ApiKey::Fetch, 12, &fetch("stamped", 0, 0)).await;
    let response: FetchResponse = conn.receive(ApiKey::Fetch, 12, id).await;
    let records = response.responses[0].partitions[0].records.clone().unwrap();
    // clients read a LogAppendTime batch's max timestamp as every record's time
    for item in strata_batch::BatchIter::new(&records) {
        let (header, bytes) = item.unwrap();
        strata_batch::validate(bytes).expect("CRC recomputed after stamping");
        assert!(header.is_log_append_time());
        assert_eq!(header.max_timestamp, append_time);
    }
    let sets = RecordBatchDecoder::decode_all(&mut records.clone()).unwrap();
    assert!(sets
        .iter()
        .flat_map(|s| &s.records)
        .all(|r| r.timestamp_type == TimestampType::LogAppend));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ready_response_is_not_held_behind_a_waiting_one() {
    let node = start_node(Duration::from_millis(20)).await;
    let mut conn = Conn::open(node.kafka).await;
    create_topic(&mut conn, "quiet").await;
    let quick = conn
        .send(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default())
        .await;
    let waiting = conn
        .send(ApiKey::Fetch, 12, &fetch("quiet", 0, 10_000))
        .await;
    let versions: ApiVersionsResponse = tokio::time::timeout(
        Duration::from_secs(3),
        conn.receive(ApiKey::ApiVersions, 3, quick),
    )
    .await
    .expect("the ApiVersions answer is sent while the fetch behind it still waits");
    assert_eq!(versions.error_code, 0);
    let mut producer = Conn::open(node.kafka).await;
    let id = producer
        .send(ApiKey::Produce, 9, &produce("quiet", batch(0, 1)))
        .await;
    let _: ProduceResponse = producer.receive(ApiKey::Produce, 9, id).await;
    let _: FetchResponse = conn.receive(ApiKey::Fetch, 12, waiting).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_commits_the_open_segment_and_answers_its_producers() {
    let mut node = start_node(Duration::from_secs(60)).await;
    let mut conn = Conn::open(node.kafka).await;
    create_topic(&mut conn, "drain").await;
    let id = conn
        .send(ApiKey::Produce, 9, &produce("drain", batch(0, 4)))
        .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    node.stop.take().unwrap().send(()).unwrap();
    let response: ProduceResponse = tokio::time::timeout(
        Duration::from_secs(10),
        conn.receive(ApiKey::Produce, 9, id),
    )
    .await
    .expect("answered at shutdown, not after the 60 s flush interval");
    let partition = &response.responses[0].partition_responses[0];
    assert_eq!((partition.error_code, partition.base_offset), (0, 0));
    tokio::time::timeout(Duration::from_secs(10), node.serving)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orphans_are_collected_after_their_grace_and_committed_objects_never() {
    let clock = strata_clock::ManualClock::new(strata_clock::system().now_millis());
    let node = start_node_with_clock(Duration::from_millis(5), clock.clone()).await;
    let mut conn = Conn::open(node.kafka).await;
    create_topic(&mut conn, "kept").await;
    let id = conn
        .send(ApiKey::Produce, 9, &produce("kept", batch(0, 3)))
        .await;
    let _: ProduceResponse = conn.receive(ApiKey::Produce, 9, id).await;
    // an upload whose agent died before the commit
    let bucket = &node.agent.bucket;
    let orphan = bucket.path(&strata_segment::naming::segment_key(
        clock.now_millis(),
        9,
        [7; 16],
    ));
    bucket
        .store
        .put(
            &orphan,
            object_store::PutPayload::from_static(b"never committed"),
        )
        .await
        .unwrap();
    let grace = strata_agent::orphans::MIN_GRACE;

    let early = strata_agent::orphans::collect_once(&node.agent, grace)
        .await
        .unwrap();
    assert_eq!(
        (early.listed, early.candidates, early.deleted),
        (2, 0, 0),
        "nothing is old enough yet"
    );

    clock.advance(grace + Duration::from_secs(1));
    let late = strata_agent::orphans::collect_once(&node.agent, grace)
        .await
        .unwrap();
    assert_eq!((late.listed, late.candidates, late.deleted), (2, 2, 1));
    assert!(
        bucket.store.head(&orphan).await.is_err(),
        "the orphan is gone"
    );

    // the committed segment is still served
    let id = conn.send(ApiKey::Fetch, 12, &fetch("kept", 0, 0)).await;
    let response: FetchResponse = conn.receive(ApiKey::Fetch, 12, id).await;
    let mut records = response.responses[0].partitions[0].records.clone().unwrap();
    let sets = RecordBatchDecoder::decode_all(&mut records).unwrap();
    assert_eq!(sets.iter().map(|s| s.records.len()).sum::<usize>(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bucket_failures_and_stalls_never_acknowledge_what_is_not_stored() {
    let memory = strata_storage::open("memory://", &Default::default()).unwrap();
    let faulty = Arc::new(strata_storage::FaultyStore::new(memory.store.clone()));
    let bucket = strata_storage::Bucket {
        store: faulty.clone(),
        ..memory
    };
    let node = start_node_on(Duration::from_millis(5), strata_clock::system(), bucket).await;
    let mut conn = Conn::open(node.kafka).await;
    create_topic(&mut conn, "faults").await;

    // the upload fails (a 503 after the client's retries): the producer is told, nothing is committed
    faulty.fail_next(strata_storage::Op::Put, 1);
    let id = conn
        .send(ApiKey::Produce, 9, &produce("faults", batch(0, 2)))
        .await;
    let response: ProduceResponse = conn.receive(ApiKey::Produce, 9, id).await;
    let partition = &response.responses[0].partition_responses[0];
    assert_eq!(
        partition.error_code,
        kafka_protocol::error::ResponseError::KafkaStorageError.code()
    );

    // the upload stalls: no answer until the bucket does
    faulty.stall_next(strata_storage::Op::Put, 1);
    let id = conn
        .send(ApiKey::Produce, 9, &produce("faults", batch(2, 3)))
        .await;
    faulty.until_stalled(1).await;
    let waiting = tokio::time::timeout(
        Duration::from_millis(300),
        conn.receive::<ProduceResponse>(ApiKey::Produce, 9, id),
    )
    .await;
    assert!(
        waiting.is_err(),
        "no acknowledgement while the upload hangs"
    );
    faulty.release();
    let response: ProduceResponse = conn.receive(ApiKey::Produce, 9, id).await;
    let partition = &response.responses[0].partition_responses[0];
    assert_eq!(
        (partition.error_code, partition.base_offset),
        (0, 0),
        "the failed batch took no offsets"
    );

    let id = conn.send(ApiKey::Fetch, 12, &fetch("faults", 0, 0)).await;
    let response: FetchResponse = conn.receive(ApiKey::Fetch, 12, id).await;
    let partition = &response.responses[0].partitions[0];
    assert_eq!(partition.high_watermark, 3);
    let mut records = partition.records.clone().unwrap();
    let values: Vec<_> = RecordBatchDecoder::decode_all(&mut records)
        .unwrap()
        .iter()
        .flat_map(|s| s.records.iter().map(|r| r.value.clone().unwrap()))
        .collect();
    assert_eq!(
        values,
        vec![Bytes::from("v2"), Bytes::from("v3"), Bytes::from("v4")]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_ingest_buffer_holds_producers_back_until_uploads_finish() {
    let memory = strata_storage::open("memory://", &Default::default()).unwrap();
    let faulty = Arc::new(strata_storage::FaultyStore::new(memory.store.clone()));
    let bucket = strata_storage::Bucket {
        store: faulty.clone(),
        ..memory
    };
    let one_batch = batch(0, 2).len();
    let config = AgentConfig {
        flush_interval: Duration::from_millis(5),
        // room for one batch and a half
        max_buffered_bytes: one_batch * 3 / 2,
        ..AgentConfig::default()
    };
    let node = start_node_configured(config, strata_clock::system(), bucket).await;
    let mut conn = Conn::open(node.kafka).await;
    create_topic(&mut conn, "bounded").await;
    faulty.stall_next(strata_storage::Op::Put, 1);
    let first = conn
        .send(ApiKey::Produce, 9, &produce("bounded", batch(0, 2)))
        .await;
    faulty.until_stalled(1).await;
    // the second batch does not fit while the first one's upload hangs
    let mut other = Conn::open(node.kafka).await;
    let second = other
        .send(ApiKey::Produce, 9, &produce("bounded", batch(2, 2)))
        .await;
    let waiting = tokio::time::timeout(
        Duration::from_millis(300),
        other.receive::<ProduceResponse>(ApiKey::Produce, 9, second),
    )
    .await;
    assert!(waiting.is_err(), "held back while the buffer is full");
    faulty.release();
    let first: ProduceResponse = conn.receive(ApiKey::Produce, 9, first).await;
    let second: ProduceResponse = other.receive(ApiKey::Produce, 9, second).await;
    let base = |r: &ProduceResponse| {
        let p = &r.responses[0].partition_responses[0];
        (p.error_code, p.base_offset)
    };
    assert_eq!((base(&first), base(&second)), ((0, 0), (0, 2)));
}

/// One batch of one record whose value is `size` bytes.
fn big_batch(size: usize, fill: u8) -> Bytes {
    encode_batch([(None, Bytes::from(vec![fill; size]), 1_700_000_000_000)])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fetch_cut_short_by_its_budget_never_skips_to_a_later_chunk() {
    let node = start_node(Duration::from_millis(5)).await;
    let mut conn = Conn::open(node.kafka).await;
    create_topic(&mut conn, "cut").await;
    // one chunk of three 600 KB batches (offsets 0, 1, 2), then a chunk with a small one (3)
    let three = [
        big_batch(600_000, 1),
        big_batch(600_000, 2),
        big_batch(600_000, 3),
    ]
    .concat();
    for records in [Bytes::from(three), big_batch(100, 4)] {
        let id = conn
            .send(ApiKey::Produce, 9, &produce("cut", records))
            .await;
        let response: ProduceResponse = conn.receive(ApiKey::Produce, 9, id).await;
        assert_eq!(response.responses[0].partition_responses[0].error_code, 0);
    }
    // 1 MiB per partition: 0 alone, then (a sequential reader, so the lookup also returns
    // the next chunk) 1 alone, since 2 does not fit and 3 must not be served before it
    let mut offset = 0;
    let mut served = Vec::new();
    while offset < 4 {
        let id = conn.send(ApiKey::Fetch, 12, &fetch("cut", offset, 0)).await;
        let response: FetchResponse = conn.receive(ApiKey::Fetch, 12, id).await;
        let partition = &response.responses[0].partitions[0];
        assert_eq!(partition.error_code, 0);
        let mut records = partition.records.clone().unwrap();
        let offsets: Vec<i64> = RecordBatchDecoder::decode_all(&mut records)
            .unwrap()
            .iter()
            .flat_map(|set| set.records.iter().map(|r| r.offset))
            .filter(|o| *o >= offset)
            .collect();
        assert_eq!(
            offsets.first(),
            Some(&offset),
            "a response starts where the fetch asked"
        );
        offset = offsets.last().unwrap() + 1;
        served.push(offsets);
    }
    assert_eq!(served, vec![vec![0], vec![1], vec![2, 3]]);
}
