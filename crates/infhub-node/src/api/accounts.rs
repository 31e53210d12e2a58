//! What a session may read of its own account: the account, its history, a payout's status and
//! the statement.

use super::*;

/// A channel's state in the hub's ledger.
#[derive(Serialize, schemars::JsonSchema)]
#[serde(tag = "state", rename_all = "snake_case", rename_all_fields = "camelCase")]
pub(super) enum ChannelStatusView {
    Open,
    Closing { settle_block: u64 },
    Settled,
}

/// What a session reads of its own account (`GET /v1/accounts/{user}`).
#[derive(Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct AccountAnswer {
    #[schemars(with = "infhub_core::schema::AddressSchema")]
    user: Address,
    epoch: u64,
    status: ChannelStatusView,
    /// What the user may spend now (zero once settled).
    balance: Amount,
    deposited: Amount,
    withdrawn: Amount,
    /// Withdrawn on chain, or co-signed and not yet expired.
    withdrawn_or_held: Amount,
    cumulative_debit: Amount,
    cumulative_credit: Amount,
    debit_nonce: u64,
    credit_nonce: u64,
    /// The user's newest debit the hub applied.
    latest_debit: Option<SignedDebit>,
    /// The hub's newest credit of the user.
    latest_credit: Option<infhub_core::messages::SignedCredit>,
    withdrawal_hold: Option<Withdrawal>,
    locks: locks::LocksView,
    frozen: bool,
    /// Deposits mined, not yet confirmed.
    pending_deposits: Vec<infhub_hub::status::PendingDeposit>,
    /// The ledger's confirmed block.
    confirmed_block: u64,
}

pub(super) async fn account(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(user): Path<Address>,
) -> Result<Json<AccountAnswer>, ApiError> {
    api.may_read(&headers, &user)?;
    let pending = api.node.chain_view().statuses.pending_deposits(&user).to_vec();
    let st = api.node.read();
    refuse_unconfirmed(&st, &user)?;
    let Some(a) = st.ledger().account(&user) else { return Err(Error::UnknownAccount.into()) };
    let ch = &a.channel;
    let status = match ch.status {
        Status::Open => ChannelStatusView::Open,
        Status::Closing { settle_block } => ChannelStatusView::Closing { settle_block },
        Status::Settled => ChannelStatusView::Settled,
    };
    Ok(Json(AccountAnswer {
        user,
        epoch: ch.epoch,
        status,
        // A settled channel was paid out on chain: nothing is left in it until it reopens.
        balance: if ch.status == Status::Settled { Amount::ZERO } else { ch.balance()? },
        deposited: ch.deposited,
        withdrawn: ch.withdrawn,
        withdrawn_or_held: ch.withdrawn_or_held(),
        cumulative_debit: ch.cumulative_debit(),
        cumulative_credit: ch.cumulative_credit(),
        debit_nonce: ch.debit_nonce(),
        credit_nonce: ch.credit_nonce(),
        latest_debit: ch.debit,
        latest_credit: ch.credit.clone(),
        withdrawal_hold: ch.withdrawal_hold,
        locks: locks::locks_view(st.ledger(), &api.node.links, &user, ch),
        frozen: st.ledger().frozen.contains(&user),
        pending_deposits: pending,
        confirmed_block: st.ledger().block,
    }))
}

#[derive(Deserialize)]
pub(super) struct PageQuery {
    before: Option<u64>,
    limit: Option<usize>,
    from: Option<String>,
    to: Option<String>,
}

/// A date range of a history or statement query: `from` and `to` (inclusive), each a number of
/// milliseconds since the Unix epoch, a UTC date `YYYY-MM-DD` (a `to` date includes its whole
/// day) or a UTC time `YYYY-MM-DDTHH:MM:SS[.mmm]Z`; open ends when absent. `None` when both
/// are. `malformed_request` for anything else, or a `from` after `to`.
fn date_range(from: Option<&str>, to: Option<&str>) -> Result<Option<(u64, u64)>, ApiError> {
    use infhub_ledger::history::{parse_utc_time, RangeEnd};
    if from.is_none() && to.is_none() {
        return Ok(None);
    }
    let parse = |text: Option<&str>, end: RangeEnd, open: u64, name: &str| match text {
        None => Ok(open),
        Some(t) => parse_utc_time(t, end).ok_or_else(|| {
            ApiError::new(
                NodeError::MalformedRequest,
                format!("{name}={t}: milliseconds since 1970, YYYY-MM-DD or YYYY-MM-DDTHH:MM:SS[.mmm]Z (UTC)"),
            )
        }),
    };
    let (from_ms, to_ms) = (parse(from, RangeEnd::From, 0, "from")?, parse(to, RangeEnd::To, u64::MAX, "to")?);
    if from_ms > to_ms {
        return Err(ApiError::new(NodeError::MalformedRequest, "from is after to"));
    }
    Ok(Some((from_ms, to_ms)))
}

