//! A pure model of how `InfHub.sol` judges every call.
//!
//! The hub, the wallet and the simulator need to know, without a chain, what the contract
//! will do with a proof: accept it, reject it (and with which error), and what settlement
//! will pay. This module mirrors the contract function by function, with the same checks in
//! the same order and the same error names. Shared test vectors generated from this model are
//! replayed against the real contract by forge (`contracts/test/Vectors.t.sol`), so any
//! divergence fails the build. A call either succeeds or leaves the model unchanged, like a
//! reverted transaction.

use crate::checkpoint::{CheckpointDomain, Leaf, LeafKind, SumNode, SumPath};
use crate::messages::{Credit, Debit, Eip712Message, HubSigned, TowerFee, Withdrawal, BPS};
use crate::point_lock::Lock;
use crate::signature::Signature;
use crate::{Amount, Domain, Error};
use alloy_primitives::{Address, B256, U256};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Most recipients in one payout batch (`MAX_PAYOUT_BATCH`).
pub const MAX_PAYOUT_BATCH: usize = 256;
/// Most users in one `openChannels` call (`MAX_OPEN_BATCH`).
pub const MAX_OPEN_BATCH: usize = 100;
/// Most debits in one `realizeDebits` call (`MAX_REALIZE_BATCH`).
pub const MAX_REALIZE_BATCH: usize = 100;
/// Most towers that can earn a fee in one close (`MAX_TOWER_FEES_PER_CLOSE`).
pub const MAX_TOWER_FEES_PER_CLOSE: usize = 4;
/// Most one tower earns in one close (`MAX_TOWER_FEE`, the uint96 a fee record holds).
pub const MAX_TOWER_FEE: u128 = (1u128 << 96) - 1;
/// Most locks one `unlockMany` call resolves (`MAX_UNLOCK_BATCH`).
pub const MAX_UNLOCK_BATCH: usize = 256;
/// Longest path from a lock leaf to its proof's `locksRoot` (`MAX_LOCK_PATH_DEPTH`).
pub const MAX_LOCK_PATH_DEPTH: usize = 32;
/// Smallest allowed challenge period (`MIN_CHALLENGE_PERIOD_BLOCKS`).
pub const MIN_CHALLENGE_PERIOD_BLOCKS: u64 = 2;
/// Largest allowed challenge period (`MAX_CHALLENGE_PERIOD_BLOCKS`).
pub const MAX_CHALLENGE_PERIOD_BLOCKS: u64 = 2_000_000;

/// Constructor arguments of the contract.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContractConfig {
    /// The signing domain (chain id and contract address).
    pub domain: Domain,
    /// The hub's address: signs credits and co-signs withdrawals, sends hub-only calls.
    pub hub: Address,
    /// Blocks between the start of a close and the earliest settlement.
    pub challenge_period_blocks: u64,
    /// Blocks between a reserve withdrawal's announcement and its execution.
    pub reserve_notice_blocks: u64,
}

/// Lifecycle of a channel on chain.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChainStatus {
    /// Never opened.
    #[default]
    None,
    /// Open: deposits and cooperative withdrawals allowed.
    Open,
    /// Closing: proofs may be submitted until the settle block.
    Closing,
    /// Settled: paid out; may be reopened with the next epoch.
    Settled,
}

/// The newest proof the contract holds for one side of a closing channel.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Side {
    /// The proof's nonce (0 = none).
    pub nonce: u64,
    /// The proof's running total.
    pub cumulative: Amount,
    /// The proof's locked amount.
    pub locked_amount: Amount,
    /// The proof's locks root.
    pub locks_root: B256,
}

impl Side {
    /// `_supersedes`: a proof replaces this one if its running total is higher, or equal with a
    /// higher nonce. Totals first, so a signer can only raise what works against itself.
    pub fn superseded_by(&self, nonce: u64, cumulative: Amount) -> bool {
        supersedes((nonce, cumulative), (self.nonce, self.cumulative))
    }
}

/// The dispute order of two proofs of one side, `(nonce, running total)`: true if `new` would
/// replace `stored` on chain (a higher total, or the same total with a higher nonce). The
/// contract, its model and every dispute trigger of the hub and the wallet use this one rule.
pub fn supersedes(new: (u64, Amount), stored: (u64, Amount)) -> bool {
    new.1 > stored.1 || (new.1 == stored.1 && new.0 > stored.0)
}

/// One channel as the contract stores it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainChannel {
    /// Lifecycle state.
    pub status: ChainStatus,
    /// Current epoch (0 = never opened).
    pub epoch: u64,
    /// First block at which `settle` succeeds (while closing).
    pub settle_block: u64,
    /// Block of this epoch's newest deposit (0: none), `lastDepositBlock`.
    pub last_deposit_block: u64,
    /// Who started the close.
    pub closer: Address,
    /// Tokens deposited this epoch.
    pub deposited: Amount,
    /// Tokens withdrawn cooperatively this epoch.
    pub withdrawn: Amount,
    /// Part of the withdrawals that the reserve advanced beyond the channel's own funds.
    pub advanced_from_reserve: Amount,
    /// Part of the user's debits already moved from the channel's funds to the reserve.
    pub realized_debit: Amount,
    /// While closing: what settlement will take from the reserve with the proofs held now.
    pub reserve_draw: U256,
    /// Newest user-signed debit submitted while closing.
    pub debit: Side,
    /// Newest hub-signed credit submitted while closing.
    pub credit: Side,
}

impl ChainChannel {
    /// deposited + advanced_from_reserve - withdrawn - realized_debit, never negative by construction.
    pub fn funds(&self) -> U256 {
        let f = U256::from(self.deposited.0) + U256::from(self.advanced_from_reserve.0);
        let w = U256::from(self.withdrawn.0) + U256::from(self.realized_debit.0);
        assert!(f >= w, "channel funds went negative: {self:?}");
        f - w
    }

    /// `max(0, deposited − withdrawn + credit − debit)` with the proofs held now.
    pub fn claim(&self) -> U256 {
        let plus = U256::from(self.deposited.0) + U256::from(self.credit.cumulative.0);
        let minus = U256::from(self.withdrawn.0) + U256::from(self.debit.cumulative.0);
        plus.saturating_sub(minus)
    }
}

/// What `settle` pays.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settlement {
    /// The claim paid out: to the user, less the fees towers earned defending it.
    pub paid: U256,
    /// Part of the claim the contract could not pay (only if the hub over-issued credit).
    pub shortfall: U256,
    /// The reserve afterwards.
    pub reserve_after: U256,
}

