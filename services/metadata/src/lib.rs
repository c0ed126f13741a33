//! The Strata metadata service.
//!
//! Owns topics and partitions, assigns offsets (the sequencer), keeps the segment index and
//! streams high-watermark changes. It is the only writer of offsets: agents upload segment
//! objects first and call `CommitSegment` second, and a producer is answered only after that
//! commit returned, so every acknowledged record is both in the bucket and in the index.
//!
//! Storage is behind [`store::MetadataStore`]; [`sqlite::SqliteStore`] is the embedded default
//! and [`postgres::PostgresStore`] the production store.

pub mod agents;
pub mod commit_plan;
mod compaction;
pub mod group_commit;
pub mod groups;
pub mod leadership;
pub mod metrics;
mod objects;
pub mod postgres;
pub mod producer_sequence;
pub mod replace_rules;
pub mod retention;
pub mod retention_rules;
pub mod segment_pb;
pub mod service;
pub mod sqlite;
pub mod store;
mod topic_configs;
pub mod topic_rules;

#[cfg(test)]
pub(crate) mod conformance;

use std::sync::Arc;

pub use service::MetadataServiceImpl;
use strata_proto::metadata::v1::metadata_service_server::MetadataServiceServer;
use tonic::service::interceptor::InterceptedService;
use tonic::service::Interceptor;

/// The metadata gRPC service as served: every call passes the leadership gate first.
pub type MetadataGrpc = InterceptedService<MetadataServiceServer<MetadataServiceImpl>, LeaderGate>;

/// Admits calls while this process is the leader; refuses them naming the leader otherwise.
#[derive(Debug, Clone)]
pub struct LeaderGate(leadership::Leadership);

impl Interceptor for LeaderGate {
    fn call(&mut self, request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        self.0.admit(request)
    }
}

/// The tonic server wrapper for a [`MetadataServiceImpl`], ready to add to a router.
pub fn grpc_service(service: MetadataServiceImpl) -> MetadataGrpc {
    let gate = LeaderGate(service.leadership().clone());
    let server = MetadataServiceServer::from_arc(Arc::new(service))
        .max_decoding_message_size(64 * 1024 * 1024)
        .max_encoding_message_size(64 * 1024 * 1024);
    InterceptedService::new(server, gate)
}
