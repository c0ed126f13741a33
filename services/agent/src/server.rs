//! The Kafka listener: framing, per-connection ordering, and dispatch.
//!
//! Each connection has a reader and a writer. The reader takes frames in order, rejects
//! malformed or oversized ones by closing the connection, and starts a handler per request;
//! the work that must happen in arrival order (joining the open segment) is done before the
//! next frame is read. The writer sends responses strictly in request order, as Kafka
//! clients require, while later requests are already being handled.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures::future::{BoxFuture, FutureExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::api::{self, Outcome};
use crate::context::Agent;

/// Requests handled concurrently on one connection before the reader waits.
const MAX_IN_FLIGHT: usize = 128;

/// A response to send later: `Ok(None)` for requests that get none (acks=0), `Err` when
/// the response cannot be produced and the connection must close.
type PendingResponse = BoxFuture<'static, Result<Option<Bytes>, String>>;

/// Accepts connections until `stop` is cancelled. Connections run on `tracker`; once
/// `stop` is cancelled they read no further requests but still write the responses of
/// requests already taken.
pub async fn accept_loop(
    agent: Arc<Agent>,
    listener: TcpListener,
    stop: CancellationToken,
    tracker: TaskTracker,
) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = stop.cancelled() => return,
        };
        match accepted {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                agent.metrics.connections.inc();
                let agent = Arc::clone(&agent);
                let stop = stop.clone();
                tracker.spawn(async move {
                    tracing::debug!(%peer, "connection opened");
                    agent.metrics.connections_open.inc();
                    serve_connection(Arc::clone(&agent), stream, stop).await;
                    agent.metrics.connections_open.dec();
                    tracing::debug!(%peer, "connection closed");
                });
            }
            Err(err) => {
                tracing::warn!(%err, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

async fn serve_connection(agent: Arc<Agent>, stream: TcpStream, stop: CancellationToken) {
    let peer = stream.peer_addr().ok();
    let (mut reader, writer) = stream.into_split();
    let (tx, rx) = mpsc::channel::<PendingResponse>(MAX_IN_FLIGHT);
    let writer_task = tokio::spawn(write_responses(rx, writer));
    loop {
        let read = tokio::select! {
            read = read_frame(&mut reader, agent.config.max_request_bytes) => read,
            () = stop.cancelled() => break,
        };
        let frame = match read {
            Ok(Some(frame)) => frame,
            Ok(None) => {
                // the client is gone: nobody will read the responses still pending
                writer_task.abort();
                return;
            }
            Err(reason) => {
                tracing::info!(%reason, "closing connection");
                break;
            }
        };
        match api::dispatch(&agent, frame, peer).await {
            Outcome::Respond(pending) => {
                if tx.send(pending).await.is_err() {
                    break;
                }
            }
            Outcome::Close(reason) => {
                agent.metrics.connections_rejected.inc();
                tracing::info!(%reason, "closing connection");
                break;
            }
        }
    }
    drop(tx);
    let _ = writer_task.await;
}

/// Writes responses in request order. Output is buffered while further responses are
/// ready at once and flushed before any wait, so no finished response sits in the buffer.
async fn write_responses(
    mut rx: mpsc::Receiver<PendingResponse>,
    writer: tokio::net::tcp::OwnedWriteHalf,
) {
    let mut writer = BufWriter::new(writer);
    loop {
        let mut pending = match rx.try_recv() {
            Ok(pending) => pending,
            Err(mpsc::error::TryRecvError::Disconnected) => break,
            Err(mpsc::error::TryRecvError::Empty) => {
                if writer.flush().await.is_err() {
                    return;
                }
                match rx.recv().await {
                    Some(pending) => pending,
                    None => break,
                }
            }
        };
        let result = match (&mut pending).now_or_never() {
            Some(result) => result,
            None => {
                if writer.flush().await.is_err() {
                    return;
                }
                pending.await
            }
        };
        let frame = match result {
            Ok(Some(frame)) => frame,
            Ok(None) => continue,
            Err(reason) => {
                tracing::error!(%reason, "closing connection");
                break;
            }
        };
        if writer.write_all(&frame).await.is_err() {
            return;
        }
    }
    let _ = writer.flush().await;
    let _ = writer.shutdown().await;
}

/// Reads one size-prefixed frame; `Ok(None)` on a clean end of stream.
async fn read_frame(
    reader: &mut tokio::net::tcp::OwnedReadHalf,
    max_bytes: usize,
) -> Result<Option<Bytes>, String> {
    let mut size = [0u8; 4];
    match reader.read_exact(&mut size).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.to_string()),
    }
    let size = i32::from_be_bytes(size);
    if size < 0 || size as usize > max_bytes {
        return Err(format!("request size {size} outside 0..={max_bytes}"));
    }
    let mut frame = BytesMut::zeroed(size as usize);
    reader
        .read_exact(&mut frame)
        .await
        .map_err(|e| e.to_string())?;
    Ok(Some(frame.freeze()))
}
