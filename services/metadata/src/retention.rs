//! Moving log starts forward: DeleteRecords calls and the periodic retention enforcer.
//!
//! Both go through [`MetadataStore::advance_log_start`] and
//! [`MetadataStore::apply_retention`], which keep the invariants (never backwards, never
//! past the high watermark, only whole index rows dropped by retention). Every move is
//! then published on the high-watermark stream, whose messages carry log starts too.
//!
//! The enforcer runs in every metadata process it is started in. Several running at once
//! are safe: each partition moves in its own transaction, and a move that another process
//! already made is a no-op.

use std::sync::Arc;
use std::time::Duration;

use strata_clock::Clock;
use strata_proto::metadata::v1 as pb;
use tokio::sync::broadcast;
use tonic::Status;

use crate::leadership::Leadership;
use crate::metrics::MetadataMetrics;
use crate::retention_rules::policy_of;
use crate::service::{offsets_to_pb, status_of};
use crate::store::{LogStartOutcome, LogStartTarget, MetadataStore, PartitionId, StoreError};

/// Where partition offset changes are published (the high-watermark stream).
pub(crate) type OffsetUpdates = broadcast::Sender<Arc<Vec<pb::PartitionOffsets>>>;

/// Most `apply_retention` calls per partition in one pass (each drops at most
/// [`crate::retention_rules::MAX_ROWS_PER_PASS`] rows); the rest waits for the next pass.
const MAX_CALLS_PER_PARTITION: usize = 100;

/// Kafka's DeleteRecords offset that means "the high watermark".
const HIGH_WATERMARK: i64 = -1;

/// Serves a DeleteRecords call: moves each partition on its own, in request order, and
/// publishes the moves.
pub(crate) async fn delete_records(
    store: &dyn MetadataStore,
    updates: &OffsetUpdates,
    request: pb::DeleteRecordsRequest,
) -> Result<pb::DeleteRecordsResponse, Status> {
    let mut results = Vec::with_capacity(request.partitions.len());
    let mut changed = Vec::new();
    for deletion in request.partitions {
        let topic_id =
            crate::store::TopicId::try_from(deletion.topic_id.as_slice()).map_err(|_| {
                Status::invalid_argument(format!(
                    "topic id must be 16 bytes, got {}",
                    deletion.topic_id.len()
                ))
            })?;
        let p = PartitionId {
            topic_id,
            partition: deletion.partition,
        };
        let target = if deletion.offset == HIGH_WATERMARK {
            LogStartTarget::HighWatermark
        } else {
            LogStartTarget::Offset(deletion.offset)
        };
        let outcome = store
            .advance_log_start(p, target)
            .await
            .map_err(status_of)?;
        let (error, low_watermark) = match outcome {
            LogStartOutcome::Moved { offsets, previous } => {
                if offsets.log_start_offset != previous {
                    tracing::info!(
                        topic_id = %uuid::Uuid::from_bytes(topic_id),
                        partition = p.partition,
                        log_start_offset = offsets.log_start_offset,
                        "records deleted"
                    );
                    changed.push(offsets_to_pb(p, Some(offsets)));
                }
                (pb::PartitionError::None, offsets.log_start_offset)
            }
            LogStartOutcome::OutOfRange { offsets } => (
                pb::PartitionError::OffsetOutOfRange,
                offsets.log_start_offset,
            ),
            LogStartOutcome::UnknownPartition => (pb::PartitionError::UnknownTopicOrPartition, -1),
        };
        results.push(pb::RecordDeletionResult {
            topic_id: p.topic_id.to_vec(),
            partition: p.partition,
            error: error as i32,
            low_watermark,
        });
    }
    if !changed.is_empty() {
        let _ = updates.send(Arc::new(changed));
    }
    Ok(pb::DeleteRecordsResponse {
        partitions: results,
    })
}

/// What one retention pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionPass {
    /// Partitions of topics with a retention limit that were checked.
    pub partitions_checked: usize,
    /// Partitions whose log start moved.
    pub partitions_trimmed: usize,
    /// Partitions the store failed on (tried again next pass).
    pub failures: usize,
}

