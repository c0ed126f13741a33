//! A wrapper store that counts reads, for tests and benchmarks that assert how many
//! requests a component makes (for example "twenty readers of one block cause one GET").
//!
//! Every read call that reaches the inner store is counted once, whatever its result:
//! `get`, `get_opts` and `get_range` as one GET each, `get_ranges` as one GET per range
//! (what an S3 client sends), `head` separately. Writes, deletes and lists pass through
//! uncounted.
//!
//! ```
//! # use std::sync::Arc;
//! # use object_store::{memory::InMemory, path::Path, ObjectStore, PutPayload};
//! # use strata_storage::CountingStore;
//! # tokio_test_block_on(async {
//! let store = CountingStore::new(Arc::new(InMemory::new()));
//! let key = Path::from("segments/a");
//! store.put(&key, PutPayload::from_static(b"hello")).await.unwrap();
//! assert_eq!(store.get_range(&key, 1..3).await.unwrap().as_ref(), b"el");
//! assert_eq!((store.gets(), store.bytes_read()), (1, 2));
//! # });
//! # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
//! #     tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
//! # }
//! ```

use std::fmt;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, Result,
};

/// An [`ObjectStore`] that counts the GETs and HEADs reaching `inner` and the bytes read.
#[derive(Debug)]
pub struct CountingStore {
    inner: Arc<dyn ObjectStore>,
    gets: AtomicU64,
    heads: AtomicU64,
    bytes: AtomicU64,
}

impl CountingStore {
    /// Wraps `inner` with all counts at zero.
    pub fn new(inner: Arc<dyn ObjectStore>) -> Self {
        Self {
            inner,
            gets: AtomicU64::new(0),
            heads: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
        }
    }

    /// GET requests made so far (successful or not).
    pub fn gets(&self) -> u64 {
        self.gets.load(Ordering::Relaxed)
    }

    /// HEAD requests made so far.
    pub fn heads(&self) -> u64 {
        self.heads.load(Ordering::Relaxed)
    }

    /// Bytes returned by `get_range` and `get_ranges`, and the ranges announced by
    /// `get_opts` (whose body the caller may or may not read).
    pub fn bytes_read(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    fn count_get(&self, n: u64) {
        self.gets.fetch_add(n, Ordering::Relaxed);
    }

    fn count_bytes(&self, n: u64) {
        self.bytes.fetch_add(n, Ordering::Relaxed);
    }
}

impl fmt::Display for CountingStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Counting({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for CountingStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.count_get(1);
        let result = self.inner.get_opts(location, options).await?;
        self.count_bytes(result.range.end - result.range.start);
        Ok(result)
    }

    async fn get_range(&self, location: &Path, range: Range<u64>) -> Result<Bytes> {
        self.count_get(1);
        let bytes = self.inner.get_range(location, range).await?;
        self.count_bytes(bytes.len() as u64);
        Ok(bytes)
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        self.count_get(ranges.len() as u64);
        let parts = self.inner.get_ranges(location, ranges).await?;
        self.count_bytes(parts.iter().map(|b| b.len() as u64).sum());
        Ok(parts)
    }

    async fn head(&self, location: &Path) -> Result<ObjectMeta> {
        self.heads.fetch_add(1, Ordering::Relaxed);
        self.inner.head(location).await
    }

    async fn delete(&self, location: &Path) -> Result<()> {
        self.inner.delete(location).await
    }

    fn delete_stream<'a>(
        &'a self,
        locations: BoxStream<'a, Result<Path>>,
    ) -> BoxStream<'a, Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy(&self, from: &Path, to: &Path) -> Result<()> {
        self.inner.copy(from, to).await
    }

    async fn copy_if_not_exists(&self, from: &Path, to: &Path) -> Result<()> {
        self.inner.copy_if_not_exists(from, to).await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use object_store::memory::InMemory;

    #[tokio::test]
    async fn counts_each_ranged_read_and_failed_reads_too() {
        let store = CountingStore::new(Arc::new(InMemory::new()));
        let key = Path::from("a");
        store
            .put(&key, PutPayload::from_static(b"0123456789"))
            .await
            .unwrap();
        store.get_ranges(&key, &[0..2, 4..7]).await.unwrap();
        assert!(store.get_range(&Path::from("missing"), 0..1).await.is_err());
        store.head(&key).await.unwrap();
        assert_eq!(store.gets(), 3);
        assert_eq!(store.heads(), 1);
        assert_eq!(store.bytes_read(), 5);
    }
}
