//! The explorer (issue 24): HTML pages the node renders itself, readable without any script,
//! of what is public about the hub: its blocks (group commits up to a seal: sequence range,
//! records, payments, the Merkle root and the hub's signature, time), the chain's events
//! (deposits, withdrawals, exits, disputes, settlements, reserve moves), the newest posted
//! checkpoint with its figures, each account's channel as the chain knows it, and charts of
//! throughput and reserve drawn as inline SVG. Off-chain payments stay private: no page shows
//! who paid whom, or an account's off-chain balance (its owner reads those through her
//! session, spec §5.21a). Every page reads the in-memory chronicle and the ledger's counters,
//! never the log, so it costs the same with a million transfers as with ten.

use crate::engine::State;
use infhub_core::ledger::ChainEvent;
use infhub_core::{Address, Amount};
use infhub_hub::chronicle::{Block, PublicEvent};
use std::fmt::Write;

/// Rows per page of the lists.
pub const ROWS_PER_PAGE: usize = 50;
/// Rows of each list on the overview.
const OVERVIEW_ROWS: usize = 10;
/// Bars of the throughput chart (one a minute).
const CHART_MINUTES: u64 = 60;

/// Escapes text for HTML.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn time(ms: u64) -> String {
    infhub_core::time::utc_time(ms).replace('T', " ").trim_end_matches('Z').to_string() + " UTC"
}

/// An amount in INF (18 decimals), trimmed.
fn inf(a: Amount) -> String {
    format!("{} INF", infhub_wallet::units::format_inf(a.0))
}

fn short(hex: &str) -> String {
    if hex.len() <= 14 {
        return hex.to_string();
    }
    format!("{}…{}", &hex[..8], &hex[hex.len() - 4..])
}

