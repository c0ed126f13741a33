//! Starting and stopping the services.
//!
//! Shutdown drains in order: stop taking Kafka connections, flush and commit the open
//! segment (the metadata service is still up for that), then stop the metadata server.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context};
use strata_agent::metadata_client::{connect, parse_addresses, MetadataClient};
use strata_agent::{Agent, AgentConfig};
use strata_metadata::leadership::{Leadership, LeaseConfig, LeaseStore};
use strata_metadata::postgres::PostgresStore;
use strata_metadata::sqlite::SqliteStore;
use strata_metadata::store::MetadataStore;
use strata_metadata::MetadataServiceImpl;
use strata_storage::{Bucket, S3Options};
use strata_telemetry::{serve_http, MeteredStore, ObjectStoreMetrics, Readiness, Registry};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::cli::{AgentArgs, AgentOnlyArgs, BucketArgs, DevArgs, MetadataArgs};
use strata_cache::PeerConfig;

/// How long start-up waits for the agent to be ready before it says it is listening.
const READY_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// How long a stopping metadata server waits for open calls.
const STOP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Resolves on SIGINT or SIGTERM.
pub(crate) async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut term) = signal(SignalKind::terminate()) else {
            let _ = tokio::signal::ctrl_c().await;
            return;
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Opens the metadata store a URL names: `sqlite:///path/to/metadata.db`, or
/// `postgres://user:password@host:port/database` (also `postgresql://`), whose pending
/// schema migrations are applied before it is returned.
///
/// A PostgreSQL store also holds the leader lease (several metadata processes may share
/// it); SQLite has no lease (one process owns the file).
async fn open_store(
    url: &str,
) -> anyhow::Result<(Arc<dyn MetadataStore>, Option<Arc<dyn LeaseStore>>)> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let store = PostgresStore::connect(url).await.with_context(|| {
            format!(
                "cannot open metadata store {}",
                strata_metadata::postgres::redacted(url)
            )
        })?;
        let store = Arc::new(store);
        return Ok((store.clone(), Some(store)));
    }
    let Some(path) = url.strip_prefix("sqlite://") else {
        bail!(
            "unsupported metadata store {:?}; use sqlite:///path/to/metadata.db or \
             postgres://user:password@host:port/database",
            strata_metadata::postgres::redacted(url)
        );
    };
    let store = SqliteStore::open(Path::new(path))
        .with_context(|| format!("cannot open metadata store {url}"))?;
    Ok((Arc::new(store), None))
}

/// A running metadata gRPC server.
struct MetadataServer {
    addr: SocketAddr,
    leadership: Leadership,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
    /// The lease campaign (PostgreSQL), which releases the lease when stopped.
    campaign: Option<tokio::task::JoinHandle<()>>,
    /// The retention enforcer, which applies retention while this process leads.
    retention: Option<tokio::task::JoinHandle<()>>,
}

async fn start_metadata(
    args: &MetadataArgs,
    default_store: Option<String>,
    registry: &mut Registry,
) -> anyhow::Result<MetadataServer> {
    let store_url = args
        .store
        .clone()
        .or(default_store)
        .context("--store is required, e.g. --store sqlite:///var/lib/strata/metadata.db")?;
    let (store, lease) = open_store(&store_url).await?;
    let mut service = MetadataServiceImpl::new(store, strata_clock::system());
    service.metrics().register(registry);
    let listener = TcpListener::bind(args.metadata_listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {} for the metadata service",
                args.metadata_listen
            )
        })?;
    let addr = listener.local_addr()?;
    let (stop, mut stopped) = watch::channel(false);
    let mut campaign = None;
    if let Some(lease) = lease {
        let config = LeaseConfig {
            holder: uuid::Uuid::new_v4().to_string(),
            address: args
                .metadata_advertised_url
                .clone()
                .unwrap_or_else(|| format!("http://{addr}")),
            ttl: args.lease_ttl,
        };
        tracing::info!(address = %config.address, ttl = ?config.ttl, "campaigning for the metadata leader lease");
        let mut stopping = stopped.clone();
        let (leadership, task) =
            Leadership::campaign(lease, config, service.metrics().clone(), async move {
                let _ = stopping.wait_for(|s| *s).await;
            });
        service = service.with_leadership(leadership);
        campaign = Some(task);
    }
    let leadership = service.leadership().clone();
    let retention = start_retention(&service, args.retention_check_interval, &stop);
    // without TCP_NODELAY every small gRPC response waits out delayed ACKs (~40 ms)
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    let task = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(strata_metadata::grpc_service(service))
            .serve_with_incoming_shutdown(incoming, async move {
                let _ = stopped.wait_for(|s| *s).await;
            }),
    );
    tracing::info!(%addr, store = %strata_metadata::postgres::redacted(&store_url), "metadata service listening");
    Ok(MetadataServer {
        addr,
        leadership,
        stop,
        task,
        campaign,
        retention,
    })
}

