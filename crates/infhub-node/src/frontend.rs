//! A stateless front-end (spec §7, front-ends; issue 23): it terminates HTTP, checks each
//! transfer's debit signature on its own cores and forwards the transfer to the writer over
//! the sequencer stream ([`crate::sequencer`]); every other request is passed to the writer's
//! HTTP API unchanged. It keeps no state of its own, so any number can run, on other machines,
//! behind a load balancer, and each one adds signature-checking capacity while the writer's
//! work per transfer shrinks to applying it.
//!
//! One connection to the writer carries all of a front-end's transfers, many in flight at
//! once, answered by request id. When it breaks, the requests waiting on it are answered
//! `sequencer_unavailable` (503, retryable: transfers are idempotent by payment id) and the
//! front-end reconnects.

use crate::api::{ApiError, NodeError};
use crate::sequencer::{encode_frame, read_frame, Frame, FrameError, SEQUENCER_VERSION};
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use infhub_core::channel::CheckedDebit;
use infhub_core::messages::SignedDebit;
use infhub_core::Domain;
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};

/// Requests a front-end has waiting on the writer at once; beyond it a request is answered
/// `overloaded` at once.
pub const MAX_FRONTEND_PENDING: usize = 4_096;
/// Largest request body a front-end accepts (a batch of signed transfers).
pub const MAX_FRONTEND_BODY_BYTES: usize = 8 << 20;
/// Pause between attempts to reach the writer.
const RECONNECT_PAUSE: Duration = Duration::from_millis(200);
/// Longest a request waits for the writer's answer; then it is answered
/// `sequencer_unavailable` (retryable: the transfer is idempotent by payment id).
pub const FORWARD_TIMEOUT: Duration = Duration::from_secs(30);

/// What a front-end needs.
#[derive(Clone, Debug)]
pub struct FrontendConfig {
    /// Where it serves HTTP.
    pub listen: String,
    /// The writer's `sequencer_listen` address.
    pub writer: String,
    /// The writer's HTTP API, for every request that is not a transfer.
    pub writer_http: String,
    /// The writer's `sequencer_token`.
    pub token: String,
}

/// Answers waiting for the writer, by request id.
type Waiting = Arc<Mutex<HashMap<u64, oneshot::Sender<(u16, Vec<u8>)>>>>;

/// The connection to the writer, as the HTTP handlers use it.
#[derive(Clone)]
struct Upstream {
    requests: mpsc::Sender<Frame>,
    waiting: Waiting,
    next_id: Arc<AtomicU64>,
    domain: Domain,
    writer_http: String,
    http: reqwest::Client,
}

fn unavailable(why: impl Into<String>) -> Response {
    ApiError::new(NodeError::SequencerUnavailable, why).into_response()
}

fn json_response(status: u16, body: Vec<u8>) -> Response {
    let mut r = (StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), body).into_response();
    r.headers_mut().insert("content-type", HeaderValue::from_static("application/json"));
    r
}

impl Upstream {
    /// Sends transfers to the writer and waits for its answer.
    async fn forward(&self, batch: bool, debits: Vec<SignedDebit>) -> Response {
        let debits: Vec<(SignedDebit, bool)> =
            debits.into_iter().map(|d| (d, CheckedDebit::check(d, &self.domain).is_ok())).collect();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        {
            let mut waiting = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
            if waiting.len() >= MAX_FRONTEND_PENDING {
                return ApiError::new(NodeError::Overloaded, "too many transfers waiting on the writer")
                    .into_response();
            }
            waiting.insert(id, tx);
        }
        if self.requests.send(Frame::Transfers { id, batch, debits }).await.is_err() {
            self.waiting.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
            return unavailable("the front-end is stopping");
        }
        match tokio::time::timeout(FORWARD_TIMEOUT, rx).await {
            Ok(Ok((status, body))) => json_response(status, body),
            Ok(Err(_)) => unavailable("the connection to the writer broke; retry the same request"),
            Err(_) => {
                self.waiting.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
                unavailable("the writer did not answer in time; retry the same request")
            }
        }
    }
}

#[derive(Deserialize)]
struct Batch {
    transfers: Vec<SignedDebit>,
}

async fn transfer(State(up): State<Upstream>, headers: HeaderMap, body: Bytes) -> Response {
    match serde_json::from_slice::<SignedDebit>(&body) {
        Ok(debit) => up.forward(false, vec![debit]).await,
        // Not a transfer: the writer names what is wrong with it, as it would directly.
        Err(_) => pass(&up, "POST", "/v1/transfers", &headers, body).await,
    }
}

async fn transfer_batch(State(up): State<Upstream>, headers: HeaderMap, body: Bytes) -> Response {
    match serde_json::from_slice::<Batch>(&body) {
        Ok(b) => up.forward(true, b.transfers).await,
        Err(_) => pass(&up, "POST", "/v1/transfers/batch", &headers, body).await,
    }
}

/// Any other request: to the writer's HTTP API as it came, and its answer back.
async fn other(State(up): State<Upstream>, request: Request) -> Response {
    let method = request.method().as_str().to_string();
    let path = request.uri().path_and_query().map_or("/".to_string(), |p| p.as_str().to_string());
    let headers = request.headers().clone();
    let Ok(body) = axum::body::to_bytes(request.into_body(), MAX_FRONTEND_BODY_BYTES).await else {
        return ApiError::new(NodeError::RequestTooLarge, "request body too large").into_response();
    };
    pass(&up, &method, &path, &headers, body).await
}

