//! Where a transfer's time goes inside the node: the node's Prometheus histograms (request
//! handling, write-queue wait, apply and batch signature, append and fsync, history index)
//! read before and after the timed phase, so a latency tail seen by the load generator can be
//! placed in the node or outside it (scheduling on shared cores, the generator itself).

use serde_json::{json, Value};

/// A Prometheus histogram: each bucket's upper bound (the last is +Inf) and cumulative count.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Histogram {
    buckets: Vec<(f64, f64)>,
}

impl Histogram {
    /// Reads `name` from a text exposition; None if it is absent.
    pub(crate) fn parse(text: &str, name: &str) -> Option<Histogram> {
        let prefix = format!("{name}_bucket{{le=\"");
        let mut buckets = Vec::new();
        for line in text.lines() {
            let Some(rest) = line.strip_prefix(&prefix) else { continue };
            let (bound, count) = rest.split_once("\"} ")?;
            let bound = if bound == "+Inf" { f64::INFINITY } else { bound.parse().ok()? };
            buckets.push((bound, count.trim().parse().ok()?));
        }
        (!buckets.is_empty()).then_some(Histogram { buckets })
    }

    /// The observations made between `before` and `self` (same bounds), or None if the bounds
    /// differ.
    pub(crate) fn since(&self, before: &Histogram) -> Option<Histogram> {
        if self.buckets.len() != before.buckets.len() {
            return None;
        }
        let mut buckets = Vec::with_capacity(self.buckets.len());
        for (&(b, after), &(b0, earlier)) in self.buckets.iter().zip(&before.buckets) {
            if b != b0 && !(b.is_infinite() && b0.is_infinite()) {
                return None;
            }
            buckets.push((b, (after - earlier).max(0.0)));
        }
        Some(Histogram { buckets })
    }

    /// How many observations.
    pub(crate) fn count(&self) -> f64 {
        self.buckets.last().map_or(0.0, |b| b.1)
    }

    /// The upper bound of the bucket holding quantile `q` (an over-estimate by at most one
    /// bucket); None without observations, +Inf beyond the last finite bound.
    pub(crate) fn quantile(&self, q: f64) -> Option<f64> {
        let n = self.count();
        if n <= 0.0 {
            return None;
        }
        let rank = (q * n).ceil().max(1.0);
        self.buckets.iter().find(|(_, c)| *c >= rank).map(|(b, _)| *b)
    }
}

/// The node's latency histograms, with what each measures.
pub(crate) const STEPS: &[(&str, &str, &str)] = &[
    ("request", "infhub_http_request_duration_seconds", "per request: arrival to answer in the node"),
    ("queueWait", "infhub_ledger_queue_wait_seconds", "per command: queued until the writer takes it"),
    ("apply", "infhub_ledger_commit_apply_seconds", "per commit: state lock, apply, batch signature"),
    ("sync", "infhub_ledger_commit_sync_seconds", "per commit: append and fdatasync"),
    ("history", "infhub_ledger_commit_history_seconds", "per commit: history index"),
    ("snapshot", "infhub_ledger_snapshot_seconds", "per snapshot: the commit's share (within apply)"),
    ("snapshotThread", "infhub_ledger_snapshot_background_seconds", "per snapshot: on its own thread"),
];

/// The p50, p99 and p999 (milliseconds, bucket upper bounds) of each step over the interval between
/// two scrapes, as JSON keyed by step; steps without observations or metrics are left out.
pub(crate) fn breakdown(before: &str, after: &str) -> Value {
    let mut out = serde_json::Map::new();
    for (key, metric, what) in STEPS {
        let (Some(a), Some(b)) = (Histogram::parse(after, metric), Histogram::parse(before, metric)) else { continue };
        let Some(h) = a.since(&b) else { continue };
        let (Some(p50), Some(p99), Some(p999)) = (h.quantile(0.5), h.quantile(0.99), h.quantile(0.999)) else {
            continue;
        };
        let ms = |s: f64| if s.is_finite() { json!(s * 1e3) } else { json!("over the last bound") };
        out.insert(
            (*key).to_string(),
            json!({"p50Ms": ms(p50), "p99Ms": ms(p99), "p999Ms": ms(p999), "count": h.count(), "what": what}),
        );
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEFORE: &str = "# TYPE x histogram\nx_bucket{le=\"0.001\"} 10\nx_bucket{le=\"0.01\"} 10\n\
                          x_bucket{le=\"+Inf\"} 10\nx_sum 0.005\nx_count 10\n";
    const AFTER: &str = "# TYPE x histogram\nx_bucket{le=\"0.001\"} 60\nx_bucket{le=\"0.01\"} 109\n\
                         x_bucket{le=\"+Inf\"} 110\nx_sum 0.5\nx_count 110\n";

    #[test]
    fn quantiles_of_the_interval_only() {
        let h = Histogram::parse(AFTER, "x").unwrap().since(&Histogram::parse(BEFORE, "x").unwrap()).unwrap();
        assert_eq!(h.count(), 100.0);
        // 50 of the 100 new observations are under 1 ms, 49 more under 10 ms, 1 beyond.
        assert_eq!(h.quantile(0.5), Some(0.001));
        assert_eq!(h.quantile(0.51), Some(0.01));
        assert_eq!(h.quantile(0.99), Some(0.01));
        assert_eq!(h.quantile(0.999), Some(f64::INFINITY));
    }

    #[test]
    fn empty_or_missing_or_mismatched() {
        let a = Histogram::parse(AFTER, "x").unwrap();
        assert_eq!(a.since(&a).unwrap().quantile(0.5), None);
        assert!(Histogram::parse(AFTER, "y").is_none());
        let other = Histogram::parse("z_bucket{le=\"0.5\"} 1\nz_bucket{le=\"+Inf\"} 1\n", "z").unwrap();
        assert!(a.since(&other).is_none());
        let v = breakdown(BEFORE, AFTER);
        assert_eq!(v, json!({}), "no step metric present in the sample");
    }

    #[test]
    fn breakdown_reads_the_node_metric_names() {
        let name = STEPS[3].1;
        let before = BEFORE.replace("x_", &format!("{name}_"));
        let after = AFTER.replace("x_", &format!("{name}_"));
        let v = breakdown(&before, &after);
        assert_eq!(v["sync"]["p50Ms"], json!(1.0));
        assert_eq!(v["sync"]["p99Ms"], json!(10.0));
        assert_eq!(v["sync"]["p999Ms"], json!("over the last bound"));
        assert_eq!(v["sync"]["count"], json!(100.0));
    }
}
