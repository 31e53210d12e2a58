//! The stream between stateless front-ends and the writer (spec §7, front-ends; issue 23): a
//! front-end terminates HTTP and checks debit signatures on its own cores, then forwards
//! transfers to the one process that holds the ledger over a compact binary stream, so the
//! writer's CPU per transfer no longer includes signature recovery.
//!
//! Frames are a 4-byte big-endian length and a bincode body. The front-end opens with
//! [`Frame::Hello`] carrying the shared token; the writer answers [`Frame::Welcome`] with the
//! domain signatures are checked in, or [`Frame::Refused`] and closes. Then
//! [`Frame::Transfers`] requests, each answered by an [`Frame::Answer`] with the status and
//! JSON body of the writer's own API. Requests are queued in the order they arrive (one
//! payer's nonces stay in order) and answered as they complete.

use crate::api::{forward, forwarded_answer, response_parts, take_forwarded_writes};
use crate::engine::Node;
use infhub_core::messages::SignedDebit;
use infhub_core::Address;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, Semaphore};

/// The protocol's version, checked at `Hello`.
pub const SEQUENCER_VERSION: u32 = 1;
/// Largest frame either side accepts.
pub const MAX_SEQUENCER_FRAME_BYTES: usize = 8 << 20;
/// Front-end connections the writer accepts at once.
pub const MAX_FRONT_ENDS: usize = 64;
/// Requests one front-end may have in flight at the writer.
pub const MAX_IN_FLIGHT_PER_FRONT_END: usize = 4_096;
/// Longest wait for a front-end's `Hello`.
const HELLO_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// One message on the stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Frame {
    /// Front-end → writer, first: who it is.
    Hello {
        /// [`SEQUENCER_VERSION`].
        version: u32,
        /// The writer's `sequencer_token`.
        token: String,
    },
    /// Writer → front-end: accepted; the domain debits are signed in.
    Welcome {
        /// The chain id.
        chain_id: u64,
        /// The hub contract.
        contract: Address,
    },
    /// Writer → front-end: refused, and why; the writer closes.
    Refused {
        /// Why.
        reason: String,
    },
    /// Front-end → writer: transfers to apply, in order.
    Transfers {
        /// The front-end's request id, echoed in the answer.
        id: u64,
        /// Whether this is a `/v1/transfers/batch` request (else one `/v1/transfers`).
        batch: bool,
        /// Each debit, and whether the front-end checked its signature.
        debits: Vec<(SignedDebit, bool)>,
    },
    /// Writer → front-end: the answer to request `id`.
    Answer {
        /// The request id.
        id: u64,
        /// The HTTP status the writer's API would have answered.
        status: u16,
        /// The JSON body it would have answered.
        body: Vec<u8>,
    },
}

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The connection failed or closed.
    #[error("connection: {0}")]
    Io(#[from] std::io::Error),
    /// A frame over [`MAX_SEQUENCER_FRAME_BYTES`].
    #[error("a frame of {0} bytes is over the limit of {MAX_SEQUENCER_FRAME_BYTES}")]
    TooLarge(usize),
    /// Not a frame of this protocol.
    #[error("malformed frame: {0}")]
    Malformed(String),
}

/// Reads one frame.
pub async fn read_frame<R: AsyncReadExt + Unpin>(r: &mut R) -> Result<Frame, FrameError> {
    let len = r.read_u32().await? as usize;
    if len > MAX_SEQUENCER_FRAME_BYTES {
        return Err(FrameError::TooLarge(len));
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).await?;
    bincode::deserialize(&body).map_err(|e| FrameError::Malformed(e.to_string()))
}

/// Encodes one frame (length and body).
pub fn encode_frame(frame: &Frame) -> Result<Vec<u8>, FrameError> {
    let body = bincode::serialize(frame).map_err(|e| FrameError::Malformed(e.to_string()))?;
    if body.len() > MAX_SEQUENCER_FRAME_BYTES {
        return Err(FrameError::TooLarge(body.len()));
    }
    let mut out = Vec::with_capacity(4 + body.len());
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

/// The writer's side: accepts front-ends on `listener` until `shutdown`.
pub async fn serve_front_ends(
    node: Arc<Node>,
    listener: TcpListener,
    token: String,
    mut shutdown: watch::Receiver<bool>,
) {
    let connections = Arc::new(Semaphore::new(MAX_FRONT_ENDS));
    let api = crate::api::state_of(node.clone());
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.wait_for(|s| *s) => return,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "front-end accept failed");
                continue;
            }
        };
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            tracing::warn!(%peer, limit = MAX_FRONT_ENDS, "front-end refused: too many connected");
            continue;
        };
        let (api, token, shutdown) = (api.clone(), token.clone(), shutdown.clone());
        tokio::spawn(async move {
            if let Err(e) = front_end(api, stream, &token, shutdown).await {
                tracing::info!(%peer, error = %e, "front-end connection ended");
            }
            drop(permit);
        });
    }
}

