//! Walking a partition's index and reading every row from the bucket: the damaged-row
//! report behind `strata check`.
//!
//! A row is damaged when its object is missing, its chunk fails its checks (length, CRC,
//! decompression), the row's range does not fit the chunk, or a batch in it fails its own
//! CRC. Bucket failures that may pass on retry are reported as such, not as damage.

use strata_proto::metadata::v1 as pb;

use crate::metadata_client::MetadataClient;
use crate::read::{placed_batches, row_slice, ChunkReader, ReadError, ServeError};

/// Bytes of index rows asked for per lookup while walking a partition.
const LOOKUP_BYTES: u64 = 256 * 1024 * 1024;

/// One row that could not be read back.
#[derive(Debug, Clone)]
pub struct RowProblem {
    /// The row as the index holds it.
    pub row: pb::IndexedChunk,
    /// Why it could not be served.
    pub error: ServeError,
}

/// What checking one partition found.
#[derive(Debug, Default)]
pub struct PartitionReport {
    /// Rows read.
    pub rows: usize,
    /// Rows that could not be read back.
    pub problems: Vec<RowProblem>,
}

/// Why a partition could not be walked.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// The metadata service refused or failed a lookup.
    #[error("index lookup failed: {0}")]
    Lookup(#[from] tonic::Status),
    /// The metadata service does not know the partition.
    #[error("partition unknown to the metadata service")]
    UnknownPartition,
}

/// Reads every row of `topic_id`/`partition` from its log start to its high watermark.
pub async fn check_partition(
    metadata: &MetadataClient,
    reader: &ChunkReader,
    topic_id: uuid::Uuid,
    partition: i32,
) -> Result<PartitionReport, CheckError> {
    let mut report = PartitionReport::default();
    let mut offset = i64::MIN;
    loop {
        let request = pb::LookupBatchesRequest {
            partitions: vec![pb::PartitionFetch {
                topic_id: topic_id.as_bytes().to_vec(),
                partition,
                offset: offset.max(0),
                max_bytes: LOOKUP_BYTES,
            }],
        };
        let found = metadata
            .clone()
            .lookup_batches(request)
            .await?
            .into_inner()
            .partitions
            .into_iter()
            .next()
            .filter(|p| p.error == pb::PartitionError::None as i32)
            .ok_or(CheckError::UnknownPartition)?;
        if offset == i64::MIN {
            offset = found.log_start_offset;
            if offset >= found.high_watermark {
                return Ok(report);
            }
            continue;
        }
        let Some(last) = found.chunks.last().map(|row| row.end_offset) else {
            return Ok(report);
        };
        for row in found.chunks.iter().filter(|row| row.end_offset > offset) {
            report.rows += 1;
            if let Err(error) = check_row(reader, row).await {
                report.problems.push(RowProblem {
                    row: row.clone(),
                    error,
                });
            }
        }
        if last <= offset || last >= found.high_watermark {
            return Ok(report);
        }
        offset = last;
    }
}

/// Reads one row back and checks every batch in it.
pub async fn check_row(reader: &ChunkReader, row: &pb::IndexedChunk) -> Result<(), ServeError> {
    let data = reader
        .read(row)
        .await
        .map_err(|source| ServeError::Unreadable {
            key: row.object_key.clone(),
            source,
        })?;
    let batches = row_slice(&data, row).map_err(ServeError::Corrupt)?;
    let mut end = row.base_offset;
    for placed in placed_batches(batches, row.base_offset) {
        let placed = placed.map_err(ServeError::Corrupt)?;
        strata_batch::validate(placed.bytes).map_err(|e| {
            ServeError::Corrupt(ReadError::Corrupt {
                key: row.object_key.clone(),
                reason: format!("batch at offset {}: {e}", placed.base_offset),
            })
        })?;
        end = placed.end_offset();
    }
    if end != row.end_offset {
        return Err(ServeError::Corrupt(ReadError::Corrupt {
            key: row.object_key.clone(),
            reason: format!(
                "the row's batches end at offset {end}, the index says {}",
                row.end_offset
            ),
        }));
    }
    Ok(())
}
