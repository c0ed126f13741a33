//! One fetcher: a connection to one leader that reads a set of partitions with Fetch, one
//! request in flight at a time, as Kafka consumers do.
//!
//! Every record at or after a partition's position counts once: the first batch of a
//! response may start before the fetch offset (its earlier records are skipped), and a
//! trailing batch cut off by the size limit is fetched again whole by the next request.
//! A partition is done when its position reaches its end offset (`--until-end`, or the
//! offsets the producers reached in `e2e`); records at or after the end are not counted.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{ApiKey, BrokerId, FetchRequest, FetchResponse};
use kafka_protocol::records::RecordBatchDecoder;
use strata_batch::{BatchError, BatchIter};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::args::FetchArgs;
use crate::cluster::{millis_i32, topic_name};
use crate::connection::Connection;
use crate::error::{is_retriable, BenchError};
use crate::stats::Stats;
use crate::wall_clock::{WallClock, SENT_AT_HEADER};

/// Fetch versions this tool speaks (v13+ names topics by id).
pub const FETCH_VERSIONS: std::ops::RangeInclusive<i16> = 4..=12;

/// Wait after a retriable error before fetching again.
const RETRY_BACKOFF: Duration = Duration::from_millis(100);

/// End offsets (exclusive) per partition; `None` until they are known.
pub type EndOffsets = watch::Receiver<Option<BTreeMap<i32, i64>>>;

/// What the consumers' latency histogram measures.
#[derive(Debug, Clone, Copy)]
pub enum LatencySource {
    /// The time each fetch request took.
    FetchRoundTrip,
    /// For each record, now minus the creation time in its [`SENT_AT_HEADER`] header.
    EndToEnd(WallClock),
}

/// Settings shared by the fetchers of a run.
#[derive(Debug)]
pub struct FetchSettings {
    /// The topic.
    pub topic: String,
    /// Fetch sizes and wait.
    pub fetch: FetchArgs,
    /// Longest wait for a response beyond the fetch's own max wait.
    pub request_timeout: Duration,
    /// What to put in the latency histogram.
    pub latency: LatencySource,
    /// Records still to read in the whole run (None: no limit); when it reaches zero the
    /// run's stop token is cancelled.
    pub budget: Option<AtomicU64>,
}

impl FetchSettings {
    /// Takes up to `wanted` records from the run's budget; returns how many may be counted.
    fn claim(&self, wanted: u64) -> u64 {
        let Some(budget) = &self.budget else {
            return wanted;
        };
        let mut left = budget.load(Ordering::Relaxed);
        loop {
            let take = left.min(wanted);
            match budget.compare_exchange(left, left - take, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return take,
                Err(now) => left = now,
            }
        }
    }

    fn budget_spent(&self) -> bool {
        self.budget
            .as_ref()
            .is_some_and(|b| b.load(Ordering::Relaxed) == 0)
    }
}

#[derive(Debug)]
struct Cursor {
    partition: i32,
    position: i64,
    end: Option<i64>,
}

impl Cursor {
    fn done(&self) -> bool {
        self.end.is_some_and(|end| self.position >= end)
    }
}

