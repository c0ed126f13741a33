//! The ingest batcher: one open segment for all partitions, flushed by time or size.
//!
//! Batches from every produce request join the open segment in arrival order. A flush
//! takes the open segment, encodes it (one chunk per partition, zstd unless the producer
//! already compressed), uploads it under a never-reused key with a create-only PUT, then
//! commits it to the metadata service, and only then answers the producers.
//!
//! Invariants:
//! - A producer hears success only after the PUT succeeded and the commit returned offsets.
//! - Uploads may overlap, but commits happen in flush order, so batches of one partition
//!   get offsets in the order the agent received them.
//! - A commit whose reply was lost is retried with the same object key; the metadata
//!   service answers a retry with the offsets it assigned the first time.

use crate::metadata_client::{is_retryable, MetadataClient};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::error::ResponseError;
use object_store::{PutMode, PutOptions, PutPayload};
use strata_clock::Clock;
use strata_proto::metadata::v1 as pb;
use strata_segment::{ChunkEntry, ChunkInput, PartitionKey, SegmentWriter};
use strata_storage::Bucket;
use thiserror::Error;
use tokio::sync::{oneshot, Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::config::AgentConfig;
use crate::metrics::AgentMetrics;
use crate::watermarks::Watermarks;

/// How long a commit is retried before its producers are told the outcome is unknown.
const COMMIT_RETRY_FOR: Duration = Duration::from_secs(30);

/// Why appended batches were not committed.
#[derive(Debug, Clone, Error)]
pub enum IngestError {
    /// The segment could not be encoded; nothing was written.
    #[error("segment encoding failed: {0}")]
    Encode(String),
    /// The upload failed; nothing was committed, so a retry is safe.
    #[error("segment upload failed: {0}")]
    Upload(String),
    /// The commit did not answer; the records may or may not be committed.
    #[error("segment commit outcome unknown: {0}")]
    CommitUnknown(String),
    /// The partition disappeared (topic deleted) before the commit.
    #[error("partition no longer exists")]
    UnknownPartition,
    /// The agent is shutting down and accepts no more batches.
    #[error("agent is shutting down")]
    ShuttingDown,
    /// An idempotent producer's batch was refused.
    #[error("idempotent batch refused: {0:?}")]
    Sequence(SequenceError),
}

/// Why the metadata service refused an idempotent producer's batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SequenceError {
    /// The sequence does not follow the last one stored.
    OutOfOrder,
    /// The epoch is not the producer's current one.
    FencedEpoch,
    /// No state for this producer and the sequence does not start at 0.
    UnknownProducer,
}

impl IngestError {
    /// The Kafka error code a producer receives for this failure.
    pub fn kafka_error(&self) -> ResponseError {
        match self {
            IngestError::Encode(_) => ResponseError::CorruptMessage,
            IngestError::Upload(_) => ResponseError::KafkaStorageError,
            IngestError::CommitUnknown(_) => ResponseError::RequestTimedOut,
            IngestError::UnknownPartition => ResponseError::UnknownTopicOrPartition,
            IngestError::ShuttingDown => ResponseError::NotLeaderOrFollower,
            IngestError::Sequence(SequenceError::OutOfOrder) => {
                ResponseError::OutOfOrderSequenceNumber
            }
            IngestError::Sequence(SequenceError::FencedEpoch) => {
                ResponseError::InvalidProducerEpoch
            }
            IngestError::Sequence(SequenceError::UnknownProducer) => {
                ResponseError::UnknownProducerId
            }
        }
    }
}

/// Where a producer's batches landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// Offset of the first record of the appended batches.
    pub base_offset: i64,
    /// The partition's log start offset.
    pub log_start_offset: i64,
}

/// Facts about validated batches that the segment index records.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchSummary {
    /// Number of batches.
    pub batch_count: u32,
    /// Number of records.
    pub record_count: u32,
    /// Offsets the batches occupy.
    pub offset_count: i64,
    /// Largest record timestamp.
    pub max_timestamp: i64,
    /// True when every batch is already compressed by the producer.
    pub all_compressed: bool,
}

