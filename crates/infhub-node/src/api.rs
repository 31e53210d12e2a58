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
use infhub_core::messages::{Login, Signed, SignedCredit, SignedDebit};
use infhub_core::{Address, Amount, Error, Registration, Signature, Withdrawal, B256};
use infhub_hub::answers::{payment_answer, NotApplied};
use infhub_hub::status::PayoutStatus;
use infhub_ledger::history::PaymentResult;
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

/// An API error: HTTP status, stable code, human message.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: String,
    message: String,
    /// For a refused payment: the hub-signed credit that refunded it (boxed: errors are
    /// returned everywhere, refunds are rare).
    refund: Option<Box<SignedCredit>>,
}

impl ApiError {
    fn new(status: StatusCode, code: &str, message: impl Into<String>) -> ApiError {
        ApiError { status, code: code.into(), message: message.into(), refund: None }
    }

    /// A payment refused by `refused` and refunded: the refusal is final, and the answer carries
    /// the refund, which the payer needs to be whole on chain (spec §5.4).
    fn refunded(refused: &str, refund: SignedCredit) -> ApiError {
        let status = match refused {
            "unknown_account" => StatusCode::NOT_FOUND,
            "payout_queue_full" => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::UNPROCESSABLE_ENTITY,
        };
        let message = format!("payment refused ({refused}) and refunded: its amount is credited back");
        ApiError { status, code: refused.to_string(), message, refund: Some(Box::new(refund)) }
    }
    fn unauthorized(message: &str) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }
    fn limit(what: &str) -> ApiError {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "limit_exceeded", format!("{what} limit reached; retry later"))
    }
    /// The body every error answer carries: `{"error": {"code", "message"}}` (and `refund` for a
    /// refunded payment).
    fn answer(self) -> ErrorAnswer {
        ErrorAnswer { error: ErrorBody { code: self.code, message: self.message, refund: self.refund } }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.answer())).into_response()
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> ApiError {
        use Error::*;
        let status = match e {
            InvalidSignature | WrongSigner => StatusCode::UNAUTHORIZED,
            UnknownAccount => StatusCode::NOT_FOUND,
            PaymentIdReused => StatusCode::CONFLICT,
            PayoutQueueFull | TooManyAccounts => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::UNPROCESSABLE_ENTITY,
        };
        ApiError::new(status, &e.code(), e.to_string())
    }
}

impl From<ChainRequestError> for ApiError {
    fn from(e: ChainRequestError) -> ApiError {
        match e {
            ChainRequestError::UnknownAccount => Error::UnknownAccount.into(),
            ChainRequestError::Chain(ChainError::TooManyInFlight { limit }) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "limit_exceeded",
                format!("the hub has {limit} transactions in flight; retry shortly"),
            ),
            ChainRequestError::Chain(e) => ApiError::new(StatusCode::BAD_GATEWAY, "chain_rejected", e.to_string()),
        }
    }
}

impl From<WriteError> for ApiError {
    fn from(e: WriteError) -> ApiError {
        let code = match e {
            WriteError::Overloaded(_) => "overloaded",
            WriteError::StorageFailed(_) => "storage_failed",
            WriteError::Stopped => "shutting_down",
        };
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, code, e.to_string())
    }
}

/// The ledger answered a command with an outcome of another command: a bug, reported as such.
/// A history read failed: the index or the log disagrees with what the ledger holds.
fn history_failed(e: infhub_ledger::history::HistoryError) -> ApiError {
    tracing::error!(%e, "history read failed");
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "history_unavailable", e.to_string())
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

/// Runs a history read on the blocking pool (it reads files).
async fn read_history<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, infhub_ledger::history::HistoryError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "history_unavailable", e.to_string()))?
        .map_err(history_failed)
}

fn unexpected(outcome: &Outcome) -> ApiError {
    tracing::error!(?outcome, "unexpected ledger outcome");
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "unexpected_outcome", format!("{outcome:?}"))
}

/// JSON body extractor whose rejections are API errors.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;
    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(ApiJson(v)),
            Err(r) => {
                let code = match &r {
                    JsonRejection::BytesRejection(_) if r.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                        "request_too_large"
                    }
                    JsonRejection::MissingJsonContentType(_) => "content_type_must_be_json",
                    _ => "malformed_request",
                };
                Err(ApiError::new(r.status(), code, r.body_text()))
            }
        }
    }
}

/// Login challenges and sessions, bounded.
#[derive(Default)]
pub struct Sessions {
    challenges: Mutex<HashMap<B256, (Address, Instant)>>,
    sessions: Mutex<HashMap<String, (Address, Instant)>>,
}

const CHALLENGE_TTL: Duration = Duration::from_secs(300);

fn random_bytes() -> Result<[u8; 32], ApiError> {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b)
        .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "entropy_unavailable", e.to_string()))?;
    Ok(b)
}

