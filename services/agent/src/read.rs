//! Reading chunks back from the bucket: the read tier's front door.
//!
//! A chunk's stored bytes come from the [`BlockCache`] (aligned blocks of segment objects,
//! one GET per block however many readers want it). The chunk is then verified and
//! decompressed, and, when the decoded-chunk cache is enabled, the result is kept in a
//! second, smaller byte-bounded moka cache so that consecutive fetches of one chunk
//! (several fetches per chunk at the default 1 MiB partition fetch size) and consumers
//! reading close together decode it once. Concurrent readers of one chunk share one
//! decode. Callers get the raw concatenated batches with their stored (producer-written)
//! base offsets; [`serve_batches`] writes the assigned offsets into the copies it serves.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures::stream::FuturesOrdered;
use futures::StreamExt;
use moka::future::Cache;
use moka::policy::EvictionPolicy;
use strata_batch::{set_base_offset, BatchHeader, BatchIter};
use strata_proto::metadata::v1::IndexedChunk;
use thiserror::Error;

use crate::block_cache::{BlockCache, BlockError};
use crate::metrics::AgentMetrics;

/// Why a chunk could not be read.
#[derive(Debug, Clone, Error)]
pub enum ReadError {
    /// The bucket read failed; a later read may succeed.
    #[error("bucket read failed: {0}")]
    Bucket(String),
    /// The object the index names is not in the bucket: the row's data is lost.
    #[error("object {key} is missing from the bucket")]
    Missing {
        /// Object key.
        key: String,
    },
    /// The bytes read are not a valid chunk.
    #[error("corrupt chunk in {key}: {reason}")]
    Corrupt {
        /// Object key.
        key: String,
        /// What is wrong.
        reason: String,
    },
}

impl From<BlockError> for ReadError {
    fn from(error: BlockError) -> Self {
        match error {
            BlockError::Bucket {
                key,
                not_found: true,
                ..
            } => ReadError::Missing { key },
            BlockError::Bucket { .. } => ReadError::Bucket(error.to_string()),
            BlockError::ShortObject { ref key, .. } => ReadError::Corrupt {
                key: key.clone(),
                reason: error.to_string(),
            },
        }
    }
}

/// Why [`serve_rows`] stopped at a row.
#[derive(Debug, Clone, Error)]
pub enum ServeError {
    /// A chunk could not be read (bucket failure, a missing object, or a chunk that fails
    /// its CRC).
    #[error("cannot read the chunk at {key}: {source}")]
    Unreadable {
        /// Object key.
        key: String,
        /// What went wrong.
        source: ReadError,
    },
    /// The chunk was read, but the row's batches in it are not valid.
    #[error("invalid batches: {0}")]
    Corrupt(ReadError),
}

impl ServeError {
    /// True when reading the row again may succeed (the bucket failed, the data is not
    /// known to be damaged).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            ServeError::Unreadable {
                source: ReadError::Bucket(_),
                ..
            }
        )
    }
}

/// Chunks of one partition's rows read at once while serving a fetch.
const PARALLEL_ROWS: usize = 8;
/// Stored chunks up to this size are verified and decoded on the async worker; larger
/// ones on the blocking pool. A hand-off to the pool costs more than checking a small chunk.
const INLINE_DECODE_BYTES: usize = 128 * 1024;

/// Reads chunks through the block cache and keeps recently decoded chunks.
///
/// Cloning is cheap and clones share both caches.
#[derive(Clone)]
pub struct ChunkReader {
    blocks: BlockCache,
    decoded: Option<Cache<(String, u64), Bytes>>,
    metrics: AgentMetrics,
}

impl std::fmt::Debug for ChunkReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChunkReader")
            .field("blocks", &self.blocks)
            .field("decoded", &self.decoded.as_ref().map(|c| c.entry_count()))
            .finish()
    }
}

impl ChunkReader {
    /// A reader over `blocks` that keeps up to `decoded_cache_bytes` of decoded chunks
    /// (0: decode on every read).
    pub fn new(blocks: BlockCache, decoded_cache_bytes: u64, metrics: AgentMetrics) -> Self {
        let decoded = (decoded_cache_bytes > 0).then(|| {
            Cache::builder()
                .weigher(|_key: &(String, u64), value: &Bytes| {
                    value.len().try_into().unwrap_or(u32::MAX)
                })
                .max_capacity(decoded_cache_bytes)
                // a replay is a scan: keep the newest chunks (see block_cache)
                .eviction_policy(EvictionPolicy::lru())
                .build()
        });
        Self {
            blocks,
            decoded,
            metrics,
        }
    }

