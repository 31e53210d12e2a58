//! Prometheus metrics, kept by hand with atomics (no registry crate): request counts and a
//! latency histogram, where the ledger writer spends a request's time (queue wait, apply and
//! batch signature, append and fsync, history index), transfers, group-commit batch sizes,
//! chain progress, and the books (reserve, liabilities). Rendered in the text exposition
//! format at `/metrics`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// A histogram with fixed upper bounds.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    counts: Vec<AtomicU64>,
    sum_micros: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            counts: (0..bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_micros: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    /// Records one observation: one count in the first bucket that holds it (the rendering
    /// makes the counts cumulative), so the writer pays one atomic add, not one per bucket.
    pub fn observe(&self, v: f64) {
        if let Some(i) = self.bounds.iter().position(|b| v <= *b) {
            self.counts[i].fetch_add(1, Ordering::Relaxed);
        }
        self.sum_micros.fetch_add((v * 1e6) as u64, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    fn render(&self, name: &str, help: &str, out: &mut String) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            cumulative += c.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {cumulative}");
        }
        // A scrape racing an observation may see its bucket before its count: the +Inf bucket
        // never shows fewer than the finite ones.
        let n = self.count.load(Ordering::Relaxed).max(cumulative);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {n}");
        let _ = writeln!(out, "{name}_sum {}", self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6);
        let _ = writeln!(out, "{name}_count {n}");
    }
}

/// Every metric of the node.
#[derive(Debug)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    /// Request latency in seconds.
    pub request_seconds: Histogram,
    /// Commands per group commit (one fsync each).
    pub batch_commands: Histogram,
    /// Seconds a command waited in the write queue before the writer took it.
    pub write_queue_seconds: Histogram,
    /// Seconds the writer spent per group commit applying the commands and signing the batch.
    pub commit_apply_seconds: Histogram,
    /// Seconds per group commit appending the records and waiting for their `fdatasync`.
    pub commit_sync_seconds: Histogram,
    /// Seconds per group commit indexing the history.
    pub commit_history_seconds: Histogram,
    /// Seconds the commit that reached the snapshot interval spent starting the snapshot
    /// (copying the ledger; the rest is on the snapshot thread).
    pub snapshot_seconds: Histogram,
    /// Seconds the snapshot thread worked per snapshot (check, encode, write, sync).
    pub snapshot_background_seconds: Histogram,
    /// Internal and external transfers applied.
    pub transfers: AtomicU64,
    /// Group commits (fsyncs).
    pub commits: AtomicU64,
    /// Times the ledger was reopened from its database after a storage failure.
    pub storage_reopens: AtomicU64,
    /// The ledger's newest sequence number (refreshed when scraped).
    pub ledger_seq: AtomicU64,
    /// The last sequence number the queryable projection holds (written by its thread), when
    /// the projection runs.
    pub projected_seq: std::sync::Mutex<Option<std::sync::Arc<AtomicU64>>>,
    /// How the database's replicas keep up, on PostgreSQL.
    pub replication: std::sync::Mutex<Option<std::sync::Arc<infhub_pg::monitor::ReplicationGauges>>>,
    /// 1 while writes are refused after a storage failure (until reopened or restarted).
    pub storage_down: AtomicU64,
    /// Chain head seen.
    pub chain_head: AtomicU64,
    /// Highest confirmed block applied.
    pub chain_confirmed: AtomicU64,
    /// Confirmed chain events the ledger refused (each a bug or an inconsistent chain; see
    /// `/v1/info` `refusedChainEvents` for the last one).
    pub chain_events_refused: AtomicU64,
    /// Credits delivered to users' towers.
    pub tower_pushes: AtomicU64,
    /// Pushes to towers that failed (retried).
    pub tower_push_failures: AtomicU64,
    /// Credits waiting to reach a tower.
    pub tower_pushes_pending: AtomicU64,
    /// Notices the tower pusher missed because it fell behind (a later credit supersedes them).
    pub tower_pushes_lagged: AtomicU64,
    /// Reserve mirrored in the ledger (f64 bits).
    reserve: AtomicU64,
    /// Sum of all users' claims (f64 bits).
    liabilities: AtomicU64,
    /// Reserve not committed to anything (f64 bits).
    free_reserve: AtomicU64,
    /// 1 while free reserve is below `liquidity.low_free_reserve_below`.
    pub free_reserve_low: AtomicU64,
    /// What the chain duties did (copied from them every tick).
    pub duties: Mutex<infhub_hub::duties::DutyCounters>,
    /// Accounts.
    pub accounts: AtomicU64,
    /// Requests refused because a queue or limit was full.
    pub shed: AtomicU64,
    /// Discrepancies found by the last reconciliation.
    reconciliation_discrepancies: AtomicU64,
    /// Reconciliations run (ok) and failed to run.
    reconciliation_runs: AtomicU64,
    reconciliation_failures: AtomicU64,
}

