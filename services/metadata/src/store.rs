//! The metadata store boundary: one trait, implemented by SQLite today and PostgreSQL later,
//! with one conformance suite ([`crate::conformance`]) that every implementation runs.
//!
//! Invariants every implementation keeps:
//! - Offsets are dense per partition: a committed chunk's base offset is exactly the
//!   partition's previous high watermark, and the high watermark moves by the chunk's
//!   offset count, in the same transaction that records the index row.
//! - [`MetadataStore::commit_segment`] is idempotent by object key: once a key is committed,
//!   later calls return the stored offsets and change nothing.
//! - The log start offset only moves forward and never past the high watermark. Index rows
//!   wholly below it are removed in the transaction that moves it; a row holding the log
//!   start itself stays (Kafka also drops only whole segments).
//! - An object is listed as unreferenced only once no index row names it. Rows are only
//!   ever added by the commit of their own object (CommitSegment, or the ReplaceChunks that
//!   records a compacted object), so an unreferenced object stays so; deleting it from the
//!   bucket can never lose a record at or above a log start.
//! - [`MetadataStore::replace_chunks`] swaps a run of a partition's index rows for rows of
//!   one new object covering exactly the same offsets, atomically: a reader sees either the
//!   old rows or the new ones, never a gap, an overlap or a moved offset.

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// A topic's stable 16-byte id (a UUID).
pub type TopicId = [u8; 16];

/// Errors of a metadata store.
#[derive(Debug, Clone, Error)]
pub enum StoreError {
    /// A topic with that name exists already.
    #[error("topic {0:?} already exists")]
    TopicExists(String),
    /// No such topic.
    #[error("topic {0} does not exist")]
    TopicNotFound(String),
    /// The topic name breaks Kafka's naming rules.
    #[error("{0}")]
    InvalidTopic(String),
    /// The partition count is out of range.
    #[error("{0}")]
    InvalidPartitions(String),
    /// A config name or value is not acceptable.
    #[error("{0}")]
    InvalidConfig(String),
    /// A request was malformed (e.g. a topic id of the wrong length).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// This process does not hold the metadata leader's lease (any more): nothing was
    /// written; the caller should find the leader and ask it.
    #[error("not the metadata leader: {0}")]
    NotLeader(String),
    /// The database failed; the operation may or may not have been applied.
    #[error("metadata database error: {0}")]
    Database(String),
}

impl StoreError {
    /// True when the caller cannot know whether a mutation took effect.
    pub fn outcome_unknown(&self) -> bool {
        matches!(self, StoreError::Database(_))
    }
}

/// A topic as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicRecord {
    /// Stable id.
    pub topic_id: TopicId,
    /// Unique name.
    pub name: String,
    /// Number of partitions, numbered from 0.
    pub partition_count: i32,
    /// Configs set explicitly for this topic.
    pub configs: BTreeMap<String, String>,
    /// Creation time.
    pub created_at_ms: i64,
}

/// One partition of one topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PartitionId {
    /// The topic.
    pub topic_id: TopicId,
    /// The partition number.
    pub partition: i32,
}

/// Log bounds of a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionOffsets {
    /// First offset still readable.
    pub log_start_offset: i64,
    /// One past the last committed offset.
    pub high_watermark: i64,
}

/// The idempotent producer that wrote a run, and the sequence numbers of its records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducerBatch {
    /// Producer id from InitProducerId.
    pub producer_id: i64,
    /// Producer epoch.
    pub epoch: i16,
    /// Sequence of the first record.
    pub base_sequence: i32,
    /// Sequence of the last record.
    pub last_sequence: i32,
}

/// A contiguous stretch of a chunk's decompressed batches that gets offsets as one unit:
/// one produce request's batches, or one idempotent batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunToCommit {
    /// Start of the run in the decompressed chunk.
    pub raw_offset: u32,
    /// Length of the run in the decompressed chunk.
    pub raw_length: u32,
    /// Offsets the run occupies (sum of lastOffsetDelta + 1).
    pub offset_count: i64,
    /// Set for a batch of an idempotent producer, whose sequence is checked.
    pub producer: Option<ProducerBatch>,
}

/// A chunk to commit: where it lies in the object and what it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkToCommit {
    /// Partition the chunk belongs to.
    pub partition: PartitionId,
    /// Byte offset in the object.
    pub byte_offset: u64,
    /// Stored length in bytes.
    pub byte_length: u32,
    /// Decompressed length in bytes.
    pub raw_length: u32,
    /// Number of batches.
    pub batch_count: u32,
    /// Number of records.
    pub record_count: u32,
    /// Largest record timestamp.
    pub max_timestamp: i64,
    /// The chunk's runs in order, covering it back to back.
    pub runs: Vec<RunToCommit>,
}