    /// The block cache chunks are read through.
    pub fn blocks(&self) -> &BlockCache {
        &self.blocks
    }

    /// The decoded batches of `chunk`, verified against its CRC.
    pub async fn read(&self, chunk: &IndexedChunk) -> Result<Bytes, ReadError> {
        self.metrics.cache_requests.inc();
        let Some(decoded) = &self.decoded else {
            return self.load(chunk.clone()).await;
        };
        let key = (chunk.object_key.clone(), chunk.byte_offset);
        decoded
            .try_get_with(key, self.load(chunk.clone()))
            .await
            .map_err(|e: Arc<ReadError>| (*e).clone())
    }

    /// Assembles the chunk from blocks and decodes it.
    async fn load(&self, chunk: IndexedChunk) -> Result<Bytes, ReadError> {
        self.metrics.cache_misses.inc();
        let range = chunk.byte_offset..chunk.byte_offset + u64::from(chunk.byte_length);
        let stored = self.blocks.read(&chunk.object_key, range).await?;
        let decoded = if stored.len() <= INLINE_DECODE_BYTES {
            strata_segment::decode_chunk(&stored)
        } else {
            tokio::task::spawn_blocking(move || strata_segment::decode_chunk(&stored))
                .await
                .map_err(|e| ReadError::Bucket(e.to_string()))?
        };
        decoded.map_err(|e| ReadError::Corrupt {
            key: chunk.object_key.clone(),
            reason: e.to_string(),
        })
    }
}

/// What [`serve_rows`] put in a response.
#[derive(Debug, Default)]
pub struct ServedRows {
    /// The batches served, with their assigned base offsets.
    pub records: BytesMut,
    /// Where the reader continues: one past the last offset served; `None` when nothing was.
    pub next_offset: Option<i64>,
    /// How many of the rows were read (the rest were not reached).
    pub rows_read: usize,
    /// The row that stopped the response short because it could not be served, and why:
    /// `records` holds what came before it.
    pub damaged: Option<(IndexedChunk, ServeError)>,
}

/// Serves a partition's batches from `from` on out of its index `rows` (in offset order),
/// within `budget` bytes (the first batch always, KIP-74).
///
/// The rows the budget will probably take (by their raw sizes) are read concurrently and
/// served in order; later rows, when needed, one by one. A batch is never served after a
/// batch that did not fit, so the response is a gap-free run of offsets. A row that cannot
/// be served ends the response: the batches before it are served and the row is returned
/// in [`ServedRows::damaged`], so one damaged row never hides the valid data before it.
pub async fn serve_rows(
    reader: &ChunkReader,
    rows: &[IndexedChunk],
    from: i64,
    budget: usize,
) -> ServedRows {
    let mut served = ServedRows::default();
    if budget == 0 {
        return served;
    }
    let likely = rows_for(rows, budget);
    // reads of rows [served.rows_read, queued), in row order
    let mut in_flight = FuturesOrdered::new();
    let mut queued = 0;
    for row in rows {
        while queued < likely && in_flight.len() < PARALLEL_ROWS {
            in_flight.push_back(reader.read(&rows[queued]));
            queued += 1;
        }
        let data = match in_flight.next().await {
            Some(data) => data,
            None => reader.read(row).await,
        };
        served.rows_read += 1;
        let room = budget.saturating_sub(served.records.len());
        let added = match serve_row(row, data, from, room, &mut served.records) {
            Ok(added) => added,
            Err(error) => {
                served.damaged = Some((row.clone(), error));
                break;
            }
        };
        served.next_offset = added.next_offset.or(served.next_offset);
        // the budget stopped this chunk short, or is used up: a later chunk must not be
        // served, or the batches left out of this one would be skipped
        if added.budget_reached || served.records.len() >= budget {
            break;
        }
    }
    served
}

/// Appends the batches of one row's chunk (as read) from `from` on within `room` bytes;
/// nothing is appended when the row cannot be served.
fn serve_row(
    row: &IndexedChunk,
    data: Result<Bytes, ReadError>,
    from: i64,
    room: usize,
    out: &mut BytesMut,
) -> Result<Served, ServeError> {
    let data = data.map_err(|source| ServeError::Unreadable {
        key: row.object_key.clone(),
        source,
    })?;
    let batches = row_slice(&data, row).map_err(ServeError::Corrupt)?;
    let before = out.len();
    serve_batches(batches, row.base_offset, from, room, out).map_err(|error| {
        // a row is served whole or not at all
        out.truncate(before);
        ServeError::Corrupt(error)
    })
}