/// The API's state.
#[derive(Clone)]
pub struct Api {
    node: Arc<Node>,
    sessions: Arc<Sessions>,
    websockets: Arc<AtomicUsize>,
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
    fn caller(&self, headers: &HeaderMap, query_token: Option<&str>) -> Result<Caller, ApiError> {
        let header = headers.get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
        let Some(token) = header.or(query_token) else {
            return Err(ApiError::unauthorized("a session or operator token is required (Authorization: Bearer …)"));
        };
        if constant_time_eq(token.as_bytes(), self.node.config.node.operator_token.as_bytes()) {
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
        match sessions.get(token) {
            Some((user, expiry)) if *expiry > Instant::now() => Ok(Caller::User(*user)),
            Some(_) => Err(ApiError::new(StatusCode::UNAUTHORIZED, "session_expired", "log in again")),
            None => Err(ApiError::unauthorized("unknown session token")),
        }
    }

    fn may_read(&self, headers: &HeaderMap, user: &Address) -> Result<(), ApiError> {
        match self.caller(headers, None)? {
            Caller::Operator => Ok(()),
            Caller::User(u) | Caller::Custodial(u) if u == *user => Ok(()),
            Caller::User(_) | Caller::Custodial(_) => {
                Err(ApiError::new(StatusCode::FORBIDDEN, "forbidden", "a session may read only its own account"))
            }
        }
    }

    /// The operator, or the API key of custodial account `account`.
    fn may_move(&self, headers: &HeaderMap, account: &Address) -> Result<(), ApiError> {
        match self.caller(headers, None)? {
            Caller::Operator => Ok(()),
            Caller::Custodial(a) if a == *account => Ok(()),
            _ => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!("only the operator or {account}'s API key may move its funds"),
            )),
        }
    }

    fn operator(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        match self.caller(headers, None)? {
            Caller::Operator => Ok(()),
            Caller::User(_) | Caller::Custodial(_) => {
                Err(ApiError::new(StatusCode::FORBIDDEN, "forbidden", "operator token required"))
            }
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Builds the router.
pub fn router(node: Arc<Node>) -> Router {
    let limits = node.config.limits.clone();
    let api = Api { node, sessions: Arc::new(Sessions::default()), websockets: Arc::new(AtomicUsize::new(0)) };
    Router::new()
        .route("/openapi.json", get(|| async { Json(openapi::document()) }))
        .route("/metrics", get(metrics))
        .route("/v1/info", get(info))
        .route("/v1/auth/challenge", post(challenge))
        .route("/v1/auth/session", post(session))
        .route("/v1/registrations", post(register))
        .route("/v1/transfers", post(transfer))
        .route("/v1/transfers/batch", post(transfer_batch).layer(DefaultBodyLimit::max(limits.max_batch_request_bytes)))
        .route("/v1/withdrawals", post(withdraw))
        .route("/v1/accounts/{user}", get(account))
        .route("/v1/accounts/{user}/history", get(history))
        .route("/v1/accounts/{user}/payouts/{payment_id}", get(payout_status))
        .route("/v1/stream", get(stream))
        .route("/v1/operator/purchases", post(purchase))
        .route("/v1/operator/closes", post(hub_close))
        .route("/v1/operator/liquidity", get(liquidity))
        .route("/v1/operator/reserve/top-ups", post(reserve_top_up))
        .route("/v1/operator/reserve/withdrawals", post(reserve_withdrawal_announce))
        .route("/v1/operator/reserve/withdrawals/execute", post(reserve_withdrawal_execute))
        .route("/v1/operator/reserve/withdrawals/cancel", post(reserve_withdrawal_cancel))
        .route("/v1/operator/solvency", get(solvency))
        .route("/v1/operator/reconciliation", get(reconciliation))
        .route("/v1/operator/custodial-accounts", post(open_custodial))
        .route("/v1/custodial/accounts/{account}", get(custodial_account))
        .route(
            "/v1/custodial/transfers",
            post(custodial_transfers).layer(DefaultBodyLimit::max(limits.max_batch_request_bytes)),
        )
        .route("/v1/custodial/withdrawals", post(custodial_withdraw))
        .route("/v1/custodial/conversions", post(custodial_convert))
        .route("/v1/accounts/{user}/statement", get(statement))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no_such_endpoint", "see /openapi.json") })
        .layer(axum::middleware::from_fn_with_state(api.clone(), observe))
        .layer(DefaultBodyLimit::max(limits.max_request_bytes))
        .layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(|_: axum::BoxError| async {
                    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "overloaded", "too many requests in flight")
                }))
                .layer(LoadShedLayer::new())
                .layer(ConcurrencyLimitLayer::new(limits.max_concurrent_requests)),
        )
        .with_state(api)
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
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal_error", "internal error; reported")
                .into_response()
        }
    };
    api.node.metrics.request(&route, resp.status().as_u16(), start.elapsed().as_secs_f64());
    resp
}

async fn metrics(State(api): State<Api>) -> impl IntoResponse {
    api.node.update_books();
    ([("content-type", "text/plain; version=0.0.4")], api.node.metrics.render())
}

async fn info(State(api): State<Api>) -> Json<Value> {
    let n = &api.node;
    let (confirmed, accounts) = {
        let st = n.read();
        (st.ledger().block, st.ledger().account_count())
    };
    let v = n.chain_view();
    Json(json!({
        "chainId": n.domain.chain_id,
        "hubContract": n.domain.verifying_contract,
        "hub": n.hub,
        "token": n.token,
        "confirmations": n.config.chain.confirmations,
        "confirmedBlock": confirmed,
        "head": v.head,
        "halted": v.halted,
        "refusedChainEvents": v.refused_events,
        "accounts": accounts,
        "limits": n.config.limits,
    }))
}

#[derive(Deserialize)]
struct ChallengeRequest {
    user: Address,
}

