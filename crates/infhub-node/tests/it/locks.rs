//! A payment by point lock inside one hub, through the HTTP API on anvil (spec §5.17b): the
//! payer's locked transfer, the payee's reveal of her scalar (paid at once), the payer reading
//! that scalar with her account and settling her lock with it; the payer's and a stranger's
//! attempts to take the lock back or open it with a wrong scalar refused by name; and after a
//! restart (the log replayed) every balance and lock is where it was.

use crate::harness::*;
use alloy::primitives::{keccak256, Bytes, B256, U256};
use alloy::sol_types::SolCall;
use infhub_chain::anvil;
use infhub_chain::bindings::{IInfHub, IPointRegistry};
use infhub_chain::events::credit_arg;
use infhub_core::messages::Eip712Message;
use infhub_core::messages::{Debit, PaymentKind};
use infhub_core::point_lock::{locks_root, Lock, Scalar};
use infhub_core::Credit;
use infhub_core::{Amount, Domain};
use serde_json::{json, Value};

/// The payer's lock debit for `lock` on top of her totals: `locked` after the change.
pub(crate) fn lock_debit(
    w: &Wallet,
    domain: &Domain,
    hub: alloy::primitives::Address,
    kind: PaymentKind,
    lock: &Lock,
    pending: &[Lock],
    settled: u128,
) -> Debit {
    let (locks_root, locked_amount) = locks_root(domain, pending).expect("root");
    Debit {
        user: w.address(),
        epoch: w.epoch,
        nonce: w.debit_nonce + 1,
        cumulative_debit: Amount(w.cumulative_debit + settled),
        locked_amount,
        locks_root,
        kind: kind as u8,
        recipient: hub,
        amount: lock.amount,
        payment_id: lock.lock_id,
    }
}

async fn balance(http: &Http, w: &Wallet) -> (u128, Value) {
    let (s, v) = w.account(http).await;
    assert_eq!(s, 200, "{v}");
    (amount(&v["balance"]), v)
}

/// Two registered wallets, the payer with 500 deposited, and 1,000 in the hub's reserve.
pub(crate) async fn payer_and_payee(chain: &Chain, http: &Http) -> (Wallet, Wallet) {
    let mut a = Wallet::new(chain, 1).await;
    let mut b = Wallet::new(chain, 2).await;
    register(chain, http, &mut a).await;
    register(chain, http, &mut b).await;
    a.approve_and_deposit(chain, 500).await;
    let (s, v) = http.post("/v1/operator/reserve/top-ups", Some(OPERATOR), &json!({"amount": "1000"})).await;
    assert_eq!(s, 200, "{v}");
    eventually(20, "deposit and reserve confirmed", || async {
        chain.mine(1).await;
        let (_, liq) = http.get("/v1/operator/liquidity", Some(OPERATOR)).await;
        let (bal, _) = balance(http, &a).await;
        (bal == 500 && amount(&liq["liquidity"]["reserve"]) >= 1_000).then_some(())
    })
    .await;
    (a, b)
}

