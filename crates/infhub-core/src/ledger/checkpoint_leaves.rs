//! The ledger's liabilities as checkpoint leaves (spec §5.16): one per channel (its shortfall),
//! custodial account (its balance) and payout waiting to be paid, and one for the custodial
//! deposits no account claims yet. Their sum is exactly what the liquidity rule (§6.3) requires
//! the reserve to cover, less the announced reserve withdrawal, which the contract adds itself.
//! Sorted by (kind, account, payment) so the same ledger always gives the same leaves; the
//! caller shuffles them into the tree.

use super::{Account, Ledger};
use crate::channel::Status;
use crate::checkpoint::{salt, CheckpointDomain, Leaf, LeafKind};
use crate::{Address, Amount, B256};

fn channel_leaf(user: Address, a: &Account) -> Leaf {
    let ch = &a.channel;
    let (credit_nonce, credit_total) =
        ch.credit.as_ref().map_or((0, Amount::ZERO), |c| (c.message.nonce, c.message.cumulative_credit));
    let (debit_nonce, debit_total) =
        ch.debit.as_ref().map_or((0, Amount::ZERO), |d| (d.message.nonce, d.message.cumulative_debit));
    Leaf {
        account: user,
        kind: LeafKind::Channel,
        epoch: ch.epoch,
        deposited: ch.deposited,
        withdrawn: ch.withdrawn,
        credit_nonce,
        credit_total,
        debit_nonce,
        debit_total,
        liability: Amount(a.obligation()),
        salt: B256::ZERO,
    }
}

impl Ledger {
    /// Every liability of the ledger as a salted leaf of checkpoint `d` (see the module
    /// documentation). Settled channels owe nothing and have no leaf.
    pub fn checkpoint_leaves(&self, d: &CheckpointDomain, secret: &B256) -> Vec<Leaf> {
        let mut leaves: Vec<Leaf> = self
            .accounts()
            .filter(|(_, a)| a.channel.status != Status::Settled)
            .map(|(u, a)| channel_leaf(*u, a))
            .collect();
        leaves.extend(self.custodial_accounts().map(|c| Leaf::owing(c.account, LeafKind::Custodial, c.balance)));
        let payouts = self.queued_payouts().chain(self.payout_batches_in_flight().flat_map(|b| b.payouts.iter()));
        leaves.extend(payouts.map(|p| Leaf::owing(p.recipient, LeafKind::QueuedPayout, p.amount)));
        if !self.unattributed.is_zero() {
            leaves.push(Leaf::owing(Address::ZERO, LeafKind::Unattributed, self.unattributed));
        }
        leaves.sort_by_key(|l| (l.kind as u8, l.account, l.liability.0));
        for l in &mut leaves {
            // Two payouts to one recipient get one salt: their leaves differ by amount only,
            // which both already show to that recipient.
            l.salt = salt(secret, d, l.account);
        }
        leaves
    }

    /// What the leaves of [`Ledger::checkpoint_leaves`] sum to: the liquidity rule's
    /// commitments less the announced reserve withdrawal.
    pub fn checkpoint_liability(&self) -> u128 {
        self.obligations + self.payouts_pending.0 + self.custodial_total + self.unattributed.0
    }
}
