//! The HTTP/JSON and WebSocket API.
//!
//! Writes (transfers, withdrawals, registration) are authorized by the user's own signature in
//! the body; reads by a session token obtained by signing a one-time challenge (`Login`);
//! operator endpoints by the operator token. Every rejection is a JSON error with a stable
//! snake_case `code` (the core's rule names where the core judged it) and a message, never a
//! bare 500. Body size, concurrent requests, the write queue, sessions and WebSocket streams
//! have named limits; beyond them the node answers at once instead of queueing without bound.

use crate::engine::{ChainRequest, ChainRequestError, Node, WriteError};
use crate::openapi;
use alloy::primitives::U256;
use alloy::providers::Provider;
use alloy::sol_types::SolCall;
use axum::error_handling::HandleErrorLayer;
use axum::extract::rejection::JsonRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{DefaultBodyLimit, FromRequest, MatchedPath, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use infhub_chain::bindings::{IErc20, IInfHub};
use infhub_chain::ChainError;
use infhub_core::channel::Status;
use infhub_core::duties::HubTx;
use infhub_core::ledger::{Command, Outcome};
use infhub_core::messages::{Login, Signed, SignedDebit};
use infhub_core::{Address, Amount, Error, Registration, Signature, Withdrawal, B256};
use infhub_hub::answers::{payment_answer, NotApplied};
use infhub_hub::status::PayoutStatus;
use infhub_ledger::history::PaymentResult;
use login_table::LoginTable;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use tower::limit::ConcurrencyLimitLayer;
use tower::load_shed::LoadShedLayer;
use tower::ServiceBuilder;

mod accounts;
mod auth;
mod checkpoints;
mod custodial;
mod error;
mod explorer;
mod guard;
mod links;
mod locks;
mod login_table;
mod operator;
mod refusal_guard;
mod registration_budget;
pub(crate) mod schemas;
mod stream;
mod transfers;
mod wallet_files;
mod write_budget;

use error::ErrorAnswer;
pub use error::{ApiError, NodeError};

use accounts::{
    account, events, history, payout_status, remove_webhook, set_towers, set_webhook, statement, towers_of, webhook,
};
use auth::{challenge, register, session};
use checkpoints::{checkpoint_proofs, checkpoints};
use custodial::{custodial_account, custodial_convert, custodial_transfers, custodial_withdraw, rotate_custodial_key};
use operator::{
    hub_close, liquidity, open_custodial, purchase, reconciliation, reserve_top_up, reserve_withdrawal_announce,
    reserve_withdrawal_cancel, reserve_withdrawal_execute, solvency,
};
use stream::stream;
use transfers::{transfer, transfer_batch, withdraw};

/// The ledger answered a command with an outcome of another command: a bug, reported as such.
/// A history read failed: the index or the log disagrees with what the ledger holds.
fn history_failed(e: infhub_ledger::history::HistoryError) -> ApiError {
    tracing::error!(%e, "history read failed");
    ApiError::new(NodeError::HistoryUnavailable, e.to_string())
}

/// The history reader and `user`'s lists, taken under the state lock; the reads happen
/// after it is released, so they never hold up the writer.
fn history_of(
    api: &Api,
    user: &Address,
) -> (std::sync::Arc<infhub_ledger::history::HistoryReader>, Option<infhub_ledger::history::Heads>) {
    let st = api.node.read();
    (st.history().reader(), st.history().heads(user))
}

/// A page's size: the one asked for (50 by default), in `1..=max` (`limit_exceeded` otherwise).
fn page_limit(requested: Option<usize>, max: usize) -> Result<usize, ApiError> {
    let limit = requested.unwrap_or(50);
    if limit == 0 || limit > max {
        return Err(ApiError::new(NodeError::RequestLimitExceeded, format!("limit must be in 1..={max}")));
    }
    Ok(limit)
}

/// Runs a history read on the blocking pool (it reads files).
async fn read_history<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, infhub_ledger::history::HistoryError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::new(NodeError::HistoryUnavailable, e.to_string()))?
        .map_err(history_failed)
}

