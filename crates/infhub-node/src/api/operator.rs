//! The operator's endpoints: purchases, hub closes, liquidity and the reserve, solvency,
//! reconciliation, and opening custodial accounts.

use super::*;

/// The credit of the purchase `user` received at `seq`.
pub(super) async fn purchase_credit(
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

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct PurchaseRequest {
    #[schemars(with = "infhub_core::schema::AddressSchema")]
    user: Address,
    amount: Amount,
    #[schemars(with = "infhub_core::schema::WordSchema")]
    purchase_id: B256,
}

/// A purchase's outcome: the hub's credit to a channel, or a custodial account credited.
#[derive(Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct PurchaseAnswer {
    /// The hub's credit of the amount (a channel account).
    #[serde(skip_serializing_if = "Option::is_none")]
    credit: Option<infhub_core::messages::SignedCredit>,
    /// Set for a custodial account (credited in the ledger, no proof).
    #[serde(skip_serializing_if = "Option::is_none")]
    custodial: Option<bool>,
    /// Whether this purchase id was applied before (the first result again).
    replayed: bool,
    /// A replayed custodial purchase: where it was first applied.
    #[serde(skip_serializing_if = "Option::is_none")]
    first_seq: Option<u64>,
}

pub(super) async fn purchase(
    State(api): State<Api>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<PurchaseRequest>,
) -> Result<Json<PurchaseAnswer>, ApiError> {
    api.operator(&headers)?;
    let cmd = Command::Purchase { user: req.user, amount: req.amount, purchase_id: req.purchase_id };
    if api.node.read().ledger().custodial(&req.user).is_some() {
        return match api.node.execute(cmd).await?? {
            Outcome::CustodialCredited => {
                Ok(Json(PurchaseAnswer { credit: None, custodial: Some(true), replayed: false, first_seq: None }))
            }
            Outcome::Duplicate { first_seq } => Ok(Json(PurchaseAnswer {
                credit: None,
                custodial: Some(true),
                replayed: true,
                first_seq: Some(first_seq),
            })),
            other => Err(unexpected(&other)),
        };
    }
    let (credit, replayed) = match api.node.execute(cmd).await?? {
        Outcome::Credited(c) => (c, false),
        Outcome::Duplicate { first_seq } => match purchase_credit(&api, &req.user, first_seq).await? {
            Some(c) => (c, true),
            None => return Err(ApiError::new(NodeError::HistoryMissing, "purchase not in history")),
        },
        other => return Err(unexpected(&other)),
    };
    if credit.message.user != req.user {
        return Err(Error::PaymentIdReused.into());
    }
    Ok(Json(PurchaseAnswer { credit: Some(credit), custodial: None, replayed, first_seq: None }))
}

#[derive(Deserialize, schemars::JsonSchema)]
pub(super) struct CloseRequest {
    #[schemars(with = "infhub_core::schema::AddressSchema")]
    user: Address,
}

/// A transaction the hub sent for the operator.
#[derive(Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct SentTx {
    /// The account it concerns (a hub close).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<infhub_core::schema::AddressSchema>")]
    user: Option<Address>,
    /// The recipient (an executed reserve withdrawal).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<infhub_core::schema::AddressSchema>")]
    to: Option<Address>,
    /// The amount (an announced reserve withdrawal, earmarked first).
    #[serde(skip_serializing_if = "Option::is_none")]
    amount: Option<Amount>,
    #[serde(skip_serializing_if = "Option::is_none")]
    earmarked: Option<bool>,
    #[schemars(with = "infhub_core::schema::WordSchema")]
    tx_hash: B256,
}

impl SentTx {
    fn new(tx_hash: B256) -> SentTx {
        SentTx { user: None, to: None, amount: None, earmarked: None, tx_hash }
    }
}

pub(super) async fn hub_close(
    State(api): State<Api>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<CloseRequest>,
) -> Result<Json<SentTx>, ApiError> {
    api.operator(&headers)?;
    let channel = api.node.read().ledger().account(&req.user).map(|a| (a.channel.debit, a.channel.status));
    let Some((debit, status)) = channel else { return Err(Error::UnknownAccount.into()) };
    if status != Status::Open {
        // Closing or settled already: a named refusal, not the contract's revert.
        return Err(Error::ChannelNotOpen.into());
    }
    let tx = send_hub_tx(&api, HubTx::HubClose { user: req.user, debit }).await?;
    Ok(Json(SentTx { user: Some(req.user), ..SentTx::new(tx) }))
}

