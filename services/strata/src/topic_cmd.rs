//! `strata topic ...`: topic administration against a running metadata service.

use std::collections::HashMap;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use strata_agent::metadata_client::{call_leader, connect, parse_addresses};
use strata_proto::metadata::v1 as pb;

use crate::output::out;

/// Topic administration.
#[derive(Debug, Args)]
pub struct TopicArgs {
    /// URL of the metadata service, or the comma-separated URLs of all metadata processes.
    #[arg(
        long,
        env = "STRATA_METADATA",
        default_value = "http://127.0.0.1:9093",
        global = true
    )]
    pub metadata: String,
    #[command(subcommand)]
    pub action: TopicAction,
}

/// What to do with topics.
#[derive(Debug, Subcommand)]
pub enum TopicAction {
    /// Create a topic.
    Create {
        /// Topic name.
        name: String,
        /// Number of partitions.
        #[arg(long, default_value_t = 1)]
        partitions: i32,
        /// Topic config as key=value; repeatable.
        #[arg(long = "config", value_name = "KEY=VALUE")]
        configs: Vec<String>,
    },
    /// List topics.
    List,
    /// Show one topic: id, configs, and each partition's offsets.
    Describe {
        /// Topic name.
        name: String,
    },
    /// Delete a topic.
    Delete {
        /// Topic name.
        name: String,
    },
}

fn parse_configs(pairs: &[String]) -> anyhow::Result<HashMap<String, String>> {
    pairs
        .iter()
        .map(|pair| match pair.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => bail!("--config takes KEY=VALUE, got {pair:?}"),
        })
        .collect()
}

fn topic_id(bytes: &[u8]) -> String {
    uuid::Uuid::from_slice(bytes)
        .map(|u| u.to_string())
        .unwrap_or_else(|_| "?".into())
}

/// Turns a gRPC failure into a message for the operator.
fn explain(status: tonic::Status, metadata: &str) -> anyhow::Error {
    match status.code() {
        tonic::Code::Unavailable => anyhow::anyhow!(
            "cannot reach the metadata service at {metadata}: {}",
            status.message()
        ),
        _ => anyhow::anyhow!("{}", status.message()),
    }
}

/// Runs a topic subcommand.
pub async fn run(args: TopicArgs) -> anyhow::Result<()> {
    let addresses = parse_addresses(&args.metadata).context("invalid --metadata")?;
    let client = connect(&addresses, None).context("invalid --metadata")?;
    let url = args.metadata.as_str();
    match args.action {
        TopicAction::Create {
            name,
            partitions,
            configs,
        } => {
            let request = pb::CreateTopicRequest {
                name,
                partition_count: partitions,
                configs: parse_configs(&configs)?,
                validate_only: false,
            };
            let topic = call_leader(&client, |mut c| {
                let request = request.clone();
                async move { c.create_topic(request).await }
            })
            .await
            .map_err(|s| explain(s, url))?
            .into_inner()
            .topic
            .context("empty reply")?;
            out!(
                "created topic {} ({} partitions, id {})",
                topic.name,
                topic.partition_count,
                topic_id(&topic.topic_id)
            );
        }
        TopicAction::List => {
            let topics = call_leader(&client, |mut c| async move {
                c.list_topics(pb::ListTopicsRequest {}).await
            })
            .await
            .map_err(|s| explain(s, url))?
            .into_inner()
            .topics;
            for topic in topics {
                out!(
                    "{}\t{}\t{}",
                    topic.name,
                    topic.partition_count,
                    topic_id(&topic.topic_id)
                );
            }
        }
        TopicAction::Describe { name } => {
            let request = pb::GetTopicRequest {
                key: Some(pb::get_topic_request::Key::Name(name)),
            };
            let topic = call_leader(&client, |mut c| {
                let request = request.clone();
                async move { c.get_topic(request).await }
            })
            .await
            .map_err(|s| explain(s, url))?
            .into_inner()
            .topic
            .context("empty reply")?;
            out!(
                "topic: {}\nid: {}\npartitions: {}\nconfigs:",
                topic.name,
                topic_id(&topic.topic_id),
                topic.partition_count
            );
            for c in &topic.configs {
                let source = if c.is_default { "default" } else { "topic" };
                out!("  {}={} ({source})", c.name, c.value);
            }
            let refs = (0..topic.partition_count)
                .map(|partition| pb::PartitionRef {
                    topic_id: topic.topic_id.clone(),
                    partition,
                })
                .collect();
            let request = pb::GetPartitionOffsetsRequest { partitions: refs };
            let offsets = call_leader(&client, |mut c| {
                let request = request.clone();
                async move { c.get_partition_offsets(request).await }
            })
            .await
            .map_err(|s| explain(s, url))?
            .into_inner()
            .partitions;
            for p in offsets {
                out!(
                    "partition {}: log_start={} high_watermark={}",
                    p.partition,
                    p.log_start_offset,
                    p.high_watermark
                );
            }
        }
        TopicAction::Delete { name } => {
            let request = pb::DeleteTopicRequest { name: name.clone() };
            call_leader(&client, |mut c| {
                let request = request.clone();
                async move { c.delete_topic(request).await }
            })
            .await
            .map_err(|s| explain(s, url))?;
            out!("deleted topic {name}");
        }
    }
    Ok(())
}
