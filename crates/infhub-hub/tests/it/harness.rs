//! A hub on in-process seams, and a chain for it made of the core's contract model (held to
//! the Solidity contract by the shared vectors) and the in-memory chain source: transactions
//! are executed on the model, and the logs the contract would emit go into a block the real
//! watcher reads. The hub's recorded transactions are delivered (or dropped, or reorganised
//! away) by the test, which plays the network and the users.

use alloy::primitives::{LogData, U256};
use alloy::sol_types::{SolEvent, SolInterface};
use infhub_chain::bindings::IInfHub;
use infhub_chain::sender::TxOutcome;
use infhub_chain::source::memory::MemoryChain;
use infhub_chain::watcher::WatcherConfig;
use infhub_core::contract::{ChainStatus, ContractConfig, ContractModel, OpenOutcome};
use infhub_core::duties::RealizePolicy;
use infhub_core::ledger::{Command, LedgerParams};
use infhub_core::messages::{PaymentKind, Signed, SignedDebit};
use infhub_core::{Address, Amount, Credit, Debit, Domain, PrivateKey, B256};
use infhub_hub::broadcast::{RecordedTx, RecordingBroadcaster};
use infhub_hub::duties::DutiesConfig;
use infhub_hub::ledger::HubLedgerConfig;
use infhub_hub::Hub;
use infhub_ledger::simfs::SimDisk;

/// Blocks before an event counts.
pub(crate) const CONFIRMATIONS: u64 = 2;
/// Blocks a close may be disputed.
pub(crate) const CHALLENGE: u64 = 30;
/// The duties' resend interval.
pub(crate) const RESEND_AFTER: u64 = 4;

pub(crate) type TestHub = Hub<SimDisk, MemoryChain, RecordingBroadcaster>;

pub(crate) fn key(seed: u64) -> PrivateKey {
    let mut b = [0u8; 32];
    b[24..].copy_from_slice(&seed.to_be_bytes());
    PrivateKey::from_bytes(b).expect("key")
}

/// The chain: the contract model, the blocks the watcher reads, and what was mined.
pub(crate) struct ModelChain {
    pub model: ContractModel,
    pub source: MemoryChain,
    /// Logs of the block being built.
    pending: Vec<(Vec<B256>, Vec<u8>)>,
    /// Model states after each block (to rewind a reorg exactly), by block number.
    states: Vec<ContractModel>,
    /// Every hub transaction executed: (block, calldata, success).
    pub executed: Vec<(u64, Vec<u8>, bool)>,
}

fn log<E: SolEvent>(e: &E) -> (Vec<B256>, Vec<u8>) {
    let data: LogData = e.encode_log_data();
    (data.topics().to_vec(), data.data.to_vec())
}

impl ModelChain {
    fn new(domain: Domain, hub: Address) -> ModelChain {
        let config =
            ContractConfig { domain, hub, challenge_period_blocks: CHALLENGE, reserve_notice_blocks: 2 * CHALLENGE };
        let model = ContractModel::new(config).expect("config");
        ModelChain {
            states: vec![model.clone()],
            model,
            source: MemoryChain::new(),
            pending: Vec::new(),
            executed: Vec::new(),
        }
    }

    /// The block the next transactions go into.
    pub(crate) fn next_block(&self) -> u64 {
        self.states.len() as u64
    }

    /// Closes the block being built.
    pub(crate) fn mine(&mut self) -> u64 {
        let n = self.source.push_block(std::mem::take(&mut self.pending));
        assert_eq!(n, self.states.len() as u64, "model and source agree on heights");
        self.states.push(self.model.clone());
        n
    }

    /// Takes back the newest `depth` blocks (their transactions vanish).
    pub(crate) fn reorg(&mut self, depth: u64) {
        self.source.rewind(depth);
        let keep = self.states.len() - depth as usize;
        self.states.truncate(keep);
        self.model = self.states.last().expect("genesis").clone();
        self.pending.clear();
        let floor = keep as u64;
        self.executed.retain(|(b, _, _)| *b < floor);
    }

