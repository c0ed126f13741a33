//! DescribeConfigs for topics (every known config with its source) and for this broker.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};
use kafka_protocol::protocol::StrBytes;

use super::create_topics::{SOURCE_DEFAULT, SOURCE_TOPIC};
use crate::context::Agent;

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;
/// Config source for settings fixed when the broker started (STATIC_BROKER_CONFIG).
const SOURCE_STATIC_BROKER: i8 = 4;
/// ConfigType STRING: Strata does not type its configs more finely.
const TYPE_STRING: i8 = 2;

/// Describes each requested resource.
pub async fn handle(agent: &Agent, request: DescribeConfigsRequest) -> DescribeConfigsResponse {
    let mut results = Vec::with_capacity(request.resources.len());
    for resource in &request.resources {
        results.push(describe(agent, resource, request.include_synonyms).await);
    }
    DescribeConfigsResponse::default().with_results(results)
}

async fn describe(
    agent: &Agent,
    resource: &DescribeConfigsResource,
    synonyms: bool,
) -> DescribeConfigsResult {
    let result = DescribeConfigsResult::default()
        .with_resource_type(resource.resource_type)
        .with_resource_name(resource.resource_name.clone());
    let entries: Vec<(String, String, i8)> = match resource.resource_type {
        RESOURCE_TOPIC => match agent.topics.by_name(&resource.resource_name).await {
            Ok(topic) => topic
                .configs
                .iter()
                .map(|(n, v, d)| {
                    (
                        n.clone(),
                        v.clone(),
                        if *d { SOURCE_DEFAULT } else { SOURCE_TOPIC },
                    )
                })
                .collect(),
            Err(error) => return with_error(result, error),
        },
        RESOURCE_BROKER => broker_configs(agent),
        _ => return with_error(result, ResponseError::InvalidRequest),
    };
    let wanted = resource.configuration_keys.as_ref();
    let configs = entries
        .into_iter()
        .filter(|(name, _, _)| wanted.is_none_or(|keys| keys.iter().any(|k| k.as_str() == name)))
        .map(|(name, value, source)| entry(name, value, source, synonyms))
        .collect();
    result.with_configs(configs)
}

fn broker_configs(agent: &Agent) -> Vec<(String, String, i8)> {
    let c = &agent.config;
    [
        (
            "auto.create.topics.enable",
            c.auto_create_topics.to_string(),
        ),
        ("num.partitions", c.default_partitions.to_string()),
        (
            "socket.request.max.bytes",
            c.listener.max_request_bytes.to_string(),
        ),
        ("broker.id", c.node_id.to_string()),
        ("fetch.max.bytes", c.fetch_max_bytes.to_string()),
        (
            "connections.max.idle.ms",
            c.listener.idle_timeout.as_millis().to_string(),
        ),
        ("max.connections", c.listener.max_connections.to_string()),
        (
            "max.connections.per.ip",
            c.listener.max_connections_per_ip.to_string(),
        ),
        (
            "queued.max.request.bytes",
            c.listener.queued_max_request_bytes.to_string(),
        ),
    ]
    .into_iter()
    .map(|(n, v)| (n.to_string(), v, SOURCE_STATIC_BROKER))
    .collect()
}

fn entry(name: String, value: String, source: i8, synonyms: bool) -> DescribeConfigsResourceResult {
    let synonym_list = if synonyms {
        vec![DescribeConfigsSynonym::default()
            .with_name(StrBytes::from_string(name.clone()))
            .with_value(Some(StrBytes::from_string(value.clone())))
            .with_source(source)]
    } else {
        Vec::new()
    };
    DescribeConfigsResourceResult::default()
        .with_name(StrBytes::from_string(name))
        .with_value(Some(StrBytes::from_string(value)))
        .with_read_only(false)
        .with_config_source(source)
        .with_is_sensitive(false)
        .with_synonyms(synonym_list)
        .with_config_type(TYPE_STRING)
}

fn with_error(result: DescribeConfigsResult, error: ResponseError) -> DescribeConfigsResult {
    result
        .with_error_code(error.code())
        .with_error_message(Some(StrBytes::from_string(error.to_string())))
}
