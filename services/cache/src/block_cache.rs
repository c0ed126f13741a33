//! The block cache: aligned, fixed-size blocks of segment objects, read from the bucket
//! once and shared by every reader of the agent.
//!
//! An object is cut into blocks of `block_bytes` (block `i` covers bytes
//! `i * block_bytes .. (i + 1) * block_bytes`, the last one ends with the object). A read of
//! any byte range fetches the blocks covering it and assembles the range from them, usually
//! from one or two blocks. Invariants:
//!
//! - **One GET per block while it is cached.** Blocks are loaded through moka's entry API,
//!   so concurrent misses on one block wait for the single load in flight instead of each
//!   issuing a GET; however many consumers replay the same history, the bucket sees about
//!   one ranged GET per block (more only after a block is evicted).
//! - **A block's range needs no object size.** The last block of an object is requested
//!   with a range that ends past the object, which every bucket cuts at the object's end
//!   (HTTP `Range` semantics, checked by the storage conformance suite). A range that needs
//!   bytes beyond what came back is reported as [`BlockError::ShortObject`], never padded.
//! - **Objects are immutable** (segment keys are never reused), so a cached block never
//!   goes stale; it only ages out under the byte bound.
//! - **Bounded memory.** The cache holds at most `capacity_bytes` of blocks (moka weighs each
//!   block by its length); bytes handed out stay alive while a response uses them, even
//!   after their block was evicted.
//! - **Least recently used goes first.** A replay streams through far more data than the
//!   cache holds, and each block it loads (or prefetches) must stay until the other
//!   readers of that block (other partitions of the segment, other consumers) come. moka's
//!   default admission policy (TinyLFU) refuses new entries that are less frequently used
//!   than the ones they would evict, which turns every block of a long scan into a
//!   one-reader block and makes read-ahead load blocks that are thrown away at once.
//!
//! - **Each block has one owner on the ring.** With a [`CacheRing`] of cache nodes, a
//!   miss asks the block's owner ([`PeerClients`]) instead of the bucket; the owner loads it
//!   through its own cache, once, for everyone. If the owner fails, the block is read from
//!   the bucket here: peers save GETs, they never make a read fail.
//!
//! Read-ahead (the agent's `read_ahead`) loads blocks with [`BlockCache::prefetch`]; a
//! prefetched block that a fetch later reads is counted once as used.

use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures::{StreamExt, TryStreamExt};
use moka::future::Cache;
use moka::policy::EvictionPolicy;
use strata_storage::Bucket;
use thiserror::Error;

use crate::metrics::{OutcomeLabel, ReadMetrics, ReasonLabel, SourceLabel};
use crate::peer::{PeerClients, PeerError};
use crate::ring::{CacheRing, Route};

/// Default block size: 4 MiB.
pub const DEFAULT_BLOCK_BYTES: u64 = 4 * 1024 * 1024;
/// Smallest block size accepted; smaller settings are raised to it.
pub const MIN_BLOCK_BYTES: u64 = 64 * 1024;
/// Largest block size accepted; larger settings are lowered to it.
pub const MAX_BLOCK_BYTES: u64 = 256 * 1024 * 1024;
/// Blocks of one range read from the bucket at once.
const PARALLEL_BLOCKS: usize = 8;
/// Bytes a cached block is charged for beyond its data (key, bookkeeping).
const ENTRY_OVERHEAD: u64 = 128;

/// Why a range could not be read.
#[derive(Debug, Clone, Error)]
pub enum BlockError {
    /// The bucket failed the GET (after the store's own retries). Retrying may succeed.
    #[error("reading {key} bytes {start}..{end} from the bucket failed: {reason}")]
    Bucket {
        /// Object key.
        key: String,
        /// First byte of the block.
        start: u64,
        /// One past the last byte asked for.
        end: u64,
        /// The store's error.
        reason: String,
        /// The object does not exist.
        not_found: bool,
    },
    /// The object ends before the requested range does: the caller's index row does not
    /// match the object. Retrying does not help.
    #[error("{key} ends at byte {object_end}, inside the requested range {start}..{end}")]
    ShortObject {
        /// Object key.
        key: String,
        /// First byte asked for.
        start: u64,
        /// One past the last byte asked for.
        end: u64,
        /// Where the object's data ended.
        object_end: u64,
    },
}

