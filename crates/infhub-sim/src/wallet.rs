//! A simulated wallet: the core's channel state machine run as `Role::User`, the write-ahead
//! rule of the real wallet (a signed debit is kept as pending until the hub answers, and
//! resent with the same payment id), and the real chain watcher feeding confirmed events to
//! the machine, whose effects it carries out: answer a close with the newest credit, settle
//! when due. A wallet may be online (talking to the hub) or offline; its watch keeps running
//! either way, as `infhub wallet watch` (or a watchtower) does.

use crate::evm::{SimChain, TxReceipt};
use crate::hub::{ready, InjectedBug};
use alloy::primitives::{Address, Bytes, B256, U256};
use alloy::sol_types::SolCall;
use infhub_chain::bindings::{IErc20, IInfHub};
use infhub_chain::events::{credit_arg, submit_credit_call, submit_debit_call, withdrawal_arg};
use infhub_chain::source::memory::MemoryChain;
use infhub_chain::watcher::{WatchEvent, Watcher, WatcherConfig};
use infhub_core::channel::{self, ChannelParams, ChannelState, Effect, Input, Role, Status};
use infhub_core::ledger::ChainEvent;
use infhub_core::messages::{Signed, SignedCredit, SignedDebit};
use infhub_core::{Amount, Domain, PaymentKind, PrivateKey, Signature, Withdrawal};

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
}

struct WalletTx {
    data: Vec<u8>,
    tx_id: u64,
    sent_at_block: u64,
}

/// One simulated wallet.
pub struct SimWallet {
    /// Index in the world.
    pub index: usize,
    /// Signing key.
    pub key: PrivateKey,
    /// Behaviour.
    pub behaviour: Behaviour,
    /// Talking to the hub.
    pub online: bool,
    /// The channel at this end (None until its opening is confirmed).
    pub channel: Option<ChannelState>,
    /// A signed debit the hub has not answered yet.
    pub pending: Option<SignedDebit>,
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
    watcher: Watcher<MemoryChain>,
    params: ChannelParams,
    hub_contract: Address,
    txs: Vec<WalletTx>,
}

impl SimWallet {
    /// A wallet following `source`.
    pub fn new(
        index: usize,
        key: PrivateKey,
        behaviour: Behaviour,
        domain: Domain,
        hub: Address,
        source: MemoryChain,
        watcher_config: WatcherConfig,
    ) -> SimWallet {
        let params = ChannelParams { domain, hub, role: Role::User, max_withdrawal_expiry_blocks: 1_000 };
        SimWallet {
            index,
            key,
            behaviour,
            online: true,
            channel: None,
            pending: None,
            pending_sent_at: 0,
            pending_withdrawal: None,
            withdrawal_asked_at: 0,
            old_debits: Vec::new(),
            old_credits: Vec::new(),
            exiting: false,
            settlements: Vec::new(),
            watcher: Watcher::new(source, watcher_config, 0).expect("valid watcher config"),
            params,
            hub_contract: domain.verifying_contract,
            txs: Vec::new(),
        }
    }

    /// The wallet's address.
    pub fn address(&self) -> Address {
        self.key.address()
    }

    /// The channel parameters of this end.
    pub fn params(&self) -> &ChannelParams {
        &self.params
    }

    /// Open and not exiting: may pay.
    pub fn active(&self) -> bool {
        !self.exiting && self.channel.as_ref().is_some_and(|c| c.status == Status::Open)
    }

    /// Spendable balance by this end's proofs.
    pub fn balance(&self) -> Amount {
        self.channel.as_ref().and_then(|c| c.balance().ok()).unwrap_or(Amount::ZERO)
    }

    fn step(&mut self, input: Input) -> Result<Vec<Effect>, infhub_core::Error> {
        let ch = self.channel.as_ref().ok_or(infhub_core::Error::UnknownAccount)?;
        let (next, effects) = channel::step(ch, &self.params, input)?;
        self.channel = Some(next);
        Ok(effects)
    }

    /// Signs a new payment and keeps it as pending (write-ahead) before it is sent.
    pub fn sign_payment(
        &mut self,
        kind: PaymentKind,
        recipient: Address,
        amount: Amount,
        id: B256,
    ) -> Option<SignedDebit> {
        let ch = self.channel.as_ref()?;
        let debit = ch.next_debit(kind, recipient, amount, id).ok()?;
        let signed = Signed::new(debit, &self.params.domain, &self.key);
        // The wallet's own machine must accept it first (balance, nonce, running total).
        channel::step(ch, &self.params, Input::Debit(signed)).ok()?;
        self.pending = Some(signed);
        self.old_debits.push(signed);
        Some(signed)
    }

    /// The hub applied our pending debit (first time or a duplicate).
    pub fn on_paid(&mut self, payment_id: B256) -> Option<SignedDebit> {
        let p = self.pending?;
        if p.message.payment_id != payment_id {
            return None;
        }
        self.pending = None;
        if self.channel.as_ref().is_some_and(|c| c.debit_nonce() < p.message.nonce) {
            self.step(Input::Debit(p)).expect("the wallet's own pending debit applies after the hub's acknowledgement");
        }
        Some(p)
    }

