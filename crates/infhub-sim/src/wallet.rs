//! A simulated wallet: `infhub-wallet`'s [`WalletCore`], the same rules the CLI wallet runs
//! (what it signs, what it takes from the hub's answers, how the contract's record moves the
//! channel, when it defends and settles), driven in process. What is here is only the plumbing
//! to the simulated world (its messages, its chain) and the cheaters' material. A wallet may be
//! online (talking to the hub) or offline; its watch keeps running either way, as
//! `infhub wallet watch` (or a watchtower) does.

use crate::evm::{SimChain, TxReceipt};
use crate::hub::InjectedBug;
use alloy::primitives::{Address, B256, U256};
use infhub_chain::bindings::IInfHub;
use infhub_chain::events::submit_debit_call;
use infhub_core::channel::{ChannelState, Effect, LockChange, Status};
use infhub_core::messages::{Signed, SignedCredit, SignedDebit};
use infhub_core::point_lock::Scalar;
use infhub_core::{Amount, PaymentKind, PrivateKey, Signature, Withdrawal};
use infhub_wallet::chain::ChannelView;
use infhub_wallet::store::{HubInfo, PendingLock, WalletState, STATE_VERSION};
use infhub_wallet::wallet_core::{HubAccount, PaymentAnswer, Resolution, WalletCore};
use infhub_wallet::WalletError;
use std::collections::BTreeMap;

/// A forward request's invoice and, along a route, the lock's point in full and the steps
/// sealed to each hub (spec §5.23b, §5.23d).
#[derive(Clone, Debug)]
pub struct ForwardRequest {
    /// The payee's invoice.
    pub invoice: infhub_core::invoice::SignedInvoice,
    /// Along a route: the lock's point and the sealed steps, this hop's first.
    pub route: Option<(alloy::primitives::FixedBytes<33>, Vec<infhub_core::sealed_step::SealedStep>)>,
}

/// How a wallet behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Behaviour {
    /// Follows the protocol.
    Honest,
    /// Replays old proofs, double-spends, sends garbage, exits hoping the hub misses it.
    Cheater,
}

/// A settlement the wallet observed for its channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SettlementSeen {
    /// What the contract paid.
    pub paid: Amount,
    /// What this wallet's newest proofs entitle it to.
    pub expected: Amount,
    /// The running total of debits this wallet knew of at settlement.
    pub known_cumulative_debit: Amount,
    /// The running total of credits this wallet held at settlement.
    pub known_cumulative_credit: Amount,
    /// The channel's own funds by the contract's last record before the settlement
    /// (deposits, minus withdrawals and realized debits, plus what the reserve advanced): what
    /// the contract pays whatever the hub did with its reserve.
    pub funds: Amount,
}

struct WalletTx {
    data: Vec<u8>,
    tx_id: u64,
    sent_at_block: u64,
}

/// Blocks before the wallet submits the same defence again (the CLI wallet's pacing).
const DEFENCE_RESUBMIT_BLOCKS: u64 = 3;

/// One simulated wallet.
pub struct SimWallet {
    /// Index in the world.
    pub index: usize,
    /// Behaviour.
    pub behaviour: Behaviour,
    /// Talking to the hub.
    pub online: bool,
    /// The wallet's rules and state (`infhub-wallet`).
    pub core: WalletCore,
    /// Simulated time the pending debit was last sent.
    pub pending_sent_at: u64,
    /// A withdrawal asked for and not yet answered.
    pub pending_withdrawal: Option<(Withdrawal, Signature)>,
    /// Simulated time the withdrawal was asked for.
    pub withdrawal_asked_at: u64,
    /// Every debit this wallet ever signed and every credit it received (cheaters replay them).
    pub old_debits: Vec<SignedDebit>,
    /// Credits received.
    pub old_credits: Vec<SignedCredit>,
    /// The wallet asked to exit.
    pub exiting: bool,
    /// Settlements seen.
    pub settlements: Vec<SettlementSeen>,
    /// Things the hub answered that do not check out (an honest hub never does).
    pub complaints: Vec<String>,
    hub_contract: Address,
    txs: Vec<WalletTx>,
    /// The last defence sent: (credit nonce, or 0 for a settlement; head block).
    defended: Option<(u64, u64)>,
    /// The channel's funds by the contract's newest record while not settled.
    funds: Amount,
    /// For a hub's link (its account at another hub's contract, spec §5.23): the index of the
    /// hub that owns it. A link is driven by its hub, never by a user action.
    pub link_of: Option<usize>,
    /// The scalars of this wallet's outgoing locks its hub reported at the last sync.
    pub outgoing_scalars: Vec<(B256, Scalar)>,
    /// What the pending lock's forward request carries besides the lock, when it pays across
    /// hubs (the request is resent whole, as the CLI wallet resends `/v1/forwarded-transfers`).
    pub forward_request: Option<ForwardRequest>,
}

