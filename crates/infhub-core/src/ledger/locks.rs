//! The hub's ledger and point locks (spec §5.17b): a user's lock debits (her outgoing locks,
//! owed to the hub) and the hub's lock credits (its locks to a user), applied through the
//! channel machine's lock rules at the ledger's confirmed block. The liquidity rule counts the
//! hub's pending locks to a user as owed until they settle or drop: if the user closes, the
//! contract escrows them from the reserve (§5.11a), so the reserve must be able to cover them.
//!
//! The ledger does not decide when a lock is cancelled or settled: the caller (forwarding, or
//! the hub's API for a payee revealing her scalar) does, and the machine checks the rules.

use super::seal::{ProofKey, UnsealedProof};
use super::{Account, ChainFunds, Ledger, Outcome};
use crate::channel::{step, ChannelState, Input, LockChange};
use crate::messages::{Eip712Message, HubSigned, Receipt, SignedDebit};
use crate::{Address, Error};

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
    /// A user's cancel before the expiry needs the hub's agreement, which only forwarding can
    /// give (its downstream failed; not built), so it is refused as `LockNotExpired` for now:
    /// otherwise a payer could take back a lock the hub had already forwarded.
    pub(super) fn debit_lock(&mut self, debit: SignedDebit, change: LockChange) -> Result<Outcome, Error> {
        if matches!(change, LockChange::Cancel { .. }) {
            return Err(Error::LockNotExpired);
        }
        let m = debit.message;
        self.check_amount(m.amount)?;
        let now = self.channel_now(&m.user)?;
        let (after, _) = step(&now, &self.channel_params(), Input::DebitLock { debit, change })?;
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
        let digest = m.digest(&self.params.domain);
        let receipt = HubSigned::unsealed(Receipt {
            payer: m.user,
            epoch: m.epoch,
            debit_nonce: m.nonce,
            payment_id: m.payment_id,
            debit_digest: digest,
        });
        self.unsealed.push(UnsealedProof {
            digest: receipt.message.digest(&self.params.domain),
            key: ProofKey::Receipt { payer: m.user, debit_nonce: m.nonce },
        });
        Ok(Outcome::DebitLockApplied { receipt, change })
    }

    /// [`super::Command::CreditLock`]: the hub's change to its locks to `user`. Adding one must
    /// fit the liquidity rule with the lock counted as owed (`ReserveInsufficient`); settling
    /// needs the scalar (the user revealed it to claim); dropping needs the expiry past, or a
    /// cancel the caller decided.
    pub(super) fn credit_lock(&mut self, user: Address, change: LockChange) -> Result<Outcome, Error> {
        if let LockChange::Add(lock) = change {
            self.check_amount(lock.amount)?;
        }
        let params = self.channel_params();
        let now = self.channel_now(&user)?;
        let credit = HubSigned::unsealed(now.next_lock_credit(&params, &change, self.next_seq)?);
        let (after, _) = step(&now, &params, Input::CreditLock { credit: credit.clone(), change })?;
        let acct = &self.accounts[&user];
        let ob_after = Account { channel: after.clone(), chain: acct.chain }.obligation();
        let committed = self.obligations - acct.obligation() + ob_after;
        if self.committed(committed, self.payouts_pending.0, self.custodial_total) > self.reserve.0 {
            return Err(Error::ReserveInsufficient);
        }
        self.take_seq();
        self.replace_channel(user, after, ChainFunds::default(), false);
        self.note_unsealed_credit(&credit);
        Ok(Outcome::CreditLockIssued { credit, change })
    }
}
