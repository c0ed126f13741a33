//! FindCoordinator: every agent relays group requests, so each names itself.

use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::StrBytes;

use crate::context::Agent;

/// The first version that takes several keys at once.
const BATCHED_VERSION: i16 = 4;

/// Names this agent as coordinator of every requested key.
pub fn handle(
    agent: &Agent,
    version: i16,
    request: FindCoordinatorRequest,
) -> FindCoordinatorResponse {
    let node = BrokerId(agent.config.node_id);
    let host = StrBytes::from_string(agent.config.advertised_host.clone());
    let port = i32::from(agent.config.advertised_port);
    if version < BATCHED_VERSION {
        return FindCoordinatorResponse::default()
            .with_node_id(node)
            .with_host(host)
            .with_port(port);
    }
    let coordinators = request
        .coordinator_keys
        .into_iter()
        .map(|key| {
            Coordinator::default()
                .with_key(key)
                .with_node_id(node)
                .with_host(host.clone())
                .with_port(port)
        })
        .collect();
    FindCoordinatorResponse::default().with_coordinators(coordinators)
}
