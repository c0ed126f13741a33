//! CreateTopics: any replication factor is accepted, since durability comes from the bucket.

use std::collections::HashMap;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};
use kafka_protocol::protocol::StrBytes;

use crate::context::Agent;

/// Config source reported for configs set on the topic (DYNAMIC_TOPIC_CONFIG).
pub const SOURCE_TOPIC: i8 = 1;
/// Config source reported for defaults (DEFAULT_CONFIG).
pub const SOURCE_DEFAULT: i8 = 5;

/// Creates each requested topic independently.
pub async fn handle(agent: &Agent, request: CreateTopicsRequest) -> CreateTopicsResponse {
    let mut results = Vec::with_capacity(request.topics.len());
    for topic in request.topics {
        results.push(create_one(agent, topic, request.validate_only).await);
    }
    CreateTopicsResponse::default().with_topics(results)
}

async fn create_one(
    agent: &Agent,
    topic: CreatableTopic,
    validate_only: bool,
) -> CreatableTopicResult {
    let partitions = match (topic.num_partitions, topic.assignments.len()) {
        (-1, 0) => agent.config.default_partitions,
        (-1, assigned) => assigned as i32,
        (n, _) => n,
    };
    let configs: HashMap<String, String> = topic
        .configs
        .iter()
        .filter_map(|c| {
            c.value
                .as_ref()
                .map(|v| (c.name.to_string(), v.to_string()))
        })
        .collect();
    let result = CreatableTopicResult::default()
        .with_name(topic.name.clone())
        .with_replication_factor(if topic.replication_factor < 1 {
            1
        } else {
            topic.replication_factor
        });
    match agent
        .topics
        .create(&topic.name, partitions, configs, validate_only)
        .await
    {
        Ok(created) => {
            let configs = created
                .configs
                .iter()
                .map(|(name, value, is_default)| {
                    CreatableTopicConfigs::default()
                        .with_name(StrBytes::from_string(name.clone()))
                        .with_value(Some(StrBytes::from_string(value.clone())))
                        .with_config_source(if *is_default {
                            SOURCE_DEFAULT
                        } else {
                            SOURCE_TOPIC
                        })
                })
                .collect();
            result
                .with_topic_id(created.id)
                .with_num_partitions(created.partition_count)
                .with_configs(Some(configs))
        }
        Err(error) => failed(result, error),
    }
}

fn failed(result: CreatableTopicResult, error: ResponseError) -> CreatableTopicResult {
    result
        .with_error_code(error.code())
        .with_error_message(Some(StrBytes::from_string(error.to_string())))
        .with_num_partitions(-1)
        .with_replication_factor(-1)
}
