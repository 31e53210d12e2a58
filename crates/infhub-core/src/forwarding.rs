//! A forwarding hub's record of each payment it forwards, and the rule that moves it on
//! (spec §5.23a): the one machine the node's link task and the simulator's hubs both run.
//!
//! A hub that forwards a payer's lock to the next hub writes a [`Forward`] before the payer's
//! lock is committed (an intent), marks it sent before it pays over its link, and then, each
//! round, looks at two things only: whether the payer's lock is still pending in its ledger and
//! what became of its own lock downstream (its scalar learned, still live, or gone unclaimed).
//! [`next_step`] turns those into the one thing to do. It reads no clock and does no IO: the
//! caller observes, carries the step out, and records the new state durably before acting on
//! it, so a crash at any point redoes at most the step it was in.

use crate::invoice::SignedInvoice;
use crate::point_lock::Scalar;
use crate::sealed_step::SealedStep;
use crate::{Amount, Error};
use alloy_primitives::{Address, FixedBytes, B256};
use serde::{Deserialize, Serialize};

/// How many blocks before the payer's lock expires the next hop's lock expires: time for the
/// forwarding hub, once the next hub gives it the scalar, to settle the payer's lock or reveal
/// the scalar on chain (spec §5.23a).
pub const FORWARD_EXPIRY_DELTA_BLOCKS: u64 = 2 * crate::channel::LOCK_REVEAL_MARGIN_BLOCKS;
/// Blocks the next hop's lock must still have after the payee's own reveal margin.
pub const FORWARD_MIN_REMAINING_BLOCKS: u64 = 10;

/// Where a forwarded payment is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ForwardState {
    /// Recorded before the payer's lock is committed: forwarded at the next round if the lock
    /// is pending in the ledger then (the hub stopped in between), forgotten if not.
    Intent,
    /// Sent to the next hub (the link's wallet keeps its lock pending until answered).
    Sent,
    /// The next hub refused, or its lock is gone unclaimed: the payer may cancel hers (spec
    /// §5.23a); kept until her lock is gone.
    Failed,
    /// Done: the scalar is in the ledger, or the payer's lock is gone.
    Finished,
}

/// A payment forwarded over a link, as the hub records it (one record per change).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Forward {
    /// The payer whose lock at this hub funds the forward.
    pub payer: Address,
    /// The lock's id (the invoice's id), the same at every hop.
    pub lock_id: B256,
    /// The payee's invoice.
    pub invoice: SignedInvoice,
    /// The expiry of this hub's lock to the next hub.
    pub next_expiry_block: u64,
    /// Where it is.
    pub state: ForwardState,
    /// This hop's tweak: the downstream point is the payer's lock's plus `tweak·G`, and the
    /// scalar learned downstream minus it opens the payer's lock (spec §5.23b).
    #[serde(default)]
    pub tweak: Option<Scalar>,
    /// When the next hub forwards further: what this hub asks of it.
    #[serde(default)]
    pub onward: Option<Onward>,
}

/// What a hop asks the next hub to forward (spec §5.23b).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Onward {
    /// The downstream lock's point, compressed.
    pub lock_point: FixedBytes<33>,
    /// The downstream lock's amount.
    pub amount: Amount,
    /// The steps the next hub and those after it take, each sealed to its hub (spec §5.23d).
    pub route: Vec<SealedStep>,
}

/// What became of this hub's own lock at the next hub, as observed this round.
#[derive(Clone, Copy, Debug, Default)]
pub struct Downstream {
    /// The scalar that opened it (the next hub's word, or the point registry's).
    pub scalar: Option<Scalar>,
    /// Whether it is still pending: held by the next hub, or signed and not yet answered.
    pub live: bool,
}

/// The one thing to do next for a forward.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ForwardStep {
    /// Record it sent, then pay over the link (an intent whose payer's lock was committed).
    Send,
    /// Record the scalar that opens the payer's lock in the ledger (`LockScalarLearned`),
    /// then record the forward finished.
    Learn(Scalar),
    /// Record it failed: the payer may cancel her lock.
    Fail,
    /// Record it finished (the payer's lock is gone, or the intent was never committed).
    Finish,
    /// Nothing yet.
    Wait,
}

