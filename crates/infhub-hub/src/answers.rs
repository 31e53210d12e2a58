//! A payment's answer, the same for its first request and for every retry.
//!
//! A new payment is answered from its own outcome. A retry of a payment the ledger remembers
//! (`Duplicate`) gets its first result back from the history, applied or refunded; so does a
//! retry of one the ledger has forgotten (it remembers only the newest transfer ids): its nonce
//! is spent, so the ledger refuses it (`nonce_must_increase`), and the history finds it by the
//! debit's nonce. A wallet that lost an answer can therefore always learn it, and a payment is
//! never applied twice.

use crate::ledger::Sequenced;
use infhub_core::ledger::Outcome;
use infhub_core::messages::{SignedCredit, SignedDebit};
use infhub_core::{Domain, Error};
use infhub_ledger::fs::Fs;
use infhub_ledger::history::{FirstResult, Heads, HistoryError, HistoryReader, PaymentResult};
use std::sync::Arc;

/// A payment applied: its result, and whether this request was a retry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied {
    /// The payer's result (receipt, payout).
    pub result: PaymentResult,
    /// True if the payment was applied by an earlier request.
    pub replayed: bool,
}

/// A payment not applied.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NotApplied {
    /// Refused by a rule; nothing changed (the debit may still be valid later).
    #[error(transparent)]
    Refused(Error),
    /// Refused for a reason of state and refunded: final (spec §5.4).
    #[error("refused ({refused}) and refunded")]
    Refunded {
        /// The rule's code.
        refused: String,
        /// The hub's credit of the amount back (boxed: refusals are common, refunds rare).
        refund: Box<SignedCredit>,
    },
    /// The history could not be read.
    #[error("history: {0}")]
    History(String),
    /// The ledger says the payment was applied but the history does not hold it (a bug).
    #[error("an applied payment is missing from the history")]
    Missing,
}

impl From<HistoryError> for NotApplied {
    fn from(e: HistoryError) -> Self {
        NotApplied::History(e.to_string())
    }
}

/// Where a retry's first result is read: the history reader and the payer's list heads.
pub type HistoryLookup<F> = (Arc<HistoryReader<F>>, Option<Heads>);

/// The answer to `signed` given what the ledger made of it. `history` is asked only for a
/// retry (it may take a lock, so a new payment is answered without it). A retry gets the first
/// answer only if it carries the payer's valid signature: the ledger recognizes a retry by its
/// payment id before any signature check, and a success answer to a forged resend would say
/// the forger's debit was accepted.
pub fn payment_answer<F: Fs>(
    history: impl FnOnce() -> HistoryLookup<F>,
    domain: &Domain,
    signed: &SignedDebit,
    (outcome, seq): Sequenced,
) -> Result<Applied, NotApplied> {
    let debit = &signed.message;
    let (payer, id) = (debit.user, debit.payment_id);
    let is_retry = matches!(outcome, Ok(Outcome::Duplicate { .. }) | Err(Error::NonceMustIncrease));
    if is_retry && signed.verify(domain, payer).is_err() {
        return Err(NotApplied::Refused(Error::InvalidSignature));
    }
    let first = match (outcome, seq) {
        (Ok(Outcome::Paid { receipt, payout, .. }), Some(seq)) => {
            return Ok(Applied { result: PaymentResult { seq, receipt, payout }, replayed: false })
        }
        (Ok(Outcome::Refunded { refused, refund }), _) => {
            return Err(NotApplied::Refunded { refused: refused.code().to_string(), refund: Box::new(refund) })
        }
        (Ok(Outcome::Duplicate { first_seq }), _) => {
            let (reader, heads) = history();
            match heads {
                Some(h) => reader.payment_at(&payer, h, &id, first_seq)?,
                None => None,
            }
        }
        (Err(Error::NonceMustIncrease), _) => {
            let (reader, heads) = history();
            let first = match heads {
                Some(h) => reader.payment_by_debit(&payer, h, &id, debit.epoch, debit.nonce)?,
                None => None,
            };
            match first {
                Some(f) if f.is_for(debit, domain) => Some(f),
                _ => return Err(NotApplied::Refused(Error::NonceMustIncrease)),
            }
        }
        (Err(e), _) => return Err(NotApplied::Refused(e)),
        (Ok(other), seq) => panic!("a transfer cannot end as {other:?} (seq {seq:?})"),
    };
    match first {
        Some(FirstResult::Paid(result)) => Ok(Applied { result, replayed: true }),
        Some(FirstResult::Refunded { refund, refused, .. }) => {
            Err(NotApplied::Refunded { refused, refund: Box::new(refund) })
        }
        None => Err(NotApplied::Missing),
    }
}
