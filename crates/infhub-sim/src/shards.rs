//! A model of the cross-shard payment protocol of `docs/sharding.md` (issue 23), run under a
//! seeded schedule with crashes and a lossy network, checked after every step.
//!
//! This is a model of the protocol, not the hub's code (sharding is designed, not built): each
//! shard is a state machine whose durable state changes only by whole commits (as the ledger's
//! group commits), and loses everything else when it crashes. A payment from a payer in shard
//! A to a payee in shard B is: A debits the payer and records an `Outgoing` in the same commit;
//! A's relay sends it to B until acknowledged (again after every restart); B applies it once
//! per `(payer, id)` and answers the stored outcome to every repeat; A records the delivery, or
//! refunds the payer once if B refused (a closed payee). Messages are dropped, duplicated and
//! reordered; shards crash before or after a commit. The auditor checks, after every step, that
//! money is conserved (balances plus payments in flight), that no payment id is credited or
//! refunded twice or both, and at the end, after the network heals, that every payment settled.

use crate::rng::Rng;
use std::collections::BTreeMap;

/// A payer's payment id, unique per payer (as the debit's payment id).
pub type PaymentKey = (u32, u64);

/// What a shard keeps across a crash.
#[derive(Clone, Debug, Default)]
struct Durable {
    /// Balances of this shard's accounts.
    balances: BTreeMap<u32, u128>,
    /// Payments debited here and not yet settled by the payee's shard: payee, amount, shard.
    outgoing: BTreeMap<PaymentKey, (u32, u128, usize)>,
    /// Incoming payments applied here, with their outcome (true: credited).
    applied: BTreeMap<PaymentKey, bool>,
}

/// A message between shards.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Message {
    /// A's relay to B: credit `payee` with `amount` for `key`.
    Incoming { to: usize, from: usize, key: PaymentKey, payee: u32, amount: u128 },
    /// B's answer to A: `key` was credited (true) or refused.
    Settled { to: usize, key: PaymentKey, credited: bool },
}

/// A deliberate fault in the model, to show the auditor catches it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShardBug {
    /// None: the protocol as designed.
    None,
    /// B keeps the payment ids it applied only in memory: a crash forgets them.
    ForgetsAppliedIds,
    /// A drops an `Outgoing` when the relay sends it, before any acknowledgement.
    DropsOutgoingOnSend,
}

/// The run's settings.
#[derive(Clone, Copy, Debug)]
pub struct ShardConfig {
    /// Shards.
    pub shards: usize,
    /// Accounts (spread over the shards by `account % shards`).
    pub accounts: u32,
    /// Payments attempted.
    pub payments: u32,
    /// Out of 1,000 steps: a shard crashes.
    pub crash_per_mille: u64,
    /// Out of 1,000 deliveries: the message is dropped.
    pub drop_per_mille: u64,
    /// Out of 1,000 deliveries: the message is duplicated.
    pub duplicate_per_mille: u64,
    /// The fault to inject.
    pub bug: ShardBug,
}

impl Default for ShardConfig {
    fn default() -> Self {
        ShardConfig {
            shards: 3,
            accounts: 12,
            payments: 300,
            crash_per_mille: 30,
            drop_per_mille: 150,
            duplicate_per_mille: 100,
            bug: ShardBug::None,
        }
    }
}

/// What a run did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ShardReport {
    /// Payments debited (accepted by the payer's shard).
    pub debited: u32,
    /// Of them, across shards.
    pub cross_shard: u32,
    /// Payments refused by the payee's shard and refunded.
    pub refunded: u32,
    /// Shard crashes.
    pub crashes: u32,
    /// Messages dropped.
    pub dropped: u32,
    /// Messages duplicated.
    pub duplicated: u32,
    /// Steps taken.
    pub steps: u64,
}

/// A rule the auditor found broken.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardViolation {
    /// The step.
    pub step: u64,
    /// What broke.
    pub what: String,
}

const START_BALANCE: u128 = 1_000;
/// A payee of this account number or above has a closed account: her shard refuses.
fn closed(account: u32, accounts: u32) -> bool {
    account + 2 >= accounts
}

