//! ApiVersions: what this agent speaks.

use bytes::{Buf, Bytes};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse};

use super::{encode_response, Call, Outcome, SUPPORTED_APIS};

fn advertised() -> Vec<ApiVersion> {
    SUPPORTED_APIS
        .iter()
        .map(|(key, min, max)| {
            ApiVersion::default()
                .with_api_key(*key as i16)
                .with_min_version(*min)
                .with_max_version(*max)
        })
        .collect()
}

/// Lists every supported API with its version range.
pub fn handle(_request: ApiVersionsRequest) -> ApiVersionsResponse {
    ApiVersionsResponse::default().with_api_keys(advertised())
}

/// Answers an ApiVersions request of a version newer than ours with UNSUPPORTED_VERSION in
/// the v0 layout, listing what we support, so the client retries with a version we know.
pub fn unsupported_version(mut frame: Bytes, version: i16) -> Outcome {
    // header v1 and v2 both start with key, version, correlation id
    frame.advance(4);
    let correlation_id = frame.get_i32();
    let call = Call {
        api: ApiKey::ApiVersions,
        version: 0,
        correlation_id,
        client_id: None,
        peer: None,
    };
    tracing::debug!(version, "ApiVersions version not supported");
    let body = ApiVersionsResponse::default()
        .with_error_code(ResponseError::UnsupportedVersion.code())
        .with_api_keys(advertised());
    let frame = encode_response(&call, &body);
    Outcome::Respond(Box::pin(async move { frame.map(Some) }))
}