async fn pass(up: &Upstream, method: &str, path: &str, headers: &HeaderMap, body: Bytes) -> Response {
    let Ok(method) = reqwest::Method::from_bytes(method.as_bytes()) else {
        return ApiError::new(NodeError::MalformedRequest, "unknown method").into_response();
    };
    let mut request = up.http.request(method, format!("{}{path}", up.writer_http)).body(body);
    for name in ["authorization", "content-type"] {
        if let Some(v) = headers.get(name).and_then(|v| v.to_str().ok()) {
            request = request.header(name, v);
        }
    }
    let answer = match request.send().await {
        Ok(a) => a,
        Err(e) => return unavailable(format!("the writer's HTTP API: {e}")),
    };
    let status = answer.status().as_u16();
    let content_type = answer.headers().get("content-type").and_then(|v| v.to_str().ok()).map(str::to_string);
    let body = answer.bytes().await.unwrap_or_default();
    let mut r = (StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY), body.to_vec()).into_response();
    if let Some(ct) = content_type.and_then(|ct| HeaderValue::from_str(&ct).ok()) {
        r.headers_mut().insert("content-type", ct);
    }
    r
}

/// Connects to the writer and greets it; the domain it answers with.
async fn connect(config: &FrontendConfig) -> Result<(TcpStream, Domain), String> {
    let mut stream =
        TcpStream::connect(&config.writer).await.map_err(|e| format!("connect to {}: {e}", config.writer))?;
    let _ = stream.set_nodelay(true);
    let hello = Frame::Hello { version: SEQUENCER_VERSION, token: config.token.clone() };
    stream.write_all(&encode_frame(&hello).map_err(|e| e.to_string())?).await.map_err(|e| e.to_string())?;
    match read_frame(&mut stream).await.map_err(|e| e.to_string())? {
        Frame::Welcome { chain_id, contract } => Ok((stream, Domain { chain_id, verifying_contract: contract })),
        Frame::Refused { reason } => Err(format!("the writer refused this front-end: {reason}")),
        other => Err(format!("the writer answered {other:?} to Hello")),
    }
}

/// Carries frames over one connection until it breaks; the waiting requests are then answered
/// `sequencer_unavailable` (their senders dropped).
async fn carry(stream: TcpStream, outbox: &mut mpsc::Receiver<Frame>, waiting: &Waiting) -> FrameError {
    let (mut reader, mut writer) = stream.into_split();
    let answers = async {
        loop {
            match read_frame(&mut reader).await {
                Ok(Frame::Answer { id, status, body }) => {
                    if let Some(tx) = waiting.lock().unwrap_or_else(|p| p.into_inner()).remove(&id) {
                        let _ = tx.send((status, body));
                    }
                }
                Ok(other) => return FrameError::Malformed(format!("expected Answer, got {other:?}")),
                Err(e) => return e,
            }
        }
    };
    let requests = async {
        while let Some(frame) = outbox.recv().await {
            let bytes = match encode_frame(&frame) {
                Ok(b) => b,
                Err(e) => return e,
            };
            if let Err(e) = writer.write_all(&bytes).await {
                return e.into();
            }
        }
        FrameError::Malformed("the front-end is stopping".into())
    };
    let e = tokio::select! { e = answers => e, e = requests => e };
    waiting.lock().unwrap_or_else(|p| p.into_inner()).clear();
    e
}

/// Runs a front-end until `shutdown`. Returns an error if the writer cannot be reached or
/// refuses it at start (a wrong token), or the listen address cannot be bound.
pub async fn run(config: FrontendConfig, shutdown: watch::Receiver<bool>) -> Result<(), String> {
    let (first, domain) = connect(&config).await?;
    let (requests, mut outbox) = mpsc::channel::<Frame>(MAX_FRONTEND_PENDING);
    let waiting: Waiting = Arc::new(Mutex::new(HashMap::new()));
    let link = {
        let (config, waiting, mut shutdown) = (config.clone(), waiting.clone(), shutdown.clone());
        tokio::spawn(async move {
            let mut stream = Some(first);
            loop {
                let current = match stream.take() {
                    Some(s) => s,
                    None => match connect(&config).await {
                        Ok((s, again)) if again == domain => s,
                        Ok(_) => {
                            tracing::error!("the writer now answers for another chain or contract; not forwarding");
                            tokio::time::sleep(RECONNECT_PAUSE).await;
                            continue;
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "writer unreachable; retrying");
                            tokio::select! {
                                () = tokio::time::sleep(RECONNECT_PAUSE) => continue,
                                _ = shutdown.wait_for(|s| *s) => return,
                            }
                        }
                    },
                };
                tokio::select! {
                    e = carry(current, &mut outbox, &waiting) => tracing::warn!(error = %e, "connection to the writer ended; reconnecting"),
                    _ = shutdown.wait_for(|s| *s) => return,
                }
            }
        })
    };
    let upstream = Upstream {
        requests,
        waiting,
        next_id: Arc::new(AtomicU64::new(1)),
        domain,
        writer_http: config.writer_http.trim_end_matches('/').to_string(),
        http: reqwest::Client::new(),
    };
    let app = Router::new()
        .route("/v1/transfers", post(transfer))
        .route("/v1/transfers/batch", post(transfer_batch))
        .fallback(other)
        .layer(axum::extract::DefaultBodyLimit::max(MAX_FRONTEND_BODY_BYTES))
        .with_state(upstream);
    let listener =
        tokio::net::TcpListener::bind(&config.listen).await.map_err(|e| format!("listen on {}: {e}", config.listen))?;
    tracing::info!(listen = %config.listen, writer = %config.writer, "infhub front-end serving");
    let mut limits = crate::config::Limits::default();
    // Behind a load balancer every request comes from its address.
    limits.max_connections_per_address = limits.max_concurrent_requests;
    crate::serve::serve(listener, app, &limits, shutdown, || {}).await;
    link.abort();
    Ok(())
}
