//! The auditor: checks the world after every step and at the end, from the outside.
//!
//! It trusts no component's own claims: conservation is read from the contract's storage in
//! the EVM, the hub's ledger is compared with the contract as of the block the ledger says it
//! has confirmed, acknowledgements are recorded when a wallet receives them and compared with
//! what the hub holds after every restart, and settlements are judged against each end's
//! own newest proofs. The first broken rule stops the run with the seed, the step and the
//! rule's name.

use crate::evm::{MinedTx, SimChain};
use crate::hub::SimHub;
use crate::wallet::{Behaviour, SimWallet};
use alloy::primitives::{Address, U256};
use alloy::sol_types::SolCall;
use infhub_chain::bindings::IInfHub;
use infhub_core::channel::{Effect, Status};
use infhub_core::messages::{SignedCredit, SignedDebit};
use infhub_core::{Amount, Error, PaymentKind};
use std::collections::{BTreeMap, VecDeque};
use std::fmt;

/// A broken invariant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// Step at which it was found.
    pub step: u64,
    /// The rule broken, named like an error (`acknowledged_payment_must_survive`).
    pub rule: &'static str,
    /// What exactly was seen.
    pub detail: String,
    /// The last things that happened (crashes, closes), for the report.
    pub trail: Vec<String>,
}

impl Violation {
    /// A violation of `rule` at `step`.
    pub fn new(step: u64, rule: &'static str, detail: impl Into<String>) -> Violation {
        Violation { step, rule, detail: detail.into(), trail: Vec::new() }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "step {}: {} broken: {}", self.step, self.rule, self.detail)?;
        for t in &self.trail {
            write!(f, "\n  before: {t}")?;
        }
        Ok(())
    }
}

/// The auditor's own records.
pub struct Auditor {
    users: Vec<Address>,
    /// The hub's signing address and domain, to judge what it signs and sends on chain.
    hub: Address,
    /// The hub's contract.
    contract: Address,
    domain: infhub_core::Domain,
    /// Every credit the hub issued to each wallet: (epoch, nonce) → running total.
    issued_credits: Vec<BTreeMap<(u64, u64), u128>>,
    /// Whether the hub's conduct on chain is judged (see `SimConfig::audit_hub_conduct`).
    pub audit_hub_conduct: bool,
    /// Highest debit nonce acknowledged to each wallet.
    acked_debit_nonce: Vec<u64>,
    /// Highest credit nonce the hub issued to each wallet in a durable batch.
    issued_credit_nonce: Vec<u64>,
    /// External payments asked for: recipient -> amount (recipients are fresh addresses).
    payouts_requested: BTreeMap<Address, (Address, Amount)>,
    /// External payments acknowledged: recipient -> amount.
    payouts_acked: BTreeMap<Address, Amount>,
    /// External payments refused and refunded: their recipients must receive nothing.
    payouts_refunded: std::collections::BTreeSet<Address>,
    /// Wallets the hub closed on.
    hub_closed: Vec<bool>,
    /// Settlements already judged per wallet.
    judged: Vec<usize>,
    /// Wallets whose channel was open when the hub took reserve with a payout no user signed:
    /// the contract protects only their funds (spec §1), so only that is judged (when the
    /// hub's conduct itself is not judged).
    unprotected: Vec<bool>,
    /// The newest payments the hub logged: (debit, its sequence number), for the history check
    /// after every restart.
    logged: VecDeque<(SignedDebit, u64)>,
    /// The newest checkpoint checked.
    checkpoints_checked: u64,
    /// Checkpoints the contract took and every wallet's leaf checked out in.
    pub checkpoints_verified: u64,
    found: Option<Violation>,
    trail: VecDeque<String>,
}

const TRAIL: usize = 8;
/// Payments whose history entries are checked after a restart (the newest).
const LOGGED_CHECKED: usize = 256;

fn amount(v: u128) -> Amount {
    Amount(v)
}

