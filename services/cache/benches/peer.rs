//! Block reads through the read tier: from the bucket directly, and from the block's owner
//! over loopback gRPC (the cache fleet's hot path).
//!
//! 256 MiB of objects (16 objects of 16 MiB) in an in-memory bucket, read in 4 MiB blocks
//! by a fresh (empty) block cache per iteration, whole objects at a time (eight blocks in
//! flight per object, as a chunk read spanning blocks does), `READERS` objects at once:
//!
//! - `bucket`: misses go to the bucket (an in-memory store: the cost is the cache's own);
//! - `peer`: misses go to one cache node on 127.0.0.1 whose cache already holds every
//!   block (the cost of moving blocks over gRPC);
//! - `peer_cold`: the node's cache starts empty too, so each block is read from the
//!   bucket by the node, then sent.
//!
//! ```sh
//! cargo bench -p strata-cache --bench peer -- --warm-up-time 1 --measurement-time 10
//! ```

#![allow(missing_docs, clippy::unwrap_used)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use futures::StreamExt;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, PutPayload};
use strata_cache::BlockCache;
use support::{bucket, cache, reader, start_node};

const BLOCK: u64 = 4 * 1024 * 1024;
const OBJECTS: usize = 16;
const OBJECT_BYTES: u64 = 16 * 1024 * 1024;
const READERS: usize = 4;

async fn objects() -> Arc<InMemory> {
    let memory = Arc::new(InMemory::new());
    let data = bytes::Bytes::from(support::pattern(OBJECT_BYTES as usize));
    for i in 0..OBJECTS {
        let payload = PutPayload::from(data.clone());
        memory
            .put(&Path::from(format!("seg/{i}")), payload)
            .await
            .unwrap();
    }
    memory
}

/// Reads every object whole through `blocks`, `READERS` at a time; returns the time taken.
async fn read_all(blocks: &BlockCache) -> Duration {
    let started = Instant::now();
    let mut pending = futures::stream::iter(0..OBJECTS)
        .map(|i| {
            let blocks = blocks.clone();
            async move {
                blocks
                    .read(&format!("seg/{i}"), 0..OBJECT_BYTES)
                    .await
                    .unwrap()
                    .len()
            }
        })
        .buffer_unordered(READERS);
    let mut total = 0;
    while let Some(len) = pending.next().await {
        total += len as u64;
    }
    assert_eq!(total, OBJECTS as u64 * OBJECT_BYTES);
    started.elapsed()
}

fn peer(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let memory = runtime.block_on(objects());
    let warm = runtime.block_on(start_node(&memory, BLOCK));
    runtime.block_on(read_all(&warm.blocks));
    let mut group = c.benchmark_group("read_tier");
    group.throughput(Throughput::Bytes(OBJECTS as u64 * OBJECT_BYTES));
    group.sample_size(10);
    group.bench_function("bucket", |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| runtime.block_on(read_all(&cache(bucket(&memory).0, BLOCK).0)))
                .sum()
        })
    });
    group.bench_function("peer", |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| runtime.block_on(read_all(&reader(&memory, &[warm.info()], BLOCK).0)))
                .sum()
        })
    });
    group.bench_function("peer_cold", |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| {
                    runtime.block_on(async {
                        let cold = start_node(&memory, BLOCK).await;
                        let took = read_all(&reader(&memory, &[cold.info()], BLOCK).0).await;
                        cold.kill().await;
                        took
                    })
                })
                .sum()
        })
    });
    group.finish();
}

criterion_group!(benches, peer);
criterion_main!(benches);
