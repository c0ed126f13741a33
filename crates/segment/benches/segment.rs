//! Segment encode / decode throughput.
//!
//! Encodes a segment of 16 partitions x 256 KiB of batch-like bytes with and
//! without zstd, and decodes a single chunk of each kind.

#![allow(missing_docs, clippy::unwrap_used)]

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::hint::black_box;
use strata_segment::{decode_chunk, ChunkInput, PartitionKey, SegmentWriter};

const PARTITIONS: usize = 16;
const CHUNK_BYTES: usize = 256 * 1024;
const ZSTD_LEVEL: i32 = 3;

/// Tiny deterministic xorshift64 generator, so inputs are reproducible.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn put_varint(out: &mut Vec<u8>, value: i64) {
    let mut zigzag = ((value << 1) ^ (value >> 63)) as u64;
    while zigzag >= 0x80 {
        out.push((zigzag as u8) | 0x80);
        zigzag >>= 7;
    }
    out.push(zigzag as u8);
}

/// One RecordBatch-v2-shaped batch: a 61-byte header followed by records with
/// repeated keys and JSON-ish values carrying some random fields.
fn push_batch(out: &mut Vec<u8>, rng: &mut XorShift, base_offset: i64, records: usize) {
    let base_timestamp = 1_700_000_000_000 + base_offset;
    let mut body = Vec::new();
    for i in 0..records {
        let key = format!("user-{:04}", rng.below(500));
        let value = format!(
            r#"{{"event":"{}","page":"/products/{}","session":"{:016x}","latency_ms":{},"ok":true}}"#,
            ["view", "click", "add_to_cart", "purchase"][rng.below(4) as usize],
            rng.below(2000),
            rng.next(),
            rng.below(900),
        );
        let mut record = Vec::new();
        record.push(0); // attributes
        put_varint(&mut record, rng.below(50) as i64); // timestamp delta
        put_varint(&mut record, i as i64); // offset delta
        put_varint(&mut record, key.len() as i64);
        record.extend_from_slice(key.as_bytes());
        put_varint(&mut record, value.len() as i64);
        record.extend_from_slice(value.as_bytes());
        put_varint(&mut record, 0); // header count
        put_varint(&mut body, record.len() as i64);
        body.extend_from_slice(&record);
    }
    out.extend_from_slice(&base_offset.to_be_bytes());
    out.extend_from_slice(&((49 + body.len()) as i32).to_be_bytes()); // batch length
    out.extend_from_slice(&0i32.to_be_bytes()); // leader epoch
    out.push(2); // magic
    out.extend_from_slice(&(rng.next() as u32).to_be_bytes()); // crc
    out.extend_from_slice(&0i16.to_be_bytes()); // attributes
    out.extend_from_slice(&(records as i32 - 1).to_be_bytes());
    out.extend_from_slice(&base_timestamp.to_be_bytes());
    out.extend_from_slice(&(base_timestamp + 50).to_be_bytes());
    out.extend_from_slice(&(-1i64).to_be_bytes()); // producer id
    out.extend_from_slice(&(-1i16).to_be_bytes()); // producer epoch
    out.extend_from_slice(&(-1i32).to_be_bytes()); // base sequence
    out.extend_from_slice(&(records as i32).to_be_bytes());
    out.extend_from_slice(&body);
}

/// About `CHUNK_BYTES` of whole batches for one partition.
fn partition_bytes(seed: u64) -> (Vec<u8>, u32) {
    let mut rng = XorShift(seed | 1);
    let mut out = Vec::with_capacity(CHUNK_BYTES + 16 * 1024);
    let mut batches = 0;
    while out.len() < CHUNK_BYTES {
        push_batch(&mut out, &mut rng, i64::from(batches) * 100, 100);
        batches += 1;
    }
    out.truncate(CHUNK_BYTES);
    (out, batches as u32)
}

fn encode(
    inputs: &[(Vec<u8>, u32)],
    compress: bool,
) -> (bytes::Bytes, Vec<strata_segment::ChunkEntry>) {
    let mut writer = SegmentWriter::new(ZSTD_LEVEL);
    for (partition, (batches, batch_count)) in inputs.iter().enumerate() {
        writer
            .push_chunk(ChunkInput {
                key: PartitionKey {
                    topic_id: [42; 16],
                    partition: partition as i32,
                },
                batches,
                batch_count: *batch_count,
                record_count: batch_count * 100,
                max_timestamp: 1_700_000_000_000,
                compress,
            })
            .unwrap();
    }
    writer.finish()
}

fn benches(c: &mut Criterion) {
    let inputs: Vec<_> = (0..PARTITIONS as u64)
        .map(|p| partition_bytes(0x9E37_79B9_7F4A_7C15 ^ p))
        .collect();
    let total: usize = inputs.iter().map(|(b, _)| b.len()).sum();

    let mut group = c.benchmark_group("encode_segment_16x256KiB");
    group.throughput(Throughput::Bytes(total as u64));
    for (name, compress) in [("zstd", true), ("none", false)] {
        let (object, _) = encode(&inputs, compress);
        eprintln!(
            "encode {name}: {total} raw bytes -> {} object bytes (ratio {:.2})",
            object.len(),
            total as f64 / object.len() as f64
        );
        group.bench_with_input(
            BenchmarkId::from_parameter(name),
            &compress,
            |b, &compress| b.iter(|| encode(black_box(&inputs), compress)),
        );
    }
    group.finish();

    let mut group = c.benchmark_group("decode_chunk_256KiB");
    group.throughput(Throughput::Bytes(CHUNK_BYTES as u64));
    for (name, compress) in [("zstd", true), ("none", false)] {
        let (object, entries) = encode(&inputs, compress);
        let range = entries[0].range();
        let chunk = object.slice(range.start as usize..range.end as usize);
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter(|| decode_chunk(black_box(&chunk)).unwrap())
        });
    }
    group.finish();
}

criterion_group!(segment, benches);
criterion_main!(segment);
