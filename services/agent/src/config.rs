//! Settings of one agent.

use std::net::SocketAddr;
use std::time::Duration;

/// Everything an agent needs to know at start.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Address the Kafka listener binds.
    pub kafka_listen: SocketAddr,
    /// Host clients are told to connect to (Metadata responses).
    pub advertised_host: String,
    /// Port clients are told to connect to.
    pub advertised_port: u16,
    /// Kafka node id of this agent.
    pub node_id: i32,
    /// Cluster id reported in Metadata responses.
    pub cluster_id: String,
    /// Longest time a produced batch waits for its segment to be flushed.
    pub flush_interval: Duration,
    /// A segment is flushed as soon as it holds this many bytes.
    pub flush_bytes: usize,
    /// Also flush as soon as no upload is in flight (low latency when idle, larger segments
    /// under load); without it a segment waits for `flush_interval` or `flush_bytes`.
    pub adaptive_flush: bool,
    /// Most bytes of produced batches held while waiting for their segment's commit; a
    /// producer beyond it waits (its connection is not read) until uploads catch up.
    pub max_buffered_bytes: usize,
    /// With adaptive flush, the least time between the starts of two flushes (caps PUTs per
    /// second at low load).
    pub flush_min_gap: Duration,
    /// Segment uploads in flight at once.
    pub max_inflight_uploads: usize,
    /// zstd level for segment chunks.
    pub zstd_level: i32,
    /// Create unknown topics when a client's Metadata request allows it.
    pub auto_create_topics: bool,
    /// Partitions of auto-created topics and of CreateTopics with num_partitions -1.
    pub default_partitions: i32,
    /// Bytes of segment blocks kept in the read tier's block cache.
    pub read_cache_bytes: u64,
    /// Size of the aligned blocks the read tier reads objects in (one ranged GET each).
    pub read_block_bytes: u64,
    /// Bytes of decoded chunks kept on top of the block cache (0: decode on every read).
    pub read_decoded_cache_bytes: u64,
    /// Bytes of a partition's data after a sequential reader's fetch whose blocks are loaded
    /// ahead of it (0: no read-ahead); at most a quarter of `read_cache_bytes` is used.
    pub read_ahead_bytes: u64,
    /// Read-ahead block loads in flight at once, agent-wide.
    pub read_ahead_concurrency: usize,
    /// Availability zone, reported as the broker's rack in Metadata responses.
    pub availability_zone: Option<String>,
    /// How often the agent renews its registration with the metadata service.
    pub heartbeat_interval: Duration,
    /// How often the orphan and unreferenced-object collectors run; zero disables both.
    pub gc_interval: Duration,
    /// How old an uncommitted segment object must be before the collector deletes it.
    pub orphan_grace: Duration,
    /// How long a segment object must have been unreferenced by the index before the
    /// collector deletes it: longer than any fetch that may still be reading it.
    pub unreferenced_grace: Duration,
    /// How long a registration lasts without renewal: an agent that stops heartbeating
    /// drops out of Metadata responses after this long.
    pub agent_lease: Duration,
    /// Time between compaction passes; zero disables the compactor.
    pub compaction_interval: Duration,
    /// Only segment objects written at least this long ago are compacted.
    pub compaction_min_age: Duration,
    /// Most raw bytes of record batches in one compacted object (one chunk, one index row).
    pub compaction_target_bytes: u64,
    /// host:port other nodes reach this agent's cache peer server at, when the agent also
    /// serves the cache role (it then owns its share of blocks on the ring).
    pub cache_advertised_addr: Option<String>,
    /// How the read tier talks to the cache nodes owning blocks.
    pub cache_peers: strata_cache::PeerConfig,
    /// What one Kafka client may take: connections, request bytes, time.
    pub listener: crate::limits::ListenerLimits,
    /// Most record bytes in one Fetch response, whatever the client asks (Kafka
    /// `fetch.max.bytes`); the first batch is still served whole (KIP-74).
    pub fetch_max_bytes: usize,
    /// Topics one agent may create on clients' Metadata requests: at most this many a
    /// second on average, in bursts of up to ten seconds' worth.
    pub auto_create_topics_per_second: u32,
}

impl Default for AgentConfig {
    fn default() -> Self {
        Self {
            kafka_listen: SocketAddr::from(([127, 0, 0, 1], 9092)),
            advertised_host: "127.0.0.1".into(),
            advertised_port: 9092,
            node_id: 1,
            cluster_id: "strata".into(),
            flush_interval: Duration::from_millis(100),
            flush_bytes: 8 * 1024 * 1024,
            max_inflight_uploads: 4,
            max_buffered_bytes: 256 * 1024 * 1024,
            adaptive_flush: false,
            flush_min_gap: Duration::ZERO,
            zstd_level: 1,
            auto_create_topics: true,
            default_partitions: 1,
            read_cache_bytes: 256 * 1024 * 1024,
            read_block_bytes: crate::block_cache::DEFAULT_BLOCK_BYTES,
            read_decoded_cache_bytes: 64 * 1024 * 1024,
            read_ahead_bytes: 32 * 1024 * 1024,
            read_ahead_concurrency: 16,
            availability_zone: None,
            heartbeat_interval: Duration::from_secs(1),
            agent_lease: Duration::from_secs(5),
            gc_interval: Duration::from_secs(5 * 60),
            orphan_grace: Duration::from_secs(15 * 60),
            unreferenced_grace: Duration::from_secs(10 * 60),
            compaction_interval: Duration::from_secs(5 * 60),
            compaction_min_age: Duration::from_secs(10 * 60),
            compaction_target_bytes: 16 * 1024 * 1024,
            cache_advertised_addr: None,
            cache_peers: strata_cache::PeerConfig::default(),
            listener: crate::limits::ListenerLimits::default(),
            fetch_max_bytes: 55 * 1024 * 1024,
            auto_create_topics_per_second: 10,
        }
    }
}
