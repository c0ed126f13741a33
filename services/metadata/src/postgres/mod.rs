//! The PostgreSQL store: the production metadata store (RDS, Aurora, any PostgreSQL 12+).
//!
//! Same tables and semantics as [`crate::sqlite::SqliteStore`]; the decisions of a commit
//! are shared with it through [`crate::commit_plan`] and [`crate::producer_sequence`], and
//! both run the one conformance suite.
//!
//! # Invariants
//!
//! - Offsets are dense per partition even with many metadata processes and connections
//!   committing at once: a commit locks the rows of the partitions it appends to with
//!   `SELECT ... FOR UPDATE`, sorted by (topic id, partition), reads their high watermarks
//!   under that lock and moves them in the same transaction (see [`commit`]). Locking
//!   rows in one global order means two commits can only wait on each other in one
//!   direction, never in a cycle; every other writer of partition rows (topic deletion)
//!   locks in the same order.
//! - CommitSegment is idempotent by object key: the key is claimed first in the
//!   transaction (unique `segments.object_key`), the outcome stored with it, and a retry
//!   (even a concurrent one) replays that outcome.
//! - The schema is versioned; pending migrations are applied once, under an advisory lock,
//!   before the store serves anything (see [`migrate`]).
//!
//! # Why row locks and not SERIALIZABLE
//!
//! SERIALIZABLE would also keep offsets dense, but every commit to a hot partition would
//! conflict with every other and be aborted and retried, and predicate locks on the index
//! make false conflicts between unrelated partitions possible too. Row locks make commits
//! to one partition queue up (the order the sequencer needs anyway) while commits to
//! different partitions run in parallel, with no retries. Transactions run at READ
//! COMMITTED; each statement that depends on a locked row runs after the lock is taken
//! and so sees the latest committed version. PostgreSQL's own serialization and deadlock
//! errors (which it guarantees rolled back) are still retried, up to [`MAX_ATTEMPTS`].
//!
//! # Errors
//!
//! A failure of the database or of the connection is [`StoreError::Database`]; its outcome
//! is unknown to the caller (`outcome_unknown()`): a connection lost while `COMMIT` was on
//! the wire may have committed. CommitSegment is safe to retry with the same object key
//! regardless. Refusals (`TopicExists`, `TopicNotFound`, `InvalidRequest`) are certain.
//!
//! # URL
//!
//! `postgres://user:password@host:port/database?param=value&...` (or `postgresql://`),
//! with libpq's parameters as tokio-postgres understands them (`sslmode`,
//! `connect_timeout`, `application_name`, `target_session_attrs`, `keepalives_idle`, ...)
//! and Strata's own `pool_size` (connections kept open at most, default
//! [`DEFAULT_POOL_SIZE`]). TLS follows `sslmode` and `sslrootcert` (see [`tls`]).

mod commit;
mod error;
mod group_offsets;
mod lease;
mod lookup;
mod migrate;
mod replace;
mod retention;
mod tls;
mod topics;
mod url;

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{
    Client, GenericClient, Manager, ManagerConfig, Pool, RecyclingMethod, Runtime, Transaction,
};
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use self::error::PgError;
pub use self::migrate::SCHEMA_VERSION;
pub use self::tls::ServerVerification;
pub use self::url::{redacted, PostgresUrl, DEFAULT_POOL_SIZE};
use crate::store::{
    ChunkReplacement, ChunkRow, CommitOutcome, CommittedOffset, ConfigChange, LogStartOutcome,
    LogStartTarget, MetadataStore, PartitionId, PartitionOffsets, ProducerRejection,
    ReplaceOutcome, RetentionPolicy, SegmentCommit, StoreError, TimestampQuery, TopicId,
    TopicRecord, UnreferencedObject,
};

/// Attempts of a transaction that PostgreSQL aborted as a serialization failure or deadlock.
pub const MAX_ATTEMPTS: u32 = 5;

/// Longest wait for a free pooled connection.
const POOL_WAIT: Duration = Duration::from_secs(30);
/// Time a new connection may take beyond its TCP connects (TLS, authentication).
const CREATE_SLACK: Duration = Duration::from_secs(5);

/// A [`MetadataStore`] in a PostgreSQL database, reached through a connection pool.
#[derive(Clone)]
pub struct PostgresStore {
    pool: Pool,
    /// The leader epoch every write transaction checks: [`UNFENCED`], [`DEPOSED`], or the
    /// epoch of the lease this process holds.
    fence: Arc<AtomicI64>,
}

