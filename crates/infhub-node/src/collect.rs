//! The payee's hub's end of a payment split over several routes (spec §5.23c): it collects the
//! parts, each a previous hub's lock on its own point, and locks the invoice's amount to the
//! payee on the invoice's point only once the parts cover it, so a payee never reveals her
//! scalar (her proof of payment) for part of a payment. The ledger links the hub's lock to the
//! parts (`Command::CollectedTransfer`); when she reveals, each part opens with her scalar less
//! the part's tweak.
//!
//! A part is recorded in `collections.jsonl` (appended and synced, one line per change) before
//! its lock is committed, and the lock to the payee is made from what the ledger holds, so a
//! crash anywhere leaves a collection that the next round either completes or forgets.

use crate::links::{LinkError, RouteStep};
use alloy::primitives::{Address, FixedBytes, B256};
use infhub_core::invoice::SignedInvoice;
use infhub_core::ledger::{Command, LockPart};
use infhub_core::point_lock::{Lock, Point, Scalar};
use infhub_core::Amount;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;

/// Most split payments collecting at once.
pub const MAX_COLLECTIONS: usize = 10_000;
/// The file of the collections.
const COLLECTIONS_FILE: &str = "collections.jsonl";

/// One part: the previous hub's link account here, the tweak from the part's point to the
/// invoice's, what it delivers, and the expiry of the lock to the payee it asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Part {
    payer: Address,
    tweak: Scalar,
    amount: Amount,
    expiry_block: u64,
}

/// A split payment being collected, as `collections.jsonl` records it.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Collection {
    invoice: SignedInvoice,
    parts: Vec<Part>,
    /// The lock to the payee is made (the ledger follows the rest), or nothing is left.
    done: bool,
    /// When its first part was recorded, in milliseconds since the epoch.
    #[serde(default)]
    started_at_ms: u64,
    /// Its parts did not cover it within the collection timeout: it is never locked to the
    /// payee, no part is taken any more, and each part's sender may cancel its lock here.
    #[serde(default)]
    abandoned: bool,
}

fn now_ms() -> u64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
}

/// The split payments this hub collects as the payee's hub.
pub struct Collections {
    path: PathBuf,
    /// How long a split payment's parts have to cover it (`node.split_collection_timeout_ms`).
    timeout_ms: u64,
    /// One completion at a time, so a collection is never both locked to the payee and
    /// abandoned.
    completing: tokio::sync::Mutex<()>,
    open: Mutex<BTreeMap<B256, Collection>>,
    /// Parts recorded whose lock the caller is committing now (kept in memory only: after a
    /// restart none is), which a round must not take for gone.
    in_flight: Mutex<std::collections::BTreeSet<(B256, Address)>>,
}

impl Collections {
    /// The collections under `data_dir` (a torn last line, a crash mid-append, is skipped: its
    /// part's lock was never committed).
    pub fn open(data_dir: &std::path::Path, timeout_ms: u64) -> Result<Collections, String> {
        let path = data_dir.join(COLLECTIONS_FILE);
        let mut open = BTreeMap::new();
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                for line in text.lines() {
                    let Ok(c) = serde_json::from_str::<Collection>(line) else { continue };
                    if c.done {
                        open.remove(&c.invoice.message.invoice_id);
                    } else {
                        open.insert(c.invoice.message.invoice_id, c);
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("{}: {e}", path.display())),
        }
        Ok(Collections {
            path,
            timeout_ms,
            completing: tokio::sync::Mutex::new(()),
            open: Mutex::new(open),
            in_flight: Mutex::default(),
        })
    }

    fn map(&self) -> std::sync::MutexGuard<'_, BTreeMap<B256, Collection>> {
        self.open.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Changes the collection of `invoice` (a new one if none) by `change` under the lock, so
    /// concurrent parts of one payment never lose each other, then appends it (synced) and
    /// applies it; `change` may refuse, and then nothing is written.
    fn update<R>(
        &self,
        invoice: &SignedInvoice,
        change: impl FnOnce(&mut Collection) -> Result<R, LinkError>,
    ) -> Result<R, LinkError> {
        let id = invoice.message.invoice_id;
        let mut map = self.map();
        let mut c = match map.get(&id) {
            Some(c) => c.clone(),
            None if map.len() >= MAX_COLLECTIONS => {
                return Err(LinkError::LinkBusy(Address::ZERO, format!("{MAX_COLLECTIONS} split payments collecting")))
            }
            None => Collection {
                invoice: invoice.clone(),
                parts: Vec::new(),
                done: false,
                started_at_ms: now_ms(),
                abandoned: false,
            },
        };
        let out = change(&mut c)?;
        crate::towers::append_json_line(&self.path, &c)
            .map_err(|e| LinkError::Malformed(format!("{}: {e}", self.path.display())))?;
        if c.done {
            map.remove(&id);
        } else {
            map.insert(id, c);
        }
        Ok(out)
    }