/// The whole contract state, plus where its tokens went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContractModel {
    /// Constructor arguments.
    pub config: ContractConfig,
    /// Every channel ever opened.
    pub channels: BTreeMap<Address, ChainChannel>,
    /// The hub's own funds.
    pub reserve: U256,
    /// Sum of every channel's funds.
    pub total_channel_funds: U256,
    /// Sum of the reserve draws of the closing channels: no hub payout may take it.
    pub reserved_for_closing: U256,
    /// Announced reserve withdrawal: (amount, unlock block).
    pub pending_reserve_withdrawal: Option<(Amount, u64)>,
    /// Payout batch ids already paid.
    pub executed_batches: BTreeSet<B256>,
    /// The contract's token balance (reserve + channel funds + excess).
    pub token_balance: U256,
    /// Tokens the contract has sent to each address, ever.
    pub sent_to: BTreeMap<Address, U256>,
    /// Fees towers earned in each user's current close, in order (`towerFeesOf`).
    pub tower_fees: BTreeMap<Address, Vec<(Address, Amount)>>,
    /// `liabilityInflowsTotal`: custodial deposits and realized debits, ever.
    pub liability_inflows_total: U256,
    /// Posted checkpoints by id (`checkpoints`); the newest id is the last key.
    pub checkpoints: BTreeMap<u64, PostedCheckpoint>,
    /// `haltedAtCheckpoint`: the checkpoint a complaint proved wrong (0: not halted).
    pub halted_at_checkpoint: u64,
    /// `debitChallenges`: each account's newest debit challenge.
    pub debit_challenges: BTreeMap<Address, DebitChallenge>,
    /// `lockDirections`, by (user, epoch, direction).
    pub lock_directions: BTreeMap<(Address, u64, LockDirection), LockDirectionState>,
    /// `lockedProofs`, by the proof's digest.
    pub locked_proofs: BTreeMap<B256, LockedProof>,
    /// `lockRegistrations`, by (proof digest, lock id).
    pub lock_registrations: BTreeMap<(B256, B256), LockRegistration>,
    /// `totalEscrow`: every settled close's escrow not paid out yet.
    pub total_escrow: U256,
}

/// The two directions of a channel's locks (spec §5.11a).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum LockDirection {
    /// The user's locks, on her debits: she pays the hub if one opens (`USER_LOCKS`, 0).
    User,
    /// The hub's locks, on its credits: it pays her (`HUB_LOCKS`, 1).
    Hub,
}

/// One direction of one close's locks (`lockDirectionOf(user, epoch, direction)`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockDirectionState {
    /// The most the registered locks can charge: the largest over registered proofs of the
    /// proof's total plus all its registered locks.
    pub potential: U256,
    /// From settlement on: the charge so far.
    pub charge: U256,
    /// What settlement held back and is not paid out yet.
    pub escrow: U256,
    /// Registrations not resolved yet.
    pub unresolved: u64,
}

/// A proof locks were registered through (`lockedProofOf(digest)`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockedProof {
    /// The channel's user.
    pub user: Address,
    /// The close's epoch.
    pub epoch: u64,
    /// Whose locks.
    pub direction: LockDirection,
    /// The proof's running total.
    pub cumulative: Amount,
    /// Sum of the locks registered through it.
    pub registered: U256,
    /// Sum of those revealed by their expiry.
    pub revealed: U256,
}

/// One lock registered through one proof (`lockRegistrationOf(digest, lockId)`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockRegistration {
    /// The lock as registered.
    pub lock: Lock,
    /// Whether an unlock resolved it.
    pub resolved: bool,
}

/// What one `unlock` moved.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unlocked {
    /// Whether the lock opened (revealed by its expiry).
    pub revealed: bool,
    /// To the lock's receiver (the reserve for the user's locks, the user for the hub's).
    pub to_receiver: U256,
    /// Back to its sender (the last resolution of the direction returns the escrow left).
    pub to_sender: U256,
}

/// A user's dispute of her leaf's debit total (`debitChallenges(account)`, spec 5.16).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DebitChallenge {
    /// The checkpoint whose leaf is disputed.
    pub checkpoint_id: u64,
    /// The leaf's epoch.
    pub epoch: u64,
    /// Last block in which the hub may answer.
    pub answer_by_block: u64,
    /// Neither answered nor turned into a halt yet.
    pub open: bool,
    /// The leaf's debit total.
    pub debit_total: Amount,
}

/// A posted checkpoint (`checkpoints(id)`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PostedCheckpoint {
    /// The tree's root hash.
    pub root: B256,
    /// The tree's sum.
    pub total_liability: U256,
    /// The ledger position it reflects.
    pub ledger_seq: u64,
    /// The ledger's confirmed block.
    pub chain_block: u64,
    /// `liabilityInflowsTotal` as of that block.
    pub inflows_through: U256,
}

/// Largest total liability a checkpoint may state (`MAX_CHECKPOINT_LIABILITY`, 2^168 − 1).
pub fn max_checkpoint_liability() -> U256 {
    (U256::from(1u8) << 168) - U256::from(1u8)
}

impl ContractModel {
    /// A freshly deployed contract; the constructor's checks apply.
    pub fn new(config: ContractConfig) -> Result<Self, Error> {
        if config.hub == Address::ZERO {
            return Err(Error::HubMustNotBeZero);
        }
        if !(MIN_CHALLENGE_PERIOD_BLOCKS..=MAX_CHALLENGE_PERIOD_BLOCKS).contains(&config.challenge_period_blocks) {
            return Err(Error::ChallengePeriodOutOfRange);
        }
        if config.reserve_notice_blocks / 2 < config.challenge_period_blocks {
            return Err(Error::ReserveNoticeTooShort);
        }
        Ok(ContractModel {
            config,
            channels: BTreeMap::new(),
            reserve: U256::ZERO,
            total_channel_funds: U256::ZERO,
            reserved_for_closing: U256::ZERO,
            pending_reserve_withdrawal: None,
            executed_batches: BTreeSet::new(),
            token_balance: U256::ZERO,
            sent_to: BTreeMap::new(),
            tower_fees: BTreeMap::new(),
            liability_inflows_total: U256::ZERO,
            checkpoints: BTreeMap::new(),
            halted_at_checkpoint: 0,
            debit_challenges: BTreeMap::new(),
            lock_directions: BTreeMap::new(),
            locked_proofs: BTreeMap::new(),
            lock_registrations: BTreeMap::new(),
            total_escrow: U256::ZERO,
        })
    }

    /// The channel of `user` (default if never opened).
    pub fn channel(&self, user: Address) -> ChainChannel {
        self.channels.get(&user).copied().unwrap_or_default()
    }

