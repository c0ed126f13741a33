//! Command-line surface. Every setting is a flag, a `STRATA_*` environment variable and a
//! key of the optional TOML file (see `config_file`), all with the same name.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

/// Strata: a Kafka-compatible event streaming service on object storage.
#[derive(Debug, Parser)]
#[command(name = "strata", version, about)]
pub struct Cli {
    /// TOML file with settings (keys named like the long flags, with '_' for '-').
    #[arg(long, global = true, env = "STRATA_CONFIG_FILE")]
    pub config_file: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

/// What to run.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Metadata service and agent in one process, on SQLite and a local directory.
    Dev(DevArgs),
    /// The metadata service alone.
    Metadata(MetadataArgs),
    /// One agent, talking to a metadata service.
    Agent(AgentOnlyArgs),
    /// A cache node of the read tier: owns its share of segment blocks on the ring and
    /// serves them to agents, so each block is read from the bucket once per zone.
    Cache(CacheArgs),
    /// Manage topics on a running node.
    Topic(crate::topic_cmd::TopicArgs),
    /// Inspect consumer groups and reset their offsets.
    Group(crate::group_cmd::GroupArgs),
    /// Generate Kafka-protocol load: produce, consume, e2e, or run a null broker.
    Bench(strata_bench::BenchArgs),
    /// Read every index row back from the bucket and list the damaged ones.
    Check(crate::check_cmd::CheckArgs),
}

/// Settings of `strata dev`.
#[derive(Debug, Args)]
pub struct DevArgs {
    /// Directory for the default bucket and metadata database.
    #[arg(long, env = "STRATA_DATA_DIR", default_value = "./strata-data")]
    pub data_dir: PathBuf,
    #[command(flatten)]
    pub metadata: MetadataArgs,
    #[command(flatten)]
    pub agent: AgentArgs,
}

/// Settings of the metadata service.
#[derive(Debug, Args)]
pub struct MetadataArgs {
    /// Address the metadata gRPC server binds.
    #[arg(long, env = "STRATA_METADATA_LISTEN", default_value = "127.0.0.1:9093")]
    pub metadata_listen: SocketAddr,
    /// Address of the metadata service's HTTP endpoint (`strata metadata` only; `strata dev`
    /// serves all metrics on --http-listen).
    #[arg(
        long,
        env = "STRATA_METADATA_HTTP_LISTEN",
        default_value = "127.0.0.1:9096"
    )]
    pub metadata_http_listen: SocketAddr,
    /// Metadata store URL: sqlite:///path/to/metadata.db (default: under the data dir) or
    /// postgres://user:password@host:5432/database.
    #[arg(long, env = "STRATA_STORE")]
    pub store: Option<String>,
    /// On PostgreSQL: how long the leader's lease lasts without renewal. A standby takes
    /// over within about this long (plus a fifth of it) after the leader dies.
    #[arg(long, env = "STRATA_LEASE_TTL", default_value = "5s", value_parser = humantime::parse_duration)]
    pub lease_ttl: Duration,
    /// On PostgreSQL: the gRPC URL other processes reach this one at, which standbys name
    /// to clients (default: http:// and the bound listen address).
    #[arg(long, env = "STRATA_METADATA_ADVERTISED_URL")]
    pub metadata_advertised_url: Option<String>,
    /// How often topics' retention.ms and retention.bytes are applied, moving log starts
    /// past expired data (0s disables retention).
    #[arg(long, env = "STRATA_RETENTION_CHECK_INTERVAL", default_value = "5m", value_parser = humantime::parse_duration)]
    pub retention_check_interval: Duration,
}

/// Settings of `strata agent`.
#[derive(Debug, Args)]
pub struct AgentOnlyArgs {
    /// URL of the metadata service; with several metadata processes, all their URLs,
    /// comma-separated (the agent finds the leader among them).
    #[arg(long, env = "STRATA_METADATA", default_value = "http://127.0.0.1:9093")]
    pub metadata: String,
    #[command(flatten)]
    pub agent: AgentArgs,
}

