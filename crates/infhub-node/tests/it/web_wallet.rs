//! The web wallet in a real browser (issue 24): Debian's Chromium, headless, driven through
//! chromedriver by fantoccini, against the node binary and anvil. Two browser sessions create
//! wallets, register, deposit and pay each other (directly and by a payment request) and see
//! both histories; one withdraws; the node is killed with SIGKILL and one user exits from the
//! browser with the chain alone and is paid on chain; the node restarts, both browsers' storage
//! is cleared, and each wallet recovers from its key. The explorer's pages are read with the
//! same real data, checkpoints included. Screenshots of every page go to `target/tmp/web-wallet-screenshots/`.

use crate::crash::{spawn_node, wait_ready};
use crate::harness::*;
use alloy::primitives::{Address, U256};
use alloy::providers::Provider;
use alloy::sol_types::SolCall;
use fantoccini::{Client, ClientBuilder, Locator};
use infhub_chain::bindings::IErc20;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Where the screenshots go (listed in the README).
const SCREENSHOT_DIR: &str = concat!(env!("CARGO_TARGET_TMPDIR"), "/web-wallet-screenshots");
/// How long one wallet action may take in the browser (a deposit waits for confirmations).
const ACTION_SECS: u64 = 120;
/// One INF in base units (18 decimals).
const INF: u128 = 1_000_000_000_000_000_000;

/// chromedriver on a free port, killed on drop.
struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn chromedriver() -> Driver {
    let port = infhub_chain::anvil::free_port().expect("free port");
    let child = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver (scripts/setup installs Debian's chromium-driver)");
    let url = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    eventually(30, "chromedriver ready", || async {
        let v: Value = http.get(format!("{url}/status")).send().await.ok()?.json().await.ok()?;
        v["value"]["ready"].as_bool().filter(|r| *r).map(|_| ())
    })
    .await;
    Driver { child, url }
}

async fn browser(driver: &Driver) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": "/usr/bin/chromium",
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1100,1500"],
        }),
    );
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    ClientBuilder::new(connector).capabilities(caps).connect(&driver.url).await.expect("a Chromium session")
}

/// One browser tab with the wallet open, and what the test learned about it.
struct Page {
    c: Client,
    name: &'static str,
}

impl Page {
    async fn open(c: Client, name: &'static str, url: &str) -> Page {
        c.goto(url).await.expect("open the wallet");
        let p = Page { c, name };
        p.wait_js("document.body.dataset.ready === '1'", "the wallet's script started").await;
        p
    }

