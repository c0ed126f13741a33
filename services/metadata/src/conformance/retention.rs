//! Conformance checks of log start moves (DeleteRecords, retention) and of the tracking
//! of objects no index row references any more.

use super::{chunk, segment, topic};
use crate::store::*;

fn partition(topic_id: TopicId, partition: i32) -> PartitionId {
    PartitionId {
        topic_id,
        partition,
    }
}

fn offsets(log_start_offset: i64, high_watermark: i64) -> PartitionOffsets {
    PartitionOffsets {
        log_start_offset,
        high_watermark,
    }
}

fn moved(log_start: i64, high_watermark: i64, previous: i64) -> LogStartOutcome {
    LogStartOutcome::Moved {
        offsets: offsets(log_start, high_watermark),
        previous,
    }
}

/// Commits one single-chunk segment per entry: (key, partition, offsets, max timestamp).
async fn commit_each(store: &impl MetadataStore, t: TopicId, spec: &[(&str, i32, i64, i64)]) {
    for &(key, p, n, ts) in spec {
        store
            .commit_segment(segment(key, vec![chunk(t, p, n, ts)]))
            .await
            .unwrap();
    }
}

async fn row_bases(store: &impl MetadataStore, p: PartitionId) -> (PartitionOffsets, Vec<i64>) {
    let (offsets, rows) = store
        .lookup_chunks(p, 0, u64::MAX, 100)
        .await
        .unwrap()
        .unwrap();
    (offsets, rows.iter().map(|r| r.base_offset).collect())
}

async fn listed(store: &impl MetadataStore, now_ms: i64, before_ms: i64) -> Vec<String> {
    store
        .unreferenced_objects(now_ms, before_ms, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.object_key)
        .collect()
}

/// DeleteRecords moves the log start forward only, never past the high watermark, removes
/// the rows wholly below it, and later commits keep offsets dense.
pub async fn log_start_moves_forward_within_bounds(store: impl MetadataStore) {
    let t = store.create_topic(topic("t", 1, 1)).await.unwrap().topic_id;
    commit_each(
        &store,
        t,
        &[("s0", 0, 10, 100), ("s1", 0, 10, 200), ("s2", 0, 10, 300)],
    )
    .await;
    let p = partition(t, 0);
    let to = |offset| LogStartTarget::Offset(offset);
    assert_eq!(
        store.advance_log_start(p, to(15)).await.unwrap(),
        moved(15, 30, 0)
    );
    assert_eq!(
        row_bases(&store, p).await,
        (offsets(15, 30), vec![10, 20]),
        "the row holding the new log start stays, the one below it goes"
    );
    let earliest = store
        .chunk_by_timestamp(p, TimestampQuery::AtOrAfter(0))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(earliest.0, offsets(15, 30));
    assert_eq!(earliest.1.map(|c| c.base_offset), Some(10));
    assert_eq!(
        store.advance_log_start(p, to(5)).await.unwrap(),
        moved(15, 30, 15),
        "never backwards"
    );
    for beyond in [31, -3] {
        assert_eq!(
            store.advance_log_start(p, to(beyond)).await.unwrap(),
            LogStartOutcome::OutOfRange {
                offsets: offsets(15, 30)
            }
        );
    }
    assert_eq!(
        store.partition_offsets(&[p]).await.unwrap(),
        vec![Some(offsets(15, 30))]
    );
    assert_eq!(
        store
            .advance_log_start(p, LogStartTarget::HighWatermark)
            .await
            .unwrap(),
        moved(30, 30, 15)
    );
    assert_eq!(row_bases(&store, p).await, (offsets(30, 30), vec![]));
    let max = store
        .chunk_by_timestamp(p, TimestampQuery::Max)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(max, (offsets(30, 30), None));
    commit_each(&store, t, &[("s3", 0, 5, 400)]).await;
    assert_eq!(row_bases(&store, p).await, (offsets(30, 35), vec![30]));
    assert_eq!(
        store
            .advance_log_start(partition(t, 4), to(0))
            .await
            .unwrap(),
        LogStartOutcome::UnknownPartition
    );
}