impl Auditor {
    /// An auditor for these wallets, of the hub with this address and signing domain.
    pub fn new(wallets: &[SimWallet], hub: Address, domain: infhub_core::Domain) -> Auditor {
        let n = wallets.len();
        Auditor {
            users: wallets.iter().map(|w| w.address()).collect(),
            hub,
            contract: domain.verifying_contract,
            domain,
            issued_credits: vec![BTreeMap::new(); n],
            audit_hub_conduct: true,
            acked_debit_nonce: vec![0; n],
            issued_credit_nonce: vec![0; n],
            payouts_requested: BTreeMap::new(),
            payouts_acked: BTreeMap::new(),
            payouts_refunded: std::collections::BTreeSet::new(),
            hub_closed: vec![false; n],
            judged: vec![0; n],
            unprotected: vec![false; n],
            logged: VecDeque::new(),
            checkpoints_checked: 0,
            checkpoints_verified: 0,
            found: None,
            trail: VecDeque::new(),
        }
    }

    /// Remembers something that happened, for the failure report.
    pub fn note(&mut self, what: String) {
        if self.trail.len() == TRAIL {
            self.trail.pop_front();
        }
        self.trail.push_back(what);
    }

    fn fail(&mut self, v: Violation) {
        if self.found.is_none() {
            let mut v = v;
            v.trail = self.trail.iter().cloned().collect();
            self.found = Some(v);
        }
    }

    fn result(&mut self) -> Result<(), Violation> {
        match self.found.take() {
            Some(v) => Err(v),
            None => Ok(()),
        }
    }

    /// A wallet received the acknowledgement of its debit.
    pub fn payment_acked(&mut self, wallet: usize, d: &SignedDebit) {
        let n = &mut self.acked_debit_nonce[wallet];
        *n = (*n).max(d.message.nonce);
        if d.message.kind == PaymentKind::External as u8 {
            self.payouts_acked.insert(d.message.recipient, d.message.amount);
        }
    }

    /// The hub refused a payment and refunded it: an external one must never be paid out.
    pub fn payment_refunded(&mut self, d: &SignedDebit) {
        if d.message.kind == PaymentKind::External as u8 {
            self.payouts_refunded.insert(d.message.recipient);
        }
    }

    /// The hub issued a credit in a batch that is durable.
    pub fn credit_issued(&mut self, wallet: usize, c: &SignedCredit) {
        let n = &mut self.issued_credit_nonce[wallet];
        *n = (*n).max(c.message.nonce);
        let m = &c.message;
        self.issued_credits[wallet].insert((m.epoch, m.nonce), m.cumulative_credit.0);
    }

    /// The parties' conduct on chain, from every mined transaction (whatever the contract made
    /// of it): a hub-signed credit with a higher nonce and a lower total than one the hub
    /// issued is the hub trying to erase received payments; a payout that pays anyone other
    /// than a user's signed external payment is the hub taking the reserve.
    fn check_conduct(&mut self, step: u64, mined: &[MinedTx], wallets: &[SimWallet]) {
        use alloy::sol_types::SolCall;
        use infhub_chain::bindings::IInfHub;
        if !self.audit_hub_conduct {
            self.note_unbacked_payouts(mined, wallets);
            return;
        }
        let contract = self.contract;
        for tx in mined.iter().filter(|t| t.to == contract) {
            if let Ok(call) = IInfHub::submitCreditCall::abi_decode(&tx.data) {
                let c = &call.credit;
                let credit = infhub_core::Credit {
                    user: c.user,
                    epoch: c.epoch,
                    nonce: c.nonce,
                    cumulative_credit: Amount(c.cumulativeCredit),
                    locked_amount: Amount(c.lockedAmount),
                    locks_root: c.locksRoot,
                };
                let signed_by_hub = infhub_core::messages::HubSigned::from_proof_bytes(credit, &call.hubSignature)
                    .is_ok_and(|p| p.verify(&self.domain, self.hub).is_ok());
                let Some(i) = self.users.iter().position(|u| *u == credit.user) else { continue };
                let erased = self.issued_credits[i]
                    .range((credit.epoch, 0)..(credit.epoch, credit.nonce))
                    .find(|(_, total)| **total > credit.cumulative_credit.0);
                if let (true, Some(((_, nonce), total))) = (signed_by_hub, erased) {
                    self.fail(Violation::new(
                        step,
                        "hub_never_signs_a_lower_credit",
                        format!(
                            "wallet {i}: the hub signed credit #{} totalling {} after credit #{nonce} totalling {total} (submitted in block {}, {})",
                            credit.nonce,
                            credit.cumulative_credit,
                            tx.block,
                            if tx.success { "accepted" } else { "refused by the contract" }
                        ),
                    ));
                }
            } else if let (true, Ok(call)) = (tx.from == self.hub, IInfHub::payoutCall::abi_decode(&tx.data)) {
                for (to, amount) in call.recipients.iter().zip(&call.amounts) {
                    let asked = self.payouts_requested.get(to).is_some_and(|(_, a)| U256::from(a.0) == *amount);
                    if !asked {
                        self.fail(Violation::new(
                            step,
                            "hub_pays_out_only_what_users_signed",
                            format!(
                                "the hub paid {amount} to {to}, which no user's external payment names (block {}, {})",
                                tx.block,
                                if tx.success { "accepted" } else { "refused by the contract" }
                            ),
                        ));
                    }
                }
            }
        }
    }

