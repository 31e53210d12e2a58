//! Payments across hubs (spec §5.23a), driven through the real hub, wallet and forwarding
//! code: every hub has a link (an ordinary wallet, `link_of` its hub) at every other hub's
//! contract; a user pays an invoice of a user at another hub with a lock to her own hub, which
//! checks the invoice and records its intent, commits her lock, and forwards by a locked
//! transfer from its link to the payee; the payee claims at her hub, the link learns the scalar
//! at its next sync, and the forwarding hub records it for the payer (the core's
//! [`next_step`], the machine the node's link task runs), who then settles. A forward the next
//! hub refuses, or whose lock there is dropped unclaimed, fails, and the payer cancels hers
//! with her hub's agreement. Messages are lost, duplicated and reordered and hubs crash as
//! everywhere in the world; the forwards book stands for the node's synced `forwards.jsonl`
//! (written before each step is acted on), so it survives a crash.
//!
//! The world checks what the forwarding hub stands to lose: once the payee's claim is
//! credited, the payer's lock must never come back to her (`a_forwarding_hub_is_paid_when_its_payee_is`),
//! and at the end of the drain every claimed payment is settled by its payer (unless her
//! channel left by exit, when the hub's lock duties take over on chain). Not simulated: routes
//! of more than one forwarding hop (sealed steps, tweaks) and scalars read from the point
//! registry; the node's tests cover both.

use super::{Msg, ToHub, ToWallet, World};
use crate::audit::Violation;
use crate::hub::InjectedBug;
use alloy::primitives::{Address, B256};
use infhub_core::channel::{LockChange, Status};
use infhub_core::forwarding::{next_expiry_block, next_step, Downstream, Forward, ForwardState, ForwardStep};
use infhub_core::invoice::SignedInvoice;
use infhub_core::ledger::Command;
use infhub_core::point_lock::Lock;
use infhub_core::{Amount, Domain};
use infhub_wallet::store::PendingLock;
use infhub_wallet::wallet_core::PaymentAnswer;
use std::collections::BTreeMap;

/// Blocks a payer's lock across hubs lives: the forward's delta, the payee's reveal margin and
/// the next hop's least remaining time, and some blocks to pay in.
pub(super) const SIM_FORWARD_EXPIRY_BLOCKS: u64 = infhub_core::forwarding::FORWARD_EXPIRY_DELTA_BLOCKS
    + infhub_core::channel::LOCK_REVEAL_MARGIN_BLOCKS
    + infhub_core::forwarding::FORWARD_MIN_REMAINING_BLOCKS
    + 30;
/// What a forwarding hub charges on top of the invoice.
const SIM_FORWARD_FEE: Amount = Amount(super::UNIT / 100);
/// Most unfinished forwards per link (the node's `node.max_forwards_per_link`, small here so
/// that the limit's refusal happens).
const SIM_MAX_FORWARDS_PER_LINK: usize = 6;
/// What each link deposits at its peer's contract.
pub(super) const LINK_DEPOSIT: u128 = 4_000 * super::UNIT;

/// A hub's forwards by lock id, with the site of the next hub: the node's `forwards.jsonl`,
/// synced before each step is acted on.
pub(super) type ForwardBook = BTreeMap<B256, (usize, Forward)>;

/// What the world saw of one payment across hubs, for its checks.
#[derive(Clone, Copy, Debug)]
pub(super) struct Tracked {
    payer_site: usize,
    payer: usize,
    next_site: usize,
    /// The payee's hub credited her claim.
    claimed: bool,
    /// The payer settled her lock (paid her hub).
    settled: bool,
    /// The payer's lock came back to her (dropped or cancelled).
    refunded: bool,
}

/// The locks of `payer` a hub whose forwards are `book` agrees to cancel: their forward failed.
pub(super) fn cancellable(book: &ForwardBook, payer: Address) -> Vec<B256> {
    book.iter().filter(|(_, (_, f))| f.payer == payer && f.state == ForwardState::Failed).map(|(id, _)| *id).collect()
}

/// The host a simulated hub's users are addressed at.
fn host(site: usize) -> String {
    format!("hub{site}.sim")
}

impl World {
    /// The index of hub `owner`'s link among the wallets of hub `at`.
    fn link(&self, owner: usize, at: usize) -> Option<usize> {
        self.links.get(owner).and_then(|l| l.get(at)).copied().flatten()
    }

