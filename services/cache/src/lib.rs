//! Strata's read tier: the block cache every agent and cache node keeps, the rendezvous
//! ring that gives each block one owner among the cache nodes of a zone, and the peer
//! protocol through which the others get the block from its owner.
//!
//! Reading a block: this process's cache ([`block_cache`]) → on a miss, the block's owner on
//! the ring ([`ring`], over gRPC with [`peer`]) → the bucket (one ranged GET) when this
//! process owns the block, when there is no ring, or when the owner fails. A hot block is
//! thus read from the bucket about once per zone, however many agents and consumers read it.

pub mod block_cache;
pub mod metrics;
pub mod peer;
pub mod ring;

pub use block_cache::{BlockCache, BlockCacheConfig, BlockError, BlockId};
pub use metrics::ReadMetrics;
pub use peer::{PeerClients, PeerConfig, PeerService};
pub use ring::{CacheRing, Route};