/// The rule that moves a forward on (spec §5.23a): an intent whose payer's lock the ledger
/// holds is sent, one it does not hold is forgotten; a sent one whose scalar the next hub
/// learned is recorded upstream (minus this hop's tweak), one whose lock downstream is gone
/// unclaimed failed; a failed one waits for the payer's cancel; any whose payer's lock is gone
/// is finished. `ScalarOutOfRange` when the downstream scalar steps upstream to nothing.
pub fn next_step(f: &Forward, payer_lock_pending: bool, downstream: &Downstream) -> Result<ForwardStep, Error> {
    if !payer_lock_pending {
        return Ok(ForwardStep::Finish);
    }
    Ok(match f.state {
        ForwardState::Intent => ForwardStep::Send,
        ForwardState::Sent => match (&downstream.scalar, f.tweak) {
            (Some(s), None) => ForwardStep::Learn(*s),
            (Some(s), Some(tweak)) => ForwardStep::Learn(s.upstream(&tweak)?),
            (None, _) if !downstream.live => ForwardStep::Fail,
            (None, _) => ForwardStep::Wait,
        },
        ForwardState::Failed => ForwardStep::Wait,
        ForwardState::Finished => ForwardStep::Finish,
    })
}

/// The expiry of the next hop's lock for a payer's lock expiring at `payer_expiry_block`,
/// with the link's confirmed block at `link_block`: [`FORWARD_EXPIRY_DELTA_BLOCKS`] earlier,
/// and `ExpiryTooSoon` unless that leaves the payee its reveal margin and
/// [`FORWARD_MIN_REMAINING_BLOCKS`] more.
pub fn next_expiry_block(payer_expiry_block: u64, link_block: u64) -> Result<u64, Error> {
    let next = payer_expiry_block.saturating_sub(FORWARD_EXPIRY_DELTA_BLOCKS);
    let soonest = link_block
        .saturating_add(crate::channel::LOCK_REVEAL_MARGIN_BLOCKS)
        .saturating_add(FORWARD_MIN_REMAINING_BLOCKS);
    if next <= soonest {
        return Err(Error::ExpiryTooSoon);
    }
    Ok(next)
}

/// The intent of a forward straight to the payee's hub (no route): the invoice paid over the
/// link with the earlier expiry, no tweak.
pub fn direct_forward(
    payer: Address,
    lock: &crate::point_lock::Lock,
    invoice: &SignedInvoice,
    next_expiry_block: u64,
) -> Forward {
    Forward {
        payer,
        lock_id: lock.lock_id,
        invoice: invoice.clone(),
        next_expiry_block,
        state: ForwardState::Intent,
        tweak: None,
        onward: None,
    }
}

/// Why a hop refuses the step the payer sealed for it (spec §5.23b); the node names each.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StepRefusal {
    /// A rule of the core by its name (`lock_mismatch`, `point_chain_broken`,
    /// `expiry_too_soon`, the invoice's).
    Rule(Error),
    /// The incoming lock does not cover the outgoing amount and this hop's fee
    /// (`fee_insufficient`).
    FeeInsufficient {
        /// The incoming lock's amount (or, on the last step, the outgoing one).
        lock: Amount,
        /// What it must cover.
        wanted: Amount,
    },
    /// More steps than a route has (`malformed_request`).
    RouteTooLong(usize),
}

impl From<Error> for StepRefusal {
    fn from(e: Error) -> StepRefusal {
        StepRefusal::Rule(e)
    }
}

/// The lock a hop is asked to forward along a route, as its payer (a user, or the previous
/// hop's link) sent it.
#[derive(Clone, Copy, Debug)]
pub struct IncomingLock<'a> {
    /// The lock.
    pub lock: &'a crate::point_lock::Lock,
    /// Its point in full (the lock names only its address).
    pub lock_point: &'a FixedBytes<33>,
    /// The payee's invoice.
    pub invoice: &'a SignedInvoice,
}

