//! Fetch: serve whole batches from the bucket, with assigned offsets, long-polling at the end
//! of the log.
//!
//! Every attempt asks the metadata service for the partitions' exact log bounds and index
//! rows, so the high watermark in a response is never stale. When less than `min_bytes` is
//! available the request waits for a high-watermark change or `max_wait_ms`.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{FetchRequest, FetchResponse, TopicName};
use strata_proto::metadata::v1 as pb;
use tokio::time::Instant;

use crate::context::Agent;
use crate::read::serve_rows;
use crate::topics::Topic;

/// Longest wait a client may ask for.
const MAX_WAIT_CAP: Duration = Duration::from_secs(30);

/// The first Fetch version that names topics by id.
const TOPIC_ID_VERSION: i16 = 13;

struct Wanted {
    request: FetchTopic,
    topic: Result<Arc<Topic>, ResponseError>,
}

/// Answers a Fetch request, waiting up to `max_wait_ms` for `min_bytes`.
///
/// The response holds at most `max_bytes` of records, and never more than the agent's
/// `fetch.max.bytes`, except that its first batch is always served whole (KIP-74). A
/// partition named more than once is served once, as Kafka merges such requests.
pub async fn handle(agent: &Agent, version: i16, request: FetchRequest) -> FetchResponse {
    let mut wanted: Vec<Wanted> = Vec::with_capacity(request.topics.len());
    for topic in merge_duplicates(request.topics, version) {
        let resolved = if version >= TOPIC_ID_VERSION {
            agent.topics.by_id(topic.topic_id).await
        } else {
            agent.topics.by_name(&topic.topic).await
        };
        wanted.push(Wanted {
            request: topic,
            topic: resolved,
        });
    }
    let wait = Duration::from_millis(request.max_wait_ms.max(0) as u64).min(MAX_WAIT_CAP);
    let deadline = Instant::now() + wait;
    let min_bytes = request.min_bytes.max(0) as usize;
    let max_bytes = (request.max_bytes.max(0) as usize).min(agent.config.fetch_max_bytes);
    let mut changes = agent.watermarks.subscribe();
    loop {
        changes.borrow_and_update();
        let (topics, bytes, failed) = fetch_once(agent, version, &wanted, max_bytes).await;
        let now = Instant::now();
        if bytes >= min_bytes.max(1) || failed || now >= deadline {
            agent.metrics.fetch_bytes.inc_by(bytes as u64);
            return FetchResponse::default().with_responses(topics);
        }
        let woken = tokio::select! {
            woken = tokio::time::timeout(deadline - now, changes.changed()) => woken.is_ok(),
            () = agent.stopping.cancelled() => false,
        };
        if !woken {
            // timed out or stopping: answer with what there is now
            agent.metrics.fetch_bytes.inc_by(bytes as u64);
            return FetchResponse::default().with_responses(topics);
        }
    }
}

/// The request's topics with every partition named once: a topic named twice becomes one
/// entry, and a partition named again is dropped (its first mention counts).
fn merge_duplicates(topics: Vec<FetchTopic>, version: i16) -> Vec<FetchTopic> {
    let mut merged: Vec<FetchTopic> = Vec::with_capacity(topics.len());
    let mut seen = HashSet::new();
    for mut topic in topics {
        let key = if version >= TOPIC_ID_VERSION {
            TopicKey::Id(topic.topic_id)
        } else {
            TopicKey::Name(topic.topic.clone())
        };
        let partitions = std::mem::take(&mut topic.partitions);
        let fresh: Vec<FetchPartition> = partitions
            .into_iter()
            .filter(|p| seen.insert((key.clone(), p.partition)))
            .collect();
        let same_topic = merged.iter_mut().find(|t| match &key {
            TopicKey::Id(id) => t.topic_id == *id,
            TopicKey::Name(name) => t.topic == *name,
        });
        match same_topic {
            Some(existing) => existing.partitions.extend(fresh),
            None => merged.push(topic.with_partitions(fresh)),
        }
    }
    merged
}

/// How a Fetch names a topic: by name before v13, by id from v13 on.
#[derive(Clone, PartialEq, Eq, Hash)]
enum TopicKey {
    Name(TopicName),
    Id(uuid::Uuid),
}

