//! One conformance suite for every [`MetadataStore`] implementation.
//!
//! Each check is an async function over a fresh store; [`store_conformance_tests!`] turns
//! them into `#[tokio::test]`s for one implementation, so SQLite and PostgreSQL run the very
//! same bodies.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use crate::store::*;

mod compaction;
mod retention;
pub use self::compaction::*;
pub use self::retention::*;

fn topic(name: &str, id: u8, partitions: i32) -> TopicRecord {
    TopicRecord {
        topic_id: [id; 16],
        name: name.to_string(),
        partition_count: partitions,
        configs: BTreeMap::from([("retention.ms".to_string(), "-1".to_string())]),
        created_at_ms: 1_000,
    }
}

fn chunk(topic_id: TopicId, partition: i32, offsets: i64, max_timestamp: i64) -> ChunkToCommit {
    chunk_of_runs(topic_id, partition, max_timestamp, &[(offsets, None)])
}

/// A chunk of 100-byte runs, each with its offset count and producer.
fn chunk_of_runs(
    topic_id: TopicId,
    partition: i32,
    max_timestamp: i64,
    runs: &[(i64, Option<ProducerBatch>)],
) -> ChunkToCommit {
    let runs: Vec<RunToCommit> = runs
        .iter()
        .enumerate()
        .map(|(i, (offsets, producer))| RunToCommit {
            raw_offset: 100 * i as u32,
            raw_length: 100,
            offset_count: *offsets,
            producer: *producer,
        })
        .collect();
    ChunkToCommit {
        partition: PartitionId {
            topic_id,
            partition,
        },
        byte_offset: 0,
        byte_length: 100,
        raw_length: 100 * runs.len() as u32,
        batch_count: runs.len() as u32,
        record_count: runs.iter().map(|r| r.offset_count as u32).sum(),
        max_timestamp,
        runs,
    }
}

fn segment(key: &str, chunks: Vec<ChunkToCommit>) -> SegmentCommit {
    SegmentCommit {
        object_key: key.to_string(),
        object_size: 1_000,
        chunks,
        committed_at_ms: 2_000,
    }
}

fn bases(outcome: &CommitOutcome) -> Vec<Option<i64>> {
    outcome
        .chunks
        .iter()
        .map(|c| match c {
            ChunkOutcome::Committed { runs, .. } => match runs[0] {
                RunOutcome::Appended { base_offset } => Some(base_offset),
                other => panic!("unexpected run outcome {other:?}"),
            },
            ChunkOutcome::UnknownPartition => None,
        })
        .collect()
}

fn runs_of(outcome: &CommitOutcome, chunk: usize) -> Vec<RunOutcome> {
    match &outcome.chunks[chunk] {
        ChunkOutcome::Committed { runs, .. } => runs.clone(),
        ChunkOutcome::UnknownPartition => panic!("partition unknown"),
    }
}

