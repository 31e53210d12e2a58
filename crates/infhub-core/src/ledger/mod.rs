//! The hub's ledger: every channel, the reserve, and the payouts in flight, as one state machine.
//!
//! The ledger is double-entry over three kinds of accounts: users' channels (each run by the
//! channel state machine at the hub's end), the hub's reserve, and external payouts queued for
//! the chain. A command is applied all-or-nothing: [`Ledger::apply`] validates everything first
//! and mutates only when the command will succeed, so on `Err` the ledger is unchanged. It is
//! pure: the hub's key signs inside (signing is deterministic computation), and chain facts and
//! the confirmed block are inputs. Replaying the same commands on the same initial state gives
//! the same state and the same signed proofs, which is what the durable log relies on.
//!
//! Custodial accounts (seed 000 §3) live here too: the platform holds their keys, the ledger is
//! their truth, their balances are backed one-for-one by the reserve (custodial deposits enter
//! the reserve through `depositFor`), and they move without user signatures.
//!
//! Liquidity (protocol §6.3): the reserve must cover every channel's possible draw on it,
//! `obligation(u) = max(0, claim(u) − funds(u))`, plus queued payouts, an announced reserve
//! withdrawal, every custodial balance and unattributed custodial deposits. The sum is kept incrementally; anything that would break the rule is refused with
//! `ReserveInsufficient`.
//!
//! Refusals are final (spec §5.4): a well-formed debit refused for a reason of state (the
//! balance, liquidity, the recipient, a limit) is applied and refunded in one step, so its
//! nonce and total are spent and the payer holds a hub-signed credit of the amount back;
//! nobody can charge it later.
//!
//! Accounts follow the chain without letting strangers exhaust the ledger: a channel opened
//! by the hub (a registration) or registered by it (`ChannelRegistered`) is tracked, and a
//! channel its user opened alone is tracked from its first deposit. Empty channels opened by
//! anyone else cost the ledger nothing.

mod chain;
mod checkpoint_book;
mod checkpoint_leaves;
mod commands;
mod custodial;
mod listing;
mod locks;
mod recent;
mod seal;
mod transfer;

pub use chain::{ChainEvent, LogPosition};
pub use checkpoint_book::{CheckpointBook, CheckpointHeader, OpenDebitChallenge};
pub use commands::{Command, Outcome};
pub use custodial::{
    custodial_address, valid_user_id, CustodialAccount, CustodialResult, CustodialTransfer, MAX_CUSTODIAL_BATCH,
    MAX_USER_ID_BYTES,
};
pub use listing::{AccountFilter, AccountSummary, MAX_ACCOUNTS_PER_PAGE};
pub use locks::{LockLinks, LockPart, RegisteredLock};
pub use seal::{fill_proofs, for_each_proof, ProofRef, SealedBatch};

use crate::channel::{ChannelParams, ChannelState, Role, Status};
use crate::{Amount, Domain, Error};
use alloy_primitives::{Address, B256};
use recent::RecentTransfers;
use seal::UnsealedProof;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap, VecDeque};

/// Fixed parameters and limits of a hub's ledger.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerParams {
    /// The signing domain.
    pub domain: Domain,
    /// The hub's signing address.
    pub hub: Address,
    /// The furthest ahead a co-signed withdrawal may expire.
    pub max_withdrawal_expiry_blocks: u64,
    /// Most channels the ledger tracks.
    pub max_accounts: usize,
    /// Most external payouts waiting for the chain.
    pub max_queued_payouts: usize,
    /// Largest single payment, purchase or withdrawal.
    pub max_payment_amount: Amount,
    /// Internal transfers whose payment ids are remembered (the newest ones). A retry of one of
    /// them is answered as a duplicate; an older payment's debit nonce is spent, so its retry
    /// is refused (`nonce_must_increase`) and can never pay twice. Bounds the ledger's memory
    /// and snapshot, which would otherwise grow with every transfer ever made. External
    /// payments' ids are kept for good (their payout batch ids derive from them).
    pub transfer_ids_kept: usize,
}

/// On-chain facts about one channel that the channel state machine does not need but the
/// liquidity rule does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainFunds {
    /// Sum of `fromReserve` of this epoch's withdrawals.
    pub advanced_from_reserve: Amount,
    /// Sum of `moved` of this epoch's debit realizations.
    pub realized_debit: Amount,
}