impl SimWallet {
    /// A wallet of the hub described by `hub` (checked by the world at set-up, as `infhub
    /// wallet register` checks it), following the chain from `since_block`.
    pub fn new(index: usize, key: PrivateKey, behaviour: Behaviour, hub: HubInfo, since_block: u64) -> SimWallet {
        let hub_contract = hub.hub_contract;
        let state = WalletState {
            version: STATE_VERSION,
            user: key.address(),
            hub,
            channel: None,
            pending_debit: None,
            withdrawal: None,
            since_block,
            towers: Vec::new(),
            pending_lock: None,
            forwarded_invoice: None,
            forwarded_route: None,
        };
        SimWallet {
            index,
            behaviour,
            online: true,
            core: WalletCore::new(state, key).expect("the state is the key's"),
            pending_sent_at: 0,
            pending_withdrawal: None,
            withdrawal_asked_at: 0,
            old_debits: Vec::new(),
            old_credits: Vec::new(),
            exiting: false,
            settlements: Vec::new(),
            complaints: Vec::new(),
            hub_contract,
            txs: Vec::new(),
            defended: None,
            funds: Amount::ZERO,
            link_of: None,
            outgoing_scalars: Vec::new(),
            forward_request: None,
        }
    }

    /// The wallet's address.
    pub fn address(&self) -> Address {
        self.core.user()
    }

    /// The channel at this end (None until its opening is confirmed).
    pub fn channel(&self) -> Option<&ChannelState> {
        self.core.state.channel.as_ref()
    }

    /// A signed debit the hub has not answered yet.
    pub fn pending(&self) -> Option<SignedDebit> {
        self.core.state.pending_debit
    }

    /// Open and not exiting: may pay.
    pub fn active(&self) -> bool {
        !self.exiting && self.channel().is_some_and(|c| c.status == Status::Open)
    }

    /// Spendable balance by this end's proofs.
    pub fn balance(&self) -> Amount {
        self.channel().and_then(|c| c.balance().ok()).unwrap_or(Amount::ZERO)
    }

    fn complain(&mut self, what: &str, e: WalletError) {
        self.complaints.push(format!("{what}: {e}"));
    }

    /// Signs a new payment and keeps it as pending (write-ahead) before it is sent.
    pub fn sign_payment(
        &mut self,
        kind: PaymentKind,
        recipient: Address,
        amount: Amount,
        id: B256,
    ) -> Option<SignedDebit> {
        let signed = self.core.sign_payment(kind, recipient, amount, id).ok()?;
        self.core.take_journal();
        self.old_debits.push(signed);
        Some(signed)
    }

