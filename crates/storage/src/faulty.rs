//! Deterministic fault injection: a wrapper store that fails or holds chosen calls.
//!
//! Tests arm faults for the next N calls of one kind ([`Op`]); each call takes the next
//! armed fault of its kind, in order, and calls with none armed pass straight through.
//! Nothing depends on timers or randomness, so a test that arms "fail the next 2 puts"
//! sees exactly the third put succeed.
//!
//! ```
//! # use std::sync::Arc;
//! # use object_store::{memory::InMemory, path::Path, ObjectStore, PutPayload};
//! # use strata_storage::{FaultyStore, Op};
//! # tokio_test_block_on(async {
//! let store = FaultyStore::new(Arc::new(InMemory::new()));
//! store.fail_next(Op::Put, 1);
//! let key = Path::from("segments/a");
//! assert!(store.put(&key, PutPayload::from_static(b"x")).await.is_err());
//! assert!(store.put(&key, PutPayload::from_static(b"x")).await.is_ok());
//! # });
//! # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
//! #     tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
//! # }
//! ```

use std::collections::VecDeque;
use std::fmt;
use std::ops::Range;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, Result,
};
use tokio::sync::watch;

/// The kinds of call faults are armed for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `put`, `put_opts` and the start of a multipart upload.
    Put,
    /// `get`, `get_opts`, `get_range`, `get_ranges` and `head`.
    Get,
}