/// How many leading `rows` hold `budget` raw bytes (all of them if they hold less).
fn rows_for(rows: &[IndexedChunk], budget: usize) -> usize {
    let mut bytes = 0usize;
    for (i, row) in rows.iter().enumerate() {
        bytes += row.raw_length as usize;
        if bytes >= budget {
            return i + 1;
        }
    }
    rows.len()
}

/// The batches an index row covers inside its decoded chunk.
pub fn row_slice<'a>(data: &'a [u8], row: &IndexedChunk) -> Result<&'a [u8], ReadError> {
    let start = row.raw_offset as usize;
    let end = start + row.raw_length as usize;
    data.get(start..end).ok_or_else(|| ReadError::Corrupt {
        key: row.object_key.clone(),
        reason: format!(
            "index row covers bytes {start}..{end} of a {}-byte chunk",
            data.len()
        ),
    })
}

/// A batch of a chunk with the offset the metadata service assigned to it.
#[derive(Debug, Clone)]
pub struct PlacedBatch<'a> {
    /// Assigned offset of the batch's first record.
    pub base_offset: i64,
    /// The batch header as stored.
    pub header: BatchHeader,
    /// The batch bytes as stored.
    pub bytes: &'a [u8],
}

impl PlacedBatch<'_> {
    /// One past the batch's last offset.
    pub fn end_offset(&self) -> i64 {
        self.base_offset + self.header.offset_count()
    }
}

/// The batches of a decoded chunk whose first offset is `chunk_base`, with assigned offsets.
pub fn placed_batches(
    data: &[u8],
    chunk_base: i64,
) -> impl Iterator<Item = Result<PlacedBatch<'_>, ReadError>> + '_ {
    let mut next = chunk_base;
    BatchIter::new(data).map(move |item| {
        let (header, bytes) = item.map_err(|e| ReadError::Corrupt {
            key: String::new(),
            reason: e.to_string(),
        })?;
        let placed = PlacedBatch {
            base_offset: next,
            header,
            bytes,
        };
        next = placed.end_offset();
        Ok(placed)
    })
}

/// What [`serve_batches`] appended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Served {
    /// Bytes appended.
    pub bytes: usize,
    /// One past the last offset of the last batch appended; `None` when none was.
    pub next_offset: Option<i64>,
    /// A batch at or after the wanted offset did not fit the budget: the caller must not
    /// serve later chunks in this response, or the consumer would skip that batch.
    pub budget_reached: bool,
}