fn unexpected(outcome: &Outcome) -> ApiError {
    tracing::error!(?outcome, "unexpected ledger outcome");
    ApiError::new(NodeError::InternalError, format!("{outcome:?}"))
}

/// Where the payout of `payer`'s payment `id` stands (the caller knows it has one). Takes the
/// state lock, then the chain view's: the one order in which both are ever held.
fn payout_status_of(api: &Api, payer: Address, id: B256) -> PayoutStatus {
    let st = api.node.read();
    api.node.chain_view().statuses.payout(st.ledger(), payer, id)
}

/// JSON body extractor whose rejections are API errors.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;
    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(ApiJson(v)),
            Err(r) => {
                let kind = match &r {
                    JsonRejection::BytesRejection(_) if r.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                        NodeError::RequestTooLarge
                    }
                    JsonRejection::MissingJsonContentType(_) => NodeError::ContentTypeMustBeJson,
                    _ => NodeError::MalformedRequest,
                };
                // axum picks the status (400, 413, 415 or 422); the code names the rule.
                Err(ApiError::with_status(kind, r.status(), r.body_text()))
            }
        }
    }
}

/// Login challenges, sessions and open streams, bounded per account and for strangers (see
/// [`login_table`]).
pub struct Sessions {
    challenges: Mutex<LoginTable<B256>>,
    sessions: Mutex<LoginTable<String>>,
    /// Open streams per account (the operator's count under the zero address).
    streams: Mutex<HashMap<Address, usize>>,
}

impl Sessions {
    fn new(limits: &crate::config::Limits) -> Sessions {
        Sessions {
            challenges: Mutex::new(LoginTable::new(limits.max_challenges_per_account, limits.max_pending_challenges)),
            sessions: Mutex::new(LoginTable::new(limits.max_sessions_per_account, limits.max_sessions)),
            streams: Mutex::new(HashMap::new()),
        }
    }
}

const CHALLENGE_TTL: Duration = Duration::from_secs(300);

/// A fresh API key for custodial account `account` and the hash the ledger keeps of it.
fn new_custodial_key(account: &Address) -> Result<(String, B256), ApiError> {
    let api_key = format!("{CUSTODIAL_KEY_PREFIX}{account:#x}_{}", alloy::primitives::hex::encode(random_bytes()?));
    let hash = alloy::primitives::keccak256(api_key.as_bytes());
    Ok((api_key, hash))
}

fn random_bytes() -> Result<[u8; 32], ApiError> {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).map_err(|e| ApiError::new(NodeError::EntropyUnavailable, e.to_string()))?;
    Ok(b)
}

/// The API's state.
#[derive(Clone)]
pub struct Api {
    node: Arc<Node>,
    sessions: Arc<Sessions>,
    websockets: Arc<AtomicUsize>,
    in_flight: Arc<guard::InFlight>,
    registrations: Arc<registration_budget::RegistrationBudget>,
    writes: Arc<write_budget::WriteBudget>,
    refusals: Arc<refusal_guard::RefusalGuard>,
}

/// Who is asking.
enum Caller {
    Operator,
    User(Address),
    /// The holder of a custodial account's API key.
    Custodial(Address),
}

/// Prefix of custodial API keys: `ck_<account>_<secret>`.
const CUSTODIAL_KEY_PREFIX: &str = "ck_";

impl Api {
    /// The node behind the API.
    pub(crate) fn node(&self) -> &Arc<Node> {
        &self.node
    }