    pub(crate) fn deposit(&mut self, user: Address, amount: u128) {
        let block = self.next_block();
        let total = self.model.deposit(block, user, U256::from(amount)).expect("deposit");
        let epoch = self.model.channel(user).epoch;
        self.pending.push(log(&IInfHub::Deposited {
            user,
            epoch,
            from: user,
            amount: U256::from(amount),
            totalDeposited: U256::from(total.0),
        }));
    }

    pub(crate) fn deposit_reserve(&mut self, amount: u128) {
        self.model.deposit_reserve(U256::from(amount)).expect("reserve");
        let reserve_after = self.model.reserve;
        self.pending.push(log(&IInfHub::ReserveDeposited {
            from: Address::ZERO,
            amount: U256::from(amount),
            reserveAfter: reserve_after,
        }));
    }

    /// The user exits with no credit (an old backup): the hub must answer with her debit.
    pub(crate) fn exit_without_proofs(&mut self, user: Address) {
        let block = self.next_block();
        let credit = Credit {
            user,
            epoch: self.model.channel(user).epoch,
            nonce: 0,
            cumulative_credit: Amount::ZERO,
            locked_amount: Amount::ZERO,
            locks_root: B256::ZERO,
        };
        self.model.start_exit(user, block, &credit, &[]).expect("exit");
        let c = self.model.channel(user);
        self.pending.push(log(&IInfHub::ExitStarted {
            user,
            epoch: c.epoch,
            closer: user,
            settleBlock: c.settle_block,
        }));
    }

    /// Executes a hub transaction as the contract would, emitting its logs. Returns success.
    pub(crate) fn execute(&mut self, from: Address, input: &[u8]) -> bool {
        let before = self.model.clone();
        let ok = self.try_execute(from, input).is_ok();
        if !ok {
            self.model = before;
        }
        self.executed.push((self.next_block(), input.to_vec(), ok));
        ok
    }

    fn try_execute(&mut self, from: Address, input: &[u8]) -> Result<(), infhub_core::Error> {
        use IInfHub::IInfHubCalls as C;
        let block = self.next_block();
        let call = C::abi_decode(input).expect("the hub sends only contract calls");
        match call {
            C::openChannels(c) => {
                for (user, out) in c.users.iter().zip(self.model.open_channels(from, &c.users)?) {
                    match out {
                        OpenOutcome::Opened { epoch } => {
                            self.pending.push(log(&IInfHub::ChannelOpened { user: *user, epoch, openedBy: from }))
                        }
                        OpenOutcome::Registered { epoch } => {
                            self.pending.push(log(&IInfHub::ChannelRegistered { user: *user, epoch }))
                        }
                        OpenOutcome::Skipped => {}
                    }
                }
            }
            C::submitDebit(c) => {
                let d = debit_of(&c.debit);
                self.model.submit_debit(block, &d, &c.userSignature)?;
                self.pending.push(log(&IInfHub::DebitSubmitted {
                    user: d.user,
                    epoch: d.epoch,
                    nonce: d.nonce,
                    cumulativeDebit: U256::from(d.cumulative_debit.0),
                    by: from,
                }));
            }
            C::settle(c) => {
                let epoch = self.model.channel(c.user).epoch;
                let s = self.model.settle(block, c.user)?;
                self.pending.push(log(&IInfHub::Settled {
                    user: c.user,
                    epoch,
                    paid: s.paid,
                    shortfall: s.shortfall,
                    reserveAfter: s.reserve_after,
                }));
            }
            C::payout(c) => {
                let total = self.model.payout(from, c.batchId, &c.recipients, &c.amounts)?;
                let reserve_after = self.model.reserve;
                self.pending.push(log(&IInfHub::PayoutBatchExecuted {
                    batchId: c.batchId,
                    count: U256::from(c.recipients.len()),
                    total,
                    reserveAfter: reserve_after,
                }));
            }
            C::realizeDebits(c) => {
                let batch: Vec<(Debit, Vec<u8>)> =
                    c.debits.iter().zip(&c.userSignatures).map(|(d, s)| (debit_of(d), s.to_vec())).collect();
                self.realize(from, &batch)?;
            }
            C::submitCredit(c) => {
                let credit = credit_of(&c.credit);
                self.model.submit_credit(block, &credit, &c.hubSignature)?;
                self.pending.push(log(&IInfHub::CreditSubmitted {
                    user: credit.user,
                    epoch: credit.epoch,
                    nonce: credit.nonce,
                    cumulativeCredit: U256::from(credit.cumulative_credit.0),
                    by: from,
                }));
            }
            C::startHubClose(c) => {
                let d = debit_of(&c.debit);
                self.model.start_hub_close(from, block, c.user, &d, &c.userSignature)?;
                let ch = self.model.channel(c.user);
                self.pending.push(log(&IInfHub::ExitStarted {
                    user: c.user,
                    epoch: ch.epoch,
                    closer: from,
                    settleBlock: ch.settle_block,
                }));
                if d.nonce != 0 {
                    self.pending.push(log(&IInfHub::DebitSubmitted {
                        user: c.user,
                        epoch: ch.epoch,
                        nonce: d.nonce,
                        cumulativeDebit: U256::from(d.cumulative_debit.0),
                        by: from,
                    }));
                }
            }
            other => panic!("the harness does not model {other:?}"),
        }
        Ok(())
    }

