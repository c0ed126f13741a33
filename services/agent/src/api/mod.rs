//! Kafka API handlers, one file per API, and the dispatch that routes frames to them.
//!
//! Only the APIs and versions in [`SUPPORTED_APIS`] are advertised and accepted. A frame with
//! an unknown API key, an unsupported version or a body that does not decode closes the
//! connection, as Kafka brokers do; ApiVersions with a too-new version is answered with
//! UNSUPPORTED_VERSION in the v0 layout (KIP-511).

mod api_versions;
mod create_topics;
mod delete_records;
mod delete_topics;
mod describe_configs;
mod fetch;
mod find_coordinator;
mod group_relay;
mod incremental_alter_configs;
mod init_producer_id;
mod list_offsets;
mod metadata;
mod offset_for_leader_epoch;
mod produce;

use std::future::Future;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use futures::future::BoxFuture;
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable};

use tracing::Instrument;

use crate::context::Agent;
use crate::metrics::ApiLabel;

/// The APIs this agent implements, with the version range of each.
pub const SUPPORTED_APIS: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 9),
    (ApiKey::Fetch, 4, 16),
    (ApiKey::ListOffsets, 1, 7),
    (ApiKey::Metadata, 0, 12),
    (ApiKey::ApiVersions, 0, 3),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::DeleteRecords, 0, 2),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::FindCoordinator, 0, 4),
    (ApiKey::JoinGroup, 0, 9),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::OffsetCommit, 2, 8),
    (ApiKey::OffsetFetch, 1, 8),
    (ApiKey::OffsetDelete, 0, 0),
    (ApiKey::ListGroups, 0, 4),
    (ApiKey::DescribeGroups, 0, 5),
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::OffsetForLeaderEpoch, 2, 4),
    (ApiKey::InitProducerId, 0, 4),
];

/// Kafka's "no error" code.
pub const NO_ERROR: i16 = 0;

/// The supported version range of `api`, if it is implemented.
pub fn supported_versions(api: ApiKey) -> Option<(i16, i16)> {
    SUPPORTED_APIS
        .iter()
        .find(|(key, _, _)| *key == api)
        .map(|(_, min, max)| (*min, *max))
}

