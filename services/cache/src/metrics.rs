//! The read tier's Prometheus metrics.
//!
//! Families are created unregistered (`Default`) so tests need no registry; the binary
//! registers them once with [`ReadMetrics::register`].

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Where the bytes of a read came from.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabel {
    /// `cache` (a block already in memory, or being loaded by another reader), `bucket`
    /// (a block this read loaded from the bucket) or `peer` (a block this read fetched from
    /// the cache node owning it).
    pub source: &'static str,
}

/// Why the read tier went to the bucket.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// `demand` (a fetch waits for it), `prefetch` (read-ahead) or `peer` (another cache
    /// node asked this one, the block's owner, for it).
    pub reason: &'static str,
}

/// How a block request to its owning cache node ended.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    /// `ok`, `not_found` (the object is gone; the read fails as a bucket read would),
    /// `failed` (the caller then read the bucket itself) or `skipped` (the owner failed
    /// recently, so the caller went straight to the bucket).
    pub outcome: &'static str,
}

/// The read tier's counters (block cache, decoded chunks, read-ahead, peers).
///
/// Hit ratio is `block_hits / (block_hits + block_misses)`; bucket GETs per MB served is
/// `bucket_gets / (fetch_bytes / 1e6)`.
#[derive(Debug, Clone, Default)]
pub struct ReadMetrics {
    /// Block lookups answered from memory, including waits on another reader's load.
    pub block_hits: Counter,
    /// Block lookups that loaded the block themselves (from the bucket or a peer).
    pub block_misses: Counter,
    /// Bytes handed to chunk reads, by where their block came from.
    pub served_bytes: Family<SourceLabel, Counter>,
    /// Ranged GETs the read tier issued, by reason.
    pub bucket_gets: Family<ReasonLabel, Counter>,
    /// Bytes those GETs returned, by reason.
    pub bucket_bytes: Family<ReasonLabel, Counter>,
    /// Block loads started by read-ahead.
    pub prefetch_issued: Counter,
    /// Prefetched blocks later read by a fetch (each counted once).
    pub prefetch_used: Counter,
    /// Prefetches not started because the read-ahead concurrency limit was reached, or
    /// because read-ahead already held its share of the cache.
    pub prefetch_skipped: Counter,
    /// Bytes of blocks held in the cache (approximate; moka settles it lazily).
    pub cached_bytes: Gauge,
    /// Blocks requested from their owning cache node, by outcome.
    pub peer_gets: Family<OutcomeLabel, Counter>,
    /// Bytes of blocks received from owning cache nodes.
    pub peer_bytes: Counter,
    /// Blocks this node served to other cache nodes (as their owner).
    pub peer_served_blocks: Counter,
    /// Bytes of blocks this node served to other cache nodes.
    pub peer_served_bytes: Counter,
    /// Cache nodes on the ring this node routes blocks over (0: no ring, read the bucket).
    pub ring_members: Gauge,
}

impl ReadMetrics {
    /// Registers every family in `r` under the `read_` prefix.
    pub fn register(&self, r: &mut Registry) {
        let counters = [
            (
                "read_block_hits",
                "Block lookups answered from the block cache",
                &self.block_hits,
            ),
            (
                "read_block_misses",
                "Block lookups that loaded the block from the bucket or a peer",
                &self.block_misses,
            ),
            (
                "read_prefetch_issued",
                "Block loads started by read-ahead",
                &self.prefetch_issued,
            ),
            (
                "read_prefetch_used",
                "Prefetched blocks later read by a fetch",
                &self.prefetch_used,
            ),
            (
                "read_prefetch_skipped",
                "Prefetches not started: read-ahead at its concurrency limit or holding its share of the cache",
                &self.prefetch_skipped,
            ),
            (
                "read_peer_bytes",
                "Bytes of blocks received from their owning cache nodes",
                &self.peer_bytes,
            ),
            (
                "read_peer_served_blocks",
                "Blocks served to other cache nodes as their owner",
                &self.peer_served_blocks,
            ),
            (
                "read_peer_served_bytes",
                "Bytes of blocks served to other cache nodes",
                &self.peer_served_bytes,
            ),
        ];
        for (name, help, counter) in counters {
            r.register(name, help, counter.clone());
        }
        r.register(
            "read_served_bytes",
            "Bytes handed to chunk reads, by where their block came from",
            self.served_bytes.clone(),
        );
        r.register(
            "read_bucket_gets",
            "Ranged GETs issued by the read tier, by reason",
            self.bucket_gets.clone(),
        );
        r.register(
            "read_bucket_bytes",
            "Bytes read from the bucket by the read tier, by reason",
            self.bucket_bytes.clone(),
        );
        r.register(
            "read_peer_gets",
            "Blocks requested from their owning cache node, by outcome",
            self.peer_gets.clone(),
        );
        r.register(
            "read_cached_bytes",
            "Bytes of blocks held in the block cache",
            self.cached_bytes.clone(),
        );
        r.register(
            "read_ring_members",
            "Cache nodes on the ring blocks are routed over",
            self.ring_members.clone(),
        );
    }
}
