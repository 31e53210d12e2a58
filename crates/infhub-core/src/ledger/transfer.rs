//! Signed transfers (the sender signs every decrease, the hub alone every increase), their
//! refunds, purchases and co-signed withdrawals.

use super::{Account, ChainFunds, Ledger, Outcome, PaymentRef, Payout};
use crate::channel::{step, CheckedDebit, Input, Status};
use crate::messages::{Eip712Message, HubSigned, PaymentKind, SignedDebit, Withdrawal};
use crate::signature::{PrivateKey, Signature};
use crate::{Amount, Error};
use alloy_primitives::{Address, B256};

impl Ledger {
    pub(super) fn transfer(&mut self, debit: SignedDebit, checked: Option<CheckedDebit>) -> Result<Outcome, Error> {
        let m = debit.message;
        let key = (m.user, m.payment_id);
        let digest = checked.map_or_else(|| m.digest(&self.params.domain), |c| c.digest());
        if let Some(first_seq) = self.seen(&key, digest)? {
            return Ok(Outcome::Duplicate { first_seq });
        }
        if m.amount.is_zero() {
            return Err(Error::AmountMustNotBeZero);
        }
        if !self.accounts.contains_key(&m.user) {
            return Err(Error::UnknownAccount);
        }
        // A frozen payer's debit is refused unused; a frozen payee's payment is refunded.
        self.require_not_frozen(&m.user)?;
        match self.pay(debit, checked, digest) {
            Err(refused) if is_refundable(refused) => self.refund(debit, checked, digest, refused),
            other => other,
        }
    }

    /// Refuses a well-formed debit for `refused` by applying it and crediting its amount back to
    /// the payer in the same step. If the debit breaks any rule besides the balance (a bad
    /// signature, nonce or total, a closing channel), nothing happens and that rule is the answer.
    pub(super) fn refund(
        &mut self,
        debit: SignedDebit,
        checked: Option<CheckedDebit>,
        digest: B256,
        refused: Error,
    ) -> Result<Outcome, Error> {
        let m = debit.message;
        let params = self.channel_params();
        let payer = self.accounts.get(&m.user).expect("checked by the caller");
        // A refund that would overflow the credit total cannot be issued: refuse as is.
        let refund = HubSigned::unsealed(payer.channel.credit_at(m.amount, self.next_seq).map_err(|_| refused)?);
        let input = match checked {
            Some(c) => Input::CheckedDebitRefunded { debit: c, refund: refund.clone() },
            None => Input::DebitRefunded { debit, refund: refund.clone() },
        };
        let (after, _) = step(&payer.channel, &params, input)?;
        // The claim does not change (the debit and the refund cancel), so neither does liquidity.
        let seq = self.take_seq();
        self.replace_channel(m.user, after, ChainFunds::default(), false);
        self.recent_transfers.insert((m.user, m.payment_id), PaymentRef { digest, seq }, self.params.transfer_ids_kept);
        self.note_unsealed_credit(&refund);
        Ok(Outcome::Refunded { refused, refund })
    }

