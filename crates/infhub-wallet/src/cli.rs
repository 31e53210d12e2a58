//! The `infhub wallet …` commands: flags, key loading, and output for people (default) or
//! scripts (`--json`, one JSON document per command, one JSON line per `watch` event).
//! Progress goes to stderr so stdout stays parseable.

use crate::error::WalletError;
use crate::keystore::{self, DEFAULT_SCRYPT_LOG_N};
use crate::store::{JournalEntry, WalletDir};
use crate::units::{format_inf, parse_inf};
use crate::wallet::Wallet;
use clap::{Args, Subcommand};
use futures_util::StreamExt;
use infhub_core::channel::Status;
use infhub_core::{Address, Amount, PaymentKind, PrivateKey, B256};
use serde_json::{json, Value};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

/// `infhub wallet` flags.
#[derive(Args, Debug)]
pub struct WalletArgs {
    /// Wallet directory (keystore, state, journal).
    #[arg(long, env = "INFHUB_WALLET_DIR", global = true)]
    pub dir: Option<PathBuf>,
    /// Print JSON for scripts instead of text for people.
    #[arg(long, global = true)]
    pub json: bool,
    /// The hub's API URL (stored at registration; this overrides it).
    #[arg(long, env = "INFHUB_HUB_URL", global = true)]
    pub hub_url: Option<String>,
    /// The chain's JSON-RPC URL (stored at registration; this overrides it).
    #[arg(long, env = "INFHUB_RPC_URL", global = true)]
    pub rpc_url: Option<String>,
    /// What to do.
    #[command(subcommand)]
    pub command: WalletCommand,
}

/// The wallet's commands.
#[derive(Subcommand, Debug)]
pub enum WalletCommand {
    /// Make a new key and store it encrypted (password from INFHUB_WALLET_PASSWORD or asked).
    Init {
        /// scrypt cost, log2(n).
        #[arg(long, default_value_t = DEFAULT_SCRYPT_LOG_N, hide = true)]
        scrypt_log_n: u8,
    },
    /// Store an existing key encrypted (key from INFHUB_WALLET_KEY or asked).
    Import {
        /// scrypt cost, log2(n).
        #[arg(long, default_value_t = DEFAULT_SCRYPT_LOG_N, hide = true)]
        scrypt_log_n: u8,
    },
    /// Print the wallet's address.
    Address,
    /// Register with a hub (needs --hub-url and --rpc-url); waits until the channel is open.
    Register,
    /// Lock tokens in the hub contract (approve + deposit), waiting for the confirmations.
    Deposit {
        /// Amount in INF, e.g. 12.5.
        amount: String,
    },
    /// Show the balance, checked against the hub's figures.
    Balance,
    /// Pay another account of the hub.
    Pay {
        /// The recipient's address.
        account: Address,
        /// Amount in INF.
        amount: String,
        /// The payment id the payee asked for (32 bytes, hex), which this payment's signature
        /// binds and the payee looks it up by; a random one when absent. Paying the same id
        /// again gets the first payment's answer, not a second payment.
        #[arg(long)]
        payment_id: Option<B256>,
    },
    /// A payment of this account by its id, sent or received: its status (paid, received,
    /// refunded, locked, settled, dropped) and its proofs.
    Payment {
        /// The payment id.
        payment_id: B256,
    },
    /// Sign an invoice others can pay you by (spec §5.19; paid with `pay-invoice` from the same
    /// hub, or from a hub linked to yours). Prints it as JSON. `balance` claims its payment.
    Invoice {
        /// Amount in INF.
        amount: String,
        /// What the payer is shown (only its hash is signed).
        #[arg(long, default_value = "")]
        description: String,
        /// How long it can be paid, in seconds.
        #[arg(long, default_value_t = 3600)]
        expires_in_seconds: u64,
    },
    /// Pay an invoice (the JSON `invoice` prints) by a point lock: to a user of the same hub,
    /// or of another hub your hub has a link to, which forwards it (spec §5.23a). The payee's
    /// `balance` claims it, and yours then settles it with the proof of payment.
    PayInvoice {
        /// The signed invoice, as JSON, or `@path` of a file that holds it.
        invoice: String,
        /// The most fees (in INF) a route to another hub may cost; default 1% of the amount
        /// plus 1 INF. Refused before anything is signed when the hub's quote is higher.
        #[arg(long)]
        max_fee: Option<String>,
    },
    /// Pay a plain chain address; the hub pays it out on chain.
    PayExternal {
        /// The chain address.
        address: Address,
        /// Amount in INF.
        amount: String,
    },
    /// Take tokens out of the channel on chain with the hub's co-signature.
    Withdraw {
        /// Amount in INF, or `all`.
        amount: String,
    },
    /// Close the channel alone with your newest proof (the hub may be offline) and collect.
    Exit {
        /// Only start the exit; collect later with `exit` again or `watch`.
        #[arg(long)]
        no_wait: bool,
        /// Do not contact the hub at all, not even to fetch a newer credit first.
        #[arg(long)]
        offline: bool,
        /// Exit even if the hub could not be asked for your newest credit (payments to you
        /// since your last contact with it may then be lost).
        #[arg(long)]
        yes: bool,
        /// Start the exit with your leaf of the contract's newest checkpoint as your credit
        /// (for a wallet that lost its proofs; the hub serves the leaf, the contract checks it).
        #[arg(long, conflicts_with = "offline")]
        from_checkpoint: bool,
    },
    /// Show where an external payment's payout stands (queued, sent, mined, confirmed) and the
    /// transaction that paid it.
    Payout {
        /// The payment id (`pay-external` prints it).
        payment_id: B256,
    },
    /// Show the local journal of proofs and events, newest first.
    History {
        /// Lines to show.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Only from this time: a UTC date `YYYY-MM-DD`, `YYYY-MM-DDTHH:MM:SSZ`, or milliseconds
        /// since 1970.
        #[arg(long)]
        from: Option<String>,
        /// Only to this time (a date includes its whole day).
        #[arg(long)]
        to: Option<String>,
    },
    /// The hub's statement of this account, with the running balance: its lines within
    /// `--from`..`--to` (UTC dates or times), and the balance before and after them.
    Statement {
        /// From this time: `YYYY-MM-DD`, `YYYY-MM-DDTHH:MM:SSZ`, or milliseconds since 1970.
        #[arg(long)]
        from: Option<String>,
        /// To this time (a date includes its whole day).
        #[arg(long)]
        to: Option<String>,
    },
    /// Resolve an unanswered payment and fetch the hub's newest credit.
    Sync,
    /// Check this account's leaf of the hub's newest checkpoint on chain (or of `--id`): its
    /// path to the contract's root, the chain's figures, and every credit and debit this wallet
    /// holds. Exits non-zero with the fault's code if the hub misstates the account.
    Verify {
        /// The checkpoint id (default: the contract's newest).
        #[arg(long)]
        id: Option<u64>,
    },
    /// Prove on chain that a checkpoint misstates this account: a credit the hub signed or the
    /// chain's deposits and withdrawals contradict the leaf (the contract halts the hub), or the
    /// leaf states more debit than this wallet signed (a challenge the hub must answer; run it
    /// again after the period to halt a hub that did not). Costs gas.
    Complain {
        /// The checkpoint id (default: the contract's newest).
        #[arg(long)]
        id: Option<u64>,
        /// Challenge the leaf's debit total whatever this wallet's journal says (a wallet
        /// restored from its key alone cannot tell): the hub must show a debit you signed.
        #[arg(long)]
        challenge_debit: bool,
    },
    /// A merchant's webhook (spec §5.24): the hub posts this account's new entries to a URL,
    /// signed with a secret shown once.
    Webhook {
        /// What to do.
        #[command(subcommand)]
        command: WebhookCommand,
    },
    /// This account's entries after a cursor, oldest first (the feed a webhook delivers).
    Events {
        /// The `seq` of the last entry already processed (0: from the start).
        #[arg(long, default_value_t = 0)]
        after: u64,
        /// Most entries to show.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Watchtowers that defend the channel while this wallet is off (spec §5.10a).
    Towers {
        /// What to do.
        #[command(subcommand)]
        command: TowersCommand,
    },
    /// Keep running: store every credit from the hub, defend against a close with a stale
    /// proof, settle when a close is over. Ctrl-C stops.
    Watch {
        /// Do not call settle when a close is over (someone else will).
        #[arg(long)]
        no_settle: bool,
        /// When a checkpoint misstates this account, send the complaint or debit challenge on
        /// chain at once, and halt a hub that leaves the challenge unanswered (costs gas).
        #[arg(long)]
        complain: bool,
    },
}

/// `infhub wallet webhook …`.
#[derive(Subcommand, Debug, Clone)]
pub enum WebhookCommand {
    /// Post this account's new entries to `url` (prints the signing secret, shown only now).
    Set {
        /// The receiver, e.g. https://shop.example/hooks/infhub.
        url: String,
        /// Also deliver the entries after this `seq` (default: from now on).
        #[arg(long)]
        after: Option<u64>,
    },
    /// The webhook: URL, cursor, failures.
    Show,
    /// Stop the deliveries.
    Remove,
}

/// `infhub wallet towers …`.
#[derive(Subcommand, Debug, Clone)]
pub enum TowersCommand {
    /// Add a tower: offer it a share of what it saves you, hand it your newest credit, and
    /// have the hub push every new credit to it.
    Add {
        /// The tower's URL, e.g. http://127.0.0.1:8645.
        url: String,
        /// Most the tower may earn in one close, in INF.
        #[arg(long, default_value = "1")]
        max_fee: String,
        /// The tower's share of what its defence saves you, in basis points (100 = 1 %).
        #[arg(long, default_value_t = 1_000)]
        share_bps: u16,
    },
    /// The towers and what each holds for you (its signed receipt).
    List,
    /// Stop using a tower (the hub stops pushing to it).
    Remove {
        /// The tower's URL.
        url: String,
    },
}

/// A command's result: JSON for scripts, text for people.
#[derive(Debug)]
pub struct Report {
    /// The machine form.
    pub json: Value,
    /// The human form.
    pub text: String,
}

fn default_dir() -> PathBuf {
    std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(".")).join(".infhub/wallet")
}

