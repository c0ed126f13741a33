//! The Kafka listener: admission, framing, per-connection ordering, and dispatch.
//!
//! A connection is admitted only within `max.connections` and `max.connections.per.ip`
//! ([`ConnectionGate`]). Each connection has a reader and a writer. The reader takes frames
//! in order within the listener's limits ([`crate::frame`]), rejects malformed or oversized
//! ones by closing the connection, and starts a handler per request; the work that must
//! happen in arrival order (joining the open segment) is done before the next frame is read.
//! The writer sends responses strictly in request order, as Kafka clients require, while
//! later requests are already being handled.
//!
//! What one connection can hold: its requests' bytes stay charged to the agent-wide request
//! pool until their handlers finish; at most [`MAX_IN_FLIGHT`] requests are being handled
//! or written at once, and at most [`MAX_FETCHES_IN_FLIGHT`] Fetch requests (a Fetch slot is
//! given back once its response is written); while more than
//! [`MAX_UNSENT_BYTES`] of finished responses wait for a client that does not read them,
//! no further request is read; and a response the client does not take within the idle
//! timeout closes the connection.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use futures::future::{BoxFuture, FutureExt};
use kafka_protocol::messages::ApiKey;
use tokio::io::{AsyncWriteExt, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Notify, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::api::{self, Outcome};
use crate::context::Agent;
use crate::frame::{read_frame, FrameError};
use crate::limits::{ConnectionGate, ConnectionSlot, ListenerMetrics, RequestMemory};

/// Requests handled concurrently on one connection before the reader waits.
pub const MAX_IN_FLIGHT: usize = 128;
/// Fetch requests handled concurrently on one connection (Kafka clients send one at a time).
pub const MAX_FETCHES_IN_FLIGHT: usize = 2;
/// Bytes of finished responses a connection may leave unsent before its reader waits.
pub const MAX_UNSENT_BYTES: usize = 64 * 1024 * 1024;

/// A response to send later: `Ok(None)` for requests that get none (acks=0), `Err` when
/// the response cannot be produced and the connection must close; and what the request
/// holds until its response is written (a Fetch slot).
struct PendingResponse {
    response: BoxFuture<'static, Result<Option<Bytes>, String>>,
    _until_written: Option<OwnedSemaphorePermit>,
}

/// The listener's shared admission state: the connection gate and the request pool.
#[derive(Debug, Clone)]
pub struct Listener {
    gate: Arc<ConnectionGate>,
    memory: RequestMemory,
    metrics: ListenerMetrics,
}

impl Listener {
    /// Admission state for `agent`'s limits, counting into `metrics`.
    pub fn new(agent: &Agent, metrics: ListenerMetrics) -> Self {
        let limits = &agent.config.listener;
        Self {
            gate: ConnectionGate::new(limits.max_connections, limits.max_connections_per_ip),
            memory: RequestMemory::new(limits.queued_max_request_bytes, metrics.clone()),
            metrics,
        }
    }
}

/// Accepts connections until `stop` is cancelled. Connections run on `tracker`; once
/// `stop` is cancelled they read no further requests but still write the responses of
/// requests already taken.
pub async fn accept_loop(
    agent: Arc<Agent>,
    listener: TcpListener,
    stop: CancellationToken,
    tracker: TaskTracker,
) {
    let admission = Listener::new(&agent, agent.metrics.listener.clone());
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = stop.cancelled() => return,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(err) => {
                tracing::warn!(%err, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let slot = match admission.gate.admit(peer.ip()) {
            Ok(slot) => slot,
            Err(refused) => {
                admission.metrics.limited(refused.label());
                agent.metrics.listener_log.note(
                    refused.label(),
                    || tracing::warn!(%peer, reason = %refused, "refusing connections"),
                );
                drop(stream);
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        agent.metrics.connections.inc();
        let agent = Arc::clone(&agent);
        let stop = stop.clone();
        let admission = admission.clone();
        tracker.spawn(async move {
            tracing::debug!(%peer, "connection opened");
            agent.metrics.connections_open.inc();
            serve_connection(agent.clone(), admission, stream, peer, slot, stop).await;
            agent.metrics.connections_open.dec();
            tracing::debug!(%peer, "connection closed");
        });
    }
}

/// Finished responses waiting to be written, in bytes, and a wake-up for the reader.
#[derive(Debug, Default)]
struct Unsent {
    bytes: AtomicUsize,
    drained: Notify,
}

impl Unsent {
    /// Waits until at most [`MAX_UNSENT_BYTES`] wait to be written.
    async fn wait_for_room(&self) {
        loop {
            let drained = self.drained.notified();
            if self.bytes.load(Ordering::Acquire) <= MAX_UNSENT_BYTES {
                return;
            }
            drained.await;
        }
    }
}

async fn serve_connection(
    agent: Arc<Agent>,
    admission: Listener,
    stream: TcpStream,
    peer: SocketAddr,
    slot: ConnectionSlot,
    stop: CancellationToken,
) {
    let limits = agent.config.listener.clone();
    let (mut reader, writer) = stream.into_split();
    let (tx, rx) = mpsc::channel::<PendingResponse>(MAX_IN_FLIGHT);
    let unsent = Arc::new(Unsent::default());
    let fetches = Arc::new(Semaphore::new(MAX_FETCHES_IN_FLIGHT));
    // cancelled when the writer ends (the client stopped reading, or the socket failed)
    let writer_done = CancellationToken::new();
    let writer_task = tokio::spawn(write_responses(
        rx,
        writer,
        Arc::clone(&unsent),
        limits.idle_timeout,
        admission.metrics.clone(),
        writer_done.clone().drop_guard(),
    ));
    loop {
        let read = tokio::select! {
            read = async {
                unsent.wait_for_room().await;
                read_frame(&mut reader, &limits, &admission.memory).await
            } => read,
            () = stop.cancelled() => break,
            () = writer_done.cancelled() => break,
        };
        let frame = match read {
            Ok(Some(frame)) => frame,
            Ok(None) => {
                // the client is gone: nobody will read the responses still pending
                writer_task.abort();
                return;
            }
            Err(error) => {
                closed_by_frame_error(&agent, &admission.metrics, peer, &error);
                break;
            }
        };
        let fetch_slot = if is_fetch(&frame.bytes) {
            Arc::clone(&fetches).acquire_owned().await.ok()
        } else {
            None
        };
        let held = frame.held;
        match api::dispatch(&agent, frame.bytes, Some(peer)).await {
            Outcome::Respond(pending) => {
                // the request's pool bytes are kept until its response exists; from then
                // on the response's bytes count as unsent until the writer sent them
                let unsent = Arc::clone(&unsent);
                let response = Box::pin(pending.map(move |response| {
                    drop(held);
                    if let Ok(Some(frame)) = &response {
                        unsent.bytes.fetch_add(frame.len(), Ordering::AcqRel);
                    }
                    response
                }));
                let pending = PendingResponse {
                    response,
                    _until_written: fetch_slot,
                };
                if tx.send(pending).await.is_err() {
                    break;
                }
            }
            Outcome::Close(reason) => {
                agent.metrics.connections_rejected.inc();
                tracing::info!(%peer, %reason, "closing connection");
                break;
            }
        }
    }
    drop(tx);
    let _ = writer_task.await;
    drop(slot);
}

/// True when the frame is a Fetch request (its first two bytes are the API key).
fn is_fetch(frame: &[u8]) -> bool {
    frame.len() >= 2 && i16::from_be_bytes([frame[0], frame[1]]) == ApiKey::Fetch as i16
}

/// Counts and logs a connection closed because its next frame could not be read.
fn closed_by_frame_error(
    agent: &Agent,
    metrics: &ListenerMetrics,
    peer: SocketAddr,
    error: &FrameError,
) {
    match error.limit() {
        Some(limit) => {
            metrics.limited(limit);
            if limit == "idle" {
                tracing::debug!(%peer, reason = %error, "closing idle connection");
            } else {
                agent.metrics.listener_log.note(
                    limit,
                    || tracing::info!(%peer, reason = %error, "closing connection"),
                );
            }
        }
        None => tracing::debug!(%peer, reason = %error, "closing connection"),
    }
}

/// Writes responses in request order. Output is buffered while further responses are
/// ready at once and flushed before any wait, so no finished response sits in the buffer.
/// A write the client does not take within `stall` closes the connection.
async fn write_responses(
    mut rx: mpsc::Receiver<PendingResponse>,
    writer: tokio::net::tcp::OwnedWriteHalf,
    unsent: Arc<Unsent>,
    stall: std::time::Duration,
    metrics: ListenerMetrics,
    _done: tokio_util::sync::DropGuard,
) {
    let mut writer = BufWriter::new(writer);
    let stalled = || {
        metrics.limited("write_timeout");
        tracing::debug!("closing connection: the client takes no response");
    };
    loop {
        let mut pending = match rx.try_recv() {
            Ok(pending) => pending,
            Err(mpsc::error::TryRecvError::Disconnected) => break,
            Err(mpsc::error::TryRecvError::Empty) => {
                match tokio::time::timeout(stall, writer.flush()).await {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => return,
                    Err(_) => return stalled(),
                }
                match rx.recv().await {
                    Some(pending) => pending,
                    None => break,
                }
            }
        };
        let result = match (&mut pending.response).now_or_never() {
            Some(result) => result,
            None => {
                match tokio::time::timeout(stall, writer.flush()).await {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => return,
                    Err(_) => return stalled(),
                }
                (&mut pending.response).await
            }
        };
        let frame = match result {
            Ok(Some(frame)) => frame,
            Ok(None) => continue,
            Err(reason) => {
                tracing::warn!(%reason, "closing connection");
                break;
            }
        };
        let written = tokio::time::timeout(stall, writer.write_all(&frame)).await;
        unsent.bytes.fetch_sub(frame.len(), Ordering::AcqRel);
        unsent.drained.notify_waiters();
        drop(pending);
        match written {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return,
            Err(_) => return stalled(),
        }
    }
    let _ = tokio::time::timeout(stall, async {
        let _ = writer.flush().await;
        let _ = writer.shutdown().await;
    })
    .await;
}