/// Idempotent batches: retries get their original offsets, gaps and old epochs are refused,
/// and refused or repeated runs leave no offsets and no index rows behind.
pub async fn idempotent_producer_batches(store: impl MetadataStore) {
    let t = store.create_topic(topic("t", 1, 1)).await.unwrap().topic_id;
    let (pid, epoch) = store.init_producer(None).await.unwrap().unwrap();
    assert_eq!(epoch, 0);
    let batch = |base, last| {
        Some(ProducerBatch {
            producer_id: pid,
            epoch: 0,
            base_sequence: base,
            last_sequence: last,
        })
    };
    let first = store
        .commit_segment(segment(
            "s1",
            vec![chunk_of_runs(
                t,
                0,
                1,
                &[(3, batch(0, 2)), (2, batch(3, 4))],
            )],
        ))
        .await
        .unwrap();
    assert_eq!(
        runs_of(&first, 0),
        [
            RunOutcome::Appended { base_offset: 0 },
            RunOutcome::Appended { base_offset: 3 }
        ]
    );
    // a segment holding a retry of the second batch, a gap, and then the next batch
    let second = store
        .commit_segment(segment(
            "s2",
            vec![chunk_of_runs(
                t,
                0,
                1,
                &[
                    (2, batch(3, 4)),
                    (1, batch(9, 9)),
                    (1, batch(5, 5)),
                    (4, None),
                ],
            )],
        ))
        .await
        .unwrap();
    assert_eq!(
        runs_of(&second, 0),
        [
            RunOutcome::Duplicate { base_offset: 3 },
            RunOutcome::Rejected(ProducerRejection::OutOfOrderSequence),
            RunOutcome::Appended { base_offset: 5 },
            RunOutcome::Appended { base_offset: 6 },
        ]
    );
    let p = PartitionId {
        topic_id: t,
        partition: 0,
    };
    let (offsets, rows) = store
        .lookup_chunks(p, 5, u64::MAX, 10)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(offsets.high_watermark, 10);
    let spans: Vec<_> = rows
        .iter()
        .map(|r| {
            (
                r.object_key.as_str(),
                r.raw_offset,
                r.raw_length,
                r.base_offset,
                r.end_offset,
            )
        })
        .collect();
    assert_eq!(
        spans,
        [("s2", 200, 200, 5, 10)],
        "the skipped runs are not readable"
    );
    // a bumped epoch fences the old one and restarts sequences
    let (same, bumped) = store.init_producer(Some((pid, 0))).await.unwrap().unwrap();
    assert_eq!((same, bumped), (pid, 1));
    assert_eq!(
        store.init_producer(Some((pid, 0))).await.unwrap(),
        Err(ProducerRejection::FencedEpoch)
    );
    let third = store
        .commit_segment(segment(
            "s3",
            vec![chunk_of_runs(t, 0, 1, &[(1, batch(6, 6))])],
        ))
        .await
        .unwrap();
    assert_eq!(
        runs_of(&third, 0),
        [RunOutcome::Rejected(ProducerRejection::FencedEpoch)]
    );
    // the retried commit of s2 replays its outcome exactly
    let replay = store
        .commit_segment(segment(
            "s2",
            vec![chunk_of_runs(
                t,
                0,
                1,
                &[
                    (2, batch(3, 4)),
                    (1, batch(9, 9)),
                    (1, batch(5, 5)),
                    (4, None),
                ],
            )],
        ))
        .await
        .unwrap();
    assert!(replay.already_committed);
    assert_eq!(runs_of(&replay, 0), runs_of(&second, 0));
}

/// A group commit applies its segments in order as if committed one after the other: later
/// ones see earlier offsets and producer sequences, a refused one leaves no trace and does
/// not disturb the rest, a repeated key in one group is refused, and keys committed before
/// are replayed.
pub async fn group_commit_applies_segments_in_order(store: impl MetadataStore) {
    let t = store.create_topic(topic("t", 1, 2)).await.unwrap().topic_id;
    let (pid, _) = store.init_producer(None).await.unwrap().unwrap();
    let batch = |base, last| {
        Some(ProducerBatch {
            producer_id: pid,
            epoch: 0,
            base_sequence: base,
            last_sequence: last,
        })
    };
    let earlier = store
        .commit_segment(segment("g0", vec![chunk(t, 0, 5, 1)]))
        .await
        .unwrap();
    let mut refused = chunk(t, 1, 1, 1);
    refused.runs[0].offset_count = 0;
    let results = store
        .commit_segments(vec![
            segment("g1", vec![chunk(t, 0, 3, 1), chunk(t, 1, 2, 1)]),
            segment("g2", vec![refused]),
            segment("g0", vec![chunk(t, 0, 5, 1)]),
            segment("g3", vec![chunk_of_runs(t, 1, 1, &[(2, batch(0, 1))])]),
            segment("g3", vec![chunk(t, 1, 9, 1)]),
            // a retry of g3's batch in the same group: answered with g3's offset
            segment("g4", vec![chunk_of_runs(t, 1, 1, &[(2, batch(0, 1))])]),
            segment("g5", vec![chunk(t, 0, 1, 1), chunk(t, 1, 1, 1)]),
        ])
        .await
        .unwrap();
    assert_eq!(results.len(), 7);
    let ok = |i: usize| results[i].as_ref().unwrap();
    assert_eq!(bases(ok(0)), [Some(5), Some(0)]);
    assert!(matches!(results[1], Err(StoreError::InvalidRequest(_))));
    assert!(ok(2).already_committed);
    assert_eq!(ok(2).chunks, earlier.chunks);
    assert_eq!(runs_of(ok(3), 0), [RunOutcome::Appended { base_offset: 2 }]);
    assert!(matches!(results[4], Err(StoreError::InvalidRequest(_))));
    assert_eq!(
        runs_of(ok(5), 0),
        [RunOutcome::Duplicate { base_offset: 2 }]
    );
    assert_eq!(bases(ok(6)), [Some(8), Some(4)]);
    let id = |partition| PartitionId {
        topic_id: t,
        partition,
    };
    let offsets = store.partition_offsets(&[id(0), id(1)]).await.unwrap();
    assert_eq!(offsets[0].unwrap().high_watermark, 9);
    assert_eq!(offsets[1].unwrap().high_watermark, 5);
    // the refused segment left no trace: its key commits normally later
    let later = store
        .commit_segment(segment("g2", vec![chunk(t, 1, 1, 1)]))
        .await
        .unwrap();
    assert!(!later.already_committed);
    assert_eq!(bases(&later), [Some(5)]);
    // and a whole group is replayed by key
    let again = store
        .commit_segments(vec![segment(
            "g1",
            vec![chunk(t, 0, 3, 1), chunk(t, 1, 2, 1)],
        )])
        .await
        .unwrap();
    assert_eq!(again[0].as_ref().unwrap().chunks, ok(0).chunks);
    let keys = ["g1", "g2", "g3", "g4", "g5"].map(String::from).to_vec();
    let committed = store.committed_objects(keys).await.unwrap();
    assert_eq!(committed, [true, true, true, true, true]);
}

