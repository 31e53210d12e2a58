//! The OpenAPI 3.1 document the node serves at `/openapi.json`. Written by hand next to the
//! router; an integration test checks that every routed path is listed and every listed path
//! answers, so the two cannot drift apart silently.

use serde_json::{json, Value};

/// (method, path, security, summary) of every endpoint.
pub const ENDPOINTS: &[(&str, &str, &str, &str)] = &[
    ("get", "/openapi.json", "none", "This document."),
    ("get", "/metrics", "none", "Prometheus metrics."),
    ("get", "/wallet", "none", "Redirects to /wallet/."),
    ("get", "/wallet/", "none", "The web wallet's page (HTML; its script is /wallet/wallet.js): create or import a key, register, deposit, pay, withdraw, history, and exit on chain with the hub down. wallet_not_installed when node.wallet_dir is empty."),
    ("get", "/wallet/config.json", "none", "What the web wallet needs besides /v1/info: the chain's JSON-RPC URL as browsers reach it (node.wallet_rpc_url, else chain.rpc_url)."),
    ("get", "/wallet/{name}", "none", "One of the web wallet's built files (a plain name: .html, .js, .css, .svg, .png) from node.wallet_dir."),
    ("get", "/explorer", "none", "The explorer (HTML, no script): the hub's figures, payments-per-minute and reserve charts, the newest blocks and chain events, the posted checkpoint. Off-chain payments stay private."),
    ("get", "/explorer/blocks", "none", "The explorer's blocks (group commits up to a seal: sequence range, records, payments, proofs, Merkle root, time), newest first; ?before=<seq> pages."),
    ("get", "/explorer/blocks/{seq}", "none", "The explorer's block holding record seq: its range, counts, Merkle root, the hub's signature and time."),
    ("get", "/explorer/events", "none", "The explorer's chain events (deposits, withdrawals, exits, disputes, settlements, reserve moves), newest first; ?before=<seq> pages."),
    ("get", "/explorer/checkpoints", "none", "The explorer's checkpoints (every CheckpointPosted among the kept chain events: id, root, total liability, ledger seq, chain block, time), newest first; ?before=<seq> pages."),
    ("get", "/explorer/accounts/{address}", "none", "The explorer's page of one account: its channel as the chain knows it (status, epoch, deposits, withdrawals) and its chain events; never its off-chain balance or payments."),
    ("get", "/v1/info", "none", "Chain id, contracts, hub address, confirmation depth, confirmed block, limits."),
    ("post", "/v1/auth/challenge", "none", "Get a one-time login challenge for an address."),
    ("post", "/v1/auth/session", "none", "Exchange a signed Login(user, challenge) for a session token."),
    ("post", "/v1/registrations", "signature", "Register: a signed Registration; the hub opens the channel on chain. New registrations draw on the hub's and the source address's hourly budget (429 registration_rate_limited past either)."),
    ("post", "/v1/transfers", "signature", "Pay: a user-signed Debit (internal or external). Returns the hub's receipt (and the queued payout of an external payment); the payee's credit goes to the payee's stream and history. A retried payment id returns the first result."),
    ("post", "/v1/transfers/batch", "signature", "Many signed transfers in one request (`{\"transfers\": [...]}`); each applied in order and answered as /v1/transfers would, or with its own error."),
    ("post", "/v1/withdrawals", "signature", "Cooperative withdrawal: a user-signed Withdrawal; returns the hub's co-signature."),
    ("post", "/v1/locked-transfers", "signature", "Pay another account of this hub by point lock ({debit, lock, payee}): the payer's lock_add debit and the hub's lock to the payee on the same point, a reveal margin earlier. Returns the receipt and the payee's lock."),
    ("post", "/v1/lock-reveals", "none", "Reveal the scalar of one of the hub's locks to you ({user, lockId, scalar}): the hub settles it into your running total and returns the credit; the payer's side learns the scalar."),
    ("post", "/v1/lock-debits", "signature", "The payer's signed settlement (with the scalar) or drop (after the expiry) of her own lock ({debit, change}). Returns the receipt."),
    ("post", "/v1/forwarded-transfers", "signature", "Pay an invoice of a payee at another hub ({debit, lock, invoice}): the payer's lock_add debit to this hub, which forwards the invoice over its link to the payee's hub with an earlier expiry. Returns the receipt and the next hub's answer (forwarded.nextHubAnswer) or its refusal (forwarded.error: the lock stays until its expiry); a split payment's answer is forwarded.parts, one per part. A part reaching the payee's hub with its own step is collected (collected: {locked, collected, of}): the payee is locked the invoice's amount once the parts cover it (spec §5.23c). unknown_next_hub, insufficient_capacity, fee_insufficient, expiry_too_soon, lock_mismatch, point_chain_broken, too_many_parts, step_unreadable, quote_mismatch. Routed forwards carry lockPoint and, from the payer, quoteId and parts (her sealed steps, one list per part), or, from the previous hub, route (the sealed steps from this hub on; spec §5.23d)."),
    ("post", "/v1/payment-quotes", "none", "Quote paying an invoice of a payee at another hub ({invoice, payer}; payer optional: her recent refused payments weigh against the links they named): the cheapest route there, its fees, the payer's lock's amount and expiryBlock, and each part's steps without tweaks ({hub, hubKey, nextHub, amount, expiryBlock}); the payer draws the tweaks, seals each step to its hub key and sends them within 600 s to /v1/forwarded-transfers with {lockPoint, quoteId, parts} (spec §5.23b, §5.23d). no_route, peer_hub_unreachable."),
    ("get", "/v1/accounts/{user}", "session", "Account view: balance, deposited, withdrawn, totals, latest proofs, pending deposits."),
    ("get", "/v1/accounts/{user}/towers", "session", "The watchtowers the hub pushes this user's credits to."),
    ("get", "/v1/checkpoints", "none", "The newest checkpoint confirmed on chain, the one built and waiting, the interval."),
    ("get", "/v1/checkpoints/{id}/proofs/{account}", "session", "The account's leaves in checkpoint id with their paths to the root, to check against the contract's."),
    ("put", "/v1/accounts/{user}/towers", "session", "Names up to four watchtower URLs ({towers: [url]}); the hub pushes each new credit to them off the commit path."),
    ("get", "/v1/accounts/{user}/events", "session", "The account's event feed (spec §5.24): its history entries after the cursor ?after= (the seq of the last one processed; 0 from the start), oldest first, with their proofs, at most ?limit=; nextAfter is the cursor to resume from."),
    ("put", "/v1/accounts/{user}/webhook", "session", "Sets the account's webhook ({url, after?}): the hub posts its new events there in order, at least once, signed with HMAC-SHA256 (header x-infhub-signature: sha256=<hex>) under the secret in the answer, shown only now. malformed_request, webhook_host_not_allowed, limit_exceeded."),
    ("get", "/v1/accounts/{user}/webhook", "session", "The account's webhook: url, cursor, failures, lastError (no secret). unknown_webhook."),
    ("delete", "/v1/accounts/{user}/webhook", "session", "Removes the account's webhook. unknown_webhook."),
    ("get", "/v1/accounts/{user}/history", "session", "History with proofs, newest first; `before` (seq) and `limit` paginate."),
    ("get", "/v1/accounts/{user}/payments/{payment_id}", "session", "A payment by its id, paid or received: its status (paid, received, refunded, locked, settled, dropped) and every entry of the account's recent history that carries the id, with proofs, newest first; unknown_payment beyond limits.max_payment_lookup_entries."),
    ("get", "/v1/accounts/{user}/payouts/{payment_id}", "session", "An external payment's payout and its transaction status."),
    ("get", "/v1/stream", "session", "WebSocket: the account's new credits, receipts, chain events and status changes (token in `Authorization` or `?token=`)."),
    ("post", "/v1/operator/purchases", "operator", "Credit a user against the reserve (buying from the platform); refused if the reserve cannot back it."),
    ("get", "/v1/operator/accounts", "operator", "List accounts in address order, a page at a time (`after`, `limit`), filtered by `prefix` (hex), `kind` (channel, custodial), `state` (open, closing, settled, custodial) and `frozen`; `nextAfter` continues."),
    ("post", "/v1/operator/freezes", "operator", "Freeze or unfreeze an account ({account, frozen}): a frozen account neither pays nor is paid off chain (account_frozen; payments to it are refunded), its exit on chain is unaffected."),
    ("post", "/v1/operator/closes", "operator", "Start the hub's close of a (dormant) channel with the newest debit."),
    ("get", "/v1/operator/liquidity", "operator", "The reserve and what it covers (obligations, payouts, earmark, custodial), free reserve, what realizing debits would add, an announced reserve withdrawal, and what the chain duties did (realizations and their gas)."),
    ("post", "/v1/operator/reserve/top-ups", "operator", "Move `amount` of the hub key's tokens into the reserve (an allowance, then depositReserve)."),
    ("post", "/v1/operator/reserve/withdrawals", "operator", "Earmark `amount` of free reserve and announce its withdrawal; it executes after the contract's notice."),
    ("post", "/v1/operator/reserve/withdrawals/execute", "operator", "Execute the announced reserve withdrawal to `to`, after its notice and before it expires."),
    ("post", "/v1/operator/reserve/withdrawals/cancel", "operator", "Cancel the reserve withdrawal (on chain if announced) and release its earmark."),
    ("post", "/v1/custodial/accounts/{account}/key-rotations", "custodial", "Replace the custodial account's API key with a fresh one, shown once; the old key stops working when this answers (the operator or the account's own key). 422 not_custodial for a channel account."),
    ("post", "/v1/operator/token-rotations", "operator", "Replace the operator token with a fresh one, shown once; the replaced token keeps working for `node.operator_token_grace_secs` (default an hour), then only the newest does. The node keeps only hashes (`operator-tokens.json`); a restart keeps the rotation."),
    ("get", "/v1/operator/audit", "operator", "The operator's audit log, newest first (`before`, `limit`): every operator request other than a read, recorded durably before it ran (`requested`: time, method, path, body, the token's fingerprint) and its status after (`answered`). Refused attempts are recorded too."),
    ("get", "/v1/announcements", "none", "This hub's signed announcements of the link directions it pays over (capacity, baseFee, feePpm, min/max amount, sequence; EIP-712 in the point registry's domain) and every one it learned from its neighbours (spec §5.18)."),
    ("get", "/v1/routes", "none", "Up to k (default 3) cheapest routes from this hub to the hub toHub for amount (?toHub=&amount=&k=&payer=), from the announcements it holds: each hop's amount and fee, what the first link carries, the fees together; with payer, the links her recent refused payments named cost more (spec §5.18). no_route when none carries it."),
    ("get", "/v1/operator/links", "operator", "This hub's links to other hubs (spec §5.23): the link key's address and INF on chain, and per link its peer, state (opening, open, closing, settled), channel figures, job in progress and last error."),
    ("post", "/v1/operator/links", "operator", "Open a link to the hub at hubUrl ({hubUrl}): register this hub's link key there as a user; the channel opens in the background. Idempotent (opened: false). link_to_own_hub, too_many_links, peer_hub_unreachable."),
    ("post", "/v1/operator/links/{peer}/deposits", "operator", "Deposit amount of the link key's INF into the link to the hub contract peer, in the background ({amount}). unknown_link, link_not_open, link_busy."),
    ("post", "/v1/operator/links/{peer}/payments", "operator", "Pay recipient, an account of the peer hub, amount from the link's balance ({recipient, amount}); the peer's answer, checked as a wallet checks it. The peer's refusals pass on under their codes."),
    ("get", "/v1/operator/solvency", "operator", "Contract holdings against reserve + channel funds, and the ledger against the chain."),
    ("get", "/v1/operator/reconciliation", "operator", "Rebuild the books from the chain's events and the contract's balance alone and report every discrepancy with the ledger."),
    ("post", "/v1/operator/custodial-accounts", "operator", "Open a custodial account for a platform user id; returns its address and API key (shown once)."),
    ("get", "/v1/custodial/accounts/{account}", "custodial", "A custodial account: balance, on-chain deposits, linked channel."),
    ("post", "/v1/custodial/transfers", "custodial", "A batch of custodial transfers (to custodial accounts or to channels, which get a hub-signed credit); each applied or refused on its own; idempotent per transfer id."),
    ("post", "/v1/custodial/withdrawals", "custodial", "Pay a chain address from a custodial account; paid out on chain in the next batch."),
    ("post", "/v1/custodial/conversions", "custodial", "Move a custodial account's whole balance into a registered user's channel as a hub-signed credit."),
    ("get", "/v1/accounts/{user}/statement", "session", "Statement with running balance, oldest first; `format=csv` or `json`."),
];

