//! Command-line surface of `strata bench`: one clap `Args` type per mode, built from shared
//! groups (the target cluster, the producer's settings, the consumer's fetch settings).
//!
//! Values are checked here for what clap cannot express (positive sizes, a known `--from`),
//! so the modes can rely on them.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};

use crate::error::BenchError;

/// `strata bench <mode>`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Which load to generate.
    #[command(subcommand)]
    pub mode: BenchMode,
}

/// The load generator's modes.
#[derive(Debug, Subcommand)]
pub enum BenchMode {
    /// Produce fixed-size records as fast as possible or at a fixed rate; report throughput
    /// and the latency from each record's creation to its acknowledgement.
    Produce(ProduceArgs),
    /// Read partitions with Fetch from a start offset; report throughput (replay).
    Consume(ConsumeArgs),
    /// Produce and consume at once; report the latency from a record's creation to its
    /// arrival at a consumer.
    E2e(E2eArgs),
    /// A Kafka listener that acknowledges produce requests without storing anything: the
    /// ceiling of the client and the loopback on this machine.
    NullBroker(NullBrokerArgs),
}

/// Where the load goes.
#[derive(Debug, Clone, Args)]
pub struct TargetArgs {
    /// Bootstrap broker, host:port.
    #[arg(long, default_value = "127.0.0.1:9092")]
    pub bootstrap: String,
    /// Topic to produce to or read from.
    #[arg(long, default_value = "strata-bench")]
    pub topic: String,
    /// Longest wait for a connection or a response; also the produce timeout sent to the broker.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub request_timeout: Duration,
    /// Print the final summary as one JSON object on stdout (progress stays on stderr).
    #[arg(long)]
    pub json: bool,
    /// Do not print the progress line every second.
    #[arg(long)]
    pub quiet: bool,
}