    /// Wallet `i` of hub `s` pays an invoice of a user at another hub, through its own hub.
    pub(super) fn pay_across(&mut self, s: usize, i: usize) {
        if self.sites.len() < 2 {
            return;
        }
        let c = (s + 1 + self.rng.below(self.sites.len() as u64 - 1) as usize) % self.sites.len();
        let Some(j) = self.random_wallet(c, |w| w.channel().is_some_and(|ch| ch.status == Status::Open)) else {
            return;
        };
        let Some(block) = self.sites[s].wallets[i].channel().map(|ch| ch.block) else { return };
        let invoice_id = B256::from(self.rng.bytes32());
        let amount = self.some_amount(s, i);
        let now_seconds = self.clock_ms.load(std::sync::atomic::Ordering::Relaxed) / 1_000;
        let domain = self.sites[c].config.ledger.domain;
        let payee = &self.sites[c].wallets[j];
        let Ok(invoice) = infhub_core::invoice::issue(
            payee.core.key(),
            &host(c),
            &domain,
            amount,
            now_seconds + 3_600,
            "",
            invoice_id,
        ) else {
            return;
        };
        let Ok(total) = amount.checked_add(SIM_FORWARD_FEE) else { return };
        let lock = Lock {
            lock_id: invoice_id,
            amount: total,
            expiry_block: block + SIM_FORWARD_EXPIRY_BLOCKS,
            point: payee.invoice_point(invoice_id),
        };
        let w = &mut self.sites[s].wallets[i];
        if let Some(p) = w.sign_lock(LockChange::Add(lock), None) {
            w.pending_sent_at = self.step;
            w.forward_request = Some((invoice.clone(), c));
            self.report.paid_across += 1;
            self.tracked.insert(
                invoice_id,
                Tracked { payer_site: s, payer: i, next_site: c, claimed: false, settled: false, refunded: false },
            );
            self.send(Msg::ToHub(s, ToHub::Forward(i, p, invoice, c)));
        }
    }

    /// Wallet `i` of hub `s` sends its pending lock debit again: whole, as a forward, when it
    /// pays across hubs.
    pub(super) fn resend_lock(&mut self, s: usize, i: usize, p: PendingLock) {
        let w = &self.sites[s].wallets[i];
        let forward = w.forward_request.clone().filter(|(inv, _)| {
            matches!(p.change, LockChange::Add(l) if l.lock_id == inv.message.invoice_id) && p.payee.is_none()
        });
        match forward {
            Some((invoice, c)) => self.send(Msg::ToHub(s, ToHub::Forward(i, p, invoice, c))),
            None => self.send(Msg::ToHub(s, ToHub::Lock(i, p))),
        }
    }

    /// Hub `s` takes the forwards and cancels among `msgs` as the node's API does before its
    /// batch: a forward already committed is a retry (its lock debit answers it); a new one is
    /// checked (refused by name) and its intent recorded before its lock debit joins the batch;
    /// a cancel of a lock whose forward failed becomes the agreed cancel. Returns the batch's
    /// messages (the refusals are answered at once).
    pub(super) fn take_forwards(&mut self, s: usize, msgs: Vec<ToHub>) -> Vec<ToHub> {
        let mut batch = Vec::with_capacity(msgs.len());
        let mut refused = Vec::new();
        for m in msgs {
            match m {
                ToHub::Forward(i, p, invoice, c) => {
                    let LockChange::Add(lock) = p.change else { continue };
                    let payer = p.debit.message.user;
                    let Some(hub) = self.sites[s].hub.as_ref() else { return Vec::new() };
                    let ledger = hub.ledger();
                    let committed = ledger.locks.scalar_for(&payer, &lock.lock_id).is_some()
                        || ledger.account(&payer).is_some_and(|a| a.channel.debit_locks.get(&lock.lock_id).is_some());
                    if committed || self.forwards[s].contains_key(&lock.lock_id) {
                        batch.push(ToHub::Lock(i, p));
                        continue;
                    }
                    match self.plan_forward(s, payer, &lock, &invoice, c) {
                        Ok(forward) => {
                            self.forwards[s].insert(lock.lock_id, (c, forward));
                            batch.push(ToHub::Lock(i, p));
                        }
                        Err((code, message)) => {
                            self.report.forwards_refused += 1;
                            refused.push((i, ToWallet::LockAnswer(p.debit, PaymentAnswer::Refused { code, message })));
                        }
                    }
                }
                ToHub::Lock(i, p) => {
                    let agreed = match p.change {
                        LockChange::Cancel { lock_id } => self.forwards[s]
                            .get(&lock_id)
                            .is_some_and(|(_, f)| f.state == ForwardState::Failed && f.payer == p.debit.message.user),
                        _ => false,
                    };
                    batch.push(if agreed { ToHub::CancelAgreed(i, p) } else { ToHub::Lock(i, p) });
                }
                other => batch.push(other),
            }
        }
        for (i, answer) in refused {
            self.send(Msg::ToWallet(s, i, answer));
        }
        batch
    }