struct Model {
    config: ShardConfig,
    durable: Vec<Durable>,
    /// `applied` as the buggy shard keeps it (in memory only) under `ForgetsAppliedIds`.
    volatile_applied: Vec<BTreeMap<PaymentKey, bool>>,
    network: Vec<Message>,
    /// Every credit and refund ever made, by key: (credits, refunds).
    ledger_of_outcomes: BTreeMap<PaymentKey, (u32, u32)>,
    total: u128,
    report: ShardReport,
}

impl Model {
    fn shard_of(&self, account: u32) -> usize {
        account as usize % self.config.shards
    }

    fn applied(&self, shard: usize) -> &BTreeMap<PaymentKey, bool> {
        match self.config.bug {
            ShardBug::ForgetsAppliedIds => &self.volatile_applied[shard],
            _ => &self.durable[shard].applied,
        }
    }

    fn applied_mut(&mut self, shard: usize) -> &mut BTreeMap<PaymentKey, bool> {
        match self.config.bug {
            ShardBug::ForgetsAppliedIds => &mut self.volatile_applied[shard],
            _ => &mut self.durable[shard].applied,
        }
    }

    /// One payment: the payer's shard debits and records the outgoing payment in one commit.
    fn pay(&mut self, payer: u32, payee: u32, amount: u128, id: u64) {
        let a = self.shard_of(payer);
        let balance = self.durable[a].balances.get(&payer).copied().unwrap_or(0);
        if balance < amount || payer == payee {
            return;
        }
        let key = (payer, id);
        let b = self.shard_of(payee);
        self.report.debited += 1;
        let d = &mut self.durable[a];
        d.balances.insert(payer, balance - amount);
        if a == b && !closed(payee, self.config.accounts) {
            // Inside one shard: one commit, as today.
            *d.balances.entry(payee).or_insert(0) += amount;
            self.ledger_of_outcomes.entry(key).or_default().0 += 1;
            return;
        }
        self.report.cross_shard += 1;
        d.outgoing.insert(key, (payee, amount, b));
    }

    /// The relay of shard `a`: every outgoing payment not yet settled goes out (again).
    fn relay(&mut self, a: usize) {
        let sends: Vec<Message> = self.durable[a]
            .outgoing
            .iter()
            .map(|(key, (payee, amount, b))| Message::Incoming {
                to: *b,
                from: a,
                key: *key,
                payee: *payee,
                amount: *amount,
            })
            .collect();
        if self.config.bug == ShardBug::DropsOutgoingOnSend {
            for m in &sends {
                if let Message::Incoming { key, .. } = m {
                    self.durable[a].outgoing.remove(key);
                }
            }
        }
        self.network.extend(sends);
    }

    /// Shard `b` applies an incoming payment in one commit (or answers the stored outcome).
    fn incoming(&mut self, b: usize, from: usize, key: PaymentKey, payee: u32, amount: u128) {
        let credited = match self.applied(b).get(&key) {
            Some(outcome) => *outcome,
            None => {
                let credited = !closed(payee, self.config.accounts);
                if credited {
                    *self.durable[b].balances.entry(payee).or_insert(0) += amount;
                    self.ledger_of_outcomes.entry(key).or_default().0 += 1;
                }
                self.applied_mut(b).insert(key, credited);
                credited
            }
        };
        self.network.push(Message::Settled { to: from, key, credited });
    }

    /// Shard `a` learns how `key` settled: done, or the payer is refunded, in one commit.
    fn settled(&mut self, a: usize, key: PaymentKey, credited: bool) {
        let Some((_, amount, _)) = self.durable[a].outgoing.remove(&key) else { return };
        if !credited {
            *self.durable[a].balances.entry(key.0).or_insert(0) += amount;
            self.ledger_of_outcomes.entry(key).or_default().1 += 1;
            self.report.refunded += 1;
        }
    }

    fn crash(&mut self, shard: usize) {
        self.report.crashes += 1;
        self.volatile_applied[shard].clear();
    }