/// One pass over all partitions; returns the topics, the record bytes served and whether
/// any partition failed with an error.
async fn fetch_once(
    agent: &Agent,
    version: i16,
    wanted: &[Wanted],
    max_bytes: usize,
) -> (Vec<FetchableTopicResponse>, usize, bool) {
    let lookups: Vec<pb::PartitionFetch> = wanted
        .iter()
        .filter_map(|w| w.topic.as_ref().ok().map(|t| (t, &w.request)))
        .flat_map(|(topic, request)| {
            request
                .partitions
                .iter()
                .filter(|p| topic.has_partition(p.partition))
                .map(|p| pb::PartitionFetch {
                    topic_id: topic.id.as_bytes().to_vec(),
                    partition: p.partition,
                    offset: p.fetch_offset,
                    // a sequential reader also gets the rows read-ahead will load
                    max_bytes: agent.read_ahead.lookup_bytes(
                        topic.id,
                        p.partition,
                        p.fetch_offset,
                        p.partition_max_bytes.max(1) as u64,
                    ),
                })
        })
        .collect();
    let plans = if lookups.is_empty() {
        Ok(Vec::new())
    } else {
        agent
            .metadata
            .clone()
            .lookup_batches(pb::LookupBatchesRequest {
                partitions: lookups,
            })
            .await
            .map(|r| r.into_inner().partitions)
    };
    let mut plans = match plans {
        Ok(plans) => plans.into_iter(),
        Err(status) => {
            tracing::warn!(%status, "index lookup failed");
            Vec::new().into_iter()
        }
    };
    let mut remaining = max_bytes;
    let mut first = true;
    let mut served = 0;
    let mut failed = false;
    let mut topics = Vec::with_capacity(wanted.len());
    for w in wanted {
        let mut partitions = Vec::with_capacity(w.request.partitions.len());
        for p in &w.request.partitions {
            let plan = match &w.topic {
                Ok(topic) if topic.has_partition(p.partition) => plans
                    .next()
                    .map(|plan| (topic.id, plan))
                    .ok_or(ResponseError::KafkaStorageError),
                Ok(_) => Err(ResponseError::UnknownTopicOrPartition),
                Err(error) => Err(*error),
            };
            let data = match plan {
                Ok((topic_id, plan)) => {
                    serve_partition(agent, topic_id, p, plan, &mut remaining, &mut first).await
                }
                Err(error) => Err(error),
            };
            let data = data.unwrap_or_else(|error| {
                agent.metrics.partition_error("Fetch", error);
                failed = true;
                empty(p.partition).with_error_code(error.code())
            });
            served += data.records.as_ref().map_or(0, |r| r.len());
            partitions.push(data);
        }
        let response = FetchableTopicResponse::default().with_partitions(partitions);
        topics.push(if version >= TOPIC_ID_VERSION {
            response.with_topic_id(w.request.topic_id)
        } else {
            response.with_topic(w.request.topic.clone())
        });
    }
    (topics, served, failed)
}

fn empty(partition: i32) -> PartitionData {
    PartitionData::default()
        .with_partition_index(partition)
        .with_high_watermark(-1)
        .with_last_stable_offset(-1)
        .with_log_start_offset(-1)
        .with_records(Some(Default::default()))
}

/// The bytes one partition may add to a response that has `remaining` bytes of room: at most
/// its own `partition_max_bytes`; when no batch is in the response yet, at least one byte,
/// so the first batch is served whole whatever the limits (KIP-74).
fn partition_budget(partition_max_bytes: i32, remaining: usize, first: bool) -> usize {
    let budget = (partition_max_bytes.max(0) as usize).min(remaining);
    if first {
        budget.max(1)
    } else {
        budget
    }
}

/// Serves one partition out of its index rows within the response's `remaining` bytes;
/// `first` stays true until some partition served a batch.
async fn serve_partition(
    agent: &Agent,
    topic_id: uuid::Uuid,
    request: &FetchPartition,
    plan: pb::PartitionChunks,
    remaining: &mut usize,
    first: &mut bool,
) -> Result<PartitionData, ResponseError> {
    if plan.error != pb::PartitionError::None as i32 {
        return Err(ResponseError::UnknownTopicOrPartition);
    }
    let offset = request.fetch_offset;
    if offset < plan.log_start_offset || offset > plan.high_watermark {
        let out_of_range = empty(request.partition)
            .with_high_watermark(plan.high_watermark)
            .with_last_stable_offset(plan.high_watermark)
            .with_log_start_offset(plan.log_start_offset)
            .with_error_code(ResponseError::OffsetOutOfRange.code());
        return Ok(out_of_range);
    }
    let budget = partition_budget(request.partition_max_bytes, *remaining, *first);
    let served = serve_rows(&agent.reader, &plan.chunks, offset, budget).await;
    if let Some((row, error)) = &served.damaged {
        agent
            .metrics
            .damaged
            .record(topic_id, request.partition, row, error);
        if served.records.is_empty() {
            return Err(if error.is_transient() {
                ResponseError::KafkaStorageError
            } else {
                ResponseError::CorruptMessage
            });
        }
    }
    if !served.records.is_empty() {
        *first = false;
    }
    *remaining = remaining.saturating_sub(served.records.len());
    if let Some(next) = served.next_offset {
        let unserved = &plan.chunks[served.rows_read..];
        let partition = request.partition;
        agent
            .read_ahead
            .after_fetch(topic_id, partition, offset, next, unserved)
            .await;
    }
    Ok(empty(request.partition)
        .with_high_watermark(plan.high_watermark)
        .with_last_stable_offset(plan.high_watermark)
        .with_log_start_offset(plan.log_start_offset)
        .with_records(Some(served.records.freeze())))
}
