//! The metadata service's Prometheus metrics.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use strata_telemetry::seconds_histogram;

/// Everything the metadata service counts.
#[derive(Debug, Clone)]
pub struct MetadataMetrics {
    /// Segment commits applied (retries of committed objects excluded).
    pub commits: Counter,
    /// Segment commits answered from the stored outcome of an earlier commit.
    pub commit_replays: Counter,
    /// Segment commits that failed in the store.
    pub commit_failures: Counter,
    /// Time of CommitSegment: waiting for a group and the group's store transaction.
    pub commit_seconds: Histogram,
    /// Segments per group-commit transaction.
    pub commit_group_segments: Histogram,
    /// Consumer groups with members or in a rebalance.
    pub groups: Gauge,
    /// Members of those groups.
    pub group_members: Gauge,
    /// Agents with a live lease.
    pub agents: Gauge,
    /// Cache nodes with a live lease.
    pub cache_nodes: Gauge,
    /// 1 while this process is the metadata leader, else 0.
    pub leader: Gauge,
    /// The lease epoch this process last held as leader.
    pub leader_epoch: Gauge,
    /// Partition log starts moved by the retention enforcer.
    pub retention_trims: Counter,
}

impl Default for MetadataMetrics {
    fn default() -> Self {
        Self {
            commits: Counter::default(),
            commit_replays: Counter::default(),
            commit_failures: Counter::default(),
            commit_seconds: seconds_histogram(),
            commit_group_segments: Histogram::new(
                prometheus_client::metrics::histogram::exponential_buckets(1.0, 2.0, 9),
            ),
            groups: Gauge::default(),
            group_members: Gauge::default(),
            agents: Gauge::default(),
            cache_nodes: Gauge::default(),
            leader: Gauge::default(),
            leader_epoch: Gauge::default(),
            retention_trims: Counter::default(),
        }
    }
}

impl MetadataMetrics {
    /// Registers every family under `strata_metadata_*`.
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("strata_metadata");
        r.register("commits", "Segment commits applied", self.commits.clone());
        r.register(
            "commit_replays",
            "Retried segment commits answered with the first outcome",
            self.commit_replays.clone(),
        );
        r.register(
            "commit_failures",
            "Segment commits that failed in the store",
            self.commit_failures.clone(),
        );
        r.register(
            "commit_seconds",
            "Time of a segment commit: waiting for a group and its store transaction",
            self.commit_seconds.clone(),
        );
        r.register(
            "commit_group_segments",
            "Segments applied in one group-commit transaction",
            self.commit_group_segments.clone(),
        );
        r.register(
            "groups",
            "Consumer groups held in memory (members or rebalancing)",
            self.groups.clone(),
        );
        r.register(
            "group_members",
            "Members of consumer groups",
            self.group_members.clone(),
        );
        r.register("agents", "Agents with a live lease", self.agents.clone());
        r.register(
            "cache_nodes",
            "Cache nodes with a live lease",
            self.cache_nodes.clone(),
        );
        r.register(
            "leader",
            "1 while this process holds the metadata leader lease",
            self.leader.clone(),
        );
        r.register(
            "leader_epoch",
            "Lease epoch this process last held as leader",
            self.leader_epoch.clone(),
        );
        r.register(
            "retention_trims",
            "Partition log starts moved by retention.ms or retention.bytes",
            self.retention_trims.clone(),
        );
    }
}