/// A segment object to commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentCommit {
    /// Object key, never reused.
    pub object_key: String,
    /// Object size in bytes.
    pub object_size: u64,
    /// Its chunks; at most one per partition.
    pub chunks: Vec<ChunkToCommit>,
    /// Commit time.
    pub committed_at_ms: i64,
}

/// Why an idempotent producer's batch was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProducerRejection {
    /// The sequence does not follow the last one stored.
    OutOfOrderSequence,
    /// The epoch is older than the producer's current epoch.
    FencedEpoch,
    /// No state for this producer and the sequence does not start at 0.
    UnknownProducer,
}

/// What a commit did with one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RunOutcome {
    /// The run holds offsets from `base_offset` on.
    Appended {
        /// First assigned offset.
        base_offset: i64,
    },
    /// The run repeats an idempotent batch stored before at `base_offset`; it was skipped.
    Duplicate {
        /// Where the original batch was stored.
        base_offset: i64,
    },
    /// The run was refused and is not readable.
    Rejected(ProducerRejection),
}

/// What a commit did for one chunk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChunkOutcome {
    /// The partition exists; each run has its own outcome.
    Committed {
        /// One outcome per run, in order.
        runs: Vec<RunOutcome>,
        /// The partition's offsets after the commit.
        offsets: PartitionOffsets,
    },
    /// The partition does not exist (e.g. the topic was deleted meanwhile).
    UnknownPartition,
}

/// Result of [`MetadataStore::commit_segment`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitOutcome {
    /// One outcome per chunk, in request order.
    pub chunks: Vec<ChunkOutcome>,
    /// True when the object key had been committed before.
    pub already_committed: bool,
}

/// An index row: where a range of a partition's offsets lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkRow {
    /// Object key.
    pub object_key: String,
    /// Byte offset of the chunk in the object.
    pub byte_offset: u64,
    /// Stored length of the chunk in bytes.
    pub byte_length: u32,
    /// Where the row's batches start in the decompressed chunk.
    pub raw_offset: u32,
    /// Length of the row's batches in the decompressed chunk.
    pub raw_length: u32,
    /// First offset in the chunk.
    pub base_offset: i64,
    /// One past the last offset in the chunk.
    pub end_offset: i64,
    /// Largest record timestamp.
    pub max_timestamp: i64,
}

/// Which chunk a timestamp query wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampQuery {
    /// The first chunk whose max timestamp is >= this.
    AtOrAfter(i64),
    /// The chunk holding the largest timestamp (the earliest such chunk).
    Max,
}

/// A consumer group's committed position in one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    /// Topic name.
    pub topic: String,
    /// Partition number.
    pub partition: i32,
    /// Next offset the group will read.
    pub offset: i64,
    /// Leader epoch the client saw, or -1.
    pub leader_epoch: i32,
    /// The client's metadata string, returned unchanged (null stays null).
    pub metadata: Option<String>,
    /// When it was committed.
    pub commit_time_ms: i64,
}

/// Where a partition's log start offset should move to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogStartTarget {
    /// This offset (Kafka's DeleteRecords offset); negative offsets are out of range.
    Offset(i64),
    /// The partition's high watermark at the time of the move (DeleteRecords offset -1).
    HighWatermark,
}

/// What a request to move a partition's log start did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogStartOutcome {
    /// The log start is now `offsets.log_start_offset`; it equals `previous` when the
    /// target was at or below the log start already (nothing changed then).
    Moved {
        /// The partition's offsets after the call.
        offsets: PartitionOffsets,
        /// The log start before the call.
        previous: i64,
    },
    /// The target is negative or above the high watermark; nothing changed.
    OutOfRange {
        /// The partition's unchanged offsets.
        offsets: PartitionOffsets,
    },
    /// The partition does not exist.
    UnknownPartition,
}

/// A topic's retention limits, from its `retention.ms` and `retention.bytes` configs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RetentionPolicy {
    /// Index rows whose newest record is older than this many milliseconds are dropped;
    /// `None` keeps them forever.
    pub max_age_ms: Option<i64>,
    /// Oldest index rows are dropped until the partition holds at most this many bytes
    /// (of record batches, as produced); `None` keeps them forever.
    pub max_bytes: Option<i64>,
}

/// A segment object no index row references any more.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnreferencedObject {
    /// Object key, relative to the bucket prefix.
    pub object_key: String,
    /// When the store first listed it as unreferenced (the grace period counts from here).
    pub unreferenced_since_ms: i64,
    /// When the object was committed.
    pub committed_at_ms: i64,
}

/// A run of index rows a compaction expects to replace, as it read them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedRow {
    /// First offset of the row.
    pub base_offset: i64,
    /// One past the row's last offset.
    pub end_offset: i64,
    /// The object the row points into.
    pub object_key: String,
}