/// Writes are not fenced: the store is used without a leader lease (tests, tools).
const UNFENCED: i64 = 0;
/// This process lost (or never had) the lease: every write is refused before it starts.
const DEPOSED: i64 = -1;

/// How long PostgreSQL lets a session sit idle inside a transaction before ending it
/// (unless the URL sets `options=-c idle_in_transaction_session_timeout=...`): a leader
/// stopped mid-transaction must not hold the lease row's share lock for longer.
const IDLE_IN_TRANSACTION_TIMEOUT_MS: u32 = 5_000;

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let status = self.pool.status();
        f.debug_struct("PostgresStore")
            .field("pool_size", &status.max_size)
            .field("open_connections", &status.size)
            .finish()
    }
}

impl PostgresStore {
    /// Connects to the database at `url` and applies pending schema migrations.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with(PostgresUrl::parse(url)?).await
    }

    /// Connects with parsed settings and applies pending schema migrations.
    pub async fn connect_with(url: PostgresUrl) -> Result<Self, StoreError> {
        // a connection tries each host in turn, each within connect_timeout
        let hosts = u32::try_from(url.config.get_hosts().len().max(1)).unwrap_or(u32::MAX);
        let connect_timeout = url
            .config
            .get_connect_timeout()
            .copied()
            .unwrap_or(url::CONNECT_TIMEOUT);
        let create_timeout = connect_timeout.saturating_mul(hosts) + CREATE_SLACK;
        let mut config = url.config;
        let options = config.get_options().unwrap_or_default().to_string();
        if !options.contains("idle_in_transaction_session_timeout") {
            config.options(
                format!(
                "{options} -c idle_in_transaction_session_timeout={IDLE_IN_TRANSACTION_TIMEOUT_MS}"
            )
                .trim(),
            );
        }
        let manager = Manager::from_config(
            config,
            tls::connector(&url.verification)?,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(url.pool_size)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(POOL_WAIT))
            .create_timeout(Some(create_timeout))
            .build()
            .map_err(|e| StoreError::Database(format!("PostgreSQL pool: {e}")))?;
        let store = Self {
            pool,
            fence: Arc::new(AtomicI64::new(UNFENCED)),
        };
        let mut client = store.client().await?;
        let version = migrate::migrate(&mut client).await?;
        tracing::info!(
            schema_version = version,
            "metadata store ready on PostgreSQL"
        );
        Ok(store)
    }

    /// The schema version recorded in the database's `schema_migrations` table.
    pub async fn schema_version(&self) -> Result<i64, StoreError> {
        let client = self.client().await?;
        Ok(migrate::applied_version(&client).await?)
    }

    async fn client(&self) -> Result<Client, PgError> {
        Ok(self.pool.get().await?)
    }

    /// Fences every later write transaction with the lease epoch `Some(epoch)`, or refuses
    /// them all (`None`: this process is not the leader).
    pub fn set_fence(&self, epoch: Option<i64>) {
        self.fence.store(
            epoch.filter(|e| *e > 0).unwrap_or(DEPOSED),
            Ordering::SeqCst,
        );
    }

    /// Runs a mutating transaction `op` on a pooled connection, again (on a fresh
    /// connection) when PostgreSQL reports it rolled it back as a serialization failure
    /// or deadlock.
    async fn write<T, F, Fut>(&self, op: F) -> Result<T, StoreError>
    where
        F: Fn(Writer) -> Fut + Send + Sync,
        Fut: std::future::Future<Output = Result<T, PgError>> + Send,
        T: Send,
    {
        let mut attempt = 1;
        loop {
            let writer = Writer {
                client: self.client().await?,
                fence: self.fence.load(Ordering::SeqCst),
            };
            match op(writer).await {
                Err(e) if e.is_retryable() && attempt < MAX_ATTEMPTS => {
                    tracing::debug!(attempt, error = ?e, "retrying a metadata transaction");
                    attempt += 1;
                }
                result => return result.map_err(StoreError::from),
            }
        }
    }
}

