//! Conformance checks of compaction's index swap ([`MetadataStore::replace_chunks`]).

use super::{chunk, segment, topic};
use crate::store::*;

fn partition(topic_id: TopicId, partition: i32) -> PartitionId {
    PartitionId {
        topic_id,
        partition,
    }
}

fn expected(base: i64, end: i64, key: &str) -> ExpectedRow {
    ExpectedRow {
        base_offset: base,
        end_offset: end,
        object_key: key.into(),
    }
}

fn new_row(base: i64, end: i64, key: &str, byte_offset: u64) -> ChunkRow {
    ChunkRow {
        object_key: key.into(),
        byte_offset,
        byte_length: 50,
        raw_offset: 0,
        raw_length: 100 * (end - base) as u32,
        base_offset: base,
        end_offset: end,
        max_timestamp: 7,
    }
}

fn replacement(p: PartitionId, old: Vec<ExpectedRow>, rows: Vec<ChunkRow>) -> ChunkReplacement {
    let object_key = rows
        .first()
        .map(|r| r.object_key.clone())
        .unwrap_or_default();
    ChunkReplacement {
        partition: p,
        expected: old,
        object: ReplacementObject {
            object_key,
            object_size: 500,
            committed_at_ms: 3_000,
        },
        rows,
    }
}

async fn rows_of(store: &impl MetadataStore, p: PartitionId) -> Vec<(i64, i64, String)> {
    let (_, rows) = store
        .lookup_chunks(p, 0, u64::MAX, 1_000)
        .await
        .unwrap()
        .unwrap();
    rows.into_iter()
        .map(|r| (r.base_offset, r.end_offset, r.object_key))
        .collect()
}

fn triples(spec: &[(i64, i64, &str)]) -> Vec<(i64, i64, String)> {
    spec.iter()
        .map(|&(b, e, k)| (b, e, k.to_string()))
        .collect()
}

async fn listed(store: &impl MetadataStore) -> Vec<String> {
    store
        .unreferenced_objects(9_000, 9_000, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.object_key)
        .collect()
}

/// A run of rows is swapped for rows of one new object covering the same offsets; rows
/// outside the run, the offsets and later commits are untouched; a retry is
/// `AlreadyApplied`; old objects left without rows become unreferenced, while a
/// multi-partition object another partition still reads stays referenced.
pub async fn replace_chunks_swaps_rows_atomically(store: impl MetadataStore) {
    let t = store.create_topic(topic("t", 1, 2)).await.unwrap().topic_id;
    let (p0, p1) = (partition(t, 0), partition(t, 1));
    store
        .commit_segment(segment("m", vec![chunk(t, 0, 2, 1), chunk(t, 1, 4, 1)]))
        .await
        .unwrap();
    for key in ["a", "b", "c"] {
        store
            .commit_segment(segment(key, vec![chunk(t, 0, 3, 1)]))
            .await
            .unwrap();
    }
    // partition 0: m [0,2), a [2,5), b [5,8), c [8,11); partition 1: m [0,4)
    let swap = replacement(
        p0,
        vec![
            expected(0, 2, "m"),
            expected(2, 5, "a"),
            expected(5, 8, "b"),
        ],
        vec![new_row(0, 5, "big", 0), new_row(5, 8, "big", 50)],
    );
    let outcome = store.replace_chunks(swap.clone()).await.unwrap();
    assert_eq!(
        outcome,
        ReplaceOutcome::Replaced {
            unreferenced: vec!["a".into(), "b".into()]
        },
        "m is still read by partition 1"
    );
    assert_eq!(
        rows_of(&store, p0).await,
        triples(&[(0, 5, "big"), (5, 8, "big"), (8, 11, "c")])
    );
    assert_eq!(rows_of(&store, p1).await, triples(&[(0, 4, "m")]));
    let (offsets, rows) = store.lookup_chunks(p0, 6, 1, 1).await.unwrap().unwrap();
    assert_eq!(offsets.high_watermark, 11);
    assert_eq!(
        rows,
        vec![new_row(5, 8, "big", 50)],
        "lookups find the new rows"
    );
    assert_eq!(
        store.replace_chunks(swap).await.unwrap(),
        ReplaceOutcome::AlreadyApplied
    );
    assert_eq!(
        store.committed_objects(vec!["big".into()]).await.unwrap(),
        [true],
        "the new object counts as committed (orphan collection leaves it alone)"
    );
    let mut unreferenced = listed(&store).await;
    unreferenced.sort();
    assert_eq!(unreferenced, ["a", "b"]);
    let next = store
        .commit_segment(segment("d", vec![chunk(t, 0, 1, 1)]))
        .await
        .unwrap();
    assert!(matches!(
        &next.chunks[0],
        ChunkOutcome::Committed { runs, .. } if runs[0] == RunOutcome::Appended { base_offset: 11 }
    ));
    // partition 1 moves off m: now m is unreferenced too
    let outcome = store
        .replace_chunks(replacement(
            p1,
            vec![expected(0, 4, "m")],
            vec![new_row(0, 4, "big1", 0)],
        ))
        .await
        .unwrap();
    assert_eq!(
        outcome,
        ReplaceOutcome::Replaced {
            unreferenced: vec!["m".into()]
        }
    );
}