    /// The accounting invariants: token balance == reserve + Σ channel funds + excess (excess is
    /// never negative), and the reserved amount is the sum of the closing channels' draws.
    pub fn check_invariant(&self) {
        let sum: U256 = self.channels.values().map(ChainChannel::funds).fold(U256::ZERO, |a, b| a + b);
        assert_eq!(sum, self.total_channel_funds, "total_channel_funds drifted from the channels");
        assert!(
            self.token_balance >= self.reserve + self.total_channel_funds + self.total_escrow,
            "token balance below reserve + funds + escrow"
        );
        let escrow: U256 = self.lock_directions.values().map(|d| d.escrow).fold(U256::ZERO, |a, b| a + b);
        assert_eq!(escrow, self.total_escrow, "total_escrow drifted from the directions' escrow");
        let draws: U256 = self
            .channels
            .values()
            .filter(|c| c.status == ChainStatus::Closing)
            .map(|c| c.reserve_draw)
            .fold(U256::ZERO, |a, b| a + b);
        assert_eq!(draws, self.reserved_for_closing, "reserved_for_closing drifted from the closing channels");
        for (user, c) in &self.channels {
            if c.status == ChainStatus::Closing {
                assert_eq!(c.reserve_draw, self.draw_of(*user, c), "a closing channel's draw is stale");
            } else {
                assert!(c.reserve_draw.is_zero(), "a channel that is not closing has a draw");
            }
        }
    }

    /// `excess()`: tokens held beyond the reserve, the channels' funds and the escrow.
    pub fn excess(&self) -> U256 {
        self.token_balance.saturating_sub(self.reserve + self.total_channel_funds + self.total_escrow)
    }

    /// A closing channel's draw on the reserve: its claim as if every lock registered against
    /// the hub opened, less its funds (`_refreshReserveDraw`, spec §5.11a).
    fn draw_of(&self, user: Address, ch: &ChainChannel) -> U256 {
        let potential = self.lock_direction(user, ch.epoch, LockDirection::Hub).potential;
        let stored = U256::from(ch.credit.cumulative.0);
        let claim = ch.claim() + potential.saturating_sub(stored);
        claim.saturating_sub(ch.funds())
    }

    /// A close's lock direction as stored (default if nothing was registered).
    pub fn lock_direction(&self, user: Address, epoch: u64, direction: LockDirection) -> LockDirectionState {
        self.lock_directions.get(&(user, epoch, direction)).copied().unwrap_or_default()
    }

    /// `_requireReserveLeft`: taking `amount` must leave what closing channels will draw.
    fn require_reserve_left(&self, amount: U256) -> Result<(), Error> {
        if self.halted_at_checkpoint != 0 {
            return Err(Error::HubHalted);
        }
        if amount > self.reserve || self.reserve - amount < self.reserved_for_closing {
            return Err(Error::ReserveInsufficient);
        }
        Ok(())
    }

    /// `_refreshReserveDraw` for a channel about to be stored.
    fn refresh_draw(&mut self, user: Address, ch: &mut ChainChannel) {
        let draw = self.draw_of(user, ch);
        self.reserved_for_closing = self.reserved_for_closing - ch.reserve_draw + draw;
        ch.reserve_draw = draw;
    }

    fn send(&mut self, to: Address, amount: U256) {
        assert!(self.token_balance >= amount, "contract would send more tokens than it holds");
        self.token_balance -= amount;
        *self.sent_to.entry(to).or_default() += amount;
    }

    /// `openChannel(user)` sent by `sender`.
    pub fn open_channel(&mut self, sender: Address, user: Address) -> Result<u64, Error> {
        if sender != user && sender != self.config.hub {
            return Err(Error::OnlyUserOrHub);
        }
        if user == Address::ZERO || user == self.config.hub {
            return Err(Error::UserMustNotBeZeroOrHub);
        }
        let ch = self.channel(user);
        if matches!(ch.status, ChainStatus::Open | ChainStatus::Closing) {
            return Err(Error::ChannelAlreadyOpen);
        }
        let epoch = ch.epoch + 1;
        self.channels.insert(user, ChainChannel { status: ChainStatus::Open, epoch, ..Default::default() });
        Ok(epoch)
    }

    /// `openChannels(users)` sent by `sender`: opens each, registers each already open (its
    /// `ChannelRegistered`), skips each closing. Returns what happened to each user.
    pub fn open_channels(&mut self, sender: Address, users: &[Address]) -> Result<Vec<OpenOutcome>, Error> {
        if sender != self.config.hub {
            return Err(Error::OnlyHub);
        }
        if users.is_empty() {
            return Err(Error::BatchEmpty);
        }
        if users.len() > MAX_OPEN_BATCH {
            return Err(Error::BatchTooLarge);
        }
        if users.iter().any(|u| *u == Address::ZERO || *u == self.config.hub) {
            return Err(Error::UserMustNotBeZeroOrHub);
        }
        let mut out = Vec::with_capacity(users.len());
        for user in users {
            let ch = self.channel(*user);
            out.push(match ch.status {
                ChainStatus::Open => OpenOutcome::Registered { epoch: ch.epoch },
                ChainStatus::Closing => OpenOutcome::Skipped,
                ChainStatus::None | ChainStatus::Settled => {
                    let epoch = ch.epoch + 1;
                    self.channels
                        .insert(*user, ChainChannel { status: ChainStatus::Open, epoch, ..Default::default() });
                    OpenOutcome::Opened { epoch }
                }
            });
        }
        Ok(out)
    }

    /// `deposit(user, amount)` (or `depositWithPermit`): tokens come from the sender.
    pub fn deposit(&mut self, block: u64, user: Address, amount: U256) -> Result<Amount, Error> {
        let mut ch = self.channel(user);
        if ch.status != ChainStatus::Open {
            return Err(Error::ChannelNotOpen);
        }
        if amount.is_zero() {
            return Err(Error::AmountMustNotBeZero);
        }
        if amount > U256::from(u128::MAX - ch.deposited.0) {
            return Err(Error::AmountTooLarge);
        }
        ch.deposited = Amount(ch.deposited.0 + amount.to::<u128>());
        ch.last_deposit_block = block;
        self.channels.insert(user, ch);
        self.total_channel_funds += amount;
        self.token_balance += amount;
        Ok(ch.deposited)
    }

    /// `withdraw(w, userSignature, hubSignature)` mined in `block`. Returns the amount paid.
    pub fn withdraw(&mut self, block: u64, w: &Withdrawal, user_sig: &[u8], hub_sig: &[u8]) -> Result<U256, Error> {
        let mut ch = self.channel(w.user);
        if ch.status != ChainStatus::Open {
            return Err(Error::ChannelNotOpen);
        }
        if w.epoch != ch.epoch {
            return Err(Error::EpochMismatch);
        }
        if block > w.expiry_block {
            return Err(Error::AuthorizationExpired);
        }
        if w.cumulative_withdrawn <= ch.withdrawn {
            return Err(Error::WithdrawalMustIncrease);
        }
        let digest = w.digest(&self.config.domain);
        Signature::from_slice(user_sig)?.verify(digest, w.user)?;
        Signature::from_slice(hub_sig)?.verify(digest, self.config.hub)?;
        let amount = U256::from(w.cumulative_withdrawn.0 - ch.withdrawn.0);
        let funds = ch.funds();
        let from_reserve = amount.saturating_sub(funds);
        if !from_reserve.is_zero() {
            self.require_reserve_left(from_reserve)?;
        }
        self.reserve -= from_reserve;
        ch.advanced_from_reserve = Amount(ch.advanced_from_reserve.0 + from_reserve.to::<u128>());
        ch.withdrawn = w.cumulative_withdrawn;
        self.channels.insert(w.user, ch);
        self.total_channel_funds = self.total_channel_funds + from_reserve - amount;
        self.send(w.user, amount);
        Ok(amount)
    }