    /// With the hub's conduct not judged: a payout no user signed that the contract executed
    /// takes reserve that open channels' credits may need (spec §1: the notice and the
    /// reservation protect closing channels only); the channels open then are judged by what
    /// the contract protects for them, their funds.
    fn note_unbacked_payouts(&mut self, mined: &[MinedTx], wallets: &[SimWallet]) {
        use alloy::sol_types::SolCall;
        use infhub_chain::bindings::IInfHub;
        for tx in mined.iter().filter(|t| t.to == self.contract && t.from == self.hub && t.success) {
            let Ok(call) = IInfHub::payoutCall::abi_decode(&tx.data) else { continue };
            let unsigned = call
                .recipients
                .iter()
                .zip(&call.amounts)
                .any(|(to, amount)| self.payouts_requested.get(to).is_none_or(|(_, a)| U256::from(a.0) != *amount));
            if unsigned {
                for (i, w) in wallets.iter().enumerate() {
                    if w.channel().is_some_and(|c| c.status == Status::Open) {
                        self.unprotected[i] = true;
                    }
                }
            }
        }
    }

    /// A wallet asked for an external payment.
    pub fn payout_requested(&mut self, d: &SignedDebit) {
        self.payouts_requested.insert(d.message.recipient, (d.message.user, d.message.amount));
    }

    /// A cheater sent one half of a double spend.
    pub fn double_spend_attempt(&mut self, wallet: usize, d: &SignedDebit) {
        self.note(format!("wallet {wallet} double-spends nonce {}", d.message.nonce));
    }

    /// The hub refused a debit.
    pub fn refused(&mut self, step: u64, wallet: usize, behaviour: Behaviour, d: &SignedDebit, e: Error) {
        if behaviour == Behaviour::Honest && matches!(e, Error::InvalidSignature | Error::WrongSigner) {
            self.fail(Violation::new(
                step,
                "honest_signatures_verify",
                format!("wallet {wallet}'s debit nonce {} refused: {e}", d.message.nonce),
            ));
        }
    }

    /// The hub closed wallet `i`'s channel.
    pub fn hub_closed(&mut self, wallet: usize) {
        self.hub_closed[wallet] = true;
        self.note(format!("hub closes wallet {wallet}'s channel"));
    }

    /// The hub applied a payment (a new one, not a retry) at `seq`.
    pub fn payment_logged(&mut self, d: &SignedDebit, seq: u64) {
        if self.logged.len() == LOGGED_CHECKED {
            self.logged.pop_front();
        }
        self.logged.push_back((*d, seq));
    }

    /// The hub could not answer a payment from its history.
    pub fn history_failed(&mut self, step: u64, d: &SignedDebit, e: &infhub_hub::answers::NotApplied) {
        self.fail(Violation::new(
            step,
            "history_answers_every_payment",
            format!("{} payment {}: {e}", d.message.user, d.message.payment_id),
        ));
    }

    /// What the hub's shell reported: the channel effects of what it committed.
    pub fn hub_notices(&mut self, step: u64, notices: &[infhub_hub::notice::Notice]) {
        use infhub_hub::notice::NoticeBody;
        for n in notices {
            let (user, e) = match &n.body {
                NoticeBody::Status { effect, .. } => (n.user, effect),
                _ => continue,
            };
            if let Effect::Settled { paid, expected } = e {
                self.note(format!("settled {user}: paid {paid}, hub expected {expected}"));
                if paid > expected {
                    self.fail(Violation::new(
                        step,
                        "no_user_takes_more_than_owed",
                        format!("{user} was paid {paid} on chain; the hub's newest proofs owe {expected}"),
                    ));
                }
            }
        }
    }