/// Creates the empty database `name` (letters, digits and `_` only) on the server at
/// `server`, and returns the settings of `server` pointing at it: for tests and benchmarks
/// that need a database of their own.
pub async fn create_database(server: &str, name: &str) -> Result<PostgresUrl, StoreError> {
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(StoreError::InvalidRequest(format!(
            "database name {name:?} must be letters, digits and _"
        )));
    }
    let mut url = PostgresUrl::parse(server)?;
    let (client, connection) = url
        .config
        .connect(tls::connector(&url.verification)?)
        .await
        .map_err(|e| {
            StoreError::Database(format!("cannot connect to {}: {e}", redacted(server)))
        })?;
    let connection = tokio::spawn(connection);
    let created = client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await;
    drop(client);
    let _ = connection.await;
    created.map_err(|e| StoreError::Database(format!("CREATE DATABASE {name}: {e}")))?;
    url.config.dbname(name);
    Ok(url)
}

/// A pooled connection for one mutating transaction, with the fence it must pass.
struct Writer {
    client: Client,
    fence: i64,
}

impl Writer {
    /// Starts a mutating transaction: every write of the store begins here.
    ///
    /// When the store is fenced, the transaction first takes a share lock on the lease row
    /// and checks that this process's epoch is still the current one. A takeover raises the
    /// epoch under an exclusive lock of that row, so it waits for transactions that passed
    /// the check to end, and every transaction after it fails the check: a deposed leader
    /// can never commit.
    async fn begin(&mut self) -> Result<Transaction<'_>, PgError> {
        let fence = self.fence;
        let tx = self.client.transaction().await?;
        match fence {
            UNFENCED => {}
            DEPOSED => {
                return Err(
                    StoreError::NotLeader("this process does not hold the lease".into()).into(),
                )
            }
            epoch => {
                let rows = query(
                    &tx,
                    "SELECT epoch FROM metadata_leader WHERE id = 1 FOR SHARE",
                    &[],
                )
                .await?;
                let current: i64 = match rows.first() {
                    Some(row) => row.try_get(0)?,
                    None => 0,
                };
                if current != epoch {
                    return Err(StoreError::NotLeader(format!(
                        "lease epoch {epoch} was superseded by epoch {current}"
                    ))
                    .into());
                }
            }
        }
        Ok(tx)
    }
}