/// Topics are created once, found by name and id, listed, and deleted.
pub async fn topic_lifecycle(store: impl MetadataStore) {
    let created = store.create_topic(topic("orders", 1, 3)).await.unwrap();
    assert_eq!(created.partition_count, 3);
    let again = store.create_topic(topic("orders", 2, 1)).await;
    assert!(matches!(again, Err(StoreError::TopicExists(_))));
    assert_eq!(
        store.topic_by_name("orders").await.unwrap(),
        Some(created.clone())
    );
    assert_eq!(
        store.topic_by_id([1; 16]).await.unwrap(),
        Some(created.clone())
    );
    store.create_topic(topic("audit", 3, 1)).await.unwrap();
    let names: Vec<_> = store
        .list_topics()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(names, ["audit", "orders"]);
    assert_eq!(store.delete_topic("orders").await.unwrap(), [1; 16]);
    assert!(store.topic_by_name("orders").await.unwrap().is_none());
    assert!(matches!(
        store.delete_topic("orders").await,
        Err(StoreError::TopicNotFound(_))
    ));
    let p = PartitionId {
        topic_id: [1; 16],
        partition: 0,
    };
    assert_eq!(store.partition_offsets(&[p]).await.unwrap(), vec![None]);
}

/// Config changes set and reset configs of one topic and leave the others alone.
pub async fn topic_configs_change(store: impl MetadataStore) {
    store.create_topic(topic("t", 1, 1)).await.unwrap();
    store.create_topic(topic("u", 2, 1)).await.unwrap();
    let change = |name: &str, value: Option<&str>| ConfigChange {
        name: name.to_string(),
        value: value.map(str::to_string),
    };
    let altered = store
        .alter_topic_configs(
            "t",
            vec![
                change("retention.bytes", Some("1000")),
                change("retention.ms", None),
                change("segment.ms", Some("1")),
                change("segment.ms", Some("2")),
            ],
        )
        .await
        .unwrap();
    let expected = BTreeMap::from([
        ("retention.bytes".to_string(), "1000".to_string()),
        ("segment.ms".to_string(), "2".to_string()),
    ]);
    assert_eq!(altered.configs, expected);
    let stored = store.topic_by_name("t").await.unwrap().unwrap();
    assert_eq!(stored.configs, expected);
    assert_eq!(stored.partition_count, 1);
    let untouched = store.topic_by_name("u").await.unwrap().unwrap();
    assert_eq!(untouched.configs, topic("u", 2, 1).configs);
    assert!(matches!(
        store.alter_topic_configs("nope", Vec::new()).await,
        Err(StoreError::TopicNotFound(_))
    ));
}

