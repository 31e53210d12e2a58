//! Custodial accounts (seed 000 §3): the platform holds their keys, the ledger is their truth,
//! and they move without user signatures; their balances are backed one-for-one by the reserve.

use super::{Account, ChainFunds, Ledger, Outcome, PaymentRef, Payout};
use crate::channel::{step, Input, Status};
use crate::messages::{HubSigned, SignedCredit};
use crate::{Amount, Error};
use alloy_primitives::{Address, B256};
use serde::{Deserialize, Serialize};

/// A custodial account: the platform holds the key, the ledger holds the balance.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CustodialAccount {
    /// Its address: [`custodial_address`] of the platform's user id.
    pub account: Address,
    /// What the account holds.
    pub balance: Amount,
    /// Σ confirmed on-chain deposits for it (`CustodialDeposited`).
    pub deposited_on_chain: Amount,
    /// keccak256 of its API key (the key itself is never stored).
    pub api_key_hash: B256,
    /// The channel its balance was converted into, once converted.
    pub linked_channel: Option<Address>,
}

/// Longest platform user id of a custodial account, in bytes.
pub const MAX_USER_ID_BYTES: usize = 64;
/// Most transfers in one custodial batch.
pub const MAX_CUSTODIAL_BATCH: usize = 8_192;

/// The address of the custodial account for the platform's `user_id`: the last 20 bytes of
/// `keccak256("infhub.custodial:" ‖ user_id)`. Users of channels pay it like any account.
pub fn custodial_address(user_id: &str) -> Address {
    let mut buf = b"infhub.custodial:".to_vec();
    buf.extend_from_slice(user_id.as_bytes());
    Address::from_slice(&alloy_primitives::keccak256(buf)[12..])
}

/// A platform user id must be 1..=64 bytes of `[A-Za-z0-9._@-]`.
pub fn valid_user_id(user_id: &str) -> bool {
    !user_id.is_empty()
        && user_id.len() <= MAX_USER_ID_BYTES
        && user_id.bytes().all(|b| b.is_ascii_alphanumeric() || b"._@-".contains(&b))
}

/// One custodial movement in a batch (no user signature: the platform authorized it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct CustodialTransfer {
    /// The custodial account paying.
    #[cfg_attr(feature = "schema", schemars(with = "crate::schema::AddressSchema"))]
    pub from: Address,
    /// A custodial account, or a channel account (which receives a hub-signed credit).
    #[cfg_attr(feature = "schema", schemars(with = "crate::schema::AddressSchema"))]
    pub to: Address,
    /// How much.
    pub amount: Amount,
    /// The platform's idempotency key.
    #[cfg_attr(feature = "schema", schemars(with = "crate::schema::WordSchema"))]
    pub transfer_id: B256,
}

/// The result of one transfer of a custodial batch. In JSON it is tagged by a `result` field
/// (`{"result": "moved", "credit": ...}`); in the binary log by the variant's index, because
/// bincode cannot read an internally tagged enum back (see [`custodial_result_serde`]).
// A credit (about 220 bytes) is the common case; boxing it would allocate per transfer.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CustodialResult {
    /// Applied; a channel recipient got this credit.
    Moved {
        /// The channel recipient's new credit.
        credit: Option<SignedCredit>,
    },
    /// Applied before, at this sequence number.
    Duplicate {
        /// Sequence number of the first application.
        first_seq: u64,
    },
    /// Refused by this rule; nothing moved.
    Rejected {
        /// The rule.
        error: Error,
    },
}

/// The two encodings of [`CustodialResult`]: one per kind of format.
mod custodial_result_serde {
    use super::{CustodialResult, Error, SignedCredit};
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    macro_rules! mirror {
        ($name:ident, $($attr:meta),*) => {
            #[allow(clippy::large_enum_variant)]
            #[derive(Serialize, Deserialize)]
            $(#[$attr])*
            enum $name {
                Moved { credit: Option<SignedCredit> },
                Duplicate { first_seq: u64 },
                Rejected { error: Error },
            }

            impl From<$name> for CustodialResult {
                fn from(r: $name) -> Self {
                    match r {
                        $name::Moved { credit } => CustodialResult::Moved { credit },
                        $name::Duplicate { first_seq } => CustodialResult::Duplicate { first_seq },
                        $name::Rejected { error } => CustodialResult::Rejected { error },
                    }
                }
            }

            impl From<CustodialResult> for $name {
                fn from(r: CustodialResult) -> Self {
                    match r {
                        CustodialResult::Moved { credit } => $name::Moved { credit },
                        CustodialResult::Duplicate { first_seq } => $name::Duplicate { first_seq },
                        CustodialResult::Rejected { error } => $name::Rejected { error },
                    }
                }
            }
        };
    }
    mirror!(Tagged, serde(rename_all = "camelCase", tag = "result"));
    mirror!(Indexed, serde(rename_all = "camelCase"));

    impl Serialize for CustodialResult {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            if s.is_human_readable() {
                Tagged::from(self.clone()).serialize(s)
            } else {
                Indexed::from(self.clone()).serialize(s)
            }
        }
    }

    impl<'de> Deserialize<'de> for CustodialResult {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            if d.is_human_readable() {
                Tagged::deserialize(d).map(Into::into)
            } else {
                Indexed::deserialize(d).map(Into::into)
            }
        }
    }
}

impl Ledger {
    pub(super) fn custodial_transfer(&mut self, seq: u64, t: CustodialTransfer) -> CustodialResult {
        match self.try_custodial_transfer(seq, t) {
            Ok(r) => r,
            Err(error) => CustodialResult::Rejected { error },
        }
    }

