//! One producer client: batching, pipelining and retries over one connection per leader.
//!
//! Records go to one partition at a time (sticky partitioning): a partition's batch is
//! closed when it holds `records_per_batch` records, or once its first record has waited
//! `linger` and a request slot is free; the next records go to the client's next partition.
//! Flat out, records are created only when a request slot is free (each request then
//! carries a full batch for every partition of that broker); at a fixed rate they are
//! created on the [`Schedule`] whatever the broker does, and wait in the client for a slot.
//!
//! A request holds at most one batch per partition, as Kafka requires, and at most
//! `max_in_flight` requests await their response per connection. A partition answered
//! with a retriable error has its batch sent again after a back-off, up to `retries` times;
//! every error code met is counted. A broken connection or a response that does not decode
//! ends the client with an error: the outcome of its requests in flight is unknown.
//!
//! Latency of a record is measured from its creation to the arrival of the response that
//! acknowledges it (with acks=0, to the moment its request was written to the socket).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ApiKey, ProduceRequest, ProduceResponse};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::batch::{BatchBuilder, Created};
use crate::cluster::{millis_i32, topic_name, TopicLayout};
use crate::connection::{decode_response, Connection, FrameEvent, Pipeline};
use crate::error::{is_retriable, BenchError};
use crate::rate::Schedule;
use crate::stats::Stats;

/// Produce versions this tool speaks.
pub const PRODUCE_VERSIONS: std::ops::RangeInclusive<i16> = 3..=9;

/// Wait before a batch answered with a retriable error is sent again.
const RETRY_BACKOFF: Duration = Duration::from_millis(100);

/// Settings shared by every producer client of a run.
#[derive(Debug, Clone)]
pub struct ProducerSettings {
    /// The topic.
    pub topic: String,
    /// 0, 1 or -1.
    pub acks: i16,
    /// Produce timeout sent to the broker, and the longest wait for a response.
    pub request_timeout: Duration,
    /// Longest time a batch that is not full waits for more records.
    pub linger: Duration,
    /// Requests awaiting a response per connection.
    pub max_in_flight: usize,
    /// Times a batch is sent again after retriable errors.
    pub retries: u32,
    /// Records in a full batch.
    pub records_per_batch: u64,
}

/// What one client produces.
#[derive(Debug)]
pub struct ClientPlan {
    /// The partitions it writes to.
    pub partitions: Vec<i32>,
    /// Records to produce before stopping (None: until stopped).
    pub limit: Option<u64>,
    /// The fixed-rate timetable (None: flat out).
    pub schedule: Option<Schedule>,
}

/// A closed batch on its way to the broker.
#[derive(Debug)]
struct Batch {
    partition: i32,
    created: Created,
    records: u64,
    value_bytes: u64,
    bytes: Bytes,
    attempts: u32,
    not_before: Instant,
}

#[derive(Debug)]
struct InFlight {
    correlation_id: i32,
    sent_at: Instant,
    batches: Vec<Batch>,
}

#[derive(Debug)]
struct Link {
    pipeline: Pipeline,
    version: i16,
    ready: VecDeque<Batch>,
    in_flight: VecDeque<InFlight>,
}

#[derive(Debug, Clone, Copy)]
struct OpenBatch {
    partition: i32,
    first: u64,
    records: u64,
}

/// Runs one client until its plan is done or `stop` is cancelled, then waits for the
/// responses to everything it sent. Counts go to `stats`.
pub async fn run_client(
    settings: Arc<ProducerSettings>,
    layout: Arc<TopicLayout>,
    plan: ClientPlan,
    builder: BatchBuilder,
    stats: Arc<Stats>,
    stop: CancellationToken,
) -> Result<(), BenchError> {
    let mut client = Client::connect(settings, &layout, plan, builder, stats).await?;
    client.run(stop).await
}

struct Client {
    settings: Arc<ProducerSettings>,
    links: Vec<Link>,
    link_of: HashMap<i32, usize>,
    partitions: Vec<i32>,
    sticky: usize,
    open: Option<OpenBatch>,
    next_index: u64,
    limit: Option<u64>,
    schedule: Option<Schedule>,
    builder: BatchBuilder,
    stats: Arc<Stats>,
    events: mpsc::Receiver<FrameEvent>,
    stopping: bool,
}

