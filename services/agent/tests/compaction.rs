//! The compactor against a real metadata gRPC server (SQLite) and an in-memory bucket, over
//! real Kafka requests: every record is read back exactly once and in order after a pass,
//! during a pass, and after passes killed at any point.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::TryStreamExt;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, CreateTopicsRequest, CreateTopicsResponse, FetchRequest, FetchResponse, ProduceRequest,
    ProduceResponse,
};
use kafka_protocol::records::RecordBatchDecoder;
use strata_agent::compactor::{self, CompactionSettings};
use strata_agent::{Agent, AgentConfig};
use strata_clock::{Clock, ManualClock};
use strata_proto::metadata::v1 as pb;
use support::{encode_batch, name, start_agent, Conn};

const PARTITIONS: i32 = 3;
const SEGMENTS: usize = 30;
const PER_BATCH: usize = 4;

/// An agent and a metadata service sharing `clock`, with no background collectors.
async fn start(clock: Arc<ManualClock>) -> (Arc<Agent>, std::net::SocketAddr) {
    let config = AgentConfig {
        flush_interval: Duration::from_millis(5),
        gc_interval: Duration::ZERO,
        compaction_interval: Duration::ZERO,
        ..AgentConfig::default()
    };
    start_agent(clock, config).await
}

fn batch(partition: i32, first: usize, count: usize) -> Bytes {
    encode_batch((first..first + count).map(|n| {
        let value = Bytes::from(format!("p{partition}-{n}"));
        (None, value, 1_700_000_000_000 + n as i64)
    }))
}

/// Creates topic "t" and produces SEGMENTS requests, each one batch per partition (and so
/// one small multi-partition segment each).
async fn produce_segments(conn: &mut Conn) {
    let create = CreateTopicsRequest::default()
        .with_timeout_ms(5_000)
        .with_topics(vec![CreatableTopic::default()
            .with_name(name("t"))
            .with_num_partitions(PARTITIONS)
            .with_replication_factor(1)]);
    let created: CreateTopicsResponse = conn.call(ApiKey::CreateTopics, 5, &create).await;
    assert_eq!(created.topics[0].error_code, 0);
    for s in 0..SEGMENTS {
        let data = (0..PARTITIONS)
            .map(|p| {
                PartitionProduceData::default()
                    .with_index(p)
                    .with_records(Some(batch(p, s * PER_BATCH, PER_BATCH)))
            })
            .collect();
        let request = ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(5_000)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(name("t"))
                .with_partition_data(data)]);
        let response: ProduceResponse = conn.call(ApiKey::Produce, 9, &request).await;
        for p in &response.responses[0].partition_responses {
            assert_eq!(p.error_code, 0);
        }
    }
}

/// Every (offset, value) of a partition, fetched from offset 0 in small fetches.
async fn read_all(conn: &mut Conn, partition: i32) -> Vec<(i64, String)> {
    let mut out = Vec::new();
    let mut offset = 0;
    loop {
        let request = FetchRequest::default()
            .with_max_wait_ms(0)
            .with_min_bytes(1)
            .with_max_bytes(1 << 20)
            .with_topics(vec![FetchTopic::default()
                .with_topic(name("t"))
                .with_partitions(vec![FetchPartition::default()
                    .with_partition(partition)
                    .with_fetch_offset(offset)
                    .with_partition_max_bytes(300)])]);
        let response: FetchResponse = conn.call(ApiKey::Fetch, 12, &request).await;
        let p = &response.responses[0].partitions[0];
        assert_eq!(p.error_code, 0);
        let mut records = p.records.clone().unwrap_or_default();
        let before = out.len();
        for set in RecordBatchDecoder::decode_all(&mut records).unwrap() {
            for r in set.records {
                if r.offset >= offset {
                    let value = r.value.unwrap();
                    out.push((r.offset, String::from_utf8(value.to_vec()).unwrap()));
                }
            }
        }
        if out.len() == before {
            assert_eq!(
                offset, p.high_watermark,
                "a fetch below the high watermark found nothing"
            );
            return out;
        }
        offset = out.last().unwrap().0 + 1;
    }
}