/// The page around `body`, titled `title`.
fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>{t} · infhub explorer</title><style>{STYLE}</style></head><body>\
<header><a href=\"/explorer\">infhub explorer</a> <nav><a href=\"/explorer/blocks\">blocks</a> \
<a href=\"/explorer/events\">chain events</a> <a href=\"/explorer/checkpoints\">checkpoints</a></nav></header>\
<main><h1>{t}</h1>{body}</main><footer>Off-chain payments are private: these pages show what \
the hub signs and what the chain records, never who paid whom.</footer></body></html>",
        t = esc(title)
    )
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:0;color:#1d2430;background:#f6f7f9}\
header{background:#1d2430;color:#fff;padding:.7em 1.2em;display:flex;gap:2em;align-items:center}\
header a{color:#fff;text-decoration:none;font-weight:600}nav a{font-weight:400;margin-right:1em}\
main{padding:1em 1.2em;max-width:72em}table{border-collapse:collapse;width:100%;background:#fff;margin:.5em 0 1.5em}\
th,td{text-align:left;padding:.35em .6em;border-bottom:1px solid #e3e6ea;font-size:.92em}\
th{background:#eef0f3}code{font-size:.9em}.figures{display:grid;grid-template-columns:repeat(auto-fill,minmax(14em,1fr));gap:.6em}\
.figure{background:#fff;padding:.6em .8em;border:1px solid #e3e6ea}.figure b{display:block;font-size:1.25em}\
footer{color:#667;font-size:.85em;padding:1em 1.2em}svg{background:#fff;border:1px solid #e3e6ea}";

fn block_rows(blocks: &[Block]) -> String {
    let mut rows = String::from(
        "<table><tr><th>block (seal seq)</th><th>records</th><th>payments</th><th>proofs</th>\
<th>Merkle root</th><th>time</th></tr>",
    );
    for b in blocks {
        let _ = write!(
            rows,
            "<tr><td><a href=\"/explorer/blocks/{seq}\">{seq}</a> ({first}–{seq})</td><td>{}</td><td>{}</td><td>{}</td>\
<td><code>{}</code></td><td>{}</td></tr>",
            b.records,
            b.payments,
            b.proofs,
            short(&b.root.to_string()),
            time(b.at_ms),
            seq = b.seq,
            first = b.first_seq,
        );
    }
    rows.push_str("</table>");
    rows
}

/// What an event says, in a few words, and the account it concerns.
fn describe(e: &ChainEvent) -> (&'static str, Option<Address>, String) {
    match *e {
        ChainEvent::ChannelOpened { user, epoch, .. } => ("channel opened", Some(user), format!("epoch {epoch}")),
        ChainEvent::ChannelRegistered { user, epoch } => ("channel registered", Some(user), format!("epoch {epoch}")),
        ChainEvent::Deposited { user, total_deposited, .. } => {
            ("deposit", Some(user), format!("deposited in all {}", inf(total_deposited)))
        }
        ChainEvent::Withdrawn { user, total_withdrawn, .. } => {
            ("withdrawal", Some(user), format!("withdrawn in all {}", inf(total_withdrawn)))
        }
        ChainEvent::DebitRealized { user, moved, .. } => ("debits realized", Some(user), inf(moved)),
        ChainEvent::DebitSubmitted { user, .. } => ("debit proof submitted (dispute)", Some(user), String::new()),
        ChainEvent::CreditSubmitted { user, .. } => ("credit proof submitted (dispute)", Some(user), String::new()),
        ChainEvent::ExitStarted { user, settle_block, .. } => {
            ("exit started", Some(user), format!("settles at block {settle_block}"))
        }
        ChainEvent::Settled { user, paid, .. } => ("settled", Some(user), format!("paid out {}", inf(paid))),
        ChainEvent::ReserveDeposited { reserve_after } => {
            ("reserve deposit", None, format!("reserve {}", inf(reserve_after)))
        }
        ChainEvent::CustodialDeposited { account, amount, .. } => ("custodial deposit", Some(account), inf(amount)),
        ChainEvent::ReserveWithdrawn { amount, .. } => ("reserve withdrawn", None, inf(amount)),
        ChainEvent::PayoutBatchExecuted { total, .. } => ("payout batch", None, inf(total)),
        _ => ("other", None, String::new()),
    }
}

fn event_rows(events: &[PublicEvent]) -> String {
    let mut rows = String::from(
        "<table><tr><th>seq</th><th>chain block</th><th>event</th><th>account</th><th>figures</th><th>time</th></tr>",
    );
    for e in events {
        let (what, account, figures) = describe(&e.event);
        let account = account.map_or_else(String::new, |a| {
            format!("<a href=\"/explorer/accounts/{a}\"><code>{}</code></a>", short(&a.to_string()))
        });
        let _ = write!(
            rows,
            "<tr><td>{}</td><td>{}</td><td>{what}</td><td>{account}</td><td>{}</td><td>{}</td></tr>",
            e.seq,
            e.block,
            esc(&figures),
            time(e.at_ms)
        );
    }
    rows.push_str("</table>");
    rows
}

/// A bar chart of payments per minute over the last [`CHART_MINUTES`] minutes of kept blocks.
fn throughput_chart(st: &State) -> String {
    let blocks: Vec<&Block> = st.chronicle().all_blocks().collect();
    let Some(last) = blocks.last().map(|b| b.at_ms / 60_000) else {
        return "<p>No blocks yet.</p>".into();
    };
    let first = last.saturating_sub(CHART_MINUTES - 1);
    let mut per_minute = vec![0u64; CHART_MINUTES as usize];
    for b in blocks.iter().rev().take_while(|b| b.at_ms / 60_000 >= first) {
        per_minute[(b.at_ms / 60_000 - first) as usize] += b.payments;
    }
    let max = per_minute.iter().copied().max().unwrap_or(0).max(1);
    let (w, h) = (600u64, 120u64);
    let bar = w / CHART_MINUTES;
    let mut svg = format!(
        "<svg role=\"img\" aria-label=\"payments per minute\" width=\"{w}\" height=\"{}\" viewBox=\"0 0 {w} {}\">",
        h + 20,
        h + 20
    );
    for (i, n) in per_minute.iter().enumerate() {
        let bh = n * h / max;
        let _ = write!(
            svg,
            "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{bh}\" fill=\"#3b6fd8\"><title>{n} payments</title></rect>",
            i as u64 * bar,
            h - bh,
            bar.saturating_sub(1)
        );
    }
    let _ = write!(
        svg,
        "<text x=\"0\" y=\"{}\" font-size=\"11\">{} min ago</text><text x=\"{}\" y=\"{}\" font-size=\"11\">now · peak {max}/min</text></svg>",
        h + 15,
        CHART_MINUTES,
        w - 140,
        h + 15
    );
    svg
}

/// A line of the reserve after each chain event that reports it.
fn reserve_chart(st: &State) -> String {
    let points: Vec<(u64, u128)> =
        st.chronicle().all_events().filter_map(|e| e.reserve_after().map(|r| (e.seq, r.0))).collect();
    if points.len() < 2 {
        return format!("<p>Reserve now: {}.</p>", inf(st.ledger().reserve));
    }
    let (w, h) = (600f64, 120f64);
    let (s0, s1) = (points[0].0 as f64, points[points.len() - 1].0 as f64);
    let max = points.iter().map(|p| p.1).max().unwrap_or(1).max(1) as f64;
    let xy = |(s, r): &(u64, u128)| {
        let x = if s1 > s0 { (*s as f64 - s0) / (s1 - s0) * w } else { 0.0 };
        (x, h - (*r as f64 / max) * h)
    };
    let path: Vec<String> = points.iter().map(xy).map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
    format!(
        "<svg role=\"img\" aria-label=\"reserve\" width=\"600\" height=\"140\" viewBox=\"0 0 600 140\">\
<polyline fill=\"none\" stroke=\"#1f9d55\" stroke-width=\"2\" points=\"{}\"/>\
<text x=\"0\" y=\"135\" font-size=\"11\">reserve after each chain event · now {}</text></svg>",
        path.join(" "),
        esc(&inf(st.ledger().reserve))
    )
}

/// `/explorer`: the hub's figures, the charts, the newest blocks and events, the checkpoint.
pub fn overview(st: &State) -> String {
    let l = st.ledger();
    let mut body = String::from("<div class=\"figures\">");
    let figures = [
        ("hub", format!("<code>{}</code>", short(&l.params.hub.to_string()))),
        ("contract", format!("<code>{}</code>", short(&l.params.domain.verifying_contract.to_string()))),
        ("chain", l.params.domain.chain_id.to_string()),
        ("confirmed block", l.block.to_string()),
        ("accounts", l.account_count().to_string()),
        ("reserve", esc(&inf(l.reserve))),
        ("ledger records", (l.next_seq - 1).to_string()),
    ];
    for (name, value) in figures {
        let _ = write!(body, "<div class=\"figure\">{name}<b>{value}</b></div>");
    }
    body.push_str("</div><h2>Payments per minute</h2>");
    body.push_str(&throughput_chart(st));
    body.push_str("<h2>Reserve</h2>");
    body.push_str(&reserve_chart(st));
    body.push_str("<h2>Newest blocks</h2>");
    body.push_str(&block_rows(&st.chronicle().blocks(u64::MAX, OVERVIEW_ROWS)));
    body.push_str("<h2>Newest chain events</h2>");
    body.push_str(&event_rows(&st.chronicle().events(u64::MAX, OVERVIEW_ROWS)));
    body.push_str("<h2>Checkpoint</h2>");
    match &l.checkpoints.posted {
        Some(c) => {
            let _ = write!(
                body,
                "<table><tr><th>id</th><td>{}</td></tr><tr><th>root</th><td><code>{}</code></td></tr>\
<tr><th>total liability</th><td>{}</td></tr><tr><th>ledger seq</th><td>{}</td></tr>\
<tr><th>chain block</th><td>{}</td></tr></table>",
                c.id,
                c.checkpoint.root,
                esc(&inf(Amount(u128::try_from(c.checkpoint.total_liability).unwrap_or(u128::MAX)))),
                c.checkpoint.ledger_seq,
                c.checkpoint.chain_block
            );
        }
        None => body.push_str("<p>No checkpoint posted yet.</p>"),
    }
    body.push_str("<p><a href=\"/explorer/checkpoints\">every checkpoint kept</a></p>");
    page("Hub overview", &body)
}

/// `/explorer/blocks?before=`: blocks sealed before `before`, newest first.
pub fn blocks(st: &State, before: Option<u64>) -> String {
    let list = st.chronicle().blocks(before.unwrap_or(u64::MAX), ROWS_PER_PAGE);
    let mut body = block_rows(&list);
    if let Some(last) = list.last().filter(|_| list.len() == ROWS_PER_PAGE) {
        let _ = write!(body, "<p><a href=\"/explorer/blocks?before={}\">older blocks</a></p>", last.seq);
    }
    page("Blocks", &body)
}

/// `/explorer/blocks/{seq}`: the block holding `seq`, or `None` when it is not kept.
pub fn block(st: &State, seq: u64) -> Option<String> {
    let b = st.chronicle().block_holding(seq)?;
    let body = format!(
        "<table><tr><th>records</th><td>{first}–{seq} ({records})</td></tr><tr><th>payments</th><td>{payments}</td></tr>\
<tr><th>proofs signed</th><td>{proofs}</td></tr><tr><th>Merkle root</th><td><code>{root}</code></td></tr>\
<tr><th>hub signature</th><td><code>{sig:?}</code></td></tr><tr><th>time</th><td>{at}</td></tr></table>\
<p>The signature is the hub's over <code>ProofBatch(root)</code> in its EIP-712 domain (spec §4.4a): every credit \
and receipt of the block carries a Merkle path to this root, so a user holding one can prove the hub signed it.</p>",
        first = b.first_seq,
        seq = b.seq,
        records = b.records,
        payments = b.payments,
        proofs = b.proofs,
        root = b.root,
        sig = b.signature,
        at = time(b.at_ms),
    );
    Some(page(&format!("Block {}", b.seq), &body))
}

/// `/explorer/checkpoints?before=`: the checkpoints the contract took (among the kept chain
/// events) before `before`, newest first, each with its figures.
pub fn checkpoints(st: &State, before: Option<u64>) -> String {
    let list = st.chronicle().checkpoints(before.unwrap_or(u64::MAX), ROWS_PER_PAGE);
    let mut body = String::from(
        "<table><tr><th>id</th><th>root</th><th>total liability</th><th>ledger seq</th><th>of chain block</th>\
<th>posted in block</th><th>time</th></tr>",
    );
    for e in &list {
        let ChainEvent::CheckpointPosted(c) = &e.event else { continue };
        let _ = write!(
            body,
            "<tr><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            c.id,
            short(&c.checkpoint.root.to_string()),
            esc(&inf(Amount(u128::try_from(c.checkpoint.total_liability).unwrap_or(u128::MAX)))),
            c.checkpoint.ledger_seq,
            c.checkpoint.chain_block,
            e.block,
            time(e.at_ms)
        );
    }
    body.push_str("</table>");
    if list.is_empty() {
        body.push_str("<p>No checkpoint among the kept chain events.</p>");
    }
    if let Some(last) = list.last().filter(|_| list.len() == ROWS_PER_PAGE) {
        let _ = write!(body, "<p><a href=\"/explorer/checkpoints?before={}\">older checkpoints</a></p>", last.seq);
    }
    page("Checkpoints", &body)
}

/// `/explorer/events?before=`: chain events applied before `before`, newest first.
pub fn events(st: &State, before: Option<u64>) -> String {
    let list = st.chronicle().events(before.unwrap_or(u64::MAX), ROWS_PER_PAGE);
    let mut body = event_rows(&list);
    if let Some(last) = list.last().filter(|_| list.len() == ROWS_PER_PAGE) {
        let _ = write!(body, "<p><a href=\"/explorer/events?before={}\">older events</a></p>", last.seq);
    }
    page("Chain events", &body)
}

/// `/explorer/accounts/{address}`: the channel as the chain knows it (status, epoch, deposits,
/// withdrawals) and its kept chain events; `None` for an unknown account. No off-chain figure.
pub fn account(st: &State, who: Address) -> Option<String> {
    use infhub_core::channel::Status;
    let a = st.ledger().account(&who)?;
    let ch = &a.channel;
    let status = match ch.status {
        Status::Open => "open".to_string(),
        Status::Closing { settle_block } => format!("closing, settles at block {settle_block}"),
        Status::Settled => "settled".to_string(),
    };
    let mine: Vec<PublicEvent> = st
        .chronicle()
        .all_events()
        .rev()
        .filter(|e| describe(&e.event).1 == Some(who))
        .take(ROWS_PER_PAGE)
        .cloned()
        .collect();
    let body = format!(
        "<table><tr><th>address</th><td><code>{who}</code></td></tr><tr><th>channel</th><td>{status}, epoch {epoch}</td></tr>\
<tr><th>deposited on chain</th><td>{dep}</td></tr><tr><th>withdrawn on chain</th><td>{wd}</td></tr></table>\
<p>Its off-chain balance and payments are private: its owner sees them in her wallet.</p><h2>Chain events</h2>{rows}",
        epoch = ch.epoch,
        dep = esc(&inf(ch.deposited)),
        wd = esc(&inf(ch.withdrawn)),
        rows = event_rows(&mine),
    );
    Some(page("Account", &body))
}

/// The page for an address or block that is not known.
pub fn not_found(what: &str) -> String {
    page("Not found", &format!("<p>{}</p>", esc(what)))
}
