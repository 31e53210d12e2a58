//! Reconciliation (seed 000 §3: "中台数据与区块链数据需要核对机制"): rebuild, from the chain
//! alone, what the ledger should say, and compare.
//!
//! The chain side is read independently of the chain task: the contract's deployment block is
//! found by bisecting `eth_getCode` (not taken from the configuration, so a wrong `start_block`
//! is itself caught), every hub-contract log from there to the ledger's confirmed block is
//! fetched and decoded, and the contract's token balance, reserve and channel funds are read at
//! that block. From the events it derives per channel the epoch, status and running totals, per
//! custodial account its deposits, and the totals; then it compares each with the ledger and
//! reports every discrepancy with the account and the events involved. The node runs it on an
//! interval (metrics + an error log per discrepancy) and on demand (`/v1/operator/reconciliation`).

use crate::engine::Node;
use alloy::eips::BlockId;
use alloy::primitives::{Address, B256, U256};
use alloy::providers::Provider;
use alloy::rpc::types::{Filter, TransactionRequest};
use alloy::sol_types::SolCall;
use infhub_chain::bindings::{IErc20, IInfHub};
use infhub_chain::events::{decode_event, RawLog};
use infhub_core::channel::Status;
use infhub_core::ledger::ChainEvent;
use serde::Serialize;
use std::collections::BTreeMap;

/// Blocks per `eth_getLogs` request.
pub const LOG_RANGE_BLOCKS: u64 = 5_000;

/// Where an event is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EventRef {
    /// Block number.
    pub block: u64,
    /// Log index in the block.
    pub log_index: u64,
    /// The transaction.
    pub tx: Option<B256>,
}

/// One disagreement between the chain and the ledger.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Discrepancy {
    /// What disagrees, e.g. `custodial_deposits_mismatch`.
    pub kind: String,
    /// The account involved, if one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account: Option<Address>,
    /// What the chain says.
    pub chain: String,
    /// What the ledger says.
    pub ledger: String,
    /// The chain events behind the chain's figure.
    pub events: Vec<EventRef>,
}

/// Totals rebuilt from the chain.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChainTotals {
    /// Σ deposits into channels (all epochs).
    pub channel_deposits: String,
    /// Σ custodial deposits.
    pub custodial_deposits: String,
    /// Σ cooperative withdrawals.
    pub withdrawals: String,
    /// Σ external payouts executed.
    pub payouts: String,
    /// Σ paid by settlements.
    pub settlements: String,
    /// The contract's token balance.
    pub token_balance: String,
    /// The contract's reserve.
    pub reserve: String,
    /// The contract's channel funds.
    pub channel_funds: String,
    /// Tokens held beyond reserve and channel funds (sent outside the contract's functions):
    /// nobody's balance, reported apart, not an imbalance.
    pub excess: String,
    /// Channels opened on chain by their users alone and never funded: the ledger does not
    /// track them (they cannot exhaust it), so they are counted here, not compared.
    pub untracked_channels: u64,
}

/// The reconciliation report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// No discrepancy.
    pub ok: bool,
    /// The contract's deployment block (found on chain).
    pub from_block: u64,
    /// The ledger's confirmed block, where both sides were compared.
    pub through_block: u64,
    /// Contract events read.
    pub events: usize,
    /// Totals from the chain.
    pub chain: ChainTotals,
    /// Every disagreement.
    pub discrepancies: Vec<Discrepancy>,
}

#[derive(Default)]
struct ChannelFacts {
    epoch: u64,
    deposited: u128,
    withdrawn: u128,
    status: &'static str,
    /// Opened or registered by the hub, or funded: the ledger must track it.
    tracked: bool,
    events: Vec<EventRef>,
}

#[derive(Default)]
struct CustodialFacts {
    deposited: u128,
    events: Vec<EventRef>,
}

fn rpc(e: impl std::fmt::Display) -> String {
    format!("chain read failed: {e}")
}

async fn call<C: SolCall>(node: &Node, to: Address, c: C, block: u64) -> Result<C::Return, String> {
    let req = TransactionRequest::default().to(to).input(c.abi_encode().into());
    let raw = node.provider.call(req).block(BlockId::number(block)).await.map_err(rpc)?;
    C::abi_decode_returns(&raw).map_err(rpc)
}

