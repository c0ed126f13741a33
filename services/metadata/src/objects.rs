//! Segment objects no index row references any more: listing them for the agents'
//! collectors, and forgetting them once deleted.
//!
//! Safety rests on two facts. An object is listed only while no index row names it, and
//! no row is ever added for an object after its commit; so a listed object holds no byte
//! at or above any log start. And an object is forgotten only once a retried CommitSegment
//! can no longer name it (its key is older than [`MAX_COMMIT_AGE_MS`] and it was committed
//! longer ago than that): until then its stored outcome must stay, or a late retry would
//! commit the deleted object anew.

use strata_clock::Clock;
use strata_proto::metadata::v1 as pb;
use strata_segment::naming::segment_key_time;
use tonic::Status;

use crate::service::{status_of, MAX_COMMIT_AGE_MS};
use crate::store::{ChunkOutcome, CommitOutcome, MetadataStore, RunOutcome};

/// Objects listed per call when the caller names no limit.
const DEFAULT_LIMIT: u32 = 1_000;
/// Most objects listed per call.
const MAX_LIMIT: u32 = 10_000;

/// Serves ListUnreferencedObjects.
pub(crate) async fn list(
    store: &dyn MetadataStore,
    clock: &dyn Clock,
    request: pb::ListUnreferencedObjectsRequest,
) -> Result<pb::ListUnreferencedObjectsResponse, Status> {
    let now = clock.now_millis();
    let grace = i64::try_from(request.min_unreferenced_ms).unwrap_or(i64::MAX);
    let limit = match request.limit {
        0 => DEFAULT_LIMIT,
        n => n.min(MAX_LIMIT),
    };
    let objects = store
        .unreferenced_objects(now, now.saturating_sub(grace), limit)
        .await
        .map_err(status_of)?;
    Ok(pb::ListUnreferencedObjectsResponse {
        objects: objects
            .into_iter()
            .map(|o| pb::UnreferencedObjectInfo {
                object_key: o.object_key,
                unreferenced_since_ms: o.unreferenced_since_ms,
            })
            .collect(),
    })
}

/// Serves ForgetObjects: forgets the keys whose commit window has closed.
pub(crate) async fn forget(
    store: &dyn MetadataStore,
    clock: &dyn Clock,
    request: pb::ForgetObjectsRequest,
) -> Result<pb::ForgetObjectsResponse, Status> {
    let now = clock.now_millis();
    let closed: Vec<String> = request
        .object_keys
        .into_iter()
        .filter(|key| commit_window_closed(key, now))
        .collect();
    if closed.is_empty() {
        return Ok(pb::ForgetObjectsResponse::default());
    }
    let forgotten = store
        .forget_objects(closed, now.saturating_sub(MAX_COMMIT_AGE_MS))
        .await
        .map_err(status_of)?;
    Ok(pb::ForgetObjectsResponse { forgotten })
}

/// True when CommitSegment would refuse `key` as too old at `now_ms` (keys without a
/// time are judged by their commit time alone, in the store).
fn commit_window_closed(key: &str, now_ms: i64) -> bool {
    segment_key_time(key).is_none_or(|written| now_ms.saturating_sub(written) > MAX_COMMIT_AGE_MS)
}

/// True when a commit stored no index row at all: every chunk's partition was unknown, or
/// every run was a duplicate or refused. Its object is then unreferenced from the start.
pub(crate) fn appended_nothing(outcome: &CommitOutcome) -> bool {
    outcome.chunks.iter().all(|chunk| match chunk {
        ChunkOutcome::Committed { runs, .. } => runs
            .iter()
            .all(|run| !matches!(run, RunOutcome::Appended { .. })),
        ChunkOutcome::UnknownPartition => true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{PartitionOffsets, ProducerRejection};

    #[test]
    fn commit_windows_follow_the_key_time() {
        let key = strata_segment::naming::segment_key(1_000_000, 1, [0; 16]);
        assert!(!commit_window_closed(&key, 1_000_000 + MAX_COMMIT_AGE_MS));
        assert!(commit_window_closed(&key, 1_000_001 + MAX_COMMIT_AGE_MS));
        assert!(commit_window_closed("not-a-segment-key", 0));
    }

    #[test]
    fn commits_without_appended_runs_are_told_apart() {
        let offsets = PartitionOffsets {
            log_start_offset: 0,
            high_watermark: 0,
        };
        let committed = |runs: Vec<RunOutcome>| ChunkOutcome::Committed { runs, offsets };
        let outcome = |chunks| CommitOutcome {
            chunks,
            already_committed: false,
        };
        assert!(appended_nothing(&outcome(vec![
            ChunkOutcome::UnknownPartition,
            committed(vec![
                RunOutcome::Duplicate { base_offset: 3 },
                RunOutcome::Rejected(ProducerRejection::OutOfOrderSequence),
            ]),
        ])));
        assert!(!appended_nothing(&outcome(vec![
            ChunkOutcome::UnknownPartition,
            committed(vec![RunOutcome::Appended { base_offset: 0 }]),
        ])));
    }
}