fn parse_key(text: &str) -> Result<(PrivateKey, B256), WalletError> {
    let bytes: B256 =
        text.trim().parse().map_err(|_| WalletError::InvalidInput("the key must be 32 bytes of hex (0x…)".into()))?;
    let key = PrivateKey::from_bytes(bytes.0)
        .map_err(|_| WalletError::InvalidInput("the key is not a valid secp256k1 private key".into()))?;
    Ok((key, bytes))
}

fn password(confirm: bool) -> Result<String, WalletError> {
    if let Ok(p) = std::env::var("INFHUB_WALLET_PASSWORD") {
        return Ok(p);
    }
    if !std::io::stdin().is_terminal() {
        return Err(WalletError::PasswordNeeded);
    }
    let p = rpassword::prompt_password("keystore password: ").map_err(|_| WalletError::PasswordNeeded)?;
    if confirm {
        let again = rpassword::prompt_password("again: ").map_err(|_| WalletError::PasswordNeeded)?;
        if again != p {
            return Err(WalletError::InvalidInput("the passwords differ".into()));
        }
    }
    Ok(p)
}

/// The wallet's key: INFHUB_WALLET_KEY, else the keystore in `dir`.
fn load_key(dir: &WalletDir) -> Result<(PrivateKey, B256), WalletError> {
    if let Ok(k) = std::env::var("INFHUB_WALLET_KEY") {
        return parse_key(&k);
    }
    let path = dir.keystore_path();
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(_) => return Err(WalletError::NoKey { dir: dir.path().display().to_string() }),
    };
    let key = keystore::decrypt(&text, &password(false)?)?;
    let bytes = B256::from(key.secret_bytes());
    Ok((key, bytes))
}

fn amount(text: &str) -> Result<Amount, WalletError> {
    Ok(parse_inf(text)?)
}

fn inf(a: Amount) -> String {
    format!("{} INF", format_inf(a.0))
}

fn progress_printer(json: bool) -> impl FnMut(&str) + Send {
    move |line: &str| {
        if json {
            eprintln!("{}", json!({"progress": line}));
        } else {
            eprintln!("  … {line}");
        }
    }
}

