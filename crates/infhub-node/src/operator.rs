//! `infhub operator …`: the operator's commands against a running node's operator API (the
//! bearer token from `INFHUB_OPERATOR_TOKEN` or `--token`): the liquidity picture, a reserve
//! top-up, a reserve withdrawal announced through the ledger's rule and executed after its
//! notice (or cancelled), a hub close, solvency and reconciliation. Each prints the node's JSON
//! answer; a refusal prints its named code and fails.

use clap::{Args, Subcommand};
use serde_json::{json, Value};

/// Where the node is and how to authenticate.
#[derive(Args, Debug)]
pub struct OperatorArgs {
    /// The node's API.
    #[arg(long, env = "INFHUB_HUB_URL", default_value = "http://127.0.0.1:8080")]
    pub hub_url: String,
    /// The operator token (`node.operator_token`).
    #[arg(long, env = "INFHUB_OPERATOR_TOKEN", hide_env_values = true)]
    pub token: String,
    /// What to do.
    #[command(subcommand)]
    pub command: OperatorCommand,
}

/// The operator's commands.
#[derive(Subcommand, Debug)]
pub enum OperatorCommand {
    /// The reserve and what it covers, what realizing debits would add, an announced reserve
    /// withdrawal, and what the hub's chain duties did (realizations and their gas).
    Liquidity,
    /// Moves tokens of the hub key into the reserve (an allowance, then `depositReserve`).
    TopUp {
        /// Amount in token base units.
        amount: String,
    },
    /// Earmarks and announces a reserve withdrawal; it executes after the contract's notice.
    WithdrawReserve {
        /// Amount in token base units (at most the free reserve).
        amount: String,
    },
    /// Executes the announced reserve withdrawal to `to` (after the notice, before it expires).
    ExecuteReserveWithdrawal {
        /// The recipient.
        to: String,
    },
    /// Cancels the reserve withdrawal (on chain if it was announced) and releases its earmark.
    CancelReserveWithdrawal,
    /// Starts the hub's close of a user's channel with the newest debit it holds.
    Close {
        /// The user.
        user: String,
    },
    /// The contract's and the ledger's books side by side.
    Solvency,
    /// The ledger reconciled against the chain, channel by channel.
    Reconciliation,
    /// Replaces a custodial account's API key (the new key is printed once; the old one stops
    /// working).
    RotateCustodialKey {
        /// The custodial account's address.
        account: String,
    },
    /// Replaces the operator token (the new one is printed once; the old one works for the
    /// node's grace period, `node.operator_token_grace_secs`).
    RotateToken,
    /// Lists accounts in address order, a page at a time, filtered.
    Accounts {
        /// Only accounts after this address (the previous page's `nextAfter`).
        #[arg(long)]
        after: Option<String>,
        /// Most accounts to show.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Only addresses starting with these hex digits.
        #[arg(long)]
        prefix: Option<String>,
        /// Only `channel` or `custodial` accounts.
        #[arg(long)]
        kind: Option<String>,
        /// Only accounts in this state: open, closing, settled, custodial.
        #[arg(long)]
        state: Option<String>,
        /// Only frozen (true) or not frozen (false) accounts.
        #[arg(long)]
        frozen: Option<bool>,
    },
    /// Freezes an account (channel or custodial): it neither pays nor is paid off chain until
    /// unfrozen; its exit on chain is unaffected.
    Freeze {
        /// The account's address.
        account: String,
    },
    /// Unfreezes an account.
    Unfreeze {
        /// The account's address.
        account: String,
    },
    /// This hub's links to other hubs (spec §5.23): the link key's address and tokens, and each
    /// link's peer, state, channel figures, job and last error.
    Links,
    /// Opens a link to another hub: this hub registers its link key there as a user (the
    /// channel opens in the background; `links` shows it).
    LinkOpen {
        /// The peer hub's API URL.
        peer_url: String,
    },
    /// Deposits the link key's tokens into the link to the hub contract `peer`.
    LinkFund {
        /// The peer hub's contract (as `links` shows it).
        peer: String,
        /// Amount in token base units.
        amount: String,
    },
    /// Pays an account of the peer hub from the link's balance.
    LinkPay {
        /// The peer hub's contract.
        peer: String,
        /// The recipient, an account of the peer hub.
        recipient: String,
        /// Amount in token base units.
        amount: String,
    },
    /// The operator's audit log, newest first: who asked for what, when, and the answer.
    Audit {
        /// Most entries to show (at most the node's page size).
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Only entries older than this sequence number (the previous page's `nextBefore`).
        #[arg(long)]
        before: Option<u64>,
    },
}

/// Runs one operator command; returns the node's answer, or the refusal in words.
pub async fn execute(args: OperatorArgs) -> Result<Value, String> {
    let client = reqwest::Client::new();
    let base = args.hub_url.trim_end_matches('/');
    let (method, path, body) = match &args.command {
        OperatorCommand::Liquidity => ("GET", "/v1/operator/liquidity", None),
        OperatorCommand::TopUp { amount } => ("POST", "/v1/operator/reserve/top-ups", Some(json!({"amount": amount}))),
        OperatorCommand::WithdrawReserve { amount } => {
            ("POST", "/v1/operator/reserve/withdrawals", Some(json!({"amount": amount})))
        }
        OperatorCommand::ExecuteReserveWithdrawal { to } => {
            ("POST", "/v1/operator/reserve/withdrawals/execute", Some(json!({"to": to})))
        }
        OperatorCommand::CancelReserveWithdrawal => {
            ("POST", "/v1/operator/reserve/withdrawals/cancel", Some(json!({})))
        }
        OperatorCommand::Close { user } => ("POST", "/v1/operator/closes", Some(json!({"user": user}))),
        OperatorCommand::Solvency => ("GET", "/v1/operator/solvency", None),
        OperatorCommand::Reconciliation => ("GET", "/v1/operator/reconciliation", None),
        OperatorCommand::Audit { .. } => ("GET", "/v1/operator/audit", None),
        OperatorCommand::Accounts { .. } => ("GET", "/v1/operator/accounts", None),
        OperatorCommand::RotateToken => ("POST", "/v1/operator/token-rotations", Some(json!({}))),
        OperatorCommand::Freeze { account } => {
            ("POST", "/v1/operator/freezes", Some(json!({"account": account, "frozen": true})))
        }
        OperatorCommand::Unfreeze { account } => {
            ("POST", "/v1/operator/freezes", Some(json!({"account": account, "frozen": false})))
        }
        OperatorCommand::Links => ("GET", "/v1/operator/links", None),
        OperatorCommand::LinkOpen { peer_url } => ("POST", "/v1/operator/links", Some(json!({"hubUrl": peer_url}))),
        // The path names the peer; built below.
        OperatorCommand::LinkFund { amount, .. } => ("POST", "", Some(json!({"amount": amount}))),
        OperatorCommand::LinkPay { recipient, amount, .. } => {
            ("POST", "", Some(json!({"recipient": recipient, "amount": amount})))
        }
        // The path names the account; built below.
        OperatorCommand::RotateCustodialKey { .. } => ("POST", "", Some(json!({}))),
    };
    let mut url = match &args.command {
        OperatorCommand::RotateCustodialKey { account } => {
            format!("{base}/v1/custodial/accounts/{account}/key-rotations")
        }
        OperatorCommand::LinkFund { peer, .. } => format!("{base}/v1/operator/links/{peer}/deposits"),
        OperatorCommand::LinkPay { peer, .. } => format!("{base}/v1/operator/links/{peer}/payments"),
        _ => format!("{base}{path}"),
    };
    if let OperatorCommand::Accounts { after, limit, prefix, kind, state, frozen } = &args.command {
        url.push_str(&format!("?limit={limit}"));
        let optional =
            [("after", after.clone()), ("prefix", prefix.clone()), ("kind", kind.clone()), ("state", state.clone())];
        for (name, value) in optional {
            if let Some(v) = value {
                url.push_str(&format!("&{name}={v}"));
            }
        }
        if let Some(f) = frozen {
            url.push_str(&format!("&frozen={f}"));
        }
    }
    if let OperatorCommand::Audit { limit, before } = &args.command {
        url.push_str(&format!("?limit={limit}"));
        if let Some(b) = before {
            url.push_str(&format!("&before={b}"));
        }
    }
    let request = match (method, body) {
        ("GET", _) => client.get(&url),
        (_, Some(b)) => client.post(&url).json(&b),
        (_, None) => client.post(&url),
    };
    let response = request
        .bearer_auth(&args.token)
        .send()
        .await
        .map_err(|e| format!("cannot reach the hub at {base} ({e}); check --hub-url"))?;
    let status = response.status();
    let text = response.text().await.map_err(|e| format!("the hub's answer could not be read: {e}"))?;
    let value: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    if status.is_success() {
        Ok(value)
    } else {
        let code = value["error"]["code"].as_str().unwrap_or("http_error");
        let message = value["error"]["message"].as_str().map_or_else(|| value.to_string(), str::to_string);
        Err(format!("the hub refused: {message} ({code}, HTTP {})", status.as_u16()))
    }
}