    /// The hub's answer to the payment `payment_id`: settles the pending debit if it is that
    /// one (a duplicate or late answer of another is ignored). Returns the debit and how it
    /// was settled.
    pub fn on_answer(&mut self, payment_id: B256, answer: PaymentAnswer) -> Option<(SignedDebit, Resolution)> {
        let pending = self.pending().filter(|p| p.message.payment_id == payment_id)?;
        let refund = match &answer {
            PaymentAnswer::Refunded { refund, .. } => Some(refund.clone()),
            _ => None,
        };
        let settled = self.core.settle_answer(pending, answer);
        self.core.take_journal();
        match settled {
            Ok(r) => {
                self.old_credits.extend(refund);
                Some((pending, r))
            }
            // Refused and spent, or held (stays pending), or a refund to judge after a sync
            // (stays pending), or not checking out.
            Err(
                WalletError::HubRefused { .. } | WalletError::PaymentHeld { .. } | WalletError::PaymentUncertain { .. },
            ) => None,
            Err(e) => {
                self.complain("an answer to a payment", e);
                None
            }
        }
    }

    /// A credit from the hub (pushed). Old or duplicate ones are ignored.
    pub fn on_credit(&mut self, credit: SignedCredit) {
        if self.channel().is_none_or(|c| c.epoch != credit.message.epoch) {
            return;
        }
        match self.core.take_credit(credit.clone(), None, None) {
            Ok(true) => self.old_credits.push(credit),
            Ok(false) => {}
            Err(e) => self.complain("a pushed credit", e),
        }
        self.core.take_journal();
    }

    /// The hub's report of the account (a sync): the wallet takes its newest credit, learns a
    /// newer debit its key signed, and compares the rest with its own proofs.
    pub fn on_synced(&mut self, account: &HubAccount) {
        if self.channel().is_none() {
            return;
        }
        if let Some(c) = account.latest_credit.clone() {
            if self.channel().is_some_and(|ch| c.message.nonce > ch.credit_nonce()) {
                self.old_credits.push(c);
            }
        }
        if let Err(e) = self.core.check_hub(account) {
            self.complain("a sync", e);
        }
        self.outgoing_scalars.clone_from(&account.outgoing_scalars);
        self.core.take_journal();
    }

    /// The pending lock debit, if any (resent as is until answered).
    pub fn pending_lock(&self) -> Option<PendingLock> {
        self.core.state.pending_lock
    }

    /// The payment point of this wallet's invoice `invoice_id` (its scalar from the key).
    pub fn invoice_point(&self, invoice_id: B256) -> Address {
        infhub_core::invoice::invoice_scalar(self.core.key(), invoice_id).point().address()
    }

    /// Signs a lock debit for `change` (a locked transfer to `payee` when given) and keeps it
    /// as pending (write-ahead) before it is sent, as `pay-invoice` and `balance` do.
    pub fn sign_lock(&mut self, change: LockChange, payee: Option<Address>) -> Option<PendingLock> {
        let debit = self.core.sign_lock_debit(change, payee).ok()?;
        self.core.take_journal();
        self.old_debits.push(debit);
        self.core.state.pending_lock
    }

    /// The hub's answer to the lock debit `debit` (a late answer to an earlier debit with the
    /// same lock id is ignored). Returns whether it was applied.
    pub fn on_lock_answer(&mut self, debit: &SignedDebit, answer: PaymentAnswer) -> bool {
        if self.pending_lock().is_none_or(|p| p.debit != *debit) {
            return false;
        }
        let settled = self.core.settle_lock_answer(answer);
        self.core.take_journal();
        match settled {
            Ok(()) => true,
            Err(WalletError::HubRefused { .. } | WalletError::PaymentUncertain { .. }) => false,
            Err(e) => {
                self.complain("an answer to a lock debit", e);
                false
            }
        }
    }

    /// What this wallet does about locks after a sync: the hub's locks its invoices open (to
    /// claim with their scalars), and the next change to its own locks (settle one the hub
    /// learned the scalar of, or drop one expired unclaimed).
    /// A lock its hub marks cancellable (its forward failed) is cancelled when none settles,
    /// as `balance` does.
    pub fn lock_actions(&self, account: &HubAccount) -> (Vec<(B256, Scalar)>, Option<LockChange>) {
        let claims = self.core.locks_to_claim().unwrap_or_default();
        let cancel = || {
            let ch = self.channel()?;
            let id = account.cancellable_locks.iter().find(|id| {
                ch.debit_locks.get(id).is_some() && !account.outgoing_scalars.iter().any(|(known, _)| known == *id)
            })?;
            Some(LockChange::Cancel { lock_id: *id })
        };
        let next = match self.core.lock_to_settle(account) {
            Ok(Some(c)) => Some(c),
            _ => cancel().or_else(|| self.core.lock_to_drop(account).ok().flatten()),
        };
        (claims, next)
    }

