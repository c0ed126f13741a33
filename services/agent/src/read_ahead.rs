//! Read-ahead: loading the blocks a sequential reader will ask for next, before it asks.
//!
//! A partition's consecutive index rows usually live in *different* objects (each flush
//! writes one multi-partition segment), so "the next block of this object" is the wrong
//! guess for a replaying consumer. The right one comes from the index: when a Fetch of a
//! partition continues exactly where an earlier fetch of that partition ended, the agent
//! asks `LookupBatches` for a window of rows beyond what the response can carry
//! ([`ReadAhead::lookup_bytes`]), serves the response as usual, and then loads the blocks
//! of the rows it did not serve ([`ReadAhead::after_fetch`]). For a large compacted
//! object those rows are the next byte ranges of the same object, so the same rule reads
//! a big object ahead block by block; for small segments it reads the next objects. The
//! window is in bytes of blocks loaded (each charged up to where the rows in it end, so a
//! small segment's only block costs what it holds, not `block_bytes`).
//!
//! Guarantees:
//! - **Only sequential readers trigger it.** A reader is sequential when its fetch offset
//!   is one a previous fetch of the partition ended at; the agent remembers a bounded
//!   number of such positions ([`POSITIONS`]), so a seek or a one-off read loads nothing
//!   extra, and twenty consumers at different points of one partition each count.
//! - **Bounded.** Per fetch, only the first `bytes` of blocks holding the rows after the
//!   response are considered (and `LookupBatches` returns at most 64 rows);
//!   the window is capped at a quarter of the block cache ([`MAX_CACHE_SHARE`]), and so is
//!   everything read-ahead holds at once, agent-wide (prefetched blocks no fetch has read
//!   yet, plus those being loaded): with many partitions or readers at once the windows
//!   add up, and what is read ahead must not be evicted before its reader comes;
//!   and at most `concurrency` block loads run at once across the agent. A prefetch that
//!   finds no free slot is skipped (counted), never queued: the next fetch asks again.
//! - **Never in the way.** Prefetches run on their own tasks, started after the response
//!   is assembled, and go through the same block cache, so a fetch that needs a block
//!   being prefetched waits for that one GET instead of issuing another.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard};

use moka::future::Cache;
use strata_proto::metadata::v1::IndexedChunk;
use tokio::sync::Semaphore;

use crate::block_cache::{BlockCache, BlockId};
use crate::metrics::ReadMetrics;

/// Fetch end positions remembered to recognise sequential readers.
pub const POSITIONS: u64 = 65_536;
/// The read-ahead window is at most the block cache's capacity divided by this.
pub const MAX_CACHE_SHARE: u64 = 4;

/// Settings of read-ahead.
#[derive(Debug, Clone, Copy)]
pub struct ReadAheadConfig {
    /// Bytes of a partition's data after a sequential reader's fetch whose blocks are
    /// loaded ahead of it; 0 disables read-ahead.
    pub bytes: u64,
    /// Block loads by read-ahead in flight at once, agent-wide (at least 1).
    pub concurrency: usize,
}

/// Where a reader of a partition will continue: (topic id, partition, offset).
type Position = (uuid::Uuid, i32, i64);

/// Recognises sequential readers and loads the blocks of their next rows.
#[derive(Clone)]
pub struct ReadAhead {
    config: ReadAheadConfig,
    blocks: BlockCache,
    positions: Cache<Position, ()>,
    slots: Arc<Semaphore>,
    in_flight: Arc<Mutex<HashSet<BlockId>>>,
    metrics: ReadMetrics,
}

impl std::fmt::Debug for ReadAhead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadAhead")
            .field("config", &self.config)
            .field("positions", &self.positions.entry_count())
            .finish()
    }
}