    fn caller(&self, headers: &HeaderMap, query_token: Option<&str>) -> Result<Caller, ApiError> {
        let header = headers.get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
        let Some(token) = header.or(query_token) else {
            return Err(ApiError::unauthorized("a session or operator token is required (Authorization: Bearer …)"));
        };
        if self.node.operator_tokens.accepts(token, now_ms()) {
            return Ok(Caller::Operator);
        }
        if let Some(rest) = token.strip_prefix(CUSTODIAL_KEY_PREFIX) {
            let account: Option<Address> = rest.split('_').next().and_then(|a| a.parse().ok());
            let hash = alloy::primitives::keccak256(token.as_bytes());
            let known = account.and_then(|a| self.node.read().ledger().custodial(&a).map(|c| c.api_key_hash));
            return match (account, known) {
                (Some(a), Some(h)) if constant_time_eq(h.as_slice(), hash.as_slice()) => Ok(Caller::Custodial(a)),
                _ => Err(ApiError::unauthorized("unknown custodial API key")),
            };
        }
        let sessions = self.sessions.sessions.lock().unwrap_or_else(|p| p.into_inner());
        match sessions.get(&token.to_string()) {
            Some((user, expiry)) if expiry > Instant::now() => Ok(Caller::User(user)),
            Some(_) => Err(ApiError::new(NodeError::SessionExpired, "log in again")),
            None => Err(ApiError::unauthorized("unknown session token")),
        }
    }

    /// Whether the ledger knows `user` (its login state is then kept per account).
    fn knows(&self, user: &Address) -> bool {
        let st = self.node.read();
        st.ledger().account(user).is_some() || st.ledger().custodial(user).is_some()
    }

    fn may_read(&self, headers: &HeaderMap, user: &Address) -> Result<(), ApiError> {
        match self.caller(headers, None)? {
            Caller::Operator => Ok(()),
            Caller::User(u) | Caller::Custodial(u) if u == *user => Ok(()),
            Caller::User(_) | Caller::Custodial(_) => {
                Err(ApiError::new(NodeError::Forbidden, "a session may read only its own account"))
            }
        }
    }

    /// The operator, or the API key of custodial account `account`.
    fn may_move(&self, headers: &HeaderMap, account: &Address) -> Result<(), ApiError> {
        match self.caller(headers, None)? {
            Caller::Operator => Ok(()),
            Caller::Custodial(a) if a == *account => Ok(()),
            _ => Err(ApiError::new(
                NodeError::Forbidden,
                format!("only the operator or {account}'s API key may move its funds"),
            )),
        }
    }

    fn operator(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        match self.caller(headers, None)? {
            Caller::Operator => Ok(()),
            Caller::User(_) | Caller::Custodial(_) => {
                Err(ApiError::new(NodeError::Forbidden, "operator token required"))
            }
        }
    }
}

pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The API's state without its routes, for the writer's answers to front-ends.
pub(crate) fn state_of(node: Arc<Node>) -> Api {
    let limits = node.config.limits.clone();
    Api {
        node,
        sessions: Arc::new(Sessions::new(&limits)),
        websockets: Arc::new(AtomicUsize::new(0)),
        in_flight: Arc::new(guard::InFlight::default()),
        registrations: Arc::new(registration_budget::RegistrationBudget::new(
            limits.registrations_per_hour,
            limits.registrations_per_hour_per_address,
            std::time::Instant::now(),
        )),
        writes: Arc::new(write_budget::WriteBudget::new(limits.writes_per_second_per_account)),
        refusals: Arc::new(refusal_guard::RefusalGuard::default()),
    }
}

impl Api {
    /// One write from the payer's budget if `debit` carries her valid signature (a forged one
    /// draws nothing; the ledger refuses it by name).
    fn take_signed_writes(&self, debit: &SignedDebit) -> Result<(), ApiError> {
        if debit.verify(&self.node.domain, debit.message.user).is_ok() {
            self.take_writes(debit.message.user, 1)?;
        }
        Ok(())
    }

    /// Takes `writes` from `account`'s write budget (`account_rate_limited` beyond it).
    fn take_writes(&self, account: Address, writes: u32) -> Result<(), ApiError> {
        match self.writes.take(account, writes, std::time::Instant::now()) {
            None => Ok(()),
            Some(wait) => Err(ApiError::new(
                NodeError::AccountRateLimited,
                format!("this account's write budget is spent; {writes} more fit in {} ms", wait.as_millis().max(1)),
            )),
        }
    }
}

pub(crate) use transfers::{forward, forwarded_answer, response_parts, take_forwarded_writes};

