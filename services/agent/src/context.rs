//! The agent's shared state and its start-up.

use crate::metadata_client::MetadataClient;
use std::sync::Arc;

use strata_clock::Clock;
use strata_proto::metadata::v1::AgentInfo;
use strata_storage::Bucket;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long a stopping agent waits for connections to write their last responses.
pub const DRAIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

use crate::block_cache::{BlockCache, BlockCacheConfig};
use crate::cluster::{CacheNodeRegistration, ClusterView};
use crate::config::AgentConfig;
use crate::ingest::Ingest;
use crate::metrics::AgentMetrics;
use crate::read::ChunkReader;
use crate::read_ahead::{ReadAhead, ReadAheadConfig};
use crate::topics::TopicCache;
use crate::watermarks::Watermarks;
use strata_cache::{CacheRing, PeerClients};

/// Everything request handlers share.
#[derive(Debug)]
pub struct Agent {
    /// Settings.
    pub config: AgentConfig,
    /// Client of the metadata service.
    pub metadata: MetadataClient,
    /// Known topics.
    pub topics: TopicCache,
    /// The open segment and its flusher.
    pub ingest: Ingest,
    /// The bucket segment objects live in.
    pub bucket: Bucket,
    /// Reads chunks from the bucket through the block cache.
    pub reader: ChunkReader,
    /// The block cache under `reader` and `read_ahead`; it also serves peers when the agent
    /// has the cache role.
    pub blocks: BlockCache,
    /// Loads the next blocks of sequential readers ahead of their fetches.
    pub read_ahead: ReadAhead,
    /// High-watermark change notifications.
    pub watermarks: Watermarks,
    /// Wall clock.
    pub clock: Arc<dyn Clock>,
    /// Prometheus metrics.
    pub metrics: AgentMetrics,
    /// Live agents and partition leaders.
    pub cluster: ClusterView,
    /// Cancelled when the agent stops, ending its background tasks.
    background: CancellationToken,
    /// Cancelled when the agent starts to stop: long polls answer at once.
    pub(crate) stopping: CancellationToken,
}

impl Agent {
    /// Builds an agent and starts its background tasks (flusher, watermark watch).
    pub fn start(
        config: AgentConfig,
        metadata: MetadataClient,
        bucket: Bucket,
        clock: Arc<dyn Clock>,
    ) -> Arc<Self> {
        let watermarks = Watermarks::default();
        let background = CancellationToken::new();
        watermarks.spawn_watch(metadata.clone(), background.clone());
        let me = AgentInfo {
            node_id: config.node_id,
            host: config.advertised_host.clone(),
            port: i32::from(config.advertised_port),
            availability_zone: config.availability_zone.clone().unwrap_or_default(),
            instance_id: uuid::Uuid::new_v4().to_string(),
        };
        let metrics = AgentMetrics::default();
        let ring = CacheRing::new(
            config.cache_advertised_addr.clone(),
            config.availability_zone.clone(),
        );
        let cluster = ClusterView::new(me, config.agent_lease, ring.clone(), metrics.read.clone());
        cluster.spawn_heartbeats(
            metadata.clone(),
            config.heartbeat_interval,
            background.clone(),
        );
        if let Some(address) = &config.cache_advertised_addr {
            let zone = config.availability_zone.clone();
            let registration =
                CacheNodeRegistration::new(address.clone(), zone, config.agent_lease);
            registration.spawn(
                metadata.clone(),
                config.heartbeat_interval,
                background.clone(),
            );
        }
        let ingest = Ingest::start(
            &config,
            bucket.clone(),
            metadata.clone(),
            clock.clone(),
            watermarks.clone(),
            metrics.clone(),
        );
        let blocks = block_cache(&config, bucket.clone(), &metrics, ring);
        let (reader, read_ahead) = read_tier(&config, blocks.clone(), &metrics);
        Arc::new(Self {
            topics: TopicCache::new(
                metadata.clone(),
                config.default_partitions,
                config.auto_create_topics_per_second,
                metrics.listener.auto_create_throttled.clone(),
            ),
            reader,
            read_ahead,
            blocks,
            bucket,
            metrics,
            cluster,
            ingest,
            watermarks,
            metadata,
            clock,
            config,
            background,
            stopping: CancellationToken::new(),
        })
    }

