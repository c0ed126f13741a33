//! PostgreSQL-only tests of log start moves: concurrent trims of objects shared by
//! several partitions, and the migration that finds objects unreferenced before it.
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