impl BlockError {
    /// True when the object does not exist in the bucket.
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            BlockError::Bucket {
                not_found: true,
                ..
            }
        )
    }
}

/// One block of one object.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BlockId {
    /// Object key (without the bucket prefix).
    pub object: Arc<str>,
    /// Block index: the block starts at `index * block_bytes`.
    pub index: u64,
}

/// Settings of a [`BlockCache`].
#[derive(Debug, Clone, Copy)]
pub struct BlockCacheConfig {
    /// Most bytes of blocks kept.
    pub capacity_bytes: u64,
    /// Block size; clamped to `MIN_BLOCK_BYTES..=MAX_BLOCK_BYTES`.
    pub block_bytes: u64,
}

/// Whether a block is loaded for a waiting reader or ahead of one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// A fetch waits for it.
    Demand,
    /// Read-ahead: nobody waits yet.
    Prefetch,
    /// Another cache node asked this one, the block's owner: loaded from the bucket.
    Peer,
}

impl Purpose {
    fn label(self) -> ReasonLabel {
        let reason = match self {
            Purpose::Demand => "demand",
            Purpose::Prefetch => "prefetch",
            Purpose::Peer => "peer",
        };
        ReasonLabel { reason }
    }
}

#[derive(Debug)]
struct Block {
    data: Bytes,
    /// Loaded by read-ahead and not yet read by a fetch.
    unread_prefetch: AtomicBool,
    /// `bucket` or `peer`: where this process loaded it from.
    origin: &'static str,
}

impl Block {
    /// Marks a prefetched block as read (or gone), once: takes its bytes off `unread` and
    /// returns true the first time, false after or for a block loaded on demand.
    fn take_unread_prefetch(&self, unread: &AtomicU64) -> bool {
        let was_unread = self.unread_prefetch.swap(false, Ordering::Relaxed);
        if was_unread {
            unread.fetch_sub(self.data.len() as u64, Ordering::Relaxed);
        }
        was_unread
    }
}

/// The ring of cache nodes a cache routes its misses over, and its connections to them.
#[derive(Debug, Clone)]
struct Peers {
    ring: CacheRing,
    clients: PeerClients,
}

/// A byte-bounded cache of aligned object blocks that loads each block with one GET.
///
/// Cloning is cheap and clones share the cache.
#[derive(Clone)]
pub struct BlockCache {
    bucket: Bucket,
    block_bytes: u64,
    capacity_bytes: u64,
    cache: Cache<BlockId, Arc<Block>>,
    metrics: ReadMetrics,
    peers: Option<Peers>,
    /// Bytes of cached blocks loaded by read-ahead that no fetch has read yet.
    unread_prefetch_bytes: Arc<AtomicU64>,
}

impl std::fmt::Debug for BlockCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockCache")
            .field("block_bytes", &self.block_bytes)
            .field("blocks", &self.cache.entry_count())
            .field("bytes", &self.cache.weighted_size())
            .finish()
    }
}

impl BlockCache {
    /// A cache over `bucket` holding at most `config.capacity_bytes` of blocks.
    pub fn new(bucket: Bucket, config: BlockCacheConfig, metrics: ReadMetrics) -> Self {
        let unread_prefetch_bytes = Arc::new(AtomicU64::new(0));
        let unread = Arc::clone(&unread_prefetch_bytes);
        let cache = Cache::builder()
            .weigher(|key: &BlockId, block: &Arc<Block>| {
                let weight = block.data.len() as u64 + key.object.len() as u64 + ENTRY_OVERHEAD;
                u32::try_from(weight).unwrap_or(u32::MAX)
            })
            .max_capacity(config.capacity_bytes)
            .eviction_policy(EvictionPolicy::lru())
            .eviction_listener(move |_key, block: Arc<Block>, _cause| {
                // a prefetched block evicted unread no longer counts as read-ahead in hand
                block.take_unread_prefetch(&unread);
            })
            .build();
        Self {
            bucket,
            block_bytes: config.block_bytes.clamp(MIN_BLOCK_BYTES, MAX_BLOCK_BYTES),
            capacity_bytes: config.capacity_bytes,
            cache,
            metrics,
            unread_prefetch_bytes,
            peers: None,
        }
    }

