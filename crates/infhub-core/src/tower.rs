//! The watchtower's book: which credit it holds for each user, and what a close calls for.
//!
//! A tower defends users who are offline (spec §5.10a). Because credits are running totals it
//! keeps only the newest hub-signed credit per user (and the user's fee offer), so its storage
//! per user is constant. For a hub operator it likewise keeps users' newest signed debits and
//! answers a user's exit that holds an older one (a second line of defence while the hub's
//! node is down). This module is the tower's rules without IO: what it accepts (a valid
//! hub proof, for a user with a channel in that epoch, within the per-user rate and the total
//! number of users), and, given the contract's record of a channel and the block height, what
//! to do: nothing, wait for the user's own wallet (the grace period), submit the credit (with
//! the fee offer if it is still usable), or settle. The tower service (`infhub-tower`) and the
//! simulator both drive it; time and block height are inputs.
//!
//! Proofs with pending point locks are held like any other: the contract orders proofs by
//! running total (spec §3), which is what the tower defends. Registering a lock is its
//! receiver's business (it needs the lock's leaves, and opening one needs the scalar), so the
//! tower does not (spec §5.10a, §5.11a).

use crate::messages::{Eip712Message, Signed, SignedCredit, SignedDebit, TowerFee, TowerReceipt, BPS};
use crate::{Address, Amount, Domain, Error, PrivateKey};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A signed fee offer (spec §5.10a).
pub type SignedTowerFee = Signed<TowerFee>;
/// A tower-signed receipt.
pub type SignedTowerReceipt = Signed<TowerReceipt>;

/// The tower's limits and policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TowerTerms {
    /// Blocks after a close begins during which the tower leaves the defence to the user's own
    /// wallet (which pays no fee). Past half the period left, the tower acts at once anyway.
    pub grace_blocks: u64,
    /// Most users watched at once.
    pub max_users: usize,
    /// Most updates (credits and offers) accepted per user per minute.
    pub max_updates_per_user_per_minute: u32,
}

impl Default for TowerTerms {
    fn default() -> Self {
        TowerTerms { grace_blocks: 2, max_users: 1_000_000, max_updates_per_user_per_minute: 6_000 }
    }
}

/// The contract's record of a channel, as much as the tower needs (`IInfHub.channel(user)`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelRecord {
    /// 0 none, 1 open, 2 closing, 3 settled (the contract's `Status`).
    pub status: u8,
    /// The channel's epoch.
    pub epoch: u64,
    /// While closing: the first block `settle` succeeds.
    pub settle_block: u64,
    /// The running total of the credit the contract holds.
    pub credit_total: Amount,
    /// The running total of the debit the contract holds.
    pub debit_total: Amount,
}

/// `Status.Closing` in the contract.
pub const STATUS_CLOSING: u8 = 2;
/// `Status.None` in the contract.
pub const STATUS_NONE: u8 = 0;

/// What the tower holds for one user.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Appointment {
    /// The newest credit shown to the tower (highest total, then highest nonce).
    pub credit: Option<SignedCredit>,
    /// The user's newest fee offer to this tower.
    pub offer: Option<SignedTowerFee>,
    /// The user's newest signed debit (kept for the hub operator).
    #[serde(default)]
    pub debit: Option<SignedDebit>,
    /// The epoch both belong to.
    pub epoch: u64,
}

/// What a close of a watched channel calls for now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TowerAction {
    /// Nothing to do for this channel.
    Nothing,
    /// The channel needs the tower's credit, but the user's own wallet gets the first chance
    /// until this block.
    WaitUntil(u64),
    /// Submit the credit held, through `submitCreditForFee` if `offer` is set.
    Submit {
        /// The credit.
        credit: Box<SignedCredit>,
        /// The usable offer, if any.
        offer: Option<Box<SignedTowerFee>>,
    },
    /// Submit the user's newest debit (`submitDebit`): her exit holds an older one.
    SubmitDebit(Box<SignedDebit>),
    /// The challenge period is over: call `settle`.
    Settle,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Entry {
    appointment: Appointment,
    window_start_ms: u64,
    updates_in_window: u32,
}

