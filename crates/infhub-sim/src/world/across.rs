//! Payments across hubs (spec §5.23a, §5.23b), driven through the real hub, wallet and
//! forwarding code: every hub has a link (an ordinary wallet, `link_of` its hub) at every other
//! hub's contract. A user pays an invoice of a user at another hub with a lock to her own hub,
//! either straight (her hub pays the payee over its link) or along a route through a hub in
//! the middle: then her wallet draws every hop's tweak and seals each hop's step to its hub key
//! (`seal_route`), her lock's point is the invoice's minus every tweak, and each hub opens its
//! own step, checks it (`forwarding::check_step`, `check_last_step`, `step_leaves_time`, as
//! the node's `plan_routed` does), records its intent, commits the incoming lock and forwards
//! over its link with the outgoing point, the hub in the middle charging its fee. The payee
//! claims at her hub; each link learns the scalar at its next sync and its hub records it
//! upstream minus its tweak (the core's [`next_step`], the machine the node's link task runs);
//! the payer then settles. A forward the next hub refuses, or whose lock there is dropped
//! unclaimed, fails, and its payer (a user, or the previous hub's link) cancels hers with her
//! hub's agreement. Messages are lost, duplicated and reordered and hubs crash as everywhere in
//! the world; the forwards book stands for the node's synced `forwards.jsonl` (written before
//! each step is acted on), so it survives a crash.
//!
//! The world checks what each forwarding hub stands to lose: once the next hub learned the
//! scalar of its link's lock (or, at the last hop, credited the payee's claim), the lock it was
//! paid with must never come back to its payer (`a_forwarding_hub_is_paid_when_its_payee_is`),
//! and at the end of the drain every such lock is settled (unless its payer's channel left by
//! exit, when the hub's lock duties take over on chain). Not simulated: split payments and
//! scalars read from the point registry; the node's tests cover both.

use super::{Msg, ToHub, ToWallet, World};
use crate::audit::Violation;
use crate::hub::InjectedBug;
use crate::wallet::ForwardRequest;
use alloy::primitives::FixedBytes;
use alloy::primitives::{Address, B256};
use infhub_core::channel::{LockChange, Status};
use infhub_core::forwarding::{
    check_last_step, check_step, direct_forward, next_expiry_block, next_step, routed_forward, step_leaves_time,
    Downstream, Forward, ForwardState, ForwardStep, IncomingLock, StepRefusal, FORWARD_EXPIRY_DELTA_BLOCKS,
};
use infhub_core::invoice::SignedInvoice;
use infhub_core::ledger::Command;
use infhub_core::point_lock::Lock;
use infhub_core::point_lock::{Point, Scalar};
use infhub_core::sealed_step::{RouteStep, StepPlan};
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

/// What the world saw of one hop of a payment across hubs (the lock a forwarding hub was
/// paid with, by its payer: a user or the previous hub's link), for its checks.
#[derive(Clone, Copy, Debug)]
pub(super) struct Tracked {
    payer: usize,
    /// The hop forwards along a route to a further hub (a first hop of two, with a tweak).
    onward: bool,
    next_site: usize,
    /// The next hub learned the scalar of this hub's lock there (or credited the payee's claim).
    claimed: bool,
    /// The payer settled her lock (paid this hub).
    settled: bool,
    /// The payer's lock came back to her (dropped or cancelled).
    refunded: bool,
}

/// Tracked hops by (the forwarding hub's site, the lock id).
pub(super) type TrackedHops = BTreeMap<(usize, B256), Tracked>;

