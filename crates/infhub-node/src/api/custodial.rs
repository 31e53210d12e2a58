//! Custodial accounts (seed 000 §3): reads, transfers, withdrawals paid on chain, and conversion
//! into a channel; authorized by the account's API key or the operator token.

use super::*;

/// A custodial account as its holder or the operator reads it.
#[derive(Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct CustodialAccountAnswer {
    #[schemars(with = "infhub_core::schema::AddressSchema")]
    account: Address,
    balance: Amount,
    deposited_on_chain: Amount,
    /// The channel it was converted into, if it was.
    #[schemars(with = "Option<infhub_core::schema::AddressSchema>")]
    linked_channel: Option<Address>,
    frozen: bool,
    /// How to deposit into it on chain.
    deposit_with: String,
}

pub(super) async fn custodial_account(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(account): Path<Address>,
) -> Result<Json<CustodialAccountAnswer>, ApiError> {
    api.may_read(&headers, &account)?;
    let st = api.node.read();
    refuse_unconfirmed(&st, &account)?;
    let c = st.ledger().custodial(&account).ok_or(Error::NotCustodial)?;
    Ok(Json(CustodialAccountAnswer {
        account: c.account,
        balance: c.balance,
        deposited_on_chain: c.deposited_on_chain,
        linked_channel: c.linked_channel,
        frozen: st.ledger().frozen.contains(&account),
        deposit_with: format!(
            "depositFor({}, amount) on the hub contract {}",
            c.account, api.node.domain.verifying_contract
        ),
    }))
}

#[derive(Deserialize, schemars::JsonSchema)]
pub(super) struct CustodialTransfersRequest {
    transfers: Vec<infhub_core::ledger::CustodialTransfer>,
}

pub(super) async fn custodial_transfers(
    State(api): State<Api>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<CustodialTransfersRequest>,
) -> Result<Json<CustodialResults>, ApiError> {
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
            Ok(Json(CustodialResults { results: results.into_iter().map(CustodialResultView::from).collect() }))
        }
        other => Err(unexpected(&other)),
    }
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct CustodialWithdrawRequest {
    #[schemars(with = "infhub_core::schema::AddressSchema")]
    from: Address,
    #[schemars(with = "infhub_core::schema::AddressSchema")]
    recipient: Address,
    amount: Amount,
    #[schemars(with = "infhub_core::schema::WordSchema")]
    transfer_id: B256,
}

/// A custodial withdrawal's payout and where it stands.
#[derive(Serialize, schemars::JsonSchema)]
pub(super) struct CustodialPayout {
    payout: Option<infhub_core::ledger::Payout>,
    status: PayoutStatus,
    replayed: bool,
}

pub(super) async fn custodial_withdraw(
    State(api): State<Api>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<CustodialWithdrawRequest>,
) -> Result<Json<CustodialPayout>, ApiError> {
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
    Ok(Json(CustodialPayout { payout, status, replayed }))
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct ConvertRequest {
    #[schemars(with = "infhub_core::schema::AddressSchema")]
    account: Address,
    #[schemars(with = "infhub_core::schema::AddressSchema")]
    user: Address,
    #[schemars(with = "infhub_core::schema::WordSchema")]
    transfer_id: B256,
}

/// A conversion into a channel: the hub's credit of the balance, or a replay.
#[derive(Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct ConvertAnswer {
    #[serde(skip_serializing_if = "Option::is_none")]
    credit: Option<infhub_core::messages::SignedCredit>,
    #[serde(skip_serializing_if = "Option::is_none")]
    amount: Option<Amount>,
    replayed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    first_seq: Option<u64>,
}

pub(super) async fn custodial_convert(
    State(api): State<Api>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<ConvertRequest>,
) -> Result<Json<ConvertAnswer>, ApiError> {
    api.may_move(&headers, &req.account)?;
    let cmd = Command::ConvertToChannel { account: req.account, user: req.user, transfer_id: req.transfer_id };
    match api.node.execute(cmd).await?? {
        Outcome::Converted { credit, amount } => {
            Ok(Json(ConvertAnswer { credit: Some(credit), amount: Some(amount), replayed: false, first_seq: None }))
        }
        Outcome::Duplicate { first_seq } => {
            Ok(Json(ConvertAnswer { credit: None, amount: None, replayed: true, first_seq: Some(first_seq) }))
        }
        other => Err(unexpected(&other)),
    }
}

/// A custodial batch's answer: one result per transfer, in order.
#[derive(Serialize, schemars::JsonSchema)]
pub(super) struct CustodialResults {
    results: Vec<CustodialResultView>,
}

/// One result of a custodial batch as the API answers it (the core's `CustodialResult`): a
/// refusal carries the same error shape (`{"code", "message"}`, snake_case code) as every other
/// refusal of the API.
// A credit is the common case; boxing it would allocate per transfer.
#[allow(clippy::large_enum_variant)]
#[derive(Serialize, schemars::JsonSchema)]
#[serde(tag = "result", rename_all = "camelCase")]
pub(super) enum CustodialResultView {
    /// Applied; a channel recipient got this credit.
    Moved { credit: Option<infhub_core::messages::SignedCredit> },
    /// Applied before, at this sequence number.
    Duplicate { first_seq: u64 },
    /// Refused by this rule; nothing moved.
    Rejected { error: RuleRefusal },
}

/// A rule's refusal: its snake_case code and its message.
#[derive(Serialize, schemars::JsonSchema)]
pub(super) struct RuleRefusal {
    code: String,
    message: String,
}

impl From<infhub_core::ledger::CustodialResult> for CustodialResultView {
    fn from(r: infhub_core::ledger::CustodialResult) -> Self {
        use infhub_core::ledger::CustodialResult as R;
        match r {
            R::Moved { credit } => CustodialResultView::Moved { credit },
            R::Duplicate { first_seq } => CustodialResultView::Duplicate { first_seq },
            R::Rejected { error } => {
                CustodialResultView::Rejected { error: RuleRefusal { code: error.code(), message: error.to_string() } }
            }
        }
    }
}

/// A custodial account's new API key, shown once.
#[derive(Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct KeyRotated {
    #[schemars(with = "infhub_core::schema::AddressSchema")]
    account: Address,
    api_key: String,
    note: &'static str,
}

/// `POST /v1/custodial/accounts/{account}/key-rotations`: replaces the account's API key with a
/// fresh one, shown once (the operator's or the account's own key may ask; the old key stops
/// working when this answers).
pub(super) async fn rotate_custodial_key(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(account): Path<Address>,
) -> Result<Json<KeyRotated>, ApiError> {
    api.may_move(&headers, &account)?;
    if api.node.read().ledger().custodial(&account).is_none() {
        return Err(Error::NotCustodial.into());
    }
    let (api_key, api_key_hash) = new_custodial_key(&account)?;
    match api.node.execute(Command::RotateCustodialKey { account, api_key_hash }).await?? {
        Outcome::CustodialKeyRotated => Ok(Json(KeyRotated {
            account,
            api_key,
            note: "the new API key is shown once; the old one no longer works",
        })),
        other => Err(unexpected(&other)),
    }
}
