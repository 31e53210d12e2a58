//! The simulated world: one or more hubs, each with its own contract on the one simulated
//! chain (sharing its token, blocks, mempool and reorgs) and its own wallets, and the network
//! between them, advanced step by step from one seed, with faults and adversaries, and audited
//! after every step. See `docs/simulation.md` for what is simulated and what the auditor checks.

use crate::audit::{Auditor, Violation};
use crate::evm::{ChainFaults, MinedTx, SimChain};
use crate::hub::{HubConfig, HubDown, InjectedBug, SimHub};
use crate::rng::Rng;
use crate::tower::{Delivery, SimTower};
use crate::wallet::{Behaviour, SimWallet};
use alloy::primitives::{Address, B256, U256};
use alloy::sol_types::SolCall;
use infhub_chain::bindings::{IErc20, IInfHub};
use infhub_core::channel::{LockChange, Status};
use infhub_core::duties::RealizePolicy;
use infhub_core::ledger::{Command, LedgerParams, Outcome};
use infhub_core::messages::{Eip712Message, HubSigned, Signed, SignedCredit, SignedDebit};
use infhub_core::point_lock::Scalar;
use infhub_core::{Amount, Domain, PaymentKind, PrivateKey, Receipt, Signature, Withdrawal};
use infhub_hub::answers::{payment_answer, NotApplied};
use infhub_ledger::simfs::SimDisk;
use infhub_wallet::store::PendingLock;
use infhub_wallet::wallet_core::{HubAccount, PaymentAnswer, Resolution};
use std::path::PathBuf;

mod across;
mod locks;

/// One token unit in the simulation (18 decimals like INF).
pub const UNIT: u128 = 1_000_000_000_000_000_000;

/// Fault rates, in per mille per opportunity.
#[derive(Clone, Copy, Debug)]
pub struct Faults {
    /// A message is lost.
    pub net_drop: u64,
    /// A message is delivered twice.
    pub net_duplicate: u64,
    /// Most steps a message is delayed (uniform, so messages reorder).
    pub net_max_delay_steps: u64,
    /// Per step: the hub's disk fails within the next few operations (a crash).
    pub hub_crash: u64,
    /// Per mined block: the newest blocks are replaced (depth below the confirmations).
    pub reorg: u64,
    /// Mempool delays and drops.
    pub chain: ChainFaults,
    /// Per step: a wallet goes offline (and one comes back).
    pub wallet_offline: u64,
}

impl Faults {
    /// The default fault load of a simulation.
    pub fn on() -> Faults {
        Faults {
            net_drop: 30,
            net_duplicate: 30,
            net_max_delay_steps: 4,
            hub_crash: 8,
            reorg: 60,
            chain: ChainFaults { delay_per_mille: 80, drop_per_mille: 20 },
            wallet_offline: 20,
        }
    }

    /// No faults (the drain phase at the end).
    pub fn off() -> Faults {
        Faults {
            net_drop: 0,
            net_duplicate: 0,
            net_max_delay_steps: 0,
            hub_crash: 0,
            reorg: 0,
            chain: ChainFaults { delay_per_mille: 0, drop_per_mille: 0 },
            wallet_offline: 0,
        }
    }
}

/// What to simulate.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// The seed: the whole run is a function of it.
    pub seed: u64,
    /// Steps with faults on (the drain and final exits follow).
    pub steps: u64,
    /// Number of hubs, each with its own contract on the one chain.
    pub hubs: usize,
    /// Number of wallets (shared out among the hubs).
    pub wallets: usize,
    /// Per mille of wallets that cheat.
    pub cheater_per_mille: u64,
    /// Faults.
    pub faults: Faults,
    /// A deliberately injected bug (in every hub, or every wallet).
    pub bug: Option<InjectedBug>,
    /// Judge the hubs' conduct on chain (what they sign and pay), not only its effect on the
    /// parties; off, a run shows whether the contract alone keeps honest parties whole.
    pub audit_hub_conduct: bool,
    /// Each hub has a watchtower (crashing and restarting like the hub) that every wallet
    /// names: the hub pushes each user's newest credit to it, wallets hand it theirs.
    pub towers: bool,
    /// Repository root (for the compiled contracts).
    pub repo_root: PathBuf,
}

/// Messages from wallets to their hub.
#[derive(Clone, Debug)]
#[allow(clippy::large_enum_variant)] // simulation messages; size does not matter here
enum ToHub {
    Pay(usize, SignedDebit),
    Withdraw(usize, Withdrawal, Signature),
    Sync(usize),
    /// A lock debit (`/v1/locked-transfers` or `/v1/lock-debits`).
    Lock(usize, PendingLock),
    /// A payee's claim of the hub's lock with its scalar (`/v1/lock-reveals`).
    Reveal(usize, B256, Scalar),
    /// A payer's lock to her hub paying an invoice at hub `site` (`/v1/forwarded-transfers`).
    Forward(usize, PendingLock, crate::wallet::ForwardRequest),
    /// A payer's cancel of a lock whose forward failed, which the hub agrees to.
    CancelAgreed(usize, PendingLock),
}

/// What a command of a hub's batch answers.
enum Origin {
    Pay(SignedDebit),
    Withdraw,
    Lock(PendingLock),
    Reveal(B256, Scalar),
}

/// Messages from a hub to one of its wallets.
#[derive(Clone, Debug)]
#[allow(clippy::large_enum_variant)] // simulation messages; size does not matter here
enum ToWallet {
    /// The hub's answer to a payment (applied with its receipt, refunded, or refused).
    Answer(B256, PaymentAnswer),
    /// A credit pushed to the payee.
    Credit(SignedCredit),
    /// A co-signed withdrawal.
    CoSigned(Withdrawal, Signature),
    /// The hub's report of the account (as `GET /v1/accounts/{user}` answers).
    Synced(HubAccount),
    /// The hub's answer to a lock debit (to that signed debit).
    LockAnswer(SignedDebit, PaymentAnswer),
    /// The hub's credit that settles a claimed lock.
    Claimed(B256, Scalar, SignedCredit),
}

/// A message on the network: to hub `site`, or to wallet `i` of hub `site`.
#[derive(Clone, Debug)]
#[allow(clippy::large_enum_variant, clippy::enum_variant_names)] // simulation messages; size does not matter here
enum Msg {
    ToHub(usize, ToHub),
    ToWallet(usize, usize, ToWallet),
    /// A credit for hub `site`'s tower, from the hub's pusher (acknowledged for wallet index
    /// `Some(i)`) or from a wallet.
    ToTower(usize, SignedCredit, Option<usize>),
}