    /// Money is conserved: balances plus payments debited and not yet credited or refunded.
    fn audit(&self, step: u64) -> Result<(), ShardViolation> {
        let violation = |what: String| Err(ShardViolation { step, what });
        for (key, (credits, refunds)) in &self.ledger_of_outcomes {
            if *credits > 1 || *refunds > 1 || (*credits > 0 && *refunds > 0) {
                return violation(format!("payment {key:?} credited {credits} times and refunded {refunds} times"));
            }
        }
        let balances: u128 = self.durable.iter().flat_map(|d| d.balances.values()).sum();
        let in_flight: u128 = self
            .durable
            .iter()
            .flat_map(|d| d.outgoing.iter())
            .filter(|(key, _)| self.ledger_of_outcomes.get(key).is_none_or(|(c, _)| *c == 0))
            .map(|(_, (_, amount, _))| *amount)
            .sum();
        if balances + in_flight != self.total {
            return violation(format!("balances {balances} + in flight {in_flight} != {}", self.total));
        }
        Ok(())
    }
}

/// Runs the model for `seed`: the payments under faults, then the network healed until every
/// payment has settled. The report, or the first rule broken.
pub fn run_shards(seed: u64, config: ShardConfig) -> Result<ShardReport, ShardViolation> {
    assert!(config.shards >= 2 && config.accounts >= 4, "a model needs two shards and four accounts");
    let mut rng = Rng::new(seed);
    let mut model = Model {
        config,
        durable: vec![Durable::default(); config.shards],
        volatile_applied: vec![BTreeMap::new(); config.shards],
        network: Vec::new(),
        ledger_of_outcomes: BTreeMap::new(),
        total: START_BALANCE * u128::from(config.accounts),
        report: ShardReport::default(),
    };
    for account in 0..config.accounts {
        let shard = model.shard_of(account);
        model.durable[shard].balances.insert(account, START_BALANCE);
    }
    let mut next_id = 0u64;
    let mut step = 0u64;
    let mut issued = 0;
    // Under faults: payments, relays, deliveries, crashes in a seeded order.
    while issued < config.payments || (!model.network.is_empty() && step < 100_000) {
        step += 1;
        match rng.below(10) {
            0..=2 if issued < config.payments => {
                issued += 1;
                next_id += 1;
                let payer = rng.below(u64::from(config.accounts)) as u32;
                let payee = rng.below(u64::from(config.accounts)) as u32;
                let amount = 1 + u128::from(rng.below(120));
                model.pay(payer, payee, amount, next_id);
            }
            3 => {
                let shard = rng.below(config.shards as u64) as usize;
                model.relay(shard);
            }
            _ if !model.network.is_empty() => {
                let i = rng.below(model.network.len() as u64) as usize;
                let message = model.network.swap_remove(i);
                if rng.chance(config.drop_per_mille) {
                    model.report.dropped += 1;
                } else {
                    if rng.chance(config.duplicate_per_mille) {
                        model.report.duplicated += 1;
                        model.network.push(message.clone());
                    }
                    deliver(&mut model, &mut rng, message);
                }
            }
            _ => {}
        }
        if rng.chance(config.crash_per_mille) {
            let shard = rng.below(config.shards as u64) as usize;
            model.crash(shard);
        }
        model.audit(step)?;
    }
    // The network heals: no drops, no crashes; relays run until every payment settled.
    for _ in 0..1_000 {
        if model.durable.iter().all(|d| d.outgoing.is_empty()) {
            break;
        }
        for shard in 0..config.shards {
            model.relay(shard);
        }
        while let Some(message) = model.network.pop() {
            step += 1;
            deliver(&mut model, &mut rng, message);
            model.audit(step)?;
        }
    }
    if let Some((key, _)) = model.durable.iter().flat_map(|d| d.outgoing.iter()).next() {
        return Err(ShardViolation { step, what: format!("payment {key:?} never settled") });
    }
    model.audit(step)?;
    model.report.steps = step;
    Ok(model.report)
}

/// Delivers one message; its receiver may crash before its commit (the message's effect is
/// lost with it, and the sender repeats it later).
fn deliver(model: &mut Model, rng: &mut Rng, message: Message) {
    let to = match &message {
        Message::Incoming { to, .. } | Message::Settled { to, .. } => *to,
    };
    if rng.chance(model.config.crash_per_mille) {
        model.crash(to);
        return;
    }
    match message {
        Message::Incoming { to, from, key, payee, amount } => model.incoming(to, from, key, payee, amount),
        Message::Settled { to, key, credited } => model.settled(to, key, credited),
    }
}