/// Builds the router.
pub fn router(node: Arc<Node>) -> Router {
    let limits = node.config.limits.clone();
    let api = state_of(node);
    Router::new()
        .route("/openapi.json", get(|| async { Json(openapi::document()) }))
        .route("/metrics", get(metrics))
        .route("/v1/info", get(info))
        .route("/explorer", get(explorer::overview))
        .route("/explorer/blocks", get(explorer::blocks))
        .route("/explorer/blocks/{seq}", get(explorer::block))
        .route("/explorer/events", get(explorer::events))
        .route("/explorer/checkpoints", get(explorer::checkpoints))
        .route("/explorer/accounts/{address}", get(explorer::account))
        .route("/wallet", get(wallet_files::root))
        .route("/wallet/", get(wallet_files::index))
        .route("/wallet/config.json", get(wallet_files::config))
        .route("/wallet/{name}", get(wallet_files::file))
        .route("/v1/auth/challenge", post(challenge))
        .route("/v1/auth/session", post(session))
        .route("/v1/registrations", post(register))
        .route("/v1/transfers", post(transfer))
        .route("/v1/transfers/batch", post(transfer_batch).layer(DefaultBodyLimit::max(limits.max_batch_request_bytes)))
        .route("/v1/withdrawals", post(withdraw))
        .route("/v1/locked-transfers", post(locks::locked_transfer))
        .route("/v1/lock-reveals", post(locks::reveal))
        .route("/v1/lock-debits", post(locks::lock_debit))
        .route("/v1/forwarded-transfers", post(locks::forwarded_transfer))
        .route("/v1/payment-quotes", post(locks::payment_quote))
        .route("/v1/accounts/{user}", get(account))
        .route("/v1/accounts/{user}/history", get(history))
        .route("/v1/accounts/{user}/payouts/{payment_id}", get(payout_status))
        .route("/v1/accounts/{user}/payments/{payment_id}", get(accounts::payment))
        .route("/v1/stream", get(stream))
        .route("/v1/operator/purchases", post(purchase))
        .route("/v1/operator/closes", post(hub_close))
        .route("/v1/operator/freezes", post(operator::freeze))
        .route("/v1/operator/accounts", get(operator::accounts))
        .route("/v1/operator/liquidity", get(liquidity))
        .route("/v1/operator/reserve/top-ups", post(reserve_top_up))
        .route("/v1/operator/reserve/withdrawals", post(reserve_withdrawal_announce))
        .route("/v1/operator/reserve/withdrawals/execute", post(reserve_withdrawal_execute))
        .route("/v1/operator/reserve/withdrawals/cancel", post(reserve_withdrawal_cancel))
        .route("/v1/operator/solvency", get(solvency))
        .route("/v1/operator/reconciliation", get(reconciliation))
        .route("/v1/operator/custodial-accounts", post(open_custodial))
        .route("/v1/operator/audit", get(audit_page))
        .route("/v1/operator/token-rotations", post(rotate_operator_token))
        .route("/v1/announcements", get(links::announcements))
        .route("/v1/routes", get(links::routes))
        .route("/v1/operator/links", get(links::list_links).post(links::open_link))
        .route("/v1/operator/links/{peer}/deposits", post(links::link_deposit))
        .route("/v1/operator/links/{peer}/payments", post(links::link_payment))
        .route("/v1/custodial/accounts/{account}", get(custodial_account))
        .route("/v1/custodial/accounts/{account}/key-rotations", post(rotate_custodial_key))
        .route(
            "/v1/custodial/transfers",
            post(custodial_transfers).layer(DefaultBodyLimit::max(limits.max_batch_request_bytes)),
        )
        .route("/v1/custodial/withdrawals", post(custodial_withdraw))
        .route("/v1/custodial/conversions", post(custodial_convert))
        .route("/v1/accounts/{user}/statement", get(statement))
        .route("/v1/accounts/{user}/towers", get(towers_of).put(set_towers))
        .route("/v1/accounts/{user}/events", get(events))
        .route("/v1/accounts/{user}/webhook", get(webhook).put(set_webhook).delete(remove_webhook))
        .route("/v1/checkpoints", get(checkpoints))
        .route("/v1/checkpoints/{id}/proofs/{account}", get(checkpoint_proofs))
        .fallback(|| async { ApiError::new(NodeError::NoSuchEndpoint, "see /openapi.json") })
        .layer(axum::middleware::from_fn_with_state(api.clone(), audit_operator_requests))
        .layer(axum::middleware::from_fn_with_state(api.clone(), guard::guard))
        .layer(axum::middleware::from_fn_with_state(api.clone(), observe))
        .layer(DefaultBodyLimit::max(limits.max_request_bytes))
        .layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(|_: axum::BoxError| async {
                    ApiError::new(NodeError::Overloaded, "too many requests in flight")
                }))
                .layer(LoadShedLayer::new())
                .layer(ConcurrencyLimitLayer::new(limits.max_concurrent_requests)),
        )
        .with_state(api)
}

