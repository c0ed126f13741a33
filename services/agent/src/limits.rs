//! What one Kafka client may take of an agent: connections, request memory and time.
//!
//! - [`ConnectionGate`] admits a connection only while the agent holds fewer than
//!   `max.connections` in all and fewer than `max.connections.per.ip` from the client's
//!   address; the [`ConnectionSlot`] it hands out gives the place back when dropped.
//! - [`RequestMemory`] is the agent-wide pool of request bytes being read or waiting to be
//!   handled (`queued.max.request.bytes`). A frame takes its bytes from the pool as they
//!   arrive, not from its size prefix, so a client that announces a large frame and stalls
//!   holds only what it really sent, and only until the read timeout.
//!
//! Invariants: the counts in the gate equal the live slots; the pool never lends more than
//! its size, and a frame larger than the whole pool is refused before any byte is read.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Limits of the Kafka listener, named after Kafka's broker settings where Kafka has one.
#[derive(Debug, Clone)]
pub struct ListenerLimits {
    /// Largest request frame accepted (Kafka `socket.request.max.bytes`); larger ones close
    /// the connection.
    pub max_request_bytes: usize,
    /// Time a client has to send the size prefix and the request header once the first byte
    /// of a frame arrived.
    pub header_timeout: Duration,
    /// Time a client has to send a whole frame once its first byte arrived.
    pub body_timeout: Duration,
    /// A connection that sends no request (and has no response to write) for this long is
    /// closed, as is one whose client reads no response for this long
    /// (Kafka `connections.max.idle.ms`).
    pub idle_timeout: Duration,
    /// Most connections the agent holds open (Kafka `max.connections`).
    pub max_connections: usize,
    /// Most connections from one client address (Kafka `max.connections.per.ip`).
    pub max_connections_per_ip: usize,
    /// Bytes of requests being read or waiting for their handler, agent-wide (Kafka
    /// `queued.max.request.bytes`).
    pub queued_max_request_bytes: usize,
}

impl Default for ListenerLimits {
    fn default() -> Self {
        Self {
            max_request_bytes: 100 * 1024 * 1024,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(600),
            max_connections: 10_000,
            max_connections_per_ip: 1_000,
            queued_max_request_bytes: 512 * 1024 * 1024,
        }
    }
}

/// Why a connection was closed by a limit: the metric label and the log reason.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LimitLabel {
    /// `max_connections`, `max_connections_per_ip`, `idle`, `header_timeout`,
    /// `body_timeout`, `write_timeout`, `request_too_large`.
    pub limit: &'static str,
}

/// The listener's own metrics.
#[derive(Debug, Clone, Default)]
pub struct ListenerMetrics {
    /// Connections closed or refused by a limit, by limit.
    pub limited: Family<LimitLabel, Counter>,
    /// Request bytes currently held from the pool (read, or waiting for their handler).
    pub queued_request_bytes: Gauge,
    /// Times a connection waited because the request pool was empty.
    pub request_memory_waits: Counter,
    /// Topics clients' Metadata requests would have auto-created over the allowed rate.
    pub auto_create_throttled: Counter,
}

impl ListenerMetrics {
    /// Counts one connection closed or refused by `limit`.
    pub fn limited(&self, limit: &'static str) {
        self.limited.get_or_create(&LimitLabel { limit }).inc();
    }

    /// Registers the families under `registry` (the agent's `strata_agent` prefix).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "connections_limited",
            "Kafka connections refused or closed by a listener limit, by limit",
            self.limited.clone(),
        );
        registry.register(
            "queued_request_bytes",
            "Bytes of Kafka requests being read or waiting for their handler",
            self.queued_request_bytes.clone(),
        );
        registry.register(
            "auto_create_throttled",
            "Topics not auto-created because auto-creation was over its rate",
            self.auto_create_throttled.clone(),
        );
        registry.register(
            "request_memory_waits",
            "Times a connection waited for room in the request memory pool",
            self.request_memory_waits.clone(),
        );
    }
}

/// Lets a log line about one kind of event through at most once per interval, so a client
/// that trips a limit in a loop cannot flood the log (the metrics still count every event).
#[derive(Debug, Clone)]
pub struct LogThrottle {
    interval: Duration,
    last: Arc<Mutex<HashMap<&'static str, tokio::time::Instant>>>,
}

