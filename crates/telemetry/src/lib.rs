//! Telemetry shared by Strata's services.
//!
//! - [`Registry`] is prometheus-client's registry; each service registers its own metric
//!   families into one registry per process.
//! - [`serve_http`] answers `/metrics` (Prometheus text format), `/healthz` (the process is
//!   up) and `/readyz` (the service can do its work).
//! - [`MeteredStore`] wraps an object store and counts requests, bytes, errors and latency
//!   per operation, so the core never measures its own bucket calls.

mod http;
mod metered_store;

pub use http::{serve_http, serve_http_within, HttpLimits, Readiness};
pub use metered_store::{MeteredStore, ObjectStoreMetrics};
pub use prometheus_client;
pub use prometheus_client::registry::Registry;

use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};

/// A histogram of durations in seconds, from 100 µs to about 100 s.
pub fn seconds_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 2.0, 21))
}

/// A histogram of sizes in bytes, from 1 KiB to 1 GiB.
pub fn bytes_histogram() -> Histogram {
    Histogram::new(exponential_buckets(1024.0, 2.0, 21))
}