/// Settings of an agent.
#[derive(Debug, Args)]
pub struct AgentArgs {
    /// Address the Kafka listener binds.
    #[arg(long, env = "STRATA_KAFKA_LISTEN", default_value = "127.0.0.1:9092")]
    pub kafka_listen: SocketAddr,
    /// host:port clients are told to connect to (default: the listen address).
    #[arg(long, env = "STRATA_ADVERTISED_ADDR")]
    pub advertised_addr: Option<String>,
    /// Kafka node id of this agent.
    #[arg(long, env = "STRATA_NODE_ID", default_value_t = 1)]
    pub node_id: i32,
    /// Where segment objects live.
    #[command(flatten)]
    pub storage: BucketArgs,
    /// Longest time a produced batch waits for its segment flush.
    #[arg(long, env = "STRATA_FLUSH_INTERVAL", default_value = "100ms", value_parser = humantime::parse_duration)]
    pub flush_interval: Duration,
    /// Flush a segment once it holds this many bytes.
    #[arg(long, env = "STRATA_FLUSH_BYTES", default_value_t = 8 * 1024 * 1024)]
    pub flush_bytes: usize,
    /// Also flush a segment as soon as no upload is in flight: idle produce latency becomes
    /// about one PUT plus one commit, at the price of more, smaller objects at low load.
    #[arg(long, env = "STRATA_ADAPTIVE_FLUSH", default_value_t = false, action = clap::ArgAction::Set)]
    pub adaptive_flush: bool,
    /// Most bytes of produced batches held while their segments upload and commit; producers
    /// beyond it wait, so a slow bucket slows producers down instead of exhausting memory.
    #[arg(long, env = "STRATA_MAX_BUFFERED_BYTES", default_value_t = 256 * 1024 * 1024)]
    pub max_buffered_bytes: usize,
    /// With --adaptive-flush, the least time between the starts of two flushes: caps the
    /// PUT rate at low load (0s: flush whenever no upload is in flight).
    #[arg(long, env = "STRATA_FLUSH_MIN_GAP", default_value = "0s", value_parser = humantime::parse_duration)]
    pub flush_min_gap: Duration,
    /// Segment uploads in flight at once.
    #[arg(long, env = "STRATA_MAX_INFLIGHT_UPLOADS", default_value_t = 4)]
    pub max_inflight_uploads: usize,
    /// Largest Kafka request accepted; larger ones close the connection.
    #[arg(long, env = "STRATA_MAX_REQUEST_BYTES", default_value_t = 100 * 1024 * 1024)]
    pub max_request_bytes: usize,
    /// Create unknown topics on Metadata requests, as Kafka does by default.
    #[arg(long, env = "STRATA_AUTO_CREATE_TOPICS", default_value_t = true, action = clap::ArgAction::Set)]
    pub auto_create_topics: bool,
    /// Partitions of auto-created topics.
    #[arg(long, env = "STRATA_DEFAULT_PARTITIONS", default_value_t = 1)]
    pub default_partitions: i32,
    /// Bytes of segment blocks the read tier's block cache keeps.
    #[arg(long, env = "STRATA_READ_CACHE_BYTES", default_value_t = 256 * 1024 * 1024)]
    pub read_cache_bytes: u64,
    /// Read tier settings beyond the cache size.
    #[command(flatten)]
    pub read_tier: ReadTierArgs,
    /// The optional cache role.
    #[command(flatten)]
    pub cache_role: AgentCacheRoleArgs,
    /// Address of the agent's HTTP endpoint: /metrics, /healthz, /readyz (port 0 picks one).
    #[arg(long, env = "STRATA_HTTP_LISTEN", default_value = "127.0.0.1:9095")]
    pub http_listen: SocketAddr,
    /// How often the agent renews its registration with the metadata service.
    #[arg(long, env = "STRATA_HEARTBEAT_INTERVAL", default_value = "1s", value_parser = humantime::parse_duration)]
    pub heartbeat_interval: Duration,
    /// How long an agent stays listed to clients after its last heartbeat.
    #[arg(long, env = "STRATA_AGENT_LEASE", default_value = "5s", value_parser = humantime::parse_duration)]
    pub agent_lease: Duration,
    /// How often the collectors run: the orphan collector (uploads never committed) and
    /// the unreferenced-object collector (objects retention, DeleteRecords or topic
    /// deletion left unreferenced); 0 disables both.
    #[arg(long, env = "STRATA_GC_INTERVAL", default_value = "5m", value_parser = humantime::parse_duration)]
    pub gc_interval: Duration,
    /// Age an uncommitted segment object must reach before it is deleted (at least 10m).
    #[arg(long, env = "STRATA_ORPHAN_GRACE", default_value = "15m", value_parser = humantime::parse_duration)]
    pub orphan_grace: Duration,
    /// How long a segment object must have been unreferenced by the index (all its data
    /// below the log starts, or of deleted topics) before the collector deletes it: longer
    /// than any fetch that may still read it.
    #[arg(long, env = "STRATA_UNREFERENCED_GRACE", default_value = "10m", value_parser = humantime::parse_duration)]
    pub unreferenced_grace: Duration,
    /// Availability zone of this agent, reported to clients as the broker's rack.
    #[arg(long, env = "STRATA_AVAILABILITY_ZONE")]
    pub availability_zone: Option<String>,
    /// Cluster id reported to clients.
    #[arg(long, env = "STRATA_CLUSTER_ID", default_value = "strata")]
    pub cluster_id: String,
    /// Time between compaction passes (small segments rewritten into large per-partition
    /// objects, for the partitions this agent leads); 0 disables compaction.
    #[arg(long, env = "STRATA_COMPACTION_INTERVAL", default_value = "5m", value_parser = humantime::parse_duration)]
    pub compaction_interval: Duration,
    /// Only segment objects written at least this long ago are compacted.
    #[arg(long, env = "STRATA_COMPACTION_MIN_AGE", default_value = "10m", value_parser = humantime::parse_duration)]
    pub compaction_min_age: Duration,
    /// Most raw bytes of record batches in one compacted object (one chunk, one index row);
    /// rows of at least half of it are not compacted.
    #[arg(long, env = "STRATA_COMPACTION_TARGET_BYTES", default_value_t = 16 * 1024 * 1024)]
    pub compaction_target_bytes: u64,
    /// What one Kafka client may take of the agent.
    #[command(flatten)]
    pub client_limits: ClientLimitArgs,
}