/// The object a compaction wrote, whose rows replace older ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplacementObject {
    /// Object key, never reused (a fresh segment key).
    pub object_key: String,
    /// Object size in bytes.
    pub object_size: u64,
    /// When it is recorded (the metadata service's clock).
    pub committed_at_ms: i64,
}

/// A request to swap a partition's index rows for rows of a compacted object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkReplacement {
    /// The partition whose rows are swapped.
    pub partition: PartitionId,
    /// The rows to replace, in offset order, back to back.
    pub expected: Vec<ExpectedRow>,
    /// The new object.
    pub object: ReplacementObject,
    /// The new rows, all in `object`, in offset order, back to back, covering exactly the
    /// offsets of `expected`.
    pub rows: Vec<ChunkRow>,
}

/// What [`MetadataStore::replace_chunks`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplaceOutcome {
    /// The rows were swapped; `unreferenced` lists the old objects no row names any more.
    Replaced {
        /// Objects recorded as unreferenced by this call.
        unreferenced: Vec<String>,
    },
    /// The new object was recorded before (a retry after success): nothing changed.
    AlreadyApplied,
    /// The partition's rows in that range are not the expected ones (retention, another
    /// compactor, a deleted topic): nothing changed and the new object is not recorded.
    Conflict {
        /// What differed.
        reason: String,
    },
    /// The partition does not exist; nothing changed.
    UnknownPartition,
}

/// A change to one topic config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigChange {
    /// The config's name.
    pub name: String,
    /// The new value; `None` returns the config to its default.
    pub value: Option<String>,
}