    pub(super) fn try_custodial_transfer(&mut self, seq: u64, t: CustodialTransfer) -> Result<CustodialResult, Error> {
        let key = (t.from, t.transfer_id);
        let digest = custodial_digest(b'T', t.from, t.to, t.amount, t.transfer_id);
        if let Some(first_seq) = self.seen(&key, digest)? {
            return Ok(CustodialResult::Duplicate { first_seq });
        }
        self.check_amount(t.amount)?;
        if t.to == t.from {
            return Err(Error::RecipientMustNotBeSender);
        }
        self.require_not_frozen(&t.from)?;
        self.require_not_frozen(&t.to)?;
        let from = self.custodial.get(&t.from).ok_or(Error::NotCustodial)?;
        let from_after = from.balance.checked_sub_or(t.amount, Error::InsufficientBalance)?;
        let credit = if self.custodial.contains_key(&t.to) {
            let to = self.custodial.get_mut(&t.to).expect("present");
            to.balance = to.balance.checked_add(t.amount)?;
            None
        } else {
            Some(self.credit_channel(t.to, t.amount, t.amount.0)?)
        };
        self.custodial.get_mut(&t.from).expect("present").balance = from_after;
        if credit.is_some() {
            self.custodial_total -= t.amount.0;
        }
        self.payments.insert(key, PaymentRef { digest, seq });
        Ok(CustodialResult::Moved { credit })
    }

    /// Credits `amount` into the open channel of `user`, paid for by `released` of custodial
    /// balance (which the caller removes). Checks liquidity; on error nothing changed.
    pub(super) fn credit_channel(
        &mut self,
        user: Address,
        amount: Amount,
        released: u128,
    ) -> Result<SignedCredit, Error> {
        let params = self.channel_params();
        let acct = self.accounts.get(&user).ok_or(Error::UnknownAccount)?;
        if acct.channel.status != Status::Open {
            return Err(Error::RecipientNotOpen);
        }
        let credit = acct.channel.credit_at(amount, self.next_seq)?;
        let signed = HubSigned::unsealed(credit);
        let (after, _) = step(&acct.channel, &params, Input::Credit(signed.clone()))?;
        let ob_after = Account { channel: after.clone(), chain: acct.chain }.obligation();
        let obligations = self.obligations - acct.obligation() + ob_after;
        if self.committed(obligations, self.payouts_pending.0, self.custodial_total - released) > self.reserve.0 {
            return Err(Error::ReserveInsufficient);
        }
        self.replace_channel(user, after, ChainFunds::default(), false);
        self.note_unsealed_credit(&signed);
        Ok(signed)
    }

    pub(super) fn custodial_withdraw(
        &mut self,
        from: Address,
        recipient: Address,
        amount: Amount,
        transfer_id: B256,
    ) -> Result<Outcome, Error> {
        let key = (from, transfer_id);
        let digest = custodial_digest(b'W', from, recipient, amount, transfer_id);
        if let Some(first_seq) = self.seen(&key, digest)? {
            return Ok(Outcome::Duplicate { first_seq });
        }
        self.check_amount(amount)?;
        if recipient == Address::ZERO {
            return Err(Error::RecipientMustNotBeZero);
        }
        self.require_not_frozen(&from)?;
        let c = self.custodial.get(&from).ok_or(Error::NotCustodial)?;
        let balance = c.balance.checked_sub_or(amount, Error::InsufficientBalance)?;
        if self.queued.len() >= self.params.max_queued_payouts {
            return Err(Error::PayoutQueueFull);
        }
        // A halted contract refuses every payout: the withdrawal could never be paid.
        if self.checkpoints.halted_at.is_some() {
            return Err(Error::HubHalted);
        }
        let payouts_pending = self.payouts_pending.checked_add(amount)?;
        let seq = self.take_seq();
        self.custodial.get_mut(&from).expect("present").balance = balance;
        self.custodial_total -= amount.0;
        let payout = Payout { payer: from, payment_id: transfer_id, recipient, amount };
        self.queued.push_back(payout);
        self.payouts_pending = payouts_pending;
        self.payments.insert(key, PaymentRef { digest, seq });
        Ok(Outcome::CustodialPayoutQueued(payout))
    }

    pub(super) fn convert_to_channel(
        &mut self,
        account: Address,
        user: Address,
        transfer_id: B256,
    ) -> Result<Outcome, Error> {
        let c = *self.custodial.get(&account).ok_or(Error::NotCustodial)?;
        let key = (account, transfer_id);
        let digest = custodial_digest(b'C', account, user, c.balance, transfer_id);
        if let Some(first_seq) = self.seen(&key, digest)? {
            return Ok(Outcome::Duplicate { first_seq });
        }
        if c.balance.is_zero() {
            return Err(Error::AmountMustNotBeZero);
        }
        self.require_not_frozen(&account)?;
        self.require_not_frozen(&user)?;
        let credit = self.credit_channel(user, c.balance, c.balance.0)?;
        let seq = self.take_seq();
        self.custodial_total -= c.balance.0;
        let entry = self.custodial.get_mut(&account).expect("present");
        entry.balance = Amount::ZERO;
        entry.linked_channel = Some(user);
        self.payments.insert(key, PaymentRef { digest, seq });
        Ok(Outcome::Converted { credit, amount: c.balance })
    }
}

/// The idempotency digest of a custodial movement.
pub(super) fn custodial_digest(kind: u8, from: Address, to: Address, amount: Amount, id: B256) -> B256 {
    let mut buf = Vec::with_capacity(1 + 20 + 20 + 16 + 32);
    buf.push(kind);
    buf.extend_from_slice(from.as_slice());
    buf.extend_from_slice(to.as_slice());
    buf.extend_from_slice(&amount.0.to_be_bytes());
    buf.extend_from_slice(id.as_slice());
    alloy_primitives::keccak256(buf)
}