/// Starts the retention enforcer, unless `interval` is zero; it ends when `stop` says so.
fn start_retention(
    service: &MetadataServiceImpl,
    interval: std::time::Duration,
    stop: &watch::Sender<bool>,
) -> Option<tokio::task::JoinHandle<()>> {
    if interval.is_zero() {
        tracing::info!("retention disabled (--retention-check-interval 0s)");
        return None;
    }
    let mut stopped = stop.subscribe();
    let shutdown = async move {
        let _ = stopped.wait_for(|s| *s).await;
    };
    Some(service.retention_enforcer().spawn(interval, shutdown))
}

impl MetadataServer {
    /// Stops taking calls and waits up to [`STOP_TIMEOUT`] for calls in progress (open
    /// watch streams included) before dropping them.
    async fn stop(mut self) -> anyhow::Result<()> {
        let _ = self.stop.send(true);
        if let Some(mut retention) = self.retention.take() {
            if tokio::time::timeout(STOP_TIMEOUT, &mut retention)
                .await
                .is_err()
            {
                tracing::warn!("retention pass still running after the stop timeout; dropping it");
                retention.abort();
            }
        }
        if let Some(campaign) = self.campaign.take() {
            // releases the lease, so a standby takes over at its next check
            let _ = campaign.await;
        }
        match tokio::time::timeout(STOP_TIMEOUT, &mut self.task).await {
            Ok(joined) => joined?.context("metadata server failed"),
            Err(_) => {
                tracing::warn!("metadata calls still open after the stop timeout; dropping them");
                self.task.abort();
                Ok(())
            }
        }
    }
}

pub(crate) fn metadata_client(addresses: &str) -> anyhow::Result<MetadataClient> {
    let addresses = parse_addresses(addresses).context("invalid --metadata")?;
    connect(&addresses, None).context("invalid --metadata")
}

/// A started agent, the listener it is to serve Kafka clients on, and its cache peer
/// server when it has the cache role (running already: the agent registers as a cache node
/// as it starts, so peers may call at once).
struct StartedAgent {
    agent: Arc<Agent>,
    kafka: TcpListener,
    peers: Option<crate::cache_cmd::PeerServer>,
}

async fn start_agent(
    args: &AgentArgs,
    metadata: MetadataClient,
    default_bucket: Option<String>,
    registry: &mut Registry,
) -> anyhow::Result<StartedAgent> {
    let (bucket, bucket_url) = open_bucket(&args.storage, default_bucket, registry).await?;
    if args.orphan_grace < strata_agent::orphans::MIN_GRACE {
        bail!(
            "--orphan-grace {} is too short: it must outlast the 5-minute window in which a segment may still be committed; use at least 10m",
            humantime::format_duration(args.orphan_grace)
        );
    }
    let listener = TcpListener::bind(args.kafka_listen)
        .await
        .with_context(|| format!("cannot listen on {} for Kafka clients", args.kafka_listen))?;
    let bound = listener.local_addr()?;
    let (host, port) = advertised("--advertised-addr", args.advertised_addr.as_deref(), bound)?;
    let role = &args.cache_role;
    let (cache, cache_advertised_addr) = match role.cache_listen {
        Some(addr) => {
            let (listener, advertised) =
                crate::cache_cmd::bind(addr, role.cache_advertised_addr.as_deref()).await?;
            (Some(listener), Some(advertised))
        }
        None => (None, None),
    };
    let config = AgentConfig {
        kafka_listen: bound,
        advertised_host: host,
        advertised_port: port,
        node_id: args.node_id,
        cluster_id: args.cluster_id.clone(),
        flush_interval: args.flush_interval,
        flush_bytes: args.flush_bytes.max(1),
        max_inflight_uploads: args.max_inflight_uploads.max(1),
        adaptive_flush: args.adaptive_flush,
        flush_min_gap: args.flush_min_gap,
        max_buffered_bytes: args.max_buffered_bytes.max(args.flush_bytes),
        auto_create_topics: args.auto_create_topics,
        default_partitions: args.default_partitions.max(1),
        read_cache_bytes: args.read_cache_bytes,
        read_block_bytes: args.read_tier.read_block_bytes,
        read_decoded_cache_bytes: args.read_tier.read_decoded_cache_bytes,
        read_ahead_bytes: args.read_tier.read_ahead_bytes,
        read_ahead_concurrency: args.read_tier.read_ahead_concurrency,
        availability_zone: args.availability_zone.clone(),
        heartbeat_interval: args.heartbeat_interval,
        gc_interval: args.gc_interval,
        orphan_grace: args.orphan_grace,
        unreferenced_grace: args.unreferenced_grace,
        agent_lease: args.agent_lease.max(args.heartbeat_interval),
        compaction_interval: args.compaction_interval,
        compaction_min_age: args.compaction_min_age,
        compaction_target_bytes: args.compaction_target_bytes,
        cache_advertised_addr,
        cache_peers: PeerConfig {
            timeout: role.cache_peer_timeout,
            ..PeerConfig::default()
        },
        listener: client_limits(args),
        fetch_max_bytes: args.client_limits.fetch_max_bytes,
        auto_create_topics_per_second: args.client_limits.auto_create_topics_per_second,
        ..AgentConfig::default()
    };
    tracing::info!(kafka = %bound, bucket = %bucket_url, "agent listening");
    let agent = Agent::start(config, metadata, bucket, strata_clock::system());
    agent.metrics.register(registry);
    // a duplicate node id is an operator error: refuse to start rather than shadow another agent
    match agent.cluster.heartbeat(&agent.metadata).await {
        Err(status) if status.code() == tonic::Code::AlreadyExists => {
            bail!(
                "cannot join the cluster: {}; give each agent its own --node-id",
                status.message()
            )
        }
        Err(status) => {
            tracing::warn!(%status, "first heartbeat failed; retrying in the background")
        }
        Ok(()) => {}
    }
    let peers =
        cache.map(|listener| crate::cache_cmd::PeerServer::start(listener, agent.blocks.clone()));
    Ok(StartedAgent {
        agent,
        kafka: listener,
        peers,
    })
}

