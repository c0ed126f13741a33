//! InitProducerId for idempotent producers; transactions are not supported yet.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};
use strata_proto::metadata::v1 as pb;

use crate::context::Agent;

/// Issues a producer id (or bumps the epoch of a known one, KIP-360) through the metadata
/// service.
pub async fn handle(agent: &Agent, request: InitProducerIdRequest) -> InitProducerIdResponse {
    let failed = |error: ResponseError| {
        InitProducerIdResponse::default()
            .with_error_code(error.code())
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1)
    };
    if request.transactional_id.is_some() {
        return failed(ResponseError::TransactionalIdAuthorizationFailed);
    }
    let call = pb::InitProducerIdRequest {
        producer_id: request.producer_id.0,
        epoch: i32::from(request.producer_epoch),
    };
    match agent.metadata.clone().init_producer_id(call).await {
        Ok(response) => {
            let response = response.into_inner();
            InitProducerIdResponse::default()
                .with_producer_id(ProducerId(response.producer_id))
                .with_producer_epoch(response.epoch as i16)
        }
        Err(status) if status.code() == tonic::Code::FailedPrecondition => {
            failed(ResponseError::InvalidProducerEpoch)
        }
        Err(status) => {
            tracing::warn!(%status, "InitProducerId failed");
            failed(ResponseError::CoordinatorNotAvailable)
        }
    }
}
