//! Metadata: brokers and topic layouts.
//!
//! Every agent can take any partition, so this agent names itself leader of everything it
//! reports. Unknown topics are created when both the client and the agent allow it.

use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use crate::context::Agent;
use crate::topics::Topic;

/// Answers a Metadata request.
pub async fn handle(agent: &Agent, version: i16, request: MetadataRequest) -> MetadataResponse {
    let node = BrokerId(agent.config.node_id);
    let broker = MetadataResponseBroker::default()
        .with_node_id(node)
        .with_host(StrBytes::from_string(agent.config.advertised_host.clone()))
        .with_port(i32::from(agent.config.advertised_port))
        .with_rack(
            agent
                .config
                .availability_zone
                .clone()
                .map(StrBytes::from_string),
        );
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
        .with_brokers(vec![broker])
        .with_cluster_id(Some(StrBytes::from_string(agent.config.cluster_id.clone())))
        .with_controller_id(node)
        .with_topics(topics)
}

async fn by_name(
    agent: &Agent,
    name: &TopicName,
    allow_create: bool,
    node: BrokerId,
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

async fn by_id(agent: &Agent, id: uuid::Uuid, node: BrokerId) -> MetadataResponseTopic {
    match agent.topics.by_id(id).await {
        Ok(topic) => describe(&topic, node),
        Err(error) => MetadataResponseTopic::default()
            .with_topic_id(id)
            .with_error_code(error.code()),
    }
}

fn describe(topic: &Topic, node: BrokerId) -> MetadataResponseTopic {
    let partitions = (0..topic.partition_count)
        .map(|index| {
            MetadataResponsePartition::default()
                .with_partition_index(index)
                .with_leader_id(node)
                .with_leader_epoch(0)
                .with_replica_nodes(vec![node])
                .with_isr_nodes(vec![node])
        })
        .collect();
    MetadataResponseTopic::default()
        .with_error_code(super::NO_ERROR)
        .with_name(Some(TopicName(StrBytes::from_string(topic.name.clone()))))
        .with_topic_id(topic.id)
        .with_partitions(partitions)
}