impl Client {
    async fn connect(
        settings: Arc<ProducerSettings>,
        layout: &TopicLayout,
        plan: ClientPlan,
        builder: BatchBuilder,
        stats: Arc<Stats>,
    ) -> Result<Self, BenchError> {
        let mut addresses: Vec<&str> = Vec::new();
        let mut link_of = HashMap::new();
        for partition in &plan.partitions {
            let address = layout.leader(*partition)?;
            let link = match addresses.iter().position(|a| *a == address) {
                Some(link) => link,
                None => {
                    addresses.push(address);
                    addresses.len() - 1
                }
            };
            link_of.insert(*partition, link);
        }
        let (events_tx, events) = mpsc::channel(settings.max_in_flight * addresses.len() + 8);
        let mut links = Vec::with_capacity(addresses.len());
        for (index, address) in addresses.iter().enumerate() {
            let connection = Connection::connect(address, settings.request_timeout).await?;
            let version = connection.version(ApiKey::Produce, PRODUCE_VERSIONS)?;
            links.push(Link {
                pipeline: connection.into_pipeline(index, events_tx.clone()),
                version,
                ready: VecDeque::new(),
                in_flight: VecDeque::new(),
            });
        }
        Ok(Self {
            settings,
            links,
            link_of,
            partitions: plan.partitions,
            sticky: 0,
            open: None,
            next_index: 0,
            limit: plan.limit,
            schedule: plan.schedule,
            builder,
            stats,
            events,
            stopping: false,
        })
    }

    async fn run(&mut self, stop: CancellationToken) -> Result<(), BenchError> {
        loop {
            if stop.is_cancelled() {
                self.stopping = true;
            }
            let now = Instant::now();
            self.take_due_records(now)?;
            self.send_ready().await?;
            if self.finished() {
                return Ok(());
            }
            let wake = self.next_wake(Instant::now())?;
            tokio::select! {
                biased;
                event = self.events.recv() => match event {
                    Some(event) => self.on_frame(event)?,
                    None => return Err(BenchError::Task("response reader ended".into())),
                },
                () = stop.cancelled(), if !self.stopping => {}
                () = sleep_until(wake) => {}
            }
            while let Ok(event) = self.events.try_recv() {
                self.on_frame(event)?;
            }
        }
    }

    fn remaining(&self) -> u64 {
        match self.limit {
            Some(limit) => limit.saturating_sub(self.next_index),
            None => u64::MAX,
        }
    }

    /// At a fixed rate: adds the records due by `now` to the open batch, closing it when full.
    fn take_due_records(&mut self, now: Instant) -> Result<(), BenchError> {
        let Some(schedule) = self.schedule else {
            return Ok(());
        };
        if self.stopping || self.remaining() == 0 {
            return self.close_open();
        }
        let due = schedule.due_count(now).min(self.limit.unwrap_or(u64::MAX));
        while self.next_index < due {
            let open = self.open.get_or_insert(OpenBatch {
                partition: self.partitions[self.sticky],
                first: self.next_index,
                records: 0,
            });
            let take = (due - self.next_index).min(self.settings.records_per_batch - open.records);
            open.records += take;
            self.next_index += take;
            if open.records >= self.settings.records_per_batch {
                self.close_open()?;
            }
        }
        if self.remaining() == 0 {
            self.close_open()?;
        }
        Ok(())
    }

    /// Encodes the open batch and queues it for its broker; the next records go to the
    /// next partition.
    fn close_open(&mut self) -> Result<(), BenchError> {
        let (Some(open), Some(schedule)) = (self.open.take(), self.schedule) else {
            return Ok(());
        };
        let created = Created::Scheduled {
            schedule,
            first: open.first,
        };
        self.queue(open.partition, open.records, created)?;
        self.sticky = (self.sticky + 1) % self.partitions.len();
        Ok(())
    }

    fn queue(&mut self, partition: i32, records: u64, created: Created) -> Result<(), BenchError> {
        let encoded = self.builder.build(records, created)?;
        let link = self.link_of.get(&partition).copied().unwrap_or(0);
        self.links[link].ready.push_back(Batch {
            partition,
            created,
            records: encoded.records,
            value_bytes: encoded.value_bytes,
            bytes: encoded.bytes,
            attempts: 0,
            not_before: Instant::now(),
        });
        Ok(())
    }