    /// The hub refused our pending debit and refunded it: the debit is spent and its amount came
    /// back as `refund` (checked by the machine: the hub's signature, at least the amount). A
    /// refund that does not check out leaves the debit pending.
    pub fn on_refunded(&mut self, payment_id: B256, refund: SignedCredit) -> Option<SignedDebit> {
        let p = self.pending.filter(|p| p.message.payment_id == payment_id)?;
        let ch = self.channel.as_ref()?;
        if ch.debit_nonce() < p.message.nonce {
            let input = if ch.credit_nonce() >= refund.message.nonce {
                Input::Debit(p) // the refund already arrived as the newest credit
            } else {
                Input::DebitRefunded { debit: p, refund: refund.clone() }
            };
            self.step(input).ok()?;
            self.old_credits.push(refund);
        }
        self.pending = None;
        Some(p)
    }

    /// The hub refused our pending debit without a refund: it stays pending (and is resent)
    /// unless it can no longer be charged, as the real wallet does.
    pub fn on_refused(&mut self, payment_id: B256) {
        let Some(p) = self.pending.filter(|p| p.message.payment_id == payment_id) else { return };
        let Some(ch) = self.channel.as_ref() else { return };
        let spent = p.message.epoch != ch.epoch
            || (ch.debit_nonce() >= p.message.nonce && ch.cumulative_debit() >= p.message.cumulative_debit);
        if spent {
            self.pending = None;
        }
    }

    /// A credit from the hub (pushed, or in a sync answer). Old or duplicate ones are refused
    /// by the machine and ignored; a bad signature is refused and ignored.
    pub fn on_credit(&mut self, credit: SignedCredit) -> bool {
        let ok = self.step(Input::Credit(credit.clone())).is_ok();
        if ok {
            self.old_credits.push(credit);
        }
        ok
    }

    /// The hub's view in a sync answer. Its newest debit of ours resolves a pending payment;
    /// a newer debit that this key signed (an answer lost, then a refusal of a retry that
    /// came later, and a delayed copy applied after all) is learned, as the real wallet's
    /// `sync` does; one this key did not sign is ignored.
    pub fn on_synced(&mut self, debit: Option<SignedDebit>, credit: Option<SignedCredit>) {
        if let Some(c) = credit {
            self.on_credit(c);
        }
        let Some(d) = debit else { return };
        let mine = self.channel.as_ref().map_or(0, |c| c.debit_nonce());
        if d.message.nonce > mine && d.verify(&self.params.domain, self.address()).is_ok() {
            // Learned (the credit above already carries a refund, if it was one). Our own
            // pending debit stays pending: only the hub's answer to it (a receipt or a refund)
            // settles it.
            if self.step(Input::Debit(d)).is_err() {
                return;
            }
            if self.pending.is_some_and(|p| p != d && p.message.nonce <= d.message.nonce) {
                // The hub holds another debit at this nonce: ours can never apply.
                self.pending = None;
            }
        }
    }

    /// Signs a cooperative withdrawal of `amount`, valid for `valid_blocks`.
    pub fn sign_withdrawal(&mut self, amount: Amount, valid_blocks: u64) -> Option<(Withdrawal, Signature)> {
        let ch = self.channel.as_ref()?;
        if ch.withdrawal_hold.is_some() || amount > ch.balance().ok()? || amount.is_zero() {
            return None;
        }
        let w = ch.next_withdrawal(amount, ch.block + valid_blocks).ok()?;
        let sig = Signed::new(w, &self.params.domain, &self.key).signature;
        self.pending_withdrawal = Some((w, sig));
        Some((w, sig))
    }

    /// The hub co-signed our withdrawal: hold it and submit it on chain.
    pub fn on_cosigned(&mut self, chain: &mut SimChain, w: Withdrawal, hub_signature: Signature) {
        let Some((mine, user_signature)) = self.pending_withdrawal else { return };
        if mine != w {
            return;
        }
        self.pending_withdrawal = None;
        let block = self.channel.as_ref().map_or(0, |c| c.block);
        if self.step(Input::WithdrawalRequest { withdrawal: w, user_signature, block }).is_err() {
            return;
        }
        let call = IInfHub::withdrawCall {
            w: withdrawal_arg(&w),
            userSignature: Bytes::copy_from_slice(&user_signature.0),
            hubSignature: Bytes::copy_from_slice(&hub_signature.0),
        };
        self.send(chain, call.abi_encode());
    }

    /// Deposits `amount` on chain (the allowance was given at set-up).
    pub fn deposit(&mut self, chain: &mut SimChain, amount: Amount) {
        let call = IInfHub::depositCall { user: self.address(), amount: U256::from(amount.0) };
        self.send(chain, call.abi_encode());
    }

    /// Approves the hub contract to pull tokens (set-up).
    pub fn approve_call(&self) -> Vec<u8> {
        IErc20::approveCall { spender: self.hub_contract, amount: U256::MAX }.abi_encode()
    }

