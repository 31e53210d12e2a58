//! The hub's HTTP/JSON API as the wallet uses it. Nothing the hub returns is trusted as is:
//! callers verify every signature against the hub address read from the contract and every
//! total against their own proofs.

use crate::error::WalletError;
use infhub_core::messages::{Login, Signed, SignedDebit};
use infhub_core::{Address, Domain, PrivateKey, Registration, Signature, Withdrawal, B256};
use serde_json::{json, Value};
use std::time::Duration;

/// How long one request may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// A failed hub request.
#[derive(Debug)]
pub enum HubError {
    /// No answer (connection refused, timeout, server error without a rule name).
    Unreachable(String),
    /// The hub answered with a named refusal.
    Refused {
        /// HTTP status.
        status: u16,
        /// The rule's code.
        code: String,
        /// The message.
        message: String,
        /// For a refused payment: the hub-signed credit that refunded it (unchecked JSON).
        refund: Option<Value>,
        /// For a refused forward: the link direction whose step failed (spec §5.18).
        failing_link: Option<infhub_core::routing::FailingLink>,
    },
}

impl HubError {
    /// The hub does not know the session (it restarted, or the session expired).
    pub fn is_unauthorized(&self) -> bool {
        matches!(self, HubError::Refused { status: 401, .. })
    }

    /// As a wallet error, naming the hub's URL.
    pub fn into_wallet(self, url: &str) -> WalletError {
        match self {
            HubError::Unreachable(reason) => WalletError::HubUnreachable { url: url.into(), reason },
            HubError::Refused { code, message, .. } => WalletError::HubRefused { code, message },
        }
    }
}

/// A client for one hub.
#[derive(Clone, Debug)]
pub struct HubClient {
    base: String,
    http: reqwest::Client,
    token: Option<String>,
}

