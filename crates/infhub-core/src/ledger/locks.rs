//! The hub's ledger and point locks (spec §5.17b): a user's lock debits (her outgoing locks,
//! owed to the hub) and the hub's lock credits (its locks to a user), applied through the
//! channel machine's lock rules at the ledger's confirmed block. The liquidity rule counts the
//! hub's pending locks to a user as owed until they settle or drop: if the user closes, the
//! contract escrows them from the reserve (§5.11a), so the reserve must be able to cover them.
//!
//! A locked transfer inside the hub links the payer's lock to the hub's lock to the payee
//! ([`LockLinks`]): when the payee reveals her scalar to be paid, the hub keeps it for the
//! payer's lock, which from then on can only be settled (`LockRevealed` for a drop), and the
//! payer reads the scalar, her proof of payment, with her account.
//!
//! The ledger does not decide when a lock is cancelled or settled: the caller (forwarding, or
//! the hub's API for a payee revealing her scalar) does, and the machine checks the rules.

use super::{sorted_map, Account, ChainFunds, Ledger, Outcome};
use crate::channel::{step, ChannelState, Input, LockChange, Status, LOCK_REVEAL_MARGIN_BLOCKS};
use crate::messages::{Eip712Message, HubSigned, SignedDebit};
use crate::point_lock::{Lock, Scalar};
use crate::{Address, Error, B256};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// A lock registered on chain (spec §5.11a) through the newest proof the ledger holds of a
/// closing channel, followed until `unlock` resolves it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisteredLock {
    /// The channel owner.
    pub user: Address,
    /// The close's epoch.
    pub epoch: u64,
    /// The hub's lock to the user rather than hers to the hub.
    pub hub_locks: bool,
    /// The lock leaf.
    pub lock: Lock,
}

/// One part of a split payment (spec §5.23c): a payer's pending lock with the hub lock's id,
/// on the point `Z − tweak·G` (`Z` the hub lock's point), so the part opens with the payee's
/// scalar less the tweak.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockPart {
    /// The payer (the previous hub's link account).
    pub payer: Address,
    /// The tweak from the part's point to the hub lock's.
    pub tweak: Scalar,
}

/// The links between payers' locks and the hub's locks they fund, and what the chain said
/// about them: reveals in the point registry and registrations through a close.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockLinks {
    /// The hub's pending lock to a payee, by (payee, lock id): the payer whose lock funds it.
    #[serde(with = "sorted_map")]
    forwarded: HashMap<(Address, B256), Address>,
    /// A payer's pending lock whose scalar the hub learned, by (payer, lock id).
    #[serde(with = "sorted_map")]
    opened: HashMap<(Address, B256), Scalar>,
    /// A payer's pending lock that funds a hub lock, by its point: how a reveal in the
    /// registry is matched to a lock the hub is owed.
    #[serde(with = "sorted_map")]
    by_point: HashMap<Address, (Address, B256)>,
    /// The first reveal block of the points of followed locks.
    #[serde(with = "sorted_map")]
    revealed: HashMap<Address, u64>,
    /// Registrations followed until resolved, by (proof digest, lock id).
    #[serde(with = "sorted_map")]
    registered: HashMap<(B256, B256), RegisteredLock>,
    /// The hub's pending lock to a payee funded by the parts of a split payment, by (payee,
    /// lock id): the parts (spec §5.23c).
    #[serde(with = "sorted_map")]
    collected: HashMap<(Address, B256), Vec<LockPart>>,
}

impl LockLinks {
    /// The scalar the hub learned for `payer`'s pending lock `lock_id`, if any.
    pub fn scalar_for(&self, payer: &Address, lock_id: &B256) -> Option<Scalar> {
        self.opened.get(&(*payer, *lock_id)).copied()
    }

    /// Every payer's lock whose scalar the hub learned: ((payer, lock id), scalar), by key.
    pub fn opened(&self) -> Vec<((Address, B256), Scalar)> {
        let mut all: Vec<_> = self.opened.iter().map(|(k, v)| (*k, *v)).collect();
        all.sort_unstable_by_key(|(k, _)| *k);
        all
    }