/// Summary of a finished run.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Steps run (faulty phase plus drain).
    pub steps: u64,
    /// Hubs.
    pub hubs: usize,
    /// Blocks mined.
    pub blocks: u64,
    /// Reorgs and their total depth.
    pub reorgs: (u64, u64),
    /// Hub crashes and restarts.
    pub hub_crashes: u64,
    /// Payments acknowledged.
    pub payments_acked: u64,
    /// External payouts acknowledged.
    pub payouts_acked: u64,
    /// Withdrawals co-signed.
    pub withdrawals: u64,
    /// Messages dropped, duplicated.
    pub messages: (u64, u64, u64),
    /// Adversarial attempts made (all must fail).
    pub attacks: u64,
    /// Exits settled on chain.
    pub settlements: u64,
    /// Hub-started closes against users.
    pub hub_closes: u64,
    /// Realizations the hubs had mined.
    pub realizations: u64,
    /// Defences the towers sent, and tower crashes.
    pub towers: (u64, u64),
    /// Checkpoints posted on chain in which every wallet's leaf checked out.
    pub checkpoints: u64,
    /// Invoices paid by point lock (locked transfers signed).
    pub invoices_paid: u64,
    /// Lock debits (adds, settlements, drops) the hub acknowledged with a receipt.
    pub lock_debits_acked: u64,
    /// Claims of the hub's locks a payee sent with the scalar.
    pub locks_claimed: u64,
    /// Invoices of users at other hubs paid (the payer's lock to her hub signed).
    pub paid_across: u64,
    /// Forwards a hub refused by name (limit, capacity, expiry).
    pub forwards_refused: u64,
    /// Forwards sent over a link (the link's locked transfer signed).
    pub forwards_sent: u64,
    /// Of those, paid along a route through a third hub.
    pub routed_across: u64,
    /// Payers' locks settled on a route through a third hub (the scalar stepped upstream
    /// through two tweaks).
    pub routed_settled: u64,
    /// Forwarding hops whose next hub learned the scalar (credited the payee, or recorded it).
    pub claimed_across: u64,
    /// Payers' locks across hubs cancelled with their hub's agreement (the forward failed).
    pub cancelled_across: u64,
}

/// One hub of the world: its operator's key, its contract, its disk and process, its wallets
/// and its auditor.
pub struct Site {
    key: PrivateKey,
    config: HubConfig,
    disk: SimDisk,
    /// The hub process (None while down).
    pub hub: Option<SimHub>,
    down_until: u64,
    /// Its wallets.
    pub wallets: Vec<SimWallet>,
    /// Its auditor.
    pub auditor: Auditor,
    /// Its watchtower, if the world has towers.
    pub tower: Option<SimTower>,
    /// The hub's pusher, per wallet: (newest credit nonce the tower acknowledged, step of the
    /// last push).
    pushed: Vec<(u64, u64)>,
}

impl Site {
    fn contract(&self) -> Address {
        self.config.ledger.domain.verifying_contract
    }
}

/// The world.
pub struct World {
    config: SimConfig,
    rng: Rng,
    faults: Faults,
    /// The chain.
    pub chain: SimChain,
    /// The hubs.
    pub sites: Vec<Site>,
    net: Vec<(u64, u64, Msg)>,
    /// The current step.
    pub step: u64,
    /// The world's wall clock (one second a step from [`SIM_START_MS`]).
    clock_ms: SimClock,
    /// Counters.
    pub report: Report,
    /// `links[a][c]`: the index among hub `c`'s wallets of hub `a`'s link there.
    links: Vec<Vec<Option<usize>>>,
    /// Each hub's forwards (its `forwards.jsonl`).
    forwards: Vec<across::ForwardBook>,
    /// Each hub's refused forwards, by the payer's signature (the node's `refused_forwards`).
    refused_forwards: Vec<std::collections::BTreeMap<[u8; 65], (String, String)>>,
    /// Payments across hubs, for the world's checks.
    tracked: across::TrackedHops,
    /// A broken rule seen between audits.
    across_violation: Option<Violation>,
}

fn key_from(rng: &mut Rng) -> PrivateKey {
    loop {
        if let Ok(k) = PrivateKey::from_bytes(rng.bytes32()) {
            return k;
        }
    }
}

const CONFIRMATIONS: u64 = 3;
const CHALLENGE_PERIOD_BLOCKS: u64 = 30;
const RESEND_AFTER_BLOCKS: u64 = 3;
const CHECKPOINT_INTERVAL_BLOCKS: u64 = 12;
const INITIAL_TOKENS_PER_WALLET: u128 = 1_000 * UNIT;
const HUB_RESERVE: u128 = 1_000_000 * UNIT;
/// Most hubs in one world.
pub const MAX_HUBS: usize = 8;

/// The simulated wall clock, shared with every hub (milliseconds since the Unix epoch).
type SimClock = std::sync::Arc<std::sync::atomic::AtomicU64>;
/// The simulated wall clock at step 0 (2027-01-15T08:00:00Z).
pub const SIM_START_MS: u64 = 1_800_000_000_000;

/// Wallet `w` approves the hub contract and the hub opens its channel.
fn open_channel(chain: &mut SimChain, w: &SimWallet, hub: Address, contract: Address) -> Result<(), String> {
    chain.execute_now(w.address(), chain.token, w.approve_call())?;
    chain.execute_now(hub, contract, IInfHub::openChannelCall { user: w.address() }.abi_encode())?;
    Ok(())
}

/// A hub's settings in the simulation.
fn hub_config(domain: Domain, hub: Address, start_block: u64, clock_ms: &SimClock) -> HubConfig {
    HubConfig {
        clock_ms: clock_ms.clone(),
        ledger: LedgerParams {
            domain,
            hub,
            max_withdrawal_expiry_blocks: 1_000,
            max_accounts: 10_000,
            max_queued_payouts: 10_000,
            max_payment_amount: Amount(1_000_000 * UNIT),
            // Small, so retries of forgotten payments happen in every run.
            transfer_ids_kept: 64,
        },
        confirmations: CONFIRMATIONS,
        start_block,
        resend_after_blocks: RESEND_AFTER_BLOCKS,
        snapshot_every_records: 40,
        max_payout_batch: 16,
        // Several checkpoints per run, some across crashes and reorgs.
        checkpoint_interval_blocks: CHECKPOINT_INTERVAL_BLOCKS,
        first_wallet: None,
        // Realizations in every run: any payer past 50 INF, and the largest ones whenever more
        // than 1,000 INF of the reserve is committed.
        realize: RealizePolicy {
            when_free_reserve_below: Amount(HUB_RESERVE - 1_000 * UNIT),
            when_payer_reaches: Amount(50 * UNIT),
            max_per_tx: 16,
        },
    }
}