/// A page of an account's history, newest first.
#[derive(Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct HistoryPage {
    pub(super) entries: Vec<infhub_ledger::history::HistoryEntry>,
    /// The `before` of the next page (none: this is the last).
    pub(super) next_before: Option<u64>,
}

pub(super) async fn history(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(user): Path<Address>,
    Query(q): Query<PageQuery>,
) -> Result<Json<HistoryPage>, ApiError> {
    api.may_read(&headers, &user)?;
    let max = api.node.config.limits.max_page_size;
    let limit = page_limit(q.limit, max)?;
    let range = date_range(q.from.as_deref(), q.to.as_deref())?;
    let (reader, heads) = history_of(&api, &user);
    let before = q.before.unwrap_or(u64::MAX);
    let entries = match (heads, range) {
        (Some(h), None) => read_history(move || reader.page(&user, h, before, limit)).await?,
        (Some(h), Some((from, to))) => {
            read_history(move || reader.page_between(&user, h, before, limit, from, to)).await?
        }
        (None, _) => Vec::new(),
    };
    // A record's entries are never split between pages, so a page may hold a few more.
    let next = if entries.len() >= limit { entries.last().map(|e| e.seq) } else { None };
    Ok(Json(HistoryPage { entries, next_before: next }))
}

/// An external payment's payout and where it stands.
#[derive(Serialize, schemars::JsonSchema)]
pub(super) struct PayoutAnswer {
    payout: infhub_core::ledger::Payout,
    status: PayoutStatus,
}

pub(super) async fn payout_status(
    State(api): State<Api>,
    headers: HeaderMap,
    Path((user, payment_id)): Path<(Address, B256)>,
) -> Result<Json<PayoutAnswer>, ApiError> {
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
        return Err(ApiError::new(NodeError::UnknownPayout, "no external payment with this id"));
    };
    let status = payout_status_of(&api, user, payment_id);
    Ok(Json(PayoutAnswer { payout, status }))
}

/// Entries read per step of a payment lookup.
const LOOKUP_PAGE_ENTRIES: usize = 500;

/// A payment by its id (spec §5.21): every entry of the account's recent history that carries
/// the id (paid, received, refunded, locked, settled, dropped, bought), newest first, with its
/// proofs, and the payment's status in one word. Reads back at most
/// `limits.max_payment_lookup_entries` entries; `unknown_payment` if none carries the id.
/// A payment found by its id: its status from the newest entry, and every entry with it.
#[derive(Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct PaymentAnswer {
    #[schemars(with = "infhub_core::schema::WordSchema")]
    payment_id: B256,
    /// `paid`, `received`, `refunded`, `locked`, `settled` or `dropped`.
    status: &'static str,
    entries: Vec<infhub_ledger::history::HistoryEntry>,
}

pub(super) async fn payment(
    State(api): State<Api>,
    headers: HeaderMap,
    Path((user, payment_id)): Path<(Address, B256)>,
) -> Result<Json<PaymentAnswer>, ApiError> {
    api.may_read(&headers, &user)?;
    let max = api.node.config.limits.max_payment_lookup_entries;
    let found = entries_with_id(&api, user, payment_id).await?;
    let Some(status) = payment_status(&found) else {
        return Err(ApiError::new(
            NodeError::UnknownPayment,
            format!("no entry of the newest {max} of this account carries payment id {payment_id}"),
        ));
    };
    Ok(Json(PaymentAnswer { payment_id, status, entries: found }))
}

/// The entries of `user`'s newest `limits.max_payment_lookup_entries` that carry
/// `payment_id`, newest first, with their proofs.
pub(super) async fn entries_with_id(
    api: &Api,
    user: Address,
    payment_id: B256,
) -> Result<Vec<infhub_ledger::history::HistoryEntry>, ApiError> {
    let max = api.node.config.limits.max_payment_lookup_entries;
    let (reader, heads) = history_of(api, &user);
    let Some(h) = heads else { return Ok(Vec::new()) };
    read_history(move || {
        let (mut found, mut read, mut before) = (Vec::new(), 0usize, u64::MAX);
        while read < max {
            let page = reader.page(&user, h, before, LOOKUP_PAGE_ENTRIES.min(max - read))?;
            let Some(last) = page.last().map(|e| e.seq) else { break };
            read += page.len();
            before = last;
            found.extend(page.into_iter().filter(|e| e.payment_id == Some(payment_id)));
        }
        Ok(found)
    })
    .await
}