/// Offsets are dense per partition across segments, and each partition counts on its own.
pub async fn commits_assign_dense_offsets(store: impl MetadataStore) {
    let t = store.create_topic(topic("t", 1, 2)).await.unwrap().topic_id;
    let first = store
        .commit_segment(segment("s1", vec![chunk(t, 0, 5, 10), chunk(t, 1, 2, 10)]))
        .await
        .unwrap();
    assert_eq!(bases(&first), [Some(0), Some(0)]);
    assert!(!first.already_committed);
    let second = store
        .commit_segment(segment("s2", vec![chunk(t, 1, 3, 20), chunk(t, 0, 1, 20)]))
        .await
        .unwrap();
    assert_eq!(bases(&second), [Some(2), Some(5)]);
    let p0 = PartitionId {
        topic_id: t,
        partition: 0,
    };
    let offsets = store.partition_offsets(&[p0]).await.unwrap();
    assert_eq!(
        offsets,
        vec![Some(PartitionOffsets {
            log_start_offset: 0,
            high_watermark: 6
        })]
    );
}

/// A retried commit returns the original offsets and assigns nothing new.
pub async fn commit_is_idempotent_by_object_key(store: impl MetadataStore) {
    let t = store.create_topic(topic("t", 1, 1)).await.unwrap().topic_id;
    let commit = segment("s1", vec![chunk(t, 0, 4, 10)]);
    let first = store.commit_segment(commit.clone()).await.unwrap();
    let retry = store.commit_segment(commit).await.unwrap();
    assert_eq!(bases(&retry), bases(&first));
    assert!(retry.already_committed);
    let p = PartitionId {
        topic_id: t,
        partition: 0,
    };
    let hw = store.partition_offsets(&[p]).await.unwrap()[0]
        .unwrap()
        .high_watermark;
    assert_eq!(hw, 4);
}

/// Chunks for missing partitions are rejected alone; the rest of the segment commits.
pub async fn unknown_partitions_are_rejected_individually(store: impl MetadataStore) {
    let t = store.create_topic(topic("t", 1, 1)).await.unwrap().topic_id;
    let outcome = store
        .commit_segment(segment(
            "s1",
            vec![
                chunk(t, 7, 1, 1),
                chunk(t, 0, 1, 1),
                chunk([9; 16], 0, 1, 1),
            ],
        ))
        .await
        .unwrap();
    assert_eq!(bases(&outcome), [None, Some(0), None]);
}

/// Lookups start at the chunk holding the offset and respect the byte bound.
pub async fn lookup_finds_the_chunk_holding_an_offset(store: impl MetadataStore) {
    let t = store.create_topic(topic("t", 1, 1)).await.unwrap().topic_id;
    for (i, n) in [10, 10, 10].iter().enumerate() {
        store
            .commit_segment(segment(
                &format!("s{i}"),
                vec![chunk(t, 0, *n, 100 * i as i64)],
            ))
            .await
            .unwrap();
    }
    let p = PartitionId {
        topic_id: t,
        partition: 0,
    };
    let (offsets, rows) = store.lookup_chunks(p, 15, 1, 10).await.unwrap().unwrap();
    assert_eq!(offsets.high_watermark, 30);
    assert_eq!(
        rows.len(),
        1,
        "max_bytes bounds the rows, but at least one comes back"
    );
    assert_eq!(
        (
            rows[0].base_offset,
            rows[0].end_offset,
            rows[0].object_key.as_str()
        ),
        (10, 20, "s1")
    );
    let (_, rows) = store
        .lookup_chunks(p, 0, u64::MAX, 10)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        rows.iter().map(|r| r.base_offset).collect::<Vec<_>>(),
        [0, 10, 20]
    );
    let (_, rows) = store
        .lookup_chunks(p, 30, u64::MAX, 10)
        .await
        .unwrap()
        .unwrap();
    assert!(rows.is_empty());
    let missing = PartitionId {
        topic_id: t,
        partition: 3,
    };
    assert!(store
        .lookup_chunks(missing, 0, 1, 1)
        .await
        .unwrap()
        .is_none());
}