/// Limits of the Kafka listener, named after Kafka's broker settings where Kafka has one.
#[derive(Debug, Args)]
pub struct ClientLimitArgs {
    /// Time a client has to send a request's size and header (its first 512 bytes) once the
    /// request's first byte arrived; the connection is closed otherwise.
    #[arg(long, env = "STRATA_REQUEST_HEADER_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub request_header_timeout: Duration,
    /// Time a client has to send a whole request once its first byte arrived.
    #[arg(long, env = "STRATA_REQUEST_BODY_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub request_body_timeout: Duration,
    /// Close connections that send no request for this long, or do not read a response for
    /// this long (Kafka's connections.max.idle.ms).
    #[arg(long, env = "STRATA_CONNECTIONS_MAX_IDLE", default_value = "10m", value_parser = humantime::parse_duration)]
    pub connections_max_idle: Duration,
    /// Most Kafka connections the agent holds open; more are closed at once (Kafka's
    /// max.connections).
    #[arg(long, env = "STRATA_MAX_CONNECTIONS", default_value_t = 10_000)]
    pub max_connections: usize,
    /// Most Kafka connections from one client address (Kafka's max.connections.per.ip).
    #[arg(long, env = "STRATA_MAX_CONNECTIONS_PER_IP", default_value_t = 1_000)]
    pub max_connections_per_ip: usize,
    /// Bytes of requests being read or waiting for their handler, for the whole agent; when
    /// it is reached, connections wait before reading more (Kafka's queued.max.request.bytes).
    #[arg(long, env = "STRATA_QUEUED_MAX_REQUEST_BYTES", default_value_t = 512 * 1024 * 1024)]
    pub queued_max_request_bytes: usize,
    /// Most record bytes in one Fetch response whatever the client asks; the first batch is
    /// still served whole (Kafka's fetch.max.bytes).
    #[arg(long, env = "STRATA_FETCH_MAX_BYTES", default_value_t = 55 * 1024 * 1024)]
    pub fetch_max_bytes: usize,
    /// Topics the agent may auto-create per second on clients' Metadata requests, in bursts
    /// of up to ten seconds' worth (0: none).
    #[arg(
        long,
        env = "STRATA_AUTO_CREATE_TOPICS_PER_SECOND",
        default_value_t = 10
    )]
    pub auto_create_topics_per_second: u32,
}

