//! Custodial accounts (seed 000 §3): reads, transfers, withdrawals paid on chain, and conversion
//! into a channel; authorized by the account's API key or the operator token.

use super::*;

pub(super) async fn custodial_account(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(account): Path<Address>,
) -> Result<Json<Value>, ApiError> {
    api.may_read(&headers, &account)?;
    let st = api.node.read();
    refuse_unconfirmed(&st, &account)?;
    let c = st.ledger().custodial(&account).ok_or(Error::NotCustodial)?;
    Ok(Json(json!({
        "account": c.account,
        "balance": c.balance,
        "depositedOnChain": c.deposited_on_chain,
        "linkedChannel": c.linked_channel,
        "frozen": st.ledger().frozen.contains(&account),
        "depositWith": format!("depositFor({}, amount) on the hub contract {}", c.account, api.node.domain.verifying_contract),
    })))
}

#[derive(Deserialize, schemars::JsonSchema)]
pub(super) struct CustodialTransfersRequest {
    transfers: Vec<infhub_core::ledger::CustodialTransfer>,
}

pub(super) async fn custodial_transfers(
    State(api): State<Api>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<CustodialTransfersRequest>,
) -> Result<Json<Value>, ApiError> {
    let max = infhub_core::ledger::MAX_CUSTODIAL_BATCH;
    if req.transfers.is_empty() || req.transfers.len() > max {
        return Err(ApiError::new(NodeError::RequestLimitExceeded, format!("1..={max} transfers per request")));
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
            Ok(Json(json!({"results": results.iter().map(custodial_result_json).collect::<Vec<_>>()})))
        }
        other => Err(unexpected(&other)),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
#[derive(schemars::JsonSchema)]
pub(super) struct CustodialWithdrawRequest {
    #[schemars(with = "infhub_core::schema::AddressSchema")]
    from: Address,
    #[schemars(with = "infhub_core::schema::AddressSchema")]
    recipient: Address,
    amount: Amount,
    #[schemars(with = "infhub_core::schema::WordSchema")]
    transfer_id: B256,
}

pub(super) async fn custodial_withdraw(
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
#[derive(schemars::JsonSchema)]
pub(super) struct ConvertRequest {
    #[schemars(with = "infhub_core::schema::AddressSchema")]
    account: Address,
    #[schemars(with = "infhub_core::schema::AddressSchema")]
    user: Address,
    #[schemars(with = "infhub_core::schema::WordSchema")]
    transfer_id: B256,
}

pub(super) async fn custodial_convert(
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

/// One result of a custodial batch as the API answers it: a refusal carries the same error
/// shape (`{"code", "message"}`, snake_case code) as every other refusal of the API.
fn custodial_result_json(r: &infhub_core::ledger::CustodialResult) -> Value {
    match r {
        infhub_core::ledger::CustodialResult::Rejected { error } => {
            json!({"result": "rejected", "error": {"code": error.code(), "message": error.to_string()}})
        }
        other => json!(other),
    }
}

/// `POST /v1/custodial/accounts/{account}/key-rotations`: replaces the account's API key with a
/// fresh one, shown once (the operator's or the account's own key may ask; the old key stops
/// working when this answers).
pub(super) async fn rotate_custodial_key(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(account): Path<Address>,
) -> Result<Json<Value>, ApiError> {
    api.may_move(&headers, &account)?;
    if api.node.read().ledger().custodial(&account).is_none() {
        return Err(Error::NotCustodial.into());
    }
    let (api_key, api_key_hash) = new_custodial_key(&account)?;
    match api.node.execute(Command::RotateCustodialKey { account, api_key_hash }).await?? {
        Outcome::CustodialKeyRotated => Ok(Json(json!({
            "account": account, "apiKey": api_key,
            "note": "the new API key is shown once; the old one no longer works",
        }))),
        other => Err(unexpected(&other)),
    }
}
