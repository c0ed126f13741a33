//! `strata bench null-broker`: a Kafka listener that stores nothing.
//!
//! It answers ApiVersions, Metadata (itself as the only broker and leader of everything;
//! any topic asked about exists, with `--partitions` partitions unless CreateTopics said
//! otherwise), CreateTopics (success), Produce (acknowledged at once, with per-partition
//! base offsets that advance by the records received) and Fetch (no records, after the
//! fetch's max wait, capped at one second). That is enough for `strata bench produce` and
//! for librdkafka producers, and measures what the client and the loopback can do on this
//! machine without a broker's work.
//!
//! Like Kafka it answers requests of one connection in order, answers acks=0 produce
//! requests with nothing, answers an ApiVersions request of an unknown version with
//! UNSUPPORTED_VERSION in the v0 layout, and closes the connection on anything else it
//! does not understand.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsResponse, BrokerId, CreateTopicsRequest, CreateTopicsResponse, FetchRequest,
    FetchResponse, MetadataRequest, MetadataResponse, ProduceRequest, ProduceResponse,
    RequestHeader, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use kafka_protocol::records::RecordBatchDecoder;
use tokio::io::{AsyncWriteExt, BufReader, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

use crate::args::NullBrokerArgs;
use crate::connection::read_frame;
use crate::error::BenchError;

/// The APIs the null broker answers, with their version ranges.
pub const NULL_BROKER_APIS: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 9),
    (ApiKey::Fetch, 4, 12),
    (ApiKey::Metadata, 0, 12),
    (ApiKey::ApiVersions, 0, 3),
    (ApiKey::CreateTopics, 2, 7),
];

/// Longest time a Fetch is held before its empty answer.
const MAX_FETCH_WAIT: Duration = Duration::from_secs(1);

/// Settings of a null broker.
#[derive(Debug, Clone, Copy)]
pub struct NullBrokerConfig {
    /// Partitions of a topic that was not created explicitly.
    pub partitions: i32,
    /// The node id it reports.
    pub node_id: i32,
}

/// A bound null broker, not yet serving.
#[derive(Debug)]
pub struct NullBroker {
    listener: TcpListener,
    state: Arc<State>,
}

#[derive(Debug)]
struct State {
    config: NullBrokerConfig,
    host: String,
    port: i32,
    topics: Mutex<HashMap<String, TopicState>>,
}

#[derive(Debug)]
struct TopicState {
    id: Uuid,
    next_offsets: Vec<i64>,
}

/// Runs `strata bench null-broker` until `stop` is cancelled. Prints
/// `strata bench null-broker ready: bootstrap=HOST:PORT` on stdout once it accepts
/// connections.
pub async fn run(args: &NullBrokerArgs, stop: CancellationToken) -> Result<(), BenchError> {
    let config = NullBrokerConfig {
        partitions: args.partitions,
        node_id: args.node_id,
    };
    let broker = NullBroker::bind(args.listen, config).await?;
    crate::report::print_stdout(&format!(
        "strata bench null-broker ready: bootstrap={}\n",
        broker.local_addr()
    ))?;
    broker.serve(stop).await;
    Ok(())
}