/// A stretch of appended batches that gets offsets as one unit: a produce request's
/// batches, or one batch of an idempotent producer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    /// Bytes of the run.
    pub len: u32,
    /// Offsets the run occupies.
    pub offset_count: i64,
    /// The idempotent producer's id, epoch and sequences, if any.
    pub producer: Option<pb::ProducerBatch>,
}

/// What a commit did with one chunk: its runs' results and the log start offset.
type ChunkResult = Result<(Vec<pb::RunResult>, i64), IngestError>;

/// A producer's answer from the results of its runs: the first run's offset, or the first
/// refusal. A repeated idempotent batch answers with the offset it got the first time.
fn answer_runs(runs: &[pb::RunResult], log_start_offset: i64) -> Result<Appended, IngestError> {
    let mut base_offset = None;
    for run in runs {
        let refused = match pb::RunStatus::try_from(run.status) {
            Ok(pb::RunStatus::Appended | pb::RunStatus::Duplicate) => None,
            Ok(pb::RunStatus::OutOfOrderSequence) => Some(SequenceError::OutOfOrder),
            Ok(pb::RunStatus::FencedEpoch) => Some(SequenceError::FencedEpoch),
            Ok(pb::RunStatus::UnknownProducer) | Err(_) => Some(SequenceError::UnknownProducer),
        };
        if let Some(error) = refused {
            return Err(IngestError::Sequence(error));
        }
        base_offset.get_or_insert(run.base_offset);
    }
    let base_offset = base_offset.ok_or(IngestError::UnknownPartition)?;
    Ok(Appended {
        base_offset,
        log_start_offset,
    })
}

/// One partition's batches, summary and runs, ready to encode.
type ChunkData = (PartitionKey, Bytes, BatchSummary, Vec<pb::RunCommit>);

type Reply = oneshot::Sender<Result<Appended, IngestError>>;

/// A producer waiting for its runs `first_run..first_run + run_count` of a chunk.
struct Waiter {
    first_run: usize,
    run_count: usize,
    reply: Option<Reply>,
}

struct PartitionBuffer {
    data: BytesMut,
    summary: BatchSummary,
    runs: Vec<pb::RunCommit>,
    waiters: Vec<Waiter>,
    /// Buffer space held until the segment is done with.
    room: Vec<OwnedSemaphorePermit>,
}

#[derive(Default)]
struct OpenSegment {
    partitions: HashMap<PartitionKey, PartitionBuffer>,
    bytes: usize,
    first_append: Option<Instant>,
    closed: bool,
}

struct Shared {
    open: Mutex<OpenSegment>,
    wake: Notify,
    flush_bytes: usize,
}

/// Handle to the batcher; cheap to share.
pub struct Ingest {
    shared: Arc<Shared>,
    room: Arc<Semaphore>,
    room_capacity: u32,
    flusher: tokio::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl std::fmt::Debug for Ingest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ingest").finish_non_exhaustive()
    }
}

/// What a flush needs besides the segment itself.
#[derive(Clone)]
struct Flusher {
    bucket: Bucket,
    metadata: MetadataClient,
    clock: Arc<dyn Clock>,
    watermarks: Watermarks,
    zstd_level: i32,
    node_id: i32,
    metrics: AgentMetrics,
}

impl Ingest {
    /// Starts the flusher task.
    pub fn start(
        config: &AgentConfig,
        bucket: Bucket,
        metadata: MetadataClient,
        clock: Arc<dyn Clock>,
        watermarks: Watermarks,
        metrics: AgentMetrics,
    ) -> Self {
        let shared = Arc::new(Shared {
            open: Mutex::new(OpenSegment::default()),
            wake: Notify::new(),
            flush_bytes: config.flush_bytes,
        });
        let flusher = Flusher {
            bucket,
            metadata,
            clock,
            watermarks,
            zstd_level: config.zstd_level,
            node_id: config.node_id,
            metrics,
        };
        let task = tokio::spawn(run_flusher(
            Arc::clone(&shared),
            flusher,
            config.flush_interval,
            config.max_inflight_uploads.max(1),
            config.adaptive_flush,
            config.flush_min_gap,
        ));
        let room_capacity = u32::try_from(config.max_buffered_bytes)
            .unwrap_or(u32::MAX)
            .max(1);
        Self {
            shared,
            room: Arc::new(Semaphore::new(room_capacity as usize)),
            room_capacity,
            flusher: tokio::sync::Mutex::new(Some(task)),
        }
    }