/// Applies every topic's `retention.ms` and `retention.bytes` to its partitions.
#[derive(Clone)]
pub struct RetentionEnforcer {
    store: Arc<dyn MetadataStore>,
    clock: Arc<dyn Clock>,
    updates: OffsetUpdates,
    metrics: MetadataMetrics,
    leadership: Leadership,
}

impl std::fmt::Debug for RetentionEnforcer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RetentionEnforcer").finish_non_exhaustive()
    }
}

impl RetentionEnforcer {
    /// An enforcer over `store` that publishes the moves it makes on `updates`.
    pub(crate) fn new(
        store: Arc<dyn MetadataStore>,
        clock: Arc<dyn Clock>,
        updates: OffsetUpdates,
        metrics: MetadataMetrics,
    ) -> Self {
        Self {
            store,
            clock,
            updates,
            metrics,
            leadership: Leadership::sole(),
        }
    }

    /// Runs passes only while `leadership` serves: standbys leave retention to the leader.
    pub(crate) fn while_serving(mut self, leadership: Leadership) -> Self {
        self.leadership = leadership;
        self
    }

    /// One pass over every partition of every topic with a retention limit. A failure on
    /// one partition is logged and counted and the pass goes on; only failing to list the
    /// topics fails the pass.
    pub async fn run_once(&self) -> Result<RetentionPass, StoreError> {
        let mut pass = RetentionPass::default();
        let mut changed = Vec::new();
        for topic in self.store.list_topics().await? {
            let policy = policy_of(&topic.configs);
            if policy == Default::default() {
                continue;
            }
            for partition in 0..topic.partition_count {
                let p = PartitionId {
                    topic_id: topic.topic_id,
                    partition,
                };
                pass.partitions_checked += 1;
                match self.trim_partition(p, policy).await {
                    Ok(Some(offsets)) => {
                        pass.partitions_trimmed += 1;
                        tracing::info!(
                            topic = %topic.name,
                            partition,
                            log_start_offset = offsets.log_start_offset,
                            "retention moved the log start"
                        );
                        changed.push(offsets_to_pb(p, Some(offsets)));
                    }
                    Ok(None) => {}
                    Err(error) => {
                        pass.failures += 1;
                        tracing::warn!(topic = %topic.name, partition, %error, "retention failed");
                    }
                }
            }
        }
        self.metrics
            .retention_trims
            .inc_by(pass.partitions_trimmed as u64);
        if !changed.is_empty() {
            let _ = self.updates.send(Arc::new(changed));
        }
        Ok(pass)
    }

    /// Applies `policy` to one partition until nothing more goes; the offsets after, when
    /// the log start moved.
    async fn trim_partition(
        &self,
        p: PartitionId,
        policy: crate::store::RetentionPolicy,
    ) -> Result<Option<crate::store::PartitionOffsets>, StoreError> {
        let mut moved = None;
        for _ in 0..MAX_CALLS_PER_PARTITION {
            let now = self.clock.now_millis();
            match self.store.apply_retention(p, policy, now).await? {
                LogStartOutcome::Moved { offsets, previous }
                    if offsets.log_start_offset > previous =>
                {
                    moved = Some(offsets);
                }
                _ => break,
            }
        }
        Ok(moved)
    }

    /// Runs a pass every `interval` (the first one `interval` after the start) until
    /// `shutdown` resolves; a pass under way when it does is finished first.
    pub fn spawn(
        self,
        interval: Duration,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticker.tick().await;
            tokio::pin!(shutdown);
            loop {
                tokio::select! {
                    () = &mut shutdown => return,
                    _ = ticker.tick() => {}
                }
                if !self.leadership.is_serving() {
                    continue;
                }
                match self.run_once().await {
                    Ok(pass) if pass.partitions_trimmed > 0 || pass.failures > 0 => {
                        tracing::info!(?pass, "retention pass")
                    }
                    Ok(_) => {}
                    Err(error) => tracing::warn!(%error, "retention pass failed"),
                }
            }
        })
    }
}

#[cfg(test)]
mod tests;