    /// Starts an exit with the newest credit; an honest wallet also submits its own newest
    /// debit (decision D16). A cheater leaves its debits out and hopes the hub misses it.
    pub fn exit(&mut self, chain: &mut SimChain) {
        let Some(ch) = self.channel.clone() else { return };
        self.exiting = true;
        let (credit, sig) = match ch.credit {
            Some(c) => (credit_arg(&c.message), Bytes::from(c.proof_bytes())),
            None => (
                IInfHub::Credit {
                    user: self.address(),
                    epoch: ch.epoch,
                    nonce: 0,
                    cumulativeCredit: 0,
                    lockedAmount: 0,
                    locksRoot: B256::ZERO,
                },
                Bytes::new(),
            ),
        };
        self.send(chain, IInfHub::startExitCall { credit, hubSignature: sig }.abi_encode());
        if self.behaviour == Behaviour::Honest {
            if let Some(d) = ch.debit {
                self.send(chain, submit_debit_call(&d).abi_encode());
            }
        }
    }

    /// A cheater's attack on the dispute order (finding 1 of issue 18): it signs a debit of its
    /// own with `nonce` and a running total of `total` (below what it really paid) and submits
    /// it while its channel closes. The contract must keep the higher total.
    pub fn submit_forged_debit(&mut self, chain: &mut SimChain, nonce: u64, total: Amount) {
        let Some(ch) = self.channel.clone() else { return };
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
        let signed = Signed::new(forged, &self.params.domain, &self.key);
        self.send(chain, submit_debit_call(&signed).abi_encode());
    }

    fn send(&mut self, chain: &mut SimChain, data: Vec<u8>) {
        let tx_id = chain.submit(self.address(), self.hub_contract, data.clone());
        self.txs.push(WalletTx { data, tx_id, sent_at_block: chain.head() });
    }

    /// Follows the chain: confirmed events of this channel go to the machine, effects are
    /// carried out, lost transactions are resent.
    pub fn watch(&mut self, chain: &mut SimChain, bug: Option<InjectedBug>, resend_after_blocks: u64) {
        let events = match ready(self.watcher.poll()) {
            Ok(e) => e,
            Err(e) => panic!("wallet {} watcher failed: {e}", self.index),
        };
        let me = self.address();
        let mut effects = Vec::new();
        for ev in events {
            let input = match ev {
                WatchEvent::Confirmed { event, .. } => match event {
                    ChainEvent::ChannelOpened { user, epoch, .. } if user == me => {
                        if self.channel.is_none() {
                            self.channel = Some(ChannelState::opened(me, epoch));
                        }
                        None
                    }
                    ChainEvent::Deposited { user, epoch, total_deposited } if user == me => {
                        Some(Input::ChainDeposited { epoch, total_deposited })
                    }
                    ChainEvent::Withdrawn { user, epoch, total_withdrawn, .. } if user == me => {
                        Some(Input::ChainWithdrawn { epoch, total_withdrawn })
                    }
                    ChainEvent::ExitStarted { user, epoch, settle_block } if user == me => {
                        Some(Input::ChainExitStarted { epoch, settle_block })
                    }
                    ChainEvent::DebitSubmitted { user, epoch, cumulative } if user == me => {
                        Some(Input::ChainDebitSubmitted { epoch, cumulative })
                    }
                    ChainEvent::CreditSubmitted { user, epoch, cumulative } if user == me => {
                        Some(Input::ChainCreditSubmitted { epoch, cumulative })
                    }
                    ChainEvent::Settled { user, epoch, paid, .. } if user == me => {
                        Some(Input::ChainSettled { epoch, paid })
                    }
                    _ => None,
                },
                WatchEvent::ConfirmedThrough { block } => Some(Input::Block(block)),
                _ => None,
            };
            if let (Some(input), Some(_)) = (input, self.channel.as_ref()) {
                match self.step(input.clone()) {
                    Ok(e) => effects.extend(e),
                    Err(e) => panic!("wallet {} refused confirmed chain input {input:?}: {e}", self.index),
                }
            }
        }
        for effect in effects {
            match effect {
                Effect::SubmitCredit(c) if bug != Some(InjectedBug::WalletSkipsDefence) => {
                    self.send(chain, submit_credit_call(&c).abi_encode());
                }
                Effect::SettleDue => {
                    self.send(chain, IInfHub::settleCall { user: me }.abi_encode());
                }
                Effect::Settled { paid, expected } => {
                    let known_cumulative_debit = self.channel.as_ref().map_or(Amount::ZERO, |c| c.cumulative_debit());
                    self.settlements.push(SettlementSeen { paid, expected, known_cumulative_debit })
                }
                _ => {}
            }
        }
        // Resend what the chain lost; forget what is confirmed.
        let head = chain.head();
        let confirmed = self.watcher.confirmed_through();
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
    }

    /// Transactions not yet confirmed.
    pub fn in_flight(&self) -> usize {
        self.txs.len()
    }
}
