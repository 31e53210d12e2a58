//! The queryable projection of the ledger (issue 23): tables an operator, a report or a back
//! office can query with SQL — `accounts` (running totals per channel), `transfers` (every
//! payment, purchase and custodial movement), `seals` (each group commit's proof-batch
//! signature) and `checkpoints` — filled from the ledger's own records (`batches`), off the
//! commit path, by a thread with its own connection.
//!
//! The records are the only source: the projection is derived, never read back by the hub, and
//! can be dropped and rebuilt from `seq` 0. It is idempotent by sequence number: each batch is
//! projected in one transaction that also moves `projection_cursor` from the batch's
//! predecessor to its last `seq` (the move fails if another projector got there first, and the
//! transaction is abandoned), rows are keyed by `seq`, and the running totals only ever rise
//! (each update is conditioned on a higher nonce). How far it lags the ledger is exported by
//! the node as `infhub_projection_lag_records`.
//!
//! Amounts are `numeric` (they are u128 in the ledger), addresses and hashes `bytea`.

use crate::{db, decode_batch, seq_of, seq_param};
use infhub_core::ledger::{ChainEvent, Command, Outcome};
use infhub_core::messages::{Credit, PaymentKind, SignedCredit};
use infhub_core::{Address, Amount};
use infhub_ledger::store::{LogRecord, StoreError};
use postgres::{Client, NoTls, Transaction};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Most ledger batches projected per transaction round.
pub const PROJECTION_BATCHES_PER_ROUND: i64 = 64;
/// The projector's pause once it has caught up, or after an error.
pub const PROJECTION_IDLE_MS: u64 = 100;

/// The projection's tables in one schema, on a connection of its own.
pub struct Projection {
    client: Client,
    schema: String,
    cursor: u64,
}

/// What to write for one record: rows of `transfers` and updates of `accounts`.
#[derive(Debug, Default, PartialEq, Eq)]
struct Rows {
    transfers: Vec<TransferRow>,
    credits: Vec<Credit>,
    debits: Vec<(Address, u64, u64, Amount)>,
}

/// One row of `transfers`.
#[derive(Debug, PartialEq, Eq)]
struct TransferRow {
    kind: &'static str,
    payer: Option<Address>,
    payee: Option<Address>,
    amount: Amount,
    id: infhub_core::B256,
}

fn amount_text(a: Amount) -> String {
    a.0.to_string()
}

impl Projection {
    /// Connects and creates the projection's tables if absent.
    pub fn open(url: &str, schema: &str) -> Result<Projection, StoreError> {
        crate::check_schema(schema)?;
        let mut client = Client::connect(url, NoTls).map_err(db("connect the projection"))?;
        let s = schema;
        client
            .batch_execute(&format!(
                "CREATE SCHEMA IF NOT EXISTS {s};
                 CREATE TABLE IF NOT EXISTS {s}.projection_cursor (
                     id int PRIMARY KEY CHECK (id = 1), seq bigint NOT NULL);
                 CREATE TABLE IF NOT EXISTS {s}.accounts (
                     account bytea PRIMARY KEY,
                     epoch bigint NOT NULL,
                     status text NOT NULL,
                     deposited numeric NOT NULL DEFAULT 0,
                     withdrawn numeric NOT NULL DEFAULT 0,
                     withdrawal_held numeric NOT NULL DEFAULT 0,
                     credit_nonce bigint NOT NULL DEFAULT 0,
                     cumulative_credit numeric NOT NULL DEFAULT 0,
                     debit_nonce bigint NOT NULL DEFAULT 0,
                     cumulative_debit numeric NOT NULL DEFAULT 0,
                     updated_seq bigint NOT NULL);
                 CREATE TABLE IF NOT EXISTS {s}.transfers (
                     seq bigint NOT NULL,
                     position int NOT NULL,
                     kind text NOT NULL,
                     payer bytea,
                     payee bytea,
                     amount numeric NOT NULL,
                     id bytea NOT NULL,
                     PRIMARY KEY (seq, position));
                 CREATE TABLE IF NOT EXISTS {s}.seals (
                     seq bigint PRIMARY KEY, root bytea NOT NULL, signature bytea NOT NULL, proofs bigint NOT NULL);
                 CREATE TABLE IF NOT EXISTS {s}.checkpoints (
                     id bigint PRIMARY KEY, seq bigint NOT NULL, root bytea NOT NULL,
                     total_liability numeric NOT NULL, ledger_seq bigint NOT NULL, chain_block bigint NOT NULL);"
            ))
            .map_err(db("create the projection's tables"))?;
        let row = client
            .query_opt(&format!("SELECT seq FROM {s}.projection_cursor WHERE id = 1"), &[])
            .map_err(db("read the projection cursor"))?;
        let cursor = match row {
            Some(r) => seq_of(r.get(0))?,
            None => {
                client
                    .execute(&format!("INSERT INTO {s}.projection_cursor VALUES (1, 0) ON CONFLICT DO NOTHING"), &[])
                    .map_err(db("start the projection cursor"))?;
                0
            }
        };
        Ok(Projection { client, schema: schema.to_string(), cursor })
    }

