//! Consumer groups' committed offsets.
//!
//! A commit of several offsets is one upsert statement over rows sorted by (topic,
//! partition), the last value given for a partition winning, so two commits of one group
//! lock their rows in the same order and never deadlock.

use std::collections::BTreeMap;

use deadpool_postgres::GenericClient;

use super::error::PgError;
use super::{execute, query, Writer};
use crate::store::CommittedOffset;

/// Stores `offsets` for `group`, replacing earlier ones of the same partitions.
pub(super) async fn commit(
    mut client: Writer,
    group: &str,
    offsets: &[CommittedOffset],
) -> Result<(), PgError> {
    let latest: BTreeMap<(&str, i32), &CommittedOffset> = offsets
        .iter()
        .map(|o| ((o.topic.as_str(), o.partition), o))
        .collect();
    if latest.is_empty() {
        return Ok(());
    }
    let topics: Vec<&str> = latest.keys().map(|k| k.0).collect();
    let partitions: Vec<i32> = latest.keys().map(|k| k.1).collect();
    let committed: Vec<i64> = latest.values().map(|o| o.offset).collect();
    let epochs: Vec<i32> = latest.values().map(|o| o.leader_epoch).collect();
    let metadata: Vec<Option<&str>> = latest.values().map(|o| o.metadata.as_deref()).collect();
    let times: Vec<i64> = latest.values().map(|o| o.commit_time_ms).collect();
    let tx = client.begin().await?;
    execute(
        &tx,
        "INSERT INTO group_offsets (group_id, topic, partition, committed_offset, leader_epoch,
                                    metadata, commit_time_ms)
         SELECT $1, u.topic, u.partition, u.committed_offset, u.leader_epoch, u.metadata,
                u.commit_time_ms
         FROM unnest($2::text[], $3::int4[], $4::int8[], $5::int4[], $6::text[], $7::int8[])
              AS u(topic, partition, committed_offset, leader_epoch, metadata, commit_time_ms)
         ON CONFLICT (group_id, topic, partition) DO UPDATE SET
           committed_offset = excluded.committed_offset, leader_epoch = excluded.leader_epoch,
           metadata = excluded.metadata, commit_time_ms = excluded.commit_time_ms",
        &[
            &group,
            &topics,
            &partitions,
            &committed,
            &epochs,
            &metadata,
            &times,
        ],
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// A group's offsets for the named topics (or all), ordered by topic, partition.
pub(super) async fn fetch(
    client: &impl GenericClient,
    group: &str,
    topics: Option<&[String]>,
) -> Result<Vec<CommittedOffset>, PgError> {
    let rows = query(
        client,
        "SELECT topic, partition, committed_offset, leader_epoch, metadata, commit_time_ms
         FROM group_offsets
         WHERE group_id = $1 AND ($2::text[] IS NULL OR topic = ANY($2))
         ORDER BY topic, partition",
        &[&group, &topics],
    )
    .await?;
    rows.iter()
        .map(|row| {
            Ok(CommittedOffset {
                topic: row.try_get(0)?,
                partition: row.try_get(1)?,
                offset: row.try_get(2)?,
                leader_epoch: row.try_get(3)?,
                metadata: row.try_get(4)?,
                commit_time_ms: row.try_get(5)?,
            })
        })
        .collect()
}

/// Removes a group's offsets for the given (topic, partition) pairs.
pub(super) async fn delete(
    mut client: Writer,
    group: &str,
    partitions: &[(String, i32)],
) -> Result<(), PgError> {
    let topics: Vec<&str> = partitions.iter().map(|p| p.0.as_str()).collect();
    let numbers: Vec<i32> = partitions.iter().map(|p| p.1).collect();
    let tx = client.begin().await?;
    execute(
        &tx,
        "DELETE FROM group_offsets WHERE group_id = $1
           AND (topic, partition) IN (SELECT * FROM unnest($2::text[], $3::int4[]))",
        &[&group, &topics, &numbers],
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Removes every offset of a group; returns whether it had any.
pub(super) async fn delete_group(mut client: Writer, group: &str) -> Result<bool, PgError> {
    let tx = client.begin().await?;
    let deleted = execute(
        &tx,
        "DELETE FROM group_offsets WHERE group_id = $1",
        &[&group],
    )
    .await?;
    tx.commit().await?;
    Ok(deleted > 0)
}

/// Names of groups that have committed offsets, sorted bytewise.
pub(super) async fn groups(client: &impl GenericClient) -> Result<Vec<String>, PgError> {
    let rows = query(
        client,
        "SELECT DISTINCT group_id FROM group_offsets ORDER BY group_id",
        &[],
    )
    .await?;
    rows.iter()
        .map(|row| row.try_get(0).map_err(PgError::from))
        .collect()
}
