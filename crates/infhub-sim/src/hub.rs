//! The simulated hub process: `infhub-hub`'s [`Hub`], the same shell the node runs, on the
//! simulated disk, the in-process chain source and a broadcaster whose transactions this module
//! hands to the simulated chain (and whose receipts it reports back). Nothing of the hub's
//! logic is here: only the plumbing to the simulated world, and the injected bugs the auditor
//! must catch, as wrappers around the real shell. Everything in memory is lost at a crash; on
//! restart the hub recovers from its disk and the chain alone, as the node does.

use crate::evm::SimChain;
use alloy::primitives::{Address, Bytes, B256};
use alloy::sol_types::SolCall;
use infhub_chain::bindings::IInfHub;
use infhub_chain::events::{debit_arg, empty_debit_arg, submit_credit_call};
use infhub_chain::sender::{SentTx, TxOutcome};
use infhub_chain::source::memory::MemoryChain;
use infhub_chain::watcher::WatcherConfig;
use infhub_chain::ChainError;
use infhub_core::channel::Status;
use infhub_core::duties::RealizePolicy;
use infhub_core::ledger::{Command, Ledger, LedgerParams};
use infhub_core::{Amount, PrivateKey};
use infhub_hub::broadcast::{Broadcaster, RecordingBroadcaster};
use infhub_hub::checkpoints::{CheckpointConfig, Checkpointer, FsCheckpointStorage};
use infhub_hub::duties::DutiesConfig;
use infhub_hub::ledger::{Commit, HubLedgerConfig};
use infhub_hub::notice::Notice;
use infhub_hub::Hub;
use infhub_ledger::durable::Recovery;
use infhub_ledger::simfs::SimDisk;
use std::collections::{HashMap, HashSet};

pub use infhub_hub::run_ready as ready;
pub use infhub_hub::HubDown;

/// Deliberately injected bugs, to show that the auditor catches them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InjectedBug {
    /// The hub ignores exits: its broadcaster drops every dispute.
    HubSkipsDispute,
    /// Wallets ignore closes: they never submit their newer credit. (The hub withholds its own
    /// credits too, as with [`InjectedBug::HubWithholdsCredits`]: an honest hub puts them on
    /// record itself, so only against one that does not is the wallet's defence needed.)
    WalletSkipsDefence,
    /// The hub never puts its own newest credit on record for a closing channel (it saves its
    /// reserve whenever the wallet does not hold the credit, §5.10).
    HubWithholdsCredits,
    /// Towers ignore closes (and, as with [`InjectedBug::WalletSkipsDefence`], the wallets ignore
    /// them and the hub withholds its credits): only a tower could have defended.
    TowerSkipsDefence,
    /// The hub acknowledges a payment before it is durable.
    AckBeforeDurable,
    /// While a channel closes, the hub signs the user a credit with the highest nonce and a
    /// total of 0 and submits it, to erase her received payments (finding 2 of issue 18).
    HubErasesCredits,
    /// While a channel closes with a draw on the reserve, the hub pays the whole reserve to
    /// itself (finding 3 of issue 18).
    HubDrainsReserve,
    /// The hub's checkpoints count half of the first wallet's newest credit in her leaf (the
    /// node's test-only `dishonest_understate_credit_of`).
    CheckpointUnderstatesCredit,
    /// The hub's checkpoints state more debit than the first wallet signed in her leaf (the
    /// node's test-only `dishonest_invent_debit_of`).
    CheckpointInventsDebit,
    /// A forwarding hub never records the scalar its link learned downstream: its payer's lock
    /// expires and comes back to her although the payee was paid.
    ForwarderSkipsLearning,
}

/// The hub's broadcaster in the simulation: records what the shell sends (the world hands it
/// to the chain); with [`InjectedBug::HubSkipsDispute`] it loses every dispute, with
/// [`InjectedBug::HubWithholdsCredits`] every credit the hub would put on record.
pub struct SimBroadcaster {
    inner: RecordingBroadcaster,
    drop_disputes: bool,
    drop_credits: bool,
}

impl Broadcaster for SimBroadcaster {
    fn address(&self) -> Address {
        self.inner.address()
    }

    async fn send(&mut self, to: Address, input: Vec<u8>) -> Result<SentTx, ChainError> {
        let dispute = input.starts_with(&IInfHub::submitDebitCall::SELECTOR);
        let credit = input.starts_with(&IInfHub::submitCreditCall::SELECTOR);
        let sent = self.inner.send(to, input).await?;
        if (self.drop_disputes && dispute) || (self.drop_credits && credit) {
            self.inner.discard(sent.nonce);
        }
        Ok(sent)
    }