impl World {
    /// Builds the world: deploys the token and one contract per hub, funds each hub and its
    /// wallets, opens the channels, makes first deposits, and lets everyone see it confirmed.
    pub fn new(config: SimConfig) -> Result<World, String> {
        if config.hubs == 0 || config.hubs > MAX_HUBS || config.wallets < config.hubs {
            return Err(format!("1..={MAX_HUBS} hubs with at least one wallet each"));
        }
        let mut rng = Rng::new(config.seed);
        let keys: Vec<PrivateKey> = (0..config.hubs).map(|_| key_from(&mut rng)).collect();
        let deployer = key_from(&mut rng).address();
        let (challenge, notice) = (CHALLENGE_PERIOD_BLOCKS, CHALLENGE_PERIOD_BLOCKS * 4);
        let mut chain =
            SimChain::deploy(&config.repo_root, deployer, keys[0].address(), U256::ZERO, challenge, notice)?;
        let mut contracts = vec![chain.hub_contract];
        for k in &keys[1..] {
            contracts.push(chain.deploy_hub(&config.repo_root, deployer, k.address(), challenge, notice)?);
        }
        let token = chain.token;
        let mint = |chain: &mut SimChain, to: Address, amount: u128| {
            chain.execute_now(deployer, token, IErc20::mintCall { to, amount: U256::from(amount) }.abi_encode())
        };
        let mut sites = Vec::new();
        let mut links = vec![vec![None; config.hubs]; config.hubs];
        let clock_ms = SimClock::new(std::sync::atomic::AtomicU64::new(SIM_START_MS));
        for (s, (key, contract)) in keys.into_iter().zip(contracts).enumerate() {
            let domain = Domain { chain_id: crate::evm::SIM_CHAIN_ID, verifying_contract: contract };
            let mut config_s = hub_config(domain, key.address(), chain.floor, &clock_ms);
            // The hub's reserve.
            let hub = key.address();
            mint(&mut chain, hub, HUB_RESERVE)?;
            chain.execute_now(hub, token, IErc20::approveCall { spender: contract, amount: U256::MAX }.abi_encode())?;
            let reserve = IInfHub::depositReserveCall { amount: U256::from(HUB_RESERVE) };
            chain.execute_now(hub, contract, reserve.abi_encode())?;
            // Its share of the wallets (the first hubs take the remainder).
            let n = config.wallets / config.hubs + usize::from(s < config.wallets % config.hubs);
            let mut wallets = Vec::new();
            for i in 0..n {
                let wkey = key_from(&mut rng);
                let behaviour =
                    if rng.chance(config.cheater_per_mille) { Behaviour::Cheater } else { Behaviour::Honest };
                let w = SimWallet::new(i, wkey, behaviour, hub_info(domain, hub, token), chain.floor);
                mint(&mut chain, w.address(), INITIAL_TOKENS_PER_WALLET)?;
                open_channel(&mut chain, &w, hub, contract)?;
                wallets.push(w);
            }
            // Every other hub's link to this one (spec §5.23): an ordinary wallet here.
            for a in (0..config.hubs).filter(|a| *a != s && config.hubs > 1) {
                let wkey = key_from(&mut rng);
                let mut w =
                    SimWallet::new(wallets.len(), wkey, Behaviour::Honest, hub_info(domain, hub, token), chain.floor);
                w.link_of = Some(a);
                mint(&mut chain, w.address(), across::LINK_DEPOSIT + INITIAL_TOKENS_PER_WALLET)?;
                open_channel(&mut chain, &w, hub, contract)?;
                links[a][s] = Some(wallets.len());
                wallets.push(w);
            }
            config_s.first_wallet = wallets.first().map(SimWallet::address);
            let disk = SimDisk::new();
            let process = SimHub::start(disk.clone(), key.clone(), config_s.clone(), &chain, config.bug)
                .map_err(|e| format!("hub {s} did not start: {e:?}"))?;
            let mut auditor = Auditor::new(&wallets, hub, domain);
            auditor.audit_hub_conduct = config.audit_hub_conduct;
            let tower = if config.towers {
                let tkey = key_from(&mut rng);
                Some(
                    SimTower::start(tkey, domain, hub, challenge)
                        .map_err(|e| format!("tower {s} did not start: {e:?}"))?,
                )
            } else {
                None
            };
            let pushed = vec![(0, 0); wallets.len()];
            sites.push(Site {
                key,
                config: config_s,
                disk,
                hub: Some(process),
                down_until: 0,
                wallets,
                auditor,
                tower,
                pushed,
            });
        }
        let faults = config.faults;
        let report = Report { hubs: config.hubs, ..Report::default() };
        let forwards = vec![across::ForwardBook::new(); config.hubs];
        let refused_forwards = vec![std::collections::BTreeMap::new(); config.hubs];
        let mut world = World {
            rng,
            faults,
            chain,
            sites,
            net: Vec::new(),
            step: 0,
            report,
            config,
            clock_ms,
            links,
            forwards,
            tracked: std::collections::BTreeMap::new(),
            refused_forwards,
            across_violation: None,
        };
        world.first_deposits()?;
        Ok(world)
    }

    /// First deposits (each link its whole [`across::LINK_DEPOSIT`]), confirmed before the faulty
    /// phase starts.
    fn first_deposits(&mut self) -> Result<(), String> {
        for s in 0..self.sites.len() {
            for i in 0..self.sites[s].wallets.len() {
                let mut amount = Amount(self.rng.range(50, 400) as u128 * UNIT);
                if self.sites[s].wallets[i].link_of.is_some() {
                    amount = Amount(across::LINK_DEPOSIT);
                }
                self.sites[s].wallets[i].deposit(&mut self.chain, amount);
            }
        }
        for _ in 0..(CONFIRMATIONS + 2) {
            self.mine_block(false);
            self.tick_everyone().map_err(|v| v.to_string())?;
        }
        Ok(())
    }

    fn send(&mut self, msg: Msg) {
        if self.rng.chance(self.faults.net_drop) {
            self.report.messages.1 += 1;
            return;
        }
        let copies = if self.rng.chance(self.faults.net_duplicate) {
            self.report.messages.2 += 1;
            2
        } else {
            1
        };
        for _ in 0..copies {
            let delay = self.rng.range(0, self.faults.net_max_delay_steps);
            self.net.push((self.step + delay, self.rng.next_u64(), msg.clone()));
            self.report.messages.0 += 1;
        }
    }

    fn mine_block(&mut self, faulty: bool) {
        if faulty && self.rng.chance(self.faults.reorg) {
            let depth = self.rng.range(1, CONFIRMATIONS - 1);
            let drop = self.faults.chain.drop_per_mille;
            let done = self.chain.reorg(depth, &mut self.rng, drop);
            if done > 0 {
                self.report.reorgs.0 += 1;
                self.report.reorgs.1 += done;
                // The new fork replaces the old blocks one for one (a real reorg never makes
                // the chain shorter), then grows by the block mined below.
                for _ in 0..done {
                    self.chain.mine(&mut self.rng, self.faults.chain);
                    self.report.blocks += 1;
                }
            }
        }
        let faults = if faulty { self.faults.chain } else { ChainFaults { delay_per_mille: 0, drop_per_mille: 0 } };
        self.chain.mine(&mut self.rng, faults);
        self.report.blocks += 1;
    }

    /// Hub `s` crashed: drop the process; it restarts a few steps later from its disk.
    fn hub_crashed(&mut self, s: usize, why: HubDown) {
        let HubDown(detail) = why;
        let step = self.step;
        let site = &mut self.sites[s];
        site.auditor.note(format!("step {step}: hub {s} crashed ({detail})"));
        site.hub = None;
        self.report.hub_crashes += 1;
        site.down_until = step + self.rng.range(1, 5);
    }

    fn restart_hub(&mut self, s: usize) -> Result<(), Violation> {
        let site = &mut self.sites[s];
        site.disk.restart(&mut self.rng);
        match SimHub::start(site.disk.clone(), site.key.clone(), site.config.clone(), &self.chain, self.config.bug) {
            Ok(hub) => {
                site.hub = Some(hub);
                let hub = site.hub.as_ref().expect("just started");
                site.auditor.after_restart(self.step, hub, &site.wallets)
            }
            Err(HubDown(e)) => Err(Violation::new(
                self.step,
                "hub_must_restart_from_its_disk",
                format!("hub {s}: recovery failed: {e}; disk holds {:?}", site.disk.listing()),
            )),
        }
    }

