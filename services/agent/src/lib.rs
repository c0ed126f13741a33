//! The Strata agent: a stateless Kafka broker in front of the bucket.
//!
//! It speaks the Kafka wire protocol ([`server`]), gathers produced batches of all partitions
//! into one segment object per flush ([`ingest`]), and serves fetches from the bucket through
//! its read tier: a cache of object blocks ([`block_cache`]) with read-ahead for sequential
//! readers ([`read_ahead`]) behind the chunk reader ([`read`]). Offsets come from the
//! metadata service, never from the agent.
//!
//! The write-path invariant this crate keeps: a producer is answered with success only after
//! its batches are in an object written with a create-only PUT *and* the metadata service has
//! committed that object's offsets.

pub mod api;
pub mod check;
pub use strata_cache::block_cache;
pub mod cluster;
pub mod compactor;
pub mod config;
pub mod damaged;
pub mod frame;
pub mod ingest;
pub mod limits;
pub mod metadata_client;
pub mod metrics;
pub mod orphans;
pub mod read;
pub mod read_ahead;
pub mod server;
pub mod topics;
pub mod unreferenced;
pub mod watermarks;

mod context;

pub use config::AgentConfig;
pub use context::Agent;