impl ReadAhead {
    /// Read-ahead into `blocks` with `config`.
    pub fn new(blocks: BlockCache, config: ReadAheadConfig, metrics: ReadMetrics) -> Self {
        let config = ReadAheadConfig {
            bytes: config.bytes.min(blocks.capacity_bytes() / MAX_CACHE_SHARE),
            concurrency: config.concurrency.max(1),
        };
        Self {
            config,
            blocks,
            positions: Cache::new(POSITIONS),
            slots: Arc::new(Semaphore::new(config.concurrency)),
            in_flight: Arc::default(),
            metrics,
        }
    }

    /// True when a fetch of `partition` from `offset` continues where an earlier one ended.
    pub fn is_sequential(&self, topic: uuid::Uuid, partition: i32, offset: i64) -> bool {
        self.config.bytes > 0 && self.positions.contains_key(&(topic, partition, offset))
    }

    /// The raw bytes of index rows to ask `LookupBatches` for: the fetch's own
    /// `partition_max_bytes`, plus the read-ahead window for a sequential reader.
    pub fn lookup_bytes(
        &self,
        topic: uuid::Uuid,
        partition: i32,
        offset: i64,
        partition_max_bytes: u64,
    ) -> u64 {
        if !self.is_sequential(topic, partition, offset) {
            return partition_max_bytes;
        }
        partition_max_bytes.saturating_add(self.config.bytes)
    }

    /// After a fetch of `partition` from `offset` served batches up to `next_offset`:
    /// remembers where the reader continues and, when the fetch was sequential, starts
    /// loading the blocks of `unserved` (the looked-up rows the response did not reach).
    pub async fn after_fetch(
        &self,
        topic: uuid::Uuid,
        partition: i32,
        offset: i64,
        next_offset: i64,
        unserved: &[IndexedChunk],
    ) {
        let sequential = self.is_sequential(topic, partition, offset);
        self.record_position(topic, partition, next_offset).await;
        if sequential {
            self.prefetch_rows(unserved);
        }
    }

    /// Remembers that a reader of `partition` will continue from `next_offset`.
    pub async fn record_position(&self, topic: uuid::Uuid, partition: i32, next_offset: i64) {
        if self.config.bytes > 0 {
            self.positions
                .insert((topic, partition, next_offset), ())
                .await;
        }
    }

