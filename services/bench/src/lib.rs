//! `strata bench`: a load generator that speaks the Kafka wire protocol.
//!
//! Modes (see [`BenchMode`]):
//! - **produce**: producer connections with batching, pipelining, compression and an
//!   optional fixed rate; latency runs from each record's creation (its scheduled time at a
//!   fixed rate, so a slow broker is not hidden by coordinated omission) to its
//!   acknowledgement.
//! - **consume**: fetches partitions from a start offset, for a duration, a record count or
//!   up to the high watermark seen at the start (replay throughput).
//! - **e2e**: both at once; every record carries its creation time and the consumers
//!   measure how long it took to reach them.
//! - **null-broker**: a listener that acknowledges produce requests without storing them,
//!   giving the client-plus-loopback ceiling of the machine.
//!
//! Every message is encoded and decoded by the kafka-protocol crate. Kafka error codes in
//! responses are counted per code and reported; retriable ones are retried. Anything that
//! stops a run (no broker, no topic, a broken connection) is a [`BenchError`] with a
//! message, never a panic.

mod args;
mod batch;
mod cluster;
mod connection;
mod consume;
mod consumer;
mod e2e;
mod error;
mod histogram;
mod null_broker;
mod payload;
mod produce;
mod producer;
mod rate;
mod report;
mod stats;
mod tasks;
mod wall_clock;

pub use args::{
    BenchArgs, BenchMode, CompressionArg, ConsumeArgs, E2eArgs, FetchArgs, NullBrokerArgs, Payload,
    ProduceArgs, ProduceStopArgs, ProducerArgs, StartFrom, TargetArgs,
};
pub use consume::consume;
pub use e2e::e2e;
pub use error::BenchError;
pub use histogram::LatencySummary;
pub use null_broker::{NullBroker, NullBrokerConfig};
pub use produce::produce;
pub use report::{E2eSummary, ErrorCount, Summary};
pub use wall_clock::{WallClock, SENT_AT_HEADER};

use tokio_util::sync::CancellationToken;

/// Runs one `strata bench` mode to its end and prints its summary on stdout (JSON with
/// `--json`). Ctrl-C or SIGTERM stops producing and consuming early; the summary of what
/// was done is still printed. The null broker runs until one of those signals.
pub async fn run(args: BenchArgs) -> Result<(), BenchError> {
    let stop = CancellationToken::new();
    let signals = tokio::spawn(stop_on_signal(stop.clone()));
    let wall = WallClock::new(&strata_clock::SystemClock);
    let result = match args.mode {
        BenchMode::Produce(args) => {
            let summary = produce(&args, wall, stop).await?;
            report::emit(args.target.json, &summary, &summary.to_text())
        }
        BenchMode::Consume(args) => {
            let summary = consume(&args, stop).await?;
            report::emit(args.target.json, &summary, &summary.to_text())
        }
        BenchMode::E2e(args) => {
            let summary = e2e(&args, wall, stop).await?;
            let text = format!("{}{}", summary.produce.to_text(), summary.consume.to_text());
            report::emit(args.target.json, &summary, &text)
        }
        BenchMode::NullBroker(args) => null_broker::run(&args, stop).await,
    };
    signals.abort();
    result
}

/// Cancels `stop` on Ctrl-C (SIGINT) or SIGTERM.
async fn stop_on_signal(stop: CancellationToken) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut terminate = match signal(SignalKind::terminate()) {
            Ok(terminate) => terminate,
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                stop.cancel();
                return;
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
    stop.cancel();
}
