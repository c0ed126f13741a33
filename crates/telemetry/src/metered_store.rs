//! An object store wrapper that measures every call.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, Result,
};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// The operation label of object store metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Operation {
    /// put, get, head, delete, list, copy.
    pub op: &'static str,
}

/// Object store request metrics, shared by every [`MeteredStore`] of a process.
#[derive(Clone, Debug)]
pub struct ObjectStoreMetrics {
    requests: Family<Operation, Counter>,
    errors: Family<Operation, Counter>,
    bytes: Family<Operation, Counter>,
    seconds: Family<Operation, Histogram>,
}

impl Default for ObjectStoreMetrics {
    fn default() -> Self {
        Self {
            requests: Family::default(),
            errors: Family::default(),
            bytes: Family::default(),
            seconds: Family::new_with_constructor(crate::seconds_histogram),
        }
    }
}

impl ObjectStoreMetrics {
    /// Registers the families under `strata_object_store_*`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "strata_object_store_requests",
            "Object store requests by operation",
            self.requests.clone(),
        );
        registry.register(
            "strata_object_store_errors",
            "Failed object store requests by operation",
            self.errors.clone(),
        );
        registry.register(
            "strata_object_store_bytes",
            "Bytes written (put) or read (get) from the bucket",
            self.bytes.clone(),
        );
        registry.register(
            "strata_object_store_seconds",
            "Object store request latency",
            self.seconds.clone(),
        );
    }

    fn record<T>(&self, op: &'static str, started: Instant, result: &Result<T>, bytes: u64) {
        let label = Operation { op };
        self.requests.get_or_create(&label).inc();
        self.seconds
            .get_or_create(&label)
            .observe(started.elapsed().as_secs_f64());
        match result {
            Ok(_) => {
                self.bytes.get_or_create(&label).inc_by(bytes);
            }
            Err(_) => {
                self.errors.get_or_create(&label).inc();
            }
        }
    }
}

/// An [`ObjectStore`] that records each call in [`ObjectStoreMetrics`] and forwards it.
pub struct MeteredStore {
    inner: Arc<dyn ObjectStore>,
    metrics: ObjectStoreMetrics,
}

impl MeteredStore {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn ObjectStore>, metrics: ObjectStoreMetrics) -> Self {
        Self { inner, metrics }
    }
}

impl fmt::Debug for MeteredStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MeteredStore({})", self.inner)
    }
}

impl fmt::Display for MeteredStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MeteredStore({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for MeteredStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        let started = Instant::now();
        let size = payload.content_length() as u64;
        let result = self.inner.put_opts(location, payload, opts).await;
        self.metrics.record("put", started, &result, size);
        result
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        let started = Instant::now();
        let result = self.inner.put_multipart_opts(location, opts).await;
        self.metrics.record("put_multipart", started, &result, 0);
        result
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        let started = Instant::now();
        let result = self.inner.get_opts(location, options).await;
        let size = result.as_ref().map_or(0, |r| r.range.end - r.range.start);
        self.metrics.record("get", started, &result, size);
        result
    }

    async fn get_range(&self, location: &Path, range: Range<u64>) -> Result<Bytes> {
        let started = Instant::now();
        let result = self.inner.get_range(location, range).await;
        let size = result.as_ref().map_or(0, |b| b.len() as u64);
        self.metrics.record("get", started, &result, size);
        result
    }

    async fn head(&self, location: &Path) -> Result<ObjectMeta> {
        let started = Instant::now();
        let result = self.inner.head(location).await;
        self.metrics.record("head", started, &result, 0);
        result
    }

    async fn delete(&self, location: &Path) -> Result<()> {
        let started = Instant::now();
        let result = self.inner.delete(location).await;
        self.metrics.record("delete", started, &result, 0);
        result
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.metrics
            .requests
            .get_or_create(&Operation { op: "list" })
            .inc();
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        let started = Instant::now();
        let result = self.inner.list_with_delimiter(prefix).await;
        self.metrics.record("list", started, &result, 0);
        result
    }

    async fn copy(&self, from: &Path, to: &Path) -> Result<()> {
        let started = Instant::now();
        let result = self.inner.copy(from, to).await;
        self.metrics.record("copy", started, &result, 0);
        result
    }

    async fn copy_if_not_exists(&self, from: &Path, to: &Path) -> Result<()> {
        let started = Instant::now();
        let result = self.inner.copy_if_not_exists(from, to).await;
        self.metrics.record("copy", started, &result, 0);
        result
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use object_store::memory::InMemory;

    #[tokio::test]
    async fn counts_requests_bytes_and_errors() {
        let metrics = ObjectStoreMetrics::default();
        let store = MeteredStore::new(Arc::new(InMemory::new()), metrics.clone());
        let path = Path::from("a");
        store
            .put(&path, PutPayload::from_static(b"hello"))
            .await
            .unwrap();
        assert_eq!(store.get_range(&path, 1..3).await.unwrap().as_ref(), b"el");
        assert!(store.get_range(&Path::from("missing"), 0..1).await.is_err());
        let put = Operation { op: "put" };
        let get = Operation { op: "get" };
        assert_eq!(metrics.requests.get_or_create(&put).get(), 1);
        assert_eq!(metrics.bytes.get_or_create(&put).get(), 5);
        assert_eq!(metrics.requests.get_or_create(&get).get(), 2);
        assert_eq!(metrics.bytes.get_or_create(&get).get(), 2);
        assert_eq!(metrics.errors.get_or_create(&get).get(), 1);
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(
            text.contains("strata_object_store_requests_total{op=\"put\"} 1"),
            "{text}"
        );
    }
}