/// A hop's checks of its step against the incoming lock (spec §5.23b), before it looks at its
/// link: at most `MAX_HOPS` steps after it; the lock's point is the one given and its id the
/// invoice's (`lock_mismatch`); the lock covers the step's amount and `fee`
/// (`fee_insufficient`); it expires at least [`FORWARD_EXPIRY_DELTA_BLOCKS`] after the step,
/// which leaves this hop time (`expiry_too_soon`). Returns the outgoing point: the incoming one
/// plus the step's tweak.
pub fn check_step(
    incoming: &IncomingLock<'_>,
    step: &crate::sealed_step::RouteStep,
    steps_after: usize,
    fee: Amount,
) -> Result<crate::point_lock::Point, StepRefusal> {
    if steps_after > crate::routing::MAX_HOPS {
        return Err(StepRefusal::RouteTooLong(steps_after + 1));
    }
    let point = crate::point_lock::Point::from_compressed(&incoming.lock_point.0)?;
    if point.address() != incoming.lock.point || incoming.lock.lock_id != incoming.invoice.message.invoice_id {
        return Err(Error::LockMismatch.into());
    }
    let outgoing = point.tweaked(&step.tweak)?;
    let wanted = step.amount.checked_add(fee)?;
    if incoming.lock.amount < wanted {
        return Err(StepRefusal::FeeInsufficient { lock: incoming.lock.amount, wanted });
    }
    if incoming.lock.expiry_block < step.expiry_block.saturating_add(FORWARD_EXPIRY_DELTA_BLOCKS) {
        return Err(Error::ExpiryTooSoon.into());
    }
    Ok(outgoing)
}

/// The last step's further checks, in the payee's hub's `domain` at `now_seconds`: the
/// invoice checks out and its point is the outgoing one (`point_chain_broken`: the tweaks did
/// not lead to it), and the step pays at least the invoice (`fee_insufficient`).
pub fn check_last_step(
    invoice: &SignedInvoice,
    domain: &crate::Domain,
    now_seconds: u64,
    outgoing: &crate::point_lock::Point,
    step: &crate::sealed_step::RouteStep,
) -> Result<(), StepRefusal> {
    if invoice.check(domain, now_seconds)? != *outgoing {
        return Err(Error::PointChainBroken.into());
    }
    if step.amount < invoice.message.amount {
        return Err(StepRefusal::FeeInsufficient { lock: step.amount, wanted: invoice.message.amount });
    }
    Ok(())
}

/// Whether the step's lock still leaves the next hop's payee its reveal margin and
/// [`FORWARD_MIN_REMAINING_BLOCKS`] after the link's confirmed block (`expiry_too_soon`).
pub fn step_leaves_time(step_expiry_block: u64, link_block: u64) -> Result<(), Error> {
    let soonest = link_block
        .saturating_add(crate::channel::LOCK_REVEAL_MARGIN_BLOCKS)
        .saturating_add(FORWARD_MIN_REMAINING_BLOCKS);
    if step_expiry_block <= soonest {
        return Err(Error::ExpiryTooSoon);
    }
    Ok(())
}

