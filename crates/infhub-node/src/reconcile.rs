//! Reconciliation (seed 000 §3: "中台数据与区块链数据需要核对机制"): rebuild, from the chain
//! alone, what the ledger should say, and compare.
//!
//! The chain side is read independently of the chain task: the contract's deployment block is
//! found by bisecting `eth_getCode` (not taken from the configuration, so a wrong `start_block`
//! is itself caught), every hub-contract log from there to the ledger's confirmed block is
//! fetched through the `ChainSource` seam and decoded, and the contract's token balance, reserve and channel funds are read at
//! that block. From the events it derives per channel the epoch, status and running totals, per
//! custodial account its deposits, and the totals; then it compares each with the ledger and
//! reports every discrepancy with the account and the events involved. The node runs it on an
//! interval (metrics + an error log per discrepancy) and on demand (`/v1/operator/reconciliation`).

use crate::engine::Node;
use alloy::eips::BlockId;
use alloy::primitives::{Address, B256, U256};
use alloy::providers::Provider;
use alloy::rpc::types::TransactionRequest;
use alloy::sol_types::SolCall;
use infhub_chain::bindings::{IErc20, IInfHub};
use infhub_chain::events::decode_event;
use infhub_chain::source::{ChainSource, RpcSource};
use infhub_core::channel::Status;
use infhub_core::ledger::{ChainEvent, Ledger};
use serde::Serialize;
use std::collections::BTreeMap;

/// Blocks per `eth_getLogs` request.
pub const LOG_RANGE_BLOCKS: u64 = 5_000;

/// Where an event is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventRef {
    /// Block number.
    pub block: u64,
    /// Log index in the block.
    pub log_index: u64,
    /// The transaction.
    #[schemars(with = "Option<infhub_core::schema::WordSchema>")]
    pub tx: Option<B256>,
}

/// One disagreement between the chain and the ledger.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Discrepancy {
    /// What disagrees, e.g. `custodial_deposits_mismatch`.
    pub kind: String,
    /// The account involved, if one.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<infhub_core::schema::AddressSchema>")]
    pub account: Option<Address>,
    /// What the chain says.
    pub chain: String,
    /// What the ledger says.
    pub ledger: String,
    /// The chain events behind the chain's figure.
    pub events: Vec<EventRef>,
}

/// Totals rebuilt from the chain.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, schemars::JsonSchema)]
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
    /// The escrow settled closes hold for their registered locks (spec §5.11a).
    pub escrow: String,
    /// Tokens held beyond reserve, channel funds and escrow (sent outside the contract's
    /// functions): nobody's balance, reported apart, not an imbalance.
    pub excess: String,
    /// Channels opened on chain by their users alone and never funded: the ledger does not
    /// track them (they cannot exhaust it), so they are counted here, not compared.
    pub untracked_channels: u64,
}

/// The reconciliation report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
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

/// What the chain says of one channel, folded from its events.
#[derive(Default)]
struct ChannelFacts {
    epoch: u64,
    deposited: u128,
    withdrawn: u128,
    /// `None` until a `ChannelOpened` is seen.
    status: Option<Status>,
    /// Opened or registered by the hub, or funded: the ledger must track it.
    tracked: bool,
    events: Vec<EventRef>,
}

/// What the chain says of one custodial account.
#[derive(Default)]
struct CustodialFacts {
    deposited: u128,
    events: Vec<EventRef>,
}

/// Everything the events say, folded.
#[derive(Default)]
struct ChainFacts {
    channels: BTreeMap<Address, ChannelFacts>,
    custodial: BTreeMap<Address, CustodialFacts>,
    deposits: u128,
    custodial_deposits: u128,
    withdrawals: u128,
    payouts: u128,
    settlements: u128,
}