    /// The node's checks of a payment to forward (`Links::plan_forward`): a link to the payee's
    /// hub, the invoice in that hub's domain, the lock against it, the link's balance, an
    /// expiry that leaves the next hop time, and the link's forward limit.
    fn plan_forward(
        &self,
        s: usize,
        payer: Address,
        lock: &Lock,
        invoice: &SignedInvoice,
        c: usize,
    ) -> Result<Forward, (String, String)> {
        let named = |e: infhub_core::Error| (e.code(), e.to_string());
        let Some(l) = self.link(s, c).filter(|_| invoice.message.payee.host == host(c)) else {
            return Err(("unknown_next_hub".into(), format!("no link to {}", invoice.message.payee.host)));
        };
        let link = &self.sites[c].wallets[l];
        let Some(ch) = link.channel().filter(|ch| ch.status == Status::Open) else {
            return Err(("link_not_open".into(), format!("the link to hub {c} is not open")));
        };
        let domain: Domain = self.sites[c].config.ledger.domain;
        let now_seconds = self.clock_ms.load(std::sync::atomic::Ordering::Relaxed) / 1_000;
        let point = invoice.check(&domain, now_seconds).map_err(named)?;
        let inv = &invoice.message;
        if lock.lock_id != inv.invoice_id || lock.point != point.address() {
            return Err(named(infhub_core::Error::LockMismatch));
        }
        if lock.amount < inv.amount {
            return Err((
                "fee_insufficient".into(),
                format!("the lock of {} is less than {}", lock.amount, inv.amount),
            ));
        }
        if link.balance() < inv.amount {
            return Err(("insufficient_capacity".into(), format!("the link to hub {c} holds {}", link.balance())));
        }
        let next_expiry_block = next_expiry_block(lock.expiry_block, ch.block).map_err(named)?;
        let unfinished = self.forwards[s].values().filter(|(to, _)| *to == c).count();
        if unfinished >= SIM_MAX_FORWARDS_PER_LINK {
            return Err(("link_busy".into(), format!("{unfinished} forwards unfinished over the link to hub {c}")));
        }
        Ok(Forward {
            payer,
            lock_id: lock.lock_id,
            invoice: invoice.clone(),
            next_expiry_block,
            state: ForwardState::Intent,
            tweak: None,
            onward: None,
        })
    }

    /// Hub `s` moves each of its forwards on by the core's rule, as the node's link task does
    /// each round: it observes its ledger (the payer's lock) and its link's wallet (the
    /// scalar its last sync learned, whether its lock downstream lives), and carries out the
    /// one step, recording the new state first.
    pub(super) fn advance_forwards(&mut self, s: usize) {
        let ids: Vec<B256> = self.forwards[s].keys().copied().collect();
        for id in ids {
            let Some(hub) = self.sites[s].hub.as_ref() else { return };
            let Some((c, f)) = self.forwards[s].get(&id).cloned() else { continue };
            let Some(l) = self.link(s, c) else { continue };
            let payer_lock_pending =
                hub.ledger().account(&f.payer).is_some_and(|a| a.channel.debit_locks.get(&id).is_some());
            let link = &self.sites[c].wallets[l];
            let scalar = link.outgoing_scalars.iter().find(|(known, _)| *known == id).map(|(_, s)| *s);
            let live = link.channel().is_some_and(|ch| ch.debit_locks.get(&id).is_some())
                || link.pending_lock().is_some_and(|p| p.change.lock_id() == id);
            let Ok(step) = next_step(&f, payer_lock_pending, &Downstream { scalar, live }) else { continue };
            let set = |world: &mut World, state: ForwardState| {
                if state == ForwardState::Finished {
                    world.forwards[s].remove(&id);
                } else if let Some((_, f)) = world.forwards[s].get_mut(&id) {
                    f.state = state;
                }
            };
            match step {
                ForwardStep::Wait => {}
                ForwardStep::Finish => set(self, ForwardState::Finished),
                ForwardStep::Fail => set(self, ForwardState::Failed),
                ForwardStep::Send => {
                    let link = &mut self.sites[c].wallets[l];
                    if link.pending_lock().is_some() || link.pending().is_some() {
                        continue; // the link's wallet is busy: the intent waits
                    }
                    set(self, ForwardState::Sent);
                    let inv = &f.invoice.message;
                    let Ok(point) = infhub_core::point_lock::Point::from_compressed(&inv.payment_point) else {
                        set(self, ForwardState::Failed);
                        continue;
                    };
                    let lock = Lock {
                        lock_id: id,
                        amount: inv.amount,
                        expiry_block: f.next_expiry_block,
                        point: point.address(),
                    };
                    let link = &mut self.sites[c].wallets[l];
                    match link.sign_lock(LockChange::Add(lock), Some(inv.payee.user)) {
                        Some(p) => {
                            link.pending_sent_at = self.step;
                            self.report.forwards_sent += 1;
                            self.send(Msg::ToHub(c, ToHub::Lock(l, p)));
                        }
                        None => set(self, ForwardState::Failed),
                    }
                }
                ForwardStep::Learn(scalar) => {
                    if self.config.bug == Some(InjectedBug::ForwarderSkipsLearning) {
                        continue;
                    }
                    let Some(hub) = self.sites[s].hub.as_mut() else { return };
                    match hub.execute(vec![Command::LockScalarLearned { payer: f.payer, lock_id: id, scalar }]) {
                        Ok(commit) => {
                            if commit.results.first().is_some_and(|r| r.0.is_ok()) {
                                set(self, ForwardState::Finished);
                            }
                        }
                        Err(e) => return self.hub_crashed(s, e),
                    }
                }
            }
        }
    }