/// The durable home of topics, offsets and the segment index.
#[async_trait]
pub trait MetadataStore: Send + Sync + 'static {
    /// Creates a topic with all partitions empty; fails if the name is taken.
    async fn create_topic(&self, topic: TopicRecord) -> Result<TopicRecord, StoreError>;
    /// Deletes a topic by name with its partitions and index rows; returns its id. Objects
    /// left with no index row become unreferenced (see [`MetadataStore::unreferenced_objects`]).
    async fn delete_topic(&self, name: &str) -> Result<TopicId, StoreError>;
    /// All topics, ordered by name.
    async fn list_topics(&self) -> Result<Vec<TopicRecord>, StoreError>;
    /// One topic by name.
    async fn topic_by_name(&self, name: &str) -> Result<Option<TopicRecord>, StoreError>;
    /// One topic by id.
    async fn topic_by_id(&self, id: TopicId) -> Result<Option<TopicRecord>, StoreError>;
    /// Assigns offsets to a segment's runs atomically, checking idempotent producers'
    /// sequences; idempotent by object key. The same as a [`Self::commit_segments`] of one.
    async fn commit_segment(&self, commit: SegmentCommit) -> Result<CommitOutcome, StoreError> {
        let mut results = self.commit_segments(vec![commit]).await?;
        results.pop().unwrap_or_else(|| {
            Err(StoreError::Database(
                "a commit of one segment returned no result".into(),
            ))
        })
    }
    /// Group commit: applies `commits` in order in ONE transaction, each exactly as
    /// [`Self::commit_segment`] would have one after the other (a later commit sees the
    /// offsets and producer sequences of the earlier ones). Returns one result per commit,
    /// in order. A commit refused on its own (`InvalidRequest`, ...) leaves no trace and
    /// does not affect the others; an `Err` of the whole call means the database failed and
    /// none, some or all may have been applied (each is safe to retry by its object key).
    /// Object keys must be distinct within one call; a repeated key is refused.
    async fn commit_segments(
        &self,
        commits: Vec<SegmentCommit>,
    ) -> Result<Vec<Result<CommitOutcome, StoreError>>, StoreError>;
    /// Offsets of each partition, `None` where it does not exist.
    async fn partition_offsets(
        &self,
        partitions: &[PartitionId],
    ) -> Result<Vec<Option<PartitionOffsets>>, StoreError>;
    /// Offsets of every partition.
    async fn all_partition_offsets(
        &self,
    ) -> Result<Vec<(PartitionId, PartitionOffsets)>, StoreError>;
    /// Index rows from the one holding `offset` on, at most `max_rows`, stopping once their
    /// raw sizes reach `max_bytes` (always at least one row when any exists).
    async fn lookup_chunks(
        &self,
        partition: PartitionId,
        offset: i64,
        max_bytes: u64,
        max_rows: u32,
    ) -> Result<Option<(PartitionOffsets, Vec<ChunkRow>)>, StoreError>;
    /// Issues a new producer id with epoch 0, or, given a current (id, epoch), bumps the
    /// epoch; `FencedEpoch` when the given epoch is not the producer's current one.
    async fn init_producer(
        &self,
        current: Option<(i64, i16)>,
    ) -> Result<Result<(i64, i16), ProducerRejection>, StoreError>;
    /// Stores committed offsets of a group, replacing earlier ones for the same partitions.
    async fn commit_offsets(
        &self,
        group: &str,
        offsets: Vec<CommittedOffset>,
    ) -> Result<(), StoreError>;
    /// A group's committed offsets, for the named topics or all; ordered by topic, partition.
    async fn fetch_offsets(
        &self,
        group: &str,
        topics: Option<Vec<String>>,
    ) -> Result<Vec<CommittedOffset>, StoreError>;
    /// Removes a group's offsets for the given (topic, partition) pairs.
    async fn delete_offsets(
        &self,
        group: &str,
        partitions: Vec<(String, i32)>,
    ) -> Result<(), StoreError>;
    /// Removes every offset of a group; returns whether it had any.
    async fn delete_group_offsets(&self, group: &str) -> Result<bool, StoreError>;
    /// Which of `object_keys` have been committed (in the same order).
    async fn committed_objects(&self, object_keys: Vec<String>) -> Result<Vec<bool>, StoreError>;
    /// Names of groups that have committed offsets, sorted.
    async fn groups_with_offsets(&self) -> Result<Vec<String>, StoreError>;
    /// The chunk a timestamp query selects, among chunks at or above the log start.
    async fn chunk_by_timestamp(
        &self,
        partition: PartitionId,
        query: TimestampQuery,
    ) -> Result<Option<(PartitionOffsets, Option<ChunkRow>)>, StoreError>;

    /// Moves a partition's log start offset forward to `target` (Kafka's DeleteRecords),
    /// removing the index rows wholly below it, in one transaction. A target at or below
    /// the log start changes nothing; one above the high watermark (or negative) is
    /// refused. Objects left with no index row become unreferenced.
    async fn advance_log_start(
        &self,
        partition: PartitionId,
        target: LogStartTarget,
    ) -> Result<LogStartOutcome, StoreError>;
    /// Applies `policy` to a partition: moves its log start past the oldest whole index
    /// rows that break it (see [`crate::retention_rules::retention_cut`]), at most
    /// [`crate::retention_rules::MAX_ROWS_PER_PASS`] rows per call, in one transaction.
    /// Never moves the log start backwards nor past the high watermark; never answers
    /// `OutOfRange`.
    async fn apply_retention(
        &self,
        partition: PartitionId,
        policy: RetentionPolicy,
        now_ms: i64,
    ) -> Result<LogStartOutcome, StoreError>;
    /// Records as unreferenced those of `object_keys` that are committed and that no index
    /// row names (e.g. an object whose every run was a duplicate or for a deleted topic).
    /// Keys that are referenced or unknown are ignored, so a call is always safe.
    async fn mark_unreferenced(&self, object_keys: Vec<String>) -> Result<(), StoreError>;
    /// Objects no index row references, oldest first, at most `limit`, whose grace started
    /// at or before `unreferenced_before_ms`. The grace of an object starts at the first
    /// call that sees it unreferenced: that call stamps it with `now_ms`. Never lists an
    /// object an index row names.
    async fn unreferenced_objects(
        &self,
        now_ms: i64,
        unreferenced_before_ms: i64,
        limit: u32,
    ) -> Result<Vec<UnreferencedObject>, StoreError>;
    /// Forgets objects the caller deleted from the bucket: drops the records of those of
    /// `object_keys` that are unreferenced and were committed at or before
    /// `committed_before_ms` (later ones may still get a retried CommitSegment, which must
    /// find its stored outcome, so they stay listed). Returns the keys forgotten.
    async fn forget_objects(
        &self,
        object_keys: Vec<String>,
        committed_before_ms: i64,
    ) -> Result<Vec<String>, StoreError>;
    /// Compaction's swap: in one transaction, replaces the partition's index rows in the
    /// range of `replacement.expected` by `replacement.rows` and records the new object as
    /// committed, provided the rows found there are exactly the expected ones (else
    /// `Conflict`, nothing changed). Old objects left with no row become unreferenced.
    /// Idempotent by the new object's key: once recorded, later calls return
    /// `AlreadyApplied`. A malformed request (rows not covering exactly the expected
    /// offsets back to back, rows outside the new object) is `InvalidRequest`.
    async fn replace_chunks(
        &self,
        replacement: ChunkReplacement,
    ) -> Result<ReplaceOutcome, StoreError>;
    /// Applies `changes` to a topic's explicitly set configs, in order and in one
    /// transaction, and returns the topic after. The values are not checked here (see
    /// [`crate::topic_rules::validate_configs`]). `TopicNotFound` when it does not exist.
    async fn alter_topic_configs(
        &self,
        name: &str,
        changes: Vec<ConfigChange>,
    ) -> Result<TopicRecord, StoreError>;
}