    /// How many are collecting.
    pub fn len(&self) -> usize {
        self.map().len()
    }

    /// Whether none is collecting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Checks a part sent to this hub with its own step (spec §5.23c step 3) and records it
    /// before the caller commits its lock: the invoice is this hub's (in `domain`) and its
    /// payee an open account here; the lock names the invoice and its point plus the step's
    /// tweak is the invoice's (`point_chain_broken`); it carries the step's amount
    /// (`fee_insufficient`) and expires a reveal margin after the step's expiry, which leaves
    /// time (`expiry_too_soon`); at most `MAX_PARTS` parts, one per payer.
    #[expect(clippy::too_many_arguments, reason = "the part's every field, checked in one place")]
    pub fn record_part(
        &self,
        ledger: &infhub_core::ledger::Ledger,
        domain: &infhub_core::Domain,
        payer: Address,
        lock: &Lock,
        lock_point: &FixedBytes<33>,
        invoice: &SignedInvoice,
        step: &RouteStep,
    ) -> Result<(), LinkError> {
        use infhub_core::channel::{Status, LOCK_REVEAL_MARGIN_BLOCKS};
        use infhub_core::Error;
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let z = invoice.check(domain, now)?;
        let inv = &invoice.message;
        match ledger.account(&inv.payee.user) {
            None => return Err(Error::UnknownAccount.into()),
            Some(a) if a.channel.status != Status::Open => return Err(Error::RecipientNotOpen.into()),
            Some(_) => {}
        }
        let incoming = Point::from_compressed(&lock_point.0)?;
        if incoming.address() != lock.point || lock.lock_id != inv.invoice_id {
            return Err(Error::LockMismatch.into());
        }
        if incoming.tweaked(&step.tweak)? != z {
            return Err(Error::PointChainBroken.into());
        }
        if lock.amount < step.amount {
            return Err(LinkError::FeeInsufficient { lock: lock.amount, invoice: step.amount });
        }
        let soonest = ledger.block + LOCK_REVEAL_MARGIN_BLOCKS + crate::links::FORWARD_MIN_REMAINING_BLOCKS;
        if lock.expiry_block < step.expiry_block.saturating_add(LOCK_REVEAL_MARGIN_BLOCKS)
            || step.expiry_block <= soonest
        {
            return Err(Error::ExpiryTooSoon.into());
        }
        let part = Part { payer, tweak: step.tweak, amount: step.amount, expiry_block: step.expiry_block };
        self.update(invoice, |c| {
            if c.abandoned {
                return Err(LinkError::SplitAbandoned(inv.invoice_id));
            }
            if c.parts.iter().any(|p| p.payer == payer) {
                return Err(Error::LockIdReused.into());
            }
            if c.parts.len() >= infhub_core::routing::MAX_PARTS {
                return Err(Error::TooManyParts.into());
            }
            c.parts.push(part);
            Ok(())
        })?;
        self.flight().insert((inv.invoice_id, payer));
        Ok(())
    }

    fn flight(&self) -> std::sync::MutexGuard<'_, std::collections::BTreeSet<(B256, Address)>> {
        self.in_flight.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The ledger committed `payer`'s part of `invoice_id`.
    pub fn part_committed(&self, invoice_id: B256, payer: Address) {
        self.flight().remove(&(invoice_id, payer));
    }

    /// Forgets `payer`'s part of `invoice` (the ledger refused its lock).
    pub fn forget_part(&self, invoice: &SignedInvoice, payer: Address) {
        self.flight().remove(&(invoice.message.invoice_id, payer));
        let forgotten = self.update(invoice, |c| {
            c.parts.retain(|p| p.payer != payer);
            c.done = c.parts.is_empty();
            Ok(())
        });
        if let Err(e) = forgotten {
            tracing::warn!(error = %e, "a refused part not noted; the next round forgets it");
        }
    }

