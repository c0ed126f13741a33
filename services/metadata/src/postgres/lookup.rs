//! Reads of partition offsets and of the segment index.
//!
//! Each read that returns offsets together with index rows is ONE statement, so both come
//! from the same snapshot: a reader never sees rows past the high watermark it is given,
//! even while commits land. The lookups use the primary key (topic, partition,
//! base_offset): the row holding an offset is the one with the largest base offset at or
//! below it (offsets are dense and rows do not overlap), found by a backward index probe,
//! not a scan of the partition's history.

use std::collections::HashMap;

use deadpool_postgres::GenericClient;
use tokio_postgres::Row;

use super::error::PgError;
use super::query;
use crate::store::{ChunkRow, PartitionId, PartitionOffsets, StoreError, TimestampQuery, TopicId};

/// Columns of a chunk as [`chunk_at`] reads them, from index 2 on.
const CHUNK_COLUMNS: &str = "c.object_key, c.byte_offset, c.byte_length, c.raw_offset, \
                             c.raw_length, c.base_offset, c.end_offset, c.max_timestamp";

fn offsets_at(row: &Row) -> Result<PartitionOffsets, PgError> {
    Ok(PartitionOffsets {
        log_start_offset: row.try_get(0)?,
        high_watermark: row.try_get(1)?,
    })
}

fn u32_at(row: &Row, idx: usize) -> Result<u32, PgError> {
    let value: i64 = row.try_get(idx)?;
    u32::try_from(value)
        .map_err(|_| StoreError::Database(format!("index column {idx} holds {value}")).into())
}

/// The chunk in columns 2.., or `None` when the outer join found none.
fn chunk_at(row: &Row) -> Result<Option<ChunkRow>, PgError> {
    let Some(object_key) = row.try_get::<_, Option<String>>(2)? else {
        return Ok(None);
    };
    let byte_offset: i64 = row.try_get(3)?;
    Ok(Some(ChunkRow {
        object_key,
        byte_offset: u64::try_from(byte_offset)
            .map_err(|_| StoreError::Database(format!("byte offset {byte_offset}")))?,
        byte_length: u32_at(row, 4)?,
        raw_offset: u32_at(row, 5)?,
        raw_length: u32_at(row, 6)?,
        base_offset: row.try_get(7)?,
        end_offset: row.try_get(8)?,
        max_timestamp: row.try_get(9)?,
    }))
}

/// A statement returning the partition's offsets joined with the chunks `filter` and
/// `order` select (at most `$4`). Parameters: `$1` topic id, `$2` partition, `$3` and `$4`
/// as the filter uses them. `p` is the partition row, `c` a chunk row.
fn partition_with_chunks(filter: &str, order: &str) -> String {
    format!(
        "SELECT p.log_start_offset, p.next_offset, {CHUNK_COLUMNS}
         FROM partitions p
         LEFT JOIN LATERAL (
             SELECT * FROM chunks c
             WHERE c.topic_id = p.topic_id AND c.partition = p.partition AND {filter}
             ORDER BY {order} LIMIT $4
         ) c ON true
         WHERE p.topic_id = $1 AND p.partition = $2
         ORDER BY {order}"
    )
}

/// Index rows from the one holding `offset` on; see [`crate::store::MetadataStore::lookup_chunks`].
pub(super) async fn lookup_chunks(
    client: &impl GenericClient,
    partition: PartitionId,
    offset: i64,
    max_bytes: u64,
    max_rows: u32,
) -> Result<Option<(PartitionOffsets, Vec<ChunkRow>)>, PgError> {
    let sql = partition_with_chunks(
        "c.end_offset > GREATEST($3, p.log_start_offset)
         AND c.base_offset >= COALESCE((
             SELECT max(h.base_offset) FROM chunks h
             WHERE h.topic_id = p.topic_id AND h.partition = p.partition
               AND h.base_offset <= GREATEST($3, p.log_start_offset)), 0)",
        "c.base_offset",
    );
    let limit = i64::from(max_rows.max(1));
    let rows = query(
        client,
        &sql,
        &[
            &&partition.topic_id[..],
            &partition.partition,
            &offset,
            &limit,
        ],
    )
    .await?;
    let Some(first) = rows.first() else {
        return Ok(None);
    };
    let offsets = offsets_at(first)?;
    let mut chunks = Vec::new();
    let mut bytes = 0u64;
    for row in &rows {
        if !chunks.is_empty() && bytes >= max_bytes {
            break;
        }
        let Some(chunk) = chunk_at(row)? else {
            break;
        };
        bytes += u64::from(chunk.raw_length);
        chunks.push(chunk);
    }
    Ok(Some((offsets, chunks)))
}

