#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use strata_clock::{Clock, ManualClock};
use strata_proto::metadata::v1 as pb;
use strata_proto::metadata::v1::metadata_service_server::MetadataService;
use tonic::Request;

use crate::sqlite::SqliteStore;
use crate::store::*;
use crate::MetadataServiceImpl;

const START_MS: i64 = 1_700_000_000_000;

struct Fixture {
    store: Arc<SqliteStore>,
    clock: Arc<ManualClock>,
    service: MetadataServiceImpl,
}

fn fixture() -> Fixture {
    let store = Arc::new(SqliteStore::in_memory().unwrap());
    let clock = ManualClock::new(START_MS);
    let service = MetadataServiceImpl::new(store.clone(), clock.clone());
    Fixture {
        store,
        clock,
        service,
    }
}

async fn create(f: &Fixture, name: &str, id: u8, partitions: i32, configs: &[(&str, &str)]) {
    let configs: BTreeMap<String, String> = configs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    f.store
        .create_topic(TopicRecord {
            topic_id: [id; 16],
            name: name.into(),
            partition_count: partitions,
            configs,
            created_at_ms: START_MS,
        })
        .await
        .unwrap();
}

/// Commits through the service, under a key written now, as an agent would.
async fn commit(f: &Fixture, unique: u8, chunks: Vec<(TopicId, i32, i64, i64)>) -> String {
    let key = strata_segment::naming::segment_key(f.clock.now_millis(), 1, [unique; 16]);
    let chunks = chunks
        .into_iter()
        .map(|(t, p, n, ts)| pb::ChunkCommit {
            topic_id: t.to_vec(),
            partition: p,
            byte_offset: 0,
            byte_length: 100,
            raw_length: 100,
            batch_count: 1,
            record_count: n as u32,
            max_timestamp: ts,
            runs: vec![pb::RunCommit {
                raw_offset: 0,
                raw_length: 100,
                offset_count: n,
                producer: None,
            }],
        })
        .collect();
    f.service
        .commit_segment(Request::new(pb::CommitSegmentRequest {
            object_key: key.clone(),
            object_size: 100,
            chunks,
        }))
        .await
        .unwrap();
    key
}

fn partition(topic_id: TopicId, partition: i32) -> PartitionId {
    PartitionId {
        topic_id,
        partition,
    }
}

async fn log_start(f: &Fixture, p: PartitionId) -> i64 {
    f.store.partition_offsets(&[p]).await.unwrap()[0]
        .unwrap()
        .log_start_offset
}

#[tokio::test]
async fn the_enforcer_applies_each_topics_limits_and_publishes_the_moves() {
    let f = fixture();
    create(&f, "short", 1, 2, &[("retention.ms", "60000")]).await;
    create(
        &f,
        "small",
        2,
        1,
        &[("retention.ms", "-1"), ("retention.bytes", "150")],
    )
    .await;
    create(&f, "forever", 3, 1, &[("retention.ms", "-1")]).await;
    let (short, small, forever) = ([1; 16], [2; 16], [3; 16]);
    let old = START_MS - 120_000;
    commit(
        &f,
        1,
        vec![
            (short, 0, 10, old),
            (short, 1, 5, START_MS),
            (small, 0, 10, old),
        ],
    )
    .await;
    commit(
        &f,
        2,
        vec![
            (short, 0, 10, START_MS),
            (small, 0, 10, old),
            (forever, 0, 10, 0),
        ],
    )
    .await;
    let (updates, mut watch) = tokio::sync::broadcast::channel(16);
    let enforcer = crate::retention::RetentionEnforcer::new(
        f.store.clone(),
        f.clock.clone(),
        updates,
        Default::default(),
    );
    let pass = enforcer.run_once().await.unwrap();
    assert_eq!(
        pass,
        crate::retention::RetentionPass {
            partitions_checked: 3,
            partitions_trimmed: 2,
            failures: 0
        }
    );
    assert_eq!(log_start(&f, partition(short, 0)).await, 10);
    assert_eq!(log_start(&f, partition(short, 1)).await, 0);
    assert_eq!(
        log_start(&f, partition(small, 0)).await,
        10,
        "100 bytes left"
    );
    assert_eq!(log_start(&f, partition(forever, 0)).await, 0);
    let published = watch.try_recv().unwrap();
    let mut starts: Vec<_> = published
        .iter()
        .map(|o| (o.topic_id[0], o.partition, o.log_start_offset))
        .collect();
    starts.sort();
    assert_eq!(starts, [(1, 0, 10), (2, 0, 10)]);
    // an hour later the newer rows expired too, but never past the high watermark
    f.clock.advance(Duration::from_secs(3_600));
    f.service.retention_enforcer().run_once().await.unwrap();
    assert_eq!(log_start(&f, partition(short, 0)).await, 20);
    assert_eq!(log_start(&f, partition(short, 1)).await, 5);
}

