//! A watchtower actor in the simulation: the core's [`TowerBook`] (the real rules) with the
//! tower's real appointment log ([`AppointmentLog`]) on its own crashing disk, fed over the
//! lossy network by the hub and the wallets, and defending closes on the simulated chain.
//!
//! The service's defence loop (`infhub_tower::service`) talks JSON-RPC; here the same decision,
//! [`TowerBook::action`] on the contract's record, drives [`SimChain`] directly, re-sending a
//! defence still due after a few blocks (a dropped or reorged transaction). A crash loses the
//! process's memory; the restart replays the log as written to the disk, so an appointment is
//! lost only if it was never acknowledged (the tower answers after its append synced).

use crate::evm::SimChain;
use crate::rng::Rng;
use alloy::sol_types::SolCall;
use infhub_chain::bindings::IInfHub;
use infhub_chain::events::submit_credit_call;
use infhub_core::messages::SignedCredit;
use infhub_core::tower::{ChannelRecord, TowerAction, TowerBook, TowerTerms};
use infhub_core::{Address, Amount, Domain, Error, PrivateKey};
use infhub_ledger::simfs::SimDisk;
use infhub_tower::log::{live_records, AppointmentLog, TowerRecord};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Blocks before a defence or settlement still due is sent again.
const RESEND_AFTER_BLOCKS: u64 = 3;
/// A credit the tower held this many blocks before the period ended must have been defended
/// (its grace period, a resend, and reorgs shallower than the confirmations).
const JUDGED_MARGIN_BLOCKS: u64 = 10;

/// The running part of a tower (lost in a crash).
struct Process {
    book: TowerBook,
    log: AppointmentLog<SimDisk>,
    /// user → head at its last submission.
    sent: BTreeMap<Address, u64>,
    /// user → (epoch, credit total, head) of the newest credit this process accepted (not
    /// those restored from the log: when they arrived is not known).
    accepted: BTreeMap<Address, (u64, Amount, u64)>,
    /// The head of the last round: a round runs once per new block, as the service's poll
    /// finds nothing new between blocks.
    last_head: u64,
    /// user → (head read at, record): a channel seen open is read again only every
    /// [`OPEN_REREAD_BLOCKS`] (the service learns of closes from `ExitStarted` logs instead).
    records: BTreeMap<Address, (u64, ChannelRecord)>,
}

/// Blocks between reads of a channel last seen open (a close is seen at most this late; the
/// grace period and the auditor's margin leave room for it).
const OPEN_REREAD_BLOCKS: u64 = 3;

impl Process {
    /// The contract's record of `user`'s channel: read at most every [`OPEN_REREAD_BLOCKS`]
    /// while it is open, every block while it closes.
    fn record(&mut self, chain: &mut SimChain, contract: Address, user: Address, head: u64) -> ChannelRecord {
        if let Some((at, r)) = self.records.get(&user) {
            let fresh = if r.status == 1 { head < at + OPEN_REREAD_BLOCKS } else { head == *at };
            if fresh {
                return *r;
            }
        }
        let r = record_of(&chain.channel(contract, user));
        self.records.insert(user, (head, r));
        r
    }
}

/// One tower watching one hub's contract.
pub struct SimTower {
    key: PrivateKey,
    domain: Domain,
    hub: Address,
    challenge_period_blocks: u64,
    disk: SimDisk,
    process: Option<Process>,
    /// Step at which a crashed tower restarts.
    pub down_until: u64,
    /// Defences sent.
    pub defences: u64,
    /// The first breach of "a live tower never loses a credit it held in time": a channel
    /// settled with a lower credit total than one the tower accepted well before the period
    /// ended.
    pub breach: Option<String>,
}

fn dir() -> PathBuf {
    PathBuf::from("/tower")
}

/// What became of a credit sent to the tower.
#[derive(Debug, PartialEq, Eq)]
pub enum Delivery {
    /// Durable in the tower's log (or a newer or equal credit already was): acknowledged.
    Held,
    /// The tower is down (or died before answering): not acknowledged.
    Down,
    /// Refused by rule (e.g. the channel's epoch moved on).
    Refused(Error),
}

/// Why the tower's process stopped.
#[derive(Debug)]
pub struct TowerDown(pub String);

impl SimTower {
    /// A tower with key `key` for the contract of `domain`, whose hub key is `hub`.
    pub fn start(
        key: PrivateKey,
        domain: Domain,
        hub: Address,
        challenge_period_blocks: u64,
    ) -> Result<SimTower, TowerDown> {
        let mut t = SimTower {
            key,
            domain,
            hub,
            challenge_period_blocks,
            disk: SimDisk::new(),
            process: None,
            down_until: 0,
            defences: 0,
            breach: None,
        };
        t.open()?;
        Ok(t)
    }

    fn terms() -> TowerTerms {
        TowerTerms { grace_blocks: 2, max_users: 10_000, max_updates_per_user_per_minute: u32::MAX }
    }

