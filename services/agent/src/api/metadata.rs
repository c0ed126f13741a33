//! Metadata: brokers and topic layouts.
//!
//! Every agent can take any partition; the "leader" of each partition is picked among the
//! live agents by rendezvous hashing ([`ClusterView::leader`]), which spreads clients over
//! agents. Unknown topics are created when both the client and the agent allow it.

use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use crate::cluster::ClusterView;
use crate::context::Agent;
use crate::topics::Topic;
use strata_proto::metadata::v1::AgentInfo;

/// Answers a Metadata request.
pub async fn handle(agent: &Agent, version: i16, request: MetadataRequest) -> MetadataResponse {
    let agents = agent.cluster.agents();
    let brokers = agents
        .iter()
        .map(|a| {
            let rack = (!a.availability_zone.is_empty())
                .then(|| StrBytes::from_string(a.availability_zone.clone()));
            MetadataResponseBroker::default()
                .with_node_id(BrokerId(a.node_id))
                .with_host(StrBytes::from_string(a.host.clone()))
                .with_port(a.port)
                .with_rack(rack)
        })
        .collect();
    let node = &agents[..];
    // auto-creation is implied before v4, where the flag did not exist
    let allow_create =
        agent.config.auto_create_topics && (version < 4 || request.allow_auto_topic_creation);
    let topics = match request.topics {
        None => match agent.topics.list().await {
            Ok(all) => all.iter().map(|t| describe(t, node)).collect(),
            Err(e) => {
                tracing::warn!(error = %e, "cannot list topics");
                Vec::new()
            }
        },
        Some(wanted) => {
            let mut out = Vec::with_capacity(wanted.len());
            for entry in wanted {
                out.push(match entry.name {
                    Some(name) => by_name(agent, &name, allow_create, node).await,
                    None => by_id(agent, entry.topic_id, node).await,
                });
            }
            out
        }
    };
    MetadataResponse::default()
        .with_brokers(brokers)
        .with_cluster_id(Some(StrBytes::from_string(agent.config.cluster_id.clone())))
        .with_controller_id(BrokerId(agent.config.node_id))
        .with_topics(topics)
}

async fn by_name(
    agent: &Agent,
    name: &TopicName,
    allow_create: bool,
    node: &[AgentInfo],
) -> MetadataResponseTopic {
    let lookup = if allow_create {
        agent.topics.get_or_create(name).await
    } else {
        agent.topics.by_name(name).await
    };
    match lookup {
        Ok(topic) => describe(&topic, node),
        Err(error) => MetadataResponseTopic::default()
            .with_name(Some(name.clone()))
            .with_error_code(error.code()),
    }
}

async fn by_id(agent: &Agent, id: uuid::Uuid, node: &[AgentInfo]) -> MetadataResponseTopic {
    match agent.topics.by_id(id).await {
        Ok(topic) => describe(&topic, node),
        Err(error) => MetadataResponseTopic::default()
            .with_topic_id(id)
            .with_error_code(error.code()),
    }
}

fn describe(topic: &Topic, agents: &[AgentInfo]) -> MetadataResponseTopic {
    let topic_id = *topic.id.as_bytes();
    let partitions = (0..topic.partition_count)
        .map(|index| {
            let leader = ClusterView::leader(agents, &topic_id, index).map_or(-1, |a| a.node_id);
            MetadataResponsePartition::default()
                .with_partition_index(index)
                .with_leader_id(BrokerId(leader))
                .with_leader_epoch(0)
                .with_replica_nodes(vec![BrokerId(leader)])
                .with_isr_nodes(vec![BrokerId(leader)])
        })
        .collect();
    MetadataResponseTopic::default()
        .with_error_code(super::NO_ERROR)
        .with_name(Some(TopicName(StrBytes::from_string(topic.name.clone()))))
        .with_topic_id(topic.id)
        .with_partitions(partitions)
}
