//! Reading chunks back from the bucket.
//!
//! A chunk is fetched with one ranged GET, verified and decompressed once, and kept in a
//! byte-bounded moka cache; concurrent readers of the same chunk share one GET. Callers
//! get the raw concatenated batches with their stored (producer-written) base offsets;
//! [`serve_batches`] writes the assigned offsets into the copies it serves.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use moka::future::Cache;
use strata_batch::{set_base_offset, BatchHeader, BatchIter};
use strata_proto::metadata::v1::IndexedChunk;
use strata_storage::Bucket;
use thiserror::Error;

use crate::metrics::AgentMetrics;

/// Why a chunk could not be read.
#[derive(Debug, Clone, Error)]
pub enum ReadError {
    /// The bucket read failed.
    #[error("bucket read failed: {0}")]
    Bucket(String),
    /// The bytes read are not a valid chunk.
    #[error("corrupt chunk in {key}: {reason}")]
    Corrupt {
        /// Object key.
        key: String,
        /// What is wrong.
        reason: String,
    },
}

/// Reads and caches decoded chunks.
#[derive(Clone)]
pub struct ChunkReader {
    bucket: Bucket,
    cache: Cache<(String, u64), Bytes>,
    metrics: AgentMetrics,
}

impl std::fmt::Debug for ChunkReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChunkReader")
            .field("cached", &self.cache.entry_count())
            .finish()
    }
}

impl ChunkReader {
    /// A reader over `bucket` caching up to `cache_bytes` of decoded chunks.
    pub fn new(bucket: Bucket, cache_bytes: u64, metrics: AgentMetrics) -> Self {
        let cache = Cache::builder()
            .weigher(|_key: &(String, u64), value: &Bytes| {
                value.len().try_into().unwrap_or(u32::MAX)
            })
            .max_capacity(cache_bytes)
            .build();
        Self {
            bucket,
            cache,
            metrics,
        }
    }

    /// The decoded batches of `chunk`, from the cache or the bucket.
    pub async fn read(&self, chunk: &IndexedChunk) -> Result<Bytes, ReadError> {
        let key = (chunk.object_key.clone(), chunk.byte_offset);
        let bucket = self.bucket.clone();
        let chunk = chunk.clone();
        self.metrics.cache_requests.inc();
        let misses = self.metrics.cache_misses.clone();
        self.cache
            .try_get_with(key, async move {
                misses.inc();
                let path = bucket.path(&chunk.object_key);
                let range = chunk.byte_offset..chunk.byte_offset + u64::from(chunk.byte_length);
                let stored = bucket
                    .store
                    .get_range(&path, range)
                    .await
                    .map_err(|e| ReadError::Bucket(e.to_string()))?;
                tokio::task::spawn_blocking(move || strata_segment::decode_chunk(&stored))
                    .await
                    .map_err(|e| ReadError::Bucket(e.to_string()))?
                    .map_err(|e| ReadError::Corrupt {
                        key: chunk.object_key.clone(),
                        reason: e.to_string(),
                    })
            })
            .await
            .map_err(|e: Arc<ReadError>| (*e).clone())
    }
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

/// Appends to `out` the batches of `data` (a chunk starting at `chunk_base`) that hold
/// offsets >= `from`, with their assigned base offsets written in, while `budget` allows.
///
/// The first batch is taken even when larger than the budget if `out` is still empty, so a
/// consumer is never stuck behind a large batch (KIP-74). Returns the bytes appended.
pub fn serve_batches(
    data: &[u8],
    chunk_base: i64,
    from: i64,
    budget: usize,
    out: &mut BytesMut,
) -> Result<usize, ReadError> {
    let mut written = 0;
    for placed in placed_batches(data, chunk_base) {
        let placed = placed?;
        if placed.end_offset() <= from {
            continue;
        }
        if written + placed.bytes.len() > budget && !out.is_empty() {
            break;
        }
        let at = out.len();
        out.extend_from_slice(placed.bytes);
        set_base_offset(&mut out[at..], placed.base_offset);
        written += placed.bytes.len();
    }
    Ok(written)
}