    /// Starts loading the blocks of `rows` (index rows a reader will want next, in order)
    /// up to `bytes` of blocks, skipping cached blocks and blocks being loaded. Returns at
    /// once; the loads run on their own tasks.
    ///
    /// The window counts block bytes, not the partition's own bytes: a row of a
    /// multi-partition segment pulls in whole blocks full of other partitions' chunks, so a
    /// window of the partition's data would load many times its size (and, with many
    /// partitions read at once, evict its own prefetches before they are read). A block is
    /// charged for its bytes up to the furthest row end seen in it, because the object's
    /// size is not in the index: a small object's only block costs what it holds.
    pub fn prefetch_rows(&self, rows: &[IndexedChunk]) {
        let block_bytes = self.blocks.block_bytes();
        let mut budget = self.config.bytes;
        // each wanted block with the bytes charged for it so far
        let mut wanted: Vec<(BlockId, u64)> = Vec::new();
        'rows: for row in rows {
            let object: Arc<str> = Arc::from(row.object_key.as_str());
            let row_end = row.byte_offset + u64::from(row.byte_length);
            for block in self
                .blocks
                .blocks_covering(&object, row.byte_offset..row_end)
            {
                if budget == 0 {
                    break 'rows;
                }
                let block_start = block.index * block_bytes;
                let extent = (block_start + block_bytes).min(row_end) - block_start;
                let charged = match wanted.iter_mut().find(|(b, _)| *b == block) {
                    Some((_, charged)) => charged,
                    None => {
                        wanted.push((block, 0));
                        &mut wanted.last_mut().expect("just pushed").1
                    }
                };
                budget = budget.saturating_sub(extent.saturating_sub(*charged));
                *charged = (*charged).max(extent);
            }
        }
        let wanted = wanted.into_iter().map(|(block, _)| block);
        let held_limit = self.blocks.capacity_bytes() / MAX_CACHE_SHARE;
        for block in wanted {
            if self.blocks.contains(&block) {
                continue;
            }
            if self.held_bytes() + block_bytes > held_limit {
                // read-ahead holds its share of the cache: readers must catch up first
                self.metrics.prefetch_skipped.inc();
                break;
            }
            let Some(claim) = self.claim(&block) else {
                continue; // being prefetched already
            };
            let Ok(slot) = Arc::clone(&self.slots).try_acquire_owned() else {
                self.metrics.prefetch_skipped.inc();
                continue;
            };
            let blocks = self.blocks.clone();
            tokio::spawn(async move {
                if let Err(error) = blocks.prefetch(block).await {
                    tracing::debug!(%error, "prefetch failed");
                }
                // the claim goes before the slot, so a caller that saw the slot free
                // also sees the block unclaimed
                drop(claim);
                drop(slot);
            });
        }
    }

    /// Bytes read-ahead holds now: unread prefetched blocks, and a block per load in flight.
    fn held_bytes(&self) -> u64 {
        let loading = lock(&self.in_flight).len() as u64;
        self.blocks.unread_prefetch_bytes() + loading * self.blocks.block_bytes()
    }

    /// Waits until no prefetch is running (tests, benchmarks).
    pub async fn idle(&self) {
        let all = u32::try_from(self.config.concurrency).unwrap_or(u32::MAX);
        let _all = self.slots.acquire_many(all).await;
    }

    /// Marks `block` as being prefetched until the claim is dropped; `None` when it
    /// already is.
    fn claim(&self, block: &BlockId) -> Option<Claim> {
        lock(&self.in_flight).insert(block.clone()).then(|| Claim {
            in_flight: Arc::clone(&self.in_flight),
            block: block.clone(),
        })
    }
}

fn lock(set: &Mutex<HashSet<BlockId>>) -> MutexGuard<'_, HashSet<BlockId>> {
    // a panic while holding this lock leaves a plain set behind; keep going
    set.lock().unwrap_or_else(|p| p.into_inner())
}

/// A block being prefetched; dropping it (also when the task ends early) releases it.
struct Claim {
    in_flight: Arc<Mutex<HashSet<BlockId>>>,
    block: BlockId,
}