#[derive(Deserialize)]
pub(super) struct AccountListQuery {
    after: Option<Address>,
    limit: Option<usize>,
    prefix: Option<String>,
    kind: Option<String>,
    state: Option<String>,
    frozen: Option<bool>,
}

/// A page of the operator's list of accounts.
#[derive(Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct AccountsPage {
    accounts: Vec<infhub_core::ledger::AccountSummary>,
    /// The `after` of the next page (none: this is the last).
    #[schemars(with = "Option<infhub_core::schema::AddressSchema>")]
    next_after: Option<Address>,
}

/// The operator's list of accounts (spec §5.22): a page in address order after `after`,
/// filtered by `prefix` (hex), `kind` (`channel`, `custodial`), `state` (`open`, `closing`,
/// `settled`, `custodial`) and `frozen`.
pub(super) async fn accounts(
    State(api): State<Api>,
    headers: HeaderMap,
    Query(q): Query<AccountListQuery>,
) -> Result<Json<AccountsPage>, ApiError> {
    use infhub_core::ledger::{AccountFilter, MAX_ACCOUNTS_PER_PAGE};
    api.operator(&headers)?;
    let max = api.node.config.limits.max_page_size.min(MAX_ACCOUNTS_PER_PAGE);
    let limit = page_limit(q.limit, max)?;
    let custodial = match q.kind.as_deref() {
        None => None,
        Some("channel") => Some(false),
        Some("custodial") => Some(true),
        Some(other) => {
            return Err(ApiError::new(NodeError::MalformedRequest, format!("kind {other}: use channel or custodial")))
        }
    };
    if let Some(state) = q.state.as_deref().filter(|s| !matches!(*s, "open" | "closing" | "settled" | "custodial")) {
        return Err(ApiError::new(
            NodeError::MalformedRequest,
            format!("state {state}: use open, closing, settled or custodial"),
        ));
    }
    if let Some(p) = q.prefix.as_deref() {
        let hex = p.trim_start_matches("0x");
        if hex.len() > 40 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(ApiError::new(NodeError::MalformedRequest, format!("prefix {p}: up to 40 hex digits")));
        }
    }
    let filter = AccountFilter { prefix: q.prefix, custodial, state: q.state, frozen: q.frozen };
    let page = api.node.read().ledger().account_page(q.after, limit, &filter);
    let next = if page.len() == limit { page.last().map(|s| s.address) } else { None };
    Ok(Json(AccountsPage { accounts: page, next_after: next }))
}

#[derive(Deserialize, schemars::JsonSchema)]
pub(super) struct FreezeRequest {
    #[schemars(with = "infhub_core::schema::AddressSchema")]
    account: Address,
    frozen: bool,
}

/// A freeze or unfreeze, and whether it changed anything.
#[derive(Serialize, schemars::JsonSchema)]
pub(super) struct FreezeAnswer {
    #[schemars(with = "infhub_core::schema::AddressSchema")]
    account: Address,
    frozen: bool,
    changed: bool,
}

/// Freezes or unfreezes an account (spec §5.20): a frozen account neither pays nor is paid off
/// chain; its exit on chain is unaffected.
pub(super) async fn freeze(
    State(api): State<Api>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<FreezeRequest>,
) -> Result<Json<FreezeAnswer>, ApiError> {
    api.operator(&headers)?;
    match api.node.execute(Command::SetFrozen { account: req.account, frozen: req.frozen }).await?? {
        Outcome::FrozenSet { changed } => Ok(Json(FreezeAnswer { account: req.account, frozen: req.frozen, changed })),
        other => Err(unexpected(&other)),
    }
}

/// Hands a transaction to the chain task and waits for it to be sent.
pub(super) async fn send_hub_tx(api: &Api, tx: HubTx) -> Result<B256, ApiError> {
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
/// The liquidity picture (`GET /v1/operator/liquidity`).
#[derive(Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct LiquidityAnswer {
    liquidity: infhub_core::ledger::Liquidity,
    confirmed_block: u64,
    head: u64,
    free_reserve_low: bool,
    duties: infhub_hub::duties::DutyCounters,
    policy: LiquidityPolicy,
}