/// Milliseconds since the Unix epoch (0 if the clock is before it).
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Audits every operator request that is not a read (`crate::audit`): durable before it runs,
/// its status after. A request that cannot be audited is refused, `storage_failed`.
async fn audit_operator_requests(State(api): State<Api>, req: Request, next: Next) -> Response {
    use crate::audit::{body_detail, fingerprint, AuditEvent};
    if req.method() == axum::http::Method::GET || !req.uri().path().starts_with("/v1/operator/") {
        return next.run(req).await;
    }
    let (parts, body) = req.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, api.node.config.limits.max_request_bytes).await else {
        return ApiError::new(NodeError::RequestTooLarge, "operator request body too large").into_response();
    };
    let token =
        parts.headers.get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    let actor = match token {
        None => "anonymous".to_string(),
        Some(t) if api.node.operator_tokens.accepts(t, now_ms()) => format!("operator:{}", fingerprint(t)),
        Some(t) => format!("token:{}", fingerprint(t)),
    };
    let event = AuditEvent::Requested {
        method: parts.method.to_string(),
        path: parts.uri.path_and_query().map_or_else(|| parts.uri.path().to_string(), |p| p.as_str().to_string()),
        actor,
        body: body_detail(&bytes),
    };
    let log = api.node.audit.clone();
    let seq = match tokio::task::spawn_blocking(move || log.append(now_ms(), event)).await {
        Ok(Ok(seq)) => seq,
        Ok(Err(e)) => {
            return ApiError::new(NodeError::StorageFailed, format!("not audited, not run: {e}")).into_response()
        }
        Err(e) => return ApiError::new(NodeError::InternalError, format!("audit task: {e}")).into_response(),
    };
    let response = next.run(Request::from_parts(parts, axum::body::Body::from(bytes))).await;
    let answered = AuditEvent::Answered { request_seq: seq, status: response.status().as_u16() };
    let log = api.node.audit.clone();
    match tokio::task::spawn_blocking(move || log.append(now_ms(), answered)).await {
        Ok(Ok(_)) => {}
        // The request ran: its answer stands; the missing `answered` entry is reported.
        Ok(Err(e)) => tracing::error!("audit log: the answer to request {seq} not recorded: {e}"),
        Err(e) => tracing::error!("audit log: the answer to request {seq} not recorded: {e}"),
    }
    response
}

/// `POST /v1/operator/token-rotations`: a fresh operator token, shown once; the one it
/// replaces keeps working for `node.operator_token_grace_secs` (`crate::operator_tokens`).
/// A new operator token, shown once.
#[derive(Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
struct TokenRotated {
    operator_token: String,
    /// How long the replaced token keeps working.
    old_token_works_for_secs: u64,
    /// The token's fingerprint, as the audit log names it.
    fingerprint: String,
    note: &'static str,
}