    /// `realizeDebits`: the model moves what each debit allows; the events follow the contract's.
    fn realize(&mut self, from: Address, batch: &[(Debit, Vec<u8>)]) -> Result<(), infhub_core::Error> {
        let before = self.model.clone();
        let moved = self.model.realize_debits(from, batch)?;
        let mut reserve = before.reserve;
        for ((d, _), m) in batch.iter().zip(moved) {
            let Some(m) = m else { continue };
            let stored_before = before.channel(d.user).debit;
            let stored = self.model.channel(d.user).debit;
            if stored != stored_before {
                self.pending.push(log(&IInfHub::DebitSubmitted {
                    user: d.user,
                    epoch: d.epoch,
                    nonce: d.nonce,
                    cumulativeDebit: U256::from(d.cumulative_debit.0),
                    by: from,
                }));
            }
            reserve += m;
            self.pending.push(log(&IInfHub::DebitRealized {
                user: d.user,
                epoch: d.epoch,
                nonce: stored.nonce,
                cumulativeDebit: U256::from(stored.cumulative.0),
                moved: m,
                reserveAfter: reserve,
            }));
        }
        Ok(())
    }

    pub(crate) fn status(&self, user: Address) -> ChainStatus {
        self.model.channel(user).status
    }
}

/// The core's debit from the contract call's argument.
fn debit_of(d: &IInfHub::Debit) -> Debit {
    Debit {
        user: d.user,
        epoch: d.epoch,
        nonce: d.nonce,
        cumulative_debit: Amount(d.cumulativeDebit),
        locked_amount: Amount(d.lockedAmount),
        locks_root: d.locksRoot,
        kind: d.kind,
        recipient: d.recipient,
        amount: Amount(d.amount),
        payment_id: d.paymentId,
    }
}

/// The core's credit from the contract call's argument.
fn credit_of(c: &IInfHub::Credit) -> Credit {
    Credit {
        user: c.user,
        epoch: c.epoch,
        nonce: c.nonce,
        cumulative_credit: Amount(c.cumulativeCredit),
        locked_amount: Amount(c.lockedAmount),
        locks_root: c.locksRoot,
    }
}