/// The Kafka listener's limits an agent's flags set.
fn client_limits(args: &AgentArgs) -> strata_agent::limits::ListenerLimits {
    let limits = &args.client_limits;
    strata_agent::limits::ListenerLimits {
        max_request_bytes: args.max_request_bytes,
        header_timeout: limits.request_header_timeout,
        body_timeout: limits.request_body_timeout,
        idle_timeout: limits.connections_max_idle,
        max_connections: limits.max_connections,
        max_connections_per_ip: limits.max_connections_per_ip,
        queued_max_request_bytes: limits.queued_max_request_bytes,
    }
}

impl StartedAgent {
    /// Serves Kafka clients until a shutdown signal, then stops the peer server too.
    async fn serve(self) {
        self.agent.serve(self.kafka, shutdown_signal()).await;
        if let Some(peers) = self.peers {
            peers.stop().await;
        }
    }
}

/// The bucket `args` name (or `default_bucket`), created first if asked, behind a store
/// that records every request in `registry`; also returns its URL.
pub(crate) async fn open_bucket(
    args: &BucketArgs,
    default_bucket: Option<String>,
    registry: &mut Registry,
) -> anyhow::Result<(Bucket, String)> {
    let bucket_url = args
        .bucket
        .clone()
        .or(default_bucket)
        .context("--bucket is required, e.g. --bucket s3://my-bucket/strata")?;
    let s3 = S3Options {
        endpoint: args.s3_endpoint.clone(),
        region: args.s3_region.clone(),
        access_key_id: args.s3_access_key_id.clone(),
        secret_access_key: args.s3_secret_access_key.clone(),
        session_token: args.s3_session_token.clone(),
        path_style: args.s3_path_style,
        allow_http: args
            .s3_endpoint
            .as_deref()
            .is_some_and(|e| e.starts_with("http://")),
        request_timeout: args.s3_request_timeout,
        connect_timeout: args.s3_connect_timeout,
        max_retries: args.s3_max_retries,
        retry_timeout: args.s3_retry_timeout,
        backoff_initial: args.s3_retry_initial_backoff,
        backoff_max: args.s3_retry_max_backoff,
        max_inflight_writes: args.s3_max_inflight_writes,
        max_inflight_reads: args.s3_max_inflight_reads,
    };
    if args.create_bucket {
        let outcome = strata_storage::create_bucket(&bucket_url, &s3).await?;
        tracing::info!(bucket = %bucket_url, ?outcome, "bucket created or found");
    }
    let bucket = metered(strata_storage::open(&bucket_url, &s3)?, registry);
    Ok((bucket, bucket_url))
}

/// The bucket behind a store that records every request in `registry`.
fn metered(mut bucket: Bucket, registry: &mut Registry) -> Bucket {
    let metrics = ObjectStoreMetrics::default();
    metrics.register(registry);
    bucket.store = Arc::new(MeteredStore::new(bucket.store, metrics));
    bucket
}

