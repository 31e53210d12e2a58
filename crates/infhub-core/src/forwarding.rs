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

    #[test]
    fn the_next_expiry_leaves_the_payee_its_margin_and_the_hub_its_delta() {
        let block = 1_000;
        let soonest = block + crate::channel::LOCK_REVEAL_MARGIN_BLOCKS + FORWARD_MIN_REMAINING_BLOCKS;
        let just_enough = soonest + 1 + FORWARD_EXPIRY_DELTA_BLOCKS;
        assert_eq!(next_expiry_block(just_enough, block), Ok(soonest + 1));
        assert_eq!(next_expiry_block(just_enough - 1, block), Err(Error::ExpiryTooSoon));
        assert_eq!(next_expiry_block(0, u64::MAX), Err(Error::ExpiryTooSoon));
    }
}