    fn open(&mut self) -> Result<(), TowerDown> {
        let (log, records) = AppointmentLog::open(self.disk.clone(), &dir()).map_err(|e| TowerDown(e.to_string()))?;
        let mut book = TowerBook::new(self.domain, self.hub, self.key.address(), Self::terms());
        for r in records {
            match r {
                TowerRecord::Credit(c) => book.restore_credit(c),
                TowerRecord::Offer(o) => book.restore_offer(o),
                TowerRecord::Debit(d) => book.restore_debit(d),
                TowerRecord::Forget { user, epoch } => book.forget(user, epoch),
            }
        }
        self.process = Some(Process {
            book,
            log,
            sent: BTreeMap::new(),
            accepted: BTreeMap::new(),
            last_head: u64::MAX,
            records: BTreeMap::new(),
        });
        Ok(())
    }

    /// True while the process runs.
    pub fn up(&self) -> bool {
        self.process.is_some()
    }

    /// The process dies (its memory is lost; the disk keeps what it keeps) at the `within`-th
    /// disk operation from now, or at once if `within` is None.
    pub fn crash(&mut self, within: Option<u64>, until_step: u64) {
        match within {
            Some(n) => self.disk.schedule_crash(n),
            None => {
                self.process = None;
                self.down_until = until_step;
            }
        }
    }

    /// Restarts a crashed tower from its disk.
    pub fn restart(&mut self, rng: &mut Rng) -> Result<(), TowerDown> {
        self.disk.restart(rng);
        self.open()
    }

    /// Takes a credit pushed by the hub or a wallet.
    pub fn receive(&mut self, credit: SignedCredit, chain: &mut SimChain, step: u64) -> Delivery {
        let Some(p) = self.process.as_mut() else { return Delivery::Down };
        let head = chain.head();
        let record = p.record(chain, self.domain.verifying_contract, credit.message.user, head);
        match p.book.accept_credit(credit.clone(), &record, step * 1_000) {
            Ok(()) => {}
            Err(Error::ProofMustSupersede) => return Delivery::Held,
            Err(e) => return Delivery::Refused(e),
        }
        let (user, epoch, total) = (credit.message.user, credit.message.epoch, credit.message.cumulative_credit);
        let appended = p.log.append(&TowerRecord::Credit(credit)).and_then(|()| {
            if p.log.needs_compaction(p.book.len()) {
                let live = live_records(&p.book);
                p.log.compact(&live)?;
            }
            Ok(())
        });
        if appended.is_err() {
            // The disk failed under the append: the process dies before it answers.
            self.process = None;
            return Delivery::Down;
        }
        p.accepted.insert(user, (epoch, total, chain.head()));
        Delivery::Held
    }

    /// One round of defence at `head`: for every watched user, what the contract's record calls
    /// for. Returns false if the process died (its disk crashed) this round.
    pub fn tick(&mut self, chain: &mut SimChain, skip_defence: bool) -> bool {
        let Some(p) = self.process.as_mut() else { return true };
        if self.disk.crashed() {
            self.process = None;
            return false;
        }
        let contract = self.domain.verifying_contract;
        let head = chain.head();
        if head == p.last_head {
            return true;
        }
        p.last_head = head;
        let users: Vec<Address> = p.book.users().map(|(u, _)| *u).collect();
        for user in users {
            let record = p.record(chain, contract, user, head);
            let due = p.sent.get(&user).is_none_or(|at| head >= at + RESEND_AFTER_BLOCKS);
            match p.book.action(user, &record, head, self.challenge_period_blocks) {
                TowerAction::Submit { credit, .. } if due && !skip_defence => {
                    chain.submit(self.key.address(), contract, submit_credit_call(&credit).abi_encode());
                    p.sent.insert(user, head);
                    self.defences += 1;
                }
                TowerAction::Settle if due => {
                    chain.submit(self.key.address(), contract, IInfHub::settleCall { user }.abi_encode());
                    p.sent.insert(user, head);
                }
                _ => {}
            }
            // Judged at settlement: a credit accepted at least JUDGED_MARGIN_BLOCKS before the
            // period ended must be on record (the tower had its grace period and resends).
            if let Some(&(epoch, total, at)) = p.accepted.get(&user) {
                let settled = record.status == 3 && record.epoch == epoch;
                if settled && total > record.credit_total && at + JUDGED_MARGIN_BLOCKS < record.settle_block {
                    self.breach.get_or_insert(format!(
                        "{user} epoch {epoch} settled with credits {} on record; the tower held {} since block {at} (settle block {})",
                        record.credit_total, total, record.settle_block
                    ));
                }
                if settled {
                    p.accepted.remove(&user);
                }
            }
            if record.status == 3 && p.book.appointment(user).is_some_and(|a| a.epoch <= record.epoch) {
                p.book.forget(user, record.epoch);
                if p.log.append(&TowerRecord::Forget { user, epoch: record.epoch }).is_err() {
                    self.process = None;
                    return false;
                }
            }
        }
        true
    }

    /// The newest credit total the tower holds for `user` (for the auditor and reports).
    pub fn held(&self, user: Address) -> Option<Amount> {
        let a = self.process.as_ref()?.book.appointment(user)?;
        a.credit.as_ref().map(|c| c.message.cumulative_credit)
    }
}

fn record_of(c: &IInfHub::Channel) -> ChannelRecord {
    infhub_chain::events::channel_record(c)
}