    /// Every hub and every wallet follow the chain once. Each wallet reads the contract's
    /// record of its channel at the confirmed block (and at the head while it closes), as the
    /// CLI wallet does.
    fn tick_everyone(&mut self) -> Result<(), Violation> {
        let bug = self.config.bug;
        let take_payouts = self.step.is_multiple_of(3);
        let head = self.chain.head();
        let confirmed = head.saturating_sub(CONFIRMATIONS - 1);
        for s in 0..self.sites.len() {
            if let Some(hub) = self.sites[s].hub.as_mut() {
                match hub.tick(&mut self.chain, bug, take_payouts) {
                    Ok(notices) => self.sites[s].auditor.hub_notices(self.step, &notices),
                    Err(e) => self.hub_crashed(s, e),
                }
            }
            self.push_to_tower(s);
            let faulty = self.faults.hub_crash > 0;
            self.tick_tower(s, faulty)?;
            let site = &mut self.sites[s];
            let contract = site.contract();
            let users: Vec<Address> = site.wallets.iter().map(|w| w.address()).collect();
            let step = self.step;
            let read = |chain: &SimChain, block: u64| {
                chain
                    .books_at(block, contract, &users)
                    .map(|(_, c)| c)
                    .map_err(|e| Violation::new(step, "contract_readable", e))
            };
            let at_confirmed = read(&self.chain, confirmed)?;
            let closing =
                site.wallets.iter().any(|w| w.channel().is_some_and(|c| matches!(c.status, Status::Closing { .. })));
            let at_head = if closing { Some(read(&self.chain, head)?) } else { None };
            for (i, w) in site.wallets.iter_mut().enumerate() {
                let head_view = at_head.as_ref().map(|v| &v[i]);
                w.watch(&mut self.chain, confirmed, &at_confirmed[i], head_view, bug, RESEND_AFTER_BLOCKS)
                    .map_err(|e| Violation::new(step, "wallet_follows_the_chain", format!("hub {s}: {e}")))?;
            }
        }
        Ok(())
    }

    /// Delivers due messages: those to each hub are executed as one batch (group commit).
    fn deliver(&mut self) {
        let now = self.step;
        let mut due: Vec<(u64, u64, Msg)> = Vec::new();
        let mut later = Vec::new();
        for m in std::mem::take(&mut self.net) {
            if m.0 <= now {
                due.push(m);
            } else {
                later.push(m);
            }
        }
        self.net = later;
        due.sort_by_key(|m| (m.0, m.1));
        let mut to_hub: Vec<Vec<ToHub>> = vec![Vec::new(); self.sites.len()];
        for (_, _, msg) in due {
            match msg {
                Msg::ToHub(s, m) => to_hub[s].push(m),
                Msg::ToWallet(s, i, m) => self.wallet_receives(s, i, m),
                Msg::ToTower(s, c, ack) => self.tower_receives(s, c, ack),
            }
        }
        for (s, msgs) in to_hub.into_iter().enumerate() {
            if !msgs.is_empty() {
                self.hub_receives(s, msgs);
            }
        }
    }

    fn wallet_receives(&mut self, s: usize, i: usize, m: ToWallet) {
        let site = &mut self.sites[s];
        let w = &mut site.wallets[i];
        match m {
            ToWallet::Answer(id, answer) => match w.on_answer(id, answer) {
                Some((d, Resolution::Applied)) => {
                    site.auditor.payment_acked(i, &d);
                    self.report.payments_acked += 1;
                    if d.message.kind == PaymentKind::External as u8 {
                        self.report.payouts_acked += 1;
                    }
                }
                Some((d, Resolution::Refunded { .. })) => site.auditor.payment_refunded(&d),
                None => {}
            },
            ToWallet::Credit(c) => {
                // The wallet hands each credit to its tower too (best effort).
                if site.tower.is_some() {
                    self.send(Msg::ToTower(s, c.clone(), None));
                }
                self.sites[s].wallets[i].on_credit(c);
            }
            ToWallet::CoSigned(wd, sig) => {
                w.on_cosigned(&mut self.chain, wd, sig);
                self.report.withdrawals += 1;
            }
            ToWallet::Synced(account) => {
                w.on_synced(&account);
                self.after_sync_locks(s, i, &account);
            }
            ToWallet::LockAnswer(debit, answer) => {
                let change = w.pending_lock().filter(|p| p.debit == debit).map(|p| p.change);
                if w.on_lock_answer(&debit, answer) {
                    self.report.lock_debits_acked += 1;
                    if let Some(change) = change {
                        self.lock_change_applied(s, i, change);
                    }
                }
            }
            ToWallet::Claimed(lock_id, scalar, credit) => w.on_claimed(lock_id, scalar, credit),
        }
    }

    fn tower_receives(&mut self, s: usize, credit: SignedCredit, ack: Option<usize>) {
        let step = self.step;
        let site = &mut self.sites[s];
        let Some(tower) = site.tower.as_mut() else { return };
        let nonce = credit.message.nonce;
        if tower.receive(credit, &mut self.chain, step) == Delivery::Held {
            if let Some(i) = ack {
                site.pushed[i].0 = site.pushed[i].0.max(nonce);
            }
        }
    }

    /// The hub's pusher (as the node's `towers::run_pusher`): every user's newest credit that
    /// the tower has not acknowledged is pushed, again every few steps until it is.
    fn push_to_tower(&mut self, s: usize) {
        let step = self.step;
        let site = &self.sites[s];
        if site.tower.is_none() {
            return;
        }
        let Some(hub) = site.hub.as_ref() else { return };
        let mut sends = Vec::new();
        for (i, w) in site.wallets.iter().enumerate() {
            let Some(credit) = hub.ledger().account(&w.address()).and_then(|a| a.channel.credit.clone()) else {
                continue;
            };
            let (acked, last) = site.pushed[i];
            if credit.message.nonce > acked && (last == 0 || step >= last + 3) {
                sends.push((i, credit));
            }
        }
        for (i, credit) in sends {
            self.sites[s].pushed[i].1 = step;
            self.send(Msg::ToTower(s, credit, Some(i)));
        }
    }

    /// Tower faults and rounds: a crash at a random disk operation (or at once), a restart
    /// from its disk a few steps later, one defence round per step while it runs.
    fn tick_tower(&mut self, s: usize, faulty: bool) -> Result<(), Violation> {
        let step = self.step;
        let crash = faulty && self.rng.chance(self.faults.hub_crash);
        let within = self.rng.below(8);
        let down_for = self.rng.range(1, 5);
        let site = &mut self.sites[s];
        let Some(tower) = site.tower.as_mut() else { return Ok(()) };
        if !tower.up() {
            if step >= tower.down_until {
                tower.restart(&mut self.rng).map_err(|e| {
                    Violation::new(step, "tower_must_restart_from_its_disk", format!("tower {s}: {}", e.0))
                })?;
                site.auditor.note(format!("step {step}: tower {s} restarted"));
            }
            return Ok(());
        }
        if crash {
            tower.crash(if within.is_multiple_of(2) { Some(within) } else { None }, step + down_for);
        }
        let alive = tower.tick(&mut self.chain, self.config.bug == Some(InjectedBug::TowerSkipsDefence));
        if let Some(b) = tower.breach.take() {
            return Err(Violation::new(step, "a_live_tower_never_loses_a_credit_it_held", format!("tower {s}: {b}")));
        }
        if !alive || !tower.up() {
            tower.down_until = tower.down_until.max(step + down_for);
            self.report.towers.1 += 1;
            site.auditor.note(format!("step {step}: tower {s} crashed"));
        }
        self.report.towers.0 = self.sites.iter().filter_map(|x| x.tower.as_ref()).map(|t| t.defences).sum();
        Ok(())
    }