/// Reads `starts` (partition to start offset) from the leader at `address` until every
/// partition reaches its end, the budget is spent, or `stop` is cancelled.
pub async fn run_fetcher(
    settings: Arc<FetchSettings>,
    address: String,
    starts: BTreeMap<i32, i64>,
    mut ends: EndOffsets,
    stats: Arc<Stats>,
    stop: CancellationToken,
) -> Result<(), BenchError> {
    let mut connection = Connection::connect(&address, settings.request_timeout).await?;
    let version = connection.version(ApiKey::Fetch, FETCH_VERSIONS)?;
    let mut cursors: Vec<Cursor> = starts
        .into_iter()
        .map(|(partition, position)| Cursor {
            partition,
            position,
            end: None,
        })
        .collect();
    let timeout = settings.request_timeout + settings.fetch.max_wait;
    loop {
        if let Some(known) = ends.borrow_and_update().as_ref() {
            for cursor in &mut cursors {
                cursor.end = known.get(&cursor.partition).copied();
            }
        }
        if cursors.iter().all(Cursor::done) || settings.budget_spent() || stop.is_cancelled() {
            return Ok(());
        }
        let request = fetch_request(&settings, &cursors);
        let sent_at = Instant::now();
        let response: FetchResponse = tokio::select! {
            response = connection.call(ApiKey::Fetch, version, &request, timeout) => response?,
            () = stop.cancelled() => return Ok(()),
        };
        if let LatencySource::FetchRoundTrip = settings.latency {
            stats.with_latency(|h| h.record(sent_at.elapsed()));
        }
        let mut back_off = false;
        if response.error_code != 0 {
            stats.error(response.error_code);
            if !is_retriable(response.error_code) {
                return Err(BenchError::Kafka {
                    operation: "Fetch",
                    what: format!("topic {}", settings.topic),
                    code: response.error_code,
                });
            }
            back_off = true;
        }
        for topic in response.responses {
            for data in topic.partitions {
                let Some(cursor) = cursors
                    .iter_mut()
                    .find(|c| c.partition == data.partition_index)
                else {
                    continue;
                };
                if data.error_code != 0 {
                    stats.error(data.error_code);
                    if !is_retriable(data.error_code) {
                        return Err(BenchError::Kafka {
                            operation: "Fetch",
                            what: format!(
                                "{}/{} at offset {}",
                                settings.topic, cursor.partition, cursor.position
                            ),
                            code: data.error_code,
                        });
                    }
                    back_off = true;
                    continue;
                }
                if let Some(records) = data.records {
                    read_records(&settings, cursor, records, &stats)?;
                }
            }
        }
        if settings.budget_spent() {
            stop.cancel();
            return Ok(());
        }
        if back_off {
            tokio::select! {
                () = tokio::time::sleep(RETRY_BACKOFF) => {}
                () = stop.cancelled() => return Ok(()),
            }
        }
    }
}

fn fetch_request(settings: &FetchSettings, cursors: &[Cursor]) -> FetchRequest {
    let partitions = cursors
        .iter()
        .filter(|c| !c.done())
        .map(|c| {
            FetchPartition::default()
                .with_partition(c.partition)
                .with_fetch_offset(c.position)
                .with_partition_max_bytes(settings.fetch.partition_max_bytes)
        })
        .collect();
    FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(millis_i32(settings.fetch.max_wait))
        .with_min_bytes(settings.fetch.min_bytes)
        .with_max_bytes(settings.fetch.max_bytes)
        .with_topics(vec![FetchTopic::default()
            .with_topic(topic_name(&settings.topic))
            .with_partitions(partitions)])
}

/// Counts the records of one partition's fetched batches and moves its position past them.
fn read_records(
    settings: &FetchSettings,
    cursor: &mut Cursor,
    records: Bytes,
    stats: &Stats,
) -> Result<(), BenchError> {
    let mut at = 0usize;
    for item in BatchIter::new(&records) {
        let (header, raw) = match item {
            Ok(batch) => batch,
            // a batch cut off by the size limit: the next fetch starts at it
            Err(BatchError::Truncated { .. }) => break,
            Err(error) => {
                return Err(BenchError::Records(format!(
                    "{}/{}: {error}",
                    settings.topic, cursor.partition
                )))
            }
        };
        let start = at;
        at += raw.len();
        let next = header.base_offset + i64::from(header.last_offset_delta) + 1;
        if next <= cursor.position {
            continue;
        }
        let mut batch = records.slice(start..at);
        let set = RecordBatchDecoder::decode(&mut batch).map_err(|e| {
            BenchError::Records(format!(
                "{}/{} at offset {}: {e}",
                settings.topic, cursor.partition, header.base_offset
            ))
        })?;
        let end = cursor.end.unwrap_or(i64::MAX);
        let wanted: Vec<_> = set
            .records
            .iter()
            .filter(|r| !r.control && r.offset >= cursor.position && r.offset < end)
            .collect();
        let counted = settings.claim(wanted.len() as u64) as usize;
        let wanted = &wanted[..counted];
        let bytes: usize = wanted
            .iter()
            .map(|r| r.key.as_ref().map_or(0, Bytes::len) + r.value.as_ref().map_or(0, Bytes::len))
            .sum();
        stats.add(wanted.len() as u64, bytes as u64, raw.len() as u64);
        if let LatencySource::EndToEnd(wall) = settings.latency {
            let now = wall.now_micros();
            stats.with_latency(|h| {
                for record in wanted {
                    if let Some(sent) = sent_at_micros(record) {
                        h.record_micros(now - sent);
                    }
                }
            });
        }
        cursor.position = cursor.position.max(next);
        if settings.budget_spent() {
            break;
        }
    }
    Ok(())
}