    /// Locks the invoice's amount to its payee once the parts whose locks the ledger holds
    /// cover it (`CollectedTransfer`), expiring at the earliest part's step expiry; forgets
    /// parts whose lock is gone (refused, or dropped after its expiry) and a collection with
    /// none left. Answered with what is collected.
    /// One whose parts do not cover it `node.split_collection_timeout_ms` after its first is
    /// abandoned instead (spec §5.23c).
    pub async fn complete(&self, node: &crate::engine::Node, invoice_id: B256) -> Result<Value, LinkError> {
        let _one = self.completing.lock().await;
        let Some(mut c) = self.map().get(&invoice_id).cloned() else {
            return Ok(json!({"locked": true}));
        };
        let inv = c.invoice.message.clone();
        let gone: Vec<Address> = c
            .parts
            .iter()
            .map(|p| p.payer)
            .filter(|payer| {
                !self.flight().contains(&(invoice_id, *payer))
                    && node
                        .read()
                        .ledger()
                        .account(payer)
                        .is_none_or(|a| a.channel.debit_locks.get(&invoice_id).is_none())
            })
            .collect();
        if !gone.is_empty() {
            let invoice = c.invoice.clone();
            c = self.update(&invoice, |now| {
                now.parts.retain(|p| !gone.contains(&p.payer));
                now.done = now.parts.is_empty();
                Ok(now.clone())
            })?;
        }
        let mut covered = Amount::ZERO;
        for p in &c.parts {
            covered = covered.checked_add(p.amount)?;
        }
        if c.abandoned {
            return Ok(json!({"locked": false, "abandoned": true, "collected": covered, "of": inv.amount}));
        }
        if covered < inv.amount {
            let late = now_ms().saturating_sub(c.started_at_ms) > self.timeout_ms;
            let mut abandoned = false;
            if late && !c.done {
                // Judged again under the lock: a part recorded since the copy above may cover it.
                let invoice = c.invoice.clone();
                abandoned = self.update(&invoice, |now| {
                    let mut held = Amount::ZERO;
                    for p in &now.parts {
                        held = held.checked_add(p.amount)?;
                    }
                    now.abandoned = held < inv.amount;
                    Ok(now.abandoned)
                })?;
                if abandoned {
                    tracing::info!(invoice = %invoice_id, collected = %covered, "a split payment abandoned: its parts did not cover it in time");
                }
            }
            return Ok(
                json!({"locked": false, "abandoned": abandoned, "collected": covered, "of": inv.amount, "parts": c.parts.len()}),
            );
        }
        let z = Point::from_compressed(&inv.payment_point)?;
        let expiry_block = c.parts.iter().map(|p| p.expiry_block).min().expect("parts cover a non-zero amount");
        let lock = Lock { lock_id: invoice_id, amount: inv.amount, expiry_block, point: z.address() };
        let parts = c.parts.iter().map(|p| LockPart { payer: p.payer, tweak: p.tweak }).collect();
        let cmd = Command::CollectedTransfer { payee: inv.payee.user, lock, parts };
        match node.execute(cmd).await {
            // Already locked (a retry after a crash between the commit and the note).
            Ok(Ok(_) | Err(infhub_core::Error::LockIdReused)) => {
                tracing::info!(invoice = %invoice_id, parts = c.parts.len(), "a split payment collected");
                let invoice = c.invoice.clone();
                self.update(&invoice, |now| {
                    now.done = true;
                    Ok(())
                })?;
                Ok(json!({"locked": true, "collected": covered, "of": inv.amount}))
            }
            Ok(Err(e)) => Err(e.into()),
            Err(e) => Err(LinkError::Malformed(format!("the ledger refused to write: {e}"))),
        }
    }

    /// Whether `payer`'s part of `invoice_id` belongs to an abandoned collection: this hub
    /// agrees to its cancel before its expiry.
    pub fn abandoned_part(&self, invoice_id: B256, payer: Address) -> bool {
        self.map().get(&invoice_id).is_some_and(|c| c.abandoned && c.parts.iter().any(|p| p.payer == payer))
    }

    /// The invoices of abandoned collections holding a part of `payer`.
    pub fn abandoned_parts_of(&self, payer: Address) -> Vec<B256> {
        let map = self.map();
        let abandoned = map.iter().filter(|(_, c)| c.abandoned && c.parts.iter().any(|p| p.payer == payer));
        abandoned.map(|(id, _)| *id).collect()
    }

    /// One round over every collection: completes or forgets it (see [`Collections::complete`]).
    pub async fn advance(&self, node: &crate::engine::Node) {
        let ids: Vec<B256> = self.map().keys().copied().collect();
        for id in ids {
            if let Err(e) = self.complete(node, id).await {
                tracing::warn!(invoice = %id, error = %e, "a split payment not collected yet; retrying next round");
            }
        }
    }
}