impl HubClient {
    /// A client for the hub at `base` (e.g. `http://127.0.0.1:8080`).
    pub fn new(base: &str) -> Result<HubClient, WalletError> {
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| WalletError::HubUnreachable { url: base.into(), reason: e.to_string() })?;
        Ok(HubClient { base: base.trim_end_matches('/').to_string(), http, token: None })
    }

    /// The hub's URL.
    pub fn url(&self) -> &str {
        &self.base
    }

    /// The session token, once logged in.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// Drops the session (the hub answered 401): the next call that needs one logs in again.
    pub fn forget_session(&mut self) {
        self.token = None;
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<Value, HubError> {
        let req = match &self.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        };
        let resp = req.send().await.map_err(|e| HubError::Unreachable(e.to_string()))?;
        let status = resp.status().as_u16();
        let text = resp.text().await.map_err(|e| HubError::Unreachable(e.to_string()))?;
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if (200..300).contains(&status) {
            return Ok(body);
        }
        match (body["error"]["code"].as_str(), body["error"]["message"].as_str()) {
            (Some(code), Some(message)) => Err(HubError::Refused {
                status,
                code: code.into(),
                message: message.into(),
                refund: body["error"].get("refund").filter(|r| !r.is_null()).cloned(),
                failing_link: serde_json::from_value(body["error"]["failingLink"].clone()).ok(),
            }),
            _ => Err(HubError::Unreachable(format!("HTTP {status}: {}", text.chars().take(200).collect::<String>()))),
        }
    }

    async fn get(&self, path: &str) -> Result<Value, HubError> {
        self.send(self.http.get(format!("{}{path}", self.base))).await
    }

    async fn post(&self, path: &str, body: &Value) -> Result<Value, HubError> {
        self.send(self.http.post(format!("{}{path}", self.base)).json(body)).await
    }

    async fn put(&self, path: &str, body: &Value) -> Result<Value, HubError> {
        self.send(self.http.put(format!("{}{path}", self.base)).json(body)).await
    }

    /// `PUT /v1/accounts/{user}/webhook` (needs a session): the merchant's webhook, answered
    /// with its signing secret.
    pub async fn set_webhook(&self, user: Address, url: &str, after: Option<u64>) -> Result<Value, HubError> {
        self.put(&format!("/v1/accounts/{user}/webhook"), &json!({"url": url, "after": after})).await
    }

    /// `GET /v1/accounts/{user}/webhook` (needs a session).
    pub async fn webhook(&self, user: Address) -> Result<Value, HubError> {
        self.get(&format!("/v1/accounts/{user}/webhook")).await
    }

    /// `DELETE /v1/accounts/{user}/webhook` (needs a session).
    pub async fn remove_webhook(&self, user: Address) -> Result<Value, HubError> {
        self.send(self.http.delete(format!("{}/v1/accounts/{user}/webhook", self.base))).await
    }

    /// `GET /v1/accounts/{user}/payments/{payment_id}` (needs a session): a payment by its id.
    pub async fn payment(&self, user: Address, payment_id: B256) -> Result<Value, HubError> {
        self.get(&format!("/v1/accounts/{user}/payments/{payment_id}")).await
    }

    /// `GET /v1/accounts/{user}/events?after=&limit=` (needs a session): the event feed.
    pub async fn events(&self, user: Address, after: u64, limit: usize) -> Result<Value, HubError> {
        self.get(&format!("/v1/accounts/{user}/events?after={after}&limit={limit}")).await
    }

    /// `PUT /v1/accounts/{user}/towers` (needs a session): the towers the hub pushes credits to.
    pub async fn set_towers(&self, user: Address, towers: &[String]) -> Result<Value, HubError> {
        self.put(&format!("/v1/accounts/{user}/towers"), &json!({"towers": towers})).await
    }

    /// `GET /v1/info`.
    pub async fn info(&self) -> Result<Value, HubError> {
        self.get("/v1/info").await
    }

    /// Logs in by signing the hub's challenge; later reads use the session.
    pub async fn login(&mut self, key: &PrivateKey, domain: &Domain) -> Result<(), HubError> {
        let user = key.address();
        let c = self.post("/v1/auth/challenge", &json!({"user": user})).await?;
        let challenge: B256 = serde_json::from_value(c["challenge"].clone())
            .map_err(|e| HubError::Unreachable(format!("challenge malformed: {e}")))?;
        let login = Signed::new(Login { user, challenge }, domain, key);
        let s = self
            .post("/v1/auth/session", &json!({"user": user, "challenge": challenge, "signature": login.signature}))
            .await?;
        let token = s["token"].as_str().ok_or_else(|| HubError::Unreachable("session without token".into()))?;
        self.token = Some(token.to_string());
        Ok(())
    }

    /// `POST /v1/registrations`.
    pub async fn register(&self, r: &Signed<Registration>) -> Result<Value, HubError> {
        self.post("/v1/registrations", &json!(r)).await
    }

    /// `POST /v1/transfers`.
    pub async fn transfer(&self, d: &SignedDebit) -> Result<Value, HubError> {
        self.post("/v1/transfers", &json!(d)).await
    }

    /// `POST /v1/locked-transfers` or, without a payee, `POST /v1/lock-debits` (spec §5.17b).
    pub async fn lock_debit(&self, p: &crate::store::PendingLock) -> Result<Value, HubError> {
        match (p.payee, p.change) {
            (Some(payee), infhub_core::channel::LockChange::Add(lock)) => {
                self.post("/v1/locked-transfers", &json!({"debit": p.debit, "lock": lock, "payee": payee})).await
            }
            _ => self.post("/v1/lock-debits", &json!({"debit": p.debit, "change": p.change})).await,
        }
    }

    /// `POST /v1/forwarded-transfers`: a lock add paying `invoice`, a payee at another hub,
    /// which this hub forwards (spec §5.23a).
    pub async fn forwarded_transfer(
        &self,
        p: &crate::store::PendingLock,
        invoice: &infhub_core::invoice::SignedInvoice,
        route: Option<&Value>,
    ) -> Result<Value, HubError> {
        let infhub_core::channel::LockChange::Add(lock) = p.change else {
            return self.lock_debit(p).await;
        };
        let mut body = json!({"debit": p.debit, "lock": lock, "invoice": invoice});
        if let Some(Value::Object(extra)) = route {
            for (k, v) in extra {
                body[k] = v.clone();
            }
        }
        self.post("/v1/forwarded-transfers", &body).await
    }

    /// `POST /v1/payment-quotes`: the hub's route, fees and lock point for paying `invoice` at
    /// another hub (spec §5.23b).
    pub async fn payment_quote(
        &self,
        invoice: &infhub_core::invoice::SignedInvoice,
        payer: Address,
    ) -> Result<Value, HubError> {
        self.post("/v1/payment-quotes", &json!({"invoice": invoice, "payer": payer})).await
    }

    /// `POST /v1/lock-reveals`: the scalar of one of the hub's locks to `user`.
    pub async fn reveal(
        &self,
        user: Address,
        lock_id: B256,
        scalar: &infhub_core::point_lock::Scalar,
    ) -> Result<Value, HubError> {
        self.post("/v1/lock-reveals", &json!({"user": user, "lockId": lock_id, "scalar": scalar})).await
    }

    /// `POST /v1/withdrawals`.
    pub async fn withdraw(&self, w: &Withdrawal, signature: &Signature) -> Result<Value, HubError> {
        self.post("/v1/withdrawals", &json!({"withdrawal": w, "signature": signature})).await
    }

    /// `GET /v1/accounts/{user}` (needs a session).
    pub async fn account(&self, user: Address) -> Result<Value, HubError> {
        self.get(&format!("/v1/accounts/{user}")).await
    }

    /// `GET /v1/accounts/{user}/payouts/{payment_id}` (needs a session).
    pub async fn payout(&self, user: Address, payment_id: B256) -> Result<Value, HubError> {
        self.get(&format!("/v1/accounts/{user}/payouts/{payment_id}")).await
    }

    /// `GET /v1/accounts/{user}/statement?from=&to=` (needs a session): the account's lines
    /// within the range (open ends when absent), its opening and closing balance.
    pub async fn statement(&self, user: Address, from: Option<&str>, to: Option<&str>) -> Result<Value, HubError> {
        let mut query = Vec::new();
        for (name, value) in [("from", from), ("to", to)] {
            if let Some(v) = value {
                // A time is digits, dashes, colons, dots, `T` and `Z`: nothing to escape, and a
                // character that would need it makes a time the hub refuses by name anyway.
                query.push(format!("{name}={}", v.replace(['&', '#', '?', ' '], "")));
            }
        }
        let q = if query.is_empty() { String::new() } else { format!("?{}", query.join("&")) };
        self.get(&format!("/v1/accounts/{user}/statement{q}")).await
    }

    /// `GET /v1/checkpoints/{id}/proofs/{account}?root=` (needs a session): the account's
    /// leaves in checkpoint `id` (the build with `root`, the contract's) with their paths.
    pub async fn checkpoint_proofs(&self, id: u64, account: Address, root: B256) -> Result<Value, HubError> {
        self.get(&format!("/v1/checkpoints/{id}/proofs/{account}?root={root}")).await
    }

    /// The WebSocket URL of the account stream, with the session token.
    pub fn stream_url(&self) -> Option<String> {
        let ws = if let Some(rest) = self.base.strip_prefix("https://") {
            format!("wss://{rest}")
        } else if let Some(rest) = self.base.strip_prefix("http://") {
            format!("ws://{rest}")
        } else {
            return None;
        };
        self.token.as_ref().map(|t| format!("{ws}/v1/stream?token={t}"))
    }
}
