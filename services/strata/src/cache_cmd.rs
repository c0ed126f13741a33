//! `strata cache`: a node of the read tier's dedicated cache fleet, and the peer server an
//! agent with the cache role runs too.
//!
//! A cache node holds no durable state. It registers with the metadata service (so agents
//! put it on their rendezvous ring within a heartbeat), answers block requests from its
//! block cache, and reads the blocks it owns from the bucket, once.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use strata_agent::cluster::CacheNodeRegistration;
use strata_cache::{BlockCache, BlockCacheConfig, PeerService, ReadMetrics};
use strata_telemetry::Registry;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use crate::cli::CacheArgs;
use crate::serve::{advertised, metadata_client, open_bucket, shutdown_signal, start_http};

/// Binds the cache peer listener; returns it with the host:port peers are to use.
pub(crate) async fn bind(
    addr: SocketAddr,
    advertised_addr: Option<&str>,
) -> anyhow::Result<(TcpListener, String)> {
    if addr.ip().is_unspecified() && advertised_addr.is_none() {
        anyhow::bail!(
            "--cache-listen {addr} binds every interface: give --cache-advertised-addr HOST:PORT, \
             the address the other nodes reach this one at (it is the node's identity on the ring)"
        );
    }
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} for cache peers"))?;
    let bound = listener.local_addr()?;
    let (host, port) = advertised("--cache-advertised-addr", advertised_addr, bound)?;
    Ok((listener, format!("{host}:{port}")))
}

/// A running cache peer gRPC server.
pub(crate) struct PeerServer {
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
}

impl PeerServer {
    /// Serves the blocks of `blocks` to peers on `listener`.
    pub(crate) fn start(listener: TcpListener, blocks: BlockCache) -> Self {
        let (stop, stopped) = oneshot::channel::<()>();
        // small requests, large replies: without TCP_NODELAY the tail of a block waits out
        // the peer's delayed ACK
        let incoming =
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
        let task = tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(PeerService::new(blocks).into_server())
                .serve_with_incoming_shutdown(incoming, async {
                    let _ = stopped.await;
                }),
        );
        Self { stop, task }
    }

    /// Stops taking requests and waits for the server to end.
    pub(crate) async fn stop(self) {
        let _ = self.stop.send(());
        match self.task.await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::warn!(%error, "cache peer server failed"),
            Err(error) => tracing::warn!(%error, "cache peer server panicked"),
        }
    }
}

/// `strata cache`: serves blocks to agents until SIGINT or SIGTERM.
pub async fn run(args: CacheArgs) -> anyhow::Result<()> {
    let client = metadata_client(&args.metadata)?;
    let mut registry = Registry::default();
    let (bucket, bucket_url) = open_bucket(&args.storage, None, &mut registry).await?;
    let metrics = ReadMetrics::default();
    metrics.register(registry.sub_registry_with_prefix("strata_cache"));
    let config = BlockCacheConfig {
        capacity_bytes: args.read_cache_bytes,
        block_bytes: args.read_block_bytes,
    };
    let blocks = BlockCache::new(bucket, config, metrics);
    let (listener, address) =
        bind(args.cache_listen, args.cache_advertised_addr.as_deref()).await?;
    let lease = args.cache_node_lease.max(args.heartbeat_interval);
    let registration =
        CacheNodeRegistration::new(address.clone(), args.availability_zone.clone(), lease);
    // serving before registering: agents may call as soon as they see the node
    let server = PeerServer::start(listener, blocks.clone());
    let stop = CancellationToken::new();
    registration.spawn(client, args.heartbeat_interval, stop.clone());
    // ready while the metadata service has the node registered (agents route to it)
    let ready = registration.clone();
    let http = start_http(
        args.http_listen,
        registry,
        Arc::new(move || ready.is_registered()),
    )
    .await?;
    tracing::info!(%address, bucket = %bucket_url, block_bytes = blocks.block_bytes(), "cache node serving");
    println!("strata cache ready: listen={address}");
    use std::io::Write;
    let _ = std::io::stdout().flush();
    shutdown_signal().await;
    stop.cancel();
    server.stop().await;
    http.stop().await;
    Ok(())
}