/// Timestamp queries pick the first chunk reaching the target, or the max.
pub async fn timestamp_queries(store: impl MetadataStore) {
    let t = store.create_topic(topic("t", 1, 1)).await.unwrap().topic_id;
    for (i, ts) in [100, 300, 200].iter().enumerate() {
        store
            .commit_segment(segment(&format!("s{i}"), vec![chunk(t, 0, 10, *ts)]))
            .await
            .unwrap();
    }
    let p = PartitionId {
        topic_id: t,
        partition: 0,
    };
    let base = |q| {
        let store = &store;
        async move {
            store
                .chunk_by_timestamp(p, q)
                .await
                .unwrap()
                .unwrap()
                .1
                .map(|c| c.base_offset)
        }
    };
    assert_eq!(base(TimestampQuery::AtOrAfter(150)).await, Some(10));
    assert_eq!(base(TimestampQuery::AtOrAfter(0)).await, Some(0));
    assert_eq!(base(TimestampQuery::AtOrAfter(301)).await, None);
    assert_eq!(base(TimestampQuery::Max).await, Some(10));
}

/// Committed offsets round-trip exactly (null metadata stays null) and can be deleted.
pub async fn committed_offsets(store: impl MetadataStore) {
    let offset = |topic: &str, partition, offset, metadata: Option<&str>| CommittedOffset {
        topic: topic.to_string(),
        partition,
        offset,
        leader_epoch: -1,
        metadata: metadata.map(str::to_string),
        commit_time_ms: 5,
    };
    store
        .commit_offsets(
            "g",
            vec![
                offset("a", 0, 10, Some("")),
                offset("a", 1, 11, None),
                offset("b", 0, 3, Some("m")),
            ],
        )
        .await
        .unwrap();
    store
        .commit_offsets("g", vec![offset("a", 0, 12, Some("x"))])
        .await
        .unwrap();
    store
        .commit_offsets("h", vec![offset("a", 0, 1, None)])
        .await
        .unwrap();
    let all = store.fetch_offsets("g", None).await.unwrap();
    assert_eq!(
        all,
        vec![
            offset("a", 0, 12, Some("x")),
            offset("a", 1, 11, None),
            offset("b", 0, 3, Some("m"))
        ]
    );
    let only_b = store
        .fetch_offsets("g", Some(vec!["b".into()]))
        .await
        .unwrap();
    assert_eq!(only_b, vec![offset("b", 0, 3, Some("m"))]);
    store
        .delete_offsets("g", vec![("a".into(), 1)])
        .await
        .unwrap();
    assert_eq!(store.fetch_offsets("g", None).await.unwrap().len(), 2);
    assert_eq!(store.groups_with_offsets().await.unwrap(), ["g", "h"]);
    assert!(store.delete_group_offsets("g").await.unwrap());
    assert!(!store.delete_group_offsets("g").await.unwrap());
    assert!(store.fetch_offsets("g", None).await.unwrap().is_empty());
}

/// Committed objects are told from uploads that never got committed.
pub async fn committed_objects_are_known(store: impl MetadataStore) {
    let t = store.create_topic(topic("t", 1, 1)).await.unwrap().topic_id;
    store
        .commit_segment(segment("segments/a", vec![chunk(t, 0, 1, 1)]))
        .await
        .unwrap();
    let keys = vec!["segments/orphan".to_string(), "segments/a".to_string()];
    assert_eq!(store.committed_objects(keys).await.unwrap(), [false, true]);
    assert!(store
        .committed_objects(Vec::new())
        .await
        .unwrap()
        .is_empty());
}

/// Generates one `#[tokio::test]` per conformance check for the store `$make` builds.
macro_rules! store_conformance_tests {
    ($make:expr) => {
        $crate::conformance::store_conformance_tests!(@each $make;
            topic_lifecycle,
            commits_assign_dense_offsets,
            commit_is_idempotent_by_object_key,
            unknown_partitions_are_rejected_individually,
            lookup_finds_the_chunk_holding_an_offset,
            timestamp_queries,
            committed_offsets,
            idempotent_producer_batches,
            committed_objects_are_known,
            group_commit_applies_segments_in_order,
            log_start_moves_forward_within_bounds,
            retention_by_time,
            retention_by_bytes,
            multi_partition_objects_stay_referenced_while_any_row_does,
            deleted_topics_and_forgotten_objects,
            objects_without_rows_can_be_marked,
            replace_chunks_swaps_rows_atomically,
            replace_chunks_conflicts_change_nothing,
            topic_configs_change
        );
    };
    (@each $make:expr; $($check:ident),*) => {
        $(
            #[tokio::test]
            async fn $check() {
                let store = ($make)().await;
                $crate::conformance::$check(store).await;
            }
        )*
    };
}
pub(crate) use store_conformance_tests;
