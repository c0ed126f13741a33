//! Shared inputs and strategies for the integration tests.

#![allow(dead_code, missing_docs)]

use bytes::Bytes;
use proptest::collection::vec;
use proptest::prelude::*;
use strata_segment::{ChunkEntry, ChunkInput, PartitionKey, SegmentWriter};

/// One partition's worth of input, owned so proptest can generate it.
#[derive(Clone, Debug)]
pub struct PartitionData {
    pub key: PartitionKey,
    pub batches: Vec<u8>,
    pub batch_count: u32,
    pub record_count: u32,
    pub max_timestamp: i64,
    pub compress: bool,
}

impl PartitionData {
    pub fn input(&self) -> ChunkInput<'_> {
        ChunkInput {
            key: self.key,
            batches: &self.batches,
            batch_count: self.batch_count,
            record_count: self.record_count,
            max_timestamp: self.max_timestamp,
            compress: self.compress,
        }
    }
}

/// Builds a segment from `parts`, which must have unique keys.
pub fn build(parts: &[PartitionData]) -> (Bytes, Vec<ChunkEntry>) {
    let mut writer = SegmentWriter::new(1);
    for part in parts {
        writer.push_chunk(part.input()).expect("valid input");
    }
    let expected_len = writer.encoded_len();
    let (object, entries) = writer.finish();
    assert_eq!(object.len(), expected_len, "encoded_len must be exact");
    (object, entries)
}

/// The bytes of `entry`'s chunk within `object`.
pub fn chunk_of<'a>(object: &'a [u8], entry: &ChunkEntry) -> &'a [u8] {
    let range = entry.range();
    &object[range.start as usize..range.end as usize]
}

fn key_strategy() -> impl Strategy<Value = PartitionKey> {
    let topic = prop_oneof![Just([0u8; 16]), Just([0xAB; 16]), any::<[u8; 16]>()];
    (topic, -2i32..40).prop_map(|(topic_id, partition)| PartitionKey {
        topic_id,
        partition,
    })
}

/// Batch bytes: either noise (incompressible) or a repeated pattern.
fn batches_strategy() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        vec(any::<u8>(), 1..400),
        (vec(any::<u8>(), 1..24), 1usize..120).prop_map(|(pattern, n)| pattern.repeat(n)),
    ]
}

fn partition_strategy() -> impl Strategy<Value = PartitionData> {
    (
        key_strategy(),
        batches_strategy(),
        1u32..1000,
        any::<u32>(),
        any::<i64>(),
        any::<bool>(),
    )
        .prop_map(
            |(key, batches, batch_count, record_count, max_timestamp, compress)| PartitionData {
                key,
                batches,
                batch_count,
                record_count,
                max_timestamp,
                compress,
            },
        )
}

/// Zero to `max` partitions with unique keys, in arbitrary order.
pub fn segment_strategy(max: usize) -> impl Strategy<Value = Vec<PartitionData>> {
    vec(partition_strategy(), 0..=max).prop_map(|parts| {
        let mut seen = std::collections::HashSet::new();
        parts.into_iter().filter(|p| seen.insert(p.key)).collect()
    })
}

/// Like [`segment_strategy`] but with at least one partition.
pub fn nonempty_segment_strategy(max: usize) -> impl Strategy<Value = Vec<PartitionData>> {
    segment_strategy(max).prop_filter("needs a chunk", |parts| !parts.is_empty())
}