/// What the connection does with one request frame.
pub enum Outcome {
    /// Send this response (when it resolves) in order; `Ok(None)` sends nothing.
    Respond(BoxFuture<'static, Result<Option<Bytes>, String>>),
    /// Close the connection, for this reason.
    Close(String),
}

/// The request's header fields a handler needs to answer.
#[derive(Debug, Clone)]
pub struct Call {
    /// Which API.
    pub api: ApiKey,
    /// Request (and response) version.
    pub version: i16,
    /// Correlation id to echo.
    pub correlation_id: i32,
    /// The client's id, for logs.
    pub client_id: Option<String>,
    /// The client's address.
    pub peer: Option<std::net::SocketAddr>,
}

/// Encodes a response frame: size, response header, body.
pub fn encode_response<R: Encodable>(call: &Call, body: &R) -> Result<Bytes, String> {
    let header = ResponseHeader::default().with_correlation_id(call.correlation_id);
    let mut buf = BytesMut::with_capacity(64);
    buf.put_i32(0);
    header
        .encode(&mut buf, call.api.response_header_version(call.version))
        .and_then(|()| body.encode(&mut buf, call.version))
        .map_err(|e| {
            format!(
                "cannot encode {:?} v{} response: {e}",
                call.api, call.version
            )
        })?;
    let size = (buf.len() - 4) as i32;
    buf[0..4].copy_from_slice(&size.to_be_bytes());
    Ok(buf.freeze())
}

/// Encodes a response frame around a body that is already encoded.
pub fn encode_raw_response(call: &Call, body: &[u8]) -> Result<Bytes, String> {
    let header = ResponseHeader::default().with_correlation_id(call.correlation_id);
    let mut buf = BytesMut::with_capacity(body.len() + 16);
    buf.put_i32(0);
    header
        .encode(&mut buf, call.api.response_header_version(call.version))
        .map_err(|e| format!("cannot encode {:?} response header: {e}", call.api))?;
    buf.extend_from_slice(body);
    let size = (buf.len() - 4) as i32;
    buf[0..4].copy_from_slice(&size.to_be_bytes());
    Ok(buf.freeze())
}

/// Runs `work` concurrently with later requests; its result is sent in request order.
fn spawn_reply<R, F>(call: Call, work: F) -> Outcome
where
    R: Encodable + Send + 'static,
    F: Future<Output = R> + Send + 'static,
{
    // the handler runs in the request's span (see `dispatch`)
    let task = tokio::spawn(work.in_current_span());
    Outcome::Respond(Box::pin(async move {
        let body = task.await.map_err(|e| format!("handler failed: {e}"))?;
        encode_response(&call, &body).map(Some)
    }))
}

fn decode<T: Decodable>(frame: &mut Bytes, call: &Call) -> Result<T, Outcome> {
    T::decode(frame, call.version).map_err(|e| {
        Outcome::Close(format!(
            "malformed {:?} v{} request: {e}",
            call.api, call.version
        ))
    })
}

/// Decodes one request frame and starts its handler.
pub async fn dispatch(
    agent: &Arc<Agent>,
    mut frame: Bytes,
    peer: Option<std::net::SocketAddr>,
) -> Outcome {
    if frame.len() < 8 {
        return Outcome::Close(format!("request of {} bytes is too short", frame.len()));
    }
    let key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let Ok(api) = ApiKey::try_from(key) else {
        return Outcome::Close(format!("unknown api key {key}"));
    };
    let Some((min, max)) = supported_versions(api) else {
        return Outcome::Close(format!("unsupported api {api:?}"));
    };
    if api == ApiKey::ApiVersions && !(min..=max).contains(&version) {
        return api_versions::unsupported_version(frame, version);
    }
    if !(min..=max).contains(&version) {
        return Outcome::Close(format!("unsupported {api:?} version {version}"));
    }
    let header = match RequestHeader::decode(&mut frame, api.request_header_version(version)) {
        Ok(header) => header,
        Err(e) => return Outcome::Close(format!("malformed request header: {e}")),
    };
    let call = Call {
        api,
        version,
        correlation_id: header.correlation_id,
        client_id: header.client_id.as_ref().map(|c| c.to_string()),
        peer,
    };
    let span = tracing::info_span!(
        "request",
        api = ?api,
        version,
        correlation_id = call.correlation_id,
        client_id = call.client_id.as_deref().unwrap_or(""),
        peer = ?call.peer
    );
    let label = ApiLabel {
        api: format!("{api:?}"),
    };
    agent.metrics.requests.get_or_create(&label).inc();
    let timer = agent.metrics.request_seconds.get_or_create(&label).clone();
    let started = tokio::time::Instant::now();
    match route(Arc::clone(agent), call, frame)
        .instrument(span.clone())
        .await
    {
        Ok(Outcome::Respond(pending)) => Outcome::Respond(Box::pin(
            async move {
                let response = pending.await;
                timer.observe(started.elapsed().as_secs_f64());
                response
            }
            .instrument(span),
        )),
        Ok(outcome) | Err(outcome) => outcome,
    }
}

async fn route(agent: Arc<Agent>, call: Call, mut frame: Bytes) -> Result<Outcome, Outcome> {
    let outcome = match call.api {
        ApiKey::ApiVersions => {
            let request = decode(&mut frame, &call)?;
            spawn_reply(call, async move { api_versions::handle(request) })
        }
        ApiKey::Metadata => {
            let request = decode(&mut frame, &call)?;
            let version = call.version;
            spawn_reply(call, async move {
                metadata::handle(&agent, version, request).await
            })
        }
        ApiKey::CreateTopics => {
            let request = decode(&mut frame, &call)?;
            spawn_reply(
                call,
                async move { create_topics::handle(&agent, request).await },
            )
        }
        ApiKey::DeleteTopics => {
            let request = decode(&mut frame, &call)?;
            spawn_reply(
                call,
                async move { delete_topics::handle(&agent, request).await },
            )
        }
        ApiKey::DeleteRecords => {
            let request = decode(&mut frame, &call)?;
            spawn_reply(call, async move {
                delete_records::handle(&agent, request).await
            })
        }
        ApiKey::DescribeConfigs => {
            let request = decode(&mut frame, &call)?;
            spawn_reply(call, async move {
                describe_configs::handle(&agent, request).await
            })
        }
        ApiKey::IncrementalAlterConfigs => {
            let request = decode(&mut frame, &call)?;
            spawn_reply(call, async move {
                incremental_alter_configs::handle(&agent, request).await
            })
        }
        ApiKey::ListOffsets => {
            let request = decode(&mut frame, &call)?;
            spawn_reply(
                call,
                async move { list_offsets::handle(&agent, request).await },
            )
        }
        ApiKey::Fetch => {
            let request = decode(&mut frame, &call)?;
            let version = call.version;
            spawn_reply(call, async move {
                fetch::handle(&agent, version, request).await
            })
        }
        ApiKey::Produce => {
            let request = decode(&mut frame, &call)?;
            produce::handle(&agent, call, request).await
        }
        ApiKey::FindCoordinator => {
            let request = decode(&mut frame, &call)?;
            let version = call.version;
            spawn_reply(call, async move {
                find_coordinator::handle(&agent, version, request)
            })
        }
        ApiKey::InitProducerId => {
            let request = decode(&mut frame, &call)?;
            spawn_reply(call, async move {
                init_producer_id::handle(&agent, request).await
            })
        }
        ApiKey::OffsetForLeaderEpoch => {
            let request = decode(&mut frame, &call)?;
            spawn_reply(call, async move {
                offset_for_leader_epoch::handle(&agent, request).await
            })
        }
        ApiKey::JoinGroup
        | ApiKey::SyncGroup
        | ApiKey::Heartbeat
        | ApiKey::LeaveGroup
        | ApiKey::OffsetCommit
        | ApiKey::OffsetFetch
        | ApiKey::OffsetDelete
        | ApiKey::ListGroups
        | ApiKey::DescribeGroups
        | ApiKey::DeleteGroups => group_relay::relay(agent, call, frame),
        other => Outcome::Close(format!("no handler for {other:?}")),
    };
    Ok(outcome)
}