/// One user's account: its channel and the chain facts about it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// The channel at the hub's end.
    pub channel: ChannelState,
    /// Chain facts for the liquidity rule.
    pub chain: ChainFunds,
}

impl Account {
    /// `funds = deposited + advanced − withdrawn − realized` as the contract has it (zero once
    /// settled: the contract clears a settled channel's totals, the ledger keeps them as history).
    pub fn funds(&self) -> u128 {
        let ch = &self.channel;
        if ch.status == Status::Settled {
            return 0;
        }
        let plus = ch.deposited.0 + self.chain.advanced_from_reserve.0;
        let minus = ch.withdrawn.0 + self.chain.realized_debit.0;
        assert!(plus >= minus, "channel funds negative: {self:?}");
        plus - minus
    }

    /// What this channel may draw from the reserve at settlement: `max(0, claim + the hub's
    /// pending locks to the user − funds)` (the contract escrows those locks from the reserve
    /// if the user closes, spec §5.11a, §5.17b).
    pub fn obligation(&self) -> u128 {
        match self.channel.status {
            Status::Settled => 0,
            _ => {
                let owed = self.channel.claim().0.saturating_add(self.channel.credit_locks.locked().0);
                owed.saturating_sub(self.funds())
            }
        }
    }

    /// What `realizeDebits` with this channel's newest debit would move from its funds into the
    /// reserve now: `min(cumulativeDebit − realizedDebit, funds)` while open, else nothing.
    pub fn realizable(&self) -> u128 {
        if self.channel.status != Status::Open {
            return 0;
        }
        let unrealized = self.channel.cumulative_debit().0.saturating_sub(self.chain.realized_debit.0);
        unrealized.min(self.funds())
    }

    /// The channel reacts to blocks: a withdrawal hold may expire, or a close is in progress.
    pub fn is_busy(&self) -> bool {
        self.channel.withdrawal_hold.is_some() || matches!(self.channel.status, Status::Closing { .. })
    }
}

/// Indexes over the accounts, derived from them (never stored: rebuilt when a snapshot is
/// loaded, kept exact by every change of a channel, checked by [`Ledger::check_invariants`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct AccountIndex {
    /// Channels that react to blocks ([`Account::is_busy`]): what [`Command::Block`] steps.
    busy: BTreeSet<Address>,
    /// Channels with something to realize, by amount ([`Account::realizable`]).
    realizable: BTreeSet<(u128, Address)>,
    /// Σ realizable.
    realizable_total: u128,
}

impl AccountIndex {
    fn remove(&mut self, user: Address, acct: &Account) {
        if acct.is_busy() {
            self.busy.remove(&user);
        }
        let r = acct.realizable();
        if r != 0 {
            self.realizable.remove(&(r, user));
            self.realizable_total -= r;
        }
    }

    fn insert(&mut self, user: Address, acct: &Account) {
        if acct.is_busy() {
            self.busy.insert(user);
        }
        let r = acct.realizable();
        if r != 0 {
            self.realizable.insert((r, user));
            self.realizable_total += r;
        }
    }
}

/// A reserve withdrawal announced on chain (spec §5.13).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct AnnouncedWithdrawal {
    /// Amount announced (earmarked while it stands).
    pub amount: Amount,
    /// First block it can execute.
    pub unlock_block: u64,
    /// First block it can no longer execute: the notice again after the unlock.
    pub expires_block: u64,
}

/// The reserve and everything it must cover (protocol §6.3), at the ledger's confirmed state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Liquidity {
    /// The contract's reserve.
    pub reserve: Amount,
    /// Σ over channels of what each may draw at settlement.
    pub obligations: Amount,
    /// External payouts queued or in flight.
    pub payouts_pending: Amount,
    /// Earmarked for an announced reserve withdrawal.
    pub earmarked: Amount,
    /// Σ custodial balances.
    pub custodial: Amount,
    /// Custodial deposits not attributed to an account.
    pub unattributed: Amount,
    /// Everything above together.
    pub committed: Amount,
    /// `reserve − committed` (zero if negative): what payments and payouts may still use.
    pub free: Amount,
    /// What realizing every payer's newest debit would move into the reserve now.
    pub realizable: Amount,
    /// Channels with something to realize.
    pub realizable_channels: u64,
    /// The reserve withdrawal announced on chain, if one stands.
    pub reserve_withdrawal: Option<AnnouncedWithdrawal>,
}