    async fn poll(&mut self) -> Result<Vec<TxOutcome>, ChainError> {
        self.inner.poll().await
    }
}

/// Tuning of the simulated hub.
#[derive(Clone, Debug)]
pub struct HubConfig {
    /// Ledger parameters.
    pub ledger: LedgerParams,
    /// Blocks before an event is applied.
    pub confirmations: u64,
    /// Deployment block (watcher start).
    pub start_block: u64,
    /// Resend a duty still due this many blocks after its transaction.
    pub resend_after_blocks: u64,
    /// Snapshot after this many records.
    pub snapshot_every_records: u64,
    /// Most payouts per batch.
    pub max_payout_batch: usize,
    /// When the hub realizes debits.
    pub realize: RealizePolicy,
    /// A checkpoint every this many blocks (spec §5.16).
    pub checkpoint_interval_blocks: u64,
    /// The first wallet's address (whom [`InjectedBug::CheckpointUnderstatesCredit`] wrongs).
    pub first_wallet: Option<Address>,
    /// The world's clock in milliseconds since the Unix epoch, which the hub stamps its
    /// batches with (advanced by the world, one second a step, so a run replays exactly).
    pub clock_ms: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

/// The running hub process.
pub struct SimHub {
    /// The shell.
    pub hub: Hub<SimDisk, MemoryChain, SimBroadcaster>,
    key: PrivateKey,
    contract: Address,
    /// Transactions handed to the chain and not yet seen mined: chain tx id → (nonce, hash).
    delivered: HashMap<u64, (u64, B256)>,
    /// Closes (user, epoch) an injected bug already acted on.
    misbehaved: HashSet<(Address, u64)>,
}

fn data_dir() -> std::path::PathBuf {
    std::path::PathBuf::from("/sim/hub")
}

impl SimHub {
    /// Starts the hub from what `disk` holds (empty at first) and the chain.
    pub fn start(
        disk: SimDisk,
        key: PrivateKey,
        config: HubConfig,
        chain: &SimChain,
        bug: Option<InjectedBug>,
    ) -> Result<SimHub, HubDown> {
        let ledger = HubLedgerConfig {
            data_dir: data_dir(),
            max_segment_bytes: 64 << 10,
            snapshot_every_records: config.snapshot_every_records,
            max_batch_commands: 512,
            background_snapshots: false,
        };
        let watcher = WatcherConfig {
            confirmations: config.confirmations,
            max_blocks_per_poll: 64,
            max_log_range_blocks: 64,
            start_block: config.start_block,
        };
        let broadcaster = SimBroadcaster {
            inner: RecordingBroadcaster::new(key.address()),
            drop_disputes: bug == Some(InjectedBug::HubSkipsDispute),
            drop_credits: matches!(
                bug,
                Some(
                    InjectedBug::HubWithholdsCredits | InjectedBug::WalletSkipsDefence | InjectedBug::TowerSkipsDefence
                )
            ),
        };
        let duties = DutiesConfig {
            resend_after_blocks: config.resend_after_blocks,
            max_payout_batch: config.max_payout_batch,
            realize: config.realize,
            low_free_reserve_below: Amount::ZERO,
            point_registry: chain.point_registry,
        };
        let contract = config.ledger.domain.verifying_contract;
        let source = chain.source(contract);
        let storage = FsCheckpointStorage::new(disk.clone(), data_dir().join("checkpoints"));
        let checkpoints = CheckpointConfig {
            interval_blocks: config.checkpoint_interval_blocks,
            files_kept: 4,
            dishonest_understate_credit_of: (bug == Some(InjectedBug::CheckpointUnderstatesCredit))
                .then_some(config.first_wallet)
                .flatten(),
            dishonest_invent_debit_of: (bug == Some(InjectedBug::CheckpointInventsDebit))
                .then_some(config.first_wallet)
                .flatten(),
        };
        let chain_id = config.ledger.domain.chain_id;
        let mut hub = Hub::start(disk, &ledger, config.ledger, key.clone(), source, watcher, broadcaster, duties)
            .map_err(|e| HubDown(e.to_string()))?;
        hub.duties.set_checkpointer(Checkpointer::new(checkpoints, &key, chain_id, contract, Box::new(storage)));
        let clock = config.clock_ms.clone();
        hub.ledger.set_clock(Box::new(move || clock.load(std::sync::atomic::Ordering::Relaxed)));
        Ok(SimHub { hub, key, contract, delivered: HashMap::new(), misbehaved: HashSet::new() })
    }

