//! `strata check`: reads every index row of a cluster back from the bucket and lists the
//! damaged ones (missing objects, chunks or batches that fail their checks).
//!
//! It reads the bucket directly, like an agent, and asks the metadata service only for the
//! index; it changes nothing. Exit status 1 when a row is damaged.

use anyhow::{bail, Context};
use clap::Args;
use strata_agent::check::{check_partition, PartitionReport};
use strata_agent::metrics::AgentMetrics;
use strata_agent::read::ChunkReader;
use strata_cache::{BlockCache, BlockCacheConfig};
use strata_proto::metadata::v1 as pb;
use strata_telemetry::Registry;

use crate::cli::BucketArgs;
use crate::output::out;
use crate::serve::{metadata_client, open_bucket};

/// Settings of `strata check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// URL of the metadata service, or the comma-separated URLs of all metadata processes.
    #[arg(long, env = "STRATA_METADATA", default_value = "http://127.0.0.1:9093")]
    pub metadata: String,
    /// Only these topics (repeatable; default: every topic).
    #[arg(long = "topic", value_name = "NAME")]
    pub topics: Vec<String>,
    /// Where segment objects live.
    #[command(flatten)]
    pub storage: BucketArgs,
}

/// Runs the check and prints one line per damaged row, then a summary.
pub async fn run(args: CheckArgs) -> anyhow::Result<()> {
    let metadata = metadata_client(&args.metadata)?;
    let (bucket, bucket_url) = open_bucket(&args.storage, None, &mut Registry::default()).await?;
    let metrics = AgentMetrics::default();
    let blocks = BlockCache::new(
        bucket,
        BlockCacheConfig {
            capacity_bytes: 64 * 1024 * 1024,
            block_bytes: strata_cache::block_cache::DEFAULT_BLOCK_BYTES,
        },
        metrics.read.clone(),
    );
    let reader = ChunkReader::new(blocks, 0, metrics);
    let topics = metadata
        .clone()
        .list_topics(pb::ListTopicsRequest {})
        .await
        .with_context(|| format!("cannot list topics at {}", args.metadata))?
        .into_inner()
        .topics;
    for name in &args.topics {
        if !topics.iter().any(|t| &t.name == name) {
            bail!("no topic named {name:?}");
        }
    }
    let mut rows = 0;
    let mut damaged = 0;
    let mut partitions = 0;
    for topic in topics
        .iter()
        .filter(|t| args.topics.is_empty() || args.topics.contains(&t.name))
    {
        let topic_id = uuid::Uuid::from_slice(&topic.topic_id).context("invalid topic id")?;
        for partition in 0..topic.partition_count {
            let report = check_partition(&metadata, &reader, topic_id, partition)
                .await
                .with_context(|| format!("cannot check {}/{partition}", topic.name))?;
            partitions += 1;
            rows += report.rows;
            damaged += report.problems.len();
            print_problems(&topic.name, partition, &report);
        }
    }
    out!("checked {rows} index rows in {partitions} partitions of {bucket_url}: {damaged} damaged");
    if damaged > 0 {
        bail!("{damaged} index rows cannot be read back");
    }
    Ok(())
}

fn print_problems(topic: &str, partition: i32, report: &PartitionReport) {
    for problem in &report.problems {
        let row = &problem.row;
        out!(
            "damaged\t{topic}\t{partition}\toffsets {}..{}\t{} bytes {}..{}\t{}",
            row.base_offset,
            row.end_offset,
            row.object_key,
            row.byte_offset,
            row.byte_offset + u64::from(row.byte_length),
            problem.error
        );
    }
}