    fn hub_receives(&mut self, s: usize, msgs: Vec<ToHub>) {
        let step = self.step;
        let bug = self.config.bug;
        let msgs = self.take_forwards(s, msgs);
        let mut claims = Vec::new();
        let site = &mut self.sites[s];
        let Some(hub) = site.hub.as_mut() else { return }; // connection refused
        let (commands, from, mut answers) = requests(&site.wallets, hub.ledger(), &self.forwards[s], msgs);
        let domain = site.config.ledger.domain;
        let commit = match hub.execute(commands) {
            Ok(c) => c,
            Err(e) => {
                if bug == Some(InjectedBug::AckBeforeDurable) {
                    // The injected bug: answers (receipts, signed at once) went out before the
                    // batch was durable.
                    for (i, d) in &from {
                        if let Origin::Pay(d) = d {
                            let receipt = receipt_of(&site.key, &domain, d);
                            let answer = PaymentAnswer::Applied(receipt);
                            answers.push((*i, ToWallet::Answer(d.message.payment_id, answer)));
                        }
                    }
                    for (i, a) in answers {
                        self.send(Msg::ToWallet(s, i, a));
                    }
                }
                return self.hub_crashed(s, e);
            }
        };
        let mut crashed = None;
        for ((i, origin), sequenced) in from.into_iter().zip(commit.results) {
            let d = match origin {
                Origin::Pay(d) => d,
                Origin::Withdraw => {
                    if let Ok(Outcome::WithdrawalCoSigned { withdrawal, hub_signature }) = sequenced.0 {
                        answers.push((i, ToWallet::CoSigned(withdrawal, hub_signature)));
                    }
                    continue;
                }
                Origin::Lock(p) => {
                    let answer = locks::lock_answer(hub.ledger(), &site.key, &domain, &p, &sequenced.0);
                    answers.push((i, ToWallet::LockAnswer(p.debit, answer)));
                    continue;
                }
                Origin::Reveal(lock_id, scalar) => {
                    if let Ok(Outcome::CreditLockIssued { credit, .. }) = sequenced.0 {
                        claims.push(lock_id);
                        answers.push((i, ToWallet::Claimed(lock_id, scalar, credit)));
                    }
                    continue;
                }
            };
            let credit = match &sequenced.0 {
                Ok(Outcome::Paid { credit, .. }) => credit.clone(),
                _ => None,
            };
            let seq = sequenced.1;
            // The node's answer: the first result, for a retry too (from the history).
            let history = || {
                let h = hub.hub.ledger.history();
                (h.reader(), h.heads(&d.message.user))
            };
            let id = d.message.payment_id;
            match payment_answer(history, &domain, &d, sequenced) {
                Ok(applied) => {
                    if !applied.replayed {
                        site.auditor.payment_logged(&d, seq.unwrap_or(applied.result.seq));
                    }
                    answers.push((i, ToWallet::Answer(id, PaymentAnswer::Applied(applied.result.receipt))));
                }
                Err(NotApplied::Refunded { refused, refund }) => {
                    site.auditor.credit_issued(i, &refund);
                    let message = format!("refused ({refused}) and refunded");
                    let answer = PaymentAnswer::Refunded { code: refused, message, refund: *refund };
                    answers.push((i, ToWallet::Answer(id, answer)));
                }
                Err(NotApplied::Refused(e)) => {
                    site.auditor.refused(step, i, site.wallets[i].behaviour, &d, e);
                    let answer = PaymentAnswer::Refused { code: e.code(), message: e.to_string() };
                    answers.push((i, ToWallet::Answer(id, answer)));
                }
                // The disk failing under a read is the process crashing: no answer goes out
                // (the batch is durable; the wallets will retry).
                Err(NotApplied::History(e)) if site.disk.crashed() => {
                    crashed = Some(HubDown(e));
                    break;
                }
                Err(e @ (NotApplied::History(_) | NotApplied::Missing)) => site.auditor.history_failed(step, &d, &e),
            }
            if let Some(c) = credit {
                if let Some(j) = site.wallets.iter().position(|w| w.address() == c.message.user) {
                    site.auditor.credit_issued(j, &c);
                    answers.push((j, ToWallet::Credit(c)));
                }
            }
        }
        if let Some(down) = crashed {
            return self.hub_crashed(s, down);
        }
        for (i, a) in answers {
            self.send(Msg::ToWallet(s, i, a));
        }
        for lock_id in claims {
            self.scalar_known(s, lock_id);
        }
        self.advance_forwards(s);
    }

    fn random_wallet(&mut self, s: usize, filter: impl Fn(&SimWallet) -> bool) -> Option<usize> {
        let candidates: Vec<usize> =
            self.sites[s].wallets.iter().filter(|w| w.link_of.is_none() && filter(w)).map(|w| w.index).collect();
        if candidates.is_empty() {
            return None;
        }
        Some(candidates[self.rng.below(candidates.len() as u64) as usize])
    }

    /// One user action, at a hub and a wallet chosen at random.
    fn user_action(&mut self) {
        let s = self.rng.below(self.sites.len() as u64) as usize;
        let Some(i) = self.random_wallet(s, |w| w.online && w.active()) else { return };
        let roll = self.rng.below(100);
        let cheater = self.sites[s].wallets[i].behaviour == Behaviour::Cheater;
        if let Some(p) = self.sites[s].wallets[i].pending_lock() {
            if self.step >= self.sites[s].wallets[i].pending_sent_at + 6 {
                self.sites[s].wallets[i].pending_sent_at = self.step;
                self.resend_lock(s, i, p);
            }
            return;
        }
        if let Some(p) = self.sites[s].wallets[i].pending() {
            // The write-ahead rule: a pending payment is resent (same id) before anything new.
            if self.step >= self.sites[s].wallets[i].pending_sent_at + 6 {
                self.sites[s].wallets[i].pending_sent_at = self.step;
                if roll < 50 {
                    self.send(Msg::ToHub(s, ToHub::Pay(i, p)));
                } else {
                    self.send(Msg::ToHub(s, ToHub::Sync(i)));
                }
            }
            return;
        }
        if self.sites[s].wallets[i].pending_withdrawal.is_some() {
            // Like the real wallet, one request at a time: wait for the co-signature, and give
            // up after a while (the hub's hold, if any, expires on its own).
            if self.step >= self.sites[s].wallets[i].withdrawal_asked_at + 20 {
                self.sites[s].wallets[i].pending_withdrawal = None;
            }
            return;
        }
        if cheater && roll < 25 {
            self.attack(s, i);
            return;
        }
        match roll {
            0..=4 if self.sites.len() > 1 => self.pay_across(s, i, false),
            0..=9 => self.pay_by_invoice(s, i),
            10..=59 => self.pay_someone(s, i),
            60..=67 => self.pay_outside(s, i),
            68..=74 => {
                let amount = self.some_amount(s, i);
                let step = self.step;
                let w = &mut self.sites[s].wallets[i];
                if let Some((wd, sig)) = w.sign_withdrawal(amount, 40) {
                    w.withdrawal_asked_at = step;
                    self.send(Msg::ToHub(s, ToHub::Withdraw(i, wd, sig)));
                }
            }
            75..=82 => {
                let amount = Amount(self.rng.range(1, 50) as u128 * UNIT);
                self.sites[s].wallets[i].deposit(&mut self.chain, amount);
            }
            83..=92 => self.send(Msg::ToHub(s, ToHub::Sync(i))),
            _ => self.purchase(s, i),
        }
    }

