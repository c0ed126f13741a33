//! Topics and their partition rows.
//!
//! Deleting a topic locks its partition rows in partition order before removing them, the
//! same order CommitSegment locks partitions in, so a deletion and a commit never deadlock.
//! The objects its index rows named and no other row names become unreferenced in the same
//! transaction (see [`super::retention`]).

use std::collections::BTreeMap;

use deadpool_postgres::GenericClient;
use tokio_postgres::Row;

use super::error::PgError;
use super::{execute, query, Writer};
use crate::store::{ConfigChange, StoreError, TopicId, TopicRecord};

const TOPIC_COLUMNS: &str = "topic_id, name, partition_count, configs, created_at_ms";

fn to_topic(row: &Row) -> Result<TopicRecord, PgError> {
    let id: Vec<u8> = row.try_get(0)?;
    let topic_id: TopicId = id
        .try_into()
        .map_err(|_| StoreError::Database("topic id is not 16 bytes".into()))?;
    let configs: String = row.try_get(3)?;
    let configs: BTreeMap<String, String> = serde_json::from_str(&configs)
        .map_err(|e| StoreError::Database(format!("topic configs: {e}")))?;
    Ok(TopicRecord {
        topic_id,
        name: row.try_get(1)?,
        partition_count: row.try_get(2)?,
        configs,
        created_at_ms: row.try_get(4)?,
    })
}

/// Creates a topic and its partitions; `TopicExists` when the name (or id) is taken.
pub(super) async fn create(
    mut client: Writer,
    topic: &TopicRecord,
) -> Result<TopicRecord, PgError> {
    let tx = client.begin().await?;
    let configs = serde_json::to_string(&topic.configs)
        .map_err(|e| StoreError::InvalidConfig(e.to_string()))?;
    let inserted = execute(
        &tx,
        "INSERT INTO topics (topic_id, name, partition_count, configs, created_at_ms)
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
        &[
            &&topic.topic_id[..],
            &topic.name,
            &topic.partition_count,
            &configs,
            &topic.created_at_ms,
        ],
    )
    .await;
    match inserted {
        Ok(1) => {}
        Ok(_) => return Err(StoreError::TopicExists(topic.name.clone()).into()),
        Err(e) if e.is_unique_violation() => {
            return Err(StoreError::TopicExists(topic.name.clone()).into())
        }
        Err(e) => return Err(e),
    }
    execute(
        &tx,
        "INSERT INTO partitions (topic_id, partition) SELECT $1, generate_series(0, $2 - 1)",
        &[&&topic.topic_id[..], &topic.partition_count],
    )
    .await?;
    tx.commit().await?;
    Ok(topic.clone())
}

/// Deletes a topic with its partitions and index rows; returns its id.
pub(super) async fn delete(mut client: Writer, name: &str) -> Result<TopicId, PgError> {
    let tx = client.begin().await?;
    let sql = format!("SELECT {TOPIC_COLUMNS} FROM topics WHERE name = $1 FOR UPDATE");
    let Some(row) = query(&tx, &sql, &[&name]).await?.into_iter().next() else {
        return Err(StoreError::TopicNotFound(format!("{name:?}")).into());
    };
    let topic = to_topic(&row)?;
    let id = &topic.topic_id[..];
    query(
        &tx,
        "SELECT partition FROM partitions WHERE topic_id = $1 ORDER BY partition FOR UPDATE",
        &[&id],
    )
    .await?;
    let objects = super::retention::objects_of_topic(&tx, id).await?;
    execute(&tx, "DELETE FROM chunks WHERE topic_id = $1", &[&id]).await?;
    execute(&tx, "DELETE FROM partitions WHERE topic_id = $1", &[&id]).await?;
    execute(&tx, "DELETE FROM topics WHERE topic_id = $1", &[&id]).await?;
    super::retention::mark_unreferenced(&tx, objects).await?;
    tx.commit().await?;
    Ok(topic.topic_id)
}

/// All topics, ordered by name (bytewise).
pub(super) async fn list(client: &impl GenericClient) -> Result<Vec<TopicRecord>, PgError> {
    let sql = format!("SELECT {TOPIC_COLUMNS} FROM topics ORDER BY name");
    query(client, &sql, &[])
        .await?
        .iter()
        .map(to_topic)
        .collect()
}

/// One topic by name.
pub(super) async fn by_name(
    client: &impl GenericClient,
    name: &str,
) -> Result<Option<TopicRecord>, PgError> {
    let sql = format!("SELECT {TOPIC_COLUMNS} FROM topics WHERE name = $1");
    query(client, &sql, &[&name])
        .await?
        .first()
        .map(to_topic)
        .transpose()
}

/// One topic by id.
pub(super) async fn by_id(
    client: &impl GenericClient,
    id: &TopicId,
) -> Result<Option<TopicRecord>, PgError> {
    let sql = format!("SELECT {TOPIC_COLUMNS} FROM topics WHERE topic_id = $1");
    query(client, &sql, &[&&id[..]])
        .await?
        .first()
        .map(to_topic)
        .transpose()
}

/// Applies config changes to a topic, its row locked; returns the topic after.
pub(super) async fn alter_configs(
    mut client: Writer,
    name: &str,
    changes: &[ConfigChange],
) -> Result<TopicRecord, PgError> {
    let tx = client.begin().await?;
    let sql = format!("SELECT {TOPIC_COLUMNS} FROM topics WHERE name = $1 FOR UPDATE");
    let Some(row) = query(&tx, &sql, &[&name]).await?.into_iter().next() else {
        return Err(StoreError::TopicNotFound(format!("{name:?}")).into());
    };
    let mut topic = to_topic(&row)?;
    crate::topic_rules::apply_changes(&mut topic.configs, changes);
    let configs = serde_json::to_string(&topic.configs)
        .map_err(|e| StoreError::InvalidConfig(e.to_string()))?;
    execute(
        &tx,
        "UPDATE topics SET configs = $2 WHERE topic_id = $1",
        &[&&topic.topic_id[..], &configs],
    )
    .await?;
    tx.commit().await?;
    Ok(topic)
}
