//! Reading one size-prefixed Kafka request frame within the listener's limits.
//!
//! A frame's memory follows the bytes that really arrive: the buffer grows in steps no
//! larger than what was received so far (and at least [`FIRST_STEP`]), and each step's
//! bytes are taken from the agent-wide [`RequestMemory`] pool before they are read. The
//! size prefix is checked before any of it: a frame larger than `max_request_bytes` or than
//! the whole pool closes the connection at once.
//!
//! Time limits, from the frame's first byte: the size prefix and the first
//! [`HEADER_BYTES`] of the frame (where the request header lives) within the header
//! timeout, the whole frame within the body timeout. Time spent waiting for room in the
//! pool is not the client's fault and extends both. Between frames the connection may be
//! silent for the idle timeout.

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::time::Instant;

use crate::limits::{ListenerLimits, RequestBytes, RequestMemory};

/// Bytes of a frame, after its size prefix, that count as its header for the header timeout.
pub const HEADER_BYTES: usize = 512;
/// The first buffer step; later steps double with what has arrived.
const FIRST_STEP: usize = 64 * 1024;

/// A request frame (without its size prefix) and the pool bytes it holds.
#[derive(Debug)]
pub struct Frame {
    /// The frame's bytes: request header and body.
    pub bytes: Bytes,
    /// Its share of the request pool, to keep until the request is handled.
    pub held: RequestBytes,
}

/// Why no frame was read.
#[derive(Debug, Error)]
pub enum FrameError {
    /// Nothing arrived for the idle timeout.
    #[error("no request for {0:?} (connections.max.idle.ms)")]
    Idle(Duration),
    /// The size prefix and header did not arrive within the header timeout.
    #[error("request header not received within {0:?}")]
    HeaderTimeout(Duration),
    /// The frame did not arrive within the body timeout.
    #[error("request of {size} bytes not received within {timeout:?} ({received} bytes arrived)")]
    BodyTimeout {
        /// Declared frame size.
        size: usize,
        /// Bytes that arrived.
        received: usize,
        /// The limit.
        timeout: Duration,
    },
    /// The size prefix is negative or beyond the limit.
    #[error("request size {size} outside 0..={max}")]
    TooLarge {
        /// Declared size.
        size: i64,
        /// Largest accepted.
        max: usize,
    },
    /// The client closed the connection inside a frame.
    #[error("connection closed inside a request ({received} of {size} bytes)")]
    Truncated {
        /// Declared frame size (0 when the size prefix itself was cut).
        size: usize,
        /// Bytes that arrived.
        received: usize,
    },
    /// The socket failed.
    #[error("read failed: {0}")]
    Io(#[from] std::io::Error),
}

impl FrameError {
    /// The limit's metric label, for errors that come from a limit.
    pub fn limit(&self) -> Option<&'static str> {
        match self {
            FrameError::Idle(_) => Some("idle"),
            FrameError::HeaderTimeout(_) => Some("header_timeout"),
            FrameError::BodyTimeout { .. } => Some("body_timeout"),
            FrameError::TooLarge { .. } => Some("request_too_large"),
            FrameError::Truncated { .. } | FrameError::Io(_) => None,
        }
    }
}

/// Reads the next frame; `Ok(None)` when the client closed the connection between frames.
pub async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    limits: &ListenerLimits,
    memory: &RequestMemory,
) -> Result<Option<Frame>, FrameError> {
    let mut prefix = [0u8; 4];
    let first = tokio::time::timeout(limits.idle_timeout, reader.read(&mut prefix))
        .await
        .map_err(|_| FrameError::Idle(limits.idle_timeout))??;
    if first == 0 {
        return Ok(None);
    }
    let started = Instant::now();
    let mut clock = Deadlines {
        header: started + limits.header_timeout,
        body: started + limits.body_timeout,
    };
    let mut have = first;
    while have < prefix.len() {
        let read = within(clock.header, reader.read(&mut prefix[have..]))
            .await
            .ok_or(FrameError::HeaderTimeout(limits.header_timeout))??;
        if read == 0 {
            return Err(FrameError::Truncated {
                size: 0,
                received: have,
            });
        }
        have += read;
    }
    let declared = i32::from_be_bytes(prefix);
    let max = limits.max_request_bytes.min(memory.size());
    let size = usize::try_from(declared)
        .ok()
        .filter(|size| *size <= max)
        .ok_or(FrameError::TooLarge {
            size: i64::from(declared),
            max,
        })?;
    let mut buf = BytesMut::new();
    let mut held = RequestBytes::none(memory);
    while buf.len() < size {
        let step = (size - buf.len()).min(buf.len().max(FIRST_STEP));
        let waited = Instant::now();
        held.merge(memory.take(step).await);
        clock.extend(waited.elapsed());
        buf.reserve(step);
        let step_end = buf.len() + step;
        while buf.len() < step_end {
            let (deadline, in_header) = if buf.len() < HEADER_BYTES.min(size) {
                (clock.header.min(clock.body), true)
            } else {
                (clock.body, false)
            };
            let room = step_end - buf.len();
            let read = within(deadline, reader.read_buf(&mut (&mut buf).limit(room)))
                .await
                .ok_or_else(|| {
                    if in_header && clock.header <= clock.body {
                        FrameError::HeaderTimeout(limits.header_timeout)
                    } else {
                        FrameError::BodyTimeout {
                            size,
                            received: buf.len(),
                            timeout: limits.body_timeout,
                        }
                    }
                })??;
            if read == 0 {
                return Err(FrameError::Truncated {
                    size,
                    received: buf.len(),
                });
            }
        }
    }
    Ok(Some(Frame {
        bytes: buf.freeze(),
        held,
    }))
}

