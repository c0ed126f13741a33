//! The Strata segment object format.
//!
//! A *segment* is one object in the bucket that holds record data for many
//! partitions. It is laid out as
//!
//! ```text
//! [chunk 0][chunk 1]...[chunk n-1][footer][trailer]
//! ```
//!
//! * A **chunk** holds exactly one partition's data: the concatenation of that
//!   partition's Kafka RecordBatch v2 bytes (opaque to this crate), stored
//!   either zstd-compressed or as-is. Every chunk starts with a
//!   [`CHUNK_HEADER_LEN`]-byte header naming its partition, its lengths and a
//!   CRC-32C, so a chunk fetched on its own with one ranged GET
//!   ([`ChunkEntry::range`]) is self-verifying and decodable
//!   ([`decode_chunk`], [`decode_chunk_for`]).
//! * The **footer** lists every chunk ([`ChunkEntry`]) in object order.
//! * The **trailer** is the last [`TRAILER_LEN`] bytes; it locates and
//!   checksums the footer, so a reader needs only the object length to find
//!   the index: GET the trailer, then GET the footer
//!   ([`parse_trailer`], [`Trailer::footer_range`], [`parse_footer`]), or
//!   use [`read_index`] when the whole object is in memory.
//!
//! The exact byte layout is specified in `docs/segment-format.md`.
//!
//! # Invariants
//!
//! * All integers are little-endian and fixed width.
//! * Every byte of the object is covered by a CRC-32C: each chunk's header and
//!   payload by the chunk CRC, the footer by the footer CRC in the trailer, and
//!   the trailer by its own CRC. A corrupted object is reported as an error;
//!   decoding never returns data that differs from what was written.
//! * Chunks are packed back to back from offset 0 in footer order, followed
//!   immediately by the footer and then the trailer. Readers reject anything
//!   else.
//! * A partition appears at most once per segment, and every chunk is
//!   non-empty (at least one byte and `batch_count >= 1`).
//! * No chunk holds more than [`MAX_CHUNK_RAW_LEN`] uncompressed bytes;
//!   decoders never allocate more than that per chunk, whatever the input.
//! * Decoding functions never panic on any input.
//! * The format is versioned by [`FORMAT_VERSION`]; readers reject any other
//!   version with [`SegmentError::UnsupportedVersion`].
//!
//! # Example
//!
//! ```
//! use strata_segment::{decode_chunk, read_index, ChunkInput, PartitionKey, SegmentWriter};
//!
//! let topic_id = [7u8; 16];
//! let mut writer = SegmentWriter::new(3);
//! for partition in 0..2 {
//!     let batches = format!("record batches of partition {partition}").repeat(10);
//!     writer.push_chunk(ChunkInput {
//!         key: PartitionKey { topic_id, partition },
//!         batches: batches.as_bytes(),
//!         batch_count: 1,
//!         record_count: 10,
//!         max_timestamp: 1_700_000_000_000,
//!         compress: true,
//!     })?;
//! }
//! let (object, entries) = writer.finish();
//!
//! // A reader recovers the index from the object alone...
//! assert_eq!(read_index(&object)?, entries);
//! // ...and fetches one partition's chunk by its byte range.
//! let entry = &entries[1];
//! let range = entry.range();
//! let raw = decode_chunk(&object[range.start as usize..range.end as usize])?;
//! assert_eq!(&raw[..], "record batches of partition 1".repeat(10).as_bytes());
//! # Ok::<(), strata_segment::SegmentError>(())
//! ```

mod chunk;
mod codec;
mod error;
mod index;
pub mod naming;
mod writer;

use std::fmt;
use std::ops::Range;

pub use chunk::{decode_chunk, decode_chunk_for};
pub use error::SegmentError;
pub use index::{parse_footer, parse_trailer, read_index, Trailer};
pub use writer::SegmentWriter;

/// The segment format version written by this crate and the only one it reads.
///
/// It appears in every chunk header and in the trailer.
pub const FORMAT_VERSION: u8 = 1;

/// Size in bytes of the fixed trailer at the very end of every segment object.
pub const TRAILER_LEN: usize = 32;

/// Size in bytes of the header at the start of every chunk.
pub const CHUNK_HEADER_LEN: usize = 40;

/// Size in bytes of the footer's fixed header (the entry count).
pub const FOOTER_HEADER_LEN: usize = 4;