/// A hub, its users and its chain.
pub(crate) struct World {
    pub hub_key: PrivateKey,
    pub users: Vec<PrivateKey>,
    pub domain: Domain,
    pub chain: ModelChain,
    pub disk: SimDisk,
    pub hub: Option<TestHub>,
    pub duties: DutiesConfig,
    next_id: u64,
}

pub(crate) fn ledger_config() -> HubLedgerConfig {
    HubLedgerConfig {
        data_dir: "/hub".into(),
        max_segment_bytes: 16 << 10,
        snapshot_every_records: 25,
        max_batch_commands: 1_000,
        background_snapshots: false,
    }
}

impl World {
    /// A hub with `users` registered users, each with `deposit` in its channel, and `reserve`.
    pub(crate) fn new(users: usize, deposit: u128, reserve: u128, realize: RealizePolicy) -> World {
        let hub_key = key(0x0048_5542);
        let domain = Domain { chain_id: 31_337, verifying_contract: Address::repeat_byte(0x1F) };
        let users: Vec<PrivateKey> = (0..users as u64).map(|i| key(0xA000 + i)).collect();
        let duties = DutiesConfig {
            resend_after_blocks: RESEND_AFTER,
            max_payout_batch: 16,
            realize,
            low_free_reserve_below: Amount(0),
            point_registry: Address::repeat_byte(0x2F),
        };
        let mut w = World {
            chain: ModelChain::new(domain, hub_key.address()),
            hub_key,
            users,
            domain,
            disk: SimDisk::new(),
            hub: None,
            duties,
            next_id: 0,
        };
        w.start_hub();
        let addresses: Vec<Address> = w.users.iter().map(|u| u.address()).collect();
        let hashes = infhub_hub::run_ready(w.hub().duties.open_channels(&addresses));
        assert!(hashes.iter().all(|h| h.is_ok()), "{hashes:?}");
        w.chain.deposit_reserve(reserve);
        w.deliver();
        w.mine_and_tick(1);
        for u in addresses {
            w.chain.deposit(u, deposit);
        }
        w.mine_and_tick(CONFIRMATIONS + 1);
        w
    }

    pub(crate) fn params(&self) -> LedgerParams {
        LedgerParams {
            domain: self.domain,
            hub: self.hub_key.address(),
            max_withdrawal_expiry_blocks: 100,
            max_accounts: 1_000,
            max_queued_payouts: 1_000,
            max_payment_amount: Amount(1 << 60),
            transfer_ids_kept: 8,
        }
    }

    pub(crate) fn start_hub(&mut self) {
        let watcher = WatcherConfig {
            confirmations: CONFIRMATIONS,
            max_blocks_per_poll: 64,
            max_log_range_blocks: 64,
            start_block: 0,
        };
        let hub = Hub::start(
            self.disk.clone(),
            &ledger_config(),
            self.params(),
            self.hub_key.clone(),
            self.chain.source.clone(),
            watcher,
            RecordingBroadcaster::new(self.hub_key.address()),
            self.duties,
        )
        .expect("hub starts");
        self.hub = Some(hub);
    }

    pub(crate) fn hub(&mut self) -> &mut TestHub {
        self.hub.as_mut().expect("hub running")
    }

    /// The hub process dies (what it held in memory is gone) and starts again from its disk.
    pub(crate) fn restart_hub(&mut self) {
        self.hub = None;
        self.start_hub();
    }

    /// Mines `blocks` blocks while the hub's storage is down (every commit fails, as when its
    /// database is unreachable), letting the duties tick after each on what the hub holds in
    /// memory; the hub's transactions go into the next block.
    pub(crate) fn mine_and_tick_with_storage_down(&mut self, blocks: u64) {
        for _ in 0..blocks {
            self.chain.mine();
            let hub = self.hub();
            let mut down = StorageDown { ledger: &hub.ledger };
            infhub_hub::run_ready(hub.duties.tick(&mut down, true));
            self.deliver();
        }
    }

