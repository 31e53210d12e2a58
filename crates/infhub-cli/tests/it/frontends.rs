//! Stateless front-ends (issue 23, spec §7): a front-end process checks transfers' signatures
//! and forwards them to the writer over the sequencer stream; everything else passes through to
//! the writer's HTTP API. A user whose wallet only knows the front-end registers and pays
//! through it; a forged debit is refused exactly as the writer refuses it directly; a retried
//! transfer gets its first answer; a payer's write budget holds through a front-end; a
//! front-end with the wrong token is refused at start.

use crate::harness::{account_at, amount, wait_serving, Env, INF};
use infhub_core::messages::{PaymentKind, Signed};
use infhub_core::{Amount, Debit, Domain, PrivateKey, B256};
use infhub_node::config::Secret;
use serde_json::Value;
use std::process::{Child, Command, Stdio};

const TOKEN: &str = "front-end-token-for-tests";

/// Kills the front-end when the test ends.
struct FrontEnd(Child);

impl Drop for FrontEnd {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn front_end(env: &Env, writer: &str, token: &str) -> (Command, String) {
    let port = infhub_chain::anvil::free_port().expect("port");
    let mut c = Command::new(env!("CARGO_BIN_EXE_infhub"));
    c.args(["frontend", "--listen", &format!("127.0.0.1:{port}"), "--writer", writer, "--writer-http", &env.hub_url])
        .env("INFHUB_SEQUENCER_TOKEN", token);
    (c, format!("http://127.0.0.1:{port}"))
}

async fn post(url: &str, path: &str, body: &Value) -> (u16, Value) {
    let r = reqwest::Client::new().post(format!("{url}{path}")).json(body).send().await.expect("post");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread")]
async fn payments_through_a_front_end_are_applied_by_the_writer_and_answered_as_it_would() {
    let sequencer = format!("127.0.0.1:{}", infhub_chain::anvil::free_port().expect("port"));
    let env = Env::start_with(|c| {
        c.node.sequencer_listen = sequencer.clone();
        c.node.sequencer_token = Secret(TOKEN.into());
        c.limits.writes_per_second_per_account = 20;
    })
    .await;

    // A front-end with the wrong token is refused by the writer and stops, saying so.
    let (mut wrong, _) = front_end(&env, &sequencer, "not-the-token-at-all");
    let out = wrong.stdout(Stdio::null()).stderr(Stdio::piped()).output().expect("run the front-end");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("wrong sequencer token"), "{}: {stderr}", out.status);

    let (mut cmd, front) = front_end(&env, &sequencer, TOKEN);
    let _front = FrontEnd(cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("spawn the front-end"));
    wait_serving(&front, 30).await;

    // Alice's wallet knows only the front-end: registration and reads pass through to the
    // writer, payments are forwarded on the sequencer stream.
    let (alice, bob) = (env.user(1, "alice"), env.user(2, "bob"));
    env.ok(&alice, &["register", "--hub-url", &front, "--rpc-url", &env.anvil.url]);
    env.register(&bob).await;
    env.until(60, "the hub to follow alice's channel", || async {
        account_at(&env.hub_url, alice.address).await.0 == 200
    })
    .await;
    env.purchase(alice.address, 30 * INF, 1).await;
    let v = env.ok(&alice, &["pay", &bob.address.to_string(), "10"]);
    assert_eq!(amount(&v["balance"]), 20 * INF, "the wallet checked the writer's proofs: {v}");
    assert_eq!(amount(&env.ok(&bob, &["balance"])["balance"]), 10 * INF);

    // A debit signed by someone else: the front-end forwards it unvouched and the writer's
    // ledger refuses it by name, exactly as a direct request.
    let (_, account) = account_at(&env.hub_url, alice.address).await;
    let debit = Debit {
        user: alice.address,
        epoch: account["epoch"].as_u64().expect("epoch"),
        nonce: account["debitNonce"].as_u64().expect("nonce") + 1,
        cumulative_debit: Amount(amount(&account["cumulativeDebit"]) + 5 * INF),
        locked_amount: Amount::ZERO,
        locks_root: B256::ZERO,
        kind: PaymentKind::Internal as u8,
        recipient: bob.address,
        amount: Amount(5 * INF),
        payment_id: B256::repeat_byte(0x77),
    };
    let domain = Domain { chain_id: 31_337, verifying_contract: env.d.hub };
    let key =
        |u: &crate::harness::User| PrivateKey::from_bytes(infhub_chain::anvil::dev_key(u_index(u)).0).expect("key");
    let forged = serde_json::to_value(Signed::new(debit, &domain, &key(&bob))).expect("json");
    let through = post(&front, "/v1/transfers", &forged).await;
    let direct = post(&env.hub_url, "/v1/transfers", &forged).await;
    assert_eq!(through.0, direct.0, "the same status: {through:?} {direct:?}");
    assert_eq!(through.1["error"]["code"], "wrong_signer", "{through:?}");
    assert_eq!(through.1["error"]["code"], direct.1["error"]["code"]);

    // Signed by alice: applied once; the retry through the front-end gets the first answer;
    // in a batch, the same.
    let signed = serde_json::to_value(Signed::new(debit, &domain, &key(&alice))).expect("json");
    let (status, first) = post(&front, "/v1/transfers", &signed).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["replayed"], false, "{first}");
    let (status, again) = post(&front, "/v1/transfers", &signed).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["replayed"], true, "{again}");
    assert_eq!(again["result"], first["result"], "the first answer");
    let both = serde_json::json!({"transfers": [signed, forged]});
    let (status, batch) = post(&front, "/v1/transfers/batch", &both).await;
    let (direct_status, direct) = post(&env.hub_url, "/v1/transfers/batch", &both).await;
    assert_eq!((status, direct_status), (200, 200), "{batch} {direct}");
    assert_eq!(batch["results"][0]["replayed"], true, "{batch}");
    assert_eq!(batch["results"][0]["result"], first["result"], "{batch}");
    // The forged twin of an applied debit: refused, by the same rule as directly.
    assert!(batch["results"][1]["error"]["code"].is_string(), "{batch}");
    assert_eq!(batch["results"][1]["error"]["code"], direct["results"][1]["error"]["code"], "{batch} {direct}");
    assert_eq!(amount(&env.ok(&bob, &["balance"])["balance"]), 15 * INF, "10 + 5, once");

    // The payer's write budget holds through the front-end too: a batch of 25 writes signed by
    // a payer who has written nothing yet is over her 20 a second (a budget that has waited
    // long enough takes a larger batch, so a fresh one keeps this independent of timing),
    // refused whole as the writer refuses it directly.
    let carol = PrivateKey::from_bytes(infhub_chain::anvil::dev_key(3).0).expect("key");
    let hers =
        serde_json::to_value(Signed::new(Debit { user: carol.address(), ..debit }, &domain, &carol)).expect("json");
    let many = serde_json::json!({"transfers": vec![hers; 25]});
    let (status, through) = post(&front, "/v1/transfers/batch", &many).await;
    assert_eq!((status, through["error"]["code"].clone()), (429, "account_rate_limited".into()), "{through}");
    let (status, direct) = post(&env.hub_url, "/v1/transfers/batch", &many).await;
    assert_eq!((status, direct["error"]["code"].clone()), (429, "account_rate_limited".into()), "{direct}");
}

/// The index of a harness user's dev key (alice is 1, bob 2).
fn u_index(u: &crate::harness::User) -> usize {
    infhub_chain::anvil::DEV_KEYS.iter().position(|k| *k == u.key).expect("a dev key")
}