/// Runs one wallet command (except `watch`, see [`watch`]).
pub async fn run(args: &WalletArgs) -> Result<Report, WalletError> {
    let dir = WalletDir::new(args.dir.clone().unwrap_or_else(default_dir));
    let mut progress = progress_printer(args.json);
    let open = || async {
        let (key, bytes) = load_key(&dir)?;
        Wallet::open(dir.clone(), key, bytes, args.hub_url.as_deref(), args.rpc_url.as_deref()).await
    };
    match &args.command {
        WalletCommand::Init { scrypt_log_n } | WalletCommand::Import { scrypt_log_n } => {
            create_key(&dir, matches!(args.command, WalletCommand::Init { .. }), *scrypt_log_n)
        }
        WalletCommand::Address => {
            let (key, _) = load_key(&dir)?;
            Ok(Report { json: json!({"address": key.address()}), text: key.address().to_string() })
        }
        WalletCommand::Register => register(args, &dir, &mut progress).await,
        WalletCommand::Deposit { amount: a } => {
            let a = amount(a)?;
            let mut w = open().await?;
            let total = w.deposit(a, &mut progress).await?;
            let balance = w.spendable()?;
            Ok(Report {
                json: json!({"deposited": a, "totalDeposited": total, "balance": balance}),
                text: format!("deposited {} (confirmed on chain); balance {}", inf(a), inf(balance)),
            })
        }
        WalletCommand::Balance | WalletCommand::Sync => balance(&mut open().await?, &mut progress).await,
        WalletCommand::Pay { account, amount: a, payment_id } => {
            pay(&mut open().await?, *account, amount(a)?, *payment_id).await
        }
        WalletCommand::Invoice { amount: a, description, expires_in_seconds } => {
            let a = amount(a)?;
            let w = open().await?;
            let invoice = w.issue_invoice(a, description, *expires_in_seconds)?;
            let json = serde_json::to_value(&invoice).map_err(|e| WalletError::InvalidInput(e.to_string()))?;
            Ok(Report { text: json.to_string(), json: json!({"invoice": json, "description": description}) })
        }
        WalletCommand::PayInvoice { invoice, max_fee } => {
            let max_fee = max_fee.as_deref().map(amount).transpose()?;
            pay_invoice(&mut open().await?, invoice, max_fee).await
        }
        WalletCommand::PayExternal { address, amount: a } => {
            let a = amount(a)?;
            let mut w = open().await?;
            let answer = w.pay(PaymentKind::External, *address, a).await?;
            let balance = w.spendable()?;
            Ok(Report {
                json: json!({"paid": a, "to": address, "balance": balance, "hub": answer}),
                text: format!(
                    "paid {} to chain address {address}; receipt checked; the hub pays it out on chain in its next batch (`infhub wallet payout {}` follows it); balance {}",
                    inf(a),
                    answer["result"]["receipt"]["message"]["paymentId"].as_str().unwrap_or("?"),
                    inf(balance)
                ),
            })
        }
        WalletCommand::Withdraw { amount: a } => {
            let a = if a == "all" { None } else { Some(amount(a)?) };
            let mut w = open().await?;
            let got = w.withdraw(a, &mut progress).await?;
            let balance = w.spendable()?;
            let on_chain = w.token_balance().await?;
            Ok(Report {
                json: json!({"withdrawn": got, "balance": balance, "tokenBalance": on_chain.to_string()}),
                text: format!(
                    "withdrew {} to {} on chain; channel balance {}; tokens held on chain {} INF",
                    inf(got),
                    w.user(),
                    inf(balance),
                    format_inf(u128::try_from(on_chain).unwrap_or(u128::MAX))
                ),
            })
        }
        WalletCommand::Exit { no_wait, offline, yes, from_checkpoint } => {
            exit(
                &mut open().await?,
                &dir,
                ExitOptions { no_wait: *no_wait, offline: *offline, yes: *yes, from_checkpoint: *from_checkpoint },
                &mut progress,
            )
            .await
        }
        WalletCommand::Payout { payment_id } => payout(&mut open().await?, *payment_id).await,
        WalletCommand::History { limit, from, to } => history(&dir, *limit, from.as_deref(), to.as_deref()),
        WalletCommand::Statement { from, to } => statement(&mut open().await?, from.as_deref(), to.as_deref()).await,
        WalletCommand::Towers { command } => towers(&mut open().await?, command).await,
        WalletCommand::Webhook { command } => webhook(&mut open().await?, command).await,
        WalletCommand::Events { after, limit } => events(&mut open().await?, *after, *limit).await,
        WalletCommand::Payment { payment_id } => payment(&mut open().await?, *payment_id).await,
        WalletCommand::Watch { .. } => Err(WalletError::InvalidInput("watch runs through `watch()`".into())),
        WalletCommand::Complain { id, challenge_debit } => complain(&mut open().await?, *id, *challenge_debit).await,
        WalletCommand::Verify { id } => verify(&mut open().await?, *id).await,
    }
}

/// `verify`: the verdict on this account's leaf of a checkpoint (a fault is an error).
async fn verify(w: &mut Wallet, id: Option<u64>) -> Result<Report, WalletError> {
    let verdict = w.verify_checkpoint(id).await?;
    let text = match verdict["verdict"].as_str() {
        Some("ok") => format!(
            "checkpoint {}: your leaf checks out (liability counted: {})",
            verdict["checkpoint"]["id"],
            verdict["leaf"]["liability"].as_str().unwrap_or("?")
        ),
        Some("no_channel") => format!("checkpoint {}: no open channel to check", verdict["checkpoint"]["id"]),
        Some("nothing_owed") => {
            format!("checkpoint {}: nothing at stake in your channel yet", verdict["checkpoint"]["id"])
        }
        _ => "the hub has posted no checkpoint yet".to_string(),
    };
    Ok(Report { json: verdict, text })
}

/// `complain`: proves on chain that a checkpoint misstates this account.
async fn complain(w: &mut Wallet, id: Option<u64>, challenge_debit: bool) -> Result<Report, WalletError> {
    let v = w.complain(id, challenge_debit).await?;
    let text = if v["proof"] == "debit_challenged" {
        format!(
            "checkpoint {}: debit of {} challenged on chain ({}); you signed at most {}. The hub must answer by \
             block {}; after that, `complain` again halts it",
            v["checkpoint"], v["leaf"]["debitTotal"], v["txHash"], v["highestSignedDebit"], v["answerByBlock"]
        )
    } else {
        format!("checkpoint {} proved wrong on chain ({}); the hub is halted", v["checkpoint"], v["txHash"])
    };
    Ok(Report { json: v, text })
}

/// `init` (a fresh random key) or `import` (a key given in `INFHUB_WALLET_KEY` or typed), stored
/// encrypted under a password.
fn create_key(dir: &WalletDir, fresh: bool, scrypt_log_n: u8) -> Result<Report, WalletError> {
    let path = dir.keystore_path();
    if path.exists() {
        return Err(WalletError::KeyExists { path: path.display().to_string() });
    }
    let secret: [u8; 32] = if fresh {
        loop {
            let mut b = [0u8; 32];
            getrandom::fill(&mut b).map_err(|e| WalletError::InvalidInput(format!("no randomness: {e}")))?;
            if PrivateKey::from_bytes(b).is_ok() {
                break b;
            }
        }
    } else {
        let text = match std::env::var("INFHUB_WALLET_KEY") {
            Ok(k) => k,
            Err(_) if std::io::stdin().is_terminal() => rpassword::prompt_password("private key (hex): ")
                .map_err(|e| WalletError::InvalidInput(e.to_string()))?,
            Err(_) => return Err(WalletError::InvalidInput("set INFHUB_WALLET_KEY to the key to import".into())),
        };
        parse_key(&text)?.1 .0
    };
    let text = keystore::encrypt(&secret, &password(true)?, scrypt_log_n)?;
    dir.write_atomic("keystore.json", text.as_bytes())?;
    let address = PrivateKey::from_bytes(secret).map_err(|_| keystore::KeystoreError::InvalidKey)?.address();
    Ok(Report {
        json: json!({"address": address, "keystore": path}),
        text: format!(
            "address  {address}\nkeystore {} (back it up; the password is not stored anywhere)",
            path.display()
        ),
    })
}