/// Appends to `out` the batches of `data` (a chunk starting at `chunk_base`) that hold
/// offsets >= `from`, with their assigned base offsets written in, while `budget` allows.
///
/// The first batch is taken even when larger than the budget if `out` is still empty, so a
/// consumer is never stuck behind a large batch (KIP-74). Returns the bytes appended, the
/// offset a reader continues from, and whether the budget cut the chunk short.
pub fn serve_batches(
    data: &[u8],
    chunk_base: i64,
    from: i64,
    budget: usize,
    out: &mut BytesMut,
) -> Result<Served, ReadError> {
    let mut served = Served::default();
    for placed in placed_batches(data, chunk_base) {
        let placed = placed?;
        if placed.end_offset() <= from {
            continue;
        }
        if served.bytes + placed.bytes.len() > budget && !out.is_empty() {
            served.budget_reached = true;
            break;
        }
        let at = out.len();
        out.extend_from_slice(placed.bytes);
        set_base_offset(&mut out[at..], placed.base_offset);
        served.bytes += placed.bytes.len();
        served.next_offset = Some(placed.end_offset());
    }
    Ok(served)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::block_cache::{BlockCacheConfig, MIN_BLOCK_BYTES};
    use object_store::memory::InMemory;
    use object_store::path::Path;
    use object_store::{ObjectStore, PutPayload};
    use strata_segment::{ChunkInput, PartitionKey, SegmentWriter};
    use strata_storage::{Bucket, CountingStore};

    const BLOCK: u64 = MIN_BLOCK_BYTES;

    /// Chunk bytes of `len`: compressible for even partitions, not for odd ones.
    fn payload(segment: usize, partition: i32, len: usize) -> Vec<u8> {
        let mut x = (segment as u64 + 1) * 7919 + partition as u64;
        (0..len)
            .map(|i| {
                if partition % 2 == 0 {
                    (i / 100) as u8
                } else {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                }
            })
            .collect()
    }

    /// Multi-partition segments as an agent writes them; returns their index rows, in
    /// order, with the bytes each row decodes to, and the blocks the rows' chunks touch.
    async fn segments(store: &InMemory) -> (Vec<(IndexedChunk, Vec<u8>)>, u64) {
        let mut rows = Vec::new();
        let mut blocks = 0;
        for segment in 0..6 {
            let mut writer = SegmentWriter::new(1);
            let mut inputs = Vec::new();
            for partition in 0..3 {
                let len = 40_000 + 30_000 * partition as usize + 1_000 * segment;
                inputs.push((partition, payload(segment, partition, len)));
            }
            for (partition, data) in &inputs {
                writer
                    .push_chunk(ChunkInput {
                        key: PartitionKey {
                            topic_id: [9; 16],
                            partition: *partition,
                        },
                        batches: data,
                        batch_count: 1,
                        record_count: 1,
                        max_timestamp: 0,
                        compress: true,
                    })
                    .unwrap();
            }
            let (object, entries) = writer.finish();
            let key = format!("segments/{segment}.seg");
            store
                .put(&Path::from(key.as_str()), PutPayload::from(object))
                .await
                .unwrap();
            let chunk_end = entries.iter().map(|e| e.range().end).max().unwrap();
            blocks += chunk_end.div_ceil(BLOCK);
            for (entry, (_, data)) in entries.iter().zip(inputs) {
                let row = IndexedChunk {
                    object_key: key.clone(),
                    byte_offset: entry.offset,
                    byte_length: entry.len,
                    raw_length: data.len() as u32,
                    ..Default::default()
                };
                rows.push((row, data));
            }
        }
        (rows, blocks)
    }

    async fn twenty_readers(decoded_cache_bytes: u64) {
        let memory = InMemory::new();
        let (rows, blocks) = segments(&memory).await;
        let counting = Arc::new(CountingStore::new(Arc::new(memory)));
        let bucket = Bucket {
            store: counting.clone(),
            prefix: Path::default(),
        };
        let metrics = AgentMetrics::default();
        let config = BlockCacheConfig {
            capacity_bytes: 1 << 30,
            block_bytes: BLOCK,
        };
        let cache = BlockCache::new(bucket, config, metrics.read.clone());
        let reader = ChunkReader::new(cache, decoded_cache_bytes, metrics.clone());
        let rows = Arc::new(rows);
        let tasks: Vec<_> = (0..20)
            .map(|_| {
                let (reader, rows) = (reader.clone(), Arc::clone(&rows));
                tokio::spawn(async move {
                    for (row, expected) in rows.iter() {
                        let data = reader.read(row).await.unwrap();
                        assert_eq!(row_slice(&data, row).unwrap(), &expected[..]);
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(
            counting.gets(),
            blocks,
            "one GET per block of the chunk areas, not one per reader or per chunk"
        );
        assert_eq!(metrics.read.block_misses.get(), blocks);
        assert_eq!(metrics.cache_requests.get(), 20 * rows.len() as u64);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn twenty_readers_of_the_same_segments_cost_one_get_per_block() {
        twenty_readers(0).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_decoded_chunk_cache_changes_decodes_not_gets() {
        twenty_readers(64 << 20).await;
    }

    fn batch(records: usize) -> Vec<u8> {
        use kafka_protocol::records::{
            Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
        };
        let records: Vec<Record> = (0..records)
            .map(|i| Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: i as i64,
                sequence: -1,
                timestamp: 1_700_000_000_000,
                key: None,
                value: Some(Bytes::from_static(b"value")),
                headers: Default::default(),
            })
            .collect();
        let mut buf = BytesMut::new();
        let options = RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        };
        RecordBatchEncoder::encode(&mut buf, &records, &options).unwrap();
        buf.to_vec()
    }

    #[test]
    fn served_batches_report_where_a_reader_continues() {
        let one = batch(1);
        let chunk = one.repeat(5); // offsets 100..105, one record per batch
                                   // from inside the chunk: the batches from 101 on, continue at 105
        let mut out = BytesMut::new();
        let served = serve_batches(&chunk, 100, 101, usize::MAX, &mut out).unwrap();
        assert_eq!(served.bytes, 4 * one.len());
        assert_eq!(served.next_offset, Some(105));
        // a budget for one batch: continue after it
        let mut out = BytesMut::new();
        let served = serve_batches(&chunk, 100, 100, one.len(), &mut out).unwrap();
        assert_eq!((served.bytes, served.next_offset), (one.len(), Some(101)));
        assert!(served.budget_reached);
        // nothing at or after the offset: nothing served, no position
        let mut out = BytesMut::new();
        let served = serve_batches(&chunk, 100, 105, usize::MAX, &mut out).unwrap();
        assert_eq!(served, Served::default());
    }
}