    /// The hub's credit that settles its lock `lock_id` to this wallet, answering its claim.
    pub fn on_claimed(&mut self, lock_id: B256, scalar: Scalar, credit: SignedCredit) {
        if self.channel().is_none_or(|c| c.epoch != credit.message.epoch) {
            return;
        }
        match self.core.take_lock_settlement(credit.clone(), lock_id, scalar) {
            Ok(true) => self.old_credits.push(credit),
            Ok(false) => {} // the next sync takes it
            Err(e) => self.complain("the settlement of a claimed lock", e),
        }
        self.core.take_journal();
    }

    /// Signs a cooperative withdrawal of `amount`, valid for `valid_blocks`.
    pub fn sign_withdrawal(&mut self, amount: Amount, valid_blocks: u64) -> Option<(Withdrawal, Signature)> {
        let signed = self.core.sign_withdrawal(Some(amount), valid_blocks).ok()?;
        self.pending_withdrawal = Some(signed);
        Some(signed)
    }

    /// The hub co-signed our withdrawal: hold it and submit it on chain.
    pub fn on_cosigned(&mut self, chain: &mut SimChain, w: Withdrawal, hub_signature: Signature) {
        let Some((mine, user_signature)) = self.pending_withdrawal else { return };
        if mine != w {
            return;
        }
        self.pending_withdrawal = None;
        match self.core.take_cosigned(mine, user_signature, w, hub_signature) {
            Ok(cosigned) => self.send(chain, WalletCore::withdraw_call(&cosigned)),
            Err(e) => self.complain("a co-signed withdrawal", e),
        }
        self.core.take_journal();
    }

    /// Deposits `amount` on chain (the allowance was given at set-up).
    pub fn deposit(&mut self, chain: &mut SimChain, amount: Amount) {
        let call = self.core.deposit_call(amount);
        self.send(chain, call);
    }

    /// Approves the hub contract to pull tokens (set-up).
    pub fn approve_call(&self) -> Vec<u8> {
        self.core.approve_call(U256::MAX)
    }

    /// Starts an exit with the newest credit; an honest wallet also submits its own newest
    /// debit (decision D16). A cheater leaves its debits out and hopes the hub misses it.
    pub fn exit(&mut self, chain: &mut SimChain) {
        let Ok(calls) = self.core.exit_calls() else { return };
        self.exiting = true;
        let take = if self.behaviour == Behaviour::Honest { calls.len() } else { 1 };
        for (_, call) in calls.into_iter().take(take) {
            self.send(chain, call);
        }
    }

    /// A cheater's attack on the dispute order (finding 1 of issue 18): it signs a debit of its
    /// own with `nonce` and a running total of `total` (below what it really paid) and submits
    /// it while its channel closes. The contract must keep the higher total.
    pub fn submit_forged_debit(&mut self, chain: &mut SimChain, nonce: u64, total: Amount) {
        let Some(ch) = self.channel().cloned() else { return };
        let forged = infhub_core::Debit {
            user: self.address(),
            epoch: ch.epoch,
            nonce,
            cumulative_debit: total,
            locked_amount: Amount::ZERO,
            locks_root: B256::ZERO,
            kind: PaymentKind::Internal as u8,
            recipient: Address::repeat_byte(0xEE),
            amount: Amount(1),
            payment_id: B256::repeat_byte(0xEE),
        };
        let signed = Signed::new(forged, &self.core.domain(), self.core.key());
        self.old_debits.push(signed);
        self.send(chain, alloy::sol_types::SolCall::abi_encode(&submit_debit_call(&signed)));
    }

