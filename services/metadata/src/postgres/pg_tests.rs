//! Tests of what only the PostgreSQL store has: many connections and processes at once,
//! migrations, URL settings and connection failures.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::Arc;

use super::test_server::{fresh_database, server_url};
use super::{PostgresStore, PostgresUrl, ServerVerification, DEFAULT_POOL_SIZE, SCHEMA_VERSION};
use crate::store::*;

pub(super) fn topic(name: &str, id: u8, partitions: i32) -> TopicRecord {
    TopicRecord {
        topic_id: [id; 16],
        name: name.to_string(),
        partition_count: partitions,
        configs: BTreeMap::new(),
        created_at_ms: 0,
    }
}

pub(super) fn chunk(topic_id: TopicId, partition: i32, offsets: i64) -> ChunkToCommit {
    ChunkToCommit {
        partition: PartitionId {
            topic_id,
            partition,
        },
        byte_offset: 0,
        byte_length: 10,
        raw_length: 10,
        batch_count: 1,
        record_count: offsets as u32,
        max_timestamp: 0,
        runs: vec![RunToCommit {
            raw_offset: 0,
            raw_length: 10,
            offset_count: offsets,
            producer: None,
        }],
    }
}

/// Many tasks on several pools (as several metadata processes would be) commit segments
/// spanning the same partitions in different orders; every offset is handed out once.
#[tokio::test]
async fn concurrent_commits_never_overlap() {
    let Some(server) = server_url() else {
        return;
    };
    let url = fresh_database(&server).await;
    let stores: Vec<Arc<PostgresStore>> = vec![
        Arc::new(PostgresStore::connect_with(url.clone()).await.unwrap()),
        Arc::new(PostgresStore::connect_with(url).await.unwrap()),
    ];
    let a = stores[0]
        .create_topic(topic("a", 1, 3))
        .await
        .unwrap()
        .topic_id;
    let b = stores[0]
        .create_topic(topic("b", 2, 2))
        .await
        .unwrap()
        .topic_id;
    let partitions = [(a, 0), (a, 1), (a, 2), (b, 0), (b, 1)];
    let mut tasks = Vec::new();
    for task in 0..12usize {
        let store = Arc::clone(&stores[task % stores.len()]);
        tasks.push(tokio::spawn(async move {
            for i in 0..15usize {
                // each task walks the partitions in its own rotation and direction
                let mut chunks: Vec<ChunkToCommit> = (0..3)
                    .map(|k| {
                        let (t, p) = partitions[(task + i + k * 2) % partitions.len()];
                        chunk(t, p, 1 + ((task + k) % 3) as i64)
                    })
                    .collect();
                chunks.dedup_by_key(|c| c.partition);
                if task % 2 == 1 {
                    chunks.reverse();
                }
                let commit = SegmentCommit {
                    object_key: format!("seg-{task}-{i}"),
                    object_size: 10,
                    chunks,
                    committed_at_ms: 0,
                };
                let first = store.commit_segment(commit.clone()).await.unwrap();
                let retry = store.commit_segment(commit).await.unwrap();
                assert!(retry.already_committed);
                assert_eq!(retry.chunks, first.chunks);
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    for (t, p) in partitions {
        let partition = PartitionId {
            topic_id: t,
            partition: p,
        };
        let (offsets, rows) = stores[1]
            .lookup_chunks(partition, 0, u64::MAX, 10_000)
            .await
            .unwrap()
            .unwrap();
        let mut next = 0;
        for row in &rows {
            assert_eq!(row.base_offset, next, "offsets of {t:?}/{p} are dense");
            next = row.end_offset;
        }
        assert_eq!(offsets.high_watermark, next);
    }
}

/// Two processes starting on an empty database at once apply each migration once.
#[tokio::test]
async fn concurrent_starts_migrate_once() {
    let Some(server) = server_url() else {
        return;
    };
    let url = fresh_database(&server).await;
    let (first, second) = tokio::join!(
        PostgresStore::connect_with(url.clone()),
        PostgresStore::connect_with(url.clone())
    );
    let (first, _second) = (first.unwrap(), second.unwrap());
    assert_eq!(first.schema_version().await.unwrap(), SCHEMA_VERSION);
    let client = first.client().await.unwrap();
    let row = client
        .query_one(
            "SELECT count(*), count(DISTINCT version) FROM schema_migrations",
            &[],
        )
        .await
        .unwrap();
    let (rows, versions): (i64, i64) = (row.get(0), row.get(1));
    let migrations = super::migrate::MIGRATIONS.len() as i64;
    assert_eq!((rows, versions), (migrations, migrations));
    // a restart finds nothing to do
    let again = PostgresStore::connect_with(url).await.unwrap();
    assert_eq!(again.schema_version().await.unwrap(), SCHEMA_VERSION);
}

/// A database migrated by a newer build is refused rather than written to.
#[tokio::test]
async fn a_newer_schema_is_refused() {
    let Some(server) = server_url() else {
        return;
    };
    let url = fresh_database(&server).await;
    let store = PostgresStore::connect_with(url.clone()).await.unwrap();
    store
        .client()
        .await
        .unwrap()
        .execute(
            "INSERT INTO schema_migrations (version, name) VALUES ($1, 'from the future')",
            &[&(SCHEMA_VERSION + 1)],
        )
        .await
        .unwrap();
    let refused = PostgresStore::connect_with(url).await;
    match refused {
        Err(StoreError::Database(message)) => assert!(message.contains("newer"), "{message}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn urls_carry_the_pool_size_and_libpq_parameters() {
    let url =
        PostgresUrl::parse("postgresql://u:p@db.example:6543/meta?pool_size=3&connect_timeout=2")
            .unwrap();
    assert_eq!(url.pool_size, 3);
    assert_eq!(url.config.get_dbname(), Some("meta"));
    assert_eq!(
        url.config.get_connect_timeout(),
        Some(&std::time::Duration::from_secs(2))
    );
    assert_eq!(url.config.get_application_name(), Some("strata-metadata"));
    let encoded = PostgresUrl::parse("postgres://u:p%40ss%2Fw@h/db").unwrap();
    assert_eq!(encoded.config.get_password(), Some(&b"p@ss/w"[..]));
    let plain = PostgresUrl::parse("postgres://u@h/db").unwrap();
    assert_eq!(plain.pool_size, DEFAULT_POOL_SIZE);
    for bad in [
        "sqlite:///x.db",
        "postgres://u@h/db?pool_size=0",
        "postgres://u@h/db?no_such_option=1",
    ] {
        assert!(
            matches!(PostgresUrl::parse(bad), Err(StoreError::InvalidRequest(_))),
            "{bad} must be refused"
        );
    }
}

#[tokio::test]
async fn an_unreachable_server_is_a_database_error() {
    // a port that was free a moment ago: nothing listens there
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("postgres://postgres@127.0.0.1:{port}/postgres?connect_timeout=2");
    let err = PostgresStore::connect(&url).await.unwrap_err();
    assert!(err.outcome_unknown(), "{err}");
    assert!(matches!(err, StoreError::Database(_)), "{err}");
}

/// Whether the store's connections use TLS.
async fn uses_tls(store: &PostgresStore) -> bool {
    let client = store.client().await.unwrap();
    let row = client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap();
    row.get(0)
}

/// Against a server with TLS (scripts/postgres.sh sets one up when openssl is there):
/// `prefer` and `require` encrypt, `verify-full` proves the server with the CA file, and
/// a CA that did not sign the server's certificate is refused.
#[tokio::test]
async fn tls_follows_sslmode_and_sslrootcert() {
    let Some(server) = server_url() else {
        return;
    };
    let url = fresh_database(&server).await;
    let store = PostgresStore::connect_with(url.clone()).await.unwrap();
    let client = store.client().await.unwrap();
    let row = client
        .query_one(
            "SELECT current_setting('ssl'), current_setting('data_directory'),
                    current_setting('ssl_ca_file')",
            &[],
        )
        .await
        .unwrap();
    let (ssl, data_dir, ca_file): (String, String, String) = (row.get(0), row.get(1), row.get(2));
    if ssl != "on" || ca_file.is_empty() {
        eprintln!("!!! SKIPPED: the test server has no TLS with a CA file !!!");
        return;
    }
    assert!(
        uses_tls(&store).await,
        "sslmode=prefer uses TLS when offered"
    );
    let mut required = url.clone();
    required
        .config
        .ssl_mode(tokio_postgres::config::SslMode::Require);
    let store = PostgresStore::connect_with(required.clone()).await.unwrap();
    assert!(uses_tls(&store).await);
    let ca = std::path::Path::new(&data_dir).join(&ca_file);
    let mut verified = required.clone();
    verified.verification = ServerVerification::CaFile(ca);
    let store = PostgresStore::connect_with(verified.clone()).await.unwrap();
    assert!(uses_tls(&store).await);
    let mut wrong_ca = verified;
    wrong_ca.verification =
        ServerVerification::CaFile(std::path::Path::new(&data_dir).join("server.crt"));
    let refused = PostgresStore::connect_with(wrong_ca).await.unwrap_err();
    assert!(refused.to_string().contains("TLS"), "{refused}");
}

fn one_segment(key: &str, topic_id: TopicId) -> SegmentCommit {
    SegmentCommit {
        object_key: key.to_string(),
        object_size: 10,
        chunks: vec![chunk(topic_id, 0, 1)],
        committed_at_ms: 0,
    }
}

/// The leader lease: one holder per epoch, takeover only after expiry, and a deposed
/// leader's writes refused by the epoch fence even though its connections still work.
#[tokio::test]
async fn lease_epochs_fence_a_deposed_leader() {
    use crate::leadership::LeaseStore;
    use std::time::Duration;
    let Some(server) = server_url() else {
        return;
    };
    let url = fresh_database(&server).await;
    let a = PostgresStore::connect_with(url.clone()).await.unwrap();
    let b = PostgresStore::connect_with(url).await.unwrap();
    let t = a.create_topic(topic("t", 1, 1)).await.unwrap().topic_id;
    let ttl = Duration::from_millis(400);
    let epoch_a = a.try_acquire("a", "http://a", ttl).await.unwrap().unwrap();
    a.fence(Some(epoch_a));
    assert_eq!(b.try_acquire("b", "http://b", ttl).await.unwrap(), None);
    let record = b.current().await.unwrap();
    assert_eq!(
        (
            record.epoch,
            record.holder.as_str(),
            record.address.as_str()
        ),
        (epoch_a, "a", "http://a")
    );
    assert!(record.expires_in_ms > 0);
    a.commit_segment(one_segment("s1", t)).await.unwrap();
    // b, fenced as a standby, cannot write at all
    b.fence(None);
    let refused = b.commit_segment(one_segment("s2", t)).await.unwrap_err();
    assert!(matches!(refused, StoreError::NotLeader(_)), "{refused:?}");
    // a stalls past its lease; b takes over
    tokio::time::sleep(ttl + Duration::from_millis(200)).await;
    let epoch_b = b.try_acquire("b", "http://b", ttl).await.unwrap().unwrap();
    assert_eq!(epoch_b, epoch_a + 1);
    b.fence(Some(epoch_b));
    // a wakes up still believing it leads: its writes and its renewal fail
    let refused = a.commit_segment(one_segment("s3", t)).await.unwrap_err();
    assert!(matches!(refused, StoreError::NotLeader(_)), "{refused:?}");
    assert!(!a.renew("a", epoch_a, ttl).await.unwrap());
    let committed = b.commit_segment(one_segment("s4", t)).await.unwrap();
    assert!(!committed.already_committed);
    let keys = ["s1", "s2", "s3", "s4"].map(String::from).to_vec();
    assert_eq!(
        a.committed_objects(keys).await.unwrap(),
        [true, false, false, true]
    );
    // a release lets the next campaign in at once
    b.release("b", epoch_b).await.unwrap();
    assert_eq!(
        a.try_acquire("a2", "http://a2", ttl).await.unwrap(),
        Some(epoch_b + 1)
    );
}
