//! The agent's shared state and its start-up.

use std::sync::Arc;

use strata_clock::Clock;
use strata_proto::metadata::v1::metadata_service_client::MetadataServiceClient;
use strata_storage::Bucket;
use tokio::net::TcpListener;
use tonic::transport::Channel;

use crate::config::AgentConfig;
use crate::ingest::Ingest;
use crate::read::ChunkReader;
use crate::topics::TopicCache;
use crate::watermarks::Watermarks;

/// Everything request handlers share.
#[derive(Debug)]
pub struct Agent {
    /// Settings.
    pub config: AgentConfig,
    /// Client of the metadata service.
    pub metadata: MetadataServiceClient<Channel>,
    /// Known topics.
    pub topics: TopicCache,
    /// The open segment and its flusher.
    pub ingest: Ingest,
    /// Reads chunks from the bucket through a cache.
    pub reader: ChunkReader,
    /// High-watermark change notifications.
    pub watermarks: Watermarks,
    /// Wall clock.
    pub clock: Arc<dyn Clock>,
}

impl Agent {
    /// Builds an agent and starts its background tasks (flusher, watermark watch).
    pub fn start(
        config: AgentConfig,
        metadata: MetadataServiceClient<Channel>,
        bucket: Bucket,
        clock: Arc<dyn Clock>,
    ) -> Arc<Self> {
        let watermarks = Watermarks::default();
        watermarks.spawn_watch(metadata.clone());
        let ingest = Ingest::start(&config, bucket.clone(), metadata.clone(), clock.clone(), watermarks.clone());
        Arc::new(Self {
            topics: TopicCache::new(metadata.clone(), config.default_partitions),
            reader: ChunkReader::new(bucket, config.read_cache_bytes),
            ingest,
            watermarks,
            metadata,
            clock,
            config,
        })
    }

    /// Serves Kafka clients on `listener` until `shutdown` resolves, then flushes the open
    /// segment so every accepted batch is committed or answered with an error.
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        tokio::select! {
            () = crate::server::accept_loop(Arc::clone(&self), listener) => {}
            () = shutdown => {}
        }
        self.ingest.shutdown().await;
    }
}