/// A payment's status from its entries (newest first): the newest entry decides.
fn payment_status(entries: &[infhub_ledger::history::HistoryEntry]) -> Option<&'static str> {
    use infhub_ledger::history::EntryKind as K;
    Some(match entries.first()?.kind {
        K::TransferOut | K::ExternalOut | K::ConvertedOut => "paid",
        K::TransferIn | K::ConvertedIn | K::Purchase | K::CustodialDeposited => "received",
        K::Refunded => "refunded",
        K::LockedOut | K::LockedIn => "locked",
        K::LockSettledOut | K::LockSettledIn => "settled",
        K::LockDroppedOut | K::LockDroppedIn => "dropped",
        _ => "recorded",
    })
}

#[derive(Deserialize)]
pub(super) struct StatementQuery {
    format: Option<String>,
    from: Option<String>,
    to: Option<String>,
}

/// An account's statement over a date range (JSON; `format=csv` answers the lines as CSV).
#[derive(Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct StatementAnswer {
    #[schemars(with = "infhub_core::schema::AddressSchema")]
    account: Address,
    /// The range's start (UTC), if bounded.
    from: Option<String>,
    /// The range's end (UTC), if bounded.
    to: Option<String>,
    opening_balance: Amount,
    closing_balance: Amount,
    lines: Vec<infhub_ledger::history::StatementLine>,
}

pub(super) async fn statement(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(user): Path<Address>,
    Query(q): Query<StatementQuery>,
) -> Result<Response, ApiError> {
    api.may_read(&headers, &user)?;
    let range = date_range(q.from.as_deref(), q.to.as_deref())?;
    let format = q.format.unwrap_or_else(|| "json".into());
    if format != "csv" && format != "json" {
        return Err(ApiError::new(NodeError::MalformedRequest, format!("format {format}: use csv or json")));
    }
    let (reader, heads) = history_of(&api, &user);
    let entries = match heads {
        Some(h) => read_history(move || reader.all(&user, h)).await?,
        None => Vec::new(),
    };
    // The running balance needs every entry; the range then picks the lines.
    let all = infhub_ledger::history::statement(&entries);
    let (from, to) = range.unwrap_or((0, u64::MAX));
    let (opening, lines) = infhub_ledger::history::statement_between(all, from, to);
    let closing = lines.last().map_or(opening, |l| l.balance_after);
    if format == "csv" {
        return Ok(([("content-type", "text/csv")], infhub_ledger::history::statement_csv(&lines)).into_response());
    }
    let bound = |ms: u64| (ms != 0 && ms != u64::MAX).then(|| infhub_ledger::history::utc_time(ms));
    let answer = StatementAnswer {
        account: user,
        from: bound(from),
        to: bound(to),
        opening_balance: opening,
        closing_balance: closing,
        lines,
    };
    Ok(Json(answer).into_response())
}

/// The towers the hub pushes `user`'s credits to (spec §5.10a).
/// The towers the hub pushes an account's credits to.
#[derive(Serialize, schemars::JsonSchema)]
pub(super) struct TowersAnswer {
    #[schemars(with = "infhub_core::schema::AddressSchema")]
    user: Address,
    /// Their URLs.
    towers: Vec<String>,
}

pub(super) async fn towers_of(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(user): Path<Address>,
) -> Result<Json<TowersAnswer>, ApiError> {
    api.may_read(&headers, &user)?;
    Ok(Json(TowersAnswer { user, towers: api.node.towers.get(&user) }))
}

#[derive(Deserialize, schemars::JsonSchema)]
pub(super) struct TowerList {
    towers: Vec<String>,
}