fn sent_at_micros(record: &kafka_protocol::records::Record) -> Option<i64> {
    let value = record.headers.get(SENT_AT_HEADER.as_bytes())?.as_ref()?;
    let bytes: [u8; 8] = value.as_ref().try_into().ok()?;
    Some(i64::from_be_bytes(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::Payload;
    use crate::batch::{BatchBuilder, Created};
    use crate::payload::ValuePool;
    use bytes::BytesMut;
    use kafka_protocol::records::Compression;
    use strata_clock::ManualClock;

    fn settings(budget: Option<u64>) -> FetchSettings {
        FetchSettings {
            topic: "t".into(),
            fetch: FetchArgs {
                max_wait: Duration::from_millis(10),
                min_bytes: 1,
                max_bytes: 1 << 20,
                partition_max_bytes: 1 << 20,
            },
            request_timeout: Duration::from_secs(1),
            latency: LatencySource::EndToEnd(WallClock::new(ManualClock::new(0).as_ref())),
            budget: budget.map(AtomicU64::new),
        }
    }

    /// Three batches of 10 records at offsets 0, 10 and 20; the last one cut short.
    fn fetched() -> Bytes {
        let wall = WallClock::new(ManualClock::new(0).as_ref());
        let mut builder = BatchBuilder::new(
            ValuePool::new(Payload::Random, 10, 1),
            Compression::Zstd,
            wall,
            true,
        );
        let mut out = BytesMut::new();
        for base in [0i64, 10, 20] {
            let batch = builder
                .build(10, Created::At(Instant::now()))
                .expect("encodes");
            let mut bytes = BytesMut::from(&batch.bytes[..]);
            strata_batch::set_base_offset(&mut bytes, base);
            if base == 20 {
                bytes.truncate(bytes.len() / 2);
            }
            out.extend_from_slice(&bytes);
        }
        out.freeze()
    }

    #[test]
    fn records_before_the_position_and_after_the_end_are_not_counted() {
        let stats = Stats::new();
        let mut cursor = Cursor {
            partition: 0,
            position: 5,
            end: Some(15),
        };
        read_records(&settings(None), &mut cursor, fetched(), &stats).expect("reads");
        let snapshot = stats.snapshot();
        assert_eq!(snapshot.records, 10);
        assert_eq!(snapshot.bytes, 100);
        assert_eq!(snapshot.latency.len(), 10);
        assert_eq!(cursor.position, 20);
        assert!(cursor.done());
    }

    #[test]
    fn a_cut_off_batch_is_left_for_the_next_fetch_and_the_budget_is_exact() {
        let stats = Stats::new();
        let mut cursor = Cursor {
            partition: 0,
            position: 0,
            end: None,
        };
        let settings = settings(Some(13));
        read_records(&settings, &mut cursor, fetched(), &stats).expect("reads");
        assert_eq!(stats.records(), 13);
        assert!(settings.budget_spent());
        let stats = Stats::new();
        let mut cursor = Cursor {
            partition: 0,
            position: 0,
            end: None,
        };
        read_records(&self::settings(None), &mut cursor, fetched(), &stats).expect("reads");
        assert_eq!(stats.records(), 20);
        assert_eq!(cursor.position, 20);
    }
}