    /// The block the registry first recorded `point`'s reveal, if the ledger follows it.
    pub fn revealed_at(&self, point: &Address) -> Option<u64> {
        self.revealed.get(point).copied()
    }

    /// Whether the lock `lock_id` is registered through the proof `proof_digest`.
    pub fn is_registered(&self, proof_digest: B256, lock_id: B256) -> bool {
        self.registered.contains_key(&(proof_digest, lock_id))
    }

    /// The registrations followed: ((proof digest, lock id), registration), by key.
    pub fn registered(&self) -> Vec<((B256, B256), RegisteredLock)> {
        let mut all: Vec<_> = self.registered.iter().map(|(k, v)| (*k, *v)).collect();
        all.sort_unstable_by_key(|(k, _)| *k);
        all
    }

    /// How many links are held (every kind).
    pub fn len(&self) -> usize {
        self.forwarded.len()
            + self.opened.len()
            + self.by_point.len()
            + self.revealed.len()
            + self.registered.len()
            + self.collected.len()
    }

    /// Forgets `payer`'s lock `lock` (settled, dropped or resolved on chain), and its point's
    /// reveal once nothing followed uses the point.
    fn forget_payer_lock(&mut self, payer: Address, lock: &Lock) {
        self.opened.remove(&(payer, lock.lock_id));
        if self.by_point.get(&lock.point) == Some(&(payer, lock.lock_id)) {
            self.by_point.remove(&lock.point);
        }
        self.forget_point_if_unused(&lock.point);
    }