/// The error an injected failure returns, shaped like an exhausted retry of a 503.
#[derive(Debug, thiserror::Error)]
#[error("injected fault: {0}")]
pub struct InjectedFault(&'static str);

const STORE: &str = "FaultyStore";

#[derive(Debug, Clone, Copy)]
enum Fault {
    /// Fail before reaching the inner store: nothing happens there.
    Fail,
    /// Reach the inner store, then report failure: the caller cannot tell it happened.
    LoseReply,
    /// Wait until the release generation reaches this value, then pass through.
    Stall(u64),
}

#[derive(Debug, Default)]
struct Armed {
    puts: VecDeque<Fault>,
    gets: VecDeque<Fault>,
    injected: usize,
}

impl Armed {
    fn queue(&mut self, op: Op) -> &mut VecDeque<Fault> {
        match op {
            Op::Put => &mut self.puts,
            Op::Get => &mut self.gets,
        }
    }
}

/// An [`ObjectStore`] wrapper that fails, loses the replies of, or holds chosen calls.
#[derive(Debug)]
pub struct FaultyStore {
    inner: Arc<dyn ObjectStore>,
    armed: Mutex<Armed>,
    /// Release generation: stalls armed before the latest `release` pass.
    released: watch::Sender<u64>,
    /// Calls waiting in a stall right now.
    stalled: watch::Sender<usize>,
}

impl FaultyStore {
    /// Wraps `inner` with nothing armed.
    pub fn new(inner: Arc<dyn ObjectStore>) -> Self {
        Self {
            inner,
            armed: Mutex::new(Armed::default()),
            released: watch::Sender::new(0),
            stalled: watch::Sender::new(0),
        }
    }

    fn armed(&self) -> MutexGuard<'_, Armed> {
        // a panic while holding this lock leaves plain counters behind; keep going
        self.armed.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn arm(&self, op: Op, n: usize, fault: Fault) {
        let mut armed = self.armed();
        armed.queue(op).extend(std::iter::repeat_n(fault, n));
    }

    /// The next `n` calls of `op` fail with a 503-like error without reaching the store.
    pub fn fail_next(&self, op: Op, n: usize) {
        self.arm(op, n, Fault::Fail);
    }

    /// The next `n` calls of `op` take effect in the store but report failure, as when a
    /// reply is lost or a request times out after the server applied it.
    pub fn lose_next_replies(&self, op: Op, n: usize) {
        self.arm(op, n, Fault::LoseReply);
    }

    /// The next `n` calls of `op` wait until [`release`](Self::release), then proceed.
    pub fn stall_next(&self, op: Op, n: usize) {
        let generation = *self.released.borrow() + 1;
        self.arm(op, n, Fault::Stall(generation));
    }

    /// Lets every call held by stalls armed so far proceed, now or when it arrives.
    pub fn release(&self) {
        self.released.send_modify(|g| *g += 1);
    }

    /// Drops every armed fault that has not yet been taken (held calls stay held).
    pub fn clear(&self) {
        let mut armed = self.armed();
        armed.puts.clear();
        armed.gets.clear();
    }

    /// Calls waiting in a stall right now.
    pub fn stalled(&self) -> usize {
        *self.stalled.borrow()
    }

    /// Waits until at least `n` calls are held by stalls.
    pub async fn until_stalled(&self, n: usize) {
        let mut rx = self.stalled.subscribe();
        let _ = rx.wait_for(|held| *held >= n).await;
    }

    /// Faults taken so far (failures, lost replies and stalls).
    pub fn injected(&self) -> usize {
        self.armed().injected
    }

    fn take(&self, op: Op) -> Option<Fault> {
        let mut armed = self.armed();
        let fault = armed.queue(op).pop_front();
        if fault.is_some() {
            armed.injected += 1;
        }
        fault
    }

    /// Applies the fault of one call around `call`.
    async fn run<T, F>(&self, op: Op, call: F) -> Result<T>
    where
        F: std::future::Future<Output = Result<T>>,
    {
        match self.take(op) {
            None => call.await,
            Some(Fault::Fail) => Err(injected("503 Service Unavailable (SlowDown)")),
            Some(Fault::LoseReply) => {
                let _ = call.await;
                Err(injected("request timed out after the server received it"))
            }
            Some(Fault::Stall(generation)) => {
                self.stalled.send_modify(|held| *held += 1);
                let mut rx = self.released.subscribe();
                let _ = rx.wait_for(|g| *g >= generation).await;
                self.stalled.send_modify(|held| *held -= 1);
                call.await
            }
        }
    }
}

fn injected(what: &'static str) -> object_store::Error {
    object_store::Error::Generic {
        store: STORE,
        source: Box::new(InjectedFault(what)),
    }
}

impl fmt::Display for FaultyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Faulty({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for FaultyStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.run(Op::Put, self.inner.put_opts(location, payload, opts))
            .await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.run(Op::Put, self.inner.put_multipart_opts(location, opts))
            .await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.run(Op::Get, self.inner.get_opts(location, options))
            .await
    }

    async fn get_range(&self, location: &Path, range: Range<u64>) -> Result<Bytes> {
        self.run(Op::Get, self.inner.get_range(location, range))
            .await
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        self.run(Op::Get, self.inner.get_ranges(location, ranges))
            .await
    }

    async fn head(&self, location: &Path) -> Result<ObjectMeta> {
        self.run(Op::Get, self.inner.head(location)).await
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

    fn store() -> Arc<FaultyStore> {
        Arc::new(FaultyStore::new(Arc::new(InMemory::new())))
    }

    fn payload() -> PutPayload {
        PutPayload::from_static(b"data")
    }

    #[tokio::test]
    async fn failed_puts_store_nothing_and_later_puts_pass() {
        let store = store();
        let key = Path::from("a");
        store.fail_next(Op::Put, 2);
        for _ in 0..2 {
            let err = store.put(&key, payload()).await.unwrap_err();
            assert!(err.to_string().contains("503"), "{err}");
            assert!(matches!(
                store.inner.head(&key).await,
                Err(object_store::Error::NotFound { .. })
            ));
        }
        store.put(&key, payload()).await.unwrap();
        assert_eq!(store.injected(), 2);
    }

    #[tokio::test]
    async fn failed_gets_and_ranges() {
        let store = store();
        let key = Path::from("a");
        store.put(&key, payload()).await.unwrap();
        store.fail_next(Op::Get, 3);
        assert!(store.get_range(&key, 0..2).await.is_err());
        assert!(store.head(&key).await.is_err());
        assert!(store.get(&key).await.is_err());
        assert_eq!(store.get_range(&key, 1..3).await.unwrap().as_ref(), b"at");
    }

    #[tokio::test]
    async fn a_lost_reply_still_writes() {
        let store = store();
        let key = Path::from("a");
        store.lose_next_replies(Op::Put, 1);
        assert!(store.put(&key, payload()).await.is_err());
        assert_eq!(store.get_range(&key, 0..4).await.unwrap().as_ref(), b"data");
    }

    #[tokio::test]
    async fn stalled_calls_wait_for_release() {
        let store = store();
        store.stall_next(Op::Put, 2);
        let tasks: Vec<_> = (0..2)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(
                    async move { store.put(&Path::from(format!("k{i}")), payload()).await },
                )
            })
            .collect();
        store.until_stalled(2).await;
        assert!(matches!(
            store.inner.head(&Path::from("k0")).await,
            Err(object_store::Error::NotFound { .. })
        ));
        // deletes and lists are never held
        store.delete(&Path::from("other")).await.ok();
        store.release();
        for task in tasks {
            task.await.unwrap().unwrap();
        }
        assert_eq!(store.stalled(), 0);
        // a stall armed after the release holds again
        store.stall_next(Op::Get, 1);
        let held = {
            let store = store.clone();
            tokio::spawn(async move { store.head(&Path::from("k0")).await })
        };
        store.until_stalled(1).await;
        store.release();
        held.await.unwrap().unwrap();
    }
}