/// The book. See the module documentation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TowerBook {
    domain: Domain,
    hub: Address,
    tower: Address,
    terms: TowerTerms,
    entries: BTreeMap<Address, Entry>,
}

impl TowerBook {
    /// An empty book for the hub contract of `domain` whose hub key is `hub`, kept by `tower`.
    pub fn new(domain: Domain, hub: Address, tower: Address, terms: TowerTerms) -> TowerBook {
        TowerBook { domain, hub, tower, terms, entries: BTreeMap::new() }
    }

    /// The tower's address.
    pub fn tower(&self) -> Address {
        self.tower
    }

    /// The tower's terms.
    pub fn terms(&self) -> TowerTerms {
        self.terms
    }

    /// Users watched.
    pub fn users(&self) -> impl Iterator<Item = (&Address, &Appointment)> {
        self.entries.iter().map(|(u, e)| (u, &e.appointment))
    }

    /// Number of users watched.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True if nobody is watched.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// What is held for `user`.
    pub fn appointment(&self, user: Address) -> Option<&Appointment> {
        self.entries.get(&user).map(|e| &e.appointment)
    }

    /// Charges one update to `user`'s rate, refusing past the limit or past `max_users`.
    fn admit(&mut self, user: Address, now_ms: u64) -> Result<(), Error> {
        if !self.entries.contains_key(&user) && self.entries.len() >= self.terms.max_users {
            return Err(Error::TowerFull);
        }
        if let Some(e) = self.entries.get(&user) {
            let fresh_window = now_ms.saturating_sub(e.window_start_ms) >= 60_000;
            if !fresh_window && e.updates_in_window >= self.terms.max_updates_per_user_per_minute {
                return Err(Error::TowerQuotaExceeded);
            }
        }
        Ok(())
    }

    fn entry(&mut self, user: Address, epoch: u64, now_ms: u64) -> &mut Entry {
        let e = self.entries.entry(user).or_insert_with(|| Entry {
            appointment: Appointment { credit: None, offer: None, debit: None, epoch },
            window_start_ms: now_ms,
            updates_in_window: 0,
        });
        if now_ms.saturating_sub(e.window_start_ms) >= 60_000 {
            e.window_start_ms = now_ms;
            e.updates_in_window = 0;
        }
        e.updates_in_window += 1;
        if e.appointment.epoch < epoch {
            // A new epoch: the old one's credit and offer are void on chain.
            e.appointment = Appointment { credit: None, offer: None, debit: None, epoch };
        }
        e
    }

    /// Checks that `user` has a channel in `epoch` by the contract's record `chain`.
    fn check_channel(chain: &ChannelRecord, epoch: u64) -> Result<(), Error> {
        if chain.status == STATUS_NONE {
            return Err(Error::UnknownAccount);
        }
        if epoch != chain.epoch {
            return Err(Error::EpochMismatch);
        }
        Ok(())
    }

    /// Takes `credit` for its user if it verifies and is newer than the one held (by total,
    /// then nonce: spec §5.10). `chain` is the contract's record of the user's channel. A
    /// credit that is not newer is refused `ProofMustSupersede` (the one held stands).
    pub fn accept_credit(&mut self, credit: SignedCredit, chain: &ChannelRecord, now_ms: u64) -> Result<(), Error> {
        let c = credit.message;
        Self::check_channel(chain, c.epoch)?;
        credit.verify(&self.domain, self.hub)?;
        if let Some(held) = self.appointment(c.user).filter(|a| a.epoch == c.epoch).and_then(|a| a.credit.as_ref()) {
            let h = held.message;
            let newer = crate::contract::supersedes((c.nonce, c.cumulative_credit), (h.nonce, h.cumulative_credit));
            if !newer {
                return Err(Error::ProofMustSupersede);
            }
        }
        self.admit(c.user, now_ms)?;
        self.entry(c.user, c.epoch, now_ms).appointment.credit = Some(credit);
        Ok(())
    }

