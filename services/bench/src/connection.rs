//! One Kafka connection: size-prefixed framing, correlation ids, and the API versions both
//! sides speak. Messages are encoded and decoded by the kafka-protocol crate.
//!
//! A [`Connection`] does one request at a time ([`Connection::call`]); for pipelining it
//! becomes a [`Pipeline`]: requests are written in order by the caller while a reader task
//! forwards every response frame, in arrival order, to a channel. Kafka answers requests on
//! one connection in the order they were sent, so the caller matches frames to requests
//! with a FIFO queue and checks each correlation id.

use std::ops::RangeInclusive;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader, ResponseHeader,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::error::BenchError;

/// The client id every request carries.
pub const CLIENT_ID: &str = "strata-bench";

/// Largest response frame accepted.
const MAX_FRAME_BYTES: usize = 256 * 1024 * 1024;

/// One API's version range as a broker advertises it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VersionRange {
    /// The API key.
    pub api_key: i16,
    /// Lowest supported version.
    pub min: i16,
    /// Highest supported version.
    pub max: i16,
}

/// An open connection to one broker whose API versions are known.
#[derive(Debug)]
pub struct Connection {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    address: String,
    next_correlation_id: i32,
    versions: Vec<VersionRange>,
}

impl Connection {
    /// Connects to `address` (host:port) and asks which API versions the broker speaks.
    /// Fails with a message naming the address when the broker is unreachable or silent.
    pub async fn connect(address: &str, timeout: Duration) -> Result<Self, BenchError> {
        let stream = tokio::time::timeout(timeout, TcpStream::connect(address))
            .await
            .map_err(|_| BenchError::ConnectTimeout {
                address: address.to_string(),
                timeout,
            })?
            .map_err(|reason| BenchError::Connect {
                address: address.to_string(),
                reason,
            })?;
        // without it small requests wait for the peer's delayed ack
        let _ = stream.set_nodelay(true);
        let (reader, writer) = stream.into_split();
        let mut connection = Self {
            reader: BufReader::with_capacity(256 * 1024, reader),
            writer,
            address: address.to_string(),
            next_correlation_id: 1,
            versions: Vec::new(),
        };
        connection.negotiate(timeout).await?;
        Ok(connection)
    }

    /// The highest version of `api` that both the broker and `ours` include.
    pub fn version(&self, api: ApiKey, ours: RangeInclusive<i16>) -> Result<i16, BenchError> {
        pick_version(&self.versions, api, ours.clone()).ok_or_else(|| BenchError::UnsupportedApi {
            address: self.address.clone(),
            api,
            min: *ours.start(),
            max: *ours.end(),
        })
    }

    /// Sends `request` and waits (at most `timeout`) for its decoded response.
    pub async fn call<Req: Encodable, Resp: Decodable>(
        &mut self,
        api: ApiKey,
        version: i16,
        request: &Req,
        timeout: Duration,
    ) -> Result<Resp, BenchError> {
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id = self.next_correlation_id.wrapping_add(1);
        let frame = encode_request(api, version, correlation_id, request)?;
        let address = self.address.clone();
        let exchange = async {
            self.writer
                .write_all(&frame)
                .await
                .map_err(|reason| BenchError::Io {
                    address: address.clone(),
                    reason,
                })?;
            read_frame(&mut self.reader, &address).await
        };
        let body = tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| BenchError::Timeout {
                address: address.clone(),
                api,
                timeout,
            })??;
        decode_response(body, api, version, correlation_id, &address)
    }

    /// Turns the connection into a pipeline: responses go to `events`, tagged with `link`,
    /// in the order they arrive; a read failure is sent as the last event.
    pub fn into_pipeline(self, link: usize, events: mpsc::Sender<FrameEvent>) -> Pipeline {
        let address = self.address.clone();
        let mut reader = self.reader;
        let reader_task = tokio::spawn(async move {
            loop {
                let frame = read_frame(&mut reader, &address).await;
                let failed = frame.is_err();
                if events.send(FrameEvent { link, frame }).await.is_err() || failed {
                    return;
                }
            }
        });
        Pipeline {
            writer: self.writer,
            address: self.address,
            next_correlation_id: self.next_correlation_id,
            reader_task,
        }
    }

    async fn negotiate(&mut self, timeout: Duration) -> Result<(), BenchError> {
        let request = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str(CLIENT_ID))
            .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
        // a broker that does not know v3 answers UNSUPPORTED_VERSION in the v0 layout
        // (KIP-511), which may not decode as v3: either way, ask again with v0
        let response: ApiVersionsResponse = match self
            .call::<_, ApiVersionsResponse>(ApiKey::ApiVersions, 3, &request, timeout)
            .await
        {
            Ok(response) if response.error_code == 0 => response,
            Ok(_) | Err(BenchError::BadResponse { .. }) => {
                self.call(ApiKey::ApiVersions, 0, &request, timeout).await?
            }
            Err(error) => return Err(error),
        };
        if response.error_code != 0 {
            return Err(BenchError::Kafka {
                operation: "ApiVersions",
                what: self.address.clone(),
                code: response.error_code,
            });
        }
        self.versions = response
            .api_keys
            .iter()
            .map(|v| VersionRange {
                api_key: v.api_key,
                min: v.min_version,
                max: v.max_version,
            })
            .collect();
        Ok(())
    }
}