async fn challenge(State(api): State<Api>, ApiJson(req): ApiJson<ChallengeRequest>) -> Result<Json<Value>, ApiError> {
    let c = B256::from(random_bytes()?);
    let mut map = api.sessions.challenges.lock().unwrap_or_else(|p| p.into_inner());
    if map.len() >= api.node.config.limits.max_pending_challenges {
        let now = Instant::now();
        map.retain(|_, (_, exp)| *exp > now);
        if map.len() >= api.node.config.limits.max_pending_challenges {
            api.node.metrics.shed.fetch_add(1, Ordering::Relaxed);
            return Err(ApiError::limit("pending challenges"));
        }
    }
    map.insert(c, (req.user, Instant::now() + CHALLENGE_TTL));
    Ok(Json(json!({
        "challenge": c,
        "expiresInSecs": CHALLENGE_TTL.as_secs(),
        "sign": {"type": infhub_core::messages::LOGIN_TYPE, "domain": api.node.domain},
    })))
}

#[derive(Deserialize)]
struct SessionRequest {
    user: Address,
    challenge: B256,
    signature: Signature,
}

async fn session(State(api): State<Api>, ApiJson(req): ApiJson<SessionRequest>) -> Result<Json<Value>, ApiError> {
    let entry = api.sessions.challenges.lock().unwrap_or_else(|p| p.into_inner()).remove(&req.challenge);
    match entry {
        Some((user, exp)) if user == req.user && exp > Instant::now() => {}
        Some((user, _)) if user != req.user => {
            return Err(ApiError::unauthorized("the challenge was issued to another address"))
        }
        Some(_) => return Err(ApiError::new(StatusCode::UNAUTHORIZED, "challenge_expired", "request a new challenge")),
        None => return Err(ApiError::new(StatusCode::UNAUTHORIZED, "unknown_challenge", "unknown or used challenge")),
    }
    let login = Signed { message: Login { user: req.user, challenge: req.challenge }, signature: req.signature };
    login.verify(&api.node.domain, req.user)?;
    let token = alloy::primitives::hex::encode(random_bytes()?);
    let ttl = Duration::from_secs(api.node.config.node.session_ttl_secs);
    let mut sessions = api.sessions.sessions.lock().unwrap_or_else(|p| p.into_inner());
    if sessions.len() >= api.node.config.limits.max_sessions {
        let now = Instant::now();
        sessions.retain(|_, (_, exp)| *exp > now);
        if sessions.len() >= api.node.config.limits.max_sessions {
            return Err(ApiError::limit("sessions"));
        }
    }
    sessions.insert(token.clone(), (req.user, Instant::now() + ttl));
    Ok(Json(json!({"token": token, "user": req.user, "expiresInSecs": ttl.as_secs()})))
}

async fn register(
    State(api): State<Api>,
    ApiJson(req): ApiJson<Signed<Registration>>,
) -> Result<Json<Value>, ApiError> {
    let user = req.message.user;
    req.verify(&api.node.domain, user)?;
    // Never both locks at once (the state lock first where both are needed).
    let seen = api.node.chain_view().head;
    let head = seen.max(api.node.read().ledger().block);
    if req.message.valid_until_block < head {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "registration_expired",
            format!("validUntilBlock {} is before the current block {head}", req.message.valid_until_block),
        ));
    }
    if user == api.node.hub || user == Address::ZERO {
        return Err(Error::UserMustNotBeZeroOrHub.into());
    }
    {
        let st = api.node.read();
        let ledger = st.ledger();
        match ledger.account(&user) {
            Some(a) if a.channel.status == Status::Open => {
                return Ok(Json(json!({"user": user, "status": "open", "epoch": a.channel.epoch})));
            }
            // A new registration must fit the ledger (a confirmed opening would be refused).
            None if ledger.account_count() >= ledger.params.max_accounts => {
                return Err(Error::TooManyAccounts.into());
            }
            _ => {}
        }
    }
    let (reply, rx) = oneshot::channel();
    api.node
        .chain_requests
        .try_send(ChainRequest::OpenChannel { user, reply })
        .map_err(|_| ApiError::limit("chain request queue"))?;
    match rx.await {
        Ok(Ok(tx)) => Ok(Json(json!({"user": user, "status": "opening", "txHash": tx}))),
        Ok(Err(ChainRequestError::Chain(ChainError::TransactionRejected { reason })))
            if reason == "ChannelAlreadyOpen" =>
        {
            Ok(Json(
                json!({"user": user, "status": "opening", "note": "already open on chain; waiting for confirmations"}),
            ))
        }
        Ok(Err(e)) => Err(e.into()),
        Err(_) => Err(WriteError::Stopped.into()),
    }
}

#[derive(Deserialize)]
struct TransferBatch {
    transfers: Vec<SignedDebit>,
}

/// An error answer (alone, or as one item of a batch answer).
#[derive(Serialize)]
struct ErrorAnswer {
    error: ErrorBody,
}

/// What an error answer says.
#[derive(Serialize)]
struct ErrorBody {
    code: String,
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    refund: Option<Box<SignedCredit>>,
}

/// One answer of a transfer batch: the transfer's answer or its error.
// Answers are the common case; boxing them would allocate per transfer.
#[allow(clippy::large_enum_variant)]
#[derive(Serialize)]
#[serde(untagged)]
enum BatchItem {
    Answered(TransferAnswer),
    Failed(ErrorAnswer),
}