/// retention.ms drops the oldest whole rows whose newest record is too old, stopping at
/// the first recent one; rows without timestamps age from their commit.
pub async fn retention_by_time(store: impl MetadataStore) {
    let t = store.create_topic(topic("t", 1, 2)).await.unwrap().topic_id;
    commit_each(
        &store,
        t,
        &[
            ("s0", 0, 10, 100),
            ("s1", 0, 10, 200),
            ("s2", 0, 10, 50),
            ("s3", 0, 10, 900),
            ("s4", 0, 10, 10),
        ],
    )
    .await;
    let p = partition(t, 0);
    let age = |ms| RetentionPolicy {
        max_age_ms: Some(ms),
        max_bytes: None,
    };
    assert_eq!(
        store.apply_retention(p, age(700), 1_000).await.unwrap(),
        moved(30, 50, 0)
    );
    assert_eq!(row_bases(&store, p).await, (offsets(30, 50), vec![30, 40]));
    assert_eq!(
        store.apply_retention(p, age(700), 1_000).await.unwrap(),
        moved(30, 50, 30),
        "a recent row stops the walk; nothing more goes"
    );
    assert_eq!(
        store
            .apply_retention(p, RetentionPolicy::default(), 1_000_000)
            .await
            .unwrap(),
        moved(30, 50, 30)
    );
    assert_eq!(
        store.apply_retention(p, age(0), 1_000_000).await.unwrap(),
        moved(50, 50, 30),
        "everything expired: the log start reaches the high watermark, no further"
    );
    // a row whose records carry no timestamp ages from its commit (at 2_000)
    let q = partition(t, 1);
    commit_each(&store, t, &[("s5", 1, 10, -1)]).await;
    assert_eq!(
        store.apply_retention(q, age(500), 2_400).await.unwrap(),
        moved(0, 10, 0)
    );
    assert_eq!(
        store.apply_retention(q, age(500), 2_600).await.unwrap(),
        moved(10, 10, 0)
    );
    assert_eq!(
        store
            .apply_retention(partition(t, 7), age(0), 0)
            .await
            .unwrap(),
        LogStartOutcome::UnknownPartition
    );
}

/// retention.bytes drops the oldest whole rows until the rest fits; a row only partly
/// below the log start still counts whole.
pub async fn retention_by_bytes(store: impl MetadataStore) {
    let t = store.create_topic(topic("t", 1, 1)).await.unwrap().topic_id;
    // every row holds 100 bytes
    commit_each(
        &store,
        t,
        &[
            ("s0", 0, 10, 1),
            ("s1", 0, 10, 1),
            ("s2", 0, 10, 1),
            ("s3", 0, 10, 1),
        ],
    )
    .await;
    let p = partition(t, 0);
    let cap = |bytes| RetentionPolicy {
        max_age_ms: None,
        max_bytes: Some(bytes),
    };
    assert_eq!(
        store.apply_retention(p, cap(400), 0).await.unwrap(),
        moved(0, 40, 0)
    );
    store
        .advance_log_start(p, LogStartTarget::Offset(5))
        .await
        .unwrap();
    assert_eq!(
        store.apply_retention(p, cap(250), 0).await.unwrap(),
        moved(20, 40, 5),
        "400 bytes stored: two rows go, 200 stay"
    );
    assert_eq!(row_bases(&store, p).await, (offsets(20, 40), vec![20, 30]));
    assert_eq!(
        store.apply_retention(p, cap(200), 0).await.unwrap(),
        moved(20, 40, 20)
    );
    assert_eq!(
        store.apply_retention(p, cap(0), 0).await.unwrap(),
        moved(40, 40, 20)
    );
    commit_each(&store, t, &[("s4", 0, 3, 1)]).await;
    assert_eq!(row_bases(&store, p).await, (offsets(40, 43), vec![40]));
}

