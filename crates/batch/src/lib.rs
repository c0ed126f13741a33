//! Kafka RecordBatch v2, read in place.
//!
//! Strata stores batches exactly as producers sent them and never re-encodes records. This
//! crate reads the fixed 61-byte batch header, validates a batch (magic 2, consistent length,
//! CRC-32C over everything from `attributes` to the end) and rewrites the fields the CRC does
//! not cover (`baseOffset`, `partitionLeaderEpoch`) when a batch is served.
//!
//! Invariants:
//! - [`validate`] accepts a batch only if its CRC matches, so a validated batch can be stored
//!   and served byte for byte.
//! - [`set_base_offset`] touches bytes 0..8 only, which the CRC does not cover, so the CRC
//!   stays valid.
//!
//! ```
//! use strata_batch::{BatchIter, BatchError};
//! let empty: &[u8] = &[];
//! assert_eq!(BatchIter::new(empty).count(), 0);
//! let truncated = [0u8; 10];
//! assert!(matches!(BatchIter::new(&truncated).next(), Some(Err(BatchError::Truncated { .. }))));
//! ```

use thiserror::Error;

/// Size of the RecordBatch v2 header, up to and including the record count.
pub const HEADER_LEN: usize = 61;
/// Bytes before `batchLength`'s coverage starts (baseOffset + batchLength).
pub const LOG_OVERHEAD: usize = 12;
const CRC_START: usize = 21;
const MAGIC_V2: i8 = 2;

/// What is wrong with a batch.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum BatchError {
    /// Fewer bytes than the header or the declared length needs.
    #[error("record batch truncated: need {needed} bytes, have {available}")]
    Truncated {
        /// Bytes the batch declares or the header needs.
        needed: usize,
        /// Bytes actually present.
        available: usize,
    },
    /// Only magic v2 batches are accepted.
    #[error("unsupported record batch magic {0}; only v2 is accepted")]
    UnsupportedMagic(i8),
    /// The declared batch length is impossible.
    #[error("invalid record batch length {0}")]
    InvalidLength(i32),
    /// The CRC-32C does not match the content.
    #[error(
        "record batch CRC mismatch: header says {declared:#010x}, content gives {computed:#010x}"
    )]
    CrcMismatch {
        /// CRC in the header.
        declared: u32,
        /// CRC computed over the content.
        computed: u32,
    },
    /// A header field holds a value Kafka never writes.
    #[error("invalid record batch header: {0}")]
    InvalidHeader(&'static str),
}

/// The parsed fixed header of a RecordBatch v2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    /// Offset of the first record (rewritten by Strata when served).
    pub base_offset: i64,
    /// Length of the batch after the `batchLength` field.
    pub batch_length: i32,
    /// Leader epoch (not covered by the CRC).
    pub partition_leader_epoch: i32,
    /// Format magic; 2 for every batch Strata accepts.
    pub magic: i8,
    /// CRC-32C from `attributes` to the end of the batch.
    pub crc: u32,
    /// Compression (bits 0-2), timestamp type (bit 3), transactional (4), control (5).
    pub attributes: i16,
    /// Offset of the last record relative to `base_offset`.
    pub last_offset_delta: i32,
    /// Timestamp of the first record.
    pub base_timestamp: i64,
    /// Largest timestamp in the batch.
    pub max_timestamp: i64,
    /// Idempotent producer id, or -1.
    pub producer_id: i64,
    /// Idempotent producer epoch, or -1.
    pub producer_epoch: i16,
    /// Sequence of the first record, or -1.
    pub base_sequence: i32,
    /// Number of records in the batch.
    pub record_count: i32,
}

impl BatchHeader {
    /// Parses the header from the first [`HEADER_LEN`] bytes of `buf` without checking the CRC.
    pub fn parse(buf: &[u8]) -> Result<Self, BatchError> {
        if buf.len() < HEADER_LEN {
            return Err(BatchError::Truncated {
                needed: HEADER_LEN,
                available: buf.len(),
            });
        }
        let header = Self {
            base_offset: i64::from_be_bytes(array(buf, 0)),
            batch_length: i32::from_be_bytes(array(buf, 8)),
            partition_leader_epoch: i32::from_be_bytes(array(buf, 12)),
            magic: buf[16] as i8,
            crc: u32::from_be_bytes(array(buf, 17)),
            attributes: i16::from_be_bytes(array(buf, 21)),
            last_offset_delta: i32::from_be_bytes(array(buf, 23)),
            base_timestamp: i64::from_be_bytes(array(buf, 27)),
            max_timestamp: i64::from_be_bytes(array(buf, 35)),
            producer_id: i64::from_be_bytes(array(buf, 43)),
            producer_epoch: i16::from_be_bytes(array(buf, 51)),
            base_sequence: i32::from_be_bytes(array(buf, 53)),
            record_count: i32::from_be_bytes(array(buf, 57)),
        };
        if header.magic != MAGIC_V2 {
            return Err(BatchError::UnsupportedMagic(header.magic));
        }
        if (header.batch_length as i64) < (HEADER_LEN - LOG_OVERHEAD) as i64 {
            return Err(BatchError::InvalidLength(header.batch_length));
        }
        Ok(header)
    }