    /// The last ledger `seq` projected.
    pub fn cursor(&self) -> u64 {
        self.cursor
    }

    /// Projects up to [`PROJECTION_BATCHES_PER_ROUND`] batches after the cursor, each in its
    /// own transaction; returns how many records it projected (0: caught up).
    pub fn catch_up(&mut self) -> Result<u64, StoreError> {
        let s = &self.schema;
        let rows = self
            .client
            .query(
                &format!("SELECT first_seq, last_seq, records FROM {s}.batches WHERE last_seq > $1 ORDER BY first_seq LIMIT $2"),
                &[&seq_param(self.cursor)?, &PROJECTION_BATCHES_PER_ROUND],
            )
            .map_err(db("read batches to project"))?;
        let mut projected = 0;
        for row in rows {
            let (first, last) = (seq_of(row.get(0))?, seq_of(row.get(1))?);
            let records: Vec<LogRecord> =
                decode_batch(first, row.get(2))?.into_iter().filter(|r| r.seq > self.cursor).collect();
            let mut tx = self.client.transaction().map_err(db("begin a projection"))?;
            let moved = tx
                .execute(
                    &format!("UPDATE {s}.projection_cursor SET seq = $2 WHERE id = 1 AND seq = $1"),
                    &[&seq_param(self.cursor)?, &seq_param(last)?],
                )
                .map_err(db("move the projection cursor"))?;
            if moved == 0 {
                // Another projector moved it: take its position and go on from there.
                drop(tx);
                let now: i64 = self
                    .client
                    .query_one(&format!("SELECT seq FROM {s}.projection_cursor WHERE id = 1"), &[])
                    .map_err(db("read the projection cursor"))?
                    .get(0);
                self.cursor = seq_of(now)?;
                return Ok(projected);
            }
            for record in &records {
                project(&mut tx, s, record)?;
            }
            tx.commit().map_err(db("commit a projection"))?;
            self.cursor = last;
            projected += records.len() as u64;
        }
        Ok(projected)
    }
}