impl Default for LogThrottle {
    fn default() -> Self {
        Self::new(Duration::from_secs(60))
    }
}

impl LogThrottle {
    /// A throttle letting each kind through once per `interval`.
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            last: Arc::default(),
        }
    }

    /// Runs `log` unless a line of this `kind` went through less than the interval ago.
    pub fn note(&self, kind: &'static str, log: impl FnOnce()) {
        let now = tokio::time::Instant::now();
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        match last.get(kind) {
            Some(at) if now.duration_since(*at) < self.interval => {}
            _ => {
                last.insert(kind, now);
                drop(last);
                log();
            }
        }
    }
}

/// A token bucket: `rate` events a second on average, in bursts of up to `burst`.
#[derive(Debug)]
pub struct RateLimit {
    rate: f64,
    burst: f64,
    state: Mutex<(f64, tokio::time::Instant)>,
}

impl RateLimit {
    /// A bucket that starts full; a `rate` of 0 allows nothing.
    pub fn new(rate: u32, burst: u32) -> Self {
        Self {
            rate: f64::from(rate),
            burst: f64::from(burst),
            state: Mutex::new((f64::from(burst), tokio::time::Instant::now())),
        }
    }

    /// Takes one token if there is one.
    pub fn try_take(&self) -> bool {
        let now = tokio::time::Instant::now();
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let (tokens, at) = *state;
        let refilled = (tokens + now.duration_since(at).as_secs_f64() * self.rate).min(self.burst);
        if refilled >= 1.0 {
            *state = (refilled - 1.0, now);
            true
        } else {
            *state = (refilled, now);
            false
        }
    }
}

/// Counts open connections in all and per client address.
#[derive(Debug)]
pub struct ConnectionGate {
    max_total: usize,
    max_per_ip: usize,
    open: Mutex<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

/// Why [`ConnectionGate::admit`] refused a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// The agent holds `max.connections` already.
    #[error("the agent holds its maximum of {0} connections")]
    Total(usize),
    /// The client's address holds `max.connections.per.ip` already.
    #[error("the client address holds its maximum of {0} connections")]
    PerIp(usize),
}

impl Refused {
    /// The limit's metric label.
    pub fn label(&self) -> &'static str {
        match self {
            Refused::Total(_) => "max_connections",
            Refused::PerIp(_) => "max_connections_per_ip",
        }
    }
}

impl ConnectionGate {
    /// A gate admitting at most `max_total` connections, `max_per_ip` from one address.
    pub fn new(max_total: usize, max_per_ip: usize) -> Arc<Self> {
        Arc::new(Self {
            max_total,
            max_per_ip,
            open: Mutex::default(),
        })
    }

    /// Takes a place for a connection from `ip`, or says which limit is reached.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<ConnectionSlot, Refused> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if open.total >= self.max_total {
            return Err(Refused::Total(self.max_total));
        }
        let from_ip = open.per_ip.get(&ip).copied().unwrap_or(0);
        if from_ip >= self.max_per_ip {
            return Err(Refused::PerIp(self.max_per_ip));
        }
        open.total += 1;
        open.per_ip.insert(ip, from_ip + 1);
        Ok(ConnectionSlot {
            gate: Arc::clone(self),
            ip,
        })
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open.lock().unwrap_or_else(|p| p.into_inner()).total
    }
}

/// One admitted connection's place; dropping it frees the place.
#[derive(Debug)]
pub struct ConnectionSlot {
    gate: Arc<ConnectionGate>,
    ip: IpAddr,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut open = self.gate.open.lock().unwrap_or_else(|p| p.into_inner());
        open.total = open.total.saturating_sub(1);
        if let Some(count) = open.per_ip.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                open.per_ip.remove(&self.ip);
            }
        }
    }
}

/// The agent-wide pool of request bytes.
#[derive(Debug, Clone)]
pub struct RequestMemory {
    pool: Arc<Semaphore>,
    size: usize,
    metrics: ListenerMetrics,
}

