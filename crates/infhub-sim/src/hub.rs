//! The simulated hub process: the real durable ledger (core ledger state machine over the
//! real file store, here on the simulated disk) and the real chain watcher, driven by a thin
//! loop that does what the node's writer and chain task do: execute requests in batches,
//! feed confirmed chain events and heights, carry out the channel effects (answer an exit
//! with the newest debit, settle when due), send external payouts in batches, and resend
//! hub transactions that the chain dropped. Everything in memory here is lost at a crash;
//! on restart the hub recovers from its disk and the chain alone, as the node does.

use crate::evm::{SimChain, TxReceipt};
use alloy::primitives::{Address, Bytes, B256, U256};
use alloy::sol_types::SolCall;
use infhub_chain::bindings::IInfHub;
use infhub_chain::events::{debit_arg, empty_debit_arg, submit_credit_call, submit_debit_call};
use infhub_chain::source::memory::MemoryChain;
use infhub_chain::watcher::{WatchEvent, Watcher, WatcherConfig};
use infhub_core::channel::{Effect, Status};
use infhub_core::ledger::{Command, LedgerParams, Outcome, Payout, PayoutBatch};
use infhub_core::messages::Eip712Message;
use infhub_core::{Error, PrivateKey};
use infhub_ledger::file::{FileStore, FileStoreOptions};
use infhub_ledger::simfs::SimDisk;
use infhub_ledger::{DurableLedger, DurableParams, LogRecord};
use std::collections::HashMap;
use std::future::Future;
use std::task::{Context, Poll, Waker};

/// Polls a future that never waits (the in-process chain answers at once) to completion.
pub fn ready<F: Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("an in-process chain read waited"),
    }
}

/// Deliberately injected bugs, to show that the auditor catches them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InjectedBug {
    /// The hub ignores exits: it never submits the user's newer debit.
    HubSkipsDispute,
    /// Wallets ignore hub closes: they never submit their newer credit.
    WalletSkipsDefence,
    /// The hub acknowledges a payment before it is durable.
    AckBeforeDurable,
    /// While a channel closes, the hub signs the user a credit with the highest nonce and a
    /// total of 0 and submits it, to erase her received payments (finding 2 of issue 18).
    HubErasesCredits,
    /// While a channel closes with a draw on the reserve, the hub pays the whole reserve to
    /// itself (finding 3 of issue 18).
    HubDrainsReserve,
}

/// Why a hub transaction was sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// Answering an exit with the user's newest debit.
    Dispute(Address),
    /// Settling a channel whose challenge period is over.
    Settle(Address),
    /// An external payout batch.
    Payout(B256),
    /// A (cheating) close against a user.
    Close(Address),
    /// An injected bug's transaction.
    Misconduct,
}

struct SentTx {
    purpose: Purpose,
    data: Vec<u8>,
    tx_id: u64,
    sent_at_block: u64,
}

/// Tuning of the simulated hub.
#[derive(Clone, Copy, Debug)]
pub struct HubConfig {
    /// Ledger parameters.
    pub ledger: LedgerParams,
    /// Blocks before an event is applied.
    pub confirmations: u64,
    /// Deployment block (watcher start).
    pub start_block: u64,
    /// Resend a transaction not mined after this many blocks.
    pub resend_after_blocks: u64,
    /// Snapshot after this many records.
    pub snapshot_every_records: u64,
    /// Most payouts per batch.
    pub max_payout_batch: usize,
}

/// The running hub process.
pub struct SimHub {
    /// The durable ledger.
    pub dl: DurableLedger<FileStore<SimDisk>>,
    watcher: Watcher<MemoryChain>,
    key: PrivateKey,
    config: HubConfig,
    sent: Vec<SentTx>,
    /// Channel effects seen (user, effect), for the auditor.
    pub effects: Vec<(Address, Effect)>,
    /// The first answer of every payment: (payer, payment id) → (debit digest, refunded). What
    /// the node's history answers a retry with; rebuilt from the log at every start.
    first_answers: HashMap<(Address, B256), (B256, bool)>,
    /// When each payout batch in flight was last sent by this process (head block).
    payouts_sent_at: HashMap<B256, u64>,
    /// Closes (user, epoch) an injected bug already acted on.
    misbehaved: std::collections::HashSet<(Address, u64)>,
}