/// `register`: the hub's URL and the chain's from the flags or the stored wallet.
async fn register(
    args: &WalletArgs,
    dir: &WalletDir,
    progress: &mut (impl FnMut(&str) + Send),
) -> Result<Report, WalletError> {
    let (key, bytes) = load_key(dir)?;
    let stored = dir.load()?;
    let hub_url = args
        .hub_url
        .clone()
        .or_else(|| stored.as_ref().map(|s| s.hub.hub_url.clone()))
        .ok_or_else(|| WalletError::InvalidInput("give the hub's URL with --hub-url".into()))?;
    let rpc_url = args
        .rpc_url
        .clone()
        .or_else(|| stored.as_ref().map(|s| s.hub.rpc_url.clone()))
        .ok_or_else(|| WalletError::InvalidInput("give the chain's RPC URL with --rpc-url".into()))?;
    let w = Wallet::register(dir.clone(), key, bytes, &hub_url, &rpc_url, progress).await?;
    let ch = w.channel()?;
    Ok(Report {
        json: json!({"user": w.user(), "epoch": ch.epoch, "hub": w.state().hub}),
        text: format!(
            "registered {} with the hub at {}\nchannel open on chain (epoch {}), hub contract {}",
            w.user(),
            w.state().hub.hub_url,
            ch.epoch,
            w.state().hub.hub_contract
        ),
    })
}

/// `balance` and `sync`: the wallet's figures, and whether the hub agrees with its proofs.
/// `pay-invoice`: reads the invoice (JSON, or `@path`) and pays it by point lock.
async fn pay_invoice(w: &mut Wallet, invoice: &str, max_fee: Option<Amount>) -> Result<Report, WalletError> {
    let text = match invoice.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| WalletError::InvalidInput(format!("cannot read the invoice file {path}: {e}")))?,
        None => invoice.to_string(),
    };
    let invoice: infhub_core::invoice::SignedInvoice = serde_json::from_str(text.trim())
        .map_err(|e| WalletError::InvalidInput(format!("not a signed invoice: {e}")))?;
    let inv = &invoice.message;
    let default_max = Amount(inv.amount.0 / 100).checked_add(amount("1")?)?;
    let answer = w.pay_invoice_with_max_fee(&invoice, max_fee.unwrap_or(default_max)).await?;
    let fees: Amount = serde_json::from_value(answer["quote"]["fees"].clone()).unwrap_or(Amount::ZERO);
    let locked = inv.amount.checked_add(fees)?;
    let balance = w.spendable()?;
    Ok(Report {
        json: json!({"locked": locked, "fees": fees, "to": inv.payee.to_string(), "invoiceId": inv.invoice_id, "balance": balance, "hub": answer}),
        text: format!(
            "locked {} ({} in fees) to {} for invoice {}; receipt checked; paid once the payee claims it (your `balance` then settles it); balance {}",
            inf(locked),
            inf(fees),
            inv.payee,
            inv.invoice_id,
            inf(balance)
        ),
    })
}

async fn balance(w: &mut Wallet, progress: &mut (impl FnMut(&str) + Send)) -> Result<Report, WalletError> {
    let check = match w.sync().await {
        Ok(c) => Some(c),
        Err(e @ WalletError::HubUnreachable { .. }) => {
            progress(&format!("{e}"));
            None
        }
        Err(e) => return Err(e),
    };
    let summary = w.summary()?;
    let ch = w.channel()?;
    let mut text = format!(
        "account   {}\nbalance   {}\n  deposited {}  withdrawn {}  received {}  paid {}\nchannel   {} (epoch {}), proofs: credit #{} debit #{}\n",
        w.user(),
        inf(w.spendable()?),
        inf(ch.deposited),
        inf(ch.withdrawn),
        inf(ch.cumulative_credit()),
        inf(ch.cumulative_debit()),
        match ch.status {
            Status::Open => "open".to_string(),
            Status::Closing { settle_block } => format!("closing, settles at block {settle_block}"),
            Status::Settled => "settled: the contract paid your balance out on chain".to_string(),
        },
        ch.epoch,
        ch.credit_nonce(),
        ch.debit_nonce()
    );
    match &check {
        Some(c) if c.agrees => text.push_str("hub       agrees with your proofs\n"),
        Some(c) => {
            text.push_str("hub       DISAGREES with your proofs:\n");
            for d in &c.disagreements {
                text.push_str(&format!("  - {d}\n"));
            }
            text.push_str("  your stored proofs are what the contract will honour; `infhub wallet exit` uses them\n");
        }
        None => text.push_str("hub       unreachable; figures from your proofs and the chain\n"),
    }
    if let Some(c) = &check {
        for n in &c.notes {
            text.push_str(&format!("note      {n}\n"));
        }
    }
    let newest = ch.credit_nonce();
    let mut towers = Vec::new();
    for failed in w.feed_towers().await {
        progress(&failed);
    }
    for (t, held) in w.tower_status().await {
        let line = match &held {
            Ok(Some(r)) if r.message.nonce >= newest => format!("holds your newest credit #{}", r.message.nonce),
            Ok(Some(r)) => format!("holds credit #{} (yours is #{newest})", r.message.nonce),
            Ok(None) => "holds nothing for you".to_string(),
            Err(e) => format!("unreachable: {e}"),
        };
        text.push_str(&format!("tower     {} {line}\n", t.url));
        towers.push(json!({"url": t.url, "heldNonce": held.ok().flatten().map(|r| r.message.nonce)}));
    }
    let fees = w.tower_fees_paid().await?;
    if !fees.is_zero() {
        text.push_str(&format!("settled   towers were paid {} of it, the fees you offered\n", inf(fees)));
    }
    let mut json = summary;
    json["towerFeesPaid"] = json!(fees);
    json["towers"] = json!(towers);
    json["hubAgrees"] = json!(check.as_ref().map(|c| c.agrees));
    json["disagreements"] = json!(check.as_ref().map(|c| c.disagreements.clone()).unwrap_or_default());
    json["hubBalance"] = json!(check.as_ref().and_then(|c| c.hub_balance));
    json["notes"] = json!(check.as_ref().map(|c| c.notes.clone()).unwrap_or_default());
    Ok(Report { json, text: text.trim_end().to_string() })
}

/// `exit`: starts a unilateral exit and (unless `no_wait`) defends it until it settles.
/// How `exit` runs.
struct ExitOptions {
    no_wait: bool,
    offline: bool,
    yes: bool,
    from_checkpoint: bool,
}