#[tokio::test]
async fn delete_records_moves_log_starts_and_reports_each_partition() {
    let f = fixture();
    create(&f, "t", 1, 2, &[]).await;
    let t = [1; 16];
    commit(&f, 1, vec![(t, 0, 10, START_MS), (t, 1, 10, START_MS)]).await;
    let deletion = |topic_id: TopicId, partition, offset| pb::RecordDeletion {
        topic_id: topic_id.to_vec(),
        partition,
        offset,
    };
    let response = f
        .service
        .delete_records(Request::new(pb::DeleteRecordsRequest {
            partitions: vec![
                deletion(t, 0, 4),
                deletion(t, 1, -1),
                deletion(t, 0, 11),
                deletion(t, 0, 2),
                deletion(t, 5, 0),
                deletion([7; 16], 0, 0),
            ],
        }))
        .await
        .unwrap()
        .into_inner();
    let results: Vec<_> = response
        .partitions
        .iter()
        .map(|r| (r.partition, r.error, r.low_watermark))
        .collect();
    let (none, out_of_range, unknown) = (
        pb::PartitionError::None as i32,
        pb::PartitionError::OffsetOutOfRange as i32,
        pb::PartitionError::UnknownTopicOrPartition as i32,
    );
    assert_eq!(
        results,
        [
            (0, none, 4),
            (1, none, 10),
            (0, out_of_range, 4),
            (0, none, 4),
            (5, unknown, -1),
            (0, unknown, -1)
        ]
    );
}

#[tokio::test]
async fn objects_are_listed_after_their_grace_and_forgotten_once_no_commit_can_name_them() {
    let f = fixture();
    create(&f, "t", 1, 1, &[]).await;
    let t = [1; 16];
    let key = commit(&f, 1, vec![(t, 0, 10, START_MS)]).await;
    // a commit for a deleted topic stores no row: its object is garbage from the start
    let empty = commit(&f, 2, vec![([9; 16], 0, 5, START_MS)]).await;
    f.service
        .delete_records(Request::new(pb::DeleteRecordsRequest {
            partitions: vec![pb::RecordDeletion {
                topic_id: t.to_vec(),
                partition: 0,
                offset: -1,
            }],
        }))
        .await
        .unwrap();
    let list = |grace_ms| {
        let service = &f.service;
        async move {
            let mut keys: Vec<String> = service
                .list_unreferenced_objects(Request::new(pb::ListUnreferencedObjectsRequest {
                    min_unreferenced_ms: grace_ms,
                    limit: 0,
                }))
                .await
                .unwrap()
                .into_inner()
                .objects
                .into_iter()
                .map(|o| o.object_key)
                .collect();
            keys.sort();
            keys
        }
    };
    assert!(list(1_000).await.is_empty(), "the grace starts now");
    f.clock.advance(Duration::from_millis(1_000));
    let mut both = vec![key.clone(), empty.clone()];
    both.sort();
    assert_eq!(list(1_000).await, both);
    let forget = || {
        let service = &f.service;
        let keys = both.clone();
        async move {
            service
                .forget_objects(Request::new(pb::ForgetObjectsRequest { object_keys: keys }))
                .await
                .unwrap()
                .into_inner()
                .forgotten
        }
    };
    assert!(
        forget().await.is_empty(),
        "a retried commit may still name them"
    );
    assert_eq!(list(1_000).await, both);
    f.clock.advance(Duration::from_millis(
        crate::service::MAX_COMMIT_AGE_MS as u64,
    ));
    let mut forgotten = forget().await;
    forgotten.sort();
    assert_eq!(forgotten, both);
    assert!(list(0).await.is_empty());
}