/// How a payment was first answered, for a retry of the same debit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FirstAnswer {
    /// Applied.
    Paid,
    /// Refused and refunded.
    Refunded,
}

/// Why the hub process stopped.
#[derive(Debug)]
pub enum HubDown {
    /// Its disk failed (a simulated crash): restart it.
    Crashed(String),
}

fn data_dir() -> std::path::PathBuf {
    std::path::PathBuf::from("/sim/hub")
}

impl SimHub {
    /// Starts the hub from what `disk` holds (empty at first) and the chain.
    pub fn start(disk: SimDisk, key: PrivateKey, config: HubConfig, chain: &mut SimChain) -> Result<SimHub, HubDown> {
        let options = FileStoreOptions { max_segment_bytes: 64 << 10, snapshots_kept: 2, archive_compacted: true };
        let store = FileStore::open_on(disk, data_dir(), options).map_err(|e| HubDown::Crashed(e.to_string()))?;
        let params = DurableParams { snapshot_every_records: config.snapshot_every_records, max_batch_commands: 512 };
        let dl = DurableLedger::open(store, config.ledger, key.clone(), params)
            .map_err(|e| HubDown::Crashed(e.to_string()))?;
        let watcher_config = WatcherConfig {
            confirmations: config.confirmations,
            max_blocks_per_poll: 64,
            max_log_range_blocks: 64,
            start_block: config.start_block,
        };
        let watcher = Watcher::new(chain.source(), watcher_config, dl.ledger().block).expect("valid watcher config");
        let mut hub = SimHub {
            dl,
            watcher,
            key,
            config,
            sent: Vec::new(),
            effects: Vec::new(),
            first_answers: HashMap::new(),
            payouts_sent_at: HashMap::new(),
            misbehaved: std::collections::HashSet::new(),
        };
        hub.recover(chain)?;
        Ok(hub)
    }

    /// The hub's address.
    pub fn address(&self) -> Address {
        self.key.address()
    }

    /// Executes commands as one durable batch.
    pub fn execute(&mut self, commands: Vec<Command>) -> Result<Vec<Result<Outcome, Error>>, HubDown> {
        let results = self.dl.execute(commands.clone()).map_err(|e| HubDown::Crashed(e.to_string()))?;
        for (c, r) in commands.iter().zip(&results) {
            if let Ok(o) = r {
                self.note_answer(c, o);
            }
        }
        Ok(results)
    }

    fn note_answer(&mut self, command: &Command, outcome: &Outcome) {
        let Command::Transfer(d) = command else { return };
        let refunded = match outcome {
            Outcome::Paid { .. } => false,
            Outcome::Refunded { .. } => true,
            _ => return,
        };
        let digest = d.message.digest(&self.config.ledger.domain);
        self.first_answers.insert((d.message.user, d.message.payment_id), (digest, refunded));
    }

    /// The first answer of exactly this debit, if the hub applied or refunded it.
    pub fn first_answer(&self, d: &infhub_core::messages::SignedDebit) -> Option<FirstAnswer> {
        let (digest, refunded) = self.first_answers.get(&(d.message.user, d.message.payment_id))?;
        (*digest == d.message.digest(&self.config.ledger.domain)).then_some(if *refunded {
            FirstAnswer::Refunded
        } else {
            FirstAnswer::Paid
        })
    }

    /// What the node does at start: settle or dispute closing channels (payout batches in
    /// flight are sent again by the next [`SimHub::tick`], which has no memory of sending them).
    fn recover(&mut self, chain: &mut SimChain) -> Result<(), HubDown> {
        let history = self.dl.history().map_err(|e| HubDown::Crashed(e.to_string()))?;
        for LogRecord { command, outcome, .. } in history {
            self.note_answer(&command, &outcome);
        }
        let block = self.dl.ledger().block;
        let closing: Vec<_> = self
            .dl
            .ledger()
            .accounts()
            .filter_map(|(u, a)| match a.channel.status {
                Status::Closing { settle_block } => Some((*u, a.channel.clone(), settle_block)),
                _ => None,
            })
            .collect();
        for (user, ch, settle_block) in closing {
            if block >= settle_block {
                self.send(chain, Purpose::Settle(user), IInfHub::settleCall { user }.abi_encode());
            } else if ch.cumulative_debit() > ch.chain_debit_total {
                if let Some(d) = ch.debit {
                    self.send(chain, Purpose::Dispute(user), submit_debit_call(&d).abi_encode());
                }
            }
        }
        Ok(())
    }

