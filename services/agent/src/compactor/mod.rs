//! The compactor: rewrites runs of small index rows into one large per-partition object.
//!
//! Agents flush segments every few hundred milliseconds, so a partition's log is a long
//! series of small chunks spread over many multi-partition objects; a replay then pays one
//! GET per chunk. Each pass of the compactor walks the partitions whose rendezvous leader
//! this agent is (so agents split the work without coordinating), picks runs of small rows
//! older than `min_age` ([`plan`]), reads their batches, writes them as ONE chunk of a new
//! object under a fresh segment key, and asks the metadata service to swap the rows
//! (ReplaceChunks).
//!
//! # Invariants
//!
//! - The new chunk is the old rows' batches byte for byte, concatenated in offset order,
//!   and its offset count is checked against the rows' offsets before anything is written;
//!   since a row's batches get consecutive offsets from its base, the one new row serves
//!   exactly the offsets the old rows did, and the stored batches (and their CRCs) are
//!   unchanged.
//! - The swap is atomic and conditional in the metadata store: if retention, DeleteRecords,
//!   a topic deletion or another compactor changed any of the rows meanwhile, nothing
//!   changes (`Conflict`) and the new object is an orphan, deleted by the orphan collector
//!   after its grace.
//! - A compactor killed at any point leaves either the old rows (and perhaps an orphan) or
//!   the new ones; the next pass starts from what the index says, so the work is picked up
//!   again. ReplaceChunks is idempotent by the new key, so a retried swap is harmless.
//! - Replaced objects are deleted only by the unreferenced-object collector, once no row of
//!   any partition names them and the unreferenced grace (longer than any fetch) is over.

mod plan;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use object_store::{PutMode, PutOptions, PutPayload};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use strata_batch::BatchIter;
use strata_proto::metadata::v1 as pb;
use strata_segment::{ChunkInput, PartitionKey, SegmentWriter};
use tokio_util::sync::CancellationToken;

pub use self::plan::{plan, plan_groups, Plan, PlanLimits};
use crate::block_cache::{BlockCache, BlockCacheConfig};
use crate::cluster::ClusterView;
use crate::context::Agent;
use crate::metadata_client::is_retryable;
use crate::metrics::AgentMetrics;
use crate::read::{row_slice, ChunkReader, ReadError};

/// Most index rows of one partition a pass looks at; the rest waits for the next pass.
const MAX_ROWS_PER_PARTITION: usize = 100_000;
/// Attempts of one ReplaceChunks call that failed with a transient error.
const SWAP_ATTEMPTS: u32 = 5;
/// Bytes of old blocks, and of decoded old chunks, the compactor's own reader keeps (it
/// never uses the fetch path's caches, so a pass does not evict what consumers read).
const READER_CACHE_BYTES: u64 = 32 * 1024 * 1024;

/// How the compactor runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompactionSettings {
    /// Time between passes; zero disables the compactor.
    pub interval: Duration,
    /// Only objects written at least this long ago are compacted.
    pub min_age: Duration,
    /// Most raw bytes of batches in one compacted object (one chunk, one index row).
    pub target_bytes: u64,
    /// zstd level of compacted chunks.
    pub zstd_level: i32,
}

/// The compactor's counters.
#[derive(Debug, Clone, Default)]
pub struct CompactionMetrics {
    /// Compacted objects recorded in the index.
    pub objects: Counter,
    /// Index rows replaced by compacted ones.
    pub rows_replaced: Counter,
    /// Raw bytes of batches moved into compacted objects.
    pub bytes: Counter,
    /// Swaps refused because the rows changed meanwhile (their objects become orphans).
    pub conflicts: Counter,
    /// Groups that failed (read, upload or metadata errors); retried next pass.
    pub failures: Counter,
}

impl CompactionMetrics {
    /// Registers the counters under `strata_agent_compaction_*`.
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("strata_agent_compaction");
        r.register(
            "objects",
            "Compacted objects recorded",
            self.objects.clone(),
        );
        r.register(
            "rows_replaced",
            "Index rows replaced by compacted rows",
            self.rows_replaced.clone(),
        );
        r.register(
            "bytes",
            "Raw batch bytes rewritten into compacted objects",
            self.bytes.clone(),
        );
        r.register(
            "conflicts",
            "Swaps refused because the index rows changed meanwhile",
            self.conflicts.clone(),
        );
        r.register(
            "failures",
            "Compaction groups that failed and wait for the next pass",
            self.failures.clone(),
        );
    }
}

