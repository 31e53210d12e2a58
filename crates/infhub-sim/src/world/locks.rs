//! Payments by point lock inside each hub (spec §5.17b, §5.19), driven through the real hub and
//! wallet code: a wallet pays another's invoice by a locked transfer, the payee claims it with
//! the scalar its key derives, the payer settles with the scalar the hub learned, and a lock
//! nobody claims expires and is dropped by both senders. Messages are lost, duplicated and
//! reordered and hubs crash like everything else in the world; a lock debit is resent as is
//! until answered, and the node's answer to a retry of an applied one (its first receipt) is
//! reproduced here from the ledger.

use super::{Msg, ToHub, World};
use crate::world::receipt_of;
use infhub_core::channel::LockChange;
use infhub_core::ledger::{Command, Ledger, Outcome};
use infhub_core::point_lock::Lock;
use infhub_core::{Domain, Error, PrivateKey, B256};
use infhub_wallet::store::PendingLock;
use infhub_wallet::wallet_core::{HubAccount, PaymentAnswer};

/// Blocks a simulated invoice's lock lives (the payee's lock a reveal margin less): short, so
/// that locks expire and are dropped within a run.
pub(super) const SIM_LOCK_EXPIRY_BLOCKS: u64 = 40;

/// The ledger command a lock debit is sent as.
pub(super) fn lock_command(p: &PendingLock) -> Command {
    match (p.payee, p.change) {
        (Some(payee), LockChange::Add(lock)) => Command::LockedTransfer { debit: p.debit, lock, payee },
        _ => Command::DebitLock { debit: p.debit, change: p.change },
    }
}

/// The hub's answer to a lock debit, as the node gives it: the receipt, or for a retry of one
/// the ledger already applied (it holds that very debit as the newest) the receipt again, or
/// the refusal by name.
pub(super) fn lock_answer(
    ledger: &Ledger,
    key: &PrivateKey,
    domain: &Domain,
    p: &PendingLock,
    result: &Result<Outcome, Error>,
) -> PaymentAnswer {
    match result {
        Ok(Outcome::LockedTransferApplied { receipt, .. } | Outcome::DebitLockApplied { receipt, .. }) => {
            PaymentAnswer::Applied(receipt.clone())
        }
        Ok(other) => PaymentAnswer::Refused { code: "unexpected_outcome".into(), message: format!("{other:?}") },
        Err(e) => {
            let applied = ledger.account(&p.debit.message.user).and_then(|a| a.channel.debit) == Some(p.debit);
            if applied {
                PaymentAnswer::Applied(receipt_of(key, domain, &p.debit))
            } else {
                PaymentAnswer::Refused { code: e.code(), message: e.to_string() }
            }
        }
    }
}

impl World {
    /// Wallet `i` of hub `s` pays an invoice of another of that hub's wallets by point lock.
    pub(super) fn pay_by_invoice(&mut self, s: usize, i: usize) {
        let Some(j) =
            self.random_wallet(s, |w| w.channel().is_some_and(|c| c.status == infhub_core::channel::Status::Open))
        else {
            return;
        };
        if j == i {
            return;
        }
        let Some(block) = self.sites[s].wallets[i].channel().map(|c| c.block) else { return };
        let invoice_id = B256::from(self.rng.bytes32());
        let lock = Lock {
            lock_id: invoice_id,
            amount: self.some_amount(s, i),
            expiry_block: block + SIM_LOCK_EXPIRY_BLOCKS,
            point: self.sites[s].wallets[j].invoice_point(invoice_id),
        };
        let payee = self.sites[s].wallets[j].address();
        if let Some(p) = self.sites[s].wallets[i].sign_lock(LockChange::Add(lock), Some(payee)) {
            self.sites[s].wallets[i].pending_sent_at = self.step;
            self.report.invoices_paid += 1;
            self.send(Msg::ToHub(s, ToHub::Lock(i, p)));
        }
    }

    /// After wallet `i` of hub `s` synced: it claims the hub's locks its invoices open, and
    /// settles or drops one of its own when nothing else is pending, as `balance` does.
    /// A hub's link holds back settling the locks whose forward has not yet recorded the scalar
    /// upstream (the node's `hold_locks`).
    pub(super) fn after_sync_locks(&mut self, s: usize, i: usize, account: &HubAccount) {
        let held = self.sites[s].wallets[i].link_of.map(|owner| self.held_by_forwards(owner)).unwrap_or_default();
        let mut account = account.clone();
        account.outgoing_scalars.retain(|(id, _)| !held.contains(id));
        let w = &mut self.sites[s].wallets[i];
        let (claims, next) = w.lock_actions(&account);
        let change = next.filter(|_| w.pending().is_none() && w.pending_lock().is_none());
        let signed = change.and_then(|c| w.sign_lock(c, None));
        if signed.is_some() {
            w.pending_sent_at = self.step;
        }
        for (lock_id, scalar) in claims {
            self.report.locks_claimed += 1;
            self.send(Msg::ToHub(s, ToHub::Reveal(i, lock_id, scalar)));
        }
        if let Some(p) = signed {
            self.send(Msg::ToHub(s, ToHub::Lock(i, p)));
        }
    }
}
