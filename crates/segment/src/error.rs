//! The error type shared by the writer and the readers.

use crate::PartitionKey;

/// Everything that can go wrong writing or reading a segment.
///
/// `what` fields name the structure at fault (`"chunk header"`, `"footer"`,
/// `"trailer"`, ...), so messages say where corruption was found.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SegmentError {
    /// The magic bytes are wrong: this is not (part of) a Strata segment, or
    /// the wrong byte range was read.
    #[error("{what}: bad magic bytes (not a Strata segment, or the wrong byte range)")]
    BadMagic {
        /// The structure whose magic was checked.
        what: &'static str,
    },

    /// The format version byte names a version this reader does not know.
    #[error(
        "{what}: unsupported segment format version {found} \
         (this reader understands version {supported} only)"
    )]
    UnsupportedVersion {
        /// The structure whose version was checked.
        what: &'static str,
        /// The version found in the data.
        found: u8,
        /// The version this crate reads ([`crate::FORMAT_VERSION`]).
        supported: u8,
    },

    /// A CRC-32C did not match: the bytes are corrupted.
    #[error("{what}: CRC-32C mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    ChecksumMismatch {
        /// The structure whose checksum failed.
        what: &'static str,
        /// The checksum stored in the data.
        stored: u32,
        /// The checksum computed over the bytes.
        computed: u32,
    },

    /// Fewer bytes were supplied than the structure needs.
    #[error("{what}: truncated (need {needed} bytes, have {available})")]
    Truncated {
        /// The structure being read.
        what: &'static str,
        /// Bytes needed.
        needed: u64,
        /// Bytes available.
        available: u64,
    },

    /// A declared length disagrees with the actual or expected one.
    #[error("{what}: length mismatch (declared {declared}, actual {actual})")]
    LengthMismatch {
        /// The length that disagrees.
        what: &'static str,
        /// The length declared in the data.
        declared: u64,
        /// The actual or expected length.
        actual: u64,
    },

    /// A compression code other than 0 (none) or 1 (zstd).
    #[error("unknown compression code {code}")]
    UnknownCompression {
        /// The code found.
        code: u8,
    },

    /// A field reserved for future use is not zero.
    #[error("{what}: reserved field must be zero, found {value:#x}")]
    ReservedNonZero {
        /// The field at fault.
        what: &'static str,
        /// Its value.
        value: u64,
    },

    /// zstd could not decompress the payload (corrupt frame, or it would
    /// exceed the declared raw length).
    #[error("zstd decompression failed: {0}")]
    Decompress(std::io::Error),

    /// zstd could not compress the input.
    #[error("zstd compression failed: {0}")]
    Compress(std::io::Error),

    /// The same partition was pushed twice into one segment, or appears twice
    /// in a footer.
    #[error("partition {key} appears more than once in the segment")]
    DuplicatePartition {
        /// The repeated partition.
        key: PartitionKey,
    },

    /// A chunk with no batch bytes or a `batch_count` of 0.
    #[error("partition {key}: empty chunk (chunks need at least one byte and batch_count >= 1)")]
    EmptyChunk {
        /// The partition whose chunk is empty.
        key: PartitionKey,
    },

    /// A size exceeds a format limit.
    #[error("{what} too large: {len} exceeds the limit of {limit}")]
    TooLarge {
        /// The quantity at fault.
        what: &'static str,
        /// Its size.
        len: u64,
        /// The limit.
        limit: u64,
    },

    /// Chunk placement in the footer is inconsistent (gaps, overlaps, chunks
    /// outside the object, or a chunk area length that disagrees with the
    /// trailer).
    #[error("bad segment layout: {reason}")]
    BadLayout {
        /// What is wrong.
        reason: String,
    },

    /// A chunk is valid on its own but is not the chunk the index entry
    /// describes (wrong partition, lengths or compression).
    #[error("chunk does not match its index entry: {reason}")]
    EntryMismatch {
        /// What differs.
        reason: String,
    },
}