/// Where segment objects live, and how to reach the bucket.
#[derive(Debug, Args)]
pub struct BucketArgs {
    /// Bucket URL: file:///dir, memory://, or s3://bucket/prefix (default: under the data dir).
    #[arg(long, env = "STRATA_BUCKET")]
    pub bucket: Option<String>,
    /// S3 endpoint for s3:// buckets (e.g. http://127.0.0.1:8333 for an emulator).
    #[arg(long, env = "STRATA_S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,
    /// S3 region.
    #[arg(long, env = "STRATA_S3_REGION")]
    pub s3_region: Option<String>,
    /// Use path-style S3 addressing (emulators).
    #[arg(long, env = "STRATA_S3_PATH_STYLE", default_value_t = false)]
    pub s3_path_style: bool,
    /// Static S3 access key id (default: the AWS environment, then instance/task roles).
    #[arg(
        long,
        env = "STRATA_S3_ACCESS_KEY_ID",
        requires = "s3_secret_access_key"
    )]
    pub s3_access_key_id: Option<String>,
    /// Static S3 secret access key, paired with --s3-access-key-id.
    #[arg(
        long,
        env = "STRATA_S3_SECRET_ACCESS_KEY",
        hide_env_values = true,
        requires = "s3_access_key_id"
    )]
    pub s3_secret_access_key: Option<String>,
    /// Session token for temporary static S3 keys.
    #[arg(
        long,
        env = "STRATA_S3_SESSION_TOKEN",
        hide_env_values = true,
        requires = "s3_access_key_id"
    )]
    pub s3_session_token: Option<String>,
    /// Longest time one S3 request may take, body included.
    #[arg(long, env = "STRATA_S3_REQUEST_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub s3_request_timeout: Duration,
    /// Longest time to open a connection to S3.
    #[arg(long, env = "STRATA_S3_CONNECT_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub s3_connect_timeout: Duration,
    /// Retries of one S3 request after 5xx/SlowDown, throttling or connection errors (0: none).
    #[arg(long, env = "STRATA_S3_MAX_RETRIES", default_value_t = 10)]
    pub s3_max_retries: usize,
    /// No S3 retry starts later than this after the first attempt.
    #[arg(long, env = "STRATA_S3_RETRY_TIMEOUT", default_value = "60s", value_parser = humantime::parse_duration)]
    pub s3_retry_timeout: Duration,
    /// First backoff between S3 retries; it grows, with jitter, up to --s3-retry-max-backoff.
    #[arg(long, env = "STRATA_S3_RETRY_INITIAL_BACKOFF", default_value = "100ms", value_parser = humantime::parse_duration)]
    pub s3_retry_initial_backoff: Duration,
    /// Longest backoff between S3 retries.
    #[arg(long, env = "STRATA_S3_RETRY_MAX_BACKOFF", default_value = "5s", value_parser = humantime::parse_duration)]
    pub s3_retry_max_backoff: Duration,
    /// S3 writes (uploads, deletes) in flight at once; more wait for a slot.
    #[arg(long, env = "STRATA_S3_MAX_INFLIGHT_WRITES", default_value_t = 16)]
    pub s3_max_inflight_writes: usize,
    /// S3 reads (ranged GETs, HEADs, lists) in flight at once; more wait for a slot.
    #[arg(long, env = "STRATA_S3_MAX_INFLIGHT_READS", default_value_t = 64)]
    pub s3_max_inflight_reads: usize,
    /// Create the s3:// bucket at start if missing (local emulators; needs --s3-endpoint).
    #[arg(long, env = "STRATA_CREATE_BUCKET", default_value_t = false)]
    pub create_bucket: bool,
}

/// Settings of an agent that also serves the cache role.
#[derive(Debug, Args)]
pub struct AgentCacheRoleArgs {
    /// Also serve the cache role: own a share of the blocks on the read tier's ring and
    /// serve them to the other agents over gRPC on this address (default: off).
    #[arg(long, env = "STRATA_CACHE_LISTEN")]
    pub cache_listen: Option<SocketAddr>,
    /// host:port other nodes reach this cache peer server at (default: the listen address).
    #[arg(long, env = "STRATA_CACHE_ADVERTISED_ADDR")]
    pub cache_advertised_addr: Option<String>,
    /// Longest time a block request to its owning cache node may take before the block is
    /// read from the bucket instead.
    #[arg(long, env = "STRATA_CACHE_PEER_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub cache_peer_timeout: Duration,
}