    /// Takes a user-signed debit (for the hub operator) if the user signed it, for her channel's
    /// epoch, newer than the one held (by total, then nonce).
    pub fn accept_debit(&mut self, debit: SignedDebit, chain: &ChannelRecord, now_ms: u64) -> Result<(), Error> {
        let d = debit.message;
        Self::check_channel(chain, d.epoch)?;
        debit.verify(&self.domain, d.user)?;
        if let Some(held) = self.appointment(d.user).filter(|a| a.epoch == d.epoch).and_then(|a| a.debit.as_ref()) {
            let h = held.message;
            if !crate::contract::supersedes((d.nonce, d.cumulative_debit), (h.nonce, h.cumulative_debit)) {
                return Err(Error::ProofMustSupersede);
            }
        }
        self.admit(d.user, now_ms)?;
        self.entry(d.user, d.epoch, now_ms).appointment.debit = Some(debit);
        Ok(())
    }

    /// Restores a debit from the tower's own log at start (see [`TowerBook::restore_credit`]).
    pub fn restore_debit(&mut self, debit: SignedDebit) {
        let d = debit.message;
        let e = self.restore_entry(d.user, d.epoch);
        if e.epoch > d.epoch {
            return;
        }
        let newer = e.debit.as_ref().is_none_or(|h| {
            crate::contract::supersedes((d.nonce, d.cumulative_debit), (h.message.nonce, h.message.cumulative_debit))
        });
        if newer {
            e.debit = Some(debit);
        }
    }

    /// Takes the user's fee offer to this tower (it replaces the one held) if she signed it,
    /// it names this tower and her channel's epoch, its share is at most the whole, and it is
    /// valid at `head`.
    pub fn accept_offer(
        &mut self,
        offer: SignedTowerFee,
        chain: &ChannelRecord,
        head: u64,
        now_ms: u64,
    ) -> Result<(), Error> {
        let o = offer.message;
        if o.tower != self.tower {
            return Err(Error::OnlyTower);
        }
        Self::check_channel(chain, o.epoch)?;
        if o.gain_share_bps > BPS {
            return Err(Error::TowerFeeShareTooLarge);
        }
        if o.valid_until_block < head {
            return Err(Error::AuthorizationExpired);
        }
        offer.verify(&self.domain, o.user)?;
        self.admit(o.user, now_ms)?;
        self.entry(o.user, o.epoch, now_ms).appointment.offer = Some(offer);
        Ok(())
    }

    /// Restores a credit from the tower's own log at start: it was checked when accepted, so
    /// only the order applies (no chain record, rate or user limit: a restart must not drop
    /// what was acknowledged).
    pub fn restore_credit(&mut self, credit: SignedCredit) {
        let c = credit.message;
        let e = self.restore_entry(c.user, c.epoch);
        if e.epoch > c.epoch {
            return;
        }
        let newer = e.credit.as_ref().is_none_or(|h| {
            crate::contract::supersedes((c.nonce, c.cumulative_credit), (h.message.nonce, h.message.cumulative_credit))
        });
        if newer {
            e.credit = Some(credit);
        }
    }

    /// Restores a fee offer from the tower's own log at start (see [`TowerBook::restore_credit`]).
    pub fn restore_offer(&mut self, offer: SignedTowerFee) {
        let o = offer.message;
        let e = self.restore_entry(o.user, o.epoch);
        if e.epoch == o.epoch {
            e.offer = Some(offer);
        }
    }

    fn restore_entry(&mut self, user: Address, epoch: u64) -> &mut Appointment {
        let e = self.entries.entry(user).or_insert_with(|| Entry {
            appointment: Appointment { credit: None, offer: None, debit: None, epoch },
            window_start_ms: 0,
            updates_in_window: 0,
        });
        if e.appointment.epoch < epoch {
            e.appointment = Appointment { credit: None, offer: None, debit: None, epoch };
        }
        &mut e.appointment
    }