/// Why a compaction step failed. Nothing is ever half-applied: at worst an orphan object.
#[derive(Debug, thiserror::Error)]
pub enum CompactError {
    /// The metadata service failed or refused.
    #[error("metadata service: {0}")]
    Metadata(#[from] tonic::Status),
    /// Reading an old chunk failed.
    #[error("reading an old chunk: {0}")]
    Read(#[from] ReadError),
    /// Writing the new object to the bucket failed.
    #[error("bucket: {0}")]
    Bucket(#[from] object_store::Error),
    /// Building the new object failed.
    #[error("encoding the compacted chunk: {0}")]
    Encode(String),
    /// An old row's batches do not hold the offsets the row says: it is left alone.
    #[error("row [{base}, {end}) of {key} holds {found} offsets")]
    OffsetMismatch {
        /// The row's object.
        key: String,
        /// The row's first offset.
        base: i64,
        /// One past the row's last offset.
        end: i64,
        /// Offsets its batches hold.
        found: i64,
    },
}

/// What one pass (or one partition) did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Compacted {
    /// Partitions this agent leads and looked at.
    pub partitions: usize,
    /// Compacted objects recorded.
    pub objects: usize,
    /// Old rows replaced.
    pub rows_replaced: usize,
    /// Raw batch bytes rewritten.
    pub bytes: u64,
    /// Swaps refused by a conflict.
    pub conflicts: usize,
    /// Groups that failed.
    pub failures: usize,
}

/// A compacted object written to the bucket, not yet swapped into the index.
#[derive(Debug, Clone, PartialEq)]
pub struct CompactedObject {
    /// The partition.
    pub partition: pb::PartitionRef,
    /// The rows it replaces, in offset order.
    pub replaces: Vec<pb::IndexedChunk>,
    /// Its key in the bucket.
    pub object_key: String,
    /// Its size in bytes.
    pub object_size: u64,
    /// Its one index row.
    pub row: pb::IndexedChunk,
}

/// Where each partition's next pass starts listing rows (see [`Plan::resume_from`]).
///
/// Kept in the compactor's memory only: a restarted agent, or one that newly leads a
/// partition, starts from the partition's beginning once. Rows behind a cursor only ever
/// change by being compacted (by whichever agent led the partition then), so a stale
/// cursor never hides work.
#[derive(Debug, Default)]
pub struct Cursors {
    next: HashMap<([u8; 16], i32), i64>,
}

impl Cursors {
    /// The offset to list `partition` of `topic_id` from (0 when unknown).
    pub fn get(&self, topic_id: &[u8; 16], partition: i32) -> i64 {
        self.next.get(&(*topic_id, partition)).copied().unwrap_or(0)
    }

    fn set(&mut self, topic_id: [u8; 16], partition: i32, offset: i64) {
        self.next.insert((topic_id, partition), offset);
    }
}

/// Runs one pass over every partition this agent leads, each from its cursor, and moves
/// the cursors past what is settled.
pub async fn compact_once(
    agent: &Agent,
    reader: &ChunkReader,
    settings: &CompactionSettings,
    metrics: &CompactionMetrics,
    cursors: &mut Cursors,
) -> Result<Compacted, CompactError> {
    let topics = agent
        .metadata
        .clone()
        .list_topics(pb::ListTopicsRequest::default())
        .await?
        .into_inner()
        .topics;
    let agents = agent.cluster.agents();
    let me = agent.cluster.me().node_id;
    let mut done = Compacted::default();
    for topic in topics {
        let Ok(topic_id) = <[u8; 16]>::try_from(topic.topic_id.as_slice()) else {
            continue;
        };
        for partition in 0..topic.partition_count {
            let leader = ClusterView::leader(&agents, &topic_id, partition).map(|a| a.node_id);
            if leader != Some(me) {
                continue;
            }
            done.partitions += 1;
            let p = pb::PartitionRef {
                topic_id: topic_id.to_vec(),
                partition,
            };
            let from = cursors.get(&topic_id, partition);
            let next =
                compact_partition(agent, reader, settings, metrics, p, from, &mut done).await?;
            cursors.set(topic_id, partition, next);
        }
    }
    Ok(done)
}

/// Compacts one partition's rows from offset `from` on: every group [`plan`] picks, one
/// after the other. A group that fails is counted and skipped; only a failure to read the
/// index stops the pass. Returns where the next pass should start: the plan's resume
/// offset, or the first failed or lost group, whichever comes first.
pub async fn compact_partition(
    agent: &Agent,
    reader: &ChunkReader,
    settings: &CompactionSettings,
    metrics: &CompactionMetrics,
    partition: pb::PartitionRef,
    from: i64,
    done: &mut Compacted,
) -> Result<i64, CompactError> {
    let rows = partition_rows(agent, &partition, from).await?;
    let min_age = i64::try_from(settings.min_age.as_millis()).unwrap_or(i64::MAX);
    let limits = PlanLimits {
        target_bytes: settings.target_bytes,
        written_before_ms: agent.clock.now_millis().saturating_sub(min_age),
    };
    let Plan {
        groups,
        resume_from,
    } = plan(&rows, &limits);
    let mut next = resume_from.unwrap_or(from);
    for group in groups {
        let group_start = group.first().map_or(next, |r| r.base_offset);
        let result = async {
            let object = write_object(agent, reader, settings, &partition, group).await?;
            let response = swap(agent, &object).await?;
            Ok::<_, CompactError>((object, response))
        }
        .await;
        match result {
            Ok((object, response)) => match response.status() {
                pb::ReplaceStatus::Replaced | pb::ReplaceStatus::AlreadyApplied => {
                    let bytes = u64::from(object.row.raw_length);
                    done.objects += 1;
                    done.rows_replaced += object.replaces.len();
                    done.bytes += bytes;
                    metrics.objects.inc();
                    metrics.rows_replaced.inc_by(object.replaces.len() as u64);
                    metrics.bytes.inc_by(bytes);
                }
                pb::ReplaceStatus::Conflict | pb::ReplaceStatus::UnknownPartition => {
                    next = next.min(group_start);
                    tracing::info!(
                        key = %object.object_key,
                        reason = %response.conflict_reason,
                        "compaction lost a race; its object is left to the orphan collector"
                    );
                    done.conflicts += 1;
                    metrics.conflicts.inc();
                }
            },
            Err(error) => {
                next = next.min(group_start);
                tracing::warn!(%error, partition = partition.partition, "compaction of a group failed");
                done.failures += 1;
                metrics.failures.inc();
            }
        }
    }
    Ok(next)
}

/// The partition's index rows from offset `from` (or its log start, if later) on, in
/// offset order (at most [`MAX_ROWS_PER_PARTITION`]; the next pass continues after them).
pub async fn partition_rows(
    agent: &Agent,
    partition: &pb::PartitionRef,
    from: i64,
) -> Result<Vec<pb::IndexedChunk>, CompactError> {
    let mut rows: Vec<pb::IndexedChunk> = Vec::new();
    let mut offset = from;
    while rows.len() < MAX_ROWS_PER_PARTITION {
        let response = agent
            .metadata
            .clone()
            .lookup_batches(pb::LookupBatchesRequest {
                partitions: vec![pb::PartitionFetch {
                    topic_id: partition.topic_id.clone(),
                    partition: partition.partition,
                    offset,
                    max_bytes: u64::MAX,
                }],
            })
            .await?
            .into_inner();
        let Some(found) = response.partitions.into_iter().next() else {
            break;
        };
        let Some(last) = found.chunks.last() else {
            break;
        };
        offset = last.end_offset;
        rows.extend(found.chunks);
    }
    Ok(rows)
}

/// Reads `group`'s batches, checks their offsets, and writes them as one chunk of a new
/// object under a fresh segment key (create-only PUT). Nothing in the index changes.
pub async fn write_object(
    agent: &Agent,
    reader: &ChunkReader,
    settings: &CompactionSettings,
    partition: &pb::PartitionRef,
    group: Vec<pb::IndexedChunk>,
) -> Result<CompactedObject, CompactError> {
    let raw: usize = group.iter().map(|r| r.raw_length as usize).sum();
    let mut batches = BytesMut::with_capacity(raw);
    let mut batch_count = 0u32;
    let mut record_count = 0u32;
    let mut all_compressed = true;
    for row in &group {
        let data = reader.read(row).await?;
        let slice = row_slice(&data, row)?;
        let mut offsets = 0i64;
        for item in BatchIter::new(slice) {
            let (header, _) = item.map_err(|e| ReadError::Corrupt {
                key: row.object_key.clone(),
                reason: e.to_string(),
            })?;
            offsets += header.offset_count();
            batch_count += 1;
            record_count =
                record_count.saturating_add(u32::try_from(header.record_count).unwrap_or(0));
            all_compressed &= header.compression() != 0;
        }
        if offsets != row.end_offset - row.base_offset {
            return Err(CompactError::OffsetMismatch {
                key: row.object_key.clone(),
                base: row.base_offset,
                end: row.end_offset,
                found: offsets,
            });
        }
        batches.extend_from_slice(slice);
    }
    let (Some(first), Some(last)) = (group.first(), group.last()) else {
        return Err(CompactError::Encode("an empty group".into()));
    };
    let (base_offset, end_offset) = (first.base_offset, last.end_offset);
    let max_timestamp = group.iter().map(|r| r.max_timestamp).max().unwrap_or(-1);
    let topic_id = <[u8; 16]>::try_from(partition.topic_id.as_slice())
        .map_err(|_| CompactError::Encode("topic id is not 16 bytes".into()))?;
    let key = PartitionKey {
        topic_id,
        partition: partition.partition,
    };
    let level = settings.zstd_level;
    let batches: Bytes = batches.freeze();
    let (object, entry) = tokio::task::spawn_blocking(move || {
        let mut writer = SegmentWriter::new(level);
        let entry = writer
            .push_chunk(ChunkInput {
                key,
                batches: &batches,
                batch_count,
                record_count,
                max_timestamp,
                compress: !all_compressed,
            })
            .map_err(|e| CompactError::Encode(e.to_string()))?
            .clone();
        let (object, _) = writer.finish();
        Ok::<_, CompactError>((object, entry))
    })
    .await
    .map_err(|e| CompactError::Encode(e.to_string()))??;
    let object_key = strata_segment::naming::segment_key(
        agent.clock.now_millis(),
        agent.config.node_id,
        *uuid::Uuid::new_v4().as_bytes(),
    );
    let object_size = object.len() as u64;
    agent
        .bucket
        .store
        .put_opts(
            &agent.bucket.path(&object_key),
            PutPayload::from_bytes(object),
            PutOptions::from(PutMode::Create),
        )
        .await?;
    Ok(CompactedObject {
        partition: partition.clone(),
        row: pb::IndexedChunk {
            object_key: object_key.clone(),
            byte_offset: entry.offset,
            byte_length: entry.len,
            raw_offset: 0,
            raw_length: entry.raw_len,
            base_offset,
            end_offset,
            max_timestamp,
        },
        replaces: group,
        object_key,
        object_size,
    })
}

/// Asks the metadata service to swap `object` into the index, retrying transient failures
/// (the call is idempotent by the object's key).
pub async fn swap(
    agent: &Agent,
    object: &CompactedObject,
) -> Result<pb::ReplaceChunksResponse, CompactError> {
    let request = pb::ReplaceChunksRequest {
        partition: Some(object.partition.clone()),
        expected: object
            .replaces
            .iter()
            .map(|r| pb::ExpectedChunk {
                base_offset: r.base_offset,
                end_offset: r.end_offset,
                object_key: r.object_key.clone(),
            })
            .collect(),
        object_key: object.object_key.clone(),
        object_size: object.object_size,
        new_chunks: vec![object.row.clone()],
    };
    let mut backoff = Duration::from_millis(50);
    let mut attempt = 1;
    loop {
        match agent.metadata.clone().replace_chunks(request.clone()).await {
            Ok(response) => return Ok(response.into_inner()),
            Err(status) if is_retryable(&status) && attempt < SWAP_ATTEMPTS => {
                tracing::debug!(%status, attempt, "replace chunks failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff *= 2;
                attempt += 1;
            }
            Err(status) => return Err(status.into()),
        }
    }
}

/// A reader for old chunks that does not share the fetch path's caches.
pub fn compaction_reader(agent: &Agent) -> ChunkReader {
    let metrics = AgentMetrics::default();
    let config = BlockCacheConfig {
        capacity_bytes: READER_CACHE_BYTES,
        block_bytes: agent.config.read_block_bytes,
    };
    let blocks = BlockCache::new(agent.bucket.clone(), config, metrics.read.clone());
    ChunkReader::new(blocks, READER_CACHE_BYTES, metrics)
}

/// Runs a pass every `settings.interval` until `stop` is cancelled.
pub fn spawn(agent: Arc<Agent>, settings: CompactionSettings, stop: CancellationToken) {
    tokio::spawn(async move {
        let reader = compaction_reader(&agent);
        let metrics = agent.metrics.compaction.clone();
        let mut cursors = Cursors::default();
        let run = async {
            let mut ticker = tokio::time::interval(settings.interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticker.tick().await;
            loop {
                ticker.tick().await;
                match compact_once(&agent, &reader, &settings, &metrics, &mut cursors).await {
                    Ok(done) if done.objects + done.conflicts + done.failures > 0 => {
                        tracing::info!(?done, "compaction pass")
                    }
                    Ok(_) => {}
                    Err(error) => tracing::warn!(%error, "compaction pass failed"),
                }
            }
        };
        stop.run_until_cancelled(run).await;
    });
}