    fn has_slot(&self, link: usize) -> bool {
        self.settings.acks == 0 || self.links[link].in_flight.len() < self.settings.max_in_flight
    }

    /// Whether the open batch may go now: its first record has lingered long enough.
    fn open_is_due(&self, link: usize, now: Instant) -> bool {
        let (Some(open), Some(schedule)) = (self.open, self.schedule) else {
            return false;
        };
        self.link_of.get(&open.partition) == Some(&link)
            && (self.stopping || now >= schedule.due(open.first) + self.settings.linger)
    }

    /// Flat out: gives every partition of `link` that has nothing queued a full batch.
    fn top_up(&mut self, link: usize) -> Result<(), BenchError> {
        if self.schedule.is_some() || self.stopping {
            return Ok(());
        }
        let now = Instant::now();
        let partitions: Vec<i32> = self
            .partitions
            .iter()
            .copied()
            .filter(|p| self.link_of.get(p) == Some(&link))
            .filter(|p| !self.links[link].ready.iter().any(|b| b.partition == *p))
            .collect();
        for partition in partitions {
            let records = self.remaining().min(self.settings.records_per_batch);
            if records == 0 {
                break;
            }
            self.next_index += records;
            self.queue(partition, records, Created::At(now))?;
        }
        Ok(())
    }

    /// Sends requests on every connection while it has free slots and batches to send.
    async fn send_ready(&mut self) -> Result<(), BenchError> {
        for link in 0..self.links.len() {
            // acks=0 has no slots to run out of: yield after a bounded number of requests
            let mut budget = self.settings.max_in_flight;
            while self.has_slot(link) && budget > 0 {
                budget -= 1;
                let now = Instant::now();
                if self.open_is_due(link, now) {
                    self.close_open()?;
                }
                self.top_up(link)?;
                let batches = take_sendable(&mut self.links[link].ready, now);
                if batches.is_empty() {
                    break;
                }
                self.send(link, batches).await?;
            }
        }
        Ok(())
    }