impl RequestMemory {
    /// A pool of `size` bytes (at least 1, at most 4 GiB - 1).
    pub fn new(size: usize, metrics: ListenerMetrics) -> Self {
        let size = size.clamp(1, Semaphore::MAX_PERMITS.min(u32::MAX as usize));
        Self {
            pool: Arc::new(Semaphore::new(size)),
            size,
            metrics,
        }
    }

    /// Bytes the pool holds in all: no frame may be larger.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Takes `bytes` from the pool, waiting while it is empty.
    pub async fn take(&self, bytes: usize) -> RequestBytes {
        let bytes = bytes.min(self.size);
        let permit = match Arc::clone(&self.pool).try_acquire_many_owned(permits(bytes)) {
            Ok(permit) => Some(permit),
            Err(_) => {
                self.metrics.request_memory_waits.inc();
                // the pool is never closed, so this only waits
                Arc::clone(&self.pool)
                    .acquire_many_owned(permits(bytes))
                    .await
                    .ok()
            }
        };
        self.metrics.queued_request_bytes.inc_by(bytes as i64);
        RequestBytes {
            permit,
            bytes,
            metrics: self.metrics.clone(),
        }
    }
}

fn permits(bytes: usize) -> u32 {
    u32::try_from(bytes).unwrap_or(u32::MAX)
}

/// Bytes held from the [`RequestMemory`] pool, given back when dropped.
#[derive(Debug)]
pub struct RequestBytes {
    permit: Option<OwnedSemaphorePermit>,
    bytes: usize,
    metrics: ListenerMetrics,
}

impl RequestBytes {
    /// Adds `more` held bytes to these.
    pub fn merge(&mut self, mut more: RequestBytes) {
        match (&mut self.permit, more.permit.take()) {
            (Some(mine), Some(theirs)) => mine.merge(theirs),
            (mine @ None, theirs) => *mine = theirs,
            (Some(_), None) => {}
        }
        self.bytes += more.bytes;
        more.bytes = 0;
    }

    /// An empty hold, to merge into.
    pub fn none(memory: &RequestMemory) -> Self {
        Self {
            permit: None,
            bytes: 0,
            metrics: memory.metrics.clone(),
        }
    }
}

impl Drop for RequestBytes {
    fn drop(&mut self) {
        self.metrics.queued_request_bytes.dec_by(self.bytes as i64);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn gate_counts_total_and_per_ip() {
        let gate = ConnectionGate::new(3, 2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let first = gate.admit(a).unwrap();
        let _second = gate.admit(a).unwrap();
        assert_eq!(gate.admit(a).unwrap_err(), Refused::PerIp(2));
        let _third = gate.admit(b).unwrap();
        assert_eq!(gate.admit(b).unwrap_err(), Refused::Total(3));
        drop(first);
        assert_eq!(gate.open(), 2);
        assert!(gate.admit(a).is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn throttle_lets_one_line_per_kind_and_interval() {
        let throttle = LogThrottle::new(Duration::from_secs(60));
        let mut lines = 0;
        for _ in 0..100 {
            throttle.note("a", || lines += 1);
        }
        throttle.note("b", || lines += 1);
        assert_eq!(lines, 2);
        tokio::time::advance(Duration::from_secs(61)).await;
        throttle.note("a", || lines += 1);
        assert_eq!(lines, 3);
    }

    #[tokio::test(start_paused = true)]
    async fn rate_limit_allows_bursts_then_the_rate() {
        let limit = RateLimit::new(2, 5);
        assert_eq!((0..10).filter(|_| limit.try_take()).count(), 5);
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!((0..10).filter(|_| limit.try_take()).count(), 2);
        assert!(!RateLimit::new(0, 0).try_take());
    }

    #[tokio::test]
    async fn pool_lends_at_most_its_size() {
        let memory = RequestMemory::new(100, ListenerMetrics::default());
        let mut held = memory.take(60).await;
        held.merge(memory.take(40).await);
        let waiting = tokio::time::timeout(Duration::from_millis(50), memory.take(1)).await;
        assert!(waiting.is_err(), "the pool lent more than its size");
        assert_eq!(memory.metrics.queued_request_bytes.get(), 100);
        drop(held);
        let _again = memory.take(100).await;
        assert_eq!(memory.metrics.request_memory_waits.get(), 1);
    }
}
