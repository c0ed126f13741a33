//! Counters shared by the tasks of one side of a run (producers or consumers): records and
//! bytes done, a latency histogram, and Kafka error codes met. The progress line reads them
//! while the run goes on; the summary reads them at the end.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::histogram::LatencyHistogram;

/// Live counters of one side of a run.
#[derive(Debug, Default)]
pub struct Stats {
    records: AtomicU64,
    bytes: AtomicU64,
    wire_bytes: AtomicU64,
    failed_records: AtomicU64,
    latency: Mutex<LatencyHistogram>,
    errors: Mutex<BTreeMap<i16, u64>>,
}

/// A consistent-enough copy of [`Stats`] (each field is read once).
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// Records acknowledged (producers) or received (consumers).
    pub records: u64,
    /// Bytes of record keys and values in those records.
    pub bytes: u64,
    /// Bytes of the record batches that carried them, as sent or received.
    pub wire_bytes: u64,
    /// Records given up on after errors (producers).
    pub failed_records: u64,
    /// Latency samples.
    pub latency: LatencyHistogram,
    /// Kafka error code to the number of times it was met.
    pub errors: BTreeMap<i16, u64>,
}

impl Stats {
    /// Empty counters behind a shared handle.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Counts `records` records of `bytes` key and value bytes, carried in `wire_bytes`
    /// bytes of record batches.
    pub fn add(&self, records: u64, bytes: u64, wire_bytes: u64) {
        self.records.fetch_add(records, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        self.wire_bytes.fetch_add(wire_bytes, Ordering::Relaxed);
    }

    /// Counts records given up on.
    pub fn fail(&self, records: u64) {
        self.failed_records.fetch_add(records, Ordering::Relaxed);
    }

    /// Counts one occurrence of a Kafka error code.
    pub fn error(&self, code: i16) {
        *lock(&self.errors).entry(code).or_insert(0) += 1;
    }

    /// Records latency samples under the histogram's lock.
    pub fn with_latency(&self, record: impl FnOnce(&mut LatencyHistogram)) {
        record(&mut lock(&self.latency));
    }

    /// Records so far.
    pub fn records(&self) -> u64 {
        self.records.load(Ordering::Relaxed)
    }

    /// Key and value bytes so far.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// The 99th percentile latency so far, in milliseconds (0 without samples).
    pub fn p99_ms(&self) -> f64 {
        lock(&self.latency).quantile_ms(0.99)
    }

    /// A copy of everything.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            records: self.records(),
            bytes: self.bytes(),
            wire_bytes: self.wire_bytes.load(Ordering::Relaxed),
            failed_records: self.failed_records.load(Ordering::Relaxed),
            latency: lock(&self.latency).clone(),
            errors: lock(&self.errors).clone(),
        }
    }
}

/// A poisoned lock only means another task panicked while counting; the counts stay usable.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn counts_add_up() {
        let stats = Stats::new();
        stats.add(10, 1000, 1100);
        stats.add(5, 500, 560);
        stats.error(6);
        stats.error(6);
        stats.fail(3);
        stats.with_latency(|h| h.record_n(Duration::from_millis(2), 15));
        let snapshot = stats.snapshot();
        assert_eq!(snapshot.records, 15);
        assert_eq!(snapshot.bytes, 1500);
        assert_eq!(snapshot.wire_bytes, 1660);
        assert_eq!(snapshot.failed_records, 3);
        assert_eq!(snapshot.errors.get(&6), Some(&2));
        assert_eq!(snapshot.latency.len(), 15);
    }
}
