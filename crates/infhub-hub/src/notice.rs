//! What the hub pushes to one account's subscribers (the node's WebSocket stream), typed.
//!
//! Notices come from two places: a group commit (receipts, credits, confirmed chain events and
//! the channel effects they caused) and the chain duties (a deposit seen before it is
//! confirmed, or reorganised away; a payout's progress; the fate of a transaction about the
//! account). They serialize to the stream's JSON: an object tagged by `type`.

use crate::status::PayoutStatus;
use infhub_core::channel::Effect;
use infhub_core::ledger::{ChainEvent, Command, Outcome, Payout};
use infhub_core::messages::{SignedCredit, SignedReceipt};
use infhub_core::{Address, Amount, B256};
use infhub_ledger::LogRecord;
use serde::Serialize;

/// A notice for one account.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Notice {
    /// The account it is for.
    pub user: Address,
    /// What happened.
    pub body: NoticeBody,
}

/// What happened, as the stream sends it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case", rename_all_fields = "camelCase")]
pub enum NoticeBody {
    /// The payer's receipt of an applied payment.
    Receipt {
        /// Ledger sequence number.
        seq: u64,
        /// The hub's receipt.
        receipt: SignedReceipt,
        /// The queued payout (external payments).
        payout: Option<Payout>,
    },
    /// A new credit: a payment received, a purchase or a refund.
    Credit {
        /// Ledger sequence number.
        seq: u64,
        /// The hub-signed credit.
        credit: SignedCredit,
        /// The payer (payments).
        #[serde(skip_serializing_if = "Option::is_none")]
        from: Option<Address>,
        /// The payer's payment id (payments).
        #[serde(skip_serializing_if = "Option::is_none")]
        payment_id: Option<B256>,
        /// The amount received (payments).
        #[serde(skip_serializing_if = "Option::is_none")]
        amount: Option<Amount>,
        /// A purchase from the operator.
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        purchase: bool,
    },
    /// A confirmed contract event about the account.
    Chain {
        /// Ledger sequence number.
        seq: u64,
        /// Its block.
        block: u64,
        /// The event.
        event: ChainEvent,
    },
    /// A channel effect of a confirmed event or block.
    Status {
        /// Ledger sequence number.
        seq: u64,
        /// The effect.
        effect: Effect,
    },
    /// A deposit mined but not yet confirmed.
    DepositSeen {
        /// Its block.
        block: u64,
        /// The running total it would bring.
        total_deposited: Amount,
    },
    /// A deposit seen earlier was reorganised away.
    DepositReorgedOut {
        /// The block it was in.
        block: u64,
    },
    /// An external payout moved on.
    Payout {
        /// The payer's payment id.
        payment_id: B256,
        /// Where it stands now.
        status: PayoutStatus,
    },
    /// A hub transaction about the account was mined.
    Transaction {
        /// What it was for.
        purpose: &'static str,
        /// Its hash.
        tx_hash: B256,
        /// Its block.
        block: u64,
        /// False if it reverted.
        success: bool,
    },
}

impl Notice {
    /// The stream's JSON of the body.
    pub fn json(&self) -> serde_json::Value {
        serde_json::to_value(&self.body).expect("notices serialize")
    }
}

/// Every notice one logged record makes, in order.
pub fn notices_of(r: &LogRecord, out: &mut Vec<Notice>) {
    let seq = r.seq;
    match (&r.command, &r.outcome) {
        (Command::Transfer(d), Outcome::Paid { receipt, credit, payout }) => {
            let m = &d.message;
            out.push(Notice {
                user: m.user,
                body: NoticeBody::Receipt { seq, receipt: receipt.clone(), payout: *payout },
            });
            if let Some(c) = credit {
                out.push(Notice {
                    user: m.recipient,
                    body: NoticeBody::Credit {
                        seq,
                        credit: c.clone(),
                        from: Some(m.user),
                        payment_id: Some(m.payment_id),
                        amount: Some(m.amount),
                        purchase: false,
                    },
                });
            }
        }
        (Command::Purchase { user, .. }, Outcome::Credited(c)) => out.push(Notice {
            user: *user,
            body: NoticeBody::Credit {
                seq,
                credit: c.clone(),
                from: None,
                payment_id: None,
                amount: None,
                purchase: true,
            },
        }),
        (Command::Chain { at, event }, Outcome::Applied(effects)) => {
            if let Some(user) = event_user(event) {
                out.push(Notice { user, body: NoticeBody::Chain { seq, block: at.block, event: *event } });
            }
            effects_of(seq, effects, out);
        }
        (Command::Block(_), Outcome::Applied(effects)) => effects_of(seq, effects, out),
        _ => {}
    }
}

fn effects_of(seq: u64, effects: &[(Address, Effect)], out: &mut Vec<Notice>) {
    for (user, effect) in effects {
        out.push(Notice { user: *user, body: NoticeBody::Status { seq, effect: effect.clone() } });
    }
}

/// The account a chain event is about.
pub fn event_user(e: &ChainEvent) -> Option<Address> {
    e.account()
}
