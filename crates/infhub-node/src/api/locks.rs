//! Point locks over the API (spec §5.17b): a locked transfer to another account of this hub,
//! a payee's reveal of her scalar (the hub settles its lock to her and keeps the scalar for the
//! payer), and the payer's settlement or drop of her own lock. Authorized by what is inside:
//! the payer's signature on her debit; a reveal by the scalar itself, which can only pay the
//! lock's receiver, so anyone may deliver it.

use super::*;
use infhub_core::channel::LockChange;
use infhub_core::point_lock::{Lock, Scalar};

/// `feature_disabled` unless the operator opened the lock endpoints (`node.locked_transfers`).
fn require_enabled(api: &Api) -> Result<(), ApiError> {
    if api.node.config.node.locked_transfers {
        Ok(())
    } else {
        Err(ApiError::new(
            NodeError::FeatureDisabled,
            "locked transfers are turned off on this hub (node.locked_transfers)",
        ))
    }
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct LockedTransferRequest {
    debit: SignedDebit,
    lock: Lock,
    #[schemars(with = "infhub_core::schema::AddressSchema")]
    payee: Address,
}

/// The hub's answer to a lock debit (a locked transfer, a forward, a settle, drop or cancel):
/// its receipt of the payer's signed debit, and what the endpoint adds.
#[derive(Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct LockAnswer {
    receipt: infhub_core::messages::SignedReceipt,
    /// Whether this is the first answer again (the same signed debit was applied before).
    replayed: bool,
    /// A locked transfer: the nonce of the payee's credit that carries the hub's lock to her.
    #[serde(skip_serializing_if = "Option::is_none")]
    payee_credit_nonce: Option<u64>,
    /// A locked transfer: the hub's lock to the payee.
    #[serde(skip_serializing_if = "Option::is_none")]
    payee_lock: Option<Lock>,
    /// A forward: the next hub's answer (`nextHubAnswer`) or its refusal (`error`); for a
    /// split payment, `parts` (one of those each) and an `error` when every part failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    forwarded: Option<Value>,
    /// A split payment's part at the payee's hub: what is collected so far, or an `error`.
    #[serde(skip_serializing_if = "Option::is_none")]
    collected: Option<Value>,
}

impl LockAnswer {
    fn new(receipt: infhub_core::messages::SignedReceipt, replayed: bool) -> LockAnswer {
        LockAnswer { receipt, replayed, payee_credit_nonce: None, payee_lock: None, forwarded: None, collected: None }
    }
}

/// The hub's credit carrying a settled lock's amount to the user.
#[derive(Serialize, schemars::JsonSchema)]
pub(super) struct RevealAnswer {
    credit: infhub_core::messages::SignedCredit,
}