    /// After the hub restarted from its disk: nothing acknowledged may be missing, from the
    /// ledger or from the history (which answers retries and statements).
    pub fn after_restart(&mut self, step: u64, hub: &SimHub, wallets: &[SimWallet]) -> Result<(), Violation> {
        self.note(format!("step {step}: hub restarted, recovery {:?}", hub.recovery()));
        self.check_acknowledged(step, hub, wallets);
        self.check_history(step, hub);
        self.result()
    }

    /// Every payment logged (the newest ones) is in the history, with its receipt.
    fn check_history(&mut self, step: u64, hub: &SimHub) {
        use infhub_core::messages::Eip712Message;
        use infhub_ledger::history::FirstResult;
        let history = hub.hub.ledger.history();
        let last = hub.ledger().next_seq - 1;
        if history.last_seq() != last {
            return self.fail(Violation::new(
                step,
                "history_indexes_the_whole_log",
                format!("history up to {}, log up to {last}", history.last_seq()),
            ));
        }
        let reader = history.reader();
        for (d, seq) in self.logged.clone() {
            let m = d.message;
            let found = history.heads(&m.user).map(|h| reader.payment_at(&m.user, h, &m.payment_id, seq));
            let ok = matches!(&found, Some(Ok(Some(FirstResult::Paid(p))))
                if p.receipt.message.debit_digest == m.digest(&self.domain));
            if !ok {
                return self.fail(Violation::new(
                    step,
                    "history_answers_every_payment",
                    format!("{} payment {} at seq {seq}: the history holds {found:?}", m.user, m.payment_id),
                ));
            }
        }
    }

    fn check_acknowledged(&mut self, step: u64, hub: &SimHub, wallets: &[SimWallet]) {
        let ledger = hub.ledger();
        for (i, w) in wallets.iter().enumerate() {
            let Some(acct) = ledger.account(&w.address()) else {
                if w.channel().is_some() {
                    self.fail(Violation::new(step, "opened_channels_are_known", format!("wallet {i}")));
                }
                continue;
            };
            let ch = &acct.channel;
            if ch.debit_nonce() < self.acked_debit_nonce[i] {
                self.fail(Violation::new(
                    step,
                    "acknowledged_payment_must_survive",
                    format!(
                        "wallet {i} was told debit nonce {} was applied; the hub holds nonce {}",
                        self.acked_debit_nonce[i],
                        ch.debit_nonce()
                    ),
                ));
            }
            if ch.credit_nonce() < self.issued_credit_nonce[i] {
                self.fail(Violation::new(
                    step,
                    "issued_credit_must_survive",
                    format!(
                        "credit nonce {} was issued to wallet {i} after a durable write; the hub holds {}",
                        self.issued_credit_nonce[i],
                        ch.credit_nonce()
                    ),
                ));
            }
            if let Some(wc) = w.channel() {
                if wc.epoch == ch.epoch && wc.credit_nonce() > ch.credit_nonce() {
                    self.fail(Violation::new(
                        step,
                        "wallet_credits_come_from_the_hub_ledger",
                        format!("wallet {i} holds credit nonce {}, hub {}", wc.credit_nonce(), ch.credit_nonce()),
                    ));
                }
                if wc.epoch == ch.epoch && wc.debit_nonce() > ch.debit_nonce() {
                    self.fail(Violation::new(
                        step,
                        "acknowledged_payment_must_survive",
                        format!("wallet {i} applied debit nonce {}, hub holds {}", wc.debit_nonce(), ch.debit_nonce()),
                    ));
                }
            }
        }
    }