    fn begin_close(&self, sender: Address, user: Address, block: u64) -> Result<ChainChannel, Error> {
        let mut ch = self.channel(user);
        if ch.status != ChainStatus::Open {
            return Err(Error::ChannelNotOpen);
        }
        ch.status = ChainStatus::Closing;
        ch.closer = sender;
        ch.settle_block = block + self.config.challenge_period_blocks;
        Ok(ch)
    }

    fn apply_credit(&self, ch: &mut ChainChannel, user: Address, c: &Credit, sig: &[u8]) -> Result<(), Error> {
        if c.user != user {
            return Err(Error::UserMismatch);
        }
        if c.epoch != ch.epoch {
            return Err(Error::EpochMismatch);
        }
        if !ch.credit.superseded_by(c.nonce, c.cumulative_credit) {
            return Err(Error::ProofMustSupersede);
        }
        // `_requireHubProof`: a direct signature, or a batch signature and the credit's path.
        HubSigned::from_proof_bytes(*c, sig)?.verify(&self.config.domain, self.config.hub)?;
        ch.credit = Side {
            nonce: c.nonce,
            cumulative: c.cumulative_credit,
            locked_amount: c.locked_amount,
            locks_root: c.locks_root,
        };
        Ok(())
    }

    fn apply_debit(&self, ch: &mut ChainChannel, user: Address, d: &Debit, sig: &[u8]) -> Result<(), Error> {
        if d.user != user {
            return Err(Error::UserMismatch);
        }
        if d.epoch != ch.epoch {
            return Err(Error::EpochMismatch);
        }
        if !ch.debit.superseded_by(d.nonce, d.cumulative_debit) {
            return Err(Error::ProofMustSupersede);
        }
        Signature::from_slice(sig)?.verify(d.digest(&self.config.domain), user)?;
        ch.debit = Side {
            nonce: d.nonce,
            cumulative: d.cumulative_debit,
            locked_amount: d.locked_amount,
            locks_root: d.locks_root,
        };
        Ok(())
    }

    /// `realizeDebit(debit, userSignature)` sent by `sender`. Returns the amount moved to the reserve.
    pub fn realize_debit(&mut self, sender: Address, d: &Debit, user_sig: &[u8]) -> Result<U256, Error> {
        if sender != self.config.hub {
            return Err(Error::OnlyHub);
        }
        let mut ch = self.channel(d.user);
        if ch.status != ChainStatus::Open {
            return Err(Error::ChannelNotOpen);
        }
        self.apply_debit(&mut ch, d.user, d, user_sig)?;
        let moved = self.realize(&mut ch);
        self.channels.insert(d.user, ch);
        Ok(moved)
    }

    /// `realizeDebits(debits, userSignatures)` sent by `sender`: for each entry, a channel that is
    /// not open or in another epoch is skipped; a superseding debit is applied; then the stored
    /// debit is realized. Returns what each entry moved (None: skipped or nothing to do, no
    /// event). All or nothing: an invalid superseding debit refuses the whole batch.
    pub fn realize_debits(&mut self, sender: Address, debits: &[(Debit, Vec<u8>)]) -> Result<Vec<Option<U256>>, Error> {
        if sender != self.config.hub {
            return Err(Error::OnlyHub);
        }
        if debits.is_empty() {
            return Err(Error::BatchEmpty);
        }
        if debits.len() > MAX_REALIZE_BATCH {
            return Err(Error::BatchTooLarge);
        }
        let mut after = self.clone();
        let mut moved = Vec::with_capacity(debits.len());
        for (d, sig) in debits {
            let mut ch = after.channel(d.user);
            if ch.status != ChainStatus::Open || d.epoch != ch.epoch {
                moved.push(None);
                continue;
            }
            let applied = ch.debit.superseded_by(d.nonce, d.cumulative_debit);
            if applied {
                after.apply_debit(&mut ch, d.user, d, sig)?;
            }
            let m = after.realize(&mut ch);
            after.channels.insert(d.user, ch);
            moved.push((applied || !m.is_zero()).then_some(m));
        }
        *self = after;
        Ok(moved)
    }

    /// Moves `min(stored cumulativeDebit − realizedDebit, funds)` of an open channel to the reserve.
    fn realize(&mut self, ch: &mut ChainChannel) -> U256 {
        let unrealized = U256::from(ch.debit.cumulative.0.saturating_sub(ch.realized_debit.0));
        let moved = unrealized.min(ch.funds());
        ch.realized_debit = Amount(ch.realized_debit.0 + moved.to::<u128>());
        self.total_channel_funds -= moved;
        self.reserve += moved;
        self.liability_inflows_total += moved;
        moved
    }

    /// `startExit(credit, hubSignature)` sent by the user in `block`.
    pub fn start_exit(&mut self, sender: Address, block: u64, c: &Credit, hub_sig: &[u8]) -> Result<(), Error> {
        let mut ch = self.begin_close(sender, sender, block)?;
        if c.nonce == 0 {
            if !hub_sig.is_empty() || !c.cumulative_credit.is_zero() {
                return Err(Error::ProofMustBeEmpty);
            }
        } else {
            self.apply_credit(&mut ch, sender, c, hub_sig)?;
        }
        self.refresh_draw(sender, &mut ch);
        self.channels.insert(sender, ch);
        Ok(())
    }

    /// `startHubClose(user, debit, userSignature)` sent by `sender` in `block`.
    pub fn start_hub_close(
        &mut self,
        sender: Address,
        block: u64,
        user: Address,
        d: &Debit,
        user_sig: &[u8],
    ) -> Result<(), Error> {
        if sender != self.config.hub {
            return Err(Error::OnlyHub);
        }
        let mut ch = self.begin_close(sender, user, block)?;
        if d.nonce == 0 {
            if !user_sig.is_empty() || !d.cumulative_debit.is_zero() {
                return Err(Error::ProofMustBeEmpty);
            }
        } else {
            self.apply_debit(&mut ch, user, d, user_sig)?;
        }
        self.refresh_draw(user, &mut ch);
        self.channels.insert(user, ch);
        Ok(())
    }

    fn require_challenge_open(ch: &ChainChannel, block: u64) -> Result<(), Error> {
        if ch.status != ChainStatus::Closing {
            return Err(Error::ChannelNotClosing);
        }
        if block >= ch.settle_block {
            return Err(Error::ChallengePeriodOver);
        }
        Ok(())
    }

    /// `submitCredit(credit, hubSignature)` in `block` (any sender).
    pub fn submit_credit(&mut self, block: u64, c: &Credit, hub_sig: &[u8]) -> Result<(), Error> {
        let mut ch = self.channel(c.user);
        Self::require_challenge_open(&ch, block)?;
        self.apply_credit(&mut ch, c.user, c, hub_sig)?;
        self.refresh_draw(c.user, &mut ch);
        self.channels.insert(c.user, ch);
        Ok(())
    }

