//! Generated gRPC code for Strata's services, compiled from `proto/` at build time.
#![allow(missing_docs, clippy::all, clippy::unwrap_used)]

/// `strata.metadata.v1`: topics, the offset sequencer, the segment index.
pub mod metadata {
    /// Version 1 of the metadata API.
    pub mod v1 {
        tonic::include_proto!("strata.metadata.v1");
    }
}

/// `strata.cache.v1`: the read tier's peer protocol (blocks fetched from their owner).
pub mod cache {
    /// Version 1 of the cache peer API.
    pub mod v1 {
        tonic::include_proto!("strata.cache.v1");
    }
}