    /// A partition's (log start offset, high watermark), straight from the metadata service.
    pub async fn partition_offsets(
        &self,
        topic: uuid::Uuid,
        partition: i32,
    ) -> Result<(i64, i64), kafka_protocol::error::ResponseError> {
        use kafka_protocol::error::ResponseError;
        use strata_proto::metadata::v1 as pb;
        let request = pb::GetPartitionOffsetsRequest {
            partitions: vec![pb::PartitionRef {
                topic_id: topic.as_bytes().to_vec(),
                partition,
            }],
        };
        let response = self
            .metadata
            .clone()
            .get_partition_offsets(request)
            .await
            .map_err(|_| ResponseError::RequestTimedOut)?
            .into_inner();
        match response.partitions.first() {
            Some(p) if p.error == pb::PartitionError::None as i32 => {
                Ok((p.log_start_offset, p.high_watermark))
            }
            _ => Err(ResponseError::UnknownTopicOrPartition),
        }
    }

    /// True while the agent's link to the metadata service is up.
    pub fn is_ready(&self) -> bool {
        self.watermarks.is_connected() && !self.stopping.is_cancelled()
    }

    /// Serves Kafka clients on `listener` until `shutdown` resolves. Then it stops reading
    /// requests, flushes the open segment so every accepted batch is committed or failed,
    /// and gives connections [`DRAIN_TIMEOUT`] to write the responses they owe.
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        if !self.config.gc_interval.is_zero() {
            let grace = self.config.orphan_grace.max(crate::orphans::MIN_GRACE);
            crate::orphans::spawn_collector(
                Arc::clone(&self),
                self.config.gc_interval,
                grace,
                self.background.clone(),
            );
            crate::unreferenced::spawn_collector(
                Arc::clone(&self),
                self.config.gc_interval,
                self.config.unreferenced_grace,
                self.background.clone(),
            );
        }
        if !self.config.compaction_interval.is_zero() {
            crate::compactor::spawn(
                Arc::clone(&self),
                crate::compactor::CompactionSettings {
                    interval: self.config.compaction_interval,
                    min_age: self.config.compaction_min_age,
                    target_bytes: self.config.compaction_target_bytes.max(1),
                    zstd_level: self.config.zstd_level,
                },
                self.background.clone(),
            );
        }
        let stop = self.stopping.clone();
        let tracker = TaskTracker::new();
        let accepting = tokio::spawn(crate::server::accept_loop(
            Arc::clone(&self),
            listener,
            stop.clone(),
            tracker.clone(),
        ));
        shutdown.await;
        stop.cancel();
        let _ = accepting.await;
        self.ingest.shutdown().await;
        tracker.close();
        if tokio::time::timeout(DRAIN_TIMEOUT, tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("connections still busy after the drain timeout");
        }
        self.background.cancel();
    }
}

/// The agent's block cache, routing misses over `ring` (empty until cache nodes register).
fn block_cache(
    config: &AgentConfig,
    bucket: Bucket,
    metrics: &AgentMetrics,
    ring: CacheRing,
) -> BlockCache {
    let config_blocks = BlockCacheConfig {
        capacity_bytes: config.read_cache_bytes,
        block_bytes: config.read_block_bytes,
    };
    BlockCache::new(bucket, config_blocks, metrics.read.clone())
        .with_ring(ring, PeerClients::new(config.cache_peers))
}

/// The chunk reader and read-ahead over one shared block cache.
fn read_tier(
    config: &AgentConfig,
    blocks: BlockCache,
    metrics: &AgentMetrics,
) -> (ChunkReader, ReadAhead) {
    let read_ahead = ReadAhead::new(
        blocks.clone(),
        ReadAheadConfig {
            bytes: config.read_ahead_bytes,
            concurrency: config.read_ahead_concurrency,
        },
        metrics.read.clone(),
    );
    let reader = ChunkReader::new(blocks, config.read_decoded_cache_bytes, metrics.clone());
    (reader, read_ahead)
}