/// Runs a statement (prepared once per connection) and returns its rows.
async fn query(
    client: &impl GenericClient,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Vec<Row>, PgError> {
    let statement = client.prepare_cached(sql).await?;
    Ok(client.query(&statement, params).await?)
}

/// Runs a statement (prepared once per connection) and returns the rows it changed.
async fn execute(
    client: &impl GenericClient,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<u64, PgError> {
    let statement = client.prepare_cached(sql).await?;
    Ok(client.execute(&statement, params).await?)
}

#[async_trait]
impl MetadataStore for PostgresStore {
    async fn create_topic(&self, topic: TopicRecord) -> Result<TopicRecord, StoreError> {
        let topic = &topic;
        self.write(|client| topics::create(client, topic)).await
    }

    async fn delete_topic(&self, name: &str) -> Result<TopicId, StoreError> {
        self.write(|client| topics::delete(client, name)).await
    }

    async fn list_topics(&self) -> Result<Vec<TopicRecord>, StoreError> {
        Ok(topics::list(&self.client().await?).await?)
    }

    async fn topic_by_name(&self, name: &str) -> Result<Option<TopicRecord>, StoreError> {
        Ok(topics::by_name(&self.client().await?, name).await?)
    }

    async fn topic_by_id(&self, id: TopicId) -> Result<Option<TopicRecord>, StoreError> {
        Ok(topics::by_id(&self.client().await?, &id).await?)
    }

    async fn commit_segments(
        &self,
        commits: Vec<SegmentCommit>,
    ) -> Result<Vec<Result<CommitOutcome, StoreError>>, StoreError> {
        let commits = &commits;
        self.write(|client| commit::commit_segments(client, commits))
            .await
    }

    async fn partition_offsets(
        &self,
        partitions: &[PartitionId],
    ) -> Result<Vec<Option<PartitionOffsets>>, StoreError> {
        Ok(lookup::partition_offsets(&self.client().await?, partitions).await?)
    }

    async fn all_partition_offsets(
        &self,
    ) -> Result<Vec<(PartitionId, PartitionOffsets)>, StoreError> {
        Ok(lookup::all_partition_offsets(&self.client().await?).await?)
    }

    async fn lookup_chunks(
        &self,
        partition: PartitionId,
        offset: i64,
        max_bytes: u64,
        max_rows: u32,
    ) -> Result<Option<(PartitionOffsets, Vec<ChunkRow>)>, StoreError> {
        let client = self.client().await?;
        Ok(lookup::lookup_chunks(&client, partition, offset, max_bytes, max_rows).await?)
    }

    async fn init_producer(
        &self,
        current: Option<(i64, i16)>,
    ) -> Result<Result<(i64, i16), ProducerRejection>, StoreError> {
        self.write(|client| commit::init_producer(client, current))
            .await
    }

    async fn commit_offsets(
        &self,
        group: &str,
        offsets: Vec<CommittedOffset>,
    ) -> Result<(), StoreError> {
        let offsets = &offsets;
        self.write(|client| group_offsets::commit(client, group, offsets))
            .await
    }

    async fn fetch_offsets(
        &self,
        group: &str,
        topics: Option<Vec<String>>,
    ) -> Result<Vec<CommittedOffset>, StoreError> {
        let client = self.client().await?;
        Ok(group_offsets::fetch(&client, group, topics.as_deref()).await?)
    }

    async fn delete_offsets(
        &self,
        group: &str,
        partitions: Vec<(String, i32)>,
    ) -> Result<(), StoreError> {
        let partitions = &partitions;
        self.write(|client| group_offsets::delete(client, group, partitions))
            .await
    }

    async fn delete_group_offsets(&self, group: &str) -> Result<bool, StoreError> {
        self.write(|client| group_offsets::delete_group(client, group))
            .await
    }

    async fn committed_objects(&self, object_keys: Vec<String>) -> Result<Vec<bool>, StoreError> {
        Ok(lookup::committed_objects(&self.client().await?, &object_keys).await?)
    }

    async fn groups_with_offsets(&self) -> Result<Vec<String>, StoreError> {
        Ok(group_offsets::groups(&self.client().await?).await?)
    }

    async fn chunk_by_timestamp(
        &self,
        partition: PartitionId,
        query: TimestampQuery,
    ) -> Result<Option<(PartitionOffsets, Option<ChunkRow>)>, StoreError> {
        let client = self.client().await?;
        Ok(lookup::chunk_by_timestamp(&client, partition, query).await?)
    }

    async fn advance_log_start(
        &self,
        partition: PartitionId,
        target: LogStartTarget,
    ) -> Result<LogStartOutcome, StoreError> {
        let partition = &partition;
        self.write(|client| retention::advance(client, partition, target))
            .await
    }

    async fn apply_retention(
        &self,
        partition: PartitionId,
        policy: RetentionPolicy,
        now_ms: i64,
    ) -> Result<LogStartOutcome, StoreError> {
        let partition = &partition;
        self.write(|client| retention::apply_retention(client, partition, policy, now_ms))
            .await
    }

    async fn mark_unreferenced(&self, object_keys: Vec<String>) -> Result<(), StoreError> {
        let keys = &object_keys;
        self.write(|client| retention::mark_unreferenced_now(client, keys))
            .await
    }

    async fn unreferenced_objects(
        &self,
        now_ms: i64,
        unreferenced_before_ms: i64,
        limit: u32,
    ) -> Result<Vec<UnreferencedObject>, StoreError> {
        self.write(|client| {
            retention::unreferenced_objects(client, now_ms, unreferenced_before_ms, limit)
        })
        .await
    }

    async fn forget_objects(
        &self,
        object_keys: Vec<String>,
        committed_before_ms: i64,
    ) -> Result<Vec<String>, StoreError> {
        let keys = &object_keys;
        self.write(|client| retention::forget(client, keys, committed_before_ms))
            .await
    }

    async fn replace_chunks(
        &self,
        replacement: ChunkReplacement,
    ) -> Result<ReplaceOutcome, StoreError> {
        crate::replace_rules::validate(&replacement)?;
        let replacement = &replacement;
        self.write(|client| replace::replace(client, replacement))
            .await
    }

    async fn alter_topic_configs(
        &self,
        name: &str,
        changes: Vec<ConfigChange>,
    ) -> Result<TopicRecord, StoreError> {
        let changes = &changes;
        self.write(|client| topics::alter_configs(client, name, changes))
            .await
    }
}

#[cfg(test)]
mod pg_retention_tests;
#[cfg(test)]
mod pg_tests;
#[cfg(test)]
mod test_server;

#[cfg(test)]
mod tests {
    // The block runs in each generated test's body before the store is made: with no
    // test server configured, its `return` ends the test there (after a loud skip note).
    crate::conformance::store_conformance_tests!({
        let Some(server) = super::test_server::server_url() else {
            return;
        };
        move || super::test_server::fresh_store(server)
    });
}