    /// `submitCreditForFee(credit, hubSignature, offer, userSignature)` sent by `sender` in
    /// `block`. Returns the fee recorded for the offer's tower (zero if the claim did not rise).
    pub fn submit_credit_for_fee(
        &mut self,
        sender: Address,
        block: u64,
        c: &Credit,
        hub_sig: &[u8],
        offer: &TowerFee,
        user_sig: &[u8],
    ) -> Result<Amount, Error> {
        let mut ch = self.channel(c.user);
        Self::require_challenge_open(&ch, block)?;
        if offer.tower != sender {
            return Err(Error::OnlyTower);
        }
        if offer.user != c.user {
            return Err(Error::UserMismatch);
        }
        if offer.epoch != ch.epoch {
            return Err(Error::EpochMismatch);
        }
        if block > offer.valid_until_block {
            return Err(Error::AuthorizationExpired);
        }
        if offer.gain_share_bps > BPS {
            return Err(Error::TowerFeeShareTooLarge);
        }
        Signature::from_slice(user_sig)?.verify(offer.digest(&self.config.domain), c.user)?;
        let claim_before = ch.claim();
        self.apply_credit(&mut ch, c.user, c, hub_sig)?;
        let gain = ch.claim() - claim_before;
        let fee = self.tower_fee_for(c.user, offer, gain)?;
        self.refresh_draw(c.user, &mut ch);
        self.channels.insert(c.user, ch);
        if !fee.is_zero() {
            let records = self.tower_fees.entry(c.user).or_default();
            match records.iter_mut().find(|(t, _)| *t == offer.tower) {
                Some((_, earned)) => *earned = earned.checked_add(fee).expect("capped by maxFee, a u128"),
                None => records.push((offer.tower, fee)),
            }
        }
        Ok(fee)
    }

    /// `_recordTowerFee`'s figure: the offer's share of `gain`, capped so the tower's fees in
    /// this close stay within `max_fee`; a new tower needs a free slot.
    fn tower_fee_for(&self, user: Address, offer: &TowerFee, gain: U256) -> Result<Amount, Error> {
        let records = self.tower_fees.get(&user).map(Vec::as_slice).unwrap_or_default();
        let earned = records.iter().find(|(t, _)| *t == offer.tower).map(|(_, f)| *f);
        let cap = offer.max_fee.0.min(MAX_TOWER_FEE);
        let room = U256::from(cap.saturating_sub(earned.unwrap_or_default().0));
        let fee = (gain * U256::from(offer.gain_share_bps) / U256::from(BPS)).min(room);
        if fee.is_zero() {
            return Ok(Amount::ZERO);
        }
        if earned.is_none() && records.len() == MAX_TOWER_FEES_PER_CLOSE {
            return Err(Error::TowerFeeSlotsFull);
        }
        Ok(Amount(u128::try_from(fee).expect("fee <= max_fee, a u128")))
    }

    /// What settling `user` now pays each tower and the user: fees in the order earned, never
    /// more than the claim paid in all.
    pub fn settlement_split(&self, user: Address) -> (Vec<(Address, U256)>, U256) {
        let ch = self.channel(user);
        let paid = self.settlement_of(user).paid;
        let mut left = paid - self.escrow_needed(user, ch.epoch, LockDirection::User, ch.debit.cumulative, paid);
        let mut fees = Vec::new();
        for (tower, fee) in self.tower_fees.get(&user).map(Vec::as_slice).unwrap_or_default() {
            let paid = U256::from(fee.0).min(left);
            left -= paid;
            fees.push((*tower, paid));
        }
        (fees, left)
    }

    /// `submitDebit(debit, userSignature)` in `block` (any sender).
    pub fn submit_debit(&mut self, block: u64, d: &Debit, user_sig: &[u8]) -> Result<(), Error> {
        let mut ch = self.channel(d.user);
        Self::require_challenge_open(&ch, block)?;
        self.apply_debit(&mut ch, d.user, d, user_sig)?;
        self.refresh_draw(d.user, &mut ch);
        self.channels.insert(d.user, ch);
        Ok(())
    }

    /// `settlementOf(user)`: what settle would pay now.
    pub fn settlement_of(&self, user: Address) -> Settlement {
        let ch = self.channel(user);
        let claim = ch.claim();
        let available = ch.funds() + self.reserve;
        let paid = claim.min(available);
        Settlement { paid, shortfall: claim - paid, reserve_after: available - paid }
    }

    /// `settle(user)` in `block` (any sender).
    pub fn settle(&mut self, block: u64, user: Address) -> Result<Settlement, Error> {
        let mut ch = self.channel(user);
        if ch.status != ChainStatus::Closing {
            return Err(Error::ChannelNotClosing);
        }
        if block < ch.settle_block {
            return Err(Error::ChallengePeriodNotOver);
        }
        let s = self.settlement_of(user);
        let (fees, to_user) = self.settlement_split(user);
        self.tower_fees.remove(&user);
        self.total_channel_funds -= ch.funds();
        self.reserved_for_closing -= ch.reserve_draw;
        ch.reserve_draw = U256::ZERO;
        let user_escrow = self.open_escrow(user, ch.epoch, LockDirection::User, ch.debit.cumulative, s.paid);
        let free_reserve = s.reserve_after.saturating_sub(self.reserved_for_closing);
        let hub_escrow = self.open_escrow(user, ch.epoch, LockDirection::Hub, ch.credit.cumulative, free_reserve);
        self.reserve = s.reserve_after - hub_escrow;
        self.total_escrow += user_escrow + hub_escrow;
        ch.status = ChainStatus::Settled;
        ch.deposited = Amount::ZERO;
        ch.withdrawn = Amount::ZERO;
        ch.advanced_from_reserve = Amount::ZERO;
        ch.realized_debit = Amount::ZERO;
        self.channels.insert(user, ch);
        for (tower, fee) in fees {
            if !fee.is_zero() {
                self.send(tower, fee);
            }
        }
        if !to_user.is_zero() {
            self.send(user, to_user);
        }
        Ok(Settlement { reserve_after: self.reserve, ..s })
    }

    /// What settlement escrows for a direction: what its registered locks could add to the
    /// stored total, at most `available`.
    fn escrow_needed(
        &self,
        user: Address,
        epoch: u64,
        direction: LockDirection,
        stored: Amount,
        available: U256,
    ) -> U256 {
        self.lock_direction(user, epoch, direction).potential.saturating_sub(U256::from(stored.0)).min(available)
    }

