//! Cache nodes over real gRPC on 127.0.0.1: blocks are read from the bucket by their owner
//! only, and a failed owner costs GETs, never a failed read.
#![allow(clippy::unwrap_used, missing_docs)]

use std::net::SocketAddr;
use std::sync::Arc;

use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, PutPayload};
use strata_cache::block_cache::MIN_BLOCK_BYTES;
use strata_cache::metrics::OutcomeLabel;
use strata_cache::{
    BlockCache, BlockCacheConfig, CacheRing, PeerClients, PeerConfig, PeerService, ReadMetrics,
};
use strata_proto::metadata::v1::CacheNodeInfo;
use strata_storage::{Bucket, CountingStore};
use tokio::sync::oneshot;

const BLOCK: u64 = MIN_BLOCK_BYTES;

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

/// A bucket view with its own GET counter over the shared objects.
fn bucket(memory: &Arc<InMemory>) -> (Bucket, Arc<CountingStore>) {
    let counting = Arc::new(CountingStore::new(memory.clone()));
    let bucket = Bucket {
        store: counting.clone(),
        prefix: Path::default(),
    };
    (bucket, counting)
}

fn cache(bucket: Bucket, block_bytes: u64) -> (BlockCache, ReadMetrics) {
    let metrics = ReadMetrics::default();
    let config = BlockCacheConfig {
        capacity_bytes: 1024 * BLOCK,
        block_bytes,
    };
    (BlockCache::new(bucket, config, metrics.clone()), metrics)
}

/// A cache node serving peers on 127.0.0.1; stops when `stop` is sent or dropped.
struct Node {
    address: SocketAddr,
    gets: Arc<CountingStore>,
    metrics: ReadMetrics,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

async fn start_node(memory: &Arc<InMemory>, block_bytes: u64) -> Node {
    let (bucket, gets) = bucket(memory);
    let (blocks, metrics) = cache(bucket, block_bytes);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let incoming = tonic::transport::server::TcpIncoming::from(listener);
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(PeerService::new(blocks).into_server())
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
        stop: Some(stop),
        task,
    }
}

impl Node {
    fn info(&self) -> CacheNodeInfo {
        CacheNodeInfo {
            address: self.address.to_string(),
            availability_zone: String::new(),
            instance_id: String::new(),
        }
    }

    async fn kill(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.await.unwrap();
    }
}

/// An agent's cache routing its misses over `nodes`.
fn reader(
    memory: &Arc<InMemory>,
    nodes: &[CacheNodeInfo],
) -> (BlockCache, Arc<CountingStore>, ReadMetrics) {
    let (bucket, gets) = bucket(memory);
    let (blocks, metrics) = cache(bucket, BLOCK);
    let ring = CacheRing::new(None, None);
    ring.set_members(nodes);
    let blocks = blocks.with_ring(ring, PeerClients::new(PeerConfig::default()));
    (blocks, gets, metrics)
}

async fn objects(blocks_each: u64, count: usize) -> (Arc<InMemory>, Vec<String>) {
    let memory = Arc::new(InMemory::new());
    let mut keys = Vec::new();
    for i in 0..count {
        let key = format!("segments/{i:03}");
        let len = (blocks_each * BLOCK) as usize - 17;
        memory
            .put(&Path::from(key.as_str()), PutPayload::from(pattern(len)))
            .await
            .unwrap();
        keys.push(key);
    }
    (memory, keys)
}

async fn read_all(cache: &BlockCache, keys: &[String], len: u64) {
    let want = pattern(len as usize);
    for key in keys {
        // uneven reads that straddle block boundaries
        let mut at = 0;
        while at < len {
            let end = (at + BLOCK / 3 + 11).min(len);
            let got = cache.read(key, at..end).await.unwrap();
            assert_eq!(
                got.as_ref(),
                &want[at as usize..end as usize],
                "{key} {at}..{end}"
            );
            at = end;
        }
    }
}

fn peer_gets(metrics: &ReadMetrics, outcome: &'static str) -> u64 {
    metrics
        .peer_gets
        .get_or_create(&OutcomeLabel { outcome })
        .get()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_block_is_read_from_the_bucket_once_by_its_owner() {
    let (memory, keys) = objects(4, 6).await;
    let len = 4 * BLOCK - 17;
    let nodes = [
        start_node(&memory, BLOCK).await,
        start_node(&memory, BLOCK).await,
    ];
    let members: Vec<_> = nodes.iter().map(Node::info).collect();
    let (agent_a, a_gets, a_metrics) = reader(&memory, &members);
    let (agent_b, b_gets, _) = reader(&memory, &members);
    let (a, b) = tokio::join!(
        read_all(&agent_a, &keys, len),
        read_all(&agent_b, &keys, len)
    );
    let ((), ()) = (a, b);
    let blocks = 4 * keys.len() as u64;
    assert_eq!(
        a_gets.gets() + b_gets.gets(),
        0,
        "agents never read the bucket"
    );
    let owner_gets: Vec<u64> = nodes.iter().map(|n| n.gets.gets()).collect();
    assert_eq!(owner_gets.iter().sum::<u64>(), blocks, "{owner_gets:?}");
    assert!(
        owner_gets.iter().all(|g| *g > 0),
        "both nodes own blocks: {owner_gets:?}"
    );
    assert_eq!(peer_gets(&a_metrics, "ok"), blocks);
    let served: u64 = nodes
        .iter()
        .map(|n| n.metrics.peer_served_blocks.get())
        .sum();
    assert_eq!(served, 2 * blocks, "each agent fetched each block once");
    for node in nodes {
        node.kill().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_owner_costs_bucket_gets_not_failed_reads() {
    let (memory, keys) = objects(4, 6).await;
    let len = 4 * BLOCK - 17;
    let alive = start_node(&memory, BLOCK).await;
    let dead = start_node(&memory, BLOCK).await;
    let members = [alive.info(), dead.info()];
    dead.kill().await;
    let (agent, agent_gets, metrics) = reader(&memory, &members);
    read_all(&agent, &keys, len).await;
    let blocks = 4 * keys.len() as u64;
    // the dead node's blocks came from the bucket, the live node's through it
    assert_eq!(agent_gets.gets() + alive.gets.gets(), blocks);
    assert!(agent_gets.gets() > 0);
    assert_eq!(peer_gets(&metrics, "ok"), alive.gets.gets());
    // one failed request, then the dead owner is skipped instead of asked per block
    assert_eq!(peer_gets(&metrics, "failed"), 1);
    assert_eq!(peer_gets(&metrics, "skipped"), agent_gets.gets() - 1);
    alive.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_with_another_block_size_is_refused_and_the_bucket_used() {
    let (memory, keys) = objects(2, 2).await;
    let len = 2 * BLOCK - 17;
    let node = start_node(&memory, 2 * BLOCK).await;
    let (agent, agent_gets, metrics) = reader(&memory, &[node.info()]);
    read_all(&agent, &keys, len).await;
    assert_eq!(agent_gets.gets(), 4);
    assert_eq!(node.gets.gets(), 0);
    assert_eq!(peer_gets(&metrics, "failed"), 1);
    node.kill().await;
}
