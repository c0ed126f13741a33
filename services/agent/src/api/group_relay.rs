//! Consumer-group APIs, relayed to the metadata service's group coordinator.
//!
//! The Kafka body goes over gRPC unchanged and the coordinator's Kafka response body comes
//! back; the agent only adds the response header. When the coordinator cannot be reached or
//! rejects the body, the connection is closed and the client reconnects and retries.

use std::sync::Arc;

use bytes::Bytes;
use strata_proto::metadata::v1::GroupCallRequest;

use tracing::Instrument;

use super::{encode_raw_response, Call, Outcome};
use crate::context::Agent;

/// Relays one group request; its response keeps its place in the connection's order.
pub fn relay(agent: Arc<Agent>, call: Call, body: Bytes) -> Outcome {
    let request = GroupCallRequest {
        api_key: i32::from(call.api as i16),
        api_version: i32::from(call.version),
        body: body.to_vec(),
        client_id: call.client_id.clone().unwrap_or_default(),
        client_host: call
            .peer
            .map(|p| format!("/{}", p.ip()))
            .unwrap_or_default(),
    };
    let task = tokio::spawn(
        async move { agent.metadata.clone().group_call(request).await }.in_current_span(),
    );
    Outcome::Respond(Box::pin(async move {
        let reply = task.await.map_err(|e| format!("group relay failed: {e}"))?;
        match reply {
            Ok(response) => encode_raw_response(&call, &response.into_inner().body).map(Some),
            Err(status) => Err(format!(
                "group coordinator failed {:?} v{}: {status}",
                call.api, call.version
            )),
        }
    }))
}