impl NullBroker {
    /// Binds `address` (port 0 picks a free port).
    pub async fn bind(address: SocketAddr, config: NullBrokerConfig) -> Result<Self, BenchError> {
        let bind_error = |reason| BenchError::Bind {
            address: address.to_string(),
            reason,
        };
        let listener = TcpListener::bind(address).await.map_err(bind_error)?;
        let local = listener.local_addr().map_err(bind_error)?;
        let host = if local.ip().is_unspecified() {
            "127.0.0.1".to_string()
        } else {
            local.ip().to_string()
        };
        Ok(Self {
            listener,
            state: Arc::new(State {
                config,
                host,
                port: i32::from(local.port()),
                topics: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// The address clients connect to.
    pub fn local_addr(&self) -> String {
        format!("{}:{}", self.state.host, self.state.port)
    }

    /// Accepts and serves connections until `stop` is cancelled; then closes them all.
    pub async fn serve(self, stop: CancellationToken) {
        let tracker = TaskTracker::new();
        loop {
            let accepted = tokio::select! {
                accepted = self.listener.accept() => accepted,
                () = stop.cancelled() => break,
            };
            match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    let state = Arc::clone(&self.state);
                    let stop = stop.clone();
                    tracker.spawn(async move {
                        if let Err(reason) = serve_connection(&state, stream, peer, stop).await {
                            tracing::debug!(%peer, %reason, "null broker closing connection");
                        }
                    });
                }
                Err(error) => {
                    tracing::warn!(%error, "null broker accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
        tracker.close();
        tracker.wait().await;
    }
}

async fn serve_connection(
    state: &State,
    stream: TcpStream,
    peer: SocketAddr,
    stop: CancellationToken,
) -> Result<(), String> {
    let peer = peer.to_string();
    let (reader, writer) = stream.into_split();
    let mut reader = BufReader::with_capacity(256 * 1024, reader);
    let mut writer = BufWriter::with_capacity(64 * 1024, writer);
    loop {
        let frame = tokio::select! {
            frame = read_frame(&mut reader, &peer) => frame,
            () = stop.cancelled() => return Ok(()),
        };
        let frame = match frame {
            Ok(frame) => frame,
            Err(BenchError::Closed { .. }) => return Ok(()),
            Err(error) => return Err(error.to_string()),
        };
        if let Some(response) = handle(state, frame).await? {
            writer
                .write_all(&response)
                .await
                .map_err(|e| e.to_string())?;
        }
        // answers wait in the buffer only while more requests are already here
        if reader.buffer().is_empty() {
            writer.flush().await.map_err(|e| e.to_string())?;
        }
    }
}

/// Answers one request frame; `Ok(None)` for requests that get no answer (acks=0);
/// `Err` closes the connection.
async fn handle(state: &State, mut frame: Bytes) -> Result<Option<Bytes>, String> {
    if frame.len() < 8 {
        return Err(format!("request of {} bytes", frame.len()));
    }
    let key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let api = ApiKey::try_from(key).map_err(|_| format!("unknown api key {key}"))?;
    let (min, max) = NULL_BROKER_APIS
        .iter()
        .find(|(k, _, _)| *k == api)
        .map(|(_, min, max)| (*min, *max))
        .ok_or_else(|| format!("unsupported api {api:?}"))?;
    if api == ApiKey::ApiVersions && version > max {
        // KIP-511: say what we support, in the v0 layout, so the client asks again
        let header = RequestHeader::decode(&mut frame, 1).map_err(|e| e.to_string())?;
        let body = api_versions().with_error_code(ResponseError::UnsupportedVersion.code());
        return respond(api, 0, header.correlation_id, &body).map(Some);
    }
    if !(min..=max).contains(&version) {
        return Err(format!("unsupported {api:?} version {version}"));
    }
    let header = RequestHeader::decode(&mut frame, api.request_header_version(version))
        .map_err(|e| format!("bad request header: {e}"))?;
    let correlation_id = header.correlation_id;
    match api {
        ApiKey::ApiVersions => respond(api, version, correlation_id, &api_versions()).map(Some),
        ApiKey::Metadata => {
            let request = decode::<MetadataRequest>(&mut frame, api, version)?;
            respond(
                api,
                version,
                correlation_id,
                &state.metadata(version, &request),
            )
            .map(Some)
        }
        ApiKey::CreateTopics => {
            let request = decode::<CreateTopicsRequest>(&mut frame, api, version)?;
            let response = state.create_topics(version, &request);
            respond(api, version, correlation_id, &response).map(Some)
        }
        ApiKey::Produce => {
            let request = decode::<ProduceRequest>(&mut frame, api, version)?;
            let response = state.produce(version, &request);
            if request.acks == 0 {
                return Ok(None);
            }
            respond(api, version, correlation_id, &response).map(Some)
        }
        ApiKey::Fetch => {
            let request = decode::<FetchRequest>(&mut frame, api, version)?;
            let wait = Duration::from_millis(u64::try_from(request.max_wait_ms).unwrap_or(0));
            tokio::time::sleep(wait.min(MAX_FETCH_WAIT)).await;
            respond(
                api,
                version,
                correlation_id,
                &state.fetch(version, &request),
            )
            .map(Some)
        }
        other => Err(format!("no handler for {other:?}")),
    }
}

fn decode<T: Decodable>(frame: &mut Bytes, api: ApiKey, version: i16) -> Result<T, String> {
    T::decode(frame, version).map_err(|e| format!("malformed {api:?} v{version} request: {e}"))
}

fn respond<R: Encodable>(
    api: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &R,
) -> Result<Bytes, String> {
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let mut buf = BytesMut::with_capacity(128);
    buf.put_i32(0);
    header
        .encode(&mut buf, api.response_header_version(version))
        .and_then(|()| body.encode(&mut buf, version))
        .map_err(|e| format!("cannot encode {api:?} v{version} response: {e}"))?;
    let size = i32::try_from(buf.len() - 4).map_err(|_| "response too large".to_string())?;
    buf[0..4].copy_from_slice(&size.to_be_bytes());
    Ok(buf.freeze())
}

fn api_versions() -> ApiVersionsResponse {
    ApiVersionsResponse::default().with_api_keys(
        NULL_BROKER_APIS
            .iter()
            .map(|(key, min, max)| {
                ApiVersion::default()
                    .with_api_key(*key as i16)
                    .with_min_version(*min)
                    .with_max_version(*max)
            })
            .collect(),
    )
}

impl State {
    /// Runs `f` on the topic, creating it with `partitions` (or the default) if unknown.
    fn with_topic<T>(
        &self,
        name: &str,
        partitions: Option<i32>,
        f: impl FnOnce(&mut TopicState) -> T,
    ) -> T {
        let mut topics = self.topics.lock().unwrap_or_else(PoisonError::into_inner);
        let topic = topics.entry(name.to_string()).or_insert_with(|| {
            let count = partitions
                .filter(|p| *p > 0)
                .unwrap_or(self.config.partitions);
            TopicState {
                id: topic_id(name),
                next_offsets: vec![0; usize::try_from(count).unwrap_or(1)],
            }
        });
        f(topic)
    }

    fn metadata(&self, version: i16, request: &MetadataRequest) -> MetadataResponse {
        let node = BrokerId(self.config.node_id);
        let names: Vec<String> = match &request.topics {
            Some(topics) if !(version == 0 && topics.is_empty()) => topics
                .iter()
                .filter_map(|t| t.name.as_ref().map(|n| n.0.to_string()))
                .collect(),
            // all topics: those known so far
            _ => {
                let topics = self.topics.lock().unwrap_or_else(PoisonError::into_inner);
                topics.keys().cloned().collect()
            }
        };
        let topics = names
            .iter()
            .map(|name| {
                let (id, count) = self.with_topic(name, None, |t| (t.id, t.next_offsets.len()));
                let partitions = (0..count)
                    .map(|index| {
                        let mut partition = MetadataResponsePartition::default()
                            .with_partition_index(index as i32)
                            .with_leader_id(node)
                            .with_replica_nodes(vec![node])
                            .with_isr_nodes(vec![node]);
                        if version >= 7 {
                            partition.leader_epoch = 0;
                        }
                        partition
                    })
                    .collect();
                let mut topic = MetadataResponseTopic::default()
                    .with_name(Some(name_of(name)))
                    .with_partitions(partitions);
                if version >= 10 {
                    topic.topic_id = id;
                }
                topic
            })
            .collect();
        let mut response = MetadataResponse::default()
            .with_brokers(vec![MetadataResponseBroker::default()
                .with_node_id(node)
                .with_host(StrBytes::from_string(self.host.clone()))
                .with_port(self.port)])
            .with_topics(topics);
        if version >= 1 {
            response.controller_id = node;
        }
        if version >= 2 {
            response.cluster_id = Some(StrBytes::from_static_str("strata-bench-null-broker"));
        }
        response
    }

    fn create_topics(&self, version: i16, request: &CreateTopicsRequest) -> CreateTopicsResponse {
        let topics = request
            .topics
            .iter()
            .map(|t| {
                let name = t.name.0.to_string();
                let (id, count) = if request.validate_only {
                    (
                        topic_id(&name),
                        t.num_partitions.max(self.config.partitions),
                    )
                } else {
                    self.with_topic(&name, Some(t.num_partitions), |s| {
                        (s.id, s.next_offsets.len() as i32)
                    })
                };
                let mut result = CreatableTopicResult::default()
                    .with_name(t.name.clone())
                    .with_error_message(None);
                if version >= 5 {
                    result.num_partitions = count;
                    result.replication_factor = 1;
                }
                if version >= 7 {
                    result.topic_id = id;
                }
                result
            })
            .collect();
        CreateTopicsResponse::default().with_topics(topics)
    }

    fn produce(&self, version: i16, request: &ProduceRequest) -> ProduceResponse {
        let responses = request
            .topic_data
            .iter()
            .map(|topic| {
                let name = topic.name.0.to_string();
                let partition_responses = topic
                    .partition_data
                    .iter()
                    .map(|data| {
                        let records = record_count(data.records.as_ref());
                        let outcome: Result<i64, ResponseError> =
                            self.with_topic(&name, None, |t| {
                                let next = usize::try_from(data.index)
                                    .ok()
                                    .and_then(|i| t.next_offsets.get_mut(i))
                                    .ok_or(ResponseError::UnknownTopicOrPartition)?;
                                let count = records?;
                                let base = *next;
                                *next += count;
                                Ok(base)
                            });
                        let response = PartitionProduceResponse::default().with_index(data.index);
                        match outcome {
                            Ok(base) if version >= 5 => {
                                response.with_base_offset(base).with_log_start_offset(0)
                            }
                            Ok(base) => response.with_base_offset(base),
                            Err(error) => {
                                response.with_error_code(error.code()).with_base_offset(-1)
                            }
                        }
                    })
                    .collect();
                TopicProduceResponse::default()
                    .with_name(topic.name.clone())
                    .with_partition_responses(partition_responses)
            })
            .collect();
        ProduceResponse::default().with_responses(responses)
    }

    fn fetch(&self, version: i16, request: &FetchRequest) -> FetchResponse {
        let responses = request
            .topics
            .iter()
            .map(|topic| {
                let name = topic.topic.0.to_string();
                let partitions = topic
                    .partitions
                    .iter()
                    .map(|p| {
                        let end = self.with_topic(&name, None, |t| {
                            usize::try_from(p.partition)
                                .ok()
                                .and_then(|i| t.next_offsets.get(i).copied())
                        });
                        let data = PartitionData::default()
                            .with_partition_index(p.partition)
                            .with_records(Some(Bytes::new()));
                        match end {
                            Some(end) if version >= 5 => data
                                .with_high_watermark(end)
                                .with_last_stable_offset(end)
                                .with_log_start_offset(0),
                            Some(end) => data.with_high_watermark(end).with_last_stable_offset(end),
                            None => data
                                .with_error_code(ResponseError::UnknownTopicOrPartition.code())
                                .with_high_watermark(-1),
                        }
                    })
                    .collect();
                FetchableTopicResponse::default()
                    .with_topic(topic.topic.clone())
                    .with_partitions(partitions)
            })
            .collect();
        FetchResponse::default().with_responses(responses)
    }
}

/// Records in one partition's produced batches; CORRUPT_MESSAGE if they do not decode.
fn record_count(records: Option<&Bytes>) -> Result<i64, ResponseError> {
    let Some(records) = records else {
        return Ok(0);
    };
    let infos = RecordBatchDecoder::decode_batch_info(&mut records.clone())
        .map_err(|_| ResponseError::CorruptMessage)?;
    Ok(infos.iter().map(|i| i64::from(i.record_count)).sum())
}

fn name_of(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

/// A stable, non-nil topic id derived from the name.
fn topic_id(name: &str) -> Uuid {
    let mut hasher = DefaultHasher::new();
    name.hash(&mut hasher);
    let high = hasher.finish();
    "strata-bench".hash(&mut hasher);
    let low = hasher.finish();
    Uuid::from_u64_pair(high | 1, low)
}