    /// Wallet `i` of hub `s` pays another of that hub's wallets.
    fn pay_someone(&mut self, s: usize, i: usize) {
        let Some(j) = self.random_wallet(s, |w| w.channel().is_some_and(|c| c.status == Status::Open)) else { return };
        if j == i {
            return;
        }
        let to = self.sites[s].wallets[j].address();
        let amount = self.some_amount(s, i);
        let id = B256::from(self.rng.bytes32());
        if let Some(d) = self.sites[s].wallets[i].sign_payment(PaymentKind::Internal, to, amount, id) {
            self.sites[s].wallets[i].pending_sent_at = self.step;
            self.send(Msg::ToHub(s, ToHub::Pay(i, d)));
        }
    }

    /// Wallet `i` of hub `s` pays a fresh chain address (an external payment, paid out on chain
    /// in a batch).
    fn pay_outside(&mut self, s: usize, i: usize) {
        let to = Address::from_slice(&self.rng.bytes32()[..20]);
        let amount = self.some_amount(s, i);
        let id = B256::from(self.rng.bytes32());
        if let Some(d) = self.sites[s].wallets[i].sign_payment(PaymentKind::External, to, amount, id) {
            self.sites[s].wallets[i].pending_sent_at = self.step;
            self.sites[s].auditor.payout_requested(&d);
            self.send(Msg::ToHub(s, ToHub::Pay(i, d)));
        }
    }

    /// The operator of hub `s` sells tokens to its user `i` off chain (a purchase).
    fn purchase(&mut self, s: usize, i: usize) {
        let user = self.sites[s].wallets[i].address();
        let amount = Amount(self.rng.range(1, 20) as u128 * UNIT);
        let purchase_id = B256::from(self.rng.bytes32());
        let Some(hub) = self.sites[s].hub.as_mut() else { return };
        match hub.execute(vec![Command::Purchase { user, amount, purchase_id }]) {
            Ok(commit) => {
                if let Some((Ok(Outcome::Credited(c)), _)) = commit.results.into_iter().next() {
                    self.sites[s].auditor.credit_issued(i, &c);
                    self.send(Msg::ToWallet(s, i, ToWallet::Credit(c)));
                }
            }
            Err(e) => self.hub_crashed(s, e),
        }
    }

    fn some_amount(&mut self, s: usize, i: usize) -> Amount {
        let balance = self.sites[s].wallets[i].balance().0;
        if balance == 0 {
            return Amount(UNIT);
        }
        // Mostly small amounts, sometimes the whole balance, sometimes more than it.
        match self.rng.below(10) {
            0 => Amount(balance),
            1 => Amount(balance + UNIT),
            _ => Amount((balance / 10).max(1)),
        }
    }

    /// A cheating user's attempt. Every one of them must be refused by the hub (checked by
    /// the auditor through the ledger's state, not by trusting the refusal).
    fn attack(&mut self, s: usize, i: usize) {
        self.report.attacks += 1;
        let n = self.sites[s].wallets.len();
        let domain = self.sites[s].wallets[i].core.domain();
        let key = self.sites[s].wallets[i].core.key().clone();
        let channel = self.sites[s].wallets[i].channel().cloned();
        match self.rng.below(6) {
            // A payment across hubs with a lock the payee's scalar does not open.
            5 => self.pay_across(s, i, true),
            0 => {
                // Replay an old, already applied debit.
                if let Some(d) = self.sites[s].wallets[i].old_debits.first().copied() {
                    self.send(Msg::ToHub(s, ToHub::Pay(i, d)));
                }
            }
            1 => {
                // Double spend: two different debits with the same nonce, sent together.
                let Some(ch) = channel else { return };
                let balance = self.sites[s].wallets[i].balance();
                if balance.is_zero() {
                    return;
                }
                for _ in 0..2 {
                    let to = Address::from_slice(&self.rng.bytes32()[..20]);
                    let id = B256::from(self.rng.bytes32());
                    if let Ok(d) = ch.next_debit(PaymentKind::Internal, to, balance, id) {
                        let signed = Signed::new(d, &domain, &key);
                        self.sites[s].wallets[i].old_debits.push(signed);
                        self.sites[s].auditor.double_spend_attempt(i, &signed);
                        self.send(Msg::ToHub(s, ToHub::Pay(i, signed)));
                    }
                }
            }
            2 => {
                // A debit signed by someone else's key (or mangled after signing).
                let Some(ch) = channel else { return };
                let id = B256::from(self.rng.bytes32());
                let to = self.sites[s].wallets[(i + 1) % n].address();
                if let Ok(d) = ch.next_debit(PaymentKind::Internal, to, Amount(UNIT), id) {
                    let mut signed = Signed::new(d, &domain, &key_from(&mut self.rng));
                    if self.rng.chance(500) {
                        signed = Signed::new(d, &domain, &key);
                        signed.message.amount = Amount(signed.message.amount.0 * 2);
                        signed.message.cumulative_debit = Amount(signed.message.cumulative_debit.0 + UNIT);
                    }
                    self.send(Msg::ToHub(s, ToHub::Pay(i, signed)));
                }
            }
            3 => {
                // A malformed debit: zero amount, wrong epoch, self-payment, garbage signature.
                let Some(ch) = channel else { return };
                let id = B256::from(self.rng.bytes32());
                let to = self.sites[s].wallets[(i + 1) % n].address();
                if let Ok(mut d) = ch.next_debit(PaymentKind::Internal, to, Amount(UNIT), id) {
                    match self.rng.below(4) {
                        0 => d.amount = Amount::ZERO,
                        1 => d.epoch += 1,
                        2 => d.recipient = d.user,
                        _ => d.kind = 9,
                    }
                    let mut signed = Signed::new(d, &domain, &key);
                    if self.rng.chance(300) {
                        signed.signature = Signature(std::array::from_fn(|k| (k as u8).wrapping_mul(7)));
                    }
                    self.sites[s].wallets[i].old_debits.push(signed);
                    self.send(Msg::ToHub(s, ToHub::Pay(i, signed)));
                }
            }
            // Exit leaving out every debit (as if from an old backup); the hub must dispute.
            // Half the time it also submits a debit of its own with the highest nonce and a
            // total of 0, before the hub's answer, to erase what it paid.
            _ if self.sites[s].wallets[i].pending().is_none() && self.rng.chance(300) => {
                self.sites[s].wallets[i].exit(&mut self.chain);
                if self.rng.chance(500) {
                    self.sites[s].wallets[i].submit_forged_debit(&mut self.chain, u64::MAX, Amount::ZERO);
                }
            }
            _ => {}
        }
    }

    /// A cheater whose channel is closing signs a debit with a higher nonce and a lower total
    /// than the ones it signed and submits it (finding 1 of issue 18), at any point of the
    /// challenge period: before or after the hub's answer.
    fn cheaters_forge_during_their_exits(&mut self) {
        for s in 0..self.sites.len() {
            for i in 0..self.sites[s].wallets.len() {
                if self.sites[s].wallets[i].behaviour != Behaviour::Cheater || !self.rng.chance(150) {
                    continue;
                }
                let Some(ch) = self.sites[s].wallets[i].channel().cloned() else { continue };
                if matches!(ch.status, Status::Closing { .. }) && !ch.cumulative_debit().is_zero() {
                    let total = Amount(self.rng.below(ch.cumulative_debit().0.min(u64::MAX as u128) as u64) as u128);
                    let nonce = ch.debit_nonce() + 1 + self.rng.below(1_000);
                    self.sites[s].wallets[i].submit_forged_debit(&mut self.chain, nonce, total);
                    self.report.attacks += 1;
                }
            }
        }
    }