    async fn wait_js(&self, condition: &str, what: &str) {
        let script = format!("return !!({condition});");
        let mut waited = 0;
        loop {
            if self.c.execute(&script, vec![]).await.expect("script").as_bool() == Some(true) {
                return;
            }
            if waited > ACTION_SECS * 10 {
                self.shot("timeout").await;
                panic!("{}: {what} did not happen in {ACTION_SECS} s; page says: {}", self.name, self.status().await);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            waited += 1;
        }
    }

    async fn text(&self, id: &str) -> String {
        self.c.find(Locator::Id(id)).await.expect(id).text().await.expect("text")
    }

    async fn status(&self) -> String {
        let v = self
            .c
            .execute(
                "return document.getElementById('progress').textContent + ' | error: ' + \
                 (document.getElementById('error').hidden ? '' : document.getElementById('error').textContent);",
                vec![],
            )
            .await
            .expect("status");
        v.as_str().unwrap_or_default().to_string()
    }

    async fn fill(&self, id: &str, value: &str) {
        let e = self.c.find(Locator::Id(id)).await.expect(id);
        e.clear().await.expect("clear");
        e.send_keys(value).await.expect("type");
    }

    /// Clicks a button and waits until the action is over; `Err` with the page's error text
    /// if it failed.
    async fn act(&self, button: &str) -> Result<(), String> {
        self.c.find(Locator::Id(button)).await.expect(button).click().await.expect("click");
        self.wait_js("!document.body.dataset.busy", &format!("the action of #{button} ended")).await;
        let failed = self.c.execute("return !document.getElementById('error').hidden;", vec![]).await.expect("js");
        if failed.as_bool() == Some(true) {
            return Err(self.text("error").await);
        }
        Ok(())
    }

    async fn ok(&self, button: &str) {
        if let Err(e) = self.act(button).await {
            self.shot(&format!("failed-{button}")).await;
            panic!("{}: #{button} failed: {e}", self.name);
        }
    }

    async fn balance(&self) -> String {
        self.text("balance").await
    }

    async fn shot(&self, step: &str) {
        let png = self.c.screenshot().await.expect("screenshot");
        std::fs::create_dir_all(SCREENSHOT_DIR).expect("screenshot dir");
        let path = PathBuf::from(SCREENSHOT_DIR).join(format!("{}-{step}.png", self.name));
        std::fs::write(&path, png).expect("write screenshot");
        println!("screenshot {}", path.display());
    }
}

/// Gas money and test tokens for an address the browser made.
async fn fund(chain: &Chain, who: Address, inf: u128) {
    let _: Value = chain
        .provider
        .raw_request("anvil_setBalance".into(), (who, U256::from(10u128.pow(18))))
        .await
        .expect("anvil_setBalance");
    // From a development user's tokens (the hub's key, the minter, is the node's own sender).
    let mut giver =
        infhub_chain::anvil::sender(&chain.provider, infhub_chain::anvil::dev_key(3)).await.expect("sender");
    let transfer = IErc20::transferCall { to: who, amount: U256::from(inf) }.abi_encode();
    infhub_chain::anvil::call_ok(&mut giver, chain.d.token, transfer).await.expect("token transfer");
}

async fn create_wallet(page: &Page, chain: &Chain) -> (Address, String) {
    page.fill("create-password", "correct horse battery").await;
    page.ok("create").await;
    let address: Address = page.text("address").await.parse().expect("the page shows an address");
    let key = page.text("backup-key").await;
    assert_eq!(key.len(), 66, "the page shows the key to back up");
    fund(chain, address, 1_000 * INF).await;
    (address, key)
}

async fn token(chain: &Chain, who: Address) -> u128 {
    u128::try_from(chain.token_balance(who).await).expect("fits")
}

/// The explorer's pages with the test's real data: every page renders, and the account page
/// shows the account's chain facts but no counterparty of an off-chain payment.
async fn read_explorer(driver: &Driver, base: &str, a: Address, b: Address) -> Page {
    let explorer = Page { c: browser(driver).await, name: "explorer" };
    let pages = [
        ("/explorer".to_string(), "overview"),
        ("/explorer/blocks".into(), "blocks"),
        ("/explorer/events".into(), "events"),
        ("/explorer/checkpoints".into(), "checkpoints"),
        (format!("/explorer/accounts/{a}"), "account"),
    ];
    for (path, name) in pages {
        explorer.c.goto(&format!("{base}{path}")).await.expect("explorer page");
        let body = explorer.c.find(Locator::Css("body")).await.expect("body").text().await.expect("text");
        assert!(!body.contains("no_such_endpoint") && body.len() > 100, "{path}: {body}");
        explorer.shot(name).await;
    }
    // The hub posts a checkpoint every 5 blocks: the list shows them with their figures, the
    // newest counting what the users hold.
    explorer.c.goto(&format!("{base}/explorer/checkpoints")).await.expect("checkpoints page");
    let rows = explorer.c.find_all(Locator::Css("table tr")).await.expect("rows").len();
    assert!(rows >= 3, "at least two checkpoints listed (a header and {} rows)", rows.saturating_sub(1));
    explorer.c.goto(&format!("{base}/explorer/accounts/{a}")).await.expect("account page");
    let account_page = explorer.c.find(Locator::Css("body")).await.expect("body").text().await.expect("text");
    assert!(account_page.to_lowercase().contains(&a.to_string().to_lowercase()), "{account_page}");
    assert!(!account_page.contains(&b.to_string()), "a public page names no payee of an off-chain payment");
    explorer
}

/// Clears the browser's storage and reloads: nothing of the wallet is left in it.
async fn clear_storage(page: &Page, url: &str) {
    page.c.execute("localStorage.clear(); return true;", vec![]).await.expect("clear storage");
    page.c.goto(url).await.expect("reload");
    page.wait_js("document.body.dataset.ready === '1'", "reloaded").await;
    let unlock_shown = page.c.execute("return !document.getElementById('unlock-box').hidden;", vec![]).await;
    assert_eq!(unlock_shown.expect("js").as_bool(), Some(false), "nothing is left in the browser");
}

/// Imports `key` into a cleared page.
async fn import(page: &Page, key: &str) {
    page.fill("import-key", key).await;
    page.fill("import-password", "another password").await;
    page.ok("import").await;
}

#[test]
fn two_browsers_pay_each_other_exit_with_the_hub_down_and_recover_from_the_key() {
    let wallet_dir = infhub_chain::anvil::repo_root().join("web/dist");
    assert!(
        wallet_dir.join("wallet.js").is_file(),
        "{} has no wallet.js: scripts/setup builds it",
        wallet_dir.display()
    );
    rt().block_on(async {
        let chain = Chain::start().await;
        let _miner = mine_continuously(&chain, 250);
        let dir = tempfile::tempdir().expect("tmp");
        let port = infhub_chain::anvil::free_port().expect("free port");
        let mut config = chain.config(dir.path().join("data"));
        config.node.listen = format!("127.0.0.1:{port}");
        config.node.wallet_dir = wallet_dir;
        config.checkpoints.interval_blocks = 5;
        let config_path = dir.path().join("infhub.toml");
        std::fs::write(&config_path, toml::to_string(&config).expect("toml")).expect("write config");
        let base = format!("http://127.0.0.1:{port}");
        let http = Http::new(&base);
        let mut node = spawn_node(&config_path, &dir.path().join("node.log"));
        wait_ready(&http).await;

        let driver = chromedriver().await;
        let url = format!("{base}/wallet/");
        let alice = Page::open(browser(&driver).await, "alice", &url).await;
        let bob = Page::open(browser(&driver).await, "bob", &url).await;
        alice.shot("01-start").await;
        let (a, a_key) = create_wallet(&alice, &chain).await;
        let (b, b_key) = create_wallet(&bob, &chain).await;
        alice.shot("02-created").await;

        for page in [&alice, &bob] {
            page.ok("register").await;
            assert_eq!(page.text("channel-state").await, "open");
        }
        alice.fill("deposit-amount", "100").await;
        alice.ok("deposit").await;
        bob.fill("deposit-amount", "50").await;
        bob.ok("deposit").await;
        assert_eq!(alice.balance().await, "100");
        alice.shot("03-deposited").await;

        // Alice pays Bob; Bob pays Alice's payment request; a second payment of the request is
        // refused before anything is signed.
        alice.fill("pay-to", &b.to_string()).await;
        alice.fill("pay-amount", "30").await;
        alice.ok("pay").await;
        assert_eq!(alice.balance().await, "70");
        bob.ok("refresh").await;
        assert_eq!(bob.balance().await, "80");
        let request = format!("infhub:{a}?amount={}&id=0x{}&description=order%2042", 5 * INF, "42".repeat(32));
        bob.fill("request", &request).await;
        bob.ok("pay-request").await;
        assert_eq!(bob.balance().await, "75");
        let again = bob.act("pay-request").await.expect_err("a request is paid once");
        assert!(again.contains("payment_id_reused"), "{again}");
        bob.shot("04-paid-request").await;
        alice.ok("refresh").await;
        assert_eq!(alice.balance().await, "75");
        for (page, counterparty) in [(&alice, b), (&bob, a)] {
            let history = page.text("history").await;
            assert!(history.contains("30") && history.contains("5"), "{}: history {history}", page.name);
            assert!(history.to_lowercase().contains(&counterparty.to_string().to_lowercase()[..10]), "{history}");
        }
        alice.shot("05-history").await;

        // Alice withdraws 10 INF to her chain wallet.
        let before = token(&chain, a).await;
        alice.fill("withdraw-amount", "10").await;
        alice.ok("withdraw").await;
        assert_eq!(token(&chain, a).await, before + 10 * INF);
        assert_eq!(alice.balance().await, "65");

        let explorer = read_explorer(&driver, &base, a, b).await;

        // The hub dies. Alice exits from the browser with the chain alone and is paid on chain.
        node.kill().expect("SIGKILL the node");
        node.wait().expect("reaped");
        alice.ok("refresh").await;
        assert_eq!(alice.text("hub-state").await, "hub offline: chain only");
        alice.shot("06-hub-down").await;
        let before_exit = token(&chain, a).await;
        alice.ok("exit").await;
        assert_eq!(alice.text("channel-state").await, "settled");
        assert_eq!(token(&chain, a).await, before_exit + 65 * INF, "the exit pays the off-chain balance");
        alice.shot("07-exited").await;

        // The node restarts; both browsers lose their storage; each wallet recovers from its key.
        let mut node = spawn_node(&config_path, &dir.path().join("node2.log"));
        wait_ready(&http).await;
        clear_storage(&alice, &url).await;
        clear_storage(&bob, &url).await;
        import(&bob, &b_key).await;
        assert_eq!(bob.text("address").await, b.to_string());
        assert_eq!(bob.balance().await, "75", "the balance comes back from the hub's proofs");
        assert!(bob.text("history").await.contains("30"));
        bob.shot("08-recovered").await;
        // A recovered wallet goes on: its epoch, nonce and totals came back too.
        let before = token(&chain, b).await;
        bob.fill("withdraw-amount", "5").await;
        bob.ok("withdraw").await;
        assert_eq!(token(&chain, b).await, before + 5 * INF);
        assert_eq!(bob.balance().await, "70");
        // Alice, recovered after her exit, sees a settled channel and her tokens on chain.
        import(&alice, &a_key).await;
        assert_eq!(alice.text("channel-state").await, "settled");
        alice.shot("09-recovered-after-exit").await;
        node.kill().expect("stop");
        let _ = node.wait();
        for c in [alice.c, bob.c, explorer.c] {
            let _ = c.close().await;
        }
    });
}
