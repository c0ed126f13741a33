//! A metadata client that follows the leader among several metadata addresses.
//!
//! With more than one metadata process (one leader, standbys on the same database) agents
//! and the CLI are given every address. [`LeaderChannel`] sends each call to the address it
//! currently believes leads; when a call fails to connect, or a standby refuses it
//! (`UNAVAILABLE`, naming the leader in [`LEADER_HEADER`]), the next calls go to the named
//! leader, or else to the next address in turn. The failed call itself is not replayed
//! here (its body is gone): callers retry `UNAVAILABLE` as they already do for a restarting
//! metadata service, and [`call_leader`] does it for one-shot callers such as the CLI.
//!
//! With one address it behaves exactly like a plain [`Channel`].

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::BoxFuture;
use strata_proto::metadata::v1::metadata_service_client::MetadataServiceClient;
use thiserror::Error;
use tonic::body::Body;
use tonic::codegen::Service;
use tonic::transport::{Channel, Endpoint};

/// gRPC metadata in which a standby names the leader's address.
pub const LEADER_HEADER: &str = "x-strata-leader";

/// How often an idle connection to a metadata process is pinged.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(2);
/// How long a ping may go unanswered before the connection is given up.
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(3);

/// gRPC status code `UNAVAILABLE`, as sent in the `grpc-status` header.
const UNAVAILABLE: &str = "14";

/// The metadata client agents and the CLI use.
pub type MetadataClient = MetadataServiceClient<LeaderChannel>;

/// Why metadata addresses could not be used.
#[derive(Debug, Error)]
pub enum AddressError {
    /// No address was given.
    #[error("no metadata address given")]
    Empty,
    /// An address is not a valid URL.
    #[error("invalid metadata address {address:?}: {reason}")]
    Invalid {
        /// The address as given.
        address: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// True when a metadata call that failed with `status` may succeed if made again: the
/// service was unreachable or changing leader, the call timed out, or its transaction was
/// aborted. Callers retrying on it must make idempotent calls (commits and swaps are, by
/// object key).
pub fn is_retryable(status: &tonic::Status) -> bool {
    matches!(
        status.code(),
        tonic::Code::Unavailable
            | tonic::Code::DeadlineExceeded
            | tonic::Code::Unknown
            | tonic::Code::Aborted
            | tonic::Code::Internal
    )
}

/// Parses a comma-separated list of metadata URLs (`http://host:port,...`).
pub fn parse_addresses(list: &str) -> Result<Vec<String>, AddressError> {
    let addresses: Vec<String> = list
        .split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(String::from)
        .collect();
    if addresses.is_empty() {
        return Err(AddressError::Empty);
    }
    Ok(addresses)
}

/// A client over `addresses` (connecting lazily), each call bounded by `timeout` when set.
pub fn connect(
    addresses: &[String],
    timeout: Option<Duration>,
) -> Result<MetadataClient, AddressError> {
    let channel = LeaderChannel::new(addresses, timeout)?;
    Ok(MetadataServiceClient::new(channel)
        .max_decoding_message_size(64 * 1024 * 1024)
        .max_encoding_message_size(64 * 1024 * 1024))
}

/// Calls [`call_leader`] makes at most: enough to try three addresses twice.
const LEADER_ATTEMPTS: u32 = 6;

/// Runs `call` until it succeeds, fails with anything but `UNAVAILABLE`, or has been made
/// [`LEADER_ATTEMPTS`] times (pausing briefly between attempts): one-shot callers such as
/// the CLI find the leader this way.
pub async fn call_leader<T, F, Fut>(
    client: &MetadataClient,
    mut call: F,
) -> Result<T, tonic::Status>
where
    F: FnMut(MetadataClient) -> Fut,
    Fut: std::future::Future<Output = Result<T, tonic::Status>>,
{
    let mut attempt = 1;
    loop {
        match call(client.clone()).await {
            Err(status)
                if status.code() == tonic::Code::Unavailable && attempt < LEADER_ATTEMPTS =>
            {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            result => return result,
        }
    }
}

/// Most addresses a channel learns from leaders' names beyond those it was given.
const MAX_LEARNED: usize = 16;

/// A channel to whichever of several metadata addresses leads (see the module docs).
#[derive(Clone)]
pub struct LeaderChannel {
    shared: Arc<Shared>,
}

struct Shared {
    /// The given addresses, then those learned from standbys' answers.
    endpoints: RwLock<Vec<(String, Channel)>>,
    current: AtomicUsize,
    timeout: Option<Duration>,
}

impl std::fmt::Debug for LeaderChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaderChannel")
            .field("current", &self.current_address())
            .finish_non_exhaustive()
    }
}

impl LeaderChannel {
    /// Lazily connecting channels to `addresses`, starting with the first.
    pub fn new(addresses: &[String], timeout: Option<Duration>) -> Result<Self, AddressError> {
        if addresses.is_empty() {
            return Err(AddressError::Empty);
        }
        let endpoints = addresses
            .iter()
            .map(|address| Ok((normalize(address), channel_to(address, timeout)?)))
            .collect::<Result<_, AddressError>>()?;
        Ok(Self {
            shared: Arc::new(Shared {
                endpoints: RwLock::new(endpoints),
                current: AtomicUsize::new(0),
                timeout,
            }),
        })
    }