/// The answer to a batch: one item per transfer, in order.
#[derive(Serialize)]
struct BatchAnswer {
    results: Vec<BatchItem>,
}

/// Many signed transfers in one request: each is queued as its own command, in order (so one
/// payer's nonces apply in sequence), and each gets its own result or error, exactly as
/// `/v1/transfers` would answer it.
async fn transfer_batch(
    State(api): State<Api>,
    ApiJson(req): ApiJson<TransferBatch>,
) -> Result<Json<BatchAnswer>, ApiError> {
    let max = api.node.config.limits.max_transfers_per_request;
    if req.transfers.is_empty() || req.transfers.len() > max {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "limit_exceeded",
            format!("1..={max} transfers per request"),
        ));
    }
    // Queued one after another, so one payer's nonces apply in order; answered after the fsync.
    let mut pending = Vec::with_capacity(req.transfers.len());
    for debit in req.transfers {
        pending.push((debit.message, api.node.submit(Command::Transfer(debit))));
    }
    let mut results = Vec::with_capacity(pending.len());
    for (debit, queued) in pending {
        let answer = match queued {
            Ok(rx) => match rx.await.unwrap_or(Err(WriteError::Stopped)) {
                Ok(sequenced) => transfer_answer(&api, &debit, sequenced),
                Err(e) => Err(e.into()),
            },
            Err(e) => Err(e.into()),
        };
        results.push(match answer {
            Ok(a) => BatchItem::Answered(a),
            Err(e) => BatchItem::Failed(e.answer()),
        });
    }
    Ok(Json(BatchAnswer { results }))
}

async fn transfer(
    State(api): State<Api>,
    ApiJson(debit): ApiJson<SignedDebit>,
) -> Result<Json<TransferAnswer>, ApiError> {
    let message = debit.message;
    let sequenced = api.node.execute_sequenced(Command::Transfer(debit)).await?;
    transfer_answer(&api, &message, sequenced).map(Json)
}

/// The answer to one applied transfer (serialized directly, without a JSON tree).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TransferAnswer {
    result: PaymentResult,
    replayed: bool,
    payout_status: Option<PayoutStatus>,
}

/// The answer to one applied (or refused) transfer: its first result, for a retry too.
fn transfer_answer(
    api: &Api,
    debit: &infhub_core::Debit,
    sequenced: crate::engine::Sequenced,
) -> Result<TransferAnswer, ApiError> {
    let (payer, id) = (debit.user, debit.payment_id);
    let history = || history_of(api, &payer);
    let applied = match payment_answer(history, &api.node.domain, debit, sequenced) {
        Ok(a) => a,
        Err(NotApplied::Refused(e)) => return Err(e.into()),
        Err(NotApplied::Refunded { refused, refund }) => return Err(ApiError::refunded(&refused, *refund)),
        Err(NotApplied::History(e)) => {
            tracing::error!(%e, "history read failed");
            return Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "history_unavailable", e));
        }
        Err(NotApplied::Missing) => {
            tracing::error!(%payer, %id, "an applied payment is missing from the history");
            return Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "history_missing",
                "applied payment not in history",
            ));
        }
    };
    // Only external payments have a payout.
    let payout_status = applied.result.payout.is_some().then(|| payout_status_of(api, payer, id));
    Ok(TransferAnswer { result: applied.result, replayed: applied.replayed, payout_status })
}

/// Where the payout of `payer`'s payment `id` stands (the caller knows it has one). Takes the
/// state lock, then the chain view's: the one order in which both are ever held.
fn payout_status_of(api: &Api, payer: Address, id: B256) -> PayoutStatus {
    let st = api.node.read();
    api.node.chain_view().statuses.payout(st.ledger(), payer, id)
}

#[derive(Deserialize)]
struct WithdrawRequest {
    withdrawal: Withdrawal,
    signature: Signature,
}

async fn withdraw(State(api): State<Api>, ApiJson(req): ApiJson<WithdrawRequest>) -> Result<Json<Value>, ApiError> {
    let cmd = Command::Withdraw { withdrawal: req.withdrawal, user_signature: req.signature };
    match api.node.execute(cmd).await?? {
        Outcome::WithdrawalCoSigned { withdrawal, hub_signature } => Ok(Json(json!({
            "withdrawal": withdrawal, "userSignature": req.signature, "hubSignature": hub_signature,
        }))),
        other => Err(unexpected(&other)),
    }
}

async fn account(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(user): Path<Address>,
) -> Result<Json<Value>, ApiError> {
    api.may_read(&headers, &user)?;
    let pending = api.node.chain_view().statuses.pending_deposits(&user).to_vec();
    let st = api.node.read();
    let Some(a) = st.ledger().account(&user) else { return Err(Error::UnknownAccount.into()) };
    let ch = &a.channel;
    let status = match ch.status {
        Status::Open => json!({"state": "open"}),
        Status::Closing { settle_block } => json!({"state": "closing", "settleBlock": settle_block}),
        Status::Settled => json!({"state": "settled"}),
    };
    Ok(Json(json!({
        "user": user,
        "epoch": ch.epoch,
        "status": status,
        "balance": ch.balance()?,
        "deposited": ch.deposited,
        "withdrawn": ch.withdrawn,
        "withdrawnOrHeld": ch.withdrawn_or_held(),
        "cumulativeDebit": ch.cumulative_debit(),
        "cumulativeCredit": ch.cumulative_credit(),
        "debitNonce": ch.debit_nonce(),
        "creditNonce": ch.credit_nonce(),
        "latestDebit": ch.debit,
        "latestCredit": ch.credit,
        "withdrawalHold": ch.withdrawal_hold,
        "pendingDeposits": pending,
        "confirmedBlock": st.ledger().block,
    })))
}