/// The rows one record gives (no database: unit-tested on its own).
fn rows_of(record: &LogRecord) -> Rows {
    let mut rows = Rows::default();
    let credit = |rows: &mut Rows, c: &SignedCredit| rows.credits.push(c.message);
    match (&record.command, &record.outcome) {
        (Command::Transfer(d), Outcome::Paid { credit: c, .. }) => {
            let m = &d.message;
            let kind = if PaymentKind::from_u8(m.kind) == Ok(PaymentKind::External) { "external" } else { "internal" };
            rows.transfers.push(TransferRow {
                kind,
                payer: Some(m.user),
                payee: Some(m.recipient),
                amount: m.amount,
                id: m.payment_id,
            });
            rows.debits.push((m.user, m.epoch, m.nonce, m.cumulative_debit));
            if let Some(c) = c {
                credit(&mut rows, c);
            }
        }
        (Command::Transfer(d), Outcome::Refunded { refund, .. }) => {
            let m = &d.message;
            rows.transfers.push(TransferRow {
                kind: "refunded",
                payer: Some(m.user),
                payee: Some(m.recipient),
                amount: m.amount,
                id: m.payment_id,
            });
            rows.debits.push((m.user, m.epoch, m.nonce, m.cumulative_debit));
            credit(&mut rows, refund);
        }
        (Command::Purchase { user, amount, purchase_id }, Outcome::Credited(c)) => {
            rows.transfers.push(TransferRow {
                kind: "purchase",
                payer: None,
                payee: Some(*user),
                amount: *amount,
                id: *purchase_id,
            });
            credit(&mut rows, c);
        }
        (Command::Purchase { user, amount, purchase_id }, Outcome::CustodialCredited) => {
            rows.transfers.push(TransferRow {
                kind: "purchase",
                payer: None,
                payee: Some(*user),
                amount: *amount,
                id: *purchase_id,
            });
        }
        (Command::CustodialTransfers(batch), Outcome::CustodialTransfers(results)) => {
            for (t, r) in batch.iter().zip(results) {
                if let infhub_core::ledger::CustodialResult::Moved { credit: c } = r {
                    rows.transfers.push(TransferRow {
                        kind: "custodial",
                        payer: Some(t.from),
                        payee: Some(t.to),
                        amount: t.amount,
                        id: t.transfer_id,
                    });
                    if let Some(c) = c {
                        credit(&mut rows, c);
                    }
                }
            }
        }
        (Command::CustodialWithdraw { from, recipient, amount, transfer_id }, Outcome::CustodialPayoutQueued(_)) => {
            rows.transfers.push(TransferRow {
                kind: "custodial_withdrawal",
                payer: Some(*from),
                payee: Some(*recipient),
                amount: *amount,
                id: *transfer_id,
            });
        }
        (Command::ConvertToChannel { account, user, transfer_id }, Outcome::Converted { credit: c, amount }) => {
            rows.transfers.push(TransferRow {
                kind: "conversion",
                payer: Some(*account),
                payee: Some(*user),
                amount: *amount,
                id: *transfer_id,
            });
            credit(&mut rows, c);
        }
        _ => {}
    }
    rows
}

/// Writes one record's rows in `tx`.
fn project(tx: &mut Transaction<'_>, s: &str, record: &LogRecord) -> Result<(), StoreError> {
    let seq = seq_param(record.seq)?;
    let rows = rows_of(record);
    for (position, t) in rows.transfers.iter().enumerate() {
        let position =
            i32::try_from(position).map_err(|_| StoreError::Corrupt("a batch of over 2^31 transfers".into()))?;
        tx.execute(
            &format!(
                "INSERT INTO {s}.transfers (seq, position, kind, payer, payee, amount, id)
                 VALUES ($1, $2, $3, $4, $5, $6::text::numeric, $7) ON CONFLICT DO NOTHING"
            ),
            &[
                &seq,
                &position,
                &t.kind,
                &t.payer.as_ref().map(|a| a.as_slice()),
                &t.payee.as_ref().map(|a| a.as_slice()),
                &amount_text(t.amount),
                &t.id.as_slice(),
            ],
        )
        .map_err(db("project a transfer"))?;
    }
    for c in &rows.credits {
        tx.execute(
            &format!(
                "UPDATE {s}.accounts SET credit_nonce = $3, cumulative_credit = $4::text::numeric, updated_seq = $5
                 WHERE account = $1 AND epoch = $2 AND credit_nonce < $3"
            ),
            &[
                &c.user.as_slice(),
                &epoch_param(c.epoch)?,
                &seq_param(c.nonce)?,
                &amount_text(c.cumulative_credit),
                &seq,
            ],
        )
        .map_err(db("project a credit"))?;
    }
    for (user, epoch, nonce, total) in &rows.debits {
        tx.execute(
            &format!(
                "UPDATE {s}.accounts SET debit_nonce = $3, cumulative_debit = $4::text::numeric, updated_seq = $5
                 WHERE account = $1 AND epoch = $2 AND debit_nonce < $3"
            ),
            &[&user.as_slice(), &epoch_param(*epoch)?, &seq_param(*nonce)?, &amount_text(*total), &seq],
        )
        .map_err(db("project a debit"))?;
    }
    match (&record.command, &record.outcome) {
        (Command::Withdraw { withdrawal, .. }, Outcome::WithdrawalCoSigned { .. }) => {
            tx.execute(
                &format!(
                    "UPDATE {s}.accounts SET withdrawal_held = greatest(withdrawal_held, $3::text::numeric), updated_seq = $4
                     WHERE account = $1 AND epoch = $2"
                ),
                &[
                    &withdrawal.user.as_slice(),
                    &epoch_param(withdrawal.epoch)?,
                    &amount_text(withdrawal.cumulative_withdrawn),
                    &seq,
                ],
            )
            .map_err(db("project a withdrawal"))?;
        }
        (Command::SealProofs, Outcome::Sealed { root, signature, proofs }) => {
            tx.execute(
                &format!("INSERT INTO {s}.seals VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING"),
                &[&seq, &root.as_slice(), &signature.0.as_slice(), &i64::from(*proofs)],
            )
            .map_err(db("project a seal"))?;
        }
        (Command::CheckpointBuilt(h), _) => {
            let c = &h.checkpoint;
            tx.execute(
                &format!(
                    "INSERT INTO {s}.checkpoints VALUES ($1, $2, $3, $4::text::numeric, $5, $6) ON CONFLICT DO NOTHING"
                ),
                &[
                    &seq_param(h.id)?,
                    &seq,
                    &c.root.as_slice(),
                    &c.total_liability.to_string(),
                    &seq_param(c.ledger_seq)?,
                    &seq_param(c.chain_block)?,
                ],
            )
            .map_err(db("project a checkpoint"))?;
        }
        (Command::Chain { event, .. }, Outcome::Applied(_)) => project_chain_event(tx, s, seq, event)?,
        _ => {}
    }
    Ok(())
}