/// An external payout waiting for the chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Payout {
    /// Who pays.
    #[cfg_attr(feature = "schema", schemars(with = "crate::schema::AddressSchema"))]
    pub payer: Address,
    /// The payer's payment id.
    #[cfg_attr(feature = "schema", schemars(with = "crate::schema::WordSchema"))]
    pub payment_id: B256,
    /// Who receives on chain.
    #[cfg_attr(feature = "schema", schemars(with = "crate::schema::AddressSchema"))]
    pub recipient: Address,
    /// How much.
    pub amount: Amount,
}

/// A payout batch taken from the queue and handed to the chain, kept until the confirmed
/// `PayoutBatchExecuted` of its id: until then the hub (re)sends it, after a crash, a reorg,
/// a dropped or a reverted transaction alike (the contract executes an id at most once).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PayoutBatch {
    /// Its on-chain id ([`payout_batch_id`] of the payouts).
    pub id: B256,
    /// The payouts, in queue order.
    pub payouts: Vec<Payout>,
    /// The ledger's confirmed block when it was taken.
    pub taken_at_block: u64,
}

impl PayoutBatch {
    /// Σ of its amounts.
    pub fn total(&self) -> u128 {
        self.payouts.iter().map(|p| p.amount.0).sum()
    }
}

/// The on-chain id of a payout batch: the keccak of its payments' (payer, payment id) pairs,
/// so the same batch always gets the same id and the contract executes it at most once.
pub fn payout_batch_id(payouts: &[Payout]) -> B256 {
    let mut buf = Vec::with_capacity(payouts.len() * 52);
    for p in payouts {
        buf.extend_from_slice(p.payer.as_slice());
        buf.extend_from_slice(p.payment_id.as_slice());
    }
    alloy_primitives::keccak256(&buf)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct PaymentRef {
    digest: B256,
    seq: u64,
}
/// The whole ledger.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ledger {
    /// Parameters.
    pub params: LedgerParams,
    #[serde(with = "sorted_map")]
    accounts: HashMap<Address, Account>,
    /// The contract's reserve, mirrored from confirmed events.
    pub reserve: Amount,
    /// Σ obligation(u) over all accounts, kept incrementally.
    pub obligations: u128,
    /// Reserve earmarked for an announced withdrawal.
    pub earmarked: Amount,
    /// The reserve withdrawal announced on chain (confirmed), until it executes, is cancelled or
    /// expires.
    pub reserve_withdrawal: Option<AnnouncedWithdrawal>,
    queued: VecDeque<Payout>,
    /// Batches taken from the queue whose execution is not confirmed yet.
    in_flight: VecDeque<PayoutBatch>,
    /// Σ of queued and in-flight payouts (they will leave the reserve).
    pub payouts_pending: Amount,
    /// Idempotency keys of external payments, purchases and custodial movements (kept for
    /// good: nothing else stops a purchase's retry from applying twice, and payout batch ids
    /// derive from payment ids).
    #[serde(with = "sorted_map")]
    payments: HashMap<(Address, B256), PaymentRef>,
    /// Idempotency keys of the newest internal transfers (`params.transfer_ids_kept`).
    recent_transfers: RecentTransfers,
    /// Sequence number the next successful command gets.
    pub next_seq: u64,
    /// Highest confirmed block.
    pub block: u64,
    /// Position of the last chain event applied.
    pub chain_cursor: LogPosition,
    #[serde(with = "sorted_map")]
    custodial: HashMap<Address, CustodialAccount>,
    /// Σ custodial balances, kept incrementally.
    pub custodial_total: u128,
    /// Custodial deposits for an address that is no custodial account (owed, not attributed).
    pub unattributed: Amount,
    /// Proofs issued since the last seal. Every batch ends with a seal, so a snapshot (taken
    /// between batches) never holds any.
    #[serde(skip)]
    unsealed: Vec<UnsealedProof>,
    /// Checkpoints: inflows, the newest posted, the one built (spec §5.16).
    #[serde(default)]
    pub checkpoints: CheckpointBook,
    /// Accounts the operator froze (spec §5.20).
    #[serde(default)]
    pub frozen: std::collections::BTreeSet<Address>,
    /// Which of the hub's locks a payer's lock funds, and the scalars learned (spec §5.17b).
    #[serde(default)]
    pub locks: locks::LockLinks,
    /// Derived indexes (see [`Ledger::rebuild_indexes`]).
    #[serde(skip)]
    index: AccountIndex,
}

