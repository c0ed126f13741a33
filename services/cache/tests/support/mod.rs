//! Cache nodes and readers over a shared in-memory bucket, for the peer tests and the peer
//! benchmark: real gRPC on 127.0.0.1, a GET counter per process view of the bucket.
#![allow(dead_code, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::Arc;

use object_store::memory::InMemory;
use object_store::path::Path;
use strata_cache::{
    BlockCache, BlockCacheConfig, CacheRing, PeerClients, PeerConfig, PeerService, ReadMetrics,
};
use strata_proto::metadata::v1::CacheNodeInfo;
use strata_storage::{Bucket, CountingStore};
use tokio::sync::oneshot;

/// Deterministic bytes that differ from offset to offset.
pub fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

/// A bucket view with its own GET counter over the shared objects.
pub fn bucket(memory: &Arc<InMemory>) -> (Bucket, Arc<CountingStore>) {
    let counting = Arc::new(CountingStore::new(memory.clone()));
    let bucket = Bucket {
        store: counting.clone(),
        prefix: Path::default(),
    };
    (bucket, counting)
}

/// A block cache of 1,024 blocks over `bucket`.
pub fn cache(bucket: Bucket, block_bytes: u64) -> (BlockCache, ReadMetrics) {
    let metrics = ReadMetrics::default();
    let config = BlockCacheConfig {
        capacity_bytes: 1024 * block_bytes,
        block_bytes,
    };
    (BlockCache::new(bucket, config, metrics.clone()), metrics)
}

/// A cache node serving peers on 127.0.0.1; stops when killed or dropped.
/// Its address, its bucket GET counter, its metrics and its block cache are public.
pub struct Node {
    pub address: SocketAddr,
    pub gets: Arc<CountingStore>,
    pub metrics: ReadMetrics,
    pub blocks: BlockCache,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

/// Starts a node reading blocks of `block_bytes` from `memory`.
pub async fn start_node(memory: &Arc<InMemory>, block_bytes: u64) -> Node {
    let (bucket, gets) = bucket(memory);
    let (blocks, metrics) = cache(bucket, block_bytes);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    let (stop, stopped) = oneshot::channel::<()>();
    let service = PeerService::new(blocks.clone()).into_server();
    let task = tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming_shutdown(incoming, async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
    });
    Node {
        address,
        gets,
        metrics,
        blocks,
        stop: Some(stop),
        task,
    }
}

impl Node {
    /// The node as the metadata service would list it.
    pub fn info(&self) -> CacheNodeInfo {
        CacheNodeInfo {
            address: self.address.to_string(),
            availability_zone: String::new(),
            instance_id: String::new(),
        }
    }

    /// Stops the server and waits for it.
    pub async fn kill(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.await.unwrap();
    }
}

/// An agent's cache of `block_bytes` blocks routing its misses over `nodes`.
pub fn reader(
    memory: &Arc<InMemory>,
    nodes: &[CacheNodeInfo],
    block_bytes: u64,
) -> (BlockCache, Arc<CountingStore>, ReadMetrics) {
    let (bucket, gets) = bucket(memory);
    let (blocks, metrics) = cache(bucket, block_bytes);
    let ring = CacheRing::new(None, None);
    ring.set_members(nodes);
    let blocks = blocks.with_ring(ring, PeerClients::new(PeerConfig::default()));
    (blocks, gets, metrics)
}