/// When the header and the whole frame are due.
struct Deadlines {
    header: Instant,
    body: Instant,
}

impl Deadlines {
    /// Moves both deadlines `by` later (time the agent, not the client, made the frame wait).
    fn extend(&mut self, by: Duration) {
        self.header += by;
        self.body += by;
    }
}

/// `work`'s output, or `None` when `deadline` passes first.
async fn within<F: std::future::Future>(deadline: Instant, work: F) -> Option<F::Output> {
    tokio::time::timeout_at(deadline, work).await.ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::limits::ListenerMetrics;
    use tokio::io::AsyncWriteExt;

    fn limits() -> ListenerLimits {
        ListenerLimits {
            max_request_bytes: 1 << 20,
            header_timeout: Duration::from_millis(200),
            body_timeout: Duration::from_millis(400),
            idle_timeout: Duration::from_millis(300),
            ..ListenerLimits::default()
        }
    }

    fn frame(body: &[u8]) -> Vec<u8> {
        let mut out = (body.len() as i32).to_be_bytes().to_vec();
        out.extend_from_slice(body);
        out
    }

    #[tokio::test]
    async fn reads_frames_back_to_back_and_returns_pool_bytes() {
        let memory = RequestMemory::new(1 << 20, ListenerMetrics::default());
        let body: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
        let mut input = frame(&body);
        input.extend(frame(b"second"));
        let mut reader = &input[..];
        let first = read_frame(&mut reader, &limits(), &memory)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&first.bytes[..], &body[..]);
        let second = read_frame(&mut reader, &limits(), &memory)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&second.bytes[..], b"second");
        assert!(read_frame(&mut reader, &limits(), &memory)
            .await
            .unwrap()
            .is_none());
        drop((first, second));
        let _all = tokio::time::timeout(Duration::from_millis(50), memory.take(1 << 20))
            .await
            .expect("every byte went back to the pool");
    }

    #[tokio::test]
    async fn refuses_sizes_beyond_the_limit_or_the_pool() {
        let memory = RequestMemory::new(1000, ListenerMetrics::default());
        for size in [-5i32, 1001, i32::MAX] {
            let input = size.to_be_bytes();
            let error = read_frame(&mut &input[..], &limits(), &memory)
                .await
                .unwrap_err();
            assert!(matches!(error, FrameError::TooLarge { .. }), "{error}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_connection_is_idle_and_a_stalled_one_times_out() {
        let memory = RequestMemory::new(1 << 20, ListenerMetrics::default());
        let (mut client, mut server) = tokio::io::duplex(1024);
        let idle = read_frame(&mut server, &limits(), &memory)
            .await
            .unwrap_err();
        assert_eq!(idle.limit(), Some("idle"));

        client.write_all(&[0, 0]).await.unwrap();
        let header = read_frame(&mut server, &limits(), &memory)
            .await
            .unwrap_err();
        assert_eq!(header.limit(), Some("header_timeout"));

        let (mut client, mut server) = tokio::io::duplex(1 << 20);
        let mut stalled = 100_000i32.to_be_bytes().to_vec();
        stalled.extend(vec![7u8; 5_000]);
        client.write_all(&stalled).await.unwrap();
        let body = read_frame(&mut server, &limits(), &memory)
            .await
            .unwrap_err();
        assert_eq!(body.limit(), Some("body_timeout"), "{body}");
    }

    #[tokio::test]
    async fn a_stalled_frame_holds_only_what_arrived() {
        let metrics = ListenerMetrics::default();
        let memory = RequestMemory::new(1 << 30, metrics.clone());
        let (mut client, mut server) = tokio::io::duplex(1 << 16);
        let mut announced = (40i32 << 20).to_be_bytes().to_vec();
        announced.extend(vec![1u8; 1000]);
        client.write_all(&announced).await.unwrap();
        let reading = tokio::spawn(async move {
            let limits = ListenerLimits {
                max_request_bytes: 100 << 20,
                ..ListenerLimits::default()
            };
            read_frame(&mut server, &limits, &memory).await
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        let held = metrics.queued_request_bytes.get();
        assert!(
            held <= FIRST_STEP as i64,
            "a 40 MiB announcement holds {held} bytes"
        );
        drop(client);
        let error = reading.await.unwrap().unwrap_err();
        assert!(matches!(error, FrameError::Truncated { .. }), "{error}");
        assert_eq!(metrics.queued_request_bytes.get(), 0);
    }
}