#[test]
fn a_locked_transfer_is_paid_by_the_reveal_settled_by_the_payer_and_survives_a_restart() {
    rt().block_on(async {
        let chain = Chain::start().await;
        let domain = chain.domain();
        let hub = chain.anvil_hub();
        let dir = tempfile::tempdir().expect("tmp");
        let mut config = chain.config(dir.path().to_path_buf());
        assert!(config.node.locked_transfers, "on by default");
        config.node.locked_transfers = false;
        let off = InProcessNode::start(config.clone()).await;
        let (s, v) = Http::new(&off.url).post("/v1/lock-reveals", None, &json!({"user": hub, "lockId": B256::ZERO, "scalar": "0x1"})).await;
        assert_eq!((s, code(&v)), (403, "feature_disabled"), "the operator's switch: {v}");
        off.stop().await;
        config.node.locked_transfers = true;
        let node = InProcessNode::start(config.clone()).await;
        let http = Http::new(&node.url);
        let (mut a, mut b) = payer_and_payee(&chain, &http).await;

        // --- The invoice's point: the payee's scalar.
        let scalar = Scalar::from_bytes(keccak256(b"payee's invoice scalar")).expect("in range");
        let (_, info) = http.get("/v1/info", None).await;
        let head = info["confirmedBlock"].as_u64().expect("block");
        let lock = Lock { lock_id: B256::repeat_byte(0x51), amount: Amount(120), expiry_block: head + 100, point: scalar.point().address() };
        let add = lock_debit(&a, &domain, hub, PaymentKind::LockAdd, &lock, &[lock], 0);
        // Paid to someone other than the hub, or carrying the wrong root: refused by name.
        let wrong = Debit { recipient: b.address(), ..add };
        let body = json!({"debit": a.sign_debit(&domain, wrong), "lock": lock, "payee": b.address()});
        let (s, v) = http.post("/v1/locked-transfers", None, &body).await;
        assert_eq!((s, code(&v)), (422, "recipient_must_be_hub"), "{v}");
        let wrong = Debit { locks_root: B256::repeat_byte(1), ..add };
        let body = json!({"debit": a.sign_debit(&domain, wrong), "lock": lock, "payee": b.address()});
        let (s, v) = http.post("/v1/locked-transfers", None, &body).await;
        assert_eq!((s, code(&v)), (422, "locks_root_mismatch"), "{v}");
        let body = json!({"debit": a.sign_debit(&domain, add), "lock": lock, "payee": b.address()});
        let (s, v) = http.post("/v1/locked-transfers", None, &body).await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["payeeLock"]["expiryBlock"], json!(head + 80), "{v}");
        a.accepted(&add);
        // A retry (the answer lost) gets the same receipt, applied once.
        let (s, again) = http.post("/v1/locked-transfers", None, &body).await;
        assert_eq!((s, again["replayed"].clone(), again["receipt"].clone()), (200, json!(true), v["receipt"].clone()), "{again}");
        let (bal_a, acct_a) = balance(&http, &a).await;
        let (bal_b, acct_b) = balance(&http, &b).await;
        assert_eq!((bal_a, bal_b), (380, 0), "held from the payer, not yet the payee's");
        assert_eq!(acct_a["locks"]["outgoing"][0]["scalar"], Value::Null, "{acct_a}");
        assert_eq!(acct_b["locks"]["incoming"][0]["lockId"], json!(lock.lock_id), "{acct_b}");

        // --- The payer cannot take it back; a wrong scalar opens nothing.
        let drop = lock_debit(&a, &domain, hub, PaymentKind::LockDrop, &lock, &[], 0);
        let body = json!({"debit": a.sign_debit(&domain, drop), "change": {"drop": {"lockId": lock.lock_id}}});
        let (s, v) = http.post("/v1/lock-debits", None, &body).await;
        assert_eq!((s, code(&v)), (422, "lock_not_expired"), "{v}");
        let body = json!({"debit": a.sign_debit(&domain, drop), "change": {"cancel": {"lockId": lock.lock_id}}});
        let (s, v) = http.post("/v1/lock-debits", None, &body).await;
        assert_eq!((s, code(&v)), (422, "lock_not_expired"), "a payer's cancel needs the hub: {v}");
        let other = Scalar::from_bytes(keccak256(b"a guess")).expect("in range");
        let body = json!({"user": b.address(), "lockId": lock.lock_id, "scalar": other});
        let (s, v) = http.post("/v1/lock-reveals", None, &body).await;
        assert_eq!((s, code(&v)), (422, "scalar_does_not_open_lock"), "{v}");
        let (s, v) = http.post("/v1/lock-reveals", None, &json!({"user": b.address(), "lockId": lock.lock_id, "scalar": "0x0"})).await;
        assert_eq!((s, code(&v)), (422, "malformed_request"), "a zero scalar does not decode: {v}");

        // --- The payee reveals and is paid; the payer reads the scalar and settles.
        let body = json!({"user": b.address(), "lockId": lock.lock_id, "scalar": scalar});
        let (s, v) = http.post("/v1/lock-reveals", None, &body).await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["credit"]["message"]["cumulativeCredit"], json!("120"), "{v}");
        let (bal_b, _) = balance(&http, &b).await;
        assert_eq!(bal_b, 120);
        let (_, acct_a) = balance(&http, &a).await;
        let learned: Scalar = serde_json::from_value(acct_a["locks"]["outgoing"][0]["scalar"].clone()).expect("scalar");
        assert_eq!(learned, scalar, "the payer's proof of payment");
        let (s, v) = http.post("/v1/lock-debits", None, &json!({"debit": a.sign_debit(&domain, drop), "change": {"drop": {"lockId": lock.lock_id}}})).await;
        assert_eq!((s, code(&v)), (422, "lock_revealed"), "owed from now on: {v}");
        let settle = lock_debit(&a, &domain, hub, PaymentKind::LockSettle, &lock, &[], 120);
        let body = json!({"debit": a.sign_debit(&domain, settle), "change": {"settle": {"lockId": lock.lock_id, "scalar": learned}}});
        let (s, v) = http.post("/v1/lock-debits", None, &body).await;
        assert_eq!(s, 200, "{v}");
        a.accepted(&settle);
        let (s, again) = http.post("/v1/lock-debits", None, &body).await;
        assert_eq!((s, again["replayed"].clone(), again["receipt"].clone()), (200, json!(true), v["receipt"].clone()), "{again}");
        let (bal_a, acct_a) = balance(&http, &a).await;
        assert_eq!((bal_a, acct_a["cumulativeDebit"].clone()), (380, json!("120")));
        assert_eq!(acct_a["locks"]["outgoing"], json!([]), "{acct_a}");
        // Both histories tell the story, and the statements end at the balances.
        for (w, want, end) in [(&a, ["locked_out", "lock_settled_out"], "380"), (&b, ["locked_in", "lock_settled_in"], "120")] {
            let (s, h) = http.get(&format!("/v1/accounts/{}/history", w.address()), w.token.as_deref()).await;
            assert_eq!(s, 200, "{h}");
            let kinds: Vec<&str> = h["entries"].as_array().expect("entries").iter().filter_map(|e| e["kind"].as_str()).collect();
            assert!(want.iter().all(|k| kinds.contains(k)), "{kinds:?}");
            let (s, st) = http.get(&format!("/v1/accounts/{}/statement", w.address()), w.token.as_deref()).await;
            assert_eq!(s, 200, "{st}");
            assert_eq!(st["lines"].as_array().and_then(|l| l.last()).map(|l| l["balanceAfter"].clone()), Some(json!(end)), "{st}");
        }

        let path = format!("/v1/accounts/{}/payments/{}", b.address(), lock.lock_id);
        let (s, v) = http.get(&path, b.token.as_deref()).await;
        assert_eq!((s, v["status"].clone(), v["entries"].as_array().map(Vec::len)), (200, json!("settled"), Some(2)), "{v}");

        // --- Replayed after a restart: the same balances, no lock left.
        node.stop().await;
        let node = InProcessNode::start(config).await;
        let http = Http::new(&node.url);
        a.login(&http, &domain).await;
        b.login(&http, &domain).await;
        let (bal_a, _) = balance(&http, &a).await;
        let (bal_b, acct_b) = balance(&http, &b).await;
        assert_eq!((bal_a, bal_b), (380, 120));
        assert_eq!(acct_b["locks"]["incoming"], json!([]), "{acct_b}");
        node.stop().await;
    });
}