    /// Applies a payment, or refuses it with nothing changed.
    pub(super) fn pay(
        &mut self,
        debit: SignedDebit,
        checked: Option<CheckedDebit>,
        digest: B256,
    ) -> Result<Outcome, Error> {
        let m = debit.message;
        let key = (m.user, m.payment_id);
        self.check_amount(m.amount)?;
        let params = self.channel_params();
        let payer = self.accounts.get(&m.user).expect("checked by the caller");
        let kind = PaymentKind::from_u8(m.kind)?;
        let input = checked.map_or(Input::Debit(debit), Input::CheckedDebit);
        let (payer_after, _) = step(&payer.channel, &params, input)?;
        let payer_ob_before = payer.obligation();
        let payer_ob_after = Account { channel: payer_after.clone(), chain: payer.chain }.obligation();

        if kind == PaymentKind::Internal {
            self.require_not_frozen(&m.recipient)?;
        }
        let to_custodial = kind == PaymentKind::Internal && self.custodial.contains_key(&m.recipient);
        let (payee_update, payout) = match kind {
            PaymentKind::Internal if to_custodial => (None, None),
            PaymentKind::Internal => {
                let payee = self.accounts.get(&m.recipient).ok_or(Error::UnknownAccount)?;
                if payee.channel.status != Status::Open {
                    return Err(Error::RecipientNotOpen);
                }
                let credit = payee.channel.credit_at(m.amount, self.next_seq)?;
                let signed = HubSigned::unsealed(credit);
                let (payee_after, _) = step(&payee.channel, &params, Input::Credit(signed.clone()))?;
                let ob_before = payee.obligation();
                let ob_after = Account { channel: payee_after.clone(), chain: payee.chain }.obligation();
                (Some((payee_after, signed, ob_before, ob_after)), None)
            }
            PaymentKind::External => {
                if self.queued.len() >= self.params.max_queued_payouts {
                    return Err(Error::PayoutQueueFull);
                }
                // A halted contract refuses every payout (§5.16): the payer would be charged
                // for a payment that can never be made. Refunded like a full queue.
                if self.checkpoints.halted_at.is_some() {
                    return Err(Error::HubHalted);
                }
                (
                    None,
                    Some(Payout { payer: m.user, payment_id: m.payment_id, recipient: m.recipient, amount: m.amount }),
                )
            }
            // The channel machine refused these above; locks are not yet ledger commands.
            PaymentKind::LockAdd | PaymentKind::LockSettle | PaymentKind::LockDrop => {
                return Err(Error::LockKindMismatch)
            }
        };

        // Liquidity after the payment.
        let mut committed = self.obligations - payer_ob_before + payer_ob_after;
        if let Some((_, _, before, after)) = &payee_update {
            committed = committed - before + after;
        }
        let mut payouts_pending = self.payouts_pending;
        if let Some(p) = &payout {
            payouts_pending = payouts_pending.checked_add(p.amount)?;
        }
        let custodial_total = if to_custodial {
            self.custodial_total.checked_add(m.amount.0).ok_or(Error::AmountTooLarge)?
        } else {
            self.custodial_total
        };
        if self.committed(committed, payouts_pending.0, custodial_total) > self.reserve.0 {
            return Err(Error::ReserveInsufficient);
        }

        // Commit.
        let seq = self.take_seq();
        self.replace_channel(m.user, payer_after, ChainFunds::default(), false);
        let mut credit = None;
        if let Some((payee_after, signed, _, _)) = payee_update {
            self.replace_channel(m.recipient, payee_after, ChainFunds::default(), false);
            credit = Some(signed);
        }
        if let Some(p) = payout {
            self.queued.push_back(p);
            self.payouts_pending = payouts_pending;
        }
        if to_custodial {
            let c = self.custodial.get_mut(&m.recipient).expect("checked above");
            c.balance = c.balance.checked_add(m.amount)?;
            self.custodial_total = custodial_total;
        }
        if kind == PaymentKind::External {
            // Kept for good: a payout's on-chain batch id derives from its payment ids, so an id
            // must never be paid out twice.
            self.payments.insert(key, PaymentRef { digest, seq });
        } else {
            self.recent_transfers.insert(key, PaymentRef { digest, seq }, self.params.transfer_ids_kept);
        }
        let receipt = self.issue_receipt(&m, digest);
        if let Some(c) = &credit {
            self.note_unsealed_credit(c);
        }
        Ok(Outcome::Paid { receipt, credit, payout })
    }