    /// The hub's address.
    pub fn address(&self) -> Address {
        self.key.address()
    }

    /// The ledger.
    pub fn ledger(&self) -> &Ledger {
        self.hub.ledger.ledger()
    }

    /// What the last start recovered.
    pub fn recovery(&self) -> Recovery {
        self.hub.ledger.recovery()
    }

    /// Executes commands as one group commit.
    pub fn execute(&mut self, commands: Vec<Command>) -> Result<Commit, HubDown> {
        self.hub.execute(commands.into_iter().map(|c| (c, None)).collect())
    }

    /// One turn of the hub's chain duties, with the simulated chain: receipts of what it sent
    /// are reported, the shell ticks, what it sends is handed to the chain; then any injected
    /// misconduct. Returns the shell's notices.
    pub fn tick(
        &mut self,
        chain: &mut SimChain,
        bug: Option<InjectedBug>,
        take_payouts: bool,
    ) -> Result<Vec<Notice>, HubDown> {
        self.report_receipts(chain);
        let notices = self.hub.tick(take_payouts)?;
        self.deliver(chain);
        self.misbehave(chain, bug);
        Ok(notices)
    }

    /// Hands the shell's new transactions to the chain's mempool.
    fn deliver(&mut self, chain: &mut SimChain) {
        let from = self.address();
        for tx in self.hub.duties.broadcaster_mut().inner.take_outbox() {
            let id = chain.submit(from, tx.to, tx.input);
            self.delivered.insert(id, (tx.nonce, tx.hash));
        }
    }

    /// Reports each delivered transaction once, when the chain first shows it mined (a reorg
    /// may take it back later: the shell then resends whatever is still due).
    fn report_receipts(&mut self, chain: &SimChain) {
        let mut mined = Vec::new();
        for (id, (nonce, hash)) in &self.delivered {
            if let Some(r) = chain.receipt(*id) {
                mined.push((
                    *id,
                    TxOutcome::Mined {
                        nonce: *nonce,
                        hash: *hash,
                        block: r.block,
                        success: r.success,
                        versions: 1,
                        gas_used: r.gas_used,
                    },
                ));
            }
        }
        mined.sort_by_key(|(id, _)| *id);
        for (id, outcome) in mined {
            self.delivered.remove(&id);
            self.hub.duties.broadcaster_mut().inner.report(outcome);
        }
    }

    /// Realization transactions mined for this process.
    pub fn realizations_mined(&self) -> u64 {
        self.hub.duties.view().counters.realizations_mined
    }

    /// Duties sent and not yet satisfied.
    pub fn duties_in_flight(&self) -> usize {
        self.hub.duties.duties_in_flight()
    }

    /// Starts a close against `user` holding the debit the hub chooses (a cheating hub picks
    /// an old one, or none): an adversary's transaction, sent with the hub's key directly.
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
        chain.submit(self.address(), self.contract, call.abi_encode());
    }

    /// The injected hub bugs of issue 18's findings, once per close: what a dishonest hub
    /// would try. The contract must refuse each; the auditor must see each.
    fn misbehave(&mut self, chain: &mut SimChain, bug: Option<InjectedBug>) {
        let closing: Vec<(Address, u64)> = self
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
                        cumulative_credit: Amount::ZERO,
                        locked_amount: Amount::ZERO,
                        locks_root: B256::ZERO,
                    };
                    let domain = self.ledger().params.domain;
                    let signed = infhub_core::messages::HubSigned::new(erase, &domain, &self.key);
                    chain.submit(self.address(), self.contract, submit_credit_call(&signed).abi_encode());
                }
                Some(InjectedBug::HubDrainsReserve) => {
                    let raw = chain.call(self.contract, IInfHub::reservedForClosingCall {}.abi_encode());
                    let reserved = raw
                        .ok()
                        .and_then(|r| IInfHub::reservedForClosingCall::abi_decode_returns(&r).ok())
                        .unwrap_or_default();
                    let reserve = chain.reserve(self.contract);
                    if reserved.is_zero() || reserve.is_zero() {
                        self.misbehaved.remove(&(user, epoch)); // try again once something is owed
                        continue;
                    }
                    let call = IInfHub::payoutCall {
                        batchId: alloy::primitives::keccak256(format!("drain {user} {epoch}")),
                        recipients: vec![self.address()],
                        amounts: vec![reserve],
                    };
                    chain.submit(self.address(), self.contract, call.abi_encode());
                }
                _ => {}
            }
        }
    }
}
