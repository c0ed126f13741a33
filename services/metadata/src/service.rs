//! The gRPC face of the metadata service.
//!
//! Translates `strata.metadata.v1` requests into [`MetadataStore`] calls and publishes every
//! high-watermark change to the `WatchHighWatermarks` subscribers after the commit that made
//! it is durable.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use strata_clock::Clock;
use strata_proto::metadata::v1 as pb;
use strata_proto::metadata::v1::metadata_service_server::MetadataService;
use tokio::sync::broadcast;
use tonic::{Request, Response, Status};

use crate::agents::{AgentRegistry, CacheNodeRegistry};
use crate::group_commit::GroupCommitter;
use crate::groups::{ClientInfo, GroupCoordinator};
use crate::leadership::Leadership;
use crate::metrics::MetadataMetrics;
use crate::segment_pb;
use crate::store::{
    ChunkOutcome, ChunkRow, MetadataStore, PartitionId, PartitionOffsets, SegmentCommit,
    StoreError, TimestampQuery, TopicId, TopicRecord,
};
use crate::topic_rules;

/// Oldest segment object (by the time in its key) that CommitSegment accepts. The orphan
/// collector's grace period must exceed it, so it never deletes an object a commit may
/// still name.
pub const MAX_COMMIT_AGE_MS: i64 = 5 * 60 * 1000;

/// Most index rows one LookupBatches partition returns.
const MAX_LOOKUP_ROWS: u32 = 64;

/// The metadata gRPC service over a store.
pub struct MetadataServiceImpl {
    store: Arc<dyn MetadataStore>,
    clock: Arc<dyn Clock>,
    watermarks: broadcast::Sender<Arc<Vec<pb::PartitionOffsets>>>,
    groups: Arc<GroupCoordinator>,
    committer: GroupCommitter,
    agents: Arc<AgentRegistry>,
    cache_nodes: Arc<CacheNodeRegistry>,
    leadership: Leadership,
    metrics: MetadataMetrics,
}

impl std::fmt::Debug for MetadataServiceImpl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetadataServiceImpl")
            .finish_non_exhaustive()
    }
}

impl MetadataServiceImpl {
    /// A service over `store`; starts the group coordinator's session timer, so it must be
    /// called inside a tokio runtime.
    pub fn new(store: Arc<dyn MetadataStore>, clock: Arc<dyn Clock>) -> Self {
        let (watermarks, _) = broadcast::channel(1024);
        let metrics = MetadataMetrics::default();
        Self {
            groups: GroupCoordinator::start(
                Arc::clone(&store),
                Arc::clone(&clock),
                metrics.clone(),
            ),
            committer: GroupCommitter::start(Arc::clone(&store), metrics.clone()),
            agents: Arc::default(),
            cache_nodes: Arc::default(),
            leadership: Leadership::sole(),
            metrics,
            store,
            clock,
            watermarks,
        }
    }

    /// The service's metrics, to register with the process's registry.
    pub fn metrics(&self) -> &MetadataMetrics {
        &self.metrics
    }

    /// Serves only while `leadership` says so. State that belongs to one leadership term
    /// (consumer groups, the agent and cache-node registries, watch streams) is dropped at every change of
    /// role: a new leader starts from the database alone, and clients rejoin.
    pub fn with_leadership(mut self, leadership: Leadership) -> Self {
        let mut changes = leadership.changes();
        let groups = Arc::downgrade(&self.groups);
        let agents = Arc::downgrade(&self.agents);
        let cache_nodes = Arc::downgrade(&self.cache_nodes);
        tokio::spawn(async move {
            while changes.changed().await.is_ok() {
                let (Some(groups), Some(agents), Some(cache_nodes)) =
                    (groups.upgrade(), agents.upgrade(), cache_nodes.upgrade())
                else {
                    return;
                };
                groups.reset();
                agents.clear();
                cache_nodes.clear();
            }
        });
        self.leadership = leadership;
        self
    }

    /// Whether calls are answered now (see [`Leadership::admit`]).
    pub fn leadership(&self) -> &Leadership {
        &self.leadership
    }
}