    /// `_openEscrow`: starts a direction's resolution at settlement.
    fn open_escrow(
        &mut self,
        user: Address,
        epoch: u64,
        direction: LockDirection,
        stored: Amount,
        available: U256,
    ) -> U256 {
        let escrow = self.escrow_needed(user, epoch, direction, stored, available);
        let Some(dir) = self.lock_directions.get_mut(&(user, epoch, direction)) else { return U256::ZERO };
        let stored = U256::from(stored.0);
        if dir.potential <= stored {
            return U256::ZERO;
        }
        dir.charge = stored;
        dir.escrow = escrow;
        escrow
    }

    /// `registerDebitLock(debit, userSignature, lock, path)` in `block` (any sender).
    pub fn register_debit_lock(
        &mut self,
        block: u64,
        d: &Debit,
        user_sig: &[u8],
        lock: &Lock,
        path: &[B256],
    ) -> Result<(), Error> {
        let ch = self.channel(d.user);
        Self::require_challenge_open(&ch, block)?;
        if d.epoch != ch.epoch {
            return Err(Error::EpochMismatch);
        }
        let digest = d.digest(&self.config.domain);
        Signature::from_slice(user_sig)?.verify(digest, d.user)?;
        self.register(d.user, d.epoch, LockDirection::User, digest, d.cumulative_debit, d.locks_root, lock, path)
    }

    /// `registerCreditLock(credit, hubSignature, lock, path)` in `block` (any sender).
    pub fn register_credit_lock(
        &mut self,
        block: u64,
        c: &Credit,
        hub_sig: &[u8],
        lock: &Lock,
        path: &[B256],
    ) -> Result<(), Error> {
        let mut ch = self.channel(c.user);
        Self::require_challenge_open(&ch, block)?;
        if c.epoch != ch.epoch {
            return Err(Error::EpochMismatch);
        }
        let digest = c.digest(&self.config.domain);
        HubSigned::from_proof_bytes(*c, hub_sig)?.verify(&self.config.domain, self.config.hub)?;
        self.register(c.user, c.epoch, LockDirection::Hub, digest, c.cumulative_credit, c.locks_root, lock, path)?;
        self.refresh_draw(c.user, &mut ch);
        self.channels.insert(c.user, ch);
        Ok(())
    }

    /// `_recordLock` and `_addToDirection`.
    #[allow(clippy::too_many_arguments)]
    fn register(
        &mut self,
        user: Address,
        epoch: u64,
        direction: LockDirection,
        digest: B256,
        cumulative: Amount,
        locks_root: B256,
        lock: &Lock,
        path: &[B256],
    ) -> Result<(), Error> {
        if lock.amount.is_zero() {
            return Err(Error::AmountMustNotBeZero);
        }
        if path.len() > MAX_LOCK_PATH_DEPTH {
            return Err(Error::PathTooLong);
        }
        let leaf = lock.digest(&self.config.domain);
        let root = path.iter().fold(leaf, |node, sibling| crate::merkle::hash_pair(node, *sibling));
        if root != locks_root {
            return Err(Error::LockNotUnderRoot);
        }
        if self.lock_registrations.contains_key(&(digest, lock.lock_id)) {
            return Err(Error::LockAlreadyRegistered);
        }
        self.lock_registrations.insert((digest, lock.lock_id), LockRegistration { lock: *lock, resolved: false });
        let proof = self.locked_proofs.entry(digest).or_insert(LockedProof {
            user,
            epoch,
            direction,
            cumulative,
            registered: U256::ZERO,
            revealed: U256::ZERO,
        });
        proof.registered += U256::from(lock.amount.0);
        let potential = U256::from(proof.cumulative.0) + proof.registered;
        let dir = self.lock_directions.entry((user, epoch, direction)).or_default();
        dir.potential = dir.potential.max(potential);
        dir.unresolved += 1;
        Ok(())
    }

    /// `unlock(proofDigest, lockId)` in `block` (any sender); `revealed_at` is the point
    /// registry's first reveal of the lock's point (None: never), an input of the model.
    pub fn unlock(
        &mut self,
        block: u64,
        proof_digest: B256,
        lock_id: B256,
        revealed_at: Option<u64>,
    ) -> Result<Unlocked, Error> {
        let registration = *self.lock_registrations.get(&(proof_digest, lock_id)).ok_or(Error::UnknownLock)?;
        if registration.resolved {
            return Err(Error::LockAlreadyResolved);
        }
        let proof = *self.locked_proofs.get(&proof_digest).expect("a registration has its proof");
        let ch = self.channel(proof.user);
        if ch.epoch == proof.epoch && ch.status != ChainStatus::Settled {
            return Err(Error::ChannelNotSettled);
        }
        let lock = registration.lock;
        let revealed = revealed_at.is_some_and(|at| at <= lock.expiry_block);
        if !revealed && block <= lock.expiry_block {
            return Err(Error::LockNotResolved);
        }
        self.lock_registrations.insert((proof_digest, lock_id), LockRegistration { resolved: true, ..registration });
        let proof = self.locked_proofs.get_mut(&proof_digest).expect("present");
        if revealed {
            proof.revealed += U256::from(lock.amount.0);
        }
        let proof_charge = U256::from(proof.cumulative.0) + proof.revealed;
        let dir = self.lock_directions.get_mut(&(proof.user, proof.epoch, proof.direction)).expect("registered");
        let mut to_receiver = U256::ZERO;
        if proof_charge > dir.charge {
            to_receiver = (proof_charge - dir.charge).min(dir.escrow);
            dir.charge = proof_charge;
            dir.escrow -= to_receiver;
        }
        dir.unresolved -= 1;
        let to_sender = if dir.unresolved == 0 { dir.escrow } else { U256::ZERO };
        dir.escrow -= to_sender;
        self.total_escrow -= to_receiver + to_sender;
        let (to_reserve, to_user) = match proof.direction {
            LockDirection::User => (to_receiver, to_sender),
            LockDirection::Hub => (to_sender, to_receiver),
        };
        let user = proof.user;
        self.reserve += to_reserve;
        if !to_user.is_zero() {
            self.send(user, to_user);
        }
        Ok(Unlocked { revealed, to_receiver, to_sender })
    }

    /// `postCheckpoint(id, root, totalLiability, ledgerSeq, chainBlock, inflowsThrough)` sent
    /// by `sender` in `block` (spec §5.16).
    pub fn post_checkpoint(&mut self, sender: Address, block: u64, id: u64, c: PostedCheckpoint) -> Result<(), Error> {
        if sender != self.config.hub {
            return Err(Error::OnlyHub);
        }
        if self.halted_at_checkpoint != 0 {
            return Err(Error::HubHalted);
        }
        let last = self.checkpoints.keys().next_back().copied().unwrap_or(0);
        let prev = self.checkpoints.get(&last).copied().unwrap_or(PostedCheckpoint {
            root: B256::ZERO,
            total_liability: U256::ZERO,
            ledger_seq: 0,
            chain_block: 0,
            inflows_through: U256::ZERO,
        });
        if id != last + 1 {
            return Err(Error::CheckpointOutOfOrder);
        }
        if c.ledger_seq < prev.ledger_seq
            || c.chain_block < prev.chain_block
            || c.inflows_through < prev.inflows_through
        {
            return Err(Error::CheckpointOutOfOrder);
        }
        if c.chain_block >= block || c.inflows_through > self.liability_inflows_total {
            return Err(Error::CheckpointFromTheFuture);
        }
        if c.total_liability > max_checkpoint_liability() {
            return Err(Error::AmountTooLarge);
        }
        let pending = self.pending_reserve_withdrawal.map_or(U256::ZERO, |(a, _)| U256::from(a.0));
        let need = c.total_liability + pending + (self.liability_inflows_total - c.inflows_through);
        if need > self.reserve {
            return Err(Error::CheckpointInsolvent);
        }
        self.checkpoints.insert(id, c);
        Ok(())
    }