    pub(super) fn purchase(&mut self, user: Address, amount: Amount, purchase_id: B256) -> Result<Outcome, Error> {
        // Purchases share the idempotency map, keyed by the hub's address and the purchase id.
        let key = (self.params.hub, purchase_id);
        let digest = purchase_digest(user, amount, purchase_id);
        if let Some(first_seq) = self.seen(&key, digest)? {
            return Ok(Outcome::Duplicate { first_seq });
        }
        self.check_amount(amount)?;
        self.require_not_frozen(&user)?;
        if let Some(c) = self.custodial.get(&user) {
            let balance = c.balance.checked_add(amount)?;
            let custodial_total = self.custodial_total.checked_add(amount.0).ok_or(Error::AmountTooLarge)?;
            if self.committed(self.obligations, self.payouts_pending.0, custodial_total) > self.reserve.0 {
                return Err(Error::ReserveInsufficient);
            }
            let seq = self.take_seq();
            self.custodial.get_mut(&user).expect("present").balance = balance;
            self.custodial_total = custodial_total;
            self.payments.insert(key, PaymentRef { digest, seq });
            return Ok(Outcome::CustodialCredited);
        }
        let params = self.channel_params();
        let acct = self.accounts.get(&user).ok_or(Error::UnknownAccount)?;
        let credit = acct.channel.credit_at(amount, self.next_seq)?;
        let signed = HubSigned::unsealed(credit);
        let (after, _) = step(&acct.channel, &params, Input::Credit(signed.clone()))?;
        let ob_after = Account { channel: after.clone(), chain: acct.chain }.obligation();
        let committed = self.obligations - acct.obligation() + ob_after;
        if self.committed(committed, self.payouts_pending.0, self.custodial_total) > self.reserve.0 {
            return Err(Error::ReserveInsufficient);
        }
        let seq = self.take_seq();
        self.replace_channel(user, after, ChainFunds::default(), false);
        self.payments.insert(key, PaymentRef { digest, seq });
        self.note_unsealed_credit(&signed);
        Ok(Outcome::Credited(signed))
    }

    pub(super) fn withdraw(
        &mut self,
        hub_key: &PrivateKey,
        w: Withdrawal,
        user_signature: Signature,
    ) -> Result<Outcome, Error> {
        let params = self.channel_params();
        let acct = self.accounts.get(&w.user).ok_or(Error::UnknownAccount)?;
        self.require_not_frozen(&w.user)?;
        let amount = w.cumulative_withdrawn.checked_sub_or(acct.channel.withdrawn, Error::WithdrawalMustIncrease)?;
        self.check_amount(amount)?;
        let input = Input::WithdrawalRequest { withdrawal: w, user_signature, block: self.block };
        let (after, _) = step(&acct.channel, &params, input)?;
        // A hold changes no obligation (obligations use the on-chain claim). If executed, the part
        // beyond the channel's funds comes from the reserve, and the obligation drops by as much.
        let from_reserve = amount.0.saturating_sub(acct.funds());
        if from_reserve > self.reserve.0 {
            return Err(Error::ReserveInsufficient);
        }
        self.take_seq();
        self.replace_channel(w.user, after, ChainFunds::default(), false);
        let hub_signature = w.sign(&self.params.domain, hub_key);
        Ok(Outcome::WithdrawalCoSigned { withdrawal: w, hub_signature })
    }
}

/// The refusals of a well-formed debit that are refunded (final): the state did not allow it.
/// Any other refusal (a bad signature, nonce or total, an unknown payer, a closing channel, a
/// reused payment id) changes nothing and leaves the debit unused.
pub(super) fn is_refundable(refused: Error) -> bool {
    matches!(
        refused,
        Error::InsufficientBalance
            | Error::ReserveInsufficient
            | Error::AmountTooLarge
            | Error::UnknownAccount
            | Error::RecipientNotOpen
            | Error::PayoutQueueFull
            | Error::HubHalted
            | Error::AccountFrozen
    )
}

/// The idempotency digest of a purchase.
pub(super) fn purchase_digest(user: Address, amount: Amount, purchase_id: B256) -> B256 {
    let mut buf = Vec::with_capacity(20 + 16 + 32);
    buf.extend_from_slice(user.as_slice());
    buf.extend_from_slice(&amount.0.to_be_bytes());
    buf.extend_from_slice(purchase_id.as_slice());
    alloy_primitives::keccak256(buf)
}