/// One front-end's connection: the greeting, then its requests.
async fn front_end(
    api: crate::api::Api,
    stream: TcpStream,
    token: &str,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), FrameError> {
    let _ = stream.set_nodelay(true);
    let (mut reader, mut writer) = stream.into_split();
    let hello = tokio::time::timeout(HELLO_TIMEOUT, read_frame(&mut reader))
        .await
        .map_err(|_| FrameError::Malformed("no Hello in time".into()))??;
    let refusal = match &hello {
        Frame::Hello { version, .. } if *version != SEQUENCER_VERSION => {
            Some(format!("protocol version {version}; this writer speaks {SEQUENCER_VERSION}"))
        }
        Frame::Hello { token: given, .. } if !crate::api::constant_time_eq(given.as_bytes(), token.as_bytes()) => {
            Some("wrong sequencer token".to_string())
        }
        Frame::Hello { .. } => None,
        other => Some(format!("expected Hello, got {other:?}")),
    };
    if let Some(reason) = refusal {
        writer.write_all(&encode_frame(&Frame::Refused { reason: reason.clone() })?).await?;
        return Err(FrameError::Malformed(reason));
    }
    let domain = api.node().domain;
    writer
        .write_all(&encode_frame(&Frame::Welcome { chain_id: domain.chain_id, contract: domain.verifying_contract })?)
        .await?;
    // Answers go out through one task, in the order they complete.
    let (answers, mut outbox) = mpsc::channel::<Frame>(MAX_IN_FLIGHT_PER_FRONT_END);
    let sending = tokio::spawn(async move {
        while let Some(frame) = outbox.recv().await {
            let bytes = encode_frame(&frame)?;
            writer.write_all(&bytes).await?;
        }
        Ok::<(), FrameError>(())
    });
    let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT_PER_FRONT_END));
    let result = loop {
        let frame = tokio::select! {
            f = read_frame(&mut reader) => f,
            _ = shutdown.wait_for(|s| *s) => break Ok(()),
        };
        let (id, batch, debits) = match frame {
            Ok(Frame::Transfers { id, batch, debits }) => (id, batch, debits),
            Ok(other) => break Err(FrameError::Malformed(format!("expected Transfers, got {other:?}"))),
            Err(e) => break Err(e),
        };
        let Ok(permit) = in_flight.clone().acquire_owned().await else { break Ok(()) };
        // The payers' write budgets, as on the writer's own API; then queued now, in arrival
        // order, and answered when applied.
        let refused = take_forwarded_writes(&api, &debits).err();
        let pending = if refused.is_none() { forward(api.node(), debits) } else { Vec::new() };
        let (api, answers) = (api.clone(), answers.clone());
        tokio::spawn(async move {
            let (status, body) = match refused {
                Some(e) => response_parts(axum::response::IntoResponse::into_response(e)).await,
                None => forwarded_answer(&api, pending, batch).await,
            };
            let _ = answers.send(Frame::Answer { id, status, body }).await;
            drop(permit);
        });
    };
    drop(answers);
    let _ = sending.await;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_round_trip_and_bad_ones_are_named() {
        let frame = Frame::Answer { id: 7, status: 200, body: b"{}".to_vec() };
        let bytes = encode_frame(&frame).expect("encode");
        let mut reader = &bytes[..];
        assert_eq!(read_frame(&mut reader).await.expect("decode"), frame);
        // A length over the limit is refused before anything is allocated.
        let mut huge = ((MAX_SEQUENCER_FRAME_BYTES + 1) as u32).to_be_bytes().to_vec();
        huge.extend_from_slice(&[0; 8]);
        let mut reader = &huge[..];
        assert!(
            matches!(read_frame(&mut reader).await, Err(FrameError::TooLarge(n)) if n == MAX_SEQUENCER_FRAME_BYTES + 1)
        );
        // Bytes that are no frame.
        let mut junk = 3u32.to_be_bytes().to_vec();
        junk.extend_from_slice(&[0xFF, 0xFF, 0xFF]);
        let mut reader = &junk[..];
        assert!(matches!(read_frame(&mut reader).await, Err(FrameError::Malformed(_))));
        // A frame cut short.
        let mut reader = &bytes[..bytes.len() - 1];
        assert!(matches!(read_frame(&mut reader).await, Err(FrameError::Io(_))));
    }
}
