//! Index rows the agent could not serve: counted, logged once in a while, and remembered.
//!
//! A consumer stuck at a damaged row asks for it on every fetch; each attempt is counted,
//! but a row is logged (with its object key) only when first met and then at most once per
//! [`RELOG_AFTER`], so one damaged row cannot flood the log. At most [`MAX_REMEMBERED`] rows
//! are remembered; `strata check` lists every damaged row of a cluster from the bucket.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use strata_proto::metadata::v1::IndexedChunk;
use tokio::time::Instant;

use crate::read::{ReadError, ServeError};

/// A row is logged again after this long if reads keep failing on it.
pub const RELOG_AFTER: Duration = Duration::from_secs(600);
/// Most damaged rows remembered at once.
pub const MAX_REMEMBERED: usize = 1024;

/// Label of the damaged-read counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DamageLabel {
    /// `missing` (object not in the bucket), `corrupt` (bytes fail their checks) or
    /// `unavailable` (the bucket failed; may pass on retry).
    pub kind: &'static str,
}

/// What the agent knows of one damaged row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DamagedRow {
    /// The row's topic.
    pub topic_id: uuid::Uuid,
    /// The row's partition.
    pub partition: i32,
    /// The row's object key.
    pub object_key: String,
    /// The row's first offset.
    pub base_offset: i64,
    /// One past the row's last offset.
    pub end_offset: i64,
    /// The last failure.
    pub reason: String,
    /// Failed reads of the row.
    pub failures: u64,
}

/// The rows this agent failed to serve, with their metrics.
#[derive(Debug, Default)]
pub struct DamagedRows {
    rows: Mutex<HashMap<(String, u64), (DamagedRow, Instant)>>,
    /// Failed reads of index rows, by kind.
    pub failed_reads: Family<DamageLabel, Counter>,
    /// Damaged rows remembered now.
    pub remembered: Gauge,
}

impl DamagedRows {
    /// Registers the metrics under the agent's prefix.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "damaged_row_reads",
            "Fetch reads that stopped at an index row that could not be served, by kind",
            self.failed_reads.clone(),
        );
        registry.register(
            "damaged_rows",
            "Distinct index rows this agent failed to serve (up to 1024 remembered)",
            self.remembered.clone(),
        );
    }

    /// Records a failed read of `row` of `topic_id`/`partition`.
    pub fn record(
        &self,
        topic_id: uuid::Uuid,
        partition: i32,
        row: &IndexedChunk,
        error: &ServeError,
    ) {
        let kind = kind_of(error);
        self.failed_reads.get_or_create(&DamageLabel { kind }).inc();
        let now = Instant::now();
        let mut rows = self.rows.lock().unwrap_or_else(|p| p.into_inner());
        let key = (row.object_key.clone(), row.byte_offset);
        let full = rows.len() >= MAX_REMEMBERED;
        let log = match rows.get_mut(&key) {
            Some((known, logged)) => {
                known.failures += 1;
                known.reason = error.to_string();
                let due = now.duration_since(*logged) >= RELOG_AFTER;
                if due {
                    *logged = now;
                }
                due.then(|| known.clone())
            }
            None if full => None,
            None => {
                let known = DamagedRow {
                    topic_id,
                    partition,
                    object_key: row.object_key.clone(),
                    base_offset: row.base_offset,
                    end_offset: row.end_offset,
                    reason: error.to_string(),
                    failures: 1,
                };
                rows.insert(key, (known.clone(), now));
                Some(known)
            }
        };
        self.remembered.set(rows.len() as i64);
        drop(rows);
        if let Some(row) = log {
            tracing::warn!(
                topic_id = %row.topic_id,
                partition = row.partition,
                object = %row.object_key,
                offsets = %format!("{}..{}", row.base_offset, row.end_offset),
                kind,
                failures = row.failures,
                reason = %row.reason,
                "index row cannot be served; consumers get the records before it, then an error"
            );
        }
    }

    /// The rows remembered, in no particular order.
    pub fn rows(&self) -> Vec<DamagedRow> {
        let rows = self.rows.lock().unwrap_or_else(|p| p.into_inner());
        rows.values().map(|(row, _)| row.clone()).collect()
    }
}

fn kind_of(error: &ServeError) -> &'static str {
    match error {
        ServeError::Unreadable {
            source: ReadError::Bucket(_),
            ..
        } => "unavailable",
        ServeError::Unreadable {
            source: ReadError::Missing { .. },
            ..
        } => "missing",
        ServeError::Unreadable {
            source: ReadError::Corrupt { .. },
            ..
        }
        | ServeError::Corrupt(_) => "corrupt",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(key: &str) -> IndexedChunk {
        IndexedChunk {
            object_key: key.into(),
            base_offset: 10,
            end_offset: 20,
            ..IndexedChunk::default()
        }
    }

    #[tokio::test]
    async fn counts_every_failure_and_remembers_each_row_once() {
        let damaged = DamagedRows::default();
        let missing = ServeError::Unreadable {
            key: "a".into(),
            source: ReadError::Missing { key: "a".into() },
        };
        for _ in 0..5 {
            damaged.record(uuid::Uuid::nil(), 0, &row("a"), &missing);
        }
        let label = DamageLabel { kind: "missing" };
        assert_eq!(damaged.failed_reads.get_or_create(&label).get(), 5);
        let rows = damaged.rows();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].failures, 5);
        assert_eq!(rows[0].object_key, "a");
        assert_eq!(damaged.remembered.get(), 1);
    }
}