/// Settings of `strata cache`.
#[derive(Debug, Args)]
pub struct CacheArgs {
    /// URL of the metadata service; with several metadata processes, all their URLs,
    /// comma-separated.
    #[arg(long, env = "STRATA_METADATA", default_value = "http://127.0.0.1:9093")]
    pub metadata: String,
    /// Address the cache peer gRPC server binds.
    #[arg(long, env = "STRATA_CACHE_LISTEN", default_value = "127.0.0.1:9094")]
    pub cache_listen: SocketAddr,
    /// host:port agents reach this node at (default: the listen address).
    #[arg(long, env = "STRATA_CACHE_ADVERTISED_ADDR")]
    pub cache_advertised_addr: Option<String>,
    /// Where segment objects live.
    #[command(flatten)]
    pub storage: BucketArgs,
    /// Bytes of segment blocks this node keeps.
    #[arg(long, env = "STRATA_READ_CACHE_BYTES", default_value_t = 1024 * 1024 * 1024)]
    pub read_cache_bytes: u64,
    /// Size of the aligned blocks objects are read in; must match the agents'.
    #[arg(long, env = "STRATA_READ_BLOCK_BYTES", default_value_t = 4 * 1024 * 1024)]
    pub read_block_bytes: u64,
    /// Availability zone of this node: agents use the cache nodes of their own zone.
    #[arg(long, env = "STRATA_AVAILABILITY_ZONE")]
    pub availability_zone: Option<String>,
    /// Address of the node's HTTP endpoint: /metrics, /healthz, /readyz (port 0 picks one).
    #[arg(long, env = "STRATA_HTTP_LISTEN", default_value = "127.0.0.1:9097")]
    pub http_listen: SocketAddr,
    /// How often the node renews its registration with the metadata service.
    #[arg(long, env = "STRATA_HEARTBEAT_INTERVAL", default_value = "1s", value_parser = humantime::parse_duration)]
    pub heartbeat_interval: Duration,
    /// How long the node stays on the ring after its last heartbeat.
    #[arg(long, env = "STRATA_CACHE_NODE_LEASE", default_value = "5s", value_parser = humantime::parse_duration)]
    pub cache_node_lease: Duration,
}

/// Settings of the agent's read tier beyond the cache size.
#[derive(Debug, Args)]
pub struct ReadTierArgs {
    /// Size of the aligned blocks segment objects are read and cached in (one ranged GET
    /// per block; 64 KiB to 256 MiB).
    #[arg(long, env = "STRATA_READ_BLOCK_BYTES", default_value_t = 4 * 1024 * 1024)]
    pub read_block_bytes: u64,
    /// Bytes of decoded chunks kept on top of the block cache (0: decode on every read).
    #[arg(long, env = "STRATA_READ_DECODED_CACHE_BYTES", default_value_t = 64 * 1024 * 1024)]
    pub read_decoded_cache_bytes: u64,
    /// Bytes of a partition's next data whose blocks are loaded ahead of a sequential reader
    /// on each of its fetches, up to a quarter of --read-cache-bytes (0: no read-ahead).
    #[arg(long, env = "STRATA_READ_AHEAD_BYTES", default_value_t = 32 * 1024 * 1024)]
    pub read_ahead_bytes: u64,
    /// Read-ahead block loads in flight at once, for the whole agent; more are skipped.
    #[arg(long, env = "STRATA_READ_AHEAD_CONCURRENCY", default_value_t = 16)]
    pub read_ahead_concurrency: usize,
}

/// Runs the chosen command.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Dev(args) => crate::serve::dev(args).await,
        Command::Metadata(args) => crate::serve::metadata(args, None).await,
        Command::Agent(args) => crate::serve::agent(args).await,
        Command::Cache(args) => crate::cache_cmd::run(args).await,
        Command::Topic(args) => crate::topic_cmd::run(args).await,
        Command::Group(args) => crate::group_cmd::run(args).await,
        Command::Bench(args) => Ok(strata_bench::run(args).await?),
        Command::Check(args) => crate::check_cmd::run(args).await,
    }
}