fn epoch_param(epoch: u64) -> Result<i64, StoreError> {
    seq_param(epoch)
}

/// The channel's life from the chain: opened (a new epoch starts from zero), deposits and
/// withdrawals as running totals, a close and its settlement.
fn project_chain_event(tx: &mut Transaction<'_>, s: &str, seq: i64, event: &ChainEvent) -> Result<(), StoreError> {
    let (sql, user, epoch, total): (String, Address, u64, Option<Amount>) = match *event {
        ChainEvent::ChannelOpened { user, epoch, .. } => (
            format!(
                "INSERT INTO {s}.accounts (account, epoch, status, updated_seq) VALUES ($1, $2, 'open', $3)
                 ON CONFLICT (account) DO UPDATE SET epoch = EXCLUDED.epoch, status = 'open', deposited = 0,
                     withdrawn = 0, withdrawal_held = 0, credit_nonce = 0, cumulative_credit = 0, debit_nonce = 0,
                     cumulative_debit = 0, updated_seq = EXCLUDED.updated_seq
                 WHERE {s}.accounts.epoch < EXCLUDED.epoch"
            ),
            user,
            epoch,
            None,
        ),
        ChainEvent::Deposited { user, epoch, total_deposited } => (
            format!(
                "UPDATE {s}.accounts SET deposited = greatest(deposited, $4::text::numeric), updated_seq = $3
                 WHERE account = $1 AND epoch = $2"
            ),
            user,
            epoch,
            Some(total_deposited),
        ),
        ChainEvent::Withdrawn { user, epoch, total_withdrawn, .. } => (
            format!(
                "UPDATE {s}.accounts SET withdrawn = greatest(withdrawn, $4::text::numeric), updated_seq = $3
                 WHERE account = $1 AND epoch = $2"
            ),
            user,
            epoch,
            Some(total_withdrawn),
        ),
        ChainEvent::ExitStarted { user, epoch, .. } => (
            format!(
                "UPDATE {s}.accounts SET status = 'closing', updated_seq = $3
                 WHERE account = $1 AND epoch = $2 AND status = 'open'"
            ),
            user,
            epoch,
            None,
        ),
        ChainEvent::Settled { user, epoch, .. } => (
            format!("UPDATE {s}.accounts SET status = 'settled', updated_seq = $3 WHERE account = $1 AND epoch = $2"),
            user,
            epoch,
            None,
        ),
        _ => return Ok(()),
    };
    let epoch = epoch_param(epoch)?;
    let written = match total {
        Some(t) => tx.execute(&sql, &[&user.as_slice(), &epoch, &seq, &amount_text(t)]),
        None => tx.execute(&sql, &[&user.as_slice(), &epoch, &seq]),
    };
    written.map_err(db("project a chain event")).map(|_| ())
}