/// The document.
pub fn document() -> Value {
    use crate::api::schemas;
    let mut settings = schemars::generate::SchemaSettings::draft2020_12();
    settings.definitions_path = "/components/schemas".into();
    let mut g = schemars::SchemaGenerator::new(settings);
    let error = schemas::error(&mut g);
    let mut paths = serde_json::Map::new();
    for (method, path, security, summary) in ENDPOINTS {
        let sec = match *security {
            "session" => json!([{"bearer": []}]),
            "operator" => json!([{"operator": []}]),
            "custodial" => json!([{"operator": []}, {"custodialKey": []}]),
            _ => json!([]),
        };
        let shapes = schemas::shapes(method, path);
        let ok = match (shapes.response, schemas::non_json(path)) {
            (Some(f), _) => json!({"description": "OK", "content": {"application/json": {"schema": f(&mut g)}}}),
            (None, Some(media)) => json!({"description": "OK", "content": {media: {"schema": {"type": "string"}}}}),
            (None, None) => json!({"description": UNTYPED}),
        };
        let mut op = json!({
            "summary": summary,
            "security": sec,
            "responses": {
                "200": ok,
                "default": {"description": "Error", "content": {"application/json": {"schema": error.clone()}}}
            }
        });
        if let Some(f) = shapes.request {
            op["requestBody"] = json!({"required": true, "content": {"application/json": {"schema": f(&mut g)}}});
        }
        let entry = paths.entry(path.to_string()).or_insert_with(|| json!({}));
        entry[*method] = op;
    }
    json!({
        "openapi": "3.1.0",
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "info": {"title": "infhub node API", "version": env!("CARGO_PKG_VERSION"),
                 "description": "Off-chain payment hub for an ERC-20 token. Signed message formats: docs/protocol.md."},
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "Session token from /v1/auth/session"},
                "operator": {"type": "http", "scheme": "bearer", "description": "The operator token"},
                "custodialKey": {"type": "http", "scheme": "bearer", "description": "A custodial account's API key (ck_…)"}
            },
            "schemas": Value::Object(g.take_definitions(true))
        }
    })
}

