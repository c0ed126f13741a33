//! PostgreSQL-only tests of log start moves and compaction swaps: concurrent trims and
//! swaps of objects shared by several partitions, and the migration that finds objects
//! unreferenced before it.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::sync::Arc;

use super::pg_tests::{chunk, topic};
use super::test_server::{fresh_database, server_url};
use super::PostgresStore;
use crate::store::*;

/// Two processes trim the two partitions every object spans, one offset at a time and at
/// once: whichever removes an object's last row, the object is recorded as unreferenced.
#[tokio::test]
async fn concurrent_trims_never_miss_an_unreferenced_object() {
    let Some(server) = server_url() else {
        return;
    };
    let url = fresh_database(&server).await;
    let stores = [
        Arc::new(PostgresStore::connect_with(url.clone()).await.unwrap()),
        Arc::new(PostgresStore::connect_with(url).await.unwrap()),
    ];
    let t = stores[0]
        .create_topic(topic("t", 1, 2))
        .await
        .unwrap()
        .topic_id;
    const OBJECTS: i64 = 40;
    for i in 0..OBJECTS {
        let commit = SegmentCommit {
            object_key: format!("o{i:03}"),
            object_size: 20,
            chunks: vec![chunk(t, 0, 1), chunk(t, 1, 1)],
            committed_at_ms: 0,
        };
        stores[0].commit_segment(commit).await.unwrap();
    }
    let tasks: Vec<_> = (0..2)
        .map(|p| {
            let store = Arc::clone(&stores[p as usize]);
            tokio::spawn(async move {
                let partition = PartitionId {
                    topic_id: t,
                    partition: p,
                };
                for offset in 1..=OBJECTS {
                    store
                        .advance_log_start(partition, LogStartTarget::Offset(offset))
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let listed = stores[1].unreferenced_objects(1, 1, 1_000).await.unwrap();
    assert_eq!(listed.len() as i64, OBJECTS);
}

/// Objects that lost their last row before the retention migration (topics deleted by an
/// older version) are found by it.
#[tokio::test]
async fn the_migration_finds_objects_already_unreferenced() {
    let Some(server) = server_url() else {
        return;
    };
    let url = fresh_database(&server).await;
    let store = PostgresStore::connect_with(url.clone()).await.unwrap();
    let t = store.create_topic(topic("t", 1, 1)).await.unwrap().topic_id;
    for key in ["old", "live"] {
        let commit = SegmentCommit {
            object_key: key.to_string(),
            object_size: 10,
            chunks: vec![chunk(t, 0, 1)],
            committed_at_ms: 0,
        };
        store.commit_segment(commit).await.unwrap();
    }
    // as an older version left it: the rows of "old" deleted, no record of it
    let client = store.client().await.unwrap();
    client
        .batch_execute(
            "DELETE FROM chunks WHERE object_key = 'old';
             DROP TABLE unreferenced_objects;
             DELETE FROM schema_migrations WHERE version = 3;",
        )
        .await
        .unwrap();
    drop(client);
    let upgraded = PostgresStore::connect_with(url).await.unwrap();
    let listed = upgraded.unreferenced_objects(5, 5, 10).await.unwrap();
    assert_eq!(
        listed
            .iter()
            .map(|o| o.object_key.as_str())
            .collect::<Vec<_>>(),
        ["old"]
    );
    assert_eq!(listed[0].unreferenced_since_ms, 5);
}

/// Two processes compact the two partitions every object spans, pair by pair and at once,
/// while a third commits new segments: whichever swap removes an object's last row, the
/// object is recorded as unreferenced, and the offsets stay dense.
#[tokio::test]
async fn concurrent_swaps_never_miss_an_unreferenced_object() {
    let Some(server) = server_url() else {
        return;
    };
    let url = fresh_database(&server).await;
    let mut stores = Vec::new();
    for _ in 0..3 {
        stores.push(Arc::new(
            PostgresStore::connect_with(url.clone()).await.unwrap(),
        ));
    }
    let t = stores[0]
        .create_topic(topic("t", 1, 2))
        .await
        .unwrap()
        .topic_id;
    const OBJECTS: i64 = 40;
    for i in 0..OBJECTS {
        let commit = SegmentCommit {
            object_key: format!("o{i:03}"),
            object_size: 20,
            chunks: vec![chunk(t, 0, 1), chunk(t, 1, 1)],
            committed_at_ms: 0,
        };
        stores[0].commit_segment(commit).await.unwrap();
    }
    let mut tasks: Vec<_> = (0..2)
        .map(|p| {
            let store = Arc::clone(&stores[p as usize]);
            tokio::spawn(async move {
                let partition = PartitionId {
                    topic_id: t,
                    partition: p,
                };
                for pair in 0..OBJECTS / 2 {
                    let (a, b) = (2 * pair, 2 * pair + 1);
                    let expected = [a, b]
                        .iter()
                        .map(|&i| ExpectedRow {
                            base_offset: i,
                            end_offset: i + 1,
                            object_key: format!("o{i:03}"),
                        })
                        .collect();
                    let key = format!("c{p}-{pair:03}");
                    let outcome = store
                        .replace_chunks(ChunkReplacement {
                            partition,
                            expected,
                            object: ReplacementObject {
                                object_key: key.clone(),
                                object_size: 20,
                                committed_at_ms: 0,
                            },
                            rows: vec![ChunkRow {
                                object_key: key,
                                byte_offset: 0,
                                byte_length: 10,
                                raw_offset: 0,
                                raw_length: 20,
                                base_offset: a,
                                end_offset: b + 1,
                                max_timestamp: 0,
                            }],
                        })
                        .await
                        .unwrap();
                    assert!(matches!(outcome, ReplaceOutcome::Replaced { .. }));
                }
            })
        })
        .collect();
    let committer = Arc::clone(&stores[2]);
    tasks.push(tokio::spawn(async move {
        for i in 0..20 {
            let commit = SegmentCommit {
                object_key: format!("n{i:03}"),
                object_size: 20,
                chunks: vec![chunk(t, 0, 1), chunk(t, 1, 1)],
                committed_at_ms: 0,
            };
            committer.commit_segment(commit).await.unwrap();
        }
    }));
    for task in tasks {
        task.await.unwrap();
    }
    let listed = stores[1].unreferenced_objects(1, 1, 1_000).await.unwrap();
    assert_eq!(listed.len() as i64, OBJECTS);
    for p in 0..2 {
        let partition = PartitionId {
            topic_id: t,
            partition: p,
        };
        let (offsets, rows) = stores[0]
            .lookup_chunks(partition, 0, u64::MAX, 1_000)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(offsets.high_watermark, OBJECTS + 20);
        let mut next = 0;
        for row in &rows {
            assert_eq!(row.base_offset, next, "partition {p}");
            next = row.end_offset;
        }
        assert_eq!(next, OBJECTS + 20);
        assert_eq!(rows.len() as i64, OBJECTS / 2 + 20);
    }
}