    /// The address calls go to now.
    pub fn current_address(&self) -> String {
        self.shared.current().0
    }
}

/// A lazily connecting channel to one metadata address.
fn channel_to(address: &str, timeout: Option<Duration>) -> Result<Channel, AddressError> {
    let mut endpoint = Endpoint::from_shared(address.to_string())
        .map_err(|e| AddressError::Invalid {
            address: address.to_string(),
            reason: e.to_string(),
        })?
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true)
        // a paused or cut-off metadata process answers no pings: its connection fails
        // within seconds and the calls move on instead of hanging
        .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
        .keep_alive_timeout(KEEPALIVE_TIMEOUT)
        .keep_alive_while_idle(true);
    if let Some(timeout) = timeout {
        endpoint = endpoint.timeout(timeout);
    }
    Ok(endpoint.connect_lazy())
}

impl Shared {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Vec<(String, Channel)>> {
        self.endpoints.read().unwrap_or_else(|p| p.into_inner())
    }

    /// (address, channel, index) calls go to now.
    fn current(&self) -> (String, Channel, usize) {
        let endpoints = self.read();
        let index = self.current.load(Ordering::Acquire) % endpoints.len();
        let (address, channel) = &endpoints[index];
        (address.clone(), channel.clone(), index)
    }

    /// After a failure at `failed`: move to the named leader (learning its address if it
    /// is new, e.g. behind one DNS name for all metadata processes), else to the next
    /// address. Only the first of several concurrent failures at the same address moves
    /// the channel.
    fn move_on(&self, failed: usize, leader: Option<&str>) {
        let named = leader
            .map(normalize)
            .and_then(|leader| self.index_of(&leader));
        let endpoints = self.read();
        let next = named.unwrap_or((failed + 1) % endpoints.len());
        if next != failed
            && self
                .current
                .compare_exchange(failed, next, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            tracing::info!(
                from = %endpoints[failed].0,
                to = %endpoints[next].0,
                "switching metadata address"
            );
        }
    }

    /// The index of `address`, added to the known addresses if it is new (and valid, and
    /// there is room).
    fn index_of(&self, address: &str) -> Option<usize> {
        if let Some(index) = self.read().iter().position(|(a, _)| a == address) {
            return Some(index);
        }
        let channel = channel_to(address, self.timeout).ok()?;
        let mut endpoints = self.endpoints.write().unwrap_or_else(|p| p.into_inner());
        if let Some(index) = endpoints.iter().position(|(a, _)| a == address) {
            return Some(index);
        }
        if endpoints.len() >= MAX_LEARNED {
            return None;
        }
        endpoints.push((address.to_string(), channel));
        Some(endpoints.len() - 1)
    }
}

/// The form addresses are compared in: no trailing slash, lowercase scheme and host.
fn normalize(address: &str) -> String {
    address.trim().trim_end_matches('/').to_ascii_lowercase()
}

impl Service<http::Request<Body>> for LeaderChannel {
    type Response = http::Response<Body>;
    type Error = tonic::transport::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // readiness is awaited on the chosen channel inside the call
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let shared = Arc::clone(&self.shared);
        let (_, mut channel, index) = shared.current();
        Box::pin(async move {
            let sent = async {
                futures::future::poll_fn(|cx| channel.poll_ready(cx)).await?;
                channel.call(request).await
            };
            match sent.await {
                Err(error) => {
                    shared.move_on(index, None);
                    Err(error)
                }
                Ok(response) => {
                    let headers = response.headers();
                    if headers.get("grpc-status").is_some_and(|s| s == UNAVAILABLE) {
                        let leader = headers.get(LEADER_HEADER).and_then(|v| v.to_str().ok());
                        shared.move_on(index, leader);
                    }
                    Ok(response)
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn shared(addresses: &[&str]) -> Shared {
        let list: Vec<String> = addresses.iter().map(|a| a.to_string()).collect();
        let channel = LeaderChannel::new(&list, None).unwrap();
        Arc::try_unwrap(channel.shared).ok().unwrap()
    }

    fn current(s: &Shared) -> String {
        s.current().0
    }

    #[tokio::test]
    async fn moves_to_the_named_leader_or_else_the_next_address() {
        let s = shared(&["http://a:1", "http://b:2", "http://c:3"]);
        s.move_on(0, Some("http://C:3/"));
        assert_eq!(current(&s), "http://c:3");
        s.move_on(2, None);
        assert_eq!(current(&s), "http://a:1");
        // a stale failure at an address we already left changes nothing
        s.move_on(2, None);
        assert_eq!(current(&s), "http://a:1");
        // a leader we were not given (all behind one DNS name): learned and used
        s.move_on(0, Some("http://10.0.3.7:9093"));
        assert_eq!(current(&s), "http://10.0.3.7:9093");
        s.move_on(3, None);
        assert_eq!(current(&s), "http://a:1");
        // an invalid name is ignored: next in turn
        s.move_on(0, Some("not a url"));
        assert_eq!(current(&s), "http://b:2");
    }

    #[test]
    fn address_lists() {
        assert_eq!(
            parse_addresses(" http://a:1, http://b:2 ,").unwrap(),
            ["http://a:1", "http://b:2"]
        );
        assert!(matches!(parse_addresses(" , "), Err(AddressError::Empty)));
    }
}