impl Ledger {
    /// An empty ledger.
    pub fn new(params: LedgerParams) -> Ledger {
        Ledger {
            params,
            accounts: HashMap::new(),
            reserve: Amount::ZERO,
            obligations: 0,
            earmarked: Amount::ZERO,
            reserve_withdrawal: None,
            queued: VecDeque::new(),
            in_flight: VecDeque::new(),
            payouts_pending: Amount::ZERO,
            payments: HashMap::new(),
            recent_transfers: RecentTransfers::default(),
            next_seq: 1,
            block: 0,
            chain_cursor: LogPosition::default(),
            custodial: HashMap::new(),
            custodial_total: 0,
            unattributed: Amount::ZERO,
            unsealed: Vec::new(),
            checkpoints: CheckpointBook::default(),
            locks: locks::LockLinks::default(),
            frozen: std::collections::BTreeSet::new(),
            index: AccountIndex::default(),
        }
    }

    /// Rebuilds the derived indexes from the accounts: after loading a snapshot (they are not
    /// stored). [`Ledger::check_invariants`] fails if they disagree with the accounts.
    pub fn rebuild_indexes(&mut self) {
        let mut index = AccountIndex::default();
        for (user, acct) in &self.accounts {
            index.insert(*user, acct);
        }
        self.index = index;
    }

    /// The channels that react to blocks (a withdrawal hold or a close in progress), in order.
    pub fn busy_channels(&self) -> impl Iterator<Item = &Address> {
        self.index.busy.iter()
    }

