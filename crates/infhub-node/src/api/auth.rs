//! Logging in (a signed one-time challenge for a session token) and registering a channel.

use super::*;

#[derive(Deserialize, schemars::JsonSchema)]
pub(super) struct ChallengeRequest {
    #[schemars(with = "infhub_core::schema::AddressSchema")]
    user: Address,
}

/// What to sign to log in.
#[derive(Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct ChallengeAnswer {
    /// The one-time challenge.
    #[schemars(with = "infhub_core::schema::WordSchema")]
    challenge: B256,
    /// Seconds it stays valid.
    expires_in_secs: u64,
    /// The EIP-712 type and domain to sign it in.
    sign: SignAs,
}

/// The EIP-712 type string and domain of a message to sign.
#[derive(Serialize, schemars::JsonSchema)]
pub(super) struct SignAs {
    #[serde(rename = "type")]
    type_string: &'static str,
    domain: infhub_core::Domain,
}

/// A session.
#[derive(Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct SessionAnswer {
    /// The bearer token of the account's reads.
    token: String,
    #[schemars(with = "infhub_core::schema::AddressSchema")]
    user: Address,
    /// Seconds it stays valid.
    expires_in_secs: u64,
}

/// A registration's outcome: the channel is open, or its opening was sent.
#[derive(Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct RegistrationAnswer {
    #[schemars(with = "infhub_core::schema::AddressSchema")]
    user: Address,
    /// `open` (already), or `opening` (sent; open once confirmed).
    status: &'static str,
    /// The open channel's epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    epoch: Option<u64>,
    /// The opening transaction.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<infhub_core::schema::WordSchema>")]
    tx_hash: Option<B256>,
    #[serde(skip_serializing_if = "Option::is_none")]
    note: Option<&'static str>,
}

pub(super) async fn challenge(
    State(api): State<Api>,
    ApiJson(req): ApiJson<ChallengeRequest>,
) -> Result<Json<ChallengeAnswer>, ApiError> {
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
    Ok(Json(ChallengeAnswer {
        challenge: c,
        expires_in_secs: CHALLENGE_TTL.as_secs(),
        sign: SignAs { type_string: infhub_core::messages::LOGIN_TYPE, domain: api.node.domain },
    }))
}

#[derive(Deserialize, schemars::JsonSchema)]
pub(super) struct SessionRequest {
    #[schemars(with = "infhub_core::schema::AddressSchema")]
    user: Address,
    #[schemars(with = "infhub_core::schema::WordSchema")]
    challenge: B256,
    signature: Signature,
}

pub(super) async fn session(
    State(api): State<Api>,
    ApiJson(req): ApiJson<SessionRequest>,
) -> Result<Json<SessionAnswer>, ApiError> {
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
    Ok(Json(SessionAnswer { token, user: req.user, expires_in_secs: ttl.as_secs() }))
}

pub(super) async fn register(
    State(api): State<Api>,
    peer: Option<axum::Extension<axum::extract::ConnectInfo<std::net::SocketAddr>>>,
    ApiJson(req): ApiJson<Signed<Registration>>,
) -> Result<Json<RegistrationAnswer>, ApiError> {
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
                let epoch = Some(a.channel.epoch);
                return Ok(Json(RegistrationAnswer { user, status: "open", epoch, tx_hash: None, note: None }));
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
        Ok(Ok(tx)) => {
            Ok(Json(RegistrationAnswer { user, status: "opening", epoch: None, tx_hash: Some(tx), note: None }))
        }
        Ok(Err(ChainRequestError::Chain(ChainError::TransactionRejected { reason })))
            if reason == "ChannelAlreadyOpen" =>
        {
            let note = Some("already open on chain; waiting for confirmations");
            Ok(Json(RegistrationAnswer { user, status: "opening", epoch: None, tx_hash: None, note }))
        }
        Ok(Err(e)) => Err(e.into()),
        Err(_) => Err(WriteError::Stopped.into()),
    }
}
