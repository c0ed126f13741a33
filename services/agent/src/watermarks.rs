//! Wake-ups for long-polling fetches.
//!
//! Every high-watermark change (from this agent's own commits or from the metadata
//! service's `WatchHighWatermarks` stream) bumps one generation counter. A fetch subscribes
//! *before* it reads the index, so a commit landing between its read and its wait still
//! wakes it. Exact high watermarks always come from the metadata service; this only says
//! "look again".

use crate::metadata_client::MetadataClient;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use strata_proto::metadata::v1::WatchHighWatermarksRequest;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// A shared "something was committed" signal.
#[derive(Debug, Clone)]
pub struct Watermarks {
    generation: Arc<watch::Sender<u64>>,
    connected: Arc<AtomicBool>,
}

impl Default for Watermarks {
    fn default() -> Self {
        Self {
            generation: Arc::new(watch::channel(0).0),
            connected: Arc::new(AtomicBool::new(false)),
        }
    }
}

impl Watermarks {
    /// A receiver that sees every later change; call before reading the index.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }

    /// True while the high-watermark stream from the metadata service is open.
    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    /// Signals that some partition's high watermark moved.
    pub fn bump(&self) {
        self.generation.send_modify(|g| *g = g.wrapping_add(1));
    }

    /// Follows the metadata service's high-watermark stream until `stop` is cancelled,
    /// reconnecting after errors.
    pub fn spawn_watch(&self, client: MetadataClient, stop: CancellationToken) {
        let this = self.clone();
        tokio::spawn(async move {
            stop.run_until_cancelled(this.follow(client)).await;
        });
    }

    async fn follow(self, client: MetadataClient) {
        let this = self;
        {
            loop {
                let mut client = client.clone();
                match client
                    .watch_high_watermarks(WatchHighWatermarksRequest {})
                    .await
                {
                    Ok(response) => {
                        this.connected.store(true, Ordering::Relaxed);
                        let mut stream = response.into_inner();
                        while let Ok(Some(_update)) = stream.message().await {
                            this.bump();
                        }
                        tracing::debug!("high-watermark stream ended; reconnecting");
                    }
                    Err(status) => tracing::warn!(%status, "high-watermark stream unavailable"),
                }
                this.connected.store(false, Ordering::Relaxed);
                // a failed stream may have missed changes: wake every waiter to look again
                this.bump();
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}
