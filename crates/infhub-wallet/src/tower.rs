//! The wallet's side of watchtowers (spec §5.10a): a tower's terms, the user's fee offer, and
//! feeding it credits. A tower never needs the user's key: the wallet signs the offer once per
//! epoch and hands over hub-signed credits, which can only help the user.

use crate::error::WalletError;
use infhub_core::messages::SignedCredit;
use infhub_core::tower::{SignedTowerFee, SignedTowerReceipt};
use infhub_core::{Address, Domain};
use serde_json::{json, Value};
use std::time::Duration;

/// A tower's HTTP API.
#[derive(Clone, Debug)]
pub struct TowerClient {
    base: String,
    http: reqwest::Client,
}

/// What a tower said.
#[derive(Debug)]
pub enum TowerAnswer {
    /// It holds what was sent (or something newer): its signed receipt.
    Held(SignedTowerReceipt),
    /// It refused: the rule's code and message.
    Refused(String, String),
}

impl TowerClient {
    /// A client for the tower at `base`.
    pub fn new(base: &str) -> Result<TowerClient, WalletError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| WalletError::InvalidInput(format!("http client: {e}")))?;
        Ok(TowerClient { base: base.trim_end_matches('/').to_string(), http })
    }

    fn unreachable(&self, e: impl std::fmt::Display) -> WalletError {
        WalletError::InvalidInput(format!("tower {} unreachable: {e}", self.base))
    }

    /// `GET /v1/info`: the tower's address, contract and terms.
    pub async fn info(&self) -> Result<Value, WalletError> {
        let r = self.http.get(format!("{}/v1/info", self.base)).send().await.map_err(|e| self.unreachable(e))?;
        r.json().await.map_err(|e| self.unreachable(e))
    }

    async fn post(&self, path: &str, body: Value, domain: &Domain, tower: Address) -> Result<TowerAnswer, WalletError> {
        let r =
            self.http.post(format!("{}{path}", self.base)).json(&body).send().await.map_err(|e| self.unreachable(e))?;
        let v: Value = r.json().await.map_err(|e| self.unreachable(e))?;
        let receipt = v.get("receipt").or_else(|| v.get("held")).filter(|r| !r.is_null());
        if let Some(r) = receipt {
            let r: SignedTowerReceipt = serde_json::from_value(r.clone()).map_err(|e| self.unreachable(e))?;
            // The receipt is worth something only if the tower signed it.
            r.verify(domain, tower).map_err(|e| {
                WalletError::InvalidInput(format!("tower {}: receipt not signed by {tower}: {e}", self.base))
            })?;
            return Ok(TowerAnswer::Held(r));
        }
        let code = v["error"]["code"].as_str().unwrap_or("unknown").to_string();
        let message = v["error"]["message"].as_str().unwrap_or("").to_string();
        Ok(TowerAnswer::Refused(code, message))
    }

    /// Hands the tower a credit.
    pub async fn give_credit(
        &self,
        c: &SignedCredit,
        domain: &Domain,
        tower: Address,
    ) -> Result<TowerAnswer, WalletError> {
        self.post("/v1/appointments", json!({"credit": c}), domain, tower).await
    }

    /// Hands the tower the user's fee offer.
    pub async fn give_offer(
        &self,
        o: &SignedTowerFee,
        domain: &Domain,
        tower: Address,
    ) -> Result<TowerAnswer, WalletError> {
        self.post("/v1/offers", json!({"offer": o}), domain, tower).await
    }

    /// `GET /v1/appointments/{user}`: what the tower holds for `user`, if anything.
    pub async fn held(
        &self,
        user: Address,
        domain: &Domain,
        tower: Address,
    ) -> Result<Option<SignedTowerReceipt>, WalletError> {
        let r = self
            .http
            .get(format!("{}/v1/appointments/{user}", self.base))
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        if r.status().as_u16() == 404 {
            return Ok(None);
        }
        let v: Value = r.json().await.map_err(|e| self.unreachable(e))?;
        let receipt: SignedTowerReceipt =
            serde_json::from_value(v["receipt"].clone()).map_err(|e| self.unreachable(e))?;
        receipt
            .verify(domain, tower)
            .map_err(|e| WalletError::InvalidInput(format!("tower receipt not signed by {tower}: {e}")))?;
        Ok(Some(receipt))
    }
}