    /// A hub turns on a user who is offline: it closes the channel holding no credit of
    /// theirs, hoping they will not answer within the challenge period.
    fn hub_attack(&mut self) {
        let s = self.rng.below(self.sites.len() as u64) as usize;
        let Some(i) = self.random_wallet(s, |w| !w.online && w.active() && w.pending().is_none() && w.in_flight() == 0)
        else {
            return;
        };
        let site = &mut self.sites[s];
        let Some(hub) = site.hub.as_mut() else { return };
        let user = site.wallets[i].address();
        let Some(acct) = hub.ledger().account(&user) else { return };
        if acct.channel.status != Status::Open || acct.channel.withdrawal_hold.is_some() {
            return;
        }
        let debit = acct.channel.debit;
        hub.start_close(&mut self.chain, user, debit);
        site.wallets[i].exiting = true;
        site.auditor.hub_closed(i);
        self.report.hub_closes += 1;
    }

    /// Moves the world's clock to the current step.
    fn tick_clock(&self) {
        self.clock_ms.store(SIM_START_MS + self.step * 1_000, std::sync::atomic::Ordering::Relaxed);
    }

    /// One step of the faulty phase.
    pub fn step_once(&mut self) -> Result<(), Violation> {
        self.step += 1;
        self.tick_clock();
        self.report.steps += 1;
        for s in 0..self.sites.len() {
            // Hub process faults.
            if self.sites[s].hub.is_none() && self.step >= self.sites[s].down_until {
                self.restart_hub(s)?;
            }
            if self.sites[s].hub.is_some() && self.rng.chance(self.faults.hub_crash) {
                let within = self.rng.below(30);
                self.sites[s].disk.schedule_crash(within);
            }
            // Wallets come and go.
            if self.rng.chance(self.faults.wallet_offline) {
                if let Some(i) = self.random_wallet(s, |w| w.online) {
                    self.sites[s].wallets[i].online = false;
                }
            }
            if self.rng.chance(self.faults.wallet_offline * 2) {
                if let Some(i) = self.random_wallet(s, |w| !w.online) {
                    self.sites[s].wallets[i].online = true;
                }
            }
        }
        for _ in 0..self.rng.range(1, 4) * self.sites.len() as u64 {
            self.user_action();
        }
        if self.rng.chance(10) {
            self.hub_attack();
        }
        self.cheaters_forge_during_their_exits();
        self.drive_links(None);
        self.deliver();
        if self.step.is_multiple_of(2) {
            self.mine_block(true);
        }
        self.tick_everyone()?;
        self.audit(false)
    }

    /// With `INFHUB_SIM_WATCH=<wallet index>` (a debugging aid): prints every mined call that
    /// names the watched wallet's address, decoded.
    fn trace_watched(&self, mined: &[MinedTx]) {
        use alloy::sol_types::SolInterface;
        let Some(index) = std::env::var("INFHUB_SIM_WATCH").ok().and_then(|v| v.parse::<usize>().ok()) else {
            return;
        };
        let Some(wallet) = self.sites.iter().flat_map(|s| s.wallets.iter()).find(|w| w.index == index) else {
            return;
        };
        let user = wallet.address();
        for tx in mined {
            let names_user = tx.from == user || tx.data.windows(20).any(|w| w == user.as_slice());
            if !names_user {
                continue;
            }
            let call = infhub_chain::bindings::IInfHub::IInfHubCalls::abi_decode(&tx.data)
                .map_or_else(|_| format!("{} bytes", tx.data.len()), |c| format!("{c:?}"));
            eprintln!(
                "watch step {} block {} from {} {}: {call}",
                self.step,
                tx.block,
                tx.from,
                if tx.success { "ok" } else { "REVERTED" }
            );
        }
    }

    /// Every hub's auditor checks the world (each judges its own hub, wallets and contract,
    /// and its hub's conduct among the transactions mined since the last audit).
    fn audit(&mut self, last: bool) -> Result<(), Violation> {
        let step = self.step;
        let mined: Vec<MinedTx> = self.chain.take_mined();
        self.trace_watched(&mined);
        if let Some(v) = self.across_violation.take() {
            return Err(v);
        }
        let many = self.sites.len() > 1;
        for (s, site) in self.sites.iter_mut().enumerate() {
            let hub = site.hub.as_ref();
            let r = if last {
                site.auditor.final_check(step, &mut self.chain, &mined, hub, &site.wallets)
            } else {
                site.auditor.check(step, &mut self.chain, &mined, hub, &site.wallets)
            };
            r.map_err(|mut v| {
                if many {
                    v.detail = format!("hub {s}: {}", v.detail);
                }
                v
            })?;
        }
        Ok(())
    }

    /// The end: faults off, everyone online, everything delivered and confirmed, then every
    /// open channel exits and settles, and the books are closed.
    pub fn drain_and_exit(&mut self) -> Result<(), Violation> {
        self.faults = Faults::off();
        for s in 0..self.sites.len() {
            self.sites[s].disk.cancel_crash();
            if self.sites[s].disk.crashed() {
                // The disk failed in the last faulty step and the process has not touched it
                // since: it is down all the same (it would fail on its next write).
                self.sites[s].hub = None;
            }
            if self.sites[s].hub.is_none() {
                self.restart_hub(s)?;
            }
            for w in &mut self.sites[s].wallets {
                w.online = true;
            }
        }
        // Resolve pending payments and deliver everything.
        for round in 0..40 {
            self.step += 1;
            self.tick_clock();
            self.report.steps += 1;
            for s in 0..self.sites.len() {
                for i in 0..self.sites[s].wallets.len() {
                    let pending = self.sites[s].wallets[i].pending();
                    if let Some(p) = pending {
                        // The write-ahead rule: resend the same debit; the hub applies it once.
                        self.send(Msg::ToHub(s, ToHub::Pay(i, p)));
                    }
                    let pending_lock = self.sites[s].wallets[i].pending_lock();
                    if let Some(p) = pending_lock {
                        self.resend_lock(s, i, p);
                    }
                    if pending.is_some() || pending_lock.is_some() || round % 10 == 0 {
                        self.send(Msg::ToHub(s, ToHub::Sync(i)));
                    }
                }
            }
            self.drive_links(Some(round));
            self.deliver();
            self.mine_block(false);
            self.tick_everyone()?;
            self.audit(false)?;
        }
        let stuck: Vec<String> = self.sites.iter().enumerate().flat_map(|(s, site)| stuck_payments(s, site)).collect();
        if !stuck.is_empty() {
            return Err(Violation::new(self.step, "pending_payments_resolve", stuck.join("; ")));
        }
        self.check_payments_across()?;
        // Every channel still open exits, including one whose earlier close never happened (a
        // hub close or an exit the mempool dropped, or one that reverted).
        for site in &mut self.sites {
            for w in &mut site.wallets {
                if w.channel().is_some_and(|c| c.status == Status::Open) {
                    w.exit(&mut self.chain);
                }
            }
        }
        // Long enough for the closes and for every lock registered through one to expire and
        // be resolved by the hub's unlock duty.
        let longest = across::SIM_FORWARD_EXPIRY_BLOCKS + infhub_core::forwarding::FORWARD_EXPIRY_DELTA_BLOCKS;
        let limit = CHALLENGE_PERIOD_BLOCKS * 3 + 40 + locks::SIM_LOCK_EXPIRY_BLOCKS.max(longest);
        for _ in 0..limit {
            self.step += 1;
            self.tick_clock();
            self.report.steps += 1;
            self.deliver();
            self.mine_block(false);
            self.tick_everyone()?;
            self.audit(false)?;
            let contracts: Vec<Address> = self.sites.iter().map(|site| site.contract()).collect();
            let escrow_left = contracts.into_iter().any(|c| self.chain.total_escrow(c) != U256::ZERO);
            let done = !escrow_left
                && self.sites.iter().all(|site| {
                    let settled = site.wallets.iter().all(|w| w.channel().is_some_and(|c| c.status == Status::Settled));
                    let quiet = site.hub.as_ref().is_some_and(|h| h.duties_in_flight() == 0)
                        && site.wallets.iter().all(|w| w.in_flight() == 0);
                    let payouts_done = site.hub.as_ref().is_some_and(|h| {
                        h.ledger().queued_payouts().next().is_none()
                            && h.ledger().payout_batches_in_flight().next().is_none()
                    });
                    settled && quiet && payouts_done
                });
            if done {
                break;
            }
        }
        self.report.settlements =
            self.sites.iter().flat_map(|site| &site.wallets).map(|w| w.settlements.len() as u64).sum();
        self.report.realizations =
            self.sites.iter().filter_map(|site| site.hub.as_ref()).map(|h| h.realizations_mined()).sum();
        self.report.checkpoints = self.sites.iter().map(|site| site.auditor.checkpoints_verified).sum();
        self.audit(true)
    }