async fn exit(
    w: &mut Wallet,
    dir: &WalletDir,
    options: ExitOptions,
    progress: &mut (impl FnMut(&str) + Send),
) -> Result<Report, WalletError> {
    let ExitOptions { no_wait, offline, yes, from_checkpoint } = options;
    let hub_asked = !offline
        && match w.sync().await {
            Ok(_) => true,
            Err(e) => {
                progress(&format!("{e}"));
                false
            }
        };
    if !hub_asked {
        confirm_exit_without_hub(w, dir, yes)?;
    }
    let before = w.token_balance().await?;
    let settle_block = match from_checkpoint {
        true => w.start_exit_from_checkpoint().await?,
        false => w.start_exit().await?,
    };
    let claim = w.channel()?.claim();
    progress(&format!("exit started; the challenge period ends at block {settle_block}"));
    if no_wait {
        return Ok(Report {
            json: json!({"settleBlock": settle_block, "claim": claim}),
            text: format!(
                "exit started; run `infhub wallet exit` again (or keep `watch` running) after block {settle_block} to collect {}",
                inf(claim)
            ),
        });
    }
    let mut submitted = None;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3_600);
    let mut last = String::new();
    loop {
        let (said, settled) = w.defend(true, &mut submitted).await?;
        for s in said {
            progress(&s);
        }
        if let Some((paid, expected)) = settled {
            // The hub's locks this wallet claimed on chain pay from the hub's escrow.
            let from_locks = match w.unlock_claimed_locks().await {
                Ok(a) => a,
                Err(e) => {
                    progress(&format!("resolving your claimed locks failed (run `exit` again to retry): {e}"));
                    Amount::ZERO
                }
            };
            let after = w.token_balance().await?;
            let received = after.saturating_sub(before);
            let fees = w.tower_fees_paid().await?;
            let mut text = format!("exit complete: the contract paid {}", inf(paid));
            if !from_locks.is_zero() {
                text.push_str(&format!(
                    ", and {} for the payments of your invoices the hub had locked to you",
                    inf(from_locks)
                ));
            }
            if !fees.is_zero() {
                text.push_str(&format!(", of which {} to towers (the fees you offered)", inf(fees)));
            }
            if paid < expected {
                text.push_str(&format!(
                    "; your proofs entitled you to {} — the hub's dispute or a missed credit cost the difference",
                    inf(expected)
                ));
            }
            return Ok(Report {
                json: json!({"paid": paid, "expected": expected, "towerFees": fees, "fromLocks": from_locks, "tokensReceived": received.to_string()}),
                text,
            });
        }
        if tokio::time::Instant::now() > deadline {
            return Err(WalletError::Timeout("waiting for the challenge period".into()));
        }
        let (head, _) = w.confirmed_block().await?;
        let line = format!("challenge period: block {head}, settles at {settle_block}");
        if line != last {
            progress(&line);
            last = line;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Before an exit without the hub: says what the wallet may be missing (payments to it since it
/// last heard from the hub are not in its newest credit and are lost unless someone puts a newer
/// credit on record before the challenge period ends) and asks for confirmation: `--yes`, or
/// `y` typed in a terminal.
fn confirm_exit_without_hub(w: &Wallet, dir: &WalletDir, yes: bool) -> Result<(), WalletError> {
    let ch = w.channel()?;
    let last_credit = dir
        .journal()?
        .iter()
        .rev()
        .find(|l| matches!(l.entry, crate::store::JournalEntry::Credit { .. }))
        .map(|l| utc(l.at));
    let warning = format!(
        "exiting without the hub: your newest credit is #{} ({} received{}); payments to you since then are not in it",
        ch.credit_nonce(),
        inf(ch.cumulative_credit()),
        last_credit.map(|t| format!(", stored {t} UTC")).unwrap_or_default()
    );
    if yes {
        eprintln!("warning: {warning}");
        return Ok(());
    }
    if std::io::stdin().is_terminal() {
        eprint!("{warning}.\nExit anyway? [y/N] ");
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer).map_err(|e| WalletError::InvalidInput(e.to_string()))?;
        if matches!(answer.trim(), "y" | "Y" | "yes") {
            return Ok(());
        }
    }
    Err(WalletError::ExitNotConfirmed(warning))
}

/// `payout`: the hub's word on an external payment's payout, with its transaction.
async fn payout(w: &mut Wallet, payment_id: B256) -> Result<Report, WalletError> {
    let v = w.payout_status(payment_id).await?;
    let status = &v["status"];
    let state = status["status"].as_str().unwrap_or("unknown");
    let mut text = format!("payout of payment {payment_id}: {state}");
    if let Some(tx) = status["txHash"].as_str() {
        text.push_str(&format!("\ntransaction {tx}"));
    }
    if let Some(block) = status["block"].as_u64() {
        text.push_str(&format!(" (block {block})"));
    }
    Ok(Report { json: v, text })
}

/// `webhook set|show|remove`.
async fn webhook(w: &mut Wallet, command: &WebhookCommand) -> Result<Report, WalletError> {
    let v = match command {
        WebhookCommand::Set { url, after } => w.webhook(Some(url), *after, false).await?,
        WebhookCommand::Show => w.webhook(None, None, false).await?,
        WebhookCommand::Remove => w.webhook(None, None, true).await?,
    };
    let text = match command {
        WebhookCommand::Set { .. } => format!(
            "the hub posts this account's new entries to {}\nsigning secret (shown only now): {}\nverify each body: {}: sha256=HMAC-SHA256(secret, body)",
            v["url"].as_str().unwrap_or("?"),
            v["secret"].as_str().unwrap_or("?"),
            v["signatureHeader"].as_str().unwrap_or("x-infhub-signature"),
        ),
        WebhookCommand::Show => format!(
            "{}: delivered up to entry {}, {} failures in a row{}",
            v["url"].as_str().unwrap_or("?"),
            v["cursor"],
            v["failures"],
            v["lastError"].as_str().map(|e| format!(" (last: {e})")).unwrap_or_default(),
        ),
        WebhookCommand::Remove => "webhook removed".into(),
    };
    Ok(Report { json: v, text })
}

/// `pay`: an internal payment, under the payee's payment id if given.
async fn pay(w: &mut Wallet, account: Address, a: Amount, payment_id: Option<B256>) -> Result<Report, WalletError> {
    let answer = w.pay_with_id(PaymentKind::Internal, account, a, payment_id).await?;
    let balance = w.spendable()?;
    Ok(Report {
        json: json!({"paid": a, "to": account, "balance": balance, "hub": answer}),
        text: format!("paid {} to {account}; receipt checked; balance {}", inf(a), inf(balance)),
    })
}

/// `payment <id>`: its status and entries.
async fn payment(w: &mut Wallet, payment_id: B256) -> Result<Report, WalletError> {
    let v = w.payment(payment_id).await?;
    let mut text = format!("payment {payment_id}: {}", v["status"].as_str().unwrap_or("?"));
    for e in v["entries"].as_array().into_iter().flatten() {
        let at = e["atMs"].as_u64().map_or_else(String::new, |ms| utc(ms / 1_000));
        let amount = e["amount"].as_str().and_then(|a| a.parse::<u128>().ok()).map_or_else(String::new, format_inf);
        let who = e["counterparty"].as_str().unwrap_or("");
        text.push_str(&format!("\n  {at}  {:<16} {amount} INF  {who}", e["kind"].as_str().unwrap_or("?")));
    }
    Ok(Report { json: v, text })
}

/// `events --after N`: the entries after the cursor, one per line, and the next cursor.
async fn events(w: &mut Wallet, after: u64, limit: usize) -> Result<Report, WalletError> {
    let v = w.events(after, limit).await?;
    let mut text = String::new();
    for e in v["events"].as_array().into_iter().flatten() {
        let at = e["atMs"].as_u64().map_or_else(String::new, |ms| utc(ms / 1_000));
        let amount = e["amount"].as_str().and_then(|a| a.parse::<u128>().ok()).map_or_else(String::new, format_inf);
        text.push_str(&format!("{}  {at}  {:<22} {amount}\n", e["seq"], e["kind"].as_str().unwrap_or("?")));
    }
    text.push_str(&format!("next cursor: --after {}", v["nextAfter"]));
    Ok(Report { json: v, text })
}

/// `towers add|list|remove`.
async fn towers(w: &mut Wallet, command: &TowersCommand) -> Result<Report, WalletError> {
    match command {
        TowersCommand::Add { url, max_fee, share_bps } => {
            if *share_bps > infhub_core::messages::BPS {
                return Err(WalletError::InvalidInput("share-bps is at most 10000 (the whole saving)".into()));
            }
            let v = w.add_tower(url, amount(max_fee)?, *share_bps).await?;
            let held = match v["held"]["message"]["nonce"].as_u64() {
                Some(n) => format!("it holds your credit #{n}"),
                None => "it holds no credit yet (none issued)".to_string(),
            };
            Ok(Report {
                text: format!(
                    "tower {} ({}) added: it may earn {:.2} % of what it saves you, at most {} per close; {held}; the hub pushes new credits to it",
                    v["url"].as_str().unwrap_or(url),
                    v["tower"].as_str().unwrap_or("?"),
                    f64::from(*share_bps) / 100.0,
                    inf(amount(max_fee)?)
                ),
                json: v,
            })
        }
        TowersCommand::List => {
            let mut text = String::new();
            let mut rows = Vec::new();
            for (t, held) in w.tower_status().await {
                let line = match &held {
                    Ok(Some(r)) => {
                        format!("holds credit #{} ({} INF)", r.message.nonce, format_inf(r.message.cumulative_credit.0))
                    }
                    Ok(None) => "holds nothing for you".to_string(),
                    Err(e) => format!("unreachable: {e}"),
                };
                text.push_str(&format!("{}  {}  {line}\n", t.url, t.address));
                rows.push(json!({"url": t.url, "tower": t.address, "held": held.as_ref().ok().cloned().flatten(), "error": held.err().map(|e| e.to_string())}));
            }
            if rows.is_empty() {
                text.push_str("no towers: `infhub wallet towers add <url>` adds one");
            }
            Ok(Report { json: json!({"towers": rows}), text: text.trim_end().to_string() })
        }
        TowersCommand::Remove { url } => {
            w.remove_tower(url).await?;
            Ok(Report {
                json: json!({"removed": url}),
                text: format!("tower {url} removed; the hub no longer pushes to it"),
            })
        }
    }
}

/// A `--from`/`--to` time in milliseconds since 1970 (`invalid_input` naming the forms taken).
fn range_end(text: Option<&str>, end: infhub_core::time::RangeEnd, open: u64) -> Result<u64, WalletError> {
    match text {
        None => Ok(open),
        Some(t) => infhub_core::time::parse_utc_time(t, end).ok_or_else(|| {
            WalletError::InvalidInput(format!(
                "{t}: a time is YYYY-MM-DD, YYYY-MM-DDTHH:MM:SSZ (UTC) or milliseconds since 1970"
            ))
        }),
    }
}

/// `history`: the newest `limit` entries of the wallet's journal within `from..=to`.
fn history(dir: &WalletDir, limit: usize, from: Option<&str>, to: Option<&str>) -> Result<Report, WalletError> {
    use infhub_core::time::RangeEnd;
    let (from_ms, to_ms) = (range_end(from, RangeEnd::From, 0)?, range_end(to, RangeEnd::To, u64::MAX)?);
    let lines = dir.journal()?;
    let within = |at_secs: u64| (from_ms..=to_ms).contains(&at_secs.saturating_mul(1_000));
    let shown: Vec<_> = lines.iter().rev().filter(|l| within(l.at)).take(limit).collect();
    let mut text = String::new();
    for l in &shown {
        text.push_str(&format!("{}  {}\n", utc(l.at), describe(&l.entry)));
    }
    if shown.is_empty() {
        text.push_str("no history yet");
    }
    Ok(Report { json: json!({"entries": shown}), text: text.trim_end().to_string() })
}

/// `statement`: the hub's statement lines within the range, one per line with its time.
async fn statement(w: &mut Wallet, from: Option<&str>, to: Option<&str>) -> Result<Report, WalletError> {
    use infhub_core::time::RangeEnd;
    // Checked here first, so a typo is named before the hub is asked.
    range_end(from, RangeEnd::From, 0)?;
    range_end(to, RangeEnd::To, u64::MAX)?;
    let v = w.statement(from, to).await?;
    let inf = |a: &Value| a.as_str().and_then(|s| s.parse::<u128>().ok()).map_or_else(|| "?".into(), format_inf);
    let mut text = format!("opening balance {} INF\n", inf(&v["openingBalance"]));
    for l in v["lines"].as_array().into_iter().flatten() {
        let at = l["atMs"].as_u64().map_or_else(String::new, |ms| utc(ms / 1_000));
        let change = l["change"].as_str().unwrap_or("0");
        let (sign, digits) = change.strip_prefix('-').map_or(("+", change), |d| ("-", d));
        let change = digits.parse::<u128>().map_or_else(|_| change.to_string(), |d| format!("{sign}{}", format_inf(d)));
        let kind = l["kind"].as_str().unwrap_or("?");
        text.push_str(&format!("{at}  {kind:<22} {change:>14}  {} INF\n", inf(&l["balanceAfter"])));
    }
    text.push_str(&format!("closing balance {} INF", inf(&v["closingBalance"])));
    Ok(Report { json: v, text })
}

/// Unix seconds as `YYYY-MM-DD HH:MM:SS` UTC.
pub fn utc(unix_secs: u64) -> String {
    let t = infhub_core::time::utc_time(unix_secs.saturating_mul(1_000));
    format!("{} {}", &t[..10], &t[11..19])
}

/// One journal entry in words.
pub fn describe(e: &JournalEntry) -> String {
    match e {
        JournalEntry::Registered { hub } => format!("registered with {}", hub.hub_url),
        JournalEntry::ChannelOpened { epoch } => format!("channel opened (epoch {epoch})"),
        JournalEntry::DebitSigned { debit } => format!(
            "signed debit #{}: {} to {}",
            debit.message.nonce,
            inf(debit.message.amount),
            debit.message.recipient
        ),
        JournalEntry::PaymentApplied { debit, .. } => format!(
            "paid {} to {} (debit #{}, receipt stored)",
            inf(debit.message.amount),
            debit.message.recipient,
            debit.message.nonce
        ),
        JournalEntry::PaymentRefused { payment_id, code, refund: Some(r) } => {
            format!("payment {payment_id} refused ({code}); refunded by credit #{}", r.message.nonce)
        }
        JournalEntry::PaymentRefused { payment_id, code, refund: None } => {
            format!("payment {payment_id} refused ({code}); it can no longer be charged")
        }
        JournalEntry::PaymentHeld { payment_id, code } => {
            format!("payment {payment_id} refused ({code}) without a refund; kept pending and resent")
        }
        JournalEntry::DebitLearned { debit } => {
            format!("debit #{} signed elsewhere: {}", debit.message.nonce, inf(debit.message.amount))
        }
        JournalEntry::Credit { credit, from, amount } => match (from, amount) {
            (Some(f), Some(a)) => format!("received {} from {f} (credit #{})", inf(*a), credit.message.nonce),
            _ => format!(
                "credit #{} stored (total received {})",
                credit.message.nonce,
                inf(credit.message.cumulative_credit)
            ),
        },
        JournalEntry::WithdrawalCoSigned { withdrawal } => {
            format!("withdrawal co-signed (withdrawn total {})", inf(withdrawal.withdrawal.cumulative_withdrawn))
        }
        JournalEntry::Transaction { what, hash } => format!("{what} transaction {hash}"),
        JournalEntry::Deposited { total } => format!("deposits confirmed, total {}", inf(*total)),
        JournalEntry::Withdrawn { total } => format!("withdrawal confirmed, total {}", inf(*total)),
        JournalEntry::ExitStarted { settle_block } => format!("channel closing, settles at block {settle_block}"),
        JournalEntry::Settled { paid, expected } => {
            format!("settled: paid {} (expected {})", inf(*paid), inf(*expected))
        }
        JournalEntry::Disagreement { detail } => format!("DISAGREEMENT with the hub: {detail}"),
    }
}

/// Forwards the hub's stream messages to the watch loop until the stream ends, then says so.
fn follow_stream<S>(mut ws: S, tx: tokio::sync::mpsc::Sender<Result<String, String>>) -> tokio::task::JoinHandle<()>
where
    S: futures_util::Stream<
            Item = Result<tokio_tungstenite::tungstenite::Message, tokio_tungstenite::tungstenite::Error>,
        > + Unpin
        + Send
        + 'static,
{
    tokio::spawn(async move {
        while let Some(msg) = ws.next().await {
            match msg {
                Ok(tokio_tungstenite::tungstenite::Message::Text(t)) => {
                    if tx.send(Ok(t.to_string())).await.is_err() {
                        return;
                    }
                }
                Ok(tokio_tungstenite::tungstenite::Message::Close(_)) | Err(_) => break,
                Ok(_) => {}
            }
        }
        let _ = tx.send(Err("stream closed".into())).await;
    })
}

/// `infhub wallet watch`: follows the hub's stream and the chain until `stop` resolves.
pub async fn watch(
    args: &WalletArgs,
    no_settle: bool,
    stop: impl std::future::Future<Output = ()>,
) -> Result<(), WalletError> {
    let dir = WalletDir::new(args.dir.clone().unwrap_or_else(default_dir));
    let (key, bytes) = load_key(&dir)?;
    let mut w = Wallet::open(dir, key, bytes, args.hub_url.as_deref(), args.rpc_url.as_deref()).await?;
    let json_out = args.json;
    // A closed stdout (the reader went away) must not stop the defence.
    let say = |event: &str, line: &str| {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let _ = if json_out {
            writeln!(out, "{}", json!({"event": event, "message": line}))
        } else {
            writeln!(out, "{line}")
        };
        let _ = out.flush();
    };
    say("started", &format!("watching {} (hub {}, chain {})", w.user(), w.state().hub.hub_url, w.state().hub.rpc_url));
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<String, String>>(1_024);
    let mut stream_task: Option<tokio::task::JoinHandle<()>> = None;
    let mut next_connect = tokio::time::Instant::now();
    let mut backoff = Duration::from_millis(500);
    let mut submitted = None;
    let mut hub_online = true;
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let mut checkpoints = CheckpointWatch {
        complain: matches!(args.command, WalletCommand::Watch { complain: true, .. }),
        ..Default::default()
    };
    let mut repeats = Repeats::default();
    tokio::pin!(stop);
    loop {
        if stream_task.as_ref().is_none_or(|t| t.is_finished()) && tokio::time::Instant::now() >= next_connect {
            // (Re)connect: log in, subscribe to the stream, and only then catch up on what was
            // missed, so a credit issued in between is on the stream or in the catch-up.
            match subscribe_then_sync(&mut w).await {
                Ok((check, ws)) => {
                    if !hub_online {
                        say("hub_online", "the hub is reachable again");
                    }
                    hub_online = true;
                    backoff = Duration::from_millis(500);
                    for d in &check.disagreements {
                        say("disagreement", &format!("the hub DISAGREES with your proofs: {d}"));
                    }
                    stream_task = Some(follow_stream(ws, tx.clone()));
                    say("subscribed", "following the hub's stream of your credits");
                }
                Err(
                    e @ (WalletError::HubUnreachable { .. }
                    | WalletError::HubRefused { .. }
                    | WalletError::HubMisbehaved(_)
                    | WalletError::Chain { .. }),
                ) => {
                    if hub_online {
                        say("hub_offline", &format!("{e}; still watching the chain"));
                    }
                    hub_online = false;
                    next_connect = tokio::time::Instant::now() + backoff;
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
                Err(e) => return Err(e),
            }
        }
        tokio::select! {
            _ = &mut stop => {
                say("stopped", "stopped");
                return Ok(());
            }
            msg = rx.recv() => match msg {
                Some(Ok(text)) => match w.on_stream_message(&text).await {
                    Ok(Some(line)) => {
                        say("credit", &line);
                        for failed in w.feed_towers().await {
                            say("tower", &failed);
                        }
                    }
                    Ok(None) => {}
                    // A bad proof from the hub is reported and kept out; the defence goes on.
                    Err(e @ WalletError::HubMisbehaved(_)) => say("disagreement", &e.to_string()),
                    Err(e) => return Err(e),
                },
                Some(Err(reason)) => {
                    say("stream_lost", &format!("hub stream lost ({reason}); reconnecting"));
                    next_connect = tokio::time::Instant::now() + backoff;
                }
                None => {}
            },
            _ = tick.tick() => {
                for (event, line) in tick_round(&mut w, no_settle, &mut submitted, &mut checkpoints).await? {
                    if repeats.fresh(event, &line, std::time::Instant::now()) {
                        say(event, &line);
                    }
                }
            }
        }
    }
}

/// How often `watch` repeats a failure line it already printed (the chain or hub still down).
const REPEAT_FAILURE_AFTER: Duration = Duration::from_secs(60);

/// `watch`'s failure lines, printed when new or changed and then at most once per
/// [`REPEAT_FAILURE_AFTER`]: a chain outage must not print a line every tick.
#[derive(Default)]
struct Repeats {
    last: std::collections::HashMap<&'static str, (String, std::time::Instant)>,
}

impl Repeats {
    /// Whether to print `line` of `event` now.
    fn fresh(&mut self, event: &'static str, line: &str, now: std::time::Instant) -> bool {
        if !matches!(event, "chain_error" | "complaint_not_sent" | "checkpoint_unchecked") {
            return true;
        }
        match self.last.get(event) {
            Some((said, at)) if said == line && now.duration_since(*at) < REPEAT_FAILURE_AFTER => false,
            _ => {
                self.last.insert(event, (line.to_string(), now));
                true
            }
        }
    }
}

/// One timed round of `watch`: the checkpoint check, then the defence of the channel. Returns
/// the lines to print; Err only for what must stop the watch.
async fn tick_round(
    w: &mut Wallet,
    no_settle: bool,
    submitted: &mut Option<(u64, u64)>,
    checkpoints: &mut CheckpointWatch,
) -> Result<Vec<(&'static str, String)>, WalletError> {
    let mut said = checkpoints.check(w).await;
    match w.defend(!no_settle, submitted).await {
        Ok((lines, settled)) => {
            said.extend(lines.into_iter().map(|s| ("defence", s)));
            if let Some((paid, expected)) = settled {
                let verdict = if paid >= expected { "as your proofs say" } else { "LESS than your proofs say" };
                let line = format!("the channel settled: paid {} ({verdict}; expected {})", inf(paid), inf(expected));
                said.push(("settled", line));
            }
        }
        Err(e @ WalletError::Chain { .. }) => said.push(("chain_error", format!("{e}"))),
        Err(e) => return Err(e),
    }
    Ok(said)
}

/// `watch`'s check of each new checkpoint (spec §5.16): every few seconds it asks the contract
/// for its newest checkpoint and verifies this account's leaf once per id; a check that could
/// not be made (hub or chain unreachable) is tried again.
#[derive(Default)]
struct CheckpointWatch {
    /// Send the complaint on chain when a held credit proves a misstatement.
    complain: bool,
    verified: u64,
    ticks: u64,
}

/// Ticks of `watch` (500 ms) between looks at the contract's newest checkpoint.
const CHECKPOINT_LOOK_EVERY_TICKS: u64 = 10;

impl CheckpointWatch {
    async fn check(&mut self, w: &mut Wallet) -> Vec<(&'static str, String)> {
        self.ticks += 1;
        if !self.ticks.is_multiple_of(CHECKPOINT_LOOK_EVERY_TICKS) {
            return Vec::new();
        }
        let mut said = Vec::new();
        // A debit challenge this wallet made and the hub left unanswered: halt the hub.
        if self.complain {
            match w.halt_unanswered().await {
                Ok(Some(v)) => said.push((
                    "complained",
                    format!("the hub never answered the debit challenge; halted it on chain in {}", v["txHash"]),
                )),
                Ok(None) => {}
                Err(e) => said.push(("complaint_not_sent", e.to_string())),
            }
        }
        let newest = match w.chain.last_checkpoint_id().await {
            Ok(id) if id > self.verified => id,
            _ => return said,
        };
        match w.verify_checkpoint(Some(newest)).await {
            Ok(v) => {
                self.verified = newest;
                if v["verdict"] == "ok" {
                    said.push(("checkpoint", format!("checkpoint {newest}: your leaf checks out")));
                }
            }
            Err(WalletError::CheckpointFault { code, detail }) => {
                self.verified = newest;
                said.push((
                    "checkpoint_fault",
                    format!("the hub's checkpoint MISSTATES your account ({code}): {detail}"),
                ));
                if self.complain {
                    match w.complain(Some(newest), false).await {
                        Ok(v) if v["proof"] == "debit_challenged" => said.push((
                            "challenged",
                            format!(
                                "challenged the debit on chain in {}; the hub must answer by block {}",
                                v["txHash"], v["answerByBlock"]
                            ),
                        )),
                        Ok(v) => {
                            said.push(("complained", format!("proved on chain in {}; the hub is halted", v["txHash"])))
                        }
                        Err(e) => said.push(("complaint_not_sent", e.to_string())),
                    }
                }
            }
            Err(e) => said.push(("checkpoint_unchecked", format!("checkpoint {newest} not checked yet: {e}"))),
        }
        said
    }
}

type Stream = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Logs in (through a sync), subscribes to the account stream, then syncs again: whatever the
/// hub issued before the subscription is in the second sync, whatever after it on the stream.
async fn subscribe_then_sync(w: &mut Wallet) -> Result<(crate::wallet::HubCheck, Stream), WalletError> {
    w.sync().await?;
    let url = w.hub.stream_url().ok_or_else(|| WalletError::HubUnreachable {
        url: w.state().hub.hub_url.clone(),
        reason: "no stream URL (not an http(s) hub URL, or no session)".into(),
    })?;
    let (ws, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .map_err(|e| WalletError::HubUnreachable { url: w.state().hub.hub_url.clone(), reason: e.to_string() })?;
    let check = w.sync().await?;
    Ok((check, ws))
}

#[cfg(test)]
mod tests {

    #[test]
    fn watch_repeats_a_failure_line_once_a_minute_and_any_other_line_always() {
        let mut r = super::Repeats::default();
        let t0 = std::time::Instant::now();
        assert!(r.fresh("chain_error", "rpc down", t0));
        assert!(!r.fresh("chain_error", "rpc down", t0 + Duration::from_secs(5)), "the same failure, 5 s later");
        assert!(r.fresh("chain_error", "rpc refused", t0 + Duration::from_secs(6)), "a different failure");
        assert!(r.fresh("chain_error", "rpc refused", t0 + Duration::from_secs(67)), "the same, a minute later");
        assert!(r.fresh("credit", "credit 5", t0) && r.fresh("credit", "credit 5", t0), "not a failure: always");
    }

    use super::*;

    #[test]
    fn utc_formats_known_instants() {
        assert_eq!(utc(0), "1970-01-01 00:00:00");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00");
        assert_eq!(utc(1_795_421_366), "2026-11-23 08:09:26");
    }
}