impl MetadataServiceImpl {
    /// A retention enforcer over this service's store, publishing the log starts it moves
    /// to this service's high-watermark watchers; start it with
    /// [`crate::retention::RetentionEnforcer::spawn`].
    pub fn retention_enforcer(&self) -> crate::retention::RetentionEnforcer {
        crate::retention::RetentionEnforcer::new(
            Arc::clone(&self.store),
            Arc::clone(&self.clock),
            self.watermarks.clone(),
            self.metrics.clone(),
        )
        .while_serving(self.leadership.clone())
    }

    /// Records the object of a commit that stored no index row as unreferenced, so the
    /// collectors delete it; a failure only delays that and is logged.
    async fn collect_if_empty(&self, object_key: &str, outcome: &crate::store::CommitOutcome) {
        if !crate::objects::appended_nothing(outcome) {
            return;
        }
        if let Err(error) = self
            .store
            .mark_unreferenced(vec![object_key.to_string()])
            .await
        {
            tracing::warn!(object = %object_key, %error, "cannot record an empty commit's object as unreferenced");
        }
    }
}

/// Maps a store error to the gRPC status callers see; exhaustive on purpose.
///
/// Invalid-argument errors also name their kind under [`ERROR_KIND_HEADER`] so the Kafka
/// boundary can pick the exact Kafka error code.
pub fn status_of(err: StoreError) -> Status {
    let message = err.to_string();
    let (mut status, kind) = match err {
        StoreError::TopicExists(_) => (Status::already_exists(message), "topic-exists"),
        StoreError::TopicNotFound(_) => (Status::not_found(message), "topic-not-found"),
        StoreError::InvalidTopic(_) => (Status::invalid_argument(message), "invalid-topic"),
        StoreError::InvalidPartitions(_) => {
            (Status::invalid_argument(message), "invalid-partitions")
        }
        StoreError::InvalidConfig(_) => (Status::invalid_argument(message), "invalid-config"),
        StoreError::InvalidRequest(_) => (Status::invalid_argument(message), "invalid-request"),
        StoreError::NotLeader(_) => (Status::unavailable(message), "not-leader"),
        StoreError::Database(_) => (Status::unavailable(message), "database"),
    };
    status.metadata_mut().insert(
        ERROR_KIND_HEADER,
        tonic::metadata::MetadataValue::from_static(kind),
    );
    status
}

/// gRPC metadata key naming the kind of a failed call's error.
pub const ERROR_KIND_HEADER: &str = "x-strata-error";

fn topic_id(bytes: &[u8]) -> Result<TopicId, Status> {
    TopicId::try_from(bytes).map_err(|_| {
        Status::invalid_argument(format!("topic id must be 16 bytes, got {}", bytes.len()))
    })
}

fn partition_id(topic: &[u8], partition: i32) -> Result<PartitionId, Status> {
    Ok(PartitionId {
        topic_id: topic_id(topic)?,
        partition,
    })
}

/// A topic with every known config's effective value, as the API returns it.
pub(crate) fn topic_to_pb(topic: TopicRecord) -> pb::Topic {
    pb::Topic {
        topic_id: topic.topic_id.to_vec(),
        name: topic.name,
        partition_count: topic.partition_count,
        configs: topic_rules::effective_configs(&topic.configs)
            .into_iter()
            .map(|(name, value, is_default)| pb::ConfigEntry {
                name,
                value,
                is_default,
            })
            .collect(),
        created_at_ms: topic.created_at_ms,
    }
}

fn chunk_to_pb(row: ChunkRow) -> pb::IndexedChunk {
    pb::IndexedChunk {
        object_key: row.object_key,
        byte_offset: row.byte_offset,
        byte_length: row.byte_length,
        raw_offset: row.raw_offset,
        raw_length: row.raw_length,
        base_offset: row.base_offset,
        end_offset: row.end_offset,
        max_timestamp: row.max_timestamp,
    }
}

