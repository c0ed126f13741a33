//! Replay throughput of the fetch path from a local-directory bucket.
//!
//! Setup (once): a metadata service (SQLite in memory, real gRPC on loopback), a bucket in a
//! temporary directory, and one agent that produces `STRATA_BENCH_REPLAY_MB` MiB (default
//! 64) of 1 KiB incompressible records over 4 partitions, in batches of 64 records, into
//! multi-partition segments of about `STRATA_BENCH_SEGMENT_KB` KiB (default 256: the small
//! segments of a lightly loaded agent; 8192 is a busy agent's `flush_bytes`).
//!
//! Each measured iteration starts a *fresh* agent (empty caches) on the same metadata and
//! bucket and lets `C` consumers (one connection each, one fetch in flight, librdkafka's
//! default sizes: 50 MiB per fetch, 1 MiB per partition) read every partition from offset 0
//! to the high watermark; it ends when all have. Throughput counts record-batch bytes
//! delivered to all consumers. The client does no per-record work, so the figure is the
//! agent's. Bucket GETs per GB served are printed after each benchmark.
//!
//! ```sh
//! cargo bench -p strata-agent --bench replay -- --warm-up-time 1 --measurement-time 20
//! STRATA_BENCH_SEGMENT_KB=8192 cargo bench -p strata-agent --bench replay -- --warm-up-time 1
//! ```
//!
//! `STRATA_BENCH_COMPRESSIBLE=1` makes values compress about fourfold (zstd chunks), and
//! `STRATA_BENCH_DECODED_CACHE_BYTES` sets the reading agent's decoded-chunk cache.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, CreateTopicsRequest, CreateTopicsResponse, FetchRequest, FetchResponse, ProduceRequest,
    ProduceResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use strata_agent::metadata_client::MetadataClient;
use strata_agent::{Agent, AgentConfig};
use strata_storage::{Bucket, CountingStore};
use support::{encode_batch, Conn};
use tokio::net::TcpListener;

const TOPIC: &str = "replay";
const PARTITIONS: i32 = 4;
const RECORD_BYTES: usize = 1024;
const RECORDS_PER_BATCH: usize = 64;
const FETCH_VERSION: i16 = 12;
const PRODUCE_VERSION: i16 = 9;

/// Tiny deterministic xorshift64 generator, so inputs are reproducible.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn bytes(&mut self, n: usize) -> Bytes {
        let mut out = Vec::with_capacity(n + 8);
        while out.len() < n {
            out.extend_from_slice(&self.next().to_le_bytes());
        }
        out.truncate(n);
        Bytes::from(out)
    }

    /// `n` bytes of words drawn from a small vocabulary: compresses about fourfold.
    fn text(&mut self, n: usize) -> Bytes {
        const WORDS: [&str; 16] = [
            "alpha ",
            "bravo ",
            "charlie ",
            "delta ",
            "echo ",
            "foxtrot ",
            "golf ",
            "hotel ",
            "india ",
            "juliett ",
            "kilo ",
            "lima ",
            "mike ",
            "november ",
            "oscar ",
            "papa ",
        ];
        let mut out = Vec::with_capacity(n + 16);
        while out.len() < n {
            out.extend_from_slice(WORDS[(self.next() % 16) as usize].as_bytes());
        }
        out.truncate(n);
        Bytes::from(out)
    }
}

/// Benchmark settings from the environment.
#[derive(Debug, Clone, Copy)]
struct Settings {
    /// MiB of record batches in the topic (`STRATA_BENCH_REPLAY_MB`, 64).
    history_mb: u64,
    /// Segment object size in KiB (`STRATA_BENCH_SEGMENT_KB`, 256).
    segment_kb: u64,
    /// The reading agent's decoded-chunk cache (`STRATA_BENCH_DECODED_CACHE_BYTES`,
    /// the agent's default).
    decoded_cache_bytes: u64,
    /// Values compress about fourfold instead of not at all (`STRATA_BENCH_COMPRESSIBLE=1`).
    compressible: bool,
}

impl Settings {
    fn from_env() -> Self {
        let setting = |name: &str, default: u64| -> u64 {
            std::env::var(name)
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(default)
        };
        Self {
            history_mb: setting("STRATA_BENCH_REPLAY_MB", 64),
            segment_kb: setting("STRATA_BENCH_SEGMENT_KB", 256),
            decoded_cache_bytes: setting(
                "STRATA_BENCH_DECODED_CACHE_BYTES",
                AgentConfig::default().read_decoded_cache_bytes,
            ),
            compressible: setting("STRATA_BENCH_COMPRESSIBLE", 0) == 1,
        }
    }
}

/// Metadata service, bucket and the history, shared by every iteration.
struct World {
    metadata: MetadataClient,
    bucket: Bucket,
    counting: Arc<CountingStore>,
    dir: tempfile::TempDir,
    /// Record-batch bytes in the topic.
    bytes: u64,
    /// High watermark of each partition.
    ends: Vec<i64>,
    settings: Settings,
    next_node: AtomicU64,
}