/// The intent of a checked routed step: this hop's tweak, and unless it is the last step what
/// it asks the next hub (the outgoing point, the amount, the later steps).
pub fn routed_forward(
    payer: Address,
    incoming: &IncomingLock<'_>,
    step: &crate::sealed_step::RouteStep,
    rest: &[SealedStep],
    outgoing: &crate::point_lock::Point,
) -> Forward {
    let onward = (!rest.is_empty()).then(|| Onward {
        lock_point: FixedBytes(outgoing.compressed()),
        amount: step.amount,
        route: rest.to_vec(),
    });
    Forward {
        payer,
        lock_id: incoming.lock.lock_id,
        invoice: incoming.invoice.clone(),
        next_expiry_block: step.expiry_block,
        state: ForwardState::Intent,
        tweak: Some(step.tweak),
        onward,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::invoice::issue;
    use crate::{Domain, PrivateKey};

    fn forward(state: ForwardState, tweak: Option<Scalar>) -> Forward {
        let key = PrivateKey::from_bytes([7; 32]).expect("a key");
        let domain = Domain { chain_id: 1, verifying_contract: Address::repeat_byte(2) };
        let invoice =
            issue(&key, "hub.example", &domain, Amount(5), 100, "", B256::repeat_byte(9)).expect("an invoice");
        Forward {
            payer: Address::repeat_byte(1),
            lock_id: B256::repeat_byte(9),
            invoice,
            next_expiry_block: 50,
            state,
            tweak,
            onward: None,
        }
    }

    fn scalar(byte: u8) -> Scalar {
        Scalar::new(alloy_primitives::U256::from(byte)).expect("a scalar")
    }

    #[test]
    fn a_forward_whose_payer_lock_is_gone_is_finished_in_every_state() {
        let seen = Downstream { scalar: Some(scalar(3)), live: true };
        for state in [ForwardState::Intent, ForwardState::Sent, ForwardState::Failed, ForwardState::Finished] {
            assert_eq!(next_step(&forward(state, None), false, &seen).unwrap(), ForwardStep::Finish, "{state:?}");
        }
    }

    #[test]
    fn an_intent_is_sent_only_once_the_payer_lock_is_committed() {
        let f = forward(ForwardState::Intent, None);
        assert_eq!(next_step(&f, true, &Downstream::default()).unwrap(), ForwardStep::Send);
        assert_eq!(next_step(&f, false, &Downstream::default()).unwrap(), ForwardStep::Finish);
    }

    #[test]
    fn a_sent_forward_learns_the_scalar_minus_its_tweak_and_waits_while_its_lock_lives() {
        let downstream = scalar(5);
        let tweak = scalar(2);
        let f = forward(ForwardState::Sent, Some(tweak));
        let step = next_step(&f, true, &Downstream { scalar: Some(downstream), live: true }).unwrap();
        let upstream = downstream.upstream(&tweak).unwrap();
        assert_eq!(step, ForwardStep::Learn(upstream));
        // The learned scalar opens the payer's point: the downstream point minus tweak·G.
        assert_ne!(upstream, downstream);
        let plain = forward(ForwardState::Sent, None);
        let seen = Downstream { scalar: Some(downstream), live: false };
        assert_eq!(next_step(&plain, true, &seen).unwrap(), ForwardStep::Learn(downstream));
        assert_eq!(next_step(&f, true, &Downstream { scalar: None, live: true }).unwrap(), ForwardStep::Wait);
        assert_eq!(next_step(&f, true, &Downstream { scalar: None, live: false }).unwrap(), ForwardStep::Fail);
    }

    #[test]
    fn a_failed_forward_waits_for_the_payer_and_a_scalar_equal_to_the_tweak_is_refused() {
        let f = forward(ForwardState::Failed, None);
        assert_eq!(next_step(&f, true, &Downstream { scalar: None, live: false }).unwrap(), ForwardStep::Wait);
        let tweak = scalar(4);
        let f = forward(ForwardState::Sent, Some(tweak));
        let seen = Downstream { scalar: Some(tweak), live: true };
        assert_eq!(next_step(&f, true, &seen), Err(Error::ScalarOutOfRange));
    }

    /// A hop in the middle of a route, given Alice's lock for the invoice of `forward`, with the
    /// step tweak 2 to the next hub at expiry 100.
    fn middle_hop() -> (crate::point_lock::Lock, FixedBytes<33>, SignedInvoice, crate::sealed_step::RouteStep) {
        let invoice = forward(ForwardState::Intent, None).invoice;
        let invoice_point = crate::point_lock::Point::from_compressed(&invoice.message.payment_point).unwrap();
        let (y_here, y_next) = (scalar(2), scalar(3));
        let incoming = invoice_point.untweaked(&y_here.add(&y_next).unwrap()).unwrap();
        let lock = crate::point_lock::Lock {
            lock_id: invoice.message.invoice_id,
            amount: Amount(7),
            expiry_block: 100 + FORWARD_EXPIRY_DELTA_BLOCKS,
            point: incoming.address(),
        };
        let step = crate::sealed_step::RouteStep {
            next_hub: Address::repeat_byte(4),
            tweak: y_here,
            amount: Amount(6),
            expiry_block: 100,
        };
        (lock, FixedBytes(incoming.compressed()), invoice, step)
    }

    #[test]
    fn a_step_is_checked_against_the_incoming_lock_and_each_break_is_named() {
        let (lock, point, invoice, step) = middle_hop();
        let incoming = IncomingLock { lock: &lock, lock_point: &point, invoice: &invoice };
        let outgoing = check_step(&incoming, &step, 1, Amount(1)).expect("a good step");
        let given = crate::point_lock::Point::from_compressed(&point.0).unwrap();
        assert_eq!(outgoing, given.tweaked(&step.tweak).unwrap());
        assert_eq!(
            check_step(&incoming, &step, 1, Amount(2)),
            Err(StepRefusal::FeeInsufficient { lock: Amount(7), wanted: Amount(8) })
        );
        let late = crate::sealed_step::RouteStep { expiry_block: 101, ..step };
        assert_eq!(check_step(&incoming, &late, 1, Amount(1)), Err(StepRefusal::Rule(Error::ExpiryTooSoon)));
        let other = crate::point_lock::Lock { point: Address::repeat_byte(5), ..lock };
        let forged = IncomingLock { lock: &other, ..incoming };
        assert_eq!(check_step(&forged, &step, 1, Amount(1)), Err(StepRefusal::Rule(Error::LockMismatch)));
        let long = crate::routing::MAX_HOPS + 1;
        assert_eq!(check_step(&incoming, &step, long, Amount(1)), Err(StepRefusal::RouteTooLong(long + 1)));
        // Its outgoing point is not the invoice's: the next tweak is missing, so as a last
        // step it breaks the chain; with the next tweak it is the invoice's.
        let key = PrivateKey::from_bytes([7; 32]).unwrap();
        let domain = Domain { chain_id: 1, verifying_contract: Address::repeat_byte(2) };
        assert_eq!(
            check_last_step(&invoice, &domain, 50, &outgoing, &step),
            Err(StepRefusal::Rule(Error::PointChainBroken))
        );
        let last = outgoing.tweaked(&scalar(3)).unwrap();
        let paying = crate::sealed_step::RouteStep { amount: Amount(5), ..step };
        assert_eq!(check_last_step(&invoice, &domain, 50, &last, &paying), Ok(()));
        let short = crate::sealed_step::RouteStep { amount: Amount(4), ..step };
        assert_eq!(
            check_last_step(&invoice, &domain, 50, &last, &short),
            Err(StepRefusal::FeeInsufficient { lock: Amount(4), wanted: Amount(5) })
        );
        assert_eq!(key.address(), invoice.message.payee.user);
        let f = routed_forward(Address::repeat_byte(1), &incoming, &step, &[], &outgoing);
        assert!(f.onward.is_none() && f.tweak == Some(step.tweak) && f.next_expiry_block == 100);
    }

    #[test]
    fn the_next_expiry_leaves_the_payee_its_margin_and_the_hub_its_delta() {
        let block = 1_000;
        let soonest = block + crate::channel::LOCK_REVEAL_MARGIN_BLOCKS + FORWARD_MIN_REMAINING_BLOCKS;
        let just_enough = soonest + 1 + FORWARD_EXPIRY_DELTA_BLOCKS;
        assert_eq!(next_expiry_block(just_enough, block), Ok(soonest + 1));
        assert_eq!(next_expiry_block(just_enough - 1, block), Err(Error::ExpiryTooSoon));
        assert_eq!(next_expiry_block(0, u64::MAX), Err(Error::ExpiryTooSoon));
        assert_eq!(step_leaves_time(soonest + 1, block), Ok(()));
        assert_eq!(step_leaves_time(soonest, block), Err(Error::ExpiryTooSoon));
    }
}
