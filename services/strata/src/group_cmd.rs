//! `strata group ...`: consumer groups, through the Kafka protocol of a running agent.

use anyhow::{bail, Context};
use bytes::{Buf, Bytes};
use clap::{Args, Subcommand};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestGroup;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, StrBytes};

use crate::kafka_client::KafkaClient;
use crate::output::out;

/// Consumer-group administration.
#[derive(Debug, Args)]
pub struct GroupArgs {
    /// A Strata agent's Kafka address.
    #[arg(
        long,
        env = "STRATA_BOOTSTRAP",
        default_value = "127.0.0.1:9092",
        global = true
    )]
    pub bootstrap: String,
    #[command(subcommand)]
    pub action: GroupAction,
}

/// What to do with groups.
#[derive(Debug, Subcommand)]
pub enum GroupAction {
    /// List groups with their state.
    List,
    /// Show a group's members, committed offsets and lag.
    Describe {
        /// Group id.
        group: String,
    },
    /// Move a group's committed offsets for a topic; refused while the group has live members.
    ResetOffsets {
        /// Group id.
        group: String,
        /// Topic whose offsets move (all its partitions).
        #[arg(long)]
        topic: String,
        /// Where to: earliest, latest, a timestamp in ms (first offset at or after it) or an offset.
        #[command(flatten)]
        target: ResetTarget,
        /// Commit the new offsets; without it the plan is only printed.
        #[arg(long)]
        execute: bool,
    },
}

/// Where reset-offsets moves a group.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct ResetTarget {
    /// The log start of each partition.
    #[arg(long)]
    to_earliest: bool,
    /// The end of each partition.
    #[arg(long)]
    to_latest: bool,
    /// The first offset whose timestamp is at or after this (ms since the epoch).
    #[arg(long, value_name = "MS")]
    to_timestamp: Option<i64>,
    /// This offset in every partition (clamped to the partition's bounds).
    #[arg(long, value_name = "OFFSET")]
    to_offset: Option<i64>,
}

fn name(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

fn check(code: i16, what: &str) -> anyhow::Result<()> {
    match ResponseError::try_from_code(code) {
        None => Ok(()),
        Some(error) => bail!("{what}: {error} ({})", error.code()),
    }
}

/// Runs a group subcommand.
pub async fn run(args: GroupArgs) -> anyhow::Result<()> {
    let mut client = KafkaClient::connect(&args.bootstrap).await?;
    match args.action {
        GroupAction::List => list(&mut client).await,
        GroupAction::Describe { group } => describe(&mut client, &group).await,
        GroupAction::ResetOffsets {
            group,
            topic,
            target,
            execute,
        } => reset_offsets(&mut client, &group, &topic, &target, execute).await,
    }
}

async fn list(client: &mut KafkaClient) -> anyhow::Result<()> {
    let response: ListGroupsResponse = client
        .call(ApiKey::ListGroups, 4, &ListGroupsRequest::default())
        .await?;
    check(response.error_code, "ListGroups")?;
    for g in response.groups {
        out!(
            "{}\t{}\t{}",
            g.group_id.as_str(),
            g.group_state.as_str(),
            g.protocol_type.as_str()
        );
    }
    Ok(())
}

async fn describe_group(
    client: &mut KafkaClient,
    group: &str,
) -> anyhow::Result<describe_groups_response::DescribedGroup> {
    let request = DescribeGroupsRequest::default().with_groups(vec![GroupId(name(group))]);
    let response: DescribeGroupsResponse = client.call(ApiKey::DescribeGroups, 5, &request).await?;
    let described = response
        .groups
        .into_iter()
        .next()
        .context("empty DescribeGroups response")?;
    check(described.error_code, "DescribeGroups")?;
    Ok(described)
}

/// The partitions a consumer-protocol assignment names, as "topic-partition" strings.
fn assignment_text(mut assignment: Bytes) -> String {
    if assignment.len() < 2 {
        return String::new();
    }
    let version = assignment.get_i16();
    match ConsumerProtocolAssignment::decode(&mut assignment, version) {
        Ok(decoded) => decoded
            .assigned_partitions
            .iter()
            .flat_map(|tp| {
                tp.partitions
                    .iter()
                    .map(move |p| format!("{}-{p}", tp.topic.as_str()))
            })
            .collect::<Vec<_>>()
            .join(","),
        Err(_) => "(not a consumer assignment)".to_string(),
    }
}

async fn committed(
    client: &mut KafkaClient,
    group: &str,
) -> anyhow::Result<Vec<(String, i32, i64, Option<String>)>> {
    let request =
        OffsetFetchRequest::default().with_groups(vec![OffsetFetchRequestGroup::default()
            .with_group_id(GroupId(name(group)))
            .with_topics(None)]);
    let response: OffsetFetchResponse = client.call(ApiKey::OffsetFetch, 8, &request).await?;
    let group = response
        .groups
        .into_iter()
        .next()
        .context("empty OffsetFetch response")?;
    check(group.error_code, "OffsetFetch")?;
    Ok(group
        .topics
        .into_iter()
        .flat_map(|t| {
            let topic = t.name.to_string();
            t.partitions.into_iter().map(move |p| {
                (
                    topic.clone(),
                    p.partition_index,
                    p.committed_offset,
                    p.metadata.map(|m| m.to_string()),
                )
            })
        })
        .collect())
}

/// Offsets of each partition for a ListOffsets timestamp query (-1 latest, -2 earliest).
async fn list_offsets(
    client: &mut KafkaClient,
    topic: &str,
    partitions: &[i32],
    timestamp: i64,
) -> anyhow::Result<Vec<i64>> {
    let request = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(TopicName(name(topic)))
            .with_partitions(
                partitions
                    .iter()
                    .map(|p| {
                        ListOffsetsPartition::default()
                            .with_partition_index(*p)
                            .with_timestamp(timestamp)
                    })
                    .collect(),
            )]);
    let response: ListOffsetsResponse = client.call(ApiKey::ListOffsets, 7, &request).await?;
    let topic_response = response
        .topics
        .into_iter()
        .next()
        .context("empty ListOffsets response")?;
    let mut out = Vec::with_capacity(partitions.len());
    for p in topic_response.partitions {
        check(
            p.error_code,
            &format!("ListOffsets {topic}-{}", p.partition_index),
        )?;
        out.push(p.offset);
    }
    Ok(out)
}

