//! The peer protocol: asking a block's owner for it ([`PeerClients`]) and answering such
//! requests ([`PeerService`]).
//!
//! A peer request is an optimisation, never a dependency: when the owner is down, slow,
//! misconfigured or answers nonsense, the caller reads the block from the bucket itself,
//! and skips that owner for a short while ([`PeerConfig::retry_after`]) so a dead node
//! costs one failed request, not one per block, until the ring drops it. An owner saying
//! the object does not exist is believed (and not skipped): the bucket would say the same.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use strata_proto::cache::v1::cache_peer_client::CachePeerClient;
use strata_proto::cache::v1::cache_peer_server::{CachePeer, CachePeerServer};
use strata_proto::cache::v1::{GetBlockRequest, GetBlockResponse};
use thiserror::Error;
use tokio::time::Instant;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Response, Status};

use crate::block_cache::{BlockCache, BlockError, BlockId};

/// Largest gRPC message a block travels in: the largest block plus framing.
const MAX_MESSAGE_BYTES: usize = crate::block_cache::MAX_BLOCK_BYTES as usize + 64 * 1024;

/// A connection to a peer unused this long is dropped when another one is opened.
const IDLE_CHANNEL: Duration = Duration::from_secs(10 * 60);
/// Longest object key accepted (S3 allows 1,024 bytes).
const MAX_KEY_BYTES: usize = 1024;
/// HTTP/2 flow-control window of one block response (a 4 MiB block in two windows).
const STREAM_WINDOW_BYTES: u32 = 2 * 1024 * 1024;
/// HTTP/2 flow-control window of a connection to one peer, shared by its requests.
const CONNECTION_WINDOW_BYTES: u32 = 16 * 1024 * 1024;

/// Settings of the peer client.
#[derive(Debug, Clone, Copy)]
pub struct PeerConfig {
    /// Longest time one block request may take before the caller reads the bucket instead.
    pub timeout: Duration,
    /// Longest time to open a connection to a peer.
    pub connect_timeout: Duration,
    /// How long an owner that failed a request is skipped (blocks it owns are read from
    /// the bucket meanwhile).
    pub retry_after: Duration,
}

impl Default for PeerConfig {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(1),
            retry_after: Duration::from_secs(2),
        }
    }
}

/// Why a peer did not deliver a block.
#[derive(Debug, Error)]
pub enum PeerError {
    /// The owner failed recently and is being skipped.
    #[error("cache node {address} failed recently; skipped")]
    Skipped {
        /// The owner's address.
        address: String,
    },
    /// The address is not a valid endpoint.
    #[error("invalid cache node address {address:?}: {reason}")]
    BadAddress {
        /// The owner's address.
        address: String,
        /// Why it is invalid.
        reason: String,
    },
    /// The owner says the object does not exist (the bucket would say the same).
    #[error("cache node {address}: the object does not exist: {message}")]
    NotFound {
        /// The owner's address.
        address: String,
        /// The owner's message.
        message: String,
    },
    /// The owner answered with a block that cannot be right (empty, or larger than a
    /// block): it is not cached, and the owner is skipped for a while.
    #[error("cache node {address} sent {len} bytes for a block of at most {block_bytes}")]
    BadBlock {
        /// The owner's address.
        address: String,
        /// Bytes received.
        len: usize,
        /// The block size asked for.
        block_bytes: u64,
    },
    /// The request failed (connection, timeout, or an error status from the owner).
    #[error("cache node {address} did not serve the block: {status}")]
    Request {
        /// The owner's address.
        address: String,
        /// The gRPC status.
        status: Box<Status>,
    },
}

/// Each peer's client by address, with when it was last used.
type Channels = HashMap<Arc<str>, (CachePeerClient<Channel>, Instant)>;

/// Connections to cache nodes, opened on first use and kept.
///
/// Cloning is cheap and clones share the connections.
#[derive(Debug, Clone)]
pub struct PeerClients {
    config: PeerConfig,
    channels: Arc<Mutex<Channels>>,
    /// Owners that failed, and until when they are skipped.
    skipped: Arc<Mutex<HashMap<Arc<str>, Instant>>>,
}

impl PeerClients {
    /// No connections yet.
    pub fn new(config: PeerConfig) -> Self {
        Self {
            config,
            channels: Arc::default(),
            skipped: Arc::default(),
        }
    }