struct Node {
    addr: std::net::SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    serving: tokio::task::JoinHandle<()>,
}

impl World {
    async fn start(settings: Settings) -> Self {
        let store = Arc::new(strata_metadata::sqlite::SqliteStore::in_memory().unwrap());
        let service = strata_metadata::MetadataServiceImpl::new(store, strata_clock::system());
        let metadata = support::serve_metadata(service).await;
        let dir = tempfile::tempdir().unwrap();
        let url = format!("file://{}", dir.path().join("bucket").display());
        let local = strata_storage::open(&url, &Default::default()).unwrap();
        let counting = Arc::new(CountingStore::new(local.store));
        let bucket = Bucket {
            store: counting.clone(),
            prefix: local.prefix,
        };
        let mut world = Self {
            metadata,
            bucket,
            counting,
            dir,
            bytes: 0,
            ends: vec![0; PARTITIONS as usize],
            settings,
            next_node: AtomicU64::new(1),
        };
        world.produce().await;
        world
    }

    /// A reading agent.
    async fn agent(&self) -> Node {
        self.agent_with(AgentConfig {
            read_decoded_cache_bytes: self.settings.decoded_cache_bytes,
            ..AgentConfig::default()
        })
        .await
    }

    async fn agent_with(&self, config: AgentConfig) -> Node {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let node_id = self.next_node.fetch_add(1, Ordering::Relaxed) as i32;
        let config = AgentConfig {
            kafka_listen: addr,
            advertised_port: addr.port(),
            node_id,
            gc_interval: Duration::ZERO,
            ..config
        };
        let agent = Agent::start(
            config,
            self.metadata.clone(),
            self.bucket.clone(),
            strata_clock::system(),
        );
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let serving = tokio::spawn(agent.serve(listener, async move {
            let _ = stopped.await;
        }));
        Node {
            addr,
            stop,
            serving,
        }
    }

    /// Produces the history into segments of about `segment_kb` KiB (each holding all
    /// partitions), keeping enough produce requests in flight to fill them.
    async fn produce(&mut self) {
        let Settings {
            history_mb,
            segment_kb,
            compressible,
            ..
        } = self.settings;
        let node = self
            .agent_with(AgentConfig {
                flush_bytes: (segment_kb * 1024) as usize,
                flush_interval: Duration::from_secs(1),
                ..AgentConfig::default()
            })
            .await;
        let mut conn = Conn::open(node.addr).await;
        let create = CreateTopicsRequest::default()
            .with_timeout_ms(5_000)
            .with_topics(vec![CreatableTopic::default()
                .with_name(TopicName(StrBytes::from_static_str(TOPIC)))
                .with_num_partitions(PARTITIONS)
                .with_replication_factor(1)]);
        let created: CreateTopicsResponse = conn.call(ApiKey::CreateTopics, 7, &create).await;
        assert_eq!(created.topics[0].error_code, 0);
        let mut rng = XorShift(0x5eed_1234_abcd_0001);
        let pool: Vec<Bytes> = (0..4096)
            .map(|_| {
                if compressible {
                    rng.text(RECORD_BYTES)
                } else {
                    rng.bytes(RECORD_BYTES)
                }
            })
            .collect();
        let target = history_mb * 1024 * 1024;
        let request_bytes = (PARTITIONS as usize * RECORDS_PER_BATCH * RECORD_BYTES) as u64;
        let window = (segment_kb * 1024).div_ceil(request_bytes) as usize + 1;
        let mut in_flight = std::collections::VecDeque::new();
        let mut next = 0usize;
        while self.bytes < target || !in_flight.is_empty() {
            if self.bytes >= target || in_flight.len() >= window {
                let id = in_flight.pop_front().unwrap();
                let response: ProduceResponse =
                    conn.receive(ApiKey::Produce, PRODUCE_VERSION, id).await;
                for p in &response.responses[0].partition_responses {
                    assert_eq!(p.error_code, 0);
                    let end = p.base_offset + RECORDS_PER_BATCH as i64;
                    let at = &mut self.ends[p.index as usize];
                    *at = (*at).max(end);
                }
                continue;
            }
            let partitions: Vec<PartitionProduceData> = (0..PARTITIONS)
                .map(|index| {
                    let batch = batch(&pool, &mut next);
                    self.bytes += batch.len() as u64;
                    PartitionProduceData::default()
                        .with_index(index)
                        .with_records(Some(batch))
                })
                .collect();
            let request = ProduceRequest::default()
                .with_acks(-1)
                .with_timeout_ms(30_000)
                .with_topic_data(vec![TopicProduceData::default()
                    .with_name(TopicName(StrBytes::from_static_str(TOPIC)))
                    .with_partition_data(partitions)]);
            in_flight.push_back(conn.send(ApiKey::Produce, PRODUCE_VERSION, &request).await);
        }
        drop(conn);
        stop(node).await;
    }

