//! Cache nodes over real gRPC on 127.0.0.1: blocks are read from the bucket by their owner
//! only, and a failed owner costs GETs, never a failed read.
#![allow(clippy::unwrap_used, missing_docs)]

mod support;

use std::sync::Arc;

use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, PutPayload};
use strata_cache::block_cache::MIN_BLOCK_BYTES;
use strata_cache::metrics::OutcomeLabel;
use strata_cache::{BlockCache, ReadMetrics};
use support::{pattern, reader, start_node, Node};

const BLOCK: u64 = MIN_BLOCK_BYTES;

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
    let (agent_a, a_gets, a_metrics) = reader(&memory, &members, BLOCK);
    let (agent_b, b_gets, _) = reader(&memory, &members, BLOCK);
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
    let (agent, agent_gets, metrics) = reader(&memory, &members, BLOCK);
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
    let (agent, agent_gets, metrics) = reader(&memory, &[node.info()], BLOCK);
    read_all(&agent, &keys, len).await;
    assert_eq!(agent_gets.gets(), 4);
    assert_eq!(node.gets.gets(), 0);
    assert_eq!(peer_gets(&metrics, "failed"), 1);
    node.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_block_requests_get_clear_errors() {
    use strata_proto::cache::v1::cache_peer_client::CachePeerClient;
    use strata_proto::cache::v1::GetBlockRequest;
    let (memory, keys) = objects(1, 1).await;
    let node = start_node(&memory, BLOCK).await;
    let mut client = CachePeerClient::connect(format!("http://{}", node.address))
        .await
        .unwrap();
    let ask = |object_key: &str, index: u64, block_bytes: u64| GetBlockRequest {
        object_key: object_key.into(),
        index,
        block_bytes,
    };
    let cases = [
        (ask("", 0, BLOCK), tonic::Code::InvalidArgument),
        (
            ask(&"k".repeat(2000), 0, BLOCK),
            tonic::Code::InvalidArgument,
        ),
        (ask(&keys[0], u64::MAX, BLOCK), tonic::Code::InvalidArgument),
        (ask(&keys[0], 0, BLOCK + 1), tonic::Code::FailedPrecondition),
        (ask("segments/missing", 0, BLOCK), tonic::Code::NotFound),
    ];
    for (request, code) in cases {
        let status = client.get_block(request).await.unwrap_err();
        assert_eq!(status.code(), code, "{status}");
    }
    // the node still serves
    let block = client.get_block(ask(&keys[0], 0, BLOCK)).await.unwrap();
    assert_eq!(block.into_inner().data.len() as u64, BLOCK - 17);
    node.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_object_fails_like_the_bucket_and_the_owner_stays_in_use() {
    let (memory, keys) = objects(2, 1).await;
    let node = start_node(&memory, BLOCK).await;
    let (agent, agent_gets, metrics) = reader(&memory, &[node.info()], BLOCK);
    let err = agent.read("segments/gone", 0..10).await.unwrap_err();
    assert!(err.is_not_found(), "{err}");
    assert_eq!(
        agent_gets.gets(),
        0,
        "the owner's answer is not asked of the bucket again"
    );
    assert_eq!(peer_gets(&metrics, "not_found"), 1);
    // the owner is not skipped: the next block still comes from it
    read_all(&agent, &keys, 2 * BLOCK - 17).await;
    assert_eq!(agent_gets.gets(), 0);
    assert_eq!(peer_gets(&metrics, "ok"), 2);
    node.kill().await;
}
