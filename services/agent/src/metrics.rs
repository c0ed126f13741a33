//! The agent's Prometheus metrics.
//!
//! Families are created unregistered ([`AgentMetrics::default`]) so tests need no registry;
//! the binary registers them once with [`AgentMetrics::register`].

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use strata_telemetry::{bytes_histogram, seconds_histogram};

/// Label of per-API metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApiLabel {
    /// Kafka API name, e.g. Produce.
    pub api: String,
}

/// Label of per-partition error counts.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabel {
    /// Kafka API name.
    pub api: &'static str,
    /// Kafka error name, e.g. CorruptMessage.
    pub error: String,
}

pub use strata_cache::metrics::{ReadMetrics, ReasonLabel, SourceLabel};

/// Everything the agent counts.
#[derive(Debug, Clone)]
pub struct AgentMetrics {
    /// Kafka requests by API.
    pub requests: Family<ApiLabel, Counter>,
    /// Time from reading a request to having its response ready, by API.
    pub request_seconds: Family<ApiLabel, Histogram>,
    /// Per-partition errors returned to clients, by API and error.
    pub partition_errors: Family<ErrorLabel, Counter>,
    /// Open Kafka connections.
    pub connections_open: Gauge,
    /// Kafka connections accepted.
    pub connections: Counter,
    /// Connections closed because of a malformed or unsupported request.
    pub connections_rejected: Counter,
    /// Record batch bytes accepted from producers.
    pub produce_bytes: Counter,
    /// Records accepted from producers.
    pub produce_records: Counter,
    /// Record batch bytes sent to consumers.
    pub fetch_bytes: Counter,
    /// Segments flushed (uploaded and committed).
    pub flushes: Counter,
    /// Segment flushes that failed.
    pub flush_failures: Counter,
    /// Size of flushed segment objects.
    pub flush_bytes: Histogram,
    /// Time from taking a segment to having its commit (encode, PUT, commit).
    pub flush_seconds: Histogram,
    /// Time of the CommitSegment call alone.
    pub commit_seconds: Histogram,
    /// Chunk reads asked of the read tier.
    pub cache_requests: Counter,
    /// Chunk reads not answered by the decoded-chunk cache: assembled from blocks and decoded.
    pub cache_misses: Counter,
    /// The read tier: blocks, bucket reads, read-ahead.
    pub read: ReadMetrics,
    /// Uncommitted segment objects deleted by the orphan collector.
    pub orphans_deleted: Counter,
    /// Unreferenced segment objects deleted (retention, DeleteRecords, deleted topics).
    pub unreferenced_deleted: Counter,
    /// The compactor's counters.
    pub compaction: crate::compactor::CompactionMetrics,
    /// The Kafka listener's limits.
    pub listener: crate::limits::ListenerMetrics,
    /// Keeps repeated limit log lines down to one per kind and minute.
    pub listener_log: crate::limits::LogThrottle,
    /// Index rows fetches could not serve.
    pub damaged: std::sync::Arc<crate::damaged::DamagedRows>,
}

impl Default for AgentMetrics {
    fn default() -> Self {
        Self {
            requests: Family::default(),
            request_seconds: Family::new_with_constructor(seconds_histogram),
            partition_errors: Family::default(),
            connections_open: Gauge::default(),
            connections: Counter::default(),
            connections_rejected: Counter::default(),
            produce_bytes: Counter::default(),
            produce_records: Counter::default(),
            fetch_bytes: Counter::default(),
            flushes: Counter::default(),
            flush_failures: Counter::default(),
            flush_bytes: bytes_histogram(),
            flush_seconds: seconds_histogram(),
            commit_seconds: seconds_histogram(),
            cache_requests: Counter::default(),
            cache_misses: Counter::default(),
            read: ReadMetrics::default(),
            orphans_deleted: Counter::default(),
            unreferenced_deleted: Counter::default(),
            compaction: crate::compactor::CompactionMetrics::default(),
            listener: crate::limits::ListenerMetrics::default(),
            listener_log: crate::limits::LogThrottle::default(),
            damaged: std::sync::Arc::default(),
        }
    }
}

impl AgentMetrics {
    /// Registers every family under `strata_agent_*`.
    pub fn register(&self, registry: &mut Registry) {
        self.compaction.register(registry);
        let r = registry.sub_registry_with_prefix("strata_agent");
        r.register("requests", "Kafka requests by API", self.requests.clone());
        r.register(
            "request_seconds",
            "Kafka request handling time by API",
            self.request_seconds.clone(),
        );
        r.register(
            "partition_errors",
            "Per-partition Kafka errors returned, by API and error",
            self.partition_errors.clone(),
        );
        r.register(
            "connections_open",
            "Open Kafka connections",
            self.connections_open.clone(),
        );
        r.register(
            "connections",
            "Kafka connections accepted",
            self.connections.clone(),
        );
        r.register(
            "connections_rejected",
            "Connections closed for a malformed or unsupported request",
            self.connections_rejected.clone(),
        );
        r.register(
            "produce_bytes",
            "Record batch bytes accepted from producers",
            self.produce_bytes.clone(),
        );
        r.register(
            "produce_records",
            "Records accepted from producers",
            self.produce_records.clone(),
        );
        r.register(
            "fetch_bytes",
            "Record batch bytes sent to consumers",
            self.fetch_bytes.clone(),
        );
        r.register(
            "flushes",
            "Segments uploaded and committed",
            self.flushes.clone(),
        );
        r.register(
            "flush_failures",
            "Segment flushes that failed",
            self.flush_failures.clone(),
        );
        r.register(
            "flush_bytes",
            "Size of flushed segment objects",
            self.flush_bytes.clone(),
        );
        r.register(
            "flush_seconds",
            "Encode, upload and commit time of a segment",
            self.flush_seconds.clone(),
        );
        r.register(
            "commit_seconds",
            "CommitSegment call time",
            self.commit_seconds.clone(),
        );
        r.register(
            "read_cache_requests",
            "Chunk reads asked of the read tier",
            self.cache_requests.clone(),
        );
        r.register(
            "read_cache_misses",
            "Chunk reads assembled from blocks and decoded (not in the decoded-chunk cache)",
            self.cache_misses.clone(),
        );
        self.read.register(r);
        self.listener.register(r);
        self.damaged.register(r);
        r.register(
            "orphans_deleted",
            "Uncommitted segment objects deleted after their grace period",
            self.orphans_deleted.clone(),
        );
        r.register(
            "unreferenced_deleted",
            "Segment objects no index row referenced any more, deleted after their grace period",
            self.unreferenced_deleted.clone(),
        );
    }

    /// Counts a per-partition error returned by `api`.
    pub fn partition_error(&self, api: &'static str, error: kafka_protocol::error::ResponseError) {
        self.partition_errors
            .get_or_create(&ErrorLabel {
                api,
                error: format!("{error:?}"),
            })
            .inc();
    }
}