/// How the producers behave.
#[derive(Debug, Clone, Args)]
pub struct ProducerArgs {
    /// Producer connections (each runs its own batching and pipelining).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub clients: u32,
    /// Partitions of the topic when it has to be created; an existing topic is used as it is.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(i32).range(1..=100_000))]
    pub partitions: i32,
    /// Bytes of each record's value.
    #[arg(long, default_value_t = 1024)]
    pub record_size: usize,
    /// What the values hold: random bytes (incompressible) or text-like words (compressible).
    #[arg(long, value_enum, default_value_t = Payload::Random)]
    pub payload: Payload,
    /// Acknowledgements asked for: 0 (none, no response), 1, or all (-1).
    #[arg(long, default_value = "all", value_parser = parse_acks)]
    pub acks: i16,
    /// Largest encoded record batch per partition in one produce request.
    #[arg(long, default_value_t = 1_000_000)]
    pub batch_bytes: usize,
    /// How long a batch that is not full may wait for more records before it is sent.
    #[arg(long, default_value = "5ms", value_parser = humantime::parse_duration)]
    pub linger: Duration,
    /// Produce requests awaiting their response on one connection (pipelining).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub max_in_flight: u32,
    /// Compression of the record batches.
    #[arg(long, value_enum, default_value_t = CompressionArg::None)]
    pub compression: CompressionArg,
    /// Target rate in MB/s (10^6 bytes of values per second) over all clients; absent means
    /// as fast as the broker acknowledges.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Times a batch is sent again after a retriable error before its records count as failed.
    #[arg(long, default_value_t = 5)]
    pub retries: u32,
    /// Seed of the value generator (same seed, same values).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

/// When a producing run stops.
#[derive(Debug, Clone, Args)]
pub struct ProduceStopArgs {
    /// Produce for this long (default 10s when --records is not given).
    #[arg(long, value_parser = humantime::parse_duration, conflicts_with = "records")]
    pub duration: Option<Duration>,
    /// Produce this many records in total.
    #[arg(long)]
    pub records: Option<u64>,
}

/// How the consumers fetch.
#[derive(Debug, Clone, Args)]
pub struct FetchArgs {
    /// Longest time the broker may hold a fetch while it has too little data.
    #[arg(long, default_value = "500ms", value_parser = humantime::parse_duration)]
    pub max_wait: Duration,
    /// Bytes the broker should gather before answering a fetch early.
    #[arg(long, default_value_t = 1)]
    pub min_bytes: i32,
    /// Most bytes in one fetch response.
    #[arg(long, default_value_t = 52_428_800)]
    pub max_bytes: i32,
    /// Most bytes of one partition in one fetch response.
    #[arg(long, default_value_t = 1_048_576)]
    pub partition_max_bytes: i32,
}

/// `strata bench produce`.
#[derive(Debug, Clone, Args)]
pub struct ProduceArgs {
    #[command(flatten)]
    /// Where the load goes and how results are printed.
    pub target: TargetArgs,
    #[command(flatten)]
    /// How the producers behave.
    pub producer: ProducerArgs,
    #[command(flatten)]
    /// When producing stops.
    pub stop: ProduceStopArgs,
}

/// `strata bench consume`.
#[derive(Debug, Clone, Args)]
pub struct ConsumeArgs {
    #[command(flatten)]
    /// Where the load goes and how results are printed.
    pub target: TargetArgs,
    /// Consumer connections; the partitions are shared out among them.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub clients: u32,
    /// Partitions to read, comma-separated (default: all).
    #[arg(long, value_delimiter = ',')]
    pub partitions: Vec<i32>,
    /// Where to start: earliest, latest, or an offset applied to every partition.
    #[arg(long, default_value = "earliest", value_parser = parse_start)]
    pub from: StartFrom,
    #[command(flatten)]
    /// How the consumers fetch.
    pub fetch: FetchArgs,
    /// Stop after this many records.
    #[arg(long)]
    pub records: Option<u64>,
    /// Stop after this long.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,
    /// Stop once every partition reaches the high watermark it had at the start.
    #[arg(long)]
    pub until_end: bool,
}

/// `strata bench e2e`.
#[derive(Debug, Clone, Args)]
pub struct E2eArgs {
    #[command(flatten)]
    /// Where the load goes and how results are printed.
    pub target: TargetArgs,
    #[command(flatten)]
    /// How the producers behave.
    pub producer: ProducerArgs,
    #[command(flatten)]
    /// When producing stops.
    pub stop: ProduceStopArgs,
    /// Consumer connections; the partitions are shared out among them.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub consumers: u32,
    #[command(flatten)]
    /// How the consumers fetch.
    pub fetch: FetchArgs,
    /// Longest time the consumers may take, once the producers are done, to read the rest.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub drain_timeout: Duration,
}

/// `strata bench null-broker`.
#[derive(Debug, Clone, Args)]
pub struct NullBrokerArgs {
    /// Address to listen on (loopback unless you mean it).
    #[arg(long, default_value = "127.0.0.1:9092")]
    pub listen: SocketAddr,
    /// Partitions of every topic a client asks about without creating it first.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(i32).range(1..=100_000))]
    pub partitions: i32,
    /// Node id the broker reports for itself.
    #[arg(long, default_value_t = 1)]
    pub node_id: i32,
}

/// What the record values hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Payload {
    /// Random bytes: compression gains nothing.
    Random,
    /// Words from a small vocabulary: compressors shrink it several-fold.
    Compressible,
}

/// Record batch compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CompressionArg {
    /// Uncompressed batches.
    None,
    /// zstd (Kafka compression type 4).
    Zstd,
    /// LZ4 frames (Kafka compression type 3).
    Lz4,
}

impl CompressionArg {
    /// The matching kafka-protocol compression.
    pub fn codec(self) -> kafka_protocol::records::Compression {
        use kafka_protocol::records::Compression;
        match self {
            Self::None => Compression::None,
            Self::Zstd => Compression::Zstd,
            Self::Lz4 => Compression::Lz4,
        }
    }

    /// Name as written on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Zstd => "zstd",
            Self::Lz4 => "lz4",
        }
    }
}

