//! Bounded concurrency: separate budgets for writes and reads.
//!
//! object_store's [`LimitStore`] bounds every call of a store with one semaphore. Strata
//! wants two: a burst of consumer reads (ranged GETs of old segments) must not delay
//! segment uploads, on which producer acknowledgements wait, and a slow upload must not
//! starve reads. [`LimitedStore`] therefore routes each call to one of two `LimitStore`s
//! over the same inner store, which keeps `LimitStore`'s handling of streams (a GET or
//! list holds its slot until its body stream is dropped).
//!
//! | budget | calls |
//! | --- | --- |
//! | writes | `put*`, multipart uploads (each part), `delete*`, `copy*`, `rename*` |
//! | reads | `get*`, `head`, `list*` |

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use object_store::limit::LimitStore;
use object_store::path::Path;
use object_store::{
    GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, Result,
};

/// An [`ObjectStore`] with at most `writes` write calls and `reads` read calls in flight.
#[derive(Debug)]
pub struct LimitedStore {
    writes: LimitStore<Arc<dyn ObjectStore>>,
    reads: LimitStore<Arc<dyn ObjectStore>>,
    limits: (usize, usize),
    inner: Arc<dyn ObjectStore>,
}

impl LimitedStore {
    /// Wraps `inner`; limits below 1 are raised to 1.
    pub fn new(inner: Arc<dyn ObjectStore>, writes: usize, reads: usize) -> Self {
        let (writes, reads) = (writes.max(1), reads.max(1));
        Self {
            writes: LimitStore::new(Arc::clone(&inner), writes),
            reads: LimitStore::new(Arc::clone(&inner), reads),
            limits: (writes, reads),
            inner,
        }
    }
}

impl fmt::Display for LimitedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Limited(writes={}, reads={}, {})",
            self.limits.0, self.limits.1, self.inner
        )
    }
}

#[async_trait]
impl ObjectStore for LimitedStore {
    async fn put(&self, location: &Path, payload: PutPayload) -> Result<PutResult> {
        self.writes.put(location, payload).await
    }

    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.writes.put_opts(location, payload, opts).await
    }

    async fn put_multipart(&self, location: &Path) -> Result<Box<dyn MultipartUpload>> {
        self.writes.put_multipart(location).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.writes.put_multipart_opts(location, opts).await
    }

    async fn get(&self, location: &Path) -> Result<GetResult> {
        self.reads.get(location).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.reads.get_opts(location, options).await
    }

    async fn get_range(&self, location: &Path, range: Range<u64>) -> Result<Bytes> {
        self.reads.get_range(location, range).await
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        self.reads.get_ranges(location, ranges).await
    }

    async fn head(&self, location: &Path) -> Result<ObjectMeta> {
        self.reads.head(location).await
    }

    async fn delete(&self, location: &Path) -> Result<()> {
        self.writes.delete(location).await
    }

    fn delete_stream<'a>(
        &'a self,
        locations: BoxStream<'a, Result<Path>>,
    ) -> BoxStream<'a, Result<Path>> {
        self.writes.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.reads.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        self.reads.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.reads.list_with_delimiter(prefix).await
    }

    async fn copy(&self, from: &Path, to: &Path) -> Result<()> {
        self.writes.copy(from, to).await
    }

    async fn rename(&self, from: &Path, to: &Path) -> Result<()> {
        self.writes.rename(from, to).await
    }

    async fn copy_if_not_exists(&self, from: &Path, to: &Path) -> Result<()> {
        self.writes.copy_if_not_exists(from, to).await
    }

    async fn rename_if_not_exists(&self, from: &Path, to: &Path) -> Result<()> {
        self.writes.rename_if_not_exists(from, to).await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::faulty::{FaultyStore, Op};
    use object_store::memory::InMemory;

    fn stores(writes: usize, reads: usize) -> (Arc<FaultyStore>, Arc<LimitedStore>) {
        let faulty = Arc::new(FaultyStore::new(Arc::new(InMemory::new())));
        let limited = Arc::new(LimitedStore::new(faulty.clone(), writes, reads));
        (faulty, limited)
    }

    #[tokio::test]
    async fn writes_beyond_the_limit_wait_for_a_slot() {
        let (faulty, store) = stores(2, 8);
        faulty.stall_next(Op::Put, 3);
        let mut tasks = Vec::new();
        for i in 0..3 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                store
                    .put(&Path::from(format!("k{i}")), PutPayload::from_static(b"x"))
                    .await
            }));
        }
        faulty.until_stalled(2).await;
        // the third put waits for a write slot, so it never reached the faulty store
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
        assert_eq!(faulty.stalled(), 2);
        // reads have their own budget and pass while every write slot is taken
        let missing = store.head(&Path::from("missing")).await;
        assert!(matches!(missing, Err(object_store::Error::NotFound { .. })));
        faulty.release();
        for task in tasks {
            task.await.unwrap().unwrap();
        }
    }
}