/// A response frame read by a pipeline's reader task.
#[derive(Debug)]
pub struct FrameEvent {
    /// Which pipeline of its owner the frame came from.
    pub link: usize,
    /// The frame (header and body, without the size), or why reading stopped.
    pub frame: Result<Bytes, BenchError>,
}

/// The writing side of a pipelined connection; its reader task ends when it is dropped.
#[derive(Debug)]
pub struct Pipeline {
    writer: OwnedWriteHalf,
    address: String,
    next_correlation_id: i32,
    reader_task: JoinHandle<()>,
}

impl Pipeline {
    /// The broker's host:port.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// Writes one request and returns its correlation id. The write completes when the
    /// kernel has taken the bytes, so a slow broker slows the caller down.
    pub async fn send<Req: Encodable>(
        &mut self,
        api: ApiKey,
        version: i16,
        request: &Req,
    ) -> Result<i32, BenchError> {
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id = self.next_correlation_id.wrapping_add(1);
        let frame = encode_request(api, version, correlation_id, request)?;
        self.writer
            .write_all(&frame)
            .await
            .map_err(|reason| BenchError::Io {
                address: self.address.clone(),
                reason,
            })?;
        Ok(correlation_id)
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        self.reader_task.abort();
    }
}

fn pick_version(versions: &[VersionRange], api: ApiKey, ours: RangeInclusive<i16>) -> Option<i16> {
    let theirs = versions.iter().find(|v| v.api_key == api as i16)?;
    let high = theirs.max.min(*ours.end());
    let low = theirs.min.max(*ours.start());
    (high >= low).then_some(high)
}

/// Encodes a request frame: size, request header (with [`CLIENT_ID`]), body.
pub fn encode_request<Req: Encodable>(
    api: ApiKey,
    version: i16,
    correlation_id: i32,
    request: &Req,
) -> Result<Bytes, BenchError> {
    let header = RequestHeader::default()
        .with_request_api_key(api as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str(CLIENT_ID)));
    let mut frame = BytesMut::with_capacity(64);
    frame.put_i32(0);
    header
        .encode(&mut frame, api.request_header_version(version))
        .and_then(|()| request.encode(&mut frame, version))
        .map_err(|e| BenchError::Encode {
            api,
            version,
            reason: e.to_string(),
        })?;
    let size = i32::try_from(frame.len() - 4).map_err(|_| BenchError::Encode {
        api,
        version,
        reason: format!("request of {} bytes is too large", frame.len()),
    })?;
    frame[0..4].copy_from_slice(&size.to_be_bytes());
    Ok(frame.freeze())
}

/// Decodes a response frame, checking that it answers `correlation_id`.
pub fn decode_response<Resp: Decodable>(
    mut frame: Bytes,
    api: ApiKey,
    version: i16,
    correlation_id: i32,
    address: &str,
) -> Result<Resp, BenchError> {
    let bad = |reason: String| BenchError::BadResponse {
        address: address.to_string(),
        api,
        reason,
    };
    let header = ResponseHeader::decode(&mut frame, api.response_header_version(version))
        .map_err(|e| bad(format!("header: {e}")))?;
    if header.correlation_id != correlation_id {
        return Err(bad(format!(
            "correlation id {} where {correlation_id} was expected",
            header.correlation_id
        )));
    }
    Resp::decode(&mut frame, version).map_err(|e| bad(format!("v{version} body: {e}")))
}

/// Reads one size-prefixed frame.
pub async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    address: &str,
) -> Result<Bytes, BenchError> {
    let io = |reason: std::io::Error| {
        if reason.kind() == std::io::ErrorKind::UnexpectedEof {
            BenchError::Closed {
                address: address.to_string(),
            }
        } else {
            BenchError::Io {
                address: address.to_string(),
                reason,
            }
        }
    };
    let size = reader.read_i32().await.map_err(io)?;
    let size = usize::try_from(size)
        .ok()
        .filter(|size| *size <= MAX_FRAME_BYTES)
        .ok_or_else(|| BenchError::Io {
            address: address.to_string(),
            reason: std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("frame of {size} bytes"),
            ),
        })?;
    let mut frame = BytesMut::zeroed(size);
    reader.read_exact(&mut frame).await.map_err(io)?;
    Ok(frame.freeze())
}

/// Turns a per-partition or per-topic error code into a result.
pub fn check_code(
    operation: &'static str,
    what: impl Into<String>,
    code: i16,
) -> Result<(), BenchError> {
    match ResponseError::try_from_code(code) {
        None => Ok(()),
        Some(_) => Err(BenchError::Kafka {
            operation,
            what: what.into(),
            code,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_is_the_highest_common_one() {
        let versions = [VersionRange {
            api_key: ApiKey::Produce as i16,
            min: 3,
            max: 9,
        }];
        assert_eq!(pick_version(&versions, ApiKey::Produce, 3..=12), Some(9));
        assert_eq!(pick_version(&versions, ApiKey::Produce, 0..=5), Some(5));
        assert_eq!(pick_version(&versions, ApiKey::Produce, 0..=2), None);
        assert_eq!(pick_version(&versions, ApiKey::Fetch, 4..=12), None);
    }

    #[test]
    fn request_frames_carry_their_size() {
        let frame = encode_request(ApiKey::ApiVersions, 3, 7, &ApiVersionsRequest::default());
        let frame = frame.expect("encodes");
        let size = i32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]);
        assert_eq!(size as usize, frame.len() - 4);
    }
}
