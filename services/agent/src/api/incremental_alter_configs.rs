//! IncrementalAlterConfigs: changes topic configs (`AdminClient.incremental_alter_configs`,
//! `kafka-configs.sh --alter`).
//!
//! Topic configs can be set (SET) or returned to their defaults (DELETE); Strata has no
//! list-valued topic configs, so APPEND and SUBTRACT get INVALID_CONFIG. Each resource is
//! changed on its own and atomically: one bad entry changes nothing of that resource.
//! Broker configs are fixed at start and refused. `validate_only` checks without storing.

use std::collections::HashSet;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::incremental_alter_configs_request::AlterConfigsResource;
use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse};
use kafka_protocol::protocol::StrBytes;
use strata_proto::metadata::v1 as pb;

use crate::context::Agent;

const RESOURCE_TOPIC: i8 = 2;
const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;

/// Applies each resource's changes independently.
pub async fn handle(
    agent: &Agent,
    request: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let mut responses = Vec::with_capacity(request.resources.len());
    for resource in &request.resources {
        let outcome = alter(agent, resource, request.validate_only).await;
        let response = AlterConfigsResourceResponse::default()
            .with_resource_type(resource.resource_type)
            .with_resource_name(resource.resource_name.clone());
        responses.push(match outcome {
            Ok(()) => response,
            Err((error, message)) => response
                .with_error_code(error.code())
                .with_error_message(Some(StrBytes::from_string(message))),
        });
    }
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}

async fn alter(
    agent: &Agent,
    resource: &AlterConfigsResource,
    validate_only: bool,
) -> Result<(), (ResponseError, String)> {
    if resource.resource_type != RESOURCE_TOPIC {
        return Err((
            ResponseError::InvalidRequest,
            "only topic configs can be changed; broker settings are fixed at start".into(),
        ));
    }
    let changes = changes_of(resource)?;
    agent
        .topics
        .alter_configs(&resource.resource_name, changes, validate_only)
        .await
}

/// The metadata service's changes for a resource's entries.
fn changes_of(
    resource: &AlterConfigsResource,
) -> Result<Vec<pb::TopicConfigChange>, (ResponseError, String)> {
    let mut seen = HashSet::new();
    let mut changes = Vec::with_capacity(resource.configs.len());
    for config in &resource.configs {
        let name = config.name.to_string();
        if !seen.insert(name.clone()) {
            return Err((
                ResponseError::InvalidRequest,
                format!("config {name:?} is named more than once"),
            ));
        }
        let change = match (config.config_operation, &config.value) {
            (OP_SET, Some(value)) => pb::TopicConfigChange {
                name,
                value: value.to_string(),
                reset: false,
            },
            (OP_SET, None) => {
                return Err((
                    ResponseError::InvalidRequest,
                    format!("SET of {name:?} needs a value"),
                ))
            }
            (OP_DELETE, _) => pb::TopicConfigChange {
                name,
                value: String::new(),
                reset: true,
            },
            (op, _) => {
                return Err((
                    ResponseError::InvalidConfig,
                    format!("operation {op} on {name:?}: Strata's topic configs are not lists"),
                ))
            }
        };
        changes.push(change);
    }
    Ok(changes)
}
