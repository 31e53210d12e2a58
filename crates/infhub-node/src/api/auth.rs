//! Logging in (a signed one-time challenge for a session token) and registering a channel.

use super::*;

#[derive(Deserialize)]
pub(super) struct ChallengeRequest {
    user: Address,
}

pub(super) async fn challenge(
    State(api): State<Api>,
    ApiJson(req): ApiJson<ChallengeRequest>,
) -> Result<Json<Value>, ApiError> {
    let c = B256::from(random_bytes()?);
    let known = api.knows(&req.user);
    let evicted = api.sessions.challenges.lock().unwrap_or_else(|p| p.into_inner()).insert(
        c,
        req.user,
        Instant::now() + CHALLENGE_TTL,
        known,
    );
    if evicted > 0 {
        api.node.metrics.shed.fetch_add(evicted as u64, Ordering::Relaxed);
    }
    Ok(Json(json!({
        "challenge": c,
        "expiresInSecs": CHALLENGE_TTL.as_secs(),
        "sign": {"type": infhub_core::messages::LOGIN_TYPE, "domain": api.node.domain},
    })))
}

#[derive(Deserialize)]
pub(super) struct SessionRequest {
    user: Address,
    challenge: B256,
    signature: Signature,
}

pub(super) async fn session(
    State(api): State<Api>,
    ApiJson(req): ApiJson<SessionRequest>,
) -> Result<Json<Value>, ApiError> {
    let entry = api.sessions.challenges.lock().unwrap_or_else(|p| p.into_inner()).take(&req.challenge);
    match entry {
        Some((user, exp)) if user == req.user && exp > Instant::now() => {}
        Some((user, _)) if user != req.user => {
            return Err(ApiError::unauthorized("the challenge was issued to another address"))
        }
        Some(_) => return Err(ApiError::new(NodeError::ChallengeExpired, "request a new challenge")),
        None => return Err(ApiError::new(NodeError::UnknownChallenge, "unknown or used challenge")),
    }
    let login = Signed { message: Login { user: req.user, challenge: req.challenge }, signature: req.signature };
    login.verify(&api.node.domain, req.user)?;
    let token = alloy::primitives::hex::encode(random_bytes()?);
    let ttl = Duration::from_secs(api.node.config.node.session_ttl_secs);
    let known = api.knows(&req.user);
    let evicted = api.sessions.sessions.lock().unwrap_or_else(|p| p.into_inner()).insert(
        token.clone(),
        req.user,
        Instant::now() + ttl,
        known,
    );
    if evicted > 0 {
        api.node.metrics.shed.fetch_add(evicted as u64, Ordering::Relaxed);
    }
    Ok(Json(json!({"token": token, "user": req.user, "expiresInSecs": ttl.as_secs()})))
}

pub(super) async fn register(
    State(api): State<Api>,
    peer: Option<axum::Extension<axum::extract::ConnectInfo<std::net::SocketAddr>>>,
    ApiJson(req): ApiJson<Signed<Registration>>,
) -> Result<Json<Value>, ApiError> {
    let user = req.message.user;
    req.verify(&api.node.domain, user)?;
    // Never both locks at once (the state lock first where both are needed).
    let seen = api.node.chain_view().head;
    let head = seen.max(api.node.read().ledger().block);
    if req.message.valid_until_block < head {
        return Err(ApiError::new(
            NodeError::RegistrationExpired,
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
    // Opening costs the hub gas: new registrations draw on the hub's and the address's budget.
    let address = peer.map(|p| p.0 .0.ip());
    if let Err(spent) = api.registrations.take(user, address, std::time::Instant::now()) {
        let (whose, wait) = match spent {
            registration_budget::Exhausted::Hub(w) => ("the hub's", w),
            registration_budget::Exhausted::Address(w) => ("this address's", w),
        };
        return Err(ApiError::new(
            NodeError::RegistrationRateLimited,
            format!("{whose} registration budget is spent; one more fits in {} s", wait.as_secs().max(1)),
        ));
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