impl Drop for Claim {
    fn drop(&mut self) {
        lock(&self.in_flight).remove(&self.block);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::block_cache::{BlockCacheConfig, MIN_BLOCK_BYTES};
    use object_store::memory::InMemory;
    use object_store::path::Path;
    use object_store::{ObjectStore, PutPayload};
    use strata_storage::{Bucket, CountingStore, FaultyStore, Op};

    const BLOCK: u64 = MIN_BLOCK_BYTES;

    struct Fixture {
        ahead: ReadAhead,
        blocks: BlockCache,
        counting: Arc<CountingStore>,
        faulty: Arc<FaultyStore>,
        metrics: ReadMetrics,
    }

    /// Objects `seg-0 .. seg-{n-1}`, each `len` bytes, and a 1 GiB block cache.
    async fn fixture(n: usize, len: u64, config: ReadAheadConfig) -> Fixture {
        fixture_with_cache(n, len, config, 1 << 30).await
    }

    async fn fixture_with_cache(
        n: usize,
        len: u64,
        config: ReadAheadConfig,
        capacity_bytes: u64,
    ) -> Fixture {
        let memory = Arc::new(InMemory::new());
        for i in 0..n {
            let data = vec![i as u8; len as usize];
            memory
                .put(&Path::from(format!("seg-{i}")), PutPayload::from(data))
                .await
                .unwrap();
        }
        let faulty = Arc::new(FaultyStore::new(memory));
        let counting = Arc::new(CountingStore::new(faulty.clone()));
        let bucket = Bucket {
            store: counting.clone(),
            prefix: Path::default(),
        };
        let metrics = ReadMetrics::default();
        let blocks = BlockCache::new(
            bucket,
            BlockCacheConfig {
                capacity_bytes,
                block_bytes: BLOCK,
            },
            metrics.clone(),
        );
        Fixture {
            ahead: ReadAhead::new(blocks.clone(), config, metrics.clone()),
            blocks,
            counting,
            faulty,
            metrics,
        }
    }

    fn row(object: &str, byte_offset: u64, byte_length: u32) -> IndexedChunk {
        IndexedChunk {
            object_key: object.into(),
            byte_offset,
            byte_length,
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn only_a_fetch_continuing_an_earlier_one_is_sequential() {
        let config = ReadAheadConfig {
            bytes: 4 * BLOCK,
            concurrency: 2,
        };
        let f = fixture(0, 0, config).await;
        let topic = uuid::Uuid::new_v4();
        assert!(!f.ahead.is_sequential(topic, 0, 100));
        assert_eq!(f.ahead.lookup_bytes(topic, 0, 100, 1000), 1000);
        f.ahead.record_position(topic, 0, 100).await;
        assert!(f.ahead.is_sequential(topic, 0, 100));
        assert!(!f.ahead.is_sequential(topic, 1, 100));
        assert!(!f.ahead.is_sequential(topic, 0, 99));
        assert_eq!(f.ahead.lookup_bytes(topic, 0, 100, 1000), 1000 + 4 * BLOCK);
    }

    #[tokio::test]
    async fn disabled_read_ahead_remembers_and_loads_nothing() {
        let config = ReadAheadConfig {
            bytes: 0,
            concurrency: 2,
        };
        let f = fixture(2, 100, config).await;
        let topic = uuid::Uuid::new_v4();
        f.ahead.record_position(topic, 0, 5).await;
        assert!(!f.ahead.is_sequential(topic, 0, 5));
        f.ahead
            .prefetch_rows(&[row("seg-0", 0, 100), row("seg-1", 0, 100)]);
        f.ahead.idle().await;
        assert_eq!(f.counting.gets(), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_next_rows_blocks_are_loaded_once_and_then_served_from_memory() {
        let config = ReadAheadConfig {
            bytes: 1500,
            concurrency: 8,
        };
        // small multi-partition segments: each row of this partition is in another object,
        // and each object's only block is charged up to the row's end (500 bytes)
        let f = fixture(5, 1000, config).await;
        let rows: Vec<IndexedChunk> = (0..5).map(|i| row(&format!("seg-{i}"), 200, 300)).collect();
        f.ahead.prefetch_rows(&rows);
        f.ahead.prefetch_rows(&rows); // a second sequential reader asking the same
        f.ahead.idle().await;
        // the blocks within 1500 bytes (three of 500), each loaded once
        assert_eq!(f.counting.gets(), 3);
        assert_eq!(f.metrics.prefetch_issued.get(), 3);
        for i in 0..3 {
            let got = f.blocks.read(&format!("seg-{i}"), 200..500).await.unwrap();
            assert!(got.iter().all(|b| *b == i as u8));
        }
        assert_eq!(f.counting.gets(), 3);
        assert_eq!(f.metrics.prefetch_used.get(), 3);
        assert_eq!(f.metrics.block_misses.get(), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_big_object_is_read_ahead_block_by_block() {
        let config = ReadAheadConfig {
            bytes: 4 * BLOCK,
            concurrency: 8,
        };
        let f = fixture(1, 10 * BLOCK, config).await;
        // rows of one partition packed in one compacted object, half a block each
        let half = (BLOCK / 2) as u32;
        let rows: Vec<IndexedChunk> = (4..20)
            .map(|i| row("seg-0", u64::from(half) * i, half))
            .collect();
        f.ahead.prefetch_rows(&rows);
        f.ahead.idle().await;
        for index in 2..6 {
            let block = BlockId {
                object: Arc::from("seg-0"),
                index,
            };
            assert!(f.blocks.contains(&block), "block {index}");
        }
        assert_eq!(f.counting.gets(), 4);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_window_counts_whole_blocks_of_multi_partition_segments() {
        let config = ReadAheadConfig {
            bytes: 3 * BLOCK,
            concurrency: 8,
        };
        // large multi-partition segments: this partition's row in each object starts
        // half-way into the object's second block, and ends in its third
        let f = fixture(6, 4 * BLOCK, config).await;
        let rows: Vec<IndexedChunk> = (0..6)
            .map(|i| row(&format!("seg-{i}"), BLOCK + BLOCK / 2, BLOCK as u32))
            .collect();
        f.ahead.prefetch_rows(&rows);
        f.ahead.idle().await;
        // each row costs a whole block 1 and half of block 2: two rows fill the window,
        // where counting the partition's own bytes would have taken three rows (6 blocks)
        assert_eq!(f.counting.gets(), 4);
        let loaded = |object: &str, index| {
            f.blocks.contains(&BlockId {
                object: Arc::from(object),
                index,
            })
        };
        assert!(loaded("seg-0", 1) && loaded("seg-0", 2));
        assert!(loaded("seg-1", 1) && loaded("seg-1", 2));
        assert!(!loaded("seg-2", 1));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn read_ahead_holds_at_most_a_quarter_of_the_cache_across_all_readers() {
        let config = ReadAheadConfig {
            bytes: 2 * BLOCK,
            concurrency: 8,
        };
        // a cache of 12 blocks: read-ahead may hold 3 unread blocks at once
        let f = fixture_with_cache(8, BLOCK, config, 12 * BLOCK + 12 * 1024).await;
        let row_of = |i: usize| row(&format!("seg-{i}"), 0, BLOCK as u32);
        // four partitions' readers each want their next two objects read ahead
        for reader in 0..4 {
            f.ahead
                .prefetch_rows(&[row_of(2 * reader), row_of(2 * reader + 1)]);
            f.ahead.idle().await;
        }
        assert_eq!(
            f.counting.gets(),
            3,
            "the windows add up to 8 blocks; 3 are held"
        );
        assert!(f.metrics.prefetch_skipped.get() > 0);
        // a reader reads one of them: read-ahead may load one more
        f.blocks.read("seg-0", 0..10).await.unwrap();
        f.ahead.prefetch_rows(&[row_of(6), row_of(7)]);
        f.ahead.idle().await;
        assert_eq!(f.counting.gets(), 4);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn prefetches_beyond_the_concurrency_limit_are_skipped_not_queued() {
        let config = ReadAheadConfig {
            bytes: 8 * BLOCK,
            concurrency: 2,
        };
        let f = fixture(5, 1000, config).await;
        f.faulty.stall_next(Op::Get, 2);
        let rows: Vec<IndexedChunk> = (0..5).map(|i| row(&format!("seg-{i}"), 0, 10)).collect();
        f.ahead.prefetch_rows(&rows);
        f.faulty.until_stalled(2).await;
        assert_eq!(f.metrics.prefetch_skipped.get(), 3);
        // a fetch is never held behind read-ahead: it reads an unprefetched object at once
        let got = f.blocks.read("seg-4", 0..10).await.unwrap();
        assert_eq!(got.as_ref(), &[4u8; 10]);
        // the held prefetches are still in flight, so asking again starts nothing new
        f.ahead.prefetch_rows(&rows[..2]);
        assert_eq!(f.metrics.prefetch_skipped.get(), 3);
        f.faulty.release();
        f.ahead.idle().await;
        assert_eq!(f.metrics.prefetch_issued.get(), 2);
        assert_eq!(f.counting.gets(), 3);
    }
}