    /// The checks after every step.
    pub fn check(
        &mut self,
        step: u64,
        chain: &mut SimChain,
        mined: &[MinedTx],
        hub: Option<&SimHub>,
        wallets: &[SimWallet],
    ) -> Result<(), Violation> {
        self.check_conduct(step, mined, wallets);
        // 0. No wallet found anything the hub told it that does not check out.
        for w in wallets {
            if let Some(c) = w.complaints.first() {
                self.fail(Violation::new(step, "hub_answers_check_out", format!("wallet {}: {c}", w.index)));
            }
        }
        // 1. Conservation in the contract: tokens held == reserve + Σ channel funds + the
        //    escrow of locks through settled closes (spec §6.1).
        let held = chain.token_balance(self.contract);
        let reserve = chain.reserve(self.contract);
        let funds = chain.total_channel_funds(self.contract);
        let escrow = chain.total_escrow(self.contract);
        if held != reserve + funds + escrow {
            self.fail(Violation::new(
                step,
                "contract_holdings_equal_reserve_plus_channel_funds",
                format!("holds {held}, reserve {reserve} + channel funds {funds} + escrow {escrow}"),
            ));
        }
        if step.is_multiple_of(10) {
            let mut sum = U256::ZERO;
            for u in &self.users {
                let c = chain.channel(self.contract, *u);
                sum += U256::from(c.deposited) + U256::from(c.advancedFromReserve)
                    - U256::from(c.withdrawn)
                    - U256::from(c.realizedDebit);
            }
            if sum != funds {
                self.fail(Violation::new(
                    step,
                    "channel_funds_sum_to_the_total",
                    format!("Σ channel funds {sum}, totalChannelFunds {funds}"),
                ));
            }
        }
        // 2. The hub's books, against themselves and against the chain.
        if let Some(hub) = hub {
            let ledger = hub.ledger();
            ledger.check_invariants();
            if self.audit_hub_conduct && !ledger.is_liquid() {
                self.fail(Violation::new(
                    step,
                    "reserve_covers_commitments",
                    format!("reserve {} free {}", ledger.reserve, ledger.free_reserve()),
                ));
            }
            self.check_acknowledged(step, hub, wallets);
            self.check_checkpoints(step, chain, hub, wallets);
            // The hub's books against its contract: a hub that misuses its key (taking its
            // reserve with a payout no user signed) breaks this by itself; without judging the
            // hub's conduct, only what the parties are paid is judged.
            if self.audit_hub_conduct && step.is_multiple_of(5) && ledger.block >= chain.floor {
                self.compare_with_chain(step, chain, hub);
            }
        }
        // 3. Settlements seen by wallets: an honest wallet is paid exactly its balance: its
        // newest credit, and the newest debit its key signed that reached the hub (which the
        // wallet may not have learned of if it was offline; the hub's ledger holds it).
        let Some(hub) = hub else { return self.result() };
        for (i, w) in wallets.iter().enumerate() {
            for s in &w.settlements[self.judged[i]..] {
                let account = hub.ledger().account(&w.address());
                let hub_debit = account.map_or(Amount::ZERO, |a| a.channel.cumulative_debit());
                let hub_credit = account.map_or(Amount::ZERO, |a| a.channel.cumulative_credit());
                // By the wallet's own proofs (and the newest debit its key signed, which the hub
                // holds): what the contract guarantees it whatever the hub does.
                let by_own_proofs =
                    s.expected.0.checked_add(s.known_cumulative_debit.0).and_then(|v| v.checked_sub(hub_debit.0));
                // An honest hub also puts its own newest credit on record (§5.10), which the
                // wallet may not have received yet.
                let unknown_credit = hub_credit.0.saturating_sub(s.known_cumulative_credit.0);
                let owed = by_own_proofs.and_then(|v| v.checked_add(unknown_credit)).map(Amount);
                let short = match (by_own_proofs, owed) {
                    (Some(least), Some(most)) if !self.audit_hub_conduct => {
                        // A dishonest hub may withhold its credit: judged by what the contract
                        // protects, the wallet's proofs (or, left unprotected, its funds).
                        let least = if self.unprotected[i] { least.min(s.funds.0) } else { least };
                        s.paid.0 < least || s.paid > most
                    }
                    _ => owed != Some(s.paid),
                };
                if w.behaviour == Behaviour::Honest && short {
                    self.fail(Violation::new(
                        step,
                        "honest_exit_pays_the_off_chain_balance",
                        format!(
                            "wallet {i}{} was paid {} but is owed {owed:?} (its own proofs say {}; it knew of \
                             debits totalling {} and credits totalling {}, the hub holds {hub_debit} and \
                             {hub_credit})",
                            if self.hub_closed[i] { " (closed by the hub)" } else { "" },
                            s.paid,
                            s.expected,
                            s.known_cumulative_debit,
                            s.known_cumulative_credit
                        ),
                    ));
                }
            }
            self.judged[i] = w.settlements.len();
        }
        self.result()
    }

