//! What the agent's integration tests share: a real metadata gRPC server on 127.0.0.1 and
//! a Kafka connection that frames requests with the kafka-protocol crate as a client would.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs, dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::TopicName;
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use strata_agent::metadata_client::MetadataClient;
use strata_agent::{Agent, AgentConfig};
use strata_clock::ManualClock;
use strata_metadata::sqlite::SqliteStore;
use strata_metadata::MetadataServiceImpl;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Serves `service` on a free port and returns a client of it.
pub async fn serve_metadata(service: MetadataServiceImpl) -> MetadataClient {
    let grpc = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let grpc_addr = grpc.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(strata_metadata::grpc_service(service))
            .serve_with_incoming(
                tonic::transport::server::TcpIncoming::from(grpc).with_nodelay(Some(true)),
            ),
    );
    strata_agent::metadata_client::connect(&[format!("http://{grpc_addr}")], None).unwrap()
}

/// An agent on an in-memory bucket and a metadata service (SQLite in memory) sharing
/// `clock`, with `config`'s settings and a free Kafka port; returns the agent and its address.
pub async fn start_agent(clock: Arc<ManualClock>, config: AgentConfig) -> (Arc<Agent>, SocketAddr) {
    let store = Arc::new(SqliteStore::in_memory().unwrap());
    let metadata = serve_metadata(MetadataServiceImpl::new(store, clock.clone())).await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let kafka = listener.local_addr().unwrap();
    let config = AgentConfig {
        kafka_listen: kafka,
        advertised_port: kafka.port(),
        ..config
    };
    let bucket = strata_storage::open("memory://", &Default::default()).unwrap();
    let agent = Agent::start(config, metadata, bucket, clock);
    tokio::spawn(Arc::clone(&agent).serve(listener, std::future::pending()));
    (agent, kafka)
}

/// One uncompressed RecordBatch v2 of `records`, each (key, value, timestamp in ms), with
/// offset deltas from 0, no producer id and no headers: what a plain producer sends.
pub fn encode_batch(records: impl IntoIterator<Item = (Option<Bytes>, Bytes, i64)>) -> Bytes {
    let records: Vec<Record> = records
        .into_iter()
        .enumerate()
        .map(|(i, (key, value, timestamp))| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: -1,
            timestamp,
            key,
            value: Some(value),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: Compression::None,
    };
    RecordBatchEncoder::encode(&mut buf, &records, &options).unwrap();
    buf.freeze()
}

/// A topic name for a request.
pub fn name(topic: &str) -> TopicName {
    TopicName(StrBytes::from_string(topic.to_string()))
}

/// A Kafka connection with its own correlation ids.
pub struct Conn {
    stream: TcpStream,
    next_id: i32,
}

impl Conn {
    pub async fn open(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect(addr).await.unwrap();
        stream.set_nodelay(true).unwrap();
        Self { stream, next_id: 1 }
    }

    /// Sends a request without waiting; returns its correlation id.
    pub async fn send<R: Encodable>(&mut self, api: ApiKey, version: i16, body: &R) -> i32 {
        let id = self.next_id;
        self.next_id += 1;
        let header = RequestHeader::default()
            .with_request_api_key(api as i16)
            .with_request_api_version(version)
            .with_correlation_id(id)
            .with_client_id(Some(StrBytes::from_static_str("wire-test")));
        let mut buf = BytesMut::new();
        buf.put_i32(0);
        header
            .encode(&mut buf, api.request_header_version(version))
            .unwrap();
        body.encode(&mut buf, version).unwrap();
        let size = (buf.len() - 4) as i32;
        buf[0..4].copy_from_slice(&size.to_be_bytes());
        self.stream.write_all(&buf).await.unwrap();
        id
    }

    /// Reads the next response, which must answer `expected_id`.
    pub async fn receive<R: Decodable>(
        &mut self,
        api: ApiKey,
        version: i16,
        expected_id: i32,
    ) -> R {
        let size = self.stream.read_i32().await.unwrap();
        let mut frame = vec![0u8; size as usize];
        self.stream.read_exact(&mut frame).await.unwrap();
        let mut frame = Bytes::from(frame);
        let header =
            ResponseHeader::decode(&mut frame, api.response_header_version(version)).unwrap();
        assert_eq!(
            header.correlation_id, expected_id,
            "responses come back in request order"
        );
        R::decode(&mut frame, version).unwrap()
    }

    /// Sends a request and waits for its response.
    pub async fn call<Req: Encodable, Resp: Decodable>(
        &mut self,
        api: ApiKey,
        version: i16,
        body: &Req,
    ) -> Resp {
        let id = self.send(api, version, body).await;
        self.receive(api, version, id).await
    }
}
