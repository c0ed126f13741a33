//! What a run prints: a progress line on stderr every second, and a final summary on
//! stdout, as text or (with `--json`) as one JSON object.
//!
//! MB means 10^6 bytes. Throughput is measured over the whole run, from the first record
//! created to the last one acknowledged or received.

use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::error::{error_name, BenchError};
use crate::histogram::LatencySummary;
use crate::stats::Stats;

/// The result of one side of a run (producers or consumers).
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// "produce" or "consume".
    pub mode: &'static str,
    /// The topic.
    pub topic: String,
    /// Records acknowledged (produce) or received (consume).
    pub records: u64,
    /// Bytes of record keys and values in those records.
    pub bytes: u64,
    /// Bytes of the record batches that carried them (after compression).
    pub wire_bytes: u64,
    /// Seconds from the start of the run to its last acknowledgement or record.
    pub duration_s: f64,
    /// records / duration_s.
    pub records_per_s: f64,
    /// bytes / duration_s / 10^6.
    pub mb_per_s: f64,
    /// What the latency figures measure.
    pub latency_measures: &'static str,
    /// Latency percentiles in milliseconds.
    pub latency_ms: LatencySummary,
    /// Kafka error codes met in responses, each with its count (retried ones included).
    pub errors: Vec<ErrorCount>,
    /// Records given up on after errors (produce).
    pub failed_records: u64,
}

/// How often one Kafka error code was met.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ErrorCount {
    /// The Kafka error code.
    pub code: i16,
    /// Kafka's name for it.
    pub name: String,
    /// Occurrences (one per partition response carrying it).
    pub count: u64,
}

/// The result of `strata bench e2e`: the producing and the consuming side.
#[derive(Debug, Clone, Serialize)]
pub struct E2eSummary {
    /// Always "e2e".
    pub mode: &'static str,
    /// Producers; latency from record creation to acknowledgement.
    pub produce: Summary,
    /// Consumers; latency from record creation to its arrival at a consumer.
    pub consume: Summary,
}

impl Summary {
    /// Summarises `stats` over `duration`.
    pub fn new(
        mode: &'static str,
        topic: &str,
        stats: &Stats,
        duration: Duration,
        latency_measures: &'static str,
    ) -> Self {
        let snapshot = stats.snapshot();
        let secs = duration.as_secs_f64().max(1e-9);
        Self {
            mode,
            topic: topic.to_string(),
            records: snapshot.records,
            bytes: snapshot.bytes,
            wire_bytes: snapshot.wire_bytes,
            duration_s: duration.as_secs_f64(),
            records_per_s: snapshot.records as f64 / secs,
            mb_per_s: snapshot.bytes as f64 / secs / 1e6,
            latency_measures,
            latency_ms: snapshot.latency.summary(),
            errors: snapshot
                .errors
                .iter()
                .map(|(code, count)| ErrorCount {
                    code: *code,
                    name: error_name(*code),
                    count: *count,
                })
                .collect(),
            failed_records: snapshot.failed_records,
        }
    }

    /// The summary as lines of text.
    pub fn to_text(&self) -> String {
        let mut text = String::new();
        let l = &self.latency_ms;
        let _ = writeln!(text, "{} {}", self.mode, self.topic);
        let _ = writeln!(text, "  records      {}", grouped(self.records));
        let _ = writeln!(
            text,
            "  bytes        {} (keys and values), {} in record batches",
            grouped(self.bytes),
            grouped(self.wire_bytes)
        );
        let _ = writeln!(text, "  duration     {:.2} s", self.duration_s);
        let _ = writeln!(
            text,
            "  throughput   {} records/s, {:.2} MB/s",
            grouped(self.records_per_s.round() as u64),
            self.mb_per_s
        );
        let _ = writeln!(
            text,
            "  latency ms   p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}  ({} samples: {})",
            l.p50, l.p90, l.p99, l.p99_9, l.max, grouped(l.samples), self.latency_measures
        );
        if self.errors.is_empty() {
            let _ = writeln!(text, "  errors       none");
        } else {
            for e in &self.errors {
                let _ = writeln!(text, "  error        {} ({}): {}", e.name, e.code, e.count);
            }
        }
        if self.failed_records > 0 {
            let _ = writeln!(
                text,
                "  failed       {} records",
                grouped(self.failed_records)
            );
        }
        text
    }
}

