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
pub mod groups;
pub mod metrics;
mod objects;
pub mod postgres;
pub mod producer_sequence;
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

/// The tonic server wrapper for a [`MetadataServiceImpl`], ready to add to a router.
pub fn grpc_service(service: MetadataServiceImpl) -> MetadataServiceServer<MetadataServiceImpl> {
    MetadataServiceServer::from_arc(Arc::new(service))
        .max_decoding_message_size(64 * 1024 * 1024)
        .max_encoding_message_size(64 * 1024 * 1024)
}