    async fn send(&mut self, link: usize, batches: Vec<Batch>) -> Result<(), BenchError> {
        let settings = &self.settings;
        let partition_data = batches
            .iter()
            .map(|b| {
                PartitionProduceData::default()
                    .with_index(b.partition)
                    .with_records(Some(b.bytes.clone()))
            })
            .collect();
        let request = ProduceRequest::default()
            .with_acks(settings.acks)
            .with_timeout_ms(millis_i32(settings.request_timeout))
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(topic_name(&settings.topic))
                .with_partition_data(partition_data)]);
        let target = &mut self.links[link];
        let correlation_id = target
            .pipeline
            .send(ApiKey::Produce, target.version, &request)
            .await?;
        let sent_at = Instant::now();
        if settings.acks == 0 {
            // no response will come: the records are done once written
            for batch in batches {
                self.complete(&batch, sent_at);
            }
            return Ok(());
        }
        target.in_flight.push_back(InFlight {
            correlation_id,
            sent_at,
            batches,
        });
        Ok(())
    }

    fn on_frame(&mut self, event: FrameEvent) -> Result<(), BenchError> {
        let now = Instant::now();
        let frame = event.frame?;
        let link = &mut self.links[event.link];
        let address = link.pipeline.address().to_string();
        let in_flight = link
            .in_flight
            .pop_front()
            .ok_or_else(|| BenchError::BadResponse {
                address: address.clone(),
                api: ApiKey::Produce,
                reason: "a response to no request".into(),
            })?;
        let response: ProduceResponse = decode_response(
            frame,
            ApiKey::Produce,
            link.version,
            in_flight.correlation_id,
            &address,
        )?;
        let codes: HashMap<i32, i16> = response
            .responses
            .iter()
            .flat_map(|t| t.partition_responses.iter())
            .map(|p| (p.index, p.error_code))
            .collect();
        let mut retry = Vec::new();
        for mut batch in in_flight.batches {
            let Some(code) = codes.get(&batch.partition).copied() else {
                return Err(BenchError::BadResponse {
                    address,
                    api: ApiKey::Produce,
                    reason: format!("no result for partition {}", batch.partition),
                });
            };
            if code == 0 {
                self.complete(&batch, now);
                continue;
            }
            self.stats.error(code);
            if is_retriable(code) && batch.attempts < self.settings.retries {
                batch.attempts += 1;
                batch.not_before = now + RETRY_BACKOFF;
                retry.push(batch);
            } else {
                self.stats.fail(batch.records);
            }
        }
        let ready = &mut self.links[event.link].ready;
        for batch in retry.into_iter().rev() {
            ready.push_front(batch);
        }
        Ok(())
    }

    fn complete(&self, batch: &Batch, done_at: Instant) {
        self.stats
            .add(batch.records, batch.value_bytes, batch.bytes.len() as u64);
        self.stats.with_latency(|histogram| match batch.created {
            Created::At(at) => {
                histogram.record_n(done_at.saturating_duration_since(at), batch.records)
            }
            Created::Scheduled { .. } => {
                for j in 0..batch.records {
                    histogram.record(done_at.saturating_duration_since(batch.created.at(j)));
                }
            }
        });
    }

    fn finished(&self) -> bool {
        let generating = !self.stopping && self.remaining() > 0;
        !generating
            && self.open.is_none()
            && self
                .links
                .iter()
                .all(|l| l.ready.is_empty() && l.in_flight.is_empty())
    }

    /// When the loop must look again without a response arriving: a lingering batch may
    /// go, a batch fills up, a retry's back-off ends. Fails when a response is overdue.
    fn next_wake(&self, now: Instant) -> Result<Option<Instant>, BenchError> {
        let mut wake: Option<Instant> = None;
        let mut consider = |at: Instant| wake = Some(wake.map_or(at, |w| w.min(at)));
        for link in &self.links {
            if let Some(oldest) = link.in_flight.front() {
                // the broker may take the whole produce timeout; allow a little more
                let deadline = oldest.sent_at + self.settings.request_timeout * 2;
                if now >= deadline {
                    return Err(BenchError::Timeout {
                        address: link.pipeline.address().to_string(),
                        api: ApiKey::Produce,
                        timeout: self.settings.request_timeout * 2,
                    });
                }
                consider(deadline);
            }
        }
        for (index, link) in self.links.iter().enumerate() {
            if self.has_slot(index) {
                link.ready.iter().for_each(|b| consider(b.not_before));
            }
        }
        if self.settings.acks == 0 && self.schedule.is_none() && !self.stopping {
            // flat out without responses: keep going
            consider(now);
        }
        if let Some(schedule) = self.schedule {
            if !self.stopping && self.remaining() > 0 {
                let first = self.open.map_or(self.next_index, |open| open.first);
                // the batch is full once its last record is due
                consider(schedule.due(first + self.settings.records_per_batch - 1));
                let link_free = self
                    .open
                    .and_then(|o| self.link_of.get(&o.partition))
                    .is_none_or(|link| self.has_slot(*link));
                if link_free {
                    consider(schedule.due(first) + self.settings.linger);
                }
            }
        }
        Ok(wake)
    }
}

/// Takes the batches that may go in one request: the first sendable batch of each partition.
fn take_sendable(ready: &mut VecDeque<Batch>, now: Instant) -> Vec<Batch> {
    let mut taken: Vec<Batch> = Vec::new();
    let mut kept = VecDeque::with_capacity(ready.len());
    while let Some(batch) = ready.pop_front() {
        if batch.not_before <= now && !taken.iter().any(|b| b.partition == batch.partition) {
            taken.push(batch);
        } else {
            kept.push_back(batch);
        }
    }
    *ready = kept;
    taken
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(partition: i32, not_before: Instant) -> Batch {
        Batch {
            partition,
            created: Created::At(not_before),
            records: 1,
            value_bytes: 1,
            bytes: Bytes::new(),
            attempts: 0,
            not_before,
        }
    }

    #[test]
    fn a_request_takes_one_batch_per_partition_in_order() {
        let now = Instant::now();
        let later = now + Duration::from_secs(1);
        let mut ready: VecDeque<Batch> =
            [batch(0, now), batch(0, now), batch(1, later), batch(2, now)]
                .into_iter()
                .collect();
        let taken = take_sendable(&mut ready, now);
        let partitions: Vec<i32> = taken.iter().map(|b| b.partition).collect();
        assert_eq!(partitions, vec![0, 2]);
        let left: Vec<i32> = ready.iter().map(|b| b.partition).collect();
        assert_eq!(left, vec![0, 1]);
    }
}