    /// The same cache, loading each missing block from its owner on `ring` (through
    /// `clients`) unless this process owns it; from the bucket when the owner fails.
    pub fn with_ring(mut self, ring: CacheRing, clients: PeerClients) -> Self {
        self.peers = Some(Peers { ring, clients });
        self
    }

    /// The ring misses are routed over, if any.
    pub fn ring(&self) -> Option<&CacheRing> {
        self.peers.as_ref().map(|p| &p.ring)
    }

    /// The block size in use.
    pub fn block_bytes(&self) -> u64 {
        self.block_bytes
    }

    /// The most bytes of blocks the cache keeps.
    pub fn capacity_bytes(&self) -> u64 {
        self.capacity_bytes
    }

    /// Bytes of cached blocks that read-ahead loaded and no fetch has read yet (evicted
    /// ones no longer count): what read-ahead holds in the cache right now.
    pub fn unread_prefetch_bytes(&self) -> u64 {
        self.unread_prefetch_bytes.load(Ordering::Relaxed)
    }

    /// The blocks covering `range` of `object`, in order (none for an empty range).
    pub fn blocks_covering(
        &self,
        object: &Arc<str>,
        range: Range<u64>,
    ) -> impl Iterator<Item = BlockId> + 'static {
        let object = Arc::clone(object);
        let indices = if range.is_empty() {
            1..1
        } else {
            range.start / self.block_bytes..(range.end - 1) / self.block_bytes + 1
        };
        indices.map(move |index| BlockId {
            object: Arc::clone(&object),
            index,
        })
    }

    /// True when `block` is cached now.
    pub fn contains(&self, block: &BlockId) -> bool {
        self.cache.contains_key(block)
    }

    /// The bytes `range` of object `key`, from cached blocks or the bucket.
    ///
    /// A range inside one block is returned without copying; one spanning blocks is copied
    /// into a new buffer. Concurrent callers needing the same block share its one GET.
    pub async fn read(&self, key: &str, range: Range<u64>) -> Result<Bytes, BlockError> {
        if range.is_empty() {
            return Ok(Bytes::new());
        }
        let object: Arc<str> = Arc::from(key);
        let blocks: Vec<BlockId> = self.blocks_covering(&object, range.clone()).collect();
        if let [only] = blocks.as_slice() {
            let data = self.demand(only.clone()).await?;
            return self.slice(key, &data, only.index, range.clone(), range);
        }
        let loaded: Vec<(u64, Bytes)> = futures::stream::iter(blocks)
            .map(|id| async move {
                let index = id.index;
                self.demand(id).await.map(|data| (index, data))
            })
            .buffered(PARALLEL_BLOCKS)
            .try_collect()
            .await?;
        let mut out = BytesMut::with_capacity((range.end - range.start) as usize);
        for (index, data) in loaded {
            let block_start = index * self.block_bytes;
            let part = range.start.max(block_start)..range.end.min(block_start + self.block_bytes);
            out.extend_from_slice(&self.slice(key, &data, index, part, range.clone())?);
        }
        Ok(out.freeze())
    }

    /// Loads `block` ahead of any reader unless it is cached or being loaded already.
    /// Returns true when this call loaded it from the bucket.
    pub async fn prefetch(&self, block: BlockId) -> Result<bool, BlockError> {
        let (_, loaded) = self.block(block, Purpose::Prefetch).await?;
        Ok(loaded)
    }

    /// Block data for another cache node that routed its miss here, the block's owner:
    /// from this cache, or loaded from the bucket (never from a peer).
    ///
    /// Concurrent requests for a block this process owns share one load. A block the
    /// process's own ring gives to another node (two rings disagree while membership
    /// changes) is served from the cache or read from the bucket directly, never by joining
    /// a load that may itself be waiting on the caller.
    pub async fn serve_peer(&self, id: BlockId) -> Result<Bytes, BlockError> {
        let owned_here = self
            .peers
            .as_ref()
            .is_none_or(|peers| peers.ring.route(&id) == Route::Bucket);
        let data = if owned_here {
            self.block(id, Purpose::Peer).await?.0.data.clone()
        } else if let Some(block) = self.cache.get(&id).await {
            block.data.clone()
        } else {
            self.load_from_bucket(&id, Purpose::Peer).await?
        };
        self.metrics.peer_served_blocks.inc();
        self.metrics.peer_served_bytes.inc_by(data.len() as u64);
        Ok(data)
    }

    /// Block data for a waiting reader, with hit, miss and prefetch-use accounting.
    async fn demand(&self, id: BlockId) -> Result<Bytes, BlockError> {
        let (block, loaded) = self.block(id, Purpose::Demand).await?;
        let source = if loaded {
            self.metrics.block_misses.inc();
            block.origin
        } else {
            self.metrics.block_hits.inc();
            if block.take_unread_prefetch(&self.unread_prefetch_bytes) {
                self.metrics.prefetch_used.inc();
            }
            "cache"
        };
        self.metrics
            .served_bytes
            .get_or_create(&SourceLabel { source })
            .inc_by(block.data.len() as u64);
        Ok(block.data.clone())
    }

    /// The cached block, or the block loaded by this call (then `true`) or by a concurrent
    /// call it waited for (then `false`).
    async fn block(&self, id: BlockId, purpose: Purpose) -> Result<(Arc<Block>, bool), BlockError> {
        // a lazy future: a hit neither routes nor loads anything
        let load = self.load(id.clone(), purpose);
        let entry = self
            .cache
            .entry(id)
            .or_try_insert_with(load)
            .await
            .map_err(|e: Arc<BlockError>| (*e).clone())?;
        let loaded = entry.is_fresh();
        if loaded {
            let held = i64::try_from(self.cache.weighted_size()).unwrap_or(i64::MAX);
            self.metrics.cached_bytes.set(held);
        }
        Ok((entry.into_value(), loaded))
    }

    /// Loads a missing block: from its owner on the ring for a reader of this process
    /// (from the bucket when there is no ring, this process owns it, or the owner fails),
    /// from the bucket for a peer.
    async fn load(&self, id: BlockId, purpose: Purpose) -> Result<Arc<Block>, BlockError> {
        if purpose == Purpose::Prefetch {
            self.metrics.prefetch_issued.inc();
        }
        let route = match (&self.peers, purpose) {
            (Some(peers), Purpose::Demand | Purpose::Prefetch) => peers.ring.route(&id),
            _ => Route::Bucket,
        };
        let from_peer = match route {
            Route::Peer(owner) => self.load_from_peer(&owner, &id).await?,
            Route::Bucket => None,
        };
        let (data, origin) = match from_peer {
            Some(data) => (data, "peer"),
            None => (self.load_from_bucket(&id, purpose).await?, "bucket"),
        };
        if purpose == Purpose::Prefetch {
            let held = &self.unread_prefetch_bytes;
            held.fetch_add(data.len() as u64, Ordering::Relaxed);
        }
        Ok(Arc::new(Block {
            data,
            unread_prefetch: AtomicBool::new(purpose == Purpose::Prefetch),
            origin,
        }))
    }

    /// `id` from its owner `owner`; `Ok(None)` (counted, logged) when the owner failed and
    /// the bucket should be read instead; the owner's NOT_FOUND as the bucket's would be.
    async fn load_from_peer(
        &self,
        owner: &Arc<str>,
        id: &BlockId,
    ) -> Result<Option<Bytes>, BlockError> {
        let Some(peers) = &self.peers else {
            return Ok(None);
        };
        let outcome = |outcome| OutcomeLabel { outcome };
        match peers.clients.get_block(owner, id, self.block_bytes).await {
            Ok(data) => {
                self.metrics.peer_gets.get_or_create(&outcome("ok")).inc();
                self.metrics.peer_bytes.inc_by(data.len() as u64);
                Ok(Some(data))
            }
            Err(PeerError::NotFound { message, .. }) => {
                self.metrics
                    .peer_gets
                    .get_or_create(&outcome("not_found"))
                    .inc();
                let start = id.index * self.block_bytes;
                Err(BlockError::Bucket {
                    key: id.object.to_string(),
                    start,
                    end: start + self.block_bytes,
                    reason: message,
                    not_found: true,
                })
            }
            Err(PeerError::Skipped { .. }) => {
                self.metrics
                    .peer_gets
                    .get_or_create(&outcome("skipped"))
                    .inc();
                Ok(None)
            }
            Err(error) => {
                self.metrics
                    .peer_gets
                    .get_or_create(&outcome("failed"))
                    .inc();
                tracing::warn!(%error, object = %id.object, block = id.index, "reading the block from the bucket instead");
                Ok(None)
            }
        }
    }

    /// `id` read from the bucket with one ranged GET.
    async fn load_from_bucket(&self, id: &BlockId, purpose: Purpose) -> Result<Bytes, BlockError> {
        let start = id.index * self.block_bytes;
        let end = start + self.block_bytes;
        let label = purpose.label();
        self.metrics.bucket_gets.get_or_create(&label).inc();
        let path = self.bucket.path(&id.object);
        let data = self
            .bucket
            .store
            .get_range(&path, start..end)
            .await
            .map_err(|e| BlockError::Bucket {
                key: id.object.to_string(),
                start,
                end,
                not_found: matches!(e, object_store::Error::NotFound { .. }),
                reason: e.to_string(),
            })?;
        self.metrics
            .bucket_bytes
            .get_or_create(&label)
            .inc_by(data.len() as u64);
        Ok(data)
    }

    /// `part` (absolute object offsets, inside block `index`) of the block's `data`.
    fn slice(
        &self,
        key: &str,
        data: &Bytes,
        index: u64,
        part: Range<u64>,
        wanted: Range<u64>,
    ) -> Result<Bytes, BlockError> {
        let block_start = index * self.block_bytes;
        let from = (part.start - block_start) as usize;
        let to = (part.end - block_start) as usize;
        if to > data.len() {
            return Err(BlockError::ShortObject {
                key: key.to_string(),
                start: wanted.start,
                end: wanted.end,
                object_end: block_start + data.len() as u64,
            });
        }
        Ok(data.slice(from..to))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use object_store::memory::InMemory;
    use object_store::path::Path;
    use object_store::{ObjectStore, PutPayload};
    use strata_storage::{CountingStore, FaultyStore, Op};

    const BLOCK: u64 = MIN_BLOCK_BYTES;

    /// Deterministic bytes that differ at every offset of interest.
    fn pattern(len: usize) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u64).wrapping_mul(2_654_435_761).to_le_bytes()[1])
            .collect()
    }

    struct Fixture {
        counting: Arc<CountingStore>,
        cache: BlockCache,
        metrics: ReadMetrics,
    }

    async fn fixture(objects: &[(&str, usize)], capacity_bytes: u64) -> Fixture {
        let memory = Arc::new(InMemory::new());
        for (key, len) in objects {
            memory
                .put(&Path::from(*key), PutPayload::from(pattern(*len)))
                .await
                .unwrap();
        }
        fixture_on(memory, capacity_bytes)
    }

    fn fixture_on(inner: Arc<dyn ObjectStore>, capacity_bytes: u64) -> Fixture {
        let counting = Arc::new(CountingStore::new(inner));
        let bucket = Bucket {
            store: counting.clone(),
            prefix: Path::default(),
        };
        let metrics = ReadMetrics::default();
        let config = BlockCacheConfig {
            capacity_bytes,
            block_bytes: BLOCK,
        };
        let cache = BlockCache::new(bucket, config, metrics.clone());
        Fixture {
            counting,
            cache,
            metrics,
        }
    }

    fn expected(len: usize, range: Range<u64>) -> Vec<u8> {
        pattern(len)[range.start as usize..range.end as usize].to_vec()
    }

    #[tokio::test]
    async fn ranges_are_assembled_from_the_blocks_covering_them() {
        let len = (3 * BLOCK + 1000) as usize;
        let f = fixture(&[("obj", len)], 64 * BLOCK).await;
        let b = BLOCK;
        let cases = [
            0..1,
            10..b,               // inside the first block, ending at its end
            b - 10..b + 10,      // across one boundary
            b..2 * b,            // exactly one whole block
            100..3 * b + 10,     // across three boundaries into the last block
            3 * b..3 * b + 1000, // the last, partial block, to the object's end
            3 * b + 999..3 * b + 1000,
        ];
        for range in cases {
            let got = f.cache.read("obj", range.clone()).await.unwrap();
            assert_eq!(got.as_ref(), expected(len, range.clone()), "{range:?}");
        }
        // every block was fetched once, however many ranges touched it
        assert_eq!(f.counting.gets(), 4);
        assert_eq!(f.counting.bytes_read(), len as u64);
        assert_eq!(f.metrics.block_misses.get(), 4);
    }

    #[tokio::test]
    async fn an_object_smaller_than_a_block_is_one_get() {
        let f = fixture(&[("tiny", 300)], 64 * BLOCK).await;
        for range in [0..300, 0..1, 299..300, 40..41, 17..250] {
            let got = f.cache.read("tiny", range.clone()).await.unwrap();
            assert_eq!(got.as_ref(), expected(300, range.clone()), "{range:?}");
        }
        assert_eq!(f.counting.gets(), 1);
        assert_eq!(f.metrics.block_hits.get(), 4);
        assert!(f.cache.read("tiny", 5..5).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_range_past_the_object_is_an_error_not_padding() {
        let f = fixture(&[("short", 1000)], 64 * BLOCK).await;
        let err = f.cache.read("short", 900..1100).await.unwrap_err();
        assert!(
            matches!(
                err,
                BlockError::ShortObject {
                    object_end: 1000,
                    ..
                }
            ),
            "{err}"
        );
        let spanning = (BLOCK - 1)..(BLOCK + 1);
        let err = f.cache.read("short", spanning).await.unwrap_err();
        assert!(matches!(err, BlockError::Bucket { .. }), "{err}");
        let err = f.cache.read("missing", 0..10).await.unwrap_err();
        assert!(matches!(err, BlockError::Bucket { .. }), "{err}");
    }

    #[tokio::test]
    async fn failed_loads_are_not_cached() {
        let memory = Arc::new(InMemory::new());
        memory
            .put(&Path::from("obj"), PutPayload::from(pattern(5000)))
            .await
            .unwrap();
        let faulty = Arc::new(FaultyStore::new(memory));
        let f = fixture_on(faulty.clone(), 64 * BLOCK);
        faulty.fail_next(Op::Get, 1);
        assert!(f.cache.read("obj", 0..10).await.is_err());
        assert_eq!(
            f.cache.read("obj", 0..10).await.unwrap().as_ref(),
            &pattern(10)[..]
        );
        assert_eq!(f.counting.gets(), 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn twenty_concurrent_readers_cause_one_get_per_block() {
        let len = (8 * BLOCK + 123) as usize;
        let memory = Arc::new(InMemory::new());
        memory
            .put(&Path::from("seg"), PutPayload::from(pattern(len)))
            .await
            .unwrap();
        // hold every GET until all readers have asked, so they truly overlap
        let faulty = Arc::new(FaultyStore::new(memory));
        faulty.stall_next(Op::Get, 100);
        let f = fixture_on(faulty.clone(), 64 * BLOCK);
        // "chunks" of uneven size that straddle block boundaries
        let chunks: Vec<Range<u64>> = (0..len as u64)
            .step_by(50_000)
            .map(|start| start..(start + 50_000).min(len as u64))
            .collect();
        let mut readers = Vec::new();
        for _ in 0..20 {
            let cache = f.cache.clone();
            let chunks = chunks.clone();
            readers.push(tokio::spawn(async move {
                let mut read = Vec::with_capacity(len);
                for chunk in chunks {
                    read.extend_from_slice(&cache.read("seg", chunk).await.unwrap());
                }
                read
            }));
        }
        // the first block's GET is held while all 20 readers wait on it
        faulty.until_stalled(1).await;
        for _ in 0..50 {
            tokio::task::yield_now().await;
        }
        assert_eq!(faulty.stalled(), 1);
        faulty.release();
        for reader in readers {
            assert_eq!(reader.await.unwrap(), pattern(len));
        }
        let blocks = (len as u64).div_ceil(BLOCK);
        assert_eq!(
            f.counting.gets(),
            blocks,
            "one GET per block, not per reader"
        );
        assert_eq!(f.counting.bytes_read(), len as u64);
        assert_eq!(f.metrics.block_misses.get(), blocks);
    }

    #[tokio::test]
    async fn prefetched_blocks_are_counted_once_when_used() {
        let f = fixture(&[("obj", (2 * BLOCK) as usize)], 64 * BLOCK).await;
        let object: Arc<str> = Arc::from("obj");
        let second = BlockId {
            object: object.clone(),
            index: 1,
        };
        assert!(f.cache.prefetch(second.clone()).await.unwrap());
        assert!(!f.cache.prefetch(second.clone()).await.unwrap());
        assert!(f.cache.contains(&second));
        assert_eq!(f.cache.unread_prefetch_bytes(), BLOCK);
        f.cache.read("obj", BLOCK..BLOCK + 5).await.unwrap();
        assert_eq!(f.cache.unread_prefetch_bytes(), 0);
        f.cache.read("obj", BLOCK + 5..BLOCK + 9).await.unwrap();
        assert_eq!(f.metrics.prefetch_issued.get(), 1);
        assert_eq!(f.metrics.prefetch_used.get(), 1);
        assert_eq!(f.metrics.block_hits.get(), 2);
        assert_eq!(f.metrics.block_misses.get(), 0);
        assert_eq!(f.counting.gets(), 1);
    }

    #[tokio::test]
    async fn prefetched_blocks_evicted_unread_no_longer_count_as_held() {
        let f = fixture(&[("big", (8 * BLOCK) as usize)], 2 * BLOCK + 2 * 1024).await;
        for index in 0..8 {
            let block = BlockId {
                object: Arc::from("big"),
                index,
            };
            f.cache.prefetch(block).await.unwrap();
            f.cache.cache.run_pending_tasks().await;
        }
        // at most the two blocks the cache holds are still unread prefetches
        assert!(f.cache.unread_prefetch_bytes() <= 2 * BLOCK);
        f.cache.read("big", 7 * BLOCK..7 * BLOCK + 1).await.unwrap();
        assert!(f.cache.unread_prefetch_bytes() <= BLOCK);
    }

    #[tokio::test]
    async fn the_cache_stays_within_its_byte_bound() {
        let len = (16 * BLOCK) as usize;
        let f = fixture(&[("big", len)], 4 * BLOCK + 4 * 1024).await;
        for i in 0..16 {
            f.cache.read("big", i * BLOCK..i * BLOCK + 1).await.unwrap();
        }
        f.cache.cache.run_pending_tasks().await;
        assert!(f.cache.cache.weighted_size() <= 4 * BLOCK + 4 * 1024);
        assert!(f.cache.cache.entry_count() <= 4);
    }

    #[tokio::test]
    async fn a_scan_larger_than_the_cache_keeps_the_blocks_it_just_loaded() {
        // a replay streams through far more data than the cache holds; every block it
        // loads (or prefetches) must stay until its other readers come, however often
        // older blocks were read
        let len = (64 * BLOCK) as usize;
        let f = fixture(&[("big", len)], 8 * BLOCK + 8 * 1024).await;
        for _ in 0..8 {
            f.cache.read("big", 0..1).await.unwrap();
        }
        for i in 1..64 {
            let block = BlockId {
                object: Arc::from("big"),
                index: i,
            };
            f.cache.prefetch(block).await.unwrap();
            f.cache.cache.run_pending_tasks().await;
            f.cache.read("big", i * BLOCK..i * BLOCK + 1).await.unwrap();
            f.cache
                .read("big", i * BLOCK + 2..i * BLOCK + 3)
                .await
                .unwrap();
        }
        assert_eq!(f.counting.gets(), 64, "one GET per block");
        assert_eq!(f.metrics.prefetch_used.get(), 63);
    }

    #[test]
    fn blocks_covering_a_range() {
        let metrics = ReadMetrics::default();
        let bucket = strata_storage::open("memory://", &Default::default()).unwrap();
        let cache = BlockCache::new(
            bucket,
            BlockCacheConfig {
                capacity_bytes: 0,
                block_bytes: 1,
            },
            metrics,
        );
        assert_eq!(cache.block_bytes(), MIN_BLOCK_BYTES);
        let o: Arc<str> = Arc::from("o");
        let ids =
            |r: Range<u64>| -> Vec<u64> { cache.blocks_covering(&o, r).map(|b| b.index).collect() };
        assert_eq!(ids(0..0), Vec::<u64>::new());
        assert_eq!(ids(0..1), vec![0]);
        assert_eq!(ids(0..BLOCK), vec![0]);
        assert_eq!(ids(BLOCK - 1..BLOCK + 1), vec![0, 1]);
        assert_eq!(ids(BLOCK..3 * BLOCK), vec![1, 2]);
    }
}