/// The node's liquidity settings (`[liquidity]`).
#[derive(Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct LiquidityPolicy {
    realize_when_free_reserve_below: Amount,
    realize_when_payer_reaches: Amount,
    max_realizations_per_tx: usize,
    low_free_reserve_below: Amount,
}

pub(super) async fn liquidity(State(api): State<Api>, headers: HeaderMap) -> Result<Json<LiquidityAnswer>, ApiError> {
    api.operator(&headers)?;
    let (liquidity, block) = {
        let st = api.node.read();
        refuse_any_unconfirmed(&st)?;
        (st.ledger().liquidity(), st.ledger().block)
    };
    let view = api.node.chain_view();
    let l = &api.node.config.liquidity;
    Ok(Json(LiquidityAnswer {
        liquidity,
        confirmed_block: block,
        head: view.head,
        free_reserve_low: view.low_free_reserve,
        duties: view.counters,
        policy: LiquidityPolicy {
            realize_when_free_reserve_below: l.realize_when_free_reserve_below,
            realize_when_payer_reaches: l.realize_when_payer_reaches,
            max_realizations_per_tx: l.max_realizations_per_tx,
            low_free_reserve_below: l.low_free_reserve_below,
        },
    }))
}

#[derive(Deserialize, schemars::JsonSchema)]
pub(super) struct AmountRequest {
    amount: Amount,
}

/// A reserve top-up's two transactions.
#[derive(Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct TopUpAnswer {
    amount: Amount,
    #[schemars(with = "infhub_core::schema::WordSchema")]
    approve_tx_hash: B256,
    #[schemars(with = "infhub_core::schema::WordSchema")]
    deposit_tx_hash: B256,
}

/// Tops the reserve up from the hub key's own tokens: an allowance for the contract, then
/// `depositReserve`. The ledger counts it once `ReserveDeposited` is confirmed.
pub(super) async fn reserve_top_up(
    State(api): State<Api>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<AmountRequest>,
) -> Result<Json<TopUpAnswer>, ApiError> {
    api.operator(&headers)?;
    if req.amount.is_zero() {
        return Err(Error::AmountMustNotBeZero.into());
    }
    let contract = api.node.domain.verifying_contract;
    let approve = HubTx::ApproveToken { token: api.node.token, spender: contract, amount: req.amount };
    let approved = send_hub_tx(&api, approve).await?;
    let deposited = send_hub_tx(&api, HubTx::DepositReserve(req.amount)).await?;
    Ok(Json(TopUpAnswer { amount: req.amount, approve_tx_hash: approved, deposit_tx_hash: deposited }))
}

/// Announces a reserve withdrawal through the ledger's rule: the amount is earmarked first
/// (refused if it would leave the reserve short of what it covers, or one is pending), then
/// announced on chain; it can execute after the contract's notice.
pub(super) async fn reserve_withdrawal_announce(
    State(api): State<Api>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<AmountRequest>,
) -> Result<Json<SentTx>, ApiError> {
    api.operator(&headers)?;
    match api.node.execute(Command::EarmarkReserveWithdrawal { amount: req.amount }).await?? {
        Outcome::Earmarked => {}
        other => return Err(unexpected(&other)),
    }
    match send_hub_tx(&api, HubTx::AnnounceReserveWithdrawal(req.amount)).await {
        Ok(tx) => Ok(Json(SentTx { amount: Some(req.amount), earmarked: Some(true), ..SentTx::new(tx) })),
        Err(e) => {
            // Not announced: the earmark goes, so the reserve is not held back for nothing.
            let _ = api.node.execute(Command::ReleaseReserveEarmark).await;
            Err(e)
        }
    }
}

#[derive(Deserialize, schemars::JsonSchema)]
pub(super) struct ExecuteWithdrawalRequest {
    #[schemars(with = "infhub_core::schema::AddressSchema")]
    to: Address,
}

/// Executes the announced reserve withdrawal (after its notice, before it expires).
pub(super) async fn reserve_withdrawal_execute(
    State(api): State<Api>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<ExecuteWithdrawalRequest>,
) -> Result<Json<SentTx>, ApiError> {
    api.operator(&headers)?;
    if api.node.read().ledger().reserve_withdrawal.is_none() {
        return Err(Error::NoReserveWithdrawalPending.into());
    }
    let tx = send_hub_tx(&api, HubTx::ExecuteReserveWithdrawal(req.to)).await?;
    Ok(Json(SentTx { to: Some(req.to), ..SentTx::new(tx) }))
}

