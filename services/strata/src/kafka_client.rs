//! A small Kafka client for the operator commands: one connection, one request at a time,
//! messages encoded with the kafka-protocol crate.

use anyhow::{bail, Context};
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest response accepted.
const MAX_RESPONSE_BYTES: usize = 256 * 1024 * 1024;

/// A connection to one Kafka broker (a Strata agent).
pub struct KafkaClient {
    stream: TcpStream,
    address: String,
    next_correlation_id: i32,
}

impl KafkaClient {
    /// Connects to `address` (host:port).
    pub async fn connect(address: &str) -> anyhow::Result<Self> {
        let stream = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            TcpStream::connect(address),
        )
        .await
        .with_context(|| format!("timed out connecting to {address}"))?
        .with_context(|| format!("cannot connect to {address}"))?;
        Ok(Self {
            stream,
            address: address.to_string(),
            next_correlation_id: 1,
        })
    }

    /// Sends `request` as `api` at `version` and returns the decoded response.
    pub async fn call<Req: Encodable, Resp: Decodable>(
        &mut self,
        api: ApiKey,
        version: i16,
        request: &Req,
    ) -> anyhow::Result<Resp> {
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id += 1;
        let header = RequestHeader::default()
            .with_request_api_key(api as i16)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(StrBytes::from_static_str("strata-cli")));
        let mut frame = BytesMut::new();
        frame.put_i32(0);
        header.encode(&mut frame, api.request_header_version(version))?;
        request.encode(&mut frame, version)?;
        let size = (frame.len() - 4) as i32;
        frame[0..4].copy_from_slice(&size.to_be_bytes());
        let io = async {
            self.stream.write_all(&frame).await?;
            let size = self.stream.read_i32().await?;
            if size < 0 || size as usize > MAX_RESPONSE_BYTES {
                bail!("response of {size} bytes");
            }
            let mut body = vec![0u8; size as usize];
            self.stream.read_exact(&mut body).await?;
            Ok(Bytes::from(body))
        };
        let mut body = tokio::time::timeout(std::time::Duration::from_secs(30), io)
            .await
            .with_context(|| format!("{} did not answer {api:?} in time", self.address))?
            .with_context(|| format!("{api:?} to {} failed", self.address))?;
        let header = ResponseHeader::decode(&mut body, api.response_header_version(version))?;
        if header.correlation_id != correlation_id {
            bail!(
                "response for request {} arrived for request {correlation_id}",
                header.correlation_id
            );
        }
        Resp::decode(&mut body, version)
    }
}
