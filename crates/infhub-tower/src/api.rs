//! The tower's HTTP API: wallets and hubs hand it credits and offers; anyone reads its terms,
//! a user's receipt, and its metrics.
//!
//! Every refusal is JSON `{"error": {"code", "message"}}` with the rule's name in snake case,
//! the same codes as the core's `Error` (`wrong_signer`, `epoch_mismatch`,
//! `proof_must_supersede`, `tower_quota_exceeded`, …); a credit that is not newer than the one
//! held is answered 409 with the receipt of what is held, so a pusher knows it is current.

use crate::service::{Refusal, Tower};
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use infhub_core::messages::SignedCredit;
use infhub_core::tower::SignedTowerFee;
use infhub_core::{Address, Error};
use serde_json::{json, Value};
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// The router.
pub fn router(tower: Arc<Tower>, max_body_bytes: usize) -> Router {
    Router::new()
        .route("/health", get(|| async { "ok" }))
        .route("/v1/info", get(info))
        .route("/v1/appointments", post(credit))
        .route("/v1/offers", post(offer))
        .route("/v1/debits", post(debit))
        .route("/v1/checkpoint-proofs", post(checkpoint_proofs))
        .route("/v1/appointments/{user}", get(appointment))
        .route("/metrics", get(metrics))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(tower)
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

fn error(status: StatusCode, code: &str, message: &str, extra: Option<Value>) -> Response {
    let mut body = json!({"error": {"code": code, "message": message}});
    if let Some(x) = extra {
        body["held"] = x;
    }
    (status, Json(body)).into_response()
}

fn refusal(tower: &Tower, user: Address, r: Refusal) -> Response {
    match r {
        Refusal::Chain(e) => error(StatusCode::SERVICE_UNAVAILABLE, "chain_unavailable", &e.to_string(), None),
        Refusal::Rule(e) => {
            let status = match e {
                Error::ProofMustSupersede => StatusCode::CONFLICT,
                Error::TowerQuotaExceeded => StatusCode::TOO_MANY_REQUESTS,
                Error::TowerFull => StatusCode::SERVICE_UNAVAILABLE,
                Error::UnknownAccount => StatusCode::NOT_FOUND,
                _ => StatusCode::UNPROCESSABLE_ENTITY,
            };
            let held = (e == Error::ProofMustSupersede).then(|| tower.receipt(user)).flatten();
            error(status, &e.code(), &e.to_string(), held.map(|r| json!(r)))
        }
    }
}

fn parse<T: serde::de::DeserializeOwned>(body: &Value, field: &str) -> Result<T, Box<Response>> {
    serde_json::from_value(body[field].clone())
        .map_err(|e| Box::new(error(StatusCode::BAD_REQUEST, "malformed_request", &format!("{field}: {e}"), None)))
}

async fn info(State(t): State<Arc<Tower>>) -> Json<Value> {
    let terms = t.terms();
    Json(json!({
        "tower": t.address(),
        "contract": t.contract,
        "chainId": t.domain.chain_id,
        "hub": t.hub,
        "challengePeriodBlocks": t.challenge_period_blocks,
        "terms": {
            "graceBlocks": terms.grace_blocks,
            "maxUsers": terms.max_users,
            "maxUpdatesPerUserPerMinute": terms.max_updates_per_user_per_minute,
        },
    }))
}

/// One of the tower's three takes: parse `field` from the body as a `T`, hand it to `accept`,
/// and answer with the receipt or the refusal.
async fn take<T, Fut>(
    t: Arc<Tower>,
    body: Option<Json<Value>>,
    field: &str,
    user_of: impl Fn(&T) -> Address,
    accept: impl FnOnce(Arc<Tower>, T) -> Fut,
) -> Response
where
    T: serde::de::DeserializeOwned,
    Fut: std::future::Future<Output = Result<infhub_core::tower::SignedTowerReceipt, Refusal>>,
{
    let Some(Json(body)) = body else {
        return error(StatusCode::BAD_REQUEST, "malformed_request", "expected a JSON body", None);
    };
    let item: T = match parse(&body, field) {
        Ok(item) => item,
        Err(r) => return *r,
    };
    let user = user_of(&item);
    match accept(t.clone(), item).await {
        Ok(receipt) => Json(json!({"receipt": receipt})).into_response(),
        Err(r) => refusal(&t, user, r),
    }
}

async fn credit(State(t): State<Arc<Tower>>, body: Option<Json<Value>>) -> Response {
    take(t, body, "credit", |c: &SignedCredit| c.message.user, |t, c| async move { t.accept_credit(c, now_ms()).await })
        .await
}

async fn offer(State(t): State<Arc<Tower>>, body: Option<Json<Value>>) -> Response {
    take(t, body, "offer", |o: &SignedTowerFee| o.message.user, |t, o| async move { t.accept_offer(o, now_ms()).await })
        .await
}

async fn debit(State(t): State<Arc<Tower>>, body: Option<Json<Value>>) -> Response {
    take(
        t,
        body,
        "debit",
        |d: &infhub_core::messages::SignedDebit| d.message.user,
        |t, d| async move { t.accept_debit(d, now_ms()).await },
    )
    .await
}

/// `POST /v1/checkpoint-proofs` `{"checkpoint": id, "proofs": [leaf proofs]}`: a watched user's
/// leaves of a posted checkpoint (the hub pushes them; anyone may, they prove themselves). The
/// tower checks each against the contract's root and its own credits, and proves a misstated
/// credit on chain.
async fn checkpoint_proofs(State(t): State<Arc<Tower>>, body: Option<Json<Value>>) -> Response {
    let Some(Json(body)) = body else {
        return error(StatusCode::BAD_REQUEST, "malformed_request", "expected a JSON body", None);
    };
    let (id, proofs) = match (parse::<u64>(&body, "checkpoint"), parse(&body, "proofs")) {
        (Ok(id), Ok(proofs)) => (id, proofs),
        (Err(r), _) | (_, Err(r)) => return *r,
    };
    match t.check_checkpoint(id, proofs).await {
        Ok(verdicts) => Json(json!({"checkpoint": id, "verdicts": verdicts})).into_response(),
        Err(r) => refusal(&t, Address::ZERO, r),
    }
}

async fn appointment(State(t): State<Arc<Tower>>, Path(user): Path<String>) -> Response {
    let Ok(user) = user.parse::<Address>() else {
        return error(StatusCode::BAD_REQUEST, "malformed_request", "not an address", None);
    };
    match t.receipt(user) {
        Some(r) => Json(json!({"receipt": r})).into_response(),
        None => error(StatusCode::NOT_FOUND, "unknown_account", "this tower watches no channel of that user", None),
    }
}

async fn metrics(State(t): State<Arc<Tower>>) -> String {
    let m = &t.metrics;
    let head = m.chain_head.load(Ordering::Relaxed);
    let scanned = m.scanned_through.load(Ordering::Relaxed);
    let lines = [
        ("infhub_tower_watched_users", "Users with an appointment.", t.watched_users() as u64),
        (
            "infhub_tower_appointments_accepted_total",
            "Credits and offers accepted.",
            m.appointments_accepted.load(Ordering::Relaxed),
        ),
        (
            "infhub_tower_appointments_refused_total",
            "Credits and offers refused.",
            m.appointments_refused.load(Ordering::Relaxed),
        ),
        (
            "infhub_tower_defences_sent_total",
            "Credit submissions sent against closes.",
            m.defences_sent.load(Ordering::Relaxed),
        ),
        (
            "infhub_tower_defences_mined_total",
            "Credit submissions mined successfully.",
            m.defences_mined.load(Ordering::Relaxed),
        ),
        ("infhub_tower_settlements_sent_total", "Settlements sent.", m.settlements_sent.load(Ordering::Relaxed)),
        (
            "infhub_tower_fees_earned_total",
            "Fees paid to this tower, in token base units.",
            m.fees_earned.load(Ordering::Relaxed),
        ),
        (
            "infhub_tower_checkpoint_leaves_checked_total",
            "Checkpoint leaves of watched users checked.",
            m.checkpoint_leaves_checked.load(Ordering::Relaxed),
        ),
        (
            "infhub_tower_checkpoint_complaints_sent_total",
            "Complaints sent against checkpoints that misstate a watched user's credit.",
            m.checkpoint_complaints_sent.load(Ordering::Relaxed),
        ),
        ("infhub_tower_chain_head", "Chain head at the last poll.", head),
        (
            "infhub_tower_chain_lag_blocks",
            "Blocks between the head and the last scanned block.",
            head.saturating_sub(scanned),
        ),
    ];
    let mut out = String::new();
    for (name, help, value) in lines {
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}\n"));
    }
    out
}