/// The payer who never settles (spec §5.11a, "no close because of a lock"): the payee reveals
/// and is paid, the payer exits on chain with nothing from the hub, hoping her lock comes back
/// to her. The hub reveals the scalar in the point registry, registers her pending lock through
/// her newest debit, settles and unlocks: she is paid her deposit less the lock, the lock goes
/// to the hub's reserve, the ledger follows every event and the books still balance.
#[test]
fn a_payer_who_exits_without_settling_pays_her_lock_through_the_registry() {
    rt().block_on(async {
        let chain = Chain::start().await;
        let domain = chain.domain();
        let hub = chain.anvil_hub();
        let dir = tempfile::tempdir().expect("tmp");
        let config = chain.config(dir.path().to_path_buf());
        let node = InProcessNode::start(config).await;
        let http = Http::new(&node.url);
        let (mut a, b) = payer_and_payee(&chain, &http).await;
        let scalar = Scalar::from_bytes(keccak256(b"a payee who is paid")).expect("in range");
        let head = chain.head().await;
        let lock = Lock {
            lock_id: B256::repeat_byte(0x61),
            amount: Amount(120),
            expiry_block: head + 200,
            point: scalar.point().address(),
        };
        let add = lock_debit(&a, &domain, hub, PaymentKind::LockAdd, &lock, &[lock], 0);
        let body = json!({"debit": a.sign_debit(&domain, add), "lock": lock, "payee": b.address()});
        let (s, v) = http.post("/v1/locked-transfers", None, &body).await;
        assert_eq!(s, 200, "{v}");
        a.accepted(&add);
        let (s, v) = http
            .post("/v1/lock-reveals", None, &json!({"user": b.address(), "lockId": lock.lock_id, "scalar": scalar}))
            .await;
        assert_eq!(s, 200, "{v}");
        let (_, liq) = http.get("/v1/operator/liquidity", Some(OPERATOR)).await;
        let reserve_before = amount(&liq["liquidity"]["reserve"]);

        // --- She exits with the empty credit: the contract holds no debit of hers.
        let tokens_before = chain.token_balance(a.address()).await;
        let empty = Credit {
            user: a.address(),
            epoch: a.epoch,
            nonce: 0,
            cumulative_credit: Amount::ZERO,
            locked_amount: Amount::ZERO,
            locks_root: B256::ZERO,
        };
        let exit = IInfHub::startExitCall { credit: credit_arg(&empty), hubSignature: Bytes::new() };
        anvil::call_ok(&mut a.chain, chain.d.hub, exit.abi_encode()).await.expect("start exit");
        let registry = chain.d.point_registry;
        let digest = add.digest(&domain);
        // The exit confirmed (two blocks), then no more blocks until the hub acted: it must
        // register within the challenge period, which a test mining ahead would cut short.
        chain.mine(2).await;
        eventually(30, "the hub revealed and registered her lock", || async {
            let revealed = chain.view(registry, IPointRegistry::revealedAtCall { point: lock.point }).await;
            let registered = chain
                .view(chain.d.hub, IInfHub::lockRegistrationOfCall { proofDigest: digest, lockId: lock.lock_id })
                .await;
            (revealed != U256::ZERO && registered.amount == 120).then_some(())
        })
        .await;
        chain.mine(infhub_node::dev::DEV_CHALLENGE_PERIOD_BLOCKS + 1).await;
        // A block every 200 ms, so a loaded machine's node keeps up with its settle and unlock.
        eventually(60, "settled and unlocked", || async {
            tokio::time::sleep(std::time::Duration::from_millis(150)).await;
            chain.mine(1).await;
            let escrow = chain.view(chain.d.hub, IInfHub::totalEscrowCall {}).await;
            let ch = chain.view(chain.d.hub, IInfHub::channelCall { user: a.address() }).await;
            let (_, liq) = http.get("/v1/operator/liquidity", Some(OPERATOR)).await;
            let ledger_reserve = amount(&liq["liquidity"]["reserve"]);
            (ch.status == 3 && escrow == U256::ZERO && ledger_reserve == reserve_before + 120).then_some(())
        })
        .await;
        assert_eq!(
            chain.token_balance(a.address()).await,
            tokens_before + U256::from(380),
            "her deposit less the lock"
        );
        let reserve = chain.view(chain.d.hub, IInfHub::reserveCall {}).await;
        assert_eq!(reserve, U256::from(reserve_before + 120), "the chain's reserve is the ledger's");
        let (bal_b, _) = balance(&http, &b).await;
        assert_eq!(bal_b, 120, "the payee keeps her payment");
        settle_chain(&chain, &http).await;
        let (s, rep) = http.get("/v1/operator/solvency", Some(OPERATOR)).await;
        assert_eq!(s, 200, "{rep}");
        assert_eq!(
            (rep["contractBalanced"].clone(), rep["ledgerMatchesChain"].clone()),
            (json!(true), json!(true)),
            "{rep}"
        );
        node.stop().await;
    });
}