/// The contract's balances at the compared block.
struct ChainBalances {
    token_balance: U256,
    reserve: U256,
    channel_funds: U256,
    escrow: U256,
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

/// Every hub-contract event in `from..=through`, read through the same [`ChainSource`] seam as
/// the watcher, `LOG_RANGE_BLOCKS` at a time.
async fn read_events(
    source: &impl ChainSource,
    from: u64,
    through: u64,
) -> Result<Vec<(EventRef, ChainEvent)>, String> {
    let mut events = Vec::new();
    let mut start = from;
    while start <= through {
        let end = start.saturating_add(LOG_RANGE_BLOCKS - 1).min(through);
        for raw in source.logs_in_range(start, end).await.map_err(rpc)? {
            if let Some(ev) = decode_event(&raw).map_err(|e| e.to_string())? {
                let at = EventRef { block: raw.block_number, log_index: raw.log_index, tx: raw.transaction_hash };
                events.push((at, ev));
            }
        }
        start = end + 1;
    }
    Ok(events)
}

impl ChainFacts {
    /// Folds the events in chain order; `hub` is the hub's address (channels it opened are
    /// tracked by the ledger).
    fn fold(events: &[(EventRef, ChainEvent)], hub: Address) -> ChainFacts {
        let mut f = ChainFacts::default();
        for (at, ev) in events {
            match *ev {
                ChainEvent::ChannelOpened { user, epoch, opened_by } => {
                    let c = f.channels.entry(user).or_default();
                    (c.epoch, c.deposited, c.withdrawn, c.status) = (epoch, 0, 0, Some(Status::Open));
                    c.tracked |= opened_by == hub;
                    c.events.push(*at);
                }
                ChainEvent::ChannelRegistered { user, .. } => {
                    let c = f.channels.entry(user).or_default();
                    c.tracked = true;
                    c.events.push(*at);
                }
                ChainEvent::Deposited { user, total_deposited, .. } => {
                    let c = f.channels.entry(user).or_default();
                    f.deposits = f.deposits.saturating_add(total_deposited.0.saturating_sub(c.deposited));
                    c.deposited = total_deposited.0;
                    c.tracked = true;
                    c.events.push(*at);
                }
                ChainEvent::Withdrawn { user, total_withdrawn, .. } => {
                    let c = f.channels.entry(user).or_default();
                    f.withdrawals = f.withdrawals.saturating_add(total_withdrawn.0.saturating_sub(c.withdrawn));
                    c.withdrawn = total_withdrawn.0;
                    c.events.push(*at);
                }
                ChainEvent::ExitStarted { user, settle_block, .. } => {
                    let c = f.channels.entry(user).or_default();
                    c.status = Some(Status::Closing { settle_block });
                    c.events.push(*at);
                }
                ChainEvent::Settled { user, paid, .. } => {
                    let c = f.channels.entry(user).or_default();
                    c.status = Some(Status::Settled);
                    f.settlements = f.settlements.saturating_add(paid.0);
                    c.events.push(*at);
                }
                ChainEvent::CustodialDeposited { account, amount, .. } => {
                    let c = f.custodial.entry(account).or_default();
                    c.deposited = c.deposited.saturating_add(amount.0);
                    f.custodial_deposits = f.custodial_deposits.saturating_add(amount.0);
                    c.events.push(*at);
                }
                ChainEvent::PayoutBatchExecuted { total, .. } => f.payouts = f.payouts.saturating_add(total.0),
                _ => {}
            }
        }
        f
    }
}

/// A channel's state as the report prints it.
fn describe(epoch: u64, status: Option<Status>) -> String {
    match status {
        None => format!("epoch {epoch} never opened"),
        Some(Status::Open) => format!("epoch {epoch} open"),
        Some(Status::Closing { settle_block }) => format!("epoch {epoch} closing (settles at block {settle_block})"),
        Some(Status::Settled) => format!("epoch {epoch} settled"),
    }
}

/// Collects discrepancies.
#[derive(Default)]
struct Discrepancies(Vec<Discrepancy>);

impl Discrepancies {
    fn report(&mut self, kind: &str, account: Option<Address>, chain: String, ledger: String, events: &[EventRef]) {
        self.0.push(Discrepancy { kind: kind.into(), account, chain, ledger, events: events.to_vec() });
    }
}

/// The contract's balances against each other and against the ledger's totals.
fn compare_totals(l: &Ledger, b: &ChainBalances, d: &mut Discrepancies) {
    // More tokens than reserve and funds is excess (someone sent tokens outside the contract's
    // functions), reported in the totals; fewer is an imbalance.
    if b.token_balance < b.reserve + b.channel_funds + b.escrow {
        d.report(
            "contract_unbalanced",
            None,
            format!("token balance {}", b.token_balance),
            format!("reserve {} + channel funds {} + escrow {}", b.reserve, b.channel_funds, b.escrow),
            &[],
        );
    }
    if U256::from(l.reserve.0) != b.reserve {
        d.report("reserve_mismatch", None, b.reserve.to_string(), l.reserve.0.to_string(), &[]);
    }
    let ledger_funds = l.accounts().fold(U256::ZERO, |sum, (_, a)| sum + U256::from(a.funds()));
    if ledger_funds != b.channel_funds {
        d.report("channel_funds_mismatch", None, b.channel_funds.to_string(), ledger_funds.to_string(), &[]);
    }
}

/// Each tracked channel's epoch, status and running totals against the ledger's account.
fn compare_channels(l: &Ledger, f: &ChainFacts, d: &mut Discrepancies) {
    for (user, c) in f.channels.iter().filter(|(_, c)| c.tracked) {
        let Some(a) = l.account(user) else {
            d.report(
                "channel_unknown_to_ledger",
                Some(*user),
                format!("{}, deposited {}", describe(c.epoch, c.status), c.deposited),
                "no account".into(),
                &c.events,
            );
            continue;
        };
        let ch = &a.channel;
        if ch.epoch != c.epoch || Some(ch.status) != c.status {
            d.report(
                "channel_state_mismatch",
                Some(*user),
                describe(c.epoch, c.status),
                describe(ch.epoch, Some(ch.status)),
                &c.events,
            );
        } else if ch.deposited.0 != c.deposited || ch.withdrawn.0 != c.withdrawn {
            d.report(
                "channel_totals_mismatch",
                Some(*user),
                format!("deposited {} withdrawn {}", c.deposited, c.withdrawn),
                format!("deposited {} withdrawn {}", ch.deposited.0, ch.withdrawn.0),
                &c.events,
            );
        }
    }
    for (user, _) in l.accounts() {
        if !f.channels.get(user).is_some_and(|c| c.tracked) {
            d.report("ledger_account_not_on_chain", Some(*user), "no ChannelOpened".into(), "account".into(), &[]);
        }
    }
}

/// Custodial deposits per account, and those for no account against the ledger's unattributed.
fn compare_custodial(l: &Ledger, f: &ChainFacts, d: &mut Discrepancies) {
    let mut unattributed_on_chain = 0u128;
    for (account, c) in &f.custodial {
        match l.custodial(account) {
            Some(acct) if acct.deposited_on_chain.0 == c.deposited => {}
            Some(acct) => d.report(
                "custodial_deposits_mismatch",
                Some(*account),
                format!("deposited {}", c.deposited),
                format!("deposited {}", acct.deposited_on_chain.0),
                &c.events,
            ),
            None => unattributed_on_chain = unattributed_on_chain.saturating_add(c.deposited),
        }
    }
    for acct in l.custodial_accounts() {
        if !f.custodial.contains_key(&acct.account) && !acct.deposited_on_chain.is_zero() {
            d.report(
                "custodial_deposits_mismatch",
                Some(acct.account),
                "deposited 0".into(),
                format!("deposited {}", acct.deposited_on_chain.0),
                &[],
            );
        }
    }
    if unattributed_on_chain != l.unattributed.0 {
        let events: Vec<EventRef> = f
            .custodial
            .iter()
            .filter(|(a, _)| l.custodial(a).is_none())
            .flat_map(|(_, c)| c.events.iter().copied())
            .collect();
        d.report(
            "unattributed_deposits_mismatch",
            None,
            format!("deposits for no custodial account: {unattributed_on_chain}"),
            format!("unattributed {}", l.unattributed.0),
            &events,
        );
    }
}

/// Runs one reconciliation.
pub async fn reconcile(node: &Node) -> Result<Report, String> {
    let contract = node.domain.verifying_contract;
    let through = node.read().ledger().block;
    let from = deployment_block(node, contract, through).await?;
    let events = read_events(&RpcSource::new(node.provider.clone(), contract), from, through).await?;
    let facts = ChainFacts::fold(&events, node.hub);
    let balances = ChainBalances {
        token_balance: call(node, node.token, IErc20::balanceOfCall { owner: contract }, through).await?,
        reserve: call(node, contract, IInfHub::reserveCall {}, through).await?,
        channel_funds: call(node, contract, IInfHub::totalChannelFundsCall {}, through).await?,
        escrow: call(node, contract, IInfHub::totalEscrowCall {}, through).await?,
    };
    let mut d = Discrepancies::default();
    {
        let st = node.read();
        let l = st.ledger();
        compare_totals(l, &balances, &mut d);
        compare_channels(l, &facts, &mut d);
        compare_custodial(l, &facts, &mut d);
    }
    let excess = balances.token_balance.saturating_sub(balances.reserve + balances.channel_funds + balances.escrow);
    Ok(Report {
        ok: d.0.is_empty(),
        from_block: from,
        through_block: through,
        events: events.len(),
        chain: ChainTotals {
            channel_deposits: facts.deposits.to_string(),
            custodial_deposits: facts.custodial_deposits.to_string(),
            withdrawals: facts.withdrawals.to_string(),
            payouts: facts.payouts.to_string(),
            settlements: facts.settlements.to_string(),
            token_balance: balances.token_balance.to_string(),
            reserve: balances.reserve.to_string(),
            channel_funds: balances.channel_funds.to_string(),
            escrow: balances.escrow.to_string(),
            excess: excess.to_string(),
            untracked_channels: facts.channels.values().filter(|c| !c.tracked).count() as u64,
        },
        discrepancies: d.0,
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

#[cfg(test)]
mod tests {
    use super::*;
    use infhub_core::Amount;

    fn at(block: u64) -> EventRef {
        EventRef { block, log_index: 0, tx: None }
    }

    /// The fold keeps running totals per epoch, the status the core's channel would have, and
    /// which channels the ledger must know.
    #[test]
    fn the_chain_facts_follow_each_channel_through_its_epochs() {
        let (hub, alice, mallory) = (Address::repeat_byte(1), Address::repeat_byte(2), Address::repeat_byte(3));
        let events = [
            (at(1), ChainEvent::ChannelOpened { user: alice, epoch: 1, opened_by: hub }),
            (at(2), ChainEvent::Deposited { user: alice, epoch: 1, total_deposited: Amount(30) }),
            (at(3), ChainEvent::Deposited { user: alice, epoch: 1, total_deposited: Amount(50) }),
            (at(4), ChainEvent::ExitStarted { user: alice, epoch: 1, settle_block: 40 }),
            (at(5), ChainEvent::ChannelOpened { user: mallory, epoch: 1, opened_by: mallory }),
        ];
        let f = ChainFacts::fold(&events, hub);
        let a = &f.channels[&alice];
        assert_eq!((a.epoch, a.deposited, a.status), (1, 50, Some(Status::Closing { settle_block: 40 })));
        assert_eq!(f.deposits, 50, "running totals are counted once, not summed");
        assert!(a.tracked && !f.channels[&mallory].tracked, "a user's own unfunded channel is not the ledger's");

        let mut more = events.to_vec();
        more.push((at(6), ChainEvent::Settled { user: alice, epoch: 1, paid: Amount(50), reserve_after: Amount(0) }));
        more.push((at(7), ChainEvent::ChannelOpened { user: alice, epoch: 2, opened_by: hub }));
        more.push((at(8), ChainEvent::Deposited { user: alice, epoch: 2, total_deposited: Amount(5) }));
        let f = ChainFacts::fold(&more, hub);
        let a = &f.channels[&alice];
        assert_eq!((a.epoch, a.deposited, a.status), (2, 5, Some(Status::Open)), "a new epoch starts from zero");
        assert_eq!((f.deposits, f.settlements), (55, 50));
        assert_eq!(describe(2, a.status), "epoch 2 open");
    }
}
