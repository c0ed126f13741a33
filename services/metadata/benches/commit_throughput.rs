//! Segment commits per second and commit latency through the metadata gRPC service.
//!
//! Starts the real metadata service in-process on 127.0.0.1 over a fresh SQLite database
//! and, when a PostgreSQL server is named, a fresh PostgreSQL database, then drives
//! CommitSegment over gRPC as agents do. Every commit carries one chunk for each of the
//! topic's 10 partitions, so all committers contend for the same partitions (the worst
//! case for the sequencer, and what many agents taking produce for the same partitions do).
//!
//! Two runs per store:
//! - closed loop: 1, 8 and 64 committers, each sending its next commit as soon as the
//!   last one returned; reports commits/s and latency p50/p99;
//! - open loop: commits started on a fixed schedule (1,000/s by default) whatever the
//!   latency, each measured from its scheduled start, so queueing is not hidden.
//!
//! Usage:
//!   cargo bench -p strata-metadata --bench commit_throughput -- [--seconds N] [--rate R]
//!       [--committers 1,8,64] [--store sqlite|postgres|both]
//! PostgreSQL: STRATA_BENCH_POSTGRES_URL (or STRATA_TEST_POSTGRES_URL) names a server on
//! which the benchmark may create a database, e.g. the one `scripts/postgres.sh start DIR`
//! prints (PG_DURABLE=1 at its first start keeps fsync on, for durable-commit figures).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use strata_metadata::postgres::PostgresStore;
use strata_metadata::sqlite::SqliteStore;
use strata_metadata::store::MetadataStore;
use strata_metadata::MetadataServiceImpl;
use strata_proto::metadata::v1 as pb;
use strata_proto::metadata::v1::metadata_service_client::MetadataServiceClient;
use tonic::transport::Channel;

const PARTITIONS: i32 = 10;

struct Options {
    seconds: u64,
    rate: u64,
    committers: Vec<usize>,
    sqlite: bool,
    postgres: bool,
}