/// Pays another account of this hub by point lock: answered with the hub's receipt of the
/// payer's lock and the expiry of the hub's lock to the payee.
pub(super) async fn locked_transfer(
    State(api): State<Api>,
    ApiJson(req): ApiJson<LockedTransferRequest>,
) -> Result<Json<LockAnswer>, ApiError> {
    require_enabled(&api)?;
    api.take_signed_writes(&req.debit)?;
    let cmd = Command::LockedTransfer { debit: req.debit, lock: req.lock, payee: req.payee };
    let outcome = match api.node.execute(cmd).await? {
        Err(Error::NonceMustIncrease) => return replayed(&api, &req.debit).await,
        other => other?,
    };
    match outcome {
        Outcome::LockedTransferApplied { receipt, payee_credit } => {
            let payee_lock = api
                .node
                .read()
                .ledger()
                .account(&req.payee)
                .and_then(|a| a.channel.credit_locks.get(&req.lock.lock_id).copied());
            let mut answer = LockAnswer::new(receipt, false);
            answer.payee_credit_nonce = Some(payee_credit.message.nonce);
            answer.payee_lock = payee_lock;
            Ok(Json(answer))
        }
        other => Err(unexpected(&other)),
    }
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct RevealRequest {
    #[schemars(with = "infhub_core::schema::AddressSchema")]
    user: Address,
    #[schemars(with = "infhub_core::schema::WordSchema")]
    lock_id: B256,
    scalar: Scalar,
}

/// The receiver of one of the hub's locks reveals its scalar: the hub settles the lock into her
/// running total and answers with the new credit.
pub(super) async fn reveal(
    State(api): State<Api>,
    ApiJson(req): ApiJson<RevealRequest>,
) -> Result<Json<RevealAnswer>, ApiError> {
    require_enabled(&api)?;
    let change = LockChange::Settle { lock_id: req.lock_id, scalar: req.scalar };
    match api.node.execute(Command::CreditLock { user: req.user, change }).await?? {
        Outcome::CreditLockIssued { credit, .. } => Ok(Json(RevealAnswer { credit })),
        other => Err(unexpected(&other)),
    }
}

#[derive(Deserialize, serde::Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct ForwardedTransferRequest {
    debit: SignedDebit,
    lock: Lock,
    invoice: infhub_core::invoice::SignedInvoice,
    /// The lock's point in full, for a routed forward (spec §5.23b).
    #[serde(default)]
    #[schemars(with = "Option<infhub_core::schema::CompressedPointSchema>")]
    lock_point: Option<alloy::primitives::FixedBytes<33>>,
    /// The quote this hub gave its payer.
    #[serde(default)]
    #[schemars(with = "Option<infhub_core::schema::WordSchema>")]
    quote_id: Option<B256>,
    /// The steps from this hub on, each sealed to its hub, given by the hub before it (spec
    /// §5.23d).
    #[serde(default)]
    route: Option<Vec<crate::links::SealedStep>>,
    /// The payer's steps of every part of a quoted payment, each sealed to its hub.
    #[serde(default)]
    parts: Option<Vec<Vec<crate::links::SealedStep>>>,
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct QuoteRequest {
    invoice: infhub_core::invoice::SignedInvoice,
    /// The payer, whose recent failed payments the route search weighs (spec §5.18).
    #[serde(default)]
    #[schemars(with = "Option<infhub_core::schema::AddressSchema>")]
    payer: Option<Address>,
}

/// Quotes paying an invoice at another hub (spec §5.23b): the route, its fees, the lock's
/// point and amount and expiry, and the tweak sum that links the lock's point to the invoice's.
pub(super) async fn payment_quote(
    State(api): State<Api>,
    ApiJson(req): ApiJson<QuoteRequest>,
) -> Result<Json<crate::links::QuoteAnswer>, ApiError> {
    require_enabled(&api)?;
    let block = api.node.read().ledger().block;
    Ok(Json(api.node.links.quote(&req.invoice, req.payer, block).await?))
}

/// Pays an invoice of a payee at another hub (spec §5.23a): the payer's lock to this hub is
/// committed (after the forward's intent is on disk), then the invoice is paid over the link to
/// the payee's hub with an earlier expiry. Answered with the receipt of the payer's lock and
/// the next hub's answer (or its refusal: the lock then stays until its expiry).
pub(super) async fn forwarded_transfer(
    State(api): State<Api>,
    ApiJson(req): ApiJson<ForwardedTransferRequest>,
) -> Result<Json<LockAnswer>, ApiError> {
    require_enabled(&api)?;
    api.take_signed_writes(&req.debit)?;
    let payer = req.debit.message.user;
    if req.debit.verify(&api.node.domain, payer).is_err() {
        return Err(Error::InvalidSignature.into());
    }
    // One at a time per payer, and a refusal final for its signed debit (spec §5.23a step 3).
    let guard = api.refusals.clone();
    let _one_at_a_time = guard.one_at_a_time(payer).await;
    let request = refusal_guard::request_key(&req);
    if let Some(refusal) = guard.refusal_of(request) {
        return Err(refusal);
    }
    let answer = forward_once(&api, req).await;
    if let Err(refusal) = &answer {
        guard.remember(request, refusal);
    }
    answer
}

/// [`forwarded_transfer`] past its guard: a retry of a committed forward answered from the
/// first, or the forward planned, its intent recorded, the payer's lock committed and the
/// payment forwarded.
async fn forward_once(api: &Api, req: ForwardedTransferRequest) -> Result<Json<LockAnswer>, ApiError> {
    let payer = req.debit.message.user;
    if api.node.read().ledger().locks.scalar_for(&payer, &req.lock.lock_id).is_some()
        || api
            .node
            .read()
            .ledger()
            .account(&payer)
            .is_some_and(|a| a.channel.debit_locks.get(&req.lock.lock_id).is_some())
    {
        // A retry of a forward already committed: the first answer's receipt.
        return replayed(api, &req.debit).await;
    }
    let links = &api.node.links;
    let own_hub = links.routing.hub();
    let plans = match (&req.lock_point, req.quote_id, &req.route, &req.parts) {
        (None, None, None, None) => vec![links.plan_forward(payer, &req.lock, &req.invoice).await?],
        (Some(point), Some(id), None, Some(parts)) => {
            let quoted = links.quoted_parts(id, req.lock.lock_id)?;
            links.plan_parts(payer, &req.lock, point, &req.invoice, &quoted, parts).await?
        }
        (Some(point), None, Some(route), None) => {
            let Some((first, rest)) = route.split_first() else {
                return Err(ApiError::new(NodeError::MalformedRequest, "an empty route"));
            };
            let step = links.open_sealed_step(req.lock.lock_id, first)?;
            // The payee's hub's own step of a split payment: collect the part (spec §5.23c).
            if step.next_hub == own_hub && rest.is_empty() {
                return collect_part(api, req.debit, req.lock, point, &req.invoice, &step).await;
            }
            vec![links.plan_routed(payer, &req.lock, point, &req.invoice, (&step, rest), true).await?]
        }
        _ => {
            return Err(ApiError::new(
                NodeError::MalformedRequest,
                "a routed forward gives lockPoint with either quoteId and parts or route",
            ))
        }
    };
    for plan in &plans {
        api.node.links.record_intent(plan)?;
    }
    let cmd = Command::DebitLock { debit: req.debit, change: LockChange::Add(req.lock) };
    let outcome = match api.node.execute(cmd).await? {
        Ok(o) => o,
        Err(e) => {
            for plan in plans {
                api.node.links.abandon(plan);
            }
            return match e {
                Error::NonceMustIncrease => replayed(api, &req.debit).await,
                e => Err(e.into()),
            };
        }
    };
    let Outcome::DebitLockApplied { receipt, .. } = outcome else { return Err(unexpected(&outcome)) };
    let mut answers = Vec::with_capacity(plans.len());
    for plan in plans {
        answers.push(match api.node.links.forward(plan).await {
            Ok(answer) => json!({"nextHubAnswer": answer}),
            Err(e) => {
                let e = ApiError::from(e).answer();
                json!({"error": serde_json::to_value(e).unwrap_or_default()["error"]})
            }
        });
    }
    let forwarded = match answers.as_slice() {
        [one] => one.clone(),
        // Split: refused as a whole (the payer cancels) only when every part was.
        parts => {
            let all_failed = parts.iter().all(|a| a["error"].is_object());
            let error = if all_failed { parts[0]["error"].clone() } else { Value::Null };
            json!({"parts": parts, "error": error})
        }
    };
    let mut answer = LockAnswer::new(receipt, false);
    answer.forwarded = Some(forwarded);
    Ok(Json(answer))
}

/// A part of a split payment reaching the payee's hub (spec §5.23c): recorded, its lock
/// committed, then the invoice locked to the payee if the parts now cover it. Answered with the
/// receipt and what is collected.
async fn collect_part(
    api: &Api,
    debit: SignedDebit,
    lock: Lock,
    lock_point: &alloy::primitives::FixedBytes<33>,
    invoice: &infhub_core::invoice::SignedInvoice,
    step: &crate::links::RouteStep,
) -> Result<Json<LockAnswer>, ApiError> {
    let payer = debit.message.user;
    let collections = &api.node.links.collections;
    {
        let state = api.node.read();
        collections.record_part(state.ledger(), &api.node.domain, payer, &lock, lock_point, invoice, step)?;
    }
    let cmd = Command::DebitLock { debit, change: LockChange::Add(lock) };
    let outcome = match api.node.execute(cmd).await {
        Ok(Ok(o)) => o,
        refused => {
            collections.forget_part(invoice, payer);
            return match refused? {
                Err(Error::NonceMustIncrease) => replayed(api, &debit).await,
                Err(e) => Err(e.into()),
                Ok(_) => unreachable!("matched above"),
            };
        }
    };
    collections.part_committed(invoice.message.invoice_id, payer);
    let Outcome::DebitLockApplied { receipt, .. } = outcome else { return Err(unexpected(&outcome)) };
    let collected = match collections.complete(&api.node, invoice.message.invoice_id).await {
        Ok(c) => c,
        Err(e) => {
            let e = ApiError::from(e).answer();
            json!({"error": serde_json::to_value(e).unwrap_or_default()["error"]})
        }
    };
    let mut answer = LockAnswer::new(receipt, false);
    answer.collected = Some(collected);
    Ok(Json(answer))
}

#[derive(Deserialize, schemars::JsonSchema)]
pub(super) struct LockDebitRequest {
    debit: SignedDebit,
    change: LockChange,
}

/// The payer's signed settlement (with the scalar) or drop (after the expiry) of her lock, or
/// her cancel of a lock whose forward the next hub refused.
pub(super) async fn lock_debit(
    State(api): State<Api>,
    ApiJson(req): ApiJson<LockDebitRequest>,
) -> Result<Json<LockAnswer>, ApiError> {
    require_enabled(&api)?;
    api.take_signed_writes(&req.debit)?;
    let m = req.debit.message;
    let cmd = match req.change {
        // The hub agrees to cancel a lock whose forward the next hub refused (spec §5.23a), or
        // a part of a split payment it abandoned (§5.23c).
        LockChange::Cancel { lock_id }
            if lock_id == m.payment_id && api.node.links.agrees_to_cancel(m.user, lock_id) =>
        {
            Command::CancelForwardedLock { debit: req.debit }
        }
        change => Command::DebitLock { debit: req.debit, change },
    };
    let outcome = match api.node.execute(cmd).await? {
        Err(Error::NonceMustIncrease) => return replayed(&api, &req.debit).await,
        other => other?,
    };
    match outcome {
        Outcome::DebitLockApplied { receipt, .. } => Ok(Json(LockAnswer::new(receipt, false))),
        other => Err(unexpected(&other)),
    }
}

/// A retry of a lock debit the ledger already applied (its nonce is spent): the first answer's
/// receipt again, found in the payer's history by the lock id and the very same signed debit;
/// otherwise the refusal stands (`nonce_must_increase`).
async fn replayed(api: &Api, debit: &SignedDebit) -> Result<Json<LockAnswer>, ApiError> {
    let m = &debit.message;
    let entries = accounts::entries_with_id(api, m.user, m.payment_id).await?;
    let first = entries.iter().find_map(|e| match e.proofs.as_deref() {
        Some(infhub_ledger::history::EntryProofs::Paid { debit: d, receipt }) if d == debit => Some(receipt.clone()),
        _ => None,
    });
    match first {
        Some(receipt) => Ok(Json(LockAnswer::new(receipt, true))),
        None => Err(Error::NonceMustIncrease.into()),
    }
}

/// The account view's locks: the user's pending outgoing locks, each with the scalar the hub
/// learned for it (her proof of payment, and what she settles it with), and the hub's pending
/// locks to her.
/// An account's pending point locks, both directions (spec §5.17b).
#[derive(Serialize, schemars::JsonSchema)]
pub(super) struct LocksView {
    /// The user's locks to the hub, each with its scalar once the hub learned it.
    outgoing: Vec<OutgoingLock>,
    /// The hub's locks to the user.
    incoming: Vec<Lock>,
}

#[derive(Serialize, schemars::JsonSchema)]
pub(super) struct OutgoingLock {
    lock: Lock,
    scalar: Option<infhub_core::point_lock::Scalar>,
    /// The hub agrees to its cancel before its expiry: the payment it funds was refused on its
    /// way, or the payee's hub abandoned it (spec §5.23a, §5.23c).
    cancellable: bool,
}

pub(super) fn locks_view(
    ledger: &infhub_core::ledger::Ledger,
    links: &crate::links::Links,
    user: &Address,
    ch: &infhub_core::channel::ChannelState,
) -> LocksView {
    let cancellable = links.cancellable_locks(*user);
    let outgoing = ch
        .debit_locks
        .iter()
        .map(|l| OutgoingLock {
            lock: *l,
            scalar: ledger.locks.scalar_for(user, &l.lock_id),
            cancellable: cancellable.contains(&l.lock_id),
        })
        .collect();
    LocksView { outgoing, incoming: ch.credit_locks.iter().copied().collect() }
}