    /// Hands the hub's new transactions to the chain, into the block being built.
    pub(crate) fn deliver(&mut self) -> Vec<RecordedTx> {
        let txs = self.hub().duties.broadcaster_mut().take_outbox();
        let from = self.hub_key.address();
        let block = self.chain.next_block();
        for tx in &txs {
            let success = self.chain.execute(from, &tx.input);
            let outcome =
                TxOutcome::Mined { nonce: tx.nonce, hash: tx.hash, block, success, versions: 1, gas_used: 50_000 };
            self.hub().duties.broadcaster_mut().report(outcome);
        }
        txs
    }

    /// Drops the hub's new transactions (a node that lost them).
    pub(crate) fn drop_outbox(&mut self) -> Vec<RecordedTx> {
        self.hub().duties.broadcaster_mut().take_outbox()
    }

    /// Mines `blocks` blocks, letting the hub tick after each; the hub's transactions go into
    /// the next block.
    pub(crate) fn mine_and_tick(&mut self, blocks: u64) {
        for _ in 0..blocks {
            self.chain.mine();
            self.hub().tick(true).expect("hub up");
            self.deliver();
        }
    }

    pub(crate) fn user(&self, i: usize) -> Address {
        self.users[i].address()
    }

    /// User `from` signs a payment; the hub applies it.
    pub(crate) fn pay(&mut self, from: usize, kind: PaymentKind, to: Address, amount: u128) -> SignedDebit {
        self.next_id += 1;
        let id = B256::from(U256::from(self.next_id));
        let payer = self.user(from);
        let ch = self.hub().ledger.ledger().account(&payer).expect("account").channel.clone();
        let d = ch.next_debit(kind, to, Amount(amount), id).expect("debit");
        let signed = Signed::new(d, &self.domain, &self.users[from]);
        let commit = self.hub().execute(vec![(Command::Transfer(signed), None)]).expect("durable");
        let (result, _) = &commit.results[0];
        assert!(matches!(result, Ok(infhub_core::ledger::Outcome::Paid { .. })), "{result:?}");
        signed
    }

    /// The hub transactions executed on chain whose call is named `name`.
    pub(crate) fn executed(&self, name: &str) -> Vec<(u64, bool)> {
        self.chain
            .executed
            .iter()
            .filter(|(_, input, _)| IInfHub::IInfHubCalls::abi_decode(input).map(|c| call_name(&c)) == Ok(name))
            .map(|(b, _, ok)| (*b, *ok))
            .collect()
    }
}

pub(crate) fn call_name(c: &IInfHub::IInfHubCalls) -> &'static str {
    use IInfHub::IInfHubCalls as C;
    match c {
        C::submitDebit(_) => "submitDebit",
        C::settle(_) => "settle",
        C::payout(_) => "payout",
        C::realizeDebits(_) => "realizeDebits",
        C::openChannels(_) => "openChannels",
        C::startHubClose(_) => "startHubClose",
        C::submitCredit(_) => "submitCredit",
        _ => "other",
    }
}

/// The hub's ledger with its storage down: reads answer from memory, every commit fails.
struct StorageDown<'a> {
    ledger: &'a infhub_hub::ledger::HubLedger<SimDisk>,
}

impl infhub_hub::duties::LedgerAccess for StorageDown<'_> {
    fn commit(
        &mut self,
        _commands: Vec<Command>,
    ) -> impl std::future::Future<
        Output = Result<Vec<Result<infhub_core::ledger::Outcome, infhub_core::Error>>, infhub_hub::ledger::CommitError>,
    > + Send {
        std::future::ready(Err(infhub_hub::ledger::CommitError::StorageFailed("the database is unreachable".into())))
    }

    fn read<R>(&self, f: impl FnOnce(&infhub_core::ledger::Ledger) -> R) -> R {
        f(self.ledger.ledger())
    }
}