#[derive(Deserialize)]
struct PageQuery {
    before: Option<u64>,
    limit: Option<usize>,
}

async fn history(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(user): Path<Address>,
    Query(q): Query<PageQuery>,
) -> Result<Json<Value>, ApiError> {
    api.may_read(&headers, &user)?;
    let max = api.node.config.limits.max_page_size;
    let limit = q.limit.unwrap_or(50);
    if limit == 0 || limit > max {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "limit_exceeded", format!("limit must be in 1..={max}")));
    }
    let (reader, heads) = history_of(&api, &user);
    let before = q.before.unwrap_or(u64::MAX);
    let entries = match heads {
        Some(h) => read_history(move || reader.page(&user, h, before, limit)).await?,
        None => Vec::new(),
    };
    // A record's entries are never split between pages, so a page may hold a few more.
    let next = if entries.len() >= limit { entries.last().map(|e| e.seq) } else { None };
    Ok(Json(json!({"entries": entries, "nextBefore": next})))
}

async fn payout_status(
    State(api): State<Api>,
    headers: HeaderMap,
    Path((user, payment_id)): Path<(Address, B256)>,
) -> Result<Json<Value>, ApiError> {
    api.may_read(&headers, &user)?;
    // External payments and custodial withdrawals are remembered by id for good.
    let (seq, reader) = {
        let st = api.node.read();
        (st.ledger().payment_seq(&user, &payment_id), st.history().reader())
    };
    let payout = match seq {
        Some(seq) => read_history(move || reader.payout_at(seq)).await?,
        None => None,
    };
    let Some(payout) = payout else {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "unknown_payout", "no external payment with this id"));
    };
    let status = payout_status_of(&api, user, payment_id);
    Ok(Json(json!({"payout": payout, "status": status})))
}

#[derive(Deserialize)]
struct StreamQuery {
    token: Option<String>,
}

async fn stream(
    State(api): State<Api>,
    headers: HeaderMap,
    Query(q): Query<StreamQuery>,
    ws: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let filter = match api.caller(&headers, q.token.as_deref())? {
        Caller::Operator => None,
        Caller::User(u) | Caller::Custodial(u) => Some(u),
    };
    let max = api.node.config.limits.max_websockets;
    if api.websockets.fetch_add(1, Ordering::SeqCst) >= max {
        api.websockets.fetch_sub(1, Ordering::SeqCst);
        api.node.metrics.shed.fetch_add(1, Ordering::Relaxed);
        return Err(ApiError::limit("websocket streams"));
    }
    let rx = api.node.notices.subscribe();
    let counter = api.websockets.clone();
    Ok(ws.on_upgrade(move |socket| async move {
        pump(socket, rx, filter).await;
        counter.fetch_sub(1, Ordering::SeqCst);
    }))
}

async fn pump(
    mut socket: WebSocket,
    mut rx: tokio::sync::broadcast::Receiver<crate::engine::Notice>,
    filter: Option<Address>,
) {
    use tokio::sync::broadcast::error::RecvError;
    let _ = socket.send(Message::Text(json!({"type": "subscribed", "user": filter}).to_string().into())).await;
    loop {
        tokio::select! {
            n = rx.recv() => match n {
                Ok(n) => {
                    if filter.is_some_and(|u| u != n.user) {
                        continue;
                    }
                    let text = json!({"user": n.user, "notice": *n.body}).to_string();
                    if socket.send(Message::Text(text.into())).await.is_err() {
                        return;
                    }
                }
                Err(RecvError::Lagged(missed)) => {
                    let text = json!({"type": "lagged", "missed": missed, "hint": "reconnect and re-read the account"});
                    let _ = socket.send(Message::Text(text.to_string().into())).await;
                    let _ = socket.send(Message::Close(None)).await;
                    return;
                }
                Err(RecvError::Closed) => return,
            },
            msg = socket.recv() => match msg {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            },
        }
    }
}

/// The credit of the purchase `user` received at `seq`.
async fn purchase_credit(
    api: &Api,
    user: &Address,
    seq: u64,
) -> Result<Option<infhub_core::messages::SignedCredit>, ApiError> {
    let (reader, heads) = history_of(api, user);
    let Some(heads) = heads else { return Ok(None) };
    let user = *user;
    let entries = read_history(move || reader.entries_at(&user, heads, seq)).await?;
    Ok(entries
        .into_iter()
        .find(|e| e.kind == infhub_ledger::history::EntryKind::Purchase)
        .and_then(|e| e.credit().cloned()))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PurchaseRequest {
    user: Address,
    amount: Amount,
    purchase_id: B256,
}

async fn purchase(
    State(api): State<Api>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<PurchaseRequest>,
) -> Result<Json<Value>, ApiError> {
    api.operator(&headers)?;
    let cmd = Command::Purchase { user: req.user, amount: req.amount, purchase_id: req.purchase_id };
    if api.node.read().ledger().custodial(&req.user).is_some() {
        return match api.node.execute(cmd).await?? {
            Outcome::CustodialCredited => Ok(Json(json!({"custodial": true, "replayed": false}))),
            Outcome::Duplicate { first_seq } => {
                Ok(Json(json!({"custodial": true, "replayed": true, "firstSeq": first_seq})))
            }
            other => Err(unexpected(&other)),
        };
    }
    let (credit, replayed) = match api.node.execute(cmd).await?? {
        Outcome::Credited(c) => (c, false),
        Outcome::Duplicate { first_seq } => match purchase_credit(&api, &req.user, first_seq).await? {
            Some(c) => (c, true),
            None => {
                return Err(ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "history_missing",
                    "purchase not in history",
                ))
            }
        },
        other => return Err(unexpected(&other)),
    };
    if credit.message.user != req.user {
        return Err(Error::PaymentIdReused.into());
    }
    Ok(Json(json!({"credit": credit, "replayed": replayed})))
}