/// A site's hub key as a scalar (what opens the steps sealed to it).
fn hub_secret(key: &infhub_core::PrivateKey) -> Scalar {
    Scalar::from_bytes(B256::from(key.secret_bytes())).expect("a hub key is a scalar")
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

    /// Wallet `i` of hub `s` pays an invoice of a user at another hub, through its own hub:
    /// straight, or (with three hubs or more, half the time) along a route through a third hub.
    /// A cheater's `forged` lock skips the tweaks: its point is the invoice's (along a route),
    /// or another (straight), hoping a hub forwards what the payee's scalar does not open;
    /// every hub on the way must refuse it by name (`lock_mismatch`, `point_chain_broken`).
    pub(super) fn pay_across(&mut self, s: usize, i: usize, forged: bool) {
        let n = self.sites.len();
        if n < 2 {
            return;
        }
        let c = (s + 1 + self.rng.below(n as u64 - 1) as usize) % n;
        let middle = (n > 2 && self.rng.chance(500)).then(|| {
            let others: Vec<usize> = (0..n).filter(|b| *b != s && *b != c).collect();
            others[self.rng.below(others.len() as u64) as usize]
        });
        let Some(j) = self.random_wallet(c, |w| w.channel().is_some_and(|ch| ch.status == Status::Open)) else {
            return;
        };
        let Some(block) = self.sites[s].wallets[i].channel().map(|ch| ch.block) else { return };
        let invoice_id = B256::from(self.rng.bytes32());
        let amount = self.some_amount(s, i);
        let now_seconds = self.now_seconds();
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
        let (point, route, expiry_block) = match middle {
            None if forged => (Address::from_slice(&self.rng.bytes32()[..20]), None, block + SIM_FORWARD_EXPIRY_BLOCKS),
            None => (payee.invoice_point(invoice_id), None, block + SIM_FORWARD_EXPIRY_BLOCKS),
            Some(b) => {
                let expiry = block + SIM_FORWARD_EXPIRY_BLOCKS + FORWARD_EXPIRY_DELTA_BLOCKS;
                let Some((mut lock_point, steps)) = self.seal_two_steps(&invoice, [s, b, c], total, expiry) else {
                    return;
                };
                if forged {
                    let Ok(p) = Point::from_compressed(&invoice.message.payment_point) else { return };
                    lock_point = p;
                }
                (lock_point.address(), Some((FixedBytes(lock_point.compressed()), steps)), expiry)
            }
        };
        let lock = Lock { lock_id: invoice_id, amount: total, expiry_block, point };
        let w = &mut self.sites[s].wallets[i];
        if let Some(p) = w.sign_lock(LockChange::Add(lock), None) {
            w.pending_sent_at = self.step;
            let request = ForwardRequest { invoice, route };
            w.forward_request = Some(request.clone());
            self.report.paid_across += 1;
            self.report.routed_across += u64::from(middle.is_some());
            self.send(Msg::ToHub(s, ToHub::Forward(i, p, request)));
        }
    }

    /// The payer's wallet's part of a route `[payer's hub, middle hub, payee's hub]` (spec
    /// §5.23d): the two steps as its hub would quote them (the middle hub's fee in the first
    /// step's amount, expiries one delta apart), each tweak drawn here and each step sealed to
    /// its hub's key. Returns the payer's lock's point and the sealed steps.
    fn seal_two_steps(
        &mut self,
        invoice: &SignedInvoice,
        [a, b, c]: [usize; 3],
        total: Amount,
        expiry_block: u64,
    ) -> Option<(Point, Vec<infhub_core::sealed_step::SealedStep>)> {
        let hub = |site: usize| self.sites[site].key.address();
        let key = |site: usize| FixedBytes(hub_secret(&self.sites[site].key).point().compressed());
        let first_expiry = expiry_block - FORWARD_EXPIRY_DELTA_BLOCKS;
        let plans = vec![
            StepPlan { hub: hub(a), hub_key: key(a), next_hub: hub(b), amount: total, expiry_block: first_expiry },
            StepPlan {
                hub: hub(b),
                hub_key: key(b),
                next_hub: hub(c),
                amount: invoice.message.amount,
                expiry_block: first_expiry - FORWARD_EXPIRY_DELTA_BLOCKS,
            },
        ];
        let invoice_point = Point::from_compressed(&invoice.message.payment_point).ok()?;
        let rng = &mut self.rng;
        let mut draw = || loop {
            if let Ok(y) = Scalar::from_bytes(B256::from(rng.bytes32())) {
                return y;
            }
        };
        let (payer_hub, payee_hub) = (hub(a), hub(c));
        let sealed = infhub_core::sealed_step::seal_route(
            &[plans],
            payer_hub,
            payee_hub,
            &invoice_point,
            invoice.message.invoice_id,
            &mut draw,
        )
        .ok()?;
        Some((sealed.lock_point, sealed.parts.into_iter().next()?))
    }

    /// Wallet `i` of hub `s` sends its pending lock debit again: whole, as a forward request,
    /// when it pays across hubs.
    pub(super) fn resend_lock(&mut self, s: usize, i: usize, p: PendingLock) {
        let w = &self.sites[s].wallets[i];
        let forward = w.forward_request.clone().filter(|r| {
            matches!(p.change, LockChange::Add(l) if l.lock_id == r.invoice.message.invoice_id) && p.payee.is_none()
        });
        match forward {
            Some(request) => self.send(Msg::ToHub(s, ToHub::Forward(i, p, request))),
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
                ToHub::Forward(i, p, request) => {
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
                    // A refusal is final for the signed debit: its wallet gave the nonce to its
                    // next debit, so a late copy must not be applied (the node's
                    // `refused_forwards`).
                    if let Some((code, message)) = self.refused_forwards[s].get(&p.debit.signature.0).cloned() {
                        refused.push((i, ToWallet::LockAnswer(p.debit, PaymentAnswer::Refused { code, message })));
                        continue;
                    }
                    let planned = match &request.route {
                        None => self.plan_forward(s, payer, &lock, &request.invoice),
                        Some((point, route)) => self.plan_routed(s, i, &lock, point, &request.invoice, route),
                    };
                    match planned {
                        Ok((next, forward)) => {
                            self.tracked.entry((s, lock.lock_id)).or_insert(Tracked {
                                payer: i,
                                onward: forward.onward.is_some(),
                                next_site: next,
                                claimed: false,
                                settled: false,
                                refunded: false,
                            });
                            self.forwards[s].insert(lock.lock_id, (next, forward));
                            batch.push(ToHub::Lock(i, p));
                        }
                        Err((code, message)) => {
                            self.report.forwards_refused += 1;
                            self.refused_forwards[s].insert(p.debit.signature.0, (code.clone(), message.clone()));
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
    ) -> Result<(usize, Forward), (String, String)> {
        let named = |e: infhub_core::Error| (e.code(), e.to_string());
        let c = (0..self.sites.len()).find(|c| invoice.message.payee.host == host(*c));
        let (c, link_block) = self.open_link(s, c, &invoice.message.payee.host)?;
        let domain: Domain = self.sites[c].config.ledger.domain;
        let point = invoice.check(&domain, self.now_seconds()).map_err(named)?;
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
        self.link_holds(s, c, inv.amount)?;
        let next_expiry_block = next_expiry_block(lock.expiry_block, link_block).map_err(named)?;
        self.link_not_busy(s, c)?;
        Ok((c, direct_forward(payer, lock, invoice, next_expiry_block)))
    }

    /// The node's checks of a forward along a route (`Links::plan_routed`), with the core's
    /// step checks: hub `s` opens its own step (sealed to its key), checks it against the
    /// incoming lock of its wallet `i` (its fee charged unless the payer is its own user, whom
    /// it quoted), then its link to the step's next hub, the invoice at the last step, the
    /// link's balance, time left, and the link's forward limit.
    fn plan_routed(
        &self,
        s: usize,
        i: usize,
        lock: &Lock,
        lock_point: &FixedBytes<33>,
        invoice: &SignedInvoice,
        route: &[infhub_core::sealed_step::SealedStep],
    ) -> Result<(usize, Forward), (String, String)> {
        let named = |e: infhub_core::Error| (e.code(), e.to_string());
        let refused = |e: StepRefusal| match e {
            StepRefusal::Rule(e) => named(e),
            StepRefusal::FeeInsufficient { lock, wanted } => {
                ("fee_insufficient".to_string(), format!("the lock of {lock} is less than {wanted}"))
            }
            StepRefusal::RouteTooLong(n) => ("malformed_request".to_string(), format!("a route of {n} steps")),
        };
        let Some((first, rest)) = route.split_first() else {
            return Err(("malformed_request".into(), "an empty route".into()));
        };
        let step: RouteStep =
            infhub_core::sealed_step::open_step(first, &hub_secret(&self.sites[s].key), lock.lock_id).map_err(named)?;
        let payer = self.sites[s].wallets[i].address();
        let fee = if self.sites[s].wallets[i].link_of.is_some() { SIM_FORWARD_FEE } else { Amount::ZERO };
        let incoming = IncomingLock { lock, lock_point, invoice };
        let outgoing = check_step(&incoming, &step, rest.len(), fee).map_err(refused)?;
        let n = (0..self.sites.len()).find(|n| self.sites[*n].key.address() == step.next_hub);
        let (n, link_block) = self.open_link(s, n, &step.next_hub.to_string())?;
        if rest.is_empty() {
            let domain = self.sites[n].config.ledger.domain;
            check_last_step(invoice, &domain, self.now_seconds(), &outgoing, &step).map_err(refused)?;
        }
        self.link_holds(s, n, step.amount)?;
        step_leaves_time(step.expiry_block, link_block).map_err(named)?;
        self.link_not_busy(s, n)?;
        Ok((n, routed_forward(payer, &incoming, &step, rest, &outgoing)))
    }

    /// The world's wall clock in seconds.
    fn now_seconds(&self) -> u64 {
        self.clock_ms.load(std::sync::atomic::Ordering::Relaxed) / 1_000
    }

    /// Hub `s`'s link at hub `n` (`name` naming it in a refusal), open: the site and the link's
    /// confirmed block (`unknown_next_hub`, `link_not_open`).
    fn open_link(&self, s: usize, n: Option<usize>, name: &str) -> Result<(usize, u64), (String, String)> {
        let Some((n, l)) = n.and_then(|n| Some((n, self.link(s, n)?))) else {
            return Err(("unknown_next_hub".into(), format!("no link to {name}")));
        };
        match self.sites[n].wallets[l].channel().filter(|ch| ch.status == Status::Open) {
            Some(ch) => Ok((n, ch.block)),
            None => Err(("link_not_open".into(), format!("the link to hub {n} is not open"))),
        }
    }

    /// Hub `s`'s link at hub `n` holds `amount` (`insufficient_capacity`).
    fn link_holds(&self, s: usize, n: usize, amount: Amount) -> Result<(), (String, String)> {
        let have = self.link(s, n).map_or(Amount::ZERO, |l| self.sites[n].wallets[l].balance());
        if have < amount {
            return Err(("insufficient_capacity".into(), format!("the link to hub {n} holds {have}")));
        }
        Ok(())
    }

    /// Hub `s` has fewer than [`SIM_MAX_FORWARDS_PER_LINK`] forwards unfinished over its link to
    /// hub `n` (`link_busy`).
    fn link_not_busy(&self, s: usize, n: usize) -> Result<(), (String, String)> {
        let unfinished = self.forwards[s].values().filter(|(to, _)| *to == n).count();
        if unfinished >= SIM_MAX_FORWARDS_PER_LINK {
            return Err(("link_busy".into(), format!("{unfinished} forwards unfinished over the link to hub {n}")));
        }
        Ok(())
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
                    // Onward: a lock to the next hub with the outgoing point, and the rest of
                    // the route; at the last hop, a locked transfer to the payee.
                    let (point, amount, payee, request) = match &f.onward {
                        Some(o) => {
                            let request = ForwardRequest {
                                invoice: f.invoice.clone(),
                                route: Some((o.lock_point, o.route.clone())),
                            };
                            (Point::from_compressed(&o.lock_point.0), o.amount, None, Some(request))
                        }
                        None => (Point::from_compressed(&inv.payment_point), inv.amount, Some(inv.payee.user), None),
                    };
                    let Ok(point) = point else {
                        set(self, ForwardState::Failed);
                        continue;
                    };
                    let lock = Lock { lock_id: id, amount, expiry_block: f.next_expiry_block, point: point.address() };
                    let link = &mut self.sites[c].wallets[l];
                    match link.sign_lock(LockChange::Add(lock), payee) {
                        Some(p) => {
                            link.pending_sent_at = self.step;
                            link.forward_request.clone_from(&request);
                            self.report.forwards_sent += 1;
                            match request {
                                Some(r) => self.send(Msg::ToHub(c, ToHub::Forward(l, p, r))),
                                None => self.send(Msg::ToHub(c, ToHub::Lock(l, p))),
                            }
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
                                // The previous hub's link's lock here can now only settle.
                                self.scalar_known(s, id);
                            }
                        }
                        Err(e) => return self.hub_crashed(s, e),
                    }
                }
            }
        }
    }

    /// Every link of a hub that is up follows its peer: a pending lock debit is resent, and
    /// every second step the link syncs (learning its locks' scalars). In the drain
    /// (`drain_round`), pending debits are resent every step and the links sync every step
    /// until the last ten rounds, so that nothing they sign is left unanswered at its end.
    pub(super) fn drive_links(&mut self, drain_round: Option<u64>) {
        let every_step = drain_round.is_some();
        let sync = drain_round.map_or(self.step.is_multiple_of(2), |r| r < 30);
        for a in 0..self.sites.len() {
            if self.sites[a].hub.is_none() {
                continue;
            }
            for c in 0..self.sites.len() {
                let Some(l) = self.link(a, c) else { continue };
                if let Some(p) = self.sites[c].wallets[l].pending_lock() {
                    if every_step || self.step >= self.sites[c].wallets[l].pending_sent_at + 6 {
                        self.sites[c].wallets[l].pending_sent_at = self.step;
                        self.resend_lock(c, l, p);
                    }
                }
                if sync {
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

    /// Hub `n` knows the scalar of lock `lock_id`: it credited its payee's claim, or recorded
    /// the scalar for a forward. Every hub whose link's lock there it opens was paid downstream.
    pub(super) fn scalar_known(&mut self, n: usize, lock_id: B256) {
        let hops: Vec<(usize, B256)> = self
            .tracked
            .iter()
            .filter(|((_, id), t)| *id == lock_id && t.next_site == n && !t.claimed)
            .map(|(k, _)| *k)
            .collect();
        for key in hops {
            if let Some(t) = self.tracked.get_mut(&key) {
                t.claimed = true;
                self.report.claimed_across += 1;
            }
            self.check_tracked(key);
        }
    }

    /// Wallet `i` of hub `s` had its lock change `change` applied.
    pub(super) fn lock_change_applied(&mut self, s: usize, i: usize, change: LockChange) {
        let id = change.lock_id();
        let Some(t) = self.tracked.get_mut(&(s, id)).filter(|t| t.payer == i) else { return };
        match change {
            LockChange::Settle { .. } => {
                t.settled = true;
                self.report.routed_settled += u64::from(t.onward);
            }
            LockChange::Drop { .. } => t.refunded = true,
            LockChange::Cancel { .. } => {
                t.refunded = true;
                self.report.cancelled_across += 1;
            }
            LockChange::Add(_) => return,
        }
        self.check_tracked((s, id));
    }

    fn check_tracked(&mut self, key: (usize, B256)) {
        let Some(t) = self.tracked.get(&key) else { return };
        if t.claimed && t.refunded && self.across_violation.is_none() {
            self.across_violation = Some(Violation::new(
                self.step,
                "a_forwarding_hub_is_paid_when_its_payee_is",
                format!(
                    "lock {}: hub {} learned its scalar (hub {} paid downstream), and the payer (hub {} wallet {}) got \
                     her lock back",
                    key.1, t.next_site, key.0, key.0, t.payer
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
        for ((s, id), t) in &self.tracked {
            let payer = &self.sites[*s].wallets[t.payer];
            let open = payer.channel().is_some_and(|ch| ch.status == Status::Open) && !payer.exiting;
            if t.claimed && !t.settled && open {
                return Err(Violation::new(
                    self.step,
                    "a_forwarding_hub_is_paid_when_its_payee_is",
                    format!(
                        "lock {id}: hub {} learned its scalar; the payer (hub {s} wallet {}) never settled: {:?}",
                        t.next_site,
                        t.payer,
                        self.forwards[*s].get(id)
                    ),
                ));
            }
        }
        Ok(())
    }
}