    /// Adds validated batches of one partition, made of `runs` back to back, to the open
    /// segment.
    ///
    /// With `want_reply` the returned receiver resolves once the batches are committed (or
    /// failed); without it (acks=0) the batches are stored but nobody is told.
    ///
    /// `room` is the buffer space reserved with [`Ingest::reserve`]; it is released once
    /// the segment holding these batches is committed or failed.
    pub fn append(
        &self,
        key: PartitionKey,
        batches: &[u8],
        summary: BatchSummary,
        runs: Vec<Run>,
        want_reply: bool,
        room: OwnedSemaphorePermit,
    ) -> Result<Option<oneshot::Receiver<Result<Appended, IngestError>>>, IngestError> {
        let (reply, receiver) = if want_reply {
            let (tx, rx) = oneshot::channel();
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        let mut open = lock(&self.shared.open);
        if open.closed {
            return Err(IngestError::ShuttingDown);
        }
        let buffer = open
            .partitions
            .entry(key)
            .or_insert_with(|| PartitionBuffer {
                data: BytesMut::new(),
                summary: BatchSummary {
                    all_compressed: true,
                    ..BatchSummary::default()
                },
                runs: Vec::new(),
                waiters: Vec::new(),
                room: Vec::new(),
            });
        buffer.room.push(room);
        buffer.waiters.push(Waiter {
            first_run: buffer.runs.len(),
            run_count: runs.len(),
            reply,
        });
        let mut raw_offset = buffer.data.len() as u32;
        for run in runs {
            buffer.runs.push(pb::RunCommit {
                raw_offset,
                raw_length: run.len,
                offset_count: run.offset_count,
                producer: run.producer,
            });
            raw_offset += run.len;
        }
        buffer.data.extend_from_slice(batches);
        let s = &mut buffer.summary;
        s.batch_count += summary.batch_count;
        s.record_count += summary.record_count;
        s.offset_count += summary.offset_count;
        s.max_timestamp = s.max_timestamp.max(summary.max_timestamp);
        s.all_compressed &= summary.all_compressed;
        open.bytes += batches.len();
        let first = open.first_append.is_none();
        if first {
            open.first_append = Some(Instant::now());
        }
        if first || open.bytes >= self.shared.flush_bytes {
            self.shared.wake.notify_one();
        }
        Ok(receiver)
    }

    /// Waits until `bytes` of buffer space are free and reserves them, so that batches
    /// waiting for slow uploads never hold more than `max_buffered_bytes` of memory.
    pub async fn reserve(&self, bytes: usize) -> Result<OwnedSemaphorePermit, IngestError> {
        let wanted = u32::try_from(bytes)
            .unwrap_or(u32::MAX)
            .clamp(1, self.room_capacity);
        Arc::clone(&self.room)
            .acquire_many_owned(wanted)
            .await
            .map_err(|_| IngestError::ShuttingDown)
    }

    /// Stops accepting batches, flushes the open segment and waits for every upload and
    /// commit in flight, so each accepted batch is committed or answered with an error.
    pub async fn shutdown(&self) {
        lock(&self.shared.open).closed = true;
        self.shared.wake.notify_one();
        if let Some(task) = self.flusher.lock().await.take() {
            let _ = task.await;
        }
    }
}

fn lock(open: &Mutex<OpenSegment>) -> std::sync::MutexGuard<'_, OpenSegment> {
    open.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Waits for a flush trigger, takes the open segment and hands it to an upload task.
/// With `adaptive`, a segment is also flushed as soon as no upload is in flight and at
/// least `min_gap` has passed since the previous flush started: an idle agent answers in
/// about one PUT plus one commit, a loaded one accumulates larger segments while its uploads
/// run, and `min_gap` caps the PUT rate at low load.
async fn run_flusher(
    shared: Arc<Shared>,
    flusher: Flusher,
    interval: Duration,
    max_uploads: usize,
    adaptive: bool,
    min_gap: Duration,
) {
    let mut last_flush: Option<Instant> = None;
    let permits = Arc::new(Semaphore::new(max_uploads));
    let mut uploads = JoinSet::new();
    // resolves when the previous segment's commit finished: commits happen in flush order
    let (first_tx, mut previous_commit) = oneshot::channel::<()>();
    drop(first_tx);
    loop {
        let (deadline, closed, full) = {
            let open = lock(&shared.open);
            (
                open.first_append.map(|t| t + interval),
                open.closed,
                open.bytes >= shared.flush_bytes,
            )
        };
        let now = Instant::now();
        let gap_over = last_flush.map(|t| t + min_gap);
        let idle = adaptive && deadline.is_some() && permits.available_permits() == max_uploads;
        let early = idle && gap_over.is_some_and(|g| g > now);
        let due = full || closed || (idle && !early) || deadline.is_some_and(|d| d <= now);
        // an idle adaptive flusher waiting out the gap wakes when the gap is over
        let deadline = match (early, gap_over, deadline) {
            (true, Some(g), Some(d)) => Some(g.min(d)),
            (_, _, d) => d,
        };
        if !due {
            match deadline {
                Some(deadline) => {
                    tokio::select! {
                        () = shared.wake.notified() => {}
                        () = tokio::time::sleep_until(deadline) => {}
                    }
                }
                None => shared.wake.notified().await,
            }
            continue;
        }
        last_flush = Some(now);
        let taken = {
            let mut open = lock(&shared.open);
            open.bytes = 0;
            open.first_append = None;
            std::mem::take(&mut open.partitions)
        };
        if !taken.is_empty() {
            let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
                break;
            };
            let (done_tx, done_rx) = oneshot::channel::<()>();
            let predecessor = std::mem::replace(&mut previous_commit, done_rx);
            let flusher = flusher.clone();
            let shared = Arc::clone(&shared);
            uploads.spawn(async move {
                flusher.flush(taken, predecessor).await;
                drop(done_tx);
                drop(permit);
                // an upload slot is free: an adaptive flusher may start the next segment
                shared.wake.notify_one();
            });
        }
        while uploads.try_join_next().is_some() {}
        if closed {
            break;
        }
    }
    while uploads.join_next().await.is_some() {}
}