#[derive(Deserialize)]
struct CloseRequest {
    user: Address,
}

async fn hub_close(
    State(api): State<Api>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<CloseRequest>,
) -> Result<Json<Value>, ApiError> {
    api.operator(&headers)?;
    let debit = api.node.read().ledger().account(&req.user).map(|a| a.channel.debit);
    let Some(debit) = debit else { return Err(Error::UnknownAccount.into()) };
    let tx = send_hub_tx(&api, HubTx::HubClose { user: req.user, debit }).await?;
    Ok(Json(json!({"user": req.user, "txHash": tx})))
}

/// Hands a transaction to the chain task and waits for it to be sent.
async fn send_hub_tx(api: &Api, tx: HubTx) -> Result<B256, ApiError> {
    let (reply, rx) = oneshot::channel();
    api.node
        .chain_requests
        .try_send(ChainRequest::Send { tx: Box::new(tx), reply })
        .map_err(|_| ApiError::limit("chain request queue"))?;
    match rx.await {
        Ok(Ok(hash)) => Ok(hash),
        Ok(Err(e)) => Err(e.into()),
        Err(_) => Err(WriteError::Stopped.into()),
    }
}

/// The hub's liquidity: the reserve and what it covers (by the ledger's confirmed state), what
/// realizing debits would add, a reserve withdrawal announced, and what the duties did.
async fn liquidity(State(api): State<Api>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    api.operator(&headers)?;
    let (liquidity, block) = {
        let st = api.node.read();
        (st.ledger().liquidity(), st.ledger().block)
    };
    let view = api.node.chain_view();
    let l = &api.node.config.liquidity;
    Ok(Json(json!({
        "liquidity": liquidity,
        "confirmedBlock": block,
        "head": view.head,
        "freeReserveLow": view.low_free_reserve,
        "duties": view.counters,
        "policy": {
            "realizeWhenFreeReserveBelow": l.realize_when_free_reserve_below,
            "realizeWhenPayerReaches": l.realize_when_payer_reaches,
            "maxRealizationsPerTx": l.max_realizations_per_tx,
            "lowFreeReserveBelow": l.low_free_reserve_below,
        },
    })))
}

#[derive(Deserialize)]
struct AmountRequest {
    amount: Amount,
}

/// Tops the reserve up from the hub key's own tokens: an allowance for the contract, then
/// `depositReserve`. The ledger counts it once `ReserveDeposited` is confirmed.
async fn reserve_top_up(
    State(api): State<Api>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<AmountRequest>,
) -> Result<Json<Value>, ApiError> {
    api.operator(&headers)?;
    if req.amount.is_zero() {
        return Err(Error::AmountMustNotBeZero.into());
    }
    let contract = api.node.domain.verifying_contract;
    let approve = HubTx::ApproveToken { token: api.node.token, spender: contract, amount: req.amount };
    let approved = send_hub_tx(&api, approve).await?;
    let deposited = send_hub_tx(&api, HubTx::DepositReserve(req.amount)).await?;
    Ok(Json(json!({"amount": req.amount, "approveTxHash": approved, "depositTxHash": deposited})))
}

/// Announces a reserve withdrawal through the ledger's rule: the amount is earmarked first
/// (refused if it would leave the reserve short of what it covers, or one is pending), then
/// announced on chain; it can execute after the contract's notice.
async fn reserve_withdrawal_announce(
    State(api): State<Api>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<AmountRequest>,
) -> Result<Json<Value>, ApiError> {
    api.operator(&headers)?;
    match api.node.execute(Command::EarmarkReserveWithdrawal { amount: req.amount }).await?? {
        Outcome::Earmarked => {}
        other => return Err(unexpected(&other)),
    }
    match send_hub_tx(&api, HubTx::AnnounceReserveWithdrawal(req.amount)).await {
        Ok(tx) => Ok(Json(json!({"amount": req.amount, "earmarked": true, "txHash": tx}))),
        Err(e) => {
            // Not announced: the earmark goes, so the reserve is not held back for nothing.
            let _ = api.node.execute(Command::ReleaseReserveEarmark).await;
            Err(e)
        }
    }
}

#[derive(Deserialize)]
struct ExecuteWithdrawalRequest {
    to: Address,
}