    /// Runs the whole simulation.
    pub fn run(config: SimConfig) -> Result<Report, Violation> {
        let steps = config.steps;
        let mut world = World::new(config).map_err(|e| Violation::new(0, "simulation_set_up", e))?;
        for _ in 0..steps {
            world.step_once()?;
        }
        world.drain_and_exit()?;
        Ok(world.report)
    }
}

/// The payments still pending at hub `s`'s wallets, described for the report.
/// A hub's batch of requests: the commands to commit in order, what each answers, and the
/// reads answered at once.
type Requests = (Vec<Command>, Vec<(usize, Origin)>, Vec<(usize, ToWallet)>);

/// The commands and reads of the messages `msgs` to a hub whose ledger is `ledger`.
fn requests(
    wallets: &[SimWallet],
    ledger: &infhub_core::ledger::Ledger,
    forwards: &across::ForwardBook,
    msgs: Vec<ToHub>,
) -> Requests {
    let (mut commands, mut from, mut answers) = (Vec::new(), Vec::new(), Vec::new());
    for m in msgs {
        match m {
            ToHub::Pay(i, d) => {
                commands.push(Command::Transfer(d));
                from.push((i, Origin::Pay(d)));
            }
            ToHub::Withdraw(i, w, sig) => {
                commands.push(Command::Withdraw { withdrawal: w, user_signature: sig });
                from.push((i, Origin::Withdraw));
            }
            ToHub::Lock(i, p) => {
                commands.push(locks::lock_command(&p));
                from.push((i, Origin::Lock(p)));
            }
            ToHub::Reveal(i, lock_id, scalar) => {
                let user = wallets[i].address();
                commands.push(Command::CreditLock { user, change: LockChange::Settle { lock_id, scalar } });
                from.push((i, Origin::Reveal(lock_id, scalar)));
            }
            ToHub::CancelAgreed(i, p) => {
                commands.push(Command::CancelForwardedLock { debit: p.debit });
                from.push((i, Origin::Lock(p)));
            }
            // Taken before the batch (`take_forwards`).
            ToHub::Forward(..) => {}
            ToHub::Sync(i) => {
                // A read: answered from the ledger as it is now, as the node's API does.
                let user = wallets[i].address();
                if let Some(a) = hub_account(ledger, &user, across::cancellable(forwards, user)) {
                    answers.push((i, ToWallet::Synced(a)));
                }
            }
        }
    }
    (commands, from, answers)
}

fn stuck_payments(s: usize, site: &Site) -> Vec<String> {
    site.wallets
        .iter()
        .filter_map(|w| {
            let p = w.pending().or(w.pending_lock().map(|l| l.debit))?.message;
            let mine = w.channel().map(|c| (c.status, c.debit_nonce(), c.cumulative_debit()));
            let hub = site
                .hub
                .as_ref()
                .and_then(|h| h.ledger().account(&w.address()))
                .map(|a| (a.channel.status, a.channel.debit_nonce(), a.channel.cumulative_debit()));
            Some(format!(
                "hub {s} wallet {}: pending debit #{} (total {}, epoch {}); the wallet holds {mine:?}, the hub {hub:?}",
                w.index, p.nonce, p.cumulative_debit, p.epoch
            ))
        })
        .collect()
}

/// The hub's report of `user`'s account, as the node's `GET /v1/accounts/{user}` gives it.
fn hub_account(ledger: &infhub_core::ledger::Ledger, user: &Address, cancellable: Vec<B256>) -> Option<HubAccount> {
    let a = ledger.account(user)?;
    let ch = &a.channel;
    Some(HubAccount {
        epoch: ch.epoch,
        latest_credit: ch.credit.clone(),
        latest_debit: ch.debit,
        incoming_locks: Some(ch.credit_locks.iter().copied().collect()),
        outgoing_scalars: ch
            .debit_locks
            .iter()
            .filter_map(|l| ledger.locks.scalar_for(user, &l.lock_id).map(|s| (l.lock_id, s)))
            .collect(),
        cancellable_locks: cancellable,
        debit_nonce: ch.debit_nonce(),
        cumulative_debit: Some(ch.cumulative_debit()),
        credit_nonce: ch.credit_nonce(),
        cumulative_credit: Some(ch.cumulative_credit()),
        deposited: Some(ch.deposited),
        confirmed_block: ledger.block,
        balance: ch.balance().ok(),
    })
}

/// A receipt for `d` signed by the hub's key (what an answer carries).
pub(super) fn receipt_of(hub: &PrivateKey, domain: &Domain, d: &SignedDebit) -> infhub_core::messages::SignedReceipt {
    let m = d.message;
    let receipt = Receipt {
        payer: m.user,
        epoch: m.epoch,
        debit_nonce: m.nonce,
        payment_id: m.payment_id,
        debit_digest: m.digest(domain),
    };
    HubSigned::new(receipt, domain, hub)
}

/// What a wallet of this hub knows of it (as `infhub wallet register` records it).
fn hub_info(domain: Domain, hub: Address, token: Address) -> infhub_wallet::store::HubInfo {
    infhub_wallet::store::HubInfo {
        hub_url: "sim://hub".into(),
        rpc_url: "sim://chain".into(),
        chain_id: domain.chain_id,
        hub_contract: domain.verifying_contract,
        hub,
        token,
        confirmations: CONFIRMATIONS,
        max_withdrawal_expiry_blocks: 1_000,
    }
}