    /// Stops watching `user` for epochs up to `epoch` (after its settlement).
    pub fn forget(&mut self, user: Address, epoch: u64) {
        if self.entries.get(&user).is_some_and(|e| e.appointment.epoch <= epoch) {
            self.entries.remove(&user);
        }
    }

    /// What `user`'s channel calls for at block `head`, by the contract's record `chain`.
    /// A close began at `settle_block − challenge_period_blocks`; the tower waits
    /// `grace_blocks` after it, but never past the middle of the period.
    pub fn action(&self, user: Address, chain: &ChannelRecord, head: u64, challenge_period_blocks: u64) -> TowerAction {
        let Some(a) = self.appointment(user) else { return TowerAction::Nothing };
        if chain.status != STATUS_CLOSING || chain.epoch != a.epoch {
            return TowerAction::Nothing;
        }
        if head >= chain.settle_block {
            return TowerAction::Settle;
        }
        let credit = a.credit.clone().filter(|c| c.message.cumulative_credit > chain.credit_total);
        let debit = a.debit.filter(|d| d.message.cumulative_debit > chain.debit_total);
        if credit.is_none() && debit.is_none() {
            return TowerAction::Nothing;
        }
        let began = chain.settle_block.saturating_sub(challenge_period_blocks);
        let middle = began + challenge_period_blocks / 2;
        let act_from = (began + self.terms.grace_blocks).min(middle);
        if head < act_from {
            return TowerAction::WaitUntil(act_from);
        }
        match (credit, debit) {
            (Some(credit), _) => {
                // The contract checks the offer at inclusion; leave a few blocks for it.
                let offer = a.offer.filter(|o| o.message.valid_until_block >= head + 3 && o.message.epoch == a.epoch);
                TowerAction::Submit { credit: Box::new(credit), offer: offer.map(Box::new) }
            }
            (None, Some(debit)) => TowerAction::SubmitDebit(Box::new(debit)),
            (None, None) => TowerAction::Nothing,
        }
    }

    /// The credit the tower holds that contradicts `leaf` of a checkpoint at ledger position
    /// `ledger_seq` (spec §5.16), if any: what it proves on chain for an offline user whose leaf
    /// misstates or leaves out a credit the hub signed her.
    pub fn contradicting_credit(&self, leaf: &crate::checkpoint::Leaf, ledger_seq: u64) -> Option<SignedCredit> {
        let credit = self.appointment(leaf.account)?.credit.as_ref()?;
        crate::checkpoint::credit_contradicts_leaf(&credit.message, leaf, ledger_seq).then(|| credit.clone())
    }