/// Checks that each partition reads back exactly what was produced, in order.
async fn assert_every_record_once_in_order(conn: &mut Conn) {
    for p in 0..PARTITIONS {
        let read = read_all(conn, p).await;
        let want: Vec<(i64, String)> = (0..SEGMENTS * PER_BATCH)
            .map(|i| (i as i64, format!("p{p}-{i}")))
            .collect();
        assert_eq!(read, want, "partition {p}");
    }
}

async fn rows(agent: &Agent, partition: i32) -> Vec<pb::IndexedChunk> {
    let topic_id = topic_id_of(agent).await.to_vec();
    compactor::partition_rows(
        agent,
        &pb::PartitionRef {
            topic_id,
            partition,
        },
        0,
    )
    .await
    .unwrap()
}

async fn topic_id_of(agent: &Agent) -> [u8; 16] {
    let topic = agent
        .metadata
        .clone()
        .list_topics(pb::ListTopicsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .topics
        .remove(0);
    topic.topic_id.as_slice().try_into().unwrap()
}

async fn objects(agent: &Agent) -> Vec<String> {
    let prefix = agent.bucket.path(strata_segment::naming::SEGMENTS_PREFIX);
    let listed: Vec<_> = agent
        .bucket
        .store
        .list(Some(&prefix))
        .try_collect()
        .await
        .unwrap();
    listed.into_iter().map(|m| m.location.to_string()).collect()
}

/// Settings whose target holds a whole partition of the test's data (so each partition
/// becomes one object), whatever the exact size of the test's batches.
async fn settings_for(agent: &Agent) -> CompactionSettings {
    let raw: u64 = rows(agent, 0)
        .await
        .iter()
        .map(|r| u64::from(r.raw_length))
        .sum();
    CompactionSettings {
        interval: Duration::from_secs(1),
        min_age: Duration::from_secs(600),
        target_bytes: raw + 16,
        zstd_level: 1,
    }
}

async fn setup() -> (Arc<Agent>, Arc<ManualClock>, Conn) {
    let clock = ManualClock::new(strata_clock::system().now_millis());
    let (agent, kafka) = start(clock.clone()).await;
    let mut conn = Conn::open(kafka).await;
    produce_segments(&mut conn).await;
    (agent, clock, conn)
}

/// Deletes what the collectors may delete: unreferenced objects past a 1 s grace, and
/// uncommitted ones past the orphan grace. Returns the objects left.
async fn collect(agent: &Agent, clock: &ManualClock) -> Vec<String> {
    let grace = Duration::from_secs(1);
    strata_agent::unreferenced::collect_once(agent, grace)
        .await
        .unwrap();
    clock.advance(grace);
    strata_agent::unreferenced::collect_once(agent, grace)
        .await
        .unwrap();
    strata_agent::orphans::collect_once(agent, strata_agent::orphans::MIN_GRACE)
        .await
        .unwrap();
    objects(agent).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pass_rewrites_small_rows_and_readers_see_every_record_once_in_order() {
    let (agent, clock, mut conn) = setup().await;
    assert_eq!(rows(&agent, 0).await.len(), SEGMENTS);
    let settings = settings_for(&agent).await;
    let reader = compactor::compaction_reader(&agent);
    let metrics = compactor::CompactionMetrics::default();
    let mut cursors = compactor::Cursors::default();
    let young = compactor::compact_once(&agent, &reader, &settings, &metrics, &mut cursors)
        .await
        .unwrap();
    assert_eq!(
        young.objects, 0,
        "segments younger than the minimum age stay"
    );
    assert_eq!(
        cursors.get(&topic_id_of(&agent).await, 0),
        0,
        "young rows are looked at again"
    );
    clock.advance(Duration::from_secs(601));
    // readers run while the pass does
    let kafka_reader = {
        let mut conn = Conn::open(agent.config.kafka_listen).await;
        tokio::spawn(async move {
            for _ in 0..5 {
                assert_every_record_once_in_order(&mut conn).await;
            }
        })
    };
    let done = compactor::compact_once(&agent, &reader, &settings, &metrics, &mut cursors)
        .await
        .unwrap();
    kafka_reader.await.unwrap();
    assert_eq!(done.partitions, PARTITIONS as usize);
    assert_eq!(done.objects, PARTITIONS as usize);
    assert_eq!(done.rows_replaced, SEGMENTS * PARTITIONS as usize);
    assert_eq!(metrics.objects.get(), PARTITIONS as u64);
    let topic_id = topic_id_of(&agent).await;
    for p in 0..PARTITIONS {
        let after = rows(&agent, p).await;
        assert_eq!(after.len(), 1, "partition {p}");
        assert_eq!(
            (after[0].base_offset, after[0].end_offset),
            (0, (SEGMENTS * PER_BATCH) as i64)
        );
        // everything is settled: the next pass lists nothing before the end
        assert_eq!(cursors.get(&topic_id, p), after[0].end_offset);
    }
    assert_every_record_once_in_order(&mut conn).await;
    // the old segments are now unreferenced and collected; the compacted ones stay
    assert_eq!(collect(&agent, &clock).await.len(), PARTITIONS as usize);
    assert_every_record_once_in_order(&mut conn).await;
    let again = compactor::compact_once(&agent, &reader, &settings, &metrics, &mut cursors)
        .await
        .unwrap();
    assert_eq!(again.objects, 0, "large rows are left alone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_compactor_leaves_no_corruption_and_its_work_is_picked_up_again() {
    let (agent, clock, mut conn) = setup().await;
    clock.advance(Duration::from_secs(601));
    let settings = settings_for(&agent).await;
    let reader = compactor::compaction_reader(&agent);
    let metrics = compactor::CompactionMetrics::default();
    let mut cursors = compactor::Cursors::default();
    // killed between its upload and its swap: an uncommitted object, the index unchanged
    let p0 = pb::PartitionRef {
        topic_id: topic_id_of(&agent).await.to_vec(),
        partition: 0,
    };
    let before = rows(&agent, 0).await;
    let limits = compactor::PlanLimits {
        target_bytes: settings.target_bytes,
        written_before_ms: clock.now_millis() - 600_000,
    };
    let group = compactor::plan_groups(&before, &limits).remove(0);
    let orphan = compactor::write_object(&agent, &reader, &settings, &p0, group)
        .await
        .unwrap();
    assert_eq!(rows(&agent, 0).await, before);
    assert!(objects(&agent)
        .await
        .iter()
        .any(|k| k.ends_with(&orphan.object_key)));
    assert_every_record_once_in_order(&mut conn).await;
    // passes killed at arbitrary points (their futures dropped mid-way)
    for micros in [50, 500, 2_000, 5_000, 20_000] {
        let _ = tokio::time::timeout(
            Duration::from_micros(micros),
            compactor::compact_once(&agent, &reader, &settings, &metrics, &mut cursors),
        )
        .await;
        assert_every_record_once_in_order(&mut conn).await;
    }
    // the next whole pass finishes the work
    compactor::compact_once(&agent, &reader, &settings, &metrics, &mut cursors)
        .await
        .unwrap();
    for p in 0..PARTITIONS {
        assert_eq!(rows(&agent, p).await.len(), 1, "partition {p}");
    }
    assert_every_record_once_in_order(&mut conn).await;
    // a late swap of the killed compactor's object finds the rows changed
    let late = compactor::swap(&agent, &orphan).await.unwrap();
    assert_eq!(late.status(), pb::ReplaceStatus::Conflict);
    // past the orphan grace, the orphans go; the old segments go as unreferenced
    clock.advance(strata_agent::orphans::MIN_GRACE + Duration::from_secs(300));
    let left = collect(&agent, &clock).await;
    assert_eq!(left.len(), PARTITIONS as usize, "{left:?}");
    assert!(!left.iter().any(|k| k.ends_with(&orphan.object_key)));
    assert_every_record_once_in_order(&mut conn).await;
}