/// Fine enough below 10 ms to tell where a millisecond tail comes from.
const LATENCY_BOUNDS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.00075, 0.001, 0.0015, 0.002, 0.003, 0.004, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05,
    0.1, 0.25, 0.5, 1.0, 2.5,
];
const SNAPSHOT_BOUNDS: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
const BATCH_BOUNDS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0];

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            requests: Mutex::new(BTreeMap::new()),
            request_seconds: Histogram::new(LATENCY_BOUNDS),
            batch_commands: Histogram::new(BATCH_BOUNDS),
            write_queue_seconds: Histogram::new(LATENCY_BOUNDS),
            commit_apply_seconds: Histogram::new(LATENCY_BOUNDS),
            commit_sync_seconds: Histogram::new(LATENCY_BOUNDS),
            commit_history_seconds: Histogram::new(LATENCY_BOUNDS),
            snapshot_seconds: Histogram::new(SNAPSHOT_BOUNDS),
            snapshot_background_seconds: Histogram::new(SNAPSHOT_BOUNDS),
            transfers: AtomicU64::new(0),
            commits: AtomicU64::new(0),
            storage_reopens: AtomicU64::new(0),
            ledger_seq: AtomicU64::new(0),
            projected_seq: std::sync::Mutex::new(None),
            replication: std::sync::Mutex::new(None),
            storage_down: AtomicU64::new(0),
            chain_head: AtomicU64::new(0),
            chain_confirmed: AtomicU64::new(0),
            chain_events_refused: AtomicU64::new(0),
            tower_pushes: AtomicU64::new(0),
            tower_push_failures: AtomicU64::new(0),
            tower_pushes_pending: AtomicU64::new(0),
            tower_pushes_lagged: AtomicU64::new(0),
            reserve: AtomicU64::new(0),
            liabilities: AtomicU64::new(0),
            free_reserve: AtomicU64::new(0),
            free_reserve_low: AtomicU64::new(0),
            duties: Mutex::new(Default::default()),
            accounts: AtomicU64::new(0),
            shed: AtomicU64::new(0),
            reconciliation_discrepancies: AtomicU64::new(0),
            reconciliation_runs: AtomicU64::new(0),
            reconciliation_failures: AtomicU64::new(0),
        }
    }
}

impl Metrics {
    /// Counts a finished request.
    pub fn request(&self, route: &str, status: u16, seconds: f64) {
        let mut m = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        *m.entry((route.to_string(), status)).or_default() += 1;
        drop(m);
        self.request_seconds.observe(seconds);
    }

    /// Sets the free-reserve gauge (token base units).
    pub fn set_free_reserve(&self, free: u128) {
        self.free_reserve.store((free as f64).to_bits(), Ordering::Relaxed);
    }

    /// Sets the books' gauges (token base units).
    pub fn set_books(&self, reserve: u128, liabilities: u128) {
        self.reserve.store((reserve as f64).to_bits(), Ordering::Relaxed);
        self.liabilities.store((liabilities as f64).to_bits(), Ordering::Relaxed);
    }