/// The chunk a timestamp query selects; see [`crate::store::MetadataStore::chunk_by_timestamp`].
pub(super) async fn chunk_by_timestamp(
    client: &impl GenericClient,
    partition: PartitionId,
    target: TimestampQuery,
) -> Result<Option<(PartitionOffsets, Option<ChunkRow>)>, PgError> {
    let (filter, order, timestamp) = match target {
        TimestampQuery::AtOrAfter(ts) => ("c.max_timestamp >= $3", "c.base_offset", ts),
        TimestampQuery::Max => (
            "$3::int8 IS NOT NULL",
            "c.max_timestamp DESC, c.base_offset",
            0,
        ),
    };
    let sql = partition_with_chunks(
        &format!("c.end_offset > p.log_start_offset AND {filter}"),
        order,
    );
    let rows = query(
        client,
        &sql,
        &[
            &&partition.topic_id[..],
            &partition.partition,
            &timestamp,
            &1i64,
        ],
    )
    .await?;
    let Some(first) = rows.first() else {
        return Ok(None);
    };
    Ok(Some((offsets_at(first)?, chunk_at(first)?)))
}

/// Offsets of each partition, in request order, `None` where it does not exist.
pub(super) async fn partition_offsets(
    client: &impl GenericClient,
    partitions: &[PartitionId],
) -> Result<Vec<Option<PartitionOffsets>>, PgError> {
    let ids: Vec<&[u8]> = partitions.iter().map(|p| &p.topic_id[..]).collect();
    let numbers: Vec<i32> = partitions.iter().map(|p| p.partition).collect();
    let rows = query(
        client,
        "SELECT log_start_offset, next_offset, topic_id, partition FROM partitions
         WHERE (topic_id, partition) IN (SELECT * FROM unnest($1::bytea[], $2::int4[]))",
        &[&ids, &numbers],
    )
    .await?;
    let mut found = HashMap::with_capacity(rows.len());
    for row in &rows {
        found.insert(partition_at(row, 2)?, offsets_at(row)?);
    }
    Ok(partitions.iter().map(|p| found.get(p).copied()).collect())
}

/// Offsets of every partition, ordered by (topic id, partition).
pub(super) async fn all_partition_offsets(
    client: &impl GenericClient,
) -> Result<Vec<(PartitionId, PartitionOffsets)>, PgError> {
    let rows = query(
        client,
        "SELECT log_start_offset, next_offset, topic_id, partition FROM partitions
         ORDER BY topic_id, partition",
        &[],
    )
    .await?;
    rows.iter()
        .map(|row| Ok((partition_at(row, 2)?, offsets_at(row)?)))
        .collect()
}

/// The partition id in columns `idx` (topic id) and `idx + 1` (partition).
fn partition_at(row: &Row, idx: usize) -> Result<PartitionId, PgError> {
    let id: Vec<u8> = row.try_get(idx)?;
    let topic_id: TopicId = id
        .try_into()
        .map_err(|_| StoreError::Database("topic id is not 16 bytes".into()))?;
    Ok(PartitionId {
        topic_id,
        partition: row.try_get(idx + 1)?,
    })
}

/// Which of `keys` have a segments row, in the order given.
pub(super) async fn committed_objects(
    client: &impl GenericClient,
    keys: &[String],
) -> Result<Vec<bool>, PgError> {
    let rows = query(
        client,
        "SELECT object_key FROM segments WHERE object_key = ANY($1)",
        &[&keys],
    )
    .await?;
    let found: std::collections::HashSet<String> = rows
        .iter()
        .map(|row| row.try_get(0))
        .collect::<Result<_, _>>()?;
    Ok(keys.iter().map(|key| found.contains(key)).collect())
}