    /// Every link of a hub that is up follows its peer: a pending lock debit is resent, and
    /// every second step the link syncs (learning its locks' scalars).
    pub(super) fn drive_links(&mut self, every_step: bool) {
        for a in 0..self.sites.len() {
            if self.sites[a].hub.is_none() {
                continue;
            }
            for c in 0..self.sites.len() {
                let Some(l) = self.link(a, c) else { continue };
                if let Some(p) = self.sites[c].wallets[l].pending_lock() {
                    if every_step || self.step >= self.sites[c].wallets[l].pending_sent_at + 6 {
                        self.sites[c].wallets[l].pending_sent_at = self.step;
                        self.send(Msg::ToHub(c, ToHub::Lock(l, p)));
                    }
                }
                if every_step || self.step.is_multiple_of(2) {
                    self.send(Msg::ToHub(c, ToHub::Sync(l)));
                }
            }
            self.advance_forwards(a);
        }
    }

    /// The ids of the locks a link of hub `owner` must not settle yet: their forward has not
    /// recorded the scalar upstream (the node's `hold_locks`).
    pub(super) fn held_by_forwards(&self, owner: usize) -> Vec<B256> {
        self.forwards[owner].iter().filter(|(_, (_, f))| f.state != ForwardState::Failed).map(|(id, _)| *id).collect()
    }

    /// The payee's hub `c` credited a claim of lock `lock_id`.
    pub(super) fn claim_credited(&mut self, c: usize, lock_id: B256) {
        if let Some(t) = self.tracked.get_mut(&lock_id).filter(|t| t.next_site == c) {
            t.claimed = true;
            self.report.claimed_across += 1;
            self.check_tracked(lock_id);
        }
    }

    /// Wallet `i` of hub `s` had its lock change `change` applied.
    pub(super) fn lock_change_applied(&mut self, s: usize, i: usize, change: LockChange) {
        let id = change.lock_id();
        let Some(t) = self.tracked.get_mut(&id).filter(|t| t.payer_site == s && t.payer == i) else { return };
        match change {
            LockChange::Settle { .. } => t.settled = true,
            LockChange::Drop { .. } => t.refunded = true,
            LockChange::Cancel { .. } => {
                t.refunded = true;
                self.report.cancelled_across += 1;
            }
            LockChange::Add(_) => return,
        }
        self.check_tracked(id);
    }

    fn check_tracked(&mut self, id: B256) {
        let Some(t) = self.tracked.get(&id) else { return };
        if t.claimed && t.refunded && self.across_violation.is_none() {
            self.across_violation = Some(Violation::new(
                self.step,
                "a_forwarding_hub_is_paid_when_its_payee_is",
                format!(
                    "lock {id}: the payee at hub {} was credited, and the payer (hub {} wallet {}) got her lock back",
                    t.next_site, t.payer_site, t.payer
                ),
            ));
        }
    }

    /// At the end of the drain: every payment whose payee was credited is settled by its payer,
    /// unless her channel left by exit (then the hub's lock duties claim it on chain).
    pub(super) fn check_payments_across(&self) -> Result<(), Violation> {
        if let Some(v) = &self.across_violation {
            return Err(v.clone());
        }
        for (id, t) in &self.tracked {
            let payer = &self.sites[t.payer_site].wallets[t.payer];
            let open = payer.channel().is_some_and(|ch| ch.status == Status::Open) && !payer.exiting;
            if t.claimed && !t.settled && open {
                return Err(Violation::new(
                    self.step,
                    "a_forwarding_hub_is_paid_when_its_payee_is",
                    format!(
                        "lock {id}: the payee at hub {} was credited; the payer (hub {} wallet {}) never settled: {:?}",
                        t.next_site,
                        t.payer_site,
                        t.payer,
                        self.forwards[t.payer_site].get(id)
                    ),
                ));
            }
        }
        Ok(())
    }
}