async fn describe(client: &mut KafkaClient, group: &str) -> anyhow::Result<()> {
    let described = describe_group(client, group).await?;
    out!(
        "group: {group}\nstate: {}\nprotocol: {}",
        described.group_state.as_str(),
        described.protocol_data.as_str()
    );
    out!("members: {}", described.members.len());
    for m in &described.members {
        out!(
            "  {} client={} host={} assigned={}",
            m.member_id.as_str(),
            m.client_id.as_str(),
            m.client_host.as_str(),
            assignment_text(m.member_assignment.clone())
        );
    }
    out!("offsets:");
    for (topic, partition, offset, _) in committed(client, group).await? {
        let end = list_offsets(client, &topic, &[partition], -1)
            .await?
            .first()
            .copied()
            .unwrap_or(-1);
        let lag = if offset >= 0 {
            (end - offset).max(0).to_string()
        } else {
            "-".to_string()
        };
        out!("  {topic} partition {partition}: committed={offset} end={end} lag={lag}");
    }
    Ok(())
}

async fn partitions_of(client: &mut KafkaClient, topic: &str) -> anyhow::Result<Vec<i32>> {
    let request = MetadataRequest::default()
        .with_topics(Some(vec![
            MetadataRequestTopic::default().with_name(Some(TopicName(name(topic))))
        ]))
        .with_allow_auto_topic_creation(false);
    let response: MetadataResponse = client.call(ApiKey::Metadata, 12, &request).await?;
    let t = response
        .topics
        .into_iter()
        .next()
        .context("empty Metadata response")?;
    check(t.error_code, &format!("topic {topic}"))?;
    let mut partitions: Vec<i32> = t.partitions.iter().map(|p| p.partition_index).collect();
    partitions.sort_unstable();
    Ok(partitions)
}

async fn reset_offsets(
    client: &mut KafkaClient,
    group: &str,
    topic: &str,
    target: &ResetTarget,
    execute: bool,
) -> anyhow::Result<()> {
    let described = describe_group(client, group).await?;
    if !described.members.is_empty() {
        bail!(
            "group {group} has {} live member(s) (state {}); stop its consumers before resetting offsets",
            described.members.len(),
            described.group_state.as_str()
        );
    }
    let partitions = partitions_of(client, topic).await?;
    let earliest = list_offsets(client, topic, &partitions, -2).await?;
    let latest = list_offsets(client, topic, &partitions, -1).await?;
    let targets: Vec<i64> = if target.to_earliest {
        earliest.clone()
    } else if target.to_latest {
        latest.clone()
    } else if let Some(ts) = target.to_timestamp {
        let found = list_offsets(client, topic, &partitions, ts).await?;
        // no record at or after the timestamp: the end of the partition
        found
            .iter()
            .zip(&latest)
            .map(|(f, l)| if *f < 0 { *l } else { *f })
            .collect()
    } else if let Some(offset) = target.to_offset {
        earliest
            .iter()
            .zip(&latest)
            .map(|(e, l)| offset.clamp(*e, *l))
            .collect()
    } else {
        bail!("choose --to-earliest, --to-latest, --to-timestamp or --to-offset");
    };
    for (p, offset) in partitions.iter().zip(&targets) {
        out!("{topic} partition {p}: new offset {offset}");
    }
    if !execute {
        out!("(dry run: add --execute to commit these offsets)");
        return Ok(());
    }
    let request = OffsetCommitRequest::default()
        .with_group_id(GroupId(name(group)))
        .with_generation_id_or_member_epoch(-1)
        .with_retention_time_ms(-1)
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(TopicName(name(topic)))
            .with_partitions(
                partitions
                    .iter()
                    .zip(&targets)
                    .map(|(p, o)| {
                        OffsetCommitRequestPartition::default()
                            .with_partition_index(*p)
                            .with_committed_offset(*o)
                    })
                    .collect(),
            )]);
    let response: OffsetCommitResponse = client.call(ApiKey::OffsetCommit, 8, &request).await?;
    for t in response.topics {
        for p in t.partitions {
            check(
                p.error_code,
                &format!("OffsetCommit {}-{}", t.name.as_str(), p.partition_index),
            )?;
        }
    }
    out!("offsets of group {group} reset");
    Ok(())
}