/// An object holding chunks of several partitions is unreferenced only once every one of
/// its rows is gone; its grace starts when a listing first sees it so.
pub async fn multi_partition_objects_stay_referenced_while_any_row_does(store: impl MetadataStore) {
    let t = store.create_topic(topic("t", 1, 2)).await.unwrap().topic_id;
    store
        .commit_segment(segment("m", vec![chunk(t, 0, 10, 1), chunk(t, 1, 10, 1)]))
        .await
        .unwrap();
    commit_each(&store, t, &[("a", 0, 10, 1), ("b", 1, 10, 1)]).await;
    let (p0, p1) = (partition(t, 0), partition(t, 1));
    store
        .advance_log_start(p0, LogStartTarget::Offset(10))
        .await
        .unwrap();
    assert!(
        listed(&store, 5_000, 5_000).await.is_empty(),
        "partition 1 still reads m"
    );
    store
        .advance_log_start(p1, LogStartTarget::Offset(15))
        .await
        .unwrap();
    assert!(
        listed(&store, 5_000, 4_999).await.is_empty(),
        "the grace of m starts at the listing that first sees it unreferenced"
    );
    let objects = store.unreferenced_objects(6_000, 5_000, 100).await.unwrap();
    assert_eq!(
        objects,
        vec![UnreferencedObject {
            object_key: "m".into(),
            unreferenced_since_ms: 5_000,
            committed_at_ms: 2_000,
        }]
    );
    assert!(store
        .unreferenced_objects(6_000, 5_000, 0)
        .await
        .unwrap()
        .is_empty());
    // b holds partition 1's log start and a is above partition 0's: both stay
    assert_eq!(
        store
            .committed_objects(vec!["a".into(), "b".into()])
            .await
            .unwrap(),
        [true, true]
    );
    store
        .apply_retention(
            p0,
            RetentionPolicy {
                max_age_ms: Some(0),
                max_bytes: None,
            },
            10,
        )
        .await
        .unwrap();
    assert_eq!(listed(&store, 7_000, 7_000).await, ["m", "a"]);
}

/// Deleting a topic leaves its objects unreferenced, except those another topic still
/// reads; forgetting drops only unreferenced objects whose commit window has closed.
pub async fn deleted_topics_and_forgotten_objects(store: impl MetadataStore) {
    let gone = store
        .create_topic(topic("gone", 1, 1))
        .await
        .unwrap()
        .topic_id;
    let kept = store
        .create_topic(topic("kept", 2, 1))
        .await
        .unwrap()
        .topic_id;
    store
        .commit_segment(segment("solo", vec![chunk(gone, 0, 5, 1)]))
        .await
        .unwrap();
    store
        .commit_segment(segment(
            "shared",
            vec![chunk(gone, 0, 5, 1), chunk(kept, 0, 5, 1)],
        ))
        .await
        .unwrap();
    store.delete_topic("gone").await.unwrap();
    assert_eq!(listed(&store, 100, 100).await, ["solo"]);
    store
        .advance_log_start(partition(kept, 0), LogStartTarget::HighWatermark)
        .await
        .unwrap();
    assert_eq!(listed(&store, 200, 200).await, ["solo", "shared"]);
    let keys = vec!["solo".to_string(), "shared".to_string(), "nope".to_string()];
    assert!(
        store
            .forget_objects(keys.clone(), 1_999)
            .await
            .unwrap()
            .is_empty(),
        "committed at 2_000: a retried commit may still come"
    );
    assert_eq!(listed(&store, 300, 300).await, ["solo", "shared"]);
    let mut forgotten = store.forget_objects(keys, 2_000).await.unwrap();
    forgotten.sort();
    assert_eq!(forgotten, ["shared", "solo"]);
    assert!(listed(&store, 400, 400).await.is_empty());
    assert_eq!(
        store
            .committed_objects(vec!["solo".into(), "shared".into()])
            .await
            .unwrap(),
        [false, false]
    );
    // a referenced object is never forgotten
    store
        .commit_segment(segment("live", vec![chunk(kept, 0, 5, 1)]))
        .await
        .unwrap();
    assert!(store
        .forget_objects(vec!["live".into()], i64::MAX)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        store.committed_objects(vec!["live".into()]).await.unwrap(),
        [true]
    );
}

/// A committed object that got no index row at all can be marked unreferenced; marking a
/// referenced or unknown object does nothing.
pub async fn objects_without_rows_can_be_marked(store: impl MetadataStore) {
    let t = store.create_topic(topic("t", 1, 1)).await.unwrap().topic_id;
    store
        .commit_segment(segment("empty", vec![chunk([9; 16], 0, 5, 1)]))
        .await
        .unwrap();
    commit_each(&store, t, &[("live", 0, 5, 1)]).await;
    store
        .mark_unreferenced(vec!["empty".into(), "live".into(), "unknown".into()])
        .await
        .unwrap();
    store.mark_unreferenced(Vec::new()).await.unwrap();
    assert_eq!(listed(&store, 10, 10).await, ["empty"]);
}