    /// `_proveLeaf`: `leaf` with `path` leads to posted checkpoint `id`'s root and total.
    fn prove_leaf(&self, id: u64, leaf: &Leaf, path: &SumPath) -> Result<(), Error> {
        let posted = self.checkpoints.get(&id).ok_or(Error::CheckpointOutOfOrder)?;
        let d = CheckpointDomain {
            chain_id: self.config.domain.chain_id,
            contract: self.config.domain.verifying_contract,
            checkpoint_id: id,
        };
        path.verify(leaf.node(&d), SumNode { hash: posted.root, sum: posted.total_liability })?;
        Ok(())
    }

    /// `leaf` proves into checkpoint `id` and is `sender`'s own channel leaf (`UserMismatch`
    /// otherwise): what a challenge and an exit from a leaf both require.
    fn prove_own_channel_leaf(&self, sender: Address, id: u64, leaf: &Leaf, path: &SumPath) -> Result<(), Error> {
        self.prove_leaf(id, leaf, path)?;
        if leaf.kind != LeafKind::Channel || leaf.account != sender {
            return Err(Error::UserMismatch);
        }
        Ok(())
    }

    /// `complainContradictedCredit(id, leaf, index, siblings, credit, hubSignature)`: the
    /// hub-signed credit contradicts the channel leaf (same nonce, another total; or a higher
    /// total with a lower nonce, or with a nonce at most the checkpoint's ledger position), so
    /// the hub is halted (spec 5.16).
    pub fn complain_contradicted_credit(
        &mut self,
        id: u64,
        leaf: &Leaf,
        path: &SumPath,
        c: &Credit,
        hub_sig: &[u8],
    ) -> Result<(), Error> {
        self.prove_leaf(id, leaf, path)?;
        if leaf.kind != LeafKind::Channel || c.user != leaf.account || c.epoch != leaf.epoch {
            return Err(Error::ComplaintUnfounded);
        }
        let seq = self.checkpoints[&id].ledger_seq;
        if !crate::checkpoint::credit_contradicts_leaf(c, leaf, seq) {
            return Err(Error::ComplaintUnfounded);
        }
        HubSigned::from_proof_bytes(*c, hub_sig)?.verify(&self.config.domain, self.config.hub)?;
        self.halt(id);
        Ok(())
    }

    /// Records the first proven fault.
    fn halt(&mut self, id: u64) {
        if self.halted_at_checkpoint == 0 {
            self.halted_at_checkpoint = id;
        }
    }

    /// `complainMisstatedChainTotals(id, leaf, index, siblings)`: the channel leaf of the
    /// current epoch states more withdrawn than the chain, or less deposited while the last
    /// deposit is at most the checkpoint's block (spec 5.16).
    pub fn complain_misstated_chain_totals(&mut self, id: u64, leaf: &Leaf, path: &SumPath) -> Result<(), Error> {
        self.prove_leaf(id, leaf, path)?;
        let ch = self.channel(leaf.account);
        if leaf.kind != LeafKind::Channel || leaf.epoch != ch.epoch {
            return Err(Error::ComplaintUnfounded);
        }
        let chain_block = self.checkpoints[&id].chain_block;
        let contradicts =
            leaf.withdrawn > ch.withdrawn || (leaf.deposited < ch.deposited && ch.last_deposit_block <= chain_block);
        if !contradicts {
            return Err(Error::ComplaintUnfounded);
        }
        self.halt(id);
        Ok(())
    }

    /// `challengeDebit(id, leaf, index, siblings)` sent by `sender` in `block`.
    pub fn challenge_debit(
        &mut self,
        sender: Address,
        block: u64,
        id: u64,
        leaf: &Leaf,
        path: &SumPath,
    ) -> Result<DebitChallenge, Error> {
        self.prove_own_channel_leaf(sender, id, leaf, path)?;
        if leaf.debit_total.0 == 0 {
            return Err(Error::ComplaintUnfounded);
        }
        let ch = self.channel(sender);
        if ch.status != ChainStatus::Open {
            return Err(Error::ChannelNotOpen);
        }
        if leaf.epoch != ch.epoch {
            return Err(Error::EpochMismatch);
        }
        let last = self.debit_challenges.get(&sender).copied().unwrap_or_default();
        if last.open || id <= last.checkpoint_id {
            return Err(Error::DebitChallengeOutOfOrder);
        }
        let c = DebitChallenge {
            checkpoint_id: id,
            epoch: leaf.epoch,
            answer_by_block: block + self.config.challenge_period_blocks,
            open: true,
            debit_total: leaf.debit_total,
        };
        self.debit_challenges.insert(sender, c);
        Ok(c)
    }

    /// `answerDebitChallenge(debit, userSignature)` in `block` (any sender).
    pub fn answer_debit_challenge(&mut self, block: u64, d: &Debit, user_sig: &[u8]) -> Result<(), Error> {
        let mut c = self.debit_challenges.get(&d.user).copied().unwrap_or_default();
        if !c.open {
            return Err(Error::NoDebitChallenge);
        }
        if block > c.answer_by_block {
            return Err(Error::ChallengePeriodOver);
        }
        if d.epoch != c.epoch {
            return Err(Error::EpochMismatch);
        }
        if d.cumulative_debit < c.debit_total {
            return Err(Error::AnswerMustCoverDebit);
        }
        Signature::from_slice(user_sig)?.verify(d.digest(&self.config.domain), d.user)?;
        c.open = false;
        self.debit_challenges.insert(d.user, c);
        Ok(())
    }

    /// `haltOnUnansweredChallenge(account)` in `block` (any sender).
    pub fn halt_on_unanswered_challenge(&mut self, block: u64, account: Address) -> Result<(), Error> {
        let mut c = self.debit_challenges.get(&account).copied().unwrap_or_default();
        if !c.open {
            return Err(Error::NoDebitChallenge);
        }
        if block <= c.answer_by_block {
            return Err(Error::ChallengePeriodNotOver);
        }
        c.open = false;
        self.debit_challenges.insert(account, c);
        self.halt(c.checkpoint_id);
        Ok(())
    }