    /// Every checkpoint the contract took checks out for every wallet (spec §5.16): the hub
    /// serves each wallet's leaf with a path to the root the contract holds, and the leaf
    /// agrees with the chain at the checkpoint's block and with every credit the hub issued
    /// up to its ledger position and every debit the wallet signed (the check a wallet makes,
    /// `check_channel_leaf`, with what the auditor knows).
    fn check_checkpoints(&mut self, step: u64, chain: &mut SimChain, hub: &SimHub, wallets: &[SimWallet]) {
        use infhub_core::checkpoint::{check_channel_leaf, ChannelFacts, CheckpointDomain, SumNode};
        let ledger = hub.ledger();
        let Some(posted) = ledger.checkpoints.posted.filter(|p| p.id > self.checkpoints_checked) else { return };
        self.checkpoints_checked = posted.id;
        let raw = chain.call(self.contract, IInfHub::checkpointsCall { id: posted.id }.abi_encode());
        let on_chain = match raw.map(|r| IInfHub::checkpointsCall::abi_decode_returns(&r)) {
            Ok(Ok(c)) => c,
            other => return self.fail(Violation::new(step, "contract_readable", format!("{other:?}"))),
        };
        // The ledger learns of checkpoints from confirmed events; a deeper reorg than the
        // confirmations would show here as another root.
        let c = posted.checkpoint;
        if on_chain.root != c.root || on_chain.totalLiability != c.total_liability {
            return self.fail(Violation::new(
                step,
                "ledger_applies_each_chain_event_once",
                format!("checkpoint {}: contract root {} ledger {}", posted.id, on_chain.root, c.root),
            ));
        }
        let Some(shelf) = hub.hub.duties.checkpoint_shelf() else { return };
        let shelf = shelf.lock().unwrap_or_else(|p| p.into_inner());
        let (_, channels) = match chain.books_at(c.chain_block, self.contract, &self.users) {
            Ok(b) => b,
            Err(e) => return self.fail(Violation::new(step, "contract_readable", e)),
        };
        let d = CheckpointDomain { chain_id: self.domain.chain_id, contract: self.contract, checkpoint_id: posted.id };
        let root = SumNode { hash: c.root, sum: c.total_liability };
        for (i, ch) in channels.iter().enumerate() {
            let user = self.users[i];
            let Some(proofs) = shelf.proofs(posted.id, c.root, user) else {
                return self.fail(Violation::new(
                    step,
                    "posted_checkpoints_are_served",
                    format!("checkpoint {} is not at hand after the hub's restarts", posted.id),
                ));
            };
            // Credit nonces are ledger positions: the checkpoint had to count every credit of
            // nonce at most its ledgerSeq.
            let credit_floor = self.issued_credits[i]
                .range((ch.epoch, 0)..=(ch.epoch, c.ledger_seq))
                .map(|(_, t)| *t)
                .max()
                .unwrap_or(0);
            let debit_ceiling = wallets[i]
                .old_debits
                .iter()
                .filter(|d| d.message.epoch == ch.epoch)
                .map(|d| d.message.cumulative_debit.0)
                .max()
                .unwrap_or(0);
            if ch.status != 1 && ch.status != 2 {
                continue; // no channel, or settled: no leaf owed
            }
            let funds = (ch.deposited + ch.advancedFromReserve).saturating_sub(ch.withdrawn + ch.realizedDebit);
            let facts = ChannelFacts {
                epoch: ch.epoch,
                deposited: amount(ch.deposited),
                withdrawn: amount(ch.withdrawn),
                funds: amount(funds),
                credit_floor: amount(credit_floor),
                debit_ceiling: amount(debit_ceiling),
            };
            if let Err(fault) = check_channel_leaf(&d, root, user, &proofs, &facts) {
                return self.fail(Violation::new(
                    step,
                    "every_wallet_finds_its_books_in_each_checkpoint",
                    format!("checkpoint {} wallet {i}: {fault} ({facts:?}, proofs {proofs:?})", posted.id),
                ));
            }
        }
        self.checkpoints_verified += 1;
    }