impl Flusher {
    /// Encodes, uploads and commits one segment, then answers its producers.
    async fn flush(
        &self,
        partitions: HashMap<PartitionKey, PartitionBuffer>,
        predecessor: oneshot::Receiver<()>,
    ) {
        let mut parts: Vec<(PartitionKey, PartitionBuffer)> = partitions.into_iter().collect();
        parts.sort_by_key(|(key, _)| *key);
        let inputs: Vec<ChunkData> = parts
            .iter_mut()
            .map(|(key, b)| {
                (
                    *key,
                    std::mem::take(&mut b.data).freeze(),
                    b.summary,
                    std::mem::take(&mut b.runs),
                )
            })
            .collect();
        let started = Instant::now();
        let outcome = self.upload_and_commit(inputs, predecessor).await;
        match &outcome {
            Ok(_) => {
                self.metrics.flushes.inc();
                self.metrics
                    .flush_seconds
                    .observe(started.elapsed().as_secs_f64());
                tracing::debug!(
                    partitions = parts.len(),
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "segment committed"
                );
            }
            Err(error) => {
                self.metrics.flush_failures.inc();
                tracing::warn!(%error, partitions = parts.len(), "segment flush failed");
            }
        }
        for (i, (_, buffer)) in parts.into_iter().enumerate() {
            let result = match &outcome {
                Ok(results) => results[i].clone(),
                Err(e) => Err(e.clone()),
            };
            for waiter in buffer.waiters {
                let Some(reply) = waiter.reply else { continue };
                let answer =
                    result
                        .as_ref()
                        .map_err(Clone::clone)
                        .and_then(|(runs, log_start_offset)| {
                            let mine = runs
                                .get(waiter.first_run..waiter.first_run + waiter.run_count)
                                .unwrap_or_default();
                            answer_runs(mine, *log_start_offset)
                        });
                let _ = reply.send(answer);
            }
        }
    }