    fn send(&mut self, chain: &mut SimChain, data: Vec<u8>) {
        let tx_id = chain.submit(self.address(), self.hub_contract, data.clone());
        self.txs.push(WalletTx { data, tx_id, sent_at_block: chain.head() });
    }

    /// Follows the chain as the CLI wallet's watch does: the contract's record at the confirmed
    /// block (`confirmed`, `at_confirmed`) moves the channel; while it closes, the record at the
    /// head (`at_head`) decides the defence; lost transactions are resent.
    pub fn watch(
        &mut self,
        chain: &mut SimChain,
        confirmed: u64,
        at_confirmed: &IInfHub::Channel,
        at_head: Option<&IInfHub::Channel>,
        bug: Option<InjectedBug>,
        resend_after_blocks: u64,
    ) -> Result<(), String> {
        let view = ChannelView::from(at_confirmed.clone());
        if view.status != infhub_wallet::chain::status::SETTLED {
            let c = at_confirmed;
            self.funds = Amount(c.deposited + c.advancedFromReserve - c.withdrawn - c.realizedDebit);
        }
        let mut paid = BTreeMap::new();
        for epoch in self.core.settlements_needed(&view) {
            let p = chain
                .settled_paid(self.hub_contract, self.address(), epoch)
                .ok_or(format!("no Settled log for epoch {epoch}"))?;
            paid.insert(epoch, Amount(p));
        }
        let effects = self
            .core
            .apply_chain_view(&view, confirmed, &paid)
            .map_err(|e| format!("wallet {} refused the contract's record {view:?}: {e}", self.index))?;
        self.core.take_journal();
        for effect in effects {
            if let Effect::Settled { paid, expected } = effect {
                let known_cumulative_debit = self.channel().map_or(Amount::ZERO, |c| c.cumulative_debit());
                let known_cumulative_credit = self.channel().map_or(Amount::ZERO, |c| c.cumulative_credit());
                let funds = self.funds;
                self.settlements.push(SettlementSeen {
                    paid,
                    expected,
                    known_cumulative_debit,
                    known_cumulative_credit,
                    funds,
                });
            }
        }
        let head = chain.head();
        if let (Some(at_head), Some(Status::Closing { .. })) = (at_head, self.channel().map(|c| c.status)) {
            let defence = self.core.defence(&ChannelView::from(at_head.clone()), head).map_err(|e| e.to_string())?;
            let paced = |sent: Option<(u64, u64)>, nonce: u64| {
                sent.is_some_and(|(n, at)| n == nonce && head < at + DEFENCE_RESUBMIT_BLOCKS)
            };
            if let Some(c) = defence.submit_credit {
                let skips = matches!(bug, Some(InjectedBug::WalletSkipsDefence | InjectedBug::TowerSkipsDefence));
                if !skips && !paced(self.defended, c.message.nonce) {
                    self.defended = Some((c.message.nonce, head));
                    self.send(chain, WalletCore::submit_credit_call(&c));
                }
            } else if defence.settle && !paced(self.defended, 0) {
                self.defended = Some((0, head));
                let call = self.core.settle_call();
                self.send(chain, call);
            }
        }
        // Resend what the chain lost; forget what is confirmed.
        let me = self.address();
        let mut keep = Vec::new();
        for tx in std::mem::take(&mut self.txs) {
            match chain.receipt(tx.tx_id) {
                Some(TxReceipt { block, .. }) if block <= confirmed => {}
                Some(_) => keep.push(tx),
                None if head >= tx.sent_at_block + resend_after_blocks => {
                    let tx_id = chain.submit(me, self.hub_contract, tx.data.clone());
                    keep.push(WalletTx { tx_id, sent_at_block: head, ..tx });
                }
                None => keep.push(tx),
            }
        }
        self.txs = keep;
        Ok(())
    }

    /// Transactions not yet confirmed.
    pub fn in_flight(&self) -> usize {
        self.txs.len()
    }
}