    /// Records a reconciliation run.
    pub fn reconciliation(&self, discrepancies: u64, ran: bool) {
        if ran {
            self.reconciliation_runs.fetch_add(1, Ordering::Relaxed);
            self.reconciliation_discrepancies.store(discrepancies, Ordering::Relaxed);
        } else {
            self.reconciliation_failures.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The latency and batch-size histograms.
    fn render_tower_pushes(&self, out: &mut String) {
        let g = |out: &mut String, name: &str, kind: &str, help: &str, v: u64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}");
        };
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        g(out, "infhub_tower_pushes_total", "counter", "Credits delivered to users' towers.", load(&self.tower_pushes));
        g(
            out,
            "infhub_tower_push_failures_total",
            "counter",
            "Failed pushes to towers (retried).",
            load(&self.tower_push_failures),
        );
        g(
            out,
            "infhub_tower_pushes_pending",
            "gauge",
            "Credits waiting to reach a tower.",
            load(&self.tower_pushes_pending),
        );
        g(
            out,
            "infhub_tower_pushes_lagged_total",
            "counter",
            "Notices the tower pusher missed (superseded by later credits).",
            load(&self.tower_pushes_lagged),
        );
    }

    fn render_latencies(&self, out: &mut String) {
        self.request_seconds.render("infhub_http_request_duration_seconds", "Request latency.", out);
        self.batch_commands.render("infhub_ledger_batch_commands", "Commands per group commit (fsync).", out);
        self.write_queue_seconds.render(
            "infhub_ledger_queue_wait_seconds",
            "Time a command waited in the write queue before the writer took it.",
            out,
        );
        self.commit_apply_seconds.render(
            "infhub_ledger_commit_apply_seconds",
            "Per group commit: taking the state lock, applying the commands and signing the batch (and a snapshot when one is due).",
            out,
        );
        self.commit_sync_seconds.render(
            "infhub_ledger_commit_sync_seconds",
            "Per group commit: appending the records and waiting for fdatasync.",
            out,
        );
        self.commit_history_seconds.render(
            "infhub_ledger_commit_history_seconds",
            "Per group commit: indexing the history.",
            out,
        );
        self.snapshot_seconds.render(
            "infhub_ledger_snapshot_seconds",
            "Per ledger snapshot: what the commit that reached the interval paid (copying the ledger; part of its apply time).",
            out,
        );
        self.snapshot_background_seconds.render(
            "infhub_ledger_snapshot_background_seconds",
            "Per ledger snapshot: the snapshot thread's check, encode, write and sync.",
            out,
        );
    }

