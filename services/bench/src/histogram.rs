//! Latency histograms (HdrHistogram, microseconds, 3 significant digits) and the
//! percentiles a report shows.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Longest latency recorded exactly; longer ones are recorded as this (one hour).
const MAX_MICROS: u64 = 3_600_000_000;

/// A histogram of latencies.
#[derive(Debug, Clone)]
pub struct LatencyHistogram {
    histogram: Histogram<u64>,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self::new()
    }
}

impl LatencyHistogram {
    /// An empty histogram covering 1 µs to 1 h.
    pub fn new() -> Self {
        #[allow(clippy::expect_used)]
        let histogram = Histogram::new_with_bounds(1, MAX_MICROS, 3)
            .expect("1 µs to 1 h at 3 significant digits is a valid histogram");
        Self { histogram }
    }

    /// Records one latency.
    pub fn record(&mut self, latency: Duration) {
        self.record_n(latency, 1);
    }

    /// Records `count` samples of the same latency.
    pub fn record_n(&mut self, latency: Duration, count: u64) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(MAX_MICROS);
        self.histogram
            .saturating_record_n(micros.clamp(1, MAX_MICROS), count);
    }

    /// Records a latency given in (possibly negative) microseconds; negatives count as 0.
    pub fn record_micros(&mut self, micros: i64) {
        let micros = u64::try_from(micros).unwrap_or(0);
        self.histogram
            .saturating_record(micros.clamp(1, MAX_MICROS));
    }

    /// Adds every sample of `other`.
    pub fn add(&mut self, other: &LatencyHistogram) {
        // both cover the same range, so adding cannot fail
        let _ = self.histogram.add(&other.histogram);
    }

    /// Number of samples.
    pub fn len(&self) -> u64 {
        self.histogram.len()
    }

    /// Whether no sample was recorded.
    pub fn is_empty(&self) -> bool {
        self.histogram.is_empty()
    }

    /// The value at quantile `q` (0..=1) in milliseconds; 0 when empty.
    pub fn quantile_ms(&self, q: f64) -> f64 {
        if self.histogram.is_empty() {
            return 0.0;
        }
        self.histogram.value_at_quantile(q) as f64 / 1000.0
    }

    /// The percentiles a report shows.
    pub fn summary(&self) -> LatencySummary {
        let max = if self.histogram.is_empty() {
            0.0
        } else {
            self.histogram.max() as f64 / 1000.0
        };
        LatencySummary {
            samples: self.len(),
            p50: self.quantile_ms(0.50),
            p90: self.quantile_ms(0.90),
            p99: self.quantile_ms(0.99),
            p99_9: self.quantile_ms(0.999),
            max,
        }
    }
}

/// Latency percentiles in milliseconds (0 when there are no samples).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LatencySummary {
    /// Number of samples.
    pub samples: u64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p99_9: f64,
    /// Largest sample.
    pub max: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_come_out_in_milliseconds() {
        let mut histogram = LatencyHistogram::new();
        for ms in 1..=100u64 {
            histogram.record(Duration::from_millis(ms));
        }
        let summary = histogram.summary();
        assert_eq!(summary.samples, 100);
        assert!((summary.p50 - 50.0).abs() < 0.1, "{summary:?}");
        assert!((summary.p99 - 99.0).abs() < 0.1, "{summary:?}");
        assert!((summary.max - 100.0).abs() < 0.1, "{summary:?}");
    }

    #[test]
    fn batches_and_merges_count_every_sample() {
        let mut one = LatencyHistogram::new();
        one.record_n(Duration::from_millis(3), 10);
        let mut two = LatencyHistogram::new();
        two.record_micros(-5);
        two.record(Duration::from_secs(7200));
        one.add(&two);
        assert_eq!(one.len(), 12);
        assert_eq!(LatencyHistogram::new().summary().p99, 0.0);
    }
}