async fn rotate_operator_token(State(api): State<Api>, headers: HeaderMap) -> Result<Json<TokenRotated>, ApiError> {
    api.operator(&headers)?;
    let token =
        format!("{}{}", crate::operator_tokens::OPERATOR_TOKEN_PREFIX, alloy::primitives::hex::encode(random_bytes()?));
    let tokens = api.node.operator_tokens.clone();
    let (new, now) = (token.clone(), now_ms());
    tokio::task::spawn_blocking(move || tokens.rotate(&new, now))
        .await
        .map_err(|e| ApiError::new(NodeError::InternalError, format!("rotation task: {e}")))?
        .map_err(|e| ApiError::new(NodeError::StorageFailed, format!("the new token was not stored: {e}")))?;
    let grace = api.node.config.node.operator_token_grace_secs;
    Ok(Json(TokenRotated {
        fingerprint: crate::audit::fingerprint(&token),
        operator_token: token,
        old_token_works_for_secs: grace,
        note: "the new token is shown once; the node keeps only its hash",
    }))
}

#[derive(Deserialize)]
struct AuditQuery {
    before: Option<u64>,
    limit: Option<usize>,
}

/// `GET /v1/operator/audit`: the audit log, newest first (operator only).
async fn audit_page(
    State(api): State<Api>,
    headers: HeaderMap,
    Query(q): Query<AuditQuery>,
) -> Result<Json<AuditPage>, ApiError> {
    api.operator(&headers)?;
    let max = api.node.config.limits.max_page_size.min(crate::audit::MAX_AUDIT_PAGE);
    let limit = page_limit(q.limit, max)?;
    let log = api.node.audit.clone();
    let before = q.before.unwrap_or(u64::MAX);
    let entries = tokio::task::spawn_blocking(move || log.page(before, limit))
        .await
        .map_err(|e| ApiError::new(NodeError::InternalError, format!("audit task: {e}")))?
        .map_err(|e| ApiError::new(NodeError::StorageFailed, e.to_string()))?;
    let next = if entries.len() == limit { entries.last().map(|e| e.seq) } else { None };
    Ok(Json(AuditPage { entries, next_before: next }))
}

/// A page of the operator's audit log, newest first.
#[derive(Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
struct AuditPage {
    entries: Vec<crate::audit::AuditEntry>,
    /// The `before` of the next page (none: this is the last).
    next_before: Option<u64>,
}

async fn observe(State(api): State<Api>, req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_string()).unwrap_or_else(|| "other".into());
    let start = Instant::now();
    // A panic is a bug; it must still answer with a JSON error instead of dropping the
    // connection, and it is counted and logged.
    let resp = match futures_util::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(next.run(req))).await {
        Ok(resp) => resp,
        Err(_) => {
            tracing::error!(%route, "request handler panicked");
            ApiError::new(NodeError::InternalError, "internal error; reported").into_response()
        }
    };
    let resp = if resp.status().is_client_error() || resp.status().is_server_error() {
        error_as_json(resp).await
    } else {
        resp
    };
    api.node.metrics.request(&route, resp.status().as_u16(), start.elapsed().as_secs_f64());
    resp
}

/// Most bytes of a router rejection's text kept as the message of its JSON error.
const REJECTION_MESSAGE_MAX_BYTES: usize = 1_024;

/// One error shape everywhere: a refusal made by the router or an extractor before any handler
/// ran (wrong method, a bad path or query parameter, a body rejected by its limit) is plain
/// text; it is answered as `{"error": {"code", "message"}}` with the same status.
async fn error_as_json(resp: Response) -> Response {
    let is_json = resp
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json") || v.starts_with("text/html"));
    // JSON errors are the handlers' own; an HTML page is the explorer's own "not found".
    if is_json {
        return resp;
    }
    let status = resp.status();
    let kind = match status {
        StatusCode::NOT_FOUND => NodeError::NoSuchEndpoint,
        StatusCode::METHOD_NOT_ALLOWED => NodeError::MethodNotAllowed,
        StatusCode::PAYLOAD_TOO_LARGE => NodeError::RequestTooLarge,
        StatusCode::UNSUPPORTED_MEDIA_TYPE => NodeError::ContentTypeMustBeJson,
        StatusCode::SERVICE_UNAVAILABLE => NodeError::Overloaded,
        s if s.is_client_error() => NodeError::MalformedRequest,
        _ => NodeError::InternalError,
    };
    let body = axum::body::to_bytes(resp.into_body(), REJECTION_MESSAGE_MAX_BYTES).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&body).trim().to_string();
    let message = if text.is_empty() { status.canonical_reason().unwrap_or("refused").to_string() } else { text };
    ApiError::with_status(kind, status, message).into_response()
}