/// Replaces `user`'s towers: up to four `http(s)://` URLs; an empty list stops the pushes.
/// Durable before it answers; the newest credit is pushed to the towers at once.
pub(super) async fn set_towers(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(user): Path<Address>,
    body: Result<Json<TowerList>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<TowersAnswer>, ApiError> {
    api.may_read(&headers, &user)?;
    let Json(list) = body.map_err(|e| ApiError::new(NodeError::MalformedRequest, e.body_text()))?;
    if api.node.read().ledger().account(&user).is_none() {
        return Err(Error::UnknownAccount.into());
    }
    let towers = crate::towers::check_list(&list.towers).map_err(|e| match e {
        crate::towers::TowerListError::TooMany => ApiError::new(NodeError::RequestLimitExceeded, e.to_string()),
        crate::towers::TowerListError::BadUrl(_) => ApiError::new(NodeError::MalformedRequest, e.to_string()),
    })?;
    api.node
        .towers
        .set(user, towers.clone())
        .map_err(|e| ApiError::new(NodeError::StorageFailed, format!("towers.json: {e}")))?;
    Ok(Json(TowersAnswer { user, towers }))
}

#[derive(Deserialize)]
pub(super) struct EventsQuery {
    after: Option<u64>,
    limit: Option<usize>,
}

/// The account's event feed (spec §5.24): its history entries after the cursor `after` (the
/// `seq` of the last one the caller processed; 0 from the start), oldest first, with their
/// proofs, and the cursor to resume from (`nextAfter`, unchanged when nothing is new).
/// Events of an account after a cursor, oldest first.
#[derive(Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct EventsPage {
    #[schemars(with = "infhub_core::schema::AddressSchema")]
    account: Address,
    events: Vec<infhub_ledger::history::HistoryEntry>,
    /// The cursor to pass as `after` next.
    next_after: u64,
}

pub(super) async fn events(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(user): Path<Address>,
    Query(q): Query<EventsQuery>,
) -> Result<Json<EventsPage>, ApiError> {
    api.may_read(&headers, &user)?;
    let limit = page_limit(q.limit, api.node.config.limits.max_page_size)?;
    let after = q.after.unwrap_or(0);
    let (reader, heads) = history_of(&api, &user);
    let events = match heads {
        Some(h) => read_history(move || reader.after(&user, h, after, limit)).await?,
        None => Vec::new(),
    };
    let next = events.last().map_or(after, |e| e.seq);
    Ok(Json(EventsPage { account: user, events, next_after: next }))
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct WebhookRequest {
    url: String,
    /// Deliver the events after this `seq` (default: only those from now on).
    #[serde(default)]
    after: Option<u64>,
}

/// Sets the account's webhook (spec §5.24): answered with its signing secret, shown only now.
pub(super) async fn set_webhook(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(user): Path<Address>,
    body: Result<Json<WebhookRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<crate::webhooks::WebhookView>, ApiError> {
    use crate::webhooks::{SetError, WebhookError};
    api.may_read(&headers, &user)?;
    let Json(req) = body.map_err(|e| ApiError::new(NodeError::MalformedRequest, e.body_text()))?;
    let now = {
        let st = api.node.read();
        if st.ledger().account(&user).is_none() {
            return Err(Error::UnknownAccount.into());
        }
        st.history().last_seq()
    };
    let cursor = req.after.unwrap_or(now);
    let secret = api.node.webhooks.set(user, &req.url, cursor).map_err(|e| match e {
        SetError::Refused(WebhookError::PrivateHost(_)) => {
            ApiError::new(NodeError::WebhookHostNotAllowed, e.to_string())
        }
        SetError::Refused(WebhookError::BadUrl(_)) => ApiError::new(NodeError::MalformedRequest, e.to_string()),
        SetError::Refused(WebhookError::TooMany) => ApiError::new(NodeError::LimitExceeded, e.to_string()),
        SetError::Io(_) => ApiError::new(NodeError::StorageFailed, e.to_string()),
    })?;
    let Some(mut view) = api.node.webhooks.view(&user) else {
        return Err(ApiError::new(NodeError::UnknownWebhook, "the webhook was removed meanwhile"));
    };
    view.secret = Some(secret.to_string());
    view.signature_header = Some(crate::webhooks::SIGNATURE_HEADER);
    Ok(Json(view))
}

/// The account's webhook: its URL, cursor and delivery health (not its secret).
pub(super) async fn webhook(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(user): Path<Address>,
) -> Result<Json<crate::webhooks::WebhookView>, ApiError> {
    api.may_read(&headers, &user)?;
    api.node
        .webhooks
        .view(&user)
        .map(Json)
        .ok_or_else(|| ApiError::new(NodeError::UnknownWebhook, "this account has no webhook"))
}

/// The webhook is gone.
#[derive(Serialize, schemars::JsonSchema)]
pub(super) struct Removed {
    removed: bool,
}

/// Removes the account's webhook.
pub(super) async fn remove_webhook(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(user): Path<Address>,
) -> Result<Json<Removed>, ApiError> {
    api.may_read(&headers, &user)?;
    match api.node.webhooks.remove(user) {
        Ok(true) => Ok(Json(Removed { removed: true })),
        Ok(false) => Err(ApiError::new(NodeError::UnknownWebhook, "this account has no webhook")),
        Err(e) => Err(ApiError::new(NodeError::StorageFailed, format!("webhooks.json: {e}"))),
    }
}