/// A partition's offsets as the high-watermark stream and GetPartitionOffsets carry them;
/// `None` is reported as UNKNOWN_TOPIC_OR_PARTITION with offsets -1.
pub(crate) fn offsets_to_pb(
    p: PartitionId,
    offsets: Option<PartitionOffsets>,
) -> pb::PartitionOffsets {
    let (error, offsets) = match offsets {
        Some(o) => (pb::PartitionError::None, o),
        None => (
            pb::PartitionError::UnknownTopicOrPartition,
            PartitionOffsets {
                log_start_offset: -1,
                high_watermark: -1,
            },
        ),
    };
    pb::PartitionOffsets {
        topic_id: p.topic_id.to_vec(),
        partition: p.partition,
        error: error as i32,
        log_start_offset: offsets.log_start_offset,
        high_watermark: offsets.high_watermark,
    }
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::HighWatermarkUpdate, Status>> + Send>>;

#[tonic::async_trait]
impl MetadataService for MetadataServiceImpl {
    async fn create_topic(
        &self,
        request: Request<pb::CreateTopicRequest>,
    ) -> Result<Response<pb::CreateTopicResponse>, Status> {
        let req = request.into_inner();
        let configs: BTreeMap<String, String> = req.configs.into_iter().collect();
        topic_rules::validate_name(&req.name).map_err(status_of)?;
        topic_rules::validate_partition_count(req.partition_count).map_err(status_of)?;
        topic_rules::validate_configs(&configs).map_err(status_of)?;
        let record = TopicRecord {
            topic_id: *uuid::Uuid::new_v4().as_bytes(),
            name: req.name,
            partition_count: req.partition_count,
            configs,
            created_at_ms: self.clock.now_millis(),
        };
        if req.validate_only {
            if let Some(existing) = self
                .store
                .topic_by_name(&record.name)
                .await
                .map_err(status_of)?
            {
                return Err(status_of(StoreError::TopicExists(existing.name)));
            }
            return Ok(Response::new(pb::CreateTopicResponse {
                topic: Some(topic_to_pb(record)),
            }));
        }
        let created = self.store.create_topic(record).await.map_err(status_of)?;
        tracing::info!(topic = %created.name, partitions = created.partition_count, "topic created");
        let snapshot = (0..created.partition_count)
            .map(|partition| {
                let p = PartitionId {
                    topic_id: created.topic_id,
                    partition,
                };
                offsets_to_pb(
                    p,
                    Some(PartitionOffsets {
                        log_start_offset: 0,
                        high_watermark: 0,
                    }),
                )
            })
            .collect();
        let _ = self.watermarks.send(Arc::new(snapshot));
        Ok(Response::new(pb::CreateTopicResponse {
            topic: Some(topic_to_pb(created)),
        }))
    }

    async fn delete_topic(
        &self,
        request: Request<pb::DeleteTopicRequest>,
    ) -> Result<Response<pb::DeleteTopicResponse>, Status> {
        let name = request.into_inner().name;
        topic_rules::validate_name(&name).map_err(status_of)?;
        let id = self.store.delete_topic(&name).await.map_err(status_of)?;
        tracing::info!(topic = %name, "topic deleted");
        Ok(Response::new(pb::DeleteTopicResponse {
            topic_id: id.to_vec(),
        }))
    }

    async fn list_topics(
        &self,
        _request: Request<pb::ListTopicsRequest>,
    ) -> Result<Response<pb::ListTopicsResponse>, Status> {
        let topics = self.store.list_topics().await.map_err(status_of)?;
        Ok(Response::new(pb::ListTopicsResponse {
            topics: topics.into_iter().map(topic_to_pb).collect(),
        }))
    }

    async fn get_topic(
        &self,
        request: Request<pb::GetTopicRequest>,
    ) -> Result<Response<pb::GetTopicResponse>, Status> {
        let (found, wanted) = match request.into_inner().key {
            Some(pb::get_topic_request::Key::Name(name)) => {
                topic_rules::validate_name(&name).map_err(status_of)?;
                let found = self.store.topic_by_name(&name).await.map_err(status_of)?;
                (found, format!("{name:?}"))
            }
            Some(pb::get_topic_request::Key::TopicId(id)) => {
                let id = topic_id(&id)?;
                let found = self.store.topic_by_id(id).await.map_err(status_of)?;
                (found, format!("with id {}", uuid::Uuid::from_bytes(id)))
            }
            None => return Err(Status::invalid_argument("a topic name or id is required")),
        };
        let topic = found.ok_or_else(|| status_of(StoreError::TopicNotFound(wanted)))?;
        Ok(Response::new(pb::GetTopicResponse {
            topic: Some(topic_to_pb(topic)),
        }))
    }

    async fn commit_segment(
        &self,
        request: Request<pb::CommitSegmentRequest>,
    ) -> Result<Response<pb::CommitSegmentResponse>, Status> {
        let req = request.into_inner();
        if req.object_key.is_empty() {
            return Err(Status::invalid_argument("object_key is required"));
        }
        if let Some(written) = strata_segment::naming::segment_key_time(&req.object_key) {
            let age = self.clock.now_millis() - written;
            if age > MAX_COMMIT_AGE_MS {
                return Err(Status::failed_precondition(format!(
                    "object {} was written {age} ms ago; objects older than {MAX_COMMIT_AGE_MS} ms may be collected as orphans and are not committed",
                    req.object_key
                )));
            }
        }
        let chunks = req
            .chunks
            .iter()
            .map(segment_pb::chunk_from_pb)
            .collect::<Result<Vec<_>, Status>>()?;
        let commit = SegmentCommit {
            object_key: req.object_key,
            object_size: req.object_size,
            chunks,
            committed_at_ms: self.clock.now_millis(),
        };
        let started = std::time::Instant::now();
        let outcome = match self.committer.commit(commit.clone()).await {
            Ok(outcome) => outcome,
            Err(error) => {
                self.metrics.commit_failures.inc();
                return Err(status_of(error));
            }
        };
        self.metrics
            .commit_seconds
            .observe(started.elapsed().as_secs_f64());
        if outcome.already_committed {
            self.metrics.commit_replays.inc();
        } else {
            self.metrics.commits.inc();
        }
        self.collect_if_empty(&commit.object_key, &outcome).await;
        let mut results = Vec::with_capacity(outcome.chunks.len());
        let mut changed = Vec::new();
        for (chunk, result) in commit.chunks.iter().zip(&outcome.chunks) {
            let p = chunk.partition;
            if let ChunkOutcome::Committed { offsets, .. } = result {
                changed.push(offsets_to_pb(p, Some(*offsets)));
            }
            results.push(segment_pb::chunk_result_to_pb(p, result));
        }
        if !changed.is_empty() && !outcome.already_committed {
            let _ = self.watermarks.send(Arc::new(changed));
        }
        Ok(Response::new(pb::CommitSegmentResponse {
            chunks: results,
            already_committed: outcome.already_committed,
        }))
    }

    async fn lookup_batches(
        &self,
        request: Request<pb::LookupBatchesRequest>,
    ) -> Result<Response<pb::LookupBatchesResponse>, Status> {
        let mut partitions = Vec::new();
        for fetch in request.into_inner().partitions {
            let p = partition_id(&fetch.topic_id, fetch.partition)?;
            let found = self
                .store
                .lookup_chunks(p, fetch.offset, fetch.max_bytes, MAX_LOOKUP_ROWS)
                .await
                .map_err(status_of)?;
            let (offsets, rows) = match found {
                Some((offsets, rows)) => (Some(offsets), rows),
                None => (None, Vec::new()),
            };
            let head = offsets_to_pb(p, offsets);
            partitions.push(pb::PartitionChunks {
                topic_id: head.topic_id,
                partition: head.partition,
                error: head.error,
                log_start_offset: head.log_start_offset,
                high_watermark: head.high_watermark,
                chunks: rows.into_iter().map(chunk_to_pb).collect(),
            });
        }
        Ok(Response::new(pb::LookupBatchesResponse { partitions }))
    }

    async fn lookup_by_timestamp(
        &self,
        request: Request<pb::LookupByTimestampRequest>,
    ) -> Result<Response<pb::LookupByTimestampResponse>, Status> {
        let req = request.into_inner();
        let part = req
            .partition
            .ok_or_else(|| Status::invalid_argument("partition is required"))?;
        let p = partition_id(&part.topic_id, part.partition)?;
        let query = if req.max_timestamp {
            TimestampQuery::Max
        } else {
            TimestampQuery::AtOrAfter(req.timestamp)
        };
        let found = self
            .store
            .chunk_by_timestamp(p, query)
            .await
            .map_err(status_of)?;
        let (offsets, chunk) = match found {
            Some((offsets, chunk)) => (Some(offsets), chunk),
            None => (None, None),
        };
        let head = offsets_to_pb(p, offsets);
        Ok(Response::new(pb::LookupByTimestampResponse {
            error: head.error,
            chunk: chunk.map(chunk_to_pb),
            log_start_offset: head.log_start_offset,
            high_watermark: head.high_watermark,
        }))
    }

    async fn get_partition_offsets(
        &self,
        request: Request<pb::GetPartitionOffsetsRequest>,
    ) -> Result<Response<pb::GetPartitionOffsetsResponse>, Status> {
        let ids = request
            .into_inner()
            .partitions
            .iter()
            .map(|p| partition_id(&p.topic_id, p.partition))
            .collect::<Result<Vec<_>, Status>>()?;
        let offsets = self
            .store
            .partition_offsets(&ids)
            .await
            .map_err(status_of)?;
        Ok(Response::new(pb::GetPartitionOffsetsResponse {
            partitions: ids
                .into_iter()
                .zip(offsets)
                .map(|(p, o)| offsets_to_pb(p, o))
                .collect(),
        }))
    }

    async fn init_producer_id(
        &self,
        request: Request<pb::InitProducerIdRequest>,
    ) -> Result<Response<pb::InitProducerIdResponse>, Status> {
        let req = request.into_inner();
        let current = if req.producer_id >= 0 {
            let epoch = i16::try_from(req.epoch)
                .map_err(|_| Status::invalid_argument("epoch must fit in 16 bits"))?;
            Some((req.producer_id, epoch))
        } else {
            None
        };
        match self.store.init_producer(current).await.map_err(status_of)? {
            Ok((producer_id, epoch)) => Ok(Response::new(pb::InitProducerIdResponse {
                producer_id,
                epoch: i32::from(epoch),
            })),
            Err(rejection) => Err(Status::failed_precondition(format!(
                "{rejection:?}: not the producer's current epoch"
            ))),
        }
    }

    async fn group_call(
        &self,
        request: Request<pb::GroupCallRequest>,
    ) -> Result<Response<pb::GroupCallResponse>, Status> {
        let req = request.into_inner();
        let (Ok(api_key), Ok(version)) =
            (i16::try_from(req.api_key), i16::try_from(req.api_version))
        else {
            return Err(Status::invalid_argument(
                "api key and version must fit in 16 bits",
            ));
        };
        let client = ClientInfo {
            client_id: req.client_id,
            client_host: req.client_host,
        };
        let body = self
            .groups
            .call(api_key, version, req.body.into(), client)
            .await
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        Ok(Response::new(pb::GroupCallResponse {
            body: body.to_vec(),
        }))
    }

    async fn committed_objects(
        &self,
        request: Request<pb::CommittedObjectsRequest>,
    ) -> Result<Response<pb::CommittedObjectsResponse>, Status> {
        let keys = request.into_inner().object_keys;
        let committed = self
            .store
            .committed_objects(keys)
            .await
            .map_err(status_of)?;
        Ok(Response::new(pb::CommittedObjectsResponse { committed }))
    }

    async fn agent_heartbeat(
        &self,
        request: Request<pb::AgentHeartbeatRequest>,
    ) -> Result<Response<pb::AgentHeartbeatResponse>, Status> {
        let req = request.into_inner();
        let agent = req
            .agent
            .ok_or_else(|| Status::invalid_argument("agent is required"))?;
        let lease = std::time::Duration::from_millis(u64::from(req.lease_ms));
        let now = tokio::time::Instant::now();
        match self.agents.heartbeat(agent, lease, now) {
            Ok(agents) => {
                self.metrics.agents.set(agents.len() as i64);
                let cache_nodes = self.cache_nodes.live(now);
                Ok(Response::new(pb::AgentHeartbeatResponse {
                    agents,
                    cache_nodes,
                }))
            }
            Err(error) => Err(Status::already_exists(error.to_string())),
        }
    }

    async fn cache_node_heartbeat(
        &self,
        request: Request<pb::CacheNodeHeartbeatRequest>,
    ) -> Result<Response<pb::CacheNodeHeartbeatResponse>, Status> {
        let req = request.into_inner();
        let node = req
            .node
            .ok_or_else(|| Status::invalid_argument("node is required"))?;
        if node.address.is_empty() {
            return Err(Status::invalid_argument("node.address is required"));
        }
        let lease = std::time::Duration::from_millis(u64::from(req.lease_ms));
        let nodes = self
            .cache_nodes
            .heartbeat(node, lease, tokio::time::Instant::now());
        self.metrics.cache_nodes.set(nodes.len() as i64);
        Ok(Response::new(pb::CacheNodeHeartbeatResponse { nodes }))
    }

    async fn alter_topic_configs(
        &self,
        request: Request<pb::AlterTopicConfigsRequest>,
    ) -> Result<Response<pb::AlterTopicConfigsResponse>, Status> {
        let response =
            crate::topic_configs::alter(self.store.as_ref(), request.into_inner()).await?;
        Ok(Response::new(response))
    }

    async fn delete_records(
        &self,
        request: Request<pb::DeleteRecordsRequest>,
    ) -> Result<Response<pb::DeleteRecordsResponse>, Status> {
        let response = crate::retention::delete_records(
            self.store.as_ref(),
            &self.watermarks,
            request.into_inner(),
        )
        .await?;
        Ok(Response::new(response))
    }

    async fn list_unreferenced_objects(
        &self,
        request: Request<pb::ListUnreferencedObjectsRequest>,
    ) -> Result<Response<pb::ListUnreferencedObjectsResponse>, Status> {
        let response = crate::objects::list(
            self.store.as_ref(),
            self.clock.as_ref(),
            request.into_inner(),
        )
        .await?;
        Ok(Response::new(response))
    }

    async fn forget_objects(
        &self,
        request: Request<pb::ForgetObjectsRequest>,
    ) -> Result<Response<pb::ForgetObjectsResponse>, Status> {
        let response = crate::objects::forget(
            self.store.as_ref(),
            self.clock.as_ref(),
            request.into_inner(),
        )
        .await?;
        Ok(Response::new(response))
    }

    async fn replace_chunks(
        &self,
        request: Request<pb::ReplaceChunksRequest>,
    ) -> Result<Response<pb::ReplaceChunksResponse>, Status> {
        let response = crate::compaction::replace(
            self.store.as_ref(),
            self.clock.as_ref(),
            request.into_inner(),
        )
        .await?;
        Ok(Response::new(response))
    }

    type WatchHighWatermarksStream = WatchStream;

    async fn watch_high_watermarks(
        &self,
        _request: Request<pb::WatchHighWatermarksRequest>,
    ) -> Result<Response<Self::WatchHighWatermarksStream>, Status> {
        // subscribe before the snapshot so no change between the two is missed
        let mut updates = self.watermarks.subscribe();
        // the stream belongs to this leadership term: it ends with it
        let mut term = self.leadership.changes();
        term.borrow_and_update();
        let store = Arc::clone(&self.store);
        let first = snapshot(store.as_ref()).await?;
        let stream = async_stream_of(move |tx| async move {
            if tx.send(Ok(first)).await.is_err() {
                return;
            }
            loop {
                let update = tokio::select! {
                    update = updates.recv() => update,
                    _ = term.changed() => {
                        let ended = Status::unavailable("the metadata leader changed; reconnect");
                        let _ = tx.send(Err(ended)).await;
                        return;
                    }
                };
                let next = match update {
                    Ok(changed) => Ok(pb::HighWatermarkUpdate {
                        partitions: changed.as_ref().clone(),
                    }),
                    Err(broadcast::error::RecvError::Lagged(_)) => snapshot(store.as_ref()).await,
                    Err(broadcast::error::RecvError::Closed) => return,
                };
                if tx.send(next).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(stream))
    }
}

async fn snapshot(store: &dyn MetadataStore) -> Result<pb::HighWatermarkUpdate, Status> {
    let all = store.all_partition_offsets().await.map_err(status_of)?;
    Ok(pb::HighWatermarkUpdate {
        partitions: all
            .into_iter()
            .map(|(p, o)| offsets_to_pb(p, Some(o)))
            .collect(),
    })
}

/// Runs `producer` in a task feeding a bounded channel, exposed as a stream.
fn async_stream_of<F, Fut>(producer: F) -> WatchStream
where
    F: FnOnce(tokio::sync::mpsc::Sender<Result<pb::HighWatermarkUpdate, Status>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(producer(tx));
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
}