/// The first block at which `contract` has code (binary search over `eth_getCode`).
async fn deployment_block(node: &Node, contract: Address, through: u64) -> Result<u64, String> {
    let has_code = |b: u64| async move {
        node.provider.get_code_at(contract).block_id(BlockId::number(b)).await.map(|c| !c.is_empty()).map_err(rpc)
    };
    if !has_code(through).await? {
        return Err(format!("the hub contract has no code at block {through}"));
    }
    let (mut lo, mut hi) = (0u64, through);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if has_code(mid).await? {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    Ok(lo)
}

/// Runs one reconciliation.
pub async fn reconcile(node: &Node) -> Result<Report, String> {
    let contract = node.domain.verifying_contract;
    let through = node.read().ledger().block;
    let from = deployment_block(node, contract, through).await?;
    let mut logs: Vec<(EventRef, ChainEvent)> = Vec::new();
    let mut start = from;
    while start <= through {
        let end = (start + LOG_RANGE_BLOCKS - 1).min(through);
        let filter = Filter::new().address(contract).from_block(start).to_block(end);
        for log in node.provider.get_logs(&filter).await.map_err(rpc)? {
            let raw = RawLog {
                block_number: log.block_number.unwrap_or_default(),
                block_hash: log.block_hash.unwrap_or_default(),
                log_index: log.log_index.unwrap_or_default(),
                address: log.inner.address,
                topics: log.inner.data.topics().to_vec(),
                data: log.inner.data.data.clone(),
            };
            if let Some(ev) = decode_event(&raw).map_err(|e| e.to_string())? {
                let at = EventRef { block: raw.block_number, log_index: raw.log_index, tx: log.transaction_hash };
                logs.push((at, ev));
            }
        }
        start = end + 1;
    }

    let mut channels: BTreeMap<Address, ChannelFacts> = BTreeMap::new();
    let mut custodial: BTreeMap<Address, CustodialFacts> = BTreeMap::new();
    let (mut deposits, mut custodial_deposits, mut withdrawals, mut payouts, mut settlements) =
        (0u128, 0u128, 0u128, 0u128, 0u128);
    for (at, ev) in &logs {
        match *ev {
            ChainEvent::ChannelOpened { user, epoch, opened_by } => {
                let c = channels.entry(user).or_default();
                (c.epoch, c.deposited, c.withdrawn, c.status) = (epoch, 0, 0, "open");
                c.tracked |= opened_by == node.hub;
                c.events.push(*at);
            }
            ChainEvent::ChannelRegistered { user, .. } => {
                let c = channels.entry(user).or_default();
                c.tracked = true;
                c.events.push(*at);
            }
            ChainEvent::Deposited { user, total_deposited, .. } => {
                let c = channels.entry(user).or_default();
                deposits += total_deposited.0.saturating_sub(c.deposited);
                c.deposited = total_deposited.0;
                c.tracked = true;
                c.events.push(*at);
            }
            ChainEvent::Withdrawn { user, total_withdrawn, .. } => {
                let c = channels.entry(user).or_default();
                withdrawals += total_withdrawn.0.saturating_sub(c.withdrawn);
                c.withdrawn = total_withdrawn.0;
                c.events.push(*at);
            }
            ChainEvent::ExitStarted { user, .. } => {
                let c = channels.entry(user).or_default();
                c.status = "closing";
                c.events.push(*at);
            }
            ChainEvent::Settled { user, paid, .. } => {
                let c = channels.entry(user).or_default();
                c.status = "settled";
                settlements += paid.0;
                c.events.push(*at);
            }
            ChainEvent::CustodialDeposited { account, amount, .. } => {
                let c = custodial.entry(account).or_default();
                c.deposited += amount.0;
                custodial_deposits += amount.0;
                c.events.push(*at);
            }
            ChainEvent::PayoutBatchExecuted { total, .. } => payouts += total.0,
            _ => {}
        }
    }
    let token_balance = call(node, node.token, IErc20::balanceOfCall { owner: contract }, through).await?;
    let reserve = call(node, contract, IInfHub::reserveCall {}, through).await?;
    let channel_funds = call(node, contract, IInfHub::totalChannelFundsCall {}, through).await?;

    let mut d = Vec::new();
    let mut report = |kind: &str, account: Option<Address>, chain: String, ledger: String, events: &[EventRef]| {
        d.push(Discrepancy { kind: kind.into(), account, chain, ledger, events: events.to_vec() })
    };
    // More tokens than reserve and funds is excess (someone sent tokens outside the contract's
    // functions), reported in the totals; fewer is an imbalance.
    if token_balance < reserve + channel_funds {
        report(
            "contract_unbalanced",
            None,
            format!("token balance {token_balance}"),
            format!("reserve {reserve} + channel funds {channel_funds}"),
            &[],
        );
    }
    let excess = token_balance.saturating_sub(reserve + channel_funds);
    let untracked_channels = channels.values().filter(|c| !c.tracked).count() as u64;
    {
        let st = node.read();
        let l = st.ledger();
        if U256::from(l.reserve.0) != reserve {
            report("reserve_mismatch", None, reserve.to_string(), l.reserve.0.to_string(), &[]);
        }
        let ledger_funds: u128 = l.accounts().map(|(_, a)| a.funds()).sum();
        if U256::from(ledger_funds) != channel_funds {
            report("channel_funds_mismatch", None, channel_funds.to_string(), ledger_funds.to_string(), &[]);
        }
        for (user, c) in channels.iter().filter(|(_, c)| c.tracked) {
            let Some(a) = l.account(user) else {
                report(
                    "channel_unknown_to_ledger",
                    Some(*user),
                    format!("epoch {} {}, deposited {}", c.epoch, c.status, c.deposited),
                    "no account".into(),
                    &c.events,
                );
                continue;
            };
            let ch = &a.channel;
            let status = match ch.status {
                Status::Open => "open",
                Status::Closing { .. } => "closing",
                Status::Settled => "settled",
            };
            if ch.epoch != c.epoch || status != c.status {
                report(
                    "channel_state_mismatch",
                    Some(*user),
                    format!("epoch {} {}", c.epoch, c.status),
                    format!("epoch {} {status}", ch.epoch),
                    &c.events,
                );
            } else if ch.deposited.0 != c.deposited || ch.withdrawn.0 != c.withdrawn {
                report(
                    "channel_totals_mismatch",
                    Some(*user),
                    format!("deposited {} withdrawn {}", c.deposited, c.withdrawn),
                    format!("deposited {} withdrawn {}", ch.deposited.0, ch.withdrawn.0),
                    &c.events,
                );
            }
        }
        for (user, _) in l.accounts() {
            if !channels.get(user).is_some_and(|c| c.tracked) {
                report("ledger_account_not_on_chain", Some(*user), "no ChannelOpened".into(), "account".into(), &[]);
            }
        }
        let mut unattributed_on_chain = 0u128;
        for (account, c) in &custodial {
            match l.custodial(account) {
                Some(acct) if acct.deposited_on_chain.0 == c.deposited => {}
                Some(acct) => report(
                    "custodial_deposits_mismatch",
                    Some(*account),
                    format!("deposited {}", c.deposited),
                    format!("deposited {}", acct.deposited_on_chain.0),
                    &c.events,
                ),
                None => unattributed_on_chain += c.deposited,
            }
        }
        for acct in l.custodial_accounts() {
            if !custodial.contains_key(&acct.account) && !acct.deposited_on_chain.is_zero() {
                report(
                    "custodial_deposits_mismatch",
                    Some(acct.account),
                    "deposited 0".into(),
                    format!("deposited {}", acct.deposited_on_chain.0),
                    &[],
                );
            }
        }
        if unattributed_on_chain != l.unattributed.0 {
            let events: Vec<EventRef> = custodial
                .iter()
                .filter(|(a, _)| l.custodial(a).is_none())
                .flat_map(|(_, c)| c.events.iter().copied())
                .collect();
            report(
                "unattributed_deposits_mismatch",
                None,
                format!("deposits for no custodial account: {unattributed_on_chain}"),
                format!("unattributed {}", l.unattributed.0),
                &events,
            );
        }
    }
    Ok(Report {
        ok: d.is_empty(),
        from_block: from,
        through_block: through,
        events: logs.len(),
        chain: ChainTotals {
            channel_deposits: deposits.to_string(),
            custodial_deposits: custodial_deposits.to_string(),
            withdrawals: withdrawals.to_string(),
            payouts: payouts.to_string(),
            settlements: settlements.to_string(),
            token_balance: token_balance.to_string(),
            reserve: reserve.to_string(),
            channel_funds: channel_funds.to_string(),
            excess: excess.to_string(),
            untracked_channels,
        },
        discrepancies: d,
    })
}

/// Runs reconciliation every `interval` until shutdown: metrics, and an error log line per
/// discrepancy.
pub async fn run_periodically(
    node: std::sync::Arc<Node>,
    interval: std::time::Duration,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
        match reconcile(&node).await {
            Ok(r) => {
                node.metrics.reconciliation(r.discrepancies.len() as u64, true);
                for d in &r.discrepancies {
                    tracing::error!(
                        kind = %d.kind, account = ?d.account, chain = %d.chain, ledger = %d.ledger,
                        events = ?d.events, "reconciliation: the ledger disagrees with the chain"
                    );
                }
            }
            Err(e) => {
                node.metrics.reconciliation(0, false);
                tracing::warn!(error = %e, "reconciliation could not run");
            }
        }
    }
}
