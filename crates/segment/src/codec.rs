//! Little-endian field encoding and bounds-checked decoding.

use crate::SegmentError;

/// Reads consecutive fixed-width little-endian fields from a byte slice.
///
/// Every read is bounds-checked and reports [`SegmentError::Truncated`]
/// naming `what` instead of panicking.
pub(crate) struct FieldReader<'a> {
    buf: &'a [u8],
    pos: usize,
    what: &'static str,
}

impl<'a> FieldReader<'a> {
    pub(crate) fn new(buf: &'a [u8], what: &'static str) -> Self {
        Self { buf, pos: 0, what }
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], SegmentError> {
        let end = self.pos.checked_add(N);
        let field = end
            .and_then(|end| self.buf.get(self.pos..end))
            .and_then(|slice| <[u8; N]>::try_from(slice).ok());
        match field {
            Some(field) => {
                self.pos += N;
                Ok(field)
            }
            None => Err(SegmentError::Truncated {
                what: self.what,
                needed: (self.pos as u64).saturating_add(N as u64),
                available: self.buf.len() as u64,
            }),
        }
    }

    pub(crate) fn u8(&mut self) -> Result<u8, SegmentError> {
        self.array::<1>().map(|[b]| b)
    }

    pub(crate) fn u32(&mut self) -> Result<u32, SegmentError> {
        self.array().map(u32::from_le_bytes)
    }

    pub(crate) fn i32(&mut self) -> Result<i32, SegmentError> {
        self.array().map(i32::from_le_bytes)
    }

    pub(crate) fn u64(&mut self) -> Result<u64, SegmentError> {
        self.array().map(u64::from_le_bytes)
    }

    pub(crate) fn i64(&mut self) -> Result<i64, SegmentError> {
        self.array().map(i64::from_le_bytes)
    }
}

/// Fails with [`SegmentError::ReservedNonZero`] unless `value` is zero.
pub(crate) fn expect_zero(what: &'static str, value: u64) -> Result<(), SegmentError> {
    if value == 0 {
        Ok(())
    } else {
        Err(SegmentError::ReservedNonZero { what, value })
    }
}

/// Fails with [`SegmentError::ChecksumMismatch`] unless the checksums agree.
pub(crate) fn expect_crc(
    what: &'static str,
    stored: u32,
    computed: u32,
) -> Result<(), SegmentError> {
    if stored == computed {
        Ok(())
    } else {
        Err(SegmentError::ChecksumMismatch {
            what,
            stored,
            computed,
        })
    }
}

/// Fails with [`SegmentError::UnsupportedVersion`] unless `found` is
/// [`crate::FORMAT_VERSION`].
pub(crate) fn expect_version(what: &'static str, found: u8) -> Result<(), SegmentError> {
    if found == crate::FORMAT_VERSION {
        Ok(())
    } else {
        Err(SegmentError::UnsupportedVersion {
            what,
            found,
            supported: crate::FORMAT_VERSION,
        })
    }
}

/// Fails with [`SegmentError::LengthMismatch`] unless the lengths agree.
pub(crate) fn expect_len(
    what: &'static str,
    declared: u64,
    actual: u64,
) -> Result<(), SegmentError> {
    if declared == actual {
        Ok(())
    } else {
        Err(SegmentError::LengthMismatch {
            what,
            declared,
            actual,
        })
    }
}

/// Fails with [`SegmentError::TooLarge`] if a declared raw length exceeds
/// [`crate::MAX_CHUNK_RAW_LEN`].
pub(crate) fn check_raw_len(what: &'static str, raw_len: u64) -> Result<(), SegmentError> {
    let limit = u64::from(crate::MAX_CHUNK_RAW_LEN);
    if raw_len > limit {
        Err(SegmentError::TooLarge {
            what,
            len: raw_len,
            limit,
        })
    } else {
        Ok(())
    }
}