/// The running HTTP endpoint; stops when dropped or stopped.
pub(crate) struct HttpEndpoint {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

pub(crate) async fn start_http(
    addr: SocketAddr,
    registry: Registry,
    ready: Readiness,
) -> anyhow::Result<HttpEndpoint> {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (bound, task) = serve_http(addr, registry, ready, async move {
        let _ = stopped.await;
    })
    .await
    .with_context(|| format!("cannot listen on {addr} for /metrics, /healthz and /readyz"))?;
    tracing::info!(http = %bound, "metrics and health endpoint listening");
    Ok(HttpEndpoint { stop, task })
}

/// The agent's endpoint, ready while the agent is.
async fn start_agent_http(
    args: &AgentArgs,
    registry: Registry,
    agent: &Arc<Agent>,
) -> anyhow::Result<HttpEndpoint> {
    let agent = Arc::clone(agent);
    start_http(
        args.http_listen,
        registry,
        Arc::new(move || agent.is_ready()),
    )
    .await
}

impl HttpEndpoint {
    pub(crate) async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

pub(crate) fn advertised(
    flag: &str,
    addr: Option<&str>,
    bound: SocketAddr,
) -> anyhow::Result<(String, u16)> {
    let Some(addr) = addr else {
        let host = if bound.ip().is_unspecified() {
            "127.0.0.1".to_string()
        } else {
            bound.ip().to_string()
        };
        return Ok((host, bound.port()));
    };
    let (host, port) = addr
        .rsplit_once(':')
        .with_context(|| format!("{flag} {addr:?} must be host:port"))?;
    let port = port
        .parse()
        .with_context(|| format!("invalid port in {flag} {addr:?}"))?;
    Ok((host.to_string(), port))
}

fn file_url(path: &Path) -> anyhow::Result<String> {
    let absolute =
        std::path::absolute(path).with_context(|| format!("invalid path {}", path.display()))?;
    Ok(format!("file://{}", absolute.display()))
}

/// Waits (up to [`READY_WAIT`]) until the agent's link to the metadata service is up, so
/// the "ready" line is printed when `/readyz` says so too; after that it is printed anyway
/// (the agent keeps reconnecting, and `/readyz` tells the truth).
async fn wait_until_ready(agent: &Agent) {
    let deadline = tokio::time::Instant::now() + READY_WAIT;
    while !agent.is_ready() {
        if tokio::time::Instant::now() >= deadline {
            tracing::warn!("not connected to the metadata service yet; serving anyway");
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// `strata dev`: metadata service and agent in one process.
pub async fn dev(args: DevArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("cannot create data dir {}", args.data_dir.display()))?;
    let data_dir = std::path::absolute(&args.data_dir)?;
    let default_store = format!("sqlite://{}", data_dir.join("metadata.db").display());
    let mut registry = Registry::default();
    let server = start_metadata(&args.metadata, Some(default_store), &mut registry).await?;
    let client = metadata_client(&format!("http://{}", server.addr))?;
    let default_bucket = file_url(&data_dir.join("bucket"))?;
    let started = start_agent(&args.agent, client, Some(default_bucket), &mut registry).await?;
    let agent = Arc::clone(&started.agent);
    let http = start_agent_http(&args.agent, registry, &agent).await?;
    wait_until_ready(&agent).await;
    println!(
        "strata dev ready: bootstrap={}:{} metadata=http://{}",
        agent.config.advertised_host, agent.config.advertised_port, server.addr
    );
    use std::io::Write;
    let _ = std::io::stdout().flush();
    started.serve().await;
    tracing::info!("open segment flushed; stopping");
    http.stop().await;
    server.stop().await
}

/// `strata metadata`: the metadata service alone.
pub async fn metadata(args: MetadataArgs, default_store: Option<String>) -> anyhow::Result<()> {
    let mut registry = Registry::default();
    let server = start_metadata(&args, default_store, &mut registry).await?;
    // ready = serving: load balancers and health checks see only the leader as ready
    let leadership = server.leadership.clone();
    let http = start_http(
        args.metadata_http_listen,
        registry,
        Arc::new(move || leadership.is_serving()),
    )
    .await?;
    println!("strata metadata ready: listen=http://{}", server.addr);
    shutdown_signal().await;
    http.stop().await;
    server.stop().await
}

/// `strata agent`: one agent against a metadata service.
pub async fn agent(args: AgentOnlyArgs) -> anyhow::Result<()> {
    let client = metadata_client(&args.metadata)?;
    let mut registry = Registry::default();
    let started = start_agent(&args.agent, client, None, &mut registry).await?;
    let agent = Arc::clone(&started.agent);
    let http = start_agent_http(&args.agent, registry, &agent).await?;
    wait_until_ready(&agent).await;
    println!(
        "strata agent ready: bootstrap={}:{}",
        agent.config.advertised_host, agent.config.advertised_port
    );
    started.serve().await;
    http.stop().await;
    Ok(())
}