    /// Segment objects in the bucket.
    fn objects(&self) -> usize {
        std::fs::read_dir(self.dir.path().join("bucket/segments"))
            .map(|dir| dir.count())
            .unwrap_or(0)
    }

    /// `consumers` readers of the whole topic against a fresh agent; returns (elapsed,
    /// bytes delivered, bucket GETs).
    async fn replay(&self, consumers: usize) -> (Duration, u64, u64) {
        let node = self.agent().await;
        let gets_before = self.counting.gets();
        let started = Instant::now();
        let readers: Vec<_> = (0..consumers)
            .map(|_| tokio::spawn(read_all(node.addr, self.ends.clone())))
            .collect();
        let mut delivered = 0;
        for reader in readers {
            delivered += reader.await.unwrap();
        }
        let elapsed = started.elapsed();
        let gets = self.counting.gets() - gets_before;
        stop(node).await;
        (elapsed, delivered, gets)
    }
}

async fn stop(node: Node) {
    let _ = node.stop.send(());
    node.serving.await.unwrap();
}

fn batch(pool: &[Bytes], next: &mut usize) -> Bytes {
    encode_batch((0..RECORDS_PER_BATCH).map(|_| {
        *next += 1;
        (
            None,
            pool[*next % pool.len()].clone(),
            1_700_000_000_000 + *next as i64,
        )
    }))
}

/// One consumer: fetches every partition from 0 until it reaches `ends`; returns the
/// record-batch bytes it received.
async fn read_all(addr: std::net::SocketAddr, ends: Vec<i64>) -> u64 {
    let mut conn = Conn::open(addr).await;
    let mut offsets = vec![0i64; ends.len()];
    let mut received = 0u64;
    while offsets.iter().zip(&ends).any(|(o, e)| o < e) {
        let partitions = (0..PARTITIONS)
            .filter(|p| offsets[*p as usize] < ends[*p as usize])
            .map(|p| {
                FetchPartition::default()
                    .with_partition(p)
                    .with_fetch_offset(offsets[p as usize])
                    .with_partition_max_bytes(1 << 20)
            })
            .collect();
        let request = FetchRequest::default()
            .with_max_wait_ms(500)
            .with_min_bytes(1)
            .with_max_bytes(50 << 20)
            .with_topics(vec![FetchTopic::default()
                .with_topic(TopicName(StrBytes::from_static_str(TOPIC)))
                .with_partitions(partitions)]);
        let response: FetchResponse = conn.call(ApiKey::Fetch, FETCH_VERSION, &request).await;
        for partition in &response.responses[0].partitions {
            assert_eq!(partition.error_code, 0);
            let Some(records) = &partition.records else {
                continue;
            };
            received += records.len() as u64;
            if let Some(next) = next_offset(records) {
                let at = &mut offsets[partition.partition_index as usize];
                *at = (*at).max(next);
            }
        }
    }
    received
}

/// One past the last offset of the last whole batch in `records`.
fn next_offset(records: &Bytes) -> Option<i64> {
    let mut next = None;
    let mut rest = records.clone();
    while rest.len() >= 61 {
        let base = (&rest[0..8]).get_i64();
        let length = (&rest[8..12]).get_i32() as usize;
        let last_delta = (&rest[23..27]).get_i32();
        if rest.len() < 12 + length {
            break;
        }
        next = Some(base + i64::from(last_delta) + 1);
        rest.advance(12 + length);
    }
    next
}

fn replay(c: &mut Criterion) {
    let settings = Settings::from_env();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let world = runtime.block_on(World::start(settings));
    eprintln!(
        "history: {:.1} MiB in {} segment objects; {settings:?}",
        world.bytes as f64 / 1048576.0,
        world.objects(),
    );
    let mut group = c.benchmark_group("replay");
    group.sample_size(10);
    for consumers in [1usize, 10] {
        group.throughput(Throughput::Bytes(world.bytes * consumers as u64));
        let totals = std::cell::Cell::new((0u64, 0u64));
        group.bench_with_input(
            BenchmarkId::from_parameter(format!("{consumers}-consumers")),
            &consumers,
            |b, &consumers| {
                b.iter_custom(|iters| {
                    let mut elapsed = Duration::ZERO;
                    for _ in 0..iters {
                        let (took, delivered, gets) = runtime.block_on(world.replay(consumers));
                        assert!(delivered >= world.bytes * consumers as u64);
                        let (d, g) = totals.get();
                        totals.set((d + delivered, g + gets));
                        elapsed += took;
                    }
                    elapsed
                })
            },
        );
        let (delivered, gets) = totals.get();
        if delivered > 0 {
            eprintln!(
                "replay/{consumers}-consumers: {gets} bucket GETs for {:.2} GB delivered: \
                 {:.1} GETs per GB served, {:.1} GETs per GB of history",
                delivered as f64 / 1e9,
                gets as f64 / (delivered as f64 / 1e9),
                gets as f64 * consumers as f64 / (delivered as f64 / 1e9),
            );
        }
    }
    group.finish();
}

criterion_group!(benches, replay);
criterion_main!(benches);
