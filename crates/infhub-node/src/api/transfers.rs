//! Payments (one or a batch, each answered as it was first applied) and cooperative
//! withdrawals: authorized by the user's own signature.

use super::*;
use infhub_core::channel::CheckedDebit;

#[derive(Deserialize, schemars::JsonSchema)]
pub(super) struct TransferBatch {
    transfers: Vec<SignedDebit>,
}

/// One answer of a transfer batch: the transfer's answer or its error.
// Answers are the common case; boxing them would allocate per transfer.
#[allow(clippy::large_enum_variant)]
#[derive(Serialize, schemars::JsonSchema)]
#[serde(untagged)]
pub(super) enum BatchItem {
    Answered(TransferAnswer),
    Failed(ErrorAnswer),
}

/// The answer to a batch: one item per transfer, in order.
#[derive(Serialize, schemars::JsonSchema)]
pub(super) struct BatchAnswer {
    results: Vec<BatchItem>,
}

/// Many signed transfers in one request: each is queued as its own command, in order (so one
/// payer's nonces apply in sequence), and each gets its own result or error, exactly as
/// `/v1/transfers` would answer it.
pub(super) async fn transfer_batch(
    State(api): State<Api>,
    ApiJson(req): ApiJson<TransferBatch>,
) -> Result<Json<BatchAnswer>, ApiError> {
    let max = api.node.config.limits.max_transfers_per_request;
    if req.transfers.is_empty() || req.transfers.len() > max {
        return Err(ApiError::new(NodeError::RequestLimitExceeded, format!("1..={max} transfers per request")));
    }
    // Signatures checked here (as `Node::submit` would), so only a payer's own signed writes
    // draw on her budget: each payer's writes in the batch, all or none of the batch.
    let checked: Vec<Option<CheckedDebit>> =
        req.transfers.iter().map(|d| CheckedDebit::check(*d, &api.node.domain).ok()).collect();
    take_payers_writes(&api, checked.iter().flatten().map(|c| c.debit().message.user))?;
    // Queued one after another, so one payer's nonces apply in order; answered after the fsync.
    let mut pending = Vec::with_capacity(req.transfers.len());
    for (debit, checked) in req.transfers.into_iter().zip(checked) {
        pending.push((debit, api.node.submit_checked(Command::Transfer(debit), checked)));
    }
    Ok(Json(answer_each(&api, pending).await))
}

/// Waits for one queued transfer and answers it as `/v1/transfers` does.
async fn answer_queued(api: &Api, (debit, queued): Forwarded) -> Result<TransferAnswer, ApiError> {
    let rx = queued?;
    let sequenced = rx.await.unwrap_or(Err(WriteError::Stopped))?;
    transfer_answer(api, &debit, sequenced)
}

/// Waits for each queued transfer in order; each gets its answer or its error.
async fn answer_each(api: &Api, pending: Vec<Forwarded>) -> BatchAnswer {
    let mut results = Vec::with_capacity(pending.len());
    for queued in pending {
        results.push(match answer_queued(api, queued).await {
            Ok(a) => BatchItem::Answered(a),
            Err(e) => BatchItem::Failed(e.answer()),
        });
    }
    BatchAnswer { results }
}

pub(super) async fn transfer(
    State(api): State<Api>,
    ApiJson(debit): ApiJson<SignedDebit>,
) -> Result<Json<TransferAnswer>, ApiError> {
    // Checked here (as `Node::submit` would): a forged debit draws nothing from the payer's
    // budget, and the ledger names what it breaks.
    let checked = CheckedDebit::check(debit, &api.node.domain).ok();
    if checked.is_some() {
        api.take_writes(debit.message.user, 1)?;
    }
    let queued = api.node.submit_checked(Command::Transfer(debit), checked)?;
    let sequenced = queued.await.unwrap_or(Err(WriteError::Stopped))?;
    transfer_answer(&api, &debit, sequenced).map(Json)
}

/// The answer to one applied transfer (serialized directly, without a JSON tree).
#[derive(Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct TransferAnswer {
    result: PaymentResult,
    replayed: bool,
    payout_status: Option<PayoutStatus>,
}

/// The answer to one applied (or refused) transfer: its first result, for a retry too.
pub(super) fn transfer_answer(
    api: &Api,
    debit: &SignedDebit,
    sequenced: crate::engine::Sequenced,
) -> Result<TransferAnswer, ApiError> {
    let (payer, id) = (debit.message.user, debit.message.payment_id);
    let history = || history_of(api, &payer);
    let applied = match payment_answer(history, &api.node.domain, debit, sequenced) {
        Ok(a) => a,
        Err(NotApplied::Refused(e)) => return Err(e.into()),
        Err(NotApplied::Refunded { refused, refund }) => return Err(ApiError::refunded(&refused, *refund)),
        Err(NotApplied::History(e)) => {
            tracing::error!(%e, "history read failed");
            return Err(ApiError::new(NodeError::HistoryUnavailable, e));
        }
        Err(NotApplied::Missing) => {
            tracing::error!(%payer, %id, "an applied payment is missing from the history");
            return Err(ApiError::new(NodeError::HistoryMissing, "applied payment not in history"));
        }
    };
    // Only external payments have a payout.
    let payout_status = applied.result.payout.is_some().then(|| payout_status_of(api, payer, id));
    Ok(TransferAnswer { result: applied.result, replayed: applied.replayed, payout_status })
}