    /// The ledger's mirror of the chain equals the contract as of the ledger's confirmed block.
    fn compare_with_chain(&mut self, step: u64, chain: &mut SimChain, hub: &SimHub) {
        let ledger = hub.ledger();
        let at = ledger.block;
        let (reserve, channels) = match chain.books_at(at, self.contract, &self.users) {
            Ok(b) => b,
            Err(e) => return self.fail(Violation::new(step, "contract_readable", e)),
        };
        if U256::from(ledger.reserve.0) != reserve {
            self.fail(Violation::new(
                step,
                "ledger_reserve_equals_contract_reserve",
                format!("ledger {} contract {reserve} at block {at}", ledger.reserve),
            ));
        }
        for (u, c) in self.users.clone().iter().zip(channels) {
            let Some(acct) = ledger.account(u) else { continue };
            let ch = &acct.channel;
            if ch.status == Status::Settled || ch.epoch != c.epoch {
                continue;
            }
            if amount(c.deposited) != ch.deposited || amount(c.withdrawn) != ch.withdrawn {
                self.fail(Violation::new(
                    step,
                    "ledger_applies_each_chain_event_once",
                    format!(
                        "{u} at block {at}: contract deposited {} withdrawn {}, ledger {} {}",
                        c.deposited, c.withdrawn, ch.deposited, ch.withdrawn
                    ),
                ));
            }
            if amount(c.advancedFromReserve) != acct.chain.advanced_from_reserve
                || amount(c.realizedDebit) != acct.chain.realized_debit
            {
                self.fail(Violation::new(
                    step,
                    "ledger_applies_each_chain_event_once",
                    format!("{u} at block {at}: chain funds differ"),
                ));
            }
        }
    }

    /// The checks at the very end, after every channel was asked to exit.
    pub fn final_check(
        &mut self,
        step: u64,
        chain: &mut SimChain,
        mined: &[MinedTx],
        hub: Option<&SimHub>,
        wallets: &[SimWallet],
    ) -> Result<(), Violation> {
        self.check(step, chain, mined, hub, wallets)?;
        for (i, w) in wallets.iter().enumerate() {
            let settled = w.channel().is_some_and(|c| c.status == Status::Settled);
            if !settled {
                self.fail(Violation::new(step, "every_exit_settles", format!("wallet {i}: {:?}", w.channel())));
            }
        }
        let funds = chain.total_channel_funds(self.contract);
        let held = chain.token_balance(self.contract);
        let reserve = chain.reserve(self.contract);
        // Every lock registered through a close was resolved by the hub's unlock duty.
        if funds != U256::ZERO || held != reserve {
            self.fail(Violation::new(
                step,
                "after_all_exits_only_the_reserve_remains",
                format!("channel funds {funds}, holdings {held}, reserve {reserve}"),
            ));
        }
        let Some(hub) = hub else {
            self.fail(Violation::new(step, "hub_runs_at_the_end", "hub down"));
            return self.result();
        };
        if self.audit_hub_conduct && U256::from(hub.ledger().reserve.0) != reserve {
            self.fail(Violation::new(
                step,
                "ledger_reserve_equals_contract_reserve",
                format!("ledger {} contract {reserve}", hub.ledger().reserve),
            ));
        }
        // Every acknowledged external payment arrived, exactly once, and nothing else did.
        let acked = self.payouts_acked.clone();
        for (recipient, (payer, asked)) in self.payouts_requested.clone() {
            let got = chain.token_balance(recipient);
            let expected = acked.get(&recipient).copied();
            let refunded = self.payouts_refunded.contains(&recipient);
            // Payouts are the hub's to make from its reserve: one that took the reserve with a
            // payout no user signed may not pay the rest (spec §1), but never pays one twice.
            let reserve_taken = self.unprotected.iter().any(|u| *u);
            let ok = match expected {
                _ if refunded => got == U256::ZERO && expected.is_none(),
                Some(a) if reserve_taken => got == U256::ZERO || got == U256::from(a.0),
                Some(a) => got == U256::from(a.0),
                // Not acknowledged: it may or may not have been applied; at most once.
                None => got == U256::ZERO || got == U256::from(asked.0),
            };
            if !ok {
                self.fail(Violation::new(
                    step,
                    "external_payouts_arrive_exactly_once",
                    format!("{recipient} (from {payer}) holds {got}, acknowledged {expected:?}"),
                ));
            }
        }
        self.result()
    }
}