    /// The tower's signed statement of what it holds for `user`.
    pub fn receipt(&self, user: Address, key: &PrivateKey) -> Option<SignedTowerReceipt> {
        let a = self.appointment(user)?;
        let (nonce, total) =
            a.credit.as_ref().map_or((0, Amount::ZERO), |c| (c.message.nonce, c.message.cumulative_credit));
        let r = TowerReceipt { tower: self.tower, user, epoch: a.epoch, nonce, cumulative_credit: total };
        Some(Signed { signature: r.sign(&self.domain, key), message: r })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::Credit;
    use crate::B256;

    fn key(n: u8) -> PrivateKey {
        PrivateKey::from_bytes([n; 32]).expect("valid key")
    }

    struct F {
        domain: Domain,
        hub: PrivateKey,
        user: PrivateKey,
        tower: PrivateKey,
        book: TowerBook,
    }

    fn fixture() -> F {
        let domain = Domain { chain_id: 31337, verifying_contract: Address::repeat_byte(0x1F) };
        let (hub, user, tower) = (key(1), key(2), key(3));
        let book = TowerBook::new(domain, hub.address(), tower.address(), TowerTerms::default());
        F { domain, hub, user, tower, book }
    }

    fn credit(f: &F, signer: &PrivateKey, epoch: u64, nonce: u64, total: u128) -> SignedCredit {
        let c = Credit {
            user: f.user.address(),
            epoch,
            nonce,
            cumulative_credit: Amount(total),
            locked_amount: Amount::ZERO,
            locks_root: B256::ZERO,
        };
        SignedCredit::new(c, &f.domain, signer)
    }

    fn open(epoch: u64) -> ChannelRecord {
        ChannelRecord { status: 1, epoch, settle_block: 0, credit_total: Amount::ZERO, debit_total: Amount::ZERO }
    }

    fn offer(f: &F, signer: &PrivateKey, tower: Address, valid_until: u64) -> SignedTowerFee {
        let o = TowerFee {
            user: f.user.address(),
            epoch: 1,
            tower,
            max_fee: Amount(10),
            gain_share_bps: 1_000,
            valid_until_block: valid_until,
        };
        Signed::new(o, &f.domain, signer)
    }

    #[test]
    fn keeps_only_the_newest_credit_by_total_and_refuses_what_is_not_newer() {
        let mut f = fixture();
        let hub = f.hub.clone();
        f.book.accept_credit(credit(&f, &hub, 1, 1, 10), &open(1), 0).expect("first");
        f.book.accept_credit(credit(&f, &hub, 1, 2, 30), &open(1), 0).expect("newer");
        let older = credit(&f, &hub, 1, 9, 20);
        assert_eq!(
            f.book.accept_credit(older, &open(1), 0),
            Err(Error::ProofMustSupersede),
            "a higher nonce with a lower total is older"
        );
        let held = f.book.appointment(f.user.address()).and_then(|a| a.credit.clone()).expect("held");
        assert_eq!(held.message.cumulative_credit, Amount(30));
        assert_eq!(f.book.len(), 1, "one entry per user");
    }

    #[test]
    fn refuses_foreign_signatures_unknown_users_and_old_epochs() {
        let mut f = fixture();
        let (hub, user) = (f.hub.clone(), f.user.clone());
        assert_eq!(f.book.accept_credit(credit(&f, &user, 1, 1, 10), &open(1), 0), Err(Error::WrongSigner));
        let none = ChannelRecord::default();
        assert_eq!(f.book.accept_credit(credit(&f, &hub, 1, 1, 10), &none, 0), Err(Error::UnknownAccount));
        assert_eq!(f.book.accept_credit(credit(&f, &hub, 1, 1, 10), &open(2), 0), Err(Error::EpochMismatch));
        // Another contract's domain: the same hub key's signature does not verify here.
        let other = Domain { chain_id: 31337, verifying_contract: Address::repeat_byte(0x2F) };
        let c = credit(&f, &hub, 1, 1, 10).message;
        let foreign = SignedCredit::new(c, &other, &hub);
        assert_eq!(f.book.accept_credit(foreign, &open(1), 0), Err(Error::WrongSigner));
        assert!(f.book.is_empty(), "nothing refused is stored");
    }

    /// A credit with pending locks is held and defends by its running total: one with the same
    /// total and a newer nonce (a lock added) supersedes, one with a lower total does not.
    #[test]
    fn a_credit_with_pending_locks_is_held_by_its_total() {
        let mut f = fixture();
        let hub = f.hub.clone();
        f.book.accept_credit(credit(&f, &hub, 1, 1, 10), &open(1), 0).expect("first");
        let mut locked = credit(&f, &hub, 1, 2, 10).message;
        (locked.locked_amount, locked.locks_root) = (Amount(5), B256::repeat_byte(7));
        f.book.accept_credit(SignedCredit::new(locked, &f.domain, &hub), &open(1), 0).expect("a lock added");
        let held = f.book.appointment(f.user.address()).and_then(|a| a.credit.clone()).expect("held");
        assert_eq!((held.message.nonce, held.message.locked_amount), (2, Amount(5)));
        let mut lower = credit(&f, &hub, 1, 3, 9).message;
        lower.locked_amount = Amount(6);
        let lower = SignedCredit::new(lower, &f.domain, &hub);
        assert_eq!(f.book.accept_credit(lower, &open(1), 0), Err(Error::ProofMustSupersede), "totals decide");
    }

    #[test]
    fn the_per_user_rate_and_the_user_limit_are_enforced() {
        let mut f = fixture();
        f.book.terms = TowerTerms { grace_blocks: 2, max_users: 1, max_updates_per_user_per_minute: 2 };
        let hub = f.hub.clone();
        f.book.accept_credit(credit(&f, &hub, 1, 1, 1), &open(1), 0).expect("1");
        f.book.accept_credit(credit(&f, &hub, 1, 2, 2), &open(1), 1).expect("2");
        assert_eq!(f.book.accept_credit(credit(&f, &hub, 1, 3, 3), &open(1), 2), Err(Error::TowerQuotaExceeded));
        f.book.accept_credit(credit(&f, &hub, 1, 3, 3), &open(1), 60_000).expect("a new minute");
        let stranger = SignedCredit::new(
            Credit { user: Address::repeat_byte(9), ..credit(&f, &hub, 1, 1, 1).message },
            &f.domain,
            &hub,
        );
        assert_eq!(f.book.accept_credit(stranger, &open(1), 0), Err(Error::TowerFull));
    }

    #[test]
    fn offers_must_be_the_users_for_this_tower_valid_and_at_most_the_whole_gain() {
        let mut f = fixture();
        let (user, tower, hub) = (f.user.clone(), f.tower.address(), f.hub.clone());
        assert_eq!(f.book.accept_offer(offer(&f, &user, Address::ZERO, 100), &open(1), 5, 0), Err(Error::OnlyTower));
        assert_eq!(f.book.accept_offer(offer(&f, &hub, tower, 100), &open(1), 5, 0), Err(Error::WrongSigner));
        assert_eq!(f.book.accept_offer(offer(&f, &user, tower, 4), &open(1), 5, 0), Err(Error::AuthorizationExpired));
        let mut greedy = offer(&f, &user, tower, 100).message;
        greedy.gain_share_bps = BPS + 1;
        let greedy = Signed::new(greedy, &f.domain, &user);
        assert_eq!(f.book.accept_offer(greedy, &open(1), 5, 0), Err(Error::TowerFeeShareTooLarge));
        f.book.accept_offer(offer(&f, &user, tower, 100), &open(1), 5, 0).expect("valid offer");
    }

    #[test]
    fn a_close_is_left_to_the_wallet_for_the_grace_period_then_defended_then_settled() {
        let mut f = fixture();
        let (hub, user, tower) = (f.hub.clone(), f.user.clone(), f.tower.address());
        let u = user.address();
        f.book.accept_credit(credit(&f, &hub, 1, 2, 50), &open(1), 0).expect("credit");
        f.book.accept_offer(offer(&f, &user, tower, 1_000), &open(1), 0, 0).expect("offer");
        // A close began at block 100 with a 20-block period and credit 20 on record.
        let closing = ChannelRecord {
            status: STATUS_CLOSING,
            epoch: 1,
            settle_block: 120,
            credit_total: Amount(20),
            debit_total: Amount::ZERO,
        };
        assert_eq!(f.book.action(u, &open(1), 100, 20), TowerAction::Nothing, "open: nothing");
        assert_eq!(f.book.action(u, &closing, 101, 20), TowerAction::WaitUntil(102));
        match f.book.action(u, &closing, 102, 20) {
            TowerAction::Submit { credit, offer } => {
                assert_eq!(credit.message.cumulative_credit, Amount(50));
                assert!(offer.is_some(), "the offer is used while valid");
            }
            other => panic!("expected a submission, got {other:?}"),
        }
        let defended = ChannelRecord { credit_total: Amount(50), ..closing };
        assert_eq!(f.book.action(u, &defended, 110, 20), TowerAction::Nothing, "already defended: no gas");
        assert_eq!(f.book.action(u, &defended, 120, 20), TowerAction::Settle);
        f.book.forget(u, 1);
        assert_eq!(f.book.action(u, &defended, 120, 20), TowerAction::Nothing);
    }

    #[test]
    fn a_long_grace_is_cut_to_the_middle_of_the_period_and_a_stale_offer_is_not_used() {
        let mut f = fixture();
        f.book.terms.grace_blocks = 1_000;
        let (hub, user, tower) = (f.hub.clone(), f.user.clone(), f.tower.address());
        let u = user.address();
        f.book.accept_credit(credit(&f, &hub, 1, 1, 5), &open(1), 0).expect("credit");
        f.book.accept_offer(offer(&f, &user, tower, 111), &open(1), 0, 0).expect("offer");
        let closing = ChannelRecord {
            status: STATUS_CLOSING,
            epoch: 1,
            settle_block: 120,
            credit_total: Amount::ZERO,
            debit_total: Amount::ZERO,
        };
        assert_eq!(f.book.action(u, &closing, 105, 20), TowerAction::WaitUntil(110));
        match f.book.action(u, &closing, 110, 20) {
            TowerAction::Submit { offer, .. } => {
                assert!(offer.is_none(), "an offer expiring within 3 blocks is not used")
            }
            other => panic!("expected a submission, got {other:?}"),
        }
    }

    #[test]
    fn the_users_newest_debit_answers_an_exit_that_holds_an_older_one() {
        let mut f = fixture();
        let (user, hub) = (f.user.clone(), f.hub.clone());
        let u = user.address();
        let debit = |signer: &PrivateKey, nonce: u64, total: u128| {
            let d = crate::Debit {
                user: u,
                epoch: 1,
                nonce,
                cumulative_debit: Amount(total),
                locked_amount: Amount::ZERO,
                locks_root: crate::B256::ZERO,
                kind: 0,
                recipient: Address::repeat_byte(5),
                amount: Amount(total),
                payment_id: crate::B256::repeat_byte(nonce as u8),
            };
            SignedDebit::new(d, &f.domain, signer)
        };
        assert_eq!(
            f.book.accept_debit(debit(&hub, 1, 10), &open(1), 0),
            Err(Error::WrongSigner),
            "only her key signs her debits"
        );
        f.book.accept_debit(debit(&user, 2, 40), &open(1), 0).expect("her debit");
        assert_eq!(
            f.book.accept_debit(debit(&user, 9, 30), &open(1), 0),
            Err(Error::ProofMustSupersede),
            "lower total"
        );
        // She exits holding her debit of 10 on record: the tower answers with 40 after the grace.
        let exiting = ChannelRecord {
            status: STATUS_CLOSING,
            epoch: 1,
            settle_block: 120,
            credit_total: Amount::ZERO,
            debit_total: Amount(10),
        };
        assert_eq!(f.book.action(u, &exiting, 101, 20), TowerAction::WaitUntil(102));
        match f.book.action(u, &exiting, 102, 20) {
            TowerAction::SubmitDebit(d) => assert_eq!(d.message.cumulative_debit, Amount(40)),
            other => panic!("expected the debit, got {other:?}"),
        }
        let answered = ChannelRecord { debit_total: Amount(40), ..exiting };
        assert_eq!(f.book.action(u, &answered, 105, 20), TowerAction::Nothing);
    }

    #[test]
    fn a_new_epoch_voids_the_old_appointment_and_receipts_name_what_is_held() {
        let mut f = fixture();
        let hub = f.hub.clone();
        let tower_key = f.tower.clone();
        f.book.accept_credit(credit(&f, &hub, 1, 3, 70), &open(1), 0).expect("epoch 1");
        f.book.accept_credit(credit(&f, &hub, 2, 1, 5), &open(2), 0).expect("epoch 2");
        let a = f.book.appointment(f.user.address()).expect("held");
        assert_eq!(a.epoch, 2);
        let r = f.book.receipt(f.user.address(), &tower_key).expect("receipt");
        assert_eq!((r.message.epoch, r.message.nonce, r.message.cumulative_credit), (2, 1, Amount(5)));
        r.verify(&f.domain, tower_key.address()).expect("signed by the tower");
    }
}