    /// The ledger's sequence number and, when the projection runs, how far behind it is.
    fn render_projection(&self, out: &mut String) {
        let g = |out: &mut String, name: &str, help: &str, v: u64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        };
        let ledger_seq = self.ledger_seq.load(Ordering::Relaxed);
        g(out, "infhub_ledger_seq", "The ledger's newest sequence number.", ledger_seq);
        if let Some(projected) = self.projected_seq.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            let projected = projected.load(Ordering::Relaxed);
            g(out, "infhub_projection_seq", "The last sequence number in the queryable projection.", projected);
            let lag = ledger_seq.saturating_sub(projected);
            g(out, "infhub_projection_lag_records", "Ledger records not yet in the projection.", lag);
        }
        let replication = self.replication.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some(r) = replication.filter(|r| r.sampled.load(Ordering::Relaxed)) {
            let standbys = r.standbys.load(Ordering::Relaxed);
            g(out, "infhub_postgres_standbys", "Standbys streaming from the primary.", standbys);
            let synchronous = r.synchronous.load(Ordering::Relaxed);
            g(out, "infhub_postgres_synchronous_standbys", "Of them, synchronous.", synchronous);
            let lag = r.lag_bytes.load(Ordering::Relaxed);
            g(out, "infhub_postgres_replica_lag_bytes", "WAL bytes the furthest standby has yet to replay.", lag);
        }
    }

    /// The text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "# HELP infhub_http_requests_total HTTP requests by route and status.");
        let _ = writeln!(out, "# TYPE infhub_http_requests_total counter");
        for ((route, status), n) in self.requests.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            let _ = writeln!(out, "infhub_http_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}");
        }
        self.render_latencies(&mut out);
        let g = |out: &mut String, name: &str, kind: &str, help: &str, v: u64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}");
        };
        g(&mut out, "infhub_transfers_total", "counter", "Transfers applied.", self.transfers.load(Ordering::Relaxed));
        g(&mut out, "infhub_ledger_commits_total", "counter", "Group commits.", self.commits.load(Ordering::Relaxed));
        let reopens = self.storage_reopens.load(Ordering::Relaxed);
        g(&mut out, "infhub_storage_reopens_total", "counter", "Ledger reopened from its database.", reopens);
        let down = self.storage_down.load(Ordering::Relaxed);
        g(&mut out, "infhub_storage_down", "gauge", "1 while writes are refused after a storage failure.", down);
        self.render_projection(&mut out);
        g(
            &mut out,
            "infhub_shed_total",
            "counter",
            "Requests shed by a full limit.",
            self.shed.load(Ordering::Relaxed),
        );
        let head = self.chain_head.load(Ordering::Relaxed);
        let confirmed = self.chain_confirmed.load(Ordering::Relaxed);
        g(&mut out, "infhub_chain_head_block", "gauge", "Chain head seen.", head);
        g(&mut out, "infhub_chain_confirmed_block", "gauge", "Confirmed block applied.", confirmed);
        g(&mut out, "infhub_chain_lag_blocks", "gauge", "Head minus confirmed.", head.saturating_sub(confirmed));
        g(
            &mut out,
            "infhub_chain_events_refused_total",
            "counter",
            "Confirmed chain events the ledger refused.",
            self.chain_events_refused.load(Ordering::Relaxed),
        );
        self.render_tower_pushes(&mut out);
        for (name, help, bits) in [
            ("infhub_reserve_base_units", "Hub reserve in token base units.", &self.reserve),
            ("infhub_liabilities_base_units", "Sum of users' claims in token base units.", &self.liabilities),
            (
                "infhub_free_reserve_base_units",
                "Reserve not committed to channels, payouts, custodial balances or an announced withdrawal, in token base units.",
                &self.free_reserve,
            ),
        ] {
            let v = f64::from_bits(bits.load(Ordering::Relaxed));
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        }
        g(&mut out, "infhub_accounts", "gauge", "Accounts.", self.accounts.load(Ordering::Relaxed));
        g(
            &mut out,
            "infhub_free_reserve_low",
            "gauge",
            "1 while free reserve is below liquidity.low_free_reserve_below (top up, or realize).",
            self.free_reserve_low.load(Ordering::Relaxed),
        );
        let d = *self.duties.lock().unwrap_or_else(|p| p.into_inner());
        for (name, help, v) in [
            (
                "infhub_duty_transactions_total",
                "Hub transactions sent for duties (disputes, settlements, payouts, realizations).",
                d.sent,
            ),
            ("infhub_duty_resends_total", "Of those, resends of a duty still due after its transaction.", d.resent),
            ("infhub_realizations_mined_total", "Realization transactions mined.", d.realizations_mined),
            ("infhub_debits_realized_total", "Debits in the realization transactions mined.", d.debits_realized),
            ("infhub_realization_gas_total", "Gas used by the realization transactions mined.", d.realization_gas),
            ("infhub_hub_transactions_reverted_total", "Hub transactions mined that reverted.", d.reverted),
        ] {
            g(&mut out, name, "counter", help, v);
        }
        g(
            &mut out,
            "infhub_reconciliation_discrepancies",
            "gauge",
            "Discrepancies between ledger and chain found by the last reconciliation (alert if > 0).",
            self.reconciliation_discrepancies.load(Ordering::Relaxed),
        );
        g(
            &mut out,
            "infhub_reconciliation_runs_total",
            "counter",
            "Reconciliations completed.",
            self.reconciliation_runs.load(Ordering::Relaxed),
        );
        g(
            &mut out,
            "infhub_reconciliation_failures_total",
            "counter",
            "Reconciliations that could not run (chain unavailable).",
            self.reconciliation_failures.load(Ordering::Relaxed),
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_render_cumulative_with_everything_in_inf() {
        let h = Histogram::new(&[0.001, 0.01, 0.1]);
        for v in [0.0003, 0.0009, 0.002, 0.05, 7.0] {
            h.observe(v);
        }
        let mut out = String::new();
        h.render("x", "help", &mut out);
        for line in [
            "x_bucket{le=\"0.001\"} 2",
            "x_bucket{le=\"0.01\"} 3",
            "x_bucket{le=\"0.1\"} 4",
            "x_bucket{le=\"+Inf\"} 5",
            "x_count 5",
        ] {
            assert!(out.lines().any(|l| l == line), "missing {line:?} in:\n{out}");
        }
    }
}