    /// The channels with something to realize, largest amount first: (amount, user).
    pub fn largest_realizable(&self) -> impl Iterator<Item = (u128, Address)> + '_ {
        self.index.realizable.iter().rev().copied()
    }

    /// The reserve and what it covers, now.
    pub fn liquidity(&self) -> Liquidity {
        let committed = self.committed(self.obligations, self.payouts_pending.0, self.custodial_total);
        Liquidity {
            reserve: self.reserve,
            obligations: Amount(self.obligations),
            payouts_pending: self.payouts_pending,
            earmarked: self.earmarked,
            custodial: Amount(self.custodial_total),
            unattributed: self.unattributed,
            committed: Amount(committed),
            free: Amount(self.reserve.0.saturating_sub(committed)),
            realizable: Amount(self.index.realizable_total),
            realizable_channels: self.index.realizable.len() as u64,
            reserve_withdrawal: self.reserve_withdrawal,
        }
    }

    fn channel_params(&self) -> ChannelParams {
        ChannelParams {
            domain: self.params.domain,
            hub: self.params.hub,
            role: Role::Hub,
            max_withdrawal_expiry_blocks: self.params.max_withdrawal_expiry_blocks,
        }
    }

    /// The account of `user`, if its channel was ever opened.
    pub fn account(&self, user: &Address) -> Option<&Account> {
        self.accounts.get(user)
    }

    /// Number of accounts.
    pub fn account_count(&self) -> usize {
        self.accounts.len()
    }

    /// All accounts (unordered).
    pub fn accounts(&self) -> impl Iterator<Item = (&Address, &Account)> {
        self.accounts.iter()
    }

    /// Payouts waiting to be batched.
    pub fn queued_payouts(&self) -> impl Iterator<Item = &Payout> {
        self.queued.iter()
    }

    /// Batches handed to the chain whose execution is not confirmed yet, oldest first: what the
    /// hub must (re)send until their `PayoutBatchExecuted` is confirmed.
    pub fn payout_batches_in_flight(&self) -> impl Iterator<Item = &PayoutBatch> {
        self.in_flight.iter()
    }

    /// The custodial account at `account`.
    pub fn custodial(&self, account: &Address) -> Option<&CustodialAccount> {
        self.custodial.get(account)
    }

    /// All custodial accounts (unordered).
    pub fn custodial_accounts(&self) -> impl Iterator<Item = &CustodialAccount> {
        self.custodial.values()
    }

    /// Everything the reserve must cover, given the three totals that commands change.
    fn committed(&self, obligations: u128, payouts_pending: u128, custodial_total: u128) -> u128 {
        obligations + payouts_pending + self.earmarked.0 + custodial_total + self.unattributed.0
    }

    /// Reserve not committed to anything: what purchases, payments and payouts may still use.
    pub fn free_reserve(&self) -> u128 {
        let committed = self.committed(self.obligations, self.payouts_pending.0, self.custodial_total);
        self.reserve.0.saturating_sub(committed)
    }

    /// True if the reserve covers every commitment (the rule of protocol §6.3).
    pub fn is_liquid(&self) -> bool {
        self.committed(self.obligations, self.payouts_pending.0, self.custodial_total) <= self.reserve.0
    }

    /// Recomputes every derived total from scratch and compares (pairs with the incremental updates).
    pub fn check_invariants(&self) {
        let obligations: u128 = self.accounts.values().map(Account::obligation).sum();
        assert_eq!(obligations, self.obligations, "obligations drifted");
        let queued: u128 = self.queued.iter().map(|p| p.amount.0).sum();
        let in_flight: u128 = self.in_flight.iter().map(PayoutBatch::total).sum();
        assert_eq!(
            queued + in_flight,
            self.payouts_pending.0,
            "pending payouts drifted from the queue and the batches"
        );
        for b in &self.in_flight {
            assert_eq!(b.id, payout_batch_id(&b.payouts), "an in-flight batch under another id");
        }
        for (user, acct) in &self.accounts {
            assert_eq!(*user, acct.channel.user, "account keyed by the wrong user");
            assert!(acct.channel.balance().is_ok(), "negative balance for {user}");
        }
        let custodial: u128 = self.custodial.values().map(|c| c.balance.0).sum();
        assert_eq!(custodial, self.custodial_total, "custodial total drifted");
        for (a, c) in &self.custodial {
            assert_eq!(*a, c.account, "custodial account keyed by the wrong address");
            assert!(!self.accounts.contains_key(a), "an address is both a channel and a custodial account");
        }
        let mut index = AccountIndex::default();
        for (user, acct) in &self.accounts {
            index.insert(*user, acct);
        }
        assert_eq!(index, self.index, "the account indexes drifted from the accounts");
    }

    fn take_seq(&mut self) -> u64 {
        let s = self.next_seq;
        self.next_seq += 1;
        s
    }

    fn check_amount(&self, amount: Amount) -> Result<(), Error> {
        if amount.is_zero() {
            return Err(Error::AmountMustNotBeZero);
        }
        if amount > self.params.max_payment_amount {
            return Err(Error::AmountTooLarge);
        }
        Ok(())
    }

    /// Replaces a channel (and optionally its chain funds), keeping `obligations` exact.
    fn replace_channel(&mut self, user: Address, channel: ChannelState, chain: ChainFunds, set_chain: bool) {
        let acct = self.accounts.get_mut(&user).expect("replace_channel on a known account");
        let before = acct.obligation();
        self.index.remove(user, acct);
        acct.channel = channel;
        if set_chain {
            acct.chain = chain;
        }
        self.index.insert(user, acct);
        let after = acct.obligation();
        self.obligations = self.obligations - before + after;
    }

    /// The seq of the payment, purchase or custodial movement `id` of `owner`, while the
    /// ledger remembers it (internal transfers: the newest `params.transfer_ids_kept`).
    pub fn payment_seq(&self, owner: &Address, id: &B256) -> Option<u64> {
        let key = (*owner, *id);
        self.payments.get(&key).or_else(|| self.recent_transfers.get(&key)).map(|r| r.seq)
    }

    /// Checks an idempotency key: `Some(first_seq)` for a repeat, an error for a reuse.
    fn seen(&self, key: &(Address, B256), digest: B256) -> Result<Option<u64>, Error> {
        match self.payments.get(key).or_else(|| self.recent_transfers.get(key)) {
            Some(prev) if prev.digest == digest => Ok(Some(prev.seq)),
            Some(_) => Err(Error::PaymentIdReused),
            None => Ok(None),
        }
    }
}

/// Serializes a map as a list of entries sorted by key, so snapshots are deterministic and keys
/// need not be strings.
mod sorted_map {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use std::collections::HashMap;
    use std::hash::Hash;

    pub(super) fn serialize<K, V, S>(map: &HashMap<K, V>, s: S) -> Result<S::Ok, S::Error>
    where
        K: Serialize + Ord,
        V: Serialize,
        S: Serializer,
    {
        let mut entries: Vec<(&K, &V)> = map.iter().collect();
        entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
        entries.serialize(s)
    }

    pub(super) fn deserialize<'de, K, V, D>(d: D) -> Result<HashMap<K, V>, D::Error>
    where
        K: Deserialize<'de> + Eq + Hash,
        V: Deserialize<'de>,
        D: Deserializer<'de>,
    {
        let entries: Vec<(K, V)> = Vec::deserialize(d)?;
        Ok(entries.into_iter().collect())
    }
}