/// Executes the announced reserve withdrawal (after its notice, before it expires).
async fn reserve_withdrawal_execute(
    State(api): State<Api>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<ExecuteWithdrawalRequest>,
) -> Result<Json<Value>, ApiError> {
    api.operator(&headers)?;
    if api.node.read().ledger().reserve_withdrawal.is_none() {
        return Err(Error::NoReserveWithdrawalPending.into());
    }
    let tx = send_hub_tx(&api, HubTx::ExecuteReserveWithdrawal(req.to)).await?;
    Ok(Json(json!({"to": req.to, "txHash": tx})))
}

/// Cancels the reserve withdrawal: on chain if it was announced there, else only its earmark.
async fn reserve_withdrawal_cancel(State(api): State<Api>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    api.operator(&headers)?;
    if api.node.read().ledger().reserve_withdrawal.is_none() {
        return match api.node.execute(Command::ReleaseReserveEarmark).await?? {
            Outcome::Earmarked => Ok(Json(json!({"released": true}))),
            other => Err(unexpected(&other)),
        };
    }
    let tx = send_hub_tx(&api, HubTx::CancelReserveWithdrawal).await?;
    Ok(Json(json!({"txHash": tx})))
}

/// The solvency report.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Solvency {
    contract_token_balance: String,
    contract_reserve: String,
    contract_total_channel_funds: String,
    /// Token balance covers reserve + channel funds (more is excess, not an imbalance).
    contract_balanced: bool,
    /// Tokens held beyond reserve and channel funds (sent outside the contract's functions).
    contract_excess: String,
    /// What closing channels will draw from the reserve (no hub payout may take it).
    contract_reserved_for_closing: String,
    ledger_reserve: Amount,
    ledger_total_channel_funds: String,
    ledger_matches_chain: bool,
    sum_of_balances: String,
    custodial_total: String,
    unattributed_custodial_deposits: Amount,
    obligations: String,
    payouts_pending: Amount,
    earmarked: Amount,
    free_reserve: String,
    liquid: bool,
    confirmed_block: u64,
    chain_block: u64,
}

async fn solvency(State(api): State<Api>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    api.operator(&headers)?;
    let n = &api.node;
    let contract = n.domain.verifying_contract;
    let rpc = |e: String| ApiError::new(StatusCode::BAD_GATEWAY, "chain_unavailable", e);
    let call = |to: Address, data: Vec<u8>| {
        let p = n.provider.clone();
        async move {
            let req = alloy::rpc::types::TransactionRequest::default().to(to).input(data.into());
            p.call(req).await.map_err(|e| e.to_string())
        }
    };
    let chain_block = n.provider.get_block_number().await.map_err(|e| rpc(e.to_string()))?;
    let bal = call(n.token, IErc20::balanceOfCall { owner: contract }.abi_encode()).await.map_err(rpc)?;
    let bal = IErc20::balanceOfCall::abi_decode_returns(&bal).map_err(|e| rpc(e.to_string()))?;
    let res = call(contract, IInfHub::reserveCall {}.abi_encode()).await.map_err(rpc)?;
    let res = IInfHub::reserveCall::abi_decode_returns(&res).map_err(|e| rpc(e.to_string()))?;
    let funds = call(contract, IInfHub::totalChannelFundsCall {}.abi_encode()).await.map_err(rpc)?;
    let funds = IInfHub::totalChannelFundsCall::abi_decode_returns(&funds).map_err(|e| rpc(e.to_string()))?;
    let reserved = call(contract, IInfHub::reservedForClosingCall {}.abi_encode()).await.map_err(rpc)?;
    let reserved = IInfHub::reservedForClosingCall::abi_decode_returns(&reserved).map_err(|e| rpc(e.to_string()))?;
    let st = n.read();
    let l = st.ledger();
    let mut ledger_funds = 0u128;
    let mut balances = 0u128;
    for (_, a) in l.accounts() {
        ledger_funds = ledger_funds.checked_add(a.funds()).expect("total funds fit u128 (contract bound)");
        balances = balances.saturating_add(a.channel.claim().0);
    }
    let report = Solvency {
        contract_token_balance: bal.to_string(),
        contract_reserve: res.to_string(),
        contract_total_channel_funds: funds.to_string(),
        contract_balanced: bal >= res + funds,
        contract_excess: bal.saturating_sub(res + funds).to_string(),
        contract_reserved_for_closing: reserved.to_string(),
        ledger_reserve: l.reserve,
        ledger_total_channel_funds: ledger_funds.to_string(),
        ledger_matches_chain: U256::from(l.reserve.0) == res && U256::from(ledger_funds) == funds,
        sum_of_balances: balances.to_string(),
        custodial_total: l.custodial_total.to_string(),
        unattributed_custodial_deposits: l.unattributed,
        obligations: l.obligations.to_string(),
        payouts_pending: l.payouts_pending,
        earmarked: l.earmarked,
        free_reserve: l.free_reserve().to_string(),
        liquid: l.is_liquid(),
        confirmed_block: l.block,
        chain_block,
    };
    Ok(Json(serde_json::to_value(report).map_err(|e| rpc(e.to_string()))?))
}