/// Prints `summary` on stdout: one JSON object with `json`, else `text`. A closed stdout
/// (the reader went away) is not an error.
pub fn emit<T: Serialize>(json: bool, summary: &T, text: &str) -> Result<(), BenchError> {
    let mut out = if json {
        serde_json::to_string(summary).map_err(|e| BenchError::Output(std::io::Error::other(e)))?
    } else {
        text.to_string()
    };
    if !out.ends_with('\n') {
        out.push('\n');
    }
    print_stdout(&out)
}

/// Writes `text` to stdout and flushes it. A closed stdout (the reader went away) is not
/// an error.
pub fn print_stdout(text: &str) -> Result<(), BenchError> {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(BenchError::Output(e)),
    }
}

/// `n` with thousands separators: 1234567 -> "1,234,567".
pub fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The progress line printer; stops when dropped.
#[derive(Debug)]
pub struct Progress {
    task: Option<JoinHandle<()>>,
}

impl Progress {
    /// Prints, every second on stderr, each side's records/s and MB/s over the last second
    /// and its p99 latency so far. `quiet` prints nothing.
    pub fn start(quiet: bool, sides: Vec<(&'static str, Arc<Stats>)>) -> Self {
        if quiet {
            return Self { task: None };
        }
        let task = tokio::spawn(async move {
            let start = Instant::now();
            let mut last: Vec<(u64, u64)> = sides.iter().map(|_| (0, 0)).collect();
            let mut last_at = start;
            let mut tick =
                tokio::time::interval_at(start + Duration::from_secs(1), Duration::from_secs(1));
            loop {
                let now = tick.tick().await;
                let secs = now.duration_since(last_at).as_secs_f64().max(1e-9);
                last_at = now;
                let mut line = format!("[{:>6.1}s]", now.duration_since(start).as_secs_f64());
                for ((label, stats), previous) in sides.iter().zip(last.iter_mut()) {
                    let (records, bytes) = (stats.records(), stats.bytes());
                    let _ = write!(
                        line,
                        "  {label}: {} rec/s {:.2} MB/s p99 {:.2} ms (total {})",
                        grouped(((records - previous.0) as f64 / secs).round() as u64),
                        (bytes - previous.1) as f64 / secs / 1e6,
                        stats.p99_ms(),
                        grouped(records)
                    );
                    *previous = (records, bytes);
                }
                eprintln!("{line}");
            }
        });
        Self { task: Some(task) }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_grouped_by_thousands() {
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(1000), "1,000");
        assert_eq!(grouped(1_234_567), "1,234,567");
    }

    #[test]
    fn summaries_compute_rates_and_name_errors() {
        let stats = Stats::new();
        stats.add(2_000, 2_000_000, 2_100_000);
        stats.error(7);
        let summary = Summary::new("produce", "t", &stats, Duration::from_secs(2), "ack");
        assert_eq!(summary.records_per_s, 1000.0);
        assert_eq!(summary.mb_per_s, 1.0);
        assert_eq!(
            summary.errors,
            vec![ErrorCount {
                code: 7,
                name: "RequestTimedOut".into(),
                count: 1
            }]
        );
        let text = summary.to_text();
        assert!(text.contains("RequestTimedOut (7): 1"), "{text}");
        let json = serde_json::to_value(&summary).expect("serialises");
        assert_eq!(json["records"], 2000);
        assert_eq!(json["latency_ms"]["samples"], 0);
    }
}