/// Size in bytes of one chunk entry in the footer.
pub const FOOTER_ENTRY_LEN: usize = 56;

/// Largest uncompressed size of one chunk (256 MiB).
///
/// Writers refuse larger inputs with [`SegmentError::TooLarge`]; readers
/// reject any chunk or index entry that declares more, so decompression never
/// allocates more than this per chunk.
pub const MAX_CHUNK_RAW_LEN: u32 = 256 * 1024 * 1024;

/// Magic bytes at the start of every chunk.
pub const CHUNK_MAGIC: [u8; 2] = *b"SC";

/// Magic bytes at the very end of every segment object.
pub const SEGMENT_MAGIC: [u8; 6] = *b"STRSEG";

/// Identifies one partition: a topic's 16-byte id and a partition index.
///
/// Ordering is by topic id, then partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PartitionKey {
    /// The topic's id (a UUID's 16 bytes, as Kafka uses).
    pub topic_id: [u8; 16],
    /// The partition index within the topic.
    pub partition: i32,
}

impl fmt::Display for PartitionKey {
    /// Formats as `<topic uuid>/<partition>`, the uuid in 8-4-4-4-12 hex form.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, byte) in self.topic_id.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                f.write_str("-")?;
            }
            write!(f, "{byte:02x}")?;
        }
        write!(f, "/{}", self.partition)
    }
}

/// How a chunk's payload is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    /// Stored as-is (code 0). Used when the caller asks for no compression,
    /// e.g. because the producer already compressed the batches, or when zstd
    /// would not make the payload smaller.
    None,
    /// One zstd frame (code 1).
    Zstd,
}

impl Compression {
    /// The on-disk code of this compression: 0 for `None`, 1 for `Zstd`.
    pub fn code(self) -> u8 {
        match self {
            Compression::None => 0,
            Compression::Zstd => 1,
        }
    }

    /// The compression with the given on-disk code.
    ///
    /// # Errors
    /// [`SegmentError::UnknownCompression`] for any code other than 0 or 1.
    pub fn from_code(code: u8) -> Result<Self, SegmentError> {
        match code {
            0 => Ok(Compression::None),
            1 => Ok(Compression::Zstd),
            _ => Err(SegmentError::UnknownCompression { code }),
        }
    }
}

/// What the caller supplies for one partition's chunk.
///
/// `batch_count`, `record_count` and `max_timestamp` are not derived from the
/// bytes (which this crate treats as opaque); they are copied into the index
/// entry as given.
#[derive(Clone, Copy, Debug)]
pub struct ChunkInput<'a> {
    /// The partition this chunk belongs to; unique within a segment.
    pub key: PartitionKey,
    /// The concatenated RecordBatch v2 bytes; must not be empty.
    pub batches: &'a [u8],
    /// Number of batches in `batches`; must be at least 1.
    pub batch_count: u32,
    /// Number of records across those batches.
    pub record_count: u32,
    /// Largest record timestamp (ms since the epoch) across those batches.
    pub max_timestamp: i64,
    /// Whether to zstd-compress the bytes. Pass `false` when the producer
    /// already compressed them.
    pub compress: bool,
}

/// Where a chunk lies in its segment object and what it holds; this is what
/// the metadata index records for each partition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChunkEntry {
    /// The partition the chunk belongs to.
    pub key: PartitionKey,
    /// Byte offset of the chunk (its header) within the object.
    pub offset: u64,
    /// Length of the whole chunk in bytes, header included.
    pub len: u32,
    /// Length of the uncompressed batch bytes.
    pub raw_len: u32,
    /// How the payload is stored. May be `None` even when compression was
    /// requested, if zstd did not make the payload smaller.
    pub compression: Compression,
    /// Number of batches, as supplied by the writer's caller.
    pub batch_count: u32,
    /// Number of records, as supplied by the writer's caller.
    pub record_count: u32,
    /// Largest record timestamp, as supplied by the writer's caller.
    pub max_timestamp: i64,
}

impl ChunkEntry {
    /// The chunk's byte range within the object: exactly the bytes to fetch
    /// (one ranged GET) and pass to [`decode_chunk`] or [`decode_chunk_for`].
    ///
    /// Entries produced by [`SegmentWriter`] or parsed by [`parse_footer`]
    /// never overflow; for a hand-built entry the end saturates at `u64::MAX`.
    pub fn range(&self) -> Range<u64> {
        self.offset..self.offset.saturating_add(u64::from(self.len))
    }
}