    /// Block `block` (of `block_bytes`-sized blocks) from the cache node at `address`.
    pub async fn get_block(
        &self,
        address: &Arc<str>,
        block: &BlockId,
        block_bytes: u64,
    ) -> Result<Bytes, PeerError> {
        if self.is_skipped(address) {
            return Err(PeerError::Skipped {
                address: address.to_string(),
            });
        }
        let mut client = self.client(address).inspect_err(|_| self.skip(address))?;
        let request = GetBlockRequest {
            object_key: block.object.to_string(),
            index: block.index,
            block_bytes,
        };
        let data = match client.get_block(request).await {
            Ok(response) => response.into_inner().data,
            Err(status) if status.code() == tonic::Code::NotFound => {
                // a healthy owner: the object is gone (e.g. collected under a stale index row)
                return Err(PeerError::NotFound {
                    address: address.to_string(),
                    message: status.message().to_string(),
                });
            }
            Err(status) => {
                self.skip(address);
                return Err(PeerError::Request {
                    address: address.to_string(),
                    status: Box::new(status),
                });
            }
        };
        if data.is_empty() || data.len() as u64 > block_bytes {
            self.skip(address);
            return Err(PeerError::BadBlock {
                address: address.to_string(),
                len: data.len(),
                block_bytes,
            });
        }
        Ok(data)
    }

    fn is_skipped(&self, address: &Arc<str>) -> bool {
        let mut skipped = self.skipped.lock().unwrap_or_else(|p| p.into_inner());
        match skipped.get(address) {
            Some(until) if *until > Instant::now() => true,
            Some(_) => {
                skipped.remove(address);
                false
            }
            None => false,
        }
    }

    fn skip(&self, address: &Arc<str>) {
        let now = Instant::now();
        let mut skipped = self.skipped.lock().unwrap_or_else(|p| p.into_inner());
        // entries of nodes that left the ring are never looked up again: drop them here
        skipped.retain(|_, until| *until > now);
        skipped.insert(Arc::clone(address), now + self.config.retry_after);
    }

    fn client(&self, address: &Arc<str>) -> Result<CachePeerClient<Channel>, PeerError> {
        let now = Instant::now();
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((client, used)) = channels.get_mut(address) {
            *used = now;
            return Ok(client.clone());
        }
        // connections to nodes that left the ring go once they have been idle a while
        channels.retain(|_, (_, used)| now.duration_since(*used) < IDLE_CHANNEL);
        let bad = |reason: String| PeerError::BadAddress {
            address: address.to_string(),
            reason,
        };
        let endpoint = Endpoint::from_shared(format!("http://{address}"))
            .map_err(|e| bad(e.to_string()))?
            .connect_timeout(self.config.connect_timeout)
            .timeout(self.config.timeout)
            .tcp_nodelay(true)
            // blocks are megabytes: HTTP/2's default 64 KiB windows would cap a block
            // transfer at one window per round trip
            .initial_stream_window_size(Some(STREAM_WINDOW_BYTES))
            .initial_connection_window_size(Some(CONNECTION_WINDOW_BYTES))
            // a frozen peer is noticed between requests too, not by the next request
            .http2_keep_alive_interval(Duration::from_secs(2))
            .keep_alive_timeout(Duration::from_secs(3))
            .keep_alive_while_idle(true);
        let client = CachePeerClient::new(endpoint.connect_lazy())
            .max_decoding_message_size(MAX_MESSAGE_BYTES);
        channels.insert(Arc::clone(address), (client.clone(), now));
        Ok(client)
    }
}

/// Answers peers' block requests from this node's block cache, loading misses from the
/// bucket (never from another peer).
#[derive(Debug, Clone)]
pub struct PeerService {
    blocks: BlockCache,
}

impl PeerService {
    /// Serves the blocks of `blocks`.
    pub fn new(blocks: BlockCache) -> Self {
        Self { blocks }
    }

    /// The tonic service, with message limits that fit the largest block.
    pub fn into_server(self) -> CachePeerServer<Self> {
        CachePeerServer::new(self).max_encoding_message_size(MAX_MESSAGE_BYTES)
    }
}

#[tonic::async_trait]
impl CachePeer for PeerService {
    async fn get_block(
        &self,
        request: Request<GetBlockRequest>,
    ) -> Result<Response<GetBlockResponse>, Status> {
        let request = request.into_inner();
        if request.block_bytes != self.blocks.block_bytes() {
            return Err(Status::failed_precondition(format!(
                "block size mismatch: this node reads blocks of {} bytes, the caller {}; \
                 give every agent and cache node the same --read-block-bytes",
                self.blocks.block_bytes(),
                request.block_bytes
            )));
        }
        if request.object_key.is_empty() || request.object_key.len() > MAX_KEY_BYTES {
            return Err(Status::invalid_argument(format!(
                "object_key must be 1 to {MAX_KEY_BYTES} bytes"
            )));
        }
        let block_bytes = self.blocks.block_bytes();
        if request
            .index
            .saturating_add(1)
            .checked_mul(block_bytes)
            .is_none()
        {
            return Err(Status::invalid_argument(format!(
                "block index {} is beyond any object",
                request.index
            )));
        }
        let block = BlockId {
            object: Arc::from(request.object_key),
            index: request.index,
        };
        match self.blocks.serve_peer(block).await {
            Ok(data) => Ok(Response::new(GetBlockResponse { data })),
            Err(error @ BlockError::Bucket { .. }) if error.is_not_found() => {
                Err(Status::not_found(error.to_string()))
            }
            Err(error) => Err(Status::unavailable(error.to_string())),
        }
    }
}