fn options() -> Options {
    let mut o = Options {
        seconds: 10,
        rate: 1_000,
        committers: vec![1, 8, 64],
        sqlite: true,
        postgres: true,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let value = args.get(i + 1).cloned().unwrap_or_default();
        match args[i].as_str() {
            "--seconds" => o.seconds = value.parse().expect("--seconds N"),
            "--rate" => o.rate = value.parse().expect("--rate R"),
            "--committers" => {
                o.committers = value
                    .split(',')
                    .map(|n| n.parse().expect("--committers 1,8,64"))
                    .collect()
            }
            "--store" => {
                o.sqlite = value == "sqlite" || value == "both";
                o.postgres = value == "postgres" || value == "both";
            }
            // cargo bench passes --bench; anything else is ignored like libtest filters
            _ => {
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    o
}

#[tokio::main]
async fn main() {
    let o = options();
    println!(
        "# commit_throughput: {PARTITIONS} partitions per commit, {} s per run",
        o.seconds
    );
    if o.sqlite {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("metadata.db")).unwrap();
        run_store("sqlite", Arc::new(store), &o).await;
    }
    if o.postgres {
        let server = std::env::var("STRATA_BENCH_POSTGRES_URL")
            .or_else(|_| std::env::var("STRATA_TEST_POSTGRES_URL"));
        match server {
            Ok(server) => {
                let name = format!("strata_bench_{}", uuid::Uuid::new_v4().simple());
                let url = strata_metadata::postgres::create_database(&server, &name)
                    .await
                    .unwrap();
                let store = PostgresStore::connect_with(url).await.unwrap();
                run_store("postgres", Arc::new(store), &o).await;
            }
            Err(_) => println!(
                "# postgres: skipped (set STRATA_BENCH_POSTGRES_URL or STRATA_TEST_POSTGRES_URL)"
            ),
        }
    }
}

async fn run_store(name: &str, store: Arc<dyn MetadataStore>, o: &Options) {
    let (client, topic_id) = serve(store).await;
    let topic_id: Arc<[u8]> = topic_id.into();
    for &committers in &o.committers {
        let started = Instant::now();
        let deadline = started + Duration::from_secs(o.seconds);
        let tasks: Vec<_> = (0..committers)
            .map(|_| {
                let (client, topic_id) = (client.clone(), Arc::clone(&topic_id));
                tokio::spawn(async move {
                    let mut latencies = histogram();
                    while Instant::now() < deadline {
                        let begun = Instant::now();
                        commit(&client, &topic_id).await;
                        record(&mut latencies, begun.elapsed());
                    }
                    latencies
                })
            })
            .collect();
        let mut all = histogram();
        for task in tasks {
            all.add(task.await.unwrap()).unwrap();
        }
        report(
            name,
            &format!("{committers} committers"),
            &all,
            started.elapsed(),
        );
    }
    // open loop at a fixed rate: each commit timed from its scheduled start
    let interval = Duration::from_secs_f64(1.0 / o.rate as f64);
    let count = o.rate * o.seconds;
    let started = Instant::now();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    for i in 0..count {
        let scheduled = started + interval.mul_f64(i as f64);
        tokio::time::sleep_until(scheduled.into()).await;
        let (client, tx, topic_id) = (client.clone(), tx.clone(), Arc::clone(&topic_id));
        tokio::spawn(async move {
            commit(&client, &topic_id).await;
            let _ = tx.send(scheduled.elapsed());
        });
    }
    drop(tx);
    let mut all = histogram();
    while let Some(latency) = rx.recv().await {
        record(&mut all, latency);
    }
    report(
        name,
        &format!("{}/s fixed rate", o.rate),
        &all,
        started.elapsed(),
    );
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).unwrap()
}

fn record(h: &mut Histogram<u64>, latency: Duration) {
    h.saturating_record(u64::try_from(latency.as_micros()).unwrap_or(u64::MAX));
}

fn report(store: &str, run: &str, h: &Histogram<u64>, elapsed: Duration) {
    let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "{store:>8} | {run:>18} | {:>8.0} commits/s | p50 {:>7.2} ms | p99 {:>7.2} ms | max {:>7.2} ms",
        h.len() as f64 / elapsed.as_secs_f64(),
        ms(0.5),
        ms(0.99),
        h.max() as f64 / 1000.0,
    );
}

/// Starts the metadata service over `store` and creates the benchmark's topic.
async fn serve(store: Arc<dyn MetadataStore>) -> (MetadataServiceClient<Channel>, Vec<u8>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let service = MetadataServiceImpl::new(store, strata_clock::system());
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(strata_metadata::grpc_service(service))
            .serve_with_incoming(
                tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
            ),
    );
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = MetadataServiceClient::new(channel);
    let topic = client
        .create_topic(pb::CreateTopicRequest {
            name: "bench".into(),
            partition_count: PARTITIONS,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let topic_id = topic.topic.unwrap().topic_id;
    (client, topic_id)
}

/// One CommitSegment of a fresh object with one 1-record chunk per partition.
async fn commit(client: &MetadataServiceClient<Channel>, topic_id: &[u8]) {
    let key = strata_segment::naming::segment_key(
        strata_clock::system().now_millis(),
        1,
        *uuid::Uuid::new_v4().as_bytes(),
    );
    let chunks = (0..PARTITIONS)
        .map(|partition| pb::ChunkCommit {
            topic_id: topic_id.to_vec(),
            partition,
            byte_offset: u64::try_from(partition).unwrap() * 100,
            byte_length: 100,
            raw_length: 200,
            batch_count: 1,
            record_count: 1,
            max_timestamp: 1,
            runs: vec![pb::RunCommit {
                raw_offset: 0,
                raw_length: 200,
                offset_count: 1,
                ..Default::default()
            }],
        })
        .collect();
    client
        .clone()
        .commit_segment(pb::CommitSegmentRequest {
            object_key: key,
            object_size: 1_000,
            chunks,
        })
        .await
        .unwrap();
}