/// A swap whose expected rows are not exactly the stored ones changes nothing and does not
/// record its object: after retention, after another swap, with a partial run, or for an
/// unknown partition. Malformed requests are refused.
pub async fn replace_chunks_conflicts_change_nothing(store: impl MetadataStore) {
    let t = store.create_topic(topic("t", 1, 1)).await.unwrap().topic_id;
    let p = partition(t, 0);
    for key in ["a", "b", "c"] {
        store
            .commit_segment(segment(key, vec![chunk(t, 0, 3, 1)]))
            .await
            .unwrap();
    }
    let before = triples(&[(0, 3, "a"), (3, 6, "b"), (6, 9, "c")]);
    let conflicting = [
        // a row missing from the middle of the expected run
        replacement(
            p,
            vec![expected(0, 3, "a"), expected(3, 9, "c")],
            vec![new_row(0, 9, "x1", 0)],
        ),
        // the wrong object
        replacement(p, vec![expected(0, 3, "b")], vec![new_row(0, 3, "x2", 0)]),
        // a range that cuts a row
        replacement(p, vec![expected(0, 4, "a")], vec![new_row(0, 4, "x3", 0)]),
    ];
    for swap in conflicting {
        let key = swap.object.object_key.clone();
        let outcome = store.replace_chunks(swap).await.unwrap();
        assert!(
            matches!(outcome, ReplaceOutcome::Conflict { .. }),
            "{outcome:?}"
        );
        assert_eq!(rows_of(&store, p).await, before);
        assert_eq!(store.committed_objects(vec![key]).await.unwrap(), [false]);
    }
    // retention moved the log start past a: a compactor that read a and b loses
    store
        .advance_log_start(p, LogStartTarget::Offset(3))
        .await
        .unwrap();
    let late = replacement(
        p,
        vec![expected(0, 3, "a"), expected(3, 6, "b")],
        vec![new_row(0, 6, "x4", 0)],
    );
    assert!(matches!(
        store.replace_chunks(late).await.unwrap(),
        ReplaceOutcome::Conflict { .. }
    ));
    // two compactors race over b and c: the second finds the first's rows
    let first = replacement(
        p,
        vec![expected(3, 6, "b"), expected(6, 9, "c")],
        vec![new_row(3, 9, "y1", 0)],
    );
    let second = replacement(
        p,
        vec![expected(3, 6, "b"), expected(6, 9, "c")],
        vec![new_row(3, 9, "y2", 0)],
    );
    assert!(matches!(
        store.replace_chunks(first).await.unwrap(),
        ReplaceOutcome::Replaced { .. }
    ));
    assert!(matches!(
        store.replace_chunks(second).await.unwrap(),
        ReplaceOutcome::Conflict { .. }
    ));
    assert_eq!(rows_of(&store, p).await, triples(&[(3, 9, "y1")]));
    assert_eq!(
        store.committed_objects(vec!["y2".into()]).await.unwrap(),
        [false],
        "the loser's object stays an orphan for the orphan collector"
    );
    assert_eq!(
        store
            .replace_chunks(replacement(
                partition(t, 7),
                vec![expected(3, 9, "y1")],
                vec![new_row(3, 9, "z", 0)],
            ))
            .await
            .unwrap(),
        ReplaceOutcome::UnknownPartition
    );
    let malformed = replacement(p, vec![expected(3, 9, "y1")], vec![new_row(3, 8, "z", 0)]);
    assert!(matches!(
        store.replace_chunks(malformed).await,
        Err(StoreError::InvalidRequest(_))
    ));
}