    fn send(&mut self, chain: &mut SimChain, purpose: Purpose, data: Vec<u8>) {
        let tx_id = chain.submit(self.address(), chain.hub_contract, data.clone());
        self.sent.push(SentTx { purpose, data, tx_id, sent_at_block: chain.head() });
    }

    fn send_payouts(&mut self, chain: &mut SimChain, batch_id: B256, payouts: &[Payout]) {
        let call = IInfHub::payoutCall {
            batchId: batch_id,
            recipients: payouts.iter().map(|p| p.recipient).collect(),
            amounts: payouts.iter().map(|p| U256::from(p.amount.0)).collect(),
        };
        self.send(chain, Purpose::Payout(batch_id), call.abi_encode());
        self.payouts_sent_at.insert(batch_id, chain.head());
    }

    /// Sends every payout batch the ledger has in flight that was not sent since this process
    /// started, or was sent `resend_after_blocks` ago and is still not confirmed executed: a
    /// crash, a reorg, a dropped or a reverted transaction all end the same way, in a resend
    /// the contract executes at most once (by its id).
    fn send_payouts_in_flight(&mut self, chain: &mut SimChain) {
        let head = chain.head();
        let resend_after = self.config.resend_after_blocks;
        let due: Vec<PayoutBatch> = self
            .dl
            .ledger()
            .payout_batches_in_flight()
            .filter(|b| self.payouts_sent_at.get(&b.id).is_none_or(|at| head >= at + resend_after))
            .cloned()
            .collect();
        for b in due {
            self.send_payouts(chain, b.id, &b.payouts);
        }
        let in_flight: Vec<B256> = self.dl.ledger().payout_batches_in_flight().map(|b| b.id).collect();
        self.payouts_sent_at.retain(|id, _| in_flight.contains(id));
    }

    /// Starts a close against `user` holding the debit the hub chooses (a cheating hub picks
    /// an old one, or none).
    pub fn start_close(
        &mut self,
        chain: &mut SimChain,
        user: Address,
        debit: Option<infhub_core::messages::SignedDebit>,
    ) {
        let (arg, sig) = match debit {
            Some(d) => (debit_arg(&d.message), Bytes::copy_from_slice(&d.signature.0)),
            None => (empty_debit_arg(user), Bytes::new()),
        };
        let call = IInfHub::startHubCloseCall { user, debit: arg, userSignature: sig };
        self.send(chain, Purpose::Close(user), call.abi_encode());
    }

    /// One turn of the chain task: follow the chain, apply what is confirmed, carry out the
    /// effects, batch payouts, resend what the chain lost.
    pub fn tick(&mut self, chain: &mut SimChain, bug: Option<InjectedBug>, take_payouts: bool) -> Result<(), HubDown> {
        let events = ready(self.watcher.poll()).map_err(|e| HubDown::Crashed(format!("watcher: {e}")))?;
        let mut commands = Vec::new();
        for ev in events {
            match ev {
                WatchEvent::Confirmed { at, event } => commands.push(Command::Chain { at, event }),
                WatchEvent::ConfirmedThrough { block } => commands.push(Command::Block(block)),
                WatchEvent::Seen { .. } | WatchEvent::Disconnected { .. } => {}
            }
        }
        if !commands.is_empty() {
            let results = self.execute(commands.clone())?;
            for (command, result) in commands.into_iter().zip(results) {
                match result {
                    Ok(Outcome::Applied(effects)) => {
                        for (user, effect) in effects {
                            self.effect(chain, user, effect.clone(), bug);
                            self.effects.push((user, effect));
                        }
                    }
                    Ok(_) => {}
                    Err(e) => panic!("the ledger refused a confirmed chain event {command:?}: {e}"),
                }
            }
        }
        if take_payouts && self.dl.ledger().queued_payouts().next().is_some() {
            let max = self.config.max_payout_batch;
            self.execute(vec![Command::TakePayoutBatch { max }])?;
        }
        self.send_payouts_in_flight(chain);
        self.misbehave(chain, bug);
        self.follow_transactions(chain);
        Ok(())
    }