/// The description of an answer without a generated schema yet (HTML pages, metrics, and the
/// JSON endpoints whose answer types are still to be written: see the README).
pub const UNTYPED: &str = "OK (no generated schema yet)";

#[cfg(test)]
mod tests {
    use super::*;

    /// Endpoints that take no request body.
    const BODYLESS: &[&str] = &[
        "/v1/operator/token-rotations",
        "/v1/operator/reserve/withdrawals/cancel",
        "/v1/custodial/accounts/{account}/key-rotations",
    ];

    fn refs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
        match v {
            Value::Object(m) => {
                if let Some(r) = m.get("$ref").and_then(Value::as_str) {
                    out.push(r);
                }
                m.values().for_each(|x| refs(x, out));
            }
            Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
            _ => {}
        }
    }

    #[test]
    fn every_endpoint_has_an_answer_schema_every_body_a_request_schema_and_every_ref_resolves() {
        let doc = document();
        let mut missing = Vec::new();
        for (method, path, _, _) in ENDPOINTS {
            let op = &doc["paths"][path][method];
            if op["responses"]["200"]["content"].is_null() {
                missing.push(format!("{method} {path}: answer"));
            }
            if op["responses"]["default"]["content"]["application/json"]["schema"].is_null() {
                missing.push(format!("{method} {path}: error"));
            }
            let takes_body = matches!(*method, "post" | "put") && !BODYLESS.contains(path);
            if takes_body && op["requestBody"].is_null() {
                missing.push(format!("{method} {path}: request"));
            }
        }
        assert!(missing.is_empty(), "endpoints without a schema: {missing:#?}");
        let mut all = Vec::new();
        refs(&doc, &mut all);
        assert!(all.len() > 50, "the schemas are referenced ({} refs)", all.len());
        for r in all {
            let name = r.strip_prefix("#/components/schemas/").expect("a components ref");
            assert!(doc["components"]["schemas"][name].is_object(), "{r} does not resolve");
        }
    }
}