/// Where consumers start reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartFrom {
    /// The log start offset of each partition.
    Earliest,
    /// The high watermark of each partition when the run starts.
    Latest,
    /// This offset in every partition.
    Offset(i64),
}

/// Parses `--acks`: 0, 1, -1 or all.
pub fn parse_acks(text: &str) -> Result<i16, String> {
    match text {
        "0" => Ok(0),
        "1" => Ok(1),
        "-1" | "all" => Ok(-1),
        other => Err(format!("acks must be 0, 1, -1 or all, not {other:?}")),
    }
}

/// Parses `--from`: earliest, latest or a non-negative offset.
pub fn parse_start(text: &str) -> Result<StartFrom, String> {
    match text {
        "earliest" => Ok(StartFrom::Earliest),
        "latest" => Ok(StartFrom::Latest),
        other => match other.parse::<i64>() {
            Ok(offset) if offset >= 0 => Ok(StartFrom::Offset(offset)),
            _ => Err(format!(
                "from must be earliest, latest or an offset >= 0, not {other:?}"
            )),
        },
    }
}

impl ProducerArgs {
    /// Checks the settings clap cannot check by itself.
    pub fn validate(&self) -> Result<(), BenchError> {
        if let Some(rate) = self.rate {
            if !(rate.is_finite() && rate > 0.0) {
                return Err(BenchError::InvalidArgs(format!(
                    "--rate must be a positive number of MB/s, not {rate}"
                )));
            }
        }
        if self.batch_bytes < 128 {
            return Err(BenchError::InvalidArgs(
                "--batch-bytes must be at least 128".into(),
            ));
        }
        if self.record_size > 64 * 1024 * 1024 {
            return Err(BenchError::InvalidArgs(
                "--record-size must be at most 64 MiB".into(),
            ));
        }
        Ok(())
    }
}

impl ProduceStopArgs {
    /// The duration to run for, with the default of 10 s when neither limit is given.
    pub fn effective_duration(&self) -> Option<Duration> {
        match (self.duration, self.records) {
            (Some(duration), _) => Some(duration),
            (None, Some(_)) => None,
            (None, None) => Some(Duration::from_secs(10)),
        }
    }
}

impl ConsumeArgs {
    /// Checks that the run has an end and the fetch sizes make sense.
    pub fn validate(&self) -> Result<(), BenchError> {
        if self.records.is_none() && self.duration.is_none() && !self.until_end {
            return Err(BenchError::InvalidArgs(
                "give --records, --duration or --until-end so the run has an end".into(),
            ));
        }
        self.fetch.validate()
    }
}

impl FetchArgs {
    /// Checks the fetch sizes.
    pub fn validate(&self) -> Result<(), BenchError> {
        if self.max_bytes < 1 || self.partition_max_bytes < 1 || self.min_bytes < 0 {
            return Err(BenchError::InvalidArgs(
                "--max-bytes and --partition-max-bytes must be positive, --min-bytes >= 0".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acks_accept_kafka_spellings() {
        assert_eq!(parse_acks("all"), Ok(-1));
        assert_eq!(parse_acks("-1"), Ok(-1));
        assert_eq!(parse_acks("0"), Ok(0));
        assert_eq!(parse_acks("1"), Ok(1));
        assert!(parse_acks("2").is_err());
    }

    #[test]
    fn start_accepts_names_and_offsets() {
        assert_eq!(parse_start("earliest"), Ok(StartFrom::Earliest));
        assert_eq!(parse_start("latest"), Ok(StartFrom::Latest));
        assert_eq!(parse_start("42"), Ok(StartFrom::Offset(42)));
        assert!(parse_start("-3").is_err());
        assert!(parse_start("soon").is_err());
    }

    #[test]
    fn produce_runs_ten_seconds_unless_told_otherwise() {
        let stop = ProduceStopArgs {
            duration: None,
            records: None,
        };
        assert_eq!(stop.effective_duration(), Some(Duration::from_secs(10)));
        let stop = ProduceStopArgs {
            duration: None,
            records: Some(5),
        };
        assert_eq!(stop.effective_duration(), None);
    }
}