    fn forget_point_if_unused(&mut self, point: &Address) {
        if !self.by_point.contains_key(point) && !self.registered.values().any(|r| r.lock.point == *point) {
            self.revealed.remove(point);
        }
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Ledger {
    /// The account's channel brought to the ledger's confirmed block: idle channels' `block`
    /// lags (only busy ones follow blocks), and lock expiries are judged at this block.
    fn channel_now(&self, user: &Address) -> Result<ChannelState, Error> {
        let acct = self.accounts.get(user).ok_or(Error::UnknownAccount)?;
        if acct.channel.block >= self.block {
            return Ok(acct.channel.clone());
        }
        Ok(step(&acct.channel, &self.channel_params(), Input::Block(self.block))?.0)
    }

    /// [`super::Command::DebitLock`]: the user's signed change to her outgoing locks. Adding
    /// one holds it out of her balance; settling one with its scalar pays it to the hub (her
    /// claim falls); dropping one gives it back. Answered with the hub's receipt of the debit.
    ///
    /// A user's cancel before the expiry needs the hub's agreement, which only forwarding gives
    /// (its downstream refused: [`super::Command::CancelForwardedLock`]), so here it is refused
    /// as `LockNotExpired`: otherwise a payer could take back a lock the hub had forwarded.
    pub(super) fn debit_lock(&mut self, debit: SignedDebit, change: LockChange) -> Result<Outcome, Error> {
        if matches!(change, LockChange::Cancel { .. }) {
            return Err(Error::LockNotExpired);
        }
        let m = debit.message;
        if matches!(change, LockChange::Add(_)) {
            // Settling or dropping what is pending stays possible: it pays what is owed.
            self.require_not_frozen(&m.user)?;
        }
        if let LockChange::Drop { lock_id } = change {
            if self.locks.opened.contains_key(&(m.user, lock_id)) {
                return Err(Error::LockRevealed);
            }
        }
        self.check_amount(m.amount)?;
        let now = self.channel_now(&m.user)?;
        let (after, _) = step(&now, &self.channel_params(), Input::DebitLock { debit, change })?;
        let lock = changed_lock(&now.debit_locks, &change);
        let acct = &self.accounts[&m.user];
        let ob_after = Account { channel: after.clone(), chain: acct.chain }.obligation();
        // A settlement lowers the claim and a drop leaves it, so liquidity can only improve;
        // checked anyway, as every command that changes a channel is.
        let committed = self.obligations - acct.obligation() + ob_after;
        if self.committed(committed, self.payouts_pending.0, self.custodial_total) > self.reserve.0 {
            return Err(Error::ReserveInsufficient);
        }
        self.take_seq();
        self.replace_channel(m.user, after, ChainFunds::default(), false);
        if matches!(change, LockChange::Settle { .. } | LockChange::Drop { .. }) {
            self.locks.forget_payer_lock(m.user, &lock);
        }
        let digest = m.digest(&self.params.domain);
        Ok(Outcome::DebitLockApplied { receipt: self.issue_receipt(&m, digest), change, lock })
    }

    /// [`super::Command::LockedTransfer`]: the payer's lock `lock` to the hub and the hub's lock
    /// to `payee` with the same id, amount and point, expiring `LOCK_REVEAL_MARGIN_BLOCKS`
    /// earlier (`ExpiryTooSoon` when that is not after the ledger's block), both or neither.
    /// The payee must be another open channel of this hub (`RecipientMustNotBeSender`,
    /// `UnknownAccount`, `RecipientNotOpen`); the hub's lock must fit the reserve.
    pub(super) fn locked_transfer(&mut self, debit: SignedDebit, lock: Lock, payee: Address) -> Result<Outcome, Error> {
        let m = debit.message;
        if payee == m.user {
            return Err(Error::RecipientMustNotBeSender);
        }
        self.require_not_frozen(&m.user)?;
        self.require_not_frozen(&payee)?;
        self.check_amount(lock.amount)?;
        let params = self.channel_params();
        let payer_now = self.channel_now(&m.user)?;
        let (payer_after, _) = step(&payer_now, &params, Input::DebitLock { debit, change: LockChange::Add(lock) })?;
        if self.accounts.get(&payee).ok_or(Error::UnknownAccount)?.channel.status != Status::Open {
            return Err(Error::RecipientNotOpen);
        }
        let payee_expiry = lock.expiry_block.saturating_sub(LOCK_REVEAL_MARGIN_BLOCKS);
        if payee_expiry <= self.block {
            return Err(Error::ExpiryTooSoon);
        }
        let payee_change = LockChange::Add(Lock { expiry_block: payee_expiry, ..lock });
        let payee_now = self.channel_now(&payee)?;
        let credit = HubSigned::unsealed(payee_now.next_lock_credit(&params, &payee_change, self.next_seq)?);
        let (payee_after, _) =
            step(&payee_now, &params, Input::CreditLock { credit: credit.clone(), change: payee_change })?;
        let (payer_acct, payee_acct) = (&self.accounts[&m.user], &self.accounts[&payee]);
        let ob = |a: &Account, ch: &ChannelState| Account { channel: ch.clone(), chain: a.chain }.obligation();
        let committed = self.obligations - payer_acct.obligation() + ob(payer_acct, &payer_after)
            - payee_acct.obligation()
            + ob(payee_acct, &payee_after);
        if self.committed(committed, self.payouts_pending.0, self.custodial_total) > self.reserve.0 {
            return Err(Error::ReserveInsufficient);
        }
        self.take_seq();
        self.replace_channel(m.user, payer_after, ChainFunds::default(), false);
        self.replace_channel(payee, payee_after, ChainFunds::default(), false);
        self.locks.forwarded.insert((payee, lock.lock_id), m.user);
        self.locks.by_point.insert(lock.point, (m.user, lock.lock_id));
        let receipt = self.issue_receipt(&m, m.digest(&self.params.domain));
        self.note_unsealed_credit(&credit);
        Ok(Outcome::LockedTransferApplied { receipt, payee_credit: credit })
    }

    /// [`super::Command::CreditLock`]: the hub's change to its locks to `user`. Adding one must
    /// fit the liquidity rule with the lock counted as owed (`ReserveInsufficient`); settling
    /// needs the scalar (the user revealed it to claim); dropping needs the expiry past, or a
    /// cancel the caller decided.
    pub(super) fn credit_lock(&mut self, user: Address, change: LockChange) -> Result<Outcome, Error> {
        if let LockChange::Add(lock) = change {
            self.check_amount(lock.amount)?;
            self.require_not_frozen(&user)?;
        }
        let params = self.channel_params();
        let now = self.channel_now(&user)?;
        let credit = HubSigned::unsealed(now.next_lock_credit(&params, &change, self.next_seq)?);
        let (after, _) = step(&now, &params, Input::CreditLock { credit: credit.clone(), change })?;
        let lock = changed_lock(&now.credit_locks, &change);
        let acct = &self.accounts[&user];
        let ob_after = Account { channel: after.clone(), chain: acct.chain }.obligation();
        let committed = self.obligations - acct.obligation() + ob_after;
        if self.committed(committed, self.payouts_pending.0, self.custodial_total) > self.reserve.0 {
            return Err(Error::ReserveInsufficient);
        }
        self.take_seq();
        self.replace_channel(user, after, ChainFunds::default(), false);
        self.note_unsealed_credit(&credit);
        let payer = self.locks.forwarded.remove(&(user, change.lock_id()));
        if let (Some(payer), LockChange::Settle { lock_id, scalar }) = (payer, change) {
            self.locks.opened.insert((payer, lock_id), scalar);
        }
        let parts = self.locks.collected.remove(&(user, change.lock_id()));
        if let (Some(parts), LockChange::Settle { lock_id, scalar }) = (parts, change) {
            self.open_parts(lock_id, &parts, scalar);
        }
        Ok(Outcome::CreditLockIssued { credit, change, lock })
    }

    /// [`super::Command::CollectedTransfer`]: the hub's lock `lock` to `payee` funded by the
    /// `parts` of a split payment (spec §5.23c). Each part is its payer's pending lock with
    /// `lock`'s id that funds nothing else yet, expiring at least `LOCK_REVEAL_MARGIN_BLOCKS`
    /// after `lock`; together they cover its amount (`PartsDoNotFundLock`); 1 to `MAX_PARTS`
    /// payers, each once (`TooManyParts`). The payee must be another open channel, not frozen;
    /// the hub's lock must expire after the ledger's block and fit the reserve. A part's tweak
    /// is not checked here (the ledger knows a lock's point only by its address): a wrong one
    /// gives a scalar that does not open the part, which is then not recorded when the payee
    /// reveals (the caller checks the points in full).
    pub(super) fn collected_transfer(
        &mut self,
        payee: Address,
        lock: Lock,
        parts: &[LockPart],
    ) -> Result<Outcome, Error> {
        if parts.is_empty() || parts.len() > crate::routing::MAX_PARTS {
            return Err(Error::TooManyParts);
        }
        self.require_not_frozen(&payee)?;
        self.check_amount(lock.amount)?;
        if lock.expiry_block <= self.block {
            return Err(Error::ExpiryTooSoon);
        }
        let mut covered = crate::Amount::ZERO;
        for (i, part) in parts.iter().enumerate() {
            if part.payer == payee {
                return Err(Error::RecipientMustNotBeSender);
            }
            if parts[..i].iter().any(|p| p.payer == part.payer) {
                return Err(Error::TooManyParts);
            }
            let acct = self.accounts.get(&part.payer).ok_or(Error::UnknownAccount)?;
            let held = acct.channel.debit_locks.get(&lock.lock_id).ok_or(Error::PartsDoNotFundLock)?;
            let funds_another = self.locks.by_point.get(&held.point) == Some(&(part.payer, lock.lock_id))
                || self.locks.opened.contains_key(&(part.payer, lock.lock_id));
            if funds_another || held.expiry_block < lock.expiry_block.saturating_add(LOCK_REVEAL_MARGIN_BLOCKS) {
                return Err(Error::PartsDoNotFundLock);
            }
            covered = covered.checked_add(held.amount)?;
        }
        if covered < lock.amount {
            return Err(Error::PartsDoNotFundLock);
        }
        if self.accounts.get(&payee).ok_or(Error::UnknownAccount)?.channel.status != Status::Open {
            return Err(Error::RecipientNotOpen);
        }
        let outcome = self.credit_lock(payee, LockChange::Add(lock))?;
        for part in parts {
            let point = self.accounts[&part.payer].channel.debit_locks.get(&lock.lock_id).expect("checked above").point;
            self.locks.by_point.insert(point, (part.payer, lock.lock_id));
        }
        self.locks.collected.insert((payee, lock.lock_id), parts.to_vec());
        Ok(outcome)
    }

    /// Records, for each part of a split payment whose hub lock settled with `scalar`, the
    /// part's scalar (`scalar − tweak`) if it opens the part's pending lock.
    fn open_parts(&mut self, lock_id: B256, parts: &[LockPart], scalar: Scalar) {
        for part in parts {
            let Ok(s) = scalar.upstream(&part.tweak) else { continue };
            let opens = self
                .accounts
                .get(&part.payer)
                .and_then(|a| a.channel.debit_locks.get(&lock_id))
                .is_some_and(|l| l.point == s.point().address());
            if opens {
                self.locks.opened.insert((part.payer, lock_id), s);
            }
        }
    }

    /// [`super::Command::CancelForwardedLock`]: applies the payer's `Cancel` of her pending
    /// lock (its id is the debit's payment id) through the channel machine, unless the hub
    /// learned its scalar (`LockRevealed`: it was paid downstream after all).
    pub(super) fn cancel_forwarded_lock(&mut self, debit: SignedDebit) -> Result<Outcome, Error> {
        let m = debit.message;
        let change = LockChange::Cancel { lock_id: m.payment_id };
        if self.locks.opened.contains_key(&(m.user, m.payment_id)) {
            return Err(Error::LockRevealed);
        }
        let now = self.channel_now(&m.user)?;
        let (after, _) = step(&now, &self.channel_params(), Input::DebitLock { debit, change })?;
        let lock = changed_lock(&now.debit_locks, &change);
        self.take_seq();
        // A cancel lowers nothing the hub owes: liquidity can only improve.
        self.replace_channel(m.user, after, ChainFunds::default(), false);
        self.locks.forget_payer_lock(m.user, &lock);
        let digest = m.digest(&self.params.domain);
        Ok(Outcome::DebitLockApplied { receipt: self.issue_receipt(&m, digest), change, lock })
    }

    /// [`super::Command::LockScalarLearned`]: records `scalar` for `payer`'s pending lock
    /// `lock_id` (`UnknownAccount`, `UnknownLock`, `ScalarDoesNotOpenLock` when it is not hers,
    /// not pending, or not its point's). Idempotent.
    pub(super) fn lock_scalar_learned(
        &mut self,
        payer: Address,
        lock_id: B256,
        scalar: Scalar,
    ) -> Result<Outcome, Error> {
        let acct = self.accounts.get(&payer).ok_or(Error::UnknownAccount)?;
        let lock = acct.channel.debit_locks.get(&lock_id).ok_or(Error::UnknownLock)?;
        if scalar.point().address() != lock.point {
            return Err(Error::ScalarDoesNotOpenLock);
        }
        let changed = self.locks.opened.insert((payer, lock_id), scalar) != Some(scalar);
        self.take_seq();
        Ok(Outcome::LockScalarNoted { changed })
    }
}

impl Ledger {
    /// The hub's locks it forwarded to open channels that expired unclaimed (the ledger's
    /// block is past their expiry), at most `max`, in (payee, lock id) order: each one is
    /// dropped by the hub's next proof to its payee (a `CreditLock` drop), which frees the
    /// reserve it held (spec §5.17b). The hub's shell commits those drops.
    pub fn expired_forwarded_locks(&self, max: usize) -> Vec<(Address, B256)> {
        let mut out: Vec<(Address, B256)> = self
            .locks
            .forwarded
            .keys()
            .chain(self.locks.collected.keys())
            .filter(|(payee, id)| {
                let ch = self.accounts.get(payee).map(|a| &a.channel);
                ch.filter(|c| c.status == Status::Open)
                    .and_then(|c| c.credit_locks.get(id))
                    .is_some_and(|l| l.expiry_block < self.block)
            })
            .copied()
            .collect();
        out.sort_unstable();
        out.truncate(max);
        out
    }

    /// The lock events of the chain: the registry's reveals and the contract's registrations
    /// and resolutions (spec §5.11a).
    pub(super) fn lock_event(&mut self, at_block: u64, ev: super::ChainEvent) -> Result<(), Error> {
        use super::ChainEvent;
        match ev {
            ChainEvent::PointRevealed { point, scalar } => self.point_revealed(at_block, point, scalar)?,
            ChainEvent::LockRegistered { user, epoch, hub_locks, proof_digest, lock_id, amount } => {
                self.lock_registered(user, epoch, hub_locks, (proof_digest, lock_id), amount)
            }
            ChainEvent::LockResolved { proof_digest, lock_id, .. } => self.lock_resolved(proof_digest, lock_id),
            _ => unreachable!("lock_event is called with lock events only"),
        }
        Ok(())
    }

    /// `PointRevealed`: kept for a point of a lock the ledger follows. A reveal of the point
    /// of a payer's lock that funds a hub lock (the payee revealed on chain, not to the hub)
    /// gives the hub the scalar it is owed by: the payer's lock can then only settle.
    fn point_revealed(&mut self, at_block: u64, point: Address, scalar: Scalar) -> Result<(), Error> {
        let payer_lock = self.locks.by_point.get(&point).copied();
        let collected = self.collected_on_point(&point);
        if payer_lock.is_none() && collected.is_none() && !self.locks.registered.values().any(|r| r.lock.point == point)
        {
            return Ok(());
        }
        // The registry checks it; a mismatch means the event is not the registry's.
        if scalar.point().address() != point {
            return Err(Error::ChainEventInconsistent);
        }
        self.locks.revealed.entry(point).or_insert(at_block);
        if let Some(key) = payer_lock {
            self.locks.opened.entry(key).or_insert(scalar);
        }
        // The payee revealed her scalar on chain rather than to the hub: each part opens too.
        if let Some((lock_id, parts)) = collected {
            self.open_parts(lock_id, &parts, scalar);
        }
        Ok(())
    }

    /// The split payment whose hub lock is on `point`, if one is pending: its lock id and parts.
    fn collected_on_point(&self, point: &Address) -> Option<(B256, Vec<LockPart>)> {
        self.locks.collected.iter().find_map(|((payee, id), parts)| {
            let lock = self.accounts.get(payee)?.channel.credit_locks.get(id)?;
            (lock.point == *point).then(|| (*id, parts.clone()))
        })
    }

    /// `LockRegistered`: followed when it is a pending lock of the newest proof the ledger
    /// holds for that direction of the closing channel (the hub knows its expiry and point,
    /// and can resolve it with `unlock` after the settlement); any other registration (a
    /// user's of her own older proof, or of locks the hub never saw) is hers to resolve.
    fn lock_registered(
        &mut self,
        user: Address,
        epoch: u64,
        hub_locks: bool,
        (proof_digest, lock_id): (B256, B256),
        amount: crate::Amount,
    ) {
        let Some(ch) = self.accounts.get(&user).map(|a| &a.channel).filter(|ch| ch.epoch == epoch) else { return };
        let domain = &self.params.domain;
        let (newest, book) = if hub_locks {
            (ch.credit.as_ref().map(|c| c.message.digest(domain)), &ch.credit_locks)
        } else {
            (ch.debit.as_ref().map(|d| d.message.digest(domain)), &ch.debit_locks)
        };
        let Some(lock) = book.get(&lock_id).filter(|l| l.amount == amount && newest == Some(proof_digest)) else {
            return;
        };
        let followed = RegisteredLock { user, epoch, hub_locks, lock: *lock };
        self.locks.registered.insert((proof_digest, lock_id), followed);
    }

    /// `LockResolved`: the registration is done; a payer's lock it settled is forgotten.
    fn lock_resolved(&mut self, proof_digest: B256, lock_id: B256) {
        let Some(r) = self.locks.registered.remove(&(proof_digest, lock_id)) else { return };
        if r.hub_locks {
            self.locks.forget_point_if_unused(&r.lock.point);
        } else {
            self.locks.forget_payer_lock(r.user, &r.lock);
        }
    }
}

/// The lock `change` added, settled or dropped in `book` (as it was before the change, which
/// the channel machine just accepted, so a lock it names is there).
fn changed_lock(book: &crate::lock_book::LockBook, change: &LockChange) -> Lock {
    match change {
        LockChange::Add(lock) => *lock,
        _ => *book.get(&change.lock_id()).expect("an accepted change names a pending lock"),
    }
}
