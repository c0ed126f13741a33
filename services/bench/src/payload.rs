//! Record values: slices of one pre-generated pool, so producing costs no per-record
//! randomness and no copies.
//!
//! The random pool (16 MiB, or four values if larger) is stepped through in order, so no
//! two values in a batch of up to 16 MiB share bytes and compressors find nothing to
//! remove. The compressible pool is text made of words from a small vocabulary.

use bytes::Bytes;

use crate::args::Payload;

const MIN_POOL_BYTES: usize = 16 * 1024 * 1024;
const VOCABULARY_WORDS: usize = 256;

/// A cursor over a shared pool of value bytes; clones share the pool.
#[derive(Debug, Clone)]
pub struct ValuePool {
    pool: Bytes,
    record_size: usize,
    next: usize,
}

impl ValuePool {
    /// A pool for values of `record_size` bytes, filled from `seed` (same seed, same bytes).
    pub fn new(kind: Payload, record_size: usize, seed: u64) -> Self {
        let len = MIN_POOL_BYTES.max(record_size.saturating_mul(4));
        let mut rng = fastrand::Rng::with_seed(seed);
        let pool = match kind {
            Payload::Random => {
                let mut bytes = vec![0u8; len];
                rng.fill(&mut bytes);
                bytes
            }
            Payload::Compressible => words(&mut rng, len),
        };
        Self {
            pool: Bytes::from(pool),
            record_size,
            next: 0,
        }
    }

    /// The same pool, with its cursor moved by `skip` values (so clients send different bytes).
    pub fn offset_by(&self, skip: usize) -> Self {
        let mut copy = self.clone();
        let span = self.pool.len() - self.record_size + 1;
        copy.next = skip.wrapping_mul(self.record_size.max(1)) % span.max(1);
        copy
    }

    /// The next value: `record_size` bytes of the pool.
    pub fn next_value(&mut self) -> Bytes {
        if self.next + self.record_size > self.pool.len() {
            self.next = 0;
        }
        let value = self.pool.slice(self.next..self.next + self.record_size);
        // an odd step keeps consecutive wraps from realigning on the same values
        self.next += self.record_size + 1;
        value
    }
}

/// `len` bytes of space-separated words drawn from a vocabulary of short random words.
fn words(rng: &mut fastrand::Rng, len: usize) -> Vec<u8> {
    let vocabulary: Vec<Vec<u8>> = (0..VOCABULARY_WORDS)
        .map(|_| {
            let word_len = rng.usize(3..10);
            (0..word_len).map(|_| rng.u8(b'a'..=b'z')).collect()
        })
        .collect();
    let mut text = Vec::with_capacity(len + 16);
    while text.len() < len {
        text.extend_from_slice(&vocabulary[rng.usize(0..VOCABULARY_WORDS)]);
        text.push(b' ');
    }
    text.truncate(len);
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_have_the_record_size_and_differ() {
        let mut pool = ValuePool::new(Payload::Random, 1024, 7);
        let a = pool.next_value();
        let b = pool.next_value();
        assert_eq!(a.len(), 1024);
        assert_eq!(b.len(), 1024);
        assert_ne!(a, b);
    }

    #[test]
    fn same_seed_same_values() {
        let mut one = ValuePool::new(Payload::Compressible, 100, 3);
        let mut two = ValuePool::new(Payload::Compressible, 100, 3);
        assert_eq!(one.next_value(), two.next_value());
    }

    #[test]
    fn the_cursor_wraps_and_empty_values_work() {
        let mut pool = ValuePool::new(Payload::Random, 10 * 1024 * 1024, 1);
        for _ in 0..10 {
            assert_eq!(pool.next_value().len(), 10 * 1024 * 1024);
        }
        let mut empty = ValuePool::new(Payload::Random, 0, 1).offset_by(3);
        assert!(empty.next_value().is_empty());
    }
}
