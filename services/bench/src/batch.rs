//! Building one partition's record batch (RecordBatch v2, encoded by kafka-protocol).
//!
//! Records have no key and a value from the [`ValuePool`]; their timestamp is their creation
//! time. With `stamp_sent_at`, each record also carries its creation time in microseconds in
//! the [`SENT_AT_HEADER`] header, for end-to-end latency.

use bytes::{Bytes, BytesMut};
use indexmap::IndexMap;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use tokio::time::Instant;

use crate::error::BenchError;
use crate::payload::ValuePool;
use crate::rate::Schedule;
use crate::wall_clock::{WallClock, SENT_AT_HEADER};

/// Fixed bytes of a RecordBatch v2 header.
const BATCH_HEADER_BYTES: usize = 61;
/// Upper bound of one record's framing without headers: length, attributes, timestamp and
/// offset deltas, key length and value length as varints, header count.
const RECORD_OVERHEAD_BYTES: usize = 28;

/// When the records of a batch were created.
#[derive(Debug, Clone, Copy)]
pub enum Created {
    /// All at this instant (producing flat out: records are made when there is room).
    At(Instant),
    /// Record `j` of the batch at `schedule.due(first + j)` (producing at a fixed rate).
    Scheduled {
        /// The producer's timetable.
        schedule: Schedule,
        /// Index of the batch's first record in the timetable.
        first: u64,
    },
}

impl Created {
    /// Creation time of the batch's record `j`.
    pub fn at(&self, j: u64) -> Instant {
        match self {
            Self::At(at) => *at,
            Self::Scheduled { schedule, first } => schedule.due(first + j),
        }
    }
}

/// A record batch ready to send.
#[derive(Debug, Clone)]
pub struct EncodedBatch {
    /// The encoded batch.
    pub bytes: Bytes,
    /// Records in it.
    pub records: u64,
    /// Bytes of record values in it (before compression).
    pub value_bytes: u64,
}

/// Encodes batches of one producer's records.
#[derive(Debug)]
pub struct BatchBuilder {
    values: ValuePool,
    compression: Compression,
    wall: WallClock,
    stamp_sent_at: bool,
}

impl BatchBuilder {
    /// A builder taking values from `values`.
    pub fn new(
        values: ValuePool,
        compression: Compression,
        wall: WallClock,
        stamp_sent_at: bool,
    ) -> Self {
        Self {
            values,
            compression,
            wall,
            stamp_sent_at,
        }
    }

    /// How many records of `record_size` bytes fit in a batch of `batch_bytes` (at least 1).
    pub fn records_per_batch(batch_bytes: usize, record_size: usize, stamp_sent_at: bool) -> u64 {
        let header = if stamp_sent_at {
            SENT_AT_HEADER.len() + 8 + 2
        } else {
            0
        };
        let per_record = record_size + RECORD_OVERHEAD_BYTES + header;
        (batch_bytes.saturating_sub(BATCH_HEADER_BYTES) / per_record).max(1) as u64
    }

    /// Encodes `count` records created as `created` says.
    pub fn build(&mut self, count: u64, created: Created) -> Result<EncodedBatch, BenchError> {
        let mut records = Vec::with_capacity(count as usize);
        let mut value_bytes = 0u64;
        for j in 0..count {
            let at = created.at(j);
            let value = self.values.next_value();
            value_bytes += value.len() as u64;
            let mut headers = IndexMap::new();
            if self.stamp_sent_at {
                let micros = self.wall.micros_at(at);
                headers.insert(
                    StrBytes::from_static_str(SENT_AT_HEADER),
                    Some(Bytes::copy_from_slice(&micros.to_be_bytes())),
                );
            }
            let offset = j as i64;
            records.push(Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset,
                // the encoder keeps records in one batch while offset - sequence is constant;
                // this makes the batch's base sequence -1 (no sequence), as for any
                // non-idempotent producer
                sequence: (offset as i32).wrapping_sub(1),
                timestamp: self.wall.millis_at(at),
                key: None,
                value: Some(value),
                headers,
            });
        }
        let mut buf = BytesMut::with_capacity(value_bytes as usize + 64 + records.len() * 16);
        let options = RecordEncodeOptions {
            version: 2,
            compression: self.compression,
        };
        RecordBatchEncoder::encode(&mut buf, &records, &options)
            .map_err(|e| BenchError::Records(e.to_string()))?;
        Ok(EncodedBatch {
            bytes: buf.freeze(),
            records: count,
            value_bytes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::Payload;
    use kafka_protocol::records::RecordBatchDecoder;
    use strata_clock::ManualClock;

    fn builder(compression: Compression, stamp: bool) -> BatchBuilder {
        let clock = ManualClock::new(1_700_000_000_000);
        BatchBuilder::new(
            ValuePool::new(Payload::Compressible, 100, 1),
            compression,
            WallClock::new(clock.as_ref()),
            stamp,
        )
    }

    #[test]
    fn a_batch_is_one_record_batch_with_every_record() {
        for compression in [Compression::None, Compression::Zstd, Compression::Lz4] {
            let mut builder = builder(compression, true);
            let batch = builder
                .build(50, Created::At(Instant::now()))
                .expect("encodes");
            assert_eq!(batch.records, 50);
            assert_eq!(batch.value_bytes, 5000);
            let infos =
                RecordBatchDecoder::decode_batch_info(&mut batch.bytes.clone()).expect("decodes");
            assert_eq!(infos.len(), 1, "{compression:?}");
            assert_eq!(infos[0].record_count, 50);
            assert_eq!(infos[0].base_sequence, -1);
            assert_eq!(infos[0].producer_id, -1);
            let set = RecordBatchDecoder::decode(&mut batch.bytes.clone()).expect("decodes");
            assert_eq!(set.records.len(), 50);
            assert!(set.records[49]
                .headers
                .contains_key(SENT_AT_HEADER.as_bytes()));
        }
    }

    #[test]
    fn compressible_values_shrink_and_uncompressed_batches_fit_the_limit() {
        let mut plain = builder(Compression::None, false);
        let mut zstd = builder(Compression::Zstd, false);
        let plain = plain
            .build(100, Created::At(Instant::now()))
            .expect("encodes");
        let zstd = zstd
            .build(100, Created::At(Instant::now()))
            .expect("encodes");
        assert!(zstd.bytes.len() * 2 < plain.bytes.len());
        let per_batch = BatchBuilder::records_per_batch(1_000_000, 1024, true);
        let mut big = BatchBuilder::new(
            ValuePool::new(Payload::Random, 1024, 1),
            Compression::None,
            WallClock::new(ManualClock::new(0).as_ref()),
            true,
        );
        let batch = big
            .build(per_batch, Created::At(Instant::now()))
            .expect("encodes");
        assert!(batch.bytes.len() <= 1_000_000, "{}", batch.bytes.len());
        assert!(batch.bytes.len() > 950_000, "{}", batch.bytes.len());
    }
}
