//! The unreferenced-object collector: deletes segment objects the index no longer names.
//!
//! A segment object holds chunks of many partitions. Once every one of them is below its
//! partition's log start (retention, DeleteRecords) or belongs to a deleted topic, no index
//! row names the object and the metadata service records it as unreferenced. This
//! collector asks for objects unreferenced for longer than the grace period, deletes them
//! from the bucket, then tells the metadata service to forget them.
//!
//! Safety: the metadata service lists an object only while no index row names it, and no
//! row is ever added for an object after its commit, so a listed object holds no record at
//! or above any log start. The grace period covers fetches that looked up the index before
//! the rows went and still read the object. Several agents may collect at once: an object
//! deleted twice is harmless (a missing object counts as deleted), and so is forgetting it
//! twice. An object is forgotten only after its delete succeeded, so a failed delete is
//! simply listed again.

use std::time::Duration;

use futures::StreamExt;

use strata_proto::metadata::v1::{ForgetObjectsRequest, ListUnreferencedObjectsRequest};
use tokio_util::sync::CancellationToken;

use crate::context::Agent;
use crate::orphans::CollectError;

/// Objects asked for per ListUnreferencedObjects call.
const BATCH: u32 = 1_000;
/// Most batches in one pass; the rest waits for the next pass.
const MAX_BATCHES: usize = 100;
/// Deletes in flight at once (the bucket's own write limit applies as well).
const PARALLEL_DELETES: usize = 16;

/// What one collection pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Collected {
    /// Objects the metadata service listed as unreferenced past the grace.
    pub listed: usize,
    /// Objects deleted from the bucket (S3 does not tell a delete of a missing object
    /// apart, so there an object deleted by an earlier pass counts again).
    pub deleted: usize,
    /// Objects found already gone (deleted by an earlier pass or another agent).
    pub already_gone: usize,
    /// Objects the metadata service forgot (the others are listed again next pass).
    pub forgotten: usize,
    /// Deletes that failed (tried again next pass).
    pub failed: usize,
}

/// Runs one pass: deletes every object unreferenced for longer than `grace`, and has the
/// metadata service forget it. Stops early at a batch that made no progress (objects the
/// service keeps listing until no retried commit can name them).
pub async fn collect_once(agent: &Agent, grace: Duration) -> Result<Collected, CollectError> {
    let mut done = Collected::default();
    let min_unreferenced_ms = u64::try_from(grace.as_millis()).unwrap_or(u64::MAX);
    for _ in 0..MAX_BATCHES {
        let listed = agent
            .metadata
            .clone()
            .list_unreferenced_objects(ListUnreferencedObjectsRequest {
                min_unreferenced_ms,
                limit: BATCH,
            })
            .await?
            .into_inner()
            .objects;
        done.listed += listed.len();
        let keys: Vec<String> = listed.iter().map(|o| o.object_key.clone()).collect();
        let outcomes: Vec<(String, Result<bool, object_store::Error>)> =
            futures::stream::iter(keys)
                .map(|key| delete(agent.bucket.clone(), key))
                .buffer_unordered(PARALLEL_DELETES)
                .collect()
                .await;
        let mut deleted = Vec::with_capacity(outcomes.len());
        let mut gone = 0;
        for (key, outcome) in outcomes {
            match outcome {
                Ok(existed) => {
                    gone += usize::from(!existed);
                    deleted.push(key);
                }
                Err(error) => {
                    done.failed += 1;
                    tracing::warn!(object = %key, %error, "cannot delete unreferenced segment");
                }
            }
        }
        done.deleted += deleted.len() - gone;
        done.already_gone += gone;
        agent
            .metrics
            .unreferenced_deleted
            .inc_by((deleted.len() - gone) as u64);
        let forgotten = if deleted.is_empty() {
            0
        } else {
            agent
                .metadata
                .clone()
                .forget_objects(ForgetObjectsRequest {
                    object_keys: deleted,
                })
                .await?
                .into_inner()
                .forgotten
                .len()
        };
        done.forgotten += forgotten;
        if listed.len() < BATCH as usize || forgotten == 0 {
            break;
        }
    }
    Ok(done)
}

/// Deletes one object: `Ok(true)` when deleted, `Ok(false)` when the bucket said it was
/// already gone (which counts as deleted too).
async fn delete(
    bucket: strata_storage::Bucket,
    key: String,
) -> (String, Result<bool, object_store::Error>) {
    let path = bucket.path(&key);
    let outcome = match bucket.store.delete(&path).await {
        Ok(()) => {
            tracing::info!(object = %key, "deleted unreferenced segment");
            Ok(true)
        }
        Err(object_store::Error::NotFound { .. }) => Ok(false),
        Err(error) => Err(error),
    };
    (key, outcome)
}

/// Collects every `interval` until `stop` is cancelled.
pub fn spawn_collector(
    agent: std::sync::Arc<Agent>,
    interval: Duration,
    grace: Duration,
    stop: CancellationToken,
) {
    tokio::spawn(async move {
        let run = async {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticker.tick().await;
            loop {
                ticker.tick().await;
                match collect_once(&agent, grace).await {
                    Ok(done) if done.listed > 0 => {
                        tracing::info!(?done, "unreferenced object collection")
                    }
                    Ok(_) => {}
                    Err(error) => tracing::warn!(%error, "unreferenced object collection failed"),
                }
            }
        };
        stop.run_until_cancelled(run).await;
    });
}