/// A payment nobody claims (spec §5.17b): once the hub's lock to the payee is past its expiry
/// the node drops it by itself (a new credit to her without it; the reserve it held is free
/// again), and after her own expiry the payer drops hers and has her balance back.
#[test]
fn an_unclaimed_lock_is_dropped_by_the_hub_at_its_expiry_and_the_payer_takes_hers_back() {
    rt().block_on(async {
        let chain = Chain::start().await;
        let domain = chain.domain();
        let hub = chain.anvil_hub();
        let dir = tempfile::tempdir().expect("tmp");
        let node = InProcessNode::start(chain.config(dir.path().to_path_buf())).await;
        let http = Http::new(&node.url);
        let (mut a, b) = payer_and_payee(&chain, &http).await;
        let (_, info) = http.get("/v1/info", None).await;
        let head = info["confirmedBlock"].as_u64().expect("block");
        let point = Scalar::from_bytes(keccak256(b"never revealed")).expect("in range").point().address();
        let lock = Lock { lock_id: B256::repeat_byte(0x71), amount: Amount(50), expiry_block: head + 30, point };
        let add = lock_debit(&a, &domain, hub, PaymentKind::LockAdd, &lock, &[lock], 0);
        let body = json!({"debit": a.sign_debit(&domain, add), "lock": lock, "payee": b.address()});
        let (s, v) = http.post("/v1/locked-transfers", None, &body).await;
        assert_eq!(s, 200, "{v}");
        a.accepted(&add);
        let (_, acct_b) = balance(&http, &b).await;
        let nonce_with_lock = acct_b["creditNonce"].as_u64().expect("nonce");
        // The payee's lock expires at head + 10; the node drops it without being asked. The
        // chain goes just past that (and its confirmations), then waits: the payer's own lock
        // must still be pending when the drop is seen.
        let now = chain.head().await;
        chain.mine((head + 13).saturating_sub(now)).await;
        let acct_b = eventually(30, "the hub to drop its expired lock", || async {
            let (_, v) = balance(&http, &b).await.clone();
            (v["locks"]["incoming"] == json!([])).then_some(v)
        })
        .await;
        assert!(acct_b["creditNonce"].as_u64().expect("nonce") > nonce_with_lock, "dropped by a new credit: {acct_b}");
        let credit: infhub_core::messages::SignedCredit =
            serde_json::from_value(acct_b["latestCredit"].clone()).expect("a credit");
        credit.verify(&domain, hub).expect("the hub's");
        assert_eq!(
            (credit.message.locked_amount, credit.message.locks_root),
            (Amount::ZERO, B256::ZERO),
            "without the lock"
        );
        // The payer's own lock lasts to head + 30: refused before, taken back after.
        let drop = lock_debit(&a, &domain, hub, PaymentKind::LockDrop, &lock, &[], 0);
        let body = json!({"debit": a.sign_debit(&domain, drop), "change": {"drop": {"lockId": lock.lock_id}}});
        let (s, v) = http.post("/v1/lock-debits", None, &body).await;
        assert_eq!((s, code(&v)), (422, "lock_not_expired"), "{v}");
        let v = eventually(30, "the payer's lock to expire", || async {
            chain.mine(2).await;
            let (s, v) = http.post("/v1/lock-debits", None, &body).await;
            (s == 200).then_some(v)
        })
        .await;
        assert!(v["receipt"].is_object(), "{v}");
        a.accepted(&drop);
        let (bal_a, _) = balance(&http, &a).await;
        assert_eq!(bal_a, 500, "her balance is whole again");
        node.stop().await;
    });
}