    /// Total size of the batch in bytes, including `baseOffset` and `batchLength`.
    pub fn total_len(&self) -> usize {
        self.batch_length as usize + LOG_OVERHEAD
    }

    /// How many offsets the batch occupies (`lastOffsetDelta + 1`).
    pub fn offset_count(&self) -> i64 {
        i64::from(self.last_offset_delta) + 1
    }

    /// The compression codec id (0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd).
    pub fn compression(&self) -> u8 {
        (self.attributes & 0x7) as u8
    }

    /// True when the batch carries LogAppendTime timestamps.
    pub fn is_log_append_time(&self) -> bool {
        self.attributes & TIMESTAMP_TYPE_BIT != 0
    }

    /// True for transactional batches.
    pub fn is_transactional(&self) -> bool {
        self.attributes & 0x10 != 0
    }

    /// True for control batches (transaction markers).
    pub fn is_control(&self) -> bool {
        self.attributes & 0x20 != 0
    }

    /// True when the producer set an idempotent producer id.
    pub fn is_idempotent(&self) -> bool {
        self.producer_id >= 0
    }
}

fn array<const N: usize>(buf: &[u8], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&buf[at..at + N]);
    out
}

/// Validates one complete batch occupying exactly `buf`: header, length and CRC-32C.
pub fn validate(buf: &[u8]) -> Result<BatchHeader, BatchError> {
    let header = BatchHeader::parse(buf)?;
    if header.total_len() != buf.len() {
        return Err(BatchError::InvalidLength(header.batch_length));
    }
    if header.last_offset_delta < 0 || header.record_count < 0 {
        return Err(BatchError::InvalidHeader(
            "negative record count or offset delta",
        ));
    }
    let computed = crc32c::crc32c(&buf[CRC_START..]);
    if computed != header.crc {
        return Err(BatchError::CrcMismatch {
            declared: header.crc,
            computed,
        });
    }
    Ok(header)
}

/// Writes `base_offset` into the header of the batch starting at `buf[0]`.
///
/// The CRC does not cover this field, so the batch stays valid.
pub fn set_base_offset(buf: &mut [u8], base_offset: i64) {
    buf[0..8].copy_from_slice(&base_offset.to_be_bytes());
}

/// Marks the batch at `buf[0..]` as LogAppendTime with `timestamp` as its max timestamp,
/// and recomputes the CRC, since both fields are covered by it.
///
/// Consumers then read `timestamp` as the time of every record in the batch, as Kafka does
/// for topics with `message.timestamp.type=LogAppendTime`.
pub fn set_log_append_time(buf: &mut [u8], timestamp: i64) -> Result<(), BatchError> {
    let header = BatchHeader::parse(buf)?;
    if header.total_len() > buf.len() {
        return Err(BatchError::Truncated {
            needed: header.total_len(),
            available: buf.len(),
        });
    }
    let attributes = header.attributes | TIMESTAMP_TYPE_BIT;
    buf[21..23].copy_from_slice(&attributes.to_be_bytes());
    buf[35..43].copy_from_slice(&timestamp.to_be_bytes());
    let crc = crc32c::crc32c(&buf[CRC_START..header.total_len()]);
    buf[17..21].copy_from_slice(&crc.to_be_bytes());
    Ok(())
}

/// Attribute bit saying the batch's timestamps are LogAppendTime.
const TIMESTAMP_TYPE_BIT: i16 = 0x8;

/// Iterates over the batches of a buffer holding whole batches back to back.
///
/// Yields each batch's header and bytes; stops with an error at the first batch that does not
/// fit. It does not check CRCs (use [`validate`] for that).
#[derive(Debug, Clone)]
pub struct BatchIter<'a> {
    rest: &'a [u8],
    position: usize,
}

impl<'a> BatchIter<'a> {
    /// An iterator over `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Self {
            rest: buf,
            position: 0,
        }
    }

    /// Byte position in the original buffer of the next batch.
    pub fn position(&self) -> usize {
        self.position
    }
}

impl<'a> Iterator for BatchIter<'a> {
    type Item = Result<(BatchHeader, &'a [u8]), BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let header = match BatchHeader::parse(self.rest) {
            Ok(header) => header,
            Err(err) => {
                self.rest = &[];
                return Some(Err(err));
            }
        };
        let len = header.total_len();
        if len > self.rest.len() {
            let available = self.rest.len();
            self.rest = &[];
            return Some(Err(BatchError::Truncated {
                needed: len,
                available,
            }));
        }
        let (batch, rest) = self.rest.split_at(len);
        self.rest = rest;
        self.position += len;
        Some(Ok((header, batch)))
    }
}

#[cfg(test)]
mod tests;