async fn metrics(State(api): State<Api>) -> impl IntoResponse {
    api.node.update_books();
    ([("content-type", "text/plain; version=0.0.4")], api.node.metrics.render())
}

/// The hub's public facts (`GET /v1/info`).
#[derive(Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
struct InfoAnswer {
    chain_id: u64,
    #[schemars(with = "infhub_core::schema::AddressSchema")]
    hub_contract: Address,
    /// The hub's signing address.
    #[schemars(with = "infhub_core::schema::AddressSchema")]
    hub: Address,
    /// The hub's public key, compressed: what a payer seals this hub's route steps to (spec
    /// §5.23d).
    #[schemars(with = "infhub_core::schema::CompressedPointSchema")]
    hub_key: alloy::primitives::FixedBytes<33>,
    #[schemars(with = "infhub_core::schema::AddressSchema")]
    token: Address,
    /// Blocks a chain event waits before the ledger applies it.
    confirmations: u64,
    /// The ledger's confirmed block.
    confirmed_block: u64,
    /// The chain's head as last seen.
    head: u64,
    /// Why the hub stopped following the chain (a reorganisation below the confirmation
    /// depth: an operator must look), if it did.
    halted: Option<String>,
    /// Chain events the ledger refused (a bug or a hostile contract), with the last one.
    refused_chain_events: RefusedChainEvents,
    accounts: usize,
    storage: StorageInfo,
    limits: crate::config::Limits,
}

#[derive(Serialize, schemars::JsonSchema)]
struct RefusedChainEvents {
    count: u64,
    last: Option<Value>,
}

#[derive(Serialize, schemars::JsonSchema)]
struct StorageInfo {
    store: crate::config::StoreKind,
    /// Why writes are refused now (a storage failure not yet reopened from), if they are.
    down: Option<String>,
}

async fn info(State(api): State<Api>) -> Json<InfoAnswer> {
    let n = &api.node;
    let (confirmed, accounts) = {
        let st = n.read();
        (st.ledger().block, st.ledger().account_count())
    };
    let v = n.chain_view();
    Json(InfoAnswer {
        chain_id: n.domain.chain_id,
        hub_contract: n.domain.verifying_contract,
        hub: n.hub,
        hub_key: alloy::primitives::FixedBytes(n.links.routing.own_key().compressed()),
        token: n.token,
        confirmations: n.config.chain.confirmations,
        confirmed_block: confirmed,
        head: v.head,
        halted: v.halted.clone(),
        refused_chain_events: RefusedChainEvents { count: v.refused_events.count, last: v.refused_events.last.clone() },
        accounts,
        storage: StorageInfo { store: n.config.store.kind, down: n.storage_down() },
        limits: n.config.limits.clone(),
    })
}

/// While the batch whose commit failed is still in memory (storage down, the ledger not yet
/// reopened), an account it touched is not shown: its state there was never acknowledged, and
/// a reader must not take a refused write for a done one (spec §7).
fn refuse_unconfirmed(st: &crate::engine::State, account: &Address) -> Result<(), ApiError> {
    if st.durable().unconfirmed().iter().any(|r| r.accounts().contains(account)) {
        return Err(ApiError::new(
            NodeError::StorageUnavailable,
            "this account's newest change is not confirmed by storage (which is down): retry once it is back",
        ));
    }
    Ok(())
}

/// Whether any change in memory is unconfirmed (then the books' figures are not shown).
fn refuse_any_unconfirmed(st: &crate::engine::State) -> Result<(), ApiError> {
    if st.durable().unconfirmed().is_empty() {
        return Ok(());
    }
    Err(ApiError::new(
        NodeError::StorageUnavailable,
        "the ledger in memory holds a batch storage did not confirm (storage is down): retry once it is back",
    ))
}