    async fn upload_and_commit(
        &self,
        inputs: Vec<ChunkData>,
        predecessor: oneshot::Receiver<()>,
    ) -> Result<Vec<ChunkResult>, IngestError> {
        let mut runs: Vec<Vec<pb::RunCommit>> = Vec::with_capacity(inputs.len());
        let inputs: Vec<ChunkData> = inputs
            .into_iter()
            .map(|(key, data, summary, chunk_runs)| {
                runs.push(chunk_runs);
                (key, data, summary, Vec::new())
            })
            .collect();
        let (object, entries) = self.encode(inputs).await?;
        let object_size = object.len() as u64;
        self.metrics.flush_bytes.observe(object_size as f64);
        let key = strata_segment::naming::segment_key(
            self.clock.now_millis(),
            self.node_id,
            *uuid::Uuid::new_v4().as_bytes(),
        );
        let upload = self
            .bucket
            .store
            .put_opts(
                &self.bucket.path(&key),
                PutPayload::from_bytes(object),
                PutOptions::from(PutMode::Create),
            )
            .await;
        // wait for the previous commit even when this upload failed, to keep the chain
        let _ = predecessor.await;
        upload.map_err(|e| IngestError::Upload(e.to_string()))?;
        let chunks = entries
            .iter()
            .zip(runs)
            .map(|(entry, runs)| pb::ChunkCommit {
                topic_id: entry.key.topic_id.to_vec(),
                partition: entry.key.partition,
                byte_offset: entry.offset,
                byte_length: entry.len,
                raw_length: entry.raw_len,
                batch_count: entry.batch_count,
                record_count: entry.record_count,
                max_timestamp: entry.max_timestamp,
                runs,
            })
            .collect();
        let request = pb::CommitSegmentRequest {
            object_key: key,
            object_size,
            chunks,
        };
        let committing = Instant::now();
        let response = self.commit_with_retries(request).await?;
        self.metrics
            .commit_seconds
            .observe(committing.elapsed().as_secs_f64());
        self.watermarks.bump();
        Ok(response
            .chunks
            .into_iter()
            .map(|chunk| match pb::PartitionError::try_from(chunk.error) {
                Ok(pb::PartitionError::None) => Ok((chunk.runs, chunk.log_start_offset)),
                _ => Err(IngestError::UnknownPartition),
            })
            .collect())
    }

    /// Builds the segment object on a blocking thread: zstd is CPU work.
    async fn encode(
        &self,
        inputs: Vec<ChunkData>,
    ) -> Result<(Bytes, Vec<ChunkEntry>), IngestError> {
        let level = self.zstd_level;
        tokio::task::spawn_blocking(move || {
            let mut writer = SegmentWriter::new(level);
            for (key, data, summary, _) in &inputs {
                writer
                    .push_chunk(ChunkInput {
                        key: *key,
                        batches: data,
                        batch_count: summary.batch_count,
                        record_count: summary.record_count,
                        max_timestamp: summary.max_timestamp,
                        compress: !summary.all_compressed,
                    })
                    .map_err(|e| IngestError::Encode(e.to_string()))?;
            }
            Ok(writer.finish())
        })
        .await
        .map_err(|e| IngestError::Encode(e.to_string()))?
    }

    async fn commit_with_retries(
        &self,
        request: pb::CommitSegmentRequest,
    ) -> Result<pb::CommitSegmentResponse, IngestError> {
        let give_up = Instant::now() + COMMIT_RETRY_FOR;
        let mut backoff = Duration::from_millis(20);
        loop {
            match self.metadata.clone().commit_segment(request.clone()).await {
                Ok(response) => return Ok(response.into_inner()),
                Err(status) if is_retryable(&status) && Instant::now() + backoff < give_up => {
                    tracing::warn!(%status, key = %request.object_key, "commit failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
                Err(status) => return Err(IngestError::CommitUnknown(status.to_string())),
            }
        }
    }
}