#[derive(Deserialize, schemars::JsonSchema)]
pub(super) struct WithdrawRequest {
    withdrawal: Withdrawal,
    signature: Signature,
}

/// A withdrawal co-signed by the hub: both signatures, for the user to send `withdraw`.
#[derive(Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct WithdrawalAnswer {
    withdrawal: Withdrawal,
    user_signature: Signature,
    hub_signature: Signature,
}

pub(super) async fn withdraw(
    State(api): State<Api>,
    ApiJson(req): ApiJson<WithdrawRequest>,
) -> Result<Json<WithdrawalAnswer>, ApiError> {
    let signed = Signed { message: req.withdrawal, signature: req.signature };
    if signed.verify(&api.node.domain, req.withdrawal.user).is_ok() {
        api.take_writes(req.withdrawal.user, 1)?;
    }
    let cmd = Command::Withdraw { withdrawal: req.withdrawal, user_signature: req.signature };
    match api.node.execute(cmd).await?? {
        Outcome::WithdrawalCoSigned { withdrawal, hub_signature } => {
            Ok(Json(WithdrawalAnswer { withdrawal, user_signature: req.signature, hub_signature }))
        }
        other => Err(unexpected(&other)),
    }
}

/// A front-end's forwarded transfers, queued now in the order given (so one payer's nonces
/// apply in sequence): each debit with whether the front-end checked its signature (spec §7,
/// front-ends). Answer them with [`forwarded_answer`].
pub(crate) fn forward(node: &crate::engine::Node, debits: Vec<(SignedDebit, bool)>) -> Vec<Forwarded> {
    debits
        .into_iter()
        .map(|(debit, vouched)| {
            let checked = if vouched {
                Some(infhub_core::channel::CheckedDebit::vouched(debit, &node.domain))
            } else {
                infhub_core::channel::CheckedDebit::check(debit, &node.domain).ok()
            };
            (debit, node.submit_checked(Command::Transfer(debit), checked))
        })
        .collect()
}

/// Draws forwarded transfers' writes from their payers' budgets, as `/v1/transfers` and
/// `/v1/transfers/batch` do on the writer: per payer, all or none, and only for debits the
/// front-end vouched for or that carry their payer's valid signature. `Err` is the refusal
/// (`account_rate_limited`) the front-end passes on.
pub(crate) fn take_forwarded_writes(api: &Api, debits: &[(SignedDebit, bool)]) -> Result<(), ApiError> {
    let signed = debits.iter().filter(|(d, vouched)| *vouched || d.verify(&api.node.domain, d.message.user).is_ok());
    take_payers_writes(api, signed.map(|(d, _)| d.message.user))
}

/// One write from each payer's budget per debit of hers in `payers`, per payer all or none.
fn take_payers_writes(api: &Api, payers: impl IntoIterator<Item = Address>) -> Result<(), ApiError> {
    let mut per_payer: HashMap<Address, u32> = HashMap::new();
    for payer in payers {
        *per_payer.entry(payer).or_default() += 1;
    }
    for (payer, writes) in per_payer {
        api.take_writes(payer, writes)?;
    }
    Ok(())
}

/// The status and body of `response`, for a front-end's answer frame.
pub(crate) async fn response_parts(response: axum::response::Response) -> (u16, Vec<u8>) {
    let status = response.status().as_u16();
    match axum::body::to_bytes(response.into_body(), usize::MAX).await {
        Ok(body) => (status, body.to_vec()),
        Err(e) => (500, format!("{{\"error\":{{\"code\":\"internal_error\",\"message\":\"{e}\"}}}}").into_bytes()),
    }
}

/// A forwarded transfer and its place in the write queue (or why it has none).
pub(crate) type Forwarded =
    (SignedDebit, Result<oneshot::Receiver<Result<crate::engine::Sequenced, WriteError>>, WriteError>);

/// The status and JSON body the writer's own `/v1/transfers` (one transfer, `batch` false) or
/// `/v1/transfers/batch` would have answered for `pending`.
pub(crate) async fn forwarded_answer(api: &Api, pending: Vec<Forwarded>, batch: bool) -> (u16, Vec<u8>) {
    let max = api.node.config.limits.max_transfers_per_request;
    let response = if pending.is_empty() || pending.len() > max || (!batch && pending.len() != 1) {
        ApiError::new(NodeError::RequestLimitExceeded, format!("1..={max} transfers per request")).into_response()
    } else if batch {
        Json(answer_each(api, pending).await).into_response()
    } else {
        let queued = pending.into_iter().next().expect("one transfer");
        match answer_queued(api, queued).await {
            Ok(a) => Json(a).into_response(),
            Err(e) => e.into_response(),
        }
    };
    response_parts(response).await
}