/// Cancels the reserve withdrawal: on chain if it was announced there, else only its earmark.
/// A cancelled reserve withdrawal: released in the ledger only, or cancelled on chain.
#[derive(Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct CancelAnswer {
    #[serde(skip_serializing_if = "Option::is_none")]
    released: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<infhub_core::schema::WordSchema>")]
    tx_hash: Option<B256>,
}

pub(super) async fn reserve_withdrawal_cancel(
    State(api): State<Api>,
    headers: HeaderMap,
) -> Result<Json<CancelAnswer>, ApiError> {
    api.operator(&headers)?;
    if api.node.read().ledger().reserve_withdrawal.is_none() {
        return match api.node.execute(Command::ReleaseReserveEarmark).await?? {
            Outcome::Earmarked => Ok(Json(CancelAnswer { released: Some(true), tx_hash: None })),
            other => Err(unexpected(&other)),
        };
    }
    let tx = send_hub_tx(&api, HubTx::CancelReserveWithdrawal).await?;
    Ok(Json(CancelAnswer { released: None, tx_hash: Some(tx) }))
}

/// The solvency report.
#[derive(Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct Solvency {
    contract_token_balance: String,
    contract_reserve: String,
    contract_total_channel_funds: String,
    /// Token balance covers reserve + channel funds + escrow (more is excess, not an imbalance).
    contract_balanced: bool,
    /// The escrow settled closes hold for their registered locks (spec §5.11a).
    contract_total_escrow: String,
    /// Tokens held beyond reserve, channel funds and escrow (sent outside the contract's functions).
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

pub(super) async fn solvency(State(api): State<Api>, headers: HeaderMap) -> Result<Json<Solvency>, ApiError> {
    api.operator(&headers)?;
    refuse_any_unconfirmed(&api.node.read())?;
    let n = &api.node;
    let contract = n.domain.verifying_contract;
    let rpc = |e: String| ApiError::new(NodeError::ChainUnavailable, e);
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
    let escrow = call(contract, IInfHub::totalEscrowCall {}.abi_encode()).await.map_err(rpc)?;
    let escrow = IInfHub::totalEscrowCall::abi_decode_returns(&escrow).map_err(|e| rpc(e.to_string()))?;
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
        contract_balanced: bal >= res + funds + escrow,
        contract_total_escrow: escrow.to_string(),
        contract_excess: bal.saturating_sub(res + funds + escrow).to_string(),
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
    Ok(Json(report))
}

pub(super) async fn reconciliation(
    State(api): State<Api>,
    headers: HeaderMap,
) -> Result<Json<crate::reconcile::Report>, ApiError> {
    api.operator(&headers)?;
    refuse_any_unconfirmed(&api.node.read())?;
    let report =
        crate::reconcile::reconcile(&api.node).await.map_err(|e| ApiError::new(NodeError::ChainUnavailable, e))?;
    api.node.metrics.reconciliation(report.discrepancies.len() as u64, true);
    Ok(Json(report))
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct OpenCustodialRequest {
    user_id: String,
}

/// A custodial account opened, with its API key (shown once).
#[derive(Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct CustodialOpened {
    user_id: String,
    #[schemars(with = "infhub_core::schema::AddressSchema")]
    account: Address,
    api_key: String,
    note: &'static str,
}

pub(super) async fn open_custodial(
    State(api): State<Api>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<OpenCustodialRequest>,
) -> Result<Json<CustodialOpened>, ApiError> {
    api.operator(&headers)?;
    if !infhub_core::ledger::valid_user_id(&req.user_id) {
        return Err(ApiError::new(NodeError::InvalidUserId, "userId must be 1..=64 characters of A-Z a-z 0-9 . _ @ -"));
    }
    let account = infhub_core::ledger::custodial_address(&req.user_id);
    let (api_key, api_key_hash) = new_custodial_key(&account)?;
    match api.node.execute(Command::OpenCustodial { account, api_key_hash }).await?? {
        Outcome::CustodialOpened => Ok(Json(CustodialOpened {
            user_id: req.user_id,
            account,
            api_key,
            note: "the API key is shown once; the hub stores only its hash",
        })),
        other => Err(unexpected(&other)),
    }
}
