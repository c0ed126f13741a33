//! Building a segment object in memory.

use std::collections::HashSet;

use bytes::Bytes;

use crate::chunk::ChunkHeader;
use crate::codec::check_raw_len;
use crate::index::{write_footer_and_trailer, MAX_ENTRIES};
use crate::{
    ChunkEntry, ChunkInput, Compression, PartitionKey, SegmentError, CHUNK_HEADER_LEN,
    FOOTER_ENTRY_LEN, FOOTER_HEADER_LEN, TRAILER_LEN,
};

/// Builds one segment object in memory, one partition chunk at a time.
///
/// Chunks are laid out in push order. The writer is never left half-updated:
/// when [`push_chunk`](Self::push_chunk) fails, nothing was added.
pub struct SegmentWriter {
    level: i32,
    object: Vec<u8>,
    entries: Vec<ChunkEntry>,
    keys: HashSet<PartitionKey>,
    /// Created on first use so that [`SegmentWriter::new`] cannot fail.
    compressor: Option<zstd::bulk::Compressor<'static>>,
    /// Reused buffer for compressed payloads.
    scratch: Vec<u8>,
}

impl SegmentWriter {
    /// Creates an empty writer that compresses with the given zstd level.
    ///
    /// The level is clamped to the range zstd supports; 0 means zstd's
    /// default (3).
    pub fn new(zstd_level: i32) -> Self {
        let levels = zstd::compression_level_range();
        Self {
            level: zstd_level.clamp(*levels.start(), *levels.end()),
            object: Vec::new(),
            entries: Vec::new(),
            keys: HashSet::new(),
            compressor: None,
            scratch: Vec::new(),
        }
    }

    /// Appends one partition's chunk and returns its index entry.
    ///
    /// With `input.compress` the batches are zstd-compressed, unless that
    /// does not make them smaller, in which case they are stored as-is and the
    /// entry says [`Compression::None`].
    ///
    /// # Errors
    /// * [`SegmentError::DuplicatePartition`] if `input.key` was already pushed.
    /// * [`SegmentError::EmptyChunk`] if `input.batches` is empty or
    ///   `input.batch_count` is 0.
    /// * [`SegmentError::TooLarge`] if the batches exceed
    ///   [`crate::MAX_CHUNK_RAW_LEN`] bytes or the segment would exceed the
    ///   number of entries a footer can hold.
    /// * [`SegmentError::Compress`] if zstd fails.
    ///
    /// On error the writer is unchanged.
    pub fn push_chunk(&mut self, input: ChunkInput<'_>) -> Result<&ChunkEntry, SegmentError> {
        if self.keys.contains(&input.key) {
            return Err(SegmentError::DuplicatePartition { key: input.key });
        }
        if input.batches.is_empty() || input.batch_count == 0 {
            return Err(SegmentError::EmptyChunk { key: input.key });
        }
        check_raw_len("chunk input", input.batches.len() as u64)?;
        if self.entries.len() >= MAX_ENTRIES {
            return Err(SegmentError::TooLarge {
                what: "segment entry count",
                len: self.entries.len() as u64 + 1,
                limit: MAX_ENTRIES as u64,
            });
        }
        // Checked against MAX_CHUNK_RAW_LEN above, so it fits in u32.
        let raw_len = input.batches.len() as u32;

        let compressed = if input.compress {
            self.compress(input.batches)?
        } else {
            false
        };
        let (compression, payload) = if compressed {
            (Compression::Zstd, &self.scratch[..])
        } else {
            (Compression::None, input.batches)
        };
        // A zstd payload is smaller than the input, so it fits in u32 too.
        let stored_len = payload.len() as u32;
        let header = ChunkHeader {
            key: input.key,
            compression,
            stored_len,
            raw_len,
        };
        let offset = self.object.len() as u64;
        header.write_with_payload(payload, &mut self.object);

        self.keys.insert(input.key);
        self.entries.push(ChunkEntry {
            key: input.key,
            offset,
            len: CHUNK_HEADER_LEN as u32 + stored_len,
            raw_len,
            compression,
            batch_count: input.batch_count,
            record_count: input.record_count,
            max_timestamp: input.max_timestamp,
        });
        Ok(&self.entries[self.entries.len() - 1])
    }

    /// Compresses `raw` into `self.scratch`; returns whether the result is
    /// smaller than `raw` (and so worth storing).
    fn compress(&mut self, raw: &[u8]) -> Result<bool, SegmentError> {
        let compressor = match &mut self.compressor {
            Some(compressor) => compressor,
            empty => empty
                .insert(zstd::bulk::Compressor::new(self.level).map_err(SegmentError::Compress)?),
        };
        self.scratch.clear();
        self.scratch
            .reserve(zstd::zstd_safe::compress_bound(raw.len()));
        let written = compressor
            .compress_to_buffer(raw, &mut self.scratch)
            .map_err(SegmentError::Compress)?;
        Ok(written < raw.len())
    }

    /// Number of chunks pushed so far.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no chunk has been pushed yet.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The index entries of the chunks pushed so far, in object order.
    pub fn entries(&self) -> &[ChunkEntry] {
        &self.entries
    }

    /// The exact size in bytes of the object [`finish`](Self::finish) would
    /// return now (chunks, footer and trailer). Useful to decide when to cut
    /// a segment.
    pub fn encoded_len(&self) -> usize {
        self.object.len() + FOOTER_HEADER_LEN + FOOTER_ENTRY_LEN * self.entries.len() + TRAILER_LEN
    }

    /// Writes the footer and trailer and returns the finished object and its
    /// chunk entries in object order (the same entries [`crate::read_index`]
    /// recovers from the object).
    ///
    /// A writer with no chunks produces a valid empty segment (footer and
    /// trailer only).
    pub fn finish(self) -> (Bytes, Vec<ChunkEntry>) {
        let mut object = self.object;
        write_footer_and_trailer(&self.entries, &mut object);
        (Bytes::from(object), self.entries)
    }
}

impl Default for SegmentWriter {
    /// A writer using zstd's default compression level.
    fn default() -> Self {
        Self::new(zstd::DEFAULT_COMPRESSION_LEVEL)
    }
}

impl std::fmt::Debug for SegmentWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SegmentWriter")
            .field("level", &self.level)
            .field("chunks", &self.entries.len())
            .field("encoded_len", &self.encoded_len())
            .finish()
    }
}