    /// `startExitFromCheckpoint(id, leaf, index, siblings)` sent by `sender` in `block`: her
    /// channel leaf's credit stands for a hub-signed credit.
    pub fn start_exit_from_checkpoint(
        &mut self,
        sender: Address,
        block: u64,
        id: u64,
        leaf: &Leaf,
        path: &SumPath,
    ) -> Result<(), Error> {
        self.prove_own_channel_leaf(sender, id, leaf, path)?;
        let mut ch = self.begin_close(sender, sender, block)?;
        if leaf.epoch != ch.epoch {
            return Err(Error::EpochMismatch);
        }
        if leaf.credit_nonce != 0 {
            ch.credit = Side {
                nonce: leaf.credit_nonce,
                cumulative: leaf.credit_total,
                locked_amount: Amount::ZERO,
                locks_root: B256::ZERO,
            };
        }
        self.refresh_draw(sender, &mut ch);
        self.channels.insert(sender, ch);
        Ok(())
    }

    /// `depositReserve(amount)`.
    pub fn deposit_reserve(&mut self, amount: U256) -> Result<(), Error> {
        if amount.is_zero() {
            return Err(Error::AmountMustNotBeZero);
        }
        if amount > U256::from(u128::MAX) {
            return Err(Error::AmountTooLarge);
        }
        self.reserve += amount;
        self.token_balance += amount;
        Ok(())
    }

    /// `depositFor(account, amount)`: tokens for a custodial account join the reserve and bring
    /// their liability with them (`liabilityInflowsTotal`).
    pub fn deposit_for(&mut self, account: Address, amount: U256) -> Result<(), Error> {
        if account == Address::ZERO {
            return Err(Error::RecipientMustNotBeZero);
        }
        self.deposit_reserve(amount)?;
        self.liability_inflows_total += amount;
        Ok(())
    }

    /// `announceReserveWithdrawal(amount)` sent by `sender` in `block`.
    pub fn announce_reserve_withdrawal(&mut self, sender: Address, block: u64, amount: U256) -> Result<u64, Error> {
        if sender != self.config.hub {
            return Err(Error::OnlyHub);
        }
        if amount.is_zero() {
            return Err(Error::AmountMustNotBeZero);
        }
        if amount > U256::from(u128::MAX) {
            return Err(Error::AmountTooLarge);
        }
        if let Some((_, unlock)) = self.pending_reserve_withdrawal {
            if block < unlock + self.config.reserve_notice_blocks {
                return Err(Error::ReserveWithdrawalPending);
            }
        }
        let unlock = block + self.config.reserve_notice_blocks;
        self.pending_reserve_withdrawal = Some((Amount(amount.to::<u128>()), unlock));
        Ok(unlock)
    }

    /// `cancelReserveWithdrawal()` sent by `sender`.
    pub fn cancel_reserve_withdrawal(&mut self, sender: Address) -> Result<(), Error> {
        if sender != self.config.hub {
            return Err(Error::OnlyHub);
        }
        self.pending_reserve_withdrawal.take().map(|_| ()).ok_or(Error::NoReserveWithdrawalPending)
    }

    /// `executeReserveWithdrawal(to)` sent by `sender` in `block`.
    pub fn execute_reserve_withdrawal(&mut self, sender: Address, block: u64, to: Address) -> Result<U256, Error> {
        if sender != self.config.hub {
            return Err(Error::OnlyHub);
        }
        let (amount, unlock) = self.pending_reserve_withdrawal.ok_or(Error::NoReserveWithdrawalPending)?;
        if block < unlock {
            return Err(Error::ReserveNoticeNotOver);
        }
        if block >= unlock + self.config.reserve_notice_blocks {
            return Err(Error::ReserveWithdrawalExpired);
        }
        if to == Address::ZERO {
            return Err(Error::RecipientMustNotBeZero);
        }
        let amount = U256::from(amount.0);
        self.require_reserve_left(amount)?;
        self.pending_reserve_withdrawal = None;
        self.reserve -= amount;
        self.send(to, amount);
        Ok(amount)
    }

    /// `payout(batchId, recipients, amounts)` sent by `sender`. Returns the total paid.
    pub fn payout(
        &mut self,
        sender: Address,
        batch_id: B256,
        recipients: &[Address],
        amounts: &[U256],
    ) -> Result<U256, Error> {
        if sender != self.config.hub {
            return Err(Error::OnlyHub);
        }
        let n = recipients.len();
        if n == 0 {
            return Err(Error::BatchEmpty);
        }
        if n > MAX_PAYOUT_BATCH {
            return Err(Error::BatchTooLarge);
        }
        if n != amounts.len() {
            return Err(Error::BatchLengthMismatch);
        }
        if self.executed_batches.contains(&batch_id) {
            return Err(Error::PayoutBatchAlreadyExecuted);
        }
        let mut total = U256::ZERO;
        for (to, amount) in recipients.iter().zip(amounts) {
            if *to == Address::ZERO {
                return Err(Error::RecipientMustNotBeZero);
            }
            if amount.is_zero() {
                return Err(Error::AmountMustNotBeZero);
            }
            if *amount > U256::from(u128::MAX) {
                return Err(Error::AmountTooLarge);
            }
            total += *amount;
        }
        self.require_reserve_left(total)?;
        self.executed_batches.insert(batch_id);
        self.reserve -= total;
        for (to, amount) in recipients.iter().zip(amounts) {
            self.send(*to, *amount);
        }
        Ok(total)
    }
}

impl ContractModel {
    /// A plain ERC-20 `transfer` of `amount` to the contract, outside its functions: excess.
    pub fn token_transfer_in(&mut self, amount: U256) {
        self.token_balance += amount;
    }

    /// `excessToReserve()` sent by `sender`. Returns the amount moved.
    pub fn excess_to_reserve(&mut self, sender: Address) -> Result<U256, Error> {
        if sender != self.config.hub {
            return Err(Error::OnlyHub);
        }
        let amount = self.excess();
        if amount.is_zero() {
            return Err(Error::AmountMustNotBeZero);
        }
        self.reserve += amount;
        Ok(amount)
    }

    /// `returnExcess(to, amount)` sent by `sender`.
    pub fn return_excess(&mut self, sender: Address, to: Address, amount: U256) -> Result<(), Error> {
        if sender != self.config.hub {
            return Err(Error::OnlyHub);
        }
        if to == Address::ZERO {
            return Err(Error::RecipientMustNotBeZero);
        }
        if amount.is_zero() {
            return Err(Error::AmountMustNotBeZero);
        }
        if amount > self.excess() {
            return Err(Error::ExcessInsufficient);
        }
        self.send(to, amount);
        Ok(())
    }
}

/// What `openChannels` did for one user.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenOutcome {
    /// Opened with this epoch (`ChannelOpened`).
    Opened {
        /// The new epoch.
        epoch: u64,
    },
    /// Already open: registered (`ChannelRegistered`).
    Registered {
        /// Its epoch.
        epoch: u64,
    },
    /// Closing: left alone.
    Skipped,
}
