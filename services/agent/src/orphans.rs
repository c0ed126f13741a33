//! The orphan collector: deletes segment objects that were uploaded but never committed.
//!
//! An agent killed between its PUT and its commit, or a commit refused, leaves an object
//! no index row names. Once such an object is older than the grace period it is deleted.
//!
//! Safety: the metadata service refuses to commit an object whose key is older than
//! `MAX_COMMIT_AGE_MS` (5 minutes), and the grace period must be longer than that
//! ([`MIN_GRACE`]), so an object that is uncommitted past its grace can never be committed
//! later. Committed objects are never touched: every candidate is checked against the
//! metadata service right before the delete.

use std::time::Duration;

use futures::TryStreamExt;
use object_store::path::Path;
use strata_proto::metadata::v1::CommittedObjectsRequest;
use strata_segment::naming::SEGMENTS_PREFIX;
use tokio_util::sync::CancellationToken;

use crate::context::Agent;

/// Shortest grace period accepted: twice the metadata service's maximum commit age.
pub const MIN_GRACE: Duration = Duration::from_secs(10 * 60);

/// Candidates checked with the metadata service per call.
const BATCH: usize = 1000;

/// What one collection pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Collected {
    /// Segment objects listed.
    pub listed: usize,
    /// Objects old enough to be candidates.
    pub candidates: usize,
    /// Orphans deleted.
    pub deleted: usize,
}

/// Why a pass stopped.
#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    /// Listing or deleting in the bucket failed.
    #[error("bucket: {0}")]
    Bucket(#[from] object_store::Error),
    /// The metadata service did not answer.
    #[error("metadata service: {0}")]
    Metadata(#[from] tonic::Status),
}

/// Runs one pass: lists segment objects older than `grace` and deletes those never committed.
pub async fn collect_once(agent: &Agent, grace: Duration) -> Result<Collected, CollectError> {
    let bucket = &agent.bucket;
    let prefix = bucket.path(SEGMENTS_PREFIX);
    let cutoff = agent.clock.now_millis() - grace.as_millis() as i64;
    let mut done = Collected::default();
    let mut candidates: Vec<(Path, String)> = Vec::new();
    let mut listing = bucket.store.list(Some(&prefix));
    while let Some(meta) = listing.try_next().await? {
        done.listed += 1;
        if meta.last_modified.timestamp_millis() > cutoff {
            continue;
        }
        let Some(key) = relative_key(bucket.prefix.as_ref(), meta.location.as_ref()) else {
            continue;
        };
        candidates.push((meta.location, key));
    }
    done.candidates = candidates.len();
    for batch in candidates.chunks(BATCH) {
        let request = CommittedObjectsRequest {
            object_keys: batch.iter().map(|(_, key)| key.clone()).collect(),
        };
        let committed = agent
            .metadata
            .clone()
            .committed_objects(request)
            .await?
            .into_inner()
            .committed;
        for ((path, key), committed) in batch.iter().zip(committed) {
            if committed {
                continue;
            }
            match bucket.store.delete(path).await {
                Ok(()) => {}
                // deleted meanwhile, e.g. by the unreferenced-object collector
                Err(object_store::Error::NotFound { .. }) => continue,
                Err(error) => return Err(error.into()),
            }
            tracing::info!(object = %key, "deleted orphan segment");
            done.deleted += 1;
        }
    }
    agent.metrics.orphans_deleted.inc_by(done.deleted as u64);
    Ok(done)
}

/// The key relative to the bucket prefix, as the metadata service records it.
fn relative_key(prefix: &str, location: &str) -> Option<String> {
    if prefix.is_empty() {
        return Some(location.to_string());
    }
    location
        .strip_prefix(prefix)?
        .strip_prefix('/')
        .map(str::to_string)
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
            ticker.tick().await;
            loop {
                ticker.tick().await;
                match collect_once(&agent, grace).await {
                    Ok(done) if done.deleted > 0 => tracing::info!(?done, "orphan collection"),
                    Ok(_) => {}
                    Err(error) => tracing::warn!(%error, "orphan collection failed"),
                }
            }
        };
        stop.run_until_cancelled(run).await;
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_relative_to_the_bucket_prefix() {
        assert_eq!(
            relative_key("", "segments/a.seg").as_deref(),
            Some("segments/a.seg")
        );
        assert_eq!(
            relative_key("strata/dev", "strata/dev/segments/a.seg").as_deref(),
            Some("segments/a.seg")
        );
        assert_eq!(relative_key("strata/dev", "other/segments/a.seg"), None);
    }
}