async fn reconciliation(State(api): State<Api>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    api.operator(&headers)?;
    let report = crate::reconcile::reconcile(&api.node)
        .await
        .map_err(|e| ApiError::new(StatusCode::BAD_GATEWAY, "chain_unavailable", e))?;
    api.node.metrics.reconciliation(report.discrepancies.len() as u64, true);
    Ok(Json(
        serde_json::to_value(report)
            .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal_error", e.to_string()))?,
    ))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct OpenCustodialRequest {
    user_id: String,
}

async fn open_custodial(
    State(api): State<Api>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<OpenCustodialRequest>,
) -> Result<Json<Value>, ApiError> {
    api.operator(&headers)?;
    if !infhub_core::ledger::valid_user_id(&req.user_id) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_user_id",
            "userId must be 1..=64 characters of A-Z a-z 0-9 . _ @ -",
        ));
    }
    let account = infhub_core::ledger::custodial_address(&req.user_id);
    let api_key = format!("{CUSTODIAL_KEY_PREFIX}{account:#x}_{}", alloy::primitives::hex::encode(random_bytes()?));
    let api_key_hash = alloy::primitives::keccak256(api_key.as_bytes());
    match api.node.execute(Command::OpenCustodial { account, api_key_hash }).await?? {
        Outcome::CustodialOpened => Ok(Json(json!({
            "userId": req.user_id, "account": account, "apiKey": api_key,
            "note": "the API key is shown once; the hub stores only its hash",
        }))),
        other => Err(unexpected(&other)),
    }
}

async fn custodial_account(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(account): Path<Address>,
) -> Result<Json<Value>, ApiError> {
    api.may_read(&headers, &account)?;
    let st = api.node.read();
    let c = st.ledger().custodial(&account).ok_or(Error::NotCustodial)?;
    Ok(Json(json!({
        "account": c.account,
        "balance": c.balance,
        "depositedOnChain": c.deposited_on_chain,
        "linkedChannel": c.linked_channel,
        "depositWith": format!("depositFor({}, amount) on the hub contract {}", c.account, api.node.domain.verifying_contract),
    })))
}

#[derive(Deserialize)]
struct CustodialTransfersRequest {
    transfers: Vec<infhub_core::ledger::CustodialTransfer>,
}

async fn custodial_transfers(
    State(api): State<Api>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<CustodialTransfersRequest>,
) -> Result<Json<Value>, ApiError> {
    let max = infhub_core::ledger::MAX_CUSTODIAL_BATCH;
    if req.transfers.is_empty() || req.transfers.len() > max {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "limit_exceeded",
            format!("1..={max} transfers per request"),
        ));
    }
    let mut froms: Vec<Address> = req.transfers.iter().map(|t| t.from).collect();
    froms.sort_unstable();
    froms.dedup();
    for f in &froms {
        api.may_move(&headers, f)?;
    }
    let n = req.transfers.len() as u64;
    match api.node.execute(Command::CustodialTransfers(req.transfers)).await?? {
        Outcome::CustodialTransfers(results) => {
            api.node.metrics.transfers.fetch_add(n, Ordering::Relaxed);
            Ok(Json(json!({"results": results})))
        }
        other => Err(unexpected(&other)),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CustodialWithdrawRequest {
    from: Address,
    recipient: Address,
    amount: Amount,
    transfer_id: B256,
}

async fn custodial_withdraw(
    State(api): State<Api>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<CustodialWithdrawRequest>,
) -> Result<Json<Value>, ApiError> {
    api.may_move(&headers, &req.from)?;
    let cmd = Command::CustodialWithdraw {
        from: req.from,
        recipient: req.recipient,
        amount: req.amount,
        transfer_id: req.transfer_id,
    };
    let (payout, replayed) = match api.node.execute(cmd).await?? {
        Outcome::CustodialPayoutQueued(p) => (Some(p), false),
        Outcome::Duplicate { first_seq } => {
            let reader = api.node.read().history().reader();
            (read_history(move || reader.payout_at(first_seq)).await?, true)
        }
        other => return Err(unexpected(&other)),
    };
    let status = payout_status_of(&api, req.from, req.transfer_id);
    Ok(Json(json!({"payout": payout, "status": status, "replayed": replayed})))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConvertRequest {
    account: Address,
    user: Address,
    transfer_id: B256,
}

async fn custodial_convert(
    State(api): State<Api>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<ConvertRequest>,
) -> Result<Json<Value>, ApiError> {
    api.may_move(&headers, &req.account)?;
    let cmd = Command::ConvertToChannel { account: req.account, user: req.user, transfer_id: req.transfer_id };
    match api.node.execute(cmd).await?? {
        Outcome::Converted { credit, amount } => {
            Ok(Json(json!({"credit": credit, "amount": amount, "replayed": false})))
        }
        Outcome::Duplicate { first_seq } => Ok(Json(json!({"replayed": true, "firstSeq": first_seq}))),
        other => Err(unexpected(&other)),
    }
}

#[derive(Deserialize)]
struct StatementQuery {
    format: Option<String>,
}

async fn statement(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(user): Path<Address>,
    Query(q): Query<StatementQuery>,
) -> Result<Response, ApiError> {
    api.may_read(&headers, &user)?;
    let (reader, heads) = history_of(&api, &user);
    let entries = match heads {
        Some(h) => read_history(move || reader.all(&user, h)).await?,
        None => Vec::new(),
    };
    let lines = infhub_ledger::history::statement(&entries);
    match q.format.as_deref().unwrap_or("json") {
        "csv" => Ok(([("content-type", "text/csv")], infhub_ledger::history::statement_csv(&lines)).into_response()),
        "json" => Ok(Json(json!({"account": user, "lines": lines})).into_response()),
        other => {
            Err(ApiError::new(StatusCode::BAD_REQUEST, "malformed_request", format!("format {other}: use csv or json")))
        }
    }
}