/// A thread that keeps the projection caught up with the ledger until dropped.
pub struct Projector {
    projected: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Projector {
    /// Starts projecting the ledger in `schema` at `url`. Errors (the database unreachable, a
    /// failover) are logged and retried after [`PROJECTION_IDLE_MS`]; the projection resumes at
    /// its cursor.
    /// The last `seq` projected is kept in `projected`.
    pub fn start(url: String, schema: String, projected: Arc<AtomicU64>) -> Projector {
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s) = (projected.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("infhub-projection".into())
            .spawn(move || {
                let mut projection: Option<Projection> = None;
                let mut failing = false;
                while !s.load(Ordering::SeqCst) {
                    let round = match projection.as_mut() {
                        Some(pr) => pr.catch_up().map(|n| (n, pr.cursor())),
                        None => Projection::open(&url, &schema).map(|pr| {
                            let cursor = pr.cursor();
                            projection = Some(pr);
                            (1, cursor)
                        }),
                    };
                    match round {
                        Ok((n, cursor)) => {
                            p.store(cursor, Ordering::Relaxed);
                            if failing {
                                tracing::info!(cursor, "projection resumed");
                                failing = false;
                            }
                            if n == 0 {
                                std::thread::sleep(Duration::from_millis(PROJECTION_IDLE_MS));
                            }
                        }
                        Err(e) => {
                            if !failing {
                                tracing::warn!(error = %e, "projection failed; retrying");
                                failing = true;
                            }
                            projection = None;
                            std::thread::sleep(Duration::from_millis(PROJECTION_IDLE_MS));
                        }
                    }
                }
            })
            .expect("spawn the projection thread");
        Projector { projected, stop, thread: Some(thread) }
    }

    /// The last ledger `seq` projected (0 until the first round).
    pub fn projected_seq(&self) -> u64 {
        self.projected.load(Ordering::Relaxed)
    }
}

impl Drop for Projector {
    fn drop(&mut self) {
        // Not joined (see `ReplicationMonitor`): the thread ends at its next look at the flag;
        // a projection it was writing commits or rolls back whole.
        self.stop.store(true, Ordering::SeqCst);
        drop(self.thread.take());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use infhub_core::messages::Signed;
    use infhub_core::{PrivateKey, B256};

    #[test]
    fn a_payment_gives_a_transfer_a_debit_and_the_payees_credit_and_a_refused_command_nothing() {
        let domain = infhub_core::Domain { chain_id: 1, verifying_contract: Address::repeat_byte(1) };
        let payer = PrivateKey::from_bytes([7; 32]).expect("key");
        let payee = Address::repeat_byte(9);
        let debit = infhub_core::Debit {
            user: payer.address(),
            epoch: 1,
            nonce: 4,
            cumulative_debit: Amount(40),
            locked_amount: Amount::ZERO,
            locks_root: B256::ZERO,
            kind: PaymentKind::Internal as u8,
            recipient: payee,
            amount: Amount(10),
            payment_id: B256::repeat_byte(3),
        };
        let signed = Signed::new(debit, &domain, &payer);
        let credit = Credit {
            user: payee,
            epoch: 1,
            nonce: 12,
            cumulative_credit: Amount(70),
            locked_amount: Amount::ZERO,
            locks_root: B256::ZERO,
        };
        let hub = PrivateKey::from_bytes([8; 32]).expect("key");
        let hub_credit = infhub_core::messages::HubSigned::new(credit, &domain, &hub);
        let receipt = infhub_core::messages::Receipt {
            payer: payer.address(),
            epoch: 1,
            debit_nonce: 4,
            payment_id: debit.payment_id,
            debit_digest: B256::ZERO,
        };
        let outcome = Outcome::Paid {
            receipt: infhub_core::messages::HubSigned::new(receipt, &domain, &hub),
            credit: Some(hub_credit),
            payout: None,
        };
        let rows = rows_of(&LogRecord { seq: 5, at_ms: 5, command: Command::Transfer(signed), outcome });
        assert_eq!(
            rows.transfers,
            vec![TransferRow {
                kind: "internal",
                payer: Some(payer.address()),
                payee: Some(payee),
                amount: Amount(10),
                id: debit.payment_id
            }]
        );
        assert_eq!(rows.debits, vec![(payer.address(), 1, 4, Amount(40))]);
        assert_eq!(rows.credits, vec![credit]);
        let duplicate = LogRecord {
            seq: 6,
            at_ms: 6,
            command: Command::Transfer(signed),
            outcome: Outcome::Duplicate { first_seq: 5 },
        };
        assert_eq!(rows_of(&duplicate), Rows::default(), "a duplicate moves nothing");
    }
}