    /// The injected hub bugs of issue 18's findings, once per close: what a dishonest hub
    /// would try. The contract must refuse each; the auditor must see each.
    fn misbehave(&mut self, chain: &mut SimChain, bug: Option<InjectedBug>) {
        let closing: Vec<(Address, u64)> = self
            .dl
            .ledger()
            .accounts()
            .filter(|(_, a)| matches!(a.channel.status, Status::Closing { .. }))
            .map(|(u, a)| (*u, a.channel.epoch))
            .collect();
        for (user, epoch) in closing {
            if !self.misbehaved.insert((user, epoch)) {
                continue;
            }
            match bug {
                Some(InjectedBug::HubErasesCredits) => {
                    let erase = infhub_core::Credit {
                        user,
                        epoch,
                        nonce: u64::MAX,
                        cumulative_credit: infhub_core::Amount::ZERO,
                        locked_amount: infhub_core::Amount::ZERO,
                        locks_root: B256::ZERO,
                    };
                    let signed = infhub_core::messages::HubSigned::new(erase, &self.config.ledger.domain, &self.key);
                    self.send(chain, Purpose::Misconduct, submit_credit_call(&signed).abi_encode());
                }
                Some(InjectedBug::HubDrainsReserve) => {
                    let raw = chain.call(chain.hub_contract, IInfHub::reservedForClosingCall {}.abi_encode());
                    let reserved = raw
                        .ok()
                        .and_then(|r| IInfHub::reservedForClosingCall::abi_decode_returns(&r).ok())
                        .unwrap_or_default();
                    let reserve = chain.reserve();
                    if reserved.is_zero() || reserve.is_zero() {
                        self.misbehaved.remove(&(user, epoch)); // try again once something is owed
                        continue;
                    }
                    let call = IInfHub::payoutCall {
                        batchId: alloy::primitives::keccak256(format!("drain {user} {epoch}")),
                        recipients: vec![self.address()],
                        amounts: vec![reserve],
                    };
                    self.send(chain, Purpose::Misconduct, call.abi_encode());
                }
                _ => {}
            }
        }
    }

    fn effect(&mut self, chain: &mut SimChain, user: Address, effect: Effect, bug: Option<InjectedBug>) {
        match effect {
            Effect::SubmitDebit(d) if bug != Some(InjectedBug::HubSkipsDispute) => {
                self.send(chain, Purpose::Dispute(user), submit_debit_call(&d).abi_encode());
            }
            Effect::SettleDue => self.send(chain, Purpose::Settle(user), IInfHub::settleCall { user }.abi_encode()),
            _ => {}
        }
    }

    /// Forgets transactions that are mined and confirmed; resends those the chain lost.
    fn follow_transactions(&mut self, chain: &mut SimChain) {
        let head = chain.head();
        let confirmed = self.watcher.confirmed_through();
        let resend_after = self.config.resend_after_blocks;
        let mut keep = Vec::new();
        for tx in std::mem::take(&mut self.sent) {
            if matches!(tx.purpose, Purpose::Payout(_)) {
                // Payouts are resent from the ledger's batches in flight, not from here.
                if chain.receipt(tx.tx_id).is_none_or(|r| r.block > confirmed) {
                    keep.push(tx);
                }
                continue;
            }
            match chain.receipt(tx.tx_id) {
                Some(TxReceipt { block, .. }) if block <= confirmed => {} // done (a revert means it was moot)
                Some(_) => keep.push(tx),
                None if head >= tx.sent_at_block + resend_after => {
                    let tx_id = chain.submit(self.address(), chain.hub_contract, tx.data.clone());
                    keep.push(SentTx { tx_id, sent_at_block: head, ..tx });
                }
                None => keep.push(tx),
            }
        }
        self.sent = keep;
    }

    /// Why each hub transaction not yet confirmed was sent.
    pub fn in_flight(&self) -> Vec<&Purpose> {
        self.sent.iter().map(|t| &t.purpose).collect()
    }
}
