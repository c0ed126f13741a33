//! Group commit: CommitSegment calls that arrive while a commit is running are applied
//! together, in arrival order, in the next store transaction.
//!
//! Guarantees:
//! - Each call gets exactly the outcome it would have had alone
//!   ([`MetadataStore::commit_segments`] plans each segment against the state the earlier
//!   ones leave), so per-commit idempotence by object key is kept.
//! - Calls are applied in the order they were queued, except that a call whose object key
//!   is already in the forming group waits for the next one (where it is a replay).
//! - One group is in the store at a time: under load a group carries everything that queued
//!   meanwhile, so the number of transactions (and fsyncs) per second stays flat while
//!   commits per second grow with the number of committers.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::metrics::MetadataMetrics;
use crate::store::{CommitOutcome, MetadataStore, SegmentCommit, StoreError};

/// Most segments in one group transaction.
pub const MAX_GROUP: usize = 256;

/// Calls waiting for a group before new ones are refused back-pressure (the queue bound).
const QUEUE_DEPTH: usize = 4 * MAX_GROUP;

struct Pending {
    commit: SegmentCommit,
    reply: oneshot::Sender<Result<CommitOutcome, StoreError>>,
}

/// Hands segment commits to one background task that applies them in groups.
#[derive(Debug, Clone)]
pub struct GroupCommitter {
    queue: mpsc::Sender<Pending>,
}

impl GroupCommitter {
    /// Starts the committing task over `store`; it ends when every handle is dropped.
    pub fn start(store: Arc<dyn MetadataStore>, metrics: MetadataMetrics) -> Self {
        let (queue, pending) = mpsc::channel(QUEUE_DEPTH);
        tokio::spawn(run(store, pending, metrics));
        Self { queue }
    }

    /// Commits one segment as part of the next group and returns its own outcome.
    pub async fn commit(&self, commit: SegmentCommit) -> Result<CommitOutcome, StoreError> {
        let (reply, outcome) = oneshot::channel();
        self.queue
            .send(Pending { commit, reply })
            .await
            .map_err(|_| StoreError::Database("the group committer has stopped".into()))?;
        outcome.await.map_err(|_| {
            StoreError::Database(
                "the group committer dropped a commit; its outcome is unknown".into(),
            )
        })?
    }
}

async fn run(
    store: Arc<dyn MetadataStore>,
    mut pending: mpsc::Receiver<Pending>,
    metrics: MetadataMetrics,
) {
    let mut deferred = VecDeque::new();
    loop {
        let group = match next_group(&mut pending, &mut deferred).await {
            Some(group) => group,
            None => return,
        };
        metrics.commit_group_segments.observe(group.len() as f64);
        let (commits, replies): (Vec<_>, Vec<_>) =
            group.into_iter().map(|p| (p.commit, p.reply)).unzip();
        match store.commit_segments(commits).await {
            Ok(results) => {
                for (reply, result) in replies.into_iter().zip(results) {
                    let _ = reply.send(result);
                }
            }
            Err(error) => {
                for reply in replies {
                    let _ = reply.send(Err(error.clone()));
                }
            }
        }
    }
}

/// The next group: what was deferred, then whatever is queued, waiting only when both are
/// empty. `None` once the queue is closed and drained.
async fn next_group(
    pending: &mut mpsc::Receiver<Pending>,
    deferred: &mut VecDeque<Pending>,
) -> Option<Vec<Pending>> {
    let mut group = Vec::new();
    let mut keys = HashSet::new();
    let mut still_deferred = VecDeque::new();
    for call in deferred.drain(..) {
        admit(call, &mut group, &mut keys, &mut still_deferred);
    }
    *deferred = still_deferred;
    if group.is_empty() {
        let call = pending.recv().await?;
        admit(call, &mut group, &mut keys, deferred);
    }
    while group.len() < MAX_GROUP {
        match pending.try_recv() {
            Ok(call) => admit(call, &mut group, &mut keys, deferred),
            Err(_) => break,
        }
    }
    Some(group)
}

/// Adds `call` to the group unless the group is full or holds its object key already.
fn admit(
    call: Pending,
    group: &mut Vec<Pending>,
    keys: &mut HashSet<String>,
    deferred: &mut VecDeque<Pending>,
) {
    if group.len() < MAX_GROUP && keys.insert(call.commit.object_key.clone()) {
        group.push(call);
    } else {
        deferred.push_back(call);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::collections::BTreeMap;

    use super::*;
    use crate::sqlite::SqliteStore;
    use crate::store::{ChunkToCommit, PartitionId, RunToCommit, TopicRecord};

    fn segment(key: &str, topic_id: [u8; 16]) -> SegmentCommit {
        SegmentCommit {
            object_key: key.to_string(),
            object_size: 100,
            chunks: vec![ChunkToCommit {
                partition: PartitionId {
                    topic_id,
                    partition: 0,
                },
                byte_offset: 0,
                byte_length: 100,
                raw_length: 100,
                batch_count: 1,
                record_count: 1,
                max_timestamp: 1,
                runs: vec![RunToCommit {
                    raw_offset: 0,
                    raw_length: 100,
                    offset_count: 1,
                    producer: None,
                }],
            }],
            committed_at_ms: 1,
        }
    }

    /// Many concurrent calls, some repeating a key: every offset is handed out once, and
    /// each repeat is answered with the first call's outcome.
    #[tokio::test]
    async fn concurrent_calls_get_their_own_outcomes() {
        let store = Arc::new(SqliteStore::in_memory().unwrap());
        let topic = store
            .create_topic(TopicRecord {
                topic_id: [7; 16],
                name: "t".into(),
                partition_count: 1,
                configs: BTreeMap::new(),
                created_at_ms: 0,
            })
            .await
            .unwrap();
        let committer = GroupCommitter::start(store.clone(), MetadataMetrics::default());
        let calls: Vec<_> = (0..200)
            .map(|i| {
                let committer = committer.clone();
                let key = format!("k{}", i % 150);
                let topic_id = topic.topic_id;
                tokio::spawn(async move {
                    (
                        key.clone(),
                        committer.commit(segment(&key, topic_id)).await.unwrap(),
                    )
                })
            })
            .collect();
        let mut by_key: BTreeMap<String, Vec<CommitOutcome>> = BTreeMap::new();
        for call in calls {
            let (key, outcome) = call.await.unwrap();
            by_key.entry(key).or_default().push(outcome);
        }
        assert_eq!(by_key.len(), 150);
        let mut bases = Vec::new();
        for outcomes in by_key.values() {
            assert!(outcomes.iter().all(|o| o.chunks == outcomes[0].chunks));
            assert_eq!(outcomes.iter().filter(|o| !o.already_committed).count(), 1);
            if let crate::store::ChunkOutcome::Committed { runs, .. } = &outcomes[0].chunks[0] {
                if let crate::store::RunOutcome::Appended { base_offset } = runs[0] {
                    bases.push(base_offset);
                }
            }
        }
        bases.sort_unstable();
        assert_eq!(bases, (0..150).collect::<Vec<i64>>());
    }
}
