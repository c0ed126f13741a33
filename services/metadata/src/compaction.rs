//! Serves ReplaceChunks, compaction's index swap: converts the request, refuses objects
//! too old to be recorded, and hands the swap to the store
//! ([`crate::store::MetadataStore::replace_chunks`], whose rules are
//! [`crate::replace_rules`]).
//!
//! The age check is what makes a compactor killed (or stalled) between its upload and this
//! call safe: the orphan collector deletes only uncommitted objects older than its grace,
//! which is longer than [`MAX_COMMIT_AGE_MS`], and an object older than that is never
//! recorded here; so an object is either recorded or deleted, never both.

use strata_clock::Clock;
use strata_proto::metadata::v1 as pb;
use tonic::Status;

use crate::service::{status_of, MAX_COMMIT_AGE_MS};
use crate::store::{
    ChunkReplacement, ChunkRow, ExpectedRow, MetadataStore, PartitionId, ReplaceOutcome,
    ReplacementObject, TopicId,
};

/// Serves ReplaceChunks.
pub(crate) async fn replace(
    store: &dyn MetadataStore,
    clock: &dyn Clock,
    request: pb::ReplaceChunksRequest,
) -> Result<pb::ReplaceChunksResponse, Status> {
    let replacement = from_pb(request, clock.now_millis())?;
    let outcome = store.replace_chunks(replacement).await.map_err(status_of)?;
    Ok(to_pb(outcome))
}

/// The store request for `request`, checked for a key young enough to be recorded.
fn from_pb(request: pb::ReplaceChunksRequest, now_ms: i64) -> Result<ChunkReplacement, Status> {
    if request.object_key.is_empty() {
        return Err(Status::invalid_argument("object_key is required"));
    }
    if let Some(written) = strata_segment::naming::segment_key_time(&request.object_key) {
        let age = now_ms - written;
        if age > MAX_COMMIT_AGE_MS {
            return Err(Status::failed_precondition(format!(
                "object {} was written {age} ms ago; objects older than {MAX_COMMIT_AGE_MS} ms may be collected as orphans and are not recorded",
                request.object_key
            )));
        }
    }
    let partition = request
        .partition
        .ok_or_else(|| Status::invalid_argument("partition is required"))?;
    let topic_id = TopicId::try_from(partition.topic_id.as_slice()).map_err(|_| {
        Status::invalid_argument(format!(
            "topic id must be 16 bytes, got {}",
            partition.topic_id.len()
        ))
    })?;
    Ok(ChunkReplacement {
        partition: PartitionId {
            topic_id,
            partition: partition.partition,
        },
        expected: request
            .expected
            .into_iter()
            .map(|e| ExpectedRow {
                base_offset: e.base_offset,
                end_offset: e.end_offset,
                object_key: e.object_key,
            })
            .collect(),
        object: ReplacementObject {
            object_key: request.object_key,
            object_size: request.object_size,
            committed_at_ms: now_ms,
        },
        rows: request
            .new_chunks
            .into_iter()
            .map(|c| ChunkRow {
                object_key: c.object_key,
                byte_offset: c.byte_offset,
                byte_length: c.byte_length,
                raw_offset: c.raw_offset,
                raw_length: c.raw_length,
                base_offset: c.base_offset,
                end_offset: c.end_offset,
                max_timestamp: c.max_timestamp,
            })
            .collect(),
    })
}

fn to_pb(outcome: ReplaceOutcome) -> pb::ReplaceChunksResponse {
    let mut response = pb::ReplaceChunksResponse::default();
    match outcome {
        ReplaceOutcome::Replaced { unreferenced } => {
            response.set_status(pb::ReplaceStatus::Replaced);
            response.unreferenced = unreferenced;
        }
        ReplaceOutcome::AlreadyApplied => response.set_status(pb::ReplaceStatus::AlreadyApplied),
        ReplaceOutcome::Conflict { reason } => {
            response.set_status(pb::ReplaceStatus::Conflict);
            response.conflict_reason = reason;
        }
        ReplaceOutcome::UnknownPartition => {
            response.set_status(pb::ReplaceStatus::UnknownPartition)
        }
    }
    response
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn request(key: String) -> pb::ReplaceChunksRequest {
        pb::ReplaceChunksRequest {
            partition: Some(pb::PartitionRef {
                topic_id: vec![1; 16],
                partition: 0,
            }),
            expected: vec![pb::ExpectedChunk {
                base_offset: 0,
                end_offset: 3,
                object_key: "old".into(),
            }],
            object_key: key.clone(),
            object_size: 10,
            new_chunks: vec![pb::IndexedChunk {
                object_key: key,
                byte_offset: 0,
                byte_length: 10,
                raw_offset: 0,
                raw_length: 20,
                base_offset: 0,
                end_offset: 3,
                max_timestamp: 5,
            }],
        }
    }

    #[test]
    fn objects_past_the_commit_age_are_refused() {
        let key = strata_segment::naming::segment_key(1_000, 1, [0; 16]);
        let fresh = from_pb(request(key.clone()), 1_000 + MAX_COMMIT_AGE_MS).unwrap();
        assert_eq!(fresh.object.committed_at_ms, 1_000 + MAX_COMMIT_AGE_MS);
        assert_eq!(fresh.rows.len(), 1);
        let stale = from_pb(request(key), 1_001 + MAX_COMMIT_AGE_MS).unwrap_err();
        assert_eq!(stale.code(), tonic::Code::FailedPrecondition);
    }

    #[test]
    fn outcomes_map_to_statuses() {
        let conflict = to_pb(ReplaceOutcome::Conflict {
            reason: "moved".into(),
        });
        assert_eq!(conflict.status(), pb::ReplaceStatus::Conflict);
        assert_eq!(conflict.conflict_reason, "moved");
        let replaced = to_pb(ReplaceOutcome::Replaced {
            unreferenced: vec!["a".into()],
        });
        assert_eq!(replaced.status(), pb::ReplaceStatus::Replaced);
        assert_eq!(replaced.unreferenced, ["a"]);
    }
}
