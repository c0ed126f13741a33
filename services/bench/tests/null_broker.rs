//! `strata bench` against the in-process null broker: produce runs of every kind add up
//! (records, bytes, latency samples), and failures come back as errors with messages.

use clap::Parser;
use strata_bench::{
    consume, produce, BenchError, ConsumeArgs, NullBroker, NullBrokerConfig, ProduceArgs, Summary,
    WallClock,
};
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
struct ProduceCli {
    #[command(flatten)]
    args: ProduceArgs,
}

#[derive(Parser)]
struct ConsumeCli {
    #[command(flatten)]
    args: ConsumeArgs,
}

/// A null broker on a free loopback port; stops when dropped.
struct Broker {
    address: String,
    stop: CancellationToken,
}

impl Broker {
    async fn start(partitions: i32) -> Self {
        let config = NullBrokerConfig {
            partitions,
            node_id: 7,
        };
        let broker = NullBroker::bind("127.0.0.1:0".parse().expect("address"), config)
            .await
            .expect("binds");
        let address = broker.local_addr();
        let stop = CancellationToken::new();
        tokio::spawn(broker.serve(stop.clone()));
        Self { address, stop }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn produce_with(broker: &Broker, extra: &[&str]) -> Result<Summary, BenchError> {
    let mut argv = vec!["produce", "--bootstrap", &broker.address, "--quiet"];
    argv.extend_from_slice(extra);
    let cli = ProduceCli::try_parse_from(argv).expect("valid arguments");
    produce(
        &cli.args,
        WallClock::new(&strata_clock::SystemClock),
        CancellationToken::new(),
    )
    .await
}

fn assert_adds_up(summary: &Summary, records: u64, record_size: u64) {
    assert_eq!(summary.records, records, "{summary:#?}");
    assert_eq!(summary.bytes, records * record_size, "{summary:#?}");
    assert_eq!(summary.latency_ms.samples, records, "{summary:#?}");
    assert!(summary.errors.is_empty(), "{summary:#?}");
    assert_eq!(summary.failed_records, 0);
    assert!(summary.latency_ms.max >= summary.latency_ms.p50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flat_out_produce_counts_every_record() {
    let broker = Broker::start(3).await;
    let summary = produce_with(
        &broker,
        &[
            "--topic",
            "flat",
            "--records",
            "20000",
            "--record-size",
            "100",
            "--batch-bytes",
            "16384",
            "--clients",
            "2",
            "--max-in-flight",
            "4",
        ],
    )
    .await
    .expect("runs");
    assert_adds_up(&summary, 20_000, 100);
    // batches carry framing on top of the values
    assert!(summary.wire_bytes > summary.bytes, "{summary:#?}");
    assert_eq!(summary.mode, "produce");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixed_rate_produce_counts_every_record() {
    let broker = Broker::start(2).await;
    // 3,000 records of 100 bytes at 1 MB/s: about 0.3 s
    let summary = produce_with(
        &broker,
        &[
            "--topic",
            "rate",
            "--records",
            "3000",
            "--record-size",
            "100",
            "--rate",
            "1",
            "--linger",
            "2ms",
            "--partitions",
            "4",
        ],
    )
    .await
    .expect("runs");
    assert_adds_up(&summary, 3000, 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_zero_and_compression_are_counted_too() {
    let broker = Broker::start(3).await;
    let summary = produce_with(
        &broker,
        &[
            "--topic",
            "zero",
            "--records",
            "5000",
            "--record-size",
            "200",
            "--acks",
            "0",
        ],
    )
    .await
    .expect("runs");
    assert_adds_up(&summary, 5000, 200);
    for compression in ["zstd", "lz4"] {
        let summary = produce_with(
            &broker,
            &[
                "--topic",
                compression,
                "--records",
                "5000",
                "--record-size",
                "200",
                "--payload",
                "compressible",
                "--compression",
                compression,
            ],
        )
        .await
        .expect("runs");
        assert_adds_up(&summary, 5000, 200);
        assert!(
            summary.wire_bytes < summary.bytes,
            "{compression}: {summary:#?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timed_run_stops_and_counts_what_was_acknowledged() {
    let broker = Broker::start(1).await;
    let summary = produce_with(
        &broker,
        &[
            "--topic",
            "timed",
            "--duration",
            "300ms",
            "--record-size",
            "512",
        ],
    )
    .await
    .expect("runs");
    assert!(summary.records > 0, "{summary:#?}");
    assert_adds_up(&summary, summary.records, 512);
    assert!(summary.duration_s >= 0.3, "{summary:#?}");
    let json = serde_json::to_value(&summary).expect("serialises");
    for key in [
        "records",
        "bytes",
        "duration_s",
        "records_per_s",
        "mb_per_s",
        "latency_ms",
        "errors",
    ] {
        assert!(json.get(key).is_some(), "{key} missing from {json}");
    }
    assert!(json["latency_ms"].get("p99_9").is_some(), "{json}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consuming_from_the_null_broker_reads_nothing_without_error() {
    let broker = Broker::start(2).await;
    produce_with(&broker, &["--topic", "empty", "--records", "10"])
        .await
        .expect("runs");
    let cli = ConsumeCli::try_parse_from([
        "consume",
        "--bootstrap",
        &broker.address,
        "--topic",
        "empty",
        "--from",
        "0",
        "--duration",
        "300ms",
        "--max-wait",
        "50ms",
        "--quiet",
    ])
    .expect("valid arguments");
    let summary = consume(&cli.args, CancellationToken::new())
        .await
        .expect("runs");
    assert_eq!(summary.records, 0);
    assert!(summary.errors.is_empty(), "{summary:#?}");
    assert!(
        summary.latency_ms.samples > 0,
        "fetches were timed: {summary:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_errors_with_messages() {
    // a port nobody listens on: take a free one and release it
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binds");
    let address = listener.local_addr().expect("address").to_string();
    drop(listener);
    let cli = ProduceCli::try_parse_from(["produce", "--bootstrap", &address, "--quiet"])
        .expect("valid arguments");
    let error = produce(
        &cli.args,
        WallClock::new(&strata_clock::SystemClock),
        CancellationToken::new(),
    )
    .await
    .expect_err("nothing listens there");
    assert!(
        error
            .to_string()
            .contains(&format!("cannot connect to {address}")),
        "{error}"
    );

    // the null broker does not do ListOffsets, which --from earliest needs
    let broker = Broker::start(1).await;
    let cli = ConsumeCli::try_parse_from([
        "consume",
        "--bootstrap",
        &broker.address,
        "--topic",
        "t",
        "--until-end",
        "--quiet",
    ])
    .expect("valid arguments");
    let error = consume(&cli.args, CancellationToken::new())
        .await
        .expect_err("ListOffsets is missing");
    assert!(error.to_string().contains("ListOffsets"), "{error}");

    // a consume run needs an end
    let cli = ConsumeCli::try_parse_from(["consume", "--bootstrap", &broker.address])
        .expect("valid arguments");
    let error = consume(&cli.args, CancellationToken::new())
        .await
        .expect_err("no end given");
    assert!(error.to_string().contains("--until-end"), "{error}");
}
